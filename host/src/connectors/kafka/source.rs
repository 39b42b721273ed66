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
//!
//! Its parts: `config` reads the `[source]` table ([`KafkaSourceConfig`]);
//! `partitions` keeps each partition's position and the watermark and
//! idleness they give ([`Partitions`]), and `out_of_range` says where
//! reading goes on from an offset out of range: both pure, with unit tests
//! in `tests`. `consumer` is the librdkafka client ([`KafkaSource`]). The
//! tests against a broker, ignored without one, are `broker_tests` and
//! `loss` (a topic or cluster that goes away).
//!
//! [`SourceReader::blocked`]: crate::model::SourceReader::blocked

mod config;
mod consumer;
mod out_of_range;
mod partitions;

#[cfg(test)]
mod broker_tests;
#[cfg(test)]
mod loss;
#[cfg(test)]
mod tests;

pub use config::{KafkaSourceConfig, OnOutOfRange, StartAt, StopAt, DEFAULT_PARTITION_DISCOVERY};
pub use consumer::KafkaSource;
pub use partitions::Partitions;
