//! `weir build`: turns an operator's source folder into a `.wasm` component.
//!
//! [`build_plugin`] looks at the folder to tell its language ([`detect_language`]),
//! runs that language's toolchain, and copies the component it produced next to
//! the sources (or to the path given with `-o`).
//!
//! - **Rust**: `cargo build --release --target wasm32-wasip2` turns a
//!   `cdylib` crate into a component directly, with no extra tools.
//! - **Python, JavaScript, C and Go**: the plugin folder holds only the
//!   operator's own source. The build runs in a staging folder
//!   ([`stage`]) that also holds the WIT contract and the language's SDK,
//!   both embedded in the `weir` binary, with the language's component
//!   toolchain ([`tools`]; each recipe in its own module: [`python`],
//!   [`js`], [`c`], [`go`]). The plugin folder is never written to, but for
//!   the component itself.
//!
//! Choices a user may notice (Rust):
//! - cargo runs with the plugin folder as its current directory, so a
//!   `.cargo/config.toml` or `rust-toolchain.toml` in or above the folder
//!   applies, and the build goes to that crate's (or its workspace's) usual
//!   `target/` folder (or `CARGO_TARGET_DIR`).
//! - The `CARGO` environment variable, when set, names the cargo to run.
//! - cargo's diagnostics go straight to our stderr; its JSON messages on stdout
//!   are read to find the artifact, so nothing guesses at `target/` paths.
//! - The missing `wasm32-wasip2` target is reported, never installed silently.
//! - Without `-o`, the component is written to `DIR/<lib_name>.wasm` (for the
//!   crate `word-split`: `word_split.wasm`). With `-o` naming an existing
//!   folder, it is written inside that folder under the same name. The copy is
//!   atomic: a temporary file in the destination folder, then a rename.
//! - Error messages are single lines that already include their cause (an I/O
//!   error's text, cargo's exit status); they do not chain a `source()`.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use serde::Deserialize;

pub mod c;
pub mod go;
pub mod js;
pub mod python;
pub mod stage;
pub mod tools;

/// The Rust target that turns a `cdylib` crate into a WebAssembly component.
pub const RUST_TARGET: &str = "wasm32-wasip2";

/// The language an operator's source folder is written in, as told by the
/// files in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Language {
    /// A cargo package: the folder holds `Cargo.toml`.
    Rust,
    /// The folder holds `pyproject.toml` or `app.py`.
    Python,
    /// The folder holds `package.json`.
    JavaScript,
    /// The folder holds `go.mod`.
    Go,
    /// The folder holds `*.c` files.
    C,
}

impl Language {
    /// The language's name as written in messages, e.g. `"JavaScript"`.
    pub fn name(self) -> &'static str {
        match self {
            Language::Rust => "Rust",
            Language::Python => "Python",
            Language::JavaScript => "JavaScript",
            Language::Go => "Go",
            Language::C => "C",
        }
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why `weir build` could not produce a component. Every message is one line
/// and names the plugin folder (or the file) it is about.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The plugin folder does not exist.
    #[error("plugin folder `{dir}` does not exist")]
    MissingDir {
        /// The folder as given.
        dir: PathBuf,
    },

    /// The path given as the plugin folder is not a folder.
    #[error("`{dir}` is not a folder: `weir build` takes an operator's source folder")]
    NotADir {
        /// The path as given.
        dir: PathBuf,
    },

    /// The plugin folder could not be read.
    #[error("cannot read plugin folder `{dir}`: {cause}")]
    ReadDir {
        /// The folder as given.
        dir: PathBuf,
        /// The underlying I/O error.
        cause: io::Error,
    },

