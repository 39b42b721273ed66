//! What `weir bench` measures inside one process: checkpoint cost (value
//! state; map state with windows and timers) and savepoint cost over the
//! real state backend, timer service, checkpoint store and savepoint format,
//! and how long a component takes to start, cold and from the cache. The job
//! cases (events/s, latency) run the real `weir run` in child processes:
//! see [`super::jobs`].

use std::path::Path;
use std::time::Instant;

use crate::model::{SourcePosition, SourceState};
use crate::model::{StateKind, StateSpec, TaskInfo, TimeDomain};
use crate::state::checkpoint::{CheckpointMeta, CheckpointStore};
use crate::state::keyed::StateBackend;
use crate::state::savepoint::{self, Record, Savepoint, SavepointKind, SavepointWriter};
use crate::state::timers::TimerService;
use crate::wasm::component::Components;
use crate::wasm::operator::WasmOperator;

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// A backend of one subtask owning all 128 key groups, with `keys` keys
/// `key-N` → a 4-byte value in value state `count`.
fn filled_state(keys: u64) -> StateBackend {
    let mut state = StateBackend::new(0, 128, 0..128);
    state
        .declare(&[StateSpec {
            name: "count".into(),
            kind: StateKind::Value,
            version: 1,
        }])
        .expect("one state");
    state.track_changes();
    for i in 0..keys {
        state
            .value_put(0, format!("key-{i}").as_bytes(), Some(b"1234"))
            .expect("owned key group");
    }
    state
}

fn meta(id: u64, chain: Vec<u64>, bytes: u64) -> CheckpointMeta {
    CheckpointMeta {
        format: crate::state::checkpoint::FORMAT_VERSION,
        id,
        chain,
        job: "bench".into(),
        max_parallelism: 128,
        triggered_at_ms: 0,
        completed_at_ms: 0,
        bytes_written: bytes,
        finished: false,
        source: SourceState {
            position: SourcePosition::Generator { next: 0 },
            max_timestamp: 0,
        },
        sink: None,
        watermark: 0,
        operators: vec![],
    }
}

/// A full checkpoint, then a delta after `changed` of the keys changed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CheckpointFigures {
    /// Keys in the state.
    pub keys: u64,
    /// Keys changed before the delta.
    pub changed: u64,
    /// Bytes the full checkpoint wrote.
    pub full_bytes: u64,
    /// Copying all state at the barrier (processing paused), ms.
    pub full_copy_ms: f64,
    /// Writing and flushing it to sled (in the background), ms.
    pub full_write_ms: f64,
    /// Bytes the delta wrote.
    pub delta_bytes: u64,
    /// Copying the changed keys at the barrier, ms.
    pub delta_copy_ms: f64,
    /// Writing and flushing the delta, ms.
    pub delta_write_ms: f64,
}

/// Checkpoint cost with `keys` keys and a fraction `changed` of them changed, in `dir`.
pub fn checkpoint(keys: u64, changed: f64, dir: &Path) -> Result<CheckpointFigures, String> {
    let store = CheckpointStore::open(dir).map_err(|e| e.to_string())?;
    let mut state = filled_state(keys);
    // At the barrier: the snapshot (copy-on-write, O(shards)); then the
    // coordinator's work: records made from it, written and flushed.
    let t = Instant::now();
    let all = state.snapshot(true);
    let full_copy_ms = ms(t);
    let t = Instant::now();
    let full_bytes = store
        .write_snapshot(1, "count", &all)
        .map_err(|e| e.to_string())?;
    store
        .complete(&meta(1, vec![1], full_bytes))
        .map_err(|e| e.to_string())?;
    let full_write_ms = ms(t);
    let n = (keys as f64 * changed) as u64;
    for i in 0..n {
        let k = (i * 7919) % keys.max(1); // spread over the key space
        state
            .value_put(0, format!("key-{k}").as_bytes(), Some(b"5678"))
            .expect("owned key group");
    }
    let t = Instant::now();
    let delta = state.snapshot(false);
    let delta_copy_ms = ms(t);
    let t = Instant::now();
    let delta_bytes = store
        .write_snapshot(2, "count", &delta)
        .map_err(|e| e.to_string())?;
    store
        .complete(&meta(2, vec![1, 2], delta_bytes))
        .map_err(|e| e.to_string())?;
    let delta_write_ms = ms(t);
    Ok(CheckpointFigures {
        keys,
        changed: n,
        full_bytes,
        full_copy_ms,
        full_write_ms,
        delta_bytes,
        delta_copy_ms,
        delta_write_ms,
    })
}

