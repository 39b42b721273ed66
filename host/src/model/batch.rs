//! Events in flat form: the host's [`Batch`] and [`Blobs`], the same shape as
//! the WIT `batch` and `blobs` records (one byte buffer plus lengths), so that
//! the `wasm` layer hands them to a guest by moving their buffers, not copying.

use std::ops::Range;

/// A batch of events in flat form. Event `i` occupies, in `data`, its key
/// bytes (`key_lens[i]` of them, none when it is -1: an absent key) followed
/// by its value bytes (`value_lens[i]`); `timestamps[i]` is its event time in
/// ms since the Unix epoch. The three lists have one entry per event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Keys and values, concatenated.
    pub data: Vec<u8>,
    /// Each event's key length, -1 for an absent key.
    pub key_lens: Vec<i32>,
    /// Each event's value length.
    pub value_lens: Vec<u32>,
    /// Each event's timestamp.
    pub timestamps: Vec<i64>,
}

/// Several byte strings in flat form: `lens[i]` bytes of `data` each, in
/// order; a length of -1 stands for an absent entry.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Blobs {
    /// The entries' bytes, concatenated.
    pub data: Vec<u8>,
    /// Each entry's length, -1 for an absent one.
    pub lens: Vec<i32>,
}

/// Bytes (a key) shown in a one-line message: as text, escaped
/// (`\n`, `\"`, `\u{1b}`, invalid UTF-8 as `�`), cut after 100 characters
/// with `…`.
pub fn show_bytes(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut shown: String = text
        .chars()
        .take(100)
        .flat_map(char::escape_debug)
        .collect();
    if text.chars().nth(100).is_some() {
        shown.push('…');
    }
    shown
}

/// A key shown in a one-line message: ``key `k` `` ([`show_bytes`]) if it
/// is UTF-8, ``key (base64) `/w==` `` (standard base64, cut as
/// [`show_bytes`] cuts) if it is not, so that it can be found in a file that
/// writes it as `key_b64`; or `no key`.
pub fn show_key(key: Option<&[u8]>) -> String {
    use base64::Engine as _;
    match key {
        Some(key) if std::str::from_utf8(key).is_ok() => format!("key `{}`", show_bytes(key)),
        Some(key) => {
            let b64 = base64::engine::general_purpose::STANDARD.encode(key);
            format!("key (base64) `{}`", show_bytes(b64.as_bytes()))
        }
        None => "no key".to_string(),
    }
}

/// One event borrowed from a [`Batch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventRef<'a> {
    /// The key, if any.
    pub key: Option<&'a [u8]>,
    /// The value bytes.
    pub value: &'a [u8],
    /// Event time, ms since the Unix epoch.
    pub timestamp: i64,
}

impl Default for Batch {
    fn default() -> Self {
        Batch::with_capacity(0, 0)
    }
}

impl Batch {
    /// An empty batch with room for `events` events and `bytes` bytes.
    pub fn with_capacity(events: usize, bytes: usize) -> Self {
        Batch {
            data: Vec::with_capacity(bytes),
            key_lens: Vec::with_capacity(events),
            value_lens: Vec::with_capacity(events),
            timestamps: Vec::with_capacity(events),
        }
    }

    /// Number of events.
    pub fn len(&self) -> usize {
        self.timestamps.len()
    }

    /// Whether the batch has no event.
    pub fn is_empty(&self) -> bool {
        self.timestamps.is_empty()
    }

    /// Appends an event.
    pub fn push(&mut self, key: Option<&[u8]>, value: &[u8], timestamp: i64) {
        match key {
            Some(k) => {
                self.data.extend_from_slice(k);
                self.key_lens.push(k.len() as i32);
            }
            None => self.key_lens.push(-1),
        }
        self.data.extend_from_slice(value);
        self.value_lens.push(value.len() as u32);
        self.timestamps.push(timestamp);
    }

    /// Appends an event borrowed from another batch.
    pub fn push_ref(&mut self, event: &EventRef<'_>) {
        self.push(event.key, event.value, event.timestamp)
    }

