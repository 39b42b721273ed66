//! The exactly-once sink's commit markers ([`Committed`]) and their topic
//! `<prefix>.commits`: creating it, and reading the last committed marker
//! once the producer before is fenced ([`last_committed`]).

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::Producer;
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use super::config::KafkaSinkConfig;
use super::producer::{init_error, transactional_producer, Context};
use crate::connectors::kafka::CreateTopic;

/// How many of the marker topic's last offsets [`last_committed`] reads
/// first (it reads the whole topic when they hold no committed marker).
const MARKER_TAIL: i64 = 1000;

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
