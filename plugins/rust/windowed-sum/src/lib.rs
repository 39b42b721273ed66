//! `windowed-sum`: parses each value as an integer and sums it per key in
//! event-time tumbling windows of `size_ms` milliseconds (config, required).
//! A window `[start, start + size_ms)` fires when the watermark reaches its
//! last millisecond: it emits one event with the key, `value` = the sum and
//! `timestamp` = window end - 1. An event whose window has already fired (it
//! is behind the watermark) is late and goes to the dead-letter output, as is
//! a value that is not an integer or an event without a key.
//! State: map state `sums` (window end -> running sum) per key, and an
//! event-time timer per open window of a key, set when the window opens.

use weir_sdk::{Context, Error, Event, MapState, Operator, Output, StateSpec, TimeDomain, Timer};

struct WindowedSum {
    size: i64,
    sums: MapState<i64, i64>,
}

impl WindowedSum {
    fn window_end(&self, timestamp: i64) -> i64 {
        timestamp - timestamp.rem_euclid(self.size) + self.size
    }
}

impl Operator for WindowedSum {
    const NAME: &'static str = "windowed-sum";
    const VERSION: &'static str = "1.0.0";

    fn states() -> Vec<StateSpec> {
        vec![StateSpec::map("sums", 1)]
    }

    fn open(ctx: &mut Context) -> Result<Self, String> {
        let size: i64 = ctx.config().require("size_ms")?;
        if size <= 0 {
            return Err(format!("config `size_ms` must be positive, found {size}"));
        }
        Ok(WindowedSum {
            size,
            sums: ctx.map_state("sums")?,
        })
    }

