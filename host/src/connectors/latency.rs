//! The batch clock of latency measurement: a generator with `timestamps =
//! "now"` notes when (to the microsecond) it made each batch, under the
//! batch's millisecond event time, and a `latency = true` blackhole sink
//! looks that instant up by the event time of what reaches it. Event times
//! stay milliseconds; only the measurement gets finer.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

/// Slots, one per millisecond, reused after this many (a bit over a minute).
const SLOTS: usize = 1 << 16;

/// When, in µs since the Unix epoch, the first batch of each millisecond of
/// event time was made (shared by the generator subtasks and the sink).
pub struct BatchClock {
    slots: Box<[AtomicI64]>,
}

impl Default for BatchClock {
    fn default() -> Self {
        BatchClock {
            slots: (0..SLOTS).map(|_| AtomicI64::new(-1)).collect(),
        }
    }
}

/// The wall clock in µs since the Unix epoch.
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

impl BatchClock {
    /// Notes a batch made now; returns its event time (ms since the epoch,
    /// as [`crate::model::now_ms`] would give).
    pub fn stamp(&self) -> i64 {
        let us = now_us();
        let ms = us.div_euclid(1000);
        let slot = &self.slots[ms.rem_euclid(SLOTS as i64) as usize];
        // Keep the earliest batch of the millisecond: a later one of the
        // same millisecond is then measured up to 1 ms long, never short.
        let _ = slot.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
            (old.div_euclid(1000) != ms || old > us).then_some(us)
        });
        ms
    }

    /// When (µs) the batch of event time `ms` was made: as noted by
    /// [`BatchClock::stamp`], else the start of that millisecond.
    pub fn made_us(&self, ms: i64) -> i64 {
        let noted = self.slots[ms.rem_euclid(SLOTS as i64) as usize].load(Ordering::Relaxed);
        if noted >= 0 && noted.div_euclid(1000) == ms {
            noted
        } else {
            ms.saturating_mul(1000)
        }
    }
}

/// Latencies in microseconds: a count per µs below 100 ms, per ms up to a
/// minute, the rest in one overflow bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatencyHistogram {
    counts: Vec<u64>,
    total: u64,
    max: i64,
}

/// Below this (µs), a bucket per µs.
const FINE_US: i64 = 100_000;
/// Below this (µs), a bucket per ms.
const COARSE_US: i64 = 60_000_000;
/// The overflow bucket.
const BUCKETS: usize = (FINE_US + (COARSE_US - FINE_US) / 1000) as usize;

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
    /// Records `n` events of latency `us` µs (negative counts as 0).
    pub fn record_us(&mut self, us: i64, n: u64) {
        let us = us.max(0);
        let bucket = if us < FINE_US {
            us as usize
        } else if us < COARSE_US {
            (FINE_US + (us - FINE_US) / 1000) as usize
        } else {
            BUCKETS
        };
        self.counts[bucket] += n;
        self.total += n;
        self.max = self.max.max(us);
    }

    /// Events recorded.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The largest latency recorded, in µs.
    pub fn max_us(&self) -> i64 {
        self.max
    }

    /// The latency (µs) that a fraction `q` of the events did not exceed
    /// (to the µs below 100 ms, to the ms above).
    pub fn quantile_us(&self, q: f64) -> i64 {
        let want = ((self.total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (b, n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= want {
                let b = b as i64;
                let us = if b < FINE_US {
                    b
                } else if (b as usize) < BUCKETS {
                    FINE_US + (b - FINE_US) * 1000
                } else {
                    self.max
                };
                return us.min(self.max);
            }
        }
        self.max
    }

    /// [`LatencyHistogram::quantile_us`] in milliseconds.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        self.quantile_us(q) as f64 / 1000.0
    }

    /// [`LatencyHistogram::max_us`] in milliseconds.
    pub fn max_ms(&self) -> f64 {
        self.max as f64 / 1000.0
    }
}

/// Where a blackhole sink leaves its latencies when the job ends.
pub type LatencySlot = Arc<Mutex<Option<LatencyHistogram>>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_is_found_by_its_millisecond() {
        let clock = BatchClock::default();
        let ms = clock.stamp();
        let us = clock.made_us(ms);
        assert_eq!(us.div_euclid(1000), ms);
        // A second batch of the same millisecond keeps the first instant.
        assert!(clock.made_us(ms) <= now_us());
        // A millisecond never stamped: its start.
        assert_eq!(clock.made_us(ms - 5), (ms - 5) * 1000);
    }
}
