//! Shadow runs: a candidate `.wasm` runs beside an operator's current logic,
//! on a copy of its state and the same input, writes to no sink, and its
//! output is diffed with the current logic's ([`Comparator`]).
//!
//! # Matching
//!
//! Outputs are compared per *cause*: one input batch handed to the
//! operator, or one firing of its timers (the watermark passing a time, or
//! the clock). The output of a cause is grouped by output key, keeping
//! the order each side emitted it in; within a key, the `i`-th event of
//! the live side is paired with the `i`-th of the candidate: a pair whose
//! value and timestamp agree is *equal*, else *different*; the events past
//! the shorter side are *only-live* or *only-candidate*. *Compared* counts
//! every pair and every unpaired event. Operators need not emit in the same
//! order across keys, but do within a key (a per-key running result, the
//! usual shape, always does). A difference names its key and, when the
//! cause was an input batch from the source, the source offset of the
//! input event of that key at the same place (the `i`-th event of the key
//! in the batch, else its last): for an operator that emits one event per
//! input, exactly the event that caused it.
//!
//! Every difference goes, as one JSON line, to the diff file; the first
//! [`DIFFERENCES_KEPT`] are also kept for the status.
//!
//! # Offline ([`replay`])
//!
//! Both logics are restored from a savepoint into one subtask owning every
//! key group, by the rules of a restore ([`plan_states`]); recorded input
//! is replayed in the source's batches, the watermark following it as the
//! source's would ([`watermark_after`] with the job's `watermark_delay`),
//! then set to the end of the input; processing-time timers due at the end
//! fire then.
//!
//! # Live ([`ShadowControl`], [`ShadowTap`])
//!
//! One shadow run at a time per job. A request loads and checks the
//! candidate before anything changes. Each live subtask of the operator
//! joins at the next checkpoint barrier it snapshots: it takes a second
//! copy-on-write snapshot of its state and timers right after the
//! checkpoint's (O(shards); nothing changed in between, so the checkpoint's
//! change tracking is untouched) and a thread of its own builds the
//! candidate's context from it and opens the candidate, under the
//! operator's `[operators.limits]` and `[operators.capabilities]`. From then
//! on the subtask hands each input batch (cloned, with its offsets), each
//! timer firing and the live output of either to that thread through a
//! bounded queue with `try_send`: the live path never waits; a full queue
//! ends the run as `FELL_BEHIND`. The candidate's event-time timers fire as
//! the live watermark moves; its processing-time timers fire when the live
//! subtask's do, at the same time. An event the candidate rejects as bad
//! input is skipped and counted; a trap, budget overrun or fatal error ends
//! the run as `FAILED`, never the job. A subtask joins a run once: after a
//! restart of the job, the new subtasks do not join again, and the run
//! ends (`STOPPED`) once the subtasks it ran beside are gone.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crossbeam_channel::{Receiver, Sender, TrySendError};

use serde::Serialize;

use crate::connectors::registry::{recorded_input, SourceOpen};
use crate::engine::channel::watermark_after;
use crate::engine::errors::{refused, Refusal, RefusalKind};
use crate::job::{JobSpec, SourceSpec};
use crate::model::{
    now_ms, Batch, Blobs, GuestError, LogicId, StateSpec, TaskInfo, TimeDomain, Timers,
};
use crate::state::keyed::{StateChange, StateSnapshot};
use crate::state::restore::{self, OperatorPlan, Restore, RestorePlan, RestoreSource};
use crate::state::savepoint::Savepoint;
use crate::state::timers::TimerSnapshot;
use crate::wasm::component::{Components, LoadedOperator};
use crate::wasm::operator::{OperatorImpl, OperatorInstance, Setup, SubtaskCtx, WasmOperator};

/// Differences kept for the status (the diff file has them all).
pub const DIFFERENCES_KEPT: usize = 20;

/// What the comparator counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Counts {
    /// Input events handed to both sides.
    pub inputs: u64,
    /// Output events compared: pairs plus unpaired events.
    pub compared: u64,
    /// Pairs with the same value and timestamp.
    pub equal: u64,
    /// Pairs that differ.
    pub different: u64,
    /// Events only the live logic emitted.
    pub only_live: u64,
    /// Events only the candidate emitted.
    pub only_candidate: u64,
}

impl Counts {
    /// Adds `other` to these counts.
    pub fn add(&mut self, other: &Counts) {
        self.inputs += other.inputs;
        self.compared += other.compared;
        self.equal += other.equal;
        self.different += other.different;
        self.only_live += other.only_live;
        self.only_candidate += other.only_candidate;
    }
}

/// The kind of a difference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DiffKind {
    /// Both emitted an event at this place, with another value or timestamp.
    Different,
    /// Only the live logic emitted it.
    OnlyLive,
    /// Only the candidate emitted it.
    OnlyCandidate,
}

/// One emitted event, as a difference shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Emitted {
    /// The value, as text (bytes that are not UTF-8 as `�`).
    pub value: String,
    /// Its timestamp.
    pub timestamp: i64,
}

/// One difference between the live output and the candidate's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    /// Which kind.
    pub kind: DiffKind,
    /// The subtask it was seen in.
    pub subtask: u32,
    /// The output key, as text (`null`: no key).
    pub key: Option<String>,
    /// The source offset of the input event it came from, when known.
    pub offset: Option<u64>,
    /// Where that is, e.g. ``offset 40 (line 41 of `/data/in.jsonl`)``; or
    /// the timer firing it came from.
    pub at: String,
    /// The live logic's event.
    pub live: Option<Emitted>,
    /// The candidate's event.
    pub candidate: Option<Emitted>,
}

/// What a set of outputs was produced by.
#[derive(Debug, Clone, Copy)]
pub enum Cause<'a> {
    /// One input batch; its events' source offsets when it came from the source.
    Input {
        /// The batch.
        batch: &'a Batch,
        /// Its source offsets.
        offsets: Option<&'a [u64]>,
    },
    /// Timers of `domain` due at `time` fired.
    Timers {
        /// The time domain.
        domain: TimeDomain,
        /// The watermark or clock they fired at.
        time: i64,
    },
}

/// The JSON-lines file every difference is written to, shared by the
/// comparators of one shadow run.
#[derive(Clone)]
pub struct DiffFile {
    path: PathBuf,
    out: Arc<Mutex<std::io::BufWriter<std::fs::File>>>,
}

