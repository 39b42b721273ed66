//! The librdkafka client: [`KafkaSource`] assigns a subtask's partitions
//! itself, reads them, finds new partitions, rides out a cluster that is
//! away for a while, and deals with offsets out of range; the bookkeeping
//! is [`Partitions`]'s.

use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::Message;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use super::config::{KafkaSourceConfig, OnOutOfRange, StartAt, StopAt};
use super::out_of_range::out_of_range;
use super::partitions::Partitions;
use crate::model::{Batch, SourcePosition, SourceReader};

/// The longest a call to [`KafkaSource::next_batch`] waits for a first record.
const POLL_WAIT: Duration = Duration::from_millis(50);

/// The group id given to librdkafka when the job names none: it needs one
/// to commit, which the source then never does.
const NO_GROUP: &str = "weir-source-no-group";

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
