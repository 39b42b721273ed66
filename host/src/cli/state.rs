//! `weir state export|import`: one declared state of one operator of a
//! savepoint as JSON lines, out and back in.
//!
//! The format is `weir_host::state::savepoint`'s [`encode_jsonl`] and
//! [`decode_jsonl`] (described in `host/src/state/savepoint/jsonl.rs`).
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
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Subcommand};

use weir_host::model::keygroup::key_group;
use weir_host::model::{show_key, StateKind};
use weir_host::state::keyed::{kind_from_name, kind_name, StoredEntry};
use weir_host::state::savepoint::{
    decode_jsonl, encode_jsonl, SavedOperator, SavedState, Savepoint,
};

use super::savepoint::{find_operator, new_savepoint_dir, write_savepoint};

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

/// `--kind`: `value`, `map` or `list`.
fn kind_parser() -> impl TypedValueParser<Value = StateKind> {
    PossibleValuesParser::new(["value", "map", "list"])
        .map(|name| kind_from_name(&name).expect("one of the possible values"))
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
    #[arg(long, value_parser = kind_parser())]
    kind: Option<StateKind>,
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

impl ExportArgs {
    fn execute(self) -> anyhow::Result<()> {
        let sp = Savepoint::open(&self.dir)?;
        let op = find_operator(&sp, &self.operator)?;
        let state = find_state(&sp, op, &self.state)?;
        let entries = sp.state_entries(&op.id, &state.name, &state.kind)?;
        let text = encode_jsonl(&entries);
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
    fn read_input(
        &self,
        kind: StateKind,
    ) -> anyhow::Result<BTreeMap<Vec<u8>, (usize, StoredEntry)>> {
        let name = self.input_name();
        let reader: Box<dyn BufRead> = if self.input.as_os_str() == "-" {
            Box::new(std::io::stdin().lock())
        } else {
            let file = std::fs::File::open(&self.input)
                .with_context(|| format!("cannot open `{name}`"))?;
            Box::new(std::io::BufReader::new(file))
        };
        Ok(decode_jsonl(reader, &name, kind)?)
    }

    fn execute(self) -> anyhow::Result<()> {
        let sp = Savepoint::open(&self.dir)?;
        let op = find_operator(&sp, &self.operator)?;
        let saved = op.states.iter().find(|s| s.name == self.state);
        let kind = match (saved, self.kind) {
            (Some(s), given) => {
                let Some(kind) = kind_from_name(&s.kind) else {
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
                        kind_name(kind),
                        kind_name(given)
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
                    "{}:{line}: {} is in key group {kg}, which no data file of operator `{}` holds",
                    self.input_name(),
                    show_key(Some(key)),
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
                    kind: kind_name(kind).to_string(),
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
            kind_name(kind),
            op.id
        );
        outln!("{}", written.display());
        Ok(())
    }
}
