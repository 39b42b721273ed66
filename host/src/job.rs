//! The job file: the TOML that names a job's source, its operators (by ID, with
//! the `.wasm` behind each), its sink, and its checkpoint, savepoint, restart and
//! REST settings, parsed into a checked [`JobSpec`].
//!
//! The shape is the one agreed in `DESIGN.md` ("The job file"). Choices made here
//! where the design is silent:
//!
//! - Parsing is strict. An unknown field, a value of the wrong type, or a field
//!   that belongs to another source or sink type (e.g. `count` on a file source)
//!   is an error that names the field and its line. Every error is one line:
//!   `job.toml:7: ...`, with the file path exactly as the caller gave it.
//! - Relative paths are resolved against the job file's directory (made absolute
//!   without touching the file system: no symlinks are resolved, `..` is kept).
//!   Nothing here checks that a file exists; the runtime does that.
//! - Durations are strings: a number (decimals allowed) and a unit, `ns`, `us`
//!   (or `µs`), `ms`, `s`, `m`, `h` or `d`, e.g. `"250ms"`, `"1.5s"`, `"5m"`;
//!   parts may be chained (`"1m30s"`); a bare `"0"` is zero. See
//!   [`parse_duration`].
//! - `[checkpoint]` without `interval` means no periodic checkpoints; an
//!   `interval` of zero is an error.
//! - `[savepoint]` without `dir` defaults to `savepoints`.
//! - `[restart]` without `strategy` is `fixed-delay`. `max_delay` is only allowed
//!   with `exponential` and must not be below `delay`; `none` takes no other
//!   field.
//! - `[rest] addr` must look like `host:port` (port 0 picks a free one); the
//!   host is not resolved here.
//! - Operator config values must be TOML strings; `config = { n = 3 }` is an
//!   error that suggests `n = "3"`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use toml::{Spanned, Value};

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
    pub operators: Vec<OperatorSpec>,
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
    /// The job file's directory, absolute; relative paths in the file are resolved against it.
    pub base_dir: PathBuf,
}

/// The job's source (`[source]`, selected by `type`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// `type = "file"`: events read from a file.
    File {
        /// The file to read (absolute).
        path: PathBuf,
        /// How each line is decoded.
        format: Format,
        /// Bounded out-of-orderness: the watermark trails the highest timestamp seen by this much.
        watermark_delay: Duration,
        /// Events per batch.
        batch_size: usize,
    },
    /// `type = "stdin"`: events read from standard input.
    Stdin {
        /// How each line is decoded.
        format: Format,
        /// Bounded out-of-orderness: the watermark trails the highest timestamp seen by this much.
        watermark_delay: Duration,
        /// Events per batch.
        batch_size: usize,
    },
    /// `type = "generator"`: a deterministic generator for tests and benchmarks.
    Generator {
        /// Number of events to generate.
        count: u64,
        /// Number of distinct keys (at least 1).
        keys: u64,
        /// Size of each value in bytes.
        value_size: usize,
        /// Seed of the generator.
        seed: u64,
        /// Events per second, if throttled (greater than 0).
        rate: Option<u64>,
        /// Bounded out-of-orderness: the watermark trails the highest timestamp seen by this much.
        watermark_delay: Duration,
        /// Events per batch.
        batch_size: usize,
        /// Event time is the wall clock when the event is made (`timestamps =
        /// "now"`), for measuring latency; else the event's index (`"index"`).
        wall_clock: bool,
    },
}

impl SourceSpec {
    /// Where the event at `offset` (see [`crate::stream::Offsets`]) is, for
    /// messages: ``offset 40 (line 41 of `/data/in.jsonl`)``.
    pub fn locate(&self, offset: u64) -> String {
        match self {
            SourceSpec::File { path, .. } => format!(
                "offset {offset} (line {} of `{}`)",
                offset.saturating_add(1),
                path.display()
            ),
            SourceSpec::Stdin { .. } => format!(
                "offset {offset} (line {} of standard input)",
                offset.saturating_add(1)
            ),
            SourceSpec::Generator { .. } => format!("offset {offset} of the generator"),
        }
    }
}

/// How events are encoded in a line-oriented file or stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// `"json"`: one JSON object per line (`key`, `value`, `timestamp`).
    #[default]
    Json,
    /// `"lines"`: each line is the raw `value` of one event.
    Lines,
}

