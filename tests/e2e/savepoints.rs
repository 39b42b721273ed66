//! Savepoints end to end: the REST API and the CLI over it, stop-with-
//! savepoint, restore by operator ID (moved, at another parallelism, with
//! new logic that adds a state or migrates one), every check before a
//! restore, and damaged savepoints refused before the job starts.

use std::path::{Path, PathBuf};

use crate::harness::{
    assert_counts_continue, counts_job, counts_reference, dir_snapshot, final_counts, http,
    operator, resigned, run_and_stop_after, savepoint_answer, sorted_lines, windows_job, Sandbox,
};

const CHECKPOINTS: &str = r#"
[checkpoint]
interval = "150ms"
dir = "state"
"#;

/// Starts the job, waits for some output, stops it with a savepoint through
/// `weir stop`; returns the savepoint directory.
fn run_and_stop(sb: &Sandbox, job_file: &str, extra_args: &[&str], stop_args: &[&str]) -> PathBuf {
    run_and_stop_after(sb, job_file, extra_args, stop_args, 2000)
}

#[test]
fn rest_api_reports_the_job_and_refuses_bad_requests() {
    let sb = Sandbox::new();
    sb.write(
        "job.toml",
        counts_job(&operator("keyed-count"), 2, Some(4000), CHECKPOINTS),
    );
    let mut child = sb.cmd(&["run", "job.toml"]).log("log").rest().start();
    let addr = child.rest_addr();
    child.wait_for("checkpoint 2 complete", 1);

    let (status, jobs) = http(&addr, "GET", "/jobs", "");
    assert_eq!(status, 200);
    assert_eq!(jobs["jobs"][0]["id"], "counts");
    let (status, job) = http(&addr, "GET", "/jobs/counts", "");
    assert_eq!(status, 200);
    assert_eq!(job["state"], "RUNNING");
    assert_eq!(job["operators"][0]["id"], "count");
    assert_eq!(job["operators"][0]["name"], "keyed-count");
    assert!(job["last-checkpoint"]["id"].as_u64().unwrap() >= 2);
    assert!(job["events-in"].as_u64().unwrap() > 0);
    let (status, cps) = http(&addr, "GET", "/jobs/counts/checkpoints", "");
    assert_eq!(status, 200);
    assert!(!cps["checkpoints"].as_array().unwrap().is_empty());

    // Errors are JSON with a message.
    let (status, e) = http(&addr, "GET", "/jobs/other", "");
    assert_eq!(status, 404);
    assert!(e["error"].as_str().unwrap().contains("`other`"));
    let (status, e) = http(&addr, "POST", "/jobs/counts/savepoints", "{not json");
    assert_eq!(status, 400);
    assert!(e["error"].as_str().unwrap().contains("bad request body"));
    let (status, e) = http(&addr, "POST", "/jobs/counts/savepoints", r#"{"dir": "x"}"#);
    assert_eq!(status, 400, "{e}");
    let (status, e) = http(&addr, "GET", "/jobs/counts/savepoints/nope", "");
    assert_eq!(status, 404, "{e}");
    let (status, _) = http(&addr, "GET", "/nowhere", "");
    assert_eq!(status, 404);

    // A savepoint through the REST API, into the job file's default directory.
    let (status, r) = http(&addr, "POST", "/jobs/counts/savepoints", "");
    assert_eq!(status, 202, "{r}");
    let id = r["request-id"].as_str().unwrap().to_string();
    let s = savepoint_answer(&addr, "counts", &id);
    let location = match s["status"].as_str().unwrap() {
        "COMPLETED" => s["location"].as_str().unwrap().to_string(),
        other => panic!("savepoint {other}: {s}"),
    };
    assert!(Path::new(&location).starts_with(sb.path("savepoints")));
    sb.weir(&["savepoint", "verify", &location]).ok();

    // A savepoint into a directory that cannot be created fails, and the job goes on.
    sb.write("blocker", "a file");
    let (status, r) = http(
        &addr,
        "POST",
        "/jobs/counts/savepoints",
        &format!(
            r#"{{"target-directory": {:?}}}"#,
            sb.path("blocker/sp").display().to_string()
        ),
    );
    assert_eq!(status, 202);
    let id = r["request-id"].as_str().unwrap().to_string();
    let s = savepoint_answer(&addr, "counts", &id);
    match s["status"].as_str().unwrap() {
        "FAILED" => {
            assert!(s["failure"].as_str().unwrap().contains("blocker"), "{s}");
        }
        other => panic!("expected FAILED, got {other}: {s}"),
    }
    let (_, job) = http(&addr, "GET", "/jobs/counts", "");
    assert_eq!(job["state"], "RUNNING");
    child.kill();
}

#[test]
fn stop_with_savepoint_then_restore_gives_the_uninterrupted_output() {
    let expected = counts_reference(2);
    let sb = Sandbox::new();
    sb.write(
        "job.toml",
        counts_job(&operator("keyed-count"), 2, Some(8000), CHECKPOINTS),
    );
    // A triggered savepoint through the CLI, while the job runs.
    let mut child = sb.cmd(&["run", "job.toml"]).log("log").rest().start();
    let addr = child.rest_addr();
    sb.wait_for("out.jsonl", "\n", 1000);
    let triggered = sb
        .weir(&["savepoint", "trigger", "--addr", &addr, "--dir", "manual"])
        .ok();
    let triggered = PathBuf::from(triggered.stdout.trim());
    assert!(triggered.starts_with(sb.path("manual")), "{triggered:?}");
    sb.weir(&["savepoint", "verify", triggered.to_str().unwrap()])
        .ok();
    // Then stop with a savepoint: the process exits 0 and all output before it is published.
    let stopped = sb
        .weir(&["stop", "--addr", &addr, "--savepoint", "stops"])
        .ok();
    assert!(child.wait().success(), "{}", sb.read("log"));
    let stopped = PathBuf::from(stopped.stdout.trim());
    let before = sb.read("out.jsonl");
    assert!(before.lines().count() < 40000, "the job stopped early");
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(stopped.join("_metadata")).unwrap()).unwrap();
    assert_eq!(meta["kind"], "stop");
    assert_eq!(
        meta["sink"]["output_len"].as_u64().unwrap(),
        before.len() as u64,
        "the sink's final commit is the savepoint's"
    );
    // Restore it, at another parallelism, from another working state directory.
    sb.write(
        "job.toml",
        counts_job(&operator("keyed-count"), 3, None, CHECKPOINTS),
    );
    sb.weir(&[
        "run",
        "job.toml",
        "--from-savepoint",
        stopped.to_str().unwrap(),
    ])
    .ok();
    let after = sb.read("out.jsonl");
    assert_eq!(sorted_lines(&after), sorted_lines(&expected));
    assert_counts_continue(&after);
}

