//! The Kafka source: each source subtask reads its share of a topic's
//! partitions (partition `p` goes to subtask `p % parallelism`) with a
//! consumer it assigns itself, never through the group protocol. The
//! checkpoint's offsets are the truth on restore; the consumer group, when
//! the job names one, only receives the offsets of completed checkpoints so
//! that lag can be watched with Kafka's tools. Only committed records of
//! transactional producers are read (`isolation.level = read_committed`).
//!
//! Event time is the record's timestamp. The watermark follows the lowest,
//! over the partitions that are not idle, of the highest timestamp read
//! from each ([`Partitions`]), so that a partition that lags behind holds
//! it back. A partition is idle once it has been at its end (the consumer
//! reported the end of the partition, and no record came since) for
//! `idle_timeout`, not counting the time the source stage spent blocked
//! sending downstream (back-pressure: [`SourceReader::blocked`], as Flink's
//! idleness clock pauses), and a partition whose broker stalls is never at
//! its end, so never idle for that. When every partition is idle the subtask is idle (it holds back no
//! operator downstream), but its watermark does not advance: it stays at the
//! lowest over its idle partitions, so a lagging partition's later records
//! are not made late (Flink's idleness). With `stop = latest`, a partition
//! read up to its end offset does not count at all.
//!
//! An offset out of range for its partition (records deleted by retention
//! below it, or a topic deleted and recreated with fewer records), whether
//! restored from a checkpoint or reached while reading, is handled as
//! `on_out_of_range` says: read on from the earliest or the latest offset
//! (with a warning), or fail in one line (the default). librdkafka runs
//! with `auto.offset.reset = error`, so that it reports such an offset
//! rather than silently resetting it; an offset that `start` placed, before
//! any record was read, goes to the earliest offset as before.

use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::Message;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use super::{create_field, CreateTopic, KafkaCluster};
use crate::model::config::{Fields, JobError, Table};
use crate::model::{Batch, KafkaPartition, SourcePosition, SourceReader};

/// How often new partitions are looked for, by default.
pub const DEFAULT_PARTITION_DISCOVERY: Duration = Duration::from_secs(10);

/// The longest a call to [`KafkaSource::next_batch`] waits for a first record.
const POLL_WAIT: Duration = Duration::from_millis(50);

/// The group id given to librdkafka when the job names none: it needs one
/// to commit, which the source then never does.
const NO_GROUP: &str = "weir-source-no-group";

/// Where a source starts reading when it is not restored (`start`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// `earliest`: the oldest record of each partition (the default).
    Earliest,
    /// `latest`: only records written after the job starts.
    Latest,
    /// `committed`: the offsets the consumer group committed (earliest
    /// where it committed none); needs `group`.
    Committed,
    /// `timestamp:<ms>`: the first record of each partition whose timestamp
    /// is at least this (ms since the Unix epoch).
    Timestamp(i64),
}

/// Where a source stops (`stop`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopAt {
    /// `never`: it keeps reading (the default).
    Never,
    /// `latest`: it ends once it has read up to the end offsets each of its
    /// partitions had when it started.
    Latest,
}

/// What the source does with a position that is out of range for its
/// partition (`on_out_of_range`): records below it were deleted (retention),
/// or it is past the end (the topic was deleted and recreated).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnOutOfRange {
    /// `earliest`: read on from the partition's earliest offset.
    Earliest,
    /// `latest`: read on from the partition's end.
    Latest,
    /// `fail`: fail, in one line naming the partition, the offset and the
    /// range (the default: a silent skip is data loss).
    Fail,
}

/// `[source] type = "kafka"`: read a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaSourceConfig {
    /// The cluster (`bootstrap`, `properties`, `connect_timeout`).
    pub cluster: KafkaCluster,
    /// `topic`: the topic read.
    pub topic: String,
    /// `group`: the consumer group that receives the offsets of completed
    /// checkpoints (for lag monitoring only), if any.
    pub group: Option<String>,
    /// `start`: where reading starts when the job is not restored.
    pub start: StartAt,
    /// `stop`: where reading ends.
    pub stop: StopAt,
    /// `parallelism`: the number of source subtasks (at least 1).
    pub parallelism: u32,
    /// `idle_timeout`: a partition with no record for this long does not
    /// hold the watermark back.
    pub idle_timeout: Option<Duration>,
    /// `partition_discovery`: how often new partitions are looked for.
    pub partition_discovery: Duration,
    /// `create`: create the topic when it does not exist.
    pub create: Option<CreateTopic>,
    /// `on_out_of_range`: what to do with a restored (or reached) offset
    /// that is out of range for its partition.
    pub on_out_of_range: OnOutOfRange,
}

impl KafkaSourceConfig {
    /// The fields of its table, besides those every source has (the
    /// cluster's, [`KafkaCluster::FIELDS`], included).
    pub const FIELDS: &'static [&'static str] = &[
        "bootstrap",
        "properties",
        "connect_timeout",
        "topic",
        "group",
        "start",
        "stop",
        "parallelism",
        "idle_timeout",
        "partition_discovery",
        "create",
        "on_out_of_range",
    ];

    /// Reads its fields of the `[source]` table.
    pub fn from_table(t: &Table<'_, '_>, f: &mut Fields) -> Result<Self, JobError> {
        let cluster = KafkaCluster::from_table(t, f, "source")?;
        let topic_field = f.take("topic");
        let topic_v = t.required(
            "topic",
            &topic_field,
            " (the Kafka topic to read, required for a `kafka` source)",
        )?;
        let topic = t.string("topic", topic_v)?.trim().to_string();
        if topic.is_empty() {
            return Err(t.fail(topic_v.span(), "`topic` must not be empty"));
        }
        let group_field = f.take("group");
        let group = t.opt(&group_field, |v| {
            let g = t.string("group", v)?.trim().to_string();
            if g.is_empty() {
                return Err(t.fail(v.span(), "`group` must not be empty"));
            }
            Ok(g)
        })?;
        let start_field = f.take("start");
        let start = t
            .opt(&start_field, |v| {
                let s = t.string("start", v)?;
                parse_start(s).map_err(|e| t.fail(v.span(), format!("`start`: {e}")))
            })?
            .unwrap_or(StartAt::Earliest);
        if let (StartAt::Committed, None, Some(v)) = (start, &group, &start_field) {
            return Err(t.fail(
                v.span(),
                "`start = \"committed\"` needs `group` (the consumer group whose committed offsets to start from)",
            ));
        }
        let stop = t
            .opt(&f.take("stop"), |v| {
                t.choice(
                    "stop",
                    v,
                    &[("never", StopAt::Never), ("latest", StopAt::Latest)],
                )
            })?
            .unwrap_or(StopAt::Never);
        let parallelism = t
            .opt(&f.take("parallelism"), |v| {
                t.int("parallelism", v, 1, u32::MAX as i64)
            })?
            .unwrap_or(1);
        let idle_timeout = t.opt(&f.take("idle_timeout"), |v| {
            let d = t.duration("idle_timeout", v)?;
            if d.is_zero() {
                return Err(t.fail(
                    v.span(),
                    "`idle_timeout` must be above 0 (leave it out: partitions are never idle)",
                ));
            }
            Ok(d)
        })?;
        let partition_discovery = t
            .opt(&f.take("partition_discovery"), |v| {
                let d = t.duration("partition_discovery", v)?;
                if d.is_zero() {
                    return Err(t.fail(v.span(), "`partition_discovery` must be above 0"));
                }
                Ok(d)
            })?
            .unwrap_or(DEFAULT_PARTITION_DISCOVERY);
        let create = create_field(t, f)?;
        let on_out_of_range = t
            .opt(&f.take("on_out_of_range"), |v| {
                t.choice(
                    "on_out_of_range",
                    v,
                    &[
                        ("earliest", OnOutOfRange::Earliest),
                        ("latest", OnOutOfRange::Latest),
                        ("fail", OnOutOfRange::Fail),
                    ],
                )
            })?
            .unwrap_or(OnOutOfRange::Fail);
        Ok(KafkaSourceConfig {
            cluster,
            topic,
            group,
            start,
            stop,
            parallelism,
            idle_timeout,
            partition_discovery,
            create,
            on_out_of_range,
        })
    }
}

/// Reads a `start` value.
fn parse_start(s: &str) -> Result<StartAt, String> {
    match s {
        "earliest" => Ok(StartAt::Earliest),
        "latest" => Ok(StartAt::Latest),
        "committed" => Ok(StartAt::Committed),
        _ => match s.strip_prefix("timestamp:") {
            Some(ms) => match ms.trim().parse::<i64>() {
                Ok(ms) if ms >= 0 => Ok(StartAt::Timestamp(ms)),
                _ => Err(format!(
                    "`timestamp:` must be followed by milliseconds since the Unix epoch, found `{}`",
                    s.escape_debug()
                )),
            },
            None => Err(format!(
                "must be `earliest`, `latest`, `committed` or `timestamp:<ms>`, found `{}`",
                s.escape_debug()
            )),
        },
    }
}

/// The offset of `topic`'s `partition` where reading would go on is out
/// of `[low, high]`, the offsets a consumer may read from: where reading
/// goes on under `choice`, with the warning to log, or the one line the
/// source fails with. `restored`: the offset comes from a checkpoint or
/// savepoint, else reading had got to it.
fn out_of_range(
    topic: &str,
    partition: i32,
    restored: bool,
    offset: i64,
    (low, high): (i64, i64),
    choice: OnOutOfRange,
) -> Result<(i64, String), String> {
    let what = if restored {
        format!("the restored offset {offset}")
    } else {
        format!("the next offset to read, {offset},")
    };
    let why = if offset < low {
        "records deleted by retention, or the topic was recreated"
    } else {
        "past the end: the topic was recreated, or its log truncated"
    };
    let found = format!(
        "Kafka topic `{topic}` partition {partition}: {what} is out of range [{low}, {high}) ({why})"
    );
    let (to, name) = match choice {
        OnOutOfRange::Earliest => (low, "earliest"),
        OnOutOfRange::Latest => (high, "latest"),
        OnOutOfRange::Fail => {
            return Err(format!(
                "{found}: set [source] on_out_of_range = \"earliest\" or \"latest\" to go on"
            ))
        }
    };
    Ok((
        to,
        format!("{found}; on_out_of_range = \"{name}\": reading on from offset {to}"),
    ))
}

/// One partition a subtask reads: where it is, and what it has seen.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PartitionState {
    partition: i32,
    /// Offset of the next record.
    next: i64,
    /// The highest record timestamp read (`i64::MIN`: none yet).
    max_timestamp: i64,
    /// Whether `next` is a position the job has read to: restored from a
    /// checkpoint or savepoint, or past a record it read. Out of range, such
    /// a position is handled as `on_out_of_range` says; one that `start` (or
    /// partition discovery) placed, before any record, goes to the
    /// partition's earliest offset, as it always did.
    read_to: bool,
    /// Whether the consumer reported the end of the partition, and no
    /// record came from it since.
    at_end: bool,
    /// Time since it reached its end, less time blocked downstream.
    quiet: Duration,
    /// With `stop = latest`: the end offset it had at open.
    end: Option<i64>,
    /// Whether it has been read up to its end (`stop = latest`).
    done: bool,
}

