"""The shared test vectors of sdk/vectors/ (sdk/PROTOCOL.md is the contract
they check, sdk/vectors/README.md their format), run against weir.py:
canonical JSON through ``dumps``/``loads``, flat batches and fired timers
through the ``process`` and ``on_timer`` exports, whole calls (state
caches, flush order, timers, the reject protocol) through the exports with
a scripted operator and the stand-in host of host.py, and ``migrate``.

weir.py imports the bindings componentize-py generates; they are generated
here into a temporary folder (``componentize-py bindings``, found as
``weir build`` finds it: in $WEIR_TOOLCHAINS/bin, default
~/.weir/toolchains/bin, then on PATH), and their import functions are
replaced by the stand-in. Run with
``python3 -m unittest discover -s sdk/python/tests``.

weir.py keeps no state from call to call, so a key a ``get-many`` names as
``known`` is fetched again, as the contract requires of such an SDK.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

HERE = Path(__file__).resolve().parent
SDK = HERE.parent
REPO = SDK.parent.parent
VECTORS = REPO / "sdk" / "vectors"


def _componentize_py() -> str:
    toolchains = Path(os.environ.get("WEIR_TOOLCHAINS", Path.home() / ".weir" / "toolchains"))
    tool = toolchains / "bin" / "componentize-py"
    if tool.exists():
        return str(tool)
    found = shutil.which("componentize-py")
    if found is None:
        raise RuntimeError("componentize-py is not installed: run scripts/install.sh python")
    return found


def _bindings() -> str:
    out = tempfile.mkdtemp(prefix="weir-py-bindings-")
    atexit.register(shutil.rmtree, out, True)
    subprocess.run(
        [_componentize_py(), "-d", str(REPO / "wit"), "-w", "operator", "bindings", out],
        check=True, stdout=subprocess.DEVNULL,
    )
    return out


sys.path[:0] = [_bindings(), str(SDK), str(HERE)]

import host  # noqa: E402
from wit_world.imports import logging as _logging  # noqa: E402
from wit_world.imports import state as _state  # noqa: E402
from wit_world.imports import timers as _timers  # noqa: E402
from wit_world.imports import types  # noqa: E402
from componentize_py_types import Err  # noqa: E402

host.install(types, _state, _timers, _logging)

import weir  # noqa: E402


def cases(name: str) -> List[Dict[str, Any]]:
    with open(VECTORS / name, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def canon(v: Any) -> str:
    """A comparable text of a value (tuples as lists, fields sorted)."""
    return json.dumps(v, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


class Vectors(unittest.TestCase):
    def run_all(self, file: str, check: Callable[[Dict[str, Any]], Optional[str]]) -> None:
        failed = []
        for c in cases(file):
            try:
                problem = check(c)
            except Exception as e:  # a crash is a failure of that case
                problem = f"raised {e!r}"
            if problem:
                failed.append(f"{file}: `{c['name']}`: {problem}")
        if failed:
            self.fail("\n" + "\n".join(failed))

    def test_json(self) -> None:
        """json.jsonl: readers accept `input` and `json`, the writer writes `json`, readers refuse `invalid`."""
        def check(c: Dict[str, Any]) -> Optional[str]:
            if "invalid" in c:
                try:
                    read = weir.loads(c["invalid"].encode())
                except (ValueError, UnicodeDecodeError):
                    return None
                return f"{c['invalid']!r} was read as {read!r}"
            for text in (c.get("input", c["json"]), c["json"]):
                written = weir.dumps(weir.loads(text.encode())).decode()
                if written != c["json"]:
                    return f"{text!r} was written as {written!r}, expected {c['json']!r}"
            return None
        self.run_all("json.jsonl", check)

    def test_batch(self) -> None:
        """batch.jsonl: flat batches and fired timers become events and timers, or a fatal error."""
        def check(c: Dict[str, Any]) -> Optional[str]:
            host.HOST = host.Host()
            PLAN.reset([], record=True)
            guest = opened()
            if "batch" in c:
                b = c["batch"]
                result = call(lambda: guest.process(types.Batch(
                    bytes.fromhex(b["data"]), b["key_lens"], b["value_lens"], b["timestamps"])))
                want = c.get("events")
            else:
                t = c["timers"]
                result = call(lambda: guest.on_timer(types.Timers(
                    domain_of(t["domain"]), types.Blobs(bytes.fromhex(t["keys"]["data"]), t["keys"]["lens"]),
                    t["timestamps"])))
                want = c.get("fired")
            seen = PLAN.seen or []
            error = result.get("fatal")
            if "error" in c:
                return None if error == c["error"] else f"returned {canon(result)}, expected the error {c['error']!r}"
            if error is not None or "rejected" in result:
                return f"failed: {canon(result)}"
            got = [
                {"key": None if k is None else k.hex(), "timestamp": t} if v is None
                else {"key": None if k is None else k.hex(), "value": v.hex(), "timestamp": t}
                for k, v, t in seen
            ]
            return None if canon(got) == canon(want) else f"saw {canon(got)}, expected {canon(want)}"
        self.run_all("batch.jsonl", check)

    def test_state(self) -> None:
        """state.jsonl: the state caches and the order of the host calls."""
        self.run_all("state.jsonl", run_case)

    def test_reject(self) -> None:
        """reject.jsonl: what process returns: output, bad input, fatal errors."""
        self.run_all("reject.jsonl", run_case)

    def test_timers(self) -> None:
        """timers.jsonl: timer changes and on_timer."""
        self.run_all("timers.jsonl", run_case)

    def test_migrate(self) -> None:
        """migrate.jsonl: stored values converted or refused."""
        def check(c: Dict[str, Any]) -> Optional[str]:
            guest = weir.export(Migrating if c.get("migrate", True) else Script)()
            m = c["call"]
            if "blobs" in m:
                values = types.Blobs(bytes.fromhex(m["blobs"]["data"]), m["blobs"]["lens"])
            else:
                parts = [None if v is None else v.encode() for v in m["values"]]
                values = types.Blobs(b"".join(p for p in parts if p is not None), [-1 if p is None else len(p) for p in parts])
            try:
                out = guest.migrate(m["state"], m["from_version"], values)
                at, got = 0, []
                for n in out.lens:
                    got.append(None if n < 0 else bytes(out.data[at:at + n]).decode())
                    at += max(n, 0)
                result: Dict[str, Any] = {"values": got}
            except Err as e:
                result = {"refused": {"index": e.value.index, "message": e.value.message}}
            return None if canon(result) == canon(c["result"]) else f"returned {canon(result)}, expected {canon(c['result'])}"
        self.run_all("migrate.jsonl", check)


# ---------------------------------------------------------------- the scripted operator


class Plan:
    def __init__(self) -> None:
        self.reset([])

    def reset(self, states: List[Dict[str, Any]], record: bool = False) -> None:
        self.states = states
        self.prefetch: List[Dict[str, Any]] = []
        self.items: List[List[Dict[str, Any]]] = []
        self.at = 0
        self.mismatches: List[str] = []
        self.seen: Optional[list] = [] if record else None


PLAN = Plan()


def domain_of(name: str) -> Any:
    return types.TimeDomain.EVENT_TIME if name == "event-time" else types.TimeDomain.PROCESSING_TIME


def key_of(op: Dict[str, Any]) -> Optional[bytes]:
    return None if op.get("key") is None else op["key"].encode()


def check_read(op: Dict[str, Any], got: Any) -> None:
    if canon(got) != canon(op["expect"]):
        PLAN.mismatches.append(f"{canon(op)}: read {canon(got)}, expected {canon(op['expect'])}")


class Script:
    name = "vectors"
    version = "1.0.0"
    states: List[Any] = []

    def open(self, ctx: Any) -> None:
        self.handles = {}
        for s in PLAN.states:
            for n in range(s.get("handles", 1)):
                make = {"value": ctx.value_state, "map": ctx.map_state, "list": ctx.list_state}[s["kind"]]
                self.handles[(s["name"], n)] = make(s["name"])

    def run(self, ctx: Any, ops: List[Dict[str, Any]], out: Any) -> None:
        for op in ops:
            h = self.handles.get((op.get("state"), op.get("handle", 0)))
            kind, key = op["op"], key_of(op)
            if kind == "get":
                check_read(op, h.get(key))
            elif kind == "set":
                h.set(key, op["value"])
            elif kind == "remove":
                h.remove(key)
            elif kind == "map.get":
                check_read(op, h.get(key, op["map_key"]))
            elif kind == "map.put":
                h.put(key, op["map_key"], op["value"])
            elif kind == "map.remove":
                h.remove(key, op["map_key"])
            elif kind == "map.prefetch":
                h.prefetch([(k.encode(), m) for k, m in op["pairs"]])
            elif kind == "map.entries":
                check_read(op, [list(e) for e in h.entries(key)])
            elif kind == "map.clear":
                h.clear(key)
            elif kind == "list.add":
                h.add(key, op["value"])
            elif kind == "list.get":
                check_read(op, h.get(key))
            elif kind == "list.update":
                h.update(key, op["values"])
            elif kind == "list.clear":
                h.clear(key)
            elif kind == "emit":
                out.emit(key, op["value"], op["timestamp"])
            elif kind == "timer.register":
                ctx.register_timer(key, op["timestamp"], domain_of(op["domain"]))
            elif kind == "timer.delete":
                ctx.delete_timer(key, op["timestamp"], domain_of(op["domain"]))
            elif kind == "watermark":
                check_read(op, ctx.watermark())
            elif kind == "reject":
                raise weir.BadInput(op["message"])
            elif kind == "fail":
                raise weir.Fatal(op["message"])
            else:
                raise ValueError(f"unknown op {kind}")

    def next_item(self, key: Optional[bytes], value: Optional[bytes], timestamp: int) -> Optional[list]:
        if PLAN.seen is not None:
            PLAN.seen.append((key, value, timestamp))
            return None
        ops = PLAN.items[PLAN.at] if PLAN.at < len(PLAN.items) else []
        PLAN.at += 1
        return ops

    def prefetch(self, ctx: Any, events: List[Any]) -> None:
        self.run(ctx, PLAN.prefetch, None)

    def process(self, ctx: Any, event: Any, out: Any) -> None:
        ops = self.next_item(event.key, event.value, event.timestamp)
        if ops is not None:
            self.run(ctx, ops, out)

    def prefetch_timers(self, ctx: Any, timers: List[Any]) -> None:
        self.run(ctx, PLAN.prefetch, None)

    def on_timer(self, ctx: Any, timer: Any, out: Any) -> None:
        ops = self.next_item(timer.key, None, timer.timestamp)
        if ops is not None:
            self.run(ctx, ops, out)


class Migrating(Script):
    """The scripted operator with the vectors' migrate: ``[STATE,FROM,VALUE]``, refusing ``"refuse"``."""

    @staticmethod
    def migrate(state: str, from_version: int, value: bytes) -> bytes:
        if value == b'"refuse"':
            raise ValueError(f"refused at version {from_version}")
        return b"[" + json.dumps(state).encode() + b"," + str(from_version).encode() + b"," + value + b"]"


