//! The job file's toolkit, shared by every table's owner: the engine's own
//! tables, each connector's `[source]` or `[sink]`, the operators' limits. It
//! gives one-line errors that name the file, the line and the field
//! ([`JobError`]), strict tables whose unknown fields are errors
//! ([`Fields`]), and the value types the job file writes as strings:
//! durations ([`parse_duration`]) and byte sizes ([`parse_size`]).

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use toml::{Spanned, Value};

/// A field of a table as read: absent, or a value with its place in the file.
pub type Field = Option<Spanned<Value>>;

/// An error reading or checking a job file. Its message is one line.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The job file could not be read.
    #[error("cannot read job file `{path}`: {source}")]
    Read {
        /// The path as the caller gave it.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The job file is not valid TOML, or its shape or values are wrong.
    #[error("{file}{}: {message}", line_suffix(.line))]
    Invalid {
        /// The path as the caller gave it.
        file: String,
        /// 1-based line the problem is on, when known.
        line: Option<usize>,
        /// What is wrong (one line).
        message: String,
    },
}

impl JobError {
    /// The 1-based line of the job file the error is about, when known.
    pub fn line(&self) -> Option<usize> {
        match self {
            JobError::Read { .. } => None,
            JobError::Invalid { line, .. } => *line,
        }
    }
}

fn line_suffix(line: &Option<usize>) -> String {
    match line {
        Some(l) => format!(":{l}"),
        None => String::new(),
    }
}

/// Parses a duration with [`humantime`]: one or more parts, each a number
/// (decimals allowed) and a unit, e.g. `"250ms"`, `"2s"`, `"1.5s"`, `"1m30s"`,
/// `"2h 5min"`; a bare `"0"` is zero. The units are humantime's: `ns`,
/// `us`/`µs`, `ms`, `s`/`sec`, `m`/`min`, `h`/`hr`, `d`/`days`, `w`/`weeks`,
/// `M`/`months`, `y`/`years` and their longer spellings.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    const HINT: &str = "expected a number and a unit (ms, s, m, h), e.g. `250ms` or `1.5s`";
    let shown = s.escape_debug();
    // The Greek mu is the micro sign's twin; humantime knows only the latter.
    let t = s.trim().replace('\u{3bc}', "\u{b5}");
    if t.is_empty() {
        return Err(format!("empty duration, {HINT}"));
    }
    // humantime reads `1 2s` as 12s: digits split by a space are refused here.
    let words: Vec<&str> = t.split_whitespace().collect();
    let number_edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_digit() || c == '.');
    if words
        .windows(2)
        .any(|w| number_edge(w[0].chars().last()) && number_edge(w[1].chars().next()))
    {
        return Err(format!(
            "invalid duration `{shown}`: a space inside a number, {HINT}"
        ));
    }
    humantime::parse_duration(&t).map_err(|e| {
        use humantime::DurationError as E;
        let what = match e {
            E::UnknownUnit { unit, value, .. } if unit.is_empty() => {
                format!("missing unit after `{value}`, {HINT}")
            }
            E::UnknownUnit { unit, .. } => format!(
                "unknown unit `{}`, expected one of `ns`, `us`, `ms`, `s`, `m`, `h`, `d`",
                unit.escape_debug()
            ),
            E::NumberOverflow => {
                "too long, or finer than the unit allows (1ns; whole seconds for hours and longer)"
                    .to_string()
            }
            other => format!("{other}, {HINT}"),
        };
        format!("invalid duration `{shown}`: {what}")
    })
}

/// Parses a size with [`bytesize`]: a number and a unit, e.g. `"64MiB"`,
/// `"1 GiB"`, `"512KiB"`, `"1.5GiB"`, or a bare number of bytes (`"1000"`).
/// Units are case-insensitive; `KiB`, `MiB`, `GiB` (or `Ki`, `Mi`, `Gi`) are
/// powers of 1024, `KB`, `MB`, `GB` (or `K`, `M`, `G`) powers of 1000.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let shown = s.escape_debug();
    let size = t.parse::<bytesize::ByteSize>().map_err(|_| {
        // bytesize's own message is about its types; say which part is wrong.
        let unit = t
            .trim_start_matches(|c: char| c.is_ascii_digit() || c == '.')
            .trim_start();
        if unit.len() < t.len() && unit.parse::<bytesize::Unit>().is_err() {
            format!(
                "unknown size unit `{}` in `{shown}`: use B, KiB, MiB or GiB (KB, MB, GB: powers of 1000), e.g. `64MiB`",
                unit.escape_debug()
            )
        } else {
            format!("`{shown}` is not a size: expected e.g. `64MiB`")
        }
    })?;
    // bytesize saturates at u64::MAX rather than failing.
    match size.as_u64() {
        0 | u64::MAX => Err(format!("size `{shown}` must be above 0 and below 16 EiB")),
        n => Ok(n),
    }
}

