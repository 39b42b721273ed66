//! Savepoint tools: `weir savepoint inspect|verify|delete|edit` and `weir
//! state export|import` on savepoints written here with the library's
//! savepoint writer (value, map and list states, keys and values that are
//! not UTF-8, timers, two data files with different key-group ranges).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use weir_host::model::keygroup::key_group;
use weir_host::model::{SinkState, SourcePosition, SourceState};
use weir_host::state::checkpoint::TimerRecord;
use weir_host::state::keyed::{StateChange, StoredEntry};
use weir_host::state::savepoint::{
    encode_data, new_metadata, Record, SavedOperator, SavedState, Savepoint, SavepointKind,
    SavepointWriter,
};

use crate::harness::{dir_snapshot, Sandbox};

const MAX_PARALLELISM: u32 = 16;

/// The keys of the fixture: text, and a few that are not UTF-8.
fn keys() -> Vec<Vec<u8>> {
    let mut keys: Vec<Vec<u8>> = (0..24).map(|i| format!("user-{i}").into_bytes()).collect();
    keys.extend((0..4u8).map(|i| vec![0xff, 0x00, i]));
    keys.push(Vec::new());
    keys
}

/// The state entries of operator `count`: `count` (value), `seen` (map), `items` (list).
fn count_entries() -> Vec<(&'static str, Vec<u8>, StoredEntry)> {
    let mut out = Vec::new();
    for (i, key) in keys().into_iter().enumerate() {
        let value = if i % 7 == 3 {
            vec![0xc3, 0x28, i as u8] // not UTF-8
        } else {
            format!("{i}").into_bytes()
        };
        out.push(("count", key.clone(), StoredEntry::Value(value)));
        if i % 2 == 0 {
            let mut entries = vec![
                (b"a".to_vec(), format!("\"q\" {i}").into_bytes()),
                (b"b\n".to_vec(), Vec::new()),
            ];
            if i % 4 == 0 {
                entries.push((vec![0xfe, i as u8], vec![0x80]));
            }
            entries.sort();
            out.push(("seen", key.clone(), StoredEntry::Map(entries)));
        }
        if i % 3 == 0 {
            let values = vec![
                b"x".to_vec(),
                vec![0xff; i % 5 + 1],
                "é".as_bytes().to_vec(),
            ];
            out.push(("items", key, StoredEntry::List(values)));
        }
    }
    out
}

