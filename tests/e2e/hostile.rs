//! Hostile operators (`tests/plugins/hostile`, written against the raw WIT
//! contract, so no SDK shields the host from them): one that loops, hoards
//! memory, traps, panics, floods its output, reaches for state it has no
//! right to, tries to leave its sandbox or hands back malformed data; a core
//! module and a component of another world. None crashes or hangs the host:
//! the subtask fails with one line naming the operator, the subtask and what
//! went wrong (for a budget, the budget and its value), the restart strategy
//! applies, and when its attempts run out the job fails (exit 1) with its
//! checkpoints intact: listed, and restored by a later run of a good job,
//! whose output is then exactly once.
//!
//! A checkpoint completes before the hostile event without any timing: the
//! `gate` operator in front of the hostile one holds the stream (and, by
//! back-pressure, the source) until the test has seen a checkpoint
//! triggered, and again until it has seen one complete.

use std::path::Path;

use crate::harness::{operator, root, toml_path, Run, Sandbox};

/// Events per batch from the source.
const BATCH: usize = 8;
/// Good events before the first gate.
const BEFORE: usize = 40;
/// Good events between the gates: far more than the channels hold, so the
/// source is still among them while the first gate holds; the total before
/// the hostile event is a whole number of batches, so that it comes alone.
const BETWEEN: usize = 1006;

/// Source → `gate` → operator `id` (`wasm`, with the TOML lines `extra`) →
/// sink, with checkpoints every 50 ms and one restart.
fn job(id: &str, wasm: &Path, extra: &str) -> String {
    format!(
        r#"name = "hostile"

[source]
type = "file"
path = "in.jsonl"
batch_size = {BATCH}

[[operators]]
id = "gate"
wasm = {gate}

[operators.capabilities]
dirs = {{ "/gates" = "gates" }}

# The gate waits for the test, however slow the machine.
[operators.limits]
cpu_per_call = "10m"

[[operators]]
id = "{id}"
wasm = {wasm}
input = "key"
{extra}

[sink]
type = "file"
path = "out.jsonl"

[dead_letter]
path = "dead.jsonl"

[checkpoint]
interval = "50ms"
dir = "state"

[restart]
strategy = "fixed-delay"
attempts = 1
delay = "10ms"
"#,
        gate = toml_path(&operator("gate")),
        wasm = toml_path(wasm),
    )
}

/// Good events, the gate `one`, more good events, the gate `two`, and the
/// event `hostile`, alone in the last batch.
fn input(hostile: &str) -> String {
    let good = |i: usize| format!("{{\"key\":\"k{}\",\"value\":\"item{i}\"}}\n", i % 4);
    let mut text: String = (0..BEFORE).map(good).collect();
    text += "{\"key\":\"k0\",\"value\":\"gate:one\"}\n";
    text.extend((BEFORE..BEFORE + BETWEEN).map(good));
    text += "{\"key\":\"k0\",\"value\":\"gate:two\"}\n";
    assert_eq!(text.lines().count() % BATCH, 0);
    text + &format!("{{\"key\":\"k0\",\"value\":\"{hostile}\"}}\n")
}

/// The values of a JSON-lines file, in order.
fn values(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["value"].as_str().unwrap().to_string()
        })
        .collect()
}

/// `weir run job.toml`, opening the gate `one` once a checkpoint has been
/// triggered and the gate `two` once one has completed.
fn run_gated(sb: &Sandbox) -> Run {
    std::fs::create_dir_all(sb.path("gates")).unwrap();
    let mut child = sb
        .cmd(&["run", "job.toml"])
        .log_level("info,weir_host::engine::coordinator=debug")
        .log("run.log")
        .start();
    child.wait_for("triggering barrier", 1);
    sb.write("gates/one", "");
    child.wait_for("complete in", 1);
    sb.write("gates/two", "");
    child.finish()
}

/// Fails if the host itself panicked: a panic message that is not a line
/// the guest wrote (`weir::guest`) or quoted from it.
#[track_caller]
fn assert_no_host_panic(stderr: &str) {
    for line in stderr.lines() {
        let guest = line.contains("weir::guest") || line.contains("the guest wrote: ");
        assert!(
            guest || !(line.contains("panicked at") || line.contains("RUST_BACKTRACE")),
            "the host panicked: {line}\n{stderr}"
        );
    }
}

