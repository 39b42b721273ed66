//! `weir savepoint inspect|verify|delete|edit DIR`: look into, check, remove
//! and edit savepoints without running a job.
//!
//! `edit` never changes a savepoint in place: it writes a new one (by default
//! the sibling directory `<DIR>-edited`, then `-edited-2`, `-edited-3`, ...),
//! checking every data file it copies, so the original stays as it was.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{ArgGroup, Args, Subcommand};

use weir_host::state::savepoint::{
    manifest_format_version, Metadata, SavedOperator, Savepoint, SavepointWriter, FORMAT_VERSION,
};

/// `weir savepoint ...`
#[derive(Debug, Subcommand)]
pub enum SavepointCommand {
    /// Take a savepoint of a running job (through its REST API); waits and prints its path.
    Trigger(TriggerArgs),
    /// Print a savepoint's job, source position, watermark, operators, states, timers and data files.
    Inspect(InspectArgs),
    /// Check every data file of a savepoint (present, size, SHA-256, readable).
    Verify(VerifyArgs),
    /// Remove a savepoint directory; anything that is not a weir savepoint is refused.
    Delete(DeleteArgs),
    /// Write a new savepoint with operator IDs renamed or operators' state dropped.
    Edit(EditArgs),
}

impl SavepointCommand {
    pub fn execute(self) -> anyhow::Result<()> {
        match self {
            SavepointCommand::Trigger(args) => args.execute(),
            SavepointCommand::Inspect(args) => args.execute(),
            SavepointCommand::Verify(args) => args.execute(),
            SavepointCommand::Delete(args) => args.execute(),
            SavepointCommand::Edit(args) => args.execute(),
        }
    }
}

/// Arguments of `weir savepoint trigger`.
#[derive(Debug, Args)]
pub struct TriggerArgs {
    /// The job's REST address.
    #[arg(long, value_name = "HOST:PORT", default_value = weir_host::api::client::DEFAULT_ADDR)]
    addr: String,
    /// Directory to write the savepoint in (default: the job file's `[savepoint] dir`).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// How long to wait for the savepoint, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 600)]
    timeout: u64,
}

impl TriggerArgs {
    pub fn execute(self) -> anyhow::Result<()> {
        let mut body = serde_json::json!({});
        if let Some(dir) = &self.dir {
            body["target-directory"] = serde_json::json!(weir_host::api::client::absolute(dir)?);
        }
        let location = weir_host::api::client::savepoint_and_wait(
            &self.addr,
            "savepoints",
            body,
            std::time::Duration::from_secs(self.timeout),
        )?;
        outln!("{location}");
        Ok(())
    }
}

/// Arguments of `weir savepoint inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The savepoint directory.
    dir: PathBuf,
    /// Print the `_metadata` manifest, with computed `totals`, as JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `weir savepoint verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The savepoint directory.
    dir: PathBuf,
}

/// Arguments of `weir savepoint delete`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The savepoint directory (its `_metadata` must be a weir savepoint manifest).
    dir: PathBuf,
}

/// Arguments of `weir savepoint edit`. Drops are applied first, then renames
/// in the order given.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("edits").required(true).multiple(true).args(["rename", "drop"])))]
pub struct EditArgs {
    /// The savepoint directory (left unchanged).
    dir: PathBuf,
    /// Rename operator ID OLD to NEW (repeatable).
    #[arg(long = "rename-operator", value_name = "OLD=NEW", value_parser = parse_rename)]
    rename: Vec<(String, String)>,
    /// Drop operator ID's state (repeatable).
    #[arg(long = "drop-operator", value_name = "ID")]
    drop: Vec<String>,
    /// The new savepoint's directory (must not exist) [default: DIR-edited].
    #[arg(long, short, value_name = "NEWDIR")]
    output: Option<PathBuf>,
}