    /// No file in the folder tells its language.
    #[error(
        "cannot tell the language of `{dir}`: expected Cargo.toml (Rust), pyproject.toml or \
         app.py (Python), package.json (JavaScript), go.mod (Go) or *.c files (C)"
    )]
    UnknownLanguage {
        /// The folder as given.
        dir: PathBuf,
    },

    /// A tool the language's build needs is not installed.
    #[error(
        "cannot build {language} operator `{dir}`: `{tool}` was not found on PATH or in \
         ~/.weir/toolchains; install it with `scripts/install.sh {installer}` from the weir \
         repository, or `{install}`"
    )]
    ToolMissing {
        /// The folder as given.
        dir: PathBuf,
        /// The folder's language.
        language: Language,
        /// The missing command.
        tool: &'static str,
        /// The argument of `scripts/install.sh` that installs it.
        installer: &'static str,
        /// A plain command that installs it.
        install: &'static str,
    },

    /// A tool was found but could not be started.
    #[error("cannot run `{tool}` to build `{dir}`: {cause}")]
    RunTool {
        /// The folder as given.
        dir: PathBuf,
        /// The tool.
        tool: String,
        /// The underlying I/O error.
        cause: io::Error,
    },

    /// A tool ran and failed; its messages have gone to stderr.
    #[error("`{tool}` failed building `{dir}` ({status}): see its messages above")]
    ToolFailed {
        /// The folder as given.
        dir: PathBuf,
        /// The tool.
        tool: String,
        /// How it ended, e.g. `exit status 1`.
        status: String,
    },

    /// The staging folder could not be written.
    #[error("cannot prepare the build of `{dir}` in a temporary folder: {cause}")]
    Stage {
        /// The folder as given.
        dir: PathBuf,
        /// The underlying I/O error.
        cause: io::Error,
    },

    /// The folder's language is known but a file its build needs is missing.
    #[error("cannot build {language} operator `{dir}`: {message}")]
    Layout {
        /// The folder as given.
        dir: PathBuf,
        /// The folder's language.
        language: Language,
        /// What is missing, e.g. `no app.py (the operator module)`.
        message: String,
    },

    /// cargo could not be found.
    #[error(
        "cannot build `{dir}`: `{program}` was not found; install Rust with rustup \
         (https://rustup.rs), then run `rustup target add wasm32-wasip2`"
    )]
    CargoNotFound {
        /// The folder as given.
        dir: PathBuf,
        /// The cargo command that was tried (`cargo`, or the `CARGO` variable).
        program: String,
    },

    /// rustup reports that the `wasm32-wasip2` target is not installed.
    #[error(
        "the Rust target `wasm32-wasip2` is not installed: run `rustup target add wasm32-wasip2` \
         (needed to build `{dir}`)"
    )]
    TargetNotInstalled {
        /// The folder as given.
        dir: PathBuf,
    },

    /// cargo was found but could not be started or read.
    #[error("cannot run `{program}` to build `{dir}`: {cause}")]
    RunCargo {
        /// The folder as given.
        dir: PathBuf,
        /// The cargo command that was tried.
        program: String,
        /// The underlying I/O error.
        cause: io::Error,
    },

    /// cargo ran and failed; its diagnostics have gone to stderr.
    #[error("`cargo build` failed for `{dir}` ({status}): see the compiler messages above")]
    CargoFailed {
        /// The folder as given.
        dir: PathBuf,
        /// How cargo ended, e.g. `exit status 101`.
        status: String,
    },

    /// The package builds no `cdylib`, so cargo produced no component.
    #[error(
        "the Rust package in `{dir}` builds no component: add `[lib] crate-type = [\"cdylib\"]` \
         to its Cargo.toml"
    )]
    NoCdylib {
        /// The folder as given.
        dir: PathBuf,
    },

    /// cargo succeeded but reported nothing built for the folder's package
    /// (for example, its Cargo.toml is a virtual workspace manifest).
    #[error(
        "`cargo build` built no package from `{dir}/Cargo.toml`: point `weir build` at the \
         folder of one operator's package, not at a workspace root"
    )]
    NoArtifact {
        /// The folder as given.
        dir: PathBuf,
    },

    /// The component could not be copied to its destination.
    #[error("cannot write the component built from `{dir}` to `{path}`: {cause}")]
    WriteOutput {
        /// The folder as given.
        dir: PathBuf,
        /// The destination path.
        path: PathBuf,
        /// The underlying I/O error.
        cause: io::Error,
    },
}

/// Tells the language of the operator source folder `dir` from the files in
/// it: `Cargo.toml` → Rust, `pyproject.toml` or `app.py` → Python,
/// `package.json` → JavaScript, `go.mod` → Go, any `*.c` file → C, checked in
/// that order.
///
/// Errors if `dir` does not exist, is not a folder, cannot be read, or holds
/// none of these files.
pub fn detect_language(dir: &Path) -> Result<Language, BuildError> {
    detect(dir).map(|(language, _)| language)
}

