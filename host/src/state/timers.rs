//! The timer service of a subtask: event-time and processing-time timers,
//! keyed, deduplicated, fired in time order.
//!
//! Every timer the host accepts has a key in the subtask's key groups (see
//! [`crate::wasm::host_timers`] for why a timer with no key is refused); the
//! entry keeps an `Option` only for timers with no key restored from a
//! checkpoint or savepoint of an older weir. The number of pending timers is
//! the size of two ordered sets, so holding it to its budget costs nothing.

use std::collections::BTreeSet;

use crate::model::TimeDomain;

/// A registered timer: when, and for which key.
pub type TimerEntry = (i64, Option<Vec<u8>>);

/// The timers of one subtask.
#[derive(Debug, Default)]
pub struct TimerService {
    event_time: BTreeSet<TimerEntry>,
    processing_time: BTreeSet<TimerEntry>,
}

impl TimerService {
    fn set(&mut self, domain: TimeDomain) -> &mut BTreeSet<TimerEntry> {
        match domain {
            TimeDomain::EventTime => &mut self.event_time,
            TimeDomain::ProcessingTime => &mut self.processing_time,
        }
    }

    /// Registers a timer; a second registration of the same one is a no-op.
    pub fn register(&mut self, domain: TimeDomain, key: Option<Vec<u8>>, timestamp: i64) {
        self.set(domain).insert((timestamp, key));
    }

    /// Deletes a timer if it is registered.
    pub fn delete(&mut self, domain: TimeDomain, key: Option<Vec<u8>>, timestamp: i64) {
        self.set(domain).remove(&(timestamp, key));
    }

    /// Removes and returns, in time order, up to `limit` timers of `domain`
    /// due at `time` (timestamp <= time).
    pub fn pop_due(&mut self, domain: TimeDomain, time: i64, limit: usize) -> Vec<TimerEntry> {
        let set = self.set(domain);
        let mut due = Vec::new();
        while due.len() < limit {
            match set.first() {
                Some((ts, _)) if *ts <= time => due.push(set.pop_first().expect("non-empty")),
                _ => break,
            }
        }
        due
    }

    /// The earliest processing-time timer, if any.
    pub fn next_processing_time(&self) -> Option<i64> {
        self.processing_time.first().map(|(ts, _)| *ts)
    }

    /// Every timer, grouped by the key group of its key, as checkpoints store them.
    pub fn snapshot(
        &self,
        max_parallelism: u32,
    ) -> Vec<(u32, Vec<crate::state::checkpoint::TimerRecord>)> {
        let mut by_group: std::collections::BTreeMap<
            u32,
            Vec<crate::state::checkpoint::TimerRecord>,
        > = Default::default();
        for (domain, set) in [(0u8, &self.event_time), (1u8, &self.processing_time)] {
            for (ts, key) in set {
                let kg = crate::model::keygroup::key_group(key.as_deref(), max_parallelism);
                by_group
                    .entry(kg)
                    .or_default()
                    .push((domain, *ts, key.clone()));
            }
        }
        by_group.into_iter().collect()
    }

    /// Registers restored timers.
    pub fn restore(&mut self, records: Vec<crate::state::checkpoint::TimerRecord>) {
        for (domain, ts, key) in records {
            let domain = if domain == 0 {
                TimeDomain::EventTime
            } else {
                TimeDomain::ProcessingTime
            };
            self.register(domain, key, ts);
        }
    }

    /// Number of timers pending, in both domains.
    pub fn pending(&self) -> usize {
        self.event_time.len() + self.processing_time.len()
    }

    /// Number of timers registered in `domain`.
    pub fn len(&self, domain: TimeDomain) -> usize {
        match domain {
            TimeDomain::EventTime => self.event_time.len(),
            TimeDomain::ProcessingTime => self.processing_time.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedup_order_and_due() {
        let mut t = TimerService::default();
        t.register(TimeDomain::EventTime, Some(b"b".to_vec()), 10);
        t.register(TimeDomain::EventTime, Some(b"a".to_vec()), 10);
        t.register(TimeDomain::EventTime, Some(b"a".to_vec()), 10);
        t.register(TimeDomain::EventTime, None, 5);
        t.register(TimeDomain::EventTime, None, 20);
        assert_eq!(t.len(TimeDomain::EventTime), 4);
        assert_eq!(t.pending(), 4);
        t.delete(TimeDomain::EventTime, None, 20);
        let due = t.pop_due(TimeDomain::EventTime, 10, 100);
        assert_eq!(
            due,
            vec![
                (5, None),
                (10, Some(b"a".to_vec())),
                (10, Some(b"b".to_vec()))
            ]
        );
        assert_eq!(t.len(TimeDomain::EventTime), 0);
        t.register(TimeDomain::ProcessingTime, None, 7);
        assert_eq!(t.next_processing_time(), Some(7));
    }
}
