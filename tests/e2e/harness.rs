//! Shared test helpers: the `weir` binary, operators built once per test run,
//! and a temporary directory per test with a job file and input files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

pub mod kafka;

pub use kafka::kafka;

/// The `weir` binary under test.
pub fn weir_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_weir"))
}

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Operators built from source, by name: `word-split`, `keyed-count` (and
/// its `-v2`, `-v3`), `windowed-sum`, `dedupe`, `map` (plugins/rust), and
/// `probe`, `gate` and the `hostile-*` programs (tests/plugins).
pub fn operator(name: &str) -> PathBuf {
    static BUILT: OnceLock<BTreeMap<String, PathBuf>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let mut out = BTreeMap::new();
        let dirs = [
            ("word-split", "plugins/rust/word-split"),
            ("map", "plugins/rust/map"),
            ("keyed-count", "plugins/rust/keyed-count"),
            ("keyed-count-v2", "plugins/rust/keyed-count-v2"),
            ("keyed-count-v3", "plugins/rust/keyed-count-v3"),
            ("windowed-sum", "plugins/rust/windowed-sum"),
            ("dedupe", "plugins/rust/dedupe"),
            ("probe", "tests/plugins/probe"),
            ("gate", "tests/plugins/gate"),
            ("swap-trap", "tests/plugins/swap-trap"),
            ("count-map", "tests/plugins/count-map"),
            ("swap-reject", "tests/plugins/swap-reject"),
            ("twin-handles", "tests/plugins/twin-handles"),
            ("hostile-spin", "tests/plugins/hostile/spin"),
            ("hostile-hog", "tests/plugins/hostile/hog"),
            ("hostile-trap", "tests/plugins/hostile/trap"),
            ("hostile-panic", "tests/plugins/hostile/panic"),
            ("hostile-flood", "tests/plugins/hostile/flood"),
            ("hostile-ghost-state", "tests/plugins/hostile/ghost-state"),
            ("hostile-escape", "tests/plugins/hostile/escape"),
            ("hostile-garbage", "tests/plugins/hostile/garbage"),
        ];
        for (name, dir) in dirs {
            let result = Command::new(weir_bin())
                .arg("build")
                .arg(root().join(dir))
                .stderr(Stdio::inherit())
                .output()
                .expect("running weir build");
            assert!(result.status.success(), "weir build {dir} failed");
            let path = PathBuf::from(String::from_utf8(result.stdout).unwrap().trim());
            assert!(
                path.is_file(),
                "weir build printed {path:?}, which is not a file"
            );
            out.insert(name.to_string(), path);
        }
        out
    });
    built
        .get(name)
        .unwrap_or_else(|| panic!("no operator {name}"))
        .clone()
}

/// The languages every example operator is written in.
pub const LANGUAGES: [&str; 5] = ["rust", "python", "js", "c", "go"];

/// `plugins/<lang>/<name>` built with `weir build`, once per test run (the
/// Rust ones through [`operator`]).
pub fn polyglot(lang: &str, name: &str) -> PathBuf {
    use std::sync::{Arc, Mutex};
    type Slot = Arc<OnceLock<PathBuf>>;
    static BUILT: OnceLock<Mutex<BTreeMap<String, Slot>>> = OnceLock::new();
    if lang == "rust" {
        return operator(name);
    }
    let slot = BUILT
        .get_or_init(Default::default)
        .lock()
        .unwrap()
        .entry(format!("{lang}/{name}"))
        .or_default()
        .clone();
    slot.get_or_init(|| {
        let dir = root().join("plugins").join(lang).join(name);
        let result = Command::new(weir_bin())
            .arg("build")
            .arg(&dir)
            .stderr(Stdio::inherit())
            .output()
            .expect("running weir build");
        assert!(result.status.success(), "weir build {dir:?} failed");
        PathBuf::from(String::from_utf8(result.stdout).unwrap().trim())
    })
    .clone()
}

/// A temporary directory for one test, with helpers to write files and run weir.
pub struct Sandbox {
    dir: tempfile::TempDir,
    cache: PathBuf,
}

/// What a `weir` run did.
pub struct Run {
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Asserts success and returns self.
    #[track_caller]
    pub fn ok(self) -> Self {
        assert!(
            self.status.success(),
            "weir failed: {}\nstdout:\n{}",
            self.stderr,
            self.stdout
        );
        self
    }

