//! Checkpoints: a job killed with SIGKILL at random moments and restarted
//! until its input is done produces the same output as an uninterrupted run;
//! checkpoints are incremental; a trapping operator is restarted from the
//! last checkpoint with exactly-once output.

use std::time::Duration;

use crate::harness::{operator, probe_items, sorted_lines, toml_path, Rng, Sandbox};

/// A keyed count over a throttled generator, with checkpoints every 100 ms.
fn counting_job(parallelism: u32, rate: Option<u64>) -> String {
    counting_job_in_mode(parallelism, rate, "exactly-once")
}

fn counting_job_in_mode(parallelism: u32, rate: Option<u64>, mode: &str) -> String {
    format!(
        r#"
name = "crash"
max_parallelism = 32

[source]
type = "generator"
count = 60000
keys = 700
value_size = 3
seed = 11
batch_size = 256
{rate}

# One ordered path per key into the stateful operator, so that its output
# (each event's running count) is the same in every correct run.
[[operators]]
id = "split"
wasm = {split}
parallelism = 1

[[operators]]
id = "count"
wasm = {count}
parallelism = {parallelism}
input = "key"

[sink]
type = "file"
path = "out/result.jsonl"

[checkpoint]
interval = "100ms"
dir = "state"
retain = 2
mode = "{mode}"
"#,
        rate = rate.map(|r| format!("rate = {r}")).unwrap_or_default(),
        split = toml_path(&operator("word-split")),
        count = toml_path(&operator("keyed-count")),
    )
}

/// Runs the job to the end once, uninterrupted, in a sandbox of its own.
fn reference(parallelism: u32) -> Vec<String> {
    let sb = Sandbox::new();
    sb.run_job(&counting_job(parallelism, None)).ok();
    sorted_lines(&sb.read("out/result.jsonl"))
}

/// Kills the job at random moments at least `kills` times (one cycle at
/// another parallelism), then lets it finish; returns the output.
fn killed_and_restarted(parallelism: u32, other_parallelism: u32, kills: usize) -> Vec<String> {
    // 60,000 events at 8,000/s: about 7.5 s of input, so the kills land mid-job.
    let throttled = counting_job(parallelism, Some(8000));
    let other = counting_job(other_parallelism, Some(8000));
    crash_until_done(&throttled, &other, kills, "out/result.jsonl")
}

/// Runs `job`, killing it at random moments `kills` times (one of the runs
/// is `other`, e.g. another parallelism), then lets it finish; returns the
/// sorted lines of `output`.
fn crash_until_done(throttled: &str, other: &str, kills: usize, output: &str) -> Vec<String> {
    let sb = Sandbox::new();
    let mut rng = Rng::from_env();
    let env = [("WEIR_TEST_CHECKPOINT_PAUSE_MS", "30")];
    let mut killed = 0;
    let mut cycles = 0;
    loop {
        let job = if cycles == kills / 2 {
            other
        } else {
            throttled
        };
        sb.write("job.toml", job);
        let mut child = sb.cmd(&["run", "job.toml"]).envs(&env).start();
        cycles += 1;
        let wait = Duration::from_millis(rng.range(150, 900));
        match child.exit_within(wait) {
            Some(status) => {
                assert!(status.success(), "weir failed in cycle {cycles}: {status}");
                break;
            }
            None => {
                child.kill(); // SIGKILL
                killed += 1;
            }
        }
        if killed >= kills {
            // Let the last run finish.
            sb.write("job.toml", throttled);
            sb.weir(&["run", "job.toml"]).ok();
            break;
        }
    }
    assert!(
        killed >= kills,
        "the job finished after only {killed} kills"
    );
    let list = sb.weir(&["checkpoints", "list", "state", "--json"]).ok();
    let v: serde_json::Value = serde_json::from_str(&list.stdout).unwrap();
    assert!(
        v.as_array().unwrap().iter().any(|c| c["finished"] == true),
        "{}",
        list.stdout
    );
    let pending = sb.path(output).with_file_name(format!(
        ".{}.pending",
        std::path::Path::new(output)
            .file_name()
            .unwrap()
            .to_string_lossy()
    ));
    assert!(!pending.join("open.seg").exists());
    sorted_lines(&sb.read(output))
}

#[test]
fn sigkill_and_restart_gives_the_uninterrupted_output_at_parallelism_1() {
    let expected = reference(1);
    assert_eq!(expected.len(), 60000);
    let got = killed_and_restarted(1, 2, 10);
    assert_eq!(got.len(), expected.len(), "lost or duplicated output");
    assert!(got == expected, "output differs from the uninterrupted run");
}

#[test]
fn sigkill_and_restart_gives_the_uninterrupted_output_at_parallelism_3() {
    let expected = reference(3);
    let got = killed_and_restarted(3, 1, 10);
    assert_eq!(got.len(), expected.len(), "lost or duplicated output");
    assert!(got == expected, "output differs from the uninterrupted run");
}

