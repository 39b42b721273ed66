//! The deterministic `generator` source, for tests and benchmarks.
//!
//! Event `i` (from 0) is a pure function of `(seed, i)`, so any position can
//! be replayed: its key is `key-N` with `N = mix(seed, i) % keys`; its value
//! is the decimal number `mix'(seed, i) % 1000`, zero-padded to `value_size`
//! bytes (so `windowed-sum` can parse it); its timestamp is `i` ms. With
//! `rate`, events are released at that many per second.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::latency::BatchClock;
use crate::connectors::registry::{other_kind, Source, SourceKind, SourceOpen};
use crate::model::config::{Fields, JobError, Table};
use crate::model::Batch;
use crate::model::SourcePosition;
use crate::model::SourceReader;

/// `[source] type = "generator"`: a deterministic generator for tests and benchmarks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratorConfig {
    /// Number of events to generate.
    pub count: u64,
    /// Number of distinct keys (at least 1).
    pub keys: u64,
    /// Size of each value in bytes.
    pub value_size: usize,
    /// Seed of the generator.
    pub seed: u64,
    /// Events per second, if throttled (greater than 0).
    pub rate: Option<u64>,
    /// Event time is the wall clock when the event is made (`timestamps =
    /// "now"`), for measuring latency; else the event's index (`"index"`).
    pub wall_clock: bool,
}

impl SourceKind for GeneratorConfig {
    /// The fields of its table, besides those every source has.
    const FIELDS: &'static [&'static str] =
        &["count", "keys", "value_size", "seed", "rate", "timestamps"];

    /// Reads its fields of the `[source]` table.
    fn from_table(s: &Table<'_, '_>, f: &mut Fields) -> Result<Self, JobError> {
        let count_field = f.take("count");
        let count_v = s.required(
            "count",
            &count_field,
            " (number of events, required for a `generator` source)",
        )?;
        let count = s.int("count", count_v, 0, i64::MAX)?;
        let keys = s
            .opt(&f.take("keys"), |v| s.int("keys", v, 1, i64::MAX))?
            .unwrap_or(1000);
        let value_size = s
            .opt(&f.take("value_size"), |v| {
                s.int("value_size", v, 0, i64::MAX)
            })?
            .unwrap_or(100);
        let seed = s
            .opt(&f.take("seed"), |v| s.int("seed", v, 0, i64::MAX))?
            .unwrap_or(0);
        let rate = s.opt(&f.take("rate"), |v| s.int("rate", v, 1, i64::MAX))?;
        let wall_clock = s
            .opt(&f.take("timestamps"), |v| {
                s.choice("timestamps", v, &[("index", false), ("now", true)])
            })?
            .unwrap_or(false);
        Ok(GeneratorConfig {
            count,
            keys,
            value_size,
            seed,
            rate,
            wall_clock,
        })
    }
}

/// Generates `count` events.
pub struct Generator {
    count: u64,
    keys: u64,
    value_size: usize,
    seed: u64,
    rate: Option<u64>,
    batch_size: usize,
    next: u64,
    /// When pacing started, and at which event.
    started: Option<(Instant, u64)>,
    /// [`KEY_PREFIX`], then the key's number (rewritten per event).
    key_buf: Vec<u8>,
    /// `value_size` zeros, whose last three bytes are rewritten per event.
    value_buf: Vec<u8>,
    /// Stamp events with the wall clock rather than their index.
    wall_clock: bool,
    /// Where the instant (µs) each batch is made is noted, if anywhere.
    clock: Option<Arc<BatchClock>>,
}

/// What every generated key starts with.
const KEY_PREFIX: &[u8] = b"key-";

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl Generator {
    /// A generator of `count` events over `keys` distinct keys.
    pub fn new(
        count: u64,
        keys: u64,
        value_size: usize,
        seed: u64,
        rate: Option<u64>,
        batch_size: usize,
    ) -> Self {
        Generator {
            count,
            keys: keys.max(1),
            value_size,
            seed,
            rate,
            batch_size,
            next: 0,
            started: None,
            key_buf: KEY_PREFIX.to_vec(),
            value_buf: vec![b'0'; value_size],
            wall_clock: false,
            clock: None,
        }
    }

    /// Stamps each event with the wall clock (ms) when its batch is made,
    /// rather than with its index: for measuring end-to-end latency.
    pub fn with_wall_clock(mut self, on: bool) -> Self {
        self.wall_clock = on;
        self
    }

    /// With the wall clock on, also notes when (µs) each batch is made in
    /// `clock`, for a sink that measures latency finer than event time.
    pub fn with_batch_clock(mut self, clock: Option<Arc<BatchClock>>) -> Self {
        self.clock = clock;
        self
    }

    /// Continues from event `next` (after a restore).
    pub fn seek(&mut self, next: u64) {
        self.next = next;
    }

    /// Appends event `i` to `batch`: key `key-N` with `N = h % keys`, value
    /// `(h >> 32) % 1000` in decimal, zero-padded (or cut to its last
    /// digits) to `value_size` bytes, where `h` mixes the seed and `i`.
    /// Written in place into reused buffers: the generator feeds the
    /// benchmarks, and its cost is not the job's.
    pub fn push_event(&mut self, i: u64, batch: &mut Batch) {
        let h = splitmix64(self.seed ^ splitmix64(i));
        self.key_buf.truncate(KEY_PREFIX.len());
        self.key_buf
            .extend_from_slice(itoa::Buffer::new().format(h % self.keys).as_bytes());
        let n = (h >> 32) % 1000;
        let digits = [
            b'0' + (n / 100) as u8,
            b'0' + (n / 10 % 10) as u8,
            b'0' + (n % 10) as u8,
        ];
        let size = self.value_size;
        let last = size.min(3);
        self.value_buf[size - last..].copy_from_slice(&digits[3 - last..]);
        batch.push(Some(&self.key_buf), &self.value_buf, i as i64);
    }
}

