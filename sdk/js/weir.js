/**
 * Write weir stream operators in JavaScript.
 *
 * An operator is a plain object handed to {@link operator}; the component
 * exports the result as `guest`:
 *
 * ```js
 * import { operator } from "weir";
 *
 * // Counts events per key and emits the running count.
 * export const guest = operator({
 *   name: "keyed-count",
 *   version: "1.0.0",
 *   states: [{ name: "count", kind: "value", version: 1 }],
 *   open(ctx) {
 *     this.count = ctx.valueState("count");
 *   },
 *   process(event, out) {
 *     const key = event.requireKey();
 *     const n = BigInt(this.count.get(key) ?? 0) + 1n;
 *     this.count.set(key, n);
 *     out.emit(key, String(n), event.timestamp);
 *   },
 * });
 * ```
 *
 * One object is made per subtask (`Object.create(definition)`), so `open` can
 * keep handles and settings on `this`; only declared state survives a restart.
 *
 * Types: keys and values are `Uint8Array` (a key may be `null`: no key;
 * `emit` and state calls also take strings, encoded as UTF-8); timestamps,
 * the watermark and the processing time are `BigInt` milliseconds (`s64`).
 *
 * Errors: throw {@link BadInput} to send the event to the dead-letter output
 * (the job goes on with the next event), {@link Fatal} (or anything else) to
 * fail the job, which restarts from its last checkpoint.
 *
 * State lives in the host. Handles cache it for one call: the first
 * `ValueState.get` of a batch fetches every key of the batch in one host
 * call, writes and timer changes are buffered and sent in one call per state
 * when the call ends (also when an event is rejected: writes made before it
 * are kept). `MapState` reads can be batched with `prefetch` from the
 * operator's `prefetch(events, ctx)` hook.
 *
 * Values (and the user keys of a map state) are stored as compact canonical
 * JSON (sdk/ENCODING.md), so that an operator written in another language can
 * read them: integers beyond ±(2^53 - 1) are read as `BigInt`, and a `BigInt`
 * is written as plain digits; a `Uint8Array` is written as a base64 string.
 *
 * @module weir
 */

import {
  ValueState as HostValueState,
  MapState as HostMapState,
  ListState as HostListState,
} from "weir:operator/state@0.1.0";
import {
  registerMany,
  deleteMany,
  currentWatermark,
  processingTime as hostProcessingTime,
} from "weir:operator/timers@0.1.0";
import { log as hostLog } from "weir:operator/logging@0.1.0";

// ---------------------------------------------------------------------------
// Errors

/** An event is bad: it goes to the dead-letter output with this message and the job goes on. */
export class BadInput extends Error {
  /** @param {string} message why the event was rejected */
  constructor(message) {
    super(message);
    this.name = "BadInput";
  }
}

/** The job cannot go on: it fails and restarts from its last checkpoint. */
export class Fatal extends Error {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = "Fatal";
  }
}

/** The message of a thrown value that is not a {@link BadInput}. */
function fatalMessage(e) {
  if (e instanceof Fatal) return e.message;
  if (e instanceof BadInput) return `bad input: ${e.message}`;
  // Errors from host calls carry the host's message as `payload`.
  if (e !== null && typeof e === "object" && typeof e.payload === "string") return e.payload;
  return String(e) + thrownAt(e);
}

/**
 * Where an error the operator did not mean to throw came from: the
 * innermost three functions of its own code, ` (in explode (app.js:12) <-
 * process (app.js:20))`, from the `name@file:line:column` lines of its stack.
 */
function thrownAt(e) {
  if (e === null || typeof e !== "object" || typeof e.stack !== "string") return "";
  const frames = [];
  for (const line of e.stack.split("\n")) {
    const m = /^(.*)@(.*):(\d+):\d+$/.exec(line.trim());
    if (m === null) continue;
    const file = m[2].split("/").pop();
    // The SDK and componentize-js's glue say nothing about the operator.
    if (file === "weir.js" || file === "initializer.js") continue;
    frames.push(`${m[1] || "<anonymous>"} (${file}:${m[3]})`);
    if (frames.length === 3) break;
  }
  return frames.length === 0 ? "" : ` (in ${frames.join(" <- ")})`;
}

/** The message of a refusal (`open`, `migrate`): an error's message, or the thrown value. */
function errorMessage(e) {
  if (e !== null && typeof e === "object") {
    if (typeof e.payload === "string") return e.payload;
    if (typeof e.message === "string") return e.message;
  }
  return String(e);
}

// ---------------------------------------------------------------------------
// Text, bytes and integers

const MIN_I64 = -(2n ** 63n);
const MAX_I64 = 2n ** 63n - 1n;
const MAX_U64 = 2n ** 64n - 1n;

const UTF8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const ENCODER = new TextEncoder();

/**
 * Decodes UTF-8 strictly, as Rust's `str::from_utf8` does (a leading BOM is kept).
 * @param {Uint8Array} bytes
 * @returns {string}
 * @throws {TypeError} if the bytes are not valid UTF-8
 */
export function decodeUtf8(bytes) {
  return UTF8.decode(bytes);
}

/** @param {string} text @returns {Uint8Array} the UTF-8 encoding of `text` */
export function encodeUtf8(text) {
  return ENCODER.encode(text);
}

/**
 * Whether `x` is a byte array. (Not `instanceof Uint8Array`: the arrays the
 * componentize-js bindings hand over fail it, apparently from another realm.)
 */
function isBytes(x) {
  return ArrayBuffer.isView(x) && x.BYTES_PER_ELEMENT === 1;
}

/** Bytes from a `Uint8Array` (as is) or a string (UTF-8). */
function toBytes(x, what) {
  if (isBytes(x)) return x;
  if (typeof x === "string") return ENCODER.encode(x);
  throw new TypeError(`${what} must be a Uint8Array or a string`);
}

