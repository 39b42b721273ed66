//! The job file: the TOML that names a job's source, its operators (by ID, with
//! the `.wasm` behind each), its sink, and its checkpoint, savepoint, restart and
//! REST settings, parsed into a checked [`JobSpec`].
//!
//! The shape is the one the manual documents (`docs/reference/job-file.md`).
//! Choices made here that the shape alone leaves open:
//!
//! - Parsing is strict. An unknown field, a value of the wrong type, or a field
//!   that belongs to another source or sink type (e.g. `count` on a file source)
//!   is an error that names the field and its line. Every error is one line:
//!   `job.toml:7: ...`, with the file path exactly as the caller gave it.
//! - Relative paths are resolved against the job file's directory (made absolute
//!   without touching the file system: no symlinks are resolved, `..` is kept).
//!   Nothing here checks that a file exists; the runtime does that.
//! - Durations are strings that the `humantime` crate reads: a number (decimals
//!   allowed) and a unit, `ns`, `us` (or `µs`), `ms`, `s`, `m`, `h`, `d` and
//!   humantime's longer names (`min`, `hours`, ...; `M` is a month), e.g.
//!   `"250ms"`, `"1.5s"`, `"5m"`; parts may be chained (`"1m30s"`, `"2h 5min"`);
//!   a bare `"0"` is zero. Digits split by a space (`"1 2s"`) are refused, not
//!   read as 12s. See [`crate::model::config::parse_duration`].
//! - Sizes are strings that the `bytesize` crate reads (`"64MiB"`, `"1 GiB"`,
//!   units case-insensitive, `KB`/`MB`/`GB` powers of 1000) or integers (bytes).
//!   See [`crate::model::config::parse_size`].
//! - `[checkpoint]` without `interval` means no periodic checkpoints; an
//!   `interval` of zero is an error. `timeout` (default 10 minutes, as
//!   Flink's `execution.checkpointing.timeout`) must be above zero;
//!   `tolerable_failures` (default 0, as Flink's
//!   `execution.checkpointing.tolerable-failed-checkpoints`) is a count of
//!   consecutive checkpoint failures, zero or more.
//! - `[savepoint]` without `dir` defaults to `savepoints`.
//! - `[restart]` without `strategy` is `fixed-delay`. `max_delay` is only allowed
//!   with `exponential` and must not be below `delay`; `none` takes no other
//!   field.
//! - `[rest] addr` must look like `host:port` (port 0 picks a free one); the
//!   host is not resolved here.
//! - `[source] max_line_size` (file and stdin sources) bounds the memory and
//!   work one input line can take: a size like the `[operators.limits]`
//!   ones (`"1MiB"`, or bytes as an integer), default 1 MiB (Kafka's default
//!   largest message), at most 1 GiB; it counts a line's bytes without its
//!   line ending. A longer line fails the job with a message naming the
//!   file, the line, the limit and this field.
//! - Operator config values must be TOML strings; `config = { n = 3 }` is an
//!   error that suggests `n = "3"`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use toml::{Spanned, Value};

pub use crate::connectors::registry::{SinkSpec, SourceConnector};
use crate::model::config::{describe, Entries, Field, Fields, JobError, JobFile, Table};
use crate::wasm::limits::{Capabilities, Limits, RawCapabilities, RawLimits};
use crate::wasm::operator::Setup;

/// Default number of key groups when `max_parallelism` is not given.
pub const DEFAULT_MAX_PARALLELISM: u32 = 128;
/// Largest allowed `max_parallelism` (number of key groups).
pub const MAX_MAX_PARALLELISM: u32 = 32768;
/// Default number of events a source puts in one batch.
pub const DEFAULT_BATCH_SIZE: usize = 1024;
/// Largest allowed source `batch_size`.
pub const MAX_BATCH_SIZE: usize = 65536;

/// A parsed and checked job file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSpec {
    /// The job's name.
    pub name: String,
    /// Number of key groups state is sharded into; fixed for the life of the job's state.
    pub max_parallelism: u32,
    /// Where events come from.
    pub source: SourceSpec,
    /// The operators, in the order events flow through them (at least one).
    pub operators: Vec<JobOperator>,
    /// Where results go.
    pub sink: SinkSpec,
    /// Where events that an operator rejected as bad input are written, if anywhere.
    pub dead_letter: Option<DeadLetterSpec>,
    /// Checkpoint settings, if the `[checkpoint]` table is present.
    pub checkpoint: Option<CheckpointSpec>,
    /// Savepoint settings, if the `[savepoint]` table is present.
    pub savepoint: Option<SavepointSpec>,
    /// Restart strategy, if the `[restart]` table is present.
    pub restart: Option<RestartSpec>,
    /// REST server settings, if the `[rest]` table is present.
    pub rest: Option<RestSpec>,
    /// What a SIGTERM or SIGINT does (`[shutdown]`; defaults without it).
    pub shutdown: ShutdownSpec,
    /// The job file's directory, absolute; relative paths in the file are resolved against it.
    pub base_dir: PathBuf,
}

/// The job's source (`[source]`): the connector that `type` selects, with
/// its own fields, and what every source has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceSpec {
    /// The connector and its configuration.
    pub connector: SourceConnector,
    /// Bounded out-of-orderness: the watermark trails the highest timestamp seen by this much.
    pub watermark_delay: Duration,
    /// Events per batch.
    pub batch_size: usize,
}

/// Fields of `[source]` that every source type has.
const SOURCE_FIELDS: &[&str] = &["type", "watermark_delay", "batch_size"];

impl SourceSpec {
    /// How many subtasks read the source (a Kafka source's `parallelism`).
    pub fn parallelism(&self) -> u32 {
        self.connector.get().parallelism()
    }

    /// Where the event at `offset` (see [`crate::engine::channel::Offsets`]) is, for
    /// messages: ``offset 40 (line 41 of `/data/in.jsonl`)``.
    pub fn locate(&self, offset: u64) -> String {
        self.connector.get().locate(offset)
    }
}

/// One `[[operators]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobOperator {
    /// The operator ID: state belongs to it. Non-empty, only `[A-Za-z0-9_.-]`, unique in the job.
    pub id: String,
    /// The `.wasm` component (absolute).
    pub wasm: PathBuf,
    /// Number of subtasks (1..=max_parallelism).
    pub parallelism: u32,
    /// How events are routed to the subtasks.
    pub input: InputMode,
    /// The string map handed to the operator's `open()`.
    pub config: BTreeMap<String, String>,
    /// What the operator may reach through WASI beyond clocks, random and its
    /// log (`[operators.capabilities]`); nothing by default.
    pub capabilities: Capabilities,
    /// What each of its subtasks may use (`[operators.limits]`).
    pub limits: Limits,
    /// 1-based line of this `[[operators]]` entry in the job file, for messages.
    pub line: usize,
}

impl JobOperator {
    /// What each subtask of this operator is set up with.
    pub fn setup(&self) -> Setup {
        Setup {
            config: self.config.clone(),
            capabilities: self.capabilities.clone(),
            limits: self.limits.clone(),
        }
    }
}

/// How an operator's input is distributed over its subtasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InputMode {
    /// `"forward"`: events stay with the subtask of the same index (or are spread evenly).
    #[default]
    Forward,
    /// `"key"`: events are routed by the hash of their key over the key groups.
    Key,
}

/// `[dead_letter]`: where events rejected as bad input go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterSpec {
    /// The JSON-lines file to write them to (absolute).
    pub path: PathBuf,
}

/// `[checkpoint]`: periodic checkpoints for recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointSpec {
    /// Time between checkpoints; `None` means no periodic checkpoints.
    pub interval: Option<Duration>,
    /// The state directory (absolute; default `state` next to the job file).
    pub dir: PathBuf,
    /// How many completed checkpoints to keep (at least 1; default 3).
    pub retain: usize,
    /// The delivery guarantee.
    pub mode: CheckpointMode,
    /// How long a checkpoint or savepoint may take before it is aborted
    /// (above zero; default [`DEFAULT_CHECKPOINT_TIMEOUT`]).
    pub timeout: Duration,
    /// Consecutive checkpoint failures tolerated before the job fails over
    /// (default 0: the first one fails it over).
    pub tolerable_failures: u32,
}

