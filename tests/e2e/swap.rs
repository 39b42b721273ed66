//! Live swaps (`weir swap`, `POST /jobs/{id}/operators/{op}/swap`): the new
//! logic takes over at a checkpoint barrier with the state as of it; on
//! probation its output is held; a failure rolls back to the barrier with
//! the old logic; refusals come before the barrier; a crash after a
//! completed swap restarts with the new logic, during probation with the old.
//!
//! Every job here counts generated events per key (`keyed-count` 1.0.0
//! emits `N`, 2.0.0 `N last_seen=T`) into an exactly-once file sink. The
//! reference is the same job run without a swap: every key's counts must
//! be 1, 2, … its number of events, each once.

use std::collections::BTreeMap;

use crate::harness::{http, operator, toml_path, wait_until, Process, Sandbox};

const EVENTS: u64 = 60_000;

fn job(rate: u64, count: u64) -> String {
    format!(
        r#"name = "swapped"

[source]
type = "generator"
count = {count}
keys = 200
seed = 11
batch_size = 256
rate = {rate}

[[operators]]
id = "count"
wasm = {wasm}
parallelism = 2
input = "key"

[sink]
type = "file"
path = "out.jsonl"

[checkpoint]
interval = "100ms"
dir = "state"

[rest]
addr = "127.0.0.1:0"
"#,
        wasm = toml_path(&operator("keyed-count")),
    )
}

/// Per key, its counts in output order, and whether each came from 2.0.0.
fn counts(text: &str) -> BTreeMap<String, Vec<(u64, bool)>> {
    let mut out: BTreeMap<String, Vec<(u64, bool)>> = BTreeMap::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
        let value = v["value"].as_str().unwrap();
        let n: u64 = value.split(' ').next().unwrap().parse().unwrap();
        out.entry(v["key"].as_str().unwrap().to_string())
            .or_default()
            .push((n, value.contains("last_seen=")));
    }
    out
}

/// The counts of an uninterrupted run with no swap, once per test run.
fn reference() -> BTreeMap<String, u64> {
    static REF: std::sync::OnceLock<BTreeMap<String, u64>> = std::sync::OnceLock::new();
    REF.get_or_init(|| {
        let sb = Sandbox::new();
        sb.run_job(&job(10_000_000, EVENTS)).ok();
        counts(&sb.read("out.jsonl"))
            .into_iter()
            .map(|(k, v)| (k, v.len() as u64))
            .collect()
    })
    .clone()
}

/// Asserts that every key counts 1..=its number of events exactly once, as
/// the reference does; returns how many lines 2.0.0 wrote.
#[track_caller]
fn assert_every_count_once(text: &str) -> usize {
    let got = counts(text);
    let expected = reference();
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    let mut v2 = 0;
    for (key, seq) in &got {
        let ns: Vec<u64> = seq.iter().map(|(n, _)| *n).collect();
        let want: Vec<u64> = (1..=expected[key]).collect();
        assert_eq!(ns, want, "key {key}: counts missing, twice or out of order");
        // Once 2.0.0 took over a key, 1.0.0 never writes it again.
        let first_v2 = seq.iter().position(|(_, b)| *b).unwrap_or(seq.len());
        assert!(
            seq[first_v2..].iter().all(|(_, b)| *b),
            "key {key}: 1.0.0 output after 2.0.0's"
        );
        v2 += seq.len() - first_v2;
    }
    v2
}

fn swap_status(addr: &str, id: &str) -> serde_json::Value {
    let (status, s) = http(addr, "GET", &format!("/jobs/swapped/swaps/{id}"), "");
    assert_eq!(status, 200, "{s}");
    s
}

#[test]
fn a_live_swap_hands_every_count_to_the_new_logic() {
    let sb = Sandbox::new();
    sb.write("job.toml", job(15_000, EVENTS));
    let mut child = sb.cmd(&["run", "job.toml"]).log("log").rest().start();
    let addr = child.rest_addr();
    let v2 = operator("keyed-count-v2");
    let swap = sb
        .weir(&[
            "swap",
            "--operator",
            "count",
            "--wasm",
            v2.to_str().unwrap(),
            "--probation",
            "3000 events",
            "--addr",
            &addr,
        ])
        .ok();
    assert!(swap.stdout.starts_with("COMPLETED"), "{}", swap.stdout);
    assert!(swap.stdout.contains("keyed-count 2.0.0"), "{}", swap.stdout);
    // The job's status names the logic it runs now, and the swap.
    let (_, job) = http(&addr, "GET", "/jobs/swapped", "");
    let op = &job["operators"][0];
    assert_eq!(op["version"], "2.0.0", "{job}");
    assert_eq!(op["swaps"][0]["status"], "COMPLETED", "{job}");
    assert_eq!(op["swaps"][0]["from"]["version"], "1.0.0", "{job}");
    assert_eq!(
        op["swaps"][0]["to"]["wasm-sha256"], op["wasm-sha256"],
        "{job}"
    );
    let status = sb.weir(&["status", "--addr", &addr]).ok();
    assert!(
        status.stdout.contains("keyed-count 2.0.0") && status.stdout.contains("COMPLETED"),
        "{}",
        status.stdout
    );
    assert!(child.wait().success(), "{}", sb.read("log"));
    let v2_lines = assert_every_count_once(&sb.read("out.jsonl"));
    assert!(v2_lines > 0, "2.0.0 wrote nothing");
}