impl DiffFile {
    /// Creates (or truncates) `path`, with its folder.
    pub fn create(path: &Path) -> Result<Self, String> {
        let fail = |e: std::io::Error| format!("cannot create diff file `{}`: {e}", path.display());
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(fail)?;
        }
        let file = std::fs::File::create(path).map_err(fail)?;
        Ok(DiffFile {
            path: path.to_path_buf(),
            out: Arc::new(Mutex::new(std::io::BufWriter::new(file))),
        })
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write(&self, diffs: &[Difference]) -> Result<(), String> {
        let mut out = self.out.lock().expect("diff file lock");
        let mut write = || -> std::io::Result<()> {
            for d in diffs {
                serde_json::to_writer(&mut *out, d)?;
                out.write_all(b"\n")?;
            }
            out.flush()
        };
        write().map_err(|e| format!("cannot write diff file `{}`: {e}", self.path.display()))
    }
}

/// Compares the live output with the candidate's, cause by cause (see
/// the module doc), and counts and records the differences.
pub struct Comparator {
    /// The counts so far.
    pub counts: Counts,
    /// The first [`DIFFERENCES_KEPT`] differences.
    pub first: Vec<Difference>,
    subtask: u32,
    source: Option<SourceSpec>,
    file: Option<DiffFile>,
}

/// Output events of one key: (value, timestamp), in order.
type KeyOutputs<'a> = Vec<(&'a [u8], i64)>;

/// The output of `batches` grouped by key, keys in order of first appearance.
fn by_key<'a>(
    batches: &'a [Batch],
    order: &mut Vec<Option<&'a [u8]>>,
    index: &mut HashMap<Option<&'a [u8]>, usize>,
) -> Vec<KeyOutputs<'a>> {
    let mut groups: Vec<KeyOutputs<'a>> = vec![Vec::new(); order.len()];
    for batch in batches {
        for e in batch.iter() {
            let i = *index.entry(e.key).or_insert_with(|| {
                order.push(e.key);
                order.len() - 1
            });
            if groups.len() <= i {
                groups.resize_with(i + 1, Vec::new);
            }
            groups[i].push((e.value, e.timestamp));
        }
    }
    groups
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

impl Comparator {
    /// A comparator for subtask `subtask`; `source` names offsets, `file`
    /// receives every difference.
    pub fn new(subtask: u32, source: Option<SourceSpec>, file: Option<DiffFile>) -> Self {
        Comparator {
            counts: Counts::default(),
            first: Vec::new(),
            subtask,
            source,
            file,
        }
    }

    /// Compares what `cause` made the live logic emit (`live`) with what
    /// it made the candidate emit; returns the differences found.
    pub fn compare(
        &mut self,
        cause: Cause<'_>,
        live: &[Batch],
        candidate: &[Batch],
    ) -> Result<usize, String> {
        let mut order = Vec::new();
        let mut index = HashMap::new();
        let live_groups = by_key(live, &mut order, &mut index);
        let cand_groups = by_key(candidate, &mut order, &mut index);
        if let Cause::Input { batch, .. } = cause {
            self.counts.inputs += batch.len() as u64;
        }
        let mut diffs = Vec::new();
        for (i, key) in order.iter().enumerate() {
            let l = live_groups.get(i).map_or(&[][..], Vec::as_slice);
            let c = cand_groups.get(i).map_or(&[][..], Vec::as_slice);
            for j in 0..l.len().max(c.len()) {
                self.counts.compared += 1;
                let (kind, lv, cv) = match (l.get(j), c.get(j)) {
                    (Some(a), Some(b)) if a == b => {
                        self.counts.equal += 1;
                        continue;
                    }
                    (Some(a), Some(b)) => {
                        self.counts.different += 1;
                        (DiffKind::Different, Some(a), Some(b))
                    }
                    (Some(a), None) => {
                        self.counts.only_live += 1;
                        (DiffKind::OnlyLive, Some(a), None)
                    }
                    (None, Some(b)) => {
                        self.counts.only_candidate += 1;
                        (DiffKind::OnlyCandidate, None, Some(b))
                    }
                    (None, None) => continue,
                };
                let (offset, at) = self.place(cause, *key, j);
                let emitted = |e: &(&[u8], i64)| Emitted {
                    value: text(e.0),
                    timestamp: e.1,
                };
                diffs.push(Difference {
                    kind,
                    subtask: self.subtask,
                    key: key.map(text),
                    offset,
                    at,
                    live: lv.map(emitted),
                    candidate: cv.map(emitted),
                });
            }
        }
        let n = diffs.len();
        if n > 0 {
            if let Some(f) = &self.file {
                f.write(&diffs)?;
            }
            let room = DIFFERENCES_KEPT.saturating_sub(self.first.len());
            self.first.extend(diffs.into_iter().take(room));
        }
        Ok(n)
    }

    /// Where a batch with source offsets `offsets` came from, for messages.
    pub fn place_of(&self, offsets: &[u64]) -> String {
        let locate = |o: u64| {
            self.source
                .as_ref()
                .map_or(format!("offset {o}"), |s| s.locate(o))
        };
        match offsets {
            [] => "no offset".to_string(),
            [one] => locate(*one),
            [first, .., last] => format!("{} to {}", locate(*first), locate(*last)),
        }
    }

    /// The offset and place of the `j`-th output of `key` for `cause`.
    fn place(&self, cause: Cause<'_>, key: Option<&[u8]>, j: usize) -> (Option<u64>, String) {
        match cause {
            Cause::Input { batch, offsets } => {
                let of_key: Vec<usize> = batch
                    .iter()
                    .enumerate()
                    .filter(|(_, e)| e.key == key)
                    .map(|(i, _)| i)
                    .collect();
                let event = of_key.get(j).or(of_key.last()).copied();
                match (event, offsets) {
                    (Some(i), Some(offsets)) => match offsets.get(i) {
                        Some(&o) => (
                            Some(o),
                            self.source
                                .as_ref()
                                .map_or(format!("offset {o}"), |s| s.locate(o)),
                        ),
                        None => (None, "an input batch".to_string()),
                    },
                    (Some(i), None) => (
                        None,
                        format!(
                            "event {} of a batch of {} from the operator upstream",
                            i + 1,
                            batch.len()
                        ),
                    ),
                    (None, _) => (None, "an input batch with no event of this key".to_string()),
                }
            }
            Cause::Timers { domain, time } => {
                let what = match domain {
                    TimeDomain::EventTime => "event-time timers at watermark",
                    TimeDomain::ProcessingTime => "processing-time timers at",
                };
                let time = if time == i64::MAX {
                    "the end of the input".to_string()
                } else {
                    time.to_string()
                };
                (None, format!("{what} {time}"))
            }
        }
    }
}

/// Most timers handed to one `on-timer` call.
const TIMERS_PER_CALL: usize = 4096;

