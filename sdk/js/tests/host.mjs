// A stand-in for the host side of the imports of weir.js (`state`, `timers`,
// `logging`), in the shapes componentize-js 0.23 hands them over: it keeps
// state as the host does and records every call, in order, in the shape of
// the vectors' `calls` (sdk/vectors/README.md).

const decoder = new TextDecoder();
const text = (bytes) => decoder.decode(bytes);

let host = null;

/** Starts over with the state of a case's `host` (see `load` in vectors.test.mjs). */
export function reset(state) {
  host = { values: new Map(), maps: new Map(), lists: new Map(), watermark: -(2n ** 63n), calls: [], ...state };
}

/** The calls recorded since the last `takeCalls`. */
export function takeCalls() {
  const calls = host.calls;
  host.calls = [];
  return calls;
}

function split({ data, lens }) {
  const out = [];
  let at = 0;
  for (const len of lens) {
    if (len < 0) {
      out.push(null);
      continue;
    }
    out.push(data.subarray(at, at + len));
    at += len;
  }
  return out;
}

function join(parts) {
  const lens = new Int32Array(parts.length);
  let size = 0;
  parts.forEach((p, i) => {
    lens[i] = p === null ? -1 : p.length;
    if (p !== null) size += p.length;
  });
  const data = new Uint8Array(size);
  let at = 0;
  for (const p of parts) {
    if (p === null) continue;
    data.set(p, at);
    at += p.length;
  }
  return { data, lens };
}

const slot = (...parts) => JSON.stringify(parts);
const record = (call) => host.calls.push(call);
const encoder = new TextEncoder();

export class ValueState {
  static open(name) {
    const s = new ValueState();
    s.name = name;
    return s;
  }
  getMany(keys) {
    const ks = split(keys).map(text);
    record({ call: "value.get-many", state: this.name, keys: ks });
    return join(ks.map((k) => host.values.get(slot(this.name, k)) ?? null));
  }
  putMany(keys, values) {
    const ks = split(keys).map(text);
    const vs = split(values).map((v) => (v === null ? null : text(v)));
    record({ call: "value.put-many", state: this.name, entries: ks.map((k, i) => [k, vs[i]]) });
    ks.forEach((k, i) => {
      if (vs[i] === null) host.values.delete(slot(this.name, k));
      else host.values.set(slot(this.name, k), encoder.encode(vs[i]));
    });
  }
}

export class MapState {
  static open(name) {
    const s = new MapState();
    s.name = name;
    return s;
  }
  getMany(keys, mapKeys) {
    const ks = split(keys).map(text);
    const ms = split(mapKeys).map(text);
    record({ call: "map.get-many", state: this.name, pairs: ks.map((k, i) => [k, ms[i]]) });
    return join(ks.map((k, i) => host.maps.get(slot(this.name, k, ms[i])) ?? null));
  }
  putMany(keys, mapKeys, values) {
    const ks = split(keys).map(text);
    const ms = split(mapKeys).map(text);
    const vs = split(values).map((v) => (v === null ? null : text(v)));
    record({ call: "map.put-many", state: this.name, entries: ks.map((k, i) => [k, ms[i], vs[i]]) });
    ks.forEach((k, i) => {
      if (vs[i] === null) host.maps.delete(slot(this.name, k, ms[i]));
      else host.maps.set(slot(this.name, k, ms[i]), encoder.encode(vs[i]));
    });
  }
  entries(key) {
    const k = text(key);
    record({ call: "map.entries", state: this.name, key: k });
    const found = [];
    for (const [s, v] of host.maps) {
      const [name, key2, mk] = JSON.parse(s);
      if (name === this.name && key2 === k) found.push([encoder.encode(mk), v]);
    }
    found.sort((a, b) => Buffer.compare(a[0], b[0]));
    return [join(found.map((e) => e[0])), join(found.map((e) => e[1]))];
  }
  clear(key) {
    const k = text(key);
    record({ call: "map.clear", state: this.name, key: k });
    for (const s of [...host.maps.keys()]) {
      const [name, key2] = JSON.parse(s);
      if (name === this.name && key2 === k) host.maps.delete(s);
    }
  }
}

export class ListState {
  static open(name) {
    const s = new ListState();
    s.name = name;
    return s;
  }
  get(key) {
    const k = text(key);
    record({ call: "list.get", state: this.name, key: k });
    return join(host.lists.get(slot(this.name, k)) ?? []);
  }
  addMany(keys, values) {
    const ks = split(keys).map(text);
    const vs = split(values);
    record({ call: "list.add-many", state: this.name, entries: ks.map((k, i) => [k, text(vs[i])]) });
    ks.forEach((k, i) => {
      const s = slot(this.name, k);
      if (!host.lists.has(s)) host.lists.set(s, []);
      host.lists.get(s).push(vs[i].slice());
    });
  }
  update(key, values) {
    const k = text(key);
    const vs = split(values).map((v) => v.slice());
    record({ call: "list.update", state: this.name, key: k, values: vs.map(text) });
    if (vs.length === 0) host.lists.delete(slot(this.name, k));
    else host.lists.set(slot(this.name, k), vs);
  }
}

function changes(kind, domain, keys, timestamps) {
  const ks = split(keys).map((k) => (k === null ? null : text(k)));
  record({ call: `timers.${kind}`, domain, entries: ks.map((k, i) => [k, timestamps[i]]) });
}

export function registerMany(domain, keys, timestamps) {
  changes("register-many", domain, keys, timestamps);
}

export function deleteMany(domain, keys, timestamps) {
  changes("delete-many", domain, keys, timestamps);
}

export function currentWatermark() {
  record({ call: "timers.current-watermark" });
  // As componentize-js 0.23 hands it over: unsigned (weir.js re-signs it).
  return BigInt.asUintN(64, host.watermark);
}

export function processingTime() {
  record({ call: "timers.processing-time" });
  return 0n;
}

export function log() {}
