//! `weir new` and `weir build` across languages: a scaffolded project in
//! every language builds and runs its sample job out of the box, and a
//! missing toolchain is a one-line error naming the command that installs it.

use crate::harness::{root, Sandbox, LANGUAGES};

/// The sample job counts input.jsonl per key; the event without a key goes
/// to the dead-letter file.
const EXPECTED: &str = r#"{"key":"alice","value":"1","timestamp":1700000000000}
{"key":"bob","value":"1","timestamp":1700000001000}
{"key":"alice","value":"2","timestamp":1700000002000}
{"key":"alice","value":"3","timestamp":1700000004000}
"#;

#[test]
fn a_new_project_in_every_language_builds_and_runs_its_sample_job() {
    let sb = Sandbox::new();
    for lang in LANGUAGES {
        let name = format!("{lang}-op");
        let out = sb.weir(&["new", "--lang", lang, &name]).ok();
        assert!(out.stdout.contains("next: weir build"), "{}", out.stdout);
        let mut env = vec![];
        let target = root().join("plugins/rust/target");
        if lang == "rust" {
            // Reuse the example operators' lockfile and compiled dependencies.
            std::fs::copy(
                root().join("plugins/rust/Cargo.lock"),
                sb.path(&format!("{name}/Cargo.lock")),
            )
            .unwrap();
            env.push(("CARGO_TARGET_DIR", target.to_str().unwrap()));
        }
        let built = sb.cmd(&["build", &name]).envs(&env).run().ok();
        let wasm = sb.path(&format!("{name}/{}.wasm", name.replace('-', "_")));
        // The path is printed as given: relative to where weir runs.
        assert_eq!(sb.path(built.stdout.trim()), wasm);
        sb.weir(&["run", &format!("{name}/job.toml")]).ok();
        assert_eq!(sb.read(&format!("{name}/out.jsonl")), EXPECTED, "{lang}");
        let dead = sb.read(&format!("{name}/dead.jsonl"));
        assert!(
            dead.contains(&format!(r#""operator":"{name}""#)) && dead.contains("event has no key"),
            "{lang}: {dead}"
        );
        // The operator is named after the project.
        let inspect = sb
            .weir(&["operator", "inspect", "--json", wasm.to_str().unwrap()])
            .ok();
        let spec: serde_json::Value = serde_json::from_str(&inspect.stdout).unwrap();
        assert_eq!(spec["name"], name.as_str(), "{lang}");
    }
}

#[test]
fn weir_new_refuses_bad_names_and_existing_folders() {
    let sb = Sandbox::new();
    sb.weir(&["new", "--lang", "go", "Bad_Name"])
        .fails_with(&["`Bad_Name` is not a valid operator name"]);
    sb.write("taken/file", "x");
    sb.weir(&["new", "--lang", "c", "taken"])
        .fails_with(&["`taken` already exists and is not empty"]);
    assert_eq!(sb.read("taken/file"), "x");
    sb.weir(&["new", "--lang", "rust", "r", "--rust-sdk", "nowhere"])
        .fails_with(&["the weir Rust SDK was not found at `nowhere`"]);
}

#[test]
fn a_missing_toolchain_names_the_command_that_installs_it() {
    let sb = Sandbox::new();
    for (lang, tool) in [
        ("python", "componentize-py"),
        ("js", "componentize-js"),
        ("c", "wit-bindgen"),
        ("go", "go"),
    ] {
        let dir = root().join("plugins").join(lang).join("keyed-count");
        let err = sb
            .cmd(&["build", dir.to_str().unwrap()])
            .envs(&[
                ("PATH", "/nonexistent"),
                ("WEIR_TOOLCHAINS", "/nonexistent"),
            ])
            .run()
            .fails_with(&[
                &format!("`{tool}` was not found"),
                &format!("scripts/install.sh {lang}"),
            ]);
        assert!(err.contains(dir.to_str().unwrap()), "{err}");
    }
    // Nothing was written into the plugin folders.
    for lang in ["python", "js", "c", "go"] {
        let dir = root().join("plugins").join(lang).join("keyed-count");
        for entry in std::fs::read_dir(&dir).unwrap() {
            let name = entry.unwrap().file_name();
            let name = name.to_string_lossy();
            assert!(
                !name.starts_with('.') || name == ".gitignore",
                "{lang}: the build left {name} in the plugin folder"
            );
        }
    }
}
