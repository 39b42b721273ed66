//! Every error a user can cause gives one line that names what is wrong and
//! where, and exit status 1.

use crate::harness::{operator, toml_path, Sandbox};

fn job_with(operator_wasm: &str, extra_op: &str) -> String {
    format!(
        r#"name = "errors"
[source]
type = "file"
path = "in.jsonl"
[[operators]]
id = "op"
wasm = {operator_wasm}
{extra_op}
[sink]
type = "file"
path = "out.jsonl"
"#
    )
}

fn count_job(extra_op: &str) -> String {
    job_with(&toml_path(&operator("keyed-count")), extra_op)
}

#[test]
fn unknown_field_in_the_job_file_names_field_and_line() {
    let sb = Sandbox::new();
    sb.write("in.jsonl", "");
    sb.run_job(&count_job("paralelism = 2"))
        .fails_with(&["job.toml:8", "unknown field `paralelism`"]);
}

#[test]
fn wrong_type_in_the_job_file_names_field_and_line() {
    let sb = Sandbox::new();
    sb.write("in.jsonl", "");
    sb.run_job(&count_job("parallelism = \"two\""))
        .fails_with(&["job.toml:8", "parallelism"]);
}

#[test]
fn missing_job_file() {
    Sandbox::new()
        .weir(&["run", "nope.toml"])
        .fails_with(&["nope.toml"]);
    let line = Sandbox::new()
        .weir(&["run", "nope.toml"])
        .fails_with(&["No such file"]);
    assert_eq!(line.matches("No such file").count(), 1, "{line}");
}

#[test]
fn missing_wasm_file() {
    let sb = Sandbox::new();
    sb.write("in.jsonl", "");
    sb.run_job(&job_with("\"missing.wasm\"", "")).fails_with(&[
        "operator `op`",
        "job.toml:5",
        "missing.wasm",
    ]);
}

#[test]
fn not_a_wasm_file() {
    let sb = Sandbox::new();
    sb.write("in.jsonl", "");
    sb.write("text.wasm", "hello");
    sb.run_job(&job_with("\"text.wasm\"", ""))
        .fails_with(&["text.wasm", "not a WebAssembly file"]);
}

#[test]
fn a_core_module_is_not_a_component() {
    let sb = Sandbox::new();
    sb.write("in.jsonl", "");
    sb.write(
        "core.wasm",
        wat::parse_str("(module (func (export \"f\")))").unwrap(),
    );
    sb.run_job(&job_with("\"core.wasm\"", ""))
        .fails_with(&["core.wasm", "core WebAssembly module, not a component"]);
    sb.weir(&["operator", "inspect", "core.wasm"])
        .fails_with(&["core.wasm", "not a component"]);
}

#[test]
fn a_component_of_another_world() {
    let sb = Sandbox::new();
    sb.write("in.jsonl", "");
    let other = wat::parse_str(
        r#"(component
            (core module $m (func (export "run") (result i32) i32.const 0))
            (core instance $i (instantiate $m))
            (func (export "run") (result u32) (canon lift (core func $i "run"))))"#,
    )
    .unwrap();
    sb.write("other.wasm", other);
    sb.run_job(&job_with("\"other.wasm\"", "")).fails_with(&[
        "other.wasm",
        "does not export `weir:operator/guest@0.1.0`",
        "`run`",
    ]);
    let empty = wat::parse_str("(component)").unwrap();
    sb.write("empty.wasm", empty);
    sb.weir(&["operator", "inspect", "empty.wasm"])
        .fails_with(&["empty.wasm", "exports nothing"]);
}

/// A component with `imports` that exports, as `interface`, an instance
/// with only a `describe` function (of the wrong type, too).
fn partial_component(imports: &str, interface: &str) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(component
            {imports}
            (core module $m (func (export "d")))
            (core instance $i (instantiate $m))
            (func $d (canon lift (core func $i "d")))
            (instance $g (export "describe" (func $d)))
            (export "{interface}" (instance $g)))"#
    ))
    .unwrap()
}

#[test]
fn a_component_of_another_weir_version() {
    let sb = Sandbox::new();
    let newer = partial_component("", "weir:operator/guest@0.9.0");
    sb.write("newer.wasm", newer);
    sb.weir(&["operator", "inspect", "newer.wasm"])
        .fails_with(&["newer.wasm", "weir:operator/guest@0.9.0", "rebuild"]);
}