/// One `[[operators]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorSpec {
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

/// `[operators.capabilities]`: the WASI access an operator is granted. By
/// default it has none: no files, no environment variables, no network. A
/// guest that tries gets a WASI error (no such file, variable unset,
/// permission denied), never access.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Capabilities {
    /// `env = { NAME = "value" }`: the environment the operator sees (weir's
    /// own environment is never passed through).
    pub env: Vec<(String, String)>,
    /// `dirs` (read-only) and `writable_dirs`: folders of the host the
    /// operator sees, each under a guest path.
    pub dirs: Vec<DirGrant>,
    /// `network = true`: outgoing and incoming TCP and UDP, and name lookups.
    pub network: bool,
}

/// `[operators.limits]`: the budgets of each subtask of an operator.
/// Exceeding one traps the subtask with a message naming the operator, the
/// subtask, the budget and its value; the job's restart strategy applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// `memory`: largest linear memory of an instance, in bytes.
    pub memory: u64,
    /// `cpu_per_call`: longest time one guest call may run.
    pub cpu_per_call: Duration,
    /// `output_per_call`: most events one `process` or `on-timer` call may emit.
    pub output_per_call: u64,
    /// `state_value_size`: largest state value, in bytes.
    pub state_value_size: u64,
    /// `state_memory`: most state a subtask may hold in the host, in bytes
    /// of keys and values plus [`crate::state::ENTRY_OVERHEAD`] per key, map
    /// entry and list element.
    pub state_memory: u64,
    /// `pending_timers`: most timers a subtask may have pending.
    pub pending_timers: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory: 1 << 30,
            cpu_per_call: Duration::from_secs(10),
            output_per_call: 1_000_000,
            state_value_size: 16 << 20,
            state_memory: 4 << 30,
            pending_timers: 10_000_000,
        }
    }
}

/// A duration as the job file writes it: `10s`, `250ms`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// Parses a size such as `"64MiB"`, `"1GiB"`, `"512KiB"`, `"1000B"` or `"1000"` (bytes).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    if digits.is_empty() {
        return Err(format!(
            "`{}` is not a size: expected e.g. `64MiB`",
            s.escape_debug()
        ));
    }
    let shift = match unit.trim() {
        "" | "B" => 0,
        "KiB" | "K" | "KB" => 10,
        "MiB" | "M" | "MB" => 20,
        "GiB" | "G" | "GB" => 30,
        other => {
            return Err(format!(
                "unknown size unit `{}` in `{}`: use B, KiB, MiB or GiB, e.g. `64MiB`",
                other.escape_debug(),
                s.escape_debug()
            ))
        }
    };
    let n: u64 = digits.parse().map_err(|_| {
        format!(
            "`{}` is not a size: expected e.g. `64MiB`",
            s.escape_debug()
        )
    })?;
    n.checked_mul(1 << shift).filter(|&b| b > 0).ok_or_else(|| {
        format!(
            "size `{}` must be above 0 and below 16 EiB",
            s.escape_debug()
        )
    })
}

/// One folder granted to an operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirGrant {
    /// The path the guest opens it at, e.g. `/data`.
    pub guest: String,
    /// The host folder (absolute).
    pub host: PathBuf,
    /// Whether the guest may create, write and delete files in it.
    pub writable: bool,
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

/// The job's sink (`[sink]`, selected by `type`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkSpec {
    /// `type = "file"`: events written to a file.
    File {
        /// The file to write (absolute).
        path: PathBuf,
        /// How each event is encoded.
        format: Format,
    },
    /// `type = "stdout"`: events written to standard output.
    Stdout {
        /// How each event is encoded.
        format: Format,
    },
    /// `type = "blackhole"`: events are discarded (and counted).
    Blackhole {
        /// `latency = true`: record each event's latency (wall clock now
        /// minus its event time) and report percentiles at the end.
        latency: bool,
    },
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
}

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

/// `[rest]`: the REST server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestSpec {
    /// `host:port` to listen on; port 0 picks a free one.
    pub addr: String,
}

/// An error reading or checking a job file. Its message is one line.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The job file could not be read.
    #[error("cannot read job file `{path}`: {source}")]
    Read {
        /// The path as the caller gave it.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The job file is not valid TOML, or its shape or values are wrong.
    #[error("{file}{}: {message}", line_suffix(.line))]
    Invalid {
        /// The path as the caller gave it.
        file: String,
        /// 1-based line the problem is on, when known.
        line: Option<usize>,
        /// What is wrong (one line).
        message: String,
    },
}

