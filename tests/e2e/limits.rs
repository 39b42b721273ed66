//! Budgets (`[operators.limits]`): an operator that loops, hoards memory or
//! floods its output is stopped by its budget with a message naming the
//! operator, the subtask, the budget and its value; the restart strategy
//! applies, and when its attempts run out the job fails (exit 1) with that
//! message. The operator here is the SDK-built probe; hostile.rs runs the
//! raw-WIT hostile programs and checks that checkpoints survive.

use crate::harness::{operator, toml_path, Sandbox};

fn job(limits: &str) -> String {
    format!(
        r#"
name = "hostile"

[source]
type = "file"
path = "in.jsonl"
batch_size = 2

[[operators]]
id = "probe"
wasm = {probe}
input = "key"

[operators.limits]
{limits}

[sink]
type = "file"
path = "out.jsonl"

[checkpoint]
interval = "50ms"
dir = "state"

[restart]
strategy = "fixed-delay"
attempts = 1
delay = "10ms"
"#,
        probe = toml_path(&operator("probe"))
    )
}

/// Good events first (so that a checkpoint completes), then the hostile one.
fn input(hostile: &str) -> String {
    let mut text = String::new();
    for i in 0..40 {
        text += &format!("{{\"key\":\"k{}\",\"value\":\"item{i}\"}}\n", i % 4);
    }
    text + &format!("{{\"key\":\"k0\",\"value\":\"{hostile}\"}}\n")
}

#[test]
fn each_budget_stops_a_hostile_operator_and_the_job_fails_cleanly() {
    for (hostile, limits, needles) in [
        (
            "loop",
            r#"cpu_per_call = "300ms""#,
            &[
                "ran past its CPU budget of 300ms",
                "cpu_per_call",
                "probe::Probe",
            ][..],
        ),
        (
            "grow",
            r#"memory = "32MiB""#,
            &[
                "over its memory budget of 32 MiB",
                "`[operators.limits] memory`",
            ][..],
        ),
        (
            "flood:5000",
            "output_per_call = 1000",
            &["emitted 5000 events in one call, over its output budget of 1000"][..],
        ),
    ] {
        let sb = Sandbox::new();
        sb.write("in.jsonl", input(hostile));
        sb.write("job.toml", job(limits));
        let err = sb
            .weir(&["run", "job.toml"])
            .fails_with(&[&["operator `probe` subtask 0"][..], needles].concat());
        assert!(err.contains("restart"), "{hostile}: {err}");
        // The checkpoint store still opens. (Whether a checkpoint taken
        // before the failure survives and restores is shown by hostile.rs,
        // whose jobs hold the stream until one has completed.)
        sb.weir(&["checkpoints", "list", "state"]).ok();
    }
}

#[test]
fn bad_limits_are_refused_with_field_and_line() {
    let sb = Sandbox::new();
    sb.write("in.jsonl", "");
    for (limits, needle) in [
        (r#"memory = "lots""#, "`memory`: `lots` is not a size"),
        (r#"memory = "64XB""#, "unknown size unit `XB`"),
        (
            r#"cpu_per_call = "1ms""#,
            "`cpu_per_call` must be at least 10ms",
        ),
        ("output_per_call = 0", "`output_per_call` must be"),
        ("fuel = 1", "unknown field `fuel`"),
    ] {
        sb.write("job.toml", job(limits));
        sb.weir(&["run", "job.toml"])
            .fails_with(&["job.toml:", needle]);
    }
}