/** Writes the UTF-8 of `text` into `buf` at `at` (room for 3 bytes per char); returns the length. */
function writeText(buf, at, text) {
  const n = text.length;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0x80) return ENCODER.encodeInto(text, buf.subarray(at)).written;
    buf[at + i] = c;
  }
  return n;
}

/** Key bytes as a JS string, one char per byte: exact, for use as a Map key. */
function byteString(bytes) {
  const n = bytes.length;
  if (n <= 4096) return String.fromCharCode.apply(null, bytes);
  let s = "";
  for (let i = 0; i < n; i += 4096) {
    s += String.fromCharCode.apply(null, bytes.subarray(i, Math.min(n, i + 4096)));
  }
  return s;
}

const TRIM = /^[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+|[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+$/g;

/**
 * Removes leading and trailing Unicode `White_Space`, exactly as Rust's
 * `str::trim` (unlike `String.prototype.trim`, it removes U+0085 and keeps U+FEFF).
 * @param {string} text
 * @returns {string}
 */
export function trim(text) {
  return text.replace(TRIM, "");
}

/** Why {@link parseI64} refused a text; the messages are Rust's `ParseIntError`'s. */
export class ParseIntError extends Error {
  constructor(message) {
    super(message);
    this.name = "ParseIntError";
  }
}

/**
 * Parses a signed 64-bit integer exactly as Rust's `i64::from_str`: an
 * optional `+` or `-`, then one or more ASCII digits, within the `i64` range
 * (no whitespace: see {@link trim}).
 * @param {string} text
 * @returns {bigint}
 * @throws {ParseIntError}
 */
export function parseI64(text) {
  const n = text.length;
  if (n === 0) throw new ParseIntError("cannot parse integer from empty string");
  let i = 0;
  let negative = false;
  const first = text.charCodeAt(0);
  if (first === 43 || first === 45) {
    if (n === 1) throw new ParseIntError("invalid digit found in string");
    negative = first === 45;
    i = 1;
  }
  if (n - i <= 15) {
    // Fits a double exactly.
    let v = 0;
    for (; i < n; i++) {
      const d = text.charCodeAt(i) - 48;
      if (d < 0 || d > 9) throw new ParseIntError("invalid digit found in string");
      v = v * 10 + d;
    }
    return BigInt(negative ? -v : v);
  }
  let v = 0n;
  for (; i < n; i++) {
    const d = text.charCodeAt(i) - 48;
    if (d < 0 || d > 9) throw new ParseIntError("invalid digit found in string");
    v = v * 10n + BigInt(d);
    if (!negative && v > MAX_I64) throw new ParseIntError("number too large to fit in target type");
    if (negative && v > -MIN_I64) throw new ParseIntError("number too small to fit in target type");
  }
  return negative ? -v : v;
}

/** Rust's `{:?}` of a string (close enough for error messages). */
function debugString(text) {
  let s = '"';
  for (const ch of text) {
    const c = ch.codePointAt(0);
    if (ch === '"') s += '\\"';
    else if (ch === "\\") s += "\\\\";
    else if (ch === "\n") s += "\\n";
    else if (ch === "\r") s += "\\r";
    else if (ch === "\t") s += "\\t";
    else if (c === 0) s += "\\0";
    else if (c < 0x20 || (c >= 0x7f && c < 0xa0)) s += `\\u{${c.toString(16)}}`;
    else s += ch;
  }
  return s + '"';
}

// ---------------------------------------------------------------------------
// JSON, as sdk/ENCODING.md describes it

const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/** Standard base64 (with padding) of `bytes`. */
export function toBase64(bytes) {
  let s = "";
  let i = 0;
  for (; i + 2 < bytes.length; i += 3) {
    const n = (bytes[i] << 16) | (bytes[i + 1] << 8) | bytes[i + 2];
    s += B64[n >> 18] + B64[(n >> 12) & 63] + B64[(n >> 6) & 63] + B64[n & 63];
  }
  if (i + 1 === bytes.length) {
    const n = bytes[i] << 16;
    s += B64[n >> 18] + B64[(n >> 12) & 63] + "==";
  } else if (i + 2 === bytes.length) {
    const n = (bytes[i] << 16) | (bytes[i + 1] << 8);
    s += B64[n >> 18] + B64[(n >> 12) & 63] + B64[(n >> 6) & 63] + "=";
  }
  return s;
}

/** The bytes of standard base64 `text` (how bytes are stored as JSON). */
export function fromBase64(text) {
  if (text.length % 4 !== 0) throw new TypeError("invalid base64");
  const pad = text.endsWith("==") ? 2 : text.endsWith("=") ? 1 : 0;
  const out = new Uint8Array((text.length / 4) * 3 - pad);
  let o = 0;
  for (let i = 0; i < text.length; i += 4) {
    let n = 0;
    for (let j = 0; j < 4; j++) {
      const ch = text[i + j];
      const v = ch === "=" && i + 4 === text.length && j >= 4 - pad ? 0 : B64.indexOf(ch);
      if (v < 0) throw new TypeError("invalid base64");
      n = (n << 6) | v;
    }
    if (o < out.length) out[o++] = (n >> 16) & 255;
    if (o < out.length) out[o++] = (n >> 8) & 255;
    if (o < out.length) out[o++] = n & 255;
  }
  return out;
}

/**
 * A finite non-integer (or unsafe) double as the shortest text that reads
 * back to it, laid out as the Rust SDK's serde_json 1.0.154 writes it:
 * `0.5`, `1e-7`, `1e+300`, `9007199254740994.0`.
 */
function formatFloat(x) {
  const [mantissa, exp] = x.toExponential().split("e");
  const negative = mantissa[0] === "-";
  const digits = mantissa.replace("-", "").replace(".", "");
  const length = digits.length;
  const kk = Number(exp) + 1; // the decimal point sits after `kk` digits
  const k = kk - length;
  const e = kk - 1 > 0 ? "e+" + (kk - 1) : "e" + (kk - 1);
  let s;
  if (k >= 0 && kk <= 16) s = digits + "0".repeat(k) + ".0";
  else if (kk > 0 && kk <= 16) s = digits.slice(0, kk) + "." + digits.slice(kk);
  else if (kk > -5 && kk <= 0) s = "0." + "0".repeat(-kk) + digits;
  else if (length === 1) s = digits + e;
  else s = digits[0] + "." + digits.slice(1) + e;
  return negative ? "-" + s : s;
}

function stringifyValue(v) {
  switch (typeof v) {
    case "string":
      return JSON.stringify(v);
    case "number":
      if (!Number.isFinite(v)) throw new TypeError(`cannot store ${v} as JSON`);
      if (Number.isSafeInteger(v)) return String(v); // -0 too: "0"
      return formatFloat(v);
    case "bigint":
      if (v < MIN_I64 || v > MAX_U64) throw new RangeError(`integer ${v} does not fit 64 bits`);
      return v.toString();
    case "boolean":
      return v ? "true" : "false";
    case "object": {
      if (v === null) return "null";
      if (typeof v.toJSON === "function") return stringifyValue(v.toJSON());
      if (isBytes(v)) return '"' + toBase64(v) + '"';
      if (Array.isArray(v)) {
        let s = "[";
        for (let i = 0; i < v.length; i++) {
          if (i > 0) s += ",";
          const item = v[i];
          s += item === undefined || typeof item === "function" || typeof item === "symbol" ? "null" : stringifyValue(item);
        }
        return s + "]";
      }
      let s = "{";
      let first = true;
      for (const name of Object.keys(v)) {
        const item = v[name];
        if (item === undefined || typeof item === "function" || typeof item === "symbol") continue;
        if (!first) s += ",";
        first = false;
        s += JSON.stringify(name) + ":" + stringifyValue(item);
      }
      return s + "}";
    }
    default:
      throw new TypeError(`cannot store ${typeof v} as JSON`);
  }
}

class JsonParser {
  constructor(text) {
    this.text = text;
    this.at = 0;
  }
  fail(what) {
    throw new SyntaxError(`invalid JSON: ${what} at character ${this.at}`);
  }
  space() {
    const t = this.text;
    for (;;) {
      const c = t.charCodeAt(this.at);
      if (c === 32 || c === 9 || c === 10 || c === 13) this.at++;
      else return;
    }
  }
  value() {
    this.space();
    const t = this.text;
    const c = t[this.at];
    if (c === "{") {
      this.at++;
      const obj = {};
      this.space();
      if (t[this.at] === "}") {
        this.at++;
        return obj;
      }
      for (;;) {
        this.space();
        if (t[this.at] !== '"') this.fail("expected a string");
        const name = this.string();
        this.space();
        if (t[this.at] !== ":") this.fail("expected `:`");
        this.at++;
        const item = this.value();
        if (name === "__proto__") {
          Object.defineProperty(obj, name, { value: item, enumerable: true, writable: true, configurable: true });
        } else {
          obj[name] = item;
        }
        this.space();
        if (t[this.at] === ",") this.at++;
        else if (t[this.at] === "}") {
          this.at++;
          return obj;
        } else this.fail("expected `,` or `}`");
      }
    }
    if (c === "[") {
      this.at++;
      const arr = [];
      this.space();
      if (t[this.at] === "]") {
        this.at++;
        return arr;
      }
      for (;;) {
        arr.push(this.value());
        this.space();
        if (t[this.at] === ",") this.at++;
        else if (t[this.at] === "]") {
          this.at++;
          return arr;
        } else this.fail("expected `,` or `]`");
      }
    }
    if (c === '"') return this.string();
    if (t.startsWith("true", this.at)) {
      this.at += 4;
      return true;
    }
    if (t.startsWith("false", this.at)) {
      this.at += 5;
      return false;
    }
    if (t.startsWith("null", this.at)) {
      this.at += 4;
      return null;
    }
    return this.number();
  }
  number() {
    const re = /-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/y;
    re.lastIndex = this.at;
    const m = re.exec(this.text);
    if (!m) this.fail("unexpected character");
    this.at = re.lastIndex;
    const s = m[0];
    if (m[1] === undefined && m[2] === undefined) {
      const n = Number(s);
      return Number.isSafeInteger(n) ? n : BigInt(s);
    }
    return Number(s);
  }
  string() {
    const t = this.text;
    let at = this.at + 1;
    let s = "";
    let start = at;
    for (;;) {
      if (at >= t.length) this.fail("unterminated string");
      const c = t.charCodeAt(at);
      if (c === 34) {
        s += t.slice(start, at);
        this.at = at + 1;
        return s;
      }
      if (c < 0x20) {
        this.at = at;
        this.fail("control character in a string");
      }
      if (c !== 92) {
        at++;
        continue;
      }
      s += t.slice(start, at);
      const e = t[at + 1];
      at += 2;
      switch (e) {
        case '"': s += '"'; break;
        case "\\": s += "\\"; break;
        case "/": s += "/"; break;
        case "b": s += "\b"; break;
        case "f": s += "\f"; break;
        case "n": s += "\n"; break;
        case "r": s += "\r"; break;
        case "t": s += "\t"; break;
        case "u": {
          const hex = t.slice(at, at + 4);
          if (!/^[0-9a-fA-F]{4}$/.test(hex)) {
            this.at = at;
            this.fail("bad \\u escape");
          }
          s += String.fromCharCode(parseInt(hex, 16));
          at += 4;
          break;
        }
        default:
          this.at = at - 1;
          this.fail("bad escape");
      }
      start = at;
    }
  }
}

/** Decodes short integer JSON texts without building a string (the common case). */
function parseSmallInt(bytes) {
  const n = bytes.length;
  if (n === 0 || n > 15) return undefined;
  let i = 0;
  let negative = false;
  if (bytes[0] === 45) {
    if (n === 1) return undefined;
    negative = true;
    i = 1;
  }
  if (bytes[i] === 48 && n > i + 1) return undefined; // leading zero: let the parser refuse it
  let v = 0;
  for (; i < n; i++) {
    const d = bytes[i] - 48;
    if (d < 0 || d > 9) return undefined;
    v = v * 10 + d;
  }
  return negative ? -v : v;
}

/**
 * The JSON codec of state values (sdk/ENCODING.md).
 *
 * `json.encode(value)` gives the canonical UTF-8 bytes: compact, integers
 * (`number` or `BigInt`) as plain digits, floats as the shortest text,
 * `Uint8Array` as base64; `json.decode(bytes)` reads any JSON text, integers
 * beyond ±(2^53 - 1) as `BigInt`. `stringify`/`parse` do the same with strings.
 */
export const json = {
  /** @param {*} value @returns {string} canonical JSON text */
  stringify(value) {
    return stringifyValue(value);
  },
  /** @param {string} text @returns {*} */
  parse(text) {
    const p = new JsonParser(text);
    const v = p.value();
    p.space();
    if (p.at !== text.length) p.fail("trailing characters");
    return v;
  },
  /** @param {*} value @returns {Uint8Array} canonical JSON, UTF-8 */
  encode(value) {
    return ENCODER.encode(stringifyValue(value));
  },
  /** @param {Uint8Array} bytes UTF-8 JSON @returns {*} */
  decode(bytes) {
    const small = parseSmallInt(bytes);
    if (small !== undefined) return small;
    return json.parse(UTF8.decode(bytes));
  },
};

function decodeState(name, bytes) {
  try {
    return json.decode(bytes);
  } catch (e) {
    throw new Fatal(`state \`${name}\` holds a value that does not decode as JSON: ${e.message}`);
  }
}

function encodeState(name, value) {
  try {
    return stringifyValue(value);
  } catch (e) {
    throw new Fatal(`cannot encode a value of state \`${name}\`: ${e.message}`);
  }
}

// ---------------------------------------------------------------------------
// Flat buffers

/** A growable flat `blobs` record (byte strings in one buffer plus lengths, -1: absent). */
class BlobsBuilder {
  constructor() {
    this.data = new Uint8Array(256);
    this.size = 0;
    this.lens = new Int32Array(16);
    this.count = 0;
  }
  reserve(extra) {
    if (this.size + extra > this.data.length) {
      const grown = new Uint8Array(Math.max(this.data.length * 2, this.size + extra));
      grown.set(this.data.subarray(0, this.size));
      this.data = grown;
    }
    if (this.count === this.lens.length) {
      const grown = new Int32Array(this.lens.length * 2);
      grown.set(this.lens);
      this.lens = grown;
    }
  }
  /** Appends bytes, or an absent entry for `null`. */
  push(bytes) {
    if (bytes === null || bytes === undefined) {
      this.reserve(0);
      this.lens[this.count++] = -1;
      return;
    }
    this.reserve(bytes.length);
    this.data.set(bytes, this.size);
    this.size += bytes.length;
    this.lens[this.count++] = bytes.length;
  }
  /** Appends the UTF-8 of `text`. */
  pushText(text) {
    this.reserve(text.length * 3);
    const written = writeText(this.data, this.size, text);
    this.size += written;
    this.lens[this.count++] = written;
  }
  finish() {
    return { data: this.data.subarray(0, this.size), lens: this.lens.subarray(0, this.count) };
  }
}

/** The parts of a `blobs` record from the host: an array of `Uint8Array` or `null`. */
function splitBlobs(blobs) {
  const { data, lens } = blobs;
  const parts = new Array(lens.length);
  let at = 0;
  for (let i = 0; i < lens.length; i++) {
    const len = lens[i];
    if (len < 0) {
      parts[i] = null;
      continue;
    }
    if (at + len > data.length) throw new Fatal("malformed blobs from the host");
    parts[i] = data.subarray(at, at + len);
    at += len;
  }
  return parts;
}

// ---------------------------------------------------------------------------
// Events, timers, output

/** One event: an optional key, a value and an event time. */
export class Event {
  constructor(key, value, timestamp) {
    /** @type {Uint8Array | null} the key, or `null` for none */
    this.key = key;
    /** @type {Uint8Array} the value bytes */
    this.value = value;
    /** @type {bigint} event time, ms since the Unix epoch */
    this.timestamp = timestamp;
  }
  /** The key, or a {@link BadInput} `event has no key`. @returns {Uint8Array} */
  requireKey() {
    if (this.key === null) throw new BadInput("event has no key");
    return this.key;
  }
  /** The value as text, or a {@link BadInput} `value is not UTF-8 text`. @returns {string} */
  valueText() {
    try {
      return UTF8.decode(this.value);
    } catch {
      throw new BadInput("value is not UTF-8 text");
    }
  }
  /** The key as text (`null` for none), or a {@link BadInput} `key is not UTF-8 text`. @returns {string | null} */
  keyText() {
    if (this.key === null) return null;
    try {
      return UTF8.decode(this.key);
    } catch {
      throw new BadInput("key is not UTF-8 text");
    }
  }
}

/** The two clocks a timer can follow. */
export const TimeDomain = Object.freeze({
  /** Fires when the event-time watermark reaches the timer's timestamp. */
  EventTime: "event-time",
  /** Fires when the wall clock reaches the timer's timestamp. */
  ProcessingTime: "processing-time",
});

/** A timer that fired: `key` (`Uint8Array` or `null`), `timestamp` (`BigInt`), `domain`. */
export class Timer {
  constructor(key, timestamp, domain) {
    /** @type {Uint8Array | null} */
    this.key = key;
    /** @type {bigint} the time it was registered for */
    this.timestamp = timestamp;
    /** @type {string} a {@link TimeDomain} */
    this.domain = domain;
  }
}

/** Events an operator emits, collected in the flat form the host reads. */
export class Output {
  constructor() {
    this.data = new Uint8Array(4096);
    this.size = 0;
    this.keyLens = new Int32Array(256);
    this.valueLens = new Uint32Array(256);
    this.timestamps = new BigInt64Array(256);
    this.count = 0;
  }
  reset() {
    this.size = 0;
    this.count = 0;
  }
  reserve(extra) {
    if (this.size + extra > this.data.length) {
      const grown = new Uint8Array(Math.max(this.data.length * 2, this.size + extra));
      grown.set(this.data.subarray(0, this.size));
      this.data = grown;
    }
  }
  put(part) {
    if (typeof part === "string") {
      this.reserve(part.length * 3);
      const written = writeText(this.data, this.size, part);
      this.size += written;
      return written;
    }
    if (!isBytes(part)) throw new TypeError("keys and values must be Uint8Array or string");
    this.reserve(part.length);
    this.data.set(part, this.size);
    this.size += part.length;
    return part.length;
  }
  /**
   * Emits an event.
   * @param {Uint8Array | string | null} key the key, or `null` for none
   * @param {Uint8Array | string} value
   * @param {bigint | number} timestamp event time, ms since the Unix epoch
   */
  emit(key, value, timestamp) {
    const i = this.count;
    if (i === this.timestamps.length) {
      const n = i * 2;
      const k = new Int32Array(n);
      k.set(this.keyLens);
      this.keyLens = k;
      const v = new Uint32Array(n);
      v.set(this.valueLens);
      this.valueLens = v;
      const t = new BigInt64Array(n);
      t.set(this.timestamps);
      this.timestamps = t;
    }
    this.keyLens[i] = key === null || key === undefined ? -1 : this.put(key);
    this.valueLens[i] = this.put(value);
    this.timestamps[i] = typeof timestamp === "bigint" ? timestamp : BigInt(timestamp);
    this.count = i + 1;
  }
  /** Emits `event` unchanged. @param {Event} event */
  forward(event) {
    this.emit(event.key, event.value, event.timestamp);
  }
  /** How many events were emitted so far in this call. */
  get length() {
    return this.count;
  }
  batch() {
    return {
      data: this.data.subarray(0, this.size),
      keyLens: this.keyLens.subarray(0, this.count),
      valueLens: this.valueLens.subarray(0, this.count),
      timestamps: this.timestamps.subarray(0, this.count),
    };
  }
}

// ---------------------------------------------------------------------------
// State

/**
 * A declared value state: one JSON value per key.
 *
 * The first `get` of a call fetches the values of every key of the batch in
 * one host call; writes are buffered until the call ends.
 */
export class ValueState {
  /** @hideconstructor */
  constructor(ctx, name) {
    this.ctx = ctx;
    this.name = name;
    this.handle = HostValueState.open(name);
    /** key string -> slot { key, value, dirty } */
    this.slots = new Map();
    this.prefetched = false;
  }
  fetch(keys) {
    const request = new BlobsBuilder();
    const fetched = [];
    for (const [id, key] of keys) {
      if (this.slots.has(id)) continue;
      const slot = { key, value: undefined, dirty: false };
      this.slots.set(id, slot);
      request.push(key);
      fetched.push(slot);
    }
    if (fetched.length === 0) return;
    const values = splitBlobs(this.handle.getMany(request.finish()));
    for (let i = 0; i < fetched.length; i++) {
      if (values[i] !== null) fetched[i].value = decodeState(this.name, values[i]);
    }
  }
  /**
   * The value stored for `key`, or `undefined`.
   * @param {Uint8Array | string} key
   */
  get(key) {
    if (!this.prefetched) {
      this.prefetched = true;
      this.fetch(this.ctx.batchKeys());
    }
    const id = this.ctx.keyId(key);
    let slot = this.slots.get(id);
    if (slot === undefined) {
      this.fetch([[id, toBytes(key, "a key")]]);
      slot = this.slots.get(id);
    }
    return slot.value;
  }
  /**
   * Stores `value` for `key` (change a value you got, then `set` it again).
   * @param {Uint8Array | string} key
   * @param {*} value any JSON-encodable value
   */
  set(key, value) {
    if (value === undefined) throw new TypeError("cannot store undefined; use remove");
    this.write(key, value);
  }
  /** Removes the value of `key`. @param {Uint8Array | string} key */
  remove(key) {
    this.write(key, undefined);
  }
  write(key, value) {
    const id = this.ctx.keyId(key);
    const slot = this.slots.get(id);
    if (slot === undefined) this.slots.set(id, { key: toBytes(key, "a key"), value, dirty: true });
    else {
      slot.value = value;
      slot.dirty = true;
    }
  }
  flush() {
    const keys = new BlobsBuilder();
    const values = new BlobsBuilder();
    let error = null;
    for (const slot of this.slots.values()) {
      if (!slot.dirty) continue;
      if (slot.value === undefined) values.push(null);
      else {
        try {
          values.pushText(encodeState(this.name, slot.value));
        } catch (e) {
          error = e;
          continue;
        }
      }
      keys.push(slot.key);
    }
    if (keys.count > 0) this.handle.putMany(keys.finish(), values.finish());
    this.slots.clear();
    this.prefetched = false;
    if (error) throw error;
  }
}

/**
 * A declared map state: per key, a map from user keys to values (both JSON).
 *
 * Reads are cached for one call; batch them with {@link MapState#prefetch}
 * from the operator's `prefetch(events, ctx)` hook so that a batch crosses to
 * the host once, not once per event. Writes are buffered until the call ends.
 */
export class MapState {
  /** @hideconstructor */
  constructor(ctx, name) {
    this.ctx = ctx;
    this.name = name;
    this.handle = HostMapState.open(name);
    /** key string -> { key, entries: Map(user key JSON -> slot { value, dirty }) } */
    this.maps = new Map();
  }
  mapOf(key) {
    const id = this.ctx.keyId(key);
    let m = this.maps.get(id);
    if (m === undefined) {
      m = { key: toBytes(key, "a key"), entries: new Map() };
      this.maps.set(id, m);
    }
    return m;
  }
  /**
   * Fetches many (key, user key) pairs in one host call, so that later
   * `get`s of them are answered from the cache.
   * @param {Iterable<[Uint8Array | string, *]>} pairs
   */
  prefetch(pairs) {
    const keys = new BlobsBuilder();
    const mapKeys = new BlobsBuilder();
    const slots = [];
    for (const [key, mapKey] of pairs) {
      const m = this.mapOf(key);
      const mk = encodeState(this.name, mapKey);
      if (m.entries.has(mk)) continue;
      const slot = { value: undefined, dirty: false };
      m.entries.set(mk, slot);
      keys.push(m.key);
      mapKeys.pushText(mk);
      slots.push(slot);
    }
    if (slots.length === 0) return;
    const values = splitBlobs(this.handle.getMany(keys.finish(), mapKeys.finish()));
    for (let i = 0; i < slots.length; i++) {
      if (values[i] !== null) slots[i].value = decodeState(this.name, values[i]);
    }
  }
  /** The value at `mapKey` in the map of `key`, or `undefined`. */
  get(key, mapKey) {
    const mk = encodeState(this.name, mapKey);
    let slot = this.mapOf(key).entries.get(mk);
    if (slot === undefined) {
      this.prefetch([[key, mapKey]]);
      slot = this.mapOf(key).entries.get(mk);
    }
    return slot.value;
  }
  /** Whether the map of `key` has `mapKey`. */
  has(key, mapKey) {
    return this.get(key, mapKey) !== undefined;
  }
  /** Sets `mapKey` in the map of `key` to `value`. */
  put(key, mapKey, value) {
    if (value === undefined) throw new TypeError("cannot store undefined; use remove");
    this.mapOf(key).entries.set(encodeState(this.name, mapKey), { value, dirty: true });
  }
  /** Removes `mapKey` from the map of `key`. */
  remove(key, mapKey) {
    this.mapOf(key).entries.set(encodeState(this.name, mapKey), { value: undefined, dirty: true });
  }
  /** Every entry of the map of `key`, sorted by stored (JSON) user key: `[[mapKey, value], ...]`. */
  entries(key) {
    this.flush();
    const [mks, values] = this.handle.entries(toBytes(key, "a key"));
    const k = splitBlobs(mks);
    const v = splitBlobs(values);
    const out = [];
    for (let i = 0; i < k.length; i++) {
      if (k[i] !== null && v[i] !== null) out.push([decodeState(this.name, k[i]), decodeState(this.name, v[i])]);
    }
    return out;
  }
  /** Removes the whole map of `key`. */
  clear(key) {
    this.flush();
    this.handle.clear(toBytes(key, "a key"));
  }
  flush() {
    const keys = new BlobsBuilder();
    const mapKeys = new BlobsBuilder();
    const values = new BlobsBuilder();
    let error = null;
    for (const m of this.maps.values()) {
      for (const [mk, slot] of m.entries) {
        if (!slot.dirty) continue;
        if (slot.value === undefined) values.push(null);
        else {
          try {
            values.pushText(encodeState(this.name, slot.value));
          } catch (e) {
            error = e;
            continue;
          }
        }
        keys.push(m.key);
        mapKeys.pushText(mk);
      }
    }
    if (keys.count > 0) this.handle.putMany(keys.finish(), mapKeys.finish(), values.finish());
    this.maps.clear();
    if (error) throw error;
  }
}

/** A declared list state: per key, an ordered list of JSON values. Appends are buffered until the call ends. */
export class ListState {
  /** @hideconstructor */
  constructor(ctx, name) {
    this.ctx = ctx;
    this.name = name;
    this.handle = HostListState.open(name);
    this.keys = new BlobsBuilder();
    this.values = new BlobsBuilder();
  }
  /** Appends `value` to the list of `key`. */
  add(key, value) {
    const text = encodeState(this.name, value);
    this.keys.push(toBytes(key, "a key"));
    this.values.pushText(text);
  }
  /** The whole list of `key`, oldest first. @returns {Array} */
  get(key) {
    this.flush();
    return splitBlobs(this.handle.get(toBytes(key, "a key")))
      .filter((v) => v !== null)
      .map((v) => decodeState(this.name, v));
  }
  /** Replaces the list of `key` with `values` (empty removes it). */
  update(key, values) {
    this.flush();
    const blobs = new BlobsBuilder();
    for (const v of values) blobs.pushText(encodeState(this.name, v));
    this.handle.update(toBytes(key, "a key"), blobs.finish());
  }
  /** Removes the list of `key`. */
  clear(key) {
    this.update(key, []);
  }
  flush() {
    if (this.keys.count === 0) return;
    const keys = this.keys.finish();
    const values = this.values.finish();
    this.keys = new BlobsBuilder();
    this.values = new BlobsBuilder();
    this.handle.addMany(keys, values);
  }
}

// ---------------------------------------------------------------------------
// Context

/** The operator's `config` table from the job file: string names and values. */
export class Config {
  /** @hideconstructor */
  constructor(entries) {
    this.map = new Map(entries);
  }
  /** The value of `name`, or `undefined`. @returns {string | undefined} */
  get(name) {
    return this.map.get(name);
  }
  /** Whether `name` is set. */
  has(name) {
    return this.map.has(name);
  }
  /** The value of `name`; throws `config \`name\` is required` if unset. @returns {string} */
  require(name) {
    const text = this.map.get(name);
    if (text === undefined) throw new Error(`config \`${name}\` is required`);
    return text;
  }
  /** The value of `name` as a 64-bit integer (`BigInt`), `defaultValue` if unset. */
  int(name, defaultValue) {
    return this.map.has(name) ? this.requireInt(name) : defaultValue;
  }
  /** The value of `name` as a 64-bit integer (`BigInt`); throws if unset or not an integer. */
  requireInt(name) {
    const text = this.require(name);
    try {
      return parseI64(trim(text));
    } catch (e) {
      throw new Error(`config \`${name}\` = ${debugString(text)} is not valid: ${e.message}`);
    }
  }
  /** Every entry, sorted by name: `[[name, value], ...]`. */
  entries() {
    return [...this.map.entries()].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  }
}

/**
 * The operator's handle on its subtask, passed to every operator call:
 * where it runs (`task`), its `config`, state handles, timers, watermark.
 */
export class Context {
  /** @hideconstructor */
  constructor(task, config, declared) {
    /** Where this subtask runs: `{ operatorId, subtask, parallelism, maxParallelism, attempt }`. */
    this.task = task;
    /** @type {Config} */
    this.config = config;
    this.declared = declared;
    this.states = [];
    this.timerOps = [];
    this.wm = undefined;
    this.keys = [];
    this.keyIds = [];
    this.current = -1;
  }
  open(name, kind, Kind) {
    const spec = this.declared.find((s) => s.name === name);
    if (spec === undefined) throw new Error(`state \`${name}\` is not declared in the operator's \`states\``);
    if (spec.kind !== kind) throw new Error(`state \`${name}\` is declared as ${spec.kind} state, not ${kind}`);
    // Handles on one state share one cache, so that each sees the other's writes.
    const opened = this.states.find((s) => s.name === name);
    if (opened !== undefined) return opened;
    const state = new Kind(this, name);
    this.states.push(state);
    return state;
  }
  /** Opens the declared value state `name`. @returns {ValueState} */
  valueState(name) {
    return this.open(name, "value", ValueState);
  }
  /** Opens the declared map state `name`. @returns {MapState} */
  mapState(name) {
    return this.open(name, "map", MapState);
  }
  /** Opens the declared list state `name`. @returns {ListState} */
  listState(name) {
    return this.open(name, "list", ListState);
  }
  /**
   * Registers a timer for `key` at `timestamp` (ms) in `domain`; the
   * operator's `onTimer` is called when it fires. The same (key, time) twice
   * keeps one timer.
   * @param {string} domain a {@link TimeDomain}
   * @param {Uint8Array | string | null} key
   * @param {bigint | number} timestamp
   */
  registerTimer(domain, key, timestamp) {
    this.timerOps.push({ domain, register: true, key, timestamp });
  }
  /** Deletes the timer for `key` at `timestamp` in `domain`, if there is one. */
  deleteTimer(domain, key, timestamp) {
    this.timerOps.push({ domain, register: false, key, timestamp });
  }
  /** The current event-time watermark (ms, `BigInt`); -2^63 before the first. Events at or behind it are late. */
  watermark() {
    // componentize-js 0.23 hands an imported s64 result over as unsigned: re-sign it.
    if (this.wm === undefined) this.wm = BigInt.asIntN(64, BigInt(currentWatermark()));
    return this.wm;
  }
  /** The wall clock, ms since the Unix epoch (`BigInt`), as processing-time timers see it. */
  processingTime() {
    return BigInt.asIntN(64, BigInt(hostProcessingTime()));
  }

  // -- used by the runtime and the state handles --

  begin(keys) {
    this.keys = keys;
    this.keyIds = new Array(keys.length);
    this.current = -1;
    this.wm = undefined;
  }
  /** The Map key of `key`: the current event's own key is converted once. */
  keyId(key) {
    const i = this.current;
    if (i >= 0 && key === this.keys[i]) {
      let id = this.keyIds[i];
      if (id === undefined) id = this.keyIds[i] = byteString(key);
      return id;
    }
    return byteString(toBytes(key, "a key"));
  }
  /** `[id, key]` of every keyed event of the call. */
  batchKeys() {
    const out = [];
    for (let i = 0; i < this.keys.length; i++) {
      const key = this.keys[i];
      if (key === null) continue;
      let id = this.keyIds[i];
      if (id === undefined) id = this.keyIds[i] = byteString(key);
      out.push([id, key]);
    }
    return out;
  }
  flush() {
    let error = null;
    for (const state of this.states) {
      try {
        state.flush();
      } catch (e) {
        error = e;
      }
    }
    this.flushTimers();
    this.keys = [];
    this.keyIds = [];
    this.current = -1;
    if (error) throw error;
  }
  flushTimers() {
    const ops = this.timerOps;
    this.timerOps = [];
    let i = 0;
    while (i < ops.length) {
      const { domain, register } = ops[i];
      const keys = new BlobsBuilder();
      const times = [];
      while (i < ops.length && ops[i].domain === domain && ops[i].register === register) {
        const op = ops[i++];
        keys.push(op.key === null || op.key === undefined ? null : toBytes(op.key, "a key"));
        times.push(typeof op.timestamp === "bigint" ? op.timestamp : BigInt(op.timestamp));
      }
      (register ? registerMany : deleteMany)(domain, keys.finish(), BigInt64Array.from(times));
    }
  }
}

// ---------------------------------------------------------------------------
// Logging

/** Logging into the host's tracing, tagged with the operator ID and subtask (`console.*` works too). */
export const log = Object.freeze({
  /** @param {string} message */
  trace: (message) => hostLog("trace", String(message)),
  /** @param {string} message */
  debug: (message) => hostLog("debug", String(message)),
  /** @param {string} message */
  info: (message) => hostLog("info", String(message)),
  /** @param {string} message */
  warn: (message) => hostLog("warn", String(message)),
  /** @param {string} message */
  error: (message) => hostLog("error", String(message)),
});

// ---------------------------------------------------------------------------
// The runtime: WIT exports

const KINDS = ["value", "map", "list"];

function fatal(message) {
  return { tag: "err", val: { tag: "fatal", val: message } };
}

function splitBatch(batch) {
  const { data, keyLens, valueLens, timestamps } = batch;
  const n = timestamps.length;
  if (keyLens.length !== n || valueLens.length !== n) throw new Fatal("malformed batch: the length lists differ");
  const events = new Array(n);
  let at = 0;
  for (let i = 0; i < n; i++) {
    const kl = keyLens[i];
    let key = null;
    if (kl >= 0) {
      key = data.subarray(at, at + kl);
      at += kl;
    } else if (kl !== -1) throw new Fatal("malformed batch: lengths exceed the data");
    const vl = valueLens[i];
    if (at > data.length || at + vl > data.length) throw new Fatal("malformed batch: lengths exceed the data");
    events[i] = new Event(key, data.subarray(at, at + vl), timestamps[i]);
    at += vl;
  }
  return events;
}

/**
 * Makes the WIT `guest` export of an operator. Export the result as `guest`:
 * `export const guest = operator({...})`.
 *
 * The definition:
 * - `name`, `version` (strings): the logic, e.g. `"keyed-count"`, `"1.0.0"`.
 * - `states`: the declared states, `[{ name, kind: "value" | "map" | "list", version }]`.
 * - `open(ctx)`: called once per subtask with `this` a fresh object made from
 *   the definition: read `ctx.config`, open state handles, keep them on `this`.
 *   Throw to refuse (the message is the error).
 * - `process(event, out, ctx)`: handles one {@link Event}; emit with `out.emit`.
 *   Throw {@link BadInput} to dead-letter the event; validate it before
 *   writing state for it (writes made before are kept).
 * - `prefetch(events, ctx)` (optional): sees every event of a batch first, to
 *   batch state reads (e.g. {@link MapState#prefetch}).
 * - `onTimer(timer, out, ctx)` (optional): handles a {@link Timer} that fired.
 * - `prefetchTimers(timers, ctx)` (optional): sees the fired timers first.
 * - `migrate(state, fromVersion, value)` (optional): converts one stored value
 *   (`Uint8Array` of JSON) of `state` from schema `fromVersion` to the
 *   declared version; returns the new value's bytes (`Uint8Array`, or JSON
 *   text as a string; see {@link json}); throws to refuse. Called before `open`.
 *
 * @param {object} def
 */
export function operator(def) {
  const name = String(def.name);
  const version = String(def.version);
  const states = (def.states ?? []).map((s) => {
    if (!KINDS.includes(s.kind)) throw new TypeError(`state \`${s.name}\`: kind must be one of ${KINDS.join(", ")}`);
    return { name: String(s.name), kind: s.kind, version: s.version ?? 1 };
  });
  const out = new Output();
  let instance = null;
  let ctx = null;

  function run(items, prefetch, handle, onBadInput, onPrefetchBadInput) {
    out.reset();
    let result = null;
    try {
      if (prefetch) prefetch.call(instance, items, ctx);
    } catch (e) {
      result = e instanceof BadInput ? onPrefetchBadInput(e.message) : fatal(fatalMessage(e));
    }
    for (let i = 0; result === null && i < items.length; i++) {
      ctx.current = i;
      try {
        handle.call(instance, items[i], out, ctx);
      } catch (e) {
        result = e instanceof BadInput ? onBadInput(i, e.message) : fatal(fatalMessage(e));
      }
    }
    // State written before a bad input is kept, so flush in every case.
    let flushed = null;
    try {
      ctx.flush();
    } catch (e) {
      flushed = fatal(fatalMessage(e));
    }
    return result ?? flushed ?? out.batch();
  }

  return {
    describe() {
      return { name, version, states };
    },

    open(task, config) {
      try {
        const info = {
          operatorId: task.operatorId,
          subtask: task.subtask,
          parallelism: task.parallelism,
          maxParallelism: task.maxParallelism,
          attempt: task.attempt,
        };
        const c = new Context(info, new Config(config), states);
        const inst = Object.create(def);
        if (typeof def.open === "function") def.open.call(inst, c);
        c.flush();
        ctx = c;
        instance = inst;
      } catch (e) {
        return { tag: "err", val: errorMessage(e) };
      }
    },

    process(input) {
      if (instance === null) return fatal("the operator was called before `open`");
      let events;
      try {
        events = splitBatch(input);
      } catch (e) {
        return fatal(fatalMessage(e));
      }
      ctx.begin(events.map((e) => e.key));
      return run(
        events,
        instance.prefetch,
        instance.process,
        (index, message) => ({
          tag: "err",
          val: { tag: "bad-input", val: { index, message, output: out.batch() } },
        }),
        (message) => fatal(`bad input: ${message}`),
      );
    },

    onTimer(fired) {
      if (instance === null) return fatal("the operator was called before `open`");
      if (typeof instance.onTimer !== "function") {
        out.reset();
        return out.batch();
      }
      let timers;
      try {
        const keys = splitBlobs(fired.keys);
        if (keys.length !== fired.timestamps.length) throw new Fatal("malformed timers: the length lists differ");
        timers = keys.map((key, i) => new Timer(key, fired.timestamps[i], fired.domain));
      } catch (e) {
        return fatal(fatalMessage(e));
      }
      ctx.begin(timers.map((t) => t.key));
      const rejected = (message) => fatal(`on_timer rejected a timer: ${message}`);
      return run(timers, instance.prefetchTimers, instance.onTimer, (_, message) => rejected(message), rejected);
    },

    migrate(state, fromVersion, values) {
      let parts;
      try {
        parts = splitBlobs(values);
      } catch (e) {
        return { tag: "err", val: { index: 0, message: fatalMessage(e) } };
      }
      const result = new BlobsBuilder();
      for (let i = 0; i < parts.length; i++) {
        if (parts[i] === null) {
          result.push(null);
          continue;
        }
        if (typeof def.migrate !== "function") {
          return {
            tag: "err",
            val: { index: i, message: `${name} ${version} has no migration for state \`${state}\` from version ${fromVersion}` },
          };
        }
        try {
          const v = def.migrate(state, fromVersion, parts[i]);
          if (typeof v === "string") result.pushText(v);
          else result.push(toBytes(v, "a migrated value"));
        } catch (e) {
          return { tag: "err", val: { index: i, message: errorMessage(e) } };
        }
      }
      return result.finish();
    },
  };
}
