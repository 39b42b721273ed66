//! The Kafka sink: events become records of one topic (key, value, event
//! time as the record timestamp), partitioned by Kafka's default key hash
//! (librdkafka's `murmur2_random`, as the Java clients do).
//!
//! **At-least-once**: an idempotent producer, flushed at every barrier.
//!
//! **Exactly-once**: one transactional producer per process (transactional
//! id `<prefix>-0`), one Kafka transaction per checkpoint epoch. At barrier
//! `N` ([`SinkWriter::pre_commit`]) the sink writes a marker record
//! `{"checkpoint":N,"store":"<store instance>"}` to the marker topic
//! `<prefix>.commits` inside the transaction, flushes, and waits: records
//! written after the barrier are buffered in memory until checkpoint `N` is
//! complete ([`SinkWriter::commit`]), which commits the transaction, begins
//! the next one and produces the buffer into it. A checkpoint that aborts
//! leaves its transaction open and the buffer goes into it: the next
//! barrier's marker covers both epochs. After a crash, [`last_committed`]
//! fences the dead producer (which aborts its open transaction, or completes
//! one the broker was already committing) and reads the last committed
//! marker: the engine restores the newest checkpoint at or before it and
//! recomputes what came after.
//!
//! **Why one producer and a buffer, not a pool of producers** (one per
//! epoch in flight, the pool that Flink and Arroyo use): with a
//! pool, the records of a checkpoint that aborts sit in a transaction of
//! their own, which must be committed together with the next checkpoint's,
//! in another producer's transaction. Two commits are not atomic: a crash
//! between them leaves the aborted epoch's records committed and the next
//! one's not, and restoring the checkpoint before both writes the first
//! again. Flink resumes such transactions after a crash; librdkafka cannot.
//! One producer keeps every epoch that a checkpoint will commit in one
//! transaction, so the last committed marker always matches one checkpoint.
//! What the pool is for, keeping the data path moving while a commit is in
//! flight, the buffer gives too: only the commit's round trip is waited for,
//! on the sink's thread, and the stages before it go on.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use super::{create_field, CreateTopic, KafkaCluster};
use crate::model::config::{Fields, JobError, Table};
use crate::model::{now_ms, show_key, Batch, SinkState, SinkWriter};

/// The default `transaction_timeout`: 15 minutes, the broker's default
/// `transaction.max.timeout.ms`.
pub const DEFAULT_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// How many bytes of records the exactly-once sink buffers, while it waits
/// for a checkpoint to complete, before it reports itself backlogged.
pub const BACKLOG_BYTES: usize = 64 << 20;

/// How many of the marker topic's last offsets [`last_committed`] reads
/// first (it reads the whole topic when they hold no committed marker).
const MARKER_TAIL: i64 = 1000;

/// The longest topic name Kafka accepts.
const MAX_TOPIC_LEN: usize = 249;

/// The env variable of the test-only pause at [`SinkWriter::commit`].
const COMMIT_PAUSE_ENV: &str = "WEIR_TEST_KAFKA_COMMIT_PAUSE_MS";

/// `delivery`: what the sink guarantees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// `exactly-once`: Kafka transactions committed with the checkpoints.
    ExactlyOnce,
    /// `at-least-once`: an idempotent producer flushed at every barrier.
    AtLeastOnce,
}

/// `[sink] type = "kafka"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaSinkConfig {
    /// Where the cluster is.
    pub cluster: KafkaCluster,
    /// `topic`: the output topic.
    pub topic: String,
    /// `delivery`; `None`: exactly-once when the job takes checkpoints in
    /// exactly-once mode, else at-least-once (the engine decides).
    pub delivery: Option<Delivery>,
    /// `transactional_id_prefix`: the producer's transactional id is
    /// `<prefix>-0` and the marker topic `<prefix>.commits`.
    pub transactional_id_prefix: String,
    /// `transaction_timeout`: the producer's `transaction.timeout.ms`.
    pub transaction_timeout: Duration,
    /// `create`: create the output topic when it does not exist.
    pub create: Option<CreateTopic>,
}

impl KafkaSinkConfig {
    /// The fields of its table, besides `type` (with [`KafkaCluster::FIELDS`]).
    pub const FIELDS: &'static [&'static str] = &[
        "bootstrap",
        "properties",
        "connect_timeout",
        "topic",
        "delivery",
        "transactional_id_prefix",
        "transaction_timeout",
        "create",
    ];

    /// Reads its fields of the `[sink]` table of job `job_name` (which
    /// names the default transactional id prefix).
    pub fn from_table(t: &Table<'_, '_>, f: &mut Fields, job_name: &str) -> Result<Self, JobError> {
        let cluster = KafkaCluster::from_table(t, f, "sink")?;
        let topic_field = f.take("topic");
        let topic_v = t.required(
            "topic",
            &topic_field,
            " (the topic written to, required for a `kafka` sink)",
        )?;
        let topic = t.string("topic", topic_v)?.to_string();
        if topic.is_empty() {
            return Err(t.fail(topic_v.span(), "`topic` must not be empty"));
        }
        let delivery = t.opt(&f.take("delivery"), |v| {
            t.choice(
                "delivery",
                v,
                &[
                    ("exactly-once", Delivery::ExactlyOnce),
                    ("at-least-once", Delivery::AtLeastOnce),
                ],
            )
        })?;
        let prefix_field = f.take("transactional_id_prefix");
        let transactional_id_prefix = match &prefix_field {
            Some(v) => {
                let p = t.string("transactional_id_prefix", v)?;
                if p.is_empty() {
                    return Err(t.fail(v.span(), "`transactional_id_prefix` must not be empty"));
                }
                if let Some(c) = p.chars().find(|c| !id_char(*c)) {
                    return Err(t.fail(
                        v.span(),
                        format!(
                            "`transactional_id_prefix` may hold only letters, digits, `.`, `_` and `-`, found `{}`",
                            c.escape_debug()
                        ),
                    ));
                }
                p.to_string()
            }
            None => default_transactional_id_prefix(job_name, &topic),
        };
        if marker_topic(&transactional_id_prefix).len() > MAX_TOPIC_LEN {
            let span = prefix_field.as_ref().map_or(t.span.clone(), |v| v.span());
            return Err(t.fail(
                span,
                format!(
                    "the transactional id prefix `{transactional_id_prefix}` is too long: its marker topic `<prefix>.commits` must be at most {MAX_TOPIC_LEN} characters (set a shorter `transactional_id_prefix`)"
                ),
            ));
        }
        let transaction_timeout = match f.take("transaction_timeout") {
            Some(v) => {
                let d = t.duration("transaction_timeout", &v)?;
                if d.is_zero() {
                    return Err(t.fail(v.span(), "`transaction_timeout` must be above zero"));
                }
                d
            }
            None => DEFAULT_TRANSACTION_TIMEOUT,
        };
        let create = create_field(t, f)?;
        Ok(KafkaSinkConfig {
            cluster,
            topic,
            delivery,
            transactional_id_prefix,
            transaction_timeout,
            create,
        })
    }

    /// The exactly-once producer's transactional id, `<prefix>-0`.
    pub fn transactional_id(&self) -> String {
        format!("{}-0", self.transactional_id_prefix)
    }

    /// The marker topic, `<prefix>.commits`.
    pub fn marker_topic(&self) -> String {
        marker_topic(&self.transactional_id_prefix)
    }
}

