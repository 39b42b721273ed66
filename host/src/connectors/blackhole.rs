//! The `blackhole` sink: discards events, counting them (for benchmarks).

use super::SinkWriter;
use crate::bindings::Batch;

/// Discards events.
#[derive(Debug, Default)]
pub struct BlackholeSink {
    events: u64,
}

impl SinkWriter for BlackholeSink {
    fn write(&mut self, batch: &Batch) -> std::io::Result<()> {
        self.events += batch.len() as u64;
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }

    fn finish(&mut self) -> std::io::Result<()> {
        tracing::info!(
            events = self.events,
            "blackhole sink discarded {} events",
            self.events
        );
        Ok(())
    }

    fn describe(&self) -> String {
        "blackhole sink".to_string()
    }
}
