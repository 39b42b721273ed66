//! The `blackhole` sink: discards events, counting them (for benchmarks).
//! With `latency = true` it also records each event's end-to-end latency,
//! wall clock now minus when its batch was made (pair it with a generator's
//! `timestamps = "now"`: to the µs, from the generator's batch clock; else
//! minus its event time, to the ms), and reports percentiles when the job
//! ends.

use std::sync::Arc;

use super::latency::{now_us, BatchClock};
pub use super::latency::{LatencyHistogram, LatencySlot};
use crate::connectors::registry::{Sink, SinkKind, SinkOpen};
use crate::model::config::{Fields, JobError, Table};
use crate::model::Batch;
use crate::model::SinkWriter;

/// `[sink] type = "blackhole"`: events are discarded (and counted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlackholeConfig {
    /// `latency = true`: record each event's latency (wall clock now minus
    /// its event time) and report percentiles at the end.
    pub latency: bool,
}

impl SinkKind for BlackholeConfig {
    /// The fields of its table.
    const FIELDS: &'static [&'static str] = &["latency"];

    /// Reads its fields of the `[sink]` table.
    fn from_table(s: &Table<'_, '_>, f: &mut Fields, _job_name: &str) -> Result<Self, JobError> {
        let latency = s.opt(&f.take("latency"), |v| s.boolean("latency", v))?;
        Ok(BlackholeConfig {
            latency: latency.unwrap_or(false),
        })
    }
}

/// Discards events.
#[derive(Default)]
pub struct BlackholeSink {
    events: u64,
    latency: Option<(LatencyHistogram, LatencySlot)>,
    /// When the generator's batches were made, to the µs, if it notes them.
    clock: Option<Arc<BatchClock>>,
}

impl BlackholeSink {
    /// A sink that records latencies into `latency` when given, measured
    /// from the instants noted in `clock` (else from the event times, to
    /// the ms).
    pub fn new(latency: Option<LatencySlot>, clock: Option<Arc<BatchClock>>) -> Self {
        BlackholeSink {
            events: 0,
            latency: latency.map(|c| (LatencyHistogram::default(), c)),
            clock,
        }
    }
}

impl SinkWriter for BlackholeSink {
    fn write(&mut self, batch: &Batch) -> std::io::Result<()> {
        self.events += batch.len() as u64;
        if let Some((h, _)) = &mut self.latency {
            let now = now_us();
            let clock = self.clock.as_deref();
            let made = |ms: i64| clock.map_or(ms.saturating_mul(1000), |c| c.made_us(ms));
            let mut run: Option<(i64, u64)> = None;
            for &t in &batch.timestamps {
                match &mut run {
                    Some((ts, n)) if *ts == t => *n += 1,
                    _ => {
                        if let Some((ts, n)) = run {
                            h.record_us(now - made(ts), n);
                        }
                        run = Some((t, 1));
                    }
                }
            }
            if let Some((ts, n)) = run {
                h.record_us(now - made(ts), n);
            }
        }
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
        if let Some((h, control)) = &self.latency {
            tracing::info!(
                "latency over {} events: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
                h.count(),
                h.quantile_ms(0.5),
                h.quantile_ms(0.99),
                h.max_ms()
            );
            *control.lock().expect("latency lock") = Some(h.clone());
        }
        Ok(())
    }

    fn describe(&self) -> String {
        "blackhole sink".to_string()
    }
}

impl Sink for BlackholeConfig {
    fn open(&self, o: &SinkOpen<'_>) -> Result<Box<dyn SinkWriter>, String> {
        Ok(Box::new(BlackholeSink::new(
            self.latency.then(|| o.latency.clone()),
            o.clock.cloned(),
        )))
    }

    fn measures_latency(&self) -> bool {
        self.latency
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles() {
        let mut h = LatencyHistogram::default();
        for us in 1..=100 {
            h.record_us(us, 1);
        }
        h.record_us(100_000_000, 1);
        assert_eq!(h.count(), 101);
        assert_eq!(h.quantile_us(0.5), 51);
        assert_eq!(h.quantile_us(0.99), 100);
        assert_eq!(h.quantile_us(1.0), 100_000_000);
        assert_eq!(h.max_us(), 100_000_000);
        assert_eq!(h.quantile_ms(0.5), 0.051);
    }

    #[test]
    fn above_100_ms_to_the_ms() {
        let mut h = LatencyHistogram::default();
        h.record_us(99_999, 1);
        h.record_us(250_700, 2);
        assert_eq!(h.quantile_us(0.3), 99_999);
        assert_eq!(h.quantile_us(1.0), 250_000);
        assert_eq!(h.max_ms(), 250.7);
    }

    #[test]
    fn measured_from_the_batch_clock() {
        let clock = Arc::new(BatchClock::default());
        let slot = LatencySlot::default();
        let mut sink = BlackholeSink::new(Some(slot.clone()), Some(clock.clone()));
        let ms = clock.stamp();
        let mut batch = Batch::default();
        batch.push(Some(b"k"), b"v", ms);
        sink.write(&batch).unwrap();
        sink.finish().unwrap();
        let h = slot.lock().unwrap().clone().unwrap();
        assert_eq!(h.count(), 1);
        // Measured from the noted instant: no more than the time since it.
        assert!(h.max_us() <= now_us() - clock.made_us(ms));
    }
}
