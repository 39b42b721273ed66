// The shared test vectors of sdk/vectors/ (sdk/PROTOCOL.md is the contract
// they check, sdk/vectors/README.md their format), run against weir.js:
// canonical JSON through `json`, flat batches and fired timers through the
// `process` and `onTimer` exports, and whole calls (state caches, flush
// order, timers, the reject protocol) through the exports with a scripted
// operator and the stand-in host of host.mjs; and `migrate`. Run with
// `node --test sdk/js/tests/`.
//
// weir.js keeps no state from call to call, so a key a `get-many` names as
// `known` is fetched again, as the contract requires of such an SDK.

import { register } from "node:module";
import { test } from "node:test";
import { readFileSync } from "node:fs";

register("./hooks.mjs", import.meta.url);
const weir = await import("../weir.js");
const host = await import("./host.mjs");
const { json, operator, BadInput, Fatal, encodeUtf8, decodeUtf8 } = weir;

const VECTORS = new URL("../../vectors/", import.meta.url);

/** The cases of sdk/vectors/NAME, read with the SDK's own JSON reader (integers stay exact). */
function cases(name) {
  return readFileSync(new URL(name, VECTORS), "utf8")
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => json.parse(l));
}

/** Runs `check` on every case of `file`; fails with every case that failed. */
function runAll(file, check) {
  const failed = [];
  for (const c of cases(file)) {
    try {
      const problem = check(c);
      if (problem) failed.push(`${file}: \`${c.name}\`: ${problem}`);
    } catch (e) {
      failed.push(`${file}: \`${c.name}\`: ${e && e.stack ? e.stack : e}`);
    }
  }
  if (failed.length > 0) throw new Error("\n" + failed.join("\n"));
}

/** A comparable text of a value: objects with sorted fields, numbers and BigInts alike. */
function canon(v) {
  if (v === null || v === undefined) return "null";
  if (typeof v === "bigint" || typeof v === "number") return String(v);
  if (typeof v === "string" || typeof v === "boolean") return JSON.stringify(v);
  if (Array.isArray(v)) return "[" + v.map(canon).join(",") + "]";
  return "{" + Object.keys(v).sort().map((k) => JSON.stringify(k) + ":" + canon(v[k])).join(",") + "}";
}

// ---------------------------------------------------------------- json.jsonl

test("json.jsonl: readers accept `input` and `json`, the writer writes `json`, readers refuse `invalid`", () => {
  runAll("json.jsonl", (c) => {
    if (c.invalid !== undefined) {
      let read;
      try {
        read = json.decode(encodeUtf8(c.invalid));
      } catch {
        return null;
      }
      return `${JSON.stringify(c.invalid)} was read as ${canon(read)}`;
    }
    for (const text of [c.input ?? c.json, c.json]) {
      const written = decodeUtf8(json.encode(json.decode(encodeUtf8(text))));
      if (written !== c.json) return `${JSON.stringify(text)} was written as ${JSON.stringify(written)}, expected ${JSON.stringify(c.json)}`;
    }
    return null;
  });
});

// ---------------------------------------------------------------- the scripted operator

const plan = { states: [], prefetch: [], items: [], at: 0, mismatches: [], seen: null };

function check(op, got) {
  if (canon(got) !== canon(op.expect)) plan.mismatches.push(`${canon(op)}: read ${canon(got)}, expected ${canon(op.expect)}`);
}

