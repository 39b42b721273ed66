//! The Kafka source and sink as the connector registry sees them
//! ([`crate::connectors::registry`]): how each opens, where a saved
//! position fits, and the exactly-once sink's commit markers.

use std::any::Any;
use std::path::Path;
use std::time::Duration;

use crate::connectors::kafka::sink::{self, Delivery, KafkaSink, KafkaSinkConfig};
use crate::connectors::kafka::source::{KafkaSource, KafkaSourceConfig};
use crate::connectors::registry::{
    other_kind, Checkpointing, Committer, Sink, SinkKind, SinkOpen, Source, SourceKind, SourceOpen,
};
use crate::model::config::{Fields, JobError, Table};
use crate::model::{SinkWriter, SourcePosition, SourceReader};

impl SourceKind for KafkaSourceConfig {
    const FIELDS: &'static [&'static str] = KafkaSourceConfig::FIELDS;

    fn from_table(t: &Table<'_, '_>, f: &mut Fields) -> Result<Self, JobError> {
        KafkaSourceConfig::from_table(t, f)
    }
}

impl Source for KafkaSourceConfig {
    fn parallelism(&self) -> u32 {
        self.parallelism
    }

    fn reads(&self) -> &'static str {
        "Kafka"
    }

    fn open(&self, o: &SourceOpen<'_>) -> Result<Box<dyn SourceReader>, String> {
        Ok(Box::new(KafkaSource::open(
            self,
            o.subtask,
            self.parallelism,
            o.batch_size,
            o.position,
        )?))
    }

    fn resumes_from(
        &self,
        position: &SourcePosition,
        what: &str,
        job_file: &Path,
    ) -> Result<(), String> {
        let SourcePosition::Kafka { topic, .. } = position else {
            return Err(other_kind(self, position, what, job_file));
        };
        if *topic != self.topic {
            return Err(format!(
                "{what} holds offsets of Kafka topic `{topic}` and the job ({}) reads topic `{}`: a source resumes only from its own topic's offsets",
                job_file.display(),
                self.topic
            ));
        }
        Ok(())
    }

    fn locate(&self, offset: u64) -> String {
        format!("offset {offset} of Kafka topic `{}`", self.topic)
    }
}

impl SinkKind for KafkaSinkConfig {
    const FIELDS: &'static [&'static str] = KafkaSinkConfig::FIELDS;

    fn from_table(t: &Table<'_, '_>, f: &mut Fields, job_name: &str) -> Result<Self, JobError> {
        KafkaSinkConfig::from_table(t, f, job_name)
    }
}

impl Sink for KafkaSinkConfig {
    fn open(&self, o: &SinkOpen<'_>) -> Result<Box<dyn SinkWriter>, String> {
        Ok(Box::new(KafkaSink::open(
            self,
            o.exactly_once,
            o.store_instance,
        )?))
    }

    /// Its `delivery`, else exactly once when the job takes checkpoints in
    /// exactly-once mode. Exactly-once needs periodic checkpoints in that
    /// mode, and a transaction timeout that outlasts a checkpoint (checked
    /// here, before anything runs).
    fn exactly_once(&self, checkpointing: Option<&Checkpointing>) -> Result<bool, String> {
        let aligned = checkpointing.is_some_and(|c| c.exactly_once);
        match self.delivery {
            Some(Delivery::AtLeastOnce) => Ok(false),
            None if !aligned => Ok(false),
            Some(Delivery::ExactlyOnce) if !aligned => Err(format!(
                "[sink] delivery = \"exactly-once\" needs periodic checkpoints in exactly-once mode ([checkpoint] interval{}): Kafka transactions are committed at checkpoints (or set delivery = \"at-least-once\")",
                if checkpointing.is_some() { " with mode = \"exactly-once\"" } else { "" }
            )),
            _ => {
                let cp = checkpointing.expect("aligned implies checkpoints");
                sink::check_transaction_timeout(
                    self.transaction_timeout,
                    cp.interval,
                    cp.timeout,
                    cp.longest_restart_delay,
                )?;
                Ok(true)
            }
        }
    }

    fn committer(&self) -> Option<&dyn Committer> {
        Some(self)
    }
}

impl Committer for KafkaSinkConfig {
    fn prefix(&self) -> &str {
        &self.transactional_id_prefix
    }

    fn last_committed(&self) -> Result<Option<(String, u64)>, String> {
        Ok(sink::last_committed(self)?.map(|m| (m.store, m.checkpoint)))
    }

    fn lock(&self) -> Result<Box<dyn Any>, String> {
        Ok(Box::new(sink::lock_prefix(self)?))
    }

    fn abort_left_open(&self, old_prefix: &str) -> Result<(), String> {
        sink::abort_left_open(self, old_prefix)
    }

    fn transaction_timeout(&self) -> Duration {
        self.transaction_timeout
    }
}
