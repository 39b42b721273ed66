//! `weir state export|import`: one declared state of one operator of a
//! savepoint as JSON lines, out and back in.
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
//!
//! Import writes a new savepoint (by default the sibling `<DIR>-imported`,
//! `-imported-2`, ...) in which that state holds exactly the imported keys;
//! the operator's data files are rewritten under the same names and
//! key-group ranges, each key in the file whose range holds its key group,
//! with its other states and timers kept; every other operator's files are
//! checked and copied.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::Context as _;
use base64::Engine as _;
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Map, Value};

use weir_host::model::json::json_bytes_field;
use weir_host::model::keygroup::key_group;
use weir_host::state::keyed::StoredEntry;
use weir_host::state::savepoint::{SavedOperator, SavedState, Savepoint};

use super::savepoint::{find_operator, new_savepoint_dir, write_savepoint};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// `weir state ...`
#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// Write one state of one operator of a savepoint as JSON lines, one line per key.
    Export(ExportArgs),
    /// Write a new savepoint in which one state of one operator holds exactly the keys of a JSON-lines file.
    Import(ImportArgs),
}

impl StateCommand {
    pub fn execute(self) -> anyhow::Result<()> {
        match self {
            StateCommand::Export(args) => args.execute(),
            StateCommand::Import(args) => args.execute(),
        }
    }
}

/// Arguments of `weir state export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The savepoint directory.
    dir: PathBuf,
    /// The operator ID.
    #[arg(long, value_name = "ID")]
    operator: String,
    /// The declared state's name.
    #[arg(long, value_name = "NAME")]
    state: String,
    /// Write to FILE instead of standard output.
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
}

/// A state's kind, as `--kind` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Kind {
    Value,
    Map,
    List,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Value => "value",
            Kind::Map => "map",
            Kind::List => "list",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        match name {
            "value" => Some(Kind::Value),
            "map" => Some(Kind::Map),
            "list" => Some(Kind::List),
            _ => None,
        }
    }
}

/// Arguments of `weir state import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The savepoint directory (left unchanged).
    dir: PathBuf,
    /// The operator ID.
    #[arg(long, value_name = "ID")]
    operator: String,
    /// The declared state's name.
    #[arg(long, value_name = "NAME")]
    state: String,
    /// JSON lines in the format `weir state export` writes (`-` for standard input).
    #[arg(long, short, value_name = "FILE")]
    input: PathBuf,
    /// The state's kind: needed for a state the savepoint does not have yet; an existing state's kind cannot change.
    #[arg(long, value_enum)]
    kind: Option<Kind>,
    /// The state's schema version [default: the saved one, or 1 for a new state].
    #[arg(long, value_name = "N")]
    version: Option<u32>,
    /// The new savepoint's directory (must not exist) [default: DIR-imported].
    #[arg(long, short, value_name = "NEWDIR")]
    output: Option<PathBuf>,
}

/// `it has `a`, `b``: the states of an operator, for an error message.
fn state_names(op: &SavedOperator) -> String {
    if op.states.is_empty() {
        return "it has no states".to_string();
    }
    let names: Vec<String> = op.states.iter().map(|s| format!("`{}`", s.name)).collect();
    format!("it has {}", names.join(", "))
}

/// The saved state `name` of operator `op`, or an error listing the states there are.
fn find_state<'a>(
    sp: &Savepoint,
    op: &'a SavedOperator,
    name: &str,
) -> anyhow::Result<&'a SavedState> {
    op.states.iter().find(|s| s.name == name).ok_or_else(|| {
        anyhow::anyhow!(
            "operator `{}` of savepoint `{}` has no state `{name}` ({})",
            op.id,
            sp.dir.display(),
            state_names(op)
        )
    })
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

