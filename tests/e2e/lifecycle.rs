//! The lifecycle of checkpoints and savepoints when things go wrong: a
//! savepoint that cannot be written fails alone (FAILED over REST, a
//! non-zero CLI exit, nothing left behind) and the job goes on; a checkpoint
//! stuck behind a slow operator times out, is reported, and does not hold up
//! later checkpoints or savepoint requests; `[checkpoint] tolerable_failures`
//! counts checkpoint failures in a row before the job fails over; a stop
//! whose savepoint cannot be written resumes the job from the checkpoint
//! its barrier completed; the queue of savepoint requests is bounded.
//!
//! Nothing here waits on time: the `gate` operator (tests/plugins/gate)
//! holds the stream until the test writes a file, and logs `gate NAME holds`
//! when it starts to, so any barrier triggered after that line is stuck
//! behind it until the test opens the gate.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::harness::{
    assert_counts_continue, counts, final_counts, http, operator, savepoint_answer, toml_path,
    wait_until, Process, Sandbox,
};

/// Events after each gate: far more than the channels hold (batches of 8),
/// so the source is still reading them while the gate holds.
const EVENTS: usize = 2000;

/// For each gate name: the event `gate:NAME`, then [`EVENTS`] keyed events.
fn input(gates: &[&str]) -> String {
    let mut text = String::new();
    let mut i = 0;
    for gate in gates {
        text += &format!("{{\"key\":\"k0\",\"value\":\"gate:{gate}\"}}\n");
        for _ in 0..EVENTS {
            text += &format!("{{\"key\":\"k{}\",\"value\":\"v{i}\"}}\n", i % 10);
            i += 1;
        }
    }
    text
}

/// Events per key in `input` (the gate events are dropped by the gate).
fn totals(input: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for line in input.lines().filter(|l| !l.contains("gate:")) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        *out.entry(v["key"].as_str().unwrap().to_string())
            .or_insert(0) += 1;
    }
    out
}

/// File source → `gate` → `keyed-count` (parallelism 2) → file sink
/// `output`, REST on a free port, with the TOML tables `extra`.
fn job(output: &str, extra: &str) -> String {
    format!(
        r#"name = "gated"
max_parallelism = 16

[source]
type = "file"
path = "in.jsonl"
batch_size = 8

[[operators]]
id = "gate"
wasm = {gate}

[operators.capabilities]
dirs = {{ "/gates" = "gates" }}

# The gate waits for the test, however slow the machine.
[operators.limits]
cpu_per_call = "10m"

[[operators]]
id = "count"
wasm = {count}
parallelism = 2
input = "key"

[sink]
type = "file"
path = "{output}"

[rest]
addr = "127.0.0.1:0"
{extra}
"#,
        gate = toml_path(&operator("gate")),
        count = toml_path(&operator("keyed-count")),
    )
}

/// Starts the job in `sb` with gates closed; returns it and its REST address.
fn start(sb: &Sandbox) -> (Process, String) {
    std::fs::create_dir_all(sb.path("gates")).unwrap();
    let mut child = sb.cmd(&["run", "job.toml"]).log("log").rest().start();
    let addr = child.rest_addr();
    (child, addr)
}