fn marker_topic(prefix: &str) -> String {
    format!("{prefix}.commits")
}

/// Whether `c` may appear in a transactional id prefix (and so in the
/// marker topic's name).
fn id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

/// The default transactional id prefix, `weir-<job>-<topic>`, with every
/// character outside `[A-Za-z0-9._-]` replaced by `_`.
pub fn default_transactional_id_prefix(job_name: &str, topic: &str) -> String {
    format!("weir-{job_name}-{topic}")
        .chars()
        .map(|c| if id_char(c) { c } else { '_' })
        .collect()
}

/// Checks the exactly-once sink's `transaction_timeout` against the job's
/// checkpoint `interval` and `checkpoint_timeout`.
///
/// A transaction is begun when one checkpoint's transaction commits and is
/// committed when the next checkpoint completes: at most `interval +
/// checkpoint_timeout` later. So the timeout must exceed that sum, or the
/// broker aborts the transaction before its checkpoint can commit it.
/// (Each checkpoint that aborts keeps the transaction open for another such
/// span; if it then times out, the next commit fails and the job restarts
/// from the last committed checkpoint: nothing is lost or written twice.)
///
/// The restart delay does not constrain it, and `restart_delay_max` is not
/// checked: when an attempt dies, its open transaction is aborted either by
/// the broker at its timeout or, at the latest, by the next attempt's
/// `init_transactions` (in [`last_committed`]); either way its epoch was
/// never committed and is recomputed from the checkpoint that was, so
/// nothing is lost. A timeout shorter than the restart delay only unblocks
/// `read_committed` consumers (held at the dead transaction's first record)
/// sooner. The broker's own bound (`transaction.max.timeout.ms`, 15 min by
/// default) is checked when the producer starts ([`KafkaSink::open`]).
pub fn check_transaction_timeout(
    timeout: Duration,
    interval: Duration,
    checkpoint_timeout: Duration,
    restart_delay_max: Duration,
) -> Result<(), String> {
    let _ = restart_delay_max;
    let span = interval + checkpoint_timeout;
    if timeout <= span {
        return Err(format!(
            "[sink] transaction_timeout {} must exceed the checkpoint interval plus the checkpoint timeout ({} + {} = {}): a transaction stays open from one checkpoint's commit to the next",
            humantime::format_duration(timeout),
            humantime::format_duration(interval),
            humantime::format_duration(checkpoint_timeout),
            humantime::format_duration(span),
        ));
    }
    Ok(())
}

/// The marker an exactly-once sink writes in each checkpoint's transaction:
/// the last one committed says which checkpoint the output matches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Committed {
    /// The checkpoint whose transaction it was.
    pub checkpoint: u64,
    /// The state store instance that took the checkpoint.
    pub store: String,
}

impl Committed {
    /// Its record value, `{"checkpoint":N,"store":"..."}`.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads a record value written by [`Committed::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Committed, String> {
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }
}

/// Creates the marker topic `<prefix>.commits` when it does not exist:
/// one partition, compacted, replicated as the cluster safely can (3
/// replicas where there are 3 brokers or more, with `min.insync.replicas`
/// 2; fewer on a smaller cluster), since losing it would lose the record of
/// which checkpoint the output matches. An existing marker topic with fewer
/// replicas than that is named in a warning.
pub fn ensure_marker_topic(config: &KafkaSinkConfig) -> Result<(), String> {
    let cluster = &config.cluster;
    let topic = config.marker_topic();
    let brokers = cluster.brokers()?;
    let safe = brokers.clamp(1, 3);
    match cluster.replicas(&topic)? {
        Some(replicas) => {
            if replicas < safe {
                tracing::warn!(
                    "the commit marker topic `{topic}` has {replicas} replica(s) on a cluster of {brokers} brokers: losing it would make recovery refuse to start (raise its replication to {safe})"
                );
            }
        }
        None => {
            let create = CreateTopic {
                partitions: 1,
                replication: safe as i32,
            };
            let min_isr = (safe - 1).max(1).to_string();
            cluster.create_topic(
                &topic,
                create,
                &[
                    ("cleanup.policy", "compact"),
                    ("min.insync.replicas", &min_isr),
                ],
            )?;
            // Waits until the brokers know the new topic (creating it
            // again is a no-op).
            cluster.ensure_topic(&topic, Some(create), "[sink]")?;
        }
    }
    Ok(())
}

/// How long a member of a prefix's owner group may go silent before Kafka
/// takes it out (and a process that was killed lets go of the prefix).
const OWNER_SESSION: Duration = Duration::from_secs(6);

