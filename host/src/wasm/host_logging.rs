//! Host side of the WIT `logging` interface: guest log lines land in the
//! host's tracing under the target `weir::guest`, with the operator ID and subtask.

use crate::wasm::bindings::{logging, Level};
use crate::wasm::operator::HostCtx;

impl crate::wasm::bindings::types::Host for HostCtx {}

impl logging::Host for HostCtx {
    fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        let (op, sub) = (self.sub.operator_id.as_str(), self.sub.subtask);
        match level {
            Level::Trace => {
                tracing::trace!(target: "weir::guest", operator_id = op, subtask = sub, "{message}")
            }
            Level::Debug => {
                tracing::debug!(target: "weir::guest", operator_id = op, subtask = sub, "{message}")
            }
            Level::Info => {
                tracing::info!(target: "weir::guest", operator_id = op, subtask = sub, "{message}")
            }
            Level::Warn => {
                tracing::warn!(target: "weir::guest", operator_id = op, subtask = sub, "{message}")
            }
            Level::Error => {
                tracing::error!(target: "weir::guest", operator_id = op, subtask = sub, "{message}")
            }
        }
        Ok(())
    }
}
