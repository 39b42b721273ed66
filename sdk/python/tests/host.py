"""A stand-in for the host side of weir.py's imports (``state``, ``timers``,
``logging``) in the componentize-py bindings: it keeps state as the host
does and records every call, in order, in the shape of the vectors'
``calls`` (sdk/vectors/README.md). ``install`` puts it in place of the
generated import functions, which only work inside a component."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

I64_MIN = -(1 << 63)


class Host:
    """What the host holds, and the calls it has seen."""

    def __init__(self) -> None:
        self.values: Dict[Tuple[str, bytes], bytes] = {}
        self.maps: Dict[Tuple[str, bytes, bytes], bytes] = {}
        self.lists: Dict[Tuple[str, bytes], List[bytes]] = {}
        self.watermark = I64_MIN
        self.calls: List[Dict[str, Any]] = []

    def take_calls(self) -> List[Dict[str, Any]]:
        calls, self.calls = self.calls, []
        return calls


HOST = Host()


def _text(b: bytes) -> str:
    return b.decode("utf-8", "replace")


def install(types: Any, state: Any, timers: Any, logging: Any) -> None:
    """Replaces the generated import functions of the binding modules."""

    def split(blobs: Any) -> List[Optional[bytes]]:
        out, at = [], 0
        for n in blobs.lens:
            if n < 0:
                out.append(None)
            else:
                out.append(bytes(blobs.data[at:at + n]))
                at += n
        return out

    def join(parts: List[Optional[bytes]]) -> Any:
        return types.Blobs(b"".join(p for p in parts if p is not None), [-1 if p is None else len(p) for p in parts])

    def record(call: Dict[str, Any]) -> None:
        HOST.calls.append(call)

    class ValueState:
        def __init__(self, name: str) -> None:
            self.name = name

        @classmethod
        def open(cls, name: str) -> "ValueState":
            return cls(name)

        def get_many(self, keys: Any) -> Any:
            ks = split(keys)
            record({"call": "value.get-many", "state": self.name, "keys": [_text(k) for k in ks]})
            return join([HOST.values.get((self.name, k)) for k in ks])

        def put_many(self, keys: Any, values: Any) -> None:
            pairs = list(zip(split(keys), split(values)))
            record({"call": "value.put-many", "state": self.name,
                    "entries": [[_text(k), None if v is None else _text(v)] for k, v in pairs]})
            for k, v in pairs:
                if v is None:
                    HOST.values.pop((self.name, k), None)
                else:
                    HOST.values[(self.name, k)] = v

    class MapState:
        def __init__(self, name: str) -> None:
            self.name = name

        @classmethod
        def open(cls, name: str) -> "MapState":
            return cls(name)

        def get_many(self, keys: Any, map_keys: Any) -> Any:
            pairs = list(zip(split(keys), split(map_keys)))
            record({"call": "map.get-many", "state": self.name, "pairs": [[_text(k), _text(m)] for k, m in pairs]})
            return join([HOST.maps.get((self.name, k, m)) for k, m in pairs])

        def put_many(self, keys: Any, map_keys: Any, values: Any) -> None:
            entries = list(zip(split(keys), split(map_keys), split(values)))
            record({"call": "map.put-many", "state": self.name,
                    "entries": [[_text(k), _text(m), None if v is None else _text(v)] for k, m, v in entries]})
            for k, m, v in entries:
                if v is None:
                    HOST.maps.pop((self.name, k, m), None)
                else:
                    HOST.maps[(self.name, k, m)] = v

        def entries(self, key: bytes) -> Any:
            record({"call": "map.entries", "state": self.name, "key": _text(key)})
            found = sorted((m, v) for (s, k, m), v in HOST.maps.items() if s == self.name and k == key)
            return join([m for m, _ in found]), join([v for _, v in found])

        def clear(self, key: bytes) -> None:
            record({"call": "map.clear", "state": self.name, "key": _text(key)})
            for slot in [s for s in HOST.maps if s[0] == self.name and s[1] == key]:
                del HOST.maps[slot]

    class ListState:
        def __init__(self, name: str) -> None:
            self.name = name

        @classmethod
        def open(cls, name: str) -> "ListState":
            return cls(name)

        def get(self, key: bytes) -> Any:
            record({"call": "list.get", "state": self.name, "key": _text(key)})
            return join(list(HOST.lists.get((self.name, key), [])))

        def add_many(self, keys: Any, values: Any) -> None:
            entries = list(zip(split(keys), split(values)))
            record({"call": "list.add-many", "state": self.name, "entries": [[_text(k), _text(v)] for k, v in entries]})
            for k, v in entries:
                HOST.lists.setdefault((self.name, k), []).append(v)

        def update(self, key: bytes, values: Any) -> None:
            vs = split(values)
            record({"call": "list.update", "state": self.name, "key": _text(key), "values": [_text(v) for v in vs]})
            if vs:
                HOST.lists[(self.name, key)] = vs
            else:
                HOST.lists.pop((self.name, key), None)

    def domain_name(domain: Any) -> str:
        return "event-time" if domain == types.TimeDomain.EVENT_TIME else "processing-time"

    def changes(kind: str, domain: Any, keys: Any, timestamps: List[int]) -> None:
        ks = split(keys)
        record({"call": "timers." + kind, "domain": domain_name(domain),
                "entries": [[None if k is None else _text(k), t] for k, t in zip(ks, timestamps)]})

    def register_many(domain: Any, keys: Any, timestamps: List[int]) -> None:
        changes("register-many", domain, keys, timestamps)

    def delete_many(domain: Any, keys: Any, timestamps: List[int]) -> None:
        changes("delete-many", domain, keys, timestamps)

    def current_watermark() -> int:
        record({"call": "timers.current-watermark"})
        return HOST.watermark

    def processing_time() -> int:
        record({"call": "timers.processing-time"})
        return 0

    state.ValueState, state.MapState, state.ListState = ValueState, MapState, ListState
    timers.register_many, timers.delete_many = register_many, delete_many
    timers.current_watermark, timers.processing_time = current_watermark, processing_time
    logging.log = lambda level, message: None
