//! Budgets (`[operators.limits]`): an operator that loops, hoards memory,
//! floods its output, or makes the host hold ever more state or timers for
//! it is stopped by its budget with a message naming the
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
        (
            "keys:5000",
            r#"state_memory = "64KiB""#,
            &[
                "over its state memory budget of 64 KiB",
                "`[operators.limits] state_memory`",
            ][..],
        ),
        (
            "timers:5000",
            "pending_timers = 1000",
            &[
                "it has 1001 pending timers, over its budget of 1000 pending timers",
                "`[operators.limits] pending_timers`",
            ][..],
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
        (
            r#"state_memory = "lots""#,
            "`state_memory`: `lots` is not a size",
        ),
        (
            "pending_timers = 0",
            "`pending_timers` must be at least 1, found 0",
        ),
        ("fuel = 1", "unknown field `fuel`"),
    ] {
        sb.write("job.toml", job(limits));
        sb.weir(&["run", "job.toml"])
            .fails_with(&["job.toml:", needle]);
    }
}

#[test]
fn restored_state_past_a_budget_fails_the_job_at_start_naming_it() {
    use crate::harness::{counts_job, run_and_stop_after};
    let sb = Sandbox::new();
    let count = operator("keyed-count");
    // Counts for 300 keys under the default budgets, stopped with a savepoint.
    sb.write("job.toml", counts_job(&count, 2, Some(4000), ""));
    let sp = run_and_stop_after(&sb, "job.toml", &[], &["--savepoint", "sp"], 500);
    // Restored under a budget they do not fit: a restart would restore the
    // same, so the job fails at once.
    let small = "[operators.limits]\nstate_memory = \"1KiB\"\n";
    sb.write("small.toml", counts_job(&count, 2, Some(4000), small));
    let err = sb
        .weir(&[
            "run",
            "small.toml",
            "--from-savepoint",
            sp.to_str().unwrap(),
        ])
        .fails_with(&[
            "operator `count` subtask ",
            ": restored state is too large: its state holds ",
            "over its state memory budget of 1 KiB (`[operators.limits] state_memory`)",
            "raise the budget",
        ]);
    assert!(!err.contains("restart"), "{err}");
}