#[test]
fn a_moved_savepoint_restores_at_any_parallelism_without_checkpoints() {
    let expected = counts_reference(1);
    let sb = Sandbox::new();
    // No [checkpoint] table: savepoints work all the same.
    sb.write(
        "job.toml",
        counts_job(&operator("keyed-count"), 3, Some(8000), ""),
    );
    let dir = run_and_stop(&sb, "job.toml", &[], &["--savepoint", "sp"]);
    // Move it somewhere else entirely.
    let moved = sb.path("elsewhere/deeper/the-savepoint");
    std::fs::create_dir_all(moved.parent().unwrap()).unwrap();
    std::fs::rename(&dir, &moved).unwrap();
    sb.weir(&["savepoint", "verify", moved.to_str().unwrap()])
        .ok();
    for p in [1, 2, 32] {
        let run_dir = Sandbox::new();
        let copy = run_dir.path("copied-savepoint");
        std::fs::create_dir_all(&copy).unwrap();
        for f in std::fs::read_dir(&moved).unwrap() {
            let f = f.unwrap();
            std::fs::copy(f.path(), copy.join(f.file_name())).unwrap();
        }
        std::fs::copy(sb.path("out.jsonl"), run_dir.path("out.jsonl")).unwrap();
        run_dir.write(
            "job.toml",
            counts_job(&operator("keyed-count"), p, None, ""),
        );
        run_dir
            .weir(&["run", "job.toml", "--from-savepoint", "copied-savepoint"])
            .ok();
        let out = run_dir.read("out.jsonl");
        assert_eq!(
            sorted_lines(&out),
            sorted_lines(&expected),
            "at parallelism {p}"
        );
    }
}