/// Builds the operator whose sources are in `dir` into a `.wasm` component
/// and returns where the component was written.
///
/// The component is written to `out` when given (its parent folders are
/// created; an existing folder receives the file under its default name), or
/// else to `dir/<lib_name>.wasm` (Rust; for the other languages the folder's
/// name with `-` as `_`, e.g. `keyed_count.wasm`). See the module
/// documentation for how each language is built.
pub fn build_plugin(dir: &Path, out: Option<&Path>) -> Result<PathBuf, BuildError> {
    let (language, _marker) = detect(dir)?;
    if language == Language::Rust {
        let cargo = std::env::var_os("CARGO")
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| OsString::from("cargo"));
        return build_rust(dir, out, &cargo, OsStr::new("rustup"));
    }
    let dest = destination(dir, out)?;
    let stage = stage::Stage::new(dir)?;
    let built = stage.join("operator.wasm");
    match language {
        Language::Python => python::build(dir, &stage, &built)?,
        Language::JavaScript => js::build(dir, &stage, &built)?,
        Language::C => c::build(dir, &stage, &built)?,
        Language::Go => go::build(dir, &stage, &built)?,
        Language::Rust => unreachable!("built above"),
    }
    copy_atomically(&built, &dest).map_err(|cause| BuildError::WriteOutput {
        dir: dir.to_path_buf(),
        path: dest.clone(),
        cause,
    })?;
    Ok(dest)
}

/// Where a non-Rust build writes its component: `out`, inside `out` when it
/// is a folder, or `dir/<folder name with _>.wasm`.
fn destination(dir: &Path, out: Option<&Path>) -> Result<PathBuf, BuildError> {
    let abs = fs::canonicalize(dir).map_err(|cause| BuildError::ReadDir {
        dir: dir.to_path_buf(),
        cause,
    })?;
    let stem = abs
        .file_name()
        .map(|n| n.to_string_lossy().replace('-', "_"))
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "operator".to_string());
    let file_name = format!("{stem}.wasm");
    Ok(match out {
        Some(out) if out.is_dir() => out.join(&file_name),
        Some(out) => out.to_path_buf(),
        None => dir.join(&file_name),
    })
}

/// Detection, also returning the file name that gave the language away.
fn detect(dir: &Path) -> Result<(Language, String), BuildError> {
    let meta = match fs::metadata(dir) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(BuildError::MissingDir {
                dir: dir.to_path_buf(),
            })
        }
        Err(cause) => {
            return Err(BuildError::ReadDir {
                dir: dir.to_path_buf(),
                cause,
            })
        }
    };
    if !meta.is_dir() {
        return Err(BuildError::NotADir {
            dir: dir.to_path_buf(),
        });
    }

    const MARKERS: [(&str, Language); 5] = [
        ("Cargo.toml", Language::Rust),
        ("pyproject.toml", Language::Python),
        ("app.py", Language::Python),
        ("package.json", Language::JavaScript),
        ("go.mod", Language::Go),
    ];
    for (file, language) in MARKERS {
        if dir.join(file).is_file() {
            return Ok((language, file.to_string()));
        }
    }

    let read_err = |cause| BuildError::ReadDir {
        dir: dir.to_path_buf(),
        cause,
    };
    for entry in fs::read_dir(dir).map_err(read_err)? {
        let entry = entry.map_err(read_err)?;
        let path = entry.path();
        if path.extension() == Some(OsStr::new("c")) && path.is_file() {
            return Ok((Language::C, "*.c".to_string()));
        }
    }

    Err(BuildError::UnknownLanguage {
        dir: dir.to_path_buf(),
    })
}

/// One line of `cargo build --message-format=json`: only the fields we read.
#[derive(Debug, Deserialize)]
struct CargoMessage {
    reason: String,
    #[serde(default)]
    manifest_path: Option<PathBuf>,
    #[serde(default)]
    target: Option<CargoTarget>,
    #[serde(default)]
    filenames: Vec<PathBuf>,
}

/// The `target` of a `compiler-artifact` message.
#[derive(Debug, Deserialize)]
struct CargoTarget {
    #[serde(default)]
    kind: Vec<String>,
}