#[test]
fn an_import_weir_does_not_provide() {
    let sb = Sandbox::new();
    let needy = partial_component(
        r#"(import "acme:db/query@1.0.0" (instance (export "q" (func))))"#,
        "weir:operator/guest@0.1.0",
    );
    sb.write("needy.wasm", needy);
    sb.weir(&["operator", "inspect", "needy.wasm"])
        .fails_with(&["needy.wasm", "imports `acme:db/query@1.0.0`"]);
}

#[test]
fn a_missing_export_function() {
    let sb = Sandbox::new();
    let partial = partial_component("", "weir:operator/guest@0.1.0");
    sb.write("partial.wasm", partial);
    sb.weir(&["operator", "inspect", "partial.wasm"])
        .fails_with(&["partial.wasm", "does not match the weir operator world"]);
}

#[test]
fn missing_source_file_is_named() {
    let sb = Sandbox::new();
    sb.run_job(&count_job(""))
        .fails_with(&["in.jsonl", "does not exist"]);
    assert!(!sb.path("out.jsonl").exists(), "no output may be created");
}

#[test]
fn a_bad_input_line_names_file_and_line() {
    let sb = Sandbox::new();
    sb.write(
        "in.jsonl",
        "{\"key\": \"a\", \"value\": \"1\"}\n{\"key\": \"a\", \"valu\": \"1\"}\n",
    );
    sb.run_job(&count_job(""))
        .fails_with(&["in.jsonl", "line 2", "valu"]);
}

#[test]
fn an_operator_config_it_refuses() {
    let sb = Sandbox::new();
    sb.write("in.jsonl", "");
    sb.run_job(&job_with(&toml_path(&operator("windowed-sum")), ""))
        .fails_with(&["operator `op` subtask 0", "size_ms", "required"]);
    sb.run_job(&job_with(
        &toml_path(&operator("windowed-sum")),
        "config = { size_ms = \"ten\" }",
    ))
    .fails_with(&["operator `op` subtask 0", "size_ms"]);
    assert!(!sb.path("out.jsonl").exists(), "no output may be created");
}

#[test]
fn bad_input_without_a_dead_letter_file_fails_the_job() {
    let sb = Sandbox::new();
    sb.write("in.jsonl", "{\"value\": \"no key\"}\n");
    sb.run_job(&count_job("")).fails_with(&[
        "operator `op` subtask 0",
        "event has no key",
        "[dead_letter]",
    ]);
}

#[test]
fn keyed_state_needs_key_partitioning() {
    let sb = Sandbox::new();
    let input: String = (0..200)
        .map(|i| format!("{{\"key\": \"k{i}\", \"value\": \"1\"}}\n"))
        .collect();
    sb.write("in.jsonl", input);
    sb.run_job(&count_job("parallelism = 2")).fails_with(&[
        "operator `op` subtask",
        "key group",
        "input = \"key\"",
    ]);
}

#[test]
fn a_trap_names_operator_and_subtask() {
    let sb = Sandbox::new();
    sb.write(
        "in.jsonl",
        "{\"key\": \"a\", \"value\": \"ok\"}\n{\"key\": \"a\", \"value\": \"panic\"}\n",
    );
    let line = sb
        .run_job(&job_with(&toml_path(&operator("probe")), ""))
        .fails_with(&["operator `op` subtask 0", "trapped"]);
    assert!(
        line.contains("probe"),
        "the backtrace names guest functions: {line}"
    );
}

#[test]
fn a_fatal_error_names_operator_and_message() {
    let sb = Sandbox::new();
    sb.write("in.jsonl", "{\"key\": \"a\", \"value\": \"fatal\"}\n");
    sb.run_job(&job_with(&toml_path(&operator("probe")), ""))
        .fails_with(&["operator `op` subtask 0", "probe was asked to fail"]);
}

#[test]
fn state_outside_the_subtasks_key_groups_is_refused() {
    let sb = Sandbox::new();
    let input: String = (0..100)
        .map(|i| format!("{{\"key\": \"a\", \"value\": \"v{i}\"}}\n"))
        .collect();
    sb.write("in.jsonl", input);
    let job = job_with(
        &toml_path(&operator("probe")),
        "parallelism = 3\ninput = \"key\"\nconfig = { mode = \"foreign\" }",
    );
    sb.run_job(&job)
        .fails_with(&["operator `op` subtask", "does not own"]);
}

#[test]
fn checkpoints_need_a_replayable_source() {
    let sb = Sandbox::new();
    sb.write(
        "job.toml",
        format!(
            "name = \"s\"\n[source]\ntype = \"stdin\"\n[[operators]]\nid = \"c\"\nwasm = {}\n[sink]\ntype = \"stdout\"\n[checkpoint]\ninterval = \"1s\"\n",
            toml_path(&operator("keyed-count"))
        ),
    );
    sb.weir(&["run", "job.toml"]).fails_with(&[
        "job.toml",
        "checkpoints need a source that can be read again",
        "stdin",
    ]);
}

