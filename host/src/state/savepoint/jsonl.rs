//! One declared state of one operator of a savepoint as JSON lines, what
//! `weir state export` writes and `weir state import` reads.
//!
//! The format: one JSON object per key, in ascending order of the key's
//! bytes, its fields in this order:
//!
//! ```text
//! value state  {"key":"user-1","value":"3"}
//! map state    {"key":"user-1","entries":[{"key":"a","value":"1"},{"key":"b","value":"2"}]}
//! list state   {"key":"user-1","values":["1","2"]}
//! ```
//!
//! Map entries are in ascending order of their key bytes, list values in list
//! order. Bytes that are not UTF-8 are written in standard base64 (with
//! padding): a key or value as `"key_b64"` / `"value_b64"` in place of
//! `"key"` / `"value"` (also inside `entries`), a list value as the object
//! `{"b64":"..."}` in place of the string. Import reads exactly this
//! (either spelling of each field, entries and values in any order, blank
//! lines skipped); any other field, a missing one, both spellings at once, a
//! key given twice, or an empty `entries` / `values` (a key with no state) is
//! an error naming `FILE:LINE`.

use std::collections::BTreeMap;
use std::io::BufRead;

use base64::Engine as _;
use serde_json::{Map, Value};

use crate::model::json::json_bytes_field;
use crate::model::{show_key, StateKind};
use crate::state::keyed::{kind_name, StoredEntry};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Why a JSON-lines file could not be read as a state's keys.
#[derive(Debug, thiserror::Error)]
pub enum JsonLinesError {
    /// The file could not be read.
    #[error("cannot read `{name}`: {source}")]
    Read {
        /// The file, as messages name it.
        name: String,
        /// What reading it said.
        #[source]
        source: std::io::Error,
    },
    /// A line is not a key of the state.
    #[error("{name}:{line}: {message}")]
    Line {
        /// The file, as messages name it.
        name: String,
        /// The line's number, from 1.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
}

/// The lines of `entries` (each key's whole state), in ascending order of
/// their key bytes.
pub fn encode_jsonl(entries: &BTreeMap<Vec<u8>, StoredEntry>) -> Vec<u8> {
    let mut text = Vec::new();
    for (key, entry) in entries {
        encode_line(key, entry, &mut text);
    }
    text
}

/// One key's line, with its newline.
fn encode_line(key: &[u8], entry: &StoredEntry, out: &mut Vec<u8>) {
    out.push(b'{');
    json_bytes_field(out, "key", Some(key));
    match entry {
        StoredEntry::Value(v) => {
            out.push(b',');
            json_bytes_field(out, "value", Some(v));
        }
        StoredEntry::Map(entries) => {
            out.extend_from_slice(b",\"entries\":[");
            for (i, (k, v)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.push(b'{');
                json_bytes_field(out, "key", Some(k));
                out.push(b',');
                json_bytes_field(out, "value", Some(v));
                out.push(b'}');
            }
            out.push(b']');
        }
        StoredEntry::List(values) => {
            out.extend_from_slice(b",\"values\":[");
            for (i, v) in values.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                match std::str::from_utf8(v) {
                    Ok(text) => serde_json::to_writer(&mut *out, text).expect("writing to a Vec"),
                    Err(_) => {
                        out.extend_from_slice(b"{\"b64\":\"");
                        out.extend_from_slice(B64.encode(v).as_bytes());
                        out.extend_from_slice(b"\"}");
                    }
                }
            }
            out.push(b']');
        }
        // Savepoints hold whole states only: these never reach an export.
        StoredEntry::Deleted | StoredEntry::MapUpdate(_) | StoredEntry::ListAppend(_) => {}
    }
    out.extend_from_slice(b"}\n");
}

/// Reads the lines of a `kind` state from `reader` (`name` in messages):
/// each key with its entry and line number.
pub fn decode_jsonl(
    mut reader: impl BufRead,
    name: &str,
    kind: StateKind,
) -> Result<BTreeMap<Vec<u8>, (usize, StoredEntry)>, JsonLinesError> {
    let at = |line: usize, message: String| JsonLinesError::Line {
        name: name.to_string(),
        line,
        message,
    };
    let mut out: BTreeMap<Vec<u8>, (usize, StoredEntry)> = BTreeMap::new();
    let mut buf = Vec::new();
    let mut number = 0;
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|source| JsonLinesError::Read {
                name: name.to_string(),
                source,
            })?;
        if n == 0 {
            break;
        }
        number += 1;
        let Ok(line) = std::str::from_utf8(&buf) else {
            return Err(at(number, "the line is not UTF-8".to_string()));
        };
        if line.trim().is_empty() {
            continue;
        }
        let line = line.trim_end_matches(['\n', '\r']);
        let (key, entry) = decode_line(line, kind).map_err(|e| at(number, e))?;
        if let Some((first, _)) = out.get(&key) {
            return Err(at(
                number,
                format!("{} is already on line {first}", show_key(Some(&key))),
            ));
        }
        out.insert(key, (number, entry));
    }
    Ok(out)
}

