//! weir-host: runs WebAssembly stream operators with declared, host-owned state.
//!
//! A job (the [`job`] file) names a source, a chain of operators (each a
//! `.wasm` component of the `weir:operator` world, see `wit/`) and a sink. The
//! [`runtime`] loads the operators ([`component`]), runs each subtask on a
//! thread ([`subtask`], [`operator`]) with its keyed [`state`] and [`timers`],
//! and moves events source → [`partition`] → subtasks → sink over bounded
//! channels ([`stream`]), with watermarks in-band.

#![warn(missing_docs)]

pub mod batch;
pub mod bench;
pub mod bindings;
pub mod build;
pub mod checkpoint;
pub mod component;
pub mod connectors;
pub mod control;
pub mod coordinator;
pub mod dead_letter;
pub mod guest_output;
pub mod host_logging;
pub mod host_state;
pub mod host_timers;
pub mod job;
pub mod keygroup;
pub mod native;
pub mod operator;
pub mod partition;
pub mod rest;
pub mod restore;
pub mod runtime;
pub mod savepoint;
pub mod scaffold;
pub mod state;
pub mod stream;
pub mod subtask;
pub mod timers;