/// Posts a savepoint request into `dir`; returns its ID.
fn request_savepoint(addr: &str, dir: &str) -> String {
    let (status, r) = http(
        addr,
        "POST",
        "/jobs/gated/savepoints",
        &format!(r#"{{"target-directory": {dir:?}}}"#),
    );
    assert_eq!(status, 202, "{r}");
    r["request-id"].as_str().unwrap().to_string()
}

/// The entries of directory `dir`.
fn entries(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn a_savepoint_that_cannot_be_written_fails_alone_and_the_job_goes_on() {
    let sb = Sandbox::new();
    let text = input(&["one", "two", "three"]);
    sb.write("in.jsonl", &text);
    sb.write("job.toml", job("out.jsonl", ""));
    let (mut child, addr) = start(&sb);
    child.wait_for("gate one holds", 1);

    // Its barrier is stuck behind the gate; meanwhile its directory goes away.
    let id = request_savepoint(&addr, "doomed");
    let doomed = sb.path("doomed");
    let partial = wait_until(|| {
        if let Some(name) = doomed
            .is_dir()
            .then(|| entries(&doomed))
            .and_then(|e| e.into_iter().next())
        {
            return Ok(doomed.join(name));
        }
        Err(format!("no savepoint directory in {doomed:?}"))
    });
    std::fs::remove_dir_all(&partial).unwrap();
    sb.write("gates/one", "");
    let s = savepoint_answer(&addr, "gated", &id);
    assert_eq!(s["status"], "FAILED", "{s}");
    let failure = s["failure"].as_str().unwrap();
    assert!(
        failure.contains("cannot write")
            && failure.contains(&*partial.file_name().unwrap().to_string_lossy()),
        "{failure}"
    );
    assert!(!failure.contains('\n'), "{failure}");
    assert_eq!(entries(&doomed), Vec::<String>::new(), "left behind");
    let (_, status) = http(&addr, "GET", "/jobs/gated", "");
    assert_eq!(status["state"], "RUNNING", "{status}");

    // Through the CLI: a directory under a regular file; a non-zero exit with the reason.
    sb.write("blocker", "a file");
    let run = sb.weir(&[
        "savepoint",
        "trigger",
        "--addr",
        &addr,
        "--dir",
        "blocker/sp",
    ]);
    assert!(!run.status.success(), "{}", run.stderr);
    assert!(
        run.stderr.contains("failed") && run.stderr.contains("blocker"),
        "{}",
        run.stderr
    );
    assert_eq!(sb.read("blocker"), "a file");

    // A savepoint to a good directory then succeeds (gate two holds it back
    // until it is asked for, gate three the job's end until it is answered).
    let trigger = sb
        .cmd(&["savepoint", "trigger", "--addr", &addr, "--dir", "good"])
        .start();
    wait_requested(&addr, "good");
    sb.write("gates/two", "");
    let out = trigger.finish();
    let stderr = &out.stderr;
    assert!(out.status.success(), "{stderr}\n{}", sb.read("log"));
    let good = PathBuf::from(out.stdout.trim());
    assert!(good.starts_with(sb.path("good")), "{good:?}");
    sb.weir(&["savepoint", "verify", good.to_str().unwrap()])
        .ok();
    sb.write("gates/three", "");
    let status = child.wait();
    assert!(status.success(), "{status}:\n{}", sb.read("log"));

    // It restores: the counts go on from where it was taken, to the true totals.
    sb.write("job.toml", job("restored.jsonl", ""));
    sb.weir(&[
        "run",
        "job.toml",
        "--from-savepoint",
        good.to_str().unwrap(),
    ])
    .ok();
    let restored = sb.read("restored.jsonl");
    let events = text.lines().filter(|l| !l.contains("gate:")).count();
    assert!(
        !restored.is_empty() && restored.lines().count() < events,
        "the restored run read from the savepoint's position: {} of {events} events",
        restored.lines().count()
    );
    let expected = totals(&text);
    for (key, n) in final_counts(&restored) {
        assert_eq!(n, expected[&key], "key {key}");
    }
    assert!(
        counts(&restored).any(|(_, n)| n > 1),
        "the state was restored"
    );
}

/// Waits until a savepoint request into a directory ending in `dir` is listed.
fn wait_requested(addr: &str, dir: &str) {
    wait_until(|| {
        let (_, all) = http(addr, "GET", "/jobs/gated/savepoints", "");
        if all["savepoints"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["target-directory"].as_str().unwrap().ends_with(dir))
        {
            return Ok(());
        }
        Err(format!("no request into {dir}"))
    })
}

#[test]
fn a_stop_whose_savepoint_cannot_be_written_resumes_the_job() {
    let sb = Sandbox::new();
    let text = input(&["one", "two"]);
    sb.write("in.jsonl", &text);
    // Checkpoints only at the barriers of savepoints, stops and the end.
    sb.write(
        "job.toml",
        job("out.jsonl", "[checkpoint]\ninterval = \"1h\"\n"),
    );
    let (mut child, addr) = start(&sb);
    child.wait_for("gate one holds", 1);
    let (status, r) = http(
        &addr,
        "POST",
        "/jobs/gated/stop",
        r#"{"target-directory": "doomed"}"#,
    );
    assert_eq!(status, 202, "{r}");
    let id = r["request-id"].as_str().unwrap().to_string();
    let doomed = sb.path("doomed");
    let partial = wait_until(|| {
        if let Some(name) = doomed
            .is_dir()
            .then(|| entries(&doomed))
            .and_then(|e| e.into_iter().next())
        {
            return Ok(doomed.join(name));
        }
        Err(format!("no savepoint directory in {doomed:?}"))
    });
    std::fs::remove_dir_all(&partial).unwrap();
    sb.write("gates/one", "");
    let s = savepoint_answer(&addr, "gated", &id);
    assert_eq!(s["status"], "FAILED", "{s}");
    assert!(
        s["failure"].as_str().unwrap().contains("cannot write"),
        "{s}"
    );
    assert_eq!(entries(&doomed), Vec::<String>::new(), "left behind");
    // The job resumes from the stop's checkpoint, without a restart strategy.
    child.wait_for("the job resumes from checkpoint", 1);
    let (_, status) = http(&addr, "GET", "/jobs/gated", "");
    assert_eq!(status["state"], "RUNNING", "{status}");
    assert_eq!(status["attempt"], 0, "{status}");

    // A second stop, to a good directory, ends it.
    let stop = sb
        .cmd(&["stop", "--addr", &addr, "--savepoint", "good"])
        .start();
    wait_requested(&addr, "good");
    sb.write("gates/two", "");
    let out = stop.finish();
    let stderr = &out.stderr;
    assert!(out.status.success(), "{stderr}\n{}", sb.read("log"));
    let good = PathBuf::from(out.stdout.trim());
    let status = child.wait();
    assert!(status.success(), "{status}:\n{}", sb.read("log"));

    // Nothing was lost or repeated across the resume: restore and finish.
    sb.weir(&[
        "run",
        "job.toml",
        "--from-savepoint",
        good.to_str().unwrap(),
    ])
    .ok();
    let all = sb.read("out.jsonl");
    assert_counts_continue(&all);
    assert_eq!(final_counts(&all), totals(&text));
}

#[test]
fn a_stuck_checkpoint_times_out_and_later_ones_complete() {
    let sb = Sandbox::new();
    let text = input(&["one"]);
    sb.write("in.jsonl", &text);
    sb.write(
        "job.toml",
        job(
            "out.jsonl",
            r#"
[checkpoint]
interval = "50ms"
timeout = "1s"
tolerable_failures = 1000

[restart]
attempts = 3
delay = "10ms"
"#,
        ),
    );
    let (mut child, addr) = start(&sb);
    child.wait_for("gate one holds", 1);
    child.wait_for("timed out after 1s", 1);

    // Reported over REST, naming what it waited for.
    let (_, status) = http(&addr, "GET", "/jobs/gated", "");
    assert_eq!(status["state"], "RUNNING", "{status}");
    assert!(
        status["failed-checkpoints"].as_u64().unwrap() >= 1,
        "{status}"
    );
    let reason = status["last-failed-checkpoint"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("timed out after 1s") && reason.contains("operator `gate` subtask 0"),
        "{reason}"
    );

    // A savepoint asked for while a checkpoint is stuck gets an answer.
    let run = sb.weir(&[
        "savepoint",
        "trigger",
        "--addr",
        &addr,
        "--dir",
        "sp",
        "--timeout",
        "120",
    ]);
    assert!(!run.status.success(), "{}", run.stderr);
    assert!(
        run.stderr.contains("the savepoint of job `gated` failed"),
        "{}",
        run.stderr
    );
    let (_, all) = http(&addr, "GET", "/jobs/gated/savepoints", "");
    assert_eq!(all["savepoints"][0]["status"], "FAILED", "{all}");

    // Once the gate opens, checkpoints complete again and the job ends with
    // every event counted exactly once.
    let before = sb.read("log").matches("complete in").count();
    sb.write("gates/one", "");
    child.wait_for("complete in", before + 1);
    let status = child.wait();
    assert!(status.success(), "{status}:\n{}", sb.read("log"));
    let out = sb.read("out.jsonl");
    assert_counts_continue(&out);
    assert_eq!(final_counts(&out), totals(&text));
}

/// With `tolerable_failures = N`, N timed-out checkpoints in a row are
/// tolerated and the next fails the job over through the restart strategy.
fn fails_over_after(tolerable: u32) {
    let sb = Sandbox::new();
    sb.write("in.jsonl", input(&["one"]));
    sb.write(
        "job.toml",
        job(
            "out.jsonl",
            &format!(
                r#"
[checkpoint]
interval = "50ms"
timeout = "1s"
tolerable_failures = {tolerable}

[restart]
attempts = 1
delay = "10ms"
"#
            ),
        ),
    );
    let (mut child, _addr) = start(&sb);
    let over = format!("over `[checkpoint] tolerable_failures` = {tolerable}");
    child.wait_for(&over, 1);
    let log = sb.read("log");
    assert_eq!(
        log.matches("the job goes on").count(),
        tolerable as usize,
        "{tolerable} failures tolerated:\n{log}"
    );
    // The failed run ends once the gate lets its stages go; then it restarts.
    sb.write("gates/one", "");
    child.wait_for("restart 1 of 1", 1);
    let log = sb.read("log");
    let line = log.lines().find(|l| l.contains("restart 1 of 1")).unwrap();
    assert!(
        line.contains("timed out after 1s") && line.contains(&over),
        "{line}"
    );
    child.wait();
}

#[test]
fn no_tolerable_failures_fails_over_at_the_first_timeout() {
    fails_over_after(0);
}

#[test]
fn tolerable_failures_tolerates_that_many_in_a_row() {
    fails_over_after(2);
}

#[test]
fn the_queue_of_savepoint_requests_is_bounded() {
    let sb = Sandbox::new();
    sb.write("in.jsonl", input(&["one"]));
    sb.write("job.toml", job("out.jsonl", ""));
    let (mut child, addr) = start(&sb);
    child.wait_for("gate one holds", 1);
    // None can complete while the gate holds.
    for _ in 0..8 {
        request_savepoint(&addr, "sp");
    }
    for (path, body) in [
        ("/jobs/gated/savepoints", r#"{"target-directory": "sp"}"#),
        ("/jobs/gated/stop", r#"{"target-directory": "sp"}"#),
    ] {
        let (status, e) = http(&addr, "POST", path, body);
        assert_eq!(status, 429, "{path}: {e}");
        let message = e["error"].as_str().unwrap();
        assert!(
            message.contains("8 savepoint requests are in progress"),
            "{message}"
        );
    }
    let (_, job) = http(&addr, "GET", "/jobs/gated", "");
    assert_eq!(
        job["state"], "RUNNING",
        "a refused stop leaves the job running"
    );
    child.kill();
}
