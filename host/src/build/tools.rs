//! The toolchains `weir build` runs for languages other than Rust: where it
//! looks for them, how it runs them, and what it says when one is missing.
//!
//! A tool is looked up under the toolchains folder that `scripts/install.sh`
//! fills first (`$WEIR_TOOLCHAINS`, default `~/.weir/toolchains`: `bin/`,
//! `venv/bin/`, `npm/node_modules/.bin/`), then on `PATH`. The installer pins
//! versions the recipes are known to work with, and a machine may carry an
//! older tool of the same name (a preinstalled Go 1.26 on `PATH` cannot build
//! the Go SDK, which needs 1.27), so the pinned one wins.
//! Nothing is ever installed by `weir build`: a missing tool is an error
//! naming the command that installs it. Tools run with those folders on
//! their `PATH` too (clang finds `wasm-ld` there), their output going to
//! weir's stderr, since weir's stdout carries the path of the component.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{describe_status, BuildError, Language};

/// A tool a language's build needs, and how a user installs it.
#[derive(Debug, Clone, Copy)]
pub struct Tool {
    /// The command's name, e.g. `componentize-py`.
    pub name: &'static str,
    /// The language whose installer provides it (`scripts/install.sh LANG`).
    pub installer: &'static str,
    /// The plain command that installs it without the weir repository.
    pub install: &'static str,
}

/// The toolchains folder: `$WEIR_TOOLCHAINS`, else `~/.weir/toolchains`.
pub fn toolchains_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("WEIR_TOOLCHAINS").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".weir").join("toolchains"))
}

/// The folders searched before `PATH`.
fn toolchain_bins() -> Vec<PathBuf> {
    toolchains_dir()
        .map(|t| {
            vec![
                t.join("bin"),
                t.join("venv").join("bin"),
                t.join("npm").join("node_modules").join(".bin"),
            ]
        })
        .unwrap_or_default()
}

/// The toolchain folders, then `PATH`: where tools are found, and the
/// `PATH` they run with (so `go` finds the same `go`, clang its `wasm-ld`).
pub fn search_path() -> OsString {
    let mut dirs = toolchain_bins();
    dirs.extend(
        std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .unwrap_or_default(),
    );
    std::env::join_paths(dirs).unwrap_or_default()
}

/// Where `name` is, in the toolchains folder or on `PATH`.
pub fn find(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&search_path())
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        path.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    }
    #[cfg(not(unix))]
    {
        path.is_file()
    }
}

/// Finds `tool` or says which command installs it.
pub fn require(tool: Tool, dir: &Path, language: Language) -> Result<PathBuf, BuildError> {
    find(tool.name).ok_or_else(|| BuildError::ToolMissing {
        dir: dir.to_path_buf(),
        language,
        tool: tool.name,
        installer: tool.installer,
        install: tool.install,
    })
}

/// Runs `program` with `args` in `cwd`, its output on our stderr; errors
/// name the tool and the plugin folder.
pub fn run(
    dir: &Path,
    program: &Path,
    args: &[&std::ffi::OsStr],
    cwd: &Path,
    env: &[(&str, &std::ffi::OsStr)],
) -> Result<(), BuildError> {
    run_with(dir, program, args, cwd, env, true)
}

/// [`run`] for a tool whose output only lists what it wrote (wit-bindgen's
/// `Generating ...`): its output is shown only if it fails.
pub fn run_quiet(
    dir: &Path,
    program: &Path,
    args: &[&std::ffi::OsStr],
    cwd: &Path,
) -> Result<(), BuildError> {
    run_with(dir, program, args, cwd, &[], false)
}

fn run_with(
    dir: &Path,
    program: &Path,
    args: &[&std::ffi::OsStr],
    cwd: &Path,
    env: &[(&str, &std::ffi::OsStr)],
    loud: bool,
) -> Result<(), BuildError> {
    let tool = program
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    tracing::debug!(?program, ?args, "running");
    let mut cmd = Command::new(program);
    cmd.args(args)
        .current_dir(cwd)
        .env("PATH", search_path())
        .stdin(Stdio::null())
        .stdout(if loud {
            Stdio::from(std::io::stderr())
        } else {
            Stdio::piped()
        })
        .stderr(if loud {
            Stdio::inherit()
        } else {
            Stdio::piped()
        });
    for (k, v) in env {
        cmd.env(k, v);
    }
    let run_error = |cause| BuildError::RunTool {
        dir: dir.to_path_buf(),
        tool: tool.clone(),
        cause,
    };
    let status = if loud {
        cmd.status().map_err(run_error)?
    } else {
        let output = cmd.output().map_err(run_error)?;
        if !output.status.success() {
            use std::io::Write;
            let mut err = std::io::stderr().lock();
            let _ = err.write_all(&output.stdout);
            let _ = err.write_all(&output.stderr);
        }
        output.status
    };
    if status.success() {
        Ok(())
    } else {
        Err(BuildError::ToolFailed {
            dir: dir.to_path_buf(),
            tool,
            status: describe_status(status),
        })
    }
}
