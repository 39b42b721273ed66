//! A temporary folder per test: its files (job file, input, output, logs),
//! and `weir` commands run in it with a component cache of its own.

use std::path::PathBuf;

use super::process::{wait_until, Run, Weir};

/// A temporary directory for one test, with helpers to write files and run weir.
pub struct Sandbox {
    dir: tempfile::TempDir,
    cache: PathBuf,
}

impl Sandbox {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join(".cache");
        Sandbox { dir, cache }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&path, content).unwrap();
        path
    }

    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap_or_else(|e| panic!("reading {name}: {e}"))
    }

    /// The command `weir ARGS` in the sandbox, with its own component cache,
    /// to configure, then run or start; the harness's files for it are in
    /// the sandbox's `.weir` folder.
    pub fn cmd(&self, args: &[&str]) -> Weir {
        Weir::new(args)
            .current_dir(self.dir.path())
            .files_in(self.path(".weir"))
            .env("WEIR_CACHE_DIR", &self.cache)
    }

    /// Runs `weir ARGS` in the sandbox to its end.
    pub fn weir(&self, args: &[&str]) -> Run {
        self.cmd(args).run()
    }

    /// Waits until the file `name` contains `needle` at least `times` times,
    /// failing the test after a generous deadline.
    #[track_caller]
    pub fn wait_for(&self, name: &str, needle: &str, times: usize) {
        let path = self.path(name);
        wait_until(|| {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if text.matches(needle).count() >= times {
                return Ok(());
            }
            Err(format!(
                "`{needle}` did not appear {times} times in {name}:\n{text}"
            ))
        })
    }

    /// Writes `job.toml` and runs it.
    pub fn run_job(&self, job: &str) -> Run {
        self.write("job.toml", job);
        self.weir(&["run", "job.toml"])
    }
}