/// The partitions a subtask reads, and the watermark and idleness they
/// give: the bookkeeping of [`KafkaSource`], apart from the consumer (the
/// time that counts is passed in).
///
/// A partition is idle when it has been at its end (the consumer reported
/// the end of the partition, and no record came since) for `idle_timeout`
/// of the time that counts: the source's time less what it spent blocked
/// sending downstream (back-pressure), and a partition whose broker stalls
/// is never reported at its end, so it does not become idle for that.
#[derive(Debug, Clone)]
pub struct Partitions {
    parts: Vec<PartitionState>,
    idle_timeout: Option<Duration>,
}

impl Partitions {
    /// No partitions yet; a partition at its end for `idle_timeout` of
    /// polling does not hold the watermark back.
    pub fn new(idle_timeout: Option<Duration>) -> Self {
        Partitions {
            parts: Vec::new(),
            idle_timeout,
        }
    }

    /// Adds `partition`, whose next record is at `next`, with the highest
    /// timestamp read from it so far (`i64::MIN`: none); `end`: the offset
    /// it ends at (`stop = latest`); `read_to`: whether `next` is a position
    /// the job has read to (restored), rather than one `start` placed.
    pub fn add(
        &mut self,
        partition: i32,
        next: i64,
        max_timestamp: i64,
        end: Option<i64>,
        read_to: bool,
    ) {
        let done = end.is_some_and(|end| next >= end);
        self.parts.push(PartitionState {
            partition,
            next,
            max_timestamp,
            read_to,
            at_end: false,
            quiet: Duration::ZERO,
            end,
            done,
        });
        self.parts.sort_by_key(|p| p.partition);
    }

    /// Whether `partition` is one of these.
    pub fn contains(&self, partition: i32) -> bool {
        self.parts.iter().any(|p| p.partition == partition)
    }

    fn get_mut(&mut self, partition: i32) -> Option<&mut PartitionState> {
        self.parts.iter_mut().find(|p| p.partition == partition)
    }

    /// A record at `offset` with `timestamp` came from `partition`.
    /// Returns whether it is to be read: not when the partition is not one
    /// of these, or has been read up to its end. It ends the partition's
    /// idleness.
    pub fn record(&mut self, partition: i32, offset: i64, timestamp: i64) -> bool {
        let Some(p) = self.get_mut(partition) else {
            return false;
        };
        if p.done || p.end.is_some_and(|end| offset >= end) {
            p.done = true;
            return false;
        }
        p.next = p.next.max(offset + 1);
        p.max_timestamp = p.max_timestamp.max(timestamp);
        p.read_to = true;
        p.at_end = false;
        p.quiet = Duration::ZERO;
        if p.end.is_some_and(|end| p.next >= end) {
            p.done = true;
        }
        true
    }

    /// `partition` has been read up to the end of what it holds (its
    /// consumer position is `position`, if known, past the last record and
    /// any transaction markers): it is at its end, and with `stop = latest`
    /// it is done.
    pub fn reached_end(&mut self, partition: i32, position: Option<i64>) {
        if let Some(p) = self.get_mut(partition) {
            if let Some(at) = position {
                p.next = p.next.max(at);
            }
            p.at_end = true;
            if p.end.is_some() {
                p.done = true;
            }
        }
    }

    /// `spent` passed that counts (the source was not blocked downstream):
    /// quiet time for each partition at its end.
    pub fn polled(&mut self, spent: Duration) {
        for p in self.parts.iter_mut().filter(|p| p.at_end && !p.done) {
            p.quiet = p.quiet.saturating_add(spent);
        }
    }

    /// Reading of `partition` goes on at `next`, where the consumer was
    /// just placed after its offset was out of range: its position is
    /// exactly that (lower than before when the topic was recreated), and
    /// it is no longer at its end.
    pub fn reset(&mut self, partition: i32, next: i64) {
        if let Some(p) = self.get_mut(partition) {
            p.next = next;
            p.at_end = false;
            p.quiet = Duration::ZERO;
            p.done = p.end.is_some_and(|end| next >= end);
        }
    }

    /// The partitions not done: `(partition, next offset, whether the job
    /// has read to it)`.
    pub fn unfinished(&self) -> Vec<(i32, i64, bool)> {
        self.parts
            .iter()
            .filter(|p| !p.done)
            .map(|p| (p.partition, p.next, p.read_to))
            .collect()
    }

    /// Whether every partition has been read up to its end (true when
    /// there are none).
    pub fn all_done(&self) -> bool {
        self.parts.iter().all(|p| p.done)
    }

    /// The partitions that are done, for pausing them.
    pub fn done(&self) -> impl Iterator<Item = i32> + '_ {
        self.parts.iter().filter(|p| p.done).map(|p| p.partition)
    }

    fn is_idle(&self, p: &PartitionState) -> bool {
        p.done || (p.at_end && self.idle_timeout.is_some_and(|t| p.quiet >= t))
    }

    /// Whether no partition holds the watermark back: there are none, or
    /// each is idle (or done).
    pub fn idle(&self) -> bool {
        self.parts.iter().all(|p| self.is_idle(p))
    }

    /// The timestamp the watermark follows: the lowest, over the partitions
    /// that are not idle, of the highest timestamp read from each. When all
    /// are idle, the lowest over those not done: the subtask is idle (it
    /// holds back no one), but its watermark does not advance past what the
    /// partitions gave while one was active, since an idle partition may
    /// read again. When all are done (`stop = latest`), nothing more comes:
    /// the highest over all (`i64::MIN`: none).
    pub fn watermark_basis(&self) -> i64 {
        let lowest = |idle: bool| {
            self.parts
                .iter()
                .filter(|p| !p.done && (idle || !self.is_idle(p)))
                .map(|p| p.max_timestamp)
                .min()
        };
        lowest(false).or_else(|| lowest(true)).unwrap_or_else(|| {
            self.parts
                .iter()
                .map(|p| p.max_timestamp)
                .max()
                .unwrap_or(i64::MIN)
        })
    }

    /// Each partition's next offset and highest timestamp, by partition.
    pub fn positions(&self) -> Vec<KafkaPartition> {
        self.parts
            .iter()
            .map(|p| KafkaPartition {
                partition: p.partition,
                offset: p.next,
                max_timestamp: p.max_timestamp,
            })
            .collect()
    }

    /// Number of partitions.
    pub fn len(&self) -> usize {
        self.parts.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }
}

/// The consumer's context: reports failed offset commits.
struct SourceContext {
    topic: String,
}

impl ClientContext for SourceContext {
    /// librdkafka's errors that reach no call: the end of a partition is
    /// news, not an error, and an offset out of range is dealt with (and
    /// reported) by `next_batch`, which sees them too; the rest are logged
    /// as warnings, since librdkafka retries them and `next_batch` fails the
    /// job when the cluster stays away.
    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(
            error,
            KafkaError::PartitionEOF(_)
                | KafkaError::Global(
                    RDKafkaErrorCode::PartitionEOF
                        | RDKafkaErrorCode::AutoOffsetReset
                        | RDKafkaErrorCode::OffsetOutOfRange
                        | RDKafkaErrorCode::LogTruncation
                )
        ) {
            return;
        }
        tracing::warn!(topic = %self.topic, "Kafka: {error}: {reason}");
    }
}

impl ConsumerContext for SourceContext {
    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        if let Err(e) = result {
            tracing::warn!(topic = %self.topic, "cannot commit offsets to the consumer group: {e}");
        }
    }
}

/// One source subtask's reader of a Kafka topic.
pub struct KafkaSource {
    consumer: BaseConsumer<SourceContext>,
    topic: String,
    bootstrap: String,
    group: Option<String>,
    subtask: u32,
    parallelism: u32,
    batch_size: usize,
    connect_timeout: Duration,
    stop: StopAt,
    on_out_of_range: OnOutOfRange,
    /// The consumer reported an offset out of range (and stopped fetching
    /// that partition): which one is still to be found and dealt with.
    out_of_range: bool,
    partitions: Partitions,
    /// Partitions of the topic (all subtasks'), as last seen.
    partition_count: i32,
    partition_discovery: Duration,
    last_discovery: Instant,
    /// Since when the cluster has not answered, and why (the last error).
    unreachable: Option<(Instant, String)>,
    last_probe: Instant,
    /// When `next_batch` last counted time towards idleness.
    tick: Instant,
    /// Time the stage spent blocked sending downstream since then.
    blocked: Duration,
}

