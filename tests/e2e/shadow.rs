//! Shadow runs end to end: offline (`weir shadow --from-savepoint … --input
//! …`) and live (`weir shadow start`, `status`, `stop` on a running job),
//! with a candidate identical to the live logic (no difference) and with
//! `keyed-count` 2.0.0, whose every output differs; and candidates refused
//! before anything runs.

use std::collections::BTreeSet;

use crate::harness::{counts_job, operator, root, run_and_stop_after, wait_until, Sandbox};

const CHECKPOINTS: &str = r#"
[checkpoint]
interval = "150ms"
dir = "state"
"#;

/// Recorded input for the offline replay: `n` events over keys of the
/// generator's key space (so that the savepoint has state for them).
fn recorded(n: usize) -> (String, BTreeSet<String>) {
    let mut text = String::new();
    let mut keys = BTreeSet::new();
    for i in 0..n {
        let key = format!("key-{}", (i * 7) % 40);
        text.push_str(&format!(
            "{{\"key\":\"{key}\",\"value\":\"v\",\"timestamp\":{i}}}\n"
        ));
        keys.insert(key);
    }
    (text, keys)
}

/// A savepoint of keyed-count after some of the generator's input.
fn savepoint(sb: &Sandbox) -> std::path::PathBuf {
    sb.write(
        "job.toml",
        counts_job(&operator("keyed-count"), 2, Some(4000), CHECKPOINTS),
    );
    run_and_stop_after(sb, "job.toml", &[], &[], 1000)
}

fn offline(sb: &Sandbox, candidate: &str) -> serde_json::Value {
    let sp = savepoint(sb);
    let (input, _) = recorded(300);
    sb.write("recorded.jsonl", input);
    let wasm = operator(candidate);
    let run = sb
        .weir(&[
            "shadow",
            "--from-savepoint",
            sp.to_str().unwrap(),
            "--input",
            "recorded.jsonl",
            "--operator",
            "count",
            "--wasm",
            wasm.to_str().unwrap(),
            "--diff-file",
            "diff.jsonl",
            "--json",
        ])
        .ok();
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout))
}