/// Builds a Rust package with the given cargo and rustup commands (split out
/// so that tests can pass commands that are missing or fake).
fn build_rust(
    dir: &Path,
    out: Option<&Path>,
    cargo: &OsStr,
    rustup: &OsStr,
) -> Result<PathBuf, BuildError> {
    let dir_buf = dir.to_path_buf();
    // An absolute folder: cargo runs inside `dir`, so a relative
    // --manifest-path would be resolved against the wrong place.
    let abs_dir = fs::canonicalize(dir).map_err(|cause| BuildError::ReadDir {
        dir: dir_buf.clone(),
        cause,
    })?;
    let manifest = abs_dir.join("Cargo.toml");
    let manifest = fs::canonicalize(&manifest).unwrap_or(manifest);

    check_target_installed(dir, &abs_dir, rustup)?;

    let program = cargo.to_string_lossy().into_owned();
    let spawned = Command::new(cargo)
        .current_dir(&abs_dir)
        .args(["build", "--release", "--target", RUST_TARGET])
        .arg("--message-format=json-render-diagnostics")
        .arg("--manifest-path")
        .arg(&manifest)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(BuildError::CargoNotFound {
                dir: dir_buf,
                program,
            })
        }
        Err(cause) => {
            return Err(BuildError::RunCargo {
                dir: dir_buf,
                program,
                cause,
            })
        }
    };

    // Read all of stdout before waiting, so cargo never blocks on a full pipe.
    let mut saw_package = false;
    let mut artifact: Option<PathBuf> = None;
    let mut read_error = None;
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines() {
            let line = match line {
                Ok(line) => line,
                Err(e) => {
                    read_error = Some(e);
                    break;
                }
            };
            let Ok(msg) = serde_json::from_str::<CargoMessage>(&line) else {
                continue;
            };
            if msg.reason != "compiler-artifact" {
                continue;
            }
            let Some(path) = msg.manifest_path else {
                continue;
            };
            if fs::canonicalize(&path).unwrap_or(path) != manifest {
                continue;
            }
            saw_package = true;
            let is_cdylib = msg
                .target
                .is_some_and(|t| t.kind.iter().any(|k| k == "cdylib"));
            if !is_cdylib {
                continue;
            }
            if let Some(wasm) = msg
                .filenames
                .into_iter()
                .find(|f| f.extension() == Some(OsStr::new("wasm")))
            {
                artifact = Some(wasm);
            }
        }
    }
    let status = child.wait().map_err(|cause| BuildError::RunCargo {
        dir: dir_buf.clone(),
        program: program.clone(),
        cause,
    })?;
    if !status.success() {
        return Err(BuildError::CargoFailed {
            dir: dir_buf,
            status: describe_status(status),
        });
    }
    if let Some(cause) = read_error {
        return Err(BuildError::RunCargo {
            dir: dir_buf,
            program,
            cause,
        });
    }

    let artifact = match artifact {
        Some(artifact) => artifact,
        None if saw_package => return Err(BuildError::NoCdylib { dir: dir_buf }),
        None => return Err(BuildError::NoArtifact { dir: dir_buf }),
    };
    let file_name = artifact
        .file_name()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("operator.wasm"));
    let dest = match out {
        Some(out) if out.is_dir() => out.join(&file_name),
        Some(out) => out.to_path_buf(),
        None => dir.join(&file_name),
    };
    copy_atomically(&artifact, &dest).map_err(|cause| BuildError::WriteOutput {
        dir: dir_buf,
        path: dest.clone(),
        cause,
    })?;
    Ok(dest)
}