impl KafkaSource {
    /// Opens subtask `subtask` of `parallelism`: checks the topic exists
    /// (creating it if the config says so), assigns the subtask's
    /// partitions at the `restored` offsets (a checkpoint's position), or
    /// where `start` says when there is none.
    pub fn open(
        config: &KafkaSourceConfig,
        subtask: u32,
        parallelism: u32,
        batch_size: usize,
        restored: Option<&SourcePosition>,
    ) -> Result<KafkaSource, String> {
        let topic = config.topic.clone();
        let cluster = &config.cluster;
        let restored = match restored {
            None => None,
            Some(SourcePosition::Kafka {
                topic: t,
                partitions,
            }) if *t == topic => Some(partitions.as_slice()),
            Some(SourcePosition::Kafka { topic: t, .. }) => {
                return Err(format!(
                    "the checkpoint was taken reading Kafka topic `{t}`, but the job's [source] reads topic `{topic}` (start without restoring, or read `{t}`)"
                ))
            }
            Some(other) => {
                return Err(format!(
                    "the checkpoint was taken reading a {} source, but the job's [source] reads Kafka topic `{topic}` (start without restoring)",
                    other.kind()
                ))
            }
        };
        let count = cluster.ensure_topic(&topic, config.create, "[source]")?;
        let consumer: BaseConsumer<SourceContext> = cluster
            .client_config()
            .set(
                "group.id",
                config.group.clone().unwrap_or_else(|| NO_GROUP.to_string()),
            )
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("isolation.level", "read_committed")
            .set("enable.partition.eof", "true")
            // An offset out of range is reported, and dealt with here as
            // `on_out_of_range` says, never silently reset.
            .set("auto.offset.reset", "error")
            .set("allow.auto.create.topics", "false")
            .create_with_context(SourceContext {
                topic: topic.clone(),
            })
            .map_err(|e| {
                format!(
                    "cannot create a Kafka consumer for `{}`: {e}",
                    cluster.bootstrap
                )
            })?;
        let parallelism = parallelism.max(1);
        let mine: Vec<i32> = (0..count)
            .filter(|p| (*p as u32) % parallelism == subtask)
            .collect();
        let timeout = cluster.connect_timeout;
        let failed = |what: &str, e: KafkaError| {
            format!(
                "cannot {what} of Kafka topic `{topic}` at `{}`: {e}",
                cluster.bootstrap
            )
        };
        // Where each partition starts: an offset, or where `start` says;
        // and whether it is restored.
        let mut starts: Vec<(i32, Offset, i64, bool)> = Vec::new();
        let pending: Vec<i32> = match restored {
            // The checkpoint is the truth; a partition added since it was
            // taken is read from its earliest offset.
            Some(saved) => {
                for &p in &mine {
                    match saved.iter().find(|s| s.partition == p) {
                        Some(s) => {
                            starts.push((p, Offset::Offset(s.offset), s.max_timestamp, true))
                        }
                        None => starts.push((p, Offset::Beginning, i64::MIN, false)),
                    }
                }
                Vec::new()
            }
            None => mine.clone(),
        };
        if !pending.is_empty() {
            match config.start {
                StartAt::Earliest => starts.extend(
                    pending
                        .iter()
                        .map(|&p| (p, Offset::Beginning, i64::MIN, false)),
                ),
                StartAt::Latest => {
                    starts.extend(pending.iter().map(|&p| (p, Offset::End, i64::MIN, false)))
                }
                StartAt::Committed => {
                    let mut tpl = TopicPartitionList::new();
                    for &p in &pending {
                        tpl.add_partition(&topic, p);
                    }
                    let committed = consumer
                        .committed_offsets(tpl, timeout)
                        .map_err(|e| failed("read the group's committed offsets", e))?;
                    for &p in &pending {
                        let at = match committed.find_partition(&topic, p).map(|e| e.offset()) {
                            Some(Offset::Offset(n)) => Offset::Offset(n),
                            _ => Offset::Beginning,
                        };
                        starts.push((p, at, i64::MIN, false));
                    }
                }
                StartAt::Timestamp(ms) => {
                    let mut tpl = TopicPartitionList::new();
                    for &p in &pending {
                        tpl.add_partition_offset(&topic, p, Offset::Offset(ms))
                            .map_err(|e| failed("look up offsets by time", e))?;
                    }
                    let found = consumer
                        .offsets_for_times(tpl, timeout)
                        .map_err(|e| failed("look up offsets by time", e))?;
                    for &p in &pending {
                        let at = match found.find_partition(&topic, p).map(|e| e.offset()) {
                            Some(Offset::Offset(n)) => Offset::Offset(n),
                            _ => Offset::End,
                        };
                        starts.push((p, at, i64::MIN, false));
                    }
                }
            }
        }
        // Beginning and End are made offsets, so that a checkpoint taken
        // before a partition's first record still says where it starts. An
        // offset out of its partition's range is dealt with here: a
        // restored one as `on_out_of_range` says; one from the group's
        // commits goes to the earliest offset, as librdkafka's reset did.
        let now = Instant::now();
        let mut partitions = Partitions::new(config.idle_timeout);
        let mut assignment = TopicPartitionList::new();
        for (p, at, max_timestamp, restored) in starts {
            let (low, high) = consumer
                .fetch_watermarks(&topic, p, timeout)
                .map_err(|e| failed(&format!("read the offsets of partition {p}"), e))?;
            let next = match at {
                Offset::Offset(n) if (low..=high).contains(&n) => n,
                Offset::Offset(n) if restored => {
                    let (to, warning) =
                        out_of_range(&topic, p, true, n, (low, high), config.on_out_of_range)?;
                    tracing::warn!(topic = %topic, partition = p, offset = n, low, high, "{warning}");
                    to
                }
                Offset::Offset(n) => {
                    tracing::info!(
                        topic = %topic,
                        partition = p,
                        "Kafka topic `{topic}` partition {p}: the start offset {n} is out of range [{low}, {high}); reading from the earliest offset, {low}"
                    );
                    low
                }
                Offset::End => high,
                _ => low,
            };
            let end = (config.stop == StopAt::Latest).then_some(high);
            partitions.add(p, next, max_timestamp, end, restored);
            assignment
                .add_partition_offset(&topic, p, Offset::Offset(next))
                .map_err(|e| failed("assign partitions", e))?;
        }
        consumer
            .assign(&assignment)
            .map_err(|e| failed("assign partitions", e))?;
        tracing::info!(
            topic = %topic,
            subtask,
            partitions = ?partitions.positions().iter().map(|p| (p.partition, p.offset)).collect::<Vec<_>>(),
            "reading Kafka"
        );
        let source = KafkaSource {
            consumer,
            topic,
            bootstrap: cluster.bootstrap.clone(),
            group: config.group.clone(),
            subtask,
            parallelism,
            batch_size: batch_size.max(1),
            connect_timeout: timeout,
            stop: config.stop,
            on_out_of_range: config.on_out_of_range,
            out_of_range: false,
            partitions,
            partition_count: count,
            partition_discovery: config.partition_discovery,
            last_discovery: now,
            unreachable: None,
            last_probe: now,
            tick: now,
            blocked: Duration::ZERO,
        };
        source.pause_done();
        Ok(source)
    }

    /// The partitions this subtask reads, by number.
    pub fn partitions(&self) -> Vec<i32> {
        self.partitions
            .positions()
            .iter()
            .map(|p| p.partition)
            .collect()
    }

    /// Stops fetching the partitions that are done (`stop = latest`).
    fn pause_done(&self) {
        let mut tpl = TopicPartitionList::new();
        for p in self.partitions.done() {
            tpl.add_partition(&self.topic, p);
        }
        if tpl.count() > 0 {
            let _ = self.consumer.pause(&tpl);
        }
    }

    fn lost(&self, e: impl std::fmt::Display) -> String {
        format!("lost Kafka at `{}`: {e}", self.bootstrap)
    }

    fn fatal(&self, e: impl std::fmt::Display) -> String {
        format!(
            "cannot read Kafka topic `{}` at `{}`: {e}",
            self.topic, self.bootstrap
        )
    }

    /// The cluster answered: it is not (or no longer) unreachable.
    fn reached(&mut self) {
        if let Some((since, _)) = self.unreachable.take() {
            tracing::info!(
                topic = %self.topic,
                "Kafka at `{}` answers again after {}",
                self.bootstrap,
                humantime::format_duration(Duration::from_millis(since.elapsed().as_millis() as u64))
            );
        }
    }

    /// A transient error: the cluster did not answer. Fails once it has not
    /// answered for `connect_timeout`.
    fn transient(&mut self, e: String) -> Result<(), String> {
        let now = Instant::now();
        match &mut self.unreachable {
            Some((since, last)) => {
                *last = e;
                if now.duration_since(*since) >= self.connect_timeout {
                    let last = last.clone();
                    return Err(self.lost(format!(
                        "no answer for {} (`connect_timeout`): {last}",
                        humantime::format_duration(self.connect_timeout)
                    )));
                }
            }
            None => {
                tracing::warn!(topic = %self.topic, "Kafka at `{}`: {e}; retrying", self.bootstrap);
                self.unreachable = Some((now, e));
                self.last_probe = now;
            }
        }
        Ok(())
    }

    /// The topic's metadata, as a check that the cluster answers and for
    /// partition discovery: its partition count.
    fn probe(&mut self, timeout: Duration) -> Result<Option<i32>, String> {
        match self.consumer.fetch_metadata(Some(&self.topic), timeout) {
            Ok(metadata) => {
                self.reached();
                let Some(t) = metadata.topics().iter().find(|t| t.name() == self.topic) else {
                    return Err(self.fatal("the topic no longer exists"));
                };
                match t.error().map(RDKafkaErrorCode::from) {
                    None => Ok(Some(t.partitions().len() as i32)),
                    Some(
                        RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic,
                    ) => Err(self.fatal("the topic no longer exists")),
                    Some(code) => {
                        self.transient(format!("cannot describe the topic: {code}"))?;
                        Ok(None)
                    }
                }
            }
            Err(e) => {
                self.transient(e.to_string())?;
                Ok(None)
            }
        }
    }

    /// Checks whether the cluster answers again while it is unreachable
    /// (at most once a second), and looks for new partitions every
    /// `partition_discovery`.
    fn housekeeping(&mut self) -> Result<(), String> {
        if self.unreachable.is_some() && self.last_probe.elapsed() >= Duration::from_secs(1) {
            self.last_probe = Instant::now();
            self.probe(Duration::from_millis(500))?;
        }
        // While the cluster is away, the probe above stands for discovery.
        if self.stop == StopAt::Never
            && self.unreachable.is_none()
            && self.last_discovery.elapsed() >= self.partition_discovery
        {
            self.last_discovery = Instant::now();
            if let Some(count) = self.probe(Duration::from_secs(5).min(self.connect_timeout))? {
                self.discovered(count)?;
            }
        }
        Ok(())
    }

    /// The topic has `count` partitions: assigns the new ones that belong
    /// to this subtask, from their earliest offset.
    fn discovered(&mut self, count: i32) -> Result<(), String> {
        if count <= self.partition_count {
            return Ok(());
        }
        let new: Vec<i32> = (self.partition_count..count)
            .filter(|p| (*p as u32) % self.parallelism == self.subtask)
            .filter(|p| !self.partitions.contains(*p))
            .collect();
        self.partition_count = count;
        if new.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        for &p in &new {
            let (low, _) = self
                .consumer
                .fetch_watermarks(&self.topic, p, self.connect_timeout)
                .map_err(|e| {
                    self.fatal(format!("cannot read the offsets of new partition {p}: {e}"))
                })?;
            tpl.add_partition_offset(&self.topic, p, Offset::Offset(low))
                .map_err(|e| self.fatal(e))?;
            self.partitions.add(p, low, i64::MIN, None, false);
        }
        self.consumer
            .incremental_assign(&tpl)
            .map_err(|e| self.fatal(format!("cannot assign new partitions {new:?}: {e}")))?;
        tracing::info!(
            topic = %self.topic,
            subtask = self.subtask,
            "Kafka topic now has {count} partitions; reading new partitions {new:?} from their earliest offset"
        );
        Ok(())
    }

    /// The consumer reported an offset out of range, and stopped fetching
    /// that partition (librdkafka's `auto.offset.reset = error`; its report
    /// does not say which partition): finds the partitions whose next
    /// offset is out of their range, and places each where
    /// `on_out_of_range` says (a partition that has read nothing since
    /// `start` placed it: at its earliest offset, as before), its position
    /// exactly there; or fails. When none is out of range (the range moved
    /// since, or the consumer had fetched ahead of what was read), every
    /// partition not done is placed again at its next offset, so that the
    /// one that stopped reads on. A cluster that does not answer leaves it
    /// for the next call.
    fn settle_out_of_range(&mut self) -> Result<(), String> {
        let timeout = Duration::from_secs(5).min(self.connect_timeout);
        let unfinished = self.partitions.unfinished();
        let mut moves: Vec<(i32, i64)> = Vec::new();
        for &(p, next, read_to) in &unfinished {
            let (low, high) = match self.consumer.fetch_watermarks(&self.topic, p, timeout) {
                Ok(marks) => marks,
                Err(e) => {
                    return self.transient(format!("cannot read the offsets of partition {p}: {e}"))
                }
            };
            if (low..=high).contains(&next) {
                continue;
            }
            let to = if read_to {
                let (to, warning) = out_of_range(
                    &self.topic,
                    p,
                    false,
                    next,
                    (low, high),
                    self.on_out_of_range,
                )?;
                tracing::warn!(topic = %self.topic, partition = p, offset = next, low, high, "{warning}");
                to
            } else {
                tracing::info!(
                    topic = %self.topic,
                    partition = p,
                    "Kafka topic `{}` partition {p}: the start offset {next} is out of range [{low}, {high}); reading from the earliest offset, {low}",
                    self.topic
                );
                low
            };
            moves.push((p, to));
        }
        if moves.is_empty() {
            tracing::info!(
                topic = %self.topic,
                "Kafka reported an offset out of range, but no partition's next offset is: reading on from each"
            );
            moves = unfinished.iter().map(|&(p, next, _)| (p, next)).collect();
        }
        let mut off = TopicPartitionList::new();
        let mut on = TopicPartitionList::new();
        for &(p, to) in &moves {
            off.add_partition(&self.topic, p);
            on.add_partition_offset(&self.topic, p, Offset::Offset(to))
                .map_err(|e| self.fatal(e))?;
        }
        self.consumer
            .incremental_unassign(&off)
            .map_err(|e| self.fatal(format!("cannot unassign partitions: {e}")))?;
        self.consumer
            .incremental_assign(&on)
            .map_err(|e| self.fatal(format!("cannot assign partitions again: {e}")))?;
        for &(p, to) in &moves {
            self.partitions.reset(p, to);
        }
        self.out_of_range = false;
        self.pause_done();
        Ok(())
    }

