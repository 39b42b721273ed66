//! Kafka: a source ([`source`]) and a sink ([`sink`]) over `rdkafka`, with
//! librdkafka built from its vendored source. Each is a file (the façade,
//! whose docs map its parts) and a folder of the same name. What both use,
//! the cluster's settings ([`KafkaCluster`]) and its topics, is in
//! `cluster`.

mod cluster;
mod registered;
pub mod sink;
pub mod source;

pub use cluster::{create_field, CreateTopic, KafkaCluster, DEFAULT_CONNECT_TIMEOUT};
