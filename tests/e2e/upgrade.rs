//! Upgrades through a savepoint: `weir upgrade plan` gives each restore
//! check's verdict (exit status and JSON), running nothing; a savepoint
//! restored into a job with another `max_parallelism` is re-keyed, and its
//! counts and open windows carry on as in an uninterrupted run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::harness::{
    counts_job, counts_reference, dir_snapshot, operator, resigned, run_and_stop_after,
    sorted_lines, windows_job, Sandbox,
};

/// A savepoint of `keyed-count` (or `wasm`) over the generator, parallelism 2.
fn savepoint_of(sb: &Sandbox, wasm: &str, max_parallelism: u32) -> PathBuf {
    sb.write(
        "job.toml",
        counts_job(&operator(wasm), 2, Some(8000), "").replace(
            "max_parallelism = 32",
            &format!("max_parallelism = {max_parallelism}"),
        ),
    );
    run_and_stop_after(sb, "job.toml", &[], &["--savepoint", "sp"], 1000)
}

/// Every file under `dir` (but the component cache) with its bytes.
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                if !path.ends_with(".cache") {
                    todo.push(path);
                }
            } else {
                let bytes = std::fs::read(&path).unwrap();
                out.insert(path, bytes);
            }
        }
    }
    out
}

/// `weir upgrade plan plan.toml --from-savepoint SP [ARGS] --json`, with the
/// job file `job_text`: exit code and the JSON plan. Checks that the plan
/// changed nothing on disk.
fn plan(sb: &Sandbox, job_text: &str, sp: &Path, args: &[&str]) -> (i32, serde_json::Value) {
    sb.write("plan.toml", job_text);
    let before = files(&sb.path(""));
    let sp_before = dir_snapshot(sp);
    let mut all = vec!["upgrade", "plan", "plan.toml", "--from-savepoint"];
    all.push(sp.to_str().unwrap());
    all.extend_from_slice(args);
    all.push("--json");
    let run = sb.weir(&all);
    assert!(
        !run.stderr.contains("panicked"),
        "weir panicked:\n{}",
        run.stderr
    );
    let json: serde_json::Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("{e}: stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr));
    let code = run.status.code().unwrap();
    assert_eq!(code == 0, json["restorable"] == true, "{json:#}");
    if code != 0 {
        let errors: Vec<&str> = run
            .stderr
            .lines()
            .filter(|l| l.starts_with("error: "))
            .collect();
        assert_eq!(errors.len(), 1, "one error line:\n{}", run.stderr);
    }
    // Running nothing: no state directory, no output, the savepoint as it was.
    assert_eq!(
        files(&sb.path("")),
        before,
        "the plan wrote or changed files"
    );
    assert_eq!(dir_snapshot(sp), sp_before, "the savepoint changed");
    (code, json)
}

/// The verdict of state `state` of operator `op` in a JSON plan.
fn state<'a>(plan: &'a serde_json::Value, op: &str, state: &str) -> &'a serde_json::Value {
    let op = plan["operators"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["id"] == op)
        .unwrap_or_else(|| panic!("no operator {op} in {plan:#}"));
    op["states"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == state)
        .unwrap_or_else(|| panic!("no state {state} in {op:#}"))
}

fn keyed_count_job(wasm: &str) -> String {
    counts_job(&operator(wasm), 2, None, "")
}

#[test]
fn upgrade_plan_restores_as_is() {
    let sb = Sandbox::new();
    let sp = savepoint_of(&sb, "keyed-count", 32);
    let (code, p) = plan(&sb, &keyed_count_job("keyed-count"), &sp, &[]);
    assert_eq!(code, 0, "{p:#}");
    assert_eq!(state(&p, "count", "count")["verdict"], "restore");
    assert_eq!(p["rekey"], serde_json::Value::Null);
    assert_eq!(p["source"]["error"], serde_json::Value::Null);
    let op = &p["operators"][0];
    assert_eq!(op["verdict"], "restore");
    assert_eq!(op["old"], op["new"], "the same .wasm");
    assert_eq!(op["new"]["wasm_sha256"].as_str().unwrap().len(), 64);
    // The text form, for a person.
    let text = sb
        .weir(&[
            "upgrade",
            "plan",
            "plan.toml",
            "--from-savepoint",
            sp.to_str().unwrap(),
        ])
        .ok();
    assert!(
        text.stdout.contains("state `count` is restored as is")
            && text.stdout.contains("the restore goes ahead"),
        "{}",
        text.stdout
    );
}

