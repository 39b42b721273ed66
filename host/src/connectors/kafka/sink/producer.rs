//! The librdkafka producer that the sink and recovery build: its settings
//! (within the output topic's size limit), its context (which keeps the
//! first delivery failure), the transactional producer, and the one-line
//! messages of its failures (fenced, a transaction timeout above the
//! broker's), with the settings read from the cluster for them.

use std::sync::Mutex;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseProducer, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;

use super::config::KafkaSinkConfig;
use crate::connectors::kafka::KafkaCluster;

/// The first delivery failure the producer reported, and what it needs to
/// be named: the record's key and size.
#[derive(Debug, Clone)]
pub(super) struct Failure {
    pub(super) error: KafkaError,
    pub(super) key: Option<Vec<u8>>,
    pub(super) size: usize,
}

/// The producer's context: it keeps the first delivery failure for the
/// sink's thread to report.
#[derive(Default)]
pub(super) struct Context {
    pub(super) failure: Mutex<Option<Failure>>,
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
pub(super) fn producer_config(cluster: &KafkaCluster) -> ClientConfig {
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
pub(super) fn limit_to_topic(
    c: &mut ClientConfig,
    cluster: &KafkaCluster,
    topic_limit: Option<u64>,
) {
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

pub(super) fn transactional_producer(
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
pub(super) fn is_fenced(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::ProducerFenced
            | RDKafkaErrorCode::Fenced
            | RDKafkaErrorCode::InvalidProducerEpoch
            | RDKafkaErrorCode::TransactionCoordinatorFenced
    )
}

/// The one-line message of a failed `init_transactions`.
pub(super) fn init_error(
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
pub(super) fn fenced(config: &KafkaSinkConfig) -> String {
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
pub(super) fn config_value(
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
