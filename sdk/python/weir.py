"""Write weir stream operators in Python.

An operator is a class with ``name``, ``version`` and ``states`` attributes, an
``open(self, ctx)`` method that reads the config and opens typed state
handles, and a ``process(self, ctx, event, out)`` method that sees one
:class:`Event` at a time and emits events into an :class:`Output`. The module
``app.py`` exports it with ``Guest = weir.export(MyOperator)``::

    from weir import Context, Event, Output, StateSpec, ValueState, export

    class KeyedCount:
        \"\"\"Counts events per key and emits the running count.\"\"\"
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

Raise :class:`BadInput` from ``process`` to send the event to the dead-letter
output (the job goes on) and :class:`Fatal` to fail the job; any other
exception is fatal too. Raise :class:`Fatal` from ``open`` to refuse to start
(its message is the reason).

State, and what crosses the component boundary
----------------------------------------------
State lives in the host, not in the guest: it is checkpointed and survives
restarts and logic swaps. The handles cache it for the length of one call:
the first read of a :class:`ValueState` in a batch fetches the values of every
key of the batch in one host call, writes are buffered, and all buffered
writes and timer registrations go to the host in one call per state when the
call ends (also when an event is rejected: writes made for the events before
it are kept). :class:`MapState` reads can be batched with
:meth:`MapState.prefetch` from an optional ``prefetch(self, ctx, events)``
method (and ``prefetch_timers(self, ctx, timers)`` for ``on_timer``).

How typed state is stored
-------------------------
Values, and the user keys of a :class:`MapState`, are stored as compact
canonical JSON (``sdk/ENCODING.md``), the format every weir SDK reads and
writes, so state written by a Rust, JavaScript, C or Go build restores into a
Python one and back. Integers must fit in 64 bits (signed, or unsigned for
counts): Python's unbounded ints are checked when stored. The key a state is
kept under is the raw bytes the operator passes, normally the event key.
"""

from __future__ import annotations

import json
import re
import traceback
import unicodedata
from typing import Any, Callable, Dict, Generic, Iterable, List, Optional, Tuple, TypeVar, Union

from componentize_py_types import Err
from wit_world import exports as _exports
from wit_world.imports import logging as _logging
from wit_world.imports import state as _host
from wit_world.imports import timers as _timers
from wit_world.imports import types as _types

__all__ = [
    "BadInput", "Fatal", "Event", "Timer", "Output", "TimeDomain", "StateSpec", "StateKind",
    "ValueState", "MapState", "ListState", "Context", "Config", "TaskInfo", "export",
    "I64_MIN", "I64_MAX", "U64_MAX", "wrap_i64", "trim", "parse_i64", "dumps", "loads", "log",
]

T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")

I64_MIN = -(1 << 63)
I64_MAX = (1 << 63) - 1
U64_MAX = (1 << 64) - 1

TimeDomain = _types.TimeDomain
"""The clock a timer follows: ``TimeDomain.EVENT_TIME`` or ``TimeDomain.PROCESSING_TIME``."""
StateKind = _types.StateKind
"""The kinds of declared state: ``VALUE``, ``MAP``, ``LIST``."""
TaskInfo = _types.TaskInfo
"""Where a subtask runs: ``operator_id``, ``subtask``, ``parallelism``, ``max_parallelism``, ``attempt``."""


# --------------------------------------------------------------------------
# Errors


class BadInput(Exception):
    """The event is bad: it goes to the dead-letter output with this message and the job goes on."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Fatal(Exception):
    """The job cannot go on: it fails and restarts from its last checkpoint.

    Raised from ``open``, its message is why the operator refuses to start.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _describe_exception(e: BaseException) -> str:
    """The message of an exception the operator raised; for one it did not
    mean to (not :class:`Fatal` or :class:`BadInput`), with where it was
    raised: the innermost three functions of the operator's own code,
    ``(in explode (app.py:25) <- process (app.py:19))``."""
    if isinstance(e, (Fatal, BadInput)):
        return e.message
    text = "".join(traceback.format_exception_only(type(e), e)).strip()
    frames = [
        f for f in traceback.extract_tb(e.__traceback__)
        if f.filename.rsplit("/", 1)[-1] != "weir.py"
    ]
    if frames:
        where = " <- ".join(
            f"{f.name} ({f.filename.rsplit('/', 1)[-1]}:{f.lineno})" for f in reversed(frames[-3:])
        )
        text += f" (in {where})"
    return text


# --------------------------------------------------------------------------
# Text and JSON, exactly as the Rust SDK reads and writes them

_RUST_WHITESPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
_INT_RE = re.compile(r"[+-]?([0-9]*)")


def wrap_i64(n: int) -> int:
    """``n`` wrapped into the signed 64-bit range, as Rust's (release-mode)
    ``i64`` arithmetic wraps: ``wrap_i64(I64_MAX + 1) == I64_MIN``."""
    if I64_MIN <= n <= I64_MAX:
        return n
    return ((n - I64_MIN) & U64_MAX) + I64_MIN


