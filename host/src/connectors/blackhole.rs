//! The `blackhole` sink: discards events, counting them (for benchmarks).
//! With `latency = true` it also records each event's end-to-end latency,
//! wall clock now minus its event time (pair it with a generator's
//! `timestamps = "now"`), and reports percentiles when the job ends.

use std::sync::{Arc, Mutex};

use crate::model::config::{Fields, JobError, Table};
use crate::model::now_ms;
use crate::model::Batch;
use crate::model::SinkWriter;

/// `[sink] type = "blackhole"`: events are discarded (and counted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlackholeConfig {
    /// `latency = true`: record each event's latency (wall clock now minus
    /// its event time) and report percentiles at the end.
    pub latency: bool,
}

impl BlackholeConfig {
    /// The fields of its table.
    pub const FIELDS: &'static [&'static str] = &["latency"];

    /// Reads its fields of the `[sink]` table.
    pub fn from_table(s: &Table<'_, '_>, f: &mut Fields) -> Result<Self, JobError> {
        let latency = s.opt(&f.take("latency"), |v| s.boolean("latency", v))?;
        Ok(BlackholeConfig {
            latency: latency.unwrap_or(false),
        })
    }
}

/// Latencies in milliseconds: a count per millisecond up to a minute, the
/// rest in one overflow bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatencyHistogram {
    counts: Vec<u64>,
    total: u64,
    max: i64,
}

const BUCKETS: usize = 60_000;

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            counts: vec![0; BUCKETS + 1],
            total: 0,
            max: 0,
        }
    }
}

impl LatencyHistogram {
    /// Records `n` events of latency `ms` (negative counts as 0).
    pub fn record(&mut self, ms: i64, n: u64) {
        let ms = ms.max(0);
        self.counts[(ms as usize).min(BUCKETS)] += n;
        self.total += n;
        self.max = self.max.max(ms);
    }

    /// Events recorded.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The largest latency recorded, in ms.
    pub fn max(&self) -> i64 {
        self.max
    }

    /// The latency (ms) that a fraction `q` of the events did not exceed.
    pub fn quantile(&self, q: f64) -> i64 {
        let want = ((self.total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (ms, n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= want {
                return if ms == BUCKETS { self.max } else { ms as i64 };
            }
        }
        self.max
    }
}

/// Where a blackhole sink leaves its latencies when the job ends.
pub type LatencySlot = Arc<Mutex<Option<LatencyHistogram>>>;

/// Discards events.
#[derive(Default)]
pub struct BlackholeSink {
    events: u64,
    latency: Option<(LatencyHistogram, LatencySlot)>,
}

impl BlackholeSink {
    /// A sink that records latencies into `latency` when given.
    pub fn new(latency: Option<LatencySlot>) -> Self {
        BlackholeSink {
            events: 0,
            latency: latency.map(|c| (LatencyHistogram::default(), c)),
        }
    }
}

impl SinkWriter for BlackholeSink {
    fn write(&mut self, batch: &Batch) -> std::io::Result<()> {
        self.events += batch.len() as u64;
        if let Some((h, _)) = &mut self.latency {
            let now = now_ms();
            let mut run: Option<(i64, u64)> = None;
            for &t in &batch.timestamps {
                match &mut run {
                    Some((ts, n)) if *ts == t => *n += 1,
                    _ => {
                        if let Some((ts, n)) = run {
                            h.record(now - ts, n);
                        }
                        run = Some((t, 1));
                    }
                }
            }
            if let Some((ts, n)) = run {
                h.record(now - ts, n);
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
                "latency over {} events: p50 {} ms, p99 {} ms, max {} ms",
                h.count(),
                h.quantile(0.5),
                h.quantile(0.99),
                h.max()
            );
            *control.lock().expect("latency lock") = Some(h.clone());
        }
        Ok(())
    }

    fn describe(&self) -> String {
        "blackhole sink".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles() {
        let mut h = LatencyHistogram::default();
        for ms in 1..=100 {
            h.record(ms, 1);
        }
        h.record(100_000, 1);
        assert_eq!(h.count(), 101);
        assert_eq!(h.quantile(0.5), 51);
        assert_eq!(h.quantile(0.99), 100);
        assert_eq!(h.quantile(1.0), 100_000);
        assert_eq!(h.max(), 100_000);
    }
}