/// One folder granted to an operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirGrant {
    /// The path the guest opens it at, e.g. `/data`.
    pub guest: String,
    /// The host folder (absolute).
    pub host: PathBuf,
    /// Whether the guest may create, write and delete files in it.
    pub writable: bool,
}

/// A size for messages: `1 MiB`, `64 KiB`, `1.5 MiB`, `100 bytes`.
pub fn format_size(bytes: u64) -> String {
    for (shift, unit) in [(30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if bytes >= 1 << shift {
            return if bytes.is_multiple_of(1 << shift) {
                format!("{} {unit}", bytes >> shift)
            } else {
                format!("{:.1} {unit}", bytes as f64 / (1u64 << shift) as f64)
            };
        }
    }
    format!("{bytes} bytes")
}

/// A table of any keys, in the file's order, each value with its place: an
/// operator's `config`, a capability's `env` or `dirs`.
pub struct Entries(pub Vec<(String, Spanned<Value>)>);

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Entries;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a table of strings for `config`, e.g. `config = { size_ms = \"1000\" }`",
                )
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(Entries(entries))
            }
        }
        d.deserialize_map(V)
    }
}

/// A table whose fields its owner takes one by one ([`Fields::take`]); a
/// field it does not expect ([`Fields::check`], called before any value is
/// read) is an error naming the field and its line. A connector reads its `[source]` or `[sink]` table this way, so
/// each connector owns its fields and their checks.
#[derive(Debug, Clone, Default)]
pub struct Fields(BTreeMap<String, Spanned<Value>>);

impl<'de> Deserialize<'de> for Fields {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Fields::deserialize_expecting(d, "a table")
    }
}

impl Fields {
    /// Reads a table; anything else is an error that says it expected `what`
    /// (e.g. `a [source] table`).
    pub fn deserialize_expecting<'de, D: Deserializer<'de>>(
        d: D,
        what: &'static str,
    ) -> Result<Self, D::Error> {
        struct V(&'static str);
        impl<'de> Visitor<'de> for V {
            type Value = Fields;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.0)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
                let mut fields = BTreeMap::new();
                while let Some((k, v)) = map.next_entry::<String, Spanned<Value>>()? {
                    fields.insert(k, v);
                }
                Ok(Fields(fields))
            }
        }
        d.deserialize_map(V(what))
    }

    /// Takes the field `name` out of the table.
    pub fn take(&mut self, name: &str) -> Field {
        self.0.remove(name)
    }

    /// Errors on the first field (in the file's order) that is not in
    /// `expected`: ``source: `count` does not apply to a `file` source`` for
    /// a field of another type (in `others`), else ``unknown field `x`,
    /// expected one of `type`, `path` ``. The owner calls it before reading
    /// any value, so a misspelt field is named before a missing one.
    pub fn check(
        &self,
        t: &Table<'_, '_>,
        what: &str,
        expected: &[&str],
        others: &[&str],
    ) -> Result<(), JobError> {
        let stray = self
            .0
            .iter()
            .filter(|(name, _)| !expected.contains(&name.as_str()))
            .min_by_key(|(_, v)| v.span().start);
        match stray {
            None => Ok(()),
            Some((name, v)) if others.contains(&name.as_str()) => {
                Err(t.fail(v.span(), format!("`{name}` does not apply to {what}")))
            }
            Some((name, v)) => {
                let names: Vec<String> = expected.iter().map(|n| format!("`{n}`")).collect();
                Err(t.cx.err(
                    Some(v.span()),
                    format!(
                        "unknown field `{}`, expected one of {}",
                        name.escape_debug(),
                        names.join(", ")
                    ),
                ))
            }
        }
    }
}