fn diff_lines(sb: &Sandbox, name: &str) -> Vec<serde_json::Value> {
    sb.read(name)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn offline_shadow_of_identical_logic_has_no_difference() {
    let sb = Sandbox::new();
    let s = offline(&sb, "keyed-count");
    assert_eq!(s["state"], "FINISHED");
    assert_eq!(s["counts"]["inputs"], 300);
    assert_eq!(s["counts"]["compared"], 300);
    assert_eq!(s["counts"]["equal"], 300);
    assert_eq!(s["counts"]["different"], 0);
    assert_eq!(s["counts"]["only-live"], 0);
    assert_eq!(s["counts"]["only-candidate"], 0);
    assert!(s["differences"].as_array().unwrap().is_empty());
    assert_eq!(sb.read("diff.jsonl"), "");
    // The text summary, from the job file in the current directory.
    let sp = sb.path("savepoints");
    let dir = std::fs::read_dir(&sp)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let run = sb
        .weir(&[
            "shadow",
            "--from-savepoint",
            dir.to_str().unwrap(),
            "--input",
            "recorded.jsonl",
            "--operator",
            "count",
            "--wasm",
            operator("keyed-count").to_str().unwrap(),
        ])
        .ok();
    assert!(
        run.stdout.contains("compared 300: equal 300, different 0"),
        "{}",
        run.stdout
    );
    // A candidate whose states do not fit the savepoint's is refused in one line.
    sb.weir(&[
        "shadow",
        "--from-savepoint",
        dir.to_str().unwrap(),
        "--input",
        "recorded.jsonl",
        "--operator",
        "count",
        "--wasm",
        operator("probe").to_str().unwrap(),
    ])
    .fails_with(&["the candidate", "state `count`", "does not declare"]);
}

#[test]
fn offline_shadow_of_v2_reports_every_key_seen_as_different() {
    let sb = Sandbox::new();
    let s = offline(&sb, "keyed-count-v2");
    let (_, keys) = recorded(300);
    assert_eq!(s["state"], "FINISHED");
    assert_eq!(s["counts"]["compared"], 300);
    assert_eq!(s["counts"]["different"], 300);
    assert_eq!(s["counts"]["equal"], 0);
    assert_eq!(s["candidate"]["version"], "2.0.0");
    let diffs = diff_lines(&sb, "diff.jsonl");
    assert_eq!(diffs.len(), 300);
    let seen: BTreeSet<String> = diffs
        .iter()
        .map(|d| d["key"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(seen, keys, "exactly the keys of the input");
    let mut restored = false;
    for d in &diffs {
        assert_eq!(d["kind"], "different");
        let live = d["live"]["value"].as_str().unwrap();
        let cand = d["candidate"]["value"].as_str().unwrap();
        // Both start from the savepoint's counts: v2 says the same count, and more.
        assert_eq!(cand.split(' ').next().unwrap(), live, "{d}");
        assert!(cand.contains("last_seen="), "{d}");
        restored |= live.parse::<u64>().unwrap() > 8;
        // Each difference names the recorded line it came from.
        let offset = d["offset"].as_u64().unwrap();
        let at = d["at"].as_str().unwrap();
        assert!(at.contains(&format!("line {}", offset + 1)), "{at}");
    }
    assert!(restored, "the counts went on from the savepoint's state");
}

/// Runs the job in `sb` with a shadow of `candidate`; returns the status
/// once `compared` reached `n`, and the final status after `weir shadow stop`.
fn live(sb: &Sandbox, candidate: &str, n: u64) -> (serde_json::Value, serde_json::Value) {
    sb.write(
        "job.toml",
        counts_job(&operator("keyed-count"), 2, Some(3000), CHECKPOINTS),
    );
    let mut child = sb.cmd(&["run", "job.toml"]).log("log").rest().start();
    let addr = child.rest_addr();
    let wasm = operator(candidate);
    let started = sb
        .weir(&[
            "shadow",
            "start",
            "--addr",
            &addr,
            "--operator",
            "count",
            "--wasm",
            wasm.to_str().unwrap(),
            "--diff-file",
            "diff.jsonl",
        ])
        .ok();
    assert!(started.stdout.contains("shadow run of operator `count`"));
    let status = wait_until(|| {
        let run = sb
            .weir(&["shadow", "status", "--json", "--addr", &addr])
            .ok();
        let s: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        assert!(
            s["state"] == "STARTING" || s["state"] == "RUNNING",
            "the shadow stopped: {s}"
        );
        if s["counts"]["compared"].as_u64().unwrap() >= n {
            return Ok(s);
        }
        Err(format!("too few compared: {s}"))
    });
    let stopped = sb.weir(&["shadow", "stop", "--json", "--addr", &addr]).ok();
    let stopped: serde_json::Value = serde_json::from_str(&stopped.stdout).unwrap();
    assert_eq!(stopped["state"], "STOPPED");
    sb.weir(&["stop", "--addr", &addr]).ok();
    let exit = child.wait();
    assert!(exit.success(), "{}", sb.read("log"));
    (status, stopped)
}

#[test]
fn live_shadow_of_identical_logic_has_no_difference() {
    let sb = Sandbox::new();
    let (s, stopped) = live(&sb, "keyed-count", 500);
    assert_eq!(stopped["subtasks"].as_array().unwrap().len(), 2);
    for s in [&s, &stopped] {
        let c = &s["counts"];
        assert!(c["compared"].as_u64().unwrap() >= 500, "{s}");
        assert_eq!(c["equal"], c["compared"], "{s}");
        assert_eq!(c["different"], 0);
        assert_eq!(c["only-live"], 0);
        assert_eq!(c["only-candidate"], 0);
    }
    assert_eq!(sb.read("diff.jsonl"), "");
}

#[test]
fn live_shadow_of_v2_reports_every_compared_key_as_different() {
    let sb = Sandbox::new();
    let (s, stopped) = live(&sb, "keyed-count-v2", 500);
    for s in [&s, &stopped] {
        let c = &s["counts"];
        assert!(c["compared"].as_u64().unwrap() >= 500, "{s}");
        assert_eq!(c["different"], c["compared"], "{s}");
        assert_eq!(c["equal"], 0);
        assert_eq!(c["only-live"], 0);
        assert_eq!(c["only-candidate"], 0);
        let first = s["differences"].as_array().unwrap();
        assert!(!first.is_empty());
        assert!(first[0]["offset"].is_u64(), "{}", first[0]);
    }
    let diffs = diff_lines(&sb, "diff.jsonl");
    assert!(diffs.len() as u64 >= stopped["counts"]["different"].as_u64().unwrap());
    for d in &diffs {
        assert_eq!(d["kind"], "different");
        let live = d["live"]["value"].as_str().unwrap();
        let cand = d["candidate"]["value"].as_str().unwrap();
        // The shadow's state is a copy of the live state: the counts agree.
        assert_eq!(cand.split(' ').next().unwrap(), live, "{d}");
    }
}

#[test]
fn refused_candidates_answer_at_once_and_the_job_goes_on() {
    let sb = Sandbox::new();
    sb.write(
        "job.toml",
        counts_job(&operator("keyed-count"), 1, Some(2000), CHECKPOINTS),
    );
    let binary = wat::parse_file(root().join("tests/plugins/hostile/wrong-world.wat")).unwrap();
    sb.write("wrong-world.wasm", binary);
    let mut child = sb.cmd(&["run", "job.toml"]).log("log").rest().start();
    let addr = child.rest_addr();
    let start = |wasm: &str| {
        sb.weir(&[
            "shadow",
            "start",
            "--addr",
            &addr,
            "--operator",
            "count",
            "--wasm",
            wasm,
        ])
    };
    start("wrong-world.wasm").fails_with(&[
        "refused",
        "wrong-world.wasm",
        "does not export `weir:operator/guest@0.1.0`",
    ]);
    // A candidate that does not declare the live operator's state `count`.
    let probe = operator("probe");
    start(probe.to_str().unwrap()).fails_with(&["refused", "state `count`", "does not declare"]);
    sb.weir(&[
        "shadow",
        "start",
        "--addr",
        &addr,
        "--operator",
        "nope",
        "--wasm",
        "x.wasm",
    ])
    .fails_with(&["no operator `nope`"]);
    sb.weir(&["shadow", "status", "--addr", &addr])
        .fails_with(&["has no shadow run"]);
    // The job never noticed.
    sb.weir(&["stop", "--addr", &addr]).ok();
    assert!(child.wait().success(), "{}", sb.read("log"));
}

/// File source → `gate` → `map` (the shadowed operator, ID `up`) → file
/// sink, checkpoints, REST; `limits` for `up`. The input holds at
/// `gate:one` until the shadow has been asked for, then has 1500 events,
/// `special`, 500 more, and holds again at `gate:two`, then 10 more.
/// Returns how many events reach the sink (all but the gates').
fn gated(sb: &Sandbox, special: &str, limits: &str) -> usize {
    let mut text = String::from("{\"key\":\"k\",\"value\":\"gate:one\"}\n");
    for i in 0..2000 {
        if i == 1500 {
            text += &format!("{{\"key\":\"k\",\"value\":\"{special}\"}}\n");
        }
        text += &format!("{{\"key\":\"k{}\",\"value\":\"v{i}\"}}\n", i % 10);
    }
    text += "{\"key\":\"k\",\"value\":\"gate:two\"}\n";
    for i in 0..10 {
        text += &format!("{{\"key\":\"k\",\"value\":\"t{i}\"}}\n");
    }
    sb.write("in.jsonl", text);
    std::fs::create_dir_all(sb.path("gates")).unwrap();
    sb.write(
        "job.toml",
        format!(
            r#"name = "gated"

[source]
type = "file"
path = "in.jsonl"
batch_size = 8

[[operators]]
id = "gate"
wasm = {gate}

[operators.capabilities]
dirs = {{ "/gates" = "gates" }}

[operators.limits]
cpu_per_call = "10m"

[[operators]]
id = "up"
wasm = {map}

[operators.limits]
{limits}

[sink]
type = "file"
path = "out.jsonl"

[checkpoint]
interval = "100ms"
dir = "state"

[rest]
addr = "127.0.0.1:0"
"#,
            gate = crate::harness::toml_path(&operator("gate")),
            map = crate::harness::toml_path(&operator("map")),
        ),
    );
    2011
}

/// Runs the gated job with a shadow of `candidate` (queue `queue`) until
/// its status has `state`; opens the gates and checks the job's output is
/// whole. Returns that status.
fn gated_shadow(sb: &Sandbox, candidate: &str, queue: &str, state: &str) -> serde_json::Value {
    // The coordinator's log says when it triggers a barrier.
    let mut child = sb
        .cmd(&["run", "job.toml"])
        .log_level("info,weir_host::engine::coordinator=debug")
        .log("log")
        .rest()
        .start();
    let addr = child.rest_addr();
    child.wait_for("gate one holds", 1);
    let wasm = operator(candidate);
    sb.weir(&[
        "shadow",
        "start",
        "--addr",
        &addr,
        "--operator",
        "up",
        "--wasm",
        wasm.to_str().unwrap(),
        "--queue",
        queue,
    ])
    .ok();
    // A barrier triggered once `gate:one` holds is behind it and far ahead
    // of the special event: the shadow joins there. (One checkpoint is
    // pending at a time: one still pending then is stuck behind the gate.)
    let held_at = sb.read("log").find("gate one holds").unwrap();
    wait_until(|| {
        let text = sb.read("log");
        let pending =
            text.matches("triggering barrier").count() > text.matches(" complete in ").count();
        if pending || text[held_at..].contains("triggering barrier") {
            return Ok(());
        }
        Err(format!("no barrier was triggered:\n{text}"))
    });
    sb.write("gates/one", "");
    let status = wait_until(|| {
        let run = sb
            .weir(&["shadow", "status", "--json", "--addr", &addr])
            .ok();
        let s: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        if s["state"] == state {
            return Ok(s);
        }
        assert!(
            s["state"] == "STARTING" || s["state"] == "RUNNING",
            "unexpected: {s}"
        );
        Err(format!("never {state}: {s}\n{}", sb.read("log")))
    });
    // The job never noticed: it runs to the end with all its output.
    sb.write("gates/two", "");
    assert!(child.wait().success(), "{}", sb.read("log"));
    status
}

#[test]
fn a_failing_candidate_fails_the_shadow_and_never_the_job() {
    let sb = Sandbox::new();
    let events = gated(&sb, "boom", "");
    let s = gated_shadow(&sb, "hostile-trap", "1024", "FAILED");
    let reason = s["reason"].as_str().unwrap();
    assert!(
        reason.contains("explode") && reason.contains("the job goes on"),
        "{reason}"
    );
    assert_eq!(sb.read("out.jsonl").lines().count(), events);
}

#[test]
fn a_shadow_that_falls_behind_stops_and_the_job_goes_on() {
    let sb = Sandbox::new();
    // The candidate spins on `spin` for a minute: its queue of 1 fills.
    let events = gated(&sb, "spin", "cpu_per_call = \"60s\"");
    let s = gated_shadow(&sb, "hostile-spin", "1", "FELL_BEHIND");
    let reason = s["reason"].as_str().unwrap();
    assert!(
        reason.contains("fell behind") && reason.contains("queue of 1 batches was full"),
        "{reason}"
    );
    assert_eq!(sb.read("out.jsonl").lines().count(), events);
}

#[test]
fn a_job_without_periodic_checkpoints_refuses_a_shadow_run() {
    let sb = Sandbox::new();
    sb.write(
        "job.toml",
        counts_job(&operator("keyed-count"), 1, Some(2000), ""),
    );
    let mut child = sb.cmd(&["run", "job.toml"]).log("log").rest().start();
    let addr = child.rest_addr();
    let wasm = operator("keyed-count");
    sb.weir(&[
        "shadow",
        "start",
        "--addr",
        &addr,
        "--operator",
        "count",
        "--wasm",
        wasm.to_str().unwrap(),
    ])
    .fails_with(&[
        "refused",
        "no periodic checkpoints",
        "[checkpoint] interval",
    ]);
    sb.weir(&["shadow", "stop", "--addr", &addr])
        .fails_with(&["has no shadow run"]);
    sb.weir(&["stop", "--addr", &addr]).ok();
    assert!(child.wait().success(), "{}", sb.read("log"));
}