function run(self, ctx, ops, out) {
  for (const op of ops) {
    const h = op.state === undefined ? null : self.handles.get(`${op.state}/${op.handle ?? 0}`);
    switch (op.op) {
      case "get": check(op, h.get(op.key) ?? null); break;
      case "set": h.set(op.key, op.value); break;
      case "remove": h.remove(op.key); break;
      case "map.get": check(op, h.get(op.key, op.map_key) ?? null); break;
      case "map.put": h.put(op.key, op.map_key, op.value); break;
      case "map.remove": h.remove(op.key, op.map_key); break;
      case "map.prefetch": h.prefetch(op.pairs); break;
      case "map.entries": check(op, h.entries(op.key)); break;
      case "map.clear": h.clear(op.key); break;
      case "list.add": h.add(op.key, op.value); break;
      case "list.get": check(op, h.get(op.key)); break;
      case "list.update": h.update(op.key, op.values); break;
      case "list.clear": h.clear(op.key); break;
      case "emit": out.emit(op.key, op.value, BigInt(op.timestamp)); break;
      case "timer.register": ctx.registerTimer(op.domain, op.key, BigInt(op.timestamp)); break;
      case "timer.delete": ctx.deleteTimer(op.domain, op.key, BigInt(op.timestamp)); break;
      case "watermark": check(op, ctx.watermark()); break;
      case "reject": throw new BadInput(op.message);
      case "fail": throw new Fatal(op.message);
      default: throw new Error(`unknown op ${op.op}`);
    }
  }
}

/** The ops of the next event or timer, or null in record mode (the batch vectors). */
function nextItem(key, value, timestamp) {
  if (plan.seen !== null) {
    plan.seen.push({ key, value, timestamp });
    return null;
  }
  return plan.items[plan.at++] ?? [];
}

function scripted(states) {
  return operator({
    name: "vectors",
    version: "1.0.0",
    states: states.map((s) => ({ name: s.name, kind: s.kind, version: 1 })),
    open(ctx) {
      this.handles = new Map();
      for (const s of states) {
        for (let n = 0; n < Number(s.handles ?? 1); n++) {
          const h = s.kind === "value" ? ctx.valueState(s.name) : s.kind === "map" ? ctx.mapState(s.name) : ctx.listState(s.name);
          this.handles.set(`${s.name}/${n}`, h);
        }
      }
    },
    prefetch(events, ctx) {
      run(this, ctx, plan.prefetch, null);
    },
    process(event, out, ctx) {
      const ops = nextItem(event.key, event.value, event.timestamp);
      if (ops !== null) run(this, ctx, ops, out);
    },
    prefetchTimers(timers, ctx) {
      run(this, ctx, plan.prefetch, null);
    },
    onTimer(timer, out, ctx) {
      const ops = nextItem(timer.key, null, timer.timestamp);
      if (ops !== null) run(this, ctx, ops, out);
    },
  });
}

const TASK = { operatorId: "vectors", subtask: 0, parallelism: 1, maxParallelism: 128, attempt: 0 };

function opened(states) {
  const guest = scripted(states);
  const refused = guest.open(TASK, []);
  if (refused !== undefined) throw new Error(`open refused: ${canon(refused)}`);
  return guest;
}

/** Bytes of a hex text. */
function unhex(s) {
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(s.slice(2 * i, 2 * i + 2), 16);
  return out;
}

const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");

/** The text of an error result, or null for a batch. */
function errorText(r) {
  if (r === null || r === undefined || r.tag !== "err") return null;
  if (r.val.tag === "fatal") return r.val.val;
  return `bad input at ${r.val.val.index}: ${r.val.val.message}`;
}

// ---------------------------------------------------------------- batch.jsonl