def trim(text: str) -> str:
    """``text`` without leading and trailing Unicode White_Space, exactly as Rust's ``str::trim``.

    (Python's ``str.strip()`` also strips U+001C-U+001F, which Rust keeps.)
    """
    return text.strip(_RUST_WHITESPACE)


def parse_i64(text: str) -> int:
    """Parses ``text`` exactly as Rust's ``i64::from_str``: an optional ``+`` or
    ``-`` and ASCII digits, within the range of a signed 64-bit integer. No
    whitespace, underscores or non-ASCII digits. Raises ``ValueError`` with
    Rust's message otherwise."""
    if len(text) < 19 and text.isascii() and text.isdigit():
        return int(text)  # the common case
    return _parse_int(text, I64_MIN, I64_MAX)


def _parse_int(text: str, low: int, high: int) -> int:
    if not text:
        raise ValueError("cannot parse integer from empty string")
    if text in ("+", "-"):
        raise ValueError("invalid digit found in string")
    negative = text[0] == "-"
    if negative and low == 0:
        raise ValueError("invalid digit found in string")
    m = _INT_RE.match(text)
    digits = m.group(1)
    # Rust reads left to right: an overflow before the first bad character wins.
    significant = digits.lstrip("0")
    value = int(significant) if 0 < len(significant) <= 20 else 0
    if negative:
        value = -value
    if len(significant) > 20 or not low <= value <= high:
        raise ValueError(
            "number too small to fit in target type" if negative
            else "number too large to fit in target type"
        )
    if m.end() != len(text):
        raise ValueError("invalid digit found in string")
    return value


def _rust_debug_str(text: str) -> str:
    """``text`` quoted as Rust's ``{:?}`` writes a string (for config error messages)."""
    out = ['"']
    for c in text:
        if c == '"':
            out.append('\\"')
        elif c == "\\":
            out.append("\\\\")
        elif c == "\n":
            out.append("\\n")
        elif c == "\r":
            out.append("\\r")
        elif c == "\t":
            out.append("\\t")
        elif c == "\0":
            out.append("\\0")
        elif (not c.isprintable() and c != " ") or unicodedata.category(c) in ("Mn", "Me"):
            out.append("\\u{%x}" % ord(c))
        else:
            out.append(c)
    out.append('"')
    return "".join(out)


_encode_str = json.encoder.encode_basestring  # escapes `"`, `\` and controls only


def _float_text(f: float) -> str:
    """The shortest text that reads back as ``f``, laid out as serde_json 1.0.154
    (the Rust SDK) writes it: ``0.5``, ``100.0``, ``0.00001``, ``1e-7``, ``1e+16``."""
    if f != f or f in (float("inf"), float("-inf")):
        raise ValueError("NaN and infinities cannot be stored")
    r = repr(f)
    sign = ""
    if r[0] == "-":
        sign, r = "-", r[1:]
    mantissa, _, exp = r.partition("e")
    whole, _, frac = mantissa.partition(".")
    digits = (whole + frac).lstrip("0")
    if not digits:
        return sign + "0.0"
    # value = 0.DIGITS x 10^point
    point = len(whole.lstrip("0")) + (int(exp) if exp else 0)
    if not whole.lstrip("0"):
        point -= len(frac) - len(frac.lstrip("0"))
    digits = digits.rstrip("0")
    n = len(digits)
    if n <= point <= 16:
        return sign + digits + "0" * (point - n) + ".0"
    if 0 < point <= 16:
        return sign + digits[:point] + "." + digits[point:]
    if -5 < point <= 0:
        return sign + "0." + "0" * (-point) + digits
    rest = "." + digits[1:] if n > 1 else ""
    exponent = point - 1
    return sign + digits[0] + rest + ("e+" if exponent > 0 else "e") + str(exponent)


def _dump(v: Any, out: List[str]) -> None:
    if v is None:
        out.append("null")
    elif v is True:
        out.append("true")
    elif v is False:
        out.append("false")
    elif isinstance(v, int):
        if not I64_MIN <= v <= U64_MAX:
            raise ValueError(f"the integer {v} does not fit in 64 bits")
        out.append(str(int(v)))
    elif isinstance(v, float):
        out.append(_float_text(v))
    elif isinstance(v, str):
        out.append(_encode_str(v))
    elif isinstance(v, (bytes, bytearray, memoryview)):
        import base64

        out.append('"' + base64.b64encode(bytes(v)).decode() + '"')
    elif isinstance(v, dict):
        out.append("{")
        first = True
        for k, item in v.items():
            if not first:
                out.append(",")
            first = False
            if isinstance(k, str):
                out.append(_encode_str(k))
            elif isinstance(k, int) and not isinstance(k, bool):
                out.append('"' + str(k) + '"')
            else:
                raise TypeError(f"an object key must be a str or an int, not {type(k).__name__}")
            out.append(":")
            _dump(item, out)
        out.append("}")
    elif isinstance(v, (list, tuple)):
        out.append("[")
        for i, item in enumerate(v):
            if i:
                out.append(",")
            _dump(item, out)
        out.append("]")
    else:
        raise TypeError(f"a {type(v).__name__} has no JSON form")