#[test]
fn a_jobs_savepoint_is_canonical_byte_for_byte() {
    // The job writes its savepoint from the subtasks' hash maps as they
    // acknowledge; `weir state import` writes the same state from a sorted
    // list. Equal state: the data files must be equal, byte for byte.
    let sb = Sandbox::new();
    sb.write(
        "job.toml",
        counts_job(&operator("keyed-count"), 2, Some(8000), ""),
    );
    let sp = run_and_stop(&sb, "job.toml", &[], &["--savepoint", "sp"]);
    let sp_s = sp.to_str().unwrap();
    let state = ["--operator", "count", "--state", "count"];
    let mut export = vec!["state", "export", sp_s, "-o", "count.jsonl"];
    export.extend(state);
    sb.weir(&export).ok();
    assert!(sb.read("count.jsonl").lines().count() > 100);
    let mut import = vec!["state", "import", sp_s, "-i", "count.jsonl", "-o", "again"];
    import.extend(state);
    sb.weir(&import).ok();
    let mut written = dir_snapshot(&sp);
    let mut imported = dir_snapshot(&sb.path("again"));
    written.remove("_metadata");
    imported.remove("_metadata");
    assert_eq!(
        written.keys().collect::<Vec<_>>(),
        imported.keys().collect::<Vec<_>>()
    );
    assert_eq!(written.len(), 2, "{:?}", written.keys());
    for (name, bytes) in &written {
        assert!(
            bytes == &imported[name],
            "data file {name} differs: {} bytes written by the job, {} by import",
            bytes.len(),
            imported[name].len()
        );
    }
    // And the savepoint restores at another parallelism to the same counts.
    sb.write(
        "job.toml",
        counts_job(&operator("keyed-count"), 3, None, ""),
    );
    sb.weir(&["run", "job.toml", "--from-savepoint", "again"])
        .ok();
    assert_eq!(
        sorted_lines(&sb.read("out.jsonl")),
        sorted_lines(&counts_reference(2))
    );
}

#[test]
fn logic_swap_adds_a_state_then_migrates_one() {
    let expected = final_counts(&counts_reference(2));
    let sb = Sandbox::new();
    // v1 counts.
    sb.write(
        "job.toml",
        counts_job(&operator("keyed-count"), 2, Some(8000), CHECKPOINTS),
    );
    let sp1 = run_and_stop(&sb, "job.toml", &[], &["--savepoint", "sp"]);
    let v1_lines = sb.read("out.jsonl").lines().count();

    // v2 keeps `count` and adds `last_seen`: the counts go on.
    sb.write(
        "job.toml",
        counts_job(&operator("keyed-count-v2"), 2, Some(8000), CHECKPOINTS),
    );
    let sp2 = run_and_stop(
        &sb,
        "job.toml",
        &["--from-savepoint", sp1.to_str().unwrap()],
        &["--savepoint", "sp"],
    );
    let log = sb.read("job.toml.log");
    assert!(
        log.contains("state `last_seen` is new"),
        "the restore says what is new:\n{log}"
    );
    let out = sb.read("out.jsonl");
    let v2_part: Vec<&str> = out.lines().skip(v1_lines).collect();
    assert!(!v2_part.is_empty());
    assert!(
        v2_part.iter().all(|l| l.contains("last_seen=")),
        "v2 output after the swap"
    );
    let meta = sb
        .weir(&["savepoint", "inspect", "--json", sp2.to_str().unwrap()])
        .ok();
    let meta: serde_json::Value = serde_json::from_str(&meta.stdout).unwrap();
    assert_eq!(meta["operators"][0]["version"], "2.0.0");

    // v3 declares `count` at version 2 and migrates it; it no longer keeps
    // `last_seen`, which only --allow-non-restored-state may drop.
    sb.write(
        "job.toml",
        counts_job(&operator("keyed-count-v3"), 3, None, CHECKPOINTS),
    );
    sb.weir(&["run", "job.toml", "--from-savepoint", sp2.to_str().unwrap()])
        .fails_with(&[
            "operator `count`",
            "`last_seen`",
            "--allow-non-restored-state",
        ]);
    let run = sb
        .weir(&[
            "run",
            "job.toml",
            "--from-savepoint",
            sp2.to_str().unwrap(),
            "--allow-non-restored-state",
        ])
        .ok();
    assert!(
        run.stderr.contains("state `last_seen` is dropped")
            && run.stderr.contains("migrated from version 1 to 2"),
        "{}",
        run.stderr
    );
    let out = sb.read("out.jsonl");
    assert_counts_continue(&out);
    assert_eq!(final_counts(&out), expected);
}