/// One side of a shadow run: an operator instance, driven as a subtask
/// drives it. An event it rejects as bad input is skipped (counted in
/// `rejected`, written nowhere) and the call goes on with the events after
/// it; a trap, budget overrun or fatal error is an error.
pub struct Side {
    /// The instance.
    pub op: Box<dyn OperatorInstance>,
    /// Events it rejected as bad input.
    pub rejected: u64,
}

impl Side {
    /// A side over `op`.
    pub fn new(op: Box<dyn OperatorInstance>) -> Self {
        Side { op, rejected: 0 }
    }

    /// Processes `input`; returns what it emitted.
    pub fn process(&mut self, input: &Batch) -> Result<Vec<Batch>, String> {
        let mut out = Vec::new();
        let mut call = input.clone();
        while !call.is_empty() {
            match self.op.process(&mut call)? {
                Ok(b) => {
                    out.push(b);
                    break;
                }
                Err(GuestError::BadInput(r)) => {
                    let next = r.index as usize + 1;
                    out.push(r.output);
                    self.rejected += 1;
                    call = call.tail(next.min(call.len()));
                }
                Err(GuestError::Fatal(m)) => return Err(format!("failed: {m}")),
            }
        }
        Ok(out)
    }

    /// Fires its timers of `domain` due at `time`; returns what it emitted.
    pub fn fire(&mut self, domain: TimeDomain, time: i64) -> Result<Vec<Batch>, String> {
        let mut out = Vec::new();
        loop {
            let mut keys = Blobs::with_capacity(0);
            let mut timestamps = Vec::new();
            let popped =
                self.op
                    .ctx()
                    .timers
                    .pop_due_with(domain, time, TIMERS_PER_CALL, |ts, key| {
                        keys.push(key);
                        timestamps.push(ts);
                    });
            if popped == 0 {
                return Ok(out);
            }
            let mut fired = Timers {
                domain,
                keys,
                timestamps,
            };
            match self.op.on_timer(&mut fired)? {
                Ok(b) => out.push(b),
                Err(GuestError::Fatal(m)) => return Err(format!("failed in on_timer: {m}")),
                Err(GuestError::BadInput(r)) => {
                    return Err(format!(
                        "on_timer rejected timer {}: {}",
                        r.index, r.message
                    ))
                }
            }
        }
    }

    /// Moves its watermark to `watermark`, if that is ahead, and fires the
    /// event-time timers it passes; returns what they emitted.
    pub fn advance(&mut self, watermark: i64) -> Result<Vec<Batch>, String> {
        if watermark <= self.op.ctx().watermark {
            return Ok(Vec::new());
        }
        self.op.ctx().watermark = watermark;
        self.fire(TimeDomain::EventTime, watermark)
    }
}

/// Which logic a side runs, and from which `.wasm`, for reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SideLogic {
    /// The `.wasm`.
    pub wasm: String,
    /// The logic.
    pub logic: LogicId,
}

impl SideLogic {
    fn of(loaded: &LoadedOperator) -> Self {
        SideLogic {
            wasm: loaded.path.display().to_string(),
            logic: OperatorImpl::Wasm(loaded.clone()).logic_id(),
        }
    }
}

/// A shadow report shows a side's logic as `wasm`, `name`, `version` and `sha256`.
impl Serialize for SideLogic {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("SideLogic", 4)?;
        st.serialize_field("wasm", &self.wasm)?;
        st.serialize_field("name", &self.logic.name)?;
        st.serialize_field("version", &self.logic.version)?;
        st.serialize_field("sha256", &self.logic.wasm_sha256)?;
        st.end()
    }
}

/// What `weir shadow --from-savepoint` is asked to do.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// The job file (for messages).
    pub job_file: PathBuf,
    /// The job: the operator's current `.wasm`, config, budgets; the
    /// source's format and watermark delay.
    pub spec: JobSpec,
    /// The savepoint to restore the operator's state from.
    pub savepoint: PathBuf,
    /// The recorded input, in the job's source format.
    pub input: PathBuf,
    /// The operator ID.
    pub operator: String,
    /// The candidate `.wasm`.
    pub candidate: PathBuf,
    /// Where every difference goes.
    pub diff_file: PathBuf,
}

/// The outcome of a shadow run, live or offline.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ShadowReport {
    /// The operator ID.
    pub operator: String,
    /// `RUNNING`, `STOPPED`, `FELL_BEHIND`, `FAILED` (offline: `FINISHED` or `FAILED`).
    pub state: String,
    /// Why it stopped, failed or fell behind.
    pub reason: Option<String>,
    /// The logic it is compared with.
    pub live: SideLogic,
    /// The candidate.
    pub candidate: SideLogic,
    /// The counts.
    pub counts: Counts,
    /// Events the candidate rejected as bad input (skipped, written nowhere).
    pub candidate_rejected: u64,
    /// The first differences.
    pub differences: Vec<Difference>,
    /// The JSON-lines file with every difference.
    pub diff_file: String,
}

/// The restore plan of operator `id` (states `declared`) from `saved`, by
/// the rules of a restore; `what` names the snapshot in errors.
pub fn plan_states(
    what: &str,
    id: &str,
    saved: Option<Vec<(String, String, u32)>>,
    declared: &[StateSpec],
) -> Result<RestorePlan, String> {
    let saved: Vec<restore::SavedOperatorStates> =
        saved.map(|s| (id.to_string(), s)).into_iter().collect();
    restore::plan(what, &saved, &[(id.to_string(), declared.to_vec())], false)
}

/// The default diff file: `shadow-<operator>-<ms since the epoch>.jsonl` in `dir`.
pub fn default_diff_file(dir: &Path, operator: &str) -> PathBuf {
    dir.join(format!("shadow-{operator}-{}.jsonl", now_ms()))
}