/// The file being parsed: its name for messages, its text for line numbers.
pub struct JobFile<'a> {
    /// The path as the caller gave it.
    pub file: String,
    /// Its text.
    pub text: &'a str,
    /// Its directory, absolute: relative paths are resolved against it.
    pub base_dir: PathBuf,
}

impl JobFile<'_> {
    /// The 1-based line of byte `offset` of the text.
    pub fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text
            .as_bytes()
            .get(..end)
            .unwrap_or_default()
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    /// An error at `span` (its line), folded onto one line.
    pub fn err(&self, span: Option<Range<usize>>, message: impl fmt::Display) -> JobError {
        JobError::Invalid {
            file: self.file.clone(),
            line: span.map(|s| self.line_of(s.start)),
            message: one_line(&message.to_string()),
        }
    }

    /// A TOML syntax or shape error, at its line.
    pub fn toml_error(&self, e: &toml::de::Error) -> JobError {
        let span = e.span();
        // toml does not say which key is duplicated; the span covers it.
        let key = span
            .clone()
            .and_then(|s| self.text.get(s))
            .map(str::trim)
            .filter(|k| !k.is_empty() && !k.contains('\n'));
        match key {
            Some(k) if e.message() == "duplicate key" => {
                self.err(span, format!("duplicate key `{}`", k.escape_debug()))
            }
            _ => self.err(span, e.message()),
        }
    }

    /// The table `label` (for messages) whose header is at `span`.
    pub fn section(&self, label: impl Into<String>, span: Range<usize>) -> Table<'_, '_> {
        Table {
            cx: self,
            label: label.into(),
            span,
        }
    }

    /// A path of the file, resolved against its directory.
    pub fn resolve(&self, p: &str) -> PathBuf {
        self.base_dir.join(p).components().collect()
    }
}

/// One table of the job file, for messages: `label` prefixes them, `span` is the
/// table's header (used when a required field is missing).
pub struct Table<'c, 'a> {
    /// The job file.
    pub cx: &'c JobFile<'a>,
    /// What prefixes messages, e.g. `source`.
    pub label: String,
    /// The table's header.
    pub span: Range<usize>,
}

impl Table<'_, '_> {
    /// An error about this table at `span`, prefixed with its label.
    pub fn fail(&self, span: Range<usize>, message: impl fmt::Display) -> JobError {
        if self.label.is_empty() {
            self.cx.err(Some(span), message)
        } else {
            self.cx
                .err(Some(span), format!("{}: {message}", self.label))
        }
    }