def opened() -> Any:
    Script.states = [
        {"value": weir.StateSpec.value, "map": weir.StateSpec.map, "list": weir.StateSpec.list}[s["kind"]](s["name"], 1)
        for s in PLAN.states
    ]
    guest = weir.export(Script)()
    guest.open(types.TaskInfo("vectors", 0, 1, 128, 0), [])
    return guest


def events_of(b: Any) -> List[list]:
    out, at = [], 0
    for kl, vl, t in zip(b.key_lens, b.value_lens, b.timestamps):
        key = None
        if kl >= 0:
            key = bytes(b.data[at:at + kl]).decode()
            at += kl
        out.append([key, bytes(b.data[at:at + vl]).decode(), t])
        at += vl
    return out


def call(f: Callable[[], Any]) -> Dict[str, Any]:
    """What an export returned, as the vectors write results."""
    try:
        return {"output": events_of(f())}
    except Err as e:
        if isinstance(e.value, types.Error_Fatal):
            return {"fatal": e.value.value}
        r = e.value.value
        return {"rejected": {"index": r.index, "message": r.message, "output": events_of(r.output)}}


def load(c: Dict[str, Any]) -> host.Host:
    h = host.Host()
    spec = c.get("host", {})
    for state, entries in spec.get("value", {}).items():
        for k, v in entries:
            h.values[(state, k.encode())] = v.encode()
    for state, entries in spec.get("map", {}).items():
        for k, m, v in entries:
            h.maps[(state, k.encode(), m.encode())] = v.encode()
    for state, entries in spec.get("list", {}).items():
        for k, values in entries:
            h.lists[(state, k.encode())] = [v.encode() for v in values]
    if "watermark" in spec:
        h.watermark = spec["watermark"]
    return h


