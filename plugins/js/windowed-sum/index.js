// windowed-sum: parses each value as an integer and sums it per key in
// event-time tumbling windows of `size_ms` milliseconds (config, required).
// A window [start, start + size_ms) fires when the watermark reaches its last
// millisecond: it emits one event with the key, `value` = the sum and
// `timestamp` = window end - 1. An event whose window has already fired (it is
// behind the watermark) is late and goes to the dead-letter output, as is a
// value that is not an integer or an event without a key.
// State: map state `sums` (window end -> running sum) per key.
import { operator, BadInput, TimeDomain, parseI64, trim } from "weir";

// Timestamps are BigInt; i64 arithmetic wraps, as the Rust build's does.
const i64 = (x) => BigInt.asIntN(64, x);

export const guest = operator({
  name: "windowed-sum",
  version: "1.0.0",
  states: [{ name: "sums", kind: "map", version: 1 }],

  open(ctx) {
    this.size = ctx.config.requireInt("size_ms");
    if (this.size <= 0n) throw new Error(`config \`size_ms\` must be positive, found ${this.size}`);
    this.sums = ctx.mapState("sums");
  },

  windowEnd(timestamp) {
    const rem = ((timestamp % this.size) + this.size) % this.size; // rem_euclid
    return i64(timestamp - rem + this.size);
  },

  prefetch(events) {
    this.sums.prefetch(events.filter((e) => e.key !== null).map((e) => [e.key, this.windowEnd(e.timestamp)]));
  },

  process(event, out, ctx) {
    const key = event.requireKey();
    const text = trim(event.valueText());
    let value;
    try {
      value = parseI64(text);
    } catch {
      throw new BadInput("value is not an integer");
    }
    const end = this.windowEnd(event.timestamp);
    const watermark = ctx.watermark();
    if (i64(end - 1n) <= watermark) {
      throw new BadInput(`late event: its window [${i64(end - this.size)}, ${end}) closed at watermark ${watermark}`);
    }
    const open = this.sums.get(key, end);
    const sum = BigInt(open ?? 0) + value;
    if (i64(sum) !== sum) throw new BadInput("the window's sum overflows 64 bits");
    this.sums.put(key, end, sum);
    // The window's timer is set once, by the event that opens the window.
    if (open === undefined) ctx.registerTimer(TimeDomain.EventTime, key, i64(end - 1n));
  },

  prefetchTimers(timers) {
    this.sums.prefetch(timers.filter((t) => t.key !== null).map((t) => [t.key, i64(t.timestamp + 1n)]));
  },

  onTimer(timer, out) {
    if (timer.key === null) return;
    const end = i64(timer.timestamp + 1n);
    const sum = this.sums.get(timer.key, end);
    if (sum !== undefined) {
      out.emit(timer.key, String(sum), i64(end - 1n));
      this.sums.remove(timer.key, end);
    }
  },
});
