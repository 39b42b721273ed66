"""`windowed-sum`: parses each value as an integer and sums it per key in
event-time tumbling windows of `size_ms` milliseconds (config, required).
A window `[start, start + size_ms)` fires when the watermark reaches its
last millisecond: it emits one event with the key, `value` = the sum and
`timestamp` = window end - 1. An event whose window has already fired (it
is behind the watermark) is late and goes to the dead-letter output, as is
a value that is not an integer or an event without a key.
State: map state `sums` (window end -> running sum) per key."""

from typing import List

from weir import (I64_MAX, I64_MIN, BadInput, Context, Event, Fatal, MapState, Output,
                  StateSpec, Timer, export, parse_i64, trim, wrap_i64)


class WindowedSum:
    name = "windowed-sum"
    version = "1.0.0"
    states = [StateSpec.map("sums", 1)]

    def open(self, ctx: Context) -> None:
        self.size: int = ctx.config.require("size_ms", int)
        if self.size <= 0:
            raise Fatal(f"config `size_ms` must be positive, found {self.size}")
        self.sums: MapState[int, int] = ctx.map_state("sums", int, int)

    def window_end(self, timestamp: int) -> int:
        # Python's % of a positive size is Rust's rem_euclid, also for negative
        # times; wrap_i64 wraps around at the i64 limits as Rust's arithmetic does.
        return wrap_i64(timestamp - timestamp % self.size + self.size)

    def prefetch(self, ctx: Context, events: List[Event]) -> None:
        self.sums.prefetch((e.key, self.window_end(e.timestamp)) for e in events if e.key is not None)

    def process(self, ctx: Context, event: Event, out: Output) -> None:
        key = event.require_key()
        try:
            value = parse_i64(trim(event.value_str()))
        except ValueError:
            raise BadInput("value is not an integer") from None
        end = self.window_end(event.timestamp)
        last = wrap_i64(end - 1)
        watermark = ctx.watermark()
        if last <= watermark:
            start = wrap_i64(end - self.size)
            raise BadInput(f"late event: its window [{start}, {end}) closed at watermark {watermark}")
        open_sum = self.sums.get(key, end)
        total = (open_sum or 0) + value
        if not I64_MIN <= total <= I64_MAX:
            raise BadInput("the window's sum overflows 64 bits")
        self.sums.put(key, end, total)
        # The window's timer is set once, by the event that opens the window.
        if open_sum is None:
            ctx.register_timer(key, last)

    def prefetch_timers(self, ctx: Context, timers: List[Timer]) -> None:
        self.sums.prefetch((t.key, wrap_i64(t.timestamp + 1)) for t in timers if t.key is not None)

    def on_timer(self, ctx: Context, timer: Timer, out: Output) -> None:
        if timer.key is None:
            return
        end = wrap_i64(timer.timestamp + 1)
        total = self.sums.get(timer.key, end)
        if total is not None:
            out.emit(timer.key, str(total), timer.timestamp)
            self.sums.remove(timer.key, end)


Guest = export(WindowedSum)
