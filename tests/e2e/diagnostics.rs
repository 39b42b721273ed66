//! A failing operator names the event it failed at: its key and its offset
//! in the source (`offset 40 (line 41 of `in.jsonl`)`), whichever event of
//! the batch it was and however the batch was split among subtasks; an
//! operator downstream of another names the event's place in its batch; a
//! batch that fails only as a whole says so; in every language, the message
//! names the guest function that failed.

use crate::harness::{operator, toml_path, Sandbox};

/// A job of `operators` (TOML `[[operators]]` tables) over `in.jsonl` in
/// batches of `batch_size`.
fn job(batch_size: usize, operators: &str) -> String {
    format!(
        r#"name = "diagnostics"
[source]
type = "file"
path = "in.jsonl"
batch_size = {batch_size}
{operators}
[sink]
type = "file"
path = "out.jsonl"
"#
    )
}

fn probe(id: &str, extra: &str) -> String {
    format!(
        "[[operators]]\nid = \"{id}\"\nwasm = {}\ninput = \"key\"\n{extra}\n",
        toml_path(&operator("probe"))
    )
}

/// 60 ordinary events over keys `k0`..`k5`, with `value` at line `line`
/// (1-based) under key `key`.
fn input_with(line: usize, key: &str, value: &str) -> String {
    (1..=60)
        .map(|l| {
            if l == line {
                format!("{{\"key\":{key:?},\"value\":{value:?}}}\n")
            } else {
                format!("{{\"key\":\"k{}\",\"value\":\"item{l}\"}}\n", l % 6)
            }
        })
        .collect()
}

#[test]
fn a_failure_names_the_key_and_offset_of_its_event() {
    // In the middle of a batch, at either end of one, with one subtask or
    // with the batch split by key over three.
    for (line, batch_size, parallelism) in [(23, 10, 1), (21, 10, 1), (30, 10, 1), (23, 10, 3)] {
        let sb = Sandbox::new();
        sb.write("in.jsonl", input_with(line, "k7", "fatal"));
        let ops = probe("p", &format!("parallelism = {parallelism}"));
        sb.write("job.toml", job(batch_size, &ops));
        let offset = line - 1;
        sb.weir(&["run", "job.toml"]).fails_with(&[
            "operator `p` subtask",
            "failed: probe was asked to fail",
            &format!("at key `k7`, offset {offset} (line {line} of `"),
            "in.jsonl`)",
        ]);
    }
}

#[test]
fn a_trap_names_the_key_shown_safely() {
    let sb = Sandbox::new();
    // A key with a quote, a newline and a non-ASCII letter: shown escaped, on one line.
    sb.write("in.jsonl", input_with(12, "bad \"k\"\né", "panic"));
    sb.write("job.toml", job(8, &probe("p", "")));
    sb.weir(&["run", "job.toml"]).fails_with(&[
        "trapped",
        "probe was asked to panic",
        "at key `bad \\\"k\\\"\\né`, offset 11 (line 12 of `",
    ]);
}

#[test]
fn a_failure_downstream_names_the_events_place_in_its_batch() {
    let sb = Sandbox::new();
    // The first probe echoes `fatal` to the second one, which fails on it.
    sb.write("in.jsonl", input_with(5, "k9", "echo:fatal"));
    let ops = probe("first", "") + &probe("second", "");
    sb.write("job.toml", job(10, &ops));
    let line = sb.weir(&["run", "job.toml"]).fails_with(&[
        "operator `second` subtask 0",
        "probe was asked to fail",
        "at key `k9`, event 1 of a batch of 1 from the operator upstream",
    ]);
    assert!(!line.contains("offset"), "{line}");
}

#[test]
fn a_batch_that_fails_only_as_a_whole_says_so() {
    let sb = Sandbox::new();
    // Each event emits 600, within the budget of 1,000; the two together do not.
    sb.write(
        "in.jsonl",
        "{\"key\":\"a\",\"value\":\"flood:600\"}\n{\"key\":\"a\",\"value\":\"flood:600\"}\n",
    );
    let ops = probe("p", "[operators.limits]\noutput_per_call = 1000");
    sb.write("job.toml", job(2, &ops));
    sb.weir(&["run", "job.toml"]).fails_with(&[
        "emitted 1200 events in one call, over its output budget of 1000",
        "in a batch of 2 events from offset 0 (line 1 of `",
        "to offset 1 (line 2 of `",
        "no one of which fails on its own",
    ]);
}

#[test]
fn a_failure_in_any_language_names_the_guest_function_the_key_and_the_offset() {
    // `tests/plugins/boom-<lang>`: keyed-count, but `boom` fails in `explode`.
    for (lang, needles) in [
        (
            "python",
            &["failed: ValueError: cannot handle b'k2' (in explode (app.py:"][..],
        ),
        (
            "js",
            &["failed: TypeError: cannot handle", "(in explode (index.js:"],
        ),
        ("c", &["trapped", "(in explode <- count_process)"]),
        (
            "go",
            &[
                "failed: panic: runtime error: index out of range",
                "(in main.explode (main.go:",
            ],
        ),
    ] {
        let wasm = operator(&format!("boom-{lang}"));
        let sb = Sandbox::new();
        sb.write("in.jsonl", input_with(18, "k2", "boom"));
        let op = format!(
            "[[operators]]\nid = \"boom\"\nwasm = {}\ninput = \"key\"\n",
            toml_path(&wasm)
        );
        sb.write("job.toml", job(10, &op));
        let at = "at key `k2`, offset 17 (line 18 of `";
        sb.weir(&["run", "job.toml"])
            .fails_with(&[&["operator `boom` subtask 0", at][..], needles].concat());
    }
}
