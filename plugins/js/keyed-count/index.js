// keyed-count: value state `count` per key; emits each event's key with
// `value` = the running count as decimal text. No config. An event without a
// key is bad input (dead-letter).
import { operator } from "weir";

export const guest = operator({
  name: "keyed-count",
  version: "1.0.0",
  states: [{ name: "count", kind: "value", version: 1 }],

  open(ctx) {
    this.count = ctx.valueState("count");
  },

  process(event, out) {
    const key = event.requireKey();
    // Stored counts read back as numbers (BigInt beyond 2^53): count in BigInt.
    const n = BigInt(this.count.get(key) ?? 0) + 1n;
    this.count.set(key, n);
    out.emit(key, String(n), event.timestamp);
  },
});
