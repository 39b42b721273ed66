//! A `weir` process of a test, from one builder: [`Weir`] sets the
//! arguments, environment, folder, standard input and log file, then runs
//! the command to its end ([`Weir::run`], a [`Run`]) or starts it
//! ([`Weir::start`], a [`Process`]) to wait on (a line in its log, its REST
//! address, its exit) and to stop (a signal, SIGKILL). Every wait is on a
//! condition, with a deadline ([`wait_until`]); none sleeps and hopes.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long a condition may take before the test fails: generous, for a
/// machine shared with other builds.
const DEADLINE: Duration = Duration::from_secs(180);

/// How long a started process may take to end before the test fails (a
/// job may run for minutes on a loaded machine; a host that hangs fails).
const EXIT_DEADLINE: Duration = Duration::from_secs(600);

/// The `weir` binary under test.
pub fn weir_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_weir"))
}

/// Calls `check` until it gives a value, or `until` passes (`None`). The
/// pause between calls is 5 ms, then 10, then 20 ms, or as long as a call
/// took if that is longer (a check that runs a command polls no faster
/// than it can run).
fn poll<T>(until: Instant, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let mut pause = Duration::from_millis(5);
    loop {
        let started = Instant::now();
        if let Some(v) = check() {
            return Some(v);
        }
        let now = Instant::now();
        if now >= until {
            return None;
        }
        std::thread::sleep(pause.max(now - started).min(until - now));
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// Calls `check` until it gives `Ok` and returns that; `Err` says what it
/// waits for and what there is instead, which fails the test after a
/// generous deadline.
#[track_caller]
pub fn wait_until<T>(mut check: impl FnMut() -> Result<T, String>) -> T {
    let mut why = String::new();
    let got = poll(Instant::now() + DEADLINE, || match check() {
        Ok(v) => Some(v),
        Err(e) => {
            why = e;
            None
        }
    });
    got.unwrap_or_else(|| panic!("after {}s: {why}", DEADLINE.as_secs()))
}

/// How many times `needle` is in the file at `path` (none while it does not exist).
fn count_in(path: &Path, needle: &str) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .matches(needle)
        .count()
}

/// A `weir` command to run or start: the binary under test, its standard
/// input closed and `WEIR_LOG` unset (so logs are at `info`) unless told.
pub struct Weir {
    cmd: Command,
    /// Where it runs; a log file the test names goes there too.
    dir: Option<PathBuf>,
    /// Where the harness's own files for it go (a sandbox's `.weir`), else
    /// a temporary folder.
    files: Option<PathBuf>,
    stdin: Option<Vec<u8>>,
    /// Its log file's name (in `dir`), when the test names it.
    log: Option<String>,
    /// Given `--ready-file` ([`Weir::rest`]).
    rest: bool,
    /// Its arguments, for messages.
    what: String,
}

impl Weir {
    /// `weir ARGS`.
    pub fn new<S: AsRef<OsStr>>(args: &[S]) -> Weir {
        let mut cmd = Command::new(weir_bin());
        cmd.args(args).env_remove("WEIR_LOG");
        let what = args
            .iter()
            .map(|a| a.as_ref().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        Weir {
            cmd,
            dir: None,
            files: None,
            stdin: None,
            log: None,
            rest: false,
            what: format!("weir {what}"),
        }
    }

    /// One more argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Weir {
        self.what.push(' ');
        self.what.push_str(&arg.as_ref().to_string_lossy());
        self.cmd.arg(arg);
        self
    }

    /// Runs in `dir`; its log file is there too.
    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Weir {
        self.cmd.current_dir(dir.as_ref());
        self.dir = Some(dir.as_ref().to_path_buf());
        self
    }

    /// The harness's own files for it (its stdout, its log if the test
    /// names none, its ready file) go into `dir`, not a temporary folder.
    pub fn files_in(mut self, dir: PathBuf) -> Weir {
        self.files = Some(dir);
        self
    }

    /// An environment variable.
    pub fn env(mut self, key: &str, value: impl AsRef<OsStr>) -> Weir {
        self.cmd.env(key, value);
        self
    }

    /// Environment variables.
    pub fn envs(mut self, vars: &[(&str, &str)]) -> Weir {
        self.cmd.envs(vars.iter().copied());
        self
    }

    /// `WEIR_LOG`, e.g. `info,weir_host::engine::coordinator=debug`.
    pub fn log_level(self, filter: &str) -> Weir {
        self.env("WEIR_LOG", filter)
    }

    /// Writes `input` to its standard input.
    pub fn stdin(mut self, input: &[u8]) -> Weir {
        self.stdin = Some(input.to_vec());
        self
    }

    /// A started process's log (stderr) goes to the file `name` in its
    /// folder ([`Weir::current_dir`]), created anew, for the test to read
    /// and to wait on ([`Process::wait_for`]); else to a file of the
    /// harness's.
    pub fn log(mut self, name: &str) -> Weir {
        self.log = Some(name.to_string());
        self
    }

    /// A `weir run` whose job serves a REST API: started with
    /// `--ready-file`, so that [`Process::rest_addr`] reads the address
    /// from that file, never from the log.
    pub fn rest(mut self) -> Weir {
        self.rest = true;
        self
    }

    /// The command as it stands, for the rare test that needs its pipes
    /// as they are (a standard output closed before it writes).
    pub fn into_command(self) -> Command {
        self.cmd
    }

    /// Runs it to its end; returns its exit status and output.
    pub fn run(mut self) -> Run {
        assert!(
            self.log.is_none() && !self.rest,
            "a log file and a REST address are for a started process"
        );
        self.cmd
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = self
            .cmd
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", self.what));
        if let Some(input) = self.stdin {
            use std::io::Write;
            let mut pipe = child.stdin.take().unwrap();
            pipe.write_all(&input).unwrap();
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

    /// Starts it. Its output goes to files (never to a pipe that could fill
    /// up): stderr to its log ([`Weir::log`], else a file of the harness's),
    /// stdout to a file of the harness's; [`Process::finish`] reads them.
    /// The harness's files are in [`Weir::files_in`], else in a temporary
    /// folder the process keeps.
    pub fn start(mut self) -> Process {
        assert!(
            self.stdin.is_none(),
            "standard input is for a run to its end"
        );
        let (files, temporary) = match &self.files {
            Some(files) => (files.clone(), None),
            None => {
                let t = tempfile::tempdir().unwrap();
                (t.path().to_path_buf(), Some(t))
            }
        };
        std::fs::create_dir_all(&files).unwrap();
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let own = |ext: &str| files.join(format!("{}-{n}.{ext}", std::process::id()));
        let log = match (&self.log, &self.dir) {
            (Some(name), Some(dir)) => dir.join(name),
            (Some(name), None) => files.join(name),
            (None, _) => own("log"),
        };
        let out = own("out");
        let ready = self.rest.then(|| own("addr"));
        if let Some(ready) = &ready {
            self.cmd.arg("--ready-file").arg(ready);
        }
        self.cmd
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&log).unwrap());
        let child = self
            .cmd
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", self.what));
        Process {
            child,
            what: self.what,
            log,
            out,
            ready,
            _temporary: temporary,
        }
    }
}

/// What a `weir` run did.
pub struct Run {
    pub status: ExitStatus,
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

/// A started `weir` process. Dropped while it runs (a test that failed),
/// it is killed.
pub struct Process {
    child: Child,
    what: String,
    log: PathBuf,
    out: PathBuf,
    ready: Option<PathBuf>,
    /// Where the harness's files are when it runs in no folder of a test's.
    _temporary: Option<tempfile::TempDir>,
}

impl Process {
    /// Its process ID.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Its log so far.
    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until its log holds `needle` `times` times (`Ok`), or it
    /// exits first (`Err` with its exit status).
    #[track_caller]
    pub fn wait_for_or_exit(&mut self, needle: &str, times: usize) -> Result<(), ExitStatus> {
        let (log, child, what) = (&self.log, &mut self.child, &self.what);
        wait_until(|| {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            if text.matches(needle).count() >= times {
                return Ok(Ok(()));
            }
            if let Some(status) = child.try_wait().unwrap() {
                // Written just before it exited?
                return Ok(if count_in(log, needle) >= times {
                    Ok(())
                } else {
                    Err(status)
                });
            }
            Err(format!(
                "`{needle}` did not appear {times} times in the log of `{what}`:\n{text}"
            ))
        })
    }

    /// Waits until its log holds `needle` `times` times; fails the test
    /// if it exits first.
    #[track_caller]
    pub fn wait_for(&mut self, needle: &str, times: usize) {
        if let Err(status) = self.wait_for_or_exit(needle, times) {
            panic!(
                "`{}` ended ({status}) before `{needle}` appeared {times} times in its log:\n{}",
                self.what,
                self.log_text()
            );
        }
    }

    /// The address of its REST API (`HOST:PORT`), from the file `weir run
    /// --ready-file` writes once it listens ([`Weir::rest`]); fails the test
    /// if it exits first.
    #[track_caller]
    pub fn rest_addr(&mut self) -> String {
        let ready = self
            .ready
            .clone()
            .unwrap_or_else(|| panic!("`{}` was started without Weir::rest", self.what));
        let (child, what) = (&mut self.child, &self.what);
        let got = wait_until(|| {
            // Written whole (renamed into place), ending in a newline.
            if let Ok(text) = std::fs::read_to_string(&ready) {
                return Ok(Ok(text.trim().to_string()));
            }
            match child.try_wait().unwrap() {
                Some(status) => Ok(Err(status)),
                None => Err(format!("`{what}` wrote no {ready:?}")),
            }
        });
        got.unwrap_or_else(|status| {
            panic!(
                "`{}` ended ({status}) before its REST API listened:\n{}",
                self.what,
                self.log_text()
            )
        })
    }

    /// Its exit status if it has ended (it does not wait).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// Waits up to `d` for it to exit: its exit status, or `None` if it
    /// still runs.
    pub fn exit_within(&mut self, d: Duration) -> Option<ExitStatus> {
        let child = &mut self.child;
        poll(Instant::now() + d, || child.try_wait().unwrap())
    }

    /// Waits for it to exit; a process that hangs fails the test.
    #[track_caller]
    pub fn wait(&mut self) -> ExitStatus {
        match self.exit_within(EXIT_DEADLINE) {
            Some(status) => status,
            None => panic!(
                "`{}` did not end in {}s:\n{}",
                self.what,
                EXIT_DEADLINE.as_secs(),
                self.log_text()
            ),
        }
    }

    /// Waits for it to exit; returns its exit status and output.
    #[track_caller]
    pub fn finish(mut self) -> Run {
        let status = self.wait();
        Run {
            status,
            stdout: std::fs::read_to_string(&self.out).unwrap(),
            stderr: self.log_text(),
        }
    }

    /// SIGKILL (a crash), and waits for it to be gone.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Sends `signal` (`TERM`, `INT`, ...).
    #[track_caller]
    pub fn signal(&self, signal: &str) {
        send_signal(self.id(), signal);
    }
}

/// Sends `signal` (`TERM`, `STOP`, ...) to process `pid` with `kill`.
#[track_caller]
pub fn send_signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args(["-s", signal, &pid.to_string()])
        .status()
        .expect("running kill");
    assert!(status.success(), "kill -s {signal} {pid}: {status}");
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
