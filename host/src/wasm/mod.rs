//! Operators as WebAssembly components: the one place that names a type
//! generated from `wit/` ([`bindings`], converted at the boundary by
//! [`convert`]), loading and caching components ([`component`]), the host
//! functions a guest imports ([`host_state`], [`host_timers`],
//! [`host_logging`], [`guest_output`]), budgets and the operator instance
//! ([`operator`]), and the native ceiling for benchmarks ([`native`]).
//! Uses [`crate::state`] and [`crate::model`].

pub mod bindings;
pub mod component;
pub mod convert;
pub mod guest_output;
pub mod host_logging;
pub mod host_state;
pub mod host_timers;
pub mod limits;
pub mod native;
pub mod operator;