#[test]
fn restore_checks_run_before_anything_and_change_nothing() {
    let sb = Sandbox::new();
    sb.write(
        "job.toml",
        counts_job(&operator("keyed-count"), 2, Some(8000), ""),
    );
    let sp = run_and_stop(&sb, "job.toml", &[], &["--savepoint", "sp"]);
    let sp_s = sp.to_str().unwrap().to_string();
    let sp_before = dir_snapshot(&sp);
    let out_before = sb.read("out.jsonl");
    let unchanged = |sb: &Sandbox| {
        assert_eq!(dir_snapshot(&sp), sp_before, "the savepoint changed");
        assert_eq!(sb.read("out.jsonl"), out_before, "the output changed");
        assert!(
            !sb.path("state").exists(),
            "the state directory was created"
        );
    };

    // An operator ID the job lacks.
    let renamed = counts_job(&operator("keyed-count"), 2, None, CHECKPOINTS)
        .replace("id = \"count\"", "id = \"tally\"");
    sb.write("job.toml", &renamed);
    sb.weir(&["run", "job.toml", "--from-savepoint", &sp_s])
        .fails_with(&["operator `count`", "--allow-non-restored-state"]);
    unchanged(&sb);
    // With --allow-non-restored-state it is dropped, said so, and `tally` starts empty.
    let allowed = Sandbox::new();
    allowed.write("job.toml", &renamed);
    let run = allowed
        .weir(&[
            "run",
            "job.toml",
            "--from-savepoint",
            &sp_s,
            "--allow-non-restored-state",
        ])
        .ok();
    assert!(
        run.stderr
            .contains("operator `count`: its saved state is dropped")
            && run.stderr.contains("operator `tally` is new"),
        "{}",
        run.stderr
    );

    // A source of another kind cannot resume from the savepoint's position.
    sb.write("input.jsonl", "{\"key\": \"a\", \"value\": \"1\"}\n");
    let file_source = counts_job(&operator("keyed-count"), 2, None, CHECKPOINTS);
    let at = file_source.find("[source]").unwrap();
    let end = file_source.find("[[operators]]").unwrap();
    let file_source = format!(
        "{}[source]\ntype = \"file\"\npath = \"input.jsonl\"\n\n{}",
        &file_source[..at],
        &file_source[end..]
    );
    sb.write("job.toml", &file_source);
    sb.weir(&["run", "job.toml", "--from-savepoint", &sp_s])
        .fails_with(&["generator position", "reads a file"]);
    unchanged(&sb);

    // (A different max_parallelism re-keys a savepoint: tests/e2e/upgrade.rs.)

    // A state whose kind changed (the manifest says `count` was a map state).
    let kind_changed = sb.path("kind-changed");
    std::fs::create_dir_all(&kind_changed).unwrap();
    for (name, bytes) in &sp_before {
        let bytes = if name == "_metadata" {
            // Re-signed, as a tool that edits savepoints would.
            resigned(
                &String::from_utf8(bytes.clone())
                    .unwrap()
                    .replace("\"kind\": \"value\"", "\"kind\": \"map\""),
            )
            .into_bytes()
        } else {
            bytes.clone()
        };
        std::fs::write(kind_changed.join(name), bytes).unwrap();
    }
    sb.write(
        "job.toml",
        counts_job(&operator("keyed-count"), 2, None, CHECKPOINTS),
    );
    sb.weir(&[
        "run",
        "job.toml",
        "--from-savepoint",
        kind_changed.to_str().unwrap(),
    ])
    .fails_with(&[
        "operator `count`",
        "state `count`",
        "was map state",
        "value state",
    ]);
    unchanged(&sb);

    // A migrate failure names the key, and leaves everything as it was.
    sb.write(
        "bad.jsonl",
        "{\"key\": \"k-bad\", \"value\": \"not a number\"}\n",
    );
    let with_bad = sb.path("with-bad-value");
    let imported = sb
        .weir(&[
            "state",
            "import",
            &sp_s,
            "--operator",
            "count",
            "--state",
            "count",
            "--input",
            "bad.jsonl",
            "--output",
            with_bad.to_str().unwrap(),
        ])
        .ok();
    let imported = imported.stdout.trim().to_string();
    assert_eq!(Path::new(&imported), with_bad);
    let imported_before = dir_snapshot(Path::new(&imported));
    sb.write(
        "job.toml",
        counts_job(&operator("keyed-count-v3"), 2, None, CHECKPOINTS),
    );
    sb.weir(&["run", "job.toml", "--from-savepoint", &imported])
        .fails_with(&["migrate", "state `count`", "key `k-bad`", "is not a count"]);
    assert_eq!(dir_snapshot(Path::new(&imported)), imported_before);
    unchanged(&sb);
}