impl ExportArgs {
    fn execute(self) -> anyhow::Result<()> {
        let sp = Savepoint::open(&self.dir)?;
        let op = find_operator(&sp, &self.operator)?;
        let state = find_state(&sp, op, &self.state)?;
        let entries = sp.state_entries(&op.id, &state.name, &state.kind)?;
        let mut text = Vec::new();
        for (key, entry) in &entries {
            encode_line(key, entry, &mut text);
        }
        match &self.output {
            Some(path) => {
                std::fs::write(path, &text)
                    .with_context(|| format!("cannot write `{}`", path.display()))?;
                outln!(
                    "wrote {} keys of state `{}` of operator `{}` to {}",
                    entries.len(),
                    state.name,
                    op.id,
                    path.display()
                );
            }
            None => {
                let mut stdout = std::io::stdout().lock();
                stdout
                    .write_all(&text)
                    .and_then(|()| stdout.flush())
                    .context("cannot write to standard output")?;
            }
        }
        Ok(())
    }
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
fn only_fields(obj: &Map<String, Value>, allowed: &[&str], kind: Kind) -> Result<(), String> {
    for field in obj.keys() {
        if allowed.contains(&field.as_str()) {
            continue;
        }
        let belongs = match field.as_str() {
            "value" | "value_b64" => Some(Kind::Value),
            "entries" => Some(Kind::Map),
            "values" => Some(Kind::List),
            _ => None,
        };
        return Err(match belongs {
            Some(k) if k != kind => format!(
                "`{field}` belongs to a {} state, but this is a {} state",
                k.name(),
                kind.name()
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

/// A key for an error message.
fn show(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => format!("{s:?}"),
        Err(_) => format!("(base64) {:?}", B64.encode(bytes)),
    }
}

/// Decodes one line of a `kind` state into its key and entry.
fn decode_line(line: &str, kind: Kind) -> Result<(Vec<u8>, StoredEntry), String> {
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
        Kind::Value => {
            only_fields(&obj, &["key", "key_b64", "value", "value_b64"], kind)?;
            StoredEntry::Value(required(&obj, "value")?)
        }
        Kind::Map => {
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
                let shown = show(&k);
                if entries.insert(k, v).is_some() {
                    return Err(at(format!("map key {shown} is given twice")));
                }
            }
            StoredEntry::Map(entries.into_iter().collect())
        }
        Kind::List => {
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

impl ImportArgs {
    /// The input as error messages name it.
    fn input_name(&self) -> String {
        if self.input.as_os_str() == "-" {
            "<stdin>".to_string()
        } else {
            self.input.display().to_string()
        }
    }

    /// Reads the input: each key with its entry and line number.
    fn read_input(&self, kind: Kind) -> anyhow::Result<BTreeMap<Vec<u8>, (usize, StoredEntry)>> {
        let name = self.input_name();
        let mut reader: Box<dyn BufRead> = if self.input.as_os_str() == "-" {
            Box::new(std::io::stdin().lock())
        } else {
            let file = std::fs::File::open(&self.input)
                .with_context(|| format!("cannot open `{name}`"))?;
            Box::new(std::io::BufReader::new(file))
        };
        let mut out: BTreeMap<Vec<u8>, (usize, StoredEntry)> = BTreeMap::new();
        let mut buf = Vec::new();
        let mut number = 0;
        loop {
            buf.clear();
            let n = reader
                .read_until(b'\n', &mut buf)
                .with_context(|| format!("cannot read `{name}`"))?;
            if n == 0 {
                break;
            }
            number += 1;
            let Ok(line) = std::str::from_utf8(&buf) else {
                anyhow::bail!("{name}:{number}: the line is not UTF-8");
            };
            if line.trim().is_empty() {
                continue;
            }
            let line = line.trim_end_matches(['\n', '\r']);
            let (key, entry) =
                decode_line(line, kind).map_err(|e| anyhow::anyhow!("{name}:{number}: {e}"))?;
            if let Some((first, _)) = out.get(&key) {
                anyhow::bail!(
                    "{name}:{number}: key {} is already on line {first}",
                    show(&key)
                );
            }
            out.insert(key, (number, entry));
        }
        Ok(out)
    }

    fn execute(self) -> anyhow::Result<()> {
        let sp = Savepoint::open(&self.dir)?;
        let op = find_operator(&sp, &self.operator)?;
        let saved = op.states.iter().find(|s| s.name == self.state);
        let kind = match (saved, self.kind) {
            (Some(s), given) => {
                let Some(kind) = Kind::from_name(&s.kind) else {
                    anyhow::bail!(
                        "state `{}` of operator `{}` has kind `{}` in `_metadata`, which this weir does not know",
                        s.name,
                        op.id,
                        s.kind
                    );
                };
                if let Some(given) = given.filter(|g| *g != kind) {
                    anyhow::bail!(
                        "state `{}` of operator `{}` is a {} state; its kind cannot change to {} (declare a new state instead)",
                        s.name,
                        op.id,
                        kind.name(),
                        given.name()
                    );
                }
                kind
            }
            (None, Some(kind)) => kind,
            (None, None) => anyhow::bail!(
                "operator `{}` of savepoint `{}` has no state `{}` ({}); give --kind value|map|list to add it",
                op.id,
                sp.dir.display(),
                self.state,
                state_names(op)
            ),
        };
        let version = self.version.or(saved.map(|s| s.version)).unwrap_or(1);
        let input = self.read_input(kind)?;

        // Every key must land in one of the operator's data files.
        let m = sp.meta.max_parallelism;
        if m == 0 {
            anyhow::bail!(
                "savepoint `{}`: `_metadata` says `max_parallelism` 0",
                sp.dir.display()
            );
        }
        for (key, (line, _)) in &input {
            let kg = key_group(Some(key), m);
            if !op
                .files
                .iter()
                .any(|f| (f.key_groups[0]..f.key_groups[1]).contains(&kg))
            {
                anyhow::bail!(
                    "{}:{line}: key {} is in key group {kg}, which no data file of operator `{}` holds",
                    self.input_name(),
                    show(key),
                    op.id
                );
            }
        }
        let keys = input.len();
        let entries: BTreeMap<Vec<u8>, StoredEntry> =
            input.into_iter().map(|(k, (_, e))| (k, e)).collect();

        let out = new_savepoint_dir(&self.dir, self.output.clone(), "imported")?;
        let written = write_savepoint(&out, |writer| {
            let mut meta = sp.meta.clone();
            let mut entries = Some(entries);
            for o in &mut meta.operators {
                if o.id != op.id {
                    o.files = writer.copy_operator(&sp, o)?;
                    continue;
                }
                let new = entries.take().unwrap_or_default();
                let r = writer.rewrite_state(&sp, o, &self.state, new)?;
                o.files = r.files;
                o.state_bytes = o.state_bytes.saturating_sub(r.bytes_before) + r.bytes_after;
                let saved = SavedState {
                    name: self.state.clone(),
                    kind: kind.name().to_string(),
                    version,
                    keys: r.keys,
                };
                match o.states.iter_mut().find(|s| s.name == self.state) {
                    Some(s) => *s = saved,
                    None => o.states.push(saved),
                }
            }
            Ok(meta)
        })?;
        eprintln!(
            "imported {keys} keys into state `{}` ({} v{version}) of operator `{}`",
            self.state,
            kind.name(),
            op.id
        );
        outln!("{}", written.display());
        Ok(())
    }
}

/// The array in `field` of a line, which must be there and not be empty (a
/// key with an empty `what` has no state).
fn nonempty_array<'a>(
    obj: &'a serde_json::Map<String, Value>,
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

    fn round_trip(entry: StoredEntry, key: &[u8], kind: Kind) -> String {
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
            round_trip(StoredEntry::Value(b"3".to_vec()), b"u\"1", Kind::Value),
            "{\"key\":\"u\\\"1\",\"value\":\"3\"}\n"
        );
        assert_eq!(
            round_trip(StoredEntry::Value(vec![0xff]), &[0xfe], Kind::Value),
            "{\"key_b64\":\"/g==\",\"value_b64\":\"/w==\"}\n"
        );
        assert_eq!(
            round_trip(
                StoredEntry::Map(vec![(b"a".to_vec(), b"1".to_vec()), (vec![0xff], vec![])]),
                b"k",
                Kind::Map
            ),
            "{\"key\":\"k\",\"entries\":[{\"key\":\"a\",\"value\":\"1\"},{\"key_b64\":\"/w==\",\"value\":\"\"}]}\n"
        );
        assert_eq!(
            round_trip(
                StoredEntry::List(vec![b"x".to_vec(), vec![0xff], b"x".to_vec()]),
                b"k",
                Kind::List
            ),
            "{\"key\":\"k\",\"values\":[\"x\",{\"b64\":\"/w==\"},\"x\"]}\n"
        );
    }

    #[test]
    fn bad_lines_say_what_is_wrong() {
        let bad = |line: &str, kind: Kind, needle: &str| {
            let e = decode_line(line, kind).unwrap_err();
            assert!(e.contains(needle), "{line}: {e}");
        };
        bad("{", Kind::Value, "invalid JSON");
        bad("[1]", Kind::Value, "not a JSON object");
        bad(r#"{"value":"1"}"#, Kind::Value, "missing `key`");
        bad(r#"{"key":"a"}"#, Kind::Value, "missing `value`");
        bad(
            r#"{"key":"a","key_b64":"YQ==","value":"1"}"#,
            Kind::Value,
            "both",
        );
        bad(r#"{"key":"a","value":1}"#, Kind::Value, "not a string");
        bad(r#"{"key_b64":"%%","value":"1"}"#, Kind::Value, "not base64");
        bad(
            r#"{"key":"a","value":"1","x":2}"#,
            Kind::Value,
            "unknown field `x`",
        );
        bad(r#"{"key":"a","entries":[]}"#, Kind::Value, "map state");
        bad(r#"{"key":"a","entries":[]}"#, Kind::Map, "empty");
        bad(
            r#"{"key":"a","entries":[{"key":"x","value":"1"},{"key":"x","value":"2"}]}"#,
            Kind::Map,
            "given twice",
        );
        bad(r#"{"key":"a","values":[1]}"#, Kind::List, "`values[0]`");
        bad(r#"{"key":"a","value":"1"}"#, Kind::List, "value state");
    }
}
