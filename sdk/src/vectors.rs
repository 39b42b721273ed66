//! The shared test vectors of `sdk/vectors/` (`sdk/PROTOCOL.md` is the
//! contract they check, `sdk/vectors/README.md` their format), run against
//! this SDK: canonical JSON through the state codec, flat batches and fired
//! timers through the `process` and `on-timer` exports, and whole calls
//! (state caches, flush order, timers, the reject protocol) through the
//! exports with a scripted operator and a stand-in host; and `migrate`.
//!
//! This SDK keeps what it knows of state from call to call (an optional
//! optimisation of the contract), so a key a `get-many` names as `known`
//! is one it must not fetch again.

pub mod host;
mod script;

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::{json, Value};

use crate::runtime::wit::types;
use script::{Script, PLAN};

/// The cases of `sdk/vectors/NAME`, one JSON object a line.
fn cases(name: &str) -> Vec<Value> {
    let path = format!("{}/vectors/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).unwrap_or_else(|e| panic!("{path}:{}: {e}", i + 1)))
        .collect()
}

/// Runs `check` on every case of `file` and fails with every case that failed.
fn run_all(file: &str, check: impl Fn(&Value) -> Result<(), String>) {
    let all = cases(file);
    assert!(!all.is_empty(), "{file} has no cases");
    let failed: Vec<String> = all
        .iter()
        .filter_map(|c| {
            check(c)
                .err()
                .map(|e| format!("{file}: `{}`: {e}", c["name"].as_str().unwrap_or("?")))
        })
        .collect();
    assert!(failed.is_empty(), "\n{}", failed.join("\n"));
}

/// A JSON value that keeps its objects' field order, for the JSON vectors:
/// decoded and encoded by the SDK's own codec.
#[derive(Debug)]
enum Json {
    Null,
    Bool(bool),
    I64(i64),
    U64(u64),
    F64(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Serialize for Json {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Json::Null => s.serialize_unit(),
            Json::Bool(b) => s.serialize_bool(*b),
            Json::I64(n) => s.serialize_i64(*n),
            Json::U64(n) => s.serialize_u64(*n),
            Json::F64(x) => s.serialize_f64(*x),
            Json::Str(t) => s.serialize_str(t),
            Json::Arr(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Json::Obj(fields) => {
                let mut map = s.serialize_map(Some(fields.len()))?;
                for (k, v) in fields {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }
    fn visit_bool<E>(self, b: bool) -> Result<Json, E> {
        Ok(Json::Bool(b))
    }
    fn visit_i64<E>(self, n: i64) -> Result<Json, E> {
        Ok(Json::I64(n))
    }
    fn visit_u64<E>(self, n: u64) -> Result<Json, E> {
        Ok(Json::U64(n))
    }
    fn visit_f64<E>(self, x: f64) -> Result<Json, E> {
        Ok(Json::F64(x))
    }
    fn visit_str<E>(self, t: &str) -> Result<Json, E> {
        Ok(Json::Str(t.to_string()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Arr(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut fields = Vec::new();
        while let Some(field) = map.next_entry()? {
            fields.push(field);
        }
        Ok(Json::Obj(fields))
    }
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Json, D::Error> {
        d.deserialize_any(JsonVisitor)
    }
}

/// `json.jsonl`: readers accept `input` (and `json`), the writer writes `json`;
/// readers refuse `invalid`. Floats are checked byte for byte: this SDK's
/// layout (serde_json's) is the reference one.
#[test]
fn json_vectors() {
    run_all("json.jsonl", |c| {
        if let Some(text) = c["invalid"].as_str() {
            return match crate::state::decode::<Json>("vectors", text.as_bytes()) {
                Ok(v) => Err(format!("{text:?} was read as {v:?}")),
                Err(_) => Ok(()),
            };
        }
        let want = c["json"].as_str().ok_or("no `json`")?;
        for text in [c["input"].as_str().unwrap_or(want), want] {
            let value = crate::state::decode::<Json>("vectors", text.as_bytes())
                .map_err(|e| format!("{text:?} was refused: {e}"))?;
            let mut buf = Vec::new();
            crate::state::encode_into("vectors", &value, &mut buf).map_err(|e| e.to_string())?;
            if buf != want.as_bytes() {
                return Err(format!(
                    "{text:?} was written as {:?}, expected {want:?}",
                    String::from_utf8_lossy(&buf)
                ));
            }
        }
        Ok(())
    });
}

fn unhex(v: &Value) -> Vec<u8> {
    let s = v.as_str().expect("hex");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn hex(bytes: &[u8]) -> Value {
    Value::String(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn ints<T: TryFrom<i128>>(v: &Value) -> Vec<T> {
    v.as_array()
        .expect("a list of integers")
        .iter()
        .map(|n| {
            let n = n.as_i64().map(i128::from).or(n.as_u64().map(i128::from));
            T::try_from(n.expect("an integer")).ok().expect("in range")
        })
        .collect()
}

fn task() -> types::TaskInfo {
    types::TaskInfo {
        operator_id: "vectors".to_string(),
        subtask: 0,
        parallelism: 1,
        max_parallelism: 128,
        attempt: 0,
    }
}

fn error_text(e: &types::Error) -> String {
    match e {
        types::Error::Fatal(m) => m.clone(),
        types::Error::BadInput(r) => format!("bad input at {}: {}", r.index, r.message),
    }
}

/// `batch.jsonl`: a flat batch (or fired timers) in, the events (or timers)
/// the operator sees, or the fatal error.
#[test]
fn batch_vectors() {
    run_all("batch.jsonl", |c| {
        host::reset(host::Host::default());
        PLAN.set(script::Plan {
            seen: Some(Vec::new()),
            ..Default::default()
        });
        crate::runtime::open::<Script>(task(), Vec::new())?;
        let (result, want) = if c["batch"].is_object() {
            let b = &c["batch"];
            let batch = types::Batch {
                data: unhex(&b["data"]),
                key_lens: ints(&b["key_lens"]),
                value_lens: ints(&b["value_lens"]),
                timestamps: ints(&b["timestamps"]),
            };
            (crate::runtime::process::<Script>(batch), &c["events"])
        } else {
            let t = &c["timers"];
            let fired = types::Timers {
                domain: match t["domain"].as_str() {
                    Some("event-time") => types::TimeDomain::EventTime,
                    _ => types::TimeDomain::ProcessingTime,
                },
                keys: types::Blobs {
                    data: unhex(&t["keys"]["data"]),
                    lens: ints(&t["keys"]["lens"]),
                },
                timestamps: ints(&t["timestamps"]),
            };
            (crate::runtime::on_timer::<Script>(fired), &c["fired"])
        };
        let seen = PLAN.with_borrow_mut(|p| p.seen.take().unwrap_or_default());
        match (result, c["error"].as_str()) {
            (Err(e), Some(want)) if error_text(&e) == want => Ok(()),
            (Err(e), _) => Err(format!("failed with {:?}", error_text(&e))),
            (Ok(_), Some(want)) => Err(format!("did not fail with {want:?}")),
            (Ok(_), None) => {
                let got: Vec<Value> = seen
                    .iter()
                    .map(|(k, v, t)| match v {
                        Some(v) => {
                            json!({"key": k.as_deref().map(hex), "value": hex(v), "timestamp": t})
                        }
                        None => json!({"key": k.as_deref().map(hex), "timestamp": t}),
                    })
                    .collect();
                if &Value::Array(got.clone()) == want {
                    Ok(())
                } else {
                    Err(format!("saw {}, expected {want}", Value::Array(got)))
                }
            }
        }
    });
}

/// The flat batch of `events` (`key`, `value`, `timestamp` as text).
fn flat_batch(events: &[Value]) -> types::Batch {
    let mut batch = types::Batch::default();
    for e in events {
        match e["key"].as_str() {
            Some(k) => {
                batch.data.extend_from_slice(k.as_bytes());
                batch.key_lens.push(k.len() as i32);
            }
            None => batch.key_lens.push(-1),
        }
        let v = e["value"].as_str().unwrap_or("");
        batch.data.extend_from_slice(v.as_bytes());
        batch.value_lens.push(v.len() as u32);
        batch
            .timestamps
            .push(e["timestamp"].as_i64().expect("a timestamp"));
    }
    batch
}

/// A flat batch as the vectors write events: `[key, value, timestamp]`.
fn events_of(batch: &types::Batch) -> Value {
    let mut at = 0usize;
    let mut out = Vec::new();
    for i in 0..batch.timestamps.len() {
        let key = (batch.key_lens[i] >= 0).then(|| {
            let k = &batch.data[at..at + batch.key_lens[i] as usize];
            at += k.len();
            String::from_utf8_lossy(k).into_owned()
        });
        let v = &batch.data[at..at + batch.value_lens[i] as usize];
        at += v.len();
        out.push(json!([
            key,
            String::from_utf8_lossy(v),
            batch.timestamps[i]
        ]));
    }
    Value::Array(out)
}

/// Entries of a put-many sorted by key (and user key) bytes, as the vectors
/// list them: their order is not part of the contract.
fn sorted_entries(call: &mut Value) {
    let put = call["call"]
        .as_str()
        .is_some_and(|c| c.ends_with(".put-many"));
    if let Some(entries) = call.get_mut("entries").and_then(Value::as_array_mut) {
        if !put {
            return;
        }
        entries.sort_by(|a, b| {
            let bytes = |e: &Value, i: usize| e[i].as_str().unwrap_or("").as_bytes().to_vec();
            (bytes(a, 0), bytes(a, 1)).cmp(&(bytes(b, 0), bytes(b, 1)))
        });
    }
}

/// The calls a step expects of this SDK: what its cache knows from the
/// calls before (`known`) is not fetched, and a fetch of nothing is no call.
fn expected_calls(step: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    for call in step["calls"].as_array().expect("calls") {
        let mut call = call.clone();
        if let Some(known) = call
            .as_object_mut()
            .and_then(|o| o.remove("known"))
            .and_then(|k| k.as_array().cloned())
        {
            let list = if call.get("keys").is_some() {
                "keys"
            } else {
                "pairs"
            };
            let items = call[list].as_array_mut().expect("keys or pairs");
            items.retain(|k| !known.contains(k));
            if items.is_empty() {
                continue;
            }
        }
        out.push(call);
    }
    out
}

fn result_of(r: Result<types::Batch, types::Error>) -> Value {
    match r {
        Ok(out) => json!({"output": events_of(&out)}),
        Err(types::Error::Fatal(m)) => json!({ "fatal": m }),
        Err(types::Error::BadInput(r)) => json!({"rejected": {
            "index": r.index,
            "message": r.message,
            "output": events_of(&r.output),
        }}),
    }
}

/// The host a case starts with: its `host` field.
fn host_of(c: &Value) -> host::Host {
    let mut h = host::Host {
        watermark: c["host"]["watermark"].as_i64().unwrap_or(i64::MIN),
        ..Default::default()
    };
    let bytes = |v: &Value| v.as_str().expect("text").as_bytes().to_vec();
    let states = |kind: &str| c["host"][kind].as_object().cloned().unwrap_or_default();
    for (state, entries) in states("value") {
        for e in entries.as_array().expect("entries") {
            h.values.insert((state.clone(), bytes(&e[0])), bytes(&e[1]));
        }
    }
    for (state, entries) in states("map") {
        for e in entries.as_array().expect("entries") {
            h.maps
                .insert((state.clone(), bytes(&e[0]), bytes(&e[1])), bytes(&e[2]));
        }
    }
    for (state, entries) in states("list") {
        for e in entries.as_array().expect("entries") {
            let list = e[1].as_array().expect("a list").iter().map(bytes).collect();
            h.lists.insert((state.clone(), bytes(&e[0])), list);
        }
    }
    h
}

/// A call vector: open the scripted operator on the case's host, then run
/// each step through `process` or `on-timer` and compare the host calls,
/// the reads and the result.
fn run_case(c: &Value) -> Result<(), String> {
    host::reset(host_of(c));
    PLAN.set(script::Plan {
        states: c["states"].as_array().cloned().unwrap_or_default(),
        ..Default::default()
    });
    crate::runtime::open::<Script>(task(), Vec::new())?;
    host::take_calls();
    for (n, step) in c["steps"].as_array().expect("steps").iter().enumerate() {
        let items = step["process"]
            .as_array()
            .or(step["on_timer"]["timers"].as_array())
            .expect("process or on_timer");
        PLAN.with_borrow_mut(|p| {
            p.prefetch = step["prefetch"].as_array().cloned().unwrap_or_default();
            p.items = items
                .iter()
                .map(|i| i["ops"].as_array().cloned().unwrap_or_default())
                .collect();
            p.at = 0;
        });
        let result = if step["process"].is_array() {
            crate::runtime::process::<Script>(flat_batch(items))
        } else {
            let mut keys = types::Blobs {
                data: Vec::new(),
                lens: Vec::new(),
            };
            for t in items {
                match t["key"].as_str() {
                    Some(k) => {
                        keys.data.extend_from_slice(k.as_bytes());
                        keys.lens.push(k.len() as i32);
                    }
                    None => keys.lens.push(-1),
                }
            }
            crate::runtime::on_timer::<Script>(types::Timers {
                domain: match step["on_timer"]["domain"].as_str() {
                    Some("event-time") => types::TimeDomain::EventTime,
                    _ => types::TimeDomain::ProcessingTime,
                },
                keys,
                timestamps: items
                    .iter()
                    .map(|t| t["timestamp"].as_i64().expect("a timestamp"))
                    .collect(),
            })
        };
        let step_name = format!("step {}", n + 1);
        let mismatches = PLAN.with_borrow_mut(|p| std::mem::take(&mut p.mismatches));
        if !mismatches.is_empty() {
            return Err(format!("{step_name}: {}", mismatches.join("; ")));
        }
        let mut got = host::take_calls();
        got.iter_mut().for_each(sorted_entries);
        let want = expected_calls(step);
        if got != want {
            return Err(format!(
                "{step_name}: the host saw\n    {}\n  expected\n    {}",
                Value::Array(got),
                Value::Array(want)
            ));
        }
        let result = result_of(result);
        if result != step["result"] {
            return Err(format!(
                "{step_name}: returned {result}, expected {}",
                step["result"]
            ));
        }
    }
    Ok(())
}

/// `state.jsonl`: the state caches and the order of the host calls.
#[test]
fn state_vectors() {
    run_all("state.jsonl", run_case);
}

/// `reject.jsonl`: what `process` returns: output, bad input, fatal errors.
#[test]
fn reject_vectors() {
    run_all("reject.jsonl", run_case);
}

/// `timers.jsonl`: timer changes and `on-timer`.
#[test]
fn timers_vectors() {
    run_all("timers.jsonl", run_case);
}

/// `migrate.jsonl`: stored values converted or refused.
#[test]
fn migrate_vectors() {
    run_all("migrate.jsonl", |c| {
        let m = &c["call"];
        let values = if m["blobs"].is_object() {
            types::Blobs {
                data: unhex(&m["blobs"]["data"]),
                lens: ints(&m["blobs"]["lens"]),
            }
        } else {
            let mut b = types::Blobs {
                data: Vec::new(),
                lens: Vec::new(),
            };
            for v in m["values"].as_array().ok_or("no values")? {
                match v.as_str() {
                    Some(v) => {
                        b.data.extend_from_slice(v.as_bytes());
                        b.lens.push(v.len() as i32);
                    }
                    None => b.lens.push(-1),
                }
            }
            b
        };
        let state = m["state"].as_str().ok_or("no state")?;
        let from = m["from_version"].as_u64().ok_or("no from_version")? as u32;
        let result = if c["migrate"] == Value::Bool(false) {
            crate::runtime::migrate::<script::Plain>(state, from, values)
        } else {
            crate::runtime::migrate::<Script>(state, from, values)
        };
        let got = match result {
            Ok(out) => {
                let mut at = 0usize;
                let values: Vec<Value> = out
                    .lens
                    .iter()
                    .map(|&len| {
                        if len < 0 {
                            return Value::Null;
                        }
                        let v = String::from_utf8_lossy(&out.data[at..at + len as usize]);
                        at += len as usize;
                        Value::from(v.into_owned())
                    })
                    .collect();
                json!({ "values": values })
            }
            Err(e) => json!({"refused": {"index": e.index, "message": e.message}}),
        };
        if got == c["result"] {
            Ok(())
        } else {
            Err(format!("returned {got}, expected {}", c["result"]))
        }
    });
}