/// A running job's hold on its transactional id prefix: membership of the
/// consumer group `<prefix>.owner`, subscribed to the one-partition marker
/// topic. Kafka's group protocol gives that partition to one member only,
/// and the cooperative-sticky assignor keeps it with the member that has
/// it: so a second process on the same prefix is refused instead of
/// fencing the first. A process that dies holds it until its session
/// times out (`OWNER_SESSION`); one that exits gives it up at once.
/// Released on drop.
pub struct PrefixLock {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for PrefixLock {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Takes the hold on `config`'s transactional id prefix ([`PrefixLock`]),
/// creating the marker topic if needed. Waits while a process that died
/// may still hold it (its session times out); fails in one line naming
/// the holder when a live process keeps it.
pub fn lock_prefix(config: &KafkaSinkConfig) -> Result<PrefixLock, String> {
    ensure_marker_topic(config)?;
    let cluster = &config.cluster;
    let prefix = &config.transactional_id_prefix;
    let group = format!("{prefix}.owner");
    let topic = config.marker_topic();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let me = format!("weir-pid-{}@{host}", std::process::id());
    let consumer: BaseConsumer = cluster
        .client_config()
        .set("group.id", &group)
        .set("client.id", &me)
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("session.timeout.ms", OWNER_SESSION.as_millis().to_string())
        .set("heartbeat.interval.ms", "500")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "latest")
        .set("allow.auto.create.topics", "false")
        .create()
        .map_err(|e| cluster.no_client(&e))?;
    consumer
        .subscribe(&[&topic])
        .map_err(|e| format!("cannot join Kafka group `{group}`: {e}"))?;
    let holds = {
        let topic = topic.clone();
        move |c: &BaseConsumer| {
            c.assignment()
                .map(|a| a.find_partition(&topic, 0).is_some())
                .unwrap_or(false)
        }
    };
    // A dead holder's session runs out, then the group rebalances (twice,
    // cooperatively): well within this.
    let wait = 3 * OWNER_SESSION + Duration::from_secs(5);
    let started = Instant::now();
    let mut announced = false;
    while !holds(&consumer) {
        if started.elapsed() >= wait {
            let holders = consumer
                .fetch_group_list(Some(&group), cluster.connect_timeout)
                .map_err(|e| cluster.unreachable(&e))?
                .groups()
                .iter()
                .flat_map(|g| g.members())
                .filter(|m| m.client_id() != me)
                .map(|m| format!("`{}` at {}", m.client_id(), m.client_host()))
                .collect::<Vec<_>>();
            return Err(if holders.is_empty() {
                format!(
                    "cannot take transactional id prefix `{prefix}` at `{}`: Kafka group `{group}` did not assign it within {}",
                    cluster.bootstrap,
                    humantime::format_duration(wait)
                )
            } else {
                format!(
                    "another weir process runs with transactional id prefix `{prefix}` at `{}` ({}, in Kafka group `{group}`): stop it first, or give this job its own `transactional_id_prefix`",
                    cluster.bootstrap,
                    holders.join(", ")
                )
            });
        }
        if !announced && started.elapsed() >= Duration::from_secs(2) {
            tracing::info!(
                "waiting for transactional id prefix `{prefix}`: Kafka group `{group}` has another member (a process that died lets go within {})",
                humantime::format_duration(OWNER_SESSION)
            );
            announced = true;
        }
        if let Some(Err(e)) = consumer.poll(Duration::from_millis(100)) {
            tracing::debug!("Kafka group `{group}`: {e}");
        }
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopping = stop.clone();
    let thread = std::thread::Builder::new()
        .name("weir-kafka-owner".to_string())
        .spawn(move || {
            let mut held = true;
            while !stopping.load(std::sync::atomic::Ordering::SeqCst) {
                // Records of the marker topic are not read, only skipped.
                let _ = consumer.poll(Duration::from_millis(200));
                let now = holds(&consumer);
                if held && !now {
                    tracing::warn!(
                        "lost the hold on transactional id prefix `{group}` (the process was out of touch with Kafka for over {}): another process may take it and fence this one",
                        humantime::format_duration(OWNER_SESSION)
                    );
                }
                held = now;
            }
            // Dropping the consumer leaves the group at once.
        })
        .map_err(|e| format!("cannot start a thread: {e}"))?;
    Ok(PrefixLock {
        stop,
        thread: Some(thread),
    })
}

/// Aborts a transaction that an earlier run left open under transactional
/// id prefix `prefix` (the job's prefix was changed since): initialising a
/// producer with its id fences the old one and aborts its transaction, so
/// that `read_committed` consumers are not held up until it times out.
/// Only when no live process holds that prefix ([`lock_prefix`]).
pub fn abort_left_open(config: &KafkaSinkConfig, prefix: &str) -> Result<(), String> {
    let mut old = config.clone();
    old.transactional_id_prefix = prefix.to_string();
    // A process on that prefix would have made its marker topic.
    let _lock = match old.cluster.partitions(&old.marker_topic())? {
        Some(_) => Some(lock_prefix(&old)?),
        None => None,
    };
    let producer = transactional_producer(&old, Context::default(), None)?;
    producer
        .init_transactions(old.cluster.connect_timeout)
        .map_err(|e| init_error(&old, &producer, &e))?;
    tracing::info!(
        "aborted any transaction left open under transactional id `{}` (the job's earlier prefix)",
        old.transactional_id()
    );
    Ok(())
}

/// What the exactly-once sink's last committed transaction says: its
/// producer `<prefix>-0` is initialised first (fencing a crashed or older
/// producer and resolving its transaction), then the marker topic is read
/// with `read_committed`. `None` when the marker topic does not exist or
/// holds no committed marker.
pub fn last_committed(config: &KafkaSinkConfig) -> Result<Option<Committed>, String> {
    let cluster = &config.cluster;
    let marker_topic = config.marker_topic();
    {
        // Fence whoever held the transactional id; a transaction it left
        // open is aborted, one being committed completes, and the broker
        // answers only once their markers are written: the marker topic's
        // last stable offset is then its end.
        let producer = transactional_producer(config, Context::default(), None)?;
        producer
            .init_transactions(cluster.connect_timeout)
            .map_err(|e| init_error(config, &producer, &e))?;
    }
    if cluster.partitions(&marker_topic)?.is_none() {
        return Ok(None);
    }
    let consumer: BaseConsumer = cluster
        .client_config()
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .set("enable.auto.commit", "false")
        // Where an offset is out of range (compacted away), read from the
        // first one: never from the end, which would miss markers.
        .set("auto.offset.reset", "earliest")
        .set(
            "group.id",
            format!("{}-recovery", config.transactional_id_prefix),
        )
        .create()
        .map_err(|e| cluster.no_client(&e))?;
    let (low, high) = consumer
        .fetch_watermarks(&marker_topic, 0, cluster.connect_timeout)
        .map_err(|e| cluster.unreachable(&e))?;
    if high <= low {
        return Ok(None);
    }
    let tail_start = low.max(high - MARKER_TAIL);
    let found = read_markers(config, &consumer, tail_start, high)?;
    if found.is_some() || tail_start == low {
        return Ok(found);
    }
    read_markers(config, &consumer, low, high)
}

/// The last committed marker of the marker topic from `start` to its end,
/// `high`.
fn read_markers(
    config: &KafkaSinkConfig,
    consumer: &BaseConsumer,
    start: i64,
    high: i64,
) -> Result<Option<Committed>, String> {
    let cluster = &config.cluster;
    let marker_topic = config.marker_topic();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&marker_topic, 0, Offset::Offset(start))
        .map_err(|e| e.to_string())?;
    consumer
        .assign(&tpl)
        .map_err(|e| format!("cannot read Kafka topic `{marker_topic}`: {e}"))?;
    let deadline = Instant::now() + cluster.connect_timeout;
    let mut last = None;
    let mut at_end = false;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(format!(
                "cannot read the commit markers of Kafka topic `{marker_topic}` at `{}` within {} (`connect_timeout`)",
                cluster.bootstrap,
                humantime::format_duration(cluster.connect_timeout)
            ));
        }
        match consumer.poll(if at_end {
            Duration::ZERO
        } else {
            remaining.min(Duration::from_millis(500))
        }) {
            // librdkafka may hand out the end-of-partition event before
            // records it fetched earlier: those are already queued, so the
            // end is where the queue is empty after it.
            None if at_end => return Ok(last),
            None => {}
            Some(Err(KafkaError::PartitionEOF(_))) => {
                // An end event before `high` is not the end (the fetcher
                // may report one before an offset reset).
                at_end = consumer
                    .position()
                    .ok()
                    .and_then(|p| p.find_partition(&marker_topic, 0)?.offset().to_raw())
                    .is_some_and(|o| o >= high);
            }
            Some(Err(e)) => {
                return Err(format!(
                    "cannot read Kafka topic `{marker_topic}` at `{}`: {e}",
                    cluster.bootstrap
                ))
            }
            Some(Ok(m)) => {
                let marker = Committed::decode(m.payload().unwrap_or_default()).map_err(|e| {
                    format!(
                        "Kafka topic `{marker_topic}` holds a record that is not a weir commit marker at offset {}: {e}",
                        m.offset()
                    )
                })?;
                last = Some(marker);
            }
        }
    }
}