#[test]
fn from_checkpoint_needs_checkpoints() {
    let sb = Sandbox::new();
    sb.write("in.jsonl", "");
    sb.write("job.toml", count_job(""));
    sb.weir(&["run", "job.toml", "--from-checkpoint", "3"])
        .fails_with(&["--from-checkpoint", "takes no checkpoints"]);
}

#[test]
fn a_rest_address_where_no_job_listens_is_named() {
    let sb = Sandbox::new();
    // A port that was free a moment ago: nothing listens there now.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    for args in [
        &["stop", "--addr", &addr][..],
        &["savepoint", "trigger", "--addr", &addr][..],
    ] {
        sb.weir(args).fails_with(&[
            &format!("cannot reach the REST API of a job at `{addr}`"),
            "is the job running",
        ]);
    }
    sb.weir(&["stop", "--addr", "nowhere"])
        .fails_with(&["`nowhere`", "not a HOST:PORT address"]);
}

#[test]
fn durations_and_sizes_as_the_readme_writes_them() {
    let sb = Sandbox::new();
    sb.write("in.jsonl", "{\"key\":\"a\",\"value\":\"1\"}\n");
    // Every form the job file reference (docs/reference/job-file.md) shows is accepted.
    let limits = "[operators.limits]\nmemory = \"1 GiB\"\nstate_value_size = \"16MiB\"\ncpu_per_call = \"1.5s\"";
    sb.write("job.toml", count_job(limits));
    sb.weir(&["run", "job.toml"]).ok();
    assert_eq!(sb.read("out.jsonl").lines().count(), 1);
    // A bad one names the field, its line and what is wrong, on one line.
    for (limits, needles) in [
        (
            "[operators.limits]\ncpu_per_call = \"1 2s\"",
            &["job.toml:9:", "`cpu_per_call`", "a space inside a number"][..],
        ),
        (
            "[operators.limits]\nmemory = \"64 parsecs\"",
            &["job.toml:9:", "`memory`", "unknown size unit `parsecs`"][..],
        ),
    ] {
        sb.write("job.toml", count_job(limits));
        sb.weir(&["run", "job.toml"]).fails_with(needles);
    }
}

#[test]
fn a_line_over_the_size_limit_names_file_line_limit_and_field() {
    // Issue 13: one input line could grow without bound.
    let sb = Sandbox::new();
    let long = format!(r#"{{"key": "a", "value": "{}"}}"#, "x".repeat(200));
    sb.write(
        "in.jsonl",
        format!(
            "{{\"key\": \"a\", \"value\": \"1\"}}\n{long}\n{{\"key\": \"a\", \"value\": \"2\"}}\n"
        ),
    );
    let job = count_job("").replace(
        "path = \"in.jsonl\"",
        "path = \"in.jsonl\"\nmax_line_size = \"100\"",
    );
    sb.run_job(&job).fails_with(&[
        "source file `",
        "in.jsonl` line 2:",
        "longer than 100 bytes",
        "`[source] max_line_size`",
    ]);
    // The same line fits under a raised limit.
    sb.run_job(&job.replace("\"100\"", "\"1KiB\"")).ok();
    assert_eq!(sb.read("out.jsonl").lines().count(), 3);

    // The default limit is 1 MiB.
    let huge = format!(r#"{{"key": "a", "value": "{}"}}"#, "x".repeat(1 << 20));
    sb.write("in.jsonl", format!("\n\n{huge}\n"));
    sb.run_job(&count_job("")).fails_with(&[
        "in.jsonl` line 3:",
        "longer than 1 MiB",
        "`[source] max_line_size`",
    ]);
}

#[test]
fn a_stdin_line_over_the_size_limit_names_the_line_and_the_limit() {
    let sb = Sandbox::new();
    sb.write(
        "job.toml",
        format!(
            r#"name = "errors"
[source]
type = "stdin"
max_line_size = "64"
[[operators]]
id = "op"
wasm = {count}
[sink]
type = "stdout"
"#,
            count = toml_path(&operator("keyed-count"))
        ),
    );
    let input = format!(
        "{{\"key\": \"a\", \"value\": \"1\"}}\n{{\"key\": \"a\", \"value\": \"{}\"}}\n",
        "y".repeat(64)
    );
    sb.cmd(&["run", "job.toml"])
        .stdin(input.as_bytes())
        .run()
        .fails_with(&[
            "standard input line 2:",
            "longer than 64 bytes",
            "`[source] max_line_size`",
        ]);
}
