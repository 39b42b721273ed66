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
//!
//! Its parts: `config` reads the `[sink]` table ([`KafkaSinkConfig`]) and
//! checks `transaction_timeout`; `markers` holds the commit markers
//! ([`Committed`]), their topic and [`last_committed`]; `lock` holds a
//! transactional id prefix for one process at a time ([`PrefixLock`]);
//! `producer` builds the librdkafka producer and names its failures;
//! `writer` is the sink ([`KafkaSink`]). Tests: `tests` (the pure parts)
//! and `broker_tests` (against a broker, ignored without one).
//!
//! [`SinkWriter::pre_commit`]: crate::model::SinkWriter::pre_commit
//! [`SinkWriter::commit`]: crate::model::SinkWriter::commit

mod config;
mod lock;
mod markers;
mod producer;
mod writer;

#[cfg(test)]
mod broker_tests;
#[cfg(test)]
mod tests;

pub use config::{
    check_transaction_timeout, default_transactional_id_prefix, Delivery, KafkaSinkConfig,
    DEFAULT_TRANSACTION_TIMEOUT,
};
pub use lock::{abort_left_open, lock_prefix, PrefixLock};
pub use markers::{ensure_marker_topic, last_committed, Committed};
pub use writer::{KafkaSink, BACKLOG_BYTES};
