"""`boom-python`: a test operator. It counts events per key like keyed-count,
but an event whose value is `boom` makes `explode` raise a ValueError: the
failure must name `explode`, the event's key and its offset."""

from weir import Context, Event, Output, StateSpec, ValueState, export


class Boom:
    name = "boom-python"
    version = "1.0.0"
    states = [StateSpec.value("count", 1)]

    def open(self, ctx: Context) -> None:
        self.count: ValueState[int] = ctx.value_state("count", int)

    def process(self, ctx: Context, event: Event, out: Output) -> None:
        key = event.require_key()
        if event.value == b"boom":
            explode(key)
        n = self.count.get(key, 0) + 1
        self.count.set(key, n)
        out.emit(key, str(n), event.timestamp)


def explode(key):
    raise ValueError(f"cannot handle {key!r}")


Guest = export(Boom)
