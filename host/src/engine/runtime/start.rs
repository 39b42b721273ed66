//! What a run checks and chooses before its first attempt: the job's
//! operators and source, the savepoint or checkpoint it starts from, and
//! the checkpoint store, opened when first needed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::engine::connect::{check_savepoint_committed, committer};
use crate::engine::errors::RunError;
use crate::engine::logic::{load_operators, logic_at};
use crate::engine::restore::{
    check_source_position, choose_checkpoint, open_savepoint, savepoint_meta,
};
use crate::engine::upgrades::plan::plan_restore;
use crate::job::JobSpec;
use crate::state::checkpoint::CheckpointStore;
use crate::state::restore::{Restore, RestoreSource};
use crate::wasm::component::Components;
use crate::wasm::operator::OperatorImpl;

use std::any::Any;

use crate::connectors::registry::Committer;

use super::RunOptions;

/// The job's checkpoint database, opened when first needed.
pub(super) struct LazyStore {
    /// Directory and retention, when the job takes checkpoints.
    pub spec: Option<(PathBuf, usize)>,
    /// The database and the first checkpoint ID of this process, once open.
    store: std::sync::Mutex<Option<(CheckpointStore, u64)>>,
    /// The lowest ID new checkpoints may have (above a restored savepoint's).
    min_id: u64,
}

impl LazyStore {
    /// Opens the database (once; clearing incomplete checkpoints), if the job takes checkpoints.
    pub fn get(&self) -> Result<Option<CheckpointStore>, RunError> {
        Ok(self.open()?.map(|(s, _)| s))
    }

    fn open(&self) -> Result<Option<(CheckpointStore, u64)>, RunError> {
        let Some((dir, _)) = &self.spec else {
            return Ok(None);
        };
        let mut slot = self.store.lock().expect("store lock");
        if slot.is_none() {
            let store = CheckpointStore::open(dir).map_err(|e| RunError::Setup(e.to_string()))?;
            // A probation that never ended (the process died): its checkpoints are not restored.
            let dropped = store
                .drop_probation()
                .map_err(|e| RunError::Setup(e.to_string()))?;
            if dropped > 0 {
                tracing::warn!(
                    "{dropped} checkpoint(s) of `{}` were taken while a live swap was on probation: the job goes back to the swap barrier with the old logic",
                    dir.display()
                );
            }
            // Only what no completed checkpoint needs (one being written
            // when the process died): which completed ones recovery needs
            // is known once it has chosen, and the coordinator frees the
            // rest as checkpoints commit.
            store
                .retain(usize::MAX, true, &[])
                .map_err(|e| RunError::Setup(e.to_string()))?;
            let first = store.next_id().max(self.min_id);
            *slot = Some((store, first));
        }
        Ok(slot.clone())
    }

    /// The first checkpoint ID of this process: later ones are this run's own.
    pub fn first_id(&self) -> Result<u64, RunError> {
        Ok(self.open()?.map_or(self.min_id.max(1), |(_, id)| id))
    }
}

/// What `run` has checked and chosen before its first attempt.
pub(super) struct Start<'a> {
    /// The job.
    pub spec: &'a JobSpec,
    /// The wasmtime engine the operators are compiled with.
    pub components: Arc<Components>,
    /// The logic the job file names (checkpoints record it beside what runs).
    pub job_loaded: Vec<OperatorImpl>,
    /// What the first attempt restores, and the logic it runs.
    pub initial: Option<Restore>,
    /// The logic of the first attempt.
    pub initial_loaded: Vec<OperatorImpl>,
    /// The live swaps the restored checkpoint records.
    pub history: Vec<serde_json::Value>,
    /// The checkpoint store.
    pub store: LazyStore,
    /// The job's sink, when it commits under markers of its own (an
    /// exactly-once Kafka sink).
    pub committer: Option<&'a dyn Committer>,
    /// The source can be read again from a position (not stdin).
    pub replayable: bool,
    /// Held while the job runs: one process per exactly-once Kafka sink prefix.
    _prefix_lock: Option<Box<dyn Any>>,
}