/// Writes the fixture savepoint `name` into the sandbox; returns its directory.
fn fixture(sb: &Sandbox, name: &str) -> PathBuf {
    let w = SavepointWriter::create_named(&sb.path(""), name).unwrap();
    let mut meta = new_metadata(
        "tools",
        7,
        SavepointKind::Stop,
        1_700_000_000_000,
        MAX_PARALLELISM,
        false,
        SourceState {
            position: SourcePosition::File {
                offset: 1234,
                line: 56,
            },
            max_timestamp: 1_700_000_000_500,
        },
        Some(SinkState { output_len: 999 }),
        1_700_000_000_400,
    );

    // Operator `count`: parallelism 2, key groups 0..6 and 6..16.
    let entries = count_entries();
    let mut files = Vec::new();
    let mut per_state: BTreeMap<String, u64> = BTreeMap::new();
    let mut timers_total = 0;
    let mut state_bytes = 0u64;
    for (sub, range) in [0..6u32, 6..MAX_PARALLELISM].into_iter().enumerate() {
        let mut changes = Vec::new();
        for (state, key, entry) in &entries {
            let kg = key_group(Some(key), MAX_PARALLELISM);
            if range.contains(&kg) {
                changes.push(StateChange {
                    state: state.to_string(),
                    key_group: kg,
                    key: key.clone(),
                    entry: entry.clone(),
                });
            }
        }
        assert!(
            changes.len() > 5,
            "the fixture wants keys in both files, file {sub} has {}",
            changes.len()
        );
        changes.sort_by_key(|c| c.key_group);
        for c in &changes {
            state_bytes += c.key.len() as u64
                + match &c.entry {
                    StoredEntry::Value(v) => v.len() as u64,
                    StoredEntry::Map(m) => m.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum(),
                    StoredEntry::List(l) => l.iter().map(|v| v.len() as u64).sum(),
                    // A full snapshot holds whole states only.
                    StoredEntry::Deleted
                    | StoredEntry::MapUpdate(_)
                    | StoredEntry::ListAppend(_) => 0,
                };
        }
        let timers: Vec<(u32, Vec<TimerRecord>)> = vec![
            (
                range.start,
                vec![(0, 100, Some(b"user-1".to_vec())), (1, 5, None)],
            ),
            (range.end - 1, vec![(0, 200, Some(vec![0xff]))]),
        ];
        timers_total += 3;
        let (bytes, counts) = encode_data(&changes, &timers);
        for (state, n) in counts {
            *per_state.entry(state).or_default() += n;
        }
        files.push(
            w.write_file(&format!("op0-sub{sub}.state"), range, &bytes)
                .unwrap(),
        );
    }
    meta.operators.push(SavedOperator {
        id: "count".into(),
        name: "keyed-count".into(),
        version: "2".into(),
        wasm_sha256: "ab".repeat(32),
        parallelism: 2,
        states: vec![
            saved_state("count", "value", 1, per_state["count"]),
            saved_state("seen", "map", 2, per_state["seen"]),
            saved_state("items", "list", 1, per_state["items"]),
        ],
        timers: timers_total,
        state_bytes,
        files,
    });

    // Operator `windows`: one file with all key groups.
    let changes: Vec<StateChange> = (0..5)
        .map(|i| {
            let key = format!("w{i}").into_bytes();
            StateChange {
                state: "sum".into(),
                key_group: key_group(Some(&key), MAX_PARALLELISM),
                key,
                entry: StoredEntry::Value(format!("{}", i * 10).into_bytes()),
            }
        })
        .collect();
    let (bytes, _) = encode_data(&changes, &[]);
    let file = w
        .write_file("op1-sub0.state", 0..MAX_PARALLELISM, &bytes)
        .unwrap();
    meta.operators.push(SavedOperator {
        id: "windows".into(),
        name: "windowed-sum".into(),
        version: "1".into(),
        wasm_sha256: "cd".repeat(32),
        parallelism: 1,
        states: vec![saved_state("sum", "value", 1, 5)],
        timers: 0,
        state_bytes: 20,
        files: vec![file],
    });
    w.finish(&meta).unwrap()
}

fn saved_state(name: &str, kind: &str, version: u32, keys: u64) -> SavedState {
    SavedState {
        name: name.into(),
        kind: kind.into(),
        version,
        keys,
    }
}

/// The names in a directory, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"))
}

/// `weir state export` of one state, as text.
fn export(sb: &Sandbox, dir: &str, op: &str, state: &str) -> String {
    sb.weir(&["state", "export", dir, "--operator", op, "--state", state])
        .ok()
        .stdout
}

/// The timers of operator `op` of a savepoint, sorted.
fn timers(dir: &Path, op: &str) -> Vec<(u32, TimerRecord)> {
    let sp = Savepoint::open(dir).unwrap();
    let mut out = Vec::new();
    sp.load(op, 0..u32::MAX, |r| {
        if let Record::Timer(kg, t) = r {
            out.push((kg, t));
        }
        Ok(())
    })
    .unwrap();
    out.sort();
    out
}