impl JobError {
    /// The 1-based line of the job file the error is about, when known.
    pub fn line(&self) -> Option<usize> {
        match self {
            JobError::Read { .. } => None,
            JobError::Invalid { line, .. } => *line,
        }
    }
}

fn line_suffix(line: &Option<usize>) -> String {
    match line {
        Some(l) => format!(":{l}"),
        None => String::new(),
    }
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
        let cx = Cx {
            file,
            text,
            base_dir,
        };
        let raw: RawJob = toml::from_str(text).map_err(|e| cx.toml_error(&e))?;
        cx.job(&raw)
    }
}

/// Parses a duration such as `"250ms"`, `"2s"`, `"1.5s"`, `"5m"`, `"1h"` or `"0"`.
///
/// A duration is one or more parts, each a decimal number and a unit (`ns`, `us`
/// or `µs`, `ms`, `s`, `m`, `h`, `d`), e.g. `"1m30s"`; whitespace between parts
/// and between number and unit is allowed. A bare number is only allowed for zero.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    const HINT: &str = "expected a number and a unit (ms, s, m, h), e.g. `250ms` or `1.5s`";
    let shown = s.escape_debug();
    let t = s.trim();
    if t.is_empty() {
        return Err(format!("empty duration, {HINT}"));
    }
    let zero_digits = t.bytes().all(|b| b == b'0' || b == b'.') && t.starts_with('0');
    if zero_digits && t.bytes().filter(|&b| b == b'.').count() <= 1 && !t.ends_with('.') {
        return Ok(Duration::ZERO);
    }
    let mut total: u128 = 0;
    let mut rest = t;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, after) = rest.split_at(num_len);
        if num.is_empty() {
            return Err(format!("invalid duration `{shown}`: {HINT}"));
        }
        let after = after.trim_start();
        let unit_len = after
            .find(|c: char| !c.is_alphabetic())
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let per_unit: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "d" => 86_400_000_000_000,
            "" => {
                return Err(format!(
                    "invalid duration `{shown}`: missing unit after `{num}`, {HINT}"
                ))
            }
            other => {
                return Err(format!(
                    "invalid duration `{shown}`: unknown unit `{}`, expected one of `ns`, `us`, `ms`, `s`, `m`, `h`, `d`",
                    other.escape_debug()
                ))
            }
        };
        let part = decimal_times(num, per_unit)
            .ok_or_else(|| format!("invalid duration `{shown}`: bad number `{num}`, {HINT}"))?;
        total = total
            .checked_add(part)
            .ok_or_else(|| format!("invalid duration `{shown}`: too long"))?;
        rest = next.trim_start();
    }
    let secs = u64::try_from(total / 1_000_000_000)
        .map_err(|_| format!("invalid duration `{shown}`: too long"))?;
    // The remainder is below 1e9, so it fits in u32.
    let nanos = u32::try_from(total % 1_000_000_000).unwrap_or(0);
    Ok(Duration::new(secs, nanos))
}

/// `num` (digits, optionally `.` and more digits) times `per_unit`, truncated to
/// whole units of `per_unit`'s scale. `None` if `num` is malformed or too large.
fn decimal_times(num: &str, per_unit: u128) -> Option<u128> {
    let (int, frac) = match num.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (num, None),
    };
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut value: u128 = 0;
    for b in int.bytes() {
        value = value.checked_mul(10)?.checked_add(u128::from(b - b'0'))?;
    }
    let mut total = value.checked_mul(per_unit)?;
    if let Some(frac) = frac {
        if frac.is_empty() || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        // 20 digits are far below a nanosecond for every unit; the rest is dropped.
        let mut f: u128 = 0;
        let mut scale: u128 = 1;
        for b in frac.bytes().take(20) {
            f = f * 10 + u128::from(b - b'0');
            scale *= 10;
        }
        total = total.checked_add(f.checked_mul(per_unit)? / scale)?;
    }
    Some(total)
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