#[test]
fn damaged_savepoints_are_refused_before_the_job_starts() {
    let sb = Sandbox::new();
    sb.write(
        "job.toml",
        counts_job(&operator("keyed-count"), 2, Some(8000), ""),
    );
    let sp = run_and_stop(&sb, "job.toml", &[], &["--savepoint", "sp"]);
    let out_before = sb.read("out.jsonl");
    let damage = |name: &str, how: &dyn Fn(&Path)| -> PathBuf {
        let copy = sb.path(&format!("damaged/{name}"));
        std::fs::create_dir_all(&copy).unwrap();
        for f in std::fs::read_dir(&sp).unwrap() {
            let f = f.unwrap();
            std::fs::copy(f.path(), copy.join(f.file_name())).unwrap();
        }
        how(&copy);
        copy
    };
    let data = "op0-sub1.state";
    let cases: Vec<(&str, PathBuf, Vec<&str>)> = vec![
        (
            "truncated",
            damage("truncated", &|d| {
                let b = std::fs::read(d.join(data)).unwrap();
                std::fs::write(d.join(data), &b[..b.len() / 2]).unwrap();
            }),
            vec![data, "truncated"],
        ),
        (
            "flipped",
            damage("flipped", &|d| {
                let mut b = std::fs::read(d.join(data)).unwrap();
                let i = b.len() / 2;
                b[i] ^= 0x10;
                std::fs::write(d.join(data), &b).unwrap();
            }),
            vec![data, "damaged", "SHA-256"],
        ),
        (
            "missing file",
            damage("missing", &|d| std::fs::remove_file(d.join(data)).unwrap()),
            vec![data, "missing"],
        ),
        (
            "missing metadata",
            damage("nometa", &|d| {
                std::fs::remove_file(d.join("_metadata")).unwrap()
            }),
            vec!["_metadata", "missing"],
        ),
        (
            "unparsable metadata",
            damage("badmeta", &|d| {
                std::fs::write(d.join("_metadata"), "{\"format\": \"weir-savepoint\", ").unwrap()
            }),
            vec!["_metadata", "not valid JSON"],
        ),
        (
            "unknown format version",
            damage("future", &|d| {
                let t = std::fs::read_to_string(d.join("_metadata")).unwrap();
                std::fs::write(
                    d.join("_metadata"),
                    t.replace("\"format_version\": 2", "\"format_version\": 99"),
                )
                .unwrap()
            }),
            vec!["_metadata", "format version 99"],
        ),
        (
            "format version 1 (no checksum of _metadata)",
            damage("v1", &|d| {
                let t = std::fs::read_to_string(d.join("_metadata")).unwrap();
                let t = t.replace("\"format_version\": 2", "\"format_version\": 1");
                std::fs::write(d.join("_metadata"), t).unwrap()
            }),
            vec!["_metadata", "format version 1", "no checksum"],
        ),
        (
            "one digit of the source position",
            damage("position", &|d| {
                let t = std::fs::read_to_string(d.join("_metadata")).unwrap();
                std::fs::write(d.join("_metadata"), change_a_digit(&t, "\"next\": ")).unwrap()
            }),
            vec!["_metadata", "does not match its checksum"],
        ),
        (
            "one digit of the sink's length",
            damage("sink", &|d| {
                let t = std::fs::read_to_string(d.join("_metadata")).unwrap();
                std::fs::write(d.join("_metadata"), change_a_digit(&t, "\"output_len\": ")).unwrap()
            }),
            vec!["_metadata", "does not match its checksum"],
        ),
        (
            "one digit of the watermark",
            damage("watermark", &|d| {
                let t = std::fs::read_to_string(d.join("_metadata")).unwrap();
                std::fs::write(d.join("_metadata"), change_a_digit(&t, "\"watermark\": ")).unwrap()
            }),
            vec!["_metadata", "does not match its checksum"],
        ),
    ];
    sb.write(
        "job.toml",
        counts_job(&operator("keyed-count"), 2, None, ""),
    );
    for (what, dir, needles) in cases {
        eprintln!("case: {what}");
        sb.weir(&["run", "job.toml", "--from-savepoint", dir.to_str().unwrap()])
            .fails_with(&needles);
        sb.weir(&["savepoint", "verify", dir.to_str().unwrap()])
            .fails_with(&needles);
        assert_eq!(
            sb.read("out.jsonl"),
            out_before,
            "{what}: the output changed"
        );
    }
}