def dumps(value: Any) -> bytes:
    """``value`` as canonical compact JSON bytes (``sdk/ENCODING.md``), the bytes
    every weir SDK writes for it. ``bytes`` become a base64 string."""
    if type(value) is int and I64_MIN <= value <= U64_MAX:
        return str(value).encode()
    out: List[str] = []
    _dump(value, out)
    return "".join(out).encode()


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def loads(data: bytes) -> Any:
    """Reads a JSON text (any valid JSON, not only the canonical form)."""
    if data.isdigit() and len(data) < 19 and (data[0] != 0x30 or len(data) == 1):
        return int(data)
    return json.loads(data.decode("utf-8"), parse_constant=_no_constant)


def _checker(kind: Optional[type]) -> Optional[Callable[[Any], Any]]:
    """A function that checks a decoded value is a ``kind`` (None: anything)."""
    if kind is None or kind is object:
        return None
    if kind is int:
        def check(v: Any) -> Any:
            if type(v) is not int or not I64_MIN <= v <= U64_MAX:
                raise ValueError(f"expected a 64-bit integer, found {v!r}")
            return v
        return check
    if kind is float:
        def check(v: Any) -> Any:
            if type(v) not in (int, float):
                raise ValueError(f"expected a number, found {v!r}")
            return float(v)
        return check
    if kind is bytes:
        import base64

        def check(v: Any) -> Any:
            if type(v) is not str:
                raise ValueError(f"expected a base64 string, found {v!r}")
            return base64.b64decode(v, validate=True)
        return check
    if kind in (str, bool, list, dict):
        def check(v: Any) -> Any:
            if type(v) is not kind:
                raise ValueError(f"expected a {kind.__name__}, found {v!r}")
            return v
        return check
    raise TypeError(f"state values of type {kind!r} are not supported: use int, float, str, bool, bytes, list, dict or object")


def _decoder(state: str, kind: Optional[type]) -> Callable[[bytes], Any]:
    check = _checker(kind)

    def decode(data: bytes) -> Any:
        if data.isdigit() and len(data) < 19 and (data[0] != 0x30 or len(data) == 1):
            return int(data)  # the common case, a small non-negative integer
        try:
            v = loads(data)
            return v if check is None else check(v)
        except (ValueError, TypeError) as e:
            raise Fatal(f"state `{state}` holds a value that does not decode as this type: {e}") from None
    return decode


def _encoder(state: str) -> Callable[[Any], bytes]:
    def encode(v: Any) -> bytes:
        if v.__class__ is int and I64_MIN <= v <= U64_MAX:
            return str(v).encode()  # the common case
        try:
            return dumps(v)
        except (ValueError, TypeError) as e:
            raise Fatal(f"cannot encode a value of state `{state}`: {e}") from None
    return encode


# --------------------------------------------------------------------------
# Flat forms


def _blobs(items: List[Optional[bytes]]) -> _types.Blobs:
    return _types.Blobs(
        b"".join([b for b in items if b is not None]),
        [-1 if b is None else len(b) for b in items],
    )


def _split(blobs: _types.Blobs) -> List[Optional[bytes]]:
    data, out, at = blobs.data, [], 0
    for n in blobs.lens:
        if n < 0:
            out.append(None)
        else:
            out.append(data[at:at + n])
            at += n
    if at > len(data):
        raise Fatal("malformed blobs from the host")
    return out


class Event:
    """One event: an optional key, a value and an event time (ms since the Unix epoch)."""

    __slots__ = ("key", "value", "timestamp")

    def __init__(self, key: Optional[bytes], value: bytes, timestamp: int) -> None:
        self.key = key
        """The key bytes, or ``None``."""
        self.value = value
        """The value bytes."""
        self.timestamp = timestamp
        """Event time in milliseconds since the Unix epoch."""

    def require_key(self) -> bytes:
        """The key, or :class:`BadInput` ``event has no key``."""
        if self.key is None:
            raise BadInput("event has no key")
        return self.key

    def value_str(self) -> str:
        """The value as UTF-8 text, or :class:`BadInput` ``value is not UTF-8 text``."""
        try:
            return self.value.decode("utf-8")
        except UnicodeDecodeError:
            raise BadInput("value is not UTF-8 text") from None

    def key_str(self) -> Optional[str]:
        """The key as UTF-8 text (``None`` for no key), or :class:`BadInput` ``key is not UTF-8 text``."""
        if self.key is None:
            return None
        try:
            return self.key.decode("utf-8")
        except UnicodeDecodeError:
            raise BadInput("key is not UTF-8 text") from None

    def __repr__(self) -> str:
        return f"Event(key={self.key!r}, value={self.value!r}, timestamp={self.timestamp})"


