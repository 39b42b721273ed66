//! The connector registry: the one place that knows every kind of source
//! and sink. The job file's `type` is looked up here ([`SourceConnector::KINDS`],
//! [`SinkSpec::KINDS`]); each kind's own folder reads its fields and
//! implements what the engine asks of it ([`Source`], [`Sink`]); the engine
//! reaches a configured connector only through those traits
//! ([`SourceConnector::get`], [`SinkSpec::get`]) and never names one.
//!
//! Adding a connector is a folder of its own (its config with `FIELDS` and
//! `from_table`, and its reader or writer) that implements [`SourceKind`]
//! or [`SinkKind`], plus one line in the lists at the end of this file.

use std::any::Any;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::connectors::blackhole::BlackholeConfig;
use crate::connectors::file::{FileSinkConfig, FileSourceConfig};
use crate::connectors::generator::GeneratorConfig;
use crate::connectors::json::Format;
use crate::connectors::kafka::sink::KafkaSinkConfig;
use crate::connectors::kafka::source::KafkaSourceConfig;
use crate::connectors::latency::{BatchClock, LatencySlot};
use crate::connectors::stdio::{StdinConfig, StdoutConfig};
use crate::model::config::{Fields, JobError, Table};
use crate::model::{SinkState, SinkWriter, SourcePosition, SourceReader};

/// What the engine asks of a configured source, whatever its kind.
pub trait Source {
    /// How many subtasks read it.
    fn parallelism(&self) -> u32 {
        1
    }

    /// Whether it can be read again from a saved position: checkpoints,
    /// savepoints and restarts need it.
    fn replayable(&self) -> bool {
        true
    }

    /// Checks, before anything runs, that it can be opened (a file that
    /// exists); `job_file` names the job in the message.
    fn check(&self, _job_file: &Path) -> Result<(), String> {
        Ok(())
    }

    /// What it reads, for messages: `a file`, `Kafka`.
    fn reads(&self) -> &'static str;

    /// Opens one subtask of it.
    fn open(&self, open: &SourceOpen<'_>) -> Result<Box<dyn SourceReader>, String>;

    /// Whether it can resume from `position`, held by `what` (a checkpoint
    /// or savepoint) of the job `job_file`: a position of its own kind that
    /// still fits (a file not shorter, the same topic).
    fn resumes_from(
        &self,
        position: &SourcePosition,
        what: &str,
        job_file: &Path,
    ) -> Result<(), String>;

    /// Where the event at `offset` is, for messages: ``offset 40 (line 41 of `/data/in.jsonl`)``.
    fn locate(&self, offset: u64) -> String;

    /// How its records are read as JSON lines (format, longest line), when
    /// they are: a shadow run replays a recorded copy of its input that way.
    fn json_lines(&self) -> Option<(Format, usize)> {
        None
    }

    /// Stamps each batch with the wall clock when it is made, so that a
    /// sink can measure end-to-end latency.
    fn wall_clock(&self) -> bool {
        false
    }
}

/// A kind of source: its fields and how it reads them.
pub trait SourceKind: Source + Sized {
    /// The fields of its `[source]` table, besides those every source has.
    const FIELDS: &'static [&'static str];

    /// Reads its fields of the `[source]` table.
    fn from_table(t: &Table<'_, '_>, f: &mut Fields) -> Result<Self, JobError>;
}

/// What opening a source subtask needs.
pub struct SourceOpen<'a> {
    /// Which subtask.
    pub subtask: u32,
    /// Events per batch.
    pub batch_size: usize,
    /// The restored position, if any.
    pub position: Option<&'a SourcePosition>,
    /// The clock batches are stamped with, for latency measurement.
    pub clock: Option<&'a Arc<BatchClock>>,
}