/// Replays `input` through operator `operator`'s current logic and the
/// candidate, each restored from the savepoint (all key groups, one
/// subtask), in the source's batches, advancing the watermark as the source
/// would (and to the end of the input at its end, so that every event-time
/// timer fires; processing-time timers due then fire too), and diffs them.
/// A failure of the candidate ends the replay with state `FAILED`; one of
/// the current logic, a refused restore or a bad input line is an error.
pub fn replay(o: &ReplayOptions) -> Result<ShadowReport, String> {
    let spec = &o.spec;
    let job = o.job_file.display();
    let op = spec
        .operators
        .iter()
        .find(|op| op.id == o.operator)
        .ok_or_else(|| {
            let ids: Vec<&str> = spec.operators.iter().map(|op| op.id.as_str()).collect();
            format!(
                "the job `{job}` has no operator `{}` (it has {})",
                o.operator,
                ids.join(", ")
            )
        })?;
    let components = Components::new().map_err(|e| format!("cannot start wasmtime: {e}"))?;
    let current = components
        .load(&op.wasm)
        .map_err(|e| format!("operator `{}` ({job}:{}): {e}", op.id, op.line))?;
    let candidate = components
        .load(&o.candidate)
        .map_err(|e| format!("candidate: {e}"))?;
    let sp = Savepoint::open(&o.savepoint).map_err(|e| e.to_string())?;
    sp.verify().map_err(|e| e.to_string())?;
    let what = format!("savepoint `{}`", o.savepoint.display());
    if sp.meta.max_parallelism != spec.max_parallelism {
        return Err(format!(
            "{what} was taken with max_parallelism {}, the job `{job}` has {}",
            sp.meta.max_parallelism, spec.max_parallelism
        ));
    }
    let saved = sp.meta.operators.iter().find(|s| s.id == op.id).map(|s| {
        s.states
            .iter()
            .map(|st| (st.name.clone(), st.kind.clone(), st.version))
            .collect::<Vec<_>>()
    });
    let meta = crate::engine::restore::savepoint_meta(&sp);
    let max_p = spec.max_parallelism;
    let sp = Arc::new(sp);
    let start = |loaded: &LoadedOperator, who: &str| -> Result<Side, String> {
        let plan = plan_states(&what, &op.id, saved.clone(), &loaded.spec.states)
            .map_err(|e| format!("{who}: {e}"))?;
        let restore = Restore {
            meta: meta.clone(),
            source: RestoreSource::Savepoint(sp.clone()),
            plan: Arc::new(plan),
        };
        let task = TaskInfo {
            operator_id: op.id.clone(),
            subtask: 0,
            parallelism: 1,
            max_parallelism: max_p,
            attempt: 0,
        };
        OperatorImpl::Wasm(loaded.clone())
            .start(task, 0..max_p, &op.setup(), Some((&restore, 0)), false)
            .map(Side::new)
            .map_err(|e| format!("{who} `{}`: {e}", loaded.path.display()))
    };
    let mut live = start(&current, "the current logic")?;
    let mut cand = start(&candidate, "the candidate")?;

    let input = std::path::absolute(&o.input).unwrap_or_else(|_| o.input.clone());
    let mut source = spec.source.clone();
    source.connector = recorded_input(input, &spec.source.connector);
    let mut reader = source.connector.get().open(&SourceOpen {
        subtask: 0,
        batch_size: spec.source.batch_size,
        position: None,
        clock: None,
    })?;
    let file = DiffFile::create(&o.diff_file)?;
    let mut cmp = Comparator::new(0, Some(source), Some(file));
    let delay = i64::try_from(spec.source.watermark_delay.as_millis()).unwrap_or(i64::MAX);
    let mut max_ts = meta.source.max_timestamp;
    let mut failure = None;
    let result = (|| -> Result<(), String> {
        loop {
            let mut offsets = Vec::new();
            let Some(batch) = reader.next_batch(&mut offsets)? else {
                break;
            };
            let l = live.process(&batch).map_err(|e| {
                format!(
                    "the current logic {e} (in a batch from {})",
                    cmp.place_of(&offsets)
                )
            })?;
            let c = match cand.process(&batch) {
                Ok(c) => c,
                Err(e) => {
                    failure = Some(format!(
                        "the candidate {e} (in a batch from {})",
                        cmp.place_of(&offsets)
                    ));
                    return Ok(());
                }
            };
            let cause = Cause::Input {
                batch: &batch,
                offsets: Some(&offsets),
            };
            cmp.compare(cause, &l, &c)?;
            if let Some(&m) = batch.timestamps.iter().max() {
                max_ts = max_ts.max(m);
            }
            let wm = watermark_after(max_ts, delay);
            if !fire_both(
                &mut live,
                &mut cand,
                &mut cmp,
                TimeDomain::EventTime,
                wm,
                &mut failure,
            )? {
                return Ok(());
            }
        }
        if !fire_both(
            &mut live,
            &mut cand,
            &mut cmp,
            TimeDomain::EventTime,
            i64::MAX,
            &mut failure,
        )? {
            return Ok(());
        }
        fire_both(
            &mut live,
            &mut cand,
            &mut cmp,
            TimeDomain::ProcessingTime,
            now_ms(),
            &mut failure,
        )?;
        Ok(())
    })();
    result?;
    Ok(ShadowReport {
        operator: op.id.clone(),
        state: if failure.is_some() {
            "FAILED"
        } else {
            "FINISHED"
        }
        .to_string(),
        reason: failure,
        live: SideLogic::of(&current),
        candidate: SideLogic::of(&candidate),
        counts: cmp.counts,
        candidate_rejected: cand.rejected,
        differences: cmp.first.clone(),
        diff_file: o.diff_file.display().to_string(),
    })
}

/// Fires both sides' timers of `domain` at `time` (event time: advances
/// their watermarks) and compares; `false` (with `failure` set) when the
/// candidate failed.
fn fire_both(
    live: &mut Side,
    cand: &mut Side,
    cmp: &mut Comparator,
    domain: TimeDomain,
    time: i64,
    failure: &mut Option<String>,
) -> Result<bool, String> {
    let run = |side: &mut Side| match domain {
        TimeDomain::EventTime => side.advance(time),
        TimeDomain::ProcessingTime => side.fire(domain, time),
    };
    let l = run(live).map_err(|e| format!("the current logic {e}"))?;
    let c = match run(cand) {
        Ok(c) => c,
        Err(e) => {
            *failure = Some(format!("the candidate {e}"));
            return Ok(false);
        }
    };
    cmp.compare(Cause::Timers { domain, time }, &l, &c)?;
    Ok(true)
}

// ---- live shadow runs ----

/// Batches a subtask's shadow may fall behind by, unless asked otherwise.
pub const DEFAULT_QUEUE: usize = 1024;

/// What a live subtask hands its shadow.
enum Item {
    /// An input batch, its source offsets, and what the live logic emitted for it.
    Input {
        batch: Batch,
        offsets: Option<Vec<u64>>,
        live: Vec<Batch>,
    },
    /// Timers of `domain` fired at `time` (event time: the watermark
    /// moved there), and what the live logic emitted.
    Fire {
        domain: TimeDomain,
        time: i64,
        live: Vec<Batch>,
    },
}

