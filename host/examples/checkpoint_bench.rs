//! Checkpoint cost with 1,000,000 keys: a full checkpoint, then a delta after
//! 1 % of the keys changed. Drives the real state backend and sled store.
//!
//! `cargo run -p weir-host --example checkpoint_bench [KEYS] [CHANGED_PERCENT]`

use std::time::Instant;

use weir_host::bindings::{StateKind, StateSpec};
use weir_host::checkpoint::{
    CheckpointMeta, CheckpointStore, SourcePosition, SourceState, FORMAT_VERSION,
};
use weir_host::state::StateBackend;

fn meta(id: u64, chain: Vec<u64>, bytes: u64) -> CheckpointMeta {
    CheckpointMeta {
        format: FORMAT_VERSION,
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

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let keys: u64 = args
        .get(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let percent: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1);
    let dir = std::env::temp_dir().join(format!("weir-checkpoint-bench-{}", std::process::id()));
    let store = CheckpointStore::open(&dir).expect("open the store");

    let mut state = StateBackend::new(0, 128, 0..128);
    state
        .declare(&[StateSpec {
            name: "count".into(),
            kind: StateKind::Value,
            version: 1,
        }])
        .unwrap();
    state.track_changes();
    for i in 0..keys {
        state
            .value_put(0, format!("key-{i}").as_bytes(), Some(b"1234"))
            .unwrap();
    }

    let t = Instant::now();
    let all = state.take_all();
    let snap_full = t.elapsed();
    let t = Instant::now();
    let full_bytes = store.write_changes(1, "count", &all).unwrap();
    store.complete(&meta(1, vec![1], full_bytes)).unwrap();
    let write_full = t.elapsed();

    let changed = keys * percent / 100;
    for i in 0..changed {
        let k = (i * 7919) % keys; // spread over the key space
        state
            .value_put(0, format!("key-{k}").as_bytes(), Some(b"5678"))
            .unwrap();
    }
    let t = Instant::now();
    let delta = state.take_changes();
    let snap_delta = t.elapsed();
    let t = Instant::now();
    let delta_bytes = store.write_changes(2, "count", &delta).unwrap();
    store.complete(&meta(2, vec![1, 2], delta_bytes)).unwrap();
    let write_delta = t.elapsed();

    println!("keys: {keys}, changed: {changed} ({percent} %)");
    println!(
        "full checkpoint:  {full_bytes} bytes, snapshot at the barrier {:.1} ms, written and flushed in {:.1} ms",
        snap_full.as_secs_f64() * 1e3,
        write_full.as_secs_f64() * 1e3
    );
    println!(
        "delta checkpoint: {delta_bytes} bytes ({:.2} % of full), snapshot at the barrier {:.1} ms, written and flushed in {:.1} ms",
        100.0 * delta_bytes as f64 / full_bytes as f64,
        snap_delta.as_secs_f64() * 1e3,
        write_delta.as_secs_f64() * 1e3
    );
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}