/// The first delivery failure the producer reported, and what it needs to
/// be named: the record's key and size.
#[derive(Debug, Clone)]
struct Failure {
    error: KafkaError,
    key: Option<Vec<u8>>,
    size: usize,
}

/// The producer's context: it keeps the first delivery failure for the
/// sink's thread to report.
#[derive(Default)]
struct Context {
    failure: Mutex<Option<Failure>>,
}

impl ClientContext for Context {
    /// librdkafka's errors that reach no call (a broker connection lost):
    /// it retries them, and a send or commit that cannot complete fails
    /// the job; so they are warnings.
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!("Kafka producer: {error}: {reason}");
    }
}

impl ProducerContext for Context {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((error, message)) = result {
            let mut failure = self.failure.lock().unwrap_or_else(|e| e.into_inner());
            // Records purged because another failed (a transaction that
            // must abort) say less than the failure that caused it.
            let purged = |e: &KafkaError| {
                matches!(
                    e.rdkafka_error_code(),
                    Some(RDKafkaErrorCode::PurgeQueue) | Some(RDKafkaErrorCode::PurgeInflight)
                )
            };
            if failure
                .as_ref()
                .is_none_or(|f| purged(&f.error) && !purged(error))
            {
                *failure = Some(Failure {
                    error: error.clone(),
                    key: message.key().map(<[u8]>::to_vec),
                    size: message.key_len() + message.payload_len(),
                });
            }
        }
    }
}

/// The producer settings both modes share.
fn producer_config(cluster: &KafkaCluster) -> ClientConfig {
    let mut c = cluster.client_config();
    c.set("partitioner", "murmur2_random")
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5");
    c
}

/// librdkafka's default `message.max.bytes`.
const DEFAULT_MESSAGE_MAX_BYTES: u64 = 1_000_000;

/// Keeps the producer's `message.max.bytes` (the largest record and the
/// largest batch it sends) within the output topic's `max.message.bytes`:
/// otherwise librdkafka packs small records with a large one into a batch
/// that the broker refuses whole, and the failure names the wrong record.
/// With the limit here, a record over it fails alone, before it is sent,
/// naming its own key.
fn limit_to_topic(c: &mut ClientConfig, cluster: &KafkaCluster, topic_limit: Option<u64>) {
    let local = cluster
        .properties
        .get("message.max.bytes")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(DEFAULT_MESSAGE_MAX_BYTES);
    if let Some(limit) = topic_limit.filter(|l| *l < local) {
        // librdkafka's smallest allowed value.
        c.set("message.max.bytes", limit.max(1000).to_string());
    }
}

fn transactional_producer(
    config: &KafkaSinkConfig,
    context: Context,
    topic_limit: Option<u64>,
) -> Result<BaseProducer<Context>, String> {
    let mut c = producer_config(&config.cluster);
    limit_to_topic(&mut c, &config.cluster, topic_limit);
    c.set("transactional.id", config.transactional_id())
        .set(
            "transaction.timeout.ms",
            config.transaction_timeout.as_millis().to_string(),
        )
        .create_with_context(context)
        .map_err(|e| {
            format!(
                "cannot create a Kafka producer for `{}`: {e}",
                config.cluster.bootstrap
            )
        })
}

/// Whether `code` says another producer took over the transactional id.
fn is_fenced(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::ProducerFenced
            | RDKafkaErrorCode::Fenced
            | RDKafkaErrorCode::InvalidProducerEpoch
            | RDKafkaErrorCode::TransactionCoordinatorFenced
    )
}

/// The one-line message of a failed `init_transactions`.
fn init_error(
    config: &KafkaSinkConfig,
    producer: &BaseProducer<Context>,
    e: &KafkaError,
) -> String {
    let cluster = &config.cluster;
    match e.rdkafka_error_code() {
        Some(RDKafkaErrorCode::InvalidTransactionTimeout) => {
            let max = broker_setting(producer, cluster, "transaction.max.timeout.ms")
                .and_then(|v| v.parse::<u64>().ok())
                .map(|ms| {
                    format!(
                        " ({})",
                        humantime::format_duration(Duration::from_millis(ms))
                    )
                })
                .unwrap_or_default();
            format!(
                "[sink] transaction_timeout {} is above the Kafka broker's `transaction.max.timeout.ms`{max} at `{}`: lower it, or raise the broker's setting",
                humantime::format_duration(config.transaction_timeout),
                cluster.bootstrap
            )
        }
        Some(RDKafkaErrorCode::TransactionalIdAuthorizationFailed) => format!(
            "Kafka at `{}` does not authorise transactional id `{}`",
            cluster.bootstrap,
            config.transactional_id()
        ),
        Some(code) if is_fenced(code) => fenced(config),
        _ => format!(
            "cannot start the Kafka transactional producer `{}` at `{}` within {} (`connect_timeout`): {e}",
            config.transactional_id(),
            cluster.bootstrap,
            humantime::format_duration(cluster.connect_timeout)
        ),
    }
}

/// The message of a producer fenced by the broker: another producer took
/// its transactional id, or (the broker cannot tell them apart) its
/// transaction outlived the timeout and the broker aborted it.
fn fenced(config: &KafkaSinkConfig) -> String {
    format!(
        "fenced: another weir process uses transactional id `{}` at `{}` (or its transaction outlived `transaction_timeout` {})",
        config.transactional_id(),
        config.cluster.bootstrap,
        humantime::format_duration(config.transaction_timeout)
    )
}

/// A broker setting, read with the admin API; `None` when it cannot be read
/// (in time): callers only use it to say more in a message.
fn broker_setting(
    producer: &BaseProducer<Context>,
    cluster: &KafkaCluster,
    name: &str,
) -> Option<String> {
    let metadata = producer
        .client()
        .fetch_metadata(None, cluster.connect_timeout)
        .ok()?;
    let broker = metadata.brokers().first()?.id();
    config_value(cluster, ResourceSpecifier::Broker(broker), name)
}