/// Where a live shadow run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RunState {
    /// Waiting for the next checkpoint barrier of every subtask.
    Starting,
    /// Every subtask's shadow runs.
    Running,
    /// Stopped by request, or the live subtasks ended.
    Stopped,
    /// A subtask's queue was full: the shadow stopped rather than slow the job.
    FellBehind,
    /// The candidate trapped, overran a budget or failed.
    Failed,
}

impl RunState {
    fn is_over(self) -> bool {
        matches!(
            self,
            RunState::Stopped | RunState::FellBehind | RunState::Failed
        )
    }
}

#[derive(Debug, Clone, Default)]
struct SubtaskShadow {
    joined: bool,
    ended: bool,
    barrier: Option<u64>,
    counts: Counts,
    first: Vec<Difference>,
    rejected: u64,
}

struct RunStatus {
    state: RunState,
    reason: Option<String>,
    subtasks: Vec<SubtaskShadow>,
}

/// One live shadow run of a candidate beside operator `operator`.
pub struct ShadowRun {
    operator: String,
    parallelism: u32,
    max_parallelism: u32,
    candidate: LoadedOperator,
    live: SideLogic,
    plan: OperatorPlan,
    setup: Setup,
    queue: usize,
    file: DiffFile,
    source: SourceSpec,
    over: AtomicBool,
    status: Mutex<RunStatus>,
}

impl ShadowRun {
    fn is_over(&self) -> bool {
        self.over.load(Ordering::Relaxed)
    }

    /// Ends the run in `state` with `reason`, unless it is over already.
    fn end(&self, state: RunState, reason: String) {
        let mut s = self.status.lock().expect("shadow status lock");
        if s.state.is_over() {
            return;
        }
        s.state = state;
        s.reason = Some(reason);
        self.over.store(true, Ordering::SeqCst);
    }

    /// Subtask `subtask` takes part from barrier `barrier`, unless it already did.
    fn join(&self, subtask: u32, barrier: u64) -> bool {
        let mut guard = self.status.lock().expect("shadow status lock");
        let s = &mut *guard;
        let Some(sub) = s.subtasks.get_mut(subtask as usize) else {
            return false;
        };
        if s.state.is_over() || sub.joined {
            return false;
        }
        sub.joined = true;
        sub.barrier = Some(barrier);
        if s.subtasks.iter().all(|t| t.joined) {
            s.state = RunState::Running;
        }
        true
    }

    fn update(&self, subtask: u32, cmp: &Comparator, rejected: u64) {
        let mut s = self.status.lock().expect("shadow status lock");
        if let Some(sub) = s.subtasks.get_mut(subtask as usize) {
            sub.counts = cmp.counts;
            if sub.first.len() < cmp.first.len() {
                sub.first = cmp.first.clone();
            }
            sub.rejected = rejected;
        }
    }

    /// Subtask `subtask`'s live side ended (end of input, stop, restart).
    fn ended(&self, subtask: u32) {
        let all = {
            let mut s = self.status.lock().expect("shadow status lock");
            if let Some(sub) = s.subtasks.get_mut(subtask as usize) {
                sub.ended = true;
            }
            s.subtasks.iter().all(|t| !t.joined || t.ended) && s.subtasks.iter().any(|t| t.joined)
        };
        if all {
            self.end(
                RunState::Stopped,
                "the live subtasks ended (end of input, a stop or a restart)".to_string(),
            );
        }
    }

    /// The candidate for subtask `subtask`, over a copy of the live
    /// subtask's state and timers at a barrier.
    fn start_candidate(
        &self,
        subtask: u32,
        key_groups: std::ops::Range<u32>,
        state: &StateSnapshot,
        timers: &TimerSnapshot,
        watermark: i64,
    ) -> Result<Side, String> {
        let task = TaskInfo {
            operator_id: self.operator.clone(),
            subtask,
            parallelism: self.parallelism,
            max_parallelism: self.max_parallelism,
            attempt: 0,
        };
        let mut sub = SubtaskCtx::new(&self.operator, subtask, self.max_parallelism, key_groups);
        sub.state.declare(&self.candidate.spec.states)?;
        let mut failed = None;
        state.visit(&mut |key_group, name, key, entry| {
            if failed.is_some() || self.plan.dropped_states.iter().any(|d| d == name) {
                return;
            }
            let change = StateChange {
                state: name.to_string(),
                key_group,
                key: key.to_vec(),
                entry: entry.to_owned(),
            };
            if let Err(e) = sub.state.restore(change) {
                failed = Some(e);
            }
        });
        if let Some(e) = failed {
            return Err(format!("cannot copy the live state: {e}"));
        }
        sub.timers
            .restore(timers.records().into_iter().flat_map(|(_, r)| r).collect());
        sub.watermark = watermark;
        let op = WasmOperator::start_with(
            &self.candidate,
            task,
            sub,
            Some(&self.plan),
            &self.setup,
            false,
        )
        .map_err(|e| e.message)?;
        Ok(Side::new(Box::new(op)))
    }

