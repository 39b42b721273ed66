//! Timers and state with no key (issue 13, item 1). Timers and state are
//! kept per key group; a timer with no key has none of its own, and at
//! parallelism above 1 every subtask wrote one for the same key group: a
//! checkpoint kept one subtask's, and a stop-with-savepoint was reported
//! COMPLETED yet failed `weir savepoint verify` and could not be restored.
//! weir refuses them, at every parallelism, with one line at the call that
//! names the operator and subtask and says to use the event's key; the
//! restart strategy applies. (State with no key: `hostile.rs`, whose raw-WIT
//! guest can pass one, which no SDK's state API does.)

use crate::harness::{operator, toml_path, wait_until, Sandbox};

/// The probe over `input`, keyed, at `parallelism`, with 64 key groups
/// (the audit's "outside 32..64"), checkpoints and one restart; `extra` is
/// more TOML for the operator.
fn job(source: &str, parallelism: u32, extra: &str) -> String {
    format!(
        r#"
name = "keyless"
max_parallelism = 64

{source}

[[operators]]
id = "probe"
wasm = {probe}
parallelism = {parallelism}
input = "key"
{extra}

[sink]
type = "file"
path = "out.jsonl"

[savepoint]
dir = "savepoints"

[restart]
strategy = "fixed-delay"
attempts = 1
delay = "10ms"
"#,
        probe = toml_path(&operator("probe"))
    )
}

const FILE_SOURCE: &str = r#"
[source]
type = "file"
path = "in.jsonl"
batch_size = 4

[checkpoint]
interval = "50ms"
dir = "state"
"#;

/// Items for 16 keys (so that every subtask has some), then `command` for
/// each of those keys.
fn input(command: &str) -> String {
    let mut text = String::new();
    for i in 0..64 {
        text += &format!("{{\"key\":\"k{}\",\"value\":\"item{i}\"}}\n", i % 16);
    }
    for k in 0..16 {
        text += &format!("{{\"key\":\"k{k}\",\"value\":\"{command}\",\"timestamp\":{k}}}\n");
    }
    text
}

#[test]
fn a_timer_with_no_key_is_refused_at_the_call_at_every_parallelism() {
    for (parallelism, command, call) in [
        (2, "timer-no-key", "timers.register-many"),
        (1, "timer-no-key", "timers.register-many"),
        (3, "delete-timer-no-key", "timers.delete-many"),
    ] {
        let sb = Sandbox::new();
        sb.write("in.jsonl", input(command));
        sb.write("job.toml", job(FILE_SOURCE, parallelism, ""));
        let err = sb.weir(&["run", "job.toml"]).fails_with(&[
            "operator `probe` subtask ",
            &format!("{call}: a timer has no key"),
            "use the event's key",
            "(gave up after 1 restarts)",
        ]);
        assert!(err.contains("in.jsonl`)"), "p={parallelism}: {err}");
        sb.weir(&["checkpoints", "list", "state"]).ok();
    }
}

/// The audit's steps: a job at parallelism 2 whose operator registers a
/// timer with no key for every event, stopped with a savepoint, the
/// savepoint verified. Before the fix the savepoint was reported COMPLETED
/// and `verify` refused it; now the job fails at the first such timer with
/// the refusal, and no savepoint is reported.
#[test]
fn stop_with_savepoint_never_reports_a_savepoint_that_does_not_verify() {
    let sb = Sandbox::new();
    let generator = r#"
[source]
type = "generator"
count = 100000000
keys = 50
value_size = 3
seed = 7
batch_size = 16
rate = 2000

[rest]
addr = "127.0.0.1:0"
"#;
    sb.write(
        "job.toml",
        job(generator, 2, r#"config = { mode = "keyless-timers" }"#),
    );
    let mut child = sb.cmd(&["run", "job.toml"]).log("run.log").rest().start();
    let addr = child.rest_addr();
    // Wait until the probe has emitted (so it has registered timers), or the job has ended.
    let status = wait_until(|| {
        if let Some(status) = child.exited() {
            return Ok(status);
        }
        let out = std::fs::read_to_string(sb.path("out.jsonl")).unwrap_or_default();
        if out.lines().count() >= 20 {
            let stop = sb.weir(&["stop", "--addr", &addr, "--savepoint", "sp"]);
            let status = child.wait();
            eprintln!("weir stop: {:?} {}", stop.status, stop.stderr.trim());
            if stop.status.success() {
                // A savepoint reported complete must verify (and so restore).
                let dir = stop.stdout.trim().to_string();
                sb.weir(&["savepoint", "verify", &dir]).ok();
            }
            return Ok(status);
        }
        Err(format!(
            "the job neither emitted nor ended:\n{}",
            sb.read("run.log")
        ))
    });
    let log = sb.read("run.log");
    assert_eq!(status.code(), Some(1), "{log}");
    let errors: Vec<&str> = log.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "{log}");
    for needle in [
        "operator `probe` subtask ",
        "timers.register-many: a timer has no key",
        "use the event's key",
    ] {
        assert!(errors[0].contains(needle), "{needle}: {}", errors[0]);
    }
}
