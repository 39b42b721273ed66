//! The Kafka source (being written).
