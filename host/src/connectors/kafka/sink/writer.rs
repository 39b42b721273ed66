//! The sink: [`KafkaSink`], the [`SinkWriter`] that produces a job's events,
//! at-least-once (flushed at every barrier) or exactly-once (a transaction
//! per checkpoint epoch with its commit marker, and what comes after a
//! barrier buffered until its checkpoint completes).

use std::time::{Duration, Instant};

use rdkafka::admin::ResourceSpecifier;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;

use super::config::KafkaSinkConfig;
use super::markers::{ensure_marker_topic, Committed};
use super::producer::{
    config_value, fenced, init_error, is_fenced, limit_to_topic, producer_config,
    transactional_producer, Context,
};
use crate::model::{now_ms, show_key, Batch, SinkState, SinkWriter};

/// How many bytes of records the exactly-once sink buffers, while it waits
/// for a checkpoint to complete, before it reports itself backlogged.
pub const BACKLOG_BYTES: usize = 64 << 20;

/// The env variable of the test-only pause at [`SinkWriter::commit`].
const COMMIT_PAUSE_ENV: &str = "WEIR_TEST_KAFKA_COMMIT_PAUSE_MS";

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