/// `[checkpoint] timeout` when not given: 10 minutes, as Flink's.
pub const DEFAULT_CHECKPOINT_TIMEOUT: Duration = Duration::from_secs(600);

/// The guarantee checkpoints give.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CheckpointMode {
    /// `"exactly-once"`: aligned barriers.
    #[default]
    ExactlyOnce,
    /// `"at-least-once"`: barriers are not aligned; events may be replayed after a failure.
    AtLeastOnce,
}

/// `[savepoint]`: savepoint settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavepointSpec {
    /// Default target directory of a triggered savepoint (absolute; default `savepoints`).
    pub dir: PathBuf,
}

/// `[restart]`: what to do when the job fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestartSpec {
    /// The strategy (default fixed-delay).
    pub strategy: RestartStrategy,
    /// How many restarts are attempted before the job gives up (default 3).
    pub attempts: u32,
    /// Delay before a restart; the first delay for `exponential` (default 1s).
    pub delay: Duration,
    /// Upper bound of the delay for `exponential`; `None` means unbounded.
    pub max_delay: Option<Duration>,
}

impl RestartSpec {
    /// The longest delay before a restart: `delay`, or for `exponential`
    /// `max_delay` (else the delay before the last attempt).
    pub fn longest_delay(&self) -> Duration {
        if self.strategy == RestartStrategy::Exponential {
            self.max_delay
                .unwrap_or(self.delay * (1u32 << self.attempts.min(20)))
        } else {
            self.delay
        }
    }
}

/// How a failed job is restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RestartStrategy {
    /// `"fixed-delay"`: wait `delay` before each attempt.
    #[default]
    FixedDelay,
    /// `"exponential"`: double the delay after each attempt, up to `max_delay`.
    Exponential,
    /// `"none"`: a failure ends the job.
    None,
}

/// `[shutdown]`: how the job ends on SIGTERM or SIGINT (what init systems,
/// containers and Ctrl-C send).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShutdownSpec {
    /// `savepoint = true`: stop with a savepoint (in `[savepoint] dir`);
    /// else with a last checkpoint.
    pub savepoint: bool,
    /// `timeout`: past it (or at a second signal) the process exits at once,
    /// still exactly-once by recovery (default 30 s).
    pub timeout: Duration,
}

/// The default `[shutdown] timeout`.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

impl Default for ShutdownSpec {
    fn default() -> Self {
        ShutdownSpec {
            savepoint: false,
            timeout: DEFAULT_SHUTDOWN_TIMEOUT,
        }
    }
}

/// `[rest]`: the REST server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestSpec {
    /// `host:port` to listen on; port 0 picks a free one.
    pub addr: String,
}

impl JobSpec {
    /// Reads the job file at `path` and parses it with [`JobSpec::parse`].
    pub fn load(path: &Path) -> Result<JobSpec, JobError> {
        let text = std::fs::read_to_string(path).map_err(|source| JobError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses and checks a job file's text. `path` is the file's path: it names the
    /// file in messages, and its directory becomes [`JobSpec::base_dir`].
    pub fn parse(text: &str, path: &Path) -> Result<JobSpec, JobError> {
        let file = path.display().to_string();
        let base_dir = base_dir_of(path).map_err(|e| JobError::Invalid {
            file: file.clone(),
            line: None,
            message: format!("cannot resolve the job file's directory: {e}"),
        })?;
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let cx = JobFile {
            file,
            text,
            base_dir,
        };
        let raw: RawJob = toml::from_str(text).map_err(|e| cx.toml_error(&e))?;
        cx.job(&raw)
    }
}

/// Reads `type` out of a `[source]` or `[sink]` table (`table`) and returns
/// the connector it names, after checking that every other field is one that
/// connector reads or one of `common`: a field of another connector is
/// ``source: `count` does not apply to a `file` source``, any other is
/// ``unknown field `x`, expected one of ...``.
fn connector_type(
    s: &Table<'_, '_>,
    f: &mut Fields,
    table: &str,
    kinds: &[(&'static str, &'static [&'static str])],
    common: &[&str],
) -> Result<usize, JobError> {
    let connectors: Vec<(&str, usize, &[&str])> = kinds
        .iter()
        .enumerate()
        .map(|(i, (name, fields))| (*name, i, *fields))
        .collect();
    let names: Vec<String> = connectors.iter().map(|(n, ..)| format!("`{n}`")).collect();
    let type_field = f.take("type");
    let hint = format!(" (one of {})", names.join(", "));
    let ty_v = s.required("type", &type_field, &hint)?;
    let choices: Vec<(&str, usize)> = connectors
        .iter()
        .enumerate()
        .map(|(i, (n, ..))| (*n, i))
        .collect();
    let (name, kind, own) = connectors[s.choice("type", ty_v, &choices)?];
    let others: Vec<&str> = connectors.iter().flat_map(|c| c.2).copied().collect();
    let expected: Vec<&str> = [&["type"][..], own, common].concat();
    f.check(s, &format!("a `{name}` {table}"), &expected, &others)?;
    Ok(kind)
}

/// The directory of the job file, absolute, without touching the file system.
fn base_dir_of(path: &Path) -> std::io::Result<PathBuf> {
    let dir = path.parent().unwrap_or(path);
    let abs = if dir.as_os_str().is_empty() {
        std::env::current_dir()?
    } else {
        std::path::absolute(dir)?
    };
    Ok(abs.components().collect())
}

// ---------------------------------------------------------------------------
// The raw shape, as serde sees it. Leaves are kept as spanned TOML values so that
// type and range errors can name the field and its line.

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a job table")]
struct RawJob {
    name: Field,
    max_parallelism: Field,
    source: Option<Spanned<RawSource>>,
    operators: Option<Spanned<RawOperators>>,
    sink: Option<Spanned<RawSink>>,
    dead_letter: Option<Spanned<RawDeadLetter>>,
    checkpoint: Option<Spanned<RawCheckpoint>>,
    savepoint: Option<Spanned<RawSavepoint>>,
    restart: Option<Spanned<RawRestart>>,
    rest: Option<Spanned<RawRest>>,
    shutdown: Option<Spanned<RawShutdown>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [shutdown] table")]
struct RawShutdown {
    savepoint: Field,
    timeout: Field,
}

/// The `[source]` table: the connector `type` names reads its own fields.
struct RawSource(Fields);

impl<'de> Deserialize<'de> for RawSource {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Fields::deserialize_expecting(d, "a [source] table").map(RawSource)
    }
}

/// The `[sink]` table: the connector `type` names reads its own fields.
struct RawSink(Fields);

impl<'de> Deserialize<'de> for RawSink {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Fields::deserialize_expecting(d, "a [sink] table").map(RawSink)
    }
}

struct RawOperators(Vec<Spanned<RawOperator>>);

impl<'de> Deserialize<'de> for RawOperators {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawOperators;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of [[operators]] tables")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawOperators, A::Error> {
                let mut ops = Vec::new();
                while let Some(op) = seq.next_element()? {
                    ops.push(op);
                }
                Ok(RawOperators(ops))
            }
        }
        d.deserialize_seq(V)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "an [[operators]] table")]
struct RawOperator {
    id: Field,
    wasm: Field,
    parallelism: Field,
    input: Field,
    config: Option<Spanned<Entries>>,
    capabilities: Option<Spanned<RawCapabilities>>,
    limits: Option<Spanned<RawLimits>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [dead_letter] table")]
struct RawDeadLetter {
    path: Field,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [checkpoint] table")]
struct RawCheckpoint {
    interval: Field,
    dir: Field,
    retain: Field,
    mode: Field,
    timeout: Field,
    tolerable_failures: Field,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [savepoint] table")]
struct RawSavepoint {
    dir: Field,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [restart] table")]
struct RawRestart {
    strategy: Field,
    attempts: Field,
    delay: Field,
    max_delay: Field,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [rest] table")]
struct RawRest {
    addr: Field,
}

// ---------------------------------------------------------------------------
// Checking the raw shape and building the spec.

impl JobFile<'_> {
    fn job(&self, raw: &RawJob) -> Result<JobSpec, JobError> {
        let top = self.section("", 0..0);
        let name_v = raw.name.as_ref().ok_or_else(|| {
            self.err(
                None,
                "missing `name` (the job's name, e.g. `name = \"wordcount\"`)",
            )
        })?;
        let name = top.string("name", name_v)?;
        if name.trim().is_empty() {
            return Err(top.fail(name_v.span(), "`name` must not be empty"));
        }
        let max_parallelism = match &raw.max_parallelism {
            Some(v) => top.int("max_parallelism", v, 1, i64::from(MAX_MAX_PARALLELISM))?,
            None => DEFAULT_MAX_PARALLELISM,
        };

        let source = match &raw.source {
            Some(s) => self.source(s)?,
            None => {
                return Err(self.err(
                    None,
                    "missing [source] table (where events come from: `type = \"file\"`, \"stdin\", \"generator\" or \"kafka\")",
                ))
            }
        };

        let raw_ops = raw.operators.as_ref().ok_or_else(|| {
            self.err(
                None,
                "missing [[operators]]: a job needs at least one operator (`id` and `wasm`)",
            )
        })?;
        if raw_ops.get_ref().0.is_empty() {
            return Err(self.err(
                Some(raw_ops.span()),
                "`operators` is empty: a job needs at least one operator",
            ));
        }
        let mut operators = Vec::with_capacity(raw_ops.get_ref().0.len());
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (index, op) in raw_ops.get_ref().0.iter().enumerate() {
            let (spec, id_line) = self.operator(op, index + 1, max_parallelism)?;
            if let Some(first) = seen.get(&spec.id) {
                return Err(JobError::Invalid {
                    file: self.file.clone(),
                    line: Some(id_line),
                    message: format!(
                        "duplicate operator ID `{}`: first on line {first}, again on line {id_line} (state belongs to the ID, so each operator needs its own)",
                        spec.id
                    ),
                });
            }
            seen.insert(spec.id.clone(), id_line);
            operators.push(spec);
        }

        let sink = match &raw.sink {
            Some(s) => self.sink(s, name)?,
            None => {
                return Err(self.err(
                    None,
                    "missing [sink] table (where results go: `type = \"file\"`, \"stdout\", \"blackhole\" or \"kafka\")",
                ))
            }
        };

        let dead_letter = match &raw.dead_letter {
            Some(d) => {
                let s = self.section("dead_letter", d.span());
                let v = s.required("path", &d.get_ref().path, "")?;
                Some(DeadLetterSpec {
                    path: s.path("path", v)?,
                })
            }
            None => None,
        };
        let checkpoint = raw
            .checkpoint
            .as_ref()
            .map(|c| self.checkpoint(c))
            .transpose()?;
        let savepoint = match &raw.savepoint {
            Some(sp) => {
                let s = self.section("savepoint", sp.span());
                let dir = match &sp.get_ref().dir {
                    Some(v) => s.path("dir", v)?,
                    None => self.resolve("savepoints"),
                };
                Some(SavepointSpec { dir })
            }
            None => None,
        };
        let restart = raw.restart.as_ref().map(|r| self.restart(r)).transpose()?;
        let rest = raw.rest.as_ref().map(|r| self.rest(r)).transpose()?;
        let shutdown = match &raw.shutdown {
            Some(sd) => {
                let s = self.section("shutdown", sd.span());
                let r = sd.get_ref();
                let with_savepoint = s
                    .opt(&r.savepoint, |v| s.boolean("savepoint", v))?
                    .unwrap_or(false);
                if with_savepoint && savepoint.is_none() {
                    return Err(s.fail(
                        r.savepoint.as_ref().map_or(sd.span(), |v| v.span()),
                        "`savepoint = true` needs a [savepoint] table (its `dir` is where the savepoint goes)",
                    ));
                }
                let timeout = match &r.timeout {
                    Some(v) => {
                        let d = s.duration("timeout", v)?;
                        if d.is_zero() {
                            return Err(s.fail(v.span(), "`timeout` must be above zero"));
                        }
                        d
                    }
                    None => DEFAULT_SHUTDOWN_TIMEOUT,
                };
                ShutdownSpec {
                    savepoint: with_savepoint,
                    timeout,
                }
            }
            None => ShutdownSpec::default(),
        };

        Ok(JobSpec {
            name: name.to_owned(),
            max_parallelism,
            source,
            operators,
            sink,
            dead_letter,
            checkpoint,
            savepoint,
            restart,
            rest,
            shutdown,
            base_dir: self.base_dir.clone(),
        })
    }

