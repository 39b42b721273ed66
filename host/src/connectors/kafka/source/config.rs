//! The `[source] type = "kafka"` table: [`KafkaSourceConfig`], its fields
//! and their checks, and the choices it names (`start`, `stop`,
//! `on_out_of_range`).

use std::time::Duration;

use crate::connectors::kafka::{create_field, CreateTopic, KafkaCluster};
use crate::model::config::{Fields, JobError, Table};

/// How often new partitions are looked for, by default.
pub const DEFAULT_PARTITION_DISCOVERY: Duration = Duration::from_secs(10);

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
