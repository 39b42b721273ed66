//! The glue between the WIT exports and an [`Operator`]: one instance per
//! component, flat batches turned into [`Event`]s and back, state and timer
//! buffers flushed at the end of every call.

// The error type is the WIT `error` variant, whose bad-input case carries the
// output of the events before the bad one; it is returned once per call.
#![allow(clippy::result_large_err)]

use std::any::Any;
use std::cell::RefCell;
use std::rc::Rc;

use crate::context::{Config, Context, TaskInfo};
use crate::event::{Error, Event, Output, TimeDomain, Timer};
use crate::Operator;

/// The bindings generated from `wit/` (the one `generate!` of the SDK).
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "operator",
        pub_export_macro: true,
        export_macro_name: "export",
        default_bindings_module: "weir_sdk::__private::bindings",
        runtime_path: "weir_sdk::__private::wit_bindgen::rt",
    });
}

/// Short paths to the generated interfaces. Under `cargo test` the imported
/// ones (`state`, `timers`, `logging`) are the stand-in of the shared test
/// vectors (`crate::vectors::host`): wasm imports do not link on the host.
pub mod wit {
    pub use super::bindings::exports::weir::operator::guest;
    pub use super::bindings::weir::operator::types;
    #[cfg(not(test))]
    pub use super::bindings::weir::operator::{logging, state, timers};
    #[cfg(test)]
    pub use crate::vectors::host::{logging, state, timers};
}

use wit::types;

struct Instance {
    op: Box<dyn Any>,
    ctx: Context,
}

thread_local! {
    static INSTANCE: RefCell<Option<Instance>> = const { RefCell::new(None) };
}

/// The keys of the current call, for [`crate::ValueState`] prefetching:
/// the call's own input, shared with it rather than copied.
#[derive(Default)]
pub(crate) enum CallKeys {
    #[default]
    None,
    /// A batch of events (checked by `events`).
    Events(Rc<types::Batch>),
    /// The keys of fired timers (checked by `split_blobs`).
    Timers(Rc<types::Blobs>),
}

impl CallKeys {
    /// The key of each event (or timer) of the call, in order (`None`: no key).
    pub(crate) fn iter(&self) -> impl Iterator<Item = Option<&[u8]>> + '_ {
        let (data, key_lens, value_lens): (&[u8], &[i32], &[u32]) = match self {
            CallKeys::None => (&[], &[], &[]),
            CallKeys::Events(b) => (&b.data, &b.key_lens, &b.value_lens),
            CallKeys::Timers(k) => (&k.data, &k.lens, &[]),
        };
        let mut at = 0usize;
        key_lens.iter().enumerate().map(move |(i, &len)| {
            let key = (len >= 0).then(|| {
                let key = data.get(at..at + len as usize).unwrap_or_default();
                at += len as usize;
                key
            });
            at += value_lens.get(i).map_or(0, |&n| n as usize);
            key
        })
    }
}

thread_local! {
    pub(crate) static CALL_KEYS: RefCell<CallKeys> = const { RefCell::new(CallKeys::None) };
    /// The position of the event (or timer) being handled in the current
    /// call and where its key's bytes are, so that state finds that key
    /// without hashing or comparing it again.
    pub(crate) static CURRENT: std::cell::Cell<(u32, usize, usize)> =
        const { std::cell::Cell::new((u32::MAX, 0, 0)) };
}

fn clear_call_keys() {
    CALL_KEYS.set(CallKeys::None);
    CURRENT.set((u32::MAX, 0, 0));
}

fn key_at(key: Option<&[u8]>) -> (usize, usize) {
    key.map_or((0, 0), |k| (k.as_ptr() as usize, k.len()))
}

/// `describe` export.
pub fn describe<T: Operator>() -> types::OperatorSpec {
    types::OperatorSpec {
        name: T::NAME.to_string(),
        version: T::VERSION.to_string(),
        states: T::states().iter().map(|s| s.to_wit()).collect(),
    }
}

/// `open` export.
pub fn open<T: Operator>(
    task: types::TaskInfo,
    config: Vec<(String, String)>,
) -> Result<(), String> {
    let mut ctx = Context::new(
        TaskInfo {
            operator_id: task.operator_id,
            subtask: task.subtask,
            parallelism: task.parallelism,
            max_parallelism: task.max_parallelism,
            attempt: task.attempt,
        },
        Config::new(config),
        T::states(),
    );
    let op = T::open(&mut ctx)?;
    ctx.flush().map_err(|e| e.to_string())?;
    INSTANCE.with_borrow_mut(|i| {
        *i = Some(Instance {
            op: Box::new(op),
            ctx,
        })
    });
    Ok(())
}

fn with_instance<T: Operator, R>(
    f: impl FnOnce(&mut T, &mut Context) -> Result<R, types::Error>,
) -> Result<R, types::Error> {
    INSTANCE.with_borrow_mut(|slot| {
        let Some(instance) = slot.as_mut() else {
            return Err(types::Error::Fatal(
                "the operator was called before `open`".to_string(),
            ));
        };
        let Some(op) = instance.op.downcast_mut::<T>() else {
            return Err(types::Error::Fatal(
                "the operator instance has an unexpected type".to_string(),
            ));
        };
        f(op, &mut instance.ctx)
    })
}

