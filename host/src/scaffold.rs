//! `weir new`: a new operator project that builds with `weir build` and runs
//! in a sample job out of the box, in any of the languages weir builds.
//!
//! The operator in it is the language's `keyed-count` example (embedded in
//! the binary from `plugins/<lang>/keyed-count`, renamed), so the scaffold is
//! always an example the test suite builds and runs. Next to it: `job.toml`
//! (a file source of `input.jsonl`, the operator with `input = "key"`, a file
//! sink and a dead-letter file), `input.jsonl`, a `README.md` with the two
//! commands, and a `.gitignore`.
//!
//! Rust projects depend on the weir SDK by path (it is not on crates.io yet):
//! the `sdk/` folder of the checkout this `weir` was built from, unless
//! `--rust-sdk` names another. The other languages need no path: `weir build`
//! supplies their SDK and the WIT contract from the binary.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::build::stage::{
    write_files, TEMPLATE_C, TEMPLATE_GO, TEMPLATE_JS, TEMPLATE_PYTHON, TEMPLATE_RUST,
};
use crate::build::Language;

/// Why `weir new` could not create the project. One line each.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    /// The name is not usable as a package name in every language.
    #[error(
        "`{name}` is not a valid operator name: use lowercase letters, digits and `-`, \
         starting with a letter (e.g. `my-counter`)"
    )]
    BadName {
        /// The name as given.
        name: String,
    },
    /// The folder exists and is not empty.
    #[error("`{dir}` already exists and is not empty: choose another name or remove it")]
    Exists {
        /// The project folder.
        dir: PathBuf,
    },
    /// The Rust SDK could not be found for the path dependency.
    #[error(
        "the weir Rust SDK was not found at `{path}`: pass `--rust-sdk /path/to/weir/sdk` \
         (the `sdk` folder of a weir checkout)"
    )]
    NoRustSdk {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// Writing the project failed.
    #[error("cannot write `{dir}`: {cause}")]
    Write {
        /// The project folder.
        dir: PathBuf,
        /// The underlying I/O error.
        cause: io::Error,
    },
}

/// The SDK folder of the checkout this binary was built from.
pub fn default_rust_sdk() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(|p| p.join("sdk"))
        .unwrap_or_default()
}

/// The name in its three spellings: `my-counter`, `my_counter`, `MyCounter`.
struct Names {
    kebab: String,
    snake: String,
    pascal: String,
}

impl fmt::Display for Names {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.kebab)
    }
}

fn names(name: &str) -> Option<Names> {
    let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-')
        && !name.contains("--");
    valid.then(|| Names {
        kebab: name.to_string(),
        snake: name.replace('-', "_"),
        pascal: name
            .split('-')
            .map(|part| {
                let mut chars = part.chars();
                match chars.next() {
                    Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
                    None => String::new(),
                }
            })
            .collect(),
    })
}

/// Creates the project `dir` (its last component is the operator's name)
/// in `language`, and returns the files written, relative to `dir`.
pub fn new_project(
    dir: &Path,
    language: Language,
    rust_sdk: Option<&Path>,
) -> Result<Vec<String>, ScaffoldError> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let names = names(&name).ok_or(ScaffoldError::BadName { name })?;
    if fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(ScaffoldError::Exists {
            dir: dir.to_path_buf(),
        });
    }
    let template: &[(&str, &[u8])] = match language {
        Language::Rust => TEMPLATE_RUST,
        Language::Python => TEMPLATE_PYTHON,
        Language::JavaScript => TEMPLATE_JS,
        Language::C => TEMPLATE_C,
        Language::Go => TEMPLATE_GO,
    };
    let mut files: Vec<(String, Vec<u8>)> = template
        .iter()
        .map(|(path, bytes)| (rename(path, &names), rename_bytes(bytes, &names)))
        .collect();
    if language == Language::Rust {
        let sdk = rust_sdk
            .map(Path::to_path_buf)
            .unwrap_or_else(default_rust_sdk);
        let sdk = fs::canonicalize(&sdk)
            .ok()
            .filter(|s| s.join("Cargo.toml").is_file())
            .ok_or(ScaffoldError::NoRustSdk { path: sdk })?;
        files.push((
            "Cargo.toml".into(),
            rust_manifest(&names, &sdk).into_bytes(),
        ));
        files.push((
            ".cargo/config.toml".into(),
            RUST_CARGO_CONFIG.as_bytes().to_vec(),
        ));
    }
    files.push(("job.toml".into(), job(&names, language).into_bytes()));
    files.push(("input.jsonl".into(), INPUT.as_bytes().to_vec()));
    files.push(("README.md".into(), readme(&names, language).into_bytes()));
    files.push((".gitignore".into(), GITIGNORE.as_bytes().to_vec()));
    let borrowed: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(p, b)| (p.as_str(), b.as_slice()))
        .collect();
    write_files(dir, &borrowed).map_err(|cause| ScaffoldError::Write {
        dir: dir.to_path_buf(),
        cause,
    })?;
    Ok(files.into_iter().map(|(p, _)| p).collect())
}