    /// The value of a field that must be there; `hint` says what it is for.
    pub fn required<'v>(
        &self,
        name: &str,
        field: &'v Field,
        hint: &str,
    ) -> Result<&'v Spanned<Value>, JobError> {
        field
            .as_ref()
            .ok_or_else(|| self.fail(self.span.clone(), format!("missing `{name}`{hint}")))
    }

    /// Errors if `field` is set: it does not apply to `what`.
    pub fn forbid(&self, name: &str, field: &Field, what: &str) -> Result<(), JobError> {
        match field {
            Some(v) => Err(self.fail(v.span(), format!("`{name}` does not apply to {what}"))),
            None => Ok(()),
        }
    }

    /// Reads an optional field with `f`.
    pub fn opt<T>(
        &self,
        field: &Field,
        f: impl FnOnce(&Spanned<Value>) -> Result<T, JobError>,
    ) -> Result<Option<T>, JobError> {
        field.as_ref().map(f).transpose()
    }

    /// A size in bytes: a string such as `"64MiB"` (see [`parse_size`]) or an integer.
    pub fn size(&self, name: &str, v: &Spanned<Value>) -> Result<u64, JobError> {
        match v.get_ref() {
            Value::String(text) => {
                parse_size(text).map_err(|e| self.fail(v.span(), format!("`{name}`: {e}")))
            }
            Value::Integer(_) => self.int(name, v, 1, i64::MAX),
            other => Err(self.fail(
                v.span(),
                format!(
                    "`{name}` must be a size such as \"64MiB\", found {}",
                    describe(other)
                ),
            )),
        }
    }

    /// A `true` or `false`.
    pub fn boolean(&self, name: &str, v: &Spanned<Value>) -> Result<bool, JobError> {
        match v.get_ref() {
            Value::Boolean(b) => Ok(*b),
            other => Err(self.fail(
                v.span(),
                format!("`{name}` must be true or false, found {}", describe(other)),
            )),
        }
    }

    /// A string.
    pub fn string<'v>(&self, name: &str, v: &'v Spanned<Value>) -> Result<&'v str, JobError> {
        match v.get_ref() {
            Value::String(s) => Ok(s),
            other => Err(self.fail(
                v.span(),
                format!("`{name}` must be a string, found {}", describe(other)),
            )),
        }
    }

    /// An integer between `min` and `max`.
    pub fn int<T: TryFrom<i64>>(
        &self,
        name: &str,
        v: &Spanned<Value>,
        min: i64,
        max: i64,
    ) -> Result<T, JobError> {
        let n = match v.get_ref() {
            Value::Integer(n) => *n,
            other => {
                return Err(self.fail(
                    v.span(),
                    format!("`{name}` must be an integer, found {}", describe(other)),
                ))
            }
        };
        if n < min || n > max {
            let range = if max == i64::MAX && min == 0 {
                "must not be negative".to_owned()
            } else if max == i64::MAX {
                format!("must be at least {min}")
            } else {
                format!("must be between {min} and {max}")
            };
            return Err(self.fail(v.span(), format!("`{name}` {range}, found {n}")));
        }
        T::try_from(n).map_err(|_| self.fail(v.span(), format!("`{name}` {n} is too large")))
    }

    /// A duration string ([`parse_duration`]).
    pub fn duration(&self, name: &str, v: &Spanned<Value>) -> Result<Duration, JobError> {
        match v.get_ref() {
            Value::String(s) => {
                parse_duration(s).map_err(|e| self.fail(v.span(), format!("`{name}`: {e}")))
            }
            other => Err(self.fail(
                v.span(),
                format!(
                    "`{name}` must be a duration string such as \"250ms\" or \"2s\", found {}",
                    describe(other)
                ),
            )),
        }
    }

    /// A table of strings (`{ "acks" = "all" }`), such as a connector's
    /// client `properties`; numbers and booleans are written as strings.
    pub fn string_map(
        &self,
        name: &str,
        v: &Spanned<Value>,
    ) -> Result<BTreeMap<String, String>, JobError> {
        let Value::Table(table) = v.get_ref() else {
            return Err(self.fail(
                v.span(),
                format!(
                    "`{name}` must be a table of strings, found {}",
                    describe(v.get_ref())
                ),
            ));
        };
        table
            .iter()
            .map(|(k, value)| match value {
                Value::String(s) => Ok((k.clone(), s.clone())),
                Value::Integer(n) => Ok((k.clone(), n.to_string())),
                Value::Boolean(b) => Ok((k.clone(), b.to_string())),
                other => Err(self.fail(
                    v.span(),
                    format!("`{name}.{k}` must be a string, found {}", describe(other)),
                )),
            })
            .collect()
    }

    /// A non-empty path, resolved against the job file's directory.
    pub fn path(&self, name: &str, v: &Spanned<Value>) -> Result<PathBuf, JobError> {
        let p = self.string(name, v)?;
        if p.is_empty() {
            return Err(self.fail(v.span(), format!("`{name}` must not be empty")));
        }
        Ok(self.cx.resolve(p))
    }

    /// One of `options`, by name.
    pub fn choice<T: Copy>(
        &self,
        name: &str,
        v: &Spanned<Value>,
        options: &[(&str, T)],
    ) -> Result<T, JobError> {
        let s = self.string(name, v)?;
        match options.iter().find(|(k, _)| *k == s) {
            Some((_, t)) => Ok(*t),
            None => {
                let names: Vec<String> = options.iter().map(|(k, _)| format!("`{k}`")).collect();
                Err(self.fail(
                    v.span(),
                    format!(
                        "`{name}` must be one of {}, found `{}`",
                        names.join(", "),
                        s.escape_debug()
                    ),
                ))
            }
        }
    }
}