#[test]
fn upgrade_plan_migrates_keyed_count_v1_to_v3() {
    let sb = Sandbox::new();
    let sp = savepoint_of(&sb, "keyed-count", 32);
    let (code, p) = plan(&sb, &keyed_count_job("keyed-count-v3"), &sp, &[]);
    assert_eq!(code, 0, "{p:#}");
    let s = state(&p, "count", "count");
    assert_eq!(s["verdict"], "migrate");
    assert_eq!(s["saved"]["version"], 1);
    assert_eq!(s["declared"]["version"], 2);
    let op = &p["operators"][0];
    assert_eq!(op["old"]["version"], "1.0.0");
    assert_eq!(op["new"]["version"], "3.0.0");
    assert_ne!(op["old"]["wasm_sha256"], op["new"]["wasm_sha256"]);
}

#[test]
fn upgrade_plan_starts_a_new_state_empty() {
    let sb = Sandbox::new();
    let sp = savepoint_of(&sb, "keyed-count", 32);
    let (code, p) = plan(&sb, &keyed_count_job("keyed-count-v2"), &sp, &[]);
    assert_eq!(code, 0, "{p:#}");
    assert_eq!(state(&p, "count", "last_seen")["verdict"], "new");
    assert_eq!(
        state(&p, "count", "last_seen")["saved"],
        serde_json::Value::Null
    );
    assert_eq!(state(&p, "count", "count")["verdict"], "restore");
}

#[test]
fn upgrade_plan_drops_only_with_the_flag() {
    let sb = Sandbox::new();
    let sp = savepoint_of(&sb, "keyed-count", 32);
    let renamed = keyed_count_job("keyed-count").replace("id = \"count\"", "id = \"tally\"");
    let (code, p) = plan(&sb, &renamed, &sp, &[]);
    assert_eq!(code, 1, "{p:#}");
    let s = state(&p, "count", "count");
    assert_eq!(s["verdict"], "drop");
    assert_eq!(s["needs_flag"], true);
    assert!(p["errors"][0]
        .as_str()
        .unwrap()
        .contains("--allow-non-restored-state"));
    assert_eq!(p["operators"][0]["id"], "tally");
    assert_eq!(p["operators"][0]["verdict"], "new");
    let (code, p) = plan(&sb, &renamed, &sp, &["--allow-non-restored-state"]);
    assert_eq!(code, 0, "{p:#}");
    assert_eq!(state(&p, "count", "count")["needs_flag"], false);
    assert_eq!(p["errors"], serde_json::json!([]));
}

#[test]
fn upgrade_plan_refuses_a_changed_kind() {
    let sb = Sandbox::new();
    let sp = savepoint_of(&sb, "keyed-count", 32);
    // The manifest says `count` was a map state (re-signed, as a tool would).
    let edited = sb.path("kind-changed");
    std::fs::create_dir_all(&edited).unwrap();
    for (name, bytes) in dir_snapshot(&sp) {
        let bytes = if name == "_metadata" {
            resigned(
                &String::from_utf8(bytes)
                    .unwrap()
                    .replace("\"kind\": \"value\"", "\"kind\": \"map\""),
            )
            .into_bytes()
        } else {
            bytes
        };
        std::fs::write(edited.join(name), bytes).unwrap();
    }
    let (code, p) = plan(&sb, &keyed_count_job("keyed-count"), &edited, &[]);
    assert_eq!(code, 1, "{p:#}");
    let s = state(&p, "count", "count");
    assert_eq!(s["verdict"], "refuse");
    assert!(s["reason"].as_str().unwrap().contains("kind"), "{s}");
    assert!(p["errors"][0].as_str().unwrap().contains("was map state"));
}