    /// The run's status as `GET /jobs/{id}/shadow` shows it.
    pub fn status_json(&self) -> serde_json::Value {
        let s = self.status.lock().expect("shadow status lock");
        let mut counts = Counts::default();
        let mut first = Vec::new();
        let mut rejected = 0;
        for sub in &s.subtasks {
            counts.add(&sub.counts);
            rejected += sub.rejected;
            first.extend(sub.first.iter().cloned());
        }
        first.truncate(DIFFERENCES_KEPT);
        let report = ShadowReport {
            operator: self.operator.clone(),
            state: serde_json::to_value(s.state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            reason: s.reason.clone(),
            live: self.live.clone(),
            candidate: SideLogic::of(&self.candidate),
            counts,
            candidate_rejected: rejected,
            differences: first,
            diff_file: self.file.path().display().to_string(),
        };
        let mut v = serde_json::to_value(report).unwrap_or_default();
        v["queue"] = serde_json::json!(self.queue);
        v["subtasks"] = s
            .subtasks
            .iter()
            .enumerate()
            .map(|(i, t)| {
                serde_json::json!({
                    "subtask": i,
                    "started": t.joined,
                    "barrier": t.barrier,
                    "ended": t.ended,
                    "compared": t.counts.compared,
                })
            })
            .collect();
        v
    }
}

/// Runs one subtask's shadow: starts the candidate over the copied state,
/// then runs it on what the live subtask hands over and compares, until the
/// live subtask goes away or the run is over. A failure of the candidate
/// fails the run, never the job.
#[allow(clippy::too_many_arguments)]
fn run_shadow(
    run: Arc<ShadowRun>,
    subtask: u32,
    key_groups: std::ops::Range<u32>,
    state: StateSnapshot,
    timers: TimerSnapshot,
    watermark: i64,
    rx: Receiver<Item>,
) {
    let result = (|| -> Result<(), String> {
        let mut side = run.start_candidate(subtask, key_groups, &state, &timers, watermark)?;
        drop((state, timers));
        let mut cmp = Comparator::new(subtask, Some(run.source.clone()), Some(run.file.clone()));
        while let Ok(item) = rx.recv() {
            if run.is_over() {
                return Ok(());
            }
            match item {
                Item::Input {
                    batch,
                    offsets,
                    live,
                } => {
                    let c = side.process(&batch).map_err(|e| match &offsets {
                        Some(o) => format!("{e} (in a batch from {})", cmp.place_of(o)),
                        None => e,
                    })?;
                    let cause = Cause::Input {
                        batch: &batch,
                        offsets: offsets.as_deref(),
                    };
                    cmp.compare(cause, &live, &c)?;
                }
                Item::Fire { domain, time, live } => {
                    let c = match domain {
                        TimeDomain::EventTime => side.advance(time)?,
                        TimeDomain::ProcessingTime => side.fire(domain, time)?,
                    };
                    cmp.compare(Cause::Timers { domain, time }, &live, &c)?;
                }
            }
            run.update(subtask, &cmp, side.rejected);
        }
        Ok(())
    })();
    match result {
        Ok(()) => run.ended(subtask),
        Err(e) => {
            tracing::warn!(operator_id = %run.operator, subtask, "shadow run failed: {e}");
            run.end(
                RunState::Failed,
                format!("the candidate {e} (subtask {subtask}); the job goes on"),
            );
        }
    }
}

/// What the shadow control plane knows of the job's operators.
struct JobInfo {
    base_dir: PathBuf,
    periodic: bool,
    max_parallelism: u32,
    source: SourceSpec,
    operators: Vec<ShadowedOperator>,
}

struct ShadowedOperator {
    id: String,
    parallelism: u32,
    setup: Setup,
    states: Vec<StateSpec>,
    live: Option<SideLogic>,
}

/// The job's shadow runs: one at a time. Requests come from the REST API;
/// each live subtask reaches it through its [`ShadowTap`].
#[derive(Default)]
pub struct ShadowControl {
    job: Mutex<Option<JobInfo>>,
    run: Mutex<Option<Arc<ShadowRun>>>,
    /// The job's engine: a candidate compiles and runs where the live logic does.
    components: Mutex<Option<Arc<Components>>>,
}

/// What a shadow run is asked for.
#[derive(Debug, Clone)]
pub struct ShadowRequest {
    /// The operator ID.
    pub operator: String,
    /// The candidate `.wasm` (relative: to the job file's directory).
    pub wasm: PathBuf,
    /// Batches each subtask's shadow may fall behind by.
    pub queue: Option<usize>,
    /// Where every difference goes.
    pub diff_file: Option<PathBuf>,
}

impl ShadowControl {
    /// Learns the job's engine, operators, budgets and checkpointing (once,
    /// before it runs).
    pub fn configure(&self, spec: &JobSpec, loaded: &[OperatorImpl], components: Arc<Components>) {
        *self.components.lock().expect("shadow lock") = Some(components);
        let operators = spec
            .operators
            .iter()
            .zip(loaded)
            .map(|(o, l)| ShadowedOperator {
                id: o.id.clone(),
                parallelism: o.parallelism,
                setup: o.setup(),
                states: l.spec().states.clone(),
                live: match l {
                    OperatorImpl::Wasm(w) => Some(SideLogic::of(w)),
                    OperatorImpl::Native(..) => None,
                },
            })
            .collect();
        *self.job.lock().expect("shadow job lock") = Some(JobInfo {
            base_dir: spec.base_dir.clone(),
            periodic: spec
                .checkpoint
                .as_ref()
                .is_some_and(|c| c.interval.is_some()),
            max_parallelism: spec.max_parallelism,
            source: spec.source.clone(),
            operators,
        });
    }

    /// Operator `id` runs `logic` now (a live swap completed): a later
    /// shadow run is checked against, and compared with, that.
    pub fn set_logic(&self, id: &str, logic: &OperatorImpl) {
        if let Some(job) = self.job.lock().expect("shadow job lock").as_mut() {
            if let Some(op) = job.operators.iter_mut().find(|o| o.id == id) {
                op.states = logic.spec().states.clone();
                op.live = match logic {
                    OperatorImpl::Wasm(w) => Some(SideLogic::of(w)),
                    OperatorImpl::Native(..) => None,
                };
            }
        }
    }

    /// Starts a shadow run: loads, compiles and checks the candidate (its
    /// world; its states against the live operator's, by the rules of a
    /// restore) before anything changes; the live subtasks join at their
    /// next checkpoint barrier. Returns the run's status.
    pub fn start(&self, request: &ShadowRequest) -> Result<serde_json::Value, Refusal> {
        let job = self.job.lock().expect("shadow job lock");
        let Some(job) = job.as_ref() else {
            return Err(refused(
                RefusalKind::Conflict,
                "the job has not started yet".to_string(),
            ));
        };
        if !job.periodic {
            return Err(refused(
                RefusalKind::Conflict,
                "a shadow run starts at a checkpoint barrier and the job takes no periodic checkpoints: set `[checkpoint] interval` in its job file".to_string(),
            ));
        }
        let op = job
            .operators
            .iter()
            .find(|o| o.id == request.operator)
            .ok_or_else(|| {
                let ids: Vec<&str> = job.operators.iter().map(|o| o.id.as_str()).collect();
                refused(
                    RefusalKind::NotFound,
                    format!(
                        "the job has no operator `{}` (it has {})",
                        request.operator,
                        ids.join(", ")
                    ),
                )
            })?;
        let Some(live) = op.live.clone() else {
            return Err(refused(
                RefusalKind::Conflict,
                format!("operator `{}` runs native logic", op.id),
            ));
        };
        if let Some(run) = self.run.lock().expect("shadow run lock").as_ref() {
            if !run.is_over() {
                return Err(refused(
                    RefusalKind::Conflict,
                    format!(
                        "a shadow run of operator `{}` is already going on: stop it first (`weir shadow stop`)",
                        run.operator
                    ),
                ));
            }
        }
        let queue = request.queue.unwrap_or(DEFAULT_QUEUE);
        if queue == 0 {
            return Err(refused(
                RefusalKind::Invalid,
                "`queue` must be at least 1 batch".to_string(),
            ));
        }
        let wasm = if request.wasm.is_absolute() {
            request.wasm.clone()
        } else {
            job.base_dir.join(&request.wasm)
        };
        let components = self
            .components
            .lock()
            .expect("shadow lock")
            .clone()
            .ok_or(refused(
                RefusalKind::Conflict,
                "the job has not started yet".to_string(),
            ))?;
        let candidate = components
            .load(&wasm)
            .map_err(|e| refused(RefusalKind::Invalid, format!("candidate refused: {e}")))?;
        let saved = restore::recorded(&op.states);
        let what = format!("the running operator `{}`", op.id);
        let plan =
            plan_states(&what, &op.id, Some(saved), &candidate.spec.states).map_err(|e| {
                refused(
                    RefusalKind::Invalid,
                    format!("candidate `{}` refused: {e}", wasm.display()),
                )
            })?;
        let plan = plan.operators.into_iter().next().unwrap_or_default();
        let diff_path = match &request.diff_file {
            Some(p) if p.is_absolute() => p.clone(),
            Some(p) => job.base_dir.join(p),
            None => default_diff_file(&job.base_dir, &op.id),
        };
        let file = DiffFile::create(&diff_path).map_err(|e| refused(RefusalKind::Invalid, e))?;
        let run = Arc::new(ShadowRun {
            operator: op.id.clone(),
            parallelism: op.parallelism,
            max_parallelism: job.max_parallelism,
            candidate,
            live,
            plan,
            setup: op.setup.clone(),
            queue,
            file,
            source: job.source.clone(),
            over: AtomicBool::new(false),
            status: Mutex::new(RunStatus {
                state: RunState::Starting,
                reason: None,
                subtasks: vec![SubtaskShadow::default(); op.parallelism as usize],
            }),
        });
        tracing::info!(
            operator_id = %op.id,
            "shadow run of `{}` requested: subtasks join at their next checkpoint barrier; differences go to `{}`",
            wasm.display(),
            diff_path.display()
        );
        let status = run.status_json();
        *self.run.lock().expect("shadow run lock") = Some(run);
        Ok(status)
    }