    /// The events in order. The batch must be [valid](Batch::check).
    pub fn iter(&self) -> BatchIter<'_> {
        BatchIter {
            batch: self,
            index: 0,
            offset: 0,
        }
    }

    /// Checks that the length lists agree with each other and with `data`, as
    /// a batch from a guest must before the host reads it.
    pub fn check(&self) -> Result<(), String> {
        let n = self.timestamps.len();
        if self.key_lens.len() != n || self.value_lens.len() != n {
            return Err(format!(
                "malformed batch: {} key lengths, {} value lengths and {n} timestamps",
                self.key_lens.len(),
                self.value_lens.len()
            ));
        }
        let mut total: u64 = 0;
        for (&k, &v) in self.key_lens.iter().zip(&self.value_lens) {
            if k < -1 {
                return Err(format!("malformed batch: key length {k}"));
            }
            total += k.max(0) as u64 + v as u64;
        }
        if total != self.data.len() as u64 {
            return Err(format!(
                "malformed batch: lengths add up to {total} bytes but the data has {}",
                self.data.len()
            ));
        }
        Ok(())
    }

    /// The events from `start` on, as a new batch.
    pub fn tail(&self, start: usize) -> Batch {
        let mut out = Batch::with_capacity(self.len().saturating_sub(start), 0);
        for event in self.iter().skip(start) {
            out.push_ref(&event);
        }
        out
    }

    /// Bytes of `data` that the events in `events` take.
    pub fn data_len(&self, events: Range<usize>) -> usize {
        let keys: usize = self.key_lens[events.clone()]
            .iter()
            .map(|&k| k.max(0) as usize)
            .sum();
        let values: usize = self.value_lens[events].iter().map(|&v| v as usize).sum();
        keys + values
    }

    /// The events in `events` as a new batch, given `at`, where the first of
    /// them starts in `data` (see [`Batch::data_len`]): the work is in
    /// proportion to what is copied, not to the events before them.
    pub fn slice(&self, events: Range<usize>, at: usize) -> Batch {
        let end = at + self.data_len(events.clone());
        Batch {
            data: self.data[at..end].to_vec(),
            key_lens: self.key_lens[events.clone()].to_vec(),
            value_lens: self.value_lens[events.clone()].to_vec(),
            timestamps: self.timestamps[events].to_vec(),
        }
    }

    /// Appends every event of `other`.
    pub fn extend(&mut self, other: &Batch) {
        self.data.extend_from_slice(&other.data);
        self.key_lens.extend_from_slice(&other.key_lens);
        self.value_lens.extend_from_slice(&other.value_lens);
        self.timestamps.extend_from_slice(&other.timestamps);
    }
}

/// Iterator over the events of a [`Batch`].
pub struct BatchIter<'a> {
    batch: &'a Batch,
    index: usize,
    offset: usize,
}

impl<'a> Iterator for BatchIter<'a> {
    type Item = EventRef<'a>;

    fn next(&mut self) -> Option<EventRef<'a>> {
        let b = self.batch;
        let i = self.index;
        if i >= b.timestamps.len() {
            return None;
        }
        self.index += 1;
        let key = match b.key_lens[i] {
            len if len >= 0 => {
                let k = &b.data[self.offset..self.offset + len as usize];
                self.offset += len as usize;
                Some(k)
            }
            _ => None,
        };
        let vlen = b.value_lens[i] as usize;
        let value = &b.data[self.offset..self.offset + vlen];
        self.offset += vlen;
        Some(EventRef {
            key,
            value,
            timestamp: b.timestamps[i],
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.batch.timestamps.len() - self.index;
        (left, Some(left))
    }
}

impl Blobs {
    /// Empty blobs with room for `n` entries.
    pub fn with_capacity(n: usize) -> Self {
        Blobs {
            data: Vec::new(),
            lens: Vec::with_capacity(n),
        }
    }