    /// The consumer's position in `partition`, if it knows one.
    fn consumer_position(&self, partition: i32) -> Option<i64> {
        let positions = self.consumer.position().ok()?;
        match positions.find_partition(&self.topic, partition)?.offset() {
            Offset::Offset(n) => Some(n),
            _ => None,
        }
    }
}

/// Whether a consumer error is the cluster being away for a while (librdkafka
/// reconnects), rather than something that retrying will not mend.
fn is_transient(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        code,
        C::BrokerTransportFailure
            | C::AllBrokersDown
            | C::Resolve
            | C::OperationTimedOut
            | C::RequestTimedOut
            | C::NetworkException
            | C::LeaderNotAvailable
            | C::NotLeaderForPartition
            | C::ReplicaNotAvailable
            | C::BrokerNotAvailable
            | C::NotCoordinator
            | C::CoordinatorNotAvailable
            | C::CoordinatorLoadInProgress
            | C::NotEnoughReplicas
            | C::NotEnoughReplicasAfterAppend
            | C::KafkaStorageError
            | C::FencedLeaderEpoch
            | C::UnknownLeaderEpoch
            | C::OffsetNotAvailable
            | C::PreferredLeaderNotAvailable
            | C::UnstableOffsetCommit
            | C::TimedOutQueue
    )
}

impl SourceReader for KafkaSource {
    fn next_batch(&mut self, offsets: &mut Vec<u64>) -> Result<Option<Batch>, String> {
        // A subtask reading up to the end offsets ends once it has read them
        // (at once when it has no partition); otherwise it keeps waiting for
        // records, and for new partitions.
        if self.stop == StopAt::Latest && self.partitions.all_done() {
            return Ok(None);
        }
        // The time since the last call counts towards the idleness of the
        // partitions at their end, less what the stage spent blocked
        // downstream (back-pressure): a partition is idle only when it had
        // nothing to read.
        let now = Instant::now();
        let spent = now
            .saturating_duration_since(self.tick)
            .saturating_sub(std::mem::take(&mut self.blocked));
        self.tick = now;
        self.partitions.polled(spent);
        self.housekeeping()?;
        let mut batch = Batch::with_capacity(self.batch_size.min(1024), 0);
        let mut wait = POLL_WAIT;
        let mut newly_done = false;
        while batch.len() < self.batch_size {
            let Some(result) = self.consumer.poll(wait) else {
                break;
            };
            wait = Duration::ZERO;
            match result {
                Ok(m) => {
                    let partition = m.partition();
                    let offset = m.offset();
                    let timestamp = m.timestamp().to_millis().unwrap_or(0);
                    if self.partitions.record(partition, offset, timestamp) {
                        batch.push(m.key(), m.payload().unwrap_or_default(), timestamp);
                        offsets.push(offset as u64);
                    }
                    newly_done |= self.stop == StopAt::Latest;
                    if self.unreachable.is_some() {
                        self.reached();
                    }
                }
                Err(KafkaError::PartitionEOF(partition)) => {
                    let at = self.consumer_position(partition);
                    self.partitions.reached_end(partition, at);
                    newly_done |= self.stop == StopAt::Latest;
                    if self.unreachable.is_some() {
                        self.reached();
                    }
                }
                Err(KafkaError::MessageConsumption(
                    RDKafkaErrorCode::AutoOffsetReset
                    | RDKafkaErrorCode::OffsetOutOfRange
                    | RDKafkaErrorCode::LogTruncation,
                )) => {
                    self.out_of_range = true;
                    break;
                }
                Err(KafkaError::MessageConsumption(code)) if is_transient(code) => {
                    self.transient(code.to_string())?;
                    break;
                }
                Err(e) => return Err(self.fatal(e)),
            }
        }
        if newly_done {
            self.pause_done();
        }
        if self.out_of_range {
            self.settle_out_of_range()?;
        }
        if batch.is_empty() && self.stop == StopAt::Latest && self.partitions.all_done() {
            return Ok(None);
        }
        Ok(Some(batch))
    }

    fn position(&self) -> Option<SourcePosition> {
        Some(SourcePosition::Kafka {
            topic: self.topic.clone(),
            partitions: self.partitions.positions(),
        })
    }

    fn watermark_basis(&self) -> Option<i64> {
        Some(self.partitions.watermark_basis())
    }

    fn blocked(&mut self, spent: Duration) {
        self.blocked += spent;
    }

    fn idle(&self) -> bool {
        self.partitions.idle()
    }