    fn source(&self, raw: &Spanned<RawSource>) -> Result<SourceSpec, JobError> {
        let s = self.section("source", raw.span());
        let mut f = raw.get_ref().0.clone();
        let kind = connector_type(
            &s,
            &mut f,
            "source",
            SourceConnector::KINDS,
            &SOURCE_FIELDS[1..],
        )?;
        let watermark_delay = s
            .opt(&f.take("watermark_delay"), |v| {
                s.duration("watermark_delay", v)
            })?
            .unwrap_or(Duration::ZERO);
        let batch_size = s
            .opt(&f.take("batch_size"), |v| {
                s.int("batch_size", v, 1, MAX_BATCH_SIZE as i64)
            })?
            .unwrap_or(DEFAULT_BATCH_SIZE);
        let connector = SourceConnector::from_table(kind, &s, &mut f)?;
        Ok(SourceSpec {
            connector,
            watermark_delay,
            batch_size,
        })
    }

    /// Builds one operator; also returns the line of its `id`, for duplicate messages.
    fn operator(
        &self,
        raw: &Spanned<RawOperator>,
        number: usize,
        max_parallelism: u32,
    ) -> Result<(JobOperator, usize), JobError> {
        let line = self.line_of(raw.span().start);
        let r = raw.get_ref();
        let anon = self.section(format!("operator #{number}"), raw.span());
        let id_v = anon.required("id", &r.id, " (the operator ID that its state belongs to)")?;
        let id = anon.string("id", id_v)?;
        if id.is_empty() {
            return Err(anon.fail(id_v.span(), "`id` must not be empty"));
        }
        if let Some(bad) = id
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
        {
            return Err(anon.fail(
                id_v.span(),
                format!(
                    "operator ID `{}` contains `{}`: only letters, digits, `_`, `.` and `-` are allowed",
                    id.escape_debug(),
                    bad.escape_debug()
                ),
            ));
        }
        let id_line = self.line_of(id_v.span().start);
        let s = self.section(format!("operator `{id}`"), raw.span());
        let wasm_v = s.required("wasm", &r.wasm, " (the operator's .wasm component)")?;
        let wasm = s.path("wasm", wasm_v)?;
        let parallelism = match &r.parallelism {
            Some(v) => {
                let p: u32 = s.int("parallelism", v, 1, i64::from(u32::MAX))?;
                if p > max_parallelism {
                    return Err(s.fail(
                        v.span(),
                        format!("parallelism {p} is above max_parallelism {max_parallelism}"),
                    ));
                }
                p
            }
            None => 1,
        };
        let input = s
            .opt(&r.input, |v| {
                s.choice(
                    "input",
                    v,
                    &[("forward", InputMode::Forward), ("key", InputMode::Key)],
                )
            })?
            .unwrap_or_default();
        let mut config = BTreeMap::new();
        if let Some(c) = &r.config {
            for (key, value) in &c.get_ref().0 {
                match value.get_ref() {
                    Value::String(v) => {
                        config.insert(key.clone(), v.clone());
                    }
                    other => {
                        let hint = match other {
                            Value::Integer(_)
                            | Value::Float(_)
                            | Value::Boolean(_)
                            | Value::Datetime(_) => {
                                format!(" (write `{} = \"{other}\"`)", key.escape_debug())
                            }
                            _ => String::new(),
                        };
                        return Err(s.fail(
                            value.span(),
                            format!(
                                "config `{}` must be a string, found {}{hint}",
                                key.escape_debug(),
                                describe(other)
                            ),
                        ));
                    }
                }
            }
        }
        let capabilities = match &r.capabilities {
            Some(c) => Capabilities::from_table(self, id, c)?,
            None => Capabilities::default(),
        };
        let limits = match &r.limits {
            Some(l) => Limits::from_table(self, id, l)?,
            None => Limits::default(),
        };
        Ok((
            JobOperator {
                id: id.to_owned(),
                wasm,
                parallelism,
                input,
                config,
                capabilities,
                limits,
                line,
            },
            id_line,
        ))
    }