test("batch.jsonl: flat batches and fired timers become events and timers, or a fatal error", () => {
  runAll("batch.jsonl", (c) => {
    host.reset({});
    plan.seen = [];
    const guest = opened([]);
    let result;
    let want;
    if (c.batch !== undefined) {
      const b = c.batch;
      result = guest.process({
        data: unhex(b.data),
        keyLens: Int32Array.from(b.key_lens, Number),
        valueLens: Uint32Array.from(b.value_lens, Number),
        timestamps: BigInt64Array.from(b.timestamps, BigInt),
      });
      want = c.events;
    } else {
      const t = c.timers;
      result = guest.onTimer({
        domain: t.domain,
        keys: { data: unhex(t.keys.data), lens: Int32Array.from(t.keys.lens, Number) },
        timestamps: BigInt64Array.from(t.timestamps, BigInt),
      });
      want = c.fired;
    }
    const seen = plan.seen;
    plan.seen = null;
    const error = errorText(result);
    if (c.error !== undefined) return error === c.error ? null : `returned ${error ?? "a batch"}, expected the error ${JSON.stringify(c.error)}`;
    if (error !== null) return `failed with ${JSON.stringify(error)}`;
    const got = seen.map((s) =>
      s.value === null
        ? { key: s.key === null ? null : hex(s.key), timestamp: s.timestamp }
        : { key: s.key === null ? null : hex(s.key), value: hex(s.value), timestamp: s.timestamp },
    );
    return canon(got) === canon(want) ? null : `saw ${canon(got)}, expected ${canon(want)}`;
  });
});

// ---------------------------------------------------------------- the call vectors

const encoder = new TextEncoder();
const slot = (...parts) => JSON.stringify(parts);

/** The host a case starts with: its `host` field. */
function load(c) {
  const h = c.host ?? {};
  const values = new Map();
  const maps = new Map();
  const lists = new Map();
  for (const [state, entries] of Object.entries(h.value ?? {})) for (const [k, v] of entries) values.set(slot(state, k), encoder.encode(v));
  for (const [state, entries] of Object.entries(h.map ?? {})) for (const [k, m, v] of entries) maps.set(slot(state, k, m), encoder.encode(v));
  for (const [state, entries] of Object.entries(h.list ?? {})) for (const [k, l] of entries) lists.set(slot(state, k), l.map((v) => encoder.encode(v)));
  const state = { values, maps, lists };
  if (h.watermark !== undefined) state.watermark = BigInt(h.watermark);
  return state;
}

function flatBatch(events) {
  const parts = [];
  const keyLens = new Int32Array(events.length);
  const valueLens = new Uint32Array(events.length);
  events.forEach((e, i) => {
    const k = e.key === null ? null : encoder.encode(e.key);
    const v = encoder.encode(e.value ?? "");
    keyLens[i] = k === null ? -1 : k.length;
    valueLens[i] = v.length;
    if (k !== null) parts.push(k);
    parts.push(v);
  });
  const data = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    data.set(p, at);
    at += p.length;
  }
  return { data, keyLens, valueLens, timestamps: BigInt64Array.from(events, (e) => BigInt(e.timestamp)) };
}

/** A flat batch as the vectors write events: `[key, value, timestamp]`. */
function eventsOf(b) {
  const out = [];
  let at = 0;
  for (let i = 0; i < b.timestamps.length; i++) {
    let key = null;
    if (b.keyLens[i] >= 0) {
      key = decodeUtf8(b.data.subarray(at, at + b.keyLens[i]));
      at += b.keyLens[i];
    }
    const value = decodeUtf8(b.data.subarray(at, at + b.valueLens[i]));
    at += b.valueLens[i];
    out.push([key, value, b.timestamps[i]]);
  }
  return out;
}

function resultOf(r) {
  if (r !== null && r !== undefined && r.tag === "err") {
    if (r.val.tag === "fatal") return { fatal: r.val.val };
    const { index, message, output } = r.val.val;
    return { rejected: { index, message, output: eventsOf(output) } };
  }
  return { output: eventsOf(r) };
}

const bytesOf = (s) => encoder.encode(s ?? "");
function compareBytes(a, b) {
  return Buffer.compare(Buffer.from(bytesOf(a)), Buffer.from(bytesOf(b)));
}

/** Entries of a put-many sorted by key (and user key) bytes: their order is not part of the contract. */
function normalized(call) {
  if (!call.call.endsWith(".put-many")) return call;
  const entries = [...call.entries].sort((a, b) => compareBytes(a[0], b[0]) || compareBytes(a[1], b[1]));
  return { ...call, entries };
}

