//! The line formats of file and standard-stream connectors.
//!
//! `json`: one event per line, `{"key": "user-1", "value": "3", "timestamp": 1700000000000}`.
//! `key` may be null or absent (no key); `timestamp` (ms since the Unix epoch)
//! defaults to 0. Bytes that are not UTF-8 are written as `"key_b64"` /
//! `"value_b64"` (standard base64, with padding) in place of `"key"` /
//! `"value"`, and read back the same way. Any other field is an error.
//!
//! `lines`: each line is the raw `value` of one event, with no key and
//! timestamp 0; on output, each event's value followed by a newline.

use base64::Engine as _;
use serde::Deserialize;

use crate::model::batch::EventRef;
use crate::model::config::{Field, JobError, Table};
use crate::model::json::json_bytes_field;
use crate::model::Batch;

/// How events are encoded in a line-oriented file or stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// `"json"`: one JSON object per line (`key`, `value`, `timestamp`).
    #[default]
    Json,
    /// `"lines"`: each line is the raw `value` of one event.
    Lines,
}

/// A source's or sink's `format` field: `"json"` (the default) or `"lines"`.
pub fn format_field(t: &Table<'_, '_>, field: &Field) -> Result<Format, JobError> {
    Ok(t.opt(field, |v| {
        t.choice(
            "format",
            v,
            &[("json", Format::Json), ("lines", Format::Lines)],
        )
    })?
    .unwrap_or_default())
}

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonEvent {
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    key_b64: Option<String>,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    value_b64: Option<String>,
    #[serde(default)]
    timestamp: Option<i64>,
}

/// Decodes one line (without its newline) and appends the event to `batch`.
pub fn decode_line(format: Format, line: &[u8], batch: &mut Batch) -> Result<(), String> {
    match format {
        Format::Lines => {
            batch.push(None, line, 0);
            Ok(())
        }
        Format::Json => {
            let e: JsonEvent =
                serde_json::from_slice(line).map_err(|e| format!("invalid JSON event: {e}"))?;
            let key = match (e.key, e.key_b64) {
                (Some(_), Some(_)) => return Err("both `key` and `key_b64` are set".to_string()),
                (Some(k), None) => Some(k.into_bytes()),
                (None, Some(k)) => Some(
                    B64.decode(k)
                        .map_err(|e| format!("`key_b64` is not base64: {e}"))?,
                ),
                (None, None) => None,
            };
            let value = match (e.value, e.value_b64) {
                (Some(_), Some(_)) => {
                    return Err("both `value` and `value_b64` are set".to_string())
                }
                (Some(v), None) => v.into_bytes(),
                (None, Some(v)) => B64
                    .decode(v)
                    .map_err(|e| format!("`value_b64` is not base64: {e}"))?,
                (None, None) => return Err("missing field `value`".to_string()),
            };
            batch.push(key.as_deref(), &value, e.timestamp.unwrap_or(0));
            Ok(())
        }
    }
}

/// Appends one event, encoded as a line with its newline, to `out`.
pub fn encode_event(format: Format, event: &EventRef<'_>, out: &mut Vec<u8>) {
    match format {
        Format::Lines => {
            out.extend_from_slice(event.value);
            out.push(b'\n');
        }
        Format::Json => {
            out.push(b'{');
            json_bytes_field(out, "key", event.key);
            out.push(b',');
            json_bytes_field(out, "value", Some(event.value));
            out.extend_from_slice(b",\"timestamp\":");
            out.extend_from_slice(event.timestamp.to_string().as_bytes());
            out.extend_from_slice(b"}\n");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(key: Option<&[u8]>, value: &[u8], ts: i64) {
        let mut line = Vec::new();
        encode_event(
            Format::Json,
            &EventRef {
                key,
                value,
                timestamp: ts,
            },
            &mut line,
        );
        assert_eq!(line.last(), Some(&b'\n'));
        let mut b = Batch::default();
        decode_line(Format::Json, &line[..line.len() - 1], &mut b).unwrap();
        let e = b.iter().next().unwrap();
        assert_eq!((e.key, e.value, e.timestamp), (key, value, ts));
    }

    #[test]
    fn json_roundtrips_text_and_binary() {
        roundtrip(Some(b"user-1"), b"3", 1_700_000_000_000);
        roundtrip(None, b"with \"quotes\" and \n newline", -5);
        roundtrip(Some(&[0xff, 0x00]), &[0xc3, 0x28], 0);
    }

    #[test]
    fn json_defaults_and_errors() {
        let mut b = Batch::default();
        decode_line(Format::Json, br#"{"value": "x"}"#, &mut b).unwrap();
        let e = b.iter().next().unwrap();
        assert_eq!((e.key, e.timestamp), (None, 0));
        for bad in [
            &br#"{"key": "k"}"#[..],
            br#"{"value": 3}"#,
            br#"{"value": "x", "extra": 1}"#,
            br#"{"value": "x", "value_b64": "eA=="}"#,
            br#"not json"#,
        ] {
            assert!(
                decode_line(Format::Json, bad, &mut b).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn binary_is_written_as_b64() {
        let mut line = Vec::new();
        encode_event(
            Format::Json,
            &EventRef {
                key: None,
                value: &[0xff],
                timestamp: 1,
            },
            &mut line,
        );
        assert_eq!(
            line,
            b"{\"key\":null,\"value_b64\":\"/w==\",\"timestamp\":1}\n"
        );
    }
}