    /// Appends an entry (`None`: absent).
    pub fn push(&mut self, bytes: Option<&[u8]>) {
        match bytes {
            Some(b) => {
                self.data.extend_from_slice(b);
                self.lens.push(b.len() as i32);
            }
            None => self.lens.push(-1),
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.lens.len()
    }

    /// Whether there is no entry.
    pub fn is_empty(&self) -> bool {
        self.lens.is_empty()
    }

    /// Splits into entries, checking that the lengths fit the data (blobs come
    /// from a guest).
    pub fn split(&self) -> Result<Vec<Option<&[u8]>>, String> {
        split_blobs(&self.data, &self.lens)
    }
}

/// Splits flat blobs (`lens[i]` bytes of `data` each, -1 for an absent one)
/// into entries, checking that the lengths fit the data: [`Blobs::split`]
/// over borrowed parts, so a layer holding another type of the same shape
/// (the WIT bindings') splits it without moving it.
pub fn split_blobs<'a>(data: &'a [u8], lens: &[i32]) -> Result<Vec<Option<&'a [u8]>>, String> {
    let mut out = Vec::with_capacity(lens.len());
    let mut at = 0usize;
    for &len in lens {
        match len {
            -1 => out.push(None),
            len if len >= 0 => {
                let end = at
                    .checked_add(len as usize)
                    .filter(|&end| end <= data.len())
                    .ok_or_else(|| "malformed blobs: lengths exceed the data".to_string())?;
                out.push(Some(&data[at..end]));
                at = end;
            }
            _ => return Err(format!("malformed blobs: length {len}")),
        }
    }
    if at != data.len() {
        return Err("malformed blobs: data longer than the lengths".to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_shown_as_text_or_base64() {
        assert_eq!(show_key(Some(b"k\"1\n")), "key `k\\\"1\\n`");
        assert_eq!(show_key(Some(&[0xfe, 0xff])), "key (base64) `/v8=`");
        assert_eq!(show_key(None), "no key");
        let long = show_key(Some(&[0xff; 300]));
        assert!(long.ends_with("…`") && long.chars().count() < 130, "{long}");
    }

    #[test]
    fn bytes_are_shown_on_one_line_and_cut() {
        assert_eq!(show_bytes(b"k\"1\"\n\xff"), "k\\\"1\\\"\\n\u{fffd}");
        let long = "é".repeat(101);
        assert_eq!(show_bytes(long.as_bytes()), "é".repeat(100) + "…");
        assert_eq!(show_bytes("é".repeat(100).as_bytes()), "é".repeat(100));
    }

    #[test]
    fn push_iter_roundtrip() {
        let mut b = Batch::default();
        b.push(Some(b"k1"), b"v1", 1);
        b.push(None, b"", 2);
        b.push(Some(b""), b"value", 3);
        b.check().unwrap();
        let events: Vec<_> = b.iter().collect();
        assert_eq!(events.len(), 3);
        assert_eq!(events[0].key, Some(&b"k1"[..]));
        assert_eq!(events[1].key, None);
        assert_eq!(events[2].key, Some(&b""[..]));
        assert_eq!(events[2].value, b"value");
        let tail = b.tail(1);
        assert_eq!(tail.len(), 2);
        assert_eq!(tail.iter().next().unwrap().timestamp, 2);
        let at = b.data_len(0..1);
        assert_eq!(at, 4);
        assert_eq!(b.slice(1..3, at), tail);
        let middle = b.slice(1..2, at);
        assert_eq!(middle.iter().collect::<Vec<_>>(), [events[1]]);
        assert_eq!(b.slice(0..3, 0), b);
        assert!(b.slice(3..3, b.data.len()).is_empty());
    }

    #[test]
    fn check_rejects_malformed() {
        let mut b = Batch::default();
        b.push(Some(b"k"), b"v", 1);
        b.data.push(0);
        assert!(b.check().is_err());
        let mut b = Batch::default();
        b.push(Some(b"k"), b"v", 1);
        b.timestamps.push(2);
        assert!(b.check().is_err());
        let blobs = Blobs {
            data: vec![1, 2],
            lens: vec![3],
        };
        assert!(blobs.split().is_err());
    }
}