#[test]
fn upgrade_plan_refuses_a_version_going_down() {
    let sb = Sandbox::new();
    let sp = savepoint_of(&sb, "keyed-count-v3", 32);
    let (code, p) = plan(&sb, &keyed_count_job("keyed-count"), &sp, &[]);
    assert_eq!(code, 1, "{p:#}");
    let s = state(&p, "count", "count");
    assert_eq!(s["verdict"], "refuse");
    assert_eq!(s["saved"]["version"], 2);
    assert_eq!(s["declared"]["version"], 1);
    assert!(p["errors"][0]
        .as_str()
        .unwrap()
        .contains("state versions cannot go down"));
}

#[test]
fn upgrade_plan_refuses_a_source_that_does_not_fit() {
    let sb = Sandbox::new();
    let sp = savepoint_of(&sb, "keyed-count", 32);
    sb.write("input.jsonl", "{\"key\": \"a\", \"value\": \"1\"}\n");
    let generator = keyed_count_job("keyed-count");
    let at = generator.find("[source]").unwrap();
    let end = generator.find("[[operators]]").unwrap();
    let file_source = format!(
        "{}[source]\ntype = \"file\"\npath = \"input.jsonl\"\n\n{}",
        &generator[..at],
        &generator[end..]
    );
    let (code, p) = plan(&sb, &file_source, &sp, &[]);
    assert_eq!(code, 1, "{p:#}");
    assert_eq!(p["source"]["saved"], "generator");
    assert_eq!(p["source"]["job"], "file");
    assert!(p["source"]["error"]
        .as_str()
        .unwrap()
        .contains("generator position"));
    // The state itself would restore: only the source refuses.
    assert_eq!(state(&p, "count", "count")["verdict"], "restore");
    assert_eq!(p["errors"].as_array().unwrap().len(), 1);
}

#[test]
fn upgrade_plan_reports_a_rekey_and_bad_input_in_one_line() {
    let sb = Sandbox::new();
    let sp = savepoint_of(&sb, "keyed-count", 32);
    let wider =
        keyed_count_job("keyed-count").replace("max_parallelism = 32", "max_parallelism = 128");
    let (code, p) = plan(&sb, &wider, &sp, &[]);
    assert_eq!(code, 0, "{p:#}");
    assert_eq!(p["rekey"], serde_json::json!({"from": 32, "to": 128}));
    let text = sb
        .weir(&[
            "upgrade",
            "plan",
            "plan.toml",
            "--from-savepoint",
            sp.to_str().unwrap(),
        ])
        .ok();
    assert!(
        text.stdout.contains("re-key from 32 to 128 key groups"),
        "{}",
        text.stdout
    );

    // Input that cannot be planned at all: one line, exit 1.
    let sp_s = sp.to_str().unwrap();
    sb.weir(&["upgrade", "plan", "missing.toml", "--from-savepoint", sp_s])
        .fails_with(&["missing.toml"]);
    sb.weir(&[
        "upgrade",
        "plan",
        "plan.toml",
        "--from-savepoint",
        "nowhere",
    ])
    .fails_with(&["nowhere", "does not exist"]);
    let damaged = sb.path("damaged");
    std::fs::create_dir_all(&damaged).unwrap();
    for (name, mut bytes) in dir_snapshot(&sp) {
        if name.ends_with(".state") {
            let last = bytes.len() - 1;
            bytes[last] ^= 1;
        }
        std::fs::write(damaged.join(name), bytes).unwrap();
    }
    sb.weir(&[
        "upgrade",
        "plan",
        "plan.toml",
        "--from-savepoint",
        damaged.to_str().unwrap(),
    ])
    .fails_with(&["damaged"]);
    sb.write("not.wasm", "not a component");
    sb.write("plan.toml", counts_job(&sb.path("not.wasm"), 2, None, ""));
    sb.weir(&["upgrade", "plan", "plan.toml", "--from-savepoint", sp_s])
        .fails_with(&["operator `count`", "plan.toml"]);
}

