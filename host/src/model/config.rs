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

/// Parses a duration such as `"250ms"`, `"2s"`, `"1.5s"`, `"5m"`, `"1h"` or `"0"`.
///
/// A duration is one or more parts, each a decimal number and a unit (`ns`, `us`
/// or `µs`, `ms`, `s`, `m`, `h`, `d`), e.g. `"1m30s"`; whitespace between parts
/// and between number and unit is allowed. A bare number is only allowed for zero.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    const HINT: &str = "expected a number and a unit (ms, s, m, h), e.g. `250ms` or `1.5s`";
    let shown = s.escape_debug();
    let t = s.trim();
    if t.is_empty() {
        return Err(format!("empty duration, {HINT}"));
    }
    let zero_digits = t.bytes().all(|b| b == b'0' || b == b'.') && t.starts_with('0');
    if zero_digits && t.bytes().filter(|&b| b == b'.').count() <= 1 && !t.ends_with('.') {
        return Ok(Duration::ZERO);
    }
    let mut total: u128 = 0;
    let mut rest = t;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, after) = rest.split_at(num_len);
        if num.is_empty() {
            return Err(format!("invalid duration `{shown}`: {HINT}"));
        }
        let after = after.trim_start();
        let unit_len = after
            .find(|c: char| !c.is_alphabetic())
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let per_unit: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "d" => 86_400_000_000_000,
            "" => {
                return Err(format!(
                    "invalid duration `{shown}`: missing unit after `{num}`, {HINT}"
                ))
            }
            other => {
                return Err(format!(
                    "invalid duration `{shown}`: unknown unit `{}`, expected one of `ns`, `us`, `ms`, `s`, `m`, `h`, `d`",
                    other.escape_debug()
                ))
            }
        };
        let part = decimal_times(num, per_unit)
            .ok_or_else(|| format!("invalid duration `{shown}`: bad number `{num}`, {HINT}"))?;
        total = total
            .checked_add(part)
            .ok_or_else(|| format!("invalid duration `{shown}`: too long"))?;
        rest = next.trim_start();
    }
    let secs = u64::try_from(total / 1_000_000_000)
        .map_err(|_| format!("invalid duration `{shown}`: too long"))?;
    // The remainder is below 1e9, so it fits in u32.
    let nanos = u32::try_from(total % 1_000_000_000).unwrap_or(0);
    Ok(Duration::new(secs, nanos))
}

/// `num` (digits, optionally `.` and more digits) times `per_unit`, truncated to
/// whole units of `per_unit`'s scale. `None` if `num` is malformed or too large.
fn decimal_times(num: &str, per_unit: u128) -> Option<u128> {
    let (int, frac) = match num.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (num, None),
    };
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut value: u128 = 0;
    for b in int.bytes() {
        value = value.checked_mul(10)?.checked_add(u128::from(b - b'0'))?;
    }
    let mut total = value.checked_mul(per_unit)?;
    if let Some(frac) = frac {
        if frac.is_empty() || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        // 20 digits are far below a nanosecond for every unit; the rest is dropped.
        let mut f: u128 = 0;
        let mut scale: u128 = 1;
        for b in frac.bytes().take(20) {
            f = f * 10 + u128::from(b - b'0');
            scale *= 10;
        }
        total = total.checked_add(f.checked_mul(per_unit)? / scale)?;
    }
    Some(total)
}

/// The directory of the job file, absolute, without touching the file system.
/// A duration as the job file writes it: `10s`, `250ms`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// Parses a size such as `"64MiB"`, `"1GiB"`, `"512KiB"`, `"1000B"` or `"1000"` (bytes).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    if digits.is_empty() {
        return Err(format!(
            "`{}` is not a size: expected e.g. `64MiB`",
            s.escape_debug()
        ));
    }
    let shift = match unit.trim() {
        "" | "B" => 0,
        "KiB" | "K" | "KB" => 10,
        "MiB" | "M" | "MB" => 20,
        "GiB" | "G" | "GB" => 30,
        other => {
            return Err(format!(
                "unknown size unit `{}` in `{}`: use B, KiB, MiB or GiB, e.g. `64MiB`",
                other.escape_debug(),
                s.escape_debug()
            ))
        }
    };
    let n: u64 = digits.parse().map_err(|_| {
        format!(
            "`{}` is not a size: expected e.g. `64MiB`",
            s.escape_debug()
        )
    })?;
    n.checked_mul(1 << shift).filter(|&b| b > 0).ok_or_else(|| {
        format!(
            "size `{}` must be above 0 and below 16 EiB",
            s.escape_debug()
        )
    })
}

/// A table whose fields its owner takes one by one ([`Fields::take`]); what
/// is left at the end ([`Fields::finish`]) is an error naming the field and
/// its line. A connector reads its `[source]` or `[sink]` table this way, so
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
    fn parse_durations() {
        let ok = [
            ("250ms", Duration::from_millis(250)),
            ("2s", Duration::from_secs(2)),
            ("1.5s", Duration::from_millis(1500)),
            ("5m", Duration::from_secs(300)),
            ("1h", Duration::from_secs(3600)),
            ("0", Duration::ZERO),
            ("0s", Duration::ZERO),
            ("0.0", Duration::ZERO),
            ("1m30s", Duration::from_secs(90)),
            (" 2 s ", Duration::from_secs(2)),
            ("10us", Duration::from_micros(10)),
            ("10µs", Duration::from_micros(10)),
            ("7ns", Duration::from_nanos(7)),
            ("0.1s", Duration::from_millis(100)),
            ("1d", Duration::from_secs(86400)),
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
            "99999999999999999999999999999999999999999h",
            "0.0.0",
            "18446744073709551616s",
        ] {
            assert!(parse_duration(s).is_err(), "{s:?} parsed");
        }
    }
}
