//! Offline shadow runs (`weir shadow`): both logics restored from a
//! savepoint, recorded input replayed ([`replay()`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::connectors::registry::{recorded_input, SourceOpen};
use crate::engine::channel::watermark_after;
use crate::job::JobSpec;
use crate::model::{now_ms, StateSpec, TaskInfo, TimeDomain};
use crate::state::restore::{self, Restore, RestorePlan, RestoreSource};
use crate::state::savepoint::Savepoint;
use crate::wasm::component::{Components, LoadedOperator};
use crate::wasm::operator::OperatorImpl;

use super::*;

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
pub(super) fn fire_both(
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
