// boom-js: a test operator. It counts events per key like keyed-count, but
// an event whose value is `boom` makes `explode` throw a TypeError: the
// failure must name `explode`, the event's key and its offset.
import { operator } from "weir";

export const guest = operator({
  name: "boom-js",
  version: "1.0.0",
  states: [{ name: "count", kind: "value", version: 1 }],

  open(ctx) {
    this.count = ctx.valueState("count");
  },

  process(event, out) {
    const key = event.requireKey();
    if (event.valueText() === "boom") explode(key);
    // Stored counts read back as numbers (BigInt beyond 2^53): count in BigInt.
    const n = BigInt(this.count.get(key) ?? 0) + 1n;
    this.count.set(key, n);
    out.emit(key, String(n), event.timestamp);
  },
});

function explode(key) {
  throw new TypeError(`cannot handle ${key}`);
}