/// `text` with the last digit of the number after the first `field` changed.
fn change_a_digit(text: &str, field: &str) -> String {
    let at = text
        .find(field)
        .unwrap_or_else(|| panic!("no {field} in {text}"))
        + field.len();
    let end = at
        + text[at..]
            .find(|c: char| !c.is_ascii_digit() && c != '-')
            .unwrap();
    let last = text.as_bytes()[end - 1];
    assert!(last.is_ascii_digit(), "{field} is not a number");
    let digit = if last == b'9' {
        '0'
    } else {
        (last + 1) as char
    };
    format!("{}{digit}{}", &text[..end - 1], &text[end..])
}

#[test]
fn stop_with_drain_fires_the_windows_and_without_drain_they_resume() {
    let windows = |rate: Option<u64>| windows_job(&operator("windowed-sum"), rate);
    let reference = {
        let sb = Sandbox::new();
        sb.run_job(&windows(None)).ok();
        sb.read("out.jsonl")
    };
    // Without drain: windows open at the stop resume after the restore.
    let sb = Sandbox::new();
    sb.write("job.toml", windows(Some(10000)));
    let sp = run_and_stop_after(&sb, "job.toml", &[], &["--savepoint", "sp"], 100);
    sb.write("job.toml", windows(None));
    sb.weir(&["run", "job.toml", "--from-savepoint", sp.to_str().unwrap()])
        .ok();
    assert_eq!(
        sorted_lines(&sb.read("out.jsonl")),
        sorted_lines(&reference)
    );

    // With drain: event time ends, every open window fires before the savepoint.
    let sb = Sandbox::new();
    sb.write("job.toml", windows(Some(10000)));
    let sp = run_and_stop_after(&sb, "job.toml", &[], &["--savepoint", "sp", "--drain"], 100);
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(sp.join("_metadata")).unwrap()).unwrap();
    assert_eq!(meta["kind"], "stop-drain");
    assert_eq!(meta["operators"][0]["timers"], 0, "every timer fired");
    let drained = sb.read("out.jsonl");
    let last_ts = meta["source"]["max_timestamp"].as_i64().unwrap();
    // Every window up to the last event read has been emitted.
    let emitted: std::collections::BTreeSet<i64> = drained
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["timestamp"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert!(
        emitted.iter().any(|&t| t >= last_ts - last_ts % 1000),
        "the last window fired"
    );
}