/// Errors if rustup is there and says `wasm32-wasip2` is not installed for
/// the toolchain that applies in `abs_dir`. Says nothing when rustup is
/// missing or fails (a toolchain not managed by rustup): cargo will then
/// report a missing target itself.
fn check_target_installed(dir: &Path, abs_dir: &Path, rustup: &OsStr) -> Result<(), BuildError> {
    let output = Command::new(rustup)
        .current_dir(abs_dir)
        .args(["target", "list", "--installed"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output();
    let Ok(output) = output else {
        return Ok(());
    };
    if !output.status.success() {
        return Ok(());
    }
    let installed = String::from_utf8_lossy(&output.stdout);
    if installed.lines().any(|l| l.trim() == RUST_TARGET) {
        Ok(())
    } else {
        Err(BuildError::TargetNotInstalled {
            dir: dir.to_path_buf(),
        })
    }
}

/// `exit status 101`, or how a process that did not exit normally ended.
pub(crate) fn describe_status(status: ExitStatus) -> String {
    match status.code() {
        Some(code) => format!("exit status {code}"),
        None => {
            #[cfg(unix)]
            {
                use std::os::unix::process::ExitStatusExt;
                if let Some(signal) = status.signal() {
                    return format!("killed by signal {signal}");
                }
            }
            status.to_string()
        }
    }
}

/// Copies `from` to `to` through a temporary file in `to`'s folder and a
/// rename, so `to` is never seen half-written. Creates `to`'s parent folders.
fn copy_atomically(from: &Path, to: &Path) -> io::Result<()> {
    let parent = match to.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent)?;
    let name = to
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "operator.wasm".to_string());
    let tmp = parent.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = fs::copy(from, &tmp).and_then(|_| fs::rename(&tmp, to));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(dir: &Path, name: &str) {
        fs::write(dir.join(name), "").unwrap();
    }

    #[test]
    fn detects_each_language() {
        let cases: [(&str, Language); 6] = [
            ("Cargo.toml", Language::Rust),
            ("pyproject.toml", Language::Python),
            ("app.py", Language::Python),
            ("package.json", Language::JavaScript),
            ("go.mod", Language::Go),
            ("op.c", Language::C),
        ];
        for (file, language) in cases {
            let tmp = tempfile::tempdir().unwrap();
            touch(tmp.path(), file);
            assert_eq!(detect_language(tmp.path()).unwrap(), language, "{file}");
        }
    }

    #[test]
    fn cargo_toml_wins_over_other_markers() {
        let tmp = tempfile::tempdir().unwrap();
        touch(tmp.path(), "package.json");
        touch(tmp.path(), "Cargo.toml");
        assert_eq!(detect_language(tmp.path()).unwrap(), Language::Rust);
    }

    #[test]
    fn unknown_language() {
        let tmp = tempfile::tempdir().unwrap();
        touch(tmp.path(), "README.md");
        fs::create_dir(tmp.path().join("src.c")).unwrap(); // a folder, not a C file
        let err = build_plugin(tmp.path(), None).unwrap_err();
        assert!(matches!(err, BuildError::UnknownLanguage { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!(
                "cannot tell the language of `{}`: expected Cargo.toml (Rust), pyproject.toml or \
                 app.py (Python), package.json (JavaScript), go.mod (Go) or *.c files (C)",
                tmp.path().display()
            )
        );
    }

    #[test]
    fn missing_folder_and_file_instead_of_folder() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("nope");
        let err = build_plugin(&missing, None).unwrap_err();
        assert!(matches!(err, BuildError::MissingDir { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!("plugin folder `{}` does not exist", missing.display())
        );

        let file = tmp.path().join("Cargo.toml");
        fs::write(&file, "").unwrap();
        let err = build_plugin(&file, None).unwrap_err();
        assert!(matches!(err, BuildError::NotADir { .. }), "{err:?}");
        assert!(err.to_string().contains(&file.display().to_string()));
    }

    #[test]
    fn error_messages_are_one_line_and_name_the_folder() {
        let dir = PathBuf::from("plugins/rust/word-split");
        let io = || io::Error::new(io::ErrorKind::PermissionDenied, "permission denied");
        let errors = [
            BuildError::CargoNotFound {
                dir: dir.clone(),
                program: "cargo".into(),
            },
            BuildError::TargetNotInstalled { dir: dir.clone() },
            BuildError::RunCargo {
                dir: dir.clone(),
                program: "cargo".into(),
                cause: io(),
            },
            BuildError::CargoFailed {
                dir: dir.clone(),
                status: "exit status 101".into(),
            },
            BuildError::NoCdylib { dir: dir.clone() },
            BuildError::NoArtifact { dir: dir.clone() },
            BuildError::WriteOutput {
                dir: dir.clone(),
                path: "out/x.wasm".into(),
                cause: io(),
            },
            BuildError::ReadDir {
                dir: dir.clone(),
                cause: io(),
            },
        ];
        for err in errors {
            let msg = err.to_string();
            assert!(!msg.contains('\n'), "{msg}");
            assert!(msg.contains("`plugins/rust/word-split"), "{msg}");
            let first = msg.chars().next().unwrap();
            assert!(!first.is_uppercase(), "{msg}");
        }
        assert_eq!(
            BuildError::CargoFailed {
                dir: dir.clone(),
                status: "exit status 101".into()
            }
            .to_string(),
            "`cargo build` failed for `plugins/rust/word-split` (exit status 101): \
             see the compiler messages above"
        );
        assert!(BuildError::TargetNotInstalled { dir: dir.clone() }
            .to_string()
            .starts_with(
                "the Rust target `wasm32-wasip2` is not installed: \
                 run `rustup target add wasm32-wasip2`"
            ));
        assert!(BuildError::NoCdylib { dir }
            .to_string()
            .contains("add `[lib] crate-type = [\"cdylib\"]`"));
    }

    #[test]
    fn missing_cargo_is_reported() {
        let tmp = tempfile::tempdir().unwrap();
        touch(tmp.path(), "Cargo.toml");
        let err = build_rust(
            tmp.path(),
            None,
            OsStr::new("/nonexistent/weir-test/cargo"),
            OsStr::new("/nonexistent/weir-test/rustup"),
        )
        .unwrap_err();
        assert!(matches!(err, BuildError::CargoNotFound { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("/nonexistent/weir-test/cargo"), "{msg}");
        assert!(msg.contains("https://rustup.rs"), "{msg}");
    }

    #[cfg(unix)]
    #[test]
    fn missing_target_is_reported_not_installed() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let plugin = tmp.path().join("op");
        fs::create_dir(&plugin).unwrap();
        touch(&plugin, "Cargo.toml");
        let rustup = tmp.path().join("rustup");
        fs::write(&rustup, "#!/bin/sh\necho x86_64-unknown-linux-gnu\n").unwrap();
        fs::set_permissions(&rustup, fs::Permissions::from_mode(0o755)).unwrap();
        let err = build_rust(
            &plugin,
            None,
            OsStr::new("/nonexistent/weir-test/cargo"),
            rustup.as_os_str(),
        )
        .unwrap_err();
        assert!(
            matches!(err, BuildError::TargetNotInstalled { .. }),
            "{err:?}"
        );
    }

    /// Writes a dependency-free crate named `name` into `dir`.
    fn write_crate(dir: &Path, name: &str, lib_section: &str, source: &str) {
        fs::create_dir_all(dir.join("src")).unwrap();
        fs::write(
            dir.join("Cargo.toml"),
            format!(
                "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
                 {lib_section}\n\n[workspace]\n"
            ),
        )
        .unwrap();
        fs::write(dir.join("src/lib.rs"), source).unwrap();
    }

    const SOURCE: &str = "#[no_mangle]\npub extern \"C\" fn f() -> i32 {\n    1\n}\n";

    #[test]
    fn builds_a_rust_cdylib_into_a_component() {
        let tmp = tempfile::tempdir().unwrap();
        let plugin = tmp.path().join("tiny-op");
        write_crate(
            &plugin,
            "weir-build-tiny-op",
            "[lib]\ncrate-type = [\"cdylib\"]",
            SOURCE,
        );

        let built = build_plugin(&plugin, None).unwrap();
        assert_eq!(built, plugin.join("weir_build_tiny_op.wasm"));
        let bytes = fs::read(&built).unwrap();
        assert!(bytes.starts_with(b"\0asm"), "not a wasm file");
        // Version 0x0d, layer 1: a component, not a core module.
        assert_eq!(&bytes[4..8], &[0x0d, 0x00, 0x01, 0x00], "not a component");

        // With -o into folders that do not exist yet.
        let out = tmp.path().join("a/b/op.wasm");
        let built = build_plugin(&plugin, Some(&out)).unwrap();
        assert_eq!(built, out);
        assert_eq!(fs::read(&out).unwrap(), bytes);
        // No temporary file is left behind.
        let leftovers: Vec<_> = fs::read_dir(tmp.path().join("a/b"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, vec![OsString::from("op.wasm")]);

        // -o naming an existing folder puts the component inside it.
        let out_dir = tmp.path().join("outdir");
        fs::create_dir(&out_dir).unwrap();
        let built = build_plugin(&plugin, Some(&out_dir)).unwrap();
        assert_eq!(built, out_dir.join("weir_build_tiny_op.wasm"));
    }

    #[test]
    fn rust_package_without_cdylib() {
        let tmp = tempfile::tempdir().unwrap();
        let plugin = tmp.path().join("rlib-op");
        write_crate(
            &plugin,
            "weir-build-rlib-op",
            "",
            "pub fn f() -> i32 { 1 }\n",
        );
        let err = build_plugin(&plugin, None).unwrap_err();
        assert!(matches!(err, BuildError::NoCdylib { .. }), "{err:?}");
    }

    #[test]
    fn failing_rust_build() {
        let tmp = tempfile::tempdir().unwrap();
        let plugin = tmp.path().join("broken-op");
        write_crate(
            &plugin,
            "weir-build-broken-op",
            "[lib]\ncrate-type = [\"cdylib\"]",
            "pub fn f() -> i32 { \"not an i32\" }\n",
        );
        let err = build_plugin(&plugin, None).unwrap_err();
        assert!(matches!(err, BuildError::CargoFailed { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!(
                "`cargo build` failed for `{}` (exit status 101): see the compiler messages above",
                plugin.display()
            )
        );
    }
}