fn parse_rename(s: &str) -> Result<(String, String), String> {
    let (old, new) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` is not OLD=NEW"))?;
    check_operator_id(new)?;
    if old.is_empty() {
        return Err(format!("`{s}` has no OLD operator ID"));
    }
    Ok((old.to_string(), new.to_string()))
}

/// An operator ID as a job file allows it: non-empty, only `[A-Za-z0-9_.-]`.
fn check_operator_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("the new operator ID is empty".to_string());
    }
    match id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        Some(c) => Err(format!(
            "operator ID `{id}` contains `{c}`: only letters, digits, `_`, `.` and `-` are allowed"
        )),
        None => Ok(()),
    }
}

/// `(it has `a`, `b`)`: the operator IDs of a manifest, for an error message.
fn operator_ids(meta: &Metadata) -> String {
    if meta.operators.is_empty() {
        return "(it has no operators)".to_string();
    }
    let ids: Vec<String> = meta
        .operators
        .iter()
        .map(|o| format!("`{}`", o.id))
        .collect();
    format!("(it has {})", ids.join(", "))
}

/// Operator `id` of savepoint `sp`, or an error listing the IDs there are.
pub(super) fn find_operator<'a>(sp: &'a Savepoint, id: &str) -> anyhow::Result<&'a SavedOperator> {
    sp.meta.operator(id).ok_or_else(|| {
        anyhow::anyhow!(
            "savepoint `{}` has no operator `{id}` {}",
            sp.dir.display(),
            operator_ids(&sp.meta)
        )
    })
}

/// Where a new savepoint made from `dir` goes: `output`, which must not
/// exist, else the first free sibling `<dir>-<suffix>`, `<dir>-<suffix>-2`, ...
pub(super) fn new_savepoint_dir(
    dir: &Path,
    output: Option<PathBuf>,
    suffix: &str,
) -> anyhow::Result<PathBuf> {
    if let Some(out) = output {
        if out.exists() || out.symlink_metadata().is_ok() {
            anyhow::bail!(
                "`{}` already exists; give --output a directory that does not",
                out.display()
            );
        }
        if out.file_name().is_none() {
            anyhow::bail!("`{}` cannot be a new savepoint directory", out.display());
        }
        return Ok(out);
    }
    // `sp/` names `sp`; `.` and `..` name what they stand for.
    let dir = match dir.file_name() {
        Some(_) => dir.to_path_buf(),
        None => dir
            .canonicalize()
            .with_context(|| format!("cannot resolve `{}`", dir.display()))?,
    };
    let name = dir
        .file_name()
        .with_context(|| format!("`{}` has no directory name", dir.display()))?
        .to_string_lossy()
        .into_owned();
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut n = 1;
    loop {
        let candidate = if n == 1 {
            parent.join(format!("{name}-{suffix}"))
        } else {
            parent.join(format!("{name}-{suffix}-{n}"))
        };
        if candidate.symlink_metadata().is_err() {
            return Ok(candidate);
        }
        n += 1;
    }
}

/// Writes a new savepoint at `out`: `build` fills the writer (copying or
/// rewriting data files) and returns the manifest. On any error what was
/// written is removed, so nothing that looks like a savepoint is left.
pub(super) fn write_savepoint(
    out: &Path,
    build: impl FnOnce(&SavepointWriter) -> anyhow::Result<Metadata>,
) -> anyhow::Result<PathBuf> {
    let name = out
        .file_name()
        .with_context(|| format!("`{}` cannot be a savepoint directory", out.display()))?
        .to_string_lossy()
        .into_owned();
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let writer = SavepointWriter::create_named(&parent, &name)?;
    match build(&writer) {
        Ok(meta) => Ok(writer.finish(&meta)?),
        Err(e) => {
            writer.abort();
            Err(e)
        }
    }
}

/// A source position as `file line=12, offset=120`, whatever its variant;
/// a Kafka position as `kafka topic=events, partition 0 offset=120, ...`.
fn show_position(position: &impl serde::Serialize) -> String {
    let value = serde_json::to_value(position).unwrap_or(serde_json::Value::Null);
    if let Some(k) = value.get("kafka") {
        let topic = k.get("topic").and_then(|t| t.as_str()).unwrap_or_default();
        let partitions: Vec<String> = k
            .get("partitions")
            .and_then(|p| p.as_array())
            .into_iter()
            .flatten()
            .map(|p| {
                format!(
                    "partition {} offset={}",
                    p.get("partition").unwrap_or(&serde_json::Value::Null),
                    p.get("offset").unwrap_or(&serde_json::Value::Null)
                )
            })
            .collect();
        if partitions.is_empty() {
            return format!("kafka topic={topic}, no partition read yet");
        }
        return format!("kafka topic={topic}, {}", partitions.join(", "));
    }
    let value = serde_json::to_value(position).unwrap_or(serde_json::Value::Null);
    match value {
        serde_json::Value::Object(m) if m.len() == 1 => {
            let (kind, fields) = m.into_iter().next().expect("one entry");
            let fields = match fields {
                serde_json::Value::Object(f) => f
                    .into_iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                serde_json::Value::Null => String::new(),
                other => other.to_string(),
            };
            format!("{} {fields}", kind.to_lowercase())
                .trim()
                .to_string()
        }
        serde_json::Value::String(s) => s.to_lowercase(),
        other => other.to_string(),
    }
}

fn show_time(t: i64) -> String {
    if t == i64::MIN {
        "none".to_string()
    } else {
        t.to_string()
    }
}

/// Totals over a manifest's operators.
#[derive(Debug, Default, serde::Serialize)]
struct Totals {
    operators: usize,
    states: usize,
    keys: u64,
    timers: u64,
    state_bytes: u64,
    data_files: usize,
    data_bytes: u64,
}

impl Totals {
    fn of(meta: &Metadata) -> Self {
        let mut t = Totals {
            operators: meta.operators.len(),
            ..Default::default()
        };
        for op in &meta.operators {
            t.states += op.states.len();
            t.keys += op.states.iter().map(|s| s.keys).sum::<u64>();
            t.timers += op.timers;
            t.state_bytes += op.state_bytes;
            t.data_files += op.files.len();
            t.data_bytes += op.files.iter().map(|f| f.bytes).sum::<u64>();
        }
        t
    }
}

impl InspectArgs {
    fn execute(self) -> anyhow::Result<()> {
        let sp = Savepoint::open(&self.dir)?;
        let meta = &sp.meta;
        let totals = Totals::of(meta);
        if self.json {
            let mut out = serde_json::to_value(meta)?;
            out["totals"] = serde_json::to_value(&totals)?;
            outln!("{}", serde_json::to_string_pretty(&out)?);
            return Ok(());
        }
        let kind = serde_json::to_value(meta.kind)?;
        outln!("savepoint        {}", self.dir.display());
        outln!("job              {}", meta.job);
        outln!("id               {}", meta.id);
        outln!("kind             {}", kind.as_str().unwrap_or_default());
        outln!("created at       {}", meta.created_at);
        outln!(
            "weir version     {} (format {} v{})",
            meta.weir_version,
            meta.format,
            meta.format_version
        );
        outln!("max parallelism  {}", meta.max_parallelism);
        outln!(
            "source           {} (max timestamp {}){}",
            show_position(&meta.source.position),
            show_time(meta.source.max_timestamp),
            if meta.finished { ", end of input" } else { "" }
        );
        if let Some(sink) = &meta.sink {
            outln!("sink             output length {} bytes", sink.output_len);
        }
        outln!("watermark        {}", show_time(meta.watermark));
        outln!(
            "data files       {}, {} bytes",
            totals.data_files,
            totals.data_bytes
        );
        outln!(
            "operators        {} ({} states, {} keys, {} timers, {} bytes of state)",
            totals.operators,
            totals.states,
            totals.keys,
            totals.timers,
            totals.state_bytes
        );
        for op in &meta.operators {
            outln!();
            outln!("operator `{}`", op.id);
            outln!("  logic          {} {}", op.name, op.version);
            outln!("  wasm sha256    {}", op.wasm_sha256);
            outln!("  parallelism    {}", op.parallelism);
            if op.states.is_empty() {
                outln!("  states         (none)");
            }
            let width = op.states.iter().map(|s| s.name.len()).max().unwrap_or(0);
            for (i, s) in op.states.iter().enumerate() {
                let label = if i == 0 { "states" } else { "" };
                outln!(
                    "  {label:<14} {:<width$}  {:<5}  v{:<3} {} keys",
                    s.name,
                    s.kind,
                    s.version,
                    s.keys
                );
            }
            outln!("  timers         {}", op.timers);
            outln!("  state bytes    {}", op.state_bytes);
            outln!(
                "  data files     {}, {} bytes",
                op.files.len(),
                op.files.iter().map(|f| f.bytes).sum::<u64>()
            );
            let width = op.files.iter().map(|f| f.file.len()).max().unwrap_or(0);
            let ranges: Vec<String> = op
                .files
                .iter()
                .map(|f| format!("{}..{}", f.key_groups[0], f.key_groups[1]))
                .collect();
            let range_width = ranges.iter().map(String::len).max().unwrap_or(0);
            for (f, range) in op.files.iter().zip(&ranges) {
                outln!(
                    "    {:<width$}  key groups {range:<range_width$}  {} bytes",
                    f.file,
                    f.bytes
                );
            }
        }
        Ok(())
    }
}

impl VerifyArgs {
    fn execute(self) -> anyhow::Result<()> {
        let sp = Savepoint::open(&self.dir)?;
        let (files, bytes) = sp.verify()?;
        outln!(
            "savepoint {} is intact: {files} data files, {bytes} bytes",
            self.dir.display()
        );
        Ok(())
    }
}

impl DeleteArgs {
    fn execute(self) -> anyhow::Result<()> {
        let dir = &self.dir;
        if dir
            .symlink_metadata()
            .map(|m| m.file_type().is_symlink())
            .unwrap_or(false)
        {
            anyhow::bail!(
                "`{}` is a symbolic link; give the savepoint directory itself",
                dir.display()
            );
        }
        // Only `_metadata` is required to be sound: a savepoint whose data
        // files are damaged or missing may be deleted.
        let version = manifest_format_version(dir)
            .with_context(|| format!("not deleting `{}`", dir.display()))?;
        let what = if version == FORMAT_VERSION {
            let sp = Savepoint::open(dir)
                .with_context(|| format!("not deleting `{}`", dir.display()))?;
            format!("job `{}`, id {}", sp.meta.job, sp.meta.id)
        } else {
            format!("format version {version}")
        };
        let mut files = 0u64;
        let mut bytes = 0u64;
        for entry in
            std::fs::read_dir(dir).with_context(|| format!("cannot list `{}`", dir.display()))?
        {
            let entry = entry.with_context(|| format!("cannot list `{}`", dir.display()))?;
            let meta = entry
                .metadata()
                .with_context(|| format!("cannot read `{}`", entry.path().display()))?;
            if meta.is_dir() {
                anyhow::bail!(
                    "`{}` holds a directory `{}`, which no savepoint has; not deleting it",
                    dir.display(),
                    entry.file_name().to_string_lossy()
                );
            }
            files += 1;
            bytes += meta.len();
        }
        std::fs::remove_dir_all(dir)
            .with_context(|| format!("cannot remove `{}`", dir.display()))?;
        outln!(
            "deleted savepoint {} ({what}): {files} files, {bytes} bytes",
            dir.display()
        );
        Ok(())
    }
}

impl EditArgs {
    fn execute(self) -> anyhow::Result<()> {
        let sp = Savepoint::open(&self.dir)?;
        let mut meta = sp.meta.clone();
        let mut dropped: Vec<&str> = Vec::new();
        for id in &self.drop {
            if dropped.contains(&id.as_str()) {
                anyhow::bail!("--drop-operator `{id}` is given twice");
            }
            find_operator(&sp, id)?;
            dropped.push(id);
        }
        meta.operators.retain(|o| !dropped.contains(&o.id.as_str()));
        for (old, new) in &self.rename {
            if dropped.contains(&old.as_str()) {
                anyhow::bail!("operator `{old}` is both dropped and renamed");
            }
            let Some(i) = meta.operators.iter().position(|o| &o.id == old) else {
                anyhow::bail!(
                    "savepoint `{}` has no operator `{old}` {}",
                    self.dir.display(),
                    operator_ids(&meta)
                );
            };
            if meta.operator(new).is_some() {
                anyhow::bail!(
                    "cannot rename operator `{old}` to `{new}`: savepoint `{}` already has an operator `{new}` (drop it with --drop-operator {new}, or choose another ID)",
                    self.dir.display()
                );
            }
            meta.operators[i].id = new.clone();
        }
        let out = new_savepoint_dir(&self.dir, self.output, "edited")?;
        let written = write_savepoint(&out, |writer| {
            for op in &meta.operators {
                writer.copy_operator(&sp, op)?;
            }
            Ok(meta.clone())
        })?;
        for id in &dropped {
            eprintln!("dropped operator `{id}`");
        }
        for (old, new) in &self.rename {
            eprintln!("renamed operator `{old}` to `{new}`");
        }
        outln!("{}", written.display());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renames_parse() {
        assert_eq!(
            parse_rename("a=b-2").unwrap(),
            ("a".to_string(), "b-2".to_string())
        );
        assert!(parse_rename("ab").is_err());
        assert!(parse_rename("a=").is_err());
        assert!(parse_rename("=b").is_err());
        assert!(parse_rename("a=b c").unwrap_err().contains("` `"));
    }

    #[test]
    fn positions_read_well() {
        use weir_host::model::SourcePosition;
        assert_eq!(
            show_position(&SourcePosition::File {
                offset: 120,
                line: 12
            }),
            "file line=12, offset=120"
        );
        assert_eq!(
            show_position(&SourcePosition::Generator { next: 3 }),
            "generator next=3"
        );
        assert_eq!(
            show_position(&SourcePosition::Kafka {
                topic: "events".into(),
                partitions: vec![
                    weir_host::model::KafkaPartition {
                        partition: 0,
                        offset: 120,
                        max_timestamp: 5
                    },
                    weir_host::model::KafkaPartition {
                        partition: 1,
                        offset: 98,
                        max_timestamp: 5
                    }
                ]
            }),
            "kafka topic=events, partition 0 offset=120, partition 1 offset=98"
        );
    }

    #[test]
    fn default_outputs_are_free_siblings() {
        let dir = tempfile::tempdir().unwrap();
        let sp = dir.path().join("sp");
        std::fs::create_dir(&sp).unwrap();
        assert_eq!(
            new_savepoint_dir(&sp, None, "edited").unwrap(),
            dir.path().join("sp-edited")
        );
        std::fs::create_dir(dir.path().join("sp-edited")).unwrap();
        assert_eq!(
            new_savepoint_dir(&sp, None, "edited").unwrap(),
            dir.path().join("sp-edited-2")
        );
        assert_eq!(
            new_savepoint_dir(Path::new("sp"), None, "x").unwrap(),
            Path::new("./sp-x")
        );
        assert!(new_savepoint_dir(&sp, Some(sp.clone()), "edited").is_err());
    }
}