fn rename(text: &str, names: &Names) -> String {
    text.replace("keyed-count", &names.kebab)
        .replace("keyed_count", &names.snake)
        .replace("KeyedCount", &names.pascal)
}

fn rename_bytes(bytes: &[u8], names: &Names) -> Vec<u8> {
    match std::str::from_utf8(bytes) {
        Ok(text) => rename(text, names).into_bytes(),
        Err(_) => bytes.to_vec(),
    }
}

fn rust_manifest(names: &Names, sdk: &Path) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2021"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
weir-sdk = {{ path = {sdk:?} }}

# A project of its own, even when created inside another cargo workspace.
[workspace]

[profile.release]
opt-level = 3
codegen-units = 1
lto = true
strip = "debuginfo"
"#,
        name = names.kebab,
        sdk = sdk.display().to_string(),
    )
}

const RUST_CARGO_CONFIG: &str = "\
# wasmtime runs SIMD by default; it speeds up byte-wise work.
[target.wasm32-wasip2]
rustflags = [\"-C\", \"target-feature=+simd128\"]
";

fn job(names: &Names, language: Language) -> String {
    format!(
        r#"# A sample job for `{name}` ({language}): `weir build .` writes {snake}.wasm,
# then `weir run job.toml` counts the events of input.jsonl per key.
name = "{name}-sample"

[source]
type = "file"
path = "input.jsonl"

[[operators]]
id = "{name}"
wasm = "{snake}.wasm"
input = "key"

[sink]
type = "file"
path = "out.jsonl"

# Events the operator rejects as bad input (here: events without a key).
[dead_letter]
path = "dead.jsonl"
"#,
        name = names.kebab,
        snake = names.snake,
    )
}

const INPUT: &str = r#"{"key": "alice", "value": "login", "timestamp": 1700000000000}
{"key": "bob", "value": "login", "timestamp": 1700000001000}
{"key": "alice", "value": "click", "timestamp": 1700000002000}
{"key": null, "value": "no key: goes to dead.jsonl", "timestamp": 1700000003000}
{"key": "alice", "value": "logout", "timestamp": 1700000004000}
"#;

const GITIGNORE: &str = "*.wasm\nout.jsonl\ndead.jsonl\n.*.pending/\ntarget/\n__pycache__/\n";

fn readme(names: &Names, language: Language) -> String {
    let source = match language {
        Language::Rust => "src/lib.rs",
        Language::Python => "app.py",
        Language::JavaScript => "index.js",
        Language::C => "the `.c` file",
        Language::Go => "main.go",
    };
    format!(
        r#"# {name}

A weir operator in {language}, made by `weir new`. It counts events per key
(value state `count`) and emits each event's key with the running count.
Change {source} to make it yours.

```sh
weir build .          # writes {snake}.wasm
weir run job.toml     # runs the sample job: out.jsonl, and dead.jsonl for the event without a key
```

`weir operator inspect {snake}.wasm` shows what it declares. State values are
stored as JSON (see `sdk/ENCODING.md` in the weir repository), so a savepoint
taken while this operator runs can be restored into the same operator ID built
in another language.
"#,
        name = names.kebab,
        snake = names.snake,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_in_three_spellings() {
        let n = names("my-counter2").unwrap();
        assert_eq!(
            (n.snake.as_str(), n.pascal.as_str()),
            ("my_counter2", "MyCounter2")
        );
        for bad in ["", "My", "2x", "a_b", "a-", "a--b", "a b"] {
            assert!(names(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn refuses_a_folder_that_is_not_empty() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("taken");
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("x"), "").unwrap();
        let err = new_project(&dir, Language::Python, None).unwrap_err();
        assert!(matches!(err, ScaffoldError::Exists { .. }), "{err}");
    }
}