#[test]
fn inspect_shows_the_manifest_as_text_and_json() {
    let sb = Sandbox::new();
    let dir = fixture(&sb, "sp");
    let text = sb.weir(&["savepoint", "inspect", "sp"]).ok().stdout;
    for needle in [
        "job              tools",
        "id               7",
        "kind             stop",
        "created at       2023-11-14T22:13:20Z",
        "max parallelism  16",
        "source           file line=56, offset=1234 (max timestamp 1700000000500)",
        "watermark        1700000000400",
        "data files       3, ",
        "operator `count`",
        "keyed-count 2",
        &"ab".repeat(32),
        "parallelism    2",
        "seen   map    v2",
        "timers         6",
        "op0-sub0.state  key groups 0..6   ",
        "operator `windows`",
    ] {
        assert!(text.contains(needle), "no {needle:?} in:\n{text}");
    }

    let v = json(
        &sb.weir(&["savepoint", "inspect", "sp", "--json"])
            .ok()
            .stdout,
    );
    let sp = Savepoint::open(&dir).unwrap();
    let on_disk: u64 = sp
        .meta
        .operators
        .iter()
        .flat_map(|o| &o.files)
        .map(|f| std::fs::metadata(dir.join(&f.file)).unwrap().len())
        .sum();
    assert_eq!(v["format"], "weir-savepoint");
    assert_eq!(v["job"], "tools");
    assert_eq!(v["max_parallelism"], 16);
    assert_eq!(v["operators"][0]["id"], "count");
    assert_eq!(v["operators"][0]["states"][1]["kind"], "map");
    assert_eq!(v["operators"][1]["files"][0]["file"], "op1-sub0.state");
    assert_eq!(v["totals"]["operators"], 2);
    assert_eq!(v["totals"]["data_files"], 3);
    assert_eq!(v["totals"]["data_bytes"], on_disk);
    assert_eq!(v["totals"]["timers"], 6);
    let keys: u64 = sp
        .meta
        .operators
        .iter()
        .flat_map(|o| &o.states)
        .map(|s| s.keys)
        .sum();
    assert_eq!(v["totals"]["keys"], keys);
}

#[test]
fn verify_accepts_an_intact_savepoint_and_names_each_damage() {
    let sb = Sandbox::new();
    let dir = fixture(&sb, "sp");
    let out = sb.weir(&["savepoint", "verify", "sp"]).ok().stdout;
    let bytes: u64 = dir_snapshot(&dir)
        .iter()
        .filter(|(n, _)| n.ends_with(".state"))
        .map(|(_, b)| b.len() as u64)
        .sum();
    assert_eq!(
        out.trim(),
        format!("savepoint sp is intact: 3 data files, {bytes} bytes")
    );

    type Damage = fn(&Path);
    let cases: [(&str, Damage, &[&str]); 6] = [
        (
            "flipped byte",
            |d| {
                let p = d.join("op0-sub1.state");
                let mut b = std::fs::read(&p).unwrap();
                let at = b.len() / 2;
                b[at] ^= 0x10;
                std::fs::write(&p, b).unwrap();
            },
            &["op0-sub1.state", "damaged"],
        ),
        (
            "truncated",
            |d| {
                let p = d.join("op0-sub1.state");
                let b = std::fs::read(&p).unwrap();
                std::fs::write(&p, &b[..b.len() - 3]).unwrap();
            },
            &["op0-sub1.state", "truncated"],
        ),
        (
            "missing data file",
            |d| std::fs::remove_file(d.join("op1-sub0.state")).unwrap(),
            &["op1-sub0.state", "missing"],
        ),
        (
            "missing _metadata",
            |d| std::fs::remove_file(d.join("_metadata")).unwrap(),
            &["_metadata", "missing"],
        ),
        (
            "unparsable _metadata",
            |d| std::fs::write(d.join("_metadata"), "{\"format\": \"weir-sav").unwrap(),
            &["_metadata", "not valid JSON"],
        ),
        (
            "format version 99",
            |d| {
                let p = d.join("_metadata");
                let text = std::fs::read_to_string(&p).unwrap();
                let text = text.replace("\"format_version\": 2,", "\"format_version\": 99,");
                assert!(text.contains("99"));
                std::fs::write(&p, text).unwrap();
            },
            &["_metadata", "format version 99"],
        ),
    ];
    for (i, (what, damage, needles)) in cases.into_iter().enumerate() {
        let name = format!("damaged-{i}");
        let d = fixture(&sb, &name);
        damage(&d);
        eprintln!("{what}:");
        sb.weir(&["savepoint", "verify", &name]).fails_with(needles);
    }
    // Inspect reads only `_metadata`: it fails on the manifest's damage alone.
    sb.weir(&["savepoint", "inspect", "damaged-3"])
        .fails_with(&["_metadata", "missing"]);
    sb.weir(&["savepoint", "inspect", "damaged-5", "--json"])
        .fails_with(&["_metadata", "format version 99"]);
    sb.weir(&["savepoint", "inspect", "damaged-2"]).ok();
}