#[test]
fn checkpoints_are_incremental() {
    let sb = Sandbox::new();
    sb.run_job(&format!(
        r#"
name = "incremental"
[source]
type = "generator"
count = 5000
keys = 4000
value_size = 1
rate = 2000
batch_size = 50
[[operators]]
id = "count"
wasm = {count}
input = "key"
[sink]
type = "blackhole"
[checkpoint]
interval = "100ms"
dir = "state"
retain = 100
"#,
        count = toml_path(&operator("keyed-count"))
    ))
    .ok();
    let list = sb.weir(&["checkpoints", "list", "state", "--json"]).ok();
    let all: Vec<serde_json::Value> = serde_json::from_str(&list.stdout).unwrap();
    assert!(all.len() >= 10, "{}", list.stdout);
    let full = &all[0];
    assert_eq!(full["full"], true);
    // What a full checkpoint costs per key (key, value and framing).
    let per_key =
        full["bytes_written"].as_f64().unwrap() / full["operators"][0]["keys"].as_f64().unwrap();
    for delta in &all[all.len() - 4..] {
        assert_eq!(delta["full"], false, "{delta}");
        let keys = delta["operators"][0]["keys"].as_f64().unwrap();
        let written = delta["bytes_written"].as_f64().unwrap();
        assert!(
            written < 0.25 * keys * per_key,
            "a delta wrote {written} bytes for {keys} keys; a full checkpoint would write {}",
            keys * per_key
        );
    }
    let text = sb.weir(&["checkpoints", "list", "state"]).ok().stdout;
    assert!(text.contains("delta") && text.contains("count ("), "{text}");
}

fn probe_job(input: &str, attempts: u32) -> String {
    format!(
        r#"
name = "restarts"
[source]
type = "file"
path = "{input}"
batch_size = 10
[[operators]]
id = "probe"
wasm = {probe}
parallelism = 2
input = "key"
[sink]
type = "file"
path = "out.jsonl"
[dead_letter]
path = "dead.jsonl"
[checkpoint]
interval = "20ms"
dir = "state"
[restart]
strategy = "fixed-delay"
attempts = {attempts}
delay = "50ms"
"#,
        probe = toml_path(&operator("probe"))
    )
}

