//! The host side of the WIT contract in `wit/`: the one `bindgen!` of the host.
//!
//! The generated code stays private to this module; the rest of the crate uses
//! the names re-exported here.

#[allow(missing_docs, clippy::all)]
mod generated {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "operator",
        with: {
            "weir:operator/state.value-state": crate::wasm::host_state::ValueStateHandle,
            "weir:operator/state.map-state": crate::wasm::host_state::MapStateHandle,
            "weir:operator/state.list-state": crate::wasm::host_state::ListStateHandle,
        },
        imports: { default: trappable },
        additional_derives: [PartialEq],
    });
}

pub use generated::exports::weir::operator::guest::Guest as GuestExports;
pub use generated::weir::operator::logging;
pub use generated::weir::operator::state;
pub use generated::weir::operator::timers;
pub use generated::weir::operator::types;
pub use generated::weir::operator::types::{
    Batch, Blobs, Error as GuestError, Level, MigrateError, OperatorSpec, Rejected, StateKind,
    StateSpec, TaskInfo, TimeDomain, Timers,
};
pub use generated::{Operator as OperatorWorld, OperatorPre};

/// The name of the interface every operator must export.
pub const GUEST_INTERFACE: &str = "weir:operator/guest@0.1.0";
/// The WIT package and version this host speaks.
pub const WIT_PACKAGE: &str = "weir:operator@0.1.0";