    /// Asserts failure with exit status 1 and a one-line error containing every
    /// one of `needles`; returns that line.
    #[track_caller]
    pub fn fails_with(self, needles: &[&str]) -> String {
        assert_eq!(
            self.status.code(),
            Some(1),
            "expected exit 1; stderr:\n{}",
            self.stderr
        );
        let errors: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| l.starts_with("error: "))
            .collect();
        assert_eq!(
            errors.len(),
            1,
            "expected one error line, stderr:\n{}",
            self.stderr
        );
        assert!(
            !self.stderr.lines().any(|l| l.starts_with("thread '")),
            "weir panicked:\n{}",
            self.stderr
        );
        for needle in needles {
            assert!(
                errors[0].contains(needle),
                "error line {:?} lacks {needle:?}",
                errors[0]
            );
        }
        eprintln!("{}", errors[0]);
        errors[0].to_string()
    }
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

    /// `weir ARGS` in the sandbox, with its own component cache.
    pub fn weir(&self, args: &[&str]) -> Run {
        self.weir_with(args, &[], None)
    }

    /// `weir ARGS` with extra environment variables and standard input.
    pub fn weir_with(&self, args: &[&str], env: &[(&str, &str)], stdin: Option<&[u8]>) -> Run {
        let mut cmd = Command::new(weir_bin());
        cmd.args(args)
            .current_dir(self.dir.path())
            .env("WEIR_CACHE_DIR", &self.cache)
            .env_remove("WEIR_LOG")
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawning weir");
        if let Some(input) = stdin {
            use std::io::Write;
            let mut pipe = child.stdin.take().unwrap();
            pipe.write_all(input).unwrap();
        }
        let Output {
            status,
            stdout,
            stderr,
        } = child.wait_with_output().unwrap();
        Run {
            status,
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        }
    }

    /// Starts `weir ARGS` in the sandbox without waiting for it (output discarded).
    pub fn spawn(&self, args: &[&str], env: &[(&str, &str)]) -> std::process::Child {
        let mut cmd = Command::new(weir_bin());
        cmd.args(args)
            .current_dir(self.dir.path())
            .env("WEIR_CACHE_DIR", &self.cache)
            .env_remove("WEIR_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.spawn().expect("spawning weir")
    }

    /// Starts `weir ARGS` with its log (at info level) going to the file `log`.
    pub fn spawn_logged(&self, args: &[&str], log: &str) -> std::process::Child {
        let file = std::fs::File::create(self.path(log)).unwrap();
        Command::new(weir_bin())
            .args(args)
            .current_dir(self.dir.path())
            .env("WEIR_CACHE_DIR", &self.cache)
            .env("WEIR_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("spawning weir")
    }

    /// Waits until the file `name` contains `needle` at least `times` times,
    /// failing the test after a generous deadline.
    #[track_caller]
    pub fn wait_for(&self, name: &str, needle: &str, times: usize) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            let text = std::fs::read_to_string(self.path(name)).unwrap_or_default();
            if text.matches(needle).count() >= times {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "`{needle}` did not appear {times} times in {name}:\n{text}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Writes `job.toml` and runs it.
    pub fn run_job(&self, job: &str) -> Run {
        self.write("job.toml", job);
        self.weir(&["run", "job.toml"])
    }
}

/// A JSON-lines event as the sink writes it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ev {
    pub key: Option<String>,
    pub value: String,
    pub timestamp: i64,
}

/// An expected event with a key.
pub fn ev(key: &str, value: &str, timestamp: i64) -> Ev {
    Ev {
        key: Some(key.to_string()),
        value: value.to_string(),
        timestamp,
    }
}

/// Parses JSON-lines output into a sorted multiset of events.
pub fn events(text: &str) -> Vec<Ev> {
    let mut out: Vec<Ev> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l:?}: {e}"));
            Ev {
                key: v["key"].as_str().map(str::to_string),
                value: v["value"]
                    .as_str()
                    .unwrap_or_else(|| panic!("no value in {l}"))
                    .to_string(),
                timestamp: v["timestamp"].as_i64().unwrap(),
            }
        })
        .collect();
    out.sort();
    out
}

/// Every file of a directory with its bytes: to check that nothing changed.
pub fn dir_snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

/// TOML string literal for a path.
pub fn toml_path(p: &Path) -> String {
    format!("{:?}", p.display().to_string())
}

/// Lines of a file, sorted: output compared as a multiset.
pub fn sorted_lines(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines.sort();
    lines
}

/// A small deterministic random number generator for tests (splitmix64).
pub struct Rng(pub u64);

impl Rng {
    /// Seeded from `WEIR_TEST_SEED`, else the clock; prints the seed to reproduce a failure.
    pub fn from_env() -> Self {
        let seed = std::env::var("WEIR_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        eprintln!("random seed: WEIR_TEST_SEED={seed}");
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
}

/// The items the `probe` operator emitted, per key, in order: it emits a key
/// with its collected items joined by `,`.
pub fn probe_items(output: &str) -> BTreeMap<String, Vec<String>> {
    let mut per_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in output.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let items = per_key
            .entry(v["key"].as_str().unwrap().to_string())
            .or_default();
        items.extend(v["value"].as_str().unwrap().split(',').map(str::to_string));
    }
    per_key
}
