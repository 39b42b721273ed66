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
//! it back, and one that is quiet for `idle_timeout` does not.

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

/// One partition a subtask reads: where it is, and what it has seen.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PartitionState {
    partition: i32,
    /// Offset of the next record.
    next: i64,
    /// The highest record timestamp read (`i64::MIN`: none yet).
    max_timestamp: i64,
    /// When a record last came from it (or it was added).
    last_record: Instant,
    /// With `stop = latest`: the end offset it had at open.
    end: Option<i64>,
    /// Whether it has been read up to its end (`stop = latest`).
    done: bool,
}

/// The partitions a subtask reads, and the watermark and idleness they
/// give: the bookkeeping of [`KafkaSource`], apart from the consumer.
#[derive(Debug, Clone)]
pub struct Partitions {
    parts: Vec<PartitionState>,
    idle_timeout: Option<Duration>,
}

impl Partitions {
    /// No partitions yet; a partition with no record for `idle_timeout`
    /// does not hold the watermark back.
    pub fn new(idle_timeout: Option<Duration>) -> Self {
        Partitions {
            parts: Vec::new(),
            idle_timeout,
        }
    }

    /// Adds `partition`, whose next record is at `next`, with the highest
    /// timestamp read from it so far (`i64::MIN`: none), at `now`; `end`:
    /// the offset it ends at (`stop = latest`).
    pub fn add(
        &mut self,
        partition: i32,
        next: i64,
        max_timestamp: i64,
        end: Option<i64>,
        now: Instant,
    ) {
        let done = end.is_some_and(|end| next >= end);
        self.parts.push(PartitionState {
            partition,
            next,
            max_timestamp,
            last_record: now,
            end,
            done,
        });
        self.parts.sort_by_key(|p| p.partition);
    }

    /// Whether `partition` is one of these.
    pub fn contains(&self, partition: i32) -> bool {
        self.get(partition).is_some()
    }

    fn get(&self, partition: i32) -> Option<&PartitionState> {
        self.parts.iter().find(|p| p.partition == partition)
    }

    fn get_mut(&mut self, partition: i32) -> Option<&mut PartitionState> {
        self.parts.iter_mut().find(|p| p.partition == partition)
    }

    /// A record at `offset` with `timestamp` came from `partition` at
    /// `now`. Returns whether it is to be read: not when the partition is
    /// not one of these, or has been read up to its end.
    pub fn record(&mut self, partition: i32, offset: i64, timestamp: i64, now: Instant) -> bool {
        let Some(p) = self.get_mut(partition) else {
            return false;
        };
        if p.done || p.end.is_some_and(|end| offset >= end) {
            p.done = true;
            return false;
        }
        p.next = p.next.max(offset + 1);
        p.max_timestamp = p.max_timestamp.max(timestamp);
        p.last_record = now;
        if p.end.is_some_and(|end| p.next >= end) {
            p.done = true;
        }
        true
    }

