//! `windowed-sum`: parses each value as an integer and sums it per key in
//! event-time tumbling windows of `size_ms` milliseconds (config, required).
//! A window `[start, start + size_ms)` fires when the watermark reaches its
//! last millisecond: it emits one event with the key, `value` = the sum and
//! `timestamp` = window end - 1. An event whose window has already fired (it
//! is behind the watermark) is late and goes to the dead-letter output, as is
//! a value that is not an integer or an event without a key.
//! State: map state `sums` (window end -> running sum) per key.

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
        let value: i64 = event
            .value_str()?
            .trim()
            .parse()
            .map_err(|_| Error::bad_input("value is not an integer"))?;
        let end = self.window_end(event.timestamp);
        let watermark = ctx.watermark();
        if end - 1 <= watermark {
            return Err(Error::bad_input(format!(
                "late event: its window [{}, {end}) closed at watermark {watermark}",
                end - self.size
            )));
        }
        let sum = self.sums.get(key, &end)?.unwrap_or(0);
        let sum = sum
            .checked_add(value)
            .ok_or_else(|| Error::bad_input("the window's sum overflows 64 bits"))?;
        self.sums.put(key, &end, sum)?;
        ctx.register_timer(TimeDomain::EventTime, Some(key), end - 1);
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
            out.emit(Some(key), sum.to_string(), end - 1);
            self.sums.remove(key, &end)?;
        }
        Ok(())
    }
}

weir_sdk::export!(WindowedSum);
