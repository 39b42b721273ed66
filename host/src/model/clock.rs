//! The wall clock: now in ms since the Unix epoch, and times shown as
//! RFC 3339 (through `humantime`).

/// Milliseconds since the Unix epoch by the wall clock.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A time in ms since the Unix epoch as RFC 3339 UTC, to the second:
/// `2023-11-14T22:13:20Z`. See [`rfc3339_millis`].
pub fn rfc3339(ms: i64) -> String {
    humantime::format_rfc3339_seconds(system_time(ms)).to_string()
}

/// A time in ms since the Unix epoch as RFC 3339 UTC, to the millisecond:
/// `2023-11-14T22:13:20.123Z`. See [`rfc3339`].
pub fn rfc3339_millis(ms: i64) -> String {
    humantime::format_rfc3339_millis(system_time(ms)).to_string()
}

/// The wall-clock time of ms since the Unix epoch, held to what RFC 3339
/// can write (years 1970 to 9999: humantime panics outside them).
fn system_time(ms: i64) -> std::time::SystemTime {
    const LAST_MS: i64 = 253_402_300_800_000 - 1;
    std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.clamp(0, LAST_MS) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn formats_utc_times() {
        assert_eq!(rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339_millis(1_700_000_000_123),
            "2023-11-14T22:13:20.123Z"
        );
    }

    #[test]
    fn times_rfc3339_cannot_write_are_held_to_its_range() {
        assert_eq!(rfc3339(-1), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_millis(i64::MAX), "9999-12-31T23:59:59.999Z");
    }
}
