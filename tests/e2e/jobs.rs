//! Jobs that run to the end and produce known output.

use std::collections::BTreeMap;

use crate::harness::{ev, events, operator, probe_items, toml_path, Ev, Sandbox};

const TEXT: &str = "The quick brown fox jumps over the lazy dog\n\
the dog barks and the fox runs\n\
\n\
  A  quick   dog\tand a lazy fox\n";

/// JSON lines of (key, value, timestamp) events, for a file source.
fn jsonl(events: &[(&str, &str, i64)]) -> String {
    events
        .iter()
        .map(|(k, v, t)| format!(r#"{{"key": "{k}", "value": "{v}", "timestamp": {t}}}"#))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Running counts per word, computed here without weir.
fn expected_word_counts(text: &str, lowercase: bool) -> Vec<Ev> {
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let mut out = Vec::new();
    for word in text.split_whitespace() {
        let word = if lowercase {
            word.to_lowercase()
        } else {
            word.to_string()
        };
        let n = counts.entry(word.clone()).or_default();
        *n += 1;
        out.push(Ev {
            key: Some(word),
            value: n.to_string(),
            timestamp: 0,
        });
    }
    out.sort();
    out
}

fn wordcount_job(split_parallelism: u32, count_parallelism: u32) -> String {
    format!(
        r#"
name = "wordcount"
max_parallelism = 16

[source]
type = "file"
path = "text.txt"
format = "lines"

[[operators]]
id = "split"
wasm = {split}
parallelism = {split_parallelism}
config = {{ lowercase = "true" }}

[[operators]]
id = "count"
wasm = {count}
parallelism = {count_parallelism}
input = "key"

[sink]
type = "file"
path = "out/counts.jsonl"
"#,
        split = toml_path(&operator("word-split")),
        count = toml_path(&operator("keyed-count")),
    )
}

#[test]
fn word_count_of_a_known_text() {
    let sb = Sandbox::new();
    sb.write("text.txt", TEXT);
    sb.run_job(&wordcount_job(1, 1)).ok();
    let got = events(&sb.read("out/counts.jsonl"));
    assert_eq!(got, expected_word_counts(TEXT, true));
    // The final count of "the" is 4 and of "fox" 3.
    assert!(got.contains(&ev("the", "4", 0)));
    assert!(got.contains(&ev("fox", "3", 0)));
}

#[test]
fn parallelism_one_and_three_give_the_same_results() {
    let sb = Sandbox::new();
    let text: String = (0..400)
        .map(|i| format!("w{} w{} common w{}\n", i % 37, i % 11, (i * 7) % 53))
        .collect();
    sb.write("text.txt", &text);
    sb.run_job(&wordcount_job(1, 1)).ok();
    let one = events(&sb.read("out/counts.jsonl"));
    sb.run_job(&wordcount_job(3, 3)).ok();
    let three = events(&sb.read("out/counts.jsonl"));
    sb.run_job(&wordcount_job(2, 3)).ok();
    let mixed = events(&sb.read("out/counts.jsonl"));
    assert_eq!(one, expected_word_counts(&text, true));
    assert_eq!(one, three);
    assert_eq!(one, mixed);
}

fn windowed_job(parallelism: u32, delay: &str) -> String {
    format!(
        r#"
name = "windows"

[source]
type = "file"
path = "in.jsonl"
watermark_delay = "{delay}"
# The watermark advances between batches: one event per batch makes lateness exact.
batch_size = 1

[[operators]]
id = "sum"
wasm = {sum}
parallelism = {parallelism}
input = "key"
config = {{ size_ms = "1000" }}

[sink]
type = "file"
path = "sums.jsonl"

[dead_letter]
path = "dead.jsonl"
"#,
        sum = toml_path(&operator("windowed-sum")),
    )
}

#[test]
fn windowed_sums_over_out_of_order_input() {
    let sb = Sandbox::new();
    // Out of order within the 2 s watermark delay; one late event, one non-integer.
    let input = [
        r#"{"key": "a", "value": "1", "timestamp": 100}"#,
        r#"{"key": "b", "value": "10", "timestamp": 1500}"#,
        r#"{"key": "a", "value": "2", "timestamp": 900}"#,
        r#"{"key": "a", "value": "4", "timestamp": 2100}"#,
        r#"{"key": "a", "value": "8", "timestamp": 300}"#,
        r#"{"key": "b", "value": "20", "timestamp": 1999}"#,
        r#"{"key": "b", "value": "x", "timestamp": 2000}"#,
        r#"{"key": "a", "value": "16", "timestamp": 5200}"#,
        r#"{"key": "a", "value": "32", "timestamp": 600}"#,
        r#"{"key": "b", "value": "64", "timestamp": 5999}"#,
    ]
    .join("\n");
    sb.write("in.jsonl", input);
    let mut expected = vec![
        ev("a", "11", 999),
        ev("a", "4", 2999),
        ev("a", "16", 5999),
        ev("b", "30", 1999),
        ev("b", "64", 5999),
    ];
    expected.sort();
    for parallelism in [1, 3] {
        sb.run_job(&windowed_job(parallelism, "2s")).ok();
        assert_eq!(
            events(&sb.read("sums.jsonl")),
            expected,
            "parallelism {parallelism}"
        );
        let dead: Vec<serde_json::Value> = sb
            .read("dead.jsonl")
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(dead.len(), 2, "{dead:?}");
        let late = dead
            .iter()
            .find(|d| d["timestamp"] == 600)
            .expect("the late event");
        assert_eq!(late["operator"], "sum");
        assert_eq!(late["value"], "32");
        assert!(late["error"].as_str().unwrap().contains("late"), "{late}");
        let bad = dead
            .iter()
            .find(|d| d["timestamp"] == 2000)
            .expect("the non-integer");
        assert!(
            bad["error"].as_str().unwrap().contains("not an integer"),
            "{bad}"
        );
    }
}

#[test]
fn the_last_windows_fire_at_the_end_of_a_bounded_input() {
    let sb = Sandbox::new();
    sb.write(
        "in.jsonl",
        "{\"key\": \"k\", \"value\": \"5\", \"timestamp\": 10}\n{\"key\": \"k\", \"value\": \"6\", \"timestamp\": 20}\n",
    );
    // A huge delay: the watermark never passes the window before the input ends.
    sb.run_job(&windowed_job(1, "1h")).ok();
    assert_eq!(events(&sb.read("sums.jsonl")), vec![ev("k", "11", 999)]);
}

#[test]
fn events_at_the_newest_timestamp_are_on_time_with_no_delay() {
    // Issue 13: with a delay of 0 the second event at 1999 was behind a
    // watermark of 1999 and went to the dead-letter file as late. A
    // watermark promises that no event at or before it follows, so after
    // 1999 it is 1998; events in timestamp order are never late.
    let sb = Sandbox::new();
    let input = [
        ("a", "1", 1999),
        ("a", "2", 1999),
        ("b", "4", 1999),
        ("a", "8", 2000),
        ("a", "16", 2000),
        ("a", "32", 2999),
        ("b", "64", 2999),
        ("b", "128", 3000),
    ];
    sb.write("in.jsonl", jsonl(&input));
    for parallelism in [1, 2] {
        sb.run_job(&windowed_job(parallelism, "0s")).ok();
        assert_eq!(
            sb.read("dead.jsonl"),
            "",
            "parallelism {parallelism}: no event is late"
        );
        let mut expected = vec![
            ev("a", "3", 1999),
            ev("b", "4", 1999),
            ev("a", "56", 2999),
            ev("b", "64", 2999),
            ev("b", "128", 3999),
        ];
        expected.sort();
        assert_eq!(events(&sb.read("sums.jsonl")), expected);
    }
}

/// A generator job into `windowed-sum` windows of 1 ms, one event per batch.
fn generated_windows_job(timestamps: &str, out: &str) -> String {
    format!(
        r#"
name = "clock-windows"

[source]
type = "generator"
count = 20000
keys = 10
value_size = 3
timestamps = "{timestamps}"
batch_size = 1

[[operators]]
id = "sum"
wasm = {sum}
input = "key"
config = {{ size_ms = "1" }}

[sink]
type = "file"
path = "{out}"
"#,
        sum = toml_path(&operator("windowed-sum")),
    )
}

/// The total of every key's sums.
fn totals(text: &str) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for e in events(text) {
        *out.entry(e.key.unwrap()).or_default() += e.value.parse::<i64>().unwrap();
    }
    out
}

#[test]
fn a_generator_stamped_with_the_clock_feeds_windows_without_late_events() {
    // Issue 13: with `timestamps = "now"` many batches share a millisecond;
    // the old watermark (the newest timestamp) closed that millisecond's
    // window after the first of them, so the next one was late and, with no
    // dead-letter file, the job failed.
    let sb = Sandbox::new();
    sb.run_job(&generated_windows_job("now", "now.jsonl")).ok();
    // The same events stamped with their index, in order too: the same totals.
    sb.run_job(&generated_windows_job("index", "index.jsonl"))
        .ok();
    let by_clock = totals(&sb.read("now.jsonl"));
    assert_eq!(by_clock.len(), 10, "{by_clock:?}");
    assert_eq!(by_clock, totals(&sb.read("index.jsonl")));
}

#[test]
fn dedupe_emits_each_value_once_per_key() {
    let sb = Sandbox::new();
    let input = [
        ("a", "x", 1),
        ("a", "y", 2),
        ("a", "x", 3),
        ("b", "x", 4),
        ("b", "x", 5),
        ("a", "y", 6),
        ("a", "z", 7),
    ];
    sb.write("in.jsonl", jsonl(&input));
    sb.run_job(&format!(
        r#"
name = "dedupe"
[source]
type = "file"
path = "in.jsonl"
[[operators]]
id = "dedupe"
wasm = {dedupe}
parallelism = 2
input = "key"
[sink]
type = "file"
path = "out.jsonl"
"#,
        dedupe = toml_path(&operator("dedupe"))
    ))
    .ok();
    assert_eq!(
        events(&sb.read("out.jsonl")),
        vec![
            ev("a", "x", 1),
            ev("a", "y", 2),
            ev("a", "z", 7),
            ev("b", "x", 4)
        ]
    );
}

/// The SDK's state cache lasts from call to call: two handles on one
/// state see each other's writes, in the same call and in later ones (one
/// event per call here), and a state cannot be opened with two value types.
#[test]
fn two_handles_on_one_state_share_what_they_cache() {
    let sb = Sandbox::new();
    let keys = ["a", "b", "a", "c", "a", "b", "a"];
    let input: Vec<(&str, &str, i64)> = (0..).zip(keys).map(|(t, k)| (k, "x", t)).collect();
    sb.write("in.jsonl", jsonl(&input));
    sb.run_job(&format!(
        r#"
name = "twins"
[source]
type = "file"
path = "in.jsonl"
batch_size = 1
[[operators]]
id = "twins"
wasm = {twins}
input = "key"
[sink]
type = "file"
path = "out.jsonl"
"#,
        twins = toml_path(&operator("twin-handles"))
    ))
    .ok();
    let mut seen: BTreeMap<&str, u32> = BTreeMap::new();
    let want: Vec<Ev> = keys
        .iter()
        .enumerate()
        .map(|(t, k)| {
            let n = seen.entry(k).or_default();
            *n += 1;
            ev(k, &format!("{n},{n},{n},refused"), t as i64)
        })
        .collect();
    let mut want = want;
    want.sort();
    assert_eq!(events(&sb.read("out.jsonl")), want);
}

#[test]
fn generator_to_blackhole_is_deterministic() {
    let sb = Sandbox::new();
    let job = |sink: &str| {
        format!(
            r#"
name = "gen"
[source]
type = "generator"
count = 5000
keys = 50
value_size = 8
seed = 7
[[operators]]
id = "count"
wasm = {count}
parallelism = 2
input = "key"
[sink]
{sink}
"#,
            count = toml_path(&operator("keyed-count"))
        )
    };
    let run = sb.run_job(&job("type = \"blackhole\"")).ok();
    assert!(
        run.stderr.contains("5000 events in, 5000 out"),
        "{}",
        run.stderr
    );
    sb.run_job(&job("type = \"file\"\npath = \"a.jsonl\"")).ok();
    sb.run_job(&job("type = \"file\"\npath = \"b.jsonl\"")).ok();
    let a = events(&sb.read("a.jsonl"));
    assert_eq!(a, events(&sb.read("b.jsonl")));
    assert_eq!(a.len(), 5000);
    // Every key's counts run 1..=n with no gap.
    let mut per_key: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for e in &a {
        per_key
            .entry(e.key.clone().unwrap())
            .or_default()
            .push(e.value.parse().unwrap());
    }
    assert!(per_key.len() <= 50 && per_key.len() > 40);
    for (k, mut counts) in per_key {
        counts.sort();
        assert_eq!(
            counts,
            (1..=counts.len() as u64).collect::<Vec<_>>(),
            "key {k}"
        );
    }
}

#[test]
fn stdin_source_and_stdout_sink() {
    let sb = Sandbox::new();
    sb.write(
        "job.toml",
        format!(
            r#"
name = "pipe"
[source]
type = "stdin"
format = "lines"
[[operators]]
id = "split"
wasm = {split}
[sink]
type = "stdout"
"#,
            split = toml_path(&operator("word-split"))
        ),
    );
    let run = sb
        .cmd(&["run", "job.toml"])
        .stdin("hello world\nhello\n".as_bytes())
        .run()
        .ok();
    assert_eq!(
        events(&run.stdout),
        vec![
            ev("hello", "hello", 0),
            ev("hello", "hello", 0),
            ev("world", "world", 0)
        ]
    );
}

#[test]
fn non_utf8_bytes_round_trip_as_base64() {
    let sb = Sandbox::new();
    sb.write("in.jsonl", "{\"key_b64\": \"/w==\", \"value\": \"a\", \"timestamp\": 3}\n{\"key\": \"k\", \"value_b64\": \"gA==\"}\n");
    sb.run_job(&format!(
        r#"
name = "bytes"
[source]
type = "file"
path = "in.jsonl"
[[operators]]
id = "dedupe"
wasm = {dedupe}
[sink]
type = "file"
path = "out.jsonl"
"#,
        dedupe = toml_path(&operator("dedupe"))
    ))
    .ok();
    let out = sb.read("out.jsonl");
    assert!(
        out.contains(r#""key_b64":"/w==","value":"a","timestamp":3"#),
        "{out}"
    );
    assert!(
        out.contains(r#""key":"k","value_b64":"gA==","timestamp":0"#),
        "{out}"
    );
}

fn probe_job(extra: &str, dead_letter: bool) -> String {
    format!(
        r#"
name = "probe"
[source]
type = "file"
path = "in.jsonl"
[[operators]]
id = "probe"
wasm = {probe}
parallelism = 2
input = "key"
{extra}
[sink]
type = "file"
path = "out.jsonl"
{dead}
"#,
        probe = toml_path(&operator("probe")),
        dead = if dead_letter {
            "[dead_letter]\npath = \"dead.jsonl\""
        } else {
            ""
        }
    )
}

#[test]
fn list_state_processing_time_timers_bad_input_and_guest_logs() {
    let sb = Sandbox::new();
    let mut lines = Vec::new();
    for i in 0..300 {
        lines.push(format!(r#"{{"key": "k{}", "value": "v{i}"}}"#, i % 7));
        if i % 50 == 0 {
            lines.push(r#"{"key": "k1", "value": "bad"}"#.to_string());
        }
    }
    lines.push(r#"{"key": "k2", "value": "log:hello from the guest"}"#.to_string());
    sb.write("in.jsonl", lines.join("\n"));
    let run = sb.run_job(&probe_job("", true)).ok();
    assert!(
        run.stderr.contains("hello from the guest"),
        "{}",
        run.stderr
    );
    // Every item comes out exactly once, in order per key, whatever the timer grouping.
    let per_key = probe_items(&sb.read("out.jsonl"));
    for k in 0..7 {
        let want: Vec<String> = (0..300)
            .filter(|i| i % 7 == k)
            .map(|i| format!("v{i}"))
            .collect();
        assert_eq!(per_key.get(&format!("k{k}")), Some(&want), "key k{k}");
    }
    assert_eq!(sb.read("dead.jsonl").lines().count(), 6);
}

#[test]
fn rejecting_every_event_of_a_batch_hands_the_guest_each_event_a_bounded_number_of_times() {
    // Issue 13: after each rejection the host handed the guest the whole
    // rest of the batch again, so a batch of n bad events cost n(n+1)/2
    // events lifted into the guest (and prefetched there). `handed` makes
    // the probe say how many events its calls were given in all.
    let sb = Sandbox::new();
    let n = 1000;
    let mut lines: Vec<String> = (0..n)
        .map(|_| r#"{"key": "k", "value": "bad"}"#.to_string())
        .collect();
    lines.push(r#"{"key": "k", "value": "handed"}"#.to_string());
    sb.write("in.jsonl", lines.join("\n"));
    let job = probe_job("", true)
        .replace("parallelism = 2", "parallelism = 1")
        .replace(
            "path = \"in.jsonl\"",
            "path = \"in.jsonl\"\nbatch_size = 2000",
        );
    sb.run_job(&job).ok();
    assert_eq!(sb.read("dead.jsonl").lines().count(), n);
    let out = events(&sb.read("out.jsonl"));
    assert_eq!(out.len(), 1, "{out:?}");
    let (calls, handed) = out[0]
        .value
        .split_once(" calls, ")
        .and_then(|(c, e)| {
            Some((
                c.parse::<usize>().ok()?,
                e.strip_suffix(" events")?.parse::<usize>().ok()?,
            ))
        })
        .unwrap_or_else(|| panic!("{:?}", out[0]));
    // One call per rejection and one for the rest; every call gets at most
    // twice what the one before it got through, so at most 3 × the batch.
    assert_eq!(calls, n + 1);
    assert!(
        handed <= 3 * (n + 1),
        "{handed} events handed for a batch of {}",
        n + 1
    );
}
