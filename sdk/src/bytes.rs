//! Comparing and copying the short byte strings that keys and counts are,
//! without WebAssembly's bulk-memory instructions.
//!
//! A copy or comparison whose length is known only at run time compiles to
//! `memory.copy` or a call to `memcmp`. Runtimes (wasmtime among them) carry
//! out `memory.copy` by calling into the host, and WebAssembly's `memcmp`
//! goes byte by byte: both cost far more than the few words of a key. These
//! do short ones a word at a time, in fixed-size pieces the compiler turns
//! into plain loads and stores, and leave long ones to the bulk instructions.

/// Whether `a` and `b` hold the same bytes, compared 8 (or 4) at a time.
#[inline]
pub(crate) fn same(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let word = |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().expect("8 bytes"));
    let half = |s: &[u8], at: usize| u32::from_le_bytes(s[at..at + 4].try_into().expect("4 bytes"));
    if n >= 8 {
        let mut at = 0;
        while at + 8 < n {
            if word(a, at) != word(b, at) {
                return false;
            }
            at += 8;
        }
        // The last 8 bytes (overlapping what was compared).
        word(a, n - 8) == word(b, n - 8)
    } else if n >= 4 {
        half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4)
    } else {
        a == b
    }
}

/// The longest copy [`extend`] does itself.
const SHORT: usize = 16;

/// Appends `bytes` to `buf`: up to [`SHORT`] bytes in at most four fixed-size
/// pieces (the first and last 8, 4 or 1 bytes, overlapping), longer ones
/// with `memory.copy`.
#[inline]
pub(crate) fn extend(buf: &mut Vec<u8>, bytes: &[u8]) {
    let n = bytes.len();
    if n > SHORT {
        buf.extend_from_slice(bytes);
        return;
    }
    let at = buf.len();
    // Room written in one fixed-size piece, then cut back to `n` bytes.
    buf.extend_from_slice(&[0u8; SHORT]);
    let to = &mut buf[at..at + n];
    if n >= 8 {
        to[..8].copy_from_slice(&bytes[..8]);
        to[n - 8..].copy_from_slice(&bytes[n - 8..]);
    } else if n >= 4 {
        to[..4].copy_from_slice(&bytes[..4]);
        to[n - 4..].copy_from_slice(&bytes[n - 4..]);
    } else if n > 0 {
        // 1 to 3 bytes: the first, the middle and the last cover them.
        to[0] = bytes[0];
        to[n / 2] = bytes[n / 2];
        to[n - 1] = bytes[n - 1];
    }
    buf.truncate(at + n);
}

/// A writer that appends to a buffer with [`extend`], for encoders (such
/// as `serde_json`'s) that write a value in short pieces.
pub(crate) struct Appender<'a>(pub(crate) &'a mut Vec<u8>);

impl std::io::Write for Appender<'_> {
    #[inline]
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        extend(self.0, bytes);
        Ok(bytes.len())
    }

    #[inline]
    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        extend(self.0, bytes);
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{extend, same, Appender};
    use std::io::Write;

    #[test]
    fn same_compares_every_length_and_every_byte() {
        let base: Vec<u8> = (0..40u8).collect();
        for n in 0..base.len() {
            let a = &base[..n];
            assert!(same(a, a), "{n}");
            assert!(!same(a, &base[..n + 1]), "{n}");
            for at in 0..n {
                let mut b = a.to_vec();
                b[at] ^= 0x80;
                assert!(!same(a, &b), "{n} {at}");
            }
        }
    }

    #[test]
    fn extend_appends_every_length_exactly() {
        let bytes: Vec<u8> = (1..=40u8).collect();
        for before in [0usize, 3, 17] {
            for n in 0..bytes.len() {
                let mut buf: Vec<u8> = vec![0xee; before];
                extend(&mut buf, &bytes[..n]);
                extend(&mut buf, &bytes[..n]);
                let mut want = vec![0xee; before];
                want.extend_from_slice(&bytes[..n]);
                want.extend_from_slice(&bytes[..n]);
                assert_eq!(buf, want, "{before} + 2 x {n}");
            }
        }
        let mut buf = Vec::new();
        serde_json::to_writer(Appender(&mut buf), &(12345u64, "a \"quoted\" key")).unwrap();
        assert_eq!(buf, br#"[12345,"a \"quoted\" key"]"#);
        Appender(&mut buf).flush().unwrap();
    }
}