/// Bytes of field `name` (text) or `name_b64` (base64) of `obj`; `None` if neither is there.
fn bytes_field(obj: &Map<String, Value>, name: &str) -> Result<Option<Vec<u8>>, String> {
    let b64 = format!("{name}_b64");
    match (obj.get(name), obj.get(&b64)) {
        (Some(_), Some(_)) => Err(format!("both `{name}` and `{b64}` are set")),
        (Some(Value::String(s)), None) => Ok(Some(s.clone().into_bytes())),
        (Some(other), None) => Err(format!("`{name}` is {other}, not a string")),
        (None, Some(Value::String(s))) => B64
            .decode(s)
            .map(Some)
            .map_err(|e| format!("`{b64}` is not base64: {e}")),
        (None, Some(other)) => Err(format!("`{b64}` is {other}, not a string")),
        (None, None) => Ok(None),
    }
}

fn required(obj: &Map<String, Value>, name: &str) -> Result<Vec<u8>, String> {
    bytes_field(obj, name)?.ok_or_else(|| format!("missing `{name}` (or `{name}_b64`)"))
}

/// Fails on any field of `obj` not in `allowed`.
fn only_fields(obj: &Map<String, Value>, allowed: &[&str], kind: StateKind) -> Result<(), String> {
    for field in obj.keys() {
        if allowed.contains(&field.as_str()) {
            continue;
        }
        let belongs = match field.as_str() {
            "value" | "value_b64" => Some(StateKind::Value),
            "entries" => Some(StateKind::Map),
            "values" => Some(StateKind::List),
            _ => None,
        };
        return Err(match belongs {
            Some(k) if k != kind => format!(
                "`{field}` belongs to a {} state, but this is a {} state",
                kind_name(k),
                kind_name(kind)
            ),
            _ => format!(
                "unknown field `{field}` (expected {})",
                allowed
                    .iter()
                    .map(|f| format!("`{f}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    Ok(())
}

/// Decodes one line of a `kind` state into its key and entry.
fn decode_line(line: &str, kind: StateKind) -> Result<(Vec<u8>, StoredEntry), String> {
    let value: Value = serde_json::from_str(line).map_err(|e| {
        // serde_json ends its message with ` at line 1 column N`: keep the column.
        let text = e.to_string();
        let what = text
            .rsplit_once(" at line ")
            .map_or(text.as_str(), |(w, _)| w);
        format!("invalid JSON at column {}: {what}", e.column())
    })?;
    let Value::Object(obj) = value else {
        return Err("not a JSON object".to_string());
    };
    let key = required(&obj, "key")?;
    let entry = match kind {
        StateKind::Value => {
            only_fields(&obj, &["key", "key_b64", "value", "value_b64"], kind)?;
            StoredEntry::Value(required(&obj, "value")?)
        }
        StateKind::Map => {
            only_fields(&obj, &["key", "key_b64", "entries"], kind)?;
            let list = nonempty_array(&obj, "entries", "map")?;
            let mut entries: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
            for (i, item) in list.iter().enumerate() {
                let Value::Object(e) = item else {
                    return Err(format!("`entries[{i}]` is {item}, not an object"));
                };
                let at = |m: String| format!("`entries[{i}]`: {m}");
                for field in e.keys() {
                    if !matches!(field.as_str(), "key" | "key_b64" | "value" | "value_b64") {
                        return Err(at(format!(
                            "unknown field `{field}` (expected `key`, `key_b64`, `value`, `value_b64`)"
                        )));
                    }
                }
                let k = required(e, "key").map_err(at)?;
                let v = required(e, "value").map_err(at)?;
                let shown = show_key(Some(&k));
                if entries.insert(k, v).is_some() {
                    return Err(at(format!("map {shown} is given twice")));
                }
            }
            StoredEntry::Map(entries.into_iter().collect())
        }
        StateKind::List => {
            only_fields(&obj, &["key", "key_b64", "values"], kind)?;
            let list = nonempty_array(&obj, "values", "list")?;
            let mut values = Vec::with_capacity(list.len());
            for (i, item) in list.iter().enumerate() {
                let bytes = match item {
                    Value::String(s) => s.clone().into_bytes(),
                    Value::Object(o) if o.len() == 1 && o.contains_key("b64") => match &o["b64"] {
                        Value::String(s) => B64
                            .decode(s)
                            .map_err(|e| format!("`values[{i}].b64` is not base64: {e}"))?,
                        other => return Err(format!("`values[{i}].b64` is {other}, not a string")),
                    },
                    other => {
                        return Err(format!(
                            "`values[{i}]` is {other}: expected a string, or {{\"b64\": \"...\"}} for bytes that are not UTF-8"
                        ))
                    }
                };
                values.push(bytes);
            }
            StoredEntry::List(values)
        }
    };
    Ok((key, entry))
}

/// The array in `field` of a line, which must be there and not be empty (a
/// key with an empty `what` has no state).
fn nonempty_array<'a>(
    obj: &'a Map<String, Value>,
    field: &str,
    what: &str,
) -> Result<&'a Vec<Value>, String> {
    let Some(list) = obj.get(field) else {
        return Err(format!("missing `{field}`"));
    };
    let Value::Array(list) = list else {
        return Err(format!("`{field}` is {list}, not an array"));
    };
    if list.is_empty() {
        return Err(format!(
            "`{field}` is empty: a key with an empty {what} has no state; leave the line out"
        ));
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(entry: StoredEntry, key: &[u8], kind: StateKind) -> String {
        let mut out = Vec::new();
        encode_line(key, &entry, &mut out);
        let line = String::from_utf8(out).unwrap();
        let (k, e) = decode_line(&line, kind).unwrap();
        assert_eq!((k.as_slice(), e), (key, entry));
        line
    }

    #[test]
    fn lines_round_trip_in_every_kind() {
        assert_eq!(
            round_trip(StoredEntry::Value(b"3".to_vec()), b"u\"1", StateKind::Value),
            "{\"key\":\"u\\\"1\",\"value\":\"3\"}\n"
        );
        assert_eq!(
            round_trip(StoredEntry::Value(vec![0xff]), &[0xfe], StateKind::Value),
            "{\"key_b64\":\"/g==\",\"value_b64\":\"/w==\"}\n"
        );
        assert_eq!(
            round_trip(
                StoredEntry::Map(vec![(b"a".to_vec(), b"1".to_vec()), (vec![0xff], vec![])]),
                b"k",
                StateKind::Map
            ),
            "{\"key\":\"k\",\"entries\":[{\"key\":\"a\",\"value\":\"1\"},{\"key_b64\":\"/w==\",\"value\":\"\"}]}\n"
        );
        assert_eq!(
            round_trip(
                StoredEntry::List(vec![b"x".to_vec(), vec![0xff], b"x".to_vec()]),
                b"k",
                StateKind::List
            ),
            "{\"key\":\"k\",\"values\":[\"x\",{\"b64\":\"/w==\"},\"x\"]}\n"
        );
    }

    #[test]
    fn bad_lines_say_what_is_wrong() {
        let bad = |line: &str, kind: StateKind, needle: &str| {
            let e = decode_line(line, kind).unwrap_err();
            assert!(e.contains(needle), "{line}: {e}");
        };
        bad("{", StateKind::Value, "invalid JSON");
        bad("[1]", StateKind::Value, "not a JSON object");
        bad(r#"{"value":"1"}"#, StateKind::Value, "missing `key`");
        bad(r#"{"key":"a"}"#, StateKind::Value, "missing `value`");
        bad(
            r#"{"key":"a","key_b64":"YQ==","value":"1"}"#,
            StateKind::Value,
            "both",
        );
        bad(r#"{"key":"a","value":1}"#, StateKind::Value, "not a string");
        bad(
            r#"{"key_b64":"%%","value":"1"}"#,
            StateKind::Value,
            "not base64",
        );
        bad(
            r#"{"key":"a","value":"1","x":2}"#,
            StateKind::Value,
            "unknown field `x`",
        );
        bad(r#"{"key":"a","entries":[]}"#, StateKind::Value, "map state");
        bad(r#"{"key":"a","entries":[]}"#, StateKind::Map, "empty");
        bad(
            r#"{"key":"a","entries":[{"key":"x","value":"1"},{"key":"x","value":"2"}]}"#,
            StateKind::Map,
            "given twice",
        );
        bad(
            r#"{"key":"a","values":[1]}"#,
            StateKind::List,
            "`values[0]`",
        );
        bad(r#"{"key":"a","value":"1"}"#, StateKind::List, "value state");
    }
}