class Timer:
    """A timer that fired: its key (or ``None``), the time it was set for, and its clock."""

    __slots__ = ("key", "timestamp", "domain")

    def __init__(self, key: Optional[bytes], timestamp: int, domain: TimeDomain) -> None:
        self.key = key
        self.timestamp = timestamp
        self.domain = domain

    def __repr__(self) -> str:
        return f"Timer(key={self.key!r}, timestamp={self.timestamp}, domain={self.domain})"


def _as_bytes(b: Union[bytes, bytearray, memoryview, str]) -> bytes:
    if isinstance(b, str):
        return b.encode()
    if isinstance(b, (bytes, bytearray, memoryview)):
        return bytes(b)
    raise Fatal(f"an emitted key or value must be bytes or str, not {type(b).__name__}")


class Output:
    """Events an operator emits, in order."""

    __slots__ = ("_events",)

    def __init__(self) -> None:
        self._events: List[Tuple[Any, Any, int]] = []

    def emit(self, key: Union[bytes, str, None], value: Union[bytes, str], timestamp: int) -> None:
        """Emits an event with ``key`` (or ``None``), ``value`` and event time
        ``timestamp``; ``str`` key and value are sent as UTF-8."""
        self._events.append((key, value, timestamp))

    def forward(self, event: Event) -> None:
        """Emits ``event`` unchanged."""
        self._events.append((event.key, event.value, event.timestamp))

    def __len__(self) -> int:
        return len(self._events)

    def _batch(self) -> _types.Batch:
        if not self._events:
            return _types.Batch(b"", [], [], [])
        keys, values, timestamps = zip(*self._events)
        keys = [k if k.__class__ is bytes or k is None else _as_bytes(k) for k in keys]
        values = [v if v.__class__ is bytes else v.encode() if v.__class__ is str else _as_bytes(v) for v in values]
        timestamps = list(timestamps)
        if min(timestamps) < I64_MIN or max(timestamps) > I64_MAX:
            raise Fatal("an emitted timestamp does not fit in 64 bits")
        data = b"".join([b for pair in zip(keys, values) for b in pair if b is not None])
        key_lens = [-1 if k is None else len(k) for k in keys]
        return _types.Batch(data, key_lens, [len(v) for v in values], timestamps)


# --------------------------------------------------------------------------
# Declared state


class StateSpec:
    """A declared state: its name, kind and schema version (raise the version
    when the shape of the values changes, and implement ``migrate``)."""

    __slots__ = ("name", "kind", "version")

    def __init__(self, name: str, kind: StateKind, version: int) -> None:
        self.name, self.kind, self.version = name, kind, version

    @staticmethod
    def value(name: str, version: int) -> "StateSpec":
        """A value state called ``name`` at schema ``version``."""
        return StateSpec(name, StateKind.VALUE, version)

    @staticmethod
    def map(name: str, version: int) -> "StateSpec":
        """A map state called ``name`` at schema ``version``."""
        return StateSpec(name, StateKind.MAP, version)

    @staticmethod
    def list(name: str, version: int) -> "StateSpec":
        """A list state called ``name`` at schema ``version``."""
        return StateSpec(name, StateKind.LIST, version)


_ABSENT = object()  # cached: the host has no value
_UNKNOWN = object()  # not cached

# The keys of the call being handled (one per event or timer, None: no key),
# for ValueState's prefetch.
_batch_keys: List[Optional[bytes]] = []


class ValueState(Generic[T]):
    """A declared value state: one value of type ``T`` per key.

    Open it with :meth:`Context.value_state`. The first read in a batch
    fetches the values of all the batch's keys in one host call; writes are
    buffered until the call ends. A value read is the cached object: after
    changing a mutable one (a list or dict), ``set`` it again.
    """

    def __init__(self, name: str, kind: Optional[type]) -> None:
        self._name = name
        self._handle = _host.ValueState.open(name)
        self._decode = _decoder(name, kind)
        self._encode = _encoder(name)
        self._cache: Dict[bytes, Any] = {}
        self._dirty: Dict[bytes, None] = {}
        self._prefetched = False

    def _fetch(self, keys: Iterable[Optional[bytes]]) -> None:
        cache = self._cache
        wanted = [k for k in dict.fromkeys(keys) if k is not None and k not in cache]
        if not wanted:
            return
        values = _split(self._handle.get_many(_blobs(wanted)))
        decode = self._decode
        for k, v in zip(wanted, values):
            cache[k] = _ABSENT if v is None else decode(v)

    def get(self, key: bytes, default: Any = None) -> Any:
        """The value stored for ``key``, or ``default`` if there is none."""
        if not self._prefetched:
            # The first read of a call fetches every key of the call.
            self._prefetched = True
            self._fetch(_batch_keys)
        v = self._cache.get(key, _UNKNOWN)
        if v is _UNKNOWN:
            self._fetch((key,))
            v = self._cache[key]
        return default if v is _ABSENT else v

    def set(self, key: bytes, value: T) -> None:
        """Stores ``value`` for ``key``."""
        self._cache[key] = value
        self._dirty[key] = None

    def remove(self, key: bytes) -> None:
        """Removes the value of ``key``."""
        self._cache[key] = _ABSENT
        self._dirty[key] = None

    def _flush(self) -> None:
        try:
            if self._dirty:
                cache, encode = self._cache, self._encode
                keys = list(self._dirty)
                values = [None if cache[k] is _ABSENT else encode(cache[k]) for k in keys]
                self._handle.put_many(_blobs(keys), _blobs(values))
        finally:
            self._cache.clear()
            self._dirty.clear()
            self._prefetched = False