/// The message of a source that cannot resume from `position` because it
/// is of another kind.
pub fn other_kind(
    source: &dyn Source,
    position: &SourcePosition,
    what: &str,
    job_file: &Path,
) -> String {
    format!(
        "{what} holds a {} position and the job ({}) reads {}: a source resumes only from a position of its own kind",
        position.kind(),
        job_file.display(),
        source.reads()
    )
}

/// What the engine asks of a configured sink, whatever its kind.
pub trait Sink {
    /// Opens it.
    fn open(&self, open: &SinkOpen<'_>) -> Result<Box<dyn SinkWriter>, String>;

    /// Measures end-to-end latency (from a source that stamps its batches
    /// with the wall clock).
    fn measures_latency(&self) -> bool {
        false
    }

    /// Whether it writes exactly once under `checkpointing` (none: the job
    /// takes no periodic checkpoints); an error when it is asked to and cannot.
    fn exactly_once(&self, _checkpointing: Option<&Checkpointing>) -> Result<bool, String> {
        Ok(false)
    }

    /// A sink that records its commits in markers of its own, which say
    /// which checkpoint a run must restore (an exactly-once Kafka sink).
    fn committer(&self) -> Option<&dyn Committer> {
        None
    }
}

/// A kind of sink: its fields and how it reads them.
pub trait SinkKind: Sink + Sized {
    /// The fields of its `[sink]` table.
    const FIELDS: &'static [&'static str];

    /// Reads its fields of the `[sink]` table of the job `job_name`.
    fn from_table(t: &Table<'_, '_>, f: &mut Fields, job_name: &str) -> Result<Self, JobError>;
}

/// How the job takes periodic checkpoints, as a sink needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpointing {
    /// Time between checkpoints.
    pub interval: Duration,
    /// In exactly-once mode (aligned barriers).
    pub exactly_once: bool,
    /// How long a checkpoint may take.
    pub timeout: Duration,
    /// The longest delay before a restart.
    pub longest_restart_delay: Duration,
}

/// How a sink takes part in checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkMode {
    /// No checkpoints: write straight to the output.
    Direct,
    /// At-least-once: write straight to the output, record where it was at each checkpoint.
    AtLeastOnce,
    /// Exactly-once: two-phase commit, published when a checkpoint completes.
    ExactlyOnce,
}

/// What opening a sink needs.
pub struct SinkOpen<'a> {
    /// How it takes part in checkpoints.
    pub mode: SinkMode,
    /// It writes exactly once ([`Sink::exactly_once`]).
    pub exactly_once: bool,
    /// The checkpoint or savepoint restored, if any.
    pub restored: Option<SinkRestore<'a>>,
    /// The state store's instance, which commit markers name (empty: none).
    pub store_instance: &'a str,
    /// Where measured latencies go.
    pub latency: &'a LatencySlot,
    /// The clock batches were stamped with.
    pub clock: Option<&'a Arc<BatchClock>>,
}

/// The checkpoint or savepoint a sink is restored from.
pub struct SinkRestore<'a> {
    /// Its ID.
    pub id: u64,
    /// The sink's state then.
    pub state: Option<&'a SinkState>,
    /// A savepoint (which may be restored where its output is not).
    pub savepoint: bool,
}

/// A sink that commits under markers of its own (an exactly-once Kafka
/// sink's transactions): what recovery asks of it.
pub trait Committer {
    /// The prefix its commits are recorded under.
    fn prefix(&self) -> &str;

    /// The last commit: the state store instance and the checkpoint it
    /// names. Settles (fences) what an earlier process left open first.
    fn last_committed(&self) -> Result<Option<(String, u64)>, String>;

    /// Holds the prefix for this process while the value lives: a second
    /// process on it is refused.
    fn lock(&self) -> Result<Box<dyn Any>, String>;

    /// Aborts what an earlier run left open under `old_prefix`.
    fn abort_left_open(&self, old_prefix: &str) -> Result<(), String>;

    /// How long an open commit may stay open (a live swap's probation
    /// must end before it).
    fn transaction_timeout(&self) -> Duration;
}