/// Runs the hostile program `hostile-PROGRAM` as operator `PROGRAM` (with the
/// TOML lines `extra`) on good events and then `value`, and checks that the
/// job fails cleanly with one line holding every one of `needles`, after a
/// restart from a checkpoint; that the checkpoints are listed; and that a
/// good job (`map` under the same operator ID) restored from the newest one
/// writes every event exactly once.
fn fails_cleanly(program: &str, value: &str, extra: &str, needles: &[&str]) {
    let sb = Sandbox::new();
    let id = program;
    sb.write("in.jsonl", input(value));
    sb.write(
        "job.toml",
        job(id, &operator(&format!("hostile-{program}")), extra),
    );
    let run = run_gated(&sb);
    assert_no_host_panic(&run.stderr);
    assert!(
        run.stderr
            .contains("restart 1 of 1 in 10ms from checkpoint"),
        "{value}: no restart from a checkpoint:\n{}",
        run.stderr
    );
    // With several subtasks, which one fails depends on the hash of the key.
    let subtask = if extra.contains("parallelism") {
        format!("operator `{id}` subtask ")
    } else {
        format!("operator `{id}` subtask 0")
    };
    run.fails_with(&[&[&subtask[..], "(gave up after 1 restarts)"][..], needles].concat());
    let published = values(&sb.read("out.jsonl")).len();
    assert!(
        published >= BEFORE,
        "{value}: the checkpoint published {published} events"
    );

    let list = sb.weir(&["checkpoints", "list", "state", "--json"]).ok();
    let all: Vec<serde_json::Value> = serde_json::from_str(&list.stdout).unwrap();
    let newest = all
        .last()
        .unwrap_or_else(|| panic!("{value}: no checkpoint listed"))["id"]
        .as_u64()
        .unwrap()
        .to_string();
    // `map` declares no state: the hostile program's (empty) `count`, if
    // any, has no place in it.
    sb.write("job.toml", job(id, &operator("map"), extra));
    let good = sb
        .weir(&[
            "run",
            "job.toml",
            "--from-checkpoint",
            &newest,
            "--allow-non-restored-state",
        ])
        .ok();
    assert!(
        good.stderr
            .contains(&format!("restoring checkpoint {newest}")),
        "{}",
        good.stderr
    );
    // `map` writes values in upper case: the events before the checkpoint
    // come from the hostile run, the others from the good one.
    let mut got: Vec<String> = values(&sb.read("out.jsonl"))
        .iter()
        .map(|v| v.to_uppercase())
        .collect();
    let mut want: Vec<String> = values(&sb.read("in.jsonl"))
        .iter()
        .filter(|v| !v.starts_with("gate:"))
        .map(|v| v.to_uppercase())
        .collect();
    got.sort();
    want.sort();
    assert!(
        got == want,
        "{value}: output lost or duplicated after the restore"
    );
}

#[test]
fn an_endless_loop_is_stopped_by_the_cpu_budget() {
    fails_cleanly(
        "spin",
        "spin",
        "[operators.limits]\ncpu_per_call = \"300ms\"",
        &[
            "ran past its CPU budget of 300ms for one call",
            "`[operators.limits] cpu_per_call`",
            "hostile_spin::spin_forever",
            "at key `k0`",
        ],
    );
}

#[test]
fn endless_allocation_is_stopped_by_the_memory_budget() {
    fails_cleanly(
        "hog",
        "hog",
        "[operators.limits]\nmemory = \"32MiB\"",
        &[
            "over its memory budget of 32 MiB",
            "`[operators.limits] memory`",
            "hostile_hog::hoard",
            "at key `k0`",
        ],
    );
}

#[test]
fn a_trap_fails_the_subtask_naming_the_guest_function() {
    fails_cleanly(
        "trap",
        "boom",
        "",
        &[
            "trapped: wasm trap: wasm `unreachable` instruction executed",
            "hostile_trap::explode",
            "at key `k0`",
        ],
    );
}

#[test]
fn a_panic_fails_the_subtask_quoting_the_guest() {
    fails_cleanly(
        "panic",
        "panic",
        "",
        &[
            "trapped",
            "the guest wrote: ",
            "hostile panic: asked to panic by the event at index 0",
            "at key `k0`",
        ],
    );
}

#[test]
fn a_flood_is_stopped_by_the_output_budget() {
    fails_cleanly(
        "flood",
        "flood:5000",
        "[operators.limits]\noutput_per_call = 1000",
        &[
            "emitted 5000 events in one call, over its output budget of 1000",
            "`[operators.limits] output_per_call`",
            "at key `k0`",
        ],
    );
}