/// A full checkpoint of map state with windows and timers, then a delta
/// after `changed` of the keys changed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CheckpointMapFigures {
    /// Keys in the state (one window and one timer each).
    pub keys: u64,
    /// Keys changed before the delta.
    pub changed: u64,
    /// Bytes the full checkpoint wrote: state and timers.
    pub full_bytes: u64,
    /// Of them, the map state's.
    pub full_state_bytes: u64,
    /// Of them, the timers'.
    pub full_timer_bytes: u64,
    /// Copying state and timers at the barrier (processing paused), ms.
    pub full_copy_ms: f64,
    /// Writing and flushing them to sled, ms.
    pub full_write_ms: f64,
    /// Bytes the delta wrote: state and timers.
    pub delta_bytes: u64,
    /// Of them, the map state's.
    pub delta_state_bytes: u64,
    /// Of them, the timers'.
    pub delta_timer_bytes: u64,
    /// Copying what changed at the barrier, ms.
    pub delta_copy_ms: f64,
    /// Writing and flushing the delta, ms.
    pub delta_write_ms: f64,
}

/// The window end `end` as `windowed-sum` stores it (a JSON number).
fn window_key(end: i64) -> Vec<u8> {
    end.to_string().into_bytes()
}

/// Checkpoint cost of windows, as `windowed-sum` keeps them: `keys` keys
/// with map state window end → sum and an event-time timer at the window's
/// end, in `dir`; then a fraction `changed` of the keys changed (half a
/// window's sum updated; half a window fired and removed, with its timer,
/// and the next one opened, with a new timer).
pub fn checkpoint_map(keys: u64, changed: f64, dir: &Path) -> Result<CheckpointMapFigures, String> {
    const OP: &str = "windows";
    let (first, next) = (1_000i64, 2_000i64);
    let store = CheckpointStore::open(dir).map_err(|e| e.to_string())?;
    let mut state = StateBackend::new(0, 128, 0..128);
    state
        .declare(&[StateSpec {
            name: "sums".into(),
            kind: StateKind::Map,
            version: 1,
        }])
        .expect("one state");
    state.track_changes();
    let mut timers = TimerService::new(128);
    for i in 0..keys {
        let key = format!("key-{i}").into_bytes();
        let sum = (i % 100_000).to_string();
        state
            .map_put(0, &key, &window_key(first), Some(sum.as_bytes()))
            .expect("owned key group");
        timers.register(TimeDomain::EventTime, Some(&key), first - 1);
    }
    let write = |id: u64,
                 chain: Vec<u64>,
                 snapshot: &crate::state::keyed::StateSnapshot,
                 timers: &crate::state::timers::TimerSnapshot|
     -> Result<(u64, u64), String> {
        let state_bytes = store
            .write_snapshot(id, OP, snapshot)
            .map_err(|e| e.to_string())?;
        // As the coordinator writes them: all for a full checkpoint, else what changed.
        let timer_bytes = if timers.is_full() {
            store.write_timers(id, OP, &timers.records())
        } else {
            store.write_timer_deltas(id, OP, &timers.delta())
        }
        .map_err(|e| e.to_string())?;
        store
            .complete(&meta(id, chain, state_bytes + timer_bytes))
            .map_err(|e| e.to_string())?;
        Ok((state_bytes, timer_bytes))
    };
    let t = Instant::now();
    let all = state.snapshot(true);
    let all_timers = timers.snapshot(true);
    let full_copy_ms = ms(t);
    let t = Instant::now();
    let (full_state_bytes, full_timer_bytes) = write(1, vec![1], &all, &all_timers)?;
    let full_write_ms = ms(t);
    let n = (keys as f64 * changed) as u64;
    for j in 0..n {
        let k = (j * 7919) % keys.max(1); // spread over the key space
        let key = format!("key-{k}").into_bytes();
        if j % 2 == 0 {
            state
                .map_put(0, &key, &window_key(first), Some(b"99999"))
                .expect("owned key group");
        } else {
            state
                .map_put(0, &key, &window_key(first), None)
                .expect("owned key group");
            timers.delete(TimeDomain::EventTime, Some(&key), first - 1);
            state
                .map_put(0, &key, &window_key(next), Some(b"7"))
                .expect("owned key group");
            timers.register(TimeDomain::EventTime, Some(&key), next - 1);
        }
    }
    let t = Instant::now();
    let delta = state.snapshot(false);
    let delta_timers = timers.snapshot(false);
    let delta_copy_ms = ms(t);
    let t = Instant::now();
    let (delta_state_bytes, delta_timer_bytes) = write(2, vec![1, 2], &delta, &delta_timers)?;
    let delta_write_ms = ms(t);
    Ok(CheckpointMapFigures {
        keys,
        changed: n,
        full_bytes: full_state_bytes + full_timer_bytes,
        full_state_bytes,
        full_timer_bytes,
        full_copy_ms,
        full_write_ms,
        delta_bytes: delta_state_bytes + delta_timer_bytes,
        delta_state_bytes,
        delta_timer_bytes,
        delta_copy_ms,
        delta_write_ms,
    })
}