_PLAIN_KEYS = frozenset((int, str))  # user keys a map state caches as they are


class MapState(Generic[K, V]):
    """A declared map state: per key, a map from user keys ``K`` to values ``V``.

    Open it with :meth:`Context.map_state`. Reads are cached for the length of
    one call; batch them with :meth:`prefetch` (from the operator's
    ``prefetch``) so that a batch crosses to the host once, not once per event.
    """

    def __init__(self, name: str, key_kind: Optional[type], value_kind: Optional[type]) -> None:
        self._name = name
        self._handle = _host.MapState.open(name)
        self._decode_key = _decoder(name, key_kind)
        self._decode = _decoder(name, value_kind)
        self._encode = _encoder(name)
        # (key, user key) -> value or _ABSENT. An int or str user key is kept
        # as is (encoded only when it goes to the host); any other is kept
        # as ("json", its encoding), so that 1, 1.0 and True stay apart.
        self._cache: Dict[Tuple[bytes, Any], Any] = {}
        self._dirty: Dict[Tuple[bytes, Any], None] = {}

    def _slot(self, key: bytes, map_key: Any) -> Tuple[bytes, Any]:
        if map_key.__class__ in _PLAIN_KEYS:
            return (key, map_key)
        return (key, ("json", self._encode(map_key)))

    def _encode_slots(self, slots: List[Tuple[bytes, Any]]) -> List[bytes]:
        """The stored form of the user keys of ``slots``."""
        encode = self._encode
        return [
            m[1] if m.__class__ is tuple
            else str(m).encode() if m.__class__ is int and I64_MIN <= m <= U64_MAX
            else encode(m)
            for _, m in slots
        ]

    def _fetch(self, slots: Iterable[Tuple[bytes, Any]]) -> None:
        cache = self._cache
        wanted = [p for p in dict.fromkeys(slots) if p not in cache]
        if not wanted:
            return
        values = _split(self._handle.get_many(_blobs([k for k, _ in wanted]), _blobs(self._encode_slots(wanted))))
        decode = self._decode
        for p, v in zip(wanted, values):
            cache[p] = _ABSENT if v is None else decode(v)

    def prefetch(self, pairs: Iterable[Tuple[bytes, K]]) -> None:
        """Fetches the values of many ``(key, user key)`` pairs in one host
        call, so that later :meth:`get` calls for them are answered from the cache."""
        slot = self._slot
        self._fetch([(k, m) if m.__class__ in _PLAIN_KEYS else slot(k, m) for k, m in pairs])

    def get(self, key: bytes, map_key: K, default: Any = None) -> Any:
        """The value at ``map_key`` in the map of ``key``, or ``default``."""
        p = (key, map_key) if map_key.__class__ in _PLAIN_KEYS else self._slot(key, map_key)
        v = self._cache.get(p, _UNKNOWN)
        if v is _UNKNOWN:
            self._fetch((p,))
            v = self._cache[p]
        return default if v is _ABSENT else v

    def contains(self, key: bytes, map_key: K) -> bool:
        """Whether the map of ``key`` has ``map_key``."""
        return self.get(key, map_key, _ABSENT) is not _ABSENT

    def put(self, key: bytes, map_key: K, value: V) -> None:
        """Sets ``map_key`` in the map of ``key`` to ``value``."""
        p = (key, map_key) if map_key.__class__ in _PLAIN_KEYS else self._slot(key, map_key)
        self._cache[p] = value
        self._dirty[p] = None

    def remove(self, key: bytes, map_key: K) -> None:
        """Removes ``map_key`` from the map of ``key``."""
        p = (key, map_key) if map_key.__class__ in _PLAIN_KEYS else self._slot(key, map_key)
        self._cache[p] = _ABSENT
        self._dirty[p] = None

    def entries(self, key: bytes) -> List[Tuple[K, V]]:
        """Every entry of the map of ``key``, sorted by the stored (JSON) user key."""
        self._flush()
        map_keys, values = self._handle.entries(key)
        return [
            (self._decode_key(m), self._decode(v))
            for m, v in zip(_split(map_keys), _split(values))
            if m is not None and v is not None
        ]

    def clear(self, key: bytes) -> None:
        """Removes the whole map of ``key``."""
        self._flush()
        self._handle.clear(key)

    def _flush(self) -> None:
        try:
            if self._dirty:
                cache, encode = self._cache, self._encode
                slots = list(self._dirty)
                values = [None if cache[p] is _ABSENT else encode(cache[p]) for p in slots]
                self._handle.put_many(_blobs([k for k, _ in slots]), _blobs(self._encode_slots(slots)), _blobs(values))
        finally:
            self._cache.clear()
            self._dirty.clear()


