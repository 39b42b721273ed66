//! Write [weir](https://example.invalid/weir) stream operators in Rust.
//!
//! An operator is a type that implements [`Operator`] and is exported with
//! [`export!`]. It declares its state up front ([`Operator::states`]), opens
//! typed handles to it in [`Operator::open`], and then sees one [`Event`] at
//! a time in [`Operator::process`], emitting events into an [`Output`].
//!
//! ```no_run
//! use weir_sdk::{Context, Error, Event, Operator, Output, StateSpec, ValueState};
//!
//! /// Counts events per key and emits the running count.
//! struct KeyedCount {
//!     count: ValueState<u64>,
//! }
//!
//! impl Operator for KeyedCount {
//!     const NAME: &'static str = "keyed-count";
//!     const VERSION: &'static str = "1.0.0";
//!
//!     fn states() -> Vec<StateSpec> {
//!         vec![StateSpec::value("count", 1)]
//!     }
//!
//!     fn open(ctx: &mut Context) -> Result<Self, String> {
//!         Ok(KeyedCount { count: ctx.value_state("count")? })
//!     }
//!
//!     fn process(&mut self, _ctx: &mut Context, event: Event<'_>, out: &mut Output) -> Result<(), Error> {
//!         let key = event.key.ok_or_else(|| Error::bad_input("event has no key"))?;
//!         let n = self.count.get(key)?.unwrap_or(0) + 1;
//!         self.count.set(key, n);
//!         out.emit(Some(key), n.to_string(), event.timestamp);
//!         Ok(())
//!     }
//! }
//!
//! weir_sdk::export!(KeyedCount);
//! ```
//!
//! # State, and what crosses the component boundary
//!
//! State lives in the host, not in the guest's memory: it is checkpointed and
//! survives restarts and logic swaps. The handles here cache it: the first
//! read of a [`ValueState`] in a batch fetches the values of every key of the
//! batch that the handle does not know yet in one call, writes are buffered,
//! and all buffered writes and timer registrations go to the host in one call
//! per state when the batch ends. A keyed counter therefore crosses the
//! boundary a constant number of times per batch. Values read or written stay
//! known from batch to batch (up to 65,536 keys or entries per state; the
//! handle forgets them past that, and when its share of hits shows that the
//! keys are too many for it to hold): the host's copy changes only through this instance's writes, since a
//! restore, a restart or a swap starts a new instance. A [`ValueState`] also
//! keeps where the host stored each key it wrote (`put-many-placed`), and
//! gives it back with the key's next write, so that the host checks that
//! slot instead of finding the key again. Opening the same state twice gives handles on one cache.
//! [`MapState`] reads that the SDK cannot guess can be batched with
//! [`MapState::prefetch`] from [`Operator::prefetch`].
//!
//! Every weir SDK follows the same guest runtime contract (`sdk/PROTOCOL.md`
//! in the weir repository), checked by shared test vectors (`sdk/vectors`),
//! which `cargo test -p weir-sdk` runs against this crate; keeping state
//! from call to call and giving the host places are this SDK's optional
//! optimisations of it.
//!
//! # How typed state is stored
//!
//! Values (and the user keys of a [`MapState`]) are stored as **JSON**
//! (`serde_json`), so that an operator written in any language can read state
//! written by another: `42`, `"text"`, `{"a": 1}`, `[1, 2]`. The key a state is
//! kept under is the raw bytes the operator passes, normally the event key.

#![warn(missing_docs)]

extern crate self as weir_sdk;

mod bytes;
mod context;
mod event;
mod runtime;
mod state;
#[cfg(test)]
mod vectors;

pub use context::{Config, Context, TaskInfo};
pub use event::{Error, Event, Output, TimeDomain, Timer};
pub use state::{ListState, MapState, StateKind, StateSpec, ValueState};

/// Logging into the host's tracing, tagged with the operator ID and subtask.
pub mod log {
    use crate::runtime::wit::logging::{log, Level};

    /// Logs `message` at trace level.
    pub fn trace(message: &str) {
        log(Level::Trace, message)
    }
    /// Logs `message` at debug level.
    pub fn debug(message: &str) {
        log(Level::Debug, message)
    }
    /// Logs `message` at info level.
    pub fn info(message: &str) {
        log(Level::Info, message)
    }
    /// Logs `message` at warn level.
    pub fn warn(message: &str) {
        log(Level::Warn, message)
    }
    /// Logs `message` at error level.
    pub fn error(message: &str) {
        log(Level::Error, message)
    }
}

