//! How the REST API shows a running job: the JSON bodies of
//! `GET /jobs/{id}` and `GET /jobs/{id}/checkpoints`, rendered from the
//! typed status the engine reports ([`JobControl`]).

use serde_json::{json, Value};

use crate::engine::control::JobControl;

/// The operators and the logic each runs, with its swaps.
pub fn operators(c: &JobControl) -> Value {
    let swaps = c.swaps();
    Value::Array(
        c.operators()
            .iter()
            .map(|o| {
                let mut v = serde_json::to_value(o).unwrap_or_default();
                v["swaps"] = serde_json::to_value(
                    swaps
                        .iter()
                        .filter(|s| s.operator == o.id)
                        .collect::<Vec<_>>(),
                )
                .unwrap_or_default();
                v
            })
            .collect(),
    )
}

/// The job's status (`GET /jobs/{id}`).
pub fn job_status(c: &JobControl) -> Value {
    let s = c.status();
    json!({
        "id": s.job,
        "name": s.job,
        "state": s.state,
        "started-at-ms": s.started_at_ms,
        "attempt": s.attempt,
        "last-failure": s.last_failure,
        "operators": operators(c),
        "events-in": s.events_in,
        "events-out": s.events_out,
        "throughput": {
            "events-in-per-second": s.rate.0,
            "events-out-per-second": s.rate.1,
        },
        "last-checkpoint": s.last_checkpoint,
        "failed-checkpoints": s.failed_checkpoints,
        "last-failed-checkpoint": s.last_failed_checkpoint,
        "checkpointing": s.checkpointing,
    })
}

/// The completed checkpoints (`GET /jobs/{id}/checkpoints`); reads the
/// store, so call it off the async workers.
pub fn checkpoints(c: &JobControl) -> Result<Value, String> {
    let Some(store) = c.store() else {
        return Ok(json!({ "checkpointing": false, "checkpoints": [] }));
    };
    let list = store.list().map_err(|e| e.to_string())?;
    let items: Vec<Value> = list
        .iter()
        .map(|m| {
            json!({
                "id": m.id,
                "full": m.is_full(),
                "chain": m.chain,
                "triggered-at-ms": m.triggered_at_ms,
                "completed-at-ms": m.completed_at_ms,
                "bytes-written": m.bytes_written,
                "finished": m.finished,
                "watermark": m.watermark,
                "operators": m.operators.iter().map(|o| json!({
                    "id": o.id,
                    "parallelism": o.parallelism,
                    "keys": o.keys,
                    "state-bytes": o.state_bytes,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(json!({
        "checkpointing": true,
        "directory": store.dir().display().to_string(),
        "checkpoints": items,
    }))
}