impl SourceReader for Generator {
    fn position(&self) -> Option<crate::model::SourcePosition> {
        Some(crate::model::SourcePosition::Generator { next: self.next })
    }

    fn next_batch(&mut self, offsets: &mut Vec<u64>) -> Result<Option<Batch>, String> {
        if self.next >= self.count {
            return Ok(None);
        }
        let n = (self.count - self.next).min(self.batch_size as u64);
        if let Some(rate) = self.rate {
            let next = self.next;
            let (started, from) = *self.started.get_or_insert_with(|| (Instant::now(), next));
            let due =
                started + Duration::from_secs_f64((self.next + n - from) as f64 / rate as f64);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        let mut batch = Batch::with_capacity(n as usize, n as usize * (self.value_size + 12));
        for i in self.next..self.next + n {
            self.push_event(i, &mut batch);
        }
        offsets.extend(self.next..self.next + n);
        self.next += n;
        if self.wall_clock {
            let now = match &self.clock {
                Some(clock) => clock.stamp(),
                None => crate::model::now_ms(),
            };
            batch.timestamps.iter_mut().for_each(|t| *t = now);
        }
        Ok(Some(batch))
    }
}

impl Source for GeneratorConfig {
    fn reads(&self) -> &'static str {
        "a generator"
    }

    fn open(&self, o: &SourceOpen<'_>) -> Result<Box<dyn SourceReader>, String> {
        let mut generator = Generator::new(
            self.count,
            self.keys,
            self.value_size,
            self.seed,
            self.rate,
            o.batch_size,
        )
        .with_wall_clock(self.wall_clock)
        .with_batch_clock(o.clock.cloned());
        match o.position {
            Some(SourcePosition::Generator { next }) => generator.seek(*next),
            Some(other) => {
                return Err(format!(
                    "the checkpoint holds a {other:?} position, not a generator position"
                ))
            }
            None => {}
        }
        Ok(Box::new(generator))
    }

    fn resumes_from(
        &self,
        position: &SourcePosition,
        what: &str,
        job_file: &std::path::Path,
    ) -> Result<(), String> {
        match position {
            SourcePosition::Generator { .. } => Ok(()),
            _ => Err(other_kind(self, position, what, job_file)),
        }
    }

    fn locate(&self, offset: u64) -> String {
        format!("offset {offset} of the generator")
    }

    fn wall_clock(&self) -> bool {
        self.wall_clock
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_sized() {
        let mut a = Generator::new(10, 3, 5, 42, None, 4);
        let mut b = Generator::new(10, 3, 5, 42, None, 4);
        let mut all = Vec::new();
        while let Some(x) = a.next_batch(&mut Vec::new()).unwrap() {
            let y = b.next_batch(&mut Vec::new()).unwrap().unwrap();
            assert_eq!(x, y);
            all.extend(
                x.iter()
                    .map(|e| (e.key.unwrap().to_vec(), e.value.to_vec(), e.timestamp)),
            );
        }
        assert_eq!(all.len(), 10);
        for (i, (k, v, ts)) in all.iter().enumerate() {
            assert_eq!(*ts, i as i64);
            assert_eq!(v.len(), 5);
            assert!(std::str::from_utf8(v).unwrap().parse::<u64>().is_ok());
            assert!(k.starts_with(b"key-"));
        }
        let keys: std::collections::BTreeSet<_> = all.iter().map(|(k, _, _)| k.clone()).collect();
        assert!(keys.len() <= 3);
        // The events are those of the plain formula.
        for size in [0usize, 1, 2, 3, 4, 100] {
            let mut g = Generator::new(500, 77, size, 9, None, 64);
            let mut at = 0u64;
            while let Some(batch) = g.next_batch(&mut Vec::new()).unwrap() {
                for e in batch.iter() {
                    let h = splitmix64(9 ^ splitmix64(at));
                    let want = format!("{:0>size$}", (h >> 32) % 1000);
                    let want = &want.as_bytes()[want.len() - size..];
                    assert_eq!(e.key.unwrap(), format!("key-{}", h % 77).as_bytes());
                    assert_eq!(e.value, want, "size {size}, event {at}");
                    at += 1;
                }
            }
        }
        let mut z = Generator::new(1, 1, 0, 1, None, 4);
        assert_eq!(
            z.next_batch(&mut Vec::new())
                .unwrap()
                .unwrap()
                .iter()
                .next()
                .unwrap()
                .value,
            b""
        );
    }
}