#[test]
fn state_it_did_not_declare_is_refused() {
    fails_cleanly(
        "ghost-state",
        "ghost",
        "",
        &["failed: state `ghost` is not declared by the operator's describe()"],
    );
    fails_cleanly(
        "ghost-state",
        "wrong-kind",
        "",
        &["failed: state `count` is declared as value state, not map"],
    );
    // Keys of its own choosing: some belong to another subtask's key groups.
    fails_cleanly(
        "ghost-state",
        "foreign",
        "parallelism = 3",
        &["state `count` was used with key `foreign-", "does not own"],
    );
}

/// A failure in `open` is not restarted (the host treats it as a setup
/// error, as it does a config the operator refuses): the job fails at once.
#[test]
fn state_it_did_not_declare_is_refused_in_open() {
    let sb = Sandbox::new();
    std::fs::create_dir_all(sb.path("gates")).unwrap();
    sb.write("in.jsonl", input("item"));
    sb.write(
        "job.toml",
        job(
            "ghost-state",
            &operator("hostile-ghost-state"),
            "config = { open = \"ghost\" }",
        ),
    );
    let run = sb.weir(&["run", "job.toml"]);
    assert_no_host_panic(&run.stderr);
    // A failure of the operator's own `open` is a failure of the job: the
    // restart strategy applies, as to one while running.
    assert!(
        run.stderr.contains("restart 1 of 1"),
        "the restart strategy applies: {}",
        run.stderr
    );
    run.fails_with(&[
        "operator `ghost-state` subtask 0",
        "open() failed: state `ghost` is not declared by the operator's describe()",
        "(gave up after 1 restarts)",
    ]);
    assert!(!sb.path("out.jsonl").exists(), "no output may be created");
}

/// State with no key (issue 13, item 1): no SDK's state API passes one, a
/// raw-WIT guest can; it is refused at every parallelism, with a line that
/// says to use the event's key.
#[test]
fn state_with_no_key_is_refused_saying_to_use_the_events_key() {
    for extra in ["", "parallelism = 2"] {
        fails_cleanly(
            "garbage",
            "state-no-key",
            extra,
            &[
                "value-state.put-many: a key is absent; state is kept per key",
                "use the event's key",
            ],
        );
    }
}

#[test]
fn malformed_data_from_a_guest_fails_the_subtask_and_says_what_was_malformed() {
    for (value, needles) in [
        (
            "lens",
            &["returned malformed batch: 2 key lengths, 1 value lengths and 1 timestamps"][..],
        ),
        (
            "overrun",
            &["returned malformed batch: lengths add up to 101 bytes but the data has 2"],
        ),
        ("negative-key", &["returned malformed batch: key length -5"]),
        (
            "huge",
            &["returned malformed batch: lengths add up to 6442450942 bytes but the data has 1"],
        ),
        ("reject-past-end", &["rejected event 99 of a batch of 1"]),
        (
            "reject-garbage",
            &["malformed batch: lengths add up to 101 bytes but the data has 2"],
        ),
        ("blobs", &["malformed blobs: lengths exceed the data"]),
        ("blob-length", &["malformed blobs: length -7"]),
        (
            "blob-count",
            &["value-state.put-many: keys and values differ in number"],
        ),
        (
            "place-count",
            &["value-state.put-many-placed: keys and places differ in number"],
        ),
        (
            "timer-count",
            &["timers.register-many: keys and timestamps differ in number"],
        ),
    ] {
        fails_cleanly("garbage", value, "", needles);
    }
}

/// A job of one operator `id` (`wasm`, with the TOML lines `extra`) over
/// `in.jsonl` into `sink` (a `[sink]` table's lines).
fn single_job(id: &str, wasm: &str, extra: &str, sink: &str) -> String {
    format!(
        "name = \"single\"\n[source]\ntype = \"file\"\npath = \"in.jsonl\"\nbatch_size = 16\n\
         [[operators]]\nid = \"{id}\"\nwasm = {wasm}\ninput = \"key\"\n{extra}\n[sink]\n{sink}\n"
    )
}