class ListState(Generic[T]):
    """A declared list state: per key, an ordered list of values ``T``.

    Open it with :meth:`Context.list_state`. Appends are buffered and sent in
    one host call per operator call.
    """

    def __init__(self, name: str, kind: Optional[type]) -> None:
        self._name = name
        self._handle = _host.ListState.open(name)
        self._decode = _decoder(name, kind)
        self._encode = _encoder(name)
        self._keys: List[bytes] = []
        self._values: List[bytes] = []

    def add(self, key: bytes, value: T) -> None:
        """Appends ``value`` to the list of ``key``."""
        encoded = self._encode(value)
        self._keys.append(key)
        self._values.append(encoded)

    def get(self, key: bytes) -> List[T]:
        """The whole list of ``key``, oldest first."""
        self._flush()
        return [self._decode(v) for v in _split(self._handle.get(key)) if v is not None]

    def update(self, key: bytes, values: Iterable[T]) -> None:
        """Replaces the list of ``key`` with ``values`` (empty removes it)."""
        self._flush()
        self._handle.update(key, _blobs([self._encode(v) for v in values]))

    def clear(self, key: bytes) -> None:
        """Removes the list of ``key``."""
        self.update(key, [])

    def _flush(self) -> None:
        if self._keys:
            keys, values = self._keys, self._values
            self._keys, self._values = [], []
            self._handle.add_many(_blobs(keys), _blobs(values))


# --------------------------------------------------------------------------
# Context


class Config:
    """The operator's ``config`` table from the job file: string keys and values."""

    def __init__(self, entries: List[Tuple[str, str]]) -> None:
        self._entries = dict(sorted(entries))

    def get(self, name: str, default: Optional[str] = None) -> Optional[str]:
        """The text of ``name``, or ``default`` if unset."""
        return self._entries.get(name, default)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def items(self) -> List[Tuple[str, str]]:
        """Every entry, sorted by name."""
        return list(self._entries.items())

    def require(self, name: str, kind: type = str) -> Any:
        """The value of ``name`` parsed as ``kind`` (``str``, ``int``: a signed
        64-bit integer, ``bool``: ``true``/``false``, ``float``), after trimming
        white space; :class:`Fatal` naming the entry if it is unset or does not parse."""
        text = self._entries.get(name)
        if text is None:
            raise Fatal(f"config `{name}` is required")
        return self._parse(name, text, kind)

    def parse_or(self, name: str, kind: type, default: Any) -> Any:
        """Like :meth:`require`, but ``default`` if ``name`` is unset."""
        text = self._entries.get(name)
        return default if text is None else self._parse(name, text, kind)

    @staticmethod
    def _parse(name: str, text: str, kind: type) -> Any:
        trimmed = trim(text)
        try:
            if kind is str:
                return trimmed
            if kind is int:
                return parse_i64(trimmed)
            if kind is bool:
                if trimmed in ("true", "false"):
                    return trimmed == "true"
                raise ValueError("provided string was not `true` or `false`")
            if kind is float:
                if not re.fullmatch(r"[+-]?(inf|infinity|nan|([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?)", trimmed, re.I):
                    raise ValueError("invalid float literal")
                return float(trimmed)
            return kind(trimmed)
        except ValueError as e:
            raise Fatal(f"config `{name}` = {_rust_debug_str(text)} is not valid: {e}") from None