/// Splits a flat batch into events.
fn events(batch: &types::Batch) -> Result<Vec<Event<'_>>, types::Error> {
    let n = batch.timestamps.len();
    if batch.key_lens.len() != n || batch.value_lens.len() != n {
        return Err(types::Error::Fatal(
            "malformed batch: the length lists differ".to_string(),
        ));
    }
    let mut events = Vec::with_capacity(n);
    let mut at = 0usize;
    let data = &batch.data[..];
    for i in 0..n {
        let key = match batch.key_lens[i] {
            -1 => None,
            len if len >= 0 => {
                let end = at + len as usize;
                let key = data.get(at..end).ok_or_else(malformed)?;
                at = end;
                Some(key)
            }
            _ => return Err(malformed()),
        };
        let end = at + batch.value_lens[i] as usize;
        let value = data.get(at..end).ok_or_else(malformed)?;
        at = end;
        events.push(Event {
            key,
            value,
            timestamp: batch.timestamps[i],
        });
    }
    Ok(events)
}

fn malformed() -> types::Error {
    types::Error::Fatal("malformed batch: lengths exceed the data".to_string())
}

fn fatal(e: Error) -> types::Error {
    types::Error::Fatal(e.to_string())
}

/// `process` export.
pub fn process<T: Operator>(input: types::Batch) -> Result<types::Batch, types::Error> {
    with_instance::<T, _>(|op, ctx| {
        let input = Rc::new(input);
        let events = events(&input)?;
        CALL_KEYS.set(CallKeys::Events(input.clone()));
        ctx.begin_call();
        let mut out = Output::with_capacity(events.len());
        let result = (|| {
            op.prefetch(ctx, &events).map_err(fatal)?;
            for (i, event) in events.iter().enumerate() {
                let (ptr, len) = key_at(event.key);
                CURRENT.set((i as u32, ptr, len));
                match op.process(ctx, *event, &mut out) {
                    Ok(()) => {}
                    Err(Error::BadInput(message)) => {
                        return Err(types::Error::BadInput(types::Rejected {
                            index: i as u32,
                            message,
                            output: std::mem::take(&mut out).into_batch(),
                        }))
                    }
                    Err(e @ Error::Fatal(_)) => return Err(fatal(e)),
                }
            }
            Ok(())
        })();
        // State written before a bad input is kept, so flush in every case.
        let flushed = ctx.flush();
        clear_call_keys();
        result?;
        flushed.map_err(fatal)?;
        Ok(out.into_batch())
    })
}

/// `on-timer` export.
pub fn on_timer<T: Operator>(fired: types::Timers) -> Result<types::Batch, types::Error> {
    with_instance::<T, _>(|op, ctx| {
        let domain = match fired.domain {
            types::TimeDomain::EventTime => TimeDomain::EventTime,
            types::TimeDomain::ProcessingTime => TimeDomain::ProcessingTime,
        };
        let fired_keys = Rc::new(fired.keys);
        let keys = crate::state::split_blobs(&fired_keys).map_err(fatal)?;
        if keys.len() != fired.timestamps.len() {
            return Err(types::Error::Fatal(
                "malformed timers: the length lists differ".to_string(),
            ));
        }
        let timers: Vec<Timer<'_>> = keys
            .iter()
            .zip(&fired.timestamps)
            .map(|(key, &timestamp)| Timer {
                key: *key,
                timestamp,
                domain,
            })
            .collect();
        CALL_KEYS.set(CallKeys::Timers(fired_keys.clone()));
        ctx.begin_call();
        let mut out = Output::with_capacity(timers.len());
        let result = (|| {
            op.prefetch_timers(ctx, &timers)?;
            for (i, timer) in timers.iter().enumerate() {
                let (ptr, len) = key_at(timer.key);
                CURRENT.set((i as u32, ptr, len));
                op.on_timer(ctx, *timer, &mut out)?;
            }
            Ok::<(), Error>(())
        })();
        let flushed = ctx.flush();
        clear_call_keys();
        result.map_err(|e| match e {
            Error::BadInput(m) => types::Error::Fatal(format!("on_timer rejected a timer: {m}")),
            e => fatal(e),
        })?;
        flushed.map_err(fatal)?;
        Ok(out.into_batch())
    })
}

/// `migrate` export.
pub fn migrate<T: Operator>(
    state: &str,
    from_version: u32,
    values: types::Blobs,
) -> Result<types::Blobs, types::MigrateError> {
    let parts = crate::state::split_blobs(&values).map_err(|e| types::MigrateError {
        index: 0,
        message: e.to_string(),
    })?;
    let mut out = types::Blobs {
        data: Vec::with_capacity(values.data.len()),
        lens: Vec::with_capacity(parts.len()),
    };
    for (i, value) in parts.into_iter().enumerate() {
        match value {
            None => out.lens.push(-1),
            Some(value) => {
                let new = T::migrate(state, from_version, value).map_err(|message| {
                    types::MigrateError {
                        index: i as u32,
                        message,
                    }
                })?;
                out.lens.push(new.len() as i32);
                out.data.extend_from_slice(&new);
            }
        }
    }
    Ok(out)
}
