//! The batch clock of latency measurement: a generator with `timestamps =
//! "now"` notes when (to the microsecond) it made each batch, under the
//! batch's millisecond event time, and a `latency = true` blackhole sink
//! looks that instant up by the event time of what reaches it. Event times
//! stay milliseconds; only the measurement gets finer.

use std::sync::atomic::{AtomicI64, Ordering};

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