/// A TOML value's type (and the value itself when short), for "found ..." messages.
pub fn describe(v: &Value) -> String {
    match v {
        Value::String(s) => format!("string {s:?}"),
        Value::Integer(i) => format!("integer {i}"),
        Value::Float(f) => format!("float {f}"),
        Value::Boolean(b) => format!("boolean {b}"),
        Value::Datetime(d) => format!("datetime {d}"),
        Value::Array(_) => "an array".to_owned(),
        Value::Table(_) => "a table".to_owned(),
    }
}

/// Folds a possibly multi-line message onto one line.
pub fn one_line(message: &str) -> String {
    let parts: Vec<&str> = message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_shown_in_their_largest_unit() {
        assert_eq!(format_size(1 << 20), "1 MiB");
        assert_eq!(format_size(64 << 10), "64 KiB");
        assert_eq!(format_size(3 << 29), "1.5 GiB");
        assert_eq!(format_size(100), "100 bytes");
    }

    #[test]
    fn parse_durations() {
        let ok = [
            ("250ms", Duration::from_millis(250)),
            ("2s", Duration::from_secs(2)),
            ("1.5s", Duration::from_millis(1500)),
            ("5m", Duration::from_secs(300)),
            ("1h", Duration::from_secs(3600)),
            ("0", Duration::ZERO),
            ("0s", Duration::ZERO),
            ("1m30s", Duration::from_secs(90)),
            (" 2 s ", Duration::from_secs(2)),
            ("10us", Duration::from_micros(10)),
            ("10µs", Duration::from_micros(10)),
            ("10\u{3bc}s", Duration::from_micros(10)),
            ("7ns", Duration::from_nanos(7)),
            ("0.1s", Duration::from_millis(100)),
            ("1d", Duration::from_secs(86400)),
            // humantime's longer spellings.
            ("2h 5min", Duration::from_secs(2 * 3600 + 300)),
            ("3 seconds", Duration::from_secs(3)),
            ("1.5h", Duration::from_secs(5400)),
        ];
        for (s, d) in ok {
            assert_eq!(parse_duration(s), Ok(d), "{s}");
        }
        for s in [
            "",
            "1",
            "s",
            "-1s",
            "1.s",
            ".5s",
            "1..5s",
            "1x",
            "1sm",
            "ms",
            "1 2s",
            "1. 5s",
            "99999999999999999999999999999999999999999h",
            "0.0",
            "0.0.0",
            "18446744073709551616s",
            "0.5ns",
        ] {
            assert!(parse_duration(s).is_err(), "{s:?} parsed");
        }
        for (s, message) in [
            (
                "2 parsecs",
                "invalid duration `2 parsecs`: unknown unit `parsecs`",
            ),
            ("15", "invalid duration `15`: missing unit after `15`"),
            ("1 2s", "invalid duration `1 2s`: a space inside a number"),
            ("", "empty duration"),
            (
                "99999999999999999999s",
                "invalid duration `99999999999999999999s`: too long",
            ),
        ] {
            let e = parse_duration(s).unwrap_err();
            assert!(e.starts_with(message), "{s:?}: {e}");
            assert!(!e.contains('\n'), "{e:?}");
        }
    }

    #[test]
    fn parse_sizes() {
        for (s, n) in [
            ("64MiB", 64 << 20),
            ("1 GiB", 1 << 30),
            ("16MiB", 16 << 20),
            ("512KiB", 512 << 10),
            ("1000", 1000),
            ("1000B", 1000),
            (" 64 mib ", 64 << 20),
            ("1.5GiB", 3 << 29),
            ("2MB", 2_000_000),
            ("4Gi", 4 << 30),
        ] {
            assert_eq!(parse_size(s), Ok(n), "{s}");
        }
        for (s, message) in [
            ("lots", "`lots` is not a size"),
            ("", "`` is not a size"),
            ("-1MiB", "`-1MiB` is not a size"),
            ("1.2.3MiB", "`1.2.3MiB` is not a size"),
            ("64XB", "unknown size unit `XB` in `64XB`"),
            ("0", "size `0` must be above 0"),
            ("0MiB", "size `0MiB` must be above 0"),
            ("16EiB", "size `16EiB` must be above 0 and below 16 EiB"),
            ("99999999999999EiB", "below 16 EiB"),
        ] {
            let e = parse_size(s).unwrap_err();
            assert!(e.contains(message), "{s:?}: {e}");
        }
    }
}