    fn sink(&self, raw: &Spanned<RawSink>, job_name: &str) -> Result<SinkSpec, JobError> {
        let s = self.section("sink", raw.span());
        let mut f = raw.get_ref().0.clone();
        let kind = connector_type(&s, &mut f, "sink", SinkSpec::KINDS, &[])?;
        SinkSpec::from_table(kind, &s, &mut f, job_name)
    }

    fn checkpoint(&self, raw: &Spanned<RawCheckpoint>) -> Result<CheckpointSpec, JobError> {
        let s = self.section("checkpoint", raw.span());
        let r = raw.get_ref();
        let interval = match &r.interval {
            Some(v) => {
                let d = s.duration("interval", v)?;
                if d.is_zero() {
                    return Err(s.fail(
                        v.span(),
                        "`interval` must be above zero (leave it out for no periodic checkpoints)",
                    ));
                }
                Some(d)
            }
            None => None,
        };
        let dir = match &r.dir {
            Some(v) => s.path("dir", v)?,
            None => self.resolve("state"),
        };
        let retain = s
            .opt(&r.retain, |v| s.int("retain", v, 1, i64::MAX))?
            .unwrap_or(3);
        let mode = s
            .opt(&r.mode, |v| {
                s.choice(
                    "mode",
                    v,
                    &[
                        ("exactly-once", CheckpointMode::ExactlyOnce),
                        ("at-least-once", CheckpointMode::AtLeastOnce),
                    ],
                )
            })?
            .unwrap_or_default();
        let timeout = match &r.timeout {
            Some(v) => {
                let d = s.duration("timeout", v)?;
                if d.is_zero() {
                    return Err(s.fail(v.span(), "`timeout` must be above zero"));
                }
                d
            }
            None => DEFAULT_CHECKPOINT_TIMEOUT,
        };
        let tolerable_failures = s
            .opt(&r.tolerable_failures, |v| {
                s.int("tolerable_failures", v, 0, i64::from(u32::MAX))
            })?
            .unwrap_or(0);
        Ok(CheckpointSpec {
            interval,
            dir,
            retain,
            mode,
            timeout,
            tolerable_failures,
        })
    }

    fn restart(&self, raw: &Spanned<RawRestart>) -> Result<RestartSpec, JobError> {
        let s = self.section("restart", raw.span());
        let r = raw.get_ref();
        let strategy = s
            .opt(&r.strategy, |v| {
                s.choice(
                    "strategy",
                    v,
                    &[
                        ("fixed-delay", RestartStrategy::FixedDelay),
                        ("exponential", RestartStrategy::Exponential),
                        ("none", RestartStrategy::None),
                    ],
                )
            })?
            .unwrap_or_default();
        if strategy == RestartStrategy::None {
            s.forbid("attempts", &r.attempts, "strategy `none`")?;
            s.forbid("delay", &r.delay, "strategy `none`")?;
        }
        if strategy != RestartStrategy::Exponential {
            if let Some(v) = &r.max_delay {
                return Err(s.fail(
                    v.span(),
                    "`max_delay` only applies to strategy `exponential`",
                ));
            }
        }
        let attempts = s
            .opt(&r.attempts, |v| {
                s.int("attempts", v, 0, i64::from(u32::MAX))
            })?
            .unwrap_or(3);
        let delay = s
            .opt(&r.delay, |v| s.duration("delay", v))?
            .unwrap_or(Duration::from_secs(1));
        let max_delay = match &r.max_delay {
            Some(v) => {
                let m = s.duration("max_delay", v)?;
                if m < delay {
                    return Err(s.fail(
                        v.span(),
                        format!("`max_delay` ({m:?}) is below `delay` ({delay:?})"),
                    ));
                }
                Some(m)
            }
            None => None,
        };
        Ok(RestartSpec {
            strategy,
            attempts,
            delay,
            max_delay,
        })
    }