/// A setting of a topic or broker, read with the admin API; `None` when it
/// cannot be read in time.
fn config_value(
    cluster: &KafkaCluster,
    resource: ResourceSpecifier<'_>,
    name: &str,
) -> Option<String> {
    let admin: AdminClient<DefaultClientContext> = cluster.client_config().create().ok()?;
    let options = AdminOptions::new().request_timeout(Some(cluster.connect_timeout));
    let results = futures_executor::block_on(admin.describe_configs([&resource], &options)).ok()?;
    let resource = results.into_iter().next()?.ok()?;
    resource.get(name)?.value.clone()
}

/// `[sink] type = "kafka"`: writes events to a Kafka topic.
pub struct KafkaSink {
    producer: BaseProducer<Context>,
    config: KafkaSinkConfig,
    exactly_once: bool,
    marker_topic: String,
    /// The marker's value before the checkpoint: the store instance.
    store_instance: String,
    /// The checkpoint whose barrier this sink has passed and whose
    /// completion it awaits (exactly-once).
    awaiting: Option<u64>,
    /// Whether a transaction is open (exactly-once).
    in_transaction: bool,
    /// Records produced into the open transaction since its last marker.
    uncovered: u64,
    /// Records after a barrier, held until its checkpoint completes.
    buffer: Batch,
    /// The test-only pause before a commit.
    commit_pause: Option<Duration>,
}

impl KafkaSink {
    /// Opens the sink: finds (or creates) the output topic, and starts an
    /// idempotent producer; with `exactly_once`, a transactional one, whose
    /// marker topic it creates when missing, with a transaction begun.
    /// `store_instance` names the state store in the commit markers.
    pub fn open(
        config: &KafkaSinkConfig,
        exactly_once: bool,
        store_instance: &str,
    ) -> Result<KafkaSink, String> {
        let cluster = &config.cluster;
        cluster.ensure_topic(&config.topic, config.create, "[sink]")?;
        let marker_topic = config.marker_topic();
        let topic_limit = config_value(
            cluster,
            ResourceSpecifier::Topic(&config.topic),
            "max.message.bytes",
        )
        .and_then(|v| v.trim().parse::<u64>().ok());
        let producer = if exactly_once {
            ensure_marker_topic(config)?;
            let producer = transactional_producer(config, Context::default(), topic_limit)?;
            producer
                .init_transactions(cluster.connect_timeout)
                .map_err(|e| init_error(config, &producer, &e))?;
            producer
                .begin_transaction()
                .map_err(|e| format!("cannot begin a Kafka transaction: {e}"))?;
            producer
        } else {
            let mut c = producer_config(cluster);
            limit_to_topic(&mut c, cluster, topic_limit);
            c.create_with_context(Context::default()).map_err(|e| {
                format!(
                    "cannot create a Kafka producer for `{}`: {e}",
                    cluster.bootstrap
                )
            })?
        };
        let commit_pause = std::env::var(COMMIT_PAUSE_ENV)
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_millis);
        Ok(KafkaSink {
            producer,
            config: config.clone(),
            exactly_once,
            marker_topic,
            store_instance: store_instance.to_string(),
            awaiting: None,
            in_transaction: exactly_once,
            uncovered: 0,
            buffer: Batch::default(),
            commit_pause,
        })
    }

    /// The one-line error of a failed Kafka call `what`.
    fn error(&self, what: &str, e: &KafkaError) -> std::io::Error {
        let code = e.rdkafka_error_code();
        let fatal = self.producer.client().fatal_error();
        let message =
            if code.is_some_and(is_fenced) || fatal.as_ref().is_some_and(|f| is_fenced(f.0)) {
                fenced(&self.config)
            } else if let Some((code, reason)) = fatal {
                format!(
                    "Kafka at `{}`: {what} failed, and the producer cannot go on: {code}: {reason}",
                    self.config.cluster.bootstrap
                )
            } else if matches!(
                code,
                Some(RDKafkaErrorCode::OperationTimedOut) | Some(RDKafkaErrorCode::RequestTimedOut)
            ) || matches!(e, KafkaError::Flush(_))
            {
                format!(
                    "Kafka at `{}` did not acknowledge {what} within {} (`connect_timeout`): {e}",
                    self.config.cluster.bootstrap,
                    humantime::format_duration(self.config.cluster.connect_timeout)
                )
            } else {
                format!(
                    "Kafka at `{}`: {what} failed: {e}",
                    self.config.cluster.bootstrap
                )
            };
        std::io::Error::other(message)
    }

    /// The one-line error of a record over the size limit.
    fn too_large(&self, key: Option<&[u8]>, size: usize) -> std::io::Error {
        let cluster = &self.config.cluster;
        let local = cluster
            .properties
            .get("message.max.bytes")
            .cloned()
            .unwrap_or_else(|| "1000000".to_string());
        let topic_limit = config_value(
            cluster,
            ResourceSpecifier::Topic(&self.config.topic),
            "max.message.bytes",
        )
        .map(|v| {
            format!(
                ", topic `{}`'s `max.message.bytes` is {v}",
                self.config.topic
            )
        })
        .unwrap_or_default();
        let key = show_key(key);
        std::io::Error::other(format!(
            "a record of {size} bytes ({key}) is over the Kafka size limit for `{}`: the producer's `message.max.bytes` is {local}{topic_limit} (raise them, in [sink] properties and on the topic)",
            self.config.topic
        ))
    }

    /// Serves delivery reports; the first failure becomes an error.
    fn check_deliveries(&self) -> std::io::Result<()> {
        self.producer.poll(Duration::ZERO);
        let failure = self
            .producer
            .context()
            .failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match failure {
            None => Ok(()),
            Some(f) => match f.error.rdkafka_error_code() {
                Some(RDKafkaErrorCode::MessageSizeTooLarge) => {
                    Err(self.too_large(f.key.as_deref(), f.size))
                }
                _ => Err(self.error(
                    &format!("a record to topic `{}`", self.config.topic),
                    &f.error,
                )),
            },
        }
    }

    /// Sends one record, waiting while librdkafka's queue is full.
    fn send(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: &[u8],
        timestamp: i64,
    ) -> std::io::Result<()> {
        let mut record = BaseRecord::to(topic).payload(value).timestamp(timestamp);
        if let Some(k) = key {
            record = record.key(k);
        }
        let mut full_since: Option<Instant> = None;
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    // Wait for acknowledgements to make room, as long as a
                    // flush would.
                    record = r;
                    let since = *full_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > self.config.cluster.connect_timeout {
                        return Err(self.error(
                            &format!("records to topic `{topic}`"),
                            &KafkaError::Flush(RDKafkaErrorCode::QueueFull),
                        ));
                    }
                    self.producer.poll(Duration::from_millis(100));
                    self.check_deliveries()?;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge), _)) => {
                    return Err(self.too_large(key, key.map_or(0, <[u8]>::len) + value.len()));
                }
                Err((e, _)) => {
                    return Err(self.error(&format!("a record to topic `{topic}`"), &e));
                }
            }
        }
    }

    /// Produces a batch's events.
    fn produce(&mut self, batch: &Batch) -> std::io::Result<()> {
        for event in batch.iter() {
            self.send(&self.config.topic, event.key, event.value, event.timestamp)?;
        }
        self.uncovered += batch.len() as u64;
        self.check_deliveries()
    }

    /// Produces the buffered events into the open transaction.
    fn produce_buffer(&mut self) -> std::io::Result<()> {
        let mut buffer = std::mem::take(&mut self.buffer);
        let result = self.produce(&buffer);
        buffer.data.clear();
        buffer.key_lens.clear();
        buffer.value_lens.clear();
        buffer.timestamps.clear();
        self.buffer = buffer;
        result
    }

    /// Waits until every record sent is acknowledged (at most
    /// `connect_timeout`), and reports the first failure.
    fn flush_producer(&self) -> std::io::Result<()> {
        let flushed = self.producer.flush(self.config.cluster.connect_timeout);
        self.check_deliveries()?;
        flushed.map_err(|e| self.error("the records sent", &e))
    }
}

