//! Host side of the WIT `timers` interface: registering and deleting timers,
//! the watermark and the processing-time clock.

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
                if let Some(k) = key {
                    let kg = keygroup::key_group(Some(k), sub.max_parallelism);
                    if !sub.key_groups.contains(&kg) {
                        return Err(trap(format!(
                            "a timer was set for a key of key group {kg}, which subtask {} does not own; keyed timers need `input = \"key\"` or parallelism 1",
                            sub.subtask
                        )));
                    }
                }
                Ok(key.map(<[u8]>::to_vec))
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
