//! Sources and sinks: each connector implements [`crate::model::SourceReader`]
//! or [`crate::model::SinkWriter`], which the engine drives
//! ([`crate::engine::dataflow`]) after opening them through the registry
//! ([`registry`]). Connectors use only [`crate::model`] and
//! [`crate::state`].

pub mod blackhole;
pub mod dead_letter;
pub mod file;
pub mod generator;
pub mod json;
pub mod kafka;
pub mod latency;
pub mod registry;
pub mod stdio;