type Field = Option<Spanned<Value>>;

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
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [source] table")]
struct RawSource {
    #[serde(rename = "type")]
    ty: Field,
    path: Field,
    format: Field,
    watermark_delay: Field,
    batch_size: Field,
    count: Field,
    keys: Field,
    value_size: Field,
    seed: Field,
    rate: Field,
    timestamps: Field,
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
    config: Option<Spanned<RawConfig>>,
    capabilities: Option<Spanned<RawCapabilities>>,
    limits: Option<Spanned<RawLimits>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "an [operators.limits] table")]
struct RawLimits {
    memory: Field,
    cpu_per_call: Field,
    output_per_call: Field,
    state_value_size: Field,
    state_memory: Field,
    pending_timers: Field,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "an [operators.capabilities] table")]
struct RawCapabilities {
    env: Option<Spanned<RawConfig>>,
    dirs: Option<Spanned<RawConfig>>,
    writable_dirs: Option<Spanned<RawConfig>>,
    network: Field,
}

struct RawConfig(Vec<(String, Spanned<Value>)>);

impl<'de> Deserialize<'de> for RawConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawConfig;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a table of strings for `config`, e.g. `config = { size_ms = \"1000\" }`",
                )
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawConfig, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(RawConfig(entries))
            }
        }
        d.deserialize_map(V)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [sink] table")]
struct RawSink {
    #[serde(rename = "type")]
    ty: Field,
    path: Field,
    format: Field,
    latency: Field,
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

/// The file being parsed: its name for messages, its text for line numbers.
struct Cx<'a> {
    file: String,
    text: &'a str,
    base_dir: PathBuf,
}

