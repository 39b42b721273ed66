//! Where a source or a sink was when a checkpoint was taken: what goes into
//! every checkpoint and savepoint so that a restored job seeks back to it.

use serde::{Deserialize, Serialize};

/// Where a source was, so that it can seek back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourcePosition {
    /// A file: byte offset of the next line, and its number (from 1).
    File {
        /// Bytes consumed.
        offset: u64,
        /// Lines consumed.
        line: u64,
    },
    /// The generator: index of the next event.
    Generator {
        /// Events generated.
        next: u64,
    },
    /// A Kafka topic: for each partition read so far, the offset of the
    /// next record. Each source subtask reports its own partitions; the
    /// coordinator merges them ([`SourcePosition::merge`]).
    Kafka {
        /// The topic.
        topic: String,
        /// By partition number, ascending.
        partitions: Vec<KafkaPartition>,
    },
}

/// One Kafka partition's place in a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct KafkaPartition {
    /// The partition number.
    pub partition: i32,
    /// Offset of the next record to read.
    pub offset: i64,
    /// The highest record timestamp read from it (`i64::MIN`: none yet),
    /// so that a restored source resumes its watermark.
    pub max_timestamp: i64,
}

impl SourcePosition {
    /// What kind of position this is, for messages: `file`, `generator`, `kafka`.
    pub fn kind(&self) -> &'static str {
        match self {
            SourcePosition::File { .. } => "file",
            SourcePosition::Generator { .. } => "generator",
            SourcePosition::Kafka { .. } => "kafka",
        }
    }

    /// The position of a source read by several subtasks, from each
    /// subtask's own: Kafka partitions are united (each partition is read by
    /// one subtask); any other source has one subtask, whose position it is.
    pub fn merge(parts: Vec<SourcePosition>) -> Option<SourcePosition> {
        let mut merged: Option<SourcePosition> = None;
        for part in parts {
            merged = Some(match (merged, part) {
                (
                    Some(SourcePosition::Kafka {
                        topic,
                        mut partitions,
                    }),
                    SourcePosition::Kafka {
                        partitions: more, ..
                    },
                ) => {
                    for p in more {
                        match partitions.iter_mut().find(|q| q.partition == p.partition) {
                            Some(q) if q.offset < p.offset => *q = p,
                            Some(_) => {}
                            None => partitions.push(p),
                        }
                    }
                    partitions.sort_by_key(|p| p.partition);
                    SourcePosition::Kafka { topic, partitions }
                }
                (_, part) => part,
            });
        }
        merged
    }
}

/// A source's part of a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceState {
    /// Its read position.
    pub position: SourcePosition,
    /// The highest event timestamp it had seen (the watermark's basis).
    pub max_timestamp: i64,
}

/// A sink's part of a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkState {
    /// Length of the output file once everything up to this checkpoint is
    /// published (0 for a sink that is not a file).
    pub output_len: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(partition: i32, offset: i64) -> KafkaPartition {
        KafkaPartition {
            partition,
            offset,
            max_timestamp: offset * 10,
        }
    }

    #[test]
    fn kafka_positions_of_subtasks_merge_by_partition() {
        let a = SourcePosition::Kafka {
            topic: "t".into(),
            partitions: vec![part(2, 5), part(0, 7)],
        };
        let b = SourcePosition::Kafka {
            topic: "t".into(),
            partitions: vec![part(1, 3), part(0, 4)],
        };
        assert_eq!(
            SourcePosition::merge(vec![a, b]),
            Some(SourcePosition::Kafka {
                topic: "t".into(),
                partitions: vec![part(0, 7), part(1, 3), part(2, 5)],
            })
        );
        let g = SourcePosition::Generator { next: 9 };
        assert_eq!(SourcePosition::merge(vec![g.clone()]), Some(g));
        assert_eq!(SourcePosition::merge(vec![]), None);
    }
}
