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
    fn timer_args(
        &self,
        what: &str,
        keys: &Blobs,
        timestamps: &[i64],
    ) -> wasmtime::Result<Vec<Option<Vec<u8>>>> {
        let keys = keys.split().map_err(trap)?;
        if keys.len() != timestamps.len() {
            return Err(trap(format!(
                "timers.{what}: keys and timestamps differ in number"
            )));
        }
        let sub = &self.sub;
        keys.into_iter()
            .map(|key| {
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
                Ok(Some(k.to_vec()))
            })
            .collect()
    }
}

impl timers::Host for HostCtx {
    fn register_many(
        &mut self,
        domain: TimeDomain,
        keys: WitBlobs,
        timestamps: Vec<i64>,
    ) -> wasmtime::Result<()> {
        let keys = self.timer_args("register-many", &Blobs::from(keys), &timestamps)?;
        for (key, ts) in keys.into_iter().zip(timestamps) {
            self.sub.timers.register(domain.into(), key, ts);
            self.sub.check_pending_timers().map_err(trap)?;
        }
        Ok(())
    }

    fn delete_many(
        &mut self,
        domain: TimeDomain,
        keys: WitBlobs,
        timestamps: Vec<i64>,
    ) -> wasmtime::Result<()> {
        let keys = self.timer_args("delete-many", &Blobs::from(keys), &timestamps)?;
        for (key, ts) in keys.into_iter().zip(timestamps) {
            self.sub.timers.delete(domain.into(), key, ts);
        }
        Ok(())
    }

    fn current_watermark(&mut self) -> wasmtime::Result<i64> {
        Ok(self.sub.watermark)
    }

    fn processing_time(&mut self) -> wasmtime::Result<i64> {
        Ok(crate::model::now_ms())
    }
}