impl SinkWriter for KafkaSink {
    fn write(&mut self, batch: &Batch) -> std::io::Result<()> {
        if self.exactly_once && self.awaiting.is_some() {
            self.buffer.data.extend_from_slice(&batch.data);
            self.buffer.key_lens.extend_from_slice(&batch.key_lens);
            self.buffer.value_lens.extend_from_slice(&batch.value_lens);
            self.buffer.timestamps.extend_from_slice(&batch.timestamps);
            return Ok(());
        }
        self.produce(batch)
    }

    fn pre_commit(&mut self, id: u64) -> std::io::Result<Option<SinkState>> {
        if !self.exactly_once {
            self.flush_producer()?;
            return Ok(None);
        }
        if self.awaiting.take().is_some() {
            // The checkpoint awaited was aborted: what came after its
            // barrier goes into the same transaction, under this marker.
            self.produce_buffer()?;
        }
        let marker = Committed {
            checkpoint: id,
            store: self.store_instance.clone(),
        }
        .encode();
        let key = self.config.transactional_id_prefix.clone();
        let topic = self.marker_topic.clone();
        self.send(&topic, Some(key.as_bytes()), &marker, now_ms())?;
        self.flush_producer()?;
        self.uncovered = 0;
        self.awaiting = Some(id);
        Ok(None)
    }

    fn commit(&mut self, id: u64) -> std::io::Result<()> {
        if !self.exactly_once {
            return Ok(());
        }
        let Some(awaiting) = self.awaiting.filter(|a| *a <= id) else {
            return Ok(());
        };
        if let Some(pause) = self.commit_pause {
            tracing::info!("checkpoint {id} is durable; committing its Kafka transaction");
            std::thread::sleep(pause);
        }
        let timeout = self.config.cluster.connect_timeout;
        self.producer.commit_transaction(timeout).map_err(|e| {
            self.error(
                &format!("the commit of checkpoint {awaiting}'s transaction"),
                &e,
            )
        })?;
        self.in_transaction = false;
        self.awaiting = None;
        self.producer
            .begin_transaction()
            .map_err(|e| self.error("a new transaction", &e))?;
        self.in_transaction = true;
        self.produce_buffer()
    }

    fn checkpoint_aborted(&mut self, id: u64) -> std::io::Result<()> {
        if self.exactly_once && self.awaiting.is_some_and(|a| a <= id) {
            self.awaiting = None;
            self.produce_buffer()?;
        }
        Ok(())
    }

    fn backlogged(&self) -> bool {
        self.buffer.data.len() + 16 * self.buffer.timestamps.len() > BACKLOG_BYTES
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.flush_producer()
    }

    fn finish(&mut self) -> std::io::Result<()> {
        if !self.exactly_once {
            return self.flush_producer();
        }
        if !self.in_transaction {
            return Ok(());
        }
        let left = self.uncovered + self.buffer.len() as u64;
        if let Some(awaiting) = self.awaiting {
            tracing::warn!(
                "{}: checkpoint {awaiting} never completed; its Kafka transaction is aborted",
                self.describe()
            );
        } else if left > 0 {
            tracing::warn!(
                "{}: {left} records at the end are covered by no checkpoint; their Kafka transaction is aborted",
                self.describe()
            );
        }
        self.in_transaction = false;
        self.producer
            .abort_transaction(self.config.cluster.connect_timeout)
            .map_err(|e| self.error("the abort of the last transaction", &e))
    }