    fn checkpoint_complete(&mut self, id: u64, position: &SourcePosition) {
        if self.group.is_none() {
            return;
        }
        let SourcePosition::Kafka { topic, partitions } = position else {
            return;
        };
        if *topic != self.topic {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for p in partitions
            .iter()
            .filter(|p| self.partitions.contains(p.partition))
        {
            if let Err(e) = tpl.add_partition_offset(topic, p.partition, Offset::Offset(p.offset)) {
                tracing::warn!(topic = %topic, checkpoint_id = id, "cannot commit offsets: {e}");
                return;
            }
        }
        if tpl.count() == 0 {
            return;
        }
        if let Err(e) = self.consumer.commit(&tpl, CommitMode::Async) {
            tracing::warn!(
                topic = %topic,
                checkpoint_id = id,
                "cannot commit checkpoint {id}'s offsets to the consumer group: {e}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::config::JobFile;

    /// Reads `body` as a `[source]` table of a job file (`type` aside);
    /// fields left over are an error, as the job parser makes them.
    fn parse(body: &str) -> Result<KafkaSourceConfig, String> {
        let cx = JobFile {
            file: "/jobs/job.toml".into(),
            text: body,
            base_dir: "/jobs".into(),
        };
        let mut f: Fields = toml::from_str(body).map_err(|e| cx.toml_error(&e).to_string())?;
        let t = cx.section("source", 0..0);
        let config = KafkaSourceConfig::from_table(&t, &mut f).map_err(|e| e.to_string())?;
        f.check(&t, "a `kafka` source", &[], &[])
            .map_err(|e| e.to_string())?;
        Ok(config)
    }

    const MINIMAL: &str = "bootstrap = \"127.0.0.1:9092\"\ntopic = \"events\"\n";

    #[test]
    fn fields_cover_the_cluster_fields() {
        for f in KafkaCluster::FIELDS {
            assert!(KafkaSourceConfig::FIELDS.contains(f), "{f}");
        }
    }

    #[test]
    fn parses_defaults_and_every_field() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(
            c,
            KafkaSourceConfig {
                cluster: KafkaCluster {
                    bootstrap: "127.0.0.1:9092".into(),
                    properties: Default::default(),
                    connect_timeout: super::super::DEFAULT_CONNECT_TIMEOUT,
                },
                topic: "events".into(),
                group: None,
                start: StartAt::Earliest,
                stop: StopAt::Never,
                parallelism: 1,
                idle_timeout: None,
                partition_discovery: DEFAULT_PARTITION_DISCOVERY,
                create: None,
                on_out_of_range: OnOutOfRange::Fail,
            }
        );
        let c = parse(&format!(
            "{MINIMAL}group = \"g\"\nstart = \"committed\"\nstop = \"latest\"\nparallelism = 3\n\
             idle_timeout = \"5s\"\npartition_discovery = \"250ms\"\n\
             create = {{ partitions = 3, replication = 1 }}\nconnect_timeout = \"2s\"\n\
             properties = {{ \"fetch.max.bytes\" = \"1048576\" }}\non_out_of_range = \"earliest\"\n"
        ))
        .unwrap();
        assert_eq!(c.on_out_of_range, OnOutOfRange::Earliest);
        assert_eq!(c.group.as_deref(), Some("g"));
        assert_eq!(c.start, StartAt::Committed);
        assert_eq!(c.stop, StopAt::Latest);
        assert_eq!(c.parallelism, 3);
        assert_eq!(c.idle_timeout, Some(Duration::from_secs(5)));
        assert_eq!(c.partition_discovery, Duration::from_millis(250));
        assert_eq!(
            c.create,
            Some(CreateTopic {
                partitions: 3,
                replication: 1
            })
        );
        assert_eq!(c.cluster.connect_timeout, Duration::from_secs(2));
        assert_eq!(c.cluster.properties["fetch.max.bytes"], "1048576");
        for (start, want) in [
            ("earliest", StartAt::Earliest),
            ("latest", StartAt::Latest),
            (
                "timestamp:1700000000000",
                StartAt::Timestamp(1_700_000_000_000),
            ),
            ("timestamp:0", StartAt::Timestamp(0)),
        ] {
            let c = parse(&format!("{MINIMAL}start = \"{start}\"\n")).unwrap();
            assert_eq!(c.start, want, "{start}");
        }
        for (choice, want) in [
            ("earliest", OnOutOfRange::Earliest),
            ("latest", OnOutOfRange::Latest),
            ("fail", OnOutOfRange::Fail),
        ] {
            let c = parse(&format!("{MINIMAL}on_out_of_range = \"{choice}\"\n")).unwrap();
            assert_eq!(c.on_out_of_range, want, "{choice}");
        }
    }

    #[test]
    fn bad_values_are_one_line_errors_naming_the_field() {
        for (body, want) in [
            (
                "bootstrap = \"b:1\"\n".to_string(),
                "/jobs/job.toml:1: source: missing `topic` (the Kafka topic to read",
            ),
            (
                "topic = \"t\"\n".to_string(),
                "/jobs/job.toml:1: source: missing `bootstrap`",
            ),
            (
                "bootstrap = \"b:1\"\ntopic = \" \"\n".to_string(),
                "/jobs/job.toml:2: source: `topic` must not be empty",
            ),
            (
                "bootstrap = \"b:1\"\ntopic = 5\n".to_string(),
                "/jobs/job.toml:2: source: `topic` must be a string, found integer 5",
            ),
            (
                format!("{MINIMAL}start = \"committed\"\n"),
                "/jobs/job.toml:3: source: `start = \"committed\"` needs `group`",
            ),
            (
                format!("{MINIMAL}start = \"newest\"\n"),
                "/jobs/job.toml:3: source: `start`: must be `earliest`, `latest`, `committed` or `timestamp:<ms>`, found `newest`",
            ),
            (
                format!("{MINIMAL}start = \"timestamp:soon\"\n"),
                "/jobs/job.toml:3: source: `start`: `timestamp:` must be followed by milliseconds since the Unix epoch, found `timestamp:soon`",
            ),
            (
                format!("{MINIMAL}start = \"timestamp:-5\"\n"),
                "`timestamp:` must be followed by milliseconds",
            ),
            (
                format!("{MINIMAL}stop = \"earliest\"\n"),
                "/jobs/job.toml:3: source: `stop` must be one of `never`, `latest`, found `earliest`",
            ),
            (
                format!("{MINIMAL}parallelism = 0\n"),
                "/jobs/job.toml:3: source: `parallelism` must be between 1 and 4294967295, found 0",
            ),
            (
                format!("{MINIMAL}idle_timeout = \"5\"\n"),
                "/jobs/job.toml:3: source: `idle_timeout`: invalid duration `5`: missing unit",
            ),
            (
                format!("{MINIMAL}idle_timeout = \"0s\"\n"),
                "/jobs/job.toml:3: source: `idle_timeout` must be above 0",
            ),
            (
                format!("{MINIMAL}partition_discovery = \"0s\"\n"),
                "/jobs/job.toml:3: source: `partition_discovery` must be above 0",
            ),
            (
                format!("{MINIMAL}group = \"\"\n"),
                "/jobs/job.toml:3: source: `group` must not be empty",
            ),
            (
                format!("{MINIMAL}create = {{ partitions = 0 }}\n"),
                "/jobs/job.toml:3: source: `create`: `partitions` must be an integer from 1",
            ),
            (
                format!("{MINIMAL}on_out_of_range = \"skip\"\n"),
                "/jobs/job.toml:3: source: `on_out_of_range` must be one of `earliest`, `latest`, `fail`, found `skip`",
            ),
            (
                format!("{MINIMAL}on_out_of_range = true\n"),
                "/jobs/job.toml:3: source: `on_out_of_range` must be a string",
            ),
            (
                format!("{MINIMAL}colour = \"blue\"\n"),
                "/jobs/job.toml:3: unknown field `colour`",
            ),
        ] {
            let e = parse(&body).unwrap_err();
            assert!(e.starts_with(want) || e.contains(want), "{body:?}: {e}");
            assert!(!e.contains('\n'), "{e:?}");
        }
    }

    /// A step of a [`Partitions`] scenario.
    #[derive(Debug, Clone, Copy)]
    enum Step {
        /// A record of partition `.0` with timestamp `.1` (at the next offset).
        Rec(i32, i64),
        /// The consumer reports partition `.0`'s end.
        End(i32),
        /// This many ms pass that count (the source is not blocked).
        Poll(u64),
        /// An hour passes without a poll: the source thread is blocked
        /// sending downstream (back-pressure), or busy elsewhere. Nothing
        /// of it reaches the partitions.
        Away,
        /// Expected: whether the subtask is idle, and the watermark basis.
        Is(bool, i64),
    }

    /// Runs `steps` over partitions `(partition, highest timestamp read)`
    /// with `idle_timeout` (ms), checking each `Is`.
    fn scenario(name: &str, idle_timeout: Option<u64>, parts: &[(i32, i64)], steps: &[Step]) {
        let mut p = Partitions::new(idle_timeout.map(Duration::from_millis));
        for &(partition, max_timestamp) in parts {
            p.add(partition, 0, max_timestamp, None, false);
        }
        let mut offsets = std::collections::BTreeMap::new();
        for (i, step) in steps.iter().enumerate() {
            match *step {
                Step::Rec(partition, ts) => {
                    let offset = offsets.entry(partition).or_insert(0);
                    assert!(p.record(partition, *offset, ts), "{name}: step {i}");
                    *offset += 1;
                }
                Step::End(partition) => p.reached_end(partition, None),
                Step::Poll(ms) => p.polled(Duration::from_millis(ms)),
                Step::Away => {}
                Step::Is(idle, basis) => assert_eq!(
                    (p.idle(), p.watermark_basis()),
                    (idle, basis),
                    "{name}: step {i} ({step:?})"
                ),
            }
        }
    }

    #[test]
    fn idleness_counts_time_at_the_end_not_blocked_and_never_advances_the_watermark() {
        use Step::*;
        // Name, idle_timeout (ms), partitions with their highest timestamps,
        // steps.
        type Case<'a> = (&'a str, Option<u64>, &'a [(i32, i64)], &'a [Step]);
        let cases: &[Case] = &[
            (
                "the watermark follows the slowest partition; an older record does not lower it",
                Some(1000),
                &[(0, i64::MIN), (1, 500)],
                &[
                    Is(false, i64::MIN),
                    Rec(0, 100),
                    Rec(0, 300),
                    Is(false, 300),
                    Rec(0, 50),
                    Is(false, 300),
                    Rec(1, 200),
                    Is(false, 300),
                    Rec(0, 900),
                    Is(false, 500),
                ],
            ),
            (
                "all idle: the subtask is idle, the watermark does not advance",
                Some(1000),
                &[(0, i64::MIN), (1, i64::MIN)],
                &[
                    Rec(0, 9000),
                    Rec(1, 100),
                    End(0),
                    End(1),
                    Poll(999),
                    Is(false, 100),
                    Poll(1),
                    Is(true, 100),
                    Poll(60_000),
                    Is(true, 100),
                ],
            ),
            (
                "one partition idle: the other one leads",
                Some(1000),
                &[(0, i64::MIN), (1, i64::MIN)],
                &[
                    Rec(0, 9000),
                    Rec(1, 100),
                    End(1),
                    Poll(1000),
                    Is(false, 9000),
                    // It has nothing new, and the other goes idle too: the
                    // lowest over all again, below what was sent (held back
                    // by the stage's monotonic watermark).
                    End(0),
                    Poll(1000),
                    Is(true, 100),
                ],
            ),
            (
                "back-pressure: time without polling does not make a partition idle",
                Some(1000),
                &[(0, i64::MIN), (1, i64::MIN)],
                &[
                    Rec(0, 9000),
                    Rec(1, 100),
                    End(0),
                    End(1),
                    Poll(400),
                    Away,
                    Is(false, 100),
                    Poll(599),
                    Away,
                    Is(false, 100),
                    Poll(1),
                    Is(true, 100),
                ],
            ),
            (
                "a stalled broker: polling without the end of the partition is not idleness",
                Some(1000),
                &[(0, i64::MIN), (1, i64::MIN)],
                &[
                    Rec(0, 9000),
                    Rec(1, 100),
                    Poll(3_600_000),
                    Is(false, 100),
                    // Partition 0 was at its end, partition 1 was not.
                    End(0),
                    Poll(3_600_000),
                    Is(false, 100),
                ],
            ),
            (
                "quiet time counts from the end of the partition",
                Some(1000),
                &[(0, 5)],
                &[
                    Poll(5000),
                    End(0),
                    Poll(999),
                    Is(false, 5),
                    Poll(1),
                    Is(true, 5),
                ],
            ),
            (
                "a record ends idleness, and quiet time starts again",
                Some(1000),
                &[(0, i64::MIN), (1, i64::MIN)],
                &[
                    Rec(0, 300),
                    Rec(1, 100),
                    End(1),
                    Poll(1000),
                    Is(false, 300),
                    Rec(1, 200),
                    Is(false, 200),
                    End(1),
                    Poll(999),
                    Is(false, 200),
                    Poll(1),
                    Is(false, 300),
                    // A second report of the end (past transaction markers)
                    // does not start it again.
                    End(1),
                    Is(false, 300),
                ],
            ),
            (
                "without idle_timeout a partition is never idle",
                None,
                &[(0, i64::MIN), (1, i64::MIN)],
                &[
                    Rec(0, 100),
                    End(0),
                    End(1),
                    Poll(3_600_000 * 24),
                    Is(false, i64::MIN),
                ],
            ),
            (
                "no partitions: idle, no watermark",
                Some(1000),
                &[],
                &[Is(true, i64::MIN)],
            ),
        ];
        for (name, idle_timeout, parts, steps) in cases {
            scenario(name, *idle_timeout, parts, steps);
        }
    }

    #[test]
    fn partitions_positions_and_resets() {
        let mut p = Partitions::new(Some(Duration::from_secs(1)));
        p.add(1, 7, 500, None, true);
        p.add(0, 0, i64::MIN, None, false);
        assert_eq!(p.unfinished(), vec![(0, 0, false), (1, 7, true)]);
        assert!(p.record(0, 0, 100));
        assert!(p.record(0, 1, 300));
        assert!(p.record(1, 7, 1000));
        // Records of partitions it does not read are refused.
        assert!(!p.record(7, 0, 5));
        assert!(!p.contains(7));
        assert_eq!(p.unfinished(), vec![(0, 2, true), (1, 8, true)]);
        assert_eq!(
            p.positions(),
            vec![
                KafkaPartition {
                    partition: 0,
                    offset: 2,
                    max_timestamp: 300
                },
                KafkaPartition {
                    partition: 1,
                    offset: 8,
                    max_timestamp: 1000
                },
            ]
        );
        // A topic recreated with fewer records: the position is exactly
        // where reading goes on, lower than before, and follows the
        // records read from there.
        p.reached_end(1, Some(8));
        p.polled(Duration::from_secs(5));
        assert_eq!(p.watermark_basis(), 300, "partition 1 is idle");
        p.reset(1, 0);
        assert_eq!(p.positions()[1].offset, 0);
        assert_eq!(p.watermark_basis(), 300, "no longer at its end");
        p.polled(Duration::from_secs(5));
        assert_eq!(p.watermark_basis(), 300, "no longer idle");
        assert!(p.record(1, 0, 10));
        assert!(p.record(1, 1, 20));
        assert_eq!(p.positions()[1].offset, 2);
        assert_eq!(p.positions()[1].max_timestamp, 1000);
        // With stop = latest, a reset at or past the end is done.
        let mut q = Partitions::new(None);
        q.add(0, 3, i64::MIN, Some(10), true);
        q.reset(0, 12);
        assert!(q.all_done());
        assert_eq!(q.positions()[0].offset, 12);
        let mut q = Partitions::new(None);
        q.add(0, 30, i64::MIN, Some(40), true);
        q.reset(0, 5);
        assert!(!q.all_done());
        assert_eq!(q.unfinished(), vec![(0, 5, true)]);
    }

    #[test]
    fn stop_at_the_end_offsets_seen_at_open() {
        let mut p = Partitions::new(None);
        p.add(0, 0, i64::MIN, Some(2), false);
        p.add(1, 5, i64::MIN, Some(5), false); // empty (or read) already
        p.add(2, 0, i64::MIN, Some(10), false);
        assert_eq!(p.done().collect::<Vec<_>>(), vec![1]);
        assert!(p.record(0, 0, 1));
        assert!(!p.all_done());
        assert!(p.record(0, 1, 2));
        assert_eq!(p.done().collect::<Vec<_>>(), vec![0, 1]);
        // Records past the end are not read.
        assert!(!p.record(0, 2, 3));
        assert!(!p.record(2, 10, 3));
        assert!(p.all_done());
        assert!(p.unfinished().is_empty());
        // Partition 2 ended on transaction markers: end of partition.
        let mut q = Partitions::new(None);
        q.add(2, 0, i64::MIN, Some(10), false);
        assert!(q.record(2, 7, 1));
        q.reached_end(2, Some(10));
        assert!(q.all_done());
        assert_eq!(q.positions()[0].offset, 10);
        // Done partitions do not hold the watermark back, idle_timeout or
        // not, and the subtask is idle once all are done.
        for idle_timeout in [None, Some(Duration::from_secs(3600))] {
            let mut r = Partitions::new(idle_timeout);
            r.add(0, 0, i64::MIN, Some(1), false);
            r.add(1, 0, i64::MIN, None, false);
            assert!(r.record(0, 0, 50));
            assert!(r.record(1, 0, 70));
            assert_eq!(r.watermark_basis(), 70);
            assert!(!r.idle());
            // All done: nothing more comes, the highest over all, as ever.
            let mut s = Partitions::new(idle_timeout);
            s.add(0, 0, i64::MIN, Some(1), false);
            s.add(1, 0, i64::MIN, Some(1), false);
            assert!(s.record(1, 0, 70));
            assert_eq!(s.watermark_basis(), i64::MIN);
            assert!(!s.idle());
            assert!(s.record(0, 0, 50));
            assert!(s.idle());
            assert_eq!(s.watermark_basis(), 70);
        }
        // Done partitions do not count among the idle ones either.
        let mut t = Partitions::new(Some(Duration::from_secs(1)));
        t.add(0, 0, i64::MIN, Some(1), false);
        t.add(1, 0, i64::MIN, None, false);
        assert!(t.record(0, 0, 10));
        assert!(t.record(1, 0, 50));
        assert_eq!(t.watermark_basis(), 50);
        t.reached_end(1, None);
        t.polled(Duration::from_secs(1));
        assert!(t.idle());
        assert_eq!(t.watermark_basis(), 50);
        // Without a stop, the end of a partition is only a position.
        let mut n = Partitions::new(None);
        n.add(0, 0, i64::MIN, None, false);
        n.reached_end(0, Some(3));
        assert!(!n.all_done());
        assert_eq!(n.positions()[0].offset, 3);
    }

    #[test]
    fn an_offset_out_of_range_goes_where_on_out_of_range_says_or_fails_in_one_line() {
        // Below the log start (retention), restored.
        let e =
            out_of_range("events", 2, true, 1200, (1500, 3000), OnOutOfRange::Fail).unwrap_err();
        assert_eq!(
            e,
            "Kafka topic `events` partition 2: the restored offset 1200 is out of range \
             [1500, 3000) (records deleted by retention, or the topic was recreated): set \
             [source] on_out_of_range = \"earliest\" or \"latest\" to go on"
        );
        assert_eq!(
            out_of_range(
                "events",
                2,
                true,
                1200,
                (1500, 3000),
                OnOutOfRange::Earliest
            ),
            Ok((
                1500,
                "Kafka topic `events` partition 2: the restored offset 1200 is out of range \
                 [1500, 3000) (records deleted by retention, or the topic was recreated); \
                 on_out_of_range = \"earliest\": reading on from offset 1500"
                    .to_string()
            ))
        );
        assert_eq!(
            out_of_range("events", 2, true, 1200, (1500, 3000), OnOutOfRange::Latest)
                .unwrap()
                .0,
            3000
        );
        // Past the end (a recreated topic), reached while reading.
        let e = out_of_range("events", 0, false, 100, (0, 30), OnOutOfRange::Fail).unwrap_err();
        assert_eq!(
            e,
            "Kafka topic `events` partition 0: the next offset to read, 100, is out of range \
             [0, 30) (past the end: the topic was recreated, or its log truncated): set \
             [source] on_out_of_range = \"earliest\" or \"latest\" to go on"
        );
        assert_eq!(
            out_of_range("events", 0, false, 100, (0, 30), OnOutOfRange::Earliest)
                .unwrap()
                .0,
            0
        );
        let (to, warning) =
            out_of_range("events", 0, false, 100, (0, 30), OnOutOfRange::Latest).unwrap();
        assert_eq!(to, 30);
        assert!(
            warning.ends_with("; on_out_of_range = \"latest\": reading on from offset 30"),
            "{warning}"
        );
        assert!(!warning.contains('\n'));
    }
}

/// Checks against the development broker at 127.0.0.1:9092 (or the one
/// `WEIR_TEST_KAFKA` names), run by hand:
/// `cargo test --workspace --lib kafka -- --ignored`.
#[cfg(test)]
pub(super) mod broker {
    use std::collections::BTreeMap;

    use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

    use super::*;

    /// The broker: `WEIR_TEST_KAFKA`, else the development one.
    pub(super) fn bootstrap() -> String {
        std::env::var("WEIR_TEST_KAFKA")
            .ok()
            .filter(|b| !b.trim().is_empty())
            .unwrap_or_else(|| "127.0.0.1:9092".to_string())
    }
    /// A guard against a test hanging forever, not a timed assertion.
    pub(super) const PATIENCE: Duration = Duration::from_secs(60);

    fn cluster() -> KafkaCluster {
        KafkaCluster {
            bootstrap: bootstrap(),
            properties: BTreeMap::new(),
            connect_timeout: Duration::from_secs(10),
        }
    }

    pub(super) fn unique(what: &str) -> String {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        format!("kafka-source-{what}-{}-{nanos}", std::process::id())
    }

    pub(super) fn config(topic: &str) -> KafkaSourceConfig {
        KafkaSourceConfig {
            cluster: cluster(),
            topic: topic.into(),
            group: None,
            start: StartAt::Earliest,
            stop: StopAt::Latest,
            parallelism: 1,
            idle_timeout: None,
            partition_discovery: DEFAULT_PARTITION_DISCOVERY,
            create: None,
            on_out_of_range: OnOutOfRange::Fail,
        }
    }

    pub(super) type Record = (i32, Option<String>, String, i64);

    pub(super) fn produce(topic: &str, records: &[Record], transaction: Option<(&str, bool)>) {
        let mut cfg = cluster().client_config();
        if let Some((id, _)) = transaction {
            cfg.set("transactional.id", id);
        }
        let producer: BaseProducer = cfg.create().unwrap();
        if transaction.is_some() {
            producer.init_transactions(PATIENCE).unwrap();
            producer.begin_transaction().unwrap();
        }
        for (p, k, v, ts) in records {
            let mut r = BaseRecord::to(topic)
                .partition(*p)
                .payload(v)
                .timestamp(*ts);
            if let Some(k) = k {
                r = r.key(k);
            }
            producer.send(r).map_err(|(e, _)| e).unwrap();
        }
        producer.flush(PATIENCE).unwrap();
        match transaction {
            Some((_, true)) => producer.commit_transaction(PATIENCE).unwrap(),
            Some((_, false)) => producer.abort_transaction(PATIENCE).unwrap(),
            None => {}
        }
    }

    /// Reads until the source ends; each event as (partition-less) key,
    /// value, timestamp, offset.
    fn read_all(source: &mut KafkaSource) -> Vec<(Option<String>, String, i64, u64)> {
        let deadline = Instant::now() + PATIENCE;
        let mut out = Vec::new();
        loop {
            assert!(Instant::now() < deadline, "the source did not end");
            let mut offsets = Vec::new();
            let Some(batch) = source.next_batch(&mut offsets).unwrap() else {
                return out;
            };
            assert_eq!(offsets.len(), batch.len());
            for (e, o) in batch.iter().zip(offsets) {
                out.push((
                    e.key.map(|k| String::from_utf8(k.to_vec()).unwrap()),
                    String::from_utf8(e.value.to_vec()).unwrap(),
                    e.timestamp,
                    o,
                ));
            }
        }
    }

    fn offsets_of(position: &SourcePosition) -> Vec<(i32, i64)> {
        let SourcePosition::Kafka { partitions, .. } = position else {
            panic!("{position:?}")
        };
        partitions.iter().map(|p| (p.partition, p.offset)).collect()
    }

    #[test]
    #[ignore = "needs the Kafka broker at 127.0.0.1:9092"]
    fn reads_committed_records_of_its_partitions_and_restores() {
        let topic = unique("read");
        let create = CreateTopic {
            partitions: 3,
            replication: 1,
        };
        cluster().create_topic(&topic, create, &[]).unwrap();
        let plain: Vec<Record> = (0..30)
            .map(|i| {
                let key = (i != 5).then(|| format!("k{i}"));
                (i % 3, key, format!("v{i}"), 1000 + i as i64)
            })
            .collect();
        produce(&topic, &plain, None);
        let aborted: Vec<Record> = (0..3)
            .map(|i| (0, None, format!("aborted{i}"), 5000))
            .collect();
        produce(&topic, &aborted, Some((&unique("tx-a"), false)));
        let committed: Vec<Record> = (0..2)
            .map(|i| (1, Some("t".into()), format!("txn{i}"), 6000 + i))
            .collect();
        produce(&topic, &committed, Some((&unique("tx-c"), true)));

        // Two subtasks: 0 reads partitions 0 and 2, 1 reads partition 1.
        let mut c = config(&topic);
        c.parallelism = 2;
        let mut s0 = KafkaSource::open(&c, 0, 2, 4, None).unwrap();
        let mut s1 = KafkaSource::open(&c, 1, 2, 4, None).unwrap();
        assert_eq!(s0.partitions(), vec![0, 2]);
        assert_eq!(s1.partitions(), vec![1]);
        let r0 = read_all(&mut s0);
        let r1 = read_all(&mut s1);
        let mut values: Vec<String> = r0.iter().chain(&r1).map(|e| e.1.clone()).collect();
        values.sort();
        let mut want: Vec<String> = plain
            .iter()
            .chain(&committed)
            .map(|r| r.2.clone())
            .collect();
        want.sort();
        assert_eq!(values, want, "aborted records are not read");
        let v5 = r0.iter().chain(&r1).find(|e| e.1 == "v5").unwrap();
        assert_eq!(v5.0, None, "a null key is an absent key");
        let v4 = r1.iter().find(|e| e.1 == "v4").unwrap();
        assert_eq!((v4.0.as_deref(), v4.2, v4.3), (Some("k4"), 1004, 1));
        // Positions are past every record and transaction marker.
        let p0 = s0.position().unwrap();
        let p1 = s1.position().unwrap();
        let probe: BaseConsumer = cluster()
            .client_config()
            .set("isolation.level", "read_committed")
            .create()
            .unwrap();
        let marks = |p| probe.fetch_watermarks(&topic, p, PATIENCE).unwrap().1;
        assert_eq!(offsets_of(&p0), vec![(0, marks(0)), (2, marks(2))]);
        assert_eq!(offsets_of(&p1), vec![(1, marks(1))]);
        assert_eq!(s1.watermark_basis(), Some(6001));
        assert_eq!(
            s0.watermark_basis(),
            Some(1029),
            "the slower of 1027 (p0) and 1029 (p2)"
        );

        // Restore at one parallelism from a merged position in which
        // partition 0 is back at offset 5 and partition 1 is missing.
        let merged = SourcePosition::merge(vec![p0, p1]).unwrap();
        let SourcePosition::Kafka { mut partitions, .. } = merged else {
            unreachable!()
        };
        partitions.retain(|p| p.partition != 1);
        partitions[0].offset = 5;
        let restored = SourcePosition::Kafka {
            topic: topic.clone(),
            partitions,
        };
        let mut s = KafkaSource::open(&config(&topic), 0, 1, 100, Some(&restored)).unwrap();
        let r = read_all(&mut s);
        let mut values: Vec<String> = r.iter().map(|e| e.1.clone()).collect();
        values.sort();
        let mut want: Vec<String> = plain
            .iter()
            .filter(|r| r.0 == 1 || (r.0 == 0 && r.3 >= 1015))
            .chain(&committed)
            .map(|r| r.2.clone())
            .collect();
        want.sort();
        assert_eq!(values, want);

        // start = latest reads nothing of what is there; timestamp:<ms>
        // starts at the first record that late.
        let mut c = config(&topic);
        c.start = StartAt::Latest;
        assert!(read_all(&mut KafkaSource::open(&c, 0, 1, 100, None).unwrap()).is_empty());
        c.start = StartAt::Timestamp(1024);
        let r = read_all(&mut KafkaSource::open(&c, 0, 1, 100, None).unwrap());
        let mut values: Vec<String> = r.iter().map(|e| e.1.clone()).collect();
        values.sort();
        let mut want: Vec<String> = (24..30)
            .map(|i| format!("v{i}"))
            .chain(committed.iter().map(|r| r.2.clone()))
            .collect();
        want.sort();
        assert_eq!(values, want);

        // Errors.
        let e = KafkaSource::open(
            &c,
            0,
            1,
            100,
            Some(&SourcePosition::Kafka {
                topic: "other".into(),
                partitions: vec![],
            }),
        )
        .err()
        .unwrap();
        assert!(
            e.contains("`other`") && e.contains(&format!("`{topic}`")),
            "{e}"
        );
        let missing = unique("missing");
        let e = KafkaSource::open(&config(&missing), 0, 1, 100, None)
            .err()
            .unwrap();
        assert_eq!(
            e,
            format!("Kafka topic `{missing}` does not exist at `{}` (create it, or set `create = {{ partitions = N, replication = R }}` in [source])", bootstrap())
        );
        let mut c = config(&topic);
        c.cluster.bootstrap = "127.0.0.1:1".into();
        c.cluster.connect_timeout = Duration::from_millis(500);
        let e = KafkaSource::open(&c, 0, 1, 100, None).err().unwrap();
        assert!(
            e.starts_with("cannot reach Kafka at `127.0.0.1:1` within 500ms"),
            "{e}"
        );
    }

    #[test]
    #[ignore = "needs the Kafka broker at 127.0.0.1:9092"]
    fn commits_checkpoints_to_the_group_and_starts_from_them() {
        let topic = unique("group");
        let group = unique("g");
        let create = CreateTopic {
            partitions: 2,
            replication: 1,
        };
        cluster().create_topic(&topic, create, &[]).unwrap();
        let records: Vec<Record> = (0..10)
            .map(|i| (i % 2, None, format!("v{i}"), i as i64))
            .collect();
        produce(&topic, &records, None);
        let mut c = config(&topic);
        c.group = Some(group.clone());
        let mut s = KafkaSource::open(&c, 0, 1, 3, None).unwrap();
        let mut offsets = Vec::new();
        let deadline = Instant::now() + PATIENCE;
        while offsets.len() < 4 {
            assert!(Instant::now() < deadline);
            s.next_batch(&mut offsets).unwrap().unwrap();
        }
        let at = s.position().unwrap();
        s.checkpoint_complete(1, &at);
        // The commit is asynchronous: wait until the group has it.
        let probe: BaseConsumer = cluster()
            .client_config()
            .set("group.id", &group)
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&topic, 0);
        tpl.add_partition(&topic, 1);
        let want = offsets_of(&at);
        loop {
            assert!(Instant::now() < deadline, "the group never got {want:?}");
            s.next_batch(&mut Vec::new()).unwrap();
            let got = probe.committed_offsets(tpl.clone(), PATIENCE).unwrap();
            let got: Vec<(i32, i64)> = got
                .elements()
                .iter()
                .filter_map(|e| match e.offset() {
                    Offset::Offset(n) => Some((e.partition(), n)),
                    _ => None,
                })
                .collect();
            if got == want {
                break;
            }
        }
        c.start = StartAt::Committed;
        let s = KafkaSource::open(&c, 0, 1, 3, None).unwrap();
        assert_eq!(offsets_of(&s.position().unwrap()), want);
    }

    #[test]
    #[ignore = "needs the Kafka broker at 127.0.0.1:9092"]
    fn new_partitions_are_read_from_their_start() {
        let topic = unique("discover");
        let create = CreateTopic {
            partitions: 1,
            replication: 1,
        };
        cluster().create_topic(&topic, create, &[]).unwrap();
        produce(&topic, &[(0, None, "a".into(), 1)], None);
        let mut c = config(&topic);
        c.stop = StopAt::Never;
        c.partition_discovery = Duration::from_millis(100);
        c.idle_timeout = Some(Duration::from_secs(3600));
        let mut s = KafkaSource::open(&c, 0, 1, 100, None).unwrap();
        let mut seen = Vec::new();
        let deadline = Instant::now() + PATIENCE;
        let read = |s: &mut KafkaSource, seen: &mut Vec<String>, n| {
            while seen.len() < n {
                assert!(Instant::now() < deadline, "read only {seen:?}");
                let b = s.next_batch(&mut Vec::new()).unwrap().expect("never ends");
                seen.extend(
                    b.iter()
                        .map(|e| String::from_utf8(e.value.to_vec()).unwrap()),
                );
            }
        };
        read(&mut s, &mut seen, 1);
        // Nothing more to read: an empty batch, not the end.
        assert_eq!(
            s.next_batch(&mut Vec::new()).unwrap().map(|b| b.len()),
            Some(0)
        );
        let admin: AdminClient<DefaultClientContext> = cluster().client_config().create().unwrap();
        let more = NewPartitions::new(&topic, 2);
        futures_executor::block_on(admin.create_partitions([&more], &AdminOptions::new()))
            .unwrap()
            .into_iter()
            .for_each(|r| {
                r.unwrap();
            });
        produce(&topic, &[(1, None, "b".into(), 2)], None);
        read(&mut s, &mut seen, 2);
        assert_eq!(seen, vec!["a", "b"]);
        assert_eq!(s.partitions(), vec![0, 1]);
        assert_eq!(offsets_of(&s.position().unwrap()), vec![(0, 1), (1, 1)]);
        assert_eq!(s.watermark_basis(), Some(1));
        assert!(!s.idle());
    }

    /// Topic settings that keep records for ever: retention goes by record
    /// timestamps, and the tests' are in January 1970.
    const KEEP: &[(&str, &str)] = &[("retention.ms", "-1")];

    /// Produces records `from..from + n` into partition 0 of `topic`, one
    /// record batch each, with timestamps `from + 1`, ...
    fn produce_one_by_one(topic: &str, from: usize, n: usize) {
        let producer: BaseProducer = cluster()
            .client_config()
            .set("linger.ms", "0")
            .set("batch.num.messages", "1")
            .create()
            .unwrap();
        for i in from..from + n {
            let v = format!("v{i}");
            producer
                .send(
                    BaseRecord::<(), str>::to(topic)
                        .partition(0)
                        .payload(&v)
                        .timestamp(i as i64 + 1),
                )
                .map_err(|(e, _)| e)
                .unwrap();
        }
        producer.flush(PATIENCE).unwrap();
    }

    /// Deletes the records of `topic`'s partition 0 below `offset`, as
    /// retention does.
    fn delete_below(topic: &str, offset: i64) {
        let admin: AdminClient<DefaultClientContext> = cluster().client_config().create().unwrap();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, 0, Offset::Offset(offset))
            .unwrap();
        let done =
            futures_executor::block_on(admin.delete_records(&tpl, &AdminOptions::new())).unwrap();
        for e in done.elements() {
            e.error().unwrap();
        }
    }