/// A copy of `output` in a new sandbox, restored from `sp` with `job_text`:
/// the output then.
fn restored(output: &str, job_text: &str, sp: &Path, rekey: &str) -> String {
    let sb = Sandbox::new();
    sb.write("out.jsonl", output);
    sb.write("job.toml", job_text);
    let run = sb
        .weir(&["run", "job.toml", "--from-savepoint", sp.to_str().unwrap()])
        .ok();
    assert!(run.stderr.contains(rekey), "{}", run.stderr);
    sb.read("out.jsonl")
}

#[test]
fn a_savepoint_at_64_key_groups_restores_at_256_and_at_16() {
    let expected = sorted_lines(&counts_reference(2));
    let sb = Sandbox::new();
    let sp = savepoint_of(&sb, "keyed-count", 64);
    let before = sb.read("out.jsonl");
    assert!(before.lines().count() < 40000, "the job stopped early");
    for (m, p) in [(256, 4), (16, 2)] {
        let text = counts_job(&operator("keyed-count"), p, None, "")
            .replace("max_parallelism = 32", &format!("max_parallelism = {m}"));
        let out = restored(
            &before,
            &text,
            &sp,
            &format!("re-key from 64 to {m} key groups"),
        );
        assert_eq!(sorted_lines(&out), expected, "at max_parallelism {m}");
        crate::harness::assert_counts_continue(&out);
    }
}

#[test]
fn open_windows_carry_on_through_a_rekey() {
    // Many keys, so that most windows open at the savepoint see no event
    // after it: they fire only from their restored timers.
    let windows = |m: u32, p: u32, rate: Option<u64>| {
        windows_job(&operator("windowed-sum"), rate)
            .replace("keys = 20", "keys = 2000")
            .replace("max_parallelism = 16", &format!("max_parallelism = {m}"))
            .replace("parallelism = 2\n", &format!("parallelism = {p}\n"))
    };
    let expected = {
        let sb = Sandbox::new();
        sb.run_job(&windows(64, 2, None)).ok();
        sorted_lines(&sb.read("out.jsonl"))
    };
    let sb = Sandbox::new();
    sb.write("job.toml", windows(64, 2, Some(10000)));
    let sp = run_and_stop_after(&sb, "job.toml", &[], &["--savepoint", "sp"], 100);
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(sp.join("_metadata")).unwrap()).unwrap();
    assert!(
        meta["operators"][0]["timers"].as_u64().unwrap() > 0,
        "windows were open at the savepoint"
    );
    let before = sb.read("out.jsonl");
    for (m, p) in [(256, 4), (16, 2)] {
        let out = restored(
            &before,
            &windows(m, p, None),
            &sp,
            &format!("re-key from 64 to {m} key groups"),
        );
        assert_eq!(sorted_lines(&out), expected, "at max_parallelism {m}");
    }
}

#[test]
fn a_checkpoint_with_other_key_groups_is_still_refused() {
    let sb = Sandbox::new();
    let checkpoints = "\n[checkpoint]\ninterval = \"100ms\"\ndir = \"state\"\n";
    sb.write(
        "job.toml",
        counts_job(&operator("keyed-count"), 2, Some(4000), checkpoints),
    );
    let mut child = sb.cmd(&["run", "job.toml"]).log("log").start();
    child.wait_for("checkpoint 2 complete", 1);
    child.kill();
    sb.write(
        "job.toml",
        counts_job(&operator("keyed-count"), 2, None, checkpoints)
            .replace("max_parallelism = 32", "max_parallelism = 64"),
    );
    sb.weir(&["run", "job.toml"]).fails_with(&[
        "was taken with max_parallelism 32, the job has 64: key groups cannot change",
        "--fresh",
    ]);
}