    /// `partition` has been read up to the end of what it holds (its
    /// consumer position is `position`, if known, past the last record and
    /// any transaction markers): with `stop = latest`, it is done.
    pub fn reached_end(&mut self, partition: i32, position: Option<i64>) {
        if let Some(p) = self.get_mut(partition) {
            if let Some(at) = position {
                p.next = p.next.max(at);
            }
            if p.end.is_some() {
                p.done = true;
            }
        }
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

    fn is_idle(&self, p: &PartitionState, now: Instant) -> bool {
        p.done
            || self
                .idle_timeout
                .is_some_and(|t| now.saturating_duration_since(p.last_record) >= t)
    }

    /// Whether no partition holds the watermark back at `now`: there are
    /// none, or each is idle (or done).
    pub fn idle(&self, now: Instant) -> bool {
        self.parts.iter().all(|p| self.is_idle(p, now))
    }

    /// The timestamp the watermark follows at `now`: the lowest, over the
    /// partitions that are not idle, of the highest timestamp read from
    /// each; when all are idle, the highest over all (`i64::MIN`: none).
    pub fn watermark_basis(&self, now: Instant) -> i64 {
        let active = self
            .parts
            .iter()
            .filter(|p| !self.is_idle(p, now))
            .map(|p| p.max_timestamp)
            .min();
        active.unwrap_or_else(|| {
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
    /// news, not an error (`next_batch` sees it too); the rest are logged as
    /// warnings, since librdkafka retries them and `next_batch` fails the
    /// job when the cluster stays away.
    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(
            error,
            KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF)
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
    partitions: Partitions,
    /// Partitions of the topic (all subtasks'), as last seen.
    partition_count: i32,
    partition_discovery: Duration,
    last_discovery: Instant,
    /// Since when the cluster has not answered, and why (the last error).
    unreachable: Option<(Instant, String)>,
    last_probe: Instant,
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
            .set("auto.offset.reset", "earliest")
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
        // Where each partition starts: an offset, or where `start` says.
        let mut starts: Vec<(i32, Offset, i64)> = Vec::new();
        let pending: Vec<i32> = match restored {
            // The checkpoint is the truth; a partition added since it was
            // taken is read from its earliest offset.
            Some(saved) => {
                for &p in &mine {
                    match saved.iter().find(|s| s.partition == p) {
                        Some(s) => starts.push((p, Offset::Offset(s.offset), s.max_timestamp)),
                        None => starts.push((p, Offset::Beginning, i64::MIN)),
                    }
                }
                Vec::new()
            }
            None => mine.clone(),
        };
        if !pending.is_empty() {
            match config.start {
                StartAt::Earliest => {
                    starts.extend(pending.iter().map(|&p| (p, Offset::Beginning, i64::MIN)))
                }
                StartAt::Latest => {
                    starts.extend(pending.iter().map(|&p| (p, Offset::End, i64::MIN)))
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
                        starts.push((p, at, i64::MIN));
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
                        starts.push((p, at, i64::MIN));
                    }
                }
            }
        }
        // Beginning and End are made offsets, so that a checkpoint taken
        // before a partition's first record still says where it starts.
        let now = Instant::now();
        let mut partitions = Partitions::new(config.idle_timeout);
        let mut assignment = TopicPartitionList::new();
        for (p, at, max_timestamp) in starts {
            let needs_marks = config.stop == StopAt::Latest || !matches!(at, Offset::Offset(_));
            let (low, high) = if needs_marks {
                consumer
                    .fetch_watermarks(&topic, p, timeout)
                    .map_err(|e| failed(&format!("read the offsets of partition {p}"), e))?
            } else {
                (0, 0)
            };
            let next = match at {
                Offset::Offset(n) => n,
                Offset::End => high,
                _ => low,
            };
            let end = (config.stop == StopAt::Latest).then_some(high);
            partitions.add(p, next, max_timestamp, end, now);
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
            partitions,
            partition_count: count,
            partition_discovery: config.partition_discovery,
            last_discovery: now,
            unreachable: None,
            last_probe: now,
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
        let now = Instant::now();
        for &p in &new {
            let (low, _) = self
                .consumer
                .fetch_watermarks(&self.topic, p, self.connect_timeout)
                .map_err(|e| {
                    self.fatal(format!("cannot read the offsets of new partition {p}: {e}"))
                })?;
            tpl.add_partition_offset(&self.topic, p, Offset::Offset(low))
                .map_err(|e| self.fatal(e))?;
            self.partitions.add(p, low, i64::MIN, None, now);
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
                    if self
                        .partitions
                        .record(partition, offset, timestamp, Instant::now())
                    {
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
        Some(self.partitions.watermark_basis(Instant::now()))
    }

    fn idle(&self) -> bool {
        self.partitions.idle(Instant::now())
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
            }
        );
        let c = parse(&format!(
            "{MINIMAL}group = \"g\"\nstart = \"committed\"\nstop = \"latest\"\nparallelism = 3\n\
             idle_timeout = \"5s\"\npartition_discovery = \"250ms\"\n\
             create = {{ partitions = 3, replication = 1 }}\nconnect_timeout = \"2s\"\n\
             properties = {{ \"fetch.max.bytes\" = \"1048576\" }}\n"
        ))
        .unwrap();
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
                format!("{MINIMAL}colour = \"blue\"\n"),
                "/jobs/job.toml:3: unknown field `colour`",
            ),
        ] {
            let e = parse(&body).unwrap_err();
            assert!(e.starts_with(want) || e.contains(want), "{body:?}: {e}");
            assert!(!e.contains('\n'), "{e:?}");
        }
    }

    fn t0() -> Instant {
        Instant::now()
    }

    #[test]
    fn watermark_follows_the_slowest_partition_that_is_not_idle() {
        let start = t0();
        let s = |n| start + Duration::from_secs(n);
        let mut p = Partitions::new(Some(Duration::from_secs(10)));
        p.add(0, 0, i64::MIN, None, start);
        p.add(1, 7, 500, None, start); // restored: resumes its timestamp
        assert_eq!(p.watermark_basis(start), i64::MIN);
        assert!(!p.idle(start));
        assert!(p.record(0, 0, 100, s(1)));
        assert!(p.record(0, 1, 300, s(2)));
        assert_eq!(p.watermark_basis(s(2)), 300);
        // An older record does not lower its partition's maximum.
        assert!(p.record(0, 2, 50, s(3)));
        assert_eq!(p.watermark_basis(s(3)), 300);
        assert!(p.record(1, 7, 200, s(3)));
        assert_eq!(p.watermark_basis(s(3)), 300);
        // Partition 0 carries on; partition 1 falls quiet and, after the
        // idle timeout, no longer holds the watermark back.
        assert!(p.record(0, 3, 900, s(12)));
        assert_eq!(p.watermark_basis(s(12)), 500);
        assert_eq!(p.watermark_basis(s(13)), 900);
        assert!(!p.idle(s(13)));
        // Both quiet: the highest of all, and the subtask is idle.
        assert_eq!(p.watermark_basis(s(30)), 900);
        assert!(p.idle(s(30)));
        // A record wakes its partition.
        assert!(p.record(1, 8, 1000, s(31)));
        assert!(!p.idle(s(31)));
        assert_eq!(p.watermark_basis(s(31)), 1000);
        assert_eq!(
            p.positions(),
            vec![
                KafkaPartition {
                    partition: 0,
                    offset: 4,
                    max_timestamp: 900
                },
                KafkaPartition {
                    partition: 1,
                    offset: 9,
                    max_timestamp: 1000
                },
            ]
        );
        // A partition added later counts as quiet from when it was added.
        p.add(2, 0, i64::MIN, None, s(31));
        assert_eq!(p.watermark_basis(s(32)), i64::MIN);
        assert_eq!(p.watermark_basis(s(41)), 1000);
        // Records of partitions it does not read are refused.
        assert!(!p.record(7, 0, 5, s(41)));
    }

    #[test]
    fn without_idle_timeout_a_partition_is_never_idle() {
        let start = t0();
        let mut p = Partitions::new(None);
        assert!(p.idle(start), "no partitions: idle");
        assert_eq!(p.watermark_basis(start), i64::MIN);
        assert!(p.all_done(), "no partitions: done");
        p.add(0, 0, i64::MIN, None, start);
        p.add(1, 0, i64::MIN, None, start);
        assert!(p.record(0, 0, 100, start));
        let later = start + Duration::from_secs(3600 * 24);
        assert!(!p.idle(later));
        assert_eq!(p.watermark_basis(later), i64::MIN);
        assert!(!p.all_done());
    }

    #[test]
    fn stop_at_the_end_offsets_seen_at_open() {
        let start = t0();
        let mut p = Partitions::new(None);
        p.add(0, 0, i64::MIN, Some(2), start);
        p.add(1, 5, i64::MIN, Some(5), start); // empty (or read) already
        p.add(2, 0, i64::MIN, Some(10), start);
        assert_eq!(p.done().collect::<Vec<_>>(), vec![1]);
        assert!(p.record(0, 0, 1, start));
        assert!(!p.all_done());
        assert!(p.record(0, 1, 2, start));
        assert_eq!(p.done().collect::<Vec<_>>(), vec![0, 1]);
        // Records past the end are not read.
        assert!(!p.record(0, 2, 3, start));
        assert!(!p.record(2, 10, 3, start));
        assert!(p.all_done());
        // Partition 2 ended on transaction markers: end of partition.
        let mut q = Partitions::new(None);
        q.add(2, 0, i64::MIN, Some(10), start);
        assert!(q.record(2, 7, 1, start));
        q.reached_end(2, Some(10));
        assert!(q.all_done());
        assert_eq!(q.positions()[0].offset, 10);
        // Done partitions do not hold the watermark back.
        let mut r = Partitions::new(None);
        r.add(0, 0, i64::MIN, Some(1), start);
        r.add(1, 0, i64::MIN, None, start);
        assert!(r.record(0, 0, 50, start));
        assert!(r.record(1, 0, 70, start));
        assert_eq!(r.watermark_basis(start), 70);
        // Without a stop, the end of a partition is only a position.
        let mut n = Partitions::new(None);
        n.add(0, 0, i64::MIN, None, start);
        n.reached_end(0, Some(3));
        assert!(!n.all_done());
        assert_eq!(n.positions()[0].offset, 3);
    }
}

/// Checks against the development broker at 127.0.0.1:9092, run by hand:
/// `cargo test --workspace --lib kafka -- --ignored`.
#[cfg(test)]
pub(super) mod broker {
    use std::collections::BTreeMap;

    use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

    use super::*;

    const BOOTSTRAP: &str = "127.0.0.1:9092";
    /// A guard against a test hanging forever, not a timed assertion.
    pub(super) const PATIENCE: Duration = Duration::from_secs(60);

    fn cluster() -> KafkaCluster {
        KafkaCluster {
            bootstrap: BOOTSTRAP.into(),
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
            format!("Kafka topic `{missing}` does not exist at `{BOOTSTRAP}` (create it, or set `create = {{ partitions = N, replication = R }}` in [source])")
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
                "cannot read Kafka topic `{topic}` at `127.0.0.1:9092`: "
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