class Context:
    """The operator's handle on its subtask, passed to every operator call:
    where it runs, its config, state handles, timers and the watermark."""

    def __init__(self, task: TaskInfo, config: Config, declared: List[StateSpec]) -> None:
        self.task = task
        """Where this subtask runs (:data:`TaskInfo`)."""
        self.config = config
        """The operator's config from the job file (:class:`Config`)."""
        self._declared = {s.name: s for s in declared}
        self._states: List[Any] = []
        # The handles opened, by state name, with the kinds they were opened with.
        self._opened: Dict[str, Tuple[Any, Tuple[Optional[type], ...]]] = {}
        self._timer_ops: List[Tuple[TimeDomain, bool, Optional[bytes], int]] = []
        self._watermark: Optional[int] = None

    def _check(self, name: str, kind: StateKind) -> None:
        spec = self._declared.get(name)
        if spec is None:
            raise Fatal(f"state `{name}` is not declared in `states`")
        if spec.kind != kind:
            raise Fatal(f"state `{name}` is declared as {spec.kind.name.lower()} state, not {kind.name.lower()}")

    def _open(self, name: str, kind: StateKind, kinds: Tuple[Optional[type], ...], make: Callable[[], Any]) -> Any:
        self._check(name, kind)
        opened = self._opened.get(name)
        if opened is not None:
            # Handles on one state share one cache, so that each sees the other's writes.
            state, opened_kinds = opened
            if opened_kinds != kinds:
                raise Fatal(f"{kind.name.lower()} state `{name}` is already open with another value type")
            return state
        try:
            state = make()
        except Err as e:
            raise Fatal(str(e.value)) from None
        self._states.append(state)
        self._opened[name] = (state, kinds)
        return state

    def value_state(self, name: str, kind: Optional[type] = None) -> ValueState[Any]:
        """Opens the declared value state ``name``; its values are checked to
        be of ``kind`` (``int``, ``float``, ``str``, ``bool``, ``bytes``,
        ``list``, ``dict``; ``None``: any JSON value) when read. Opening it
        again gives the same handle."""
        return self._open(name, StateKind.VALUE, (kind,), lambda: ValueState(name, kind))

    def map_state(self, name: str, key_kind: Optional[type] = None, value_kind: Optional[type] = None) -> MapState[Any, Any]:
        """Opens the declared map state ``name`` with user keys of ``key_kind``
        and values of ``value_kind`` (see :meth:`value_state`)."""
        return self._open(name, StateKind.MAP, (key_kind, value_kind), lambda: MapState(name, key_kind, value_kind))

    def list_state(self, name: str, kind: Optional[type] = None) -> ListState[Any]:
        """Opens the declared list state ``name`` with elements of ``kind``."""
        return self._open(name, StateKind.LIST, (kind,), lambda: ListState(name, kind))

    def register_timer(self, key: Optional[bytes], timestamp: int, domain: TimeDomain = TimeDomain.EVENT_TIME) -> None:
        """Registers a timer for ``key`` at ``timestamp`` (ms) in ``domain``; the
        operator's ``on_timer`` is called when it fires. Registering the same
        (key, time) again keeps one timer."""
        if not I64_MIN <= timestamp <= I64_MAX:
            raise Fatal(f"timer time {timestamp} does not fit in 64 bits")
        self._timer_ops.append((domain, True, key, timestamp))

    def delete_timer(self, key: Optional[bytes], timestamp: int, domain: TimeDomain = TimeDomain.EVENT_TIME) -> None:
        """Deletes the timer for ``key`` at ``timestamp`` in ``domain``, if there is one."""
        if not I64_MIN <= timestamp <= I64_MAX:
            raise Fatal(f"timer time {timestamp} does not fit in 64 bits")
        self._timer_ops.append((domain, False, key, timestamp))

    def watermark(self) -> int:
        """The current event-time watermark (ms); :data:`I64_MIN` before the
        first one. Events at or behind it are late."""
        if self._watermark is None:
            self._watermark = _timers.current_watermark()
        return self._watermark

    def processing_time(self) -> int:
        """The wall clock, ms since the Unix epoch, as processing-time timers see it."""
        return _timers.processing_time()

    def _flush(self) -> None:
        """Sends every buffered state write and timer change to the host."""
        error: Optional[BaseException] = None
        for state in self._states:
            try:
                state._flush()
            except Exception as e:  # flush the others, report the first
                error = error or e
        ops, self._timer_ops = self._timer_ops, []
        i = 0
        while i < len(ops):
            domain, register = ops[i][0], ops[i][1]
            j = i
            while j < len(ops) and ops[j][0] == domain and ops[j][1] == register:
                j += 1
            run = ops[i:j]
            keys, times = _blobs([op[2] for op in run]), [op[3] for op in run]
            if register:
                _timers.register_many(domain, keys, times)
            else:
                _timers.delete_many(domain, keys, times)
            i = j
        self._watermark = None
        if error is not None:
            raise error


# --------------------------------------------------------------------------
# Logging


class log:
    """Logging into the host's tracing, tagged with the operator ID and subtask
    (``print`` works too: the guest's stdout and stderr go to the host's log)."""

    @staticmethod
    def trace(message: str) -> None:
        _logging.log(_types.Level.TRACE, message)

    @staticmethod
    def debug(message: str) -> None:
        _logging.log(_types.Level.DEBUG, message)

    @staticmethod
    def info(message: str) -> None:
        _logging.log(_types.Level.INFO, message)

    @staticmethod
    def warn(message: str) -> None:
        _logging.log(_types.Level.WARN, message)

    @staticmethod
    def error(message: str) -> None:
        _logging.log(_types.Level.ERROR, message)


# --------------------------------------------------------------------------
# The export glue


def _events(batch: _types.Batch) -> List[Event]:
    n = len(batch.timestamps)
    if len(batch.key_lens) != n or len(batch.value_lens) != n:
        raise Fatal("malformed batch: the length lists differ")
    data, out, at = batch.data, [], 0
    for key_len, value_len, ts in zip(batch.key_lens, batch.value_lens, batch.timestamps):
        if key_len == -1:
            key = None
        elif key_len < 0:
            raise Fatal("malformed batch: lengths exceed the data")
        else:
            key = data[at:at + key_len]
            at += key_len
        end = at + value_len
        out.append(Event(key, data[at:end], ts))
        at = end
    if at > len(data):
        raise Fatal("malformed batch: lengths exceed the data")
    return out


def _fatal(message: str) -> Err:
    return Err(_types.Error_Fatal(message))


