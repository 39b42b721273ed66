//! The staging folder a non-Rust build runs in: the plugin's own files, the
//! WIT contract and the language's SDK, both embedded in the `weir` binary
//! (by `host/build.rs`), so that the plugin folder holds no copy of either
//! and is never written to, and every operator is built against exactly the
//! contract the binary runs.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::BuildError;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded.rs"));
}

pub use embedded::*;

/// A temporary folder, removed when dropped.
pub struct Stage {
    dir: tempfile::TempDir,
}

impl Stage {
    /// A new empty staging folder.
    pub fn new(plugin: &Path) -> Result<Stage, BuildError> {
        let dir = tempfile::Builder::new()
            .prefix("weir-build-")
            .tempdir()
            .map_err(|cause| stage_error(plugin, cause))?;
        Ok(Stage { dir })
    }

    /// The folder's path.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `sub` inside the folder.
    pub fn join(&self, sub: &str) -> PathBuf {
        self.dir.path().join(sub)
    }

    /// Writes embedded `files` under `sub`.
    pub fn write(
        &self,
        plugin: &Path,
        sub: &str,
        files: &[(&str, &[u8])],
    ) -> Result<PathBuf, BuildError> {
        let to = self.join(sub);
        write_files(&to, files).map_err(|cause| stage_error(plugin, cause))?;
        Ok(to)
    }

    /// Copies the plugin folder's files (not its `.wasm` files, hidden
    /// files, `node_modules`, `target` or `__pycache__`) under `sub`.
    pub fn copy_plugin(&self, plugin: &Path, sub: &str) -> Result<PathBuf, BuildError> {
        let to = self.join(sub);
        copy_tree(plugin, &to).map_err(|cause| stage_error(plugin, cause))?;
        Ok(to)
    }
}

fn stage_error(plugin: &Path, cause: io::Error) -> BuildError {
    BuildError::Stage {
        dir: plugin.to_path_buf(),
        cause,
    }
}

/// Writes `files` (relative path, contents) under `dir`.
pub fn write_files(dir: &Path, files: &[(&str, &[u8])]) -> io::Result<()> {
    for (rel, bytes) in files {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(path, bytes)?;
    }
    fs::create_dir_all(dir)
}

fn skipped(name: &str) -> bool {
    name.starts_with('.')
        || name.ends_with(".wasm")
        || matches!(name, "node_modules" | "target" | "__pycache__")
}

fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        if skipped(&name.to_string_lossy()) {
            continue;
        }
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            copy_tree(&path, &to.join(&name))?;
        } else {
            fs::copy(&path, to.join(&name))?;
        }
    }
    Ok(())
}