#[test]
fn a_trap_names_the_key_and_offset_of_its_event() {
    let sb = Sandbox::new();
    // Line 41 is in the middle of the batch of lines 33 to 48.
    let input: String = (1..=60)
        .map(|line| match line {
            41 => "{\"key\":\"k0\",\"value\":\"boom\"}\n".to_string(),
            _ => format!(
                "{{\"key\":\"k{}\",\"value\":\"item{line}\"}}\n",
                line % 5 + 1
            ),
        })
        .collect();
    sb.write("in.jsonl", input);
    let restart = "[checkpoint]\ninterval = \"50ms\"\ndir = \"state\"\n\
                   [restart]\nstrategy = \"fixed-delay\"\nattempts = 1\ndelay = \"10ms\"";
    sb.write(
        "job.toml",
        single_job(
            "trap",
            &toml_path(&operator("hostile-trap")),
            "",
            &format!("type = \"file\"\npath = \"out.jsonl\"\n{restart}"),
        ),
    );
    let run = sb.weir(&["run", "job.toml"]);
    assert_no_host_panic(&run.stderr);
    run.fails_with(&[
        "operator `trap` subtask 0",
        "trapped",
        "hostile_trap::explode",
        "at key `k0`, offset 40 (line 41 of",
        "in.jsonl`",
        "(gave up after 1 restarts)",
    ]);
}

#[test]
fn a_trap_in_a_timer_names_the_timer() {
    let sb = Sandbox::new();
    // Four timers fire together at the end of the input; the one set for an odd time traps.
    let input: String = [("k1", 100), ("k2", 200), ("k3", 301), ("k4", 400)]
        .iter()
        .map(|(key, time)| format!("{{\"key\":\"{key}\",\"value\":\"timer:{time}\"}}\n"))
        .collect();
    sb.write("in.jsonl", input);
    sb.write(
        "job.toml",
        single_job(
            "trap",
            &toml_path(&operator("hostile-trap")),
            "",
            "type = \"file\"\npath = \"out.jsonl\"",
        ),
    );
    let run = sb.weir(&["run", "job.toml"]);
    assert_no_host_panic(&run.stderr);
    run.fails_with(&[
        "operator `trap` subtask 0",
        "trapped",
        "hostile_trap::explode_in_timer",
        "at the event-time timer for 301 of key `k3`",
    ]);
}

#[test]
fn guest_log_lines_land_in_the_log_with_the_operator_id() {
    let sb = Sandbox::new();
    sb.write(
        "in.jsonl",
        "{\"key\":\"k0\",\"value\":\"log:hello from a hostile guest\"}\n\
         {\"key\":\"k0\",\"value\":\"quiet\"}\n",
    );
    // The sink is weir's standard output: what the guest prints must not land there.
    sb.write(
        "job.toml",
        single_job(
            "noisy",
            &toml_path(&operator("hostile-trap")),
            "",
            "type = \"stdout\"",
        ),
    );
    let run = sb.weir(&["run", "job.toml"]).ok();
    assert_eq!(
        run.stdout,
        "{\"key\":\"k0\",\"value\":\"quiet\",\"timestamp\":0}\n"
    );
    for how in ["through logging", "on stdout", "on stderr"] {
        let text = format!("hello from a hostile guest ({how})");
        assert!(
            run.stderr.lines().any(|l| l.contains("weir::guest")
                && l.contains(&text)
                && l.contains("operator_id=\"noisy\"")
                && l.contains("subtask=0")),
            "no log line `{text}` with the operator ID:\n{}",
            run.stderr
        );
    }
}

/// What `hostile-escape` found, attempt by attempt, in a job with the
/// capabilities `caps` (TOML lines); the sandbox holds `data/secret.txt`,
/// `outside.txt` and the link `data/link` to it.
fn escape_attempts(caps: &str) -> (Sandbox, Vec<(String, String)>, String) {
    let sb = Sandbox::new();
    sb.write("data/secret.txt", "the secret\n");
    sb.write("outside.txt", "outside the grant\n");
    std::os::unix::fs::symlink("../outside.txt", sb.path("data/link")).unwrap();
    // A listener that accepts: a connection, were it allowed, would succeed.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || while listener.accept().is_ok() {});
    // Unique to this sandbox: the name of its folder.
    let tag = sb
        .path("in.jsonl")
        .parent()
        .unwrap()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    sb.write("in.jsonl", "{\"key\":\"k0\",\"value\":\"escape\"}\n");
    sb.write(
        "job.toml",
        single_job(
            "escape",
            &toml_path(&operator("hostile-escape")),
            &format!("config = {{ tag = \"{tag}\", connect = \"{addr}\" }}\n{caps}"),
            "type = \"file\"\npath = \"out.jsonl\"",
        ),
    );
    let run = sb.weir(&["run", "job.toml"]).ok();
    assert_no_host_panic(&run.stderr);
    let attempts = sb
        .read("out.jsonl")
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let key = v["key"].as_str().unwrap().to_string();
            (key, v["value"].as_str().unwrap().to_string())
        })
        .collect();
    (sb, attempts, tag)
}

