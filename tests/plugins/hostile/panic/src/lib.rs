//! `hostile-panic`: a guest that panics. Written against the raw WIT
//! contract (no SDK), like every program in `tests/plugins/hostile`.
//!
//! `process` passes a batch through unchanged, unless one of its events has
//! the value `panic`: then it panics with `hostile panic: asked to panic by
//! the event at index I`. Rust prints the message to stderr and aborts,
//! which traps.
//!
//! The host must fail the subtask with a one-line message naming the
//! operator and the subtask and quoting what the guest wrote (the panic
//! message); the job's restart strategy applies.

wit_bindgen::generate!({ path: "../../../../wit", world: "operator" });

use exports::weir::operator::guest::{
    Batch, Blobs, Error, Guest, MigrateError, OperatorSpec, TaskInfo, Timers,
};

struct Panic;

impl Guest for Panic {
    fn describe() -> OperatorSpec {
        OperatorSpec {
            name: "hostile-panic".into(),
            version: "0.1.0".into(),
            states: Vec::new(),
        }
    }

    fn open(_task: TaskInfo, _config: Vec<(String, String)>) -> Result<(), String> {
        Ok(())
    }

    fn process(input: Batch) -> Result<Batch, Error> {
        let mut at = 0;
        for (i, (&key_len, &value_len)) in input.key_lens.iter().zip(&input.value_lens).enumerate()
        {
            at += key_len.max(0) as usize;
            if &input.data[at..at + value_len as usize] == b"panic" {
                panic!("hostile panic: asked to panic by the event at index {i}");
            }
            at += value_len as usize;
        }
        Ok(input)
    }

    fn on_timer(_fired: Timers) -> Result<Batch, Error> {
        Ok(Batch {
            data: Vec::new(),
            key_lens: Vec::new(),
            value_lens: Vec::new(),
            timestamps: Vec::new(),
        })
    }

    fn migrate(_state: String, _from: u32, values: Blobs) -> Result<Blobs, MigrateError> {
        Ok(values)
    }
}

export!(Panic);