#[test]
fn a_swap_that_traps_on_probation_rolls_back_to_the_old_logic() {
    let sb = Sandbox::new();
    // No [restart]: a rollback must not use restart attempts.
    sb.write("job.toml", job(15_000, EVENTS));
    let mut child = sb.cmd(&["run", "job.toml"]).log("log").rest().start();
    let addr = child.rest_addr();
    let trap = operator("swap-trap");
    let error = sb
        .weir(&[
            "swap",
            "--operator",
            "count",
            "--wasm",
            trap.to_str().unwrap(),
            "--probation",
            "1000000 events",
            "--addr",
            &addr,
        ])
        .fails_with(&["ROLLED_BACK", "keyed-count 1.0.0", "swap-trap: event 1000"]);
    eprintln!("{error}");
    let (_, job) = http(&addr, "GET", "/jobs/swapped", "");
    let op = &job["operators"][0];
    assert_eq!(op["version"], "1.0.0", "{job}");
    assert_eq!(op["swaps"][0]["status"], "ROLLED_BACK", "{job}");
    assert_eq!(
        job["attempt"], 0,
        "a rollback used a restart attempt: {job}"
    );
    assert!(child.wait().success(), "{}", sb.read("log"));
    // The output equals a run that never swapped: the trap's output was held, then dropped.
    let text = sb.read("out.jsonl");
    assert_eq!(assert_every_count_once(&text), 0);
    assert!(!text.contains("last_seen"));
}

#[test]
fn a_swap_that_dead_letters_more_than_its_share_rolls_back() {
    let sb = Sandbox::new();
    let mut text = job(15_000, EVENTS);
    text.push_str("\n[dead_letter]\npath = \"dead.jsonl\"\n");
    sb.write("job.toml", &text);
    let mut child = sb.cmd(&["run", "job.toml"]).log("log").rest().start();
    let addr = child.rest_addr();
    let reject = operator("swap-reject");
    sb.weir(&[
        "swap",
        "--operator",
        "count",
        "--wasm",
        reject.to_str().unwrap(),
        "--probation",
        "1000000 events",
        "--max-dead-letter-share",
        "0.05",
        "--addr",
        &addr,
    ])
    .fails_with(&[
        "ROLLED_BACK",
        "dead-letter output on probation",
        "share of 5%",
    ]);
    assert!(child.wait().success(), "{}", sb.read("log"));
    assert_eq!(assert_every_count_once(&sb.read("out.jsonl")), 0);
    // The dead-letter file is at-least-once: what the new logic rejected
    // on probation stays in it, and says why it rolled back.
    assert!(sb
        .read("dead.jsonl")
        .contains("swap-reject rejects every event"));
}

#[test]
fn swaps_are_refused_before_the_barrier() {
    let sb = Sandbox::new();
    sb.write("job.toml", job(20_000, EVENTS));
    let mut child = sb.cmd(&["run", "job.toml"]).log("log").rest().start();
    let addr = child.rest_addr();
    let other = wat::parse_str(
        r#"(component
            (core module $m (func (export "run") (result i32) i32.const 0))
            (core instance $i (instantiate $m))
            (func (export "run") (result u32) (canon lift (core func $i "run"))))"#,
    )
    .unwrap();
    let other = sb.write("other.wasm", other);
    let map = operator("count-map");
    let v2 = operator("keyed-count-v2");
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (
            vec!["--wasm", other.to_str().unwrap()],
            vec!["other.wasm", "weir:operator/guest"],
        ),
        (
            vec!["--wasm", map.to_str().unwrap()],
            vec!["state `count` was value state", "map state"],
        ),
        (vec!["--wasm", "missing.wasm"], vec!["missing.wasm"]),
        (
            vec!["--wasm", v2.to_str().unwrap(), "--probation", "soon"],
            vec!["--probation", "soon"],
        ),
    ];
    for (args, needles) in cases {
        let mut all = vec!["swap", "--operator", "count", "--addr", &addr];
        all.extend(args);
        sb.weir(&all).fails_with(&needles);
    }
    sb.weir(&[
        "swap",
        "--operator",
        "nope",
        "--wasm",
        v2.to_str().unwrap(),
        "--addr",
        &addr,
    ])
    .fails_with(&["no operator `nope`", "count"]);
    // The job never noticed.
    let (_, swaps) = http(&addr, "GET", "/jobs/swapped/swaps", "");
    assert_eq!(swaps["swaps"], serde_json::json!([]), "{swaps}");
    assert!(child.wait().success(), "{}", sb.read("log"));
    let text = sb.read("out.jsonl");
    assert_eq!(assert_every_count_once(&text), 0);
}