#[test]
fn delete_removes_savepoints_and_nothing_else() {
    let sb = Sandbox::new();
    // A plain directory, and one whose `_metadata` is not a weir savepoint's.
    sb.write("plain/notes.txt", "keep me");
    sb.write("other/_metadata", "{\"format\": \"something-else\"}");
    sb.write("other/data", "keep me too");
    for (dir, needle) in [("plain", "missing"), ("other", "not a weir savepoint")] {
        let before = dir_snapshot(&sb.path(dir));
        sb.weir(&["savepoint", "delete", dir])
            .fails_with(&[dir, "_metadata", needle]);
        assert_eq!(dir_snapshot(&sb.path(dir)), before, "{dir} was touched");
    }
    sb.weir(&["savepoint", "delete", "nowhere"])
        .fails_with(&["nowhere", "does not exist"]);

    let dir = fixture(&sb, "sp");
    let out = sb.weir(&["savepoint", "delete", "sp"]).ok().stdout;
    assert!(
        out.contains("deleted savepoint sp") && out.contains("4 files"),
        "{out}"
    );
    assert!(!dir.exists());

    // Damaged data does not stop a delete: `_metadata` is what counts.
    let dir = fixture(&sb, "broken");
    std::fs::remove_file(dir.join("op0-sub0.state")).unwrap();
    std::fs::write(dir.join("op0-sub1.state"), "garbage").unwrap();
    sb.weir(&["savepoint", "delete", "broken"]).ok();
    assert!(!dir.exists());
}