    /// The current (or last) shadow run's status.
    pub fn status(&self) -> Option<serde_json::Value> {
        let run = self.run.lock().expect("shadow run lock").clone()?;
        Some(run.status_json())
    }

    /// Stops the shadow run; returns its final status.
    pub fn stop(&self) -> Option<serde_json::Value> {
        let run = self.run.lock().expect("shadow run lock").clone()?;
        run.end(RunState::Stopped, "stopped by request".to_string());
        Some(run.status_json())
    }

    /// The run subtask `subtask` of `operator` should join, if any.
    fn pending(&self, operator: &str) -> Option<Arc<ShadowRun>> {
        let run = self.run.lock().expect("shadow run lock");
        run.as_ref()
            .filter(|r| r.operator == operator && !r.is_over())
            .cloned()
    }
}

/// A live subtask's link to shadow runs: at a checkpoint barrier it joins a
/// requested run (copying its state and timers, copy-on-write), and from
/// then on hands each input batch, each timer firing and what the live
/// logic emitted for them to the shadow thread through a bounded queue,
/// never waiting: when the queue is full, the run stops as fallen behind.
pub struct ShadowTap {
    control: Arc<ShadowControl>,
    operator: String,
    subtask: u32,
    feed: Option<(Arc<ShadowRun>, Sender<Item>)>,
    /// What the current input batch or timer firing is, and its live output so far.
    pending: Option<(TapCall, Vec<Batch>)>,
}

enum TapCall {
    Input(Batch, Option<Vec<u64>>),
    Fire(TimeDomain, i64),
}

impl ShadowTap {
    /// The tap of subtask `subtask` of `operator`.
    pub fn new(control: Arc<ShadowControl>, operator: &str, subtask: u32) -> Self {
        ShadowTap {
            control,
            operator: operator.to_string(),
            subtask,
            feed: None,
            pending: None,
        }
    }

    fn feeding(&mut self) -> bool {
        if self.feed.as_ref().is_some_and(|(run, _)| run.is_over()) {
            self.feed = None;
        }
        self.feed.is_some()
    }

    /// At a checkpoint barrier, after the subtask's snapshot: joins a
    /// requested shadow run of this operator.
    pub fn at_barrier(&mut self, ctx: &mut SubtaskCtx, barrier: u64, last: bool) {
        if self.feeding() || last {
            return;
        }
        let Some(run) = self.control.pending(&self.operator) else {
            return;
        };
        if !run.join(self.subtask, barrier) {
            return;
        }
        // Copy-on-write: O(shards) here; the shadow thread copies the entries.
        let state = ctx.state.snapshot(true);
        let timers = ctx.timers.snapshot(true);
        let watermark = ctx.watermark;
        let key_groups = ctx.key_groups.clone();
        let (tx, rx) = crossbeam_channel::bounded(run.queue);
        let subtask = self.subtask;
        let thread_run = run.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("weir-shadow-{}-{subtask}", self.operator))
            .spawn(move || {
                run_shadow(
                    thread_run, subtask, key_groups, state, timers, watermark, rx,
                )
            });
        match spawned {
            Ok(_) => self.feed = Some((run, tx)),
            Err(e) => run.end(RunState::Failed, format!("cannot start a thread: {e}")),
        }
    }

    /// An input batch is about to be processed.
    pub fn begin_input(&mut self, batch: &Batch, offsets: Option<&[u64]>) {
        if self.feeding() {
            let input = TapCall::Input(batch.clone(), offsets.map(<[u64]>::to_vec));
            self.pending = Some((input, Vec::new()));
        }
    }

    /// Timers of `domain` due at `time` are about to fire.
    pub fn begin_fire(&mut self, domain: TimeDomain, time: i64) {
        if self.feeding() {
            self.pending = Some((TapCall::Fire(domain, time), Vec::new()));
        }
    }

    /// The live logic emitted `out` for what began.
    pub fn collect(&mut self, out: &Batch) {
        if let Some((_, live)) = &mut self.pending {
            live.push(out.clone());
        }
    }

    /// What began is done: hands it to the shadow, without waiting.
    pub fn end(&mut self) {
        let Some((what, live)) = self.pending.take() else {
            return;
        };
        let Some((run, tx)) = &self.feed else {
            return;
        };
        let item = match what {
            TapCall::Input(batch, offsets) => Item::Input {
                batch,
                offsets,
                live,
            },
            TapCall::Fire(domain, time) => Item::Fire { domain, time, live },
        };
        match tx.try_send(item) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                let at = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
                run.end(
                    RunState::FellBehind,
                    format!(
                        "fell behind: subtask {}'s queue of {} batches was full at {at}",
                        self.subtask, run.queue
                    ),
                );
                self.feed = None;
            }
            Err(TrySendError::Disconnected(_)) => self.feed = None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(events: &[(Option<&str>, &str, i64)]) -> Batch {
        let mut b = Batch::with_capacity(events.len(), 64);
        for (k, v, t) in events {
            b.push(k.map(str::as_bytes), v.as_bytes(), *t);
        }
        b
    }