def normalized(c: Dict[str, Any]) -> Dict[str, Any]:
    """A put-many's entries sorted by key (and user key) bytes: their order is not part of the contract."""
    if c["call"].endswith(".put-many"):
        c = dict(c, entries=sorted(c["entries"], key=lambda e: (e[0].encode(), (e[1] or "").encode())))
    return c


def expected_calls(step: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The calls a step expects of an SDK without a cross-call cache: `known` keys are fetched."""
    return [{k: v for k, v in c.items() if k != "known"} for c in step["calls"]]


def flat_batch(events: List[Dict[str, Any]]) -> Any:
    data, kl, vl, ts = b"", [], [], []
    for e in events:
        if e["key"] is None:
            kl.append(-1)
        else:
            data += e["key"].encode()
            kl.append(len(e["key"].encode()))
        v = e.get("value", "").encode()
        data += v
        vl.append(len(v))
        ts.append(e["timestamp"])
    return types.Batch(data, kl, vl, ts)


def run_case(c: Dict[str, Any]) -> Optional[str]:
    host.HOST = load(c)
    PLAN.reset(c.get("states", []))
    guest = opened()
    host.HOST.take_calls()
    for n, step in enumerate(c["steps"], 1):
        items = step["process"] if "process" in step else step["on_timer"]["timers"]
        PLAN.prefetch = step.get("prefetch", [])
        PLAN.items = [i.get("ops", []) for i in items]
        PLAN.at = 0
        PLAN.mismatches = []
        if "process" in step:
            result = call(lambda: guest.process(flat_batch(items)))
        else:
            keys = [None if t["key"] is None else t["key"].encode() for t in items]
            fired = types.Timers(
                domain_of(step["on_timer"]["domain"]),
                types.Blobs(b"".join(k for k in keys if k is not None), [-1 if k is None else len(k) for k in keys]),
                [t["timestamp"] for t in items])
            result = call(lambda: guest.on_timer(fired))
        if PLAN.mismatches:
            return f"step {n}: " + "; ".join(PLAN.mismatches)
        got = canon([normalized(c) for c in host.HOST.take_calls()])
        want = canon(expected_calls(step))
        if got != want:
            return f"step {n}: the host saw\n    {got}\n  expected\n    {want}"
        if canon(result) != canon(step["result"]):
            return f"step {n}: returned {canon(result)}, expected {canon(step['result'])}"
    return None


if __name__ == "__main__":
    unittest.main()