/// A savepoint of `keys` keys written and restored.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SavepointFigures {
    /// Keys in the state.
    pub keys: u64,
    /// Bytes of its data files.
    pub bytes: u64,
    /// Copying the state at the barrier, ms.
    pub copy_ms: f64,
    /// Encoding, checksumming, writing and syncing the data file, then
    /// `_metadata` and the rename, ms.
    pub write_ms: f64,
    /// Opening it and checking every data file (what a restore does first), ms.
    pub check_ms: f64,
    /// Reading, decoding and inserting every key into a fresh state backend, ms.
    pub restore_ms: f64,
}

/// Savepoint cost with `keys` keys, written under `dir`, over the real format code.
pub fn savepoint(keys: u64, dir: &Path) -> Result<SavepointFigures, String> {
    let mut state = filled_state(keys);
    // At the barrier: the copy-on-write snapshot; the records are made
    // from it with the write, off the data path.
    let t = Instant::now();
    let snapshot = state.snapshot(true);
    let copy_ms = ms(t);
    let t = Instant::now();
    let all = snapshot.changes();
    let writer = SavepointWriter::create(dir, "bench", 1, 0).map_err(|e| e.to_string())?;
    let (file, _) = writer
        .write_data("op0-sub0.state", 0..128, &all, &[])
        .map_err(|e| e.to_string())?;
    let mut manifest = savepoint::new_metadata(
        "bench",
        1,
        SavepointKind::Triggered,
        0,
        128,
        false,
        meta(1, vec![], 0).source,
        None,
        0,
    );
    manifest.operators.push(savepoint::SavedOperator {
        id: "count".into(),
        name: "keyed-count".into(),
        version: "1.0.0".into(),
        wasm_sha256: String::new(),
        parallelism: 1,
        states: vec![savepoint::SavedState {
            name: "count".into(),
            kind: "value".into(),
            version: 1,
            keys,
        }],
        timers: 0,
        state_bytes: 0,
        files: vec![file],
    });
    let path = writer.finish(&manifest).map_err(|e| e.to_string())?;
    let write_ms = ms(t);
    let t = Instant::now();
    let sp = Savepoint::open(&path).map_err(|e| e.to_string())?;
    let (_, bytes) = sp.verify().map_err(|e| e.to_string())?;
    let check_ms = ms(t);
    let t = Instant::now();
    let mut restored = StateBackend::new(0, 128, 0..128);
    restored
        .declare(&[StateSpec {
            name: "count".into(),
            kind: StateKind::Value,
            version: 1,
        }])
        .expect("one state");
    sp.load("count", 0..128, |r| match r {
        Record::State(change) => restored.restore(change),
        Record::Timer(..) => Ok(()),
    })
    .map_err(|e| e.to_string())?;
    let restore_ms = ms(t);
    let got: usize = restored.key_counts().iter().map(|(_, n)| n).sum();
    if got as u64 != keys {
        return Err(format!("restored {got} keys of {keys}"));
    }
    Ok(SavepointFigures {
        keys,
        bytes,
        copy_ms,
        write_ms,
        check_ms,
        restore_ms,
    })
}

/// How long an operator takes to start: load (compile, or read from the
/// cache), instantiate a subtask and call `open`; and how long the engine
/// itself takes to set up, once per process.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StartFigures {
    /// With an empty cache: compiled, ms.
    pub cold_ms: f64,
    /// From the cache, in a fresh engine (as a new process would), ms.
    pub cached_ms: f64,
    /// Creating the engine and linker, ms.
    pub engine_ms: f64,
}

/// (engine set-up, operator start) in ms.
fn start_once(wasm: &Path, cache: &Path) -> Result<(f64, f64), String> {
    let t = Instant::now();
    let components = Components::new()
        .map_err(|e| e.to_string())?
        .with_cache_dir(Some(cache.to_path_buf()));
    let engine_ms = ms(t);
    let t = Instant::now();
    let loaded = components.load(wasm).map_err(|e| e.to_string())?;
    let task = TaskInfo {
        operator_id: "bench".into(),
        subtask: 0,
        parallelism: 1,
        max_parallelism: 128,
        attempt: 0,
    };
    WasmOperator::start(&loaded, task, 0..128, &Default::default(), None, false)?;
    Ok((engine_ms, ms(t)))
}

/// Start time of `wasm`, cold (cache `cache` emptied first) and then cached.
pub fn component_start(wasm: &Path, cache: &Path) -> Result<StartFigures, String> {
    let _ = std::fs::remove_dir_all(cache);
    let (_, cold_ms) = start_once(wasm, cache)?;
    let (engine_ms, cached_ms) = start_once(wasm, cache)?;
    Ok(StartFigures {
        cold_ms,
        cached_ms,
        engine_ms,
    })
}