    #[test]
    fn identical_outputs_have_no_difference() {
        let input = batch(&[(Some("a"), "x", 1), (Some("b"), "y", 2)]);
        let out = batch(&[(Some("a"), "1", 1), (Some("b"), "1", 2)]);
        let mut c = Comparator::new(0, None, None);
        let cause = Cause::Input {
            batch: &input,
            offsets: Some(&[0, 1]),
        };
        assert_eq!(
            c.compare(
                cause,
                std::slice::from_ref(&out),
                std::slice::from_ref(&out)
            )
            .unwrap(),
            0
        );
        assert_eq!(c.counts.inputs, 2);
        assert_eq!(c.counts.compared, 2);
        assert_eq!(c.counts.equal, 2);
        assert!(c.first.is_empty());
    }

    #[test]
    fn pairs_by_key_in_order_and_counts_extras() {
        let input = batch(&[(Some("a"), "", 0), (Some("b"), "", 0), (Some("a"), "", 0)]);
        // Across keys, order may differ; within a key it is kept.
        let live = vec![
            batch(&[(Some("a"), "1", 5), (Some("b"), "1", 5)]),
            batch(&[(Some("a"), "2", 5)]),
        ];
        let cand = vec![batch(&[
            (Some("b"), "1", 5),
            (Some("a"), "1", 5),
            (Some("a"), "two", 5),
            (Some("a"), "3", 5),
            (None, "x", 5),
        ])];
        let dir = tempfile::tempdir().unwrap();
        let file = DiffFile::create(&dir.path().join("d/diff.jsonl")).unwrap();
        let mut c = Comparator::new(3, None, Some(file.clone()));
        let cause = Cause::Input {
            batch: &input,
            offsets: Some(&[10, 11, 12]),
        };
        assert_eq!(c.compare(cause, &live, &cand).unwrap(), 3);
        assert_eq!(
            c.counts,
            Counts {
                inputs: 3,
                compared: 5,
                equal: 2,
                different: 1,
                only_live: 0,
                only_candidate: 2,
            }
        );
        let d = &c.first[0];
        assert_eq!(d.kind, DiffKind::Different);
        assert_eq!(d.key.as_deref(), Some("a"));
        // The second output of `a` lines up with the second input event of `a`.
        assert_eq!(d.offset, Some(12));
        assert_eq!(d.subtask, 3);
        assert_eq!(d.live.as_ref().unwrap().value, "2");
        assert_eq!(d.candidate.as_ref().unwrap().value, "two");
        // A third output of `a` has no third input: the last one is named.
        assert_eq!(c.first[1].kind, DiffKind::OnlyCandidate);
        assert_eq!(c.first[1].offset, Some(12));
        assert_eq!(c.first[2].key, None);
        assert_eq!(c.first[2].offset, None);
        let lines = std::fs::read_to_string(file.path()).unwrap();
        assert_eq!(lines.lines().count(), 3);
        let v: serde_json::Value = serde_json::from_str(lines.lines().next().unwrap()).unwrap();
        assert_eq!(v["kind"], "different");
        assert_eq!(v["key"], "a");
        assert_eq!(v["offset"], 12);
    }

    #[test]
    fn timestamps_count_and_timer_firings_are_named() {
        let mut c = Comparator::new(0, None, None);
        let cause = Cause::Timers {
            domain: TimeDomain::EventTime,
            time: 99,
        };
        let live = [batch(&[(Some("k"), "v", 1)])];
        let cand = [batch(&[(Some("k"), "v", 2)])];
        assert_eq!(c.compare(cause, &live, &cand).unwrap(), 1);
        assert_eq!(c.counts.inputs, 0);
        assert_eq!(c.first[0].at, "event-time timers at watermark 99");
        assert_eq!(c.compare(cause, &live, &[]).unwrap(), 1);
        assert_eq!(c.counts.only_live, 1);
    }

    fn native(name: &str) -> Side {
        let logic = crate::wasm::native::NativeLogic::from_name(name).unwrap();
        let mut ctx = SubtaskCtx::new("op", 0, 8, 0..8);
        ctx.state.declare(&logic.spec().states).unwrap();
        Side::new(Box::new(crate::wasm::native::NativeOperator::new(
            logic, ctx,
        )))
    }

    #[test]
    fn sides_skip_rejected_events_and_go_on_after_them() {
        let mut count = native("keyed-count");
        let input = batch(&[(Some("a"), "x", 1), (None, "bad", 2), (Some("a"), "y", 3)]);
        let out = count.process(&input).unwrap();
        assert_eq!(count.rejected, 1);
        let values: Vec<Vec<u8>> = out
            .iter()
            .flat_map(|b| b.iter().map(|e| e.value.to_vec()).collect::<Vec<_>>())
            .collect();
        assert_eq!(values, vec![b"1".to_vec(), b"2".to_vec()]);
        // A second side on the same input: same output, no difference.
        let mut again = native("keyed-count");
        let mut cmp = Comparator::new(0, None, None);
        let theirs = again.process(&input).unwrap();
        let cause = Cause::Input {
            batch: &input,
            offsets: None,
        };
        assert_eq!(cmp.compare(cause, &out, &theirs).unwrap(), 0);
        // Other logic: every output differs.
        let mut map = native("map");
        let mapped = map.process(&input).unwrap();
        assert_eq!(cmp.compare(cause, &out, &mapped).unwrap(), 3);
        assert_eq!(cmp.counts.different, 2);
        assert_eq!(cmp.counts.only_candidate, 1);
        assert_eq!(
            cmp.first[0].at,
            "event 1 of a batch of 3 from the operator upstream"
        );
    }

    #[test]
    fn keeps_only_the_first_differences() {
        let mut c = Comparator::new(0, None, None);
        let cause = Cause::Timers {
            domain: TimeDomain::ProcessingTime,
            time: 1,
        };
        for i in 0..(DIFFERENCES_KEPT + 5) {
            let live = [batch(&[(Some("k"), &i.to_string(), 0)])];
            c.compare(cause, &live, &[]).unwrap();
        }
        assert_eq!(c.first.len(), DIFFERENCES_KEPT);
        assert_eq!(c.counts.only_live as usize, DIFFERENCES_KEPT + 5);
        assert_eq!(c.first[0].live.as_ref().unwrap().value, "0");
    }
}
