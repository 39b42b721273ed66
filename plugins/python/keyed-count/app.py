"""`keyed-count`: value state `count` per key; emits each event's key with
`value` = the running count as decimal text. No config. An event without a
key is bad input (dead-letter)."""

from weir import Context, Event, Output, StateSpec, ValueState, export


class KeyedCount:
    name = "keyed-count"
    version = "1.0.0"
    states = [StateSpec.value("count", 1)]

    def open(self, ctx: Context) -> None:
        self.count: ValueState[int] = ctx.value_state("count", int)

    def process(self, ctx: Context, event: Event, out: Output) -> None:
        key = event.require_key()
        n = self.count.get(key, 0) + 1
        self.count.set(key, n)
        out.emit(key, str(n), event.timestamp)


Guest = export(KeyedCount)