/// The registry's lists: one line per kind, `"type" => Variant(Config)`.
macro_rules! registry {
    (
        sources { $($sname:literal => $svariant:ident($sconfig:ty),)* }
        sinks { $($kname:literal => $kvariant:ident($kconfig:ty),)* }
    ) => {
        /// The source connectors, by `type`; each owns its table's fields.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum SourceConnector {
            $(
                #[doc = concat!("`type = \"", $sname, "\"`.")]
                $svariant($sconfig),
            )*
        }

        impl SourceConnector {
            /// Every kind: its `type` and its own fields.
            pub const KINDS: &'static [(&'static str, &'static [&'static str])] =
                &[$(($sname, <$sconfig as SourceKind>::FIELDS),)*];

            /// Reads kind `kind` (an index into [`Self::KINDS`]) from its table.
            pub fn from_table(kind: usize, t: &Table<'_, '_>, f: &mut Fields) -> Result<Self, JobError> {
                let mut i = 0;
                $(
                    if kind == i {
                        return <$sconfig as SourceKind>::from_table(t, f).map(Self::$svariant);
                    }
                    i += 1;
                )*
                unreachable!("source kind {kind} of {i}")
            }

            /// Its `type`.
            pub fn kind(&self) -> &'static str {
                match self {
                    $(Self::$svariant(_) => $sname,)*
                }
            }

            /// What the engine asks of it.
            pub fn get(&self) -> &dyn Source {
                match self {
                    $(Self::$svariant(c) => c,)*
                }
            }
        }

        /// The job's sink (`[sink]`): the connector that `type` selects, with
        /// its own fields.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum SinkSpec {
            $(
                #[doc = concat!("`type = \"", $kname, "\"`.")]
                $kvariant($kconfig),
            )*
        }

        impl SinkSpec {
            /// Every kind: its `type` and its own fields.
            pub const KINDS: &'static [(&'static str, &'static [&'static str])] =
                &[$(($kname, <$kconfig as SinkKind>::FIELDS),)*];

            /// Reads kind `kind` (an index into [`Self::KINDS`]) from its
            /// table, in the job `job_name`.
            pub fn from_table(
                kind: usize,
                t: &Table<'_, '_>,
                f: &mut Fields,
                job_name: &str,
            ) -> Result<Self, JobError> {
                let mut i = 0;
                $(
                    if kind == i {
                        return <$kconfig as SinkKind>::from_table(t, f, job_name).map(Self::$kvariant);
                    }
                    i += 1;
                )*
                unreachable!("sink kind {kind} of {i}")
            }

            /// Its `type`.
            pub fn kind(&self) -> &'static str {
                match self {
                    $(Self::$kvariant(_) => $kname,)*
                }
            }

            /// What the engine asks of it.
            pub fn get(&self) -> &dyn Sink {
                match self {
                    $(Self::$kvariant(c) => c,)*
                }
            }
        }
    };
}

registry! {
    sources {
        "file" => File(FileSourceConfig),
        "stdin" => Stdin(StdinConfig),
        "generator" => Generator(GeneratorConfig),
        "kafka" => Kafka(KafkaSourceConfig),
    }
    sinks {
        "file" => File(FileSinkConfig),
        "stdout" => Stdout(StdoutConfig),
        "blackhole" => Blackhole(BlackholeConfig),
        "kafka" => Kafka(KafkaSinkConfig),
    }
}

/// A file of JSON lines read as a source like `like` reads its records (its
/// format and longest line): a shadow run's recorded input.
pub fn recorded_input(path: std::path::PathBuf, like: &SourceConnector) -> SourceConnector {
    let (format, max_line_size) = like
        .get()
        .json_lines()
        .unwrap_or((Format::Json, crate::connectors::file::DEFAULT_MAX_LINE_SIZE));
    SourceConnector::File(FileSourceConfig {
        path,
        format,
        max_line_size,
    })
}