    /// Reads one batch; its events' offsets go to `offsets`.
    fn read_some(s: &mut KafkaSource, offsets: &mut Vec<u64>) -> Result<(), String> {
        s.next_batch(offsets)?.expect("the source never ends");
        Ok(())
    }

    #[test]
    #[ignore = "needs the Kafka broker at 127.0.0.1:9092"]
    fn an_offset_out_of_range_while_reading_fails_or_reads_on_as_on_out_of_range_says() {
        for choice in [
            OnOutOfRange::Fail,
            OnOutOfRange::Earliest,
            OnOutOfRange::Latest,
        ] {
            let topic = unique("range");
            let create = CreateTopic {
                partitions: 1,
                replication: 1,
            };
            cluster().create_topic(&topic, create, KEEP).unwrap();
            produce_one_by_one(&topic, 0, 100);
            let mut c = config(&topic);
            c.stop = StopAt::Never;
            c.on_out_of_range = choice;
            // The consumer fetches a record batch at a time, only when it
            // has none queued: it is never far ahead of what is read.
            c.cluster
                .properties
                .insert("queued.min.messages".into(), "1".into());
            c.cluster
                .properties
                .insert("fetch.message.max.bytes".into(), "1".into());
            c.cluster
                .properties
                .insert("fetch.queue.backoff.ms".into(), "1".into());
            let mut s = KafkaSource::open(&c, 0, 1, 1, None).unwrap();
            let mut offsets = Vec::new();
            let deadline = Instant::now() + PATIENCE;
            while offsets.len() < 10 {
                assert!(Instant::now() < deadline);
                read_some(&mut s, &mut offsets).unwrap();
            }
            delete_below(&topic, 60);
            let result = loop {
                assert!(Instant::now() < deadline, "{choice:?}: read {offsets:?}");
                if let Err(e) = read_some(&mut s, &mut offsets) {
                    break Err(e);
                }
                let at = offsets_of(&s.position().unwrap())[0].1;
                if at >= 100 {
                    break Ok(at);
                }
            };
            // What was read before: from 0 on, without a gap, below 60.
            let before: Vec<u64> = offsets.iter().copied().take_while(|&o| o < 60).collect();
            assert_eq!(before, (0..before.len() as u64).collect::<Vec<_>>());
            match choice {
                OnOutOfRange::Fail => {
                    let e = result.unwrap_err();
                    assert_eq!(
                        e,
                        format!(
                            "Kafka topic `{topic}` partition 0: the next offset to read, {}, is out of range [60, 100) (records deleted by retention, or the topic was recreated): set [source] on_out_of_range = \"earliest\" or \"latest\" to go on",
                            before.len()
                        )
                    );
                }
                OnOutOfRange::Earliest => {
                    assert_eq!(result, Ok(100));
                    assert_eq!(
                        offsets[before.len()..],
                        (60..100).collect::<Vec<u64>>(),
                        "{offsets:?}"
                    );
                }
                OnOutOfRange::Latest => {
                    // At the end, then what comes next.
                    assert_eq!(result, Ok(100));
                    assert_eq!(offsets.len(), before.len(), "{offsets:?}");
                    produce_one_by_one(&topic, 100, 5);
                    while offsets.len() < before.len() + 5 {
                        assert!(Instant::now() < deadline);
                        read_some(&mut s, &mut offsets).unwrap();
                    }
                    assert_eq!(offsets[before.len()..], (100..105).collect::<Vec<u64>>());
                    assert_eq!(offsets_of(&s.position().unwrap()), vec![(0, 105)]);
                }
            }
        }
    }