#[test]
fn an_escape_attempt_without_capabilities_reaches_nothing() {
    let (sb, attempts, tag) = escape_attempts("");
    assert_eq!(attempts.len(), 11, "{attempts:?}");
    for (what, answer) in &attempts {
        if what == "env *" {
            assert_eq!(answer, "ok:", "the guest sees weir's environment");
        } else {
            assert!(answer.starts_with("err:"), "{what} succeeded: {answer}");
        }
    }
    let answer = |what: &str| &attempts.iter().find(|(w, _)| w == what).unwrap().1;
    assert!(
        answer("read /etc/passwd").contains("No such file"),
        "{attempts:?}"
    );
    assert!(answer("env HOME").contains("not found"), "{attempts:?}");
    assert!(
        answer("connect ADDR").contains("Permission denied"),
        "{attempts:?}"
    );
    assert!(!Path::new(&format!("/tmp/weir-escape-{tag}")).exists());
    assert!(!sb.path("data/planted.txt").exists());
}

#[test]
fn an_escape_attempt_reaches_a_granted_folder_and_nothing_past_it() {
    let (sb, attempts, tag) =
        escape_attempts("[operators.capabilities]\ndirs = { \"/data\" = \"data\" }");
    let answer = |what: &str| {
        attempts
            .iter()
            .find(|(w, _)| w == what)
            .unwrap_or_else(|| panic!("no attempt {what}: {attempts:?}"))
            .1
            .clone()
    };
    assert_eq!(answer("read /data/secret.txt"), "ok:the secret");
    // Out of the folder by `..` or a link, or into it though it is read-only.
    for what in [
        "read /data/../outside.txt",
        "list /data/..",
        "read /data/link",
        "write /data/planted.txt",
    ] {
        assert_eq!(
            answer(what),
            "err:Operation not permitted (os error 63)",
            "{what}"
        );
    }
    for what in [
        "read /etc/passwd",
        "list /",
        "write /tmp/weir-escape-TAG",
        "env HOME",
        "connect ADDR",
    ] {
        let got = answer(what);
        assert!(got.starts_with("err:"), "{what} succeeded: {got}");
    }
    assert_eq!(answer("env *"), "ok:");
    assert!(!Path::new(&format!("/tmp/weir-escape-{tag}")).exists());
    assert!(!sb.path("data/planted.txt").exists());
}

/// `tests/plugins/hostile/NAME.wat` as a binary in the sandbox, and a job
/// that runs it as operator `op`.
fn wat_job(sb: &Sandbox, name: &str) {
    let path = root().join(format!("tests/plugins/hostile/{name}.wat"));
    let binary = wat::parse_file(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    sb.write(&format!("{name}.wasm"), binary);
    sb.write("in.jsonl", "{\"key\":\"k0\",\"value\":\"item\"}\n");
    sb.write(
        "job.toml",
        single_job(
            "op",
            &format!("\"{name}.wasm\""),
            "",
            "type = \"file\"\npath = \"out.jsonl\"",
        ),
    );
}

#[test]
fn a_core_module_is_refused_before_it_runs() {
    let sb = Sandbox::new();
    wat_job(&sb, "core-module");
    sb.weir(&["run", "job.toml"]).fails_with(&[
        "operator `op`",
        "core-module.wasm",
        "core WebAssembly module, not a component",
    ]);
    assert!(!sb.path("out.jsonl").exists(), "no output may be created");
    sb.weir(&["operator", "inspect", "core-module.wasm"])
        .fails_with(&["core-module.wasm", "not a component"]);
}

#[test]
fn a_component_of_the_wrong_world_is_refused_before_it_runs() {
    let sb = Sandbox::new();
    wat_job(&sb, "wrong-world");
    sb.weir(&["run", "job.toml"]).fails_with(&[
        "operator `op`",
        "wrong-world.wasm",
        "does not export `weir:operator/guest@0.1.0`",
        "`wasi:cli/run@0.2.0`",
    ]);
    assert!(!sb.path("out.jsonl").exists(), "no output may be created");
    sb.weir(&["operator", "inspect", "wrong-world.wasm"])
        .fails_with(&[
            "wrong-world.wasm",
            "does not export `weir:operator/guest@0.1.0`",
        ]);
}
