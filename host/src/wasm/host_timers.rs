//! Host side of the WIT `timers` interface: registering and deleting timers,
//! the watermark and the processing-time clock.
//!
//! Timers are keyed, as in Flink (which allows timers only on keyed
//! streams): every timer belongs to the key group of its key, is written to
//! checkpoints and savepoints in that key group, and moves with it when the
//! parallelism changes. A timer with no key has no key group of its own:
//! filed under the key group of the absent key, every subtask of an operator
//! with parallelism above 1 wrote records for that one key group, so
//! checkpoints lost some of them and savepoints held key groups outside a
//! subtask's range. A per-subtask meaning would not survive a change of
//! parallelism either (which of three subtasks inherits the timers of two?).
//! So a timer with no key is refused, at every parallelism, for both
//! `register-many` and `delete-many`: the call traps with one line that says
//! to use the event's key; the subtask fails and the restart strategy
//! applies. A keyed timer is refused when its key group is not the
//! subtask's. Timers with no key found in a checkpoint or savepoint of an
//! older weir are restored (into the key group of the absent key) and fire.
//!
//! The pending timers of a subtask are held to `[operators.limits]
//! pending_timers`: a registration past it traps, naming the budget.

use crate::model::keygroup;
use crate::model::Blobs;
use crate::wasm::bindings::{timers, Blobs as WitBlobs, TimeDomain};
use crate::wasm::operator::HostCtx;

fn trap(e: impl std::fmt::Display) -> wasmtime::Error {
    wasmtime::Error::msg(e.to_string())
}

impl HostCtx {
    /// Checks a call's keys and timestamps and hands each timer to `f`
    /// (keys borrowed from the call: no copy per timer).
    fn for_each_timer(
        &mut self,
        what: &str,
        keys: &Blobs,
        timestamps: &[i64],
        mut f: impl FnMut(&mut crate::wasm::operator::SubtaskCtx, &[u8], i64) -> Result<(), String>,
    ) -> wasmtime::Result<()> {
        let keys = keys.split().map_err(trap)?;
        if keys.len() != timestamps.len() {
            return Err(trap(format!(
                "timers.{what}: keys and timestamps differ in number"
            )));
        }
        let sub = &mut self.sub;
        for (key, &ts) in keys.into_iter().zip(timestamps) {
            let Some(k) = key else {
                return Err(trap(format!(
                    "timers.{what}: a timer has no key; timers are kept per key (in its key group, which checkpoints, savepoints and rescaling move), so use the event's key and reject events with no key as bad input"
                )));
            };
            let kg = keygroup::key_group(Some(k), sub.max_parallelism);
            if !sub.key_groups.contains(&kg) {
                return Err(trap(format!(
                    "a timer was set for a key of key group {kg}, which subtask {} does not own; keyed timers need `input = \"key\"` or parallelism 1",
                    sub.subtask
                )));
            }
            f(sub, k, ts).map_err(trap)?;
        }
        Ok(())
    }
}

impl timers::Host for HostCtx {
    fn register_many(
        &mut self,
        domain: TimeDomain,
        keys: WitBlobs,
        timestamps: Vec<i64>,
    ) -> wasmtime::Result<()> {
        let domain = domain.into();
        self.for_each_timer(
            "register-many",
            &Blobs::from(keys),
            &timestamps,
            |sub, key, ts| {
                sub.timers.register(domain, Some(key), ts);
                sub.check_pending_timers()
            },
        )
    }

    fn delete_many(
        &mut self,
        domain: TimeDomain,
        keys: WitBlobs,
        timestamps: Vec<i64>,
    ) -> wasmtime::Result<()> {
        let domain = domain.into();
        self.for_each_timer(
            "delete-many",
            &Blobs::from(keys),
            &timestamps,
            |sub, key, ts| {
                sub.timers.delete(domain, Some(key), ts);
                Ok(())
            },
        )
    }

    fn current_watermark(&mut self) -> wasmtime::Result<i64> {
        Ok(self.sub.watermark)
    }

    fn processing_time(&mut self) -> wasmtime::Result<i64> {
        Ok(crate::model::now_ms())
    }
}