impl Cx<'_> {
    fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text
            .as_bytes()
            .get(..end)
            .unwrap_or_default()
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    fn err(&self, span: Option<Range<usize>>, message: impl fmt::Display) -> JobError {
        JobError::Invalid {
            file: self.file.clone(),
            line: span.map(|s| self.line_of(s.start)),
            message: one_line(&message.to_string()),
        }
    }

    fn toml_error(&self, e: &toml::de::Error) -> JobError {
        let span = e.span();
        // toml does not say which key is duplicated; the span covers it.
        let key = span
            .clone()
            .and_then(|s| self.text.get(s))
            .map(str::trim)
            .filter(|k| !k.is_empty() && !k.contains('\n'));
        match key {
            Some(k) if e.message() == "duplicate key" => {
                self.err(span, format!("duplicate key `{}`", k.escape_debug()))
            }
            _ => self.err(span, e.message()),
        }
    }

    fn section(&self, label: impl Into<String>, span: Range<usize>) -> Section<'_, '_> {
        Section {
            cx: self,
            label: label.into(),
            span,
        }
    }

    fn resolve(&self, p: &str) -> PathBuf {
        self.base_dir.join(p).components().collect()
    }

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
                    "missing [source] table (where events come from: `type = \"file\"`, \"stdin\" or \"generator\")",
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
            Some(s) => self.sink(s)?,
            None => {
                return Err(self.err(
                    None,
                    "missing [sink] table (where results go: `type = \"file\"`, \"stdout\" or \"blackhole\")",
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
            base_dir: self.base_dir.clone(),
        })
    }

    fn source(&self, raw: &Spanned<RawSource>) -> Result<SourceSpec, JobError> {
        #[derive(Clone, Copy)]
        enum Kind {
            File,
            Stdin,
            Generator,
        }
        let s = self.section("source", raw.span());
        let r = raw.get_ref();
        let ty_v = s.required("type", &r.ty, " (one of `file`, `stdin`, `generator`)")?;
        let kind = s.choice(
            "type",
            ty_v,
            &[
                ("file", Kind::File),
                ("stdin", Kind::Stdin),
                ("generator", Kind::Generator),
            ],
        )?;
        let ty_name = s.string("type", ty_v)?;
        let watermark_delay = s
            .opt(&r.watermark_delay, |v| s.duration("watermark_delay", v))?
            .unwrap_or(Duration::ZERO);
        let batch_size = s
            .opt(&r.batch_size, |v| {
                s.int("batch_size", v, 1, MAX_BATCH_SIZE as i64)
            })?
            .unwrap_or(DEFAULT_BATCH_SIZE);
        let generator_fields = [
            ("count", &r.count),
            ("keys", &r.keys),
            ("value_size", &r.value_size),
            ("seed", &r.seed),
            ("rate", &r.rate),
            ("timestamps", &r.timestamps),
        ];
        match kind {
            Kind::File | Kind::Stdin => {
                for (name, field) in generator_fields {
                    s.forbid(name, field, &format!("a `{ty_name}` source"))?;
                }
                let format = s.format(&r.format)?;
                if let Kind::Stdin = kind {
                    s.forbid("path", &r.path, "a `stdin` source")?;
                    return Ok(SourceSpec::Stdin {
                        format,
                        watermark_delay,
                        batch_size,
                    });
                }
                let path_v = s.required("path", &r.path, " (required for a `file` source)")?;
                Ok(SourceSpec::File {
                    path: s.path("path", path_v)?,
                    format,
                    watermark_delay,
                    batch_size,
                })
            }
            Kind::Generator => {
                s.forbid("path", &r.path, "a `generator` source")?;
                s.forbid("format", &r.format, "a `generator` source")?;
                let count_v = s.required(
                    "count",
                    &r.count,
                    " (number of events, required for a `generator` source)",
                )?;
                let count = s.int("count", count_v, 0, i64::MAX)?;
                let keys = s
                    .opt(&r.keys, |v| s.int("keys", v, 1, i64::MAX))?
                    .unwrap_or(1000);
                let value_size = s
                    .opt(&r.value_size, |v| s.int("value_size", v, 0, i64::MAX))?
                    .unwrap_or(100);
                let seed = s
                    .opt(&r.seed, |v| s.int("seed", v, 0, i64::MAX))?
                    .unwrap_or(0);
                let rate = s.opt(&r.rate, |v| s.int("rate", v, 1, i64::MAX))?;
                let wall_clock = s
                    .opt(&r.timestamps, |v| {
                        s.choice("timestamps", v, &[("index", false), ("now", true)])
                    })?
                    .unwrap_or(false);
                Ok(SourceSpec::Generator {
                    count,
                    keys,
                    value_size,
                    seed,
                    rate,
                    watermark_delay,
                    batch_size,
                    wall_clock,
                })
            }
        }
    }

    /// Builds one operator; also returns the line of its `id`, for duplicate messages.
    fn operator(
        &self,
        raw: &Spanned<RawOperator>,
        number: usize,
        max_parallelism: u32,
    ) -> Result<(OperatorSpec, usize), JobError> {
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
            Some(c) => self.capabilities(id, c)?,
            None => Capabilities::default(),
        };
        let limits = match &r.limits {
            Some(l) => self.limits(id, l)?,
            None => Limits::default(),
        };
        Ok((
            OperatorSpec {
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

    fn limits(&self, id: &str, raw: &Spanned<RawLimits>) -> Result<Limits, JobError> {
        let s = self.section(format!("operator `{id}` limits"), raw.span());
        let r = raw.get_ref();
        let size = |name: &str, v: &Spanned<Value>| -> Result<u64, JobError> {
            match v.get_ref() {
                Value::String(text) => {
                    parse_size(text).map_err(|e| s.fail(v.span(), format!("`{name}`: {e}")))
                }
                Value::Integer(_) => s.int(name, v, 1, i64::MAX),
                other => Err(s.fail(
                    v.span(),
                    format!(
                        "`{name}` must be a size such as \"64MiB\", found {}",
                        describe(other)
                    ),
                )),
            }
        };
        let d = Limits::default();
        let cpu = match &r.cpu_per_call {
            Some(v) => {
                let t = s.duration("cpu_per_call", v)?;
                if t < Duration::from_millis(10) {
                    return Err(s.fail(
                        v.span(),
                        "`cpu_per_call` must be at least 10ms (it is measured in 10 ms ticks)",
                    ));
                }
                t
            }
            None => d.cpu_per_call,
        };
        Ok(Limits {
            memory: s.opt(&r.memory, |v| size("memory", v))?.unwrap_or(d.memory),
            cpu_per_call: cpu,
            output_per_call: s
                .opt(&r.output_per_call, |v| {
                    s.int("output_per_call", v, 1, i64::MAX)
                })?
                .unwrap_or(d.output_per_call),
            state_value_size: s
                .opt(&r.state_value_size, |v| size("state_value_size", v))?
                .unwrap_or(d.state_value_size),
            state_memory: s
                .opt(&r.state_memory, |v| size("state_memory", v))?
                .unwrap_or(d.state_memory),
            pending_timers: s
                .opt(&r.pending_timers, |v| {
                    s.int("pending_timers", v, 1, i64::MAX)
                })?
                .unwrap_or(d.pending_timers),
        })
    }

    fn capabilities(
        &self,
        id: &str,
        raw: &Spanned<RawCapabilities>,
    ) -> Result<Capabilities, JobError> {
        let s = self.section(format!("operator `{id}` capabilities"), raw.span());
        let r = raw.get_ref();
        let strings = |name: &str, table: &Option<Spanned<RawConfig>>| {
            let mut out = Vec::new();
            if let Some(t) = table {
                for (key, value) in &t.get_ref().0 {
                    let v = s.string(&format!("{name}.{key}"), value)?;
                    out.push((key.clone(), v.to_owned(), value.span()));
                }
            }
            Ok::<_, JobError>(out)
        };
        let env = strings("env", &r.env)?
            .into_iter()
            .map(|(k, v, _)| (k, v))
            .collect();
        let mut dirs: Vec<DirGrant> = Vec::new();
        for (name, table, writable) in [
            ("dirs", &r.dirs, false),
            ("writable_dirs", &r.writable_dirs, true),
        ] {
            for (guest, host, span) in strings(name, table)? {
                if !guest.starts_with('/') {
                    return Err(s.fail(
                        span,
                        format!(
                            "`{name}`: the guest path `{}` must be absolute, e.g. `\"/data\" = \"{}\"`",
                            guest.escape_debug(),
                            host.escape_debug()
                        ),
                    ));
                }
                if dirs.iter().any(|d| d.guest == guest) {
                    return Err(s.fail(
                        span,
                        format!("guest path `{}` is granted twice", guest.escape_debug()),
                    ));
                }
                if host.is_empty() {
                    return Err(s.fail(
                        span,
                        format!("`{name}`: the host folder of `{guest}` must not be empty"),
                    ));
                }
                let path = self.resolve(&host);
                if !path.is_dir() {
                    return Err(s.fail(
                        span,
                        format!(
                            "`{name}`: `{}` (granted as `{guest}`) is not a folder",
                            path.display()
                        ),
                    ));
                }
                dirs.push(DirGrant {
                    guest,
                    host: path,
                    writable,
                });
            }
        }
        let network = s
            .opt(&r.network, |v| s.boolean("network", v))?
            .unwrap_or(false);
        Ok(Capabilities { env, dirs, network })
    }

    fn sink(&self, raw: &Spanned<RawSink>) -> Result<SinkSpec, JobError> {
        #[derive(Clone, Copy)]
        enum Kind {
            File,
            Stdout,
            Blackhole,
        }
        let s = self.section("sink", raw.span());
        let r = raw.get_ref();
        let ty_v = s.required("type", &r.ty, " (one of `file`, `stdout`, `blackhole`)")?;
        let kind = s.choice(
            "type",
            ty_v,
            &[
                ("file", Kind::File),
                ("stdout", Kind::Stdout),
                ("blackhole", Kind::Blackhole),
            ],
        )?;
        match kind {
            Kind::File => {
                s.forbid("latency", &r.latency, "a `file` sink")?;
                let path_v = s.required("path", &r.path, " (required for a `file` sink)")?;
                Ok(SinkSpec::File {
                    path: s.path("path", path_v)?,
                    format: s.format(&r.format)?,
                })
            }
            Kind::Stdout => {
                s.forbid("path", &r.path, "a `stdout` sink")?;
                s.forbid("latency", &r.latency, "a `stdout` sink")?;
                Ok(SinkSpec::Stdout {
                    format: s.format(&r.format)?,
                })
            }
            Kind::Blackhole => {
                s.forbid("path", &r.path, "a `blackhole` sink")?;
                s.forbid("format", &r.format, "a `blackhole` sink")?;
                let latency = s.opt(&r.latency, |v| s.boolean("latency", v))?;
                Ok(SinkSpec::Blackhole {
                    latency: latency.unwrap_or(false),
                })
            }
        }
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
        Ok(CheckpointSpec {
            interval,
            dir,
            retain,
            mode,
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

/// One table of the job file, for messages: `label` prefixes them, `span` is the
/// table's header (used when a required field is missing).
struct Section<'c, 'a> {
    cx: &'c Cx<'a>,
    label: String,
    span: Range<usize>,
}

impl Section<'_, '_> {
    fn fail(&self, span: Range<usize>, message: impl fmt::Display) -> JobError {
        if self.label.is_empty() {
            self.cx.err(Some(span), message)
        } else {
            self.cx
                .err(Some(span), format!("{}: {message}", self.label))
        }
    }

    fn required<'v>(
        &self,
        name: &str,
        field: &'v Field,
        hint: &str,
    ) -> Result<&'v Spanned<Value>, JobError> {
        field
            .as_ref()
            .ok_or_else(|| self.fail(self.span.clone(), format!("missing `{name}`{hint}")))
    }

    fn forbid(&self, name: &str, field: &Field, what: &str) -> Result<(), JobError> {
        match field {
            Some(v) => Err(self.fail(v.span(), format!("`{name}` does not apply to {what}"))),
            None => Ok(()),
        }
    }

    fn opt<T>(
        &self,
        field: &Field,
        f: impl FnOnce(&Spanned<Value>) -> Result<T, JobError>,
    ) -> Result<Option<T>, JobError> {
        field.as_ref().map(f).transpose()
    }

    fn boolean(&self, name: &str, v: &Spanned<Value>) -> Result<bool, JobError> {
        match v.get_ref() {
            Value::Boolean(b) => Ok(*b),
            other => Err(self.fail(
                v.span(),
                format!("`{name}` must be true or false, found {}", describe(other)),
            )),
        }
    }

    fn string<'v>(&self, name: &str, v: &'v Spanned<Value>) -> Result<&'v str, JobError> {
        match v.get_ref() {
            Value::String(s) => Ok(s),
            other => Err(self.fail(
                v.span(),
                format!("`{name}` must be a string, found {}", describe(other)),
            )),
        }
    }

    fn int<T: TryFrom<i64>>(
        &self,
        name: &str,
        v: &Spanned<Value>,
        min: i64,
        max: i64,
    ) -> Result<T, JobError> {
        let n = match v.get_ref() {
            Value::Integer(n) => *n,
            other => {
                return Err(self.fail(
                    v.span(),
                    format!("`{name}` must be an integer, found {}", describe(other)),
                ))
            }
        };
        if n < min || n > max {
            let range = if max == i64::MAX && min == 0 {
                "must not be negative".to_owned()
            } else if max == i64::MAX {
                format!("must be at least {min}")
            } else {
                format!("must be between {min} and {max}")
            };
            return Err(self.fail(v.span(), format!("`{name}` {range}, found {n}")));
        }
        T::try_from(n).map_err(|_| self.fail(v.span(), format!("`{name}` {n} is too large")))
    }

    fn duration(&self, name: &str, v: &Spanned<Value>) -> Result<Duration, JobError> {
        match v.get_ref() {
            Value::String(s) => {
                parse_duration(s).map_err(|e| self.fail(v.span(), format!("`{name}`: {e}")))
            }
            other => Err(self.fail(
                v.span(),
                format!(
                    "`{name}` must be a duration string such as \"250ms\" or \"2s\", found {}",
                    describe(other)
                ),
            )),
        }
    }

    fn path(&self, name: &str, v: &Spanned<Value>) -> Result<PathBuf, JobError> {
        let p = self.string(name, v)?;
        if p.is_empty() {
            return Err(self.fail(v.span(), format!("`{name}` must not be empty")));
        }
        Ok(self.cx.resolve(p))
    }

    fn choice<T: Copy>(
        &self,
        name: &str,
        v: &Spanned<Value>,
        options: &[(&str, T)],
    ) -> Result<T, JobError> {
        let s = self.string(name, v)?;
        match options.iter().find(|(k, _)| *k == s) {
            Some((_, t)) => Ok(*t),
            None => {
                let names: Vec<String> = options.iter().map(|(k, _)| format!("`{k}`")).collect();
                Err(self.fail(
                    v.span(),
                    format!(
                        "`{name}` must be one of {}, found `{}`",
                        names.join(", "),
                        s.escape_debug()
                    ),
                ))
            }
        }
    }

    fn format(&self, field: &Field) -> Result<Format, JobError> {
        Ok(self
            .opt(field, |v| {
                self.choice(
                    "format",
                    v,
                    &[("json", Format::Json), ("lines", Format::Lines)],
                )
            })?
            .unwrap_or_default())
    }
}

/// A TOML value's type (and the value itself when short), for "found ..." messages.
fn describe(v: &Value) -> String {
    match v {
        Value::String(s) => format!("string {s:?}"),
        Value::Integer(i) => format!("integer {i}"),
        Value::Float(f) => format!("float {f}"),
        Value::Boolean(b) => format!("boolean {b}"),
        Value::Datetime(d) => format!("datetime {d}"),
        Value::Array(_) => "an array".to_owned(),
        Value::Table(_) => "a table".to_owned(),
    }
}

/// Folds a possibly multi-line message onto one line.
fn one_line(message: &str) -> String {
    let parts: Vec<&str> = message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

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
            SourceSpec::File {
                path: PathBuf::from("/jobs/input.jsonl"),
                format: Format::Json,
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
            SinkSpec::File {
                path: PathBuf::from("/jobs/out.jsonl"),
                format: Format::Json
            }
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
            SourceSpec::Stdin {
                format: Format::Json,
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
            SinkSpec::Stdout {
                format: Format::Json
            }
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
        let text = MINIMAL.replace("type = \"stdin\"", "type = \"kafka\"");
        assert_eq!(
            err(&text),
            "/jobs/job.toml:3: source: `type` must be one of `file`, `stdin`, `generator`, found `kafka`"
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
    fn parse_durations() {
        let ok = [
            ("250ms", Duration::from_millis(250)),
            ("2s", Duration::from_secs(2)),
            ("1.5s", Duration::from_millis(1500)),
            ("5m", Duration::from_secs(300)),
            ("1h", Duration::from_secs(3600)),
            ("0", Duration::ZERO),
            ("0s", Duration::ZERO),
            ("0.0", Duration::ZERO),
            ("1m30s", Duration::from_secs(90)),
            (" 2 s ", Duration::from_secs(2)),
            ("10us", Duration::from_micros(10)),
            ("10µs", Duration::from_micros(10)),
            ("7ns", Duration::from_nanos(7)),
            ("0.1s", Duration::from_millis(100)),
            ("1d", Duration::from_secs(86400)),
        ];
        for (s, d) in ok {
            assert_eq!(parse_duration(s), Ok(d), "{s}");
        }
        for s in [
            "",
            "1",
            "s",
            "-1s",
            "1.s",
            ".5s",
            "1..5s",
            "1x",
            "1sm",
            "ms",
            "1 2s",
            "99999999999999999999999999999999999999999h",
            "0.0.0",
            "18446744073709551616s",
        ] {
            assert!(parse_duration(s).is_err(), "{s:?} parsed");
        }
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
        match &spec.source {
            SourceSpec::File { path, .. } => {
                assert_eq!(path, &PathBuf::from("/a/b/data/../in.jsonl"))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(spec.operators[0].wasm, PathBuf::from("/opt/ops/a.wasm"));
        assert_eq!(
            spec.sink,
            SinkSpec::File {
                path: PathBuf::from("/a/b/out/o.jsonl"),
                format: Format::Json
            }
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
            SourceSpec::Generator {
                count: 1_000_000,
                keys: 10_000,
                value_size: 64,
                seed: 42,
                rate: Some(50_000),
                watermark_delay: Duration::from_millis(250),
                batch_size: 512,
                wall_clock: false,
            }
        );
        let text = MINIMAL.replace("type = \"stdin\"", "type = \"generator\"\ncount = 5");
        assert_eq!(
            parse(&text).unwrap().source,
            SourceSpec::Generator {
                count: 5,
                keys: 1000,
                value_size: 100,
                seed: 0,
                rate: None,
                watermark_delay: Duration::ZERO,
                batch_size: 1024,
                wall_clock: false,
            }
        );
        let text = MINIMAL.replace(
            "type = \"stdin\"",
            "type = \"generator\"\ncount = 5\ntimestamps = \"now\"",
        );
        assert!(matches!(
            parse(&text).unwrap().source,
            SourceSpec::Generator {
                wall_clock: true,
                ..
            }
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
            SinkSpec::Stdout {
                format: Format::Lines
            }
        );
        let spec = parse(&MINIMAL.replace("type = \"stdout\"", "type = \"blackhole\"")).unwrap();
        assert_eq!(spec.sink, SinkSpec::Blackhole { latency: false });
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
