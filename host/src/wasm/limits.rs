//! What an operator may reach and use: the WASI capabilities it is granted
//! (`[operators.capabilities]`) and the budgets of each of its subtasks
//! (`[operators.limits]`). Each reads and checks its own table of the job
//! file (`from_table`), as a connector does; the operator instance
//! enforces them.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::{Spanned, Value};

use crate::model::config::{Entries, Field, JobError, JobFile};

/// `[operators.capabilities]`: the WASI access an operator is granted. By
/// default it has none: no files, no environment variables, no network. A
/// guest that tries gets a WASI error (no such file, variable unset,
/// permission denied), never access.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Capabilities {
    /// `env = { NAME = "value" }`: the environment the operator sees (weir's
    /// own environment is never passed through).
    pub env: Vec<(String, String)>,
    /// `dirs` (read-only) and `writable_dirs`: folders of the host the
    /// operator sees, each under a guest path.
    pub dirs: Vec<DirGrant>,
    /// `network = true`: outgoing and incoming TCP and UDP, and name lookups.
    pub network: bool,
}

/// `[operators.limits]`: the budgets of each subtask of an operator.
/// Exceeding one traps the subtask with a message naming the operator, the
/// subtask, the budget and its value; the job's restart strategy applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// `memory`: largest linear memory of an instance, in bytes.
    pub memory: u64,
    /// `cpu_per_call`: longest time one guest call may run.
    pub cpu_per_call: Duration,
    /// `output_per_call`: most events one `process` or `on-timer` call may emit.
    pub output_per_call: u64,
    /// `state_value_size`: largest state value, in bytes.
    pub state_value_size: u64,
    /// `state_memory`: most state a subtask may hold in the host, in bytes
    /// of keys and values plus [`crate::state::keyed::ENTRY_OVERHEAD`] per key, map
    /// entry and list element.
    pub state_memory: u64,
    /// `pending_timers`: most timers a subtask may have pending.
    pub pending_timers: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory: 1 << 30,
            cpu_per_call: Duration::from_secs(10),
            output_per_call: 1_000_000,
            state_value_size: 16 << 20,
            state_memory: 4 << 30,
            pending_timers: 10_000_000,
        }
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

/// `[operators.limits]` as read, before its values are checked.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "an [operators.limits] table")]
pub struct RawLimits {
    memory: Field,
    cpu_per_call: Field,
    output_per_call: Field,
    state_value_size: Field,
    state_memory: Field,
    pending_timers: Field,
}

/// `[operators.capabilities]` as read, before its values are checked.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "an [operators.capabilities] table")]
pub struct RawCapabilities {
    env: Option<Spanned<Entries>>,
    dirs: Option<Spanned<Entries>>,
    writable_dirs: Option<Spanned<Entries>>,
    network: Field,
}

impl Limits {
    /// Checks operator `id`'s `[operators.limits]` table; absent fields take
    /// their defaults.
    pub fn from_table(
        cx: &JobFile<'_>,
        id: &str,
        raw: &Spanned<RawLimits>,
    ) -> Result<Limits, JobError> {
        let s = cx.section(format!("operator `{id}` limits"), raw.span());
        let r = raw.get_ref();
        let size = |name: &str, v: &Spanned<Value>| s.size(name, v);
        let d = Limits::default();
        let cpu = match &r.cpu_per_call {
            Some(v) => {
                let t = s.duration("cpu_per_call", v)?;
                if t < Duration::from_millis(10) {
                    return Err(s.fail(
                        v.span(),
                        "`cpu_per_call` must be at least 10ms (it is measured in 10 ms ticks)",
                    ));
                }
                t
            }
            None => d.cpu_per_call,
        };
        Ok(Limits {
            memory: s.opt(&r.memory, |v| size("memory", v))?.unwrap_or(d.memory),
            cpu_per_call: cpu,
            output_per_call: s
                .opt(&r.output_per_call, |v| {
                    s.int("output_per_call", v, 1, i64::MAX)
                })?
                .unwrap_or(d.output_per_call),
            state_value_size: s
                .opt(&r.state_value_size, |v| size("state_value_size", v))?
                .unwrap_or(d.state_value_size),
            state_memory: s
                .opt(&r.state_memory, |v| size("state_memory", v))?
                .unwrap_or(d.state_memory),
            pending_timers: s
                .opt(&r.pending_timers, |v| {
                    s.int("pending_timers", v, 1, i64::MAX)
                })?
                .unwrap_or(d.pending_timers),
        })
    }
}

impl Capabilities {
    /// Checks operator `id`'s `[operators.capabilities]` table: guest paths
    /// absolute and granted once, host folders that exist.
    pub fn from_table(
        cx: &JobFile<'_>,
        id: &str,
        raw: &Spanned<RawCapabilities>,
    ) -> Result<Capabilities, JobError> {
        let s = cx.section(format!("operator `{id}` capabilities"), raw.span());
        let r = raw.get_ref();
        let strings = |name: &str, table: &Option<Spanned<Entries>>| {
            let mut out = Vec::new();
            if let Some(t) = table {
                for (key, value) in &t.get_ref().0 {
                    let v = s.string(&format!("{name}.{key}"), value)?;
                    out.push((key.clone(), v.to_owned(), value.span()));
                }
            }
            Ok::<_, JobError>(out)
        };
        let env = strings("env", &r.env)?
            .into_iter()
            .map(|(k, v, _)| (k, v))
            .collect();
        let mut dirs: Vec<DirGrant> = Vec::new();
        for (name, table, writable) in [
            ("dirs", &r.dirs, false),
            ("writable_dirs", &r.writable_dirs, true),
        ] {
            for (guest, host, span) in strings(name, table)? {
                if !guest.starts_with('/') {
                    return Err(s.fail(
                        span,
                        format!(
                            "`{name}`: the guest path `{}` must be absolute, e.g. `\"/data\" = \"{}\"`",
                            guest.escape_debug(),
                            host.escape_debug()
                        ),
                    ));
                }
                if dirs.iter().any(|d| d.guest == guest) {
                    return Err(s.fail(
                        span,
                        format!("guest path `{}` is granted twice", guest.escape_debug()),
                    ));
                }
                if host.is_empty() {
                    return Err(s.fail(
                        span,
                        format!("`{name}`: the host folder of `{guest}` must not be empty"),
                    ));
                }
                let path = cx.resolve(&host);
                if !path.is_dir() {
                    return Err(s.fail(
                        span,
                        format!(
                            "`{name}`: `{}` (granted as `{guest}`) is not a folder",
                            path.display()
                        ),
                    ));
                }
                dirs.push(DirGrant {
                    guest,
                    host: path,
                    writable,
                });
            }
        }
        let network = s
            .opt(&r.network, |v| s.boolean("network", v))?
            .unwrap_or(false);
        Ok(Capabilities { env, dirs, network })
    }
}