impl<'a> Start<'a> {
    /// Checks the job (`spec`, read from `job_file`) and `options` before
    /// anything runs, and chooses what the first attempt restores.
    pub fn prepare(
        spec: &'a JobSpec,
        job_file: &Path,
        options: &RunOptions,
    ) -> Result<Start<'a>, RunError> {
        let components = Arc::new(
            Components::new()
                .map_err(|e| RunError::Setup(format!("cannot start wasmtime: {e}")))?,
        );
        // What the job file names; `loaded` is what runs (a live swap, or a
        // checkpoint taken after one, changes it).
        let job_loaded = load_operators(&components, spec, job_file, &options.overrides)?;
        let source = spec.source.connector.get();
        source.check(job_file).map_err(RunError::Setup)?;
        let replayable = source.replayable();
        if options.from_savepoint.is_some() && !replayable {
            return Err(RunError::Setup(format!(
                "--from-savepoint: {} reads stdin, which cannot be read from a savepoint's position",
                job_file.display()
            )));
        }
        // Every check of a savepoint runs before the state directory is touched.
        let savepoint = match &options.from_savepoint {
            Some(dir) => Some(Arc::new(open_savepoint(dir)?)),
            None => None,
        };
        let savepoint_restore = match &savepoint {
            Some(sp) => Some(plan_restore(
                spec,
                &job_loaded,
                savepoint_meta(sp),
                RestoreSource::Savepoint(sp.clone()),
                options.allow_non_restored_state,
            )?),
            None => None,
        };
        let checkpoint = spec.checkpoint.as_ref().filter(|c| c.interval.is_some());
        if checkpoint.is_some() && !replayable {
            return Err(RunError::Setup(format!(
                "{}: checkpoints need a source that can be read again (file or generator), not stdin",
                job_file.display()
            )));
        }
        if checkpoint.is_none() && options.from_checkpoint.is_some() {
            return Err(RunError::Setup(format!(
                "--from-checkpoint: {} takes no checkpoints (it has no [checkpoint] interval)",
                job_file.display()
            )));
        }
        // An exactly-once Kafka sink: the checkpoint to restore is the one
        // whose transaction committed last (see `recovery`). The process holds
        // the sink's transactional id prefix while it runs, so that a second
        // process on it is refused rather than fencing this one.
        let committer = committer(spec)?;
        let _prefix_lock = match committer {
            Some(c) => Some(c.lock().map_err(RunError::Setup)?),
            None => None,
        };
        if let (Some(c), Some(sp)) = (committer, &savepoint) {
            check_savepoint_committed(c, sp)?;
        }
        let store = LazyStore {
            spec: checkpoint.map(|c| (c.dir.clone(), c.retain)),
            store: Default::default(),
            min_id: savepoint_restore.as_ref().map_or(0, |r| r.meta.id + 1),
        };
        let mut start = Start {
            spec,
            components,
            job_loaded,
            initial: None,
            initial_loaded: Vec::new(),
            history: Vec::new(),
            store,
            committer,
            replayable,
            _prefix_lock,
        };
        // What the job file names; `loaded` is what runs (a live swap, or a
        // checkpoint taken after one, changes it).
        let mut loaded = start.job_loaded.clone();
        // Restoring a savepoint, the state directory is opened only once every
        // subtask has restored and migrated its state: a failed restore leaves it untouched.
        let initial = match savepoint_restore {
            Some(r) => Some(r),
            None => {
                let mut history = Vec::new();
                let r = start.checkpoint_restore(options, 0, &mut loaded, &mut history)?;
                start.history = history;
                r
            }
        };
        if let Some(r) = &initial {
            check_source_position(spec, job_file, r)?;
        }
        start.initial = initial;
        start.initial_loaded = loaded;
        Ok(start)
    }

    /// The newest checkpoint to restore (by `options`, with an ID of at
    /// least `min_id`), if any; a checkpoint restore also says which logic
    /// runs (see `logic_at`), set in `loaded`, and the swaps it records.
    pub fn checkpoint_restore(
        &self,
        options: &RunOptions,
        min_id: u64,
        loaded: &mut Vec<OperatorImpl>,
        history: &mut Vec<serde_json::Value>,
    ) -> Result<Option<Restore>, RunError> {
        let spec = self.spec;
        let Some(store) = self.store.get()? else {
            return Ok(None);
        };
        match choose_checkpoint(
            &store,
            options.fresh,
            options.from_checkpoint,
            min_id,
            self.committer,
        )? {
            Some(meta) => {
                let (logic, swaps) =
                    logic_at(&self.components, &store, &meta, &self.job_loaded, spec)?;
                *loaded = logic;
                *history = swaps;
                Ok(Some(plan_restore(
                    spec,
                    loaded,
                    meta,
                    RestoreSource::Checkpoint(store.clone()),
                    options.allow_non_restored_state,
                )?))
            }
            None => {
                *loaded = self.job_loaded.clone();
                Ok(None)
            }
        }
    }

    /// After a failure: the checkpoint to restore now (this run's newest,
    /// else what the first attempt restored) in `restore`, its logic in
    /// `loaded`; returns what it is called in messages.
    pub fn choose(
        &self,
        restore: &mut Option<Restore>,
        loaded: &mut Vec<OperatorImpl>,
    ) -> Result<String, RunError> {
        let first_id = self.store.first_id()?;
        let mut history = Vec::new();
        *restore =
            self.checkpoint_restore(&RunOptions::default(), first_id, loaded, &mut history)?;
        if restore.is_none() {
            *restore = self.initial.clone();
            *loaded = self.initial_loaded.clone();
        }
        Ok(restore
            .as_ref()
            .map_or("the beginning".to_string(), |r| match r.savepoint_dir() {
                Some(d) => format!("savepoint `{}`", d.display()),
                None => format!("checkpoint {}", r.meta.id),
            }))
    }
}