    fn prefetch(&mut self, _ctx: &mut Context, events: &[Event<'_>]) -> Result<(), Error> {
        let ends: Vec<(&[u8], i64)> = events
            .iter()
            .filter_map(|e| Some((e.key?, self.window_end(e.timestamp))))
            .collect();
        self.sums.prefetch(ends.iter().map(|(k, end)| (*k, end)))
    }

    fn process(
        &mut self,
        ctx: &mut Context,
        event: Event<'_>,
        _out: &mut Output,
    ) -> Result<(), Error> {
        let key = event.require_key()?;
        let value = match parse_i64(event.value) {
            Some(v) => v,
            // Anything else (spaces, not UTF-8, not a number, out of range)
            // takes the general path, which gives the same errors as ever.
            None => event
                .value_str()?
                .trim()
                .parse()
                .map_err(|_| Error::bad_input("value is not an integer"))?,
        };
        let end = self.window_end(event.timestamp);
        let watermark = ctx.watermark();
        if end - 1 <= watermark {
            return Err(Error::bad_input(format!(
                "late event: its window [{}, {end}) closed at watermark {watermark}",
                end - self.size
            )));
        }
        let open = self.sums.get(key, &end)?;
        let sum = open
            .unwrap_or(0)
            .checked_add(value)
            .ok_or_else(|| Error::bad_input("the window's sum overflows 64 bits"))?;
        self.sums.put(key, &end, sum)?;
        // The window's timer is registered once, by the event that opens it
        // (the key's first in the window): it stays registered while the
        // sum does, as both are checkpointed and restored together, and it
        // removes the sum when it fires. Registering it again for every
        // event would only be deduplicated by the host.
        if open.is_none() {
            ctx.register_timer(TimeDomain::EventTime, Some(key), end - 1);
        }
        Ok(())
    }

    fn prefetch_timers(&mut self, _ctx: &mut Context, timers: &[Timer<'_>]) -> Result<(), Error> {
        let ends: Vec<(&[u8], i64)> = timers
            .iter()
            .filter_map(|t| Some((t.key?, t.timestamp + 1)))
            .collect();
        self.sums.prefetch(ends.iter().map(|(k, end)| (*k, end)))
    }

    fn on_timer(
        &mut self,
        _ctx: &mut Context,
        timer: Timer<'_>,
        out: &mut Output,
    ) -> Result<(), Error> {
        let Some(key) = timer.key else { return Ok(()) };
        let end = timer.timestamp + 1;
        if let Some(sum) = self.sums.get(key, &end)? {
            out.emit(Some(key), itoa::Buffer::new().format(sum), end - 1);
            self.sums.remove(key, &end)?;
        }
        Ok(())
    }
}

/// `value` as an `i64` when it is exactly an optional sign and decimal
/// digits that fit (then `str::parse` agrees); `None` otherwise. Faster than
/// `str::parse` on long zero-padded values: the leading zeros are skipped
/// eight at a time and at most 19 digits are multiplied in, in 64 bits.
fn parse_i64(value: &[u8]) -> Option<i64> {
    let (negative, mut digits) = match value {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        _ => (false, value),
    };
    if digits.is_empty() {
        return None;
    }
    const ZEROS: u64 = u64::from_ne_bytes([b'0'; 8]);
    while let Some((chunk, rest)) = digits.split_first_chunk::<8>() {
        if u64::from_ne_bytes(*chunk) != ZEROS {
            break;
        }
        digits = rest;
    }
    while let [b'0', rest @ ..] = digits {
        digits = rest;
    }
    // 19 digits are below 10^19 < 2^64: no overflow while summing.
    if digits.len() > 19 {
        return None;
    }
    let mut n: u64 = 0;
    for &c in digits {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        n = n * 10 + d as u64;
    }
    if negative {
        // -2^63 is i64::MIN; 0 - n in two's complement.
        (n <= 1 << 63).then(|| (n as i64).wrapping_neg())
    } else {
        i64::try_from(n).ok()
    }
}

weir_sdk::export!(WindowedSum);

#[cfg(test)]
mod tests {
    use super::parse_i64;

    /// `parse_i64` accepts a subset of what `str::parse` does, with the same
    /// results, and everything it refuses goes to `str::parse`.
    fn check(s: &str) {
        let fast = parse_i64(s.as_bytes());
        let slow = s.trim().parse::<i64>().ok();
        if let Some(v) = fast {
            assert_eq!(Some(v), slow, "{s:?}");
        }
        let is_plain = !s.is_empty() && s.trim() == s;
        if is_plain {
            assert_eq!(fast, slow, "{s:?}");
        }
    }

    #[test]
    fn agrees_with_str_parse() {
        let zeros = "0".repeat(97);
        let cases = [
            "",
            "+",
            "-",
            "0",
            "-0",
            "+0",
            "00000000",
            "000000000",
            "1",
            "-1",
            "+1",
            "+-1",
            "-+1",
            "--1",
            "1-",
            "12a",
            "a12",
            " 12",
            "12 ",
            " -12 ",
            "\t7\n",
            "1 2",
            "1_000",
            "0x10",
            "9223372036854775807",
            "9223372036854775808",
            "-9223372036854775808",
            "-9223372036854775809",
            "+9223372036854775807",
            "18446744073709551615",
            "18446744073709551616",
            "99999999999999999999",
            "-99999999999999999999",
            "00000000000000000000009223372036854775807",
            "00000000000000000000009223372036854775808",
            "-0000000000000000000009223372036854775808",
            "-0000000000000000000009223372036854775809",
            "1000000000000000000",
            "10000000000000000000",
            "0000000/",
            "0000000:",
            "00000000:",
            "٣",
            "０",
            "1.0",
            "1e3",
        ];
        for s in cases {
            check(s);
        }
        for n in ["0", "7", "42", "999", "-5", "+5", "1234567890123456789"] {
            check(&format!("{zeros}{n}"));
            let (sign, digits) = n.split_at(usize::from(n.starts_with(['-', '+'])));
            check(&format!("{sign}{zeros}{digits}"));
            check(&format!("{zeros}{n}x"));
            check(&format!(" {zeros}{n}"));
        }
        for len in 0..40 {
            check(&"0".repeat(len));
            check(&format!("{}1", "0".repeat(len)));
            check(&format!("-{}9", "0".repeat(len)));
            check(&"9".repeat(len));
            check(&format!("-{}", "9".repeat(len)));
        }
        for n in [i64::MIN, i64::MIN + 1, -1, 0, 1, i64::MAX - 1, i64::MAX] {
            check(&n.to_string());
            check(&format!("{n:0>100}"));
        }
        for byte in 0..=255u8 {
            if let Ok(s) = std::str::from_utf8(&[b'1', byte, b'2']) {
                check(s);
            }
        }
    }
}
