//! Events in and out of an operator, timers, and the operator's error type.

use std::fmt;

use crate::runtime::wit::types;

/// One event: an optional key, a value and an event time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event<'a> {
    /// The key, if the event has one.
    pub key: Option<&'a [u8]>,
    /// The value bytes.
    pub value: &'a [u8],
    /// Event time in milliseconds since the Unix epoch.
    pub timestamp: i64,
}

impl<'a> Event<'a> {
    /// The value as UTF-8 text, or a bad-input error.
    pub fn value_str(&self) -> Result<&'a str, Error> {
        std::str::from_utf8(self.value).map_err(|_| Error::bad_input("value is not UTF-8 text"))
    }

    /// The key as UTF-8 text (`None` for no key), or a bad-input error.
    pub fn key_str(&self) -> Result<Option<&'a str>, Error> {
        self.key
            .map(|k| std::str::from_utf8(k).map_err(|_| Error::bad_input("key is not UTF-8 text")))
            .transpose()
    }

    /// The key, or a bad-input error for an event without one.
    pub fn require_key(&self) -> Result<&'a [u8], Error> {
        self.key.ok_or_else(|| Error::bad_input("event has no key"))
    }
}

/// The two clocks a timer can follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimeDomain {
    /// Fires when the event-time watermark reaches the timer's timestamp.
    EventTime,
    /// Fires when the wall clock reaches the timer's timestamp.
    ProcessingTime,
}

impl TimeDomain {
    pub(crate) fn to_wit(self) -> types::TimeDomain {
        match self {
            TimeDomain::EventTime => types::TimeDomain::EventTime,
            TimeDomain::ProcessingTime => types::TimeDomain::ProcessingTime,
        }
    }
}

/// A timer that fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timer<'a> {
    /// The key it was registered for.
    pub key: Option<&'a [u8]>,
    /// The time it was registered for.
    pub timestamp: i64,
    /// Which clock it follows.
    pub domain: TimeDomain,
}

/// Events an operator emits, collected in the flat form the host reads.
#[derive(Debug, Default)]
pub struct Output {
    batch: types::Batch,
}

// The generated type cannot derive it: `additional_derives` would apply to the WIT enums too.
#[allow(clippy::derivable_impls)]
impl Default for types::Batch {
    fn default() -> Self {
        types::Batch {
            data: Vec::new(),
            key_lens: Vec::new(),
            value_lens: Vec::new(),
            timestamps: Vec::new(),
        }
    }
}

impl Output {
    /// Room for `n` events (of 16 bytes of key and value each) without growing.
    pub(crate) fn with_capacity(n: usize) -> Self {
        Output {
            batch: types::Batch {
                data: Vec::with_capacity(16 * n),
                key_lens: Vec::with_capacity(n),
                value_lens: Vec::with_capacity(n),
                timestamps: Vec::with_capacity(n),
            },
        }
    }

    /// Emits an event with `key` (or none), `value` and event time `timestamp`.
    pub fn emit(&mut self, key: Option<&[u8]>, value: impl AsRef<[u8]>, timestamp: i64) {
        let value = value.as_ref();
        match key {
            Some(k) => {
                crate::bytes::extend(&mut self.batch.data, k);
                self.batch.key_lens.push(k.len() as i32);
            }
            None => self.batch.key_lens.push(-1),
        }
        crate::bytes::extend(&mut self.batch.data, value);
        self.batch.value_lens.push(value.len() as u32);
        self.batch.timestamps.push(timestamp);
    }

    /// Emits `event` unchanged.
    pub fn forward(&mut self, event: &Event<'_>) {
        self.emit(event.key, event.value, event.timestamp);
    }

    /// How many events were emitted so far.
    pub fn len(&self) -> usize {
        self.batch.timestamps.len()
    }

    /// Whether no event was emitted so far.
    pub fn is_empty(&self) -> bool {
        self.batch.timestamps.is_empty()
    }

    pub(crate) fn into_batch(self) -> types::Batch {
        self.batch
    }
}

/// Why an operator could not handle an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The event is bad: it goes to the dead-letter output and the job goes on.
    BadInput(String),
    /// The job cannot go on: it fails and restarts from its last checkpoint.
    Fatal(String),
}

impl Error {
    /// A bad-input error with `message`.
    pub fn bad_input(message: impl Into<String>) -> Self {
        Error::BadInput(message.into())
    }

    /// A fatal error with `message`.
    pub fn fatal(message: impl Into<String>) -> Self {
        Error::Fatal(message.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::BadInput(m) => write!(f, "bad input: {m}"),
            Error::Fatal(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {}
