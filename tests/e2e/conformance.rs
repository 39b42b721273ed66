//! The conformance suite: `keyed-count` and `windowed-sum` written in Rust,
//! Python, JavaScript, C and Go (`plugins/<lang>/`) must declare the same
//! states and produce byte-identical output and dead letters for the same
//! input; and state crosses languages through savepoints: one operator ID
//! runs Rust, then Python, JavaScript, C and Go in turn, its counts (value
//! state) and open windows (map state) carrying on without a gap.

use std::collections::BTreeMap;

use crate::harness::{
    assert_counts_continue, counts_job, counts_reference, final_counts, polyglot,
    run_and_stop_after, sorted_lines, toml_path, windows_job, Rng, Sandbox, LANGUAGES,
};

/// One JSON-lines event; `key` is JSON (a string, `null`, or absent when
/// `key_b64` is used instead).
fn line(key: &str, value: &str, timestamp: i64) -> String {
    format!(r#"{{"key": {key}, "value": {value}, "timestamp": {timestamp}}}"#)
}

fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// Keyed-count input: 3,000 events over 40 keys, and keys that are empty,
/// not ASCII, not UTF-8 (`key_b64`) or missing.
fn keyed_count_input() -> String {
    let mut rng = Rng(7);
    let mut out = String::new();
    for i in 0..3000i64 {
        let key = format!("user-{}", rng.range(0, 40));
        out += &line(&quoted(&key), &quoted("x"), i);
        out.push('\n');
        match i % 500 {
            1 => out += &format!("{}\n", line("null", &quoted("no key"), i)),
            2 => out += &format!("{}\n", line(&quoted(""), &quoted("empty key"), i)),
            3 => out += &format!("{}\n", line(&quoted("ключ ✓"), &quoted("utf-8"), i)),
            4 => {
                out += &format!(
                    r#"{{"key_b64": "/wD+", "value": "not utf-8 key", "timestamp": {i}}}"#
                );
                out.push('\n');
            }
            _ => {}
        }
    }
    out
}

/// Windowed-sum input: out-of-order timestamps (some of them negative and
/// some late), and values each language must parse exactly as Rust's
/// `str::trim` + `i64::from_str` do, including sums that overflow.
fn windowed_sum_input() -> String {
    let mut rng = Rng(11);
    let mut out = String::new();
    let specials: &[&str] = &[
        " 7 ",
        "+5",
        "-3",
        "\u{a0}12\u{3000}",
        "\u{1c}3",
        "1.5",
        "",
        "abc",
        "1_0",
        "--1",
        "+",
        "-",
        "\u{663}",
        "9223372036854775808",
        "-9223372036854775809",
        "0x10",
        "007",
        "\t-0\n",
    ];
    let mut t: i64 = -4000;
    for i in 0..1500usize {
        t += rng.range(0, 40) as i64;
        let jitter = rng.range(0, 1500) as i64;
        let key = format!("sensor-{}", rng.range(0, 6));
        let value = if i % 37 == 0 {
            specials[(i / 37) % specials.len()].to_string()
        } else {
            rng.range(0, 1000).to_string()
        };
        out += &line(&quoted(&key), &quoted(&value), t - jitter);
        out.push('\n');
        match i % 300 {
            5 => out += &format!("{}\n", line("null", &quoted("1"), t)),
            6 => {
                out += &format!(r#"{{"key": "sensor-0", "value_b64": "/w==", "timestamp": {t}}}"#);
                out.push('\n');
            }
            7 => {
                // A window whose sum overflows, and one that just fits.
                out += &format!(
                    "{}\n",
                    line(&quoted("big"), &quoted("9223372036854775807"), t)
                );
                out += &format!("{}\n", line(&quoted("big"), &quoted("1"), t));
                out += &format!(
                    "{}\n",
                    line(&quoted("small"), &quoted("-9223372036854775808"), t)
                );
                out += &format!("{}\n", line(&quoted("small"), &quoted("0"), t));
            }
            _ => {}
        }
    }
    out
}

fn job(wasm: &std::path::Path, parallelism: u32, batch_size: u32, config: &str) -> String {
    format!(
        r#"
name = "conformance"
max_parallelism = 16

[source]
type = "file"
path = "input.jsonl"
watermark_delay = "500ms"
batch_size = {batch_size}

[[operators]]
id = "op"
wasm = {wasm}
parallelism = {parallelism}
input = "key"
config = {{ {config} }}

[sink]
type = "file"
path = "out-{parallelism}-{batch_size}.jsonl"

[dead_letter]
path = "dead-{parallelism}-{batch_size}.jsonl"
"#,
        wasm = toml_path(wasm)
    )
}

/// What one language's build did with the input, per (parallelism, batch
/// size): the output and dead letters, in file order at parallelism 1 and
/// sorted at 2 (where subtasks interleave), and what it declares.
fn outcome(lang: &str, name: &str, input: &str, config: &str) -> BTreeMap<String, Vec<String>> {
    let wasm = polyglot(lang, name);
    let sb = Sandbox::new();
    sb.write("input.jsonl", input);
    let mut got = BTreeMap::new();
    for (parallelism, batch_size) in [(1, 1), (1, 64), (2, 1000)] {
        sb.write("job.toml", job(&wasm, parallelism, batch_size, config));
        sb.weir(&["run", "job.toml"]).ok();
        for file in ["out", "dead"] {
            let text = sb.read(&format!("{file}-{parallelism}-{batch_size}.jsonl"));
            let lines = if parallelism == 1 {
                text.lines().map(str::to_string).collect()
            } else {
                sorted_lines(&text)
            };
            got.insert(
                format!("{file} at parallelism {parallelism}, batch {batch_size}"),
                lines,
            );
        }
    }
    let inspect = sb
        .weir(&["operator", "inspect", "--json", &wasm.to_string_lossy()])
        .ok();
    let mut spec: serde_json::Value = serde_json::from_str(&inspect.stdout).unwrap();
    // Only what the operator declares; the file's path, size and hash differ.
    let declared = serde_json::json!({
        "name": spec["name"].take(),
        "version": spec["version"].take(),
        "states": spec["states"].take(),
    });
    got.insert("declared".into(), vec![declared.to_string()]);
    got
}

/// Every language's outcome equals Rust's, compared part by part so that a
/// failure names the language, the part and the first differing line.
fn assert_conformance(name: &str, input: &str, config: &str) {
    let rust = outcome("rust", name, input, config);
    assert!(
        rust.values().any(|lines| lines.len() > 100),
        "the Rust reference produced almost nothing: {rust:?}"
    );
    for lang in &LANGUAGES[1..] {
        let got = outcome(lang, name, input, config);
        for (part, expected) in &rust {
            let lines = &got[part];
            if let Some(i) =
                (0..expected.len().max(lines.len())).find(|&i| expected.get(i) != lines.get(i))
            {
                panic!(
                    "{lang} {name}, {part}: line {} differs from Rust's\n  rust: {:?}\n  {lang}: {:?}\n({} lines against {})",
                    i + 1,
                    expected.get(i),
                    lines.get(i),
                    lines.len(),
                    expected.len()
                );
            }
        }
    }
}

#[test]
fn keyed_count_is_the_same_in_every_language() {
    let input = keyed_count_input();
    assert_conformance("keyed-count", &input, "");
}

#[test]
fn windowed_sum_is_the_same_in_every_language() {
    let input = windowed_sum_input();
    assert_conformance("windowed-sum", &input, r#"size_ms = "1000""#);
}

#[test]
fn windowed_sum_refuses_a_bad_size_in_every_language() {
    let sb = Sandbox::new();
    sb.write("input.jsonl", line(&quoted("k"), &quoted("1"), 0));
    for lang in LANGUAGES {
        let wasm = polyglot(lang, "windowed-sum");
        for (config, needle) in [
            ("", "config `size_ms` is required"),
            (
                r#"size_ms = "0""#,
                "config `size_ms` must be positive, found 0",
            ),
            (
                r#"size_ms = "-5""#,
                "config `size_ms` must be positive, found -5",
            ),
        ] {
            sb.write("job.toml", job(&wasm, 1, 10, config));
            let err = sb.weir(&["run", "job.toml"]).fails_with(&["`op`", needle]);
            assert!(err.contains("open()"), "{lang}: {err}");
        }
    }
}

/// Keyed counts restored across languages: Rust → Python → JavaScript → C → Go.
#[test]
fn keyed_count_state_moves_across_languages_through_savepoints() {
    let expected = final_counts(&counts_reference(2));
    let sb = Sandbox::new();
    let chain: Vec<_> = LANGUAGES
        .iter()
        .map(|lang| (lang, polyglot(lang, "keyed-count")))
        .collect();
    let mut savepoint: Option<std::path::PathBuf> = None;
    for (i, (lang, wasm)) in chain.iter().enumerate() {
        let file = format!("{lang}.toml");
        // Slow enough that each language gets a share of the stream.
        sb.write(&file, counts_job(wasm, 2, Some(2500), ""));
        let sp = savepoint.as_ref().map(|p| p.to_string_lossy().into_owned());
        let mut args = vec![];
        if let Some(sp) = &sp {
            args.extend(["--from-savepoint", sp.as_str()]);
        }
        if i + 1 < chain.len() {
            savepoint = Some(run_and_stop_after(&sb, &file, &args, &[], 1500));
        } else {
            let mut run = vec!["run", file.as_str()];
            run.extend(&args);
            sb.weir(&run).ok();
        }
    }
    let output = sb.read("out.jsonl");
    assert_counts_continue(&output);
    assert_eq!(final_counts(&output), expected);
}

/// Open windows (map state and event-time timers) restored across
/// languages: each language is stopped without draining, so windows are
/// open in every savepoint, and the sums must equal an uninterrupted Rust run.
#[test]
fn windowed_sum_state_moves_across_languages_through_savepoints() {
    let reference = {
        let sb = Sandbox::new();
        sb.run_job(&windows_job(&polyglot("rust", "windowed-sum"), None))
            .ok();
        sb.read("out.jsonl")
    };
    let sb = Sandbox::new();
    let mut savepoint: Option<std::path::PathBuf> = None;
    for (i, lang) in LANGUAGES.iter().enumerate() {
        let file = format!("{lang}.toml");
        let wasm = polyglot(lang, "windowed-sum");
        let last = i + 1 == LANGUAGES.len();
        sb.write(&file, windows_job(&wasm, (!last).then_some(3000)));
        let sp = savepoint.as_ref().map(|p| p.to_string_lossy().into_owned());
        let mut args = vec![];
        if let Some(sp) = &sp {
            args.extend(["--from-savepoint", sp.as_str()]);
        }
        if last {
            let mut run = vec!["run", file.as_str()];
            run.extend(&args);
            sb.weir(&run).ok();
        } else {
            let sp_dir = format!("sp-{lang}");
            savepoint = Some(run_and_stop_after(
                &sb,
                &file,
                &args,
                &["--savepoint", &sp_dir],
                60,
            ));
            let meta: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(savepoint.as_ref().unwrap().join("_metadata")).unwrap(),
            )
            .unwrap();
            assert!(
                meta["operators"][0]["timers"].as_u64().unwrap() > 0,
                "{lang}: windows were open at the stop"
            );
        }
    }
    assert_eq!(
        sorted_lines(&sb.read("out.jsonl")),
        sorted_lines(&reference)
    );
}