    #[test]
    #[ignore = "needs the Kafka broker at 127.0.0.1:9092"]
    fn a_restored_offset_out_of_range_fails_or_moves_at_open() {
        let topic = unique("restore-range");
        let create = CreateTopic {
            partitions: 1,
            replication: 1,
        };
        cluster().create_topic(&topic, create, KEEP).unwrap();
        produce_one_by_one(&topic, 0, 20);
        delete_below(&topic, 15);
        let at = |offset| SourcePosition::Kafka {
            topic: topic.clone(),
            partitions: vec![KafkaPartition {
                partition: 0,
                offset,
                max_timestamp: 7,
            }],
        };
        let mut c = config(&topic);
        let e = KafkaSource::open(&c, 0, 1, 100, Some(&at(10)))
            .err()
            .unwrap();
        assert_eq!(
            e,
            format!("Kafka topic `{topic}` partition 0: the restored offset 10 is out of range [15, 20) (records deleted by retention, or the topic was recreated): set [source] on_out_of_range = \"earliest\" or \"latest\" to go on")
        );
        let e = KafkaSource::open(&c, 0, 1, 100, Some(&at(25)))
            .err()
            .unwrap();
        assert!(
            e.contains("the restored offset 25 is out of range [15, 20) (past the end: the topic was recreated, or its log truncated)"),
            "{e}"
        );
        // In range, at either end: as it is.
        for offset in [15, 20] {
            let s = KafkaSource::open(&c, 0, 1, 100, Some(&at(offset))).unwrap();
            assert_eq!(offsets_of(&s.position().unwrap()), vec![(0, offset)]);
        }
        c.on_out_of_range = OnOutOfRange::Earliest;
        let mut s = KafkaSource::open(&c, 0, 1, 100, Some(&at(10))).unwrap();
        assert_eq!(offsets_of(&s.position().unwrap()), vec![(0, 15)]);
        let r = read_all(&mut s);
        assert_eq!(
            r.iter().map(|e| e.3).collect::<Vec<_>>(),
            (15..20).collect::<Vec<u64>>()
        );
        c.on_out_of_range = OnOutOfRange::Latest;
        let mut s = KafkaSource::open(&c, 0, 1, 100, Some(&at(10))).unwrap();
        assert_eq!(offsets_of(&s.position().unwrap()), vec![(0, 20)]);
        assert!(read_all(&mut s).is_empty());
        // Fresh starts are as before: `committed` with a commit below the
        // range starts at the earliest offset.
        let group = unique("g");
        let probe: BaseConsumer = cluster()
            .client_config()
            .set("group.id", &group)
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, 0, Offset::Offset(3))
            .unwrap();
        probe.commit(&tpl, CommitMode::Sync).unwrap();
        c.on_out_of_range = OnOutOfRange::Fail;
        c.group = Some(group);
        c.start = StartAt::Committed;
        let s = KafkaSource::open(&c, 0, 1, 100, None).unwrap();
        assert_eq!(offsets_of(&s.position().unwrap()), vec![(0, 15)]);
    }

    #[test]
    #[ignore = "needs the Kafka broker at 127.0.0.1:9092"]
    fn idle_only_after_time_at_the_end_never_under_back_pressure() {
        let topic = unique("idle");
        let create = CreateTopic {
            partitions: 2,
            replication: 1,
        };
        cluster().create_topic(&topic, create, KEEP).unwrap();
        produce(
            &topic,
            &[(0, None, "a".into(), 1000), (1, None, "b".into(), 5)],
            None,
        );
        let mut c = config(&topic);
        c.stop = StopAt::Never;
        c.idle_timeout = Some(Duration::from_millis(300));
        let mut s = KafkaSource::open(&c, 0, 1, 100, None).unwrap();
        let deadline = Instant::now() + PATIENCE;
        let mut read = 0;
        // Both partitions read, at their end, and polled quiet for 300 ms.
        while !s.idle() {
            assert!(Instant::now() < deadline, "never idle");
            read += s.next_batch(&mut Vec::new()).unwrap().unwrap().len();
        }
        assert_eq!(read, 2);
        assert_eq!(
            s.watermark_basis(),
            Some(5),
            "all idle: the watermark does not advance past the slower partition"
        );
        // New records end the idleness.
        produce(
            &topic,
            &[(0, None, "c".into(), 2000), (1, None, "d".into(), 6)],
            None,
        );
        while read < 4 {
            assert!(Instant::now() < deadline);
            read += s.next_batch(&mut Vec::new()).unwrap().unwrap().len();
        }
        assert!(!s.idle());
        // The source blocked sending downstream, longer than idle_timeout
        // (the stage says so): no partition became idle for that.
        std::thread::sleep(Duration::from_millis(900));
        s.blocked(Duration::from_millis(900));
        assert_eq!(s.next_batch(&mut Vec::new()).unwrap().unwrap().len(), 0);
        assert!(!s.idle(), "idle while blocked downstream");
        while !s.idle() {
            assert!(Instant::now() < deadline, "never idle");
            assert_eq!(s.next_batch(&mut Vec::new()).unwrap().unwrap().len(), 0);
        }
        assert_eq!(s.watermark_basis(), Some(6));
    }
}