    fn rest(&self, raw: &Spanned<RawRest>) -> Result<RestSpec, JobError> {
        let s = self.section("rest", raw.span());
        let v = s.required(
            "addr",
            &raw.get_ref().addr,
            " (e.g. `addr = \"127.0.0.1:8081\"`)",
        )?;
        let addr = s.string("addr", v)?;
        let valid = match addr.rsplit_once(':') {
            Some((host, port)) => {
                !host.is_empty()
                    && !host.contains(char::is_whitespace)
                    && port.parse::<u16>().is_ok()
            }
            None => false,
        };
        if !valid {
            return Err(s.fail(
                v.span(),
                format!(
                    "`addr` must be host:port, e.g. `127.0.0.1:8081`, found `{}`",
                    addr.escape_debug()
                ),
            ));
        }
        Ok(RestSpec {
            addr: addr.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::blackhole::BlackholeConfig;
    use crate::connectors::file::DEFAULT_MAX_LINE_SIZE;
    use crate::connectors::file::{FileSinkConfig, FileSourceConfig};
    use crate::connectors::generator::GeneratorConfig;
    use crate::connectors::json::Format;
    use crate::connectors::stdio::{StdinConfig, StdoutConfig};

    const EXAMPLE: &str = r#"name = "wordcount"
max_parallelism = 128            # key groups; fixed for the life of the job's state

[source]
type = "file"                    # file | stdin | generator
path = "input.jsonl"
format = "json"                  # json (one event per line) | lines (raw text in `value`)
watermark_delay = "2s"           # bounded out-of-orderness
# generator: count = 1000000, keys = 10000, value_size = 100, seed = 42, rate = 50000 (events/s, optional)

[[operators]]
id = "split"                     # the operator ID: state belongs to it
wasm = "plugins/rust/word-split/word_split.wasm"
parallelism = 1
input = "forward"                # forward | key (hash of the event key over key groups)
config = { lowercase = "true" }  # string map handed to open()

[[operators]]
id = "count"
wasm = "plugins/rust/keyed-count/keyed_count.wasm"
parallelism = 2
input = "key"

[sink]
type = "file"                    # file | stdout | blackhole (discards, counts)
path = "out.jsonl"

[dead_letter]
path = "dead.jsonl"

[checkpoint]
interval = "1s"                  # absent: no checkpoints
dir = "state"
retain = 3
mode = "exactly-once"            # exactly-once | at-least-once
timeout = "10m"
tolerable_failures = 0

[savepoint]
dir = "savepoints"               # default target of a triggered savepoint

[restart]
strategy = "fixed-delay"         # fixed-delay | exponential | none
attempts = 3
delay = "1s"

[rest]
addr = "127.0.0.1:8081"          # also --rest-addr; port 0 picks a free one
"#;

    const MINIMAL: &str = r#"name = "m"
[source]
type = "stdin"
[[operators]]
id = "op"
wasm = "op.wasm"
[sink]
type = "stdout"
"#;

    fn parse(text: &str) -> Result<JobSpec, JobError> {
        JobSpec::parse(text, Path::new("/jobs/job.toml"))
    }

    fn err(text: &str) -> String {
        match parse(text) {
            Ok(spec) => panic!("expected an error, got {spec:?}"),
            Err(e) => {
                let msg = e.to_string();
                assert!(!msg.contains('\n'), "multi-line message: {msg:?}");
                msg
            }
        }
    }

    #[test]
    fn full_example_parses() {
        let spec = parse(EXAMPLE).unwrap();
        assert_eq!(spec.name, "wordcount");
        assert_eq!(spec.max_parallelism, 128);
        assert_eq!(spec.base_dir, PathBuf::from("/jobs"));
        assert_eq!(
            spec.source,
            SourceSpec {
                connector: SourceConnector::File(FileSourceConfig {
                    path: PathBuf::from("/jobs/input.jsonl"),
                    format: Format::Json,
                    max_line_size: DEFAULT_MAX_LINE_SIZE,
                }),
                watermark_delay: Duration::from_secs(2),
                batch_size: 1024,
            }
        );
        assert_eq!(spec.operators.len(), 2);
        let split = &spec.operators[0];
        assert_eq!(split.id, "split");
        assert_eq!(
            split.wasm,
            PathBuf::from("/jobs/plugins/rust/word-split/word_split.wasm")
        );
        assert_eq!(split.parallelism, 1);
        assert_eq!(split.input, InputMode::Forward);
        assert_eq!(
            split.config.get("lowercase").map(String::as_str),
            Some("true")
        );
        assert_eq!(split.line, 11);
        let count = &spec.operators[1];
        assert_eq!(count.id, "count");
        assert_eq!(count.parallelism, 2);
        assert_eq!(count.input, InputMode::Key);
        assert!(count.config.is_empty());
        assert_eq!(count.line, 18);
        assert_eq!(
            spec.sink,
            SinkSpec::File(FileSinkConfig {
                path: PathBuf::from("/jobs/out.jsonl"),
                format: Format::Json
            })
        );
        assert_eq!(
            spec.dead_letter,
            Some(DeadLetterSpec {
                path: PathBuf::from("/jobs/dead.jsonl")
            })
        );
        assert_eq!(
            spec.checkpoint,
            Some(CheckpointSpec {
                interval: Some(Duration::from_secs(1)),
                dir: PathBuf::from("/jobs/state"),
                retain: 3,
                mode: CheckpointMode::ExactlyOnce,
                timeout: DEFAULT_CHECKPOINT_TIMEOUT,
                tolerable_failures: 0,
            })
        );
        assert_eq!(
            spec.savepoint,
            Some(SavepointSpec {
                dir: PathBuf::from("/jobs/savepoints")
            })
        );
        assert_eq!(
            spec.restart,
            Some(RestartSpec {
                strategy: RestartStrategy::FixedDelay,
                attempts: 3,
                delay: Duration::from_secs(1),
                max_delay: None,
            })
        );
        assert_eq!(
            spec.rest,
            Some(RestSpec {
                addr: "127.0.0.1:8081".into()
            })
        );
    }

    #[test]
    fn defaults() {
        let spec = parse(MINIMAL).unwrap();
        assert_eq!(spec.max_parallelism, DEFAULT_MAX_PARALLELISM);
        assert_eq!(
            spec.source,
            SourceSpec {
                connector: SourceConnector::Stdin(StdinConfig {
                    format: Format::Json,
                    max_line_size: DEFAULT_MAX_LINE_SIZE,
                }),
                watermark_delay: Duration::ZERO,
                batch_size: DEFAULT_BATCH_SIZE,
            }
        );
        let op = &spec.operators[0];
        assert_eq!(op.parallelism, 1);
        assert_eq!(op.input, InputMode::Forward);
        assert!(op.config.is_empty());
        assert_eq!(op.line, 4);
        assert_eq!(
            spec.sink,
            SinkSpec::Stdout(StdoutConfig {
                format: Format::Json
            })
        );
        assert!(spec.dead_letter.is_none());
        assert!(spec.checkpoint.is_none());
        assert!(spec.savepoint.is_none());
        assert!(spec.restart.is_none());
        assert!(spec.rest.is_none());

        let text = format!("{MINIMAL}[checkpoint]\n[savepoint]\n[restart]\n");
        let spec = parse(&text).unwrap();
        assert_eq!(
            spec.checkpoint,
            Some(CheckpointSpec {
                interval: None,
                dir: PathBuf::from("/jobs/state"),
                retain: 3,
                mode: CheckpointMode::ExactlyOnce,
                timeout: DEFAULT_CHECKPOINT_TIMEOUT,
                tolerable_failures: 0,
            })
        );
        assert_eq!(
            spec.savepoint,
            Some(SavepointSpec {
                dir: PathBuf::from("/jobs/savepoints")
            })
        );
        assert_eq!(
            spec.restart,
            Some(RestartSpec {
                strategy: RestartStrategy::FixedDelay,
                attempts: 3,
                delay: Duration::from_secs(1),
                max_delay: None,
            })
        );
    }

    #[test]
    fn host_budgets() {
        let with = |limits: &str| {
            MINIMAL.replace("[sink]", &format!("[operators.limits]\n{limits}\n[sink]"))
        };
        let d = Limits::default();
        assert_eq!((d.state_memory, d.pending_timers), (4 << 30, 10_000_000));
        let spec = parse(&with("state_memory = \"64KiB\"\npending_timers = 1000")).unwrap();
        let l = &spec.operators[0].limits;
        assert_eq!((l.state_memory, l.pending_timers), (64 << 10, 1000));
        assert_eq!(l.memory, d.memory, "the others keep their defaults");
        for (limits, needle) in [
            (
                "state_memory = \"lots\"",
                ":8: operator `op` limits: `state_memory`: `lots` is not a size",
            ),
            (
                "state_memory = 0",
                "`state_memory` must be at least 1, found 0",
            ),
            (
                "pending_timers = 0",
                ":8: operator `op` limits: `pending_timers` must be at least 1, found 0",
            ),
            (
                "pending_timers = \"many\"",
                "`pending_timers` must be an integer, found",
            ),
            ("pending_timer = 5", ":8: unknown field `pending_timer`"),
        ] {
            let e = err(&with(limits));
            assert!(e.contains(needle), "{limits}: {e}");
        }
    }

    #[test]
    fn unknown_field_top_level() {
        let text = MINIMAL.replace("name = \"m\"", "name = \"m\"\nparalelism = 3");
        let e = err(&text);
        assert!(
            e.starts_with("/jobs/job.toml:2: unknown field `paralelism`, expected one of `name`"),
            "{e}"
        );
        let e = err("name = \"x\"\nbogus = 1\n");
        assert!(
            e.starts_with("/jobs/job.toml:2: unknown field `bogus`"),
            "{e}"
        );
    }

    #[test]
    fn unknown_field_in_source() {
        let text = "name = \"x\"\n[source]\ntype = \"file\"\npaht = \"in.jsonl\"\n";
        let e = err(text);
        assert!(
            e.starts_with("/jobs/job.toml:4: unknown field `paht`, expected one of `type`, `path`"),
            "{e}"
        );
    }

    #[test]
    fn unknown_field_in_operator() {
        let text = "name = \"x\"\n[source]\ntype = \"stdin\"\n\n[[operators]]\nid = \"a\"\nwasm = \"a.wasm\"\n\n[[operators]]\nid = \"b\"\nwasm = \"b.wasm\"\nparalelism = 2\n";
        assert_eq!(
            err(text),
            "/jobs/job.toml:12: unknown field `paralelism`, expected one of `id`, `wasm`, `parallelism`, `input`, `config`, `capabilities`, `limits`"
        );
    }

    #[test]
    fn unknown_field_in_other_tables() {
        let text = MINIMAL.replace("type = \"stdout\"", "type = \"stdout\"\nformt = \"json\"");
        assert!(err(&text).starts_with("/jobs/job.toml:9: unknown field `formt`"));
        for (table, field) in [
            ("[checkpoint]\nintervall = \"1s\"\n", "intervall"),
            ("[restart]\nretries = 3\n", "retries"),
            ("[rest]\nport = 1\n", "port"),
            ("[dead_letter]\nfile = \"d\"\n", "file"),
            ("[savepoint]\ndirectory = \"d\"\n", "directory"),
        ] {
            let e = err(&format!("{MINIMAL}{table}"));
            let want = format!("/jobs/job.toml:10: unknown field `{field}`");
            assert!(e.starts_with(&want), "{e}");
        }
    }

    #[test]
    fn wrong_types() {
        let text = MINIMAL.replace("id = \"op\"", "id = \"op\"\nparallelism = \"2\"");
        assert_eq!(
            err(&text),
            "/jobs/job.toml:6: operator `op`: `parallelism` must be an integer, found string \"2\""
        );
        let text = MINIMAL.replace("name = \"m\"", "name = 5");
        assert_eq!(
            err(&text),
            "/jobs/job.toml:1: `name` must be a string, found integer 5"
        );
        let text = MINIMAL.replace("name = \"m\"", "name = \"m\"\nmax_parallelism = 1.5");
        assert_eq!(
            err(&text),
            "/jobs/job.toml:2: `max_parallelism` must be an integer, found float 1.5"
        );
        let e = err("name = \"m\"\nsource = 5\n");
        assert_eq!(
            e,
            "/jobs/job.toml:2: invalid type: integer `5`, expected a [source] table"
        );
        let e = err("name = \"m\"\noperators = 5\n");
        assert_eq!(
            e,
            "/jobs/job.toml:2: invalid type: integer `5`, expected an array of [[operators]] tables"
        );
        let text = MINIMAL.replace(
            "wasm = \"op.wasm\"",
            "wasm = \"op.wasm\"\nconfig = { size_ms = 1000 }",
        );
        assert_eq!(
            err(&text),
            "/jobs/job.toml:7: operator `op`: config `size_ms` must be a string, found integer 1000 (write `size_ms = \"1000\"`)"
        );
        let text = MINIMAL.replace(
            "wasm = \"op.wasm\"",
            "wasm = \"op.wasm\"\n[operators.config]\na = \"1\"\nb = true",
        );
        assert_eq!(
            err(&text),
            "/jobs/job.toml:9: operator `op`: config `b` must be a string, found boolean true (write `b = \"true\"`)"
        );
        let text = MINIMAL.replace("wasm = \"op.wasm\"", "wasm = \"op.wasm\"\nconfig = \"x\"");
        let e = err(&text);
        assert!(e.starts_with("/jobs/job.toml:7: invalid type"), "{e}");
        let text = MINIMAL.replace("type = \"stdin\"", "type = \"stdin\"\nwatermark_delay = 2");
        assert_eq!(
            err(&text),
            "/jobs/job.toml:4: source: `watermark_delay` must be a duration string such as \"250ms\" or \"2s\", found integer 2"
        );
        let text = MINIMAL.replace("type = \"stdin\"", "type = \"pulsar\"");
        assert_eq!(
            err(&text),
            "/jobs/job.toml:3: source: `type` must be one of `file`, `stdin`, `generator`, `kafka`, found `pulsar`"
        );
        // A Kafka source names what it misses.
        let text = MINIMAL.replace("type = \"stdin\"", "type = \"kafka\"");
        assert_eq!(
            err(&text),
            "/jobs/job.toml:2: source: missing `bootstrap` (the Kafka cluster's `host:port`, required for a `kafka` source)"
        );
    }

    #[test]
    fn bad_duration() {
        let text = MINIMAL.replace(
            "type = \"stdin\"",
            "type = \"stdin\"\nwatermark_delay = \"2 parsecs\"",
        );
        let e = err(&text);
        assert!(
            e.starts_with("/jobs/job.toml:4: source: `watermark_delay`: invalid duration `2 parsecs`: unknown unit `parsecs`"),
            "{e}"
        );
        let text = format!("{MINIMAL}[checkpoint]\ninterval = \"soon\"\n");
        let e = err(&text);
        assert!(
            e.starts_with("/jobs/job.toml:10: checkpoint: `interval`: invalid duration `soon`"),
            "{e}"
        );
        let text = format!("{MINIMAL}[checkpoint]\ninterval = \"0s\"\n");
        let e = err(&text);
        assert!(
            e.starts_with("/jobs/job.toml:10: checkpoint: `interval` must be above zero"),
            "{e}"
        );
    }

    #[test]
    fn bad_size_names_field_and_line() {
        let text = MINIMAL.replace(
            "wasm = \"op.wasm\"",
            "wasm = \"op.wasm\"\n[operators.limits]\nmemory = \"64XB\"",
        );
        let e = err(&text);
        assert!(
            e.starts_with(
                "/jobs/job.toml:8: operator `op` limits: `memory`: unknown size unit `XB` in `64XB`"
            ),
            "{e}"
        );
    }

    #[test]
    fn duplicate_operator_id() {
        let text = "name = \"x\"\n[source]\ntype = \"stdin\"\n[[operators]]\nid = \"count\"\nwasm = \"a.wasm\"\n[[operators]]\nid = \"count\"\nwasm = \"b.wasm\"\n[sink]\ntype = \"blackhole\"\n";
        let e = err(text);
        assert!(
            e.starts_with(
                "/jobs/job.toml:8: duplicate operator ID `count`: first on line 5, again on line 8"
            ),
            "{e}"
        );
    }

    #[test]
    fn bad_operator_ids() {
        let e = err(&MINIMAL.replace("id = \"op\"", "id = \"\""));
        assert_eq!(e, "/jobs/job.toml:5: operator #1: `id` must not be empty");
        let e = err(&MINIMAL.replace("id = \"op\"", "id = \"a b\""));
        assert!(
            e.starts_with("/jobs/job.toml:5: operator #1: operator ID `a b` contains ` `"),
            "{e}"
        );
        let e = err(&MINIMAL.replace("id = \"op\"\n", ""));
        assert!(
            e.starts_with("/jobs/job.toml:4: operator #1: missing `id`"),
            "{e}"
        );
        let e = err(&MINIMAL.replace("wasm = \"op.wasm\"\n", ""));
        assert!(
            e.starts_with("/jobs/job.toml:4: operator `op`: missing `wasm`"),
            "{e}"
        );
        assert!(parse(&MINIMAL.replace("id = \"op\"", "id = \"Op_1.v2-x\"")).is_ok());
    }

    #[test]
    fn parallelism_above_max() {
        let text = "name = \"x\"\nmax_parallelism = 128\n[source]\ntype = \"stdin\"\n[[operators]]\nid = \"count\"\nwasm = \"a.wasm\"\nparallelism = 200\n[sink]\ntype = \"blackhole\"\n";
        assert_eq!(
            err(text),
            "/jobs/job.toml:8: operator `count`: parallelism 200 is above max_parallelism 128"
        );
        let e = err(&text.replace("200", "0"));
        assert_eq!(
            e,
            "/jobs/job.toml:8: operator `count`: `parallelism` must be between 1 and 4294967295, found 0"
        );
        let e = err(&text.replace("128", "40000"));
        assert_eq!(
            e,
            "/jobs/job.toml:2: `max_parallelism` must be between 1 and 32768, found 40000"
        );
        assert!(parse(&text.replace("200", "128")).is_ok());
    }

    #[test]
    fn relative_and_absolute_paths() {
        let text = "name = \"x\"\n[source]\ntype = \"file\"\npath = \"./data/../in.jsonl\"\n[[operators]]\nid = \"a\"\nwasm = \"/opt/ops/a.wasm\"\n[sink]\ntype = \"file\"\npath = \"out/o.jsonl\"\n[dead_letter]\npath = \"dead.jsonl\"\n[checkpoint]\ndir = \"/var/weir\"\n[savepoint]\ndir = \"sp\"\n";
        let spec = JobSpec::parse(text, Path::new("/a/b/job.toml")).unwrap();
        assert_eq!(spec.base_dir, PathBuf::from("/a/b"));
        match &spec.source.connector {
            SourceConnector::File(c) => {
                assert_eq!(c.path, PathBuf::from("/a/b/data/../in.jsonl"))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(spec.operators[0].wasm, PathBuf::from("/opt/ops/a.wasm"));
        assert_eq!(
            spec.sink,
            SinkSpec::File(FileSinkConfig {
                path: PathBuf::from("/a/b/out/o.jsonl"),
                format: Format::Json
            })
        );
        assert_eq!(
            spec.dead_letter.unwrap().path,
            PathBuf::from("/a/b/dead.jsonl")
        );
        assert_eq!(spec.checkpoint.unwrap().dir, PathBuf::from("/var/weir"));
        assert_eq!(spec.savepoint.unwrap().dir, PathBuf::from("/a/b/sp"));

        // A bare file name resolves against the current directory.
        let spec = JobSpec::parse(text, Path::new("job.toml")).unwrap();
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(spec.base_dir, cwd);
        assert!(spec.base_dir.is_absolute());
        assert_eq!(spec.operators[0].wasm, PathBuf::from("/opt/ops/a.wasm"));
        let spec = JobSpec::parse(text, Path::new("jobs/x/job.toml")).unwrap();
        assert_eq!(spec.base_dir, cwd.join("jobs/x"));
        assert_eq!(spec.savepoint.unwrap().dir, cwd.join("jobs/x/sp"));

        let e = err(&MINIMAL.replace("\"op.wasm\"", "\"\""));
        assert_eq!(
            e,
            "/jobs/job.toml:6: operator `op`: `wasm` must not be empty"
        );
    }

    #[test]
    fn generator_fields() {
        let text = MINIMAL.replace(
            "type = \"stdin\"",
            "type = \"generator\"\ncount = 1000000\nkeys = 10000\nvalue_size = 64\nseed = 42\nrate = 50000\nbatch_size = 512\nwatermark_delay = \"250ms\"",
        );
        assert_eq!(
            parse(&text).unwrap().source,
            SourceSpec {
                connector: SourceConnector::Generator(GeneratorConfig {
                    count: 1_000_000,
                    keys: 10_000,
                    value_size: 64,
                    seed: 42,
                    rate: Some(50_000),
                    wall_clock: false,
                }),
                watermark_delay: Duration::from_millis(250),
                batch_size: 512,
            }
        );
        let text = MINIMAL.replace("type = \"stdin\"", "type = \"generator\"\ncount = 5");
        assert_eq!(
            parse(&text).unwrap().source,
            SourceSpec {
                connector: SourceConnector::Generator(GeneratorConfig {
                    count: 5,
                    keys: 1000,
                    value_size: 100,
                    seed: 0,
                    rate: None,
                    wall_clock: false,
                }),
                watermark_delay: Duration::ZERO,
                batch_size: 1024,
            }
        );
        let text = MINIMAL.replace(
            "type = \"stdin\"",
            "type = \"generator\"\ncount = 5\ntimestamps = \"now\"",
        );
        assert!(matches!(
            parse(&text).unwrap().source.connector,
            SourceConnector::Generator(GeneratorConfig {
                wall_clock: true,
                ..
            })
        ));
        let e = err(&MINIMAL.replace("type = \"stdin\"", "type = \"generator\""));
        assert!(
            e.starts_with("/jobs/job.toml:2: source: missing `count`"),
            "{e}"
        );
        let e = err(&MINIMAL.replace(
            "type = \"stdin\"",
            "type = \"generator\"\ncount = 5\nkeys = 0",
        ));
        assert_eq!(
            e,
            "/jobs/job.toml:5: source: `keys` must be at least 1, found 0"
        );
        let e = err(&MINIMAL.replace(
            "type = \"stdin\"",
            "type = \"generator\"\ncount = 5\nrate = 0",
        ));
        assert_eq!(
            e,
            "/jobs/job.toml:5: source: `rate` must be at least 1, found 0"
        );
        let e = err(&MINIMAL.replace("type = \"stdin\"", "type = \"generator\"\ncount = -5"));
        assert_eq!(
            e,
            "/jobs/job.toml:4: source: `count` must not be negative, found -5"
        );
        let e = err(&MINIMAL.replace(
            "type = \"stdin\"",
            "type = \"generator\"\ncount = 5\npath = \"x\"",
        ));
        assert_eq!(
            e,
            "/jobs/job.toml:5: source: `path` does not apply to a `generator` source"
        );
        // Generator fields on a file source.
        let e = err(&MINIMAL.replace(
            "type = \"stdin\"",
            "type = \"file\"\npath = \"in\"\ncount = 5",
        ));
        assert_eq!(
            e,
            "/jobs/job.toml:5: source: `count` does not apply to a `file` source"
        );
        let e = err(&MINIMAL.replace("type = \"stdin\"", "type = \"stdin\"\npath = \"in\""));
        assert_eq!(
            e,
            "/jobs/job.toml:4: source: `path` does not apply to a `stdin` source"
        );
        let e = err(&MINIMAL.replace("type = \"stdin\"", "type = \"stdin\"\nbatch_size = 70000"));
        assert_eq!(
            e,
            "/jobs/job.toml:4: source: `batch_size` must be between 1 and 65536, found 70000"
        );
    }

    #[test]
    fn max_line_size() {
        let source = |field: &str| {
            parse(&MINIMAL.replace("type = \"stdin\"", &format!("type = \"stdin\"\n{field}")))
                .map(|spec| spec.source)
        };
        for (field, bytes) in [
            ("max_line_size = \"64KiB\"", 64 << 10),
            ("max_line_size = \"1GiB\"", 1 << 30),
            ("max_line_size = 100", 100),
        ] {
            assert!(
                matches!(source(field), Ok(SourceSpec { connector: SourceConnector::Stdin(StdinConfig { max_line_size, .. }), .. }) if max_line_size == bytes),
                "{field}"
            );
        }
        let text = MINIMAL.replace(
            "type = \"stdin\"",
            "type = \"file\"\npath = \"in\"\nmax_line_size = \"2MiB\"",
        );
        assert!(matches!(
            parse(&text).unwrap().source.connector,
            SourceConnector::File(FileSourceConfig { max_line_size, .. }) if max_line_size == 2 << 20
        ));
        for (field, message) in [
            (
                "max_line_size = \"lots\"",
                "/jobs/job.toml:4: source: `max_line_size`: `lots` is not a size: expected e.g. `64MiB`",
            ),
            (
                "max_line_size = \"0\"",
                "/jobs/job.toml:4: source: `max_line_size`: size `0` must be above 0 and below 16 EiB",
            ),
            (
                "max_line_size = 0",
                "/jobs/job.toml:4: source: `max_line_size` must be at least 1, found 0",
            ),
            (
                "max_line_size = \"2GiB\"",
                "/jobs/job.toml:4: source: `max_line_size` must be at most 1GiB, found 2147483648 bytes",
            ),
            (
                "max_line_size = true",
                "/jobs/job.toml:4: source: `max_line_size` must be a size such as \"64MiB\", found boolean true",
            ),
        ] {
            assert_eq!(err(&MINIMAL.replace("type = \"stdin\"", &format!("type = \"stdin\"\n{field}"))), message);
        }
        let e = err(&MINIMAL.replace(
            "type = \"stdin\"",
            "type = \"generator\"\ncount = 5\nmax_line_size = \"1MiB\"",
        ));
        assert_eq!(
            e,
            "/jobs/job.toml:5: source: `max_line_size` does not apply to a `generator` source"
        );
    }

    #[test]
    fn missing_required_fields() {
        let e = err(&MINIMAL.replace("name = \"m\"\n", ""));
        assert!(e.starts_with("/jobs/job.toml: missing `name`"), "{e}");
        let e = err(&MINIMAL.replace("[source]\ntype = \"stdin\"\n", ""));
        assert!(
            e.starts_with("/jobs/job.toml: missing [source] table"),
            "{e}"
        );
        let e = err(&MINIMAL.replace("[[operators]]\nid = \"op\"\nwasm = \"op.wasm\"\n", ""));
        assert!(
            e.starts_with("/jobs/job.toml: missing [[operators]]"),
            "{e}"
        );
        let e = err(&MINIMAL.replace("[sink]\ntype = \"stdout\"\n", ""));
        assert!(e.starts_with("/jobs/job.toml: missing [sink] table"), "{e}");
        let e = err(&MINIMAL.replace("type = \"stdin\"\n", ""));
        assert!(
            e.starts_with("/jobs/job.toml:2: source: missing `type`"),
            "{e}"
        );
        let e = err(&MINIMAL.replace("type = \"stdout\"\n", ""));
        assert!(
            e.starts_with("/jobs/job.toml:7: sink: missing `type`"),
            "{e}"
        );
        let e = err(&MINIMAL.replace("type = \"stdin\"", "type = \"file\""));
        assert!(
            e.starts_with("/jobs/job.toml:2: source: missing `path`"),
            "{e}"
        );
        let e = err(&MINIMAL.replace("type = \"stdout\"", "type = \"file\""));
        assert!(
            e.starts_with("/jobs/job.toml:7: sink: missing `path`"),
            "{e}"
        );
        let e = err(&MINIMAL.replace("name = \"m\"", "name = \"  \""));
        assert_eq!(e, "/jobs/job.toml:1: `name` must not be empty");
        let e = err(
            "name = \"m\"\noperators = []\n[source]\ntype = \"stdin\"\n[sink]\ntype = \"stdout\"\n",
        );
        assert!(
            e.starts_with("/jobs/job.toml:2: `operators` is empty"),
            "{e}"
        );
        let e = err(&format!("{MINIMAL}[dead_letter]\n"));
        assert!(
            e.starts_with("/jobs/job.toml:9: dead_letter: missing `path`"),
            "{e}"
        );
        let e = err(&format!("{MINIMAL}[rest]\n"));
        assert!(
            e.starts_with("/jobs/job.toml:9: rest: missing `addr`"),
            "{e}"
        );
        let e = err("");
        assert!(e.starts_with("/jobs/job.toml: missing `name`"), "{e}");
    }

    #[test]
    fn sinks_and_formats() {
        let spec =
            parse(&MINIMAL.replace("type = \"stdout\"", "type = \"stdout\"\nformat = \"lines\""))
                .unwrap();
        assert_eq!(
            spec.sink,
            SinkSpec::Stdout(StdoutConfig {
                format: Format::Lines
            })
        );
        let spec = parse(&MINIMAL.replace("type = \"stdout\"", "type = \"blackhole\"")).unwrap();
        assert_eq!(
            spec.sink,
            SinkSpec::Blackhole(BlackholeConfig { latency: false })
        );
        let e = err(&MINIMAL.replace(
            "type = \"stdout\"",
            "type = \"blackhole\"\nformat = \"json\"",
        ));
        assert_eq!(
            e,
            "/jobs/job.toml:9: sink: `format` does not apply to a `blackhole` sink"
        );
        let e = err(&MINIMAL.replace("type = \"stdin\"", "type = \"stdin\"\nformat = \"xml\""));
        assert_eq!(
            e,
            "/jobs/job.toml:4: source: `format` must be one of `json`, `lines`, found `xml`"
        );
    }

    #[test]
    fn shutdown_table() {
        let spec = parse(MINIMAL).unwrap();
        assert_eq!(spec.shutdown, ShutdownSpec::default());
        let spec = parse(&format!(
            "{MINIMAL}[savepoint]\n[shutdown]\nsavepoint = true\ntimeout = \"5s\"\n"
        ))
        .unwrap();
        assert_eq!(
            spec.shutdown,
            ShutdownSpec {
                savepoint: true,
                timeout: Duration::from_secs(5)
            }
        );
        let e = err(&format!("{MINIMAL}[shutdown]\nsavepoint = true\n"));
        assert!(
            e.contains("`savepoint = true` needs a [savepoint] table"),
            "{e}"
        );
        let e = err(&format!("{MINIMAL}[shutdown]\ntimeout = \"0s\"\n"));
        assert!(e.contains("`timeout` must be above zero"), "{e}");
        let e = err(&format!("{MINIMAL}[shutdown]\ngrace = 1\n"));
        assert!(e.contains("grace"), "{e}");
    }

    #[test]
    fn checkpoint_restart_rest() {
        let text = format!(
            "{MINIMAL}[checkpoint]\ninterval = \"500ms\"\nretain = 1\nmode = \"at-least-once\"\n[restart]\nstrategy = \"exponential\"\nattempts = 10\ndelay = \"100ms\"\nmax_delay = \"1m\"\n[rest]\naddr = \"[::1]:0\"\n"
        );
        let spec = parse(&text).unwrap();
        let cp = spec.checkpoint.unwrap();
        assert_eq!(cp.interval, Some(Duration::from_millis(500)));
        assert_eq!(cp.retain, 1);
        assert_eq!(cp.mode, CheckpointMode::AtLeastOnce);
        assert_eq!(
            spec.restart,
            Some(RestartSpec {
                strategy: RestartStrategy::Exponential,
                attempts: 10,
                delay: Duration::from_millis(100),
                max_delay: Some(Duration::from_secs(60)),
            })
        );
        assert_eq!(spec.rest.unwrap().addr, "[::1]:0");

        let e = err(&format!("{MINIMAL}[checkpoint]\nretain = 0\n"));
        assert_eq!(
            e,
            "/jobs/job.toml:10: checkpoint: `retain` must be at least 1, found 0"
        );
        let text = format!("{MINIMAL}[checkpoint]\ntimeout = \"250ms\"\ntolerable_failures = 4\n");
        let cp = parse(&text).unwrap().checkpoint.unwrap();
        assert_eq!(cp.timeout, Duration::from_millis(250));
        assert_eq!(cp.tolerable_failures, 4);
        let e = err(&format!("{MINIMAL}[checkpoint]\ntimeout = \"0s\"\n"));
        assert_eq!(
            e,
            "/jobs/job.toml:10: checkpoint: `timeout` must be above zero"
        );
        let e = err(&format!("{MINIMAL}[checkpoint]\ntimeout = \"later\"\n"));
        assert!(
            e.starts_with("/jobs/job.toml:10: checkpoint: `timeout`: invalid duration `later`"),
            "{e}"
        );
        let e = err(&format!("{MINIMAL}[checkpoint]\ntolerable_failures = -1\n"));
        assert_eq!(
            e,
            "/jobs/job.toml:10: checkpoint: `tolerable_failures` must be between 0 and 4294967295, found -1"
        );
        let e = err(&format!(
            "{MINIMAL}[checkpoint]\ntolerable_failures = \"2\"\n"
        ));
        assert!(
            e.starts_with("/jobs/job.toml:10: checkpoint: `tolerable_failures`"),
            "{e}"
        );
        let e = err(&format!("{MINIMAL}[checkpoint]\ntolerable_failure = 2\n"));
        assert!(e.contains("tolerable_failure"), "{e}");
        let e = err(&format!("{MINIMAL}[checkpoint]\nmode = \"once\"\n"));
        assert!(e.starts_with("/jobs/job.toml:10: checkpoint: `mode` must be one of `exactly-once`, `at-least-once`"), "{e}");
        let e = err(&format!("{MINIMAL}[restart]\nmax_delay = \"5s\"\n"));
        assert_eq!(
            e,
            "/jobs/job.toml:10: restart: `max_delay` only applies to strategy `exponential`"
        );
        let e = err(&format!(
            "{MINIMAL}[restart]\nstrategy = \"none\"\nattempts = 2\n"
        ));
        assert_eq!(
            e,
            "/jobs/job.toml:11: restart: `attempts` does not apply to strategy `none`"
        );
        let e = err(&format!(
            "{MINIMAL}[restart]\nstrategy = \"exponential\"\ndelay = \"5s\"\nmax_delay = \"1s\"\n"
        ));
        assert!(
            e.starts_with("/jobs/job.toml:12: restart: `max_delay` (1s) is below `delay` (5s)"),
            "{e}"
        );
        let e = err(&format!("{MINIMAL}[restart]\nattempts = -1\n"));
        assert_eq!(
            e,
            "/jobs/job.toml:10: restart: `attempts` must be between 0 and 4294967295, found -1"
        );
        let e = err(&format!("{MINIMAL}[rest]\naddr = \"localhost\"\n"));
        assert!(
            e.starts_with("/jobs/job.toml:10: rest: `addr` must be host:port"),
            "{e}"
        );
        assert!(parse(&format!("{MINIMAL}[rest]\naddr = \"localhost:8081\"\n")).is_ok());
    }

    #[test]
    fn syntax_errors_are_one_line_with_line_numbers() {
        let e = err("name = \"x\"\n\n[source\ntype = \"stdin\"\n");
        assert!(e.starts_with("/jobs/job.toml:3: "), "{e}");
        let e = err("name = \"x\"\nname = \"y\"\n");
        assert_eq!(e, "/jobs/job.toml:2: duplicate key `name`");
    }

    #[test]
    fn load_reports_missing_file() {
        let e = JobSpec::load(Path::new("/nonexistent-weir-dir/x.toml")).unwrap_err();
        assert!(matches!(e, JobError::Read { .. }));
        assert!(
            e.to_string()
                .starts_with("cannot read job file `/nonexistent-weir-dir/x.toml`: "),
            "{e}"
        );
        assert!(!e.to_string().contains('\n'));
    }

    #[test]
    fn load_reads_a_file() {
        let dir = std::env::temp_dir().join(format!("weir-job-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("job.toml");
        std::fs::write(&file, MINIMAL).unwrap();
        let spec = JobSpec::load(&file).unwrap();
        assert_eq!(spec.base_dir, dir);
        assert_eq!(spec.operators[0].wasm, dir.join("op.wasm"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn never_panics_on_truncated_or_odd_input() {
        for end in 0..=EXAMPLE.len() {
            if EXAMPLE.is_char_boundary(end) {
                if let Err(e) = parse(&EXAMPLE[..end]) {
                    assert!(!e.to_string().contains('\n'));
                }
            }
        }
        for text in [
            "\u{feff}name = \"x\"",
            "[[operators]]\n[[operators]]\n",
            "operators = [1, 2]",
            "name = \"x\"\n[source]\ntype = \"generator\"\ncount = 9223372036854775807\nkeys = 9223372036854775807\nvalue_size = 9223372036854775807\n",
            "name = \"\u{0}\"",
            "name = '''\n\n'''\n",
            "\u{0}\u{1}",
            "= = =",
            "[a.b.c]\nx = 1",
        ] {
            let _ = parse(text);
        }
    }
}