/// The operator logic: implement it for a type and export the type with [`export!`].
///
/// One value of the type is created per subtask by [`Operator::open`]. Only
/// declared state survives a restart: fields of the type are rebuilt by `open`.
pub trait Operator: Sized + 'static {
    /// The name of the logic, e.g. `"keyed-count"`.
    const NAME: &'static str;
    /// The version of the logic, e.g. `"1.0.0"`.
    const VERSION: &'static str;

    /// The declared states: name, kind and schema version of each.
    fn states() -> Vec<StateSpec> {
        Vec::new()
    }

    /// Creates the operator for one subtask: read the config, open state handles.
    fn open(ctx: &mut Context) -> Result<Self, String>;

    /// Handles one event. Return [`Error::bad_input`] to send the event to the
    /// dead-letter output (the job goes on), [`Error::fatal`] to fail the job.
    ///
    /// Validate an event before writing state for it: writes made before a
    /// bad-input error are kept.
    fn process(
        &mut self,
        ctx: &mut Context,
        event: Event<'_>,
        out: &mut Output,
    ) -> Result<(), Error>;

    /// Called with every event of a batch before [`Operator::process`] sees
    /// them, to batch state reads the SDK cannot guess (see [`MapState::prefetch`]).
    fn prefetch(&mut self, _ctx: &mut Context, _events: &[Event<'_>]) -> Result<(), Error> {
        Ok(())
    }

    /// Handles a timer registered with [`Context::register_timer`] that fired.
    fn on_timer(
        &mut self,
        _ctx: &mut Context,
        _timer: Timer<'_>,
        _out: &mut Output,
    ) -> Result<(), Error> {
        Ok(())
    }

    /// Called with every timer that fires together, before [`Operator::on_timer`]
    /// sees them, to batch state reads.
    fn prefetch_timers(&mut self, _ctx: &mut Context, _timers: &[Timer<'_>]) -> Result<(), Error> {
        Ok(())
    }

    /// Converts one stored value of `state` from schema version `from_version`
    /// to the version this operator declares. Called when a checkpoint or
    /// savepoint of an older version is restored (before `open`, for every
    /// value of a value state, every value of a map state, every element of a
    /// list state); an `Err` stops the restore, naming the key. The default
    /// refuses.
    fn migrate(state: &str, from_version: u32, value: &[u8]) -> Result<Vec<u8>, String> {
        let _ = value;
        Err(format!(
            "{} {} has no migration for state `{state}` from version {from_version}",
            Self::NAME,
            Self::VERSION
        ))
    }
}

#[doc(hidden)]
pub mod __private {
    pub use crate::runtime::*;
    pub use wit_bindgen;
}

/// Exports an [`Operator`] type as the operator of this component.
///
/// Use it once per crate, at the top level: `weir_sdk::export!(MyOperator);`.
#[macro_export]
macro_rules! export {
    ($op:ty) => {
        const _: () = {
            use $crate::__private::wit::guest as __weir_guest;
            use $crate::__private::wit::types as __weir_types;

            struct __WeirGuest;

            impl __weir_guest::Guest for __WeirGuest {
                fn describe() -> __weir_types::OperatorSpec {
                    $crate::__private::describe::<$op>()
                }
                fn open(
                    task: __weir_types::TaskInfo,
                    config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
                ) -> ::std::result::Result<(), ::std::string::String> {
                    $crate::__private::open::<$op>(task, config)
                }
                fn process(
                    input: __weir_types::Batch,
                ) -> ::std::result::Result<__weir_types::Batch, __weir_types::Error> {
                    $crate::__private::process::<$op>(input)
                }
                fn on_timer(
                    fired: __weir_types::Timers,
                ) -> ::std::result::Result<__weir_types::Batch, __weir_types::Error> {
                    $crate::__private::on_timer::<$op>(fired)
                }
                fn migrate(
                    state: ::std::string::String,
                    from_version: u32,
                    values: __weir_types::Blobs,
                ) -> ::std::result::Result<__weir_types::Blobs, __weir_types::MigrateError> {
                    $crate::__private::migrate::<$op>(&state, from_version, values)
                }
            }

            $crate::__private::bindings::export!(__WeirGuest with_types_in $crate::__private::bindings);
        };
    };
}
