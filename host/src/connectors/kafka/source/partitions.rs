//! The partitions a subtask reads, apart from the consumer: each one's
//! position, highest timestamp and time at its end, and the watermark and
//! idleness they give ([`Partitions`]). Pure: the time that counts is
//! passed in.

use std::time::Duration;

use crate::model::KafkaPartition;

/// One partition a subtask reads: where it is, and what it has seen.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PartitionState {
    partition: i32,
    /// Offset of the next record.
    next: i64,
    /// The highest record timestamp read (`i64::MIN`: none yet).
    max_timestamp: i64,
    /// Whether `next` is a position the job has read to: restored from a
    /// checkpoint or savepoint, or past a record it read. Out of range, such
    /// a position is handled as `on_out_of_range` says; one that `start` (or
    /// partition discovery) placed, before any record, goes to the
    /// partition's earliest offset, as it always did.
    read_to: bool,
    /// Whether the consumer reported the end of the partition, and no
    /// record came from it since.
    at_end: bool,
    /// Time since it reached its end, less time blocked downstream.
    quiet: Duration,
    /// With `stop = latest`: the end offset it had at open.
    end: Option<i64>,
    /// Whether it has been read up to its end (`stop = latest`).
    done: bool,
}

/// The partitions a subtask reads, and the watermark and idleness they
/// give: the bookkeeping of [`KafkaSource`], apart from the consumer (the
/// time that counts is passed in).
///
/// A partition is idle when it has been at its end (the consumer reported
/// the end of the partition, and no record came since) for `idle_timeout`
/// of the time that counts: the source's time less what it spent blocked
/// sending downstream (back-pressure), and a partition whose broker stalls
/// is never reported at its end, so it does not become idle for that.
///
/// [`KafkaSource`]: super::KafkaSource
#[derive(Debug, Clone)]
pub struct Partitions {
    parts: Vec<PartitionState>,
    idle_timeout: Option<Duration>,
}

impl Partitions {
    /// No partitions yet; a partition at its end for `idle_timeout` of
    /// polling does not hold the watermark back.
    pub fn new(idle_timeout: Option<Duration>) -> Self {
        Partitions {
            parts: Vec::new(),
            idle_timeout,
        }
    }

    /// Adds `partition`, whose next record is at `next`, with the highest
    /// timestamp read from it so far (`i64::MIN`: none); `end`: the offset
    /// it ends at (`stop = latest`); `read_to`: whether `next` is a position
    /// the job has read to (restored), rather than one `start` placed.
    pub fn add(
        &mut self,
        partition: i32,
        next: i64,
        max_timestamp: i64,
        end: Option<i64>,
        read_to: bool,
    ) {
        let done = end.is_some_and(|end| next >= end);
        self.parts.push(PartitionState {
            partition,
            next,
            max_timestamp,
            read_to,
            at_end: false,
            quiet: Duration::ZERO,
            end,
            done,
        });
        self.parts.sort_by_key(|p| p.partition);
    }

    /// Whether `partition` is one of these.
    pub fn contains(&self, partition: i32) -> bool {
        self.parts.iter().any(|p| p.partition == partition)
    }

    fn get_mut(&mut self, partition: i32) -> Option<&mut PartitionState> {
        self.parts.iter_mut().find(|p| p.partition == partition)
    }

    /// A record at `offset` with `timestamp` came from `partition`.
    /// Returns whether it is to be read: not when the partition is not one
    /// of these, or has been read up to its end. It ends the partition's
    /// idleness.
    pub fn record(&mut self, partition: i32, offset: i64, timestamp: i64) -> bool {
        let Some(p) = self.get_mut(partition) else {
            return false;
        };
        if p.done || p.end.is_some_and(|end| offset >= end) {
            p.done = true;
            return false;
        }
        p.next = p.next.max(offset + 1);
        p.max_timestamp = p.max_timestamp.max(timestamp);
        p.read_to = true;
        p.at_end = false;
        p.quiet = Duration::ZERO;
        if p.end.is_some_and(|end| p.next >= end) {
            p.done = true;
        }
        true
    }

    /// `partition` has been read up to the end of what it holds (its
    /// consumer position is `position`, if known, past the last record and
    /// any transaction markers): it is at its end, and with `stop = latest`
    /// it is done.
    pub fn reached_end(&mut self, partition: i32, position: Option<i64>) {
        if let Some(p) = self.get_mut(partition) {
            if let Some(at) = position {
                p.next = p.next.max(at);
            }
            p.at_end = true;
            if p.end.is_some() {
                p.done = true;
            }
        }
    }

    /// `spent` passed that counts (the source was not blocked downstream):
    /// quiet time for each partition at its end.
    pub fn polled(&mut self, spent: Duration) {
        for p in self.parts.iter_mut().filter(|p| p.at_end && !p.done) {
            p.quiet = p.quiet.saturating_add(spent);
        }
    }

    /// Reading of `partition` goes on at `next`, where the consumer was
    /// just placed after its offset was out of range: its position is
    /// exactly that (lower than before when the topic was recreated), and
    /// it is no longer at its end.
    pub fn reset(&mut self, partition: i32, next: i64) {
        if let Some(p) = self.get_mut(partition) {
            p.next = next;
            p.at_end = false;
            p.quiet = Duration::ZERO;
            p.done = p.end.is_some_and(|end| next >= end);
        }
    }

    /// The partitions not done: `(partition, next offset, whether the job
    /// has read to it)`.
    pub fn unfinished(&self) -> Vec<(i32, i64, bool)> {
        self.parts
            .iter()
            .filter(|p| !p.done)
            .map(|p| (p.partition, p.next, p.read_to))
            .collect()
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

    fn is_idle(&self, p: &PartitionState) -> bool {
        p.done || (p.at_end && self.idle_timeout.is_some_and(|t| p.quiet >= t))
    }

    /// Whether no partition holds the watermark back: there are none, or
    /// each is idle (or done).
    pub fn idle(&self) -> bool {
        self.parts.iter().all(|p| self.is_idle(p))
    }

    /// The timestamp the watermark follows: the lowest, over the partitions
    /// that are not idle, of the highest timestamp read from each. When all
    /// are idle, the lowest over those not done: the subtask is idle (it
    /// holds back no one), but its watermark does not advance past what the
    /// partitions gave while one was active, since an idle partition may
    /// read again. When all are done (`stop = latest`), nothing more comes:
    /// the highest over all (`i64::MIN`: none).
    pub fn watermark_basis(&self) -> i64 {
        let lowest = |idle: bool| {
            self.parts
                .iter()
                .filter(|p| !p.done && (idle || !self.is_idle(p)))
                .map(|p| p.max_timestamp)
                .min()
        };
        lowest(false).or_else(|| lowest(true)).unwrap_or_else(|| {
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