/// What the source does when its topic or its cluster goes away. The
/// cluster check starts a broker of its own (on port 49300) with
/// `scripts/services.sh`, and kills it.
#[cfg(test)]
mod loss {
    use std::path::PathBuf;
    use std::process::Command;

    use rdkafka::admin::{AdminClient, AdminOptions};
    use rdkafka::client::DefaultClientContext;

    use super::broker::{config, produce, unique, PATIENCE};
    use super::*;

    /// Reads until an error; panics if the source ends or `PATIENCE` passes.
    fn read_until_error(s: &mut KafkaSource) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            assert!(Instant::now() < deadline, "no error");
            match s.next_batch(&mut Vec::new()) {
                Ok(Some(_)) => {}
                Ok(None) => panic!("the source ended"),
                Err(e) => {
                    eprintln!("the source failed: {e}");
                    return e;
                }
            }
        }
    }

    /// Reads until `n` events came.
    fn read_n(s: &mut KafkaSource, n: usize) {
        let deadline = Instant::now() + PATIENCE;
        let mut got = 0;
        while got < n {
            assert!(Instant::now() < deadline, "read {got} of {n}");
            got += s.next_batch(&mut Vec::new()).unwrap().unwrap().len();
        }
    }

    #[test]
    #[ignore = "needs the Kafka broker at 127.0.0.1:9092"]
    fn a_deleted_topic_is_an_error_naming_it() {
        let topic = unique("deleted");
        let create = CreateTopic {
            partitions: 1,
            replication: 1,
        };
        let mut c = config(&topic);
        c.stop = StopAt::Never;
        c.partition_discovery = Duration::from_millis(100);
        c.cluster.create_topic(&topic, create, &[]).unwrap();
        produce(&topic, &[(0, None, "a".into(), 1)], None);
        let mut s = KafkaSource::open(&c, 0, 1, 100, None).unwrap();
        read_n(&mut s, 1);
        let admin: AdminClient<DefaultClientContext> = c.cluster.client_config().create().unwrap();
        futures_executor::block_on(admin.delete_topics(&[&topic], &AdminOptions::new())).unwrap();
        let e = read_until_error(&mut s);
        assert!(
            e.starts_with(&format!(
                "cannot read Kafka topic `{topic}` at `{}`: ",
                c.cluster.bootstrap
            )),
            "{e}"
        );
        assert!(!e.contains('\n'), "{e}");
    }

    /// A broker of this test's own, stopped (and its data deleted) on drop.
    struct OwnBroker {
        dir: PathBuf,
    }

    impl OwnBroker {
        fn script() -> PathBuf {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/services.sh")
        }

        fn run(&self, args: &[&str]) -> String {
            let out = Command::new("bash")
                .arg(Self::script())
                .args(args)
                .env("WEIR_SERVICES", &self.dir)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "services.sh {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap()
        }

        fn start(port: u16) -> (OwnBroker, String) {
            let dir =
                std::env::temp_dir().join(format!("kafka-source-loss-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let jars = dirs_home().join(".weir/services/kafka-4.3.1");
            let link = dir.join("kafka-4.3.1");
            if !link.exists() {
                std::os::unix::fs::symlink(jars, &link).unwrap();
            }
            let broker = OwnBroker { dir };
            let out = broker.run(&["up", "kafka", "--port", &port.to_string()]);
            let bootstrap = out.lines().last().unwrap().trim().to_string();
            (broker, bootstrap)
        }
    }

    fn dirs_home() -> PathBuf {
        PathBuf::from(std::env::var_os("HOME").unwrap())
    }

    impl Drop for OwnBroker {
        fn drop(&mut self) {
            let _ = Command::new("bash")
                .arg(Self::script())
                .args(["down", "kafka"])
                .env("WEIR_SERVICES", &self.dir)
                .output();
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    #[test]
    #[ignore = "starts and kills a Kafka broker of its own on port 49300"]
    fn survives_a_short_loss_of_the_cluster_and_fails_after_connect_timeout() {
        let (broker, bootstrap) = OwnBroker::start(49300);
        let topic = unique("loss");
        let mut c = config(&topic);
        c.cluster.bootstrap = bootstrap.clone();
        c.stop = StopAt::Never;
        c.create = Some(CreateTopic {
            partitions: 1,
            replication: 1,
        });
        let producer_cluster = c.cluster.clone();
        let send = |v: &str| {
            let producer: rdkafka::producer::BaseProducer =
                producer_cluster.client_config().create().unwrap();
            use rdkafka::producer::Producer;
            producer
                .send(rdkafka::producer::BaseRecord::<(), str>::to(&topic).payload(v))
                .map_err(|(e, _)| e)
                .unwrap();
            producer.flush(PATIENCE).unwrap();
        };
        // A loss shorter than connect_timeout: the source reads on.
        c.cluster.connect_timeout = Duration::from_secs(120);
        let mut s = KafkaSource::open(&c, 0, 1, 100, None).unwrap();
        send("a");
        read_n(&mut s, 1);
        broker.run(&["down", "kafka", "--broker", "1", "--kill"]);
        // Poll while it is down (transient errors are retried).
        for _ in 0..20 {
            assert_eq!(
                s.next_batch(&mut Vec::new()).unwrap().map(|b| b.len()),
                Some(0)
            );
        }
        broker.run(&["up", "kafka", "--port", "49300"]);
        send("b");
        read_n(&mut s, 1);
        // A loss longer than connect_timeout: an error naming the cluster.
        c.cluster.connect_timeout = Duration::from_secs(2);
        let mut s = KafkaSource::open(&c, 0, 1, 100, None).unwrap();
        read_n(&mut s, 2);
        broker.run(&["down", "kafka", "--broker", "1", "--kill"]);
        let e = read_until_error(&mut s);
        assert!(
            e.starts_with(&format!("lost Kafka at `{bootstrap}`: no answer for 2s")),
            "{e}"
        );
        assert!(!e.contains('\n'), "{e}");
    }
}
