//! The `[sink] type = "kafka"` table: [`KafkaSinkConfig`], its fields and
//! their checks, the transactional id prefix and the names it gives (the
//! producer's transactional id, the marker topic), and the check of
//! `transaction_timeout` against the job's checkpoints.

use std::time::Duration;

use crate::connectors::kafka::{create_field, CreateTopic, KafkaCluster};
use crate::model::config::{Fields, JobError, Table};

/// The default `transaction_timeout`: 15 minutes, the broker's default
/// `transaction.max.timeout.ms`.
pub const DEFAULT_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// The longest topic name Kafka accepts.
const MAX_TOPIC_LEN: usize = 249;

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
///
/// [`last_committed`]: super::last_committed
/// [`KafkaSink::open`]: super::KafkaSink::open
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