/// Starts the job, asks for a swap to 2.0.0 over REST with `probation`,
/// and waits until it is in `state`; returns the child and the REST address.
fn swap_until(sb: &Sandbox, probation: &str, state: &str) -> Process {
    sb.write("job.toml", job(8_000, EVENTS));
    let mut child = sb.cmd(&["run", "job.toml"]).log("log").rest().start();
    let addr = child.rest_addr();
    let v2 = operator("keyed-count-v2");
    let body = serde_json::json!({ "wasm": v2, "probation": probation }).to_string();
    let (status, r) = http(&addr, "POST", "/jobs/swapped/operators/count/swap", &body);
    assert_eq!(status, 202, "{r}");
    let id = r["request-id"].as_str().unwrap().to_string();
    wait_until(|| {
        let s = swap_status(&addr, &id);
        if s["status"] == state {
            return Ok(());
        }
        assert_ne!(s["status"], "ROLLED_BACK", "{s}");
        Err(format!("never {state}: {s}"))
    });
    child
}

#[test]
fn a_crash_after_a_completed_swap_restarts_with_the_new_logic() {
    let sb = Sandbox::new();
    let mut child = swap_until(&sb, "500 events", "COMPLETED");
    // A checkpoint after the one that completed the swap, then SIGKILL.
    let done = sb.read("log").matches("complete in").count();
    child.wait_for("complete in", done + 1);
    child.kill();
    let before = sb.read("out.jsonl");
    assert!(
        before.contains("last_seen"),
        "no 2.0.0 output before the kill"
    );
    let again = sb.weir(&["run", "job.toml"]).ok();
    assert!(again.stderr.contains("swapped in live"), "{}", again.stderr);
    let text = sb.read("out.jsonl");
    assert!(text.starts_with(&before[..before.len().min(1000)]));
    // Everything after the restart is 2.0.0's.
    let after: Vec<&str> = text[before.len()..].lines().collect();
    assert!(!after.is_empty() && after.iter().all(|l| l.contains("last_seen")));
    assert!(assert_every_count_once(&text) > 0);
}

#[test]
fn a_crash_during_probation_restarts_from_the_swap_barrier_with_the_old_logic() {
    let sb = Sandbox::new();
    let mut child = swap_until(&sb, "1000000000 events", "PROBATION");
    // Checkpoints on probation complete, but publish nothing.
    let done = sb.read("log").matches("complete in").count();
    child.wait_for("complete in", done + 2);
    child.kill();
    assert!(!sb.read("out.jsonl").contains("last_seen"));
    let again = sb.weir(&["run", "job.toml"]).ok();
    assert!(
        again.stderr.contains("while a live swap was on probation"),
        "{}",
        again.stderr
    );
    let text = sb.read("out.jsonl");
    assert!(
        !text.contains("last_seen"),
        "2.0.0's held output was published"
    );
    assert_eq!(assert_every_count_once(&text), 0);
}

#[test]
fn a_swap_whose_migrate_fails_on_a_key_is_refused_naming_it() {
    let sb = Sandbox::new();
    let mut text = job(20_000, EVENTS);
    text.push_str("\n[savepoint]\ndir = \"savepoints\"\n");
    sb.write("job.toml", &text);
    // A savepoint of keyed-count 1.0.0 with one value 3.0.0 cannot migrate.
    let mut child = sb.cmd(&["run", "job.toml"]).log("log").rest().start();
    let addr = child.rest_addr();
    child.wait_for("complete in", 2);
    let sp = sb
        .weir(&["stop", "--savepoint", "sp", "--addr", &addr])
        .ok()
        .stdout
        .trim()
        .to_string();
    assert!(child.wait().success());
    let exported = sb
        .weir(&[
            "state",
            "export",
            &sp,
            "--operator",
            "count",
            "--state",
            "count",
        ])
        .ok()
        .stdout;
    sb.write(
        "count.jsonl",
        format!("{exported}{{\"key\":\"poison\",\"value\":\"oops\"}}\n"),
    );
    sb.weir(&[
        "state",
        "import",
        &sp,
        "--operator",
        "count",
        "--state",
        "count",
        "--input",
        "count.jsonl",
        "--output",
        "poisoned",
    ])
    .ok();
    let mut child = sb
        .cmd(&["run", "job.toml", "--from-savepoint", "poisoned"])
        .log("log2")
        .rest()
        .start();
    let addr = child.rest_addr();
    child.wait_for("complete in", 1);
    let v3 = operator("keyed-count-v3");
    sb.weir(&[
        "swap",
        "--operator",
        "count",
        "--wasm",
        v3.to_str().unwrap(),
        "--addr",
        &addr,
    ])
    .fails_with(&["migrate of state `count`", "key `poison`", "refused"]);
    let (_, swaps) = http(&addr, "GET", "/jobs/swapped/swaps", "");
    assert_eq!(swaps["swaps"], serde_json::json!([]), "{swaps}");
    assert!(child.wait().success(), "{}", sb.read("log2"));
    assert!(!sb.read("out.jsonl").contains("last_seen"));
}