/** The calls a step expects of an SDK without a cross-call cache: `known` keys are fetched. */
function expectedCalls(step) {
  return step.calls.map((call) => {
    const { known: _, ...rest } = call;
    return rest;
  });
}

function runCase(c) {
  host.reset(load(c));
  plan.states = c.states ?? [];
  plan.seen = null;
  const guest = opened(plan.states);
  host.takeCalls();
  for (const [n, step] of c.steps.entries()) {
    const items = step.process ?? step.on_timer.timers;
    plan.prefetch = step.prefetch ?? [];
    plan.items = items.map((i) => i.ops ?? []);
    plan.at = 0;
    plan.mismatches = [];
    let result;
    if (step.process !== undefined) {
      result = guest.process(flatBatch(items));
    } else {
      const keys = [];
      const lens = new Int32Array(items.length);
      items.forEach((t, i) => {
        const k = t.key === null ? null : encoder.encode(t.key);
        lens[i] = k === null ? -1 : k.length;
        if (k !== null) keys.push(...k);
      });
      result = guest.onTimer({
        domain: step.on_timer.domain,
        keys: { data: Uint8Array.from(keys), lens },
        timestamps: BigInt64Array.from(items, (t) => BigInt(t.timestamp)),
      });
    }
    const name = `step ${n + 1}`;
    if (plan.mismatches.length > 0) return `${name}: ${plan.mismatches.join("; ")}`;
    const got = canon(host.takeCalls().map(normalized));
    const want = canon(expectedCalls(step));
    if (got !== want) return `${name}: the host saw\n    ${got}\n  expected\n    ${want}`;
    const r = canon(resultOf(result));
    if (r !== canon(step.result)) return `${name}: returned ${r}, expected ${canon(step.result)}`;
  }
  return null;
}

test("state.jsonl: the state caches and the order of the host calls", () => runAll("state.jsonl", runCase));
test("reject.jsonl: what process returns: output, bad input, fatal errors", () => runAll("reject.jsonl", runCase));
test("timers.jsonl: timer changes and onTimer", () => runAll("timers.jsonl", runCase));

// ---------------------------------------------------------------- migrate.jsonl

/** The vectors' migrate: `[STATE,FROM,VALUE]`, refusing the value `"refuse"`. */
function scriptedMigrate(state, fromVersion, value) {
  const text = decodeUtf8(value);
  if (text === '"refuse"') throw new Error(`refused at version ${fromVersion}`);
  return `[${JSON.stringify(state)},${fromVersion},${text}]`;
}

test("migrate.jsonl: stored values converted or refused", () => {
  runAll("migrate.jsonl", (c) => {
    const def = { name: "vectors", version: "1.0.0", states: [], process() {} };
    if (c.migrate !== false) def.migrate = scriptedMigrate;
    const guest = operator(def);
    const m = c.call;
    let values;
    if (m.blobs !== undefined) {
      values = { data: unhex(m.blobs.data), lens: Int32Array.from(m.blobs.lens, Number) };
    } else {
      const parts = m.values.map((v) => (v === null ? null : encoder.encode(v)));
      const data = new Uint8Array(parts.reduce((n, p) => n + (p === null ? 0 : p.length), 0));
      let at = 0;
      for (const p of parts) {
        if (p === null) continue;
        data.set(p, at);
        at += p.length;
      }
      values = { data, lens: Int32Array.from(parts, (p) => (p === null ? -1 : p.length)) };
    }
    const r = guest.migrate(m.state, Number(m.from_version), values);
    let got;
    if (r !== null && r.tag === "err") {
      got = { refused: { index: r.val.index, message: r.val.message } };
    } else {
      const out = [];
      let at = 0;
      for (const len of r.lens) {
        if (len < 0) {
          out.push(null);
          continue;
        }
        out.push(decodeUtf8(r.data.subarray(at, at + len)));
        at += len;
      }
      got = { values: out };
    }
    return canon(got) === canon(c.result) ? null : `returned ${canon(got)}, expected ${canon(c.result)}`;
  });
});
