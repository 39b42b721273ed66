//! Bytes as a JSON object field, as every JSON-lines format of weir spells
//! them (the `json` format of files and standard streams, the dead-letter
//! file, a state exported from a savepoint): `"name":"text"` when they are
//! UTF-8, `"name_b64":"..."` (standard base64, with padding) when they are
//! not.

use base64::Engine as _;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn write_field(out: &mut Vec<u8>, name: &str, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(text) => {
            out.push(b'"');
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"\":");
            serde_json::to_writer(&mut *out, text).expect("writing to a Vec cannot fail");
        }
        Err(_) => {
            out.push(b'"');
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"_b64\":\"");
            out.extend_from_slice(B64.encode(bytes).as_bytes());
            out.push(b'"');
        }
    }
}

/// Encodes a JSON object field for `bytes` (`"name": "text"` or
/// `"name_b64": "..."`, or `"name": null` for none) into `out`.
pub fn json_bytes_field(out: &mut Vec<u8>, name: &str, bytes: Option<&[u8]>) {
    match bytes {
        Some(b) => write_field(out, name, b),
        None => {
            out.push(b'"');
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"\":null");
        }
    }
}
