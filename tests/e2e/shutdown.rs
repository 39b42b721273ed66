//! SIGTERM and SIGINT stop a job gracefully, for every sink: the process
//! takes a last checkpoint (or, with `[shutdown] savepoint = true`, a
//! savepoint), commits its output and exits 0, and the next start resumes
//! there: the output equals an uninterrupted run's. A second signal exits
//! at once, still exactly-once by recovery.

use crate::harness::{operator, sorted_lines, toml_path, Sandbox};

/// A keyed count over a throttled generator into a file, with checkpoints.
fn job(rate: Option<u64>, extra: &str) -> String {
    format!(
        r#"
name = "graceful"
max_parallelism = 32

[source]
type = "generator"
count = 60000
keys = 500
value_size = 3
seed = 5
batch_size = 256
{rate}

[[operators]]
id = "count"
wasm = {count}
parallelism = 2
input = "key"

[sink]
type = "file"
path = "out.jsonl"

[checkpoint]
interval = "300ms"
dir = "state"
{extra}
"#,
        rate = rate.map(|r| format!("rate = {r}")).unwrap_or_default(),
        count = toml_path(&operator("keyed-count")),
    )
}

/// The uninterrupted run's output, sorted.
fn reference() -> Vec<String> {
    let sb = Sandbox::new();
    sb.run_job(&job(None, "")).ok();
    sorted_lines(&sb.read("out.jsonl"))
}

#[test]
fn sigterm_and_sigint_stop_at_a_last_checkpoint_and_the_next_start_resumes_there() {
    let want = reference();
    for sig in ["TERM", "INT"] {
        let sb = Sandbox::new();
        // 60,000 events at 6,000/s: about 10 s of input.
        sb.write("job.toml", job(Some(6000), ""));
        let mut child = sb.cmd(&["run", "job.toml"]).log("run-1.log").start();
        child
            .wait_for_or_exit("complete in", 2)
            .unwrap_or_else(|s| panic!("the job ended ({s}) before the signal"));
        child.signal(sig);
        let status = child.wait();
        let log = sb.read("run-1.log");
        assert!(status.success(), "SIG{sig}: {status}\n{log}");
        assert!(log.contains("stopped on a signal"), "{log}");
        let first = sb.read("out.jsonl").lines().count();
        assert!(
            first > 0 && first < want.len(),
            "SIG{sig} came at {first} of {} events",
            want.len()
        );
        let run = sb.weir(&["run", "job.toml"]).ok();
        assert!(
            run.stderr.contains("restoring checkpoint"),
            "{}",
            run.stderr
        );
        assert_eq!(sorted_lines(&sb.read("out.jsonl")), want, "after SIG{sig}");
    }
}

#[test]
fn sigterm_with_shutdown_savepoint_stops_with_a_savepoint_that_restores() {
    let want = reference();
    let sb = Sandbox::new();
    sb.write(
        "job.toml",
        job(
            Some(6000),
            "[savepoint]\ndir = \"savepoints\"\n[shutdown]\nsavepoint = true\n",
        ),
    );
    let mut child = sb.cmd(&["run", "job.toml"]).log("run-1.log").start();
    child
        .wait_for_or_exit("complete in", 2)
        .unwrap_or_else(|s| panic!("the job ended ({s}) before the signal"));
    child.signal("TERM");
    let status = child.wait();
    let log = sb.read("run-1.log");
    assert!(status.success(), "{status}\n{log}");
    let saved: Vec<_> = std::fs::read_dir(sb.path("savepoints"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(saved.len(), 1, "{saved:?}\n{log}");
    let sp = saved[0].to_str().unwrap().to_string();
    sb.weir(&["savepoint", "verify", &sp]).ok();
    sb.weir(&["run", "job.toml", "--from-savepoint", &sp]).ok();
    assert_eq!(sorted_lines(&sb.read("out.jsonl")), want);
}

#[test]
fn a_second_signal_exits_at_once_and_the_next_start_recovers() {
    let want = reference();
    let sb = Sandbox::new();
    sb.write("job.toml", job(Some(6000), ""));
    // Every checkpoint waits a minute between its data and its completion:
    // the graceful stop cannot end before the second signal.
    let mut child = sb
        .cmd(&["run", "job.toml"])
        .env("WEIR_TEST_CHECKPOINT_PAUSE_MS", "60000")
        .log("run-1.log")
        .start();
    child
        .wait_for_or_exit("is running", 1)
        .unwrap_or_else(|s| panic!("the job ended ({s})\n{}", sb.read("run-1.log")));
    child.signal("TERM");
    child
        .wait_for_or_exit("SIGTERM: stopping", 1)
        .unwrap_or_else(|s| panic!("exited ({s}) at the first signal\n{}", sb.read("run-1.log")));
    child.signal("TERM");
    let status = child.wait();
    assert_eq!(status.code(), Some(143), "{}", sb.read("run-1.log"));
    assert!(
        sb.read("run-1.log")
            .contains("a second signal before the graceful stop ended"),
        "{}",
        sb.read("run-1.log")
    );
    sb.weir(&["run", "job.toml"]).ok();
    assert_eq!(sorted_lines(&sb.read("out.jsonl")), want);
}