def export(operator: type) -> type:
    """The component's ``Guest`` export for the operator class ``operator``:
    write ``Guest = weir.export(MyOperator)`` at the top level of ``app.py``.

    The class has the attributes ``name`` and ``version`` (str) and ``states``
    (a list of :class:`StateSpec`), and the methods (only ``process`` is required):

    - ``open(self, ctx)``: read the config, open state handles (raise :class:`Fatal` to refuse);
    - ``process(self, ctx, event, out)``: handle one :class:`Event`, emit into :class:`Output`;
    - ``prefetch(self, ctx, events)``: called with the whole batch first, to batch state reads;
    - ``on_timer(self, ctx, timer, out)``: handle a :class:`Timer` that fired;
    - ``prefetch_timers(self, ctx, timers)``: called with all the fired timers first;
    - ``migrate(state, from_version, value: bytes) -> bytes`` (a static or class
      method): convert one stored value of an older schema version, raising
      ``ValueError`` (or any exception) to refuse. The default refuses.
    """
    name, version = operator.name, operator.version
    states: List[StateSpec] = list(getattr(operator, "states", []))
    process_fn = operator.process
    prefetch_fn = getattr(operator, "prefetch", None)
    on_timer_fn = getattr(operator, "on_timer", None)
    prefetch_timers_fn = getattr(operator, "prefetch_timers", None)
    migrate_fn = getattr(operator, "migrate", None)
    instance: List[Any] = []  # [operator, context] once open

    def current() -> Tuple[Any, Context]:
        if not instance:
            raise _fatal("the operator was called before `open`")
        return instance[0], instance[1]

    class Guest(_exports.Guest):
        def describe(self) -> _types.OperatorSpec:
            return _types.OperatorSpec(name, version, [_types.StateSpec(s.name, s.kind, s.version) for s in states])

        def open(self, task: _types.TaskInfo, config: List[Tuple[str, str]]) -> None:
            ctx = Context(task, Config(config), states)
            try:
                op = operator()
                if hasattr(op, "open"):
                    op.open(ctx)
                ctx._flush()
            except Exception as e:
                raise Err(_describe_exception(e)) from None
            instance[:] = [op, ctx]

        def process(self, input: _types.Batch) -> _types.Batch:
            global _batch_keys
            op, ctx = current()
            out = Output()
            i = 0
            rejected: Optional[str] = None  # the bad input's message
            fatal: Optional[str] = None
            try:
                events = _events(input)
                _batch_keys = [e.key for e in events]
                if prefetch_fn is not None:
                    try:
                        prefetch_fn(op, ctx, events)
                    except BadInput as e:  # not one event's fault
                        raise Fatal(f"bad input: {e.message}") from None
                for event in events:
                    process_fn(op, ctx, event, out)
                    i += 1
            except BadInput as e:
                rejected = e.message
            except Exception as e:
                fatal = _describe_exception(e)
            finally:
                _batch_keys = []
            # State written before a bad input is kept: flush in every case.
            try:
                ctx._flush()
                batch = out._batch()
            except Exception as e:
                fatal = fatal or _describe_exception(e)
            if fatal is not None:
                raise _fatal(fatal)
            if rejected is not None:
                raise Err(_types.Error_BadInput(_types.Rejected(i, rejected, batch)))
            return batch

        def on_timer(self, fired: _types.Timers) -> _types.Batch:
            global _batch_keys
            op, ctx = current()
            out = Output()
            error = None
            try:
                keys = _split(fired.keys)
                if len(keys) != len(fired.timestamps):
                    raise Fatal("malformed timers: the length lists differ")
                timers = [Timer(k, ts, fired.domain) for k, ts in zip(keys, fired.timestamps)]
                _batch_keys = keys
                if prefetch_timers_fn is not None:
                    prefetch_timers_fn(op, ctx, timers)
                if on_timer_fn is not None:
                    for timer in timers:
                        on_timer_fn(op, ctx, timer, out)
            except BadInput as e:
                error = _fatal(f"on_timer rejected a timer: {e.message}")
            except Exception as e:
                error = _fatal(_describe_exception(e))
            finally:
                _batch_keys = []
            try:
                ctx._flush()
                batch = out._batch()
            except Exception as e:
                error = error or _fatal(_describe_exception(e))
            if error is not None:
                raise error
            return batch

        def migrate(self, state: str, from_version: int, values: _types.Blobs) -> _types.Blobs:
            out: List[Optional[bytes]] = []
            try:
                parts = _split(values)
            except Fatal as e:
                raise Err(_types.MigrateError(0, e.message)) from None
            for i, value in enumerate(parts):
                if value is None:
                    out.append(None)
                    continue
                if migrate_fn is None:
                    raise Err(_types.MigrateError(
                        i, f"{name} {version} has no migration for state `{state}` from version {from_version}"))
                try:
                    new = migrate_fn(state, from_version, value)
                except Exception as e:
                    raise Err(_types.MigrateError(i, str(e) if isinstance(e, ValueError) else _describe_exception(e))) from None
                out.append(bytes(new))
            return _blobs(out)

    Guest.__name__ = Guest.__qualname__ = "Guest"
    return Guest