#[test]
fn edit_renames_and_drops_into_a_new_savepoint() {
    let sb = Sandbox::new();
    let dir = fixture(&sb, "sp");
    let original = dir_snapshot(&dir);
    let count_before = export(&sb, "sp", "count", "seen");

    let out = sb
        .weir(&[
            "savepoint",
            "edit",
            "sp",
            "--rename-operator",
            "count=counter",
        ])
        .ok()
        .stdout;
    let edited = PathBuf::from(out.trim());
    assert_eq!(edited, Path::new(".").join("sp-edited"));
    assert_eq!(dir_snapshot(&dir), original, "the original changed");
    sb.weir(&["savepoint", "verify", "sp-edited"]).ok();
    let v = json(
        &sb.weir(&["savepoint", "inspect", "sp-edited", "--json"])
            .ok()
            .stdout,
    );
    assert_eq!(v["operators"][0]["id"], "counter");
    assert_eq!(v["operators"][1]["id"], "windows");
    assert_eq!(export(&sb, "sp-edited", "counter", "seen"), count_before);
    // Everything but the ID is as it was.
    let a = Savepoint::open(&dir).unwrap().meta;
    let mut b = Savepoint::open(&sb.path("sp-edited")).unwrap().meta;
    b.operators[0].id = "count".into();
    assert_eq!(a, b);
    let mut data = dir_snapshot(&sb.path("sp-edited"));
    let mut original_data = original.clone();
    data.remove("_metadata");
    original_data.remove("_metadata");
    assert_eq!(data, original_data, "the data files were copied unchanged");

    // The next default name is taken: -edited-2. Several edits at once.
    let out = sb
        .weir(&[
            "savepoint",
            "edit",
            "sp",
            "--drop-operator",
            "windows",
            "--rename-operator",
            "count=c2",
        ])
        .ok()
        .stdout;
    assert_eq!(out.trim(), "./sp-edited-2");
    sb.weir(&["savepoint", "verify", "sp-edited-2"]).ok();
    let meta = Savepoint::open(&sb.path("sp-edited-2")).unwrap().meta;
    let ids: Vec<&str> = meta.operators.iter().map(|o| o.id.as_str()).collect();
    assert_eq!(ids, ["c2"]);
    assert!(!sb.path("sp-edited-2/op1-sub0.state").exists());
    assert_eq!(dir_snapshot(&dir), original, "the original changed");

    // --output, and the errors.
    sb.weir(&[
        "savepoint",
        "edit",
        "sp",
        "--drop-operator",
        "count",
        "--output",
        "out/only-windows",
    ])
    .ok();
    sb.weir(&["savepoint", "verify", "out/only-windows"]).ok();
    sb.weir(&["savepoint", "edit", "sp", "--drop-operator", "nope"])
        .fails_with(&["no operator `nope`", "`count`", "`windows`"]);
    sb.weir(&["savepoint", "edit", "sp", "--rename-operator", "nope=x"])
        .fails_with(&["no operator `nope`", "`count`", "`windows`"]);
    sb.weir(&[
        "savepoint",
        "edit",
        "sp",
        "--rename-operator",
        "count=windows",
    ])
    .fails_with(&["`windows`", "already has"]);
    sb.weir(&[
        "savepoint",
        "edit",
        "sp",
        "--drop-operator",
        "count",
        "--output",
        "sp-edited",
    ])
    .fails_with(&["sp-edited", "already exists"]);
    // A damaged data file is not copied into a new savepoint.
    let d = fixture(&sb, "damaged");
    std::fs::write(d.join("op1-sub0.state"), "garbage").unwrap();
    sb.weir(&[
        "savepoint",
        "edit",
        "damaged",
        "--rename-operator",
        "count=c",
    ])
    .fails_with(&["op1-sub0.state"]);
    assert!(!sb.path("damaged-edited").exists());
    let leftovers: Vec<String> = names(&sb.path(""))
        .into_iter()
        .filter(|n| n.contains("inprogress"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert_eq!(dir_snapshot(&dir), original, "the original changed");
}

#[test]
fn export_writes_sorted_json_lines_with_base64_for_bytes() {
    let sb = Sandbox::new();
    fixture(&sb, "sp");
    let expected: BTreeMap<Vec<u8>, StoredEntry> = count_entries()
        .into_iter()
        .filter(|(s, _, _)| *s == "count")
        .map(|(_, k, e)| (k, e))
        .collect();
    let text = export(&sb, "sp", "count", "count");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), expected.len());
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let bytes = |v: &serde_json::Value, name: &str| -> Vec<u8> {
        match (&v[name], &v[format!("{name}_b64")]) {
            (serde_json::Value::String(s), serde_json::Value::Null) => s.clone().into_bytes(),
            (serde_json::Value::Null, serde_json::Value::String(s)) => b64.decode(s).unwrap(),
            _ => panic!("no {name} in {v}"),
        }
    };
    let mut got = BTreeMap::new();
    let mut last: Option<Vec<u8>> = None;
    for line in &lines {
        let v = json(line);
        let key = bytes(&v, "key");
        assert!(last.as_ref().is_none_or(|l| *l < key), "not sorted: {text}");
        last = Some(key.clone());
        got.insert(key, StoredEntry::Value(bytes(&v, "value")));
    }
    assert_eq!(got, expected);
    assert_eq!(lines[0], r#"{"key":"","value":"28"}"#);
    assert!(
        text.contains(r#"{"key_b64":"/wAB","value":"25"}"#),
        "{text}"
    );
    assert!(
        text.contains(r#"{"key":"user-3","value_b64":"wygD"}"#),
        "{text}"
    );

    let map = export(&sb, "sp", "count", "seen");
    assert!(
        map.contains(r#"{"key":"user-0","entries":[{"key":"a","value":"\"q\" 0"},{"key":"b\n","value":""},{"key_b64":"/gA=","value_b64":"gA=="}]}"#),
        "{map}"
    );
    let list = export(&sb, "sp", "count", "items");
    assert!(
        list.contains(r#"{"key":"user-3","values":["x",{"b64":"/////w=="},"é"]}"#),
        "{list}"
    );

    // --output FILE, and the errors.
    let out = sb
        .weir(&[
            "state",
            "export",
            "sp",
            "--operator",
            "windows",
            "--state",
            "sum",
            "--output",
            "sum.jsonl",
        ])
        .ok()
        .stdout;
    assert!(out.contains("5 keys"), "{out}");
    assert_eq!(sb.read("sum.jsonl").lines().count(), 5);
    sb.weir(&["state", "export", "sp", "--operator", "x", "--state", "sum"])
        .fails_with(&["no operator `x`", "`count`", "`windows`"]);
    sb.weir(&[
        "state",
        "export",
        "sp",
        "--operator",
        "count",
        "--state",
        "y",
    ])
    .fails_with(&["no state `y`", "`count`", "`seen`", "`items`"]);
}

#[test]
fn export_then_import_round_trips_every_kind() {
    let sb = Sandbox::new();
    let dir = fixture(&sb, "sp");
    let original = dir_snapshot(&dir);
    let exports: BTreeMap<(&str, &str), String> = [
        ("count", "count"),
        ("count", "seen"),
        ("count", "items"),
        ("windows", "sum"),
    ]
    .into_iter()
    .map(|(op, st)| ((op, st), export(&sb, "sp", op, st)))
    .collect();
    let before = Savepoint::open(&dir).unwrap().meta;
    for (i, state) in ["count", "seen", "items"].into_iter().enumerate() {
        let file = format!("{state}.jsonl");
        sb.write(&file, &exports[&("count", state)]);
        let out = sb
            .weir(&[
                "state",
                "import",
                "sp",
                "--operator",
                "count",
                "--state",
                state,
                "--input",
                &file,
            ])
            .ok()
            .stdout;
        let imported = if i == 0 {
            "sp-imported".to_string()
        } else {
            format!("sp-imported-{}", i + 1)
        };
        assert_eq!(out.trim(), format!("./{imported}"));
        sb.weir(&["savepoint", "verify", &imported]).ok();
        // Every state of every operator exports as before.
        for ((op, st), text) in &exports {
            assert_eq!(
                &export(&sb, &imported, op, st),
                text,
                "{op}/{st} after importing {state}"
            );
        }
        // The manifest is the same (the files were rewritten), timers kept.
        let mut after = Savepoint::open(&sb.path(&imported)).unwrap().meta;
        for (a, b) in after.operators[0]
            .files
            .iter()
            .zip(&before.operators[0].files)
        {
            assert_eq!((&a.file, a.key_groups), (&b.file, b.key_groups));
        }
        after.operators[0].files = before.operators[0].files.clone();
        assert_eq!(after, before, "after importing {state}");
        assert_eq!(timers(&sb.path(&imported), "count"), timers(&dir, "count"));
    }
    assert_eq!(dir_snapshot(&dir), original, "the original changed");
}

#[test]
fn import_replaces_a_state_and_adds_new_ones() {
    let sb = Sandbox::new();
    let dir = fixture(&sb, "sp");
    let seen_before = export(&sb, "sp", "count", "seen");
    // Replace `count` with three keys (one not UTF-8), lines in any order.
    sb.write(
        "new.jsonl",
        "{\"key\":\"zed\",\"value\":\"9\"}\n\n{\"key_b64\":\"/w==\",\"value\":\"1\"}\n{\"value\":\"2\",\"key\":\"alpha\"}\n",
    );
    sb.weir(&[
        "state",
        "import",
        "sp",
        "--operator",
        "count",
        "--state",
        "count",
        "--input",
        "new.jsonl",
        "--version",
        "4",
        "--output",
        "replaced",
    ])
    .ok();
    sb.weir(&["savepoint", "verify", "replaced"]).ok();
    assert_eq!(
        export(&sb, "replaced", "count", "count"),
        "{\"key\":\"alpha\",\"value\":\"2\"}\n{\"key\":\"zed\",\"value\":\"9\"}\n{\"key_b64\":\"/w==\",\"value\":\"1\"}\n"
    );
    assert_eq!(export(&sb, "replaced", "count", "seen"), seen_before);
    let meta = Savepoint::open(&sb.path("replaced")).unwrap().meta;
    let count = &meta.operators[0].states[0];
    assert_eq!(
        (count.kind.as_str(), count.version, count.keys),
        ("value", 4, 3)
    );
    assert_eq!(timers(&sb.path("replaced"), "count"), timers(&dir, "count"));

    // A new state needs --kind; the version defaults to 1.
    sb.write(
        "fresh.jsonl",
        "{\"key\":\"k\",\"values\":[\"1\",{\"b64\":\"/w==\"}]}\n",
    );
    sb.weir(&[
        "state",
        "import",
        "sp",
        "--operator",
        "windows",
        "--state",
        "fresh",
        "--input",
        "fresh.jsonl",
    ])
    .fails_with(&["no state `fresh`", "`sum`", "--kind"]);
    sb.cmd(&[
        "state",
        "import",
        "sp",
        "--operator",
        "windows",
        "--state",
        "fresh",
        "--kind",
        "list",
        "--input",
        "-",
    ])
    .stdin(sb.read("fresh.jsonl").as_bytes())
    .run()
    .ok();
    let meta = Savepoint::open(&sb.path("sp-imported")).unwrap().meta;
    assert_eq!(
        meta.operators[1].states,
        vec![
            saved_state("sum", "value", 1, 5),
            saved_state("fresh", "list", 1, 1)
        ]
    );
    assert_eq!(
        export(&sb, "sp-imported", "windows", "fresh"),
        sb.read("fresh.jsonl")
    );

    // An empty file empties the state.
    sb.write("empty.jsonl", "");
    sb.weir(&[
        "state",
        "import",
        "sp",
        "--operator",
        "count",
        "--state",
        "items",
        "--input",
        "empty.jsonl",
        "--output",
        "emptied",
    ])
    .ok();
    assert_eq!(export(&sb, "emptied", "count", "items"), "");
    sb.weir(&["savepoint", "verify", "emptied"]).ok();
}

#[test]
fn import_errors_name_the_line() {
    let sb = Sandbox::new();
    fixture(&sb, "sp");
    let ok = "{\"key\":\"a\",\"value\":\"1\"}\n";
    let cases: [(&str, String, &[&str]); 7] = [
        (
            "json.jsonl",
            format!("{ok}{{\"key\":\n"),
            &["json.jsonl:2", "invalid JSON"],
        ),
        (
            "dup.jsonl",
            format!("{ok}{{\"key\":\"b\",\"value\":\"1\"}}\n{ok}"),
            &["dup.jsonl:3", "key `a`", "already on line 1"],
        ),
        (
            "field.jsonl",
            format!("{ok}\n{{\"key\":\"b\",\"value\":\"1\",\"extra\":1}}\n"),
            &["field.jsonl:3", "unknown field `extra`"],
        ),
        (
            "kind.jsonl",
            "{\"key\":\"b\",\"entries\":[{\"key\":\"x\",\"value\":\"y\"}]}\n".to_string(),
            &["kind.jsonl:1", "`entries`", "map state", "value state"],
        ),
        (
            "b64.jsonl",
            format!("{ok}{{\"key_b64\":\"***\",\"value\":\"1\"}}\n"),
            &["b64.jsonl:2", "`key_b64` is not base64"],
        ),
        (
            "missing.jsonl",
            "{\"key\":\"b\"}\n".to_string(),
            &["missing.jsonl:1", "missing `value`"],
        ),
        (
            "number.jsonl",
            "{\"key\":\"b\",\"value\":3}\n".to_string(),
            &["number.jsonl:1", "`value`", "not a string"],
        ),
    ];
    // `weir state import sp --operator OP --state count ARGS...`
    let import = |op: &str, args: &[&str]| {
        let mut all = vec![
            "state",
            "import",
            "sp",
            "--operator",
            op,
            "--state",
            "count",
        ];
        all.extend_from_slice(args);
        sb.weir(&all)
    };
    for (file, content, needles) in cases {
        sb.write(file, content);
        import("count", &["--input", file]).fails_with(needles);
    }
    sb.write("ok.jsonl", ok);
    import("nope", &["--input", "ok.jsonl"]).fails_with(&[
        "no operator `nope`",
        "`count`",
        "`windows`",
    ]);
    import("count", &["--kind", "map", "--input", "ok.jsonl"]).fails_with(&[
        "`count`",
        "value state",
        "cannot change",
    ]);
    import("count", &["--input", "absent.jsonl"]).fails_with(&["absent.jsonl"]);
    import("count", &["--input", "ok.jsonl", "--output", "sp"])
        .fails_with(&["`sp` already exists"]);
    // Nothing was written by any of these.
    let dirs: Vec<String> = names(&sb.path(""))
        .into_iter()
        .filter(|n| n.starts_with("sp-") || n.contains("inprogress"))
        .collect();
    assert!(dirs.is_empty(), "{dirs:?}");
}