#[test]
fn a_trapping_operator_is_restarted_from_the_last_checkpoint() {
    let sb = Sandbox::new();
    let mut lines = Vec::new();
    for i in 0..3000 {
        lines.push(format!(r#"{{"key": "k{}", "value": "v{i}"}}"#, i % 5));
        if i == 2000 {
            lines.push(r#"{"key": "k1", "value": "panic-once"}"#.to_string());
        }
        if i == 100 || i == 2900 {
            lines.push(format!(
                r#"{{"key": "k2", "value": "bad", "timestamp": {i}}}"#
            ));
        }
    }
    sb.write("in.jsonl", lines.join("\n"));
    let run = sb.run_job(&probe_job("in.jsonl", 2)).ok();
    assert!(run.stderr.contains("restart 1 of 2"), "{}", run.stderr);
    assert!(run.stderr.contains("panicked"), "{}", run.stderr);
    // Every item exactly once, in order per key.
    let per_key = probe_items(&sb.read("out.jsonl"));
    for k in 0..5 {
        let mut want: Vec<String> = (0..3000)
            .filter(|i| i % 5 == k)
            .map(|i| format!("v{i}"))
            .collect();
        if k == 1 {
            let at = want.iter().position(|v| v == "v2001").unwrap();
            want.insert(at, "panic-once".to_string());
        }
        assert_eq!(per_key.get(&format!("k{k}")), Some(&want), "key k{k}");
    }
    // Dead letters are at-least-once: both bad events are there after the restart.
    let dead = sb.read("dead.jsonl");
    for ts in [100, 2900] {
        assert!(dead.contains(&format!("\"timestamp\":{ts}")), "{dead}");
    }
}

#[test]
fn exhausted_restarts_fail_with_the_operator_and_the_guest_error() {
    let sb = Sandbox::new();
    let input: String = (0..200)
        .map(|i| {
            format!(
                "{{\"key\": \"k\", \"value\": \"{}\"}}\n",
                if i == 150 { "panic" } else { "x" }
            )
        })
        .collect();
    sb.write("in.jsonl", input);
    sb.run_job(&probe_job("in.jsonl", 2)).fails_with(&[
        "operator `probe` subtask",
        "probe was asked to panic",
        "gave up after 2 restarts",
    ]);
    // The checkpoints are intact and listed.
    sb.weir(&["checkpoints", "list", "state"]).ok();
}

#[test]
fn fresh_and_from_checkpoint() {
    let sb = Sandbox::new();
    sb.write("in.jsonl", "{\"key\": \"a\", \"value\": \"1\"}\n");
    let job = format!(
        "name = \"f\"\n[source]\ntype = \"file\"\npath = \"in.jsonl\"\n[[operators]]\nid = \"c\"\nwasm = {}\ninput = \"key\"\n[sink]\ntype = \"file\"\npath = \"out.jsonl\"\n[checkpoint]\ninterval = \"1s\"\ndir = \"state\"\n",
        toml_path(&operator("keyed-count"))
    );
    sb.run_job(&job).ok();
    assert_eq!(
        sb.read("out.jsonl"),
        "{\"key\":\"a\",\"value\":\"1\",\"timestamp\":0}\n"
    );
    // The job finished: running it again does nothing and keeps the output.
    let again = sb.weir(&["run", "job.toml"]).ok();
    assert!(
        again.stderr.contains("already finished"),
        "{}",
        again.stderr
    );
    assert_eq!(sb.read("out.jsonl").lines().count(), 1);
    // --fresh starts over (and says so).
    let fresh = sb.weir(&["run", "job.toml", "--fresh"]).ok();
    assert!(fresh.stderr.contains("--fresh"), "{}", fresh.stderr);
    assert_eq!(sb.read("out.jsonl").lines().count(), 1);
    sb.weir(&["run", "job.toml", "--from-checkpoint", "999"])
        .fails_with(&["no completed checkpoint 999"]);
    sb.weir(&["checkpoints", "list", "nowhere"])
        .fails_with(&["nowhere", "not a weir state directory"]);
}

#[test]
fn at_least_once_loses_nothing_across_kills() {
    let expected = reference(2);
    let sb = Sandbox::new();
    let job = counting_job_in_mode(2, Some(8000), "at-least-once");
    sb.write("job.toml", &job);
    let mut rng = Rng::from_env();
    for _ in 0..3 {
        let mut child = sb.cmd(&["run", "job.toml"]).start();
        // Killed at a random moment (the job runs for seconds).
        child.exit_within(Duration::from_millis(rng.range(300, 900)));
        child.kill();
    }
    sb.weir(&["run", "job.toml"]).ok();
    let got = sorted_lines(&sb.read("out/result.jsonl"));
    let mut missing = expected.clone();
    missing.retain(|line| got.binary_search(line).is_err());
    assert!(
        missing.is_empty(),
        "{} lines lost, e.g. {:?}",
        missing.len(),
        missing.first()
    );
    assert!(got.len() >= expected.len());
}

#[test]
fn restoring_an_older_checkpoint_rolls_the_output_back() {
    let expected = reference(2);
    let sb = Sandbox::new();
    sb.write("job.toml", counting_job(2, Some(8000)));
    let mut child = sb.cmd(&["run", "job.toml"]).log("run.log").start();
    child.wait_for("complete in", 3);
    child.kill();
    let list = sb.weir(&["checkpoints", "list", "state", "--json"]).ok();
    let all: Vec<serde_json::Value> = serde_json::from_str(&list.stdout).unwrap();
    assert!(all.len() >= 2, "{}", list.stdout);
    let oldest = all[0]["id"].as_u64().unwrap().to_string();
    let run = sb
        .weir(&["run", "job.toml", "--from-checkpoint", &oldest])
        .ok();
    assert!(
        run.stderr
            .contains(&format!("restoring checkpoint {oldest}")),
        "{}",
        run.stderr
    );
    assert!(
        sorted_lines(&sb.read("out/result.jsonl")) == expected,
        "output differs"
    );
}

/// Event-time windows (map state, event-time timers, the watermark) over a
/// throttled generator, with checkpoints every 100 ms.
fn windows_job(parallelism: u32, rate: Option<u64>) -> String {
    format!(
        r#"
name = "windows-crash"
max_parallelism = 32

[source]
type = "generator"
count = 40000
keys = 300
value_size = 3
seed = 5
batch_size = 100
watermark_delay = "20ms"
{rate}

[[operators]]
id = "sum"
wasm = {sum}
parallelism = {parallelism}
input = "key"
config = {{ size_ms = "250" }}

[sink]
type = "file"
path = "sums.jsonl"

[dead_letter]
path = "dead.jsonl"

[checkpoint]
interval = "100ms"
dir = "state"
"#,
        rate = rate.map(|r| format!("rate = {r}")).unwrap_or_default(),
        sum = toml_path(&operator("windowed-sum")),
    )
}

#[test]
fn sigkill_and_restart_of_event_time_windows_gives_the_uninterrupted_output() {
    let sb = Sandbox::new();
    sb.run_job(&windows_job(2, None)).ok();
    let expected = sorted_lines(&sb.read("sums.jsonl"));
    // 160 windows of 250 ms over 300 keys; about 57 % of the keys fall in each window.
    assert!(expected.len() > 20_000, "{}", expected.len());
    let got = crash_until_done(
        &windows_job(2, Some(5000)),
        &windows_job(3, Some(5000)),
        10,
        "sums.jsonl",
    );
    assert_eq!(got.len(), expected.len(), "lost or duplicated windows");
    assert!(
        got == expected,
        "window sums differ from the uninterrupted run"
    );
}