    fn describe(&self) -> String {
        format!(
            "sink kafka `{}` at `{}`",
            self.config.topic, self.config.cluster.bootstrap
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::config::JobFile;

    fn parse(text: &str) -> Result<KafkaSinkConfig, String> {
        let cx = JobFile {
            file: "job.toml".into(),
            text,
            base_dir: std::path::PathBuf::from("/"),
        };
        let mut f: Fields = toml::from_str(text).unwrap();
        let t = cx.section("sink", 0..0);
        KafkaSinkConfig::from_table(&t, &mut f, "my job/1").map_err(|e| e.to_string())
    }

    #[test]
    fn reads_a_full_table() {
        let c = parse(
            r#"
            bootstrap = "127.0.0.1:9092"
            topic = "counts"
            delivery = "at-least-once"
            transactional_id_prefix = "weir-x.y_z"
            transaction_timeout = "2m"
            create = { partitions = 3, replication = 1 }
            connect_timeout = "5s"
            "#,
        )
        .unwrap();
        assert_eq!(c.topic, "counts");
        assert_eq!(c.delivery, Some(Delivery::AtLeastOnce));
        assert_eq!(c.transactional_id_prefix, "weir-x.y_z");
        assert_eq!(c.transactional_id(), "weir-x.y_z-0");
        assert_eq!(c.marker_topic(), "weir-x.y_z.commits");
        assert_eq!(c.transaction_timeout, Duration::from_secs(120));
        assert_eq!(
            c.create,
            Some(CreateTopic {
                partitions: 3,
                replication: 1
            })
        );
        assert_eq!(c.cluster.connect_timeout, Duration::from_secs(5));
    }

    #[test]
    fn defaults() {
        let c = parse("bootstrap = \"b:9092\"\ntopic = \"out:put\"").unwrap();
        assert_eq!(c.delivery, None);
        assert_eq!(c.transactional_id_prefix, "weir-my_job_1-out_put");
        assert_eq!(c.transaction_timeout, DEFAULT_TRANSACTION_TIMEOUT);
        assert_eq!(c.create, None);
        assert_eq!(
            default_transactional_id_prefix("a b", "t.é-1"),
            "weir-a_b-t._-1"
        );
    }

    #[test]
    fn rejects_bad_values() {
        let bad = |text: &str, wanted: &str| {
            let e = parse(text).unwrap_err();
            assert!(e.contains(wanted), "{e:?} lacks {wanted:?}");
            assert!(!e.contains('\n'), "{e:?}");
        };
        bad("bootstrap = \"b:1\"", "missing `topic`");
        bad(
            "bootstrap = \"b:1\"\ntopic = \"\"",
            "`topic` must not be empty",
        );
        bad(
            "bootstrap = \"b:1\"\ntopic = \"t\"\ndelivery = \"twice\"",
            "`delivery` must be one of `exactly-once`, `at-least-once`",
        );
        bad(
            "bootstrap = \"b:1\"\ntopic = \"t\"\ntransactional_id_prefix = \"\"",
            "`transactional_id_prefix` must not be empty",
        );
        bad(
            "bootstrap = \"b:1\"\ntopic = \"t\"\ntransactional_id_prefix = \"a/b\"",
            "found `/`",
        );
        bad(
            "bootstrap = \"b:1\"\ntopic = \"t\"\ntransaction_timeout = \"0s\"",
            "`transaction_timeout` must be above zero",
        );
        bad(
            &format!(
                "bootstrap = \"b:1\"\ntopic = \"t\"\ntransactional_id_prefix = \"{}\"",
                "a".repeat(250)
            ),
            "too long",
        );
        bad("topic = \"t\"", "missing `bootstrap`");
    }

    #[test]
    fn transaction_timeout_must_exceed_interval_plus_checkpoint_timeout() {
        let s = Duration::from_secs;
        assert!(check_transaction_timeout(s(900), s(10), s(600), s(60)).is_ok());
        // The restart delay does not constrain it (see the doc).
        assert!(check_transaction_timeout(s(60), s(10), s(30), s(3600)).is_ok());
        let e = check_transaction_timeout(s(60), s(30), s(30), s(1)).unwrap_err();
        assert!(
            e.starts_with("[sink] transaction_timeout 1m must exceed"),
            "{e}"
        );
        assert!(e.contains("30s + 30s = 1m"), "{e}");
        assert!(!e.contains('\n'));
    }

    #[test]
    fn markers_round_trip() {
        let m = Committed {
            checkpoint: 7,
            store: "a\"b".into(),
        };
        assert_eq!(m.encode(), br#"{"checkpoint":7,"store":"a\"b"}"#);
        assert_eq!(Committed::decode(&m.encode()).unwrap(), m);
        assert!(Committed::decode(b"nope").is_err());
    }

    /// Against a real broker: `WEIR_TEST_KAFKA` (default `127.0.0.1:9092`,
    /// the development broker `scripts/services.sh up kafka` starts). Run
    /// with `cargo test --workspace --lib kafka::sink -- --ignored`.
    mod broker {
        use super::*;
        use rdkafka::consumer::BaseConsumer;
        use std::collections::BTreeMap;

        fn bootstrap() -> String {
            std::env::var("WEIR_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".into())
        }

        fn unique(name: &str) -> String {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos();
            format!("weir-test-sink-{name}-{}-{nanos}", std::process::id())
        }

        fn config(name: &str) -> KafkaSinkConfig {
            let topic = unique(name);
            KafkaSinkConfig {
                cluster: KafkaCluster {
                    bootstrap: bootstrap(),
                    properties: BTreeMap::new(),
                    connect_timeout: Duration::from_secs(30),
                },
                transactional_id_prefix: default_transactional_id_prefix("test", &topic),
                topic,
                delivery: None,
                transaction_timeout: Duration::from_secs(60),
                create: Some(CreateTopic {
                    partitions: 3,
                    replication: 1,
                }),
            }
        }

        /// The test records' first timestamp: recent, so that the
        /// broker's retention (by timestamp) keeps them.
        fn base() -> i64 {
            static BASE: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
            *BASE.get_or_init(now_ms)
        }

        fn batch(from: usize, n: usize) -> Batch {
            let mut b = Batch::default();
            for i in from..from + n {
                b.push(
                    Some(format!("k{i}").as_bytes()),
                    format!("v{i}").as_bytes(),
                    base() + i as i64,
                );
            }
            b
        }

        /// Every record a `read_committed` consumer sees in `topic`, as
        /// (key, value, timestamp), sorted.
        fn visible(config: &KafkaSinkConfig) -> Vec<(String, String, i64)> {
            read(config)
                .into_iter()
                .map(|(k, v, t, _)| (k, v, t))
                .collect()
        }

        /// Kafka's default partitioner (the Java client's `murmur2`).
        fn java_partition(key: &[u8], partitions: i32) -> i32 {
            const M: u32 = 0x5bd1_e995;
            let mut h: u32 = 0x9747_b28c ^ key.len() as u32;
            let mut chunks = key.chunks_exact(4);
            for c in &mut chunks {
                let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                k = k.wrapping_mul(M);
                k ^= k >> 24;
                k = k.wrapping_mul(M);
                h = h.wrapping_mul(M);
                h ^= k;
            }
            let rest = chunks.remainder();
            if !rest.is_empty() {
                for (i, b) in rest.iter().enumerate().rev() {
                    h ^= u32::from(*b) << (8 * i);
                }
                h = h.wrapping_mul(M);
            }
            h ^= h >> 13;
            h = h.wrapping_mul(M);
            h ^= h >> 15;
            ((h & 0x7fff_ffff) % partitions as u32) as i32
        }

        /// Every record a `read_committed` consumer sees in `topic`, as
        /// (key, value, timestamp, partition), sorted.
        fn read(config: &KafkaSinkConfig) -> Vec<(String, String, i64, i32)> {
            let consumer: BaseConsumer = config
                .cluster
                .client_config()
                .set("isolation.level", "read_committed")
                .set("enable.partition.eof", "true")
                .set("auto.offset.reset", "earliest")
                .set("group.id", unique("reader"))
                .create()
                .unwrap();
            let n = config.cluster.partitions(&config.topic).unwrap().unwrap();
            let mut tpl = TopicPartitionList::new();
            for p in 0..n {
                tpl.add_partition_offset(&config.topic, p, Offset::Beginning)
                    .unwrap();
            }
            consumer.assign(&tpl).unwrap();
            let mut eof = std::collections::BTreeSet::new();
            let mut out = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                assert!(Instant::now() < deadline, "no end of partitions");
                // The end events may come before records fetched earlier,
                // which are queued by then: drain the queue after them.
                let at_end = eof.len() == n as usize;
                match consumer.poll(if at_end {
                    Duration::ZERO
                } else {
                    Duration::from_millis(200)
                }) {
                    None if at_end => break,
                    None => {}
                    Some(Err(KafkaError::PartitionEOF(p))) => {
                        eof.insert(p);
                    }
                    Some(Err(e)) => panic!("{e}"),
                    Some(Ok(m)) => {
                        let s = |b: Option<&[u8]>| String::from_utf8(b.unwrap().to_vec()).unwrap();
                        out.push((
                            s(m.key()),
                            s(m.payload()),
                            m.timestamp().to_millis().unwrap(),
                            m.partition(),
                        ));
                    }
                }
            }
            out.sort();
            out
        }

        /// Waits until a `read_committed` consumer sees `wanted`: a
        /// transaction's commit markers reach the partitions shortly after
        /// `commit_transaction` returns.
        fn await_visible(config: &KafkaSinkConfig, wanted: Vec<(String, String, i64)>) {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let seen = visible(config);
                if seen == wanted || Instant::now() >= deadline {
                    assert_eq!(seen, wanted);
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }

        fn expected(from: usize, n: usize) -> Vec<(String, String, i64)> {
            let mut v: Vec<_> = (from..from + n)
                .map(|i| (format!("k{i}"), format!("v{i}"), base() + i as i64))
                .collect();
            v.sort();
            v
        }

        #[test]
        #[ignore = "needs a Kafka broker"]
        fn exactly_once_publishes_at_commit_and_recovers_the_last_marker() {
            let c = config("eos");
            assert_eq!(last_committed(&c).unwrap(), None);
            let mut sink = KafkaSink::open(&c, true, "store-a").unwrap();
            sink.write(&batch(0, 10)).unwrap();
            sink.pre_commit(1).unwrap();
            // After the barrier: buffered until checkpoint 1 completes.
            sink.write(&batch(10, 5)).unwrap();
            assert_eq!(visible(&c), vec![]);
            sink.commit(1).unwrap();
            await_visible(&c, expected(0, 10));
            // Epoch 2 (records 10..20) is pre-committed, then the process dies.
            sink.write(&batch(15, 5)).unwrap();
            sink.pre_commit(2).unwrap();
            drop(sink);
            assert_eq!(
                last_committed(&c).unwrap(),
                Some(Committed {
                    checkpoint: 1,
                    store: "store-a".into()
                })
            );
            await_visible(&c, expected(0, 10));
            // The next attempt recomputes epoch 2 and commits it.
            let mut sink = KafkaSink::open(&c, true, "store-a").unwrap();
            sink.write(&batch(10, 10)).unwrap();
            sink.pre_commit(2).unwrap();
            sink.commit(2).unwrap();
            sink.finish().unwrap();
            await_visible(&c, expected(0, 20));
            assert_eq!(last_committed(&c).unwrap().unwrap().checkpoint, 2);
        }

        #[test]
        #[ignore = "needs a Kafka broker"]
        fn an_aborted_checkpoint_is_covered_by_the_next() {
            let c = config("abort");
            let mut sink = KafkaSink::open(&c, true, "s").unwrap();
            sink.write(&batch(0, 3)).unwrap();
            sink.pre_commit(1).unwrap();
            sink.write(&batch(3, 3)).unwrap();
            sink.checkpoint_aborted(1).unwrap();
            sink.write(&batch(6, 3)).unwrap();
            sink.pre_commit(2).unwrap();
            sink.write(&batch(9, 3)).unwrap();
            // pre_commit(3) while awaiting 2: 2 was aborted.
            sink.pre_commit(3).unwrap();
            // A late commit of an older checkpoint publishes nothing.
            sink.commit(1).unwrap();
            assert_eq!(visible(&c), vec![]);
            sink.commit(3).unwrap();
            await_visible(&c, expected(0, 12));
            assert_eq!(last_committed(&c).unwrap().unwrap().checkpoint, 3);
            sink.finish().unwrap();
        }

        #[test]
        #[ignore = "needs a Kafka broker"]
        fn at_least_once_flushes_at_the_barrier() {
            let c = config("alo");
            let mut sink = KafkaSink::open(&c, false, "s").unwrap();
            sink.write(&batch(0, 7)).unwrap();
            sink.pre_commit(1).unwrap();
            await_visible(&c, expected(0, 7));
            // Partitioned as Java clients would.
            for (key, _, _, partition) in read(&c) {
                assert_eq!(partition, java_partition(key.as_bytes(), 3), "{key}");
            }
            sink.write(&batch(7, 1)).unwrap();
            sink.finish().unwrap();
            await_visible(&c, expected(0, 8));
            assert_eq!(
                sink.describe(),
                format!("sink kafka `{}` at `{}`", c.topic, bootstrap())
            );
        }

        #[test]
        #[ignore = "needs a Kafka broker"]
        fn a_record_over_the_size_limit_names_the_limit_and_key() {
            let c = config("large");
            let mut sink = KafkaSink::open(&c, false, "s").unwrap();
            let mut b = Batch::default();
            b.push(Some(b"big-key"), &vec![b'x'; 2 << 20], 0);
            let e = sink.write(&b).unwrap_err().to_string();
            eprintln!("{e}");
            assert!(e.contains("`message.max.bytes`"), "{e}");
            assert!(e.contains("key `big-key`"), "{e}");
            assert!(!e.contains('\n'), "{e}");
        }

        #[test]
        #[ignore = "needs a Kafka broker"]
        fn a_record_over_the_topic_limit_fails_at_delivery() {
            let mut c = config("topiclimit");
            c.create = None;
            c.cluster
                .create_topic(
                    &c.topic,
                    CreateTopic {
                        partitions: 1,
                        replication: 1,
                    },
                    &[("max.message.bytes", "1000")],
                )
                .unwrap();
            let mut sink = KafkaSink::open(&c, true, "s").unwrap();
            let mut b = Batch::default();
            b.push(Some(b"k"), &[b'x'; 5000], 0);
            let e = match sink.write(&b) {
                Err(e) => e,
                Ok(()) => sink.pre_commit(1).unwrap_err(),
            }
            .to_string();
            eprintln!("{e}");
            assert!(e.contains("`max.message.bytes` is 1000"), "{e}");
            assert!(e.contains("key `k`"), "{e}");
        }

        #[test]
        #[ignore = "needs a Kafka broker"]
        fn a_transaction_timeout_above_the_brokers_limit_is_named() {
            let mut c = config("ttl");
            c.transaction_timeout = Duration::from_secs(20 * 60);
            let e = KafkaSink::open(&c, true, "s").err().unwrap();
            eprintln!("{e}");
            assert!(e.contains("`transaction.max.timeout.ms` (15m)"), "{e}");
            assert!(e.contains("transaction_timeout 20m"), "{e}");
        }

        #[test]
        #[ignore = "needs a Kafka broker"]
        fn a_newer_producer_fences_the_older() {
            let c = config("fence");
            let mut old = KafkaSink::open(&c, true, "s").unwrap();
            old.write(&batch(0, 2)).unwrap();
            let _new = KafkaSink::open(&c, true, "s").unwrap();
            let e = match old.pre_commit(1) {
                Err(e) => e,
                Ok(_) => old.commit(1).unwrap_err(),
            }
            .to_string();
            eprintln!("{e}");
            assert!(
                e.contains(&format!(
                    "fenced: another weir process uses transactional id `{}`",
                    c.transactional_id()
                )),
                "{e}"
            );
            assert_eq!(visible(&c), vec![]);
        }
    }
}
