//! `hostile-flood`: a guest that emits far more than it is given. Written
//! against the raw WIT contract (no SDK), like every program in
//! `tests/plugins/hostile`.
//!
//! `process` emits each event of its batch unchanged; an event whose value
//! is `flood:N` is replaced by N events (same key and timestamp, values
//! `0` to `N-1`), all returned from the one call.
//!
//! The host must stop it with the output budget (`[operators.limits]
//! output_per_call`): the subtask fails naming the operator, the subtask,
//! the budget and its value, and the job's restart strategy applies.

wit_bindgen::generate!({ path: "../../../../wit", world: "operator" });

use exports::weir::operator::guest::{
    Batch, Blobs, Error, Guest, MigrateError, OperatorSpec, TaskInfo, Timers,
};

struct Flood;

impl Guest for Flood {
    fn describe() -> OperatorSpec {
        OperatorSpec {
            name: "hostile-flood".into(),
            version: "0.1.0".into(),
            states: Vec::new(),
        }
    }

    fn open(_task: TaskInfo, _config: Vec<(String, String)>) -> Result<(), String> {
        Ok(())
    }

    fn process(input: Batch) -> Result<Batch, Error> {
        let mut out = empty();
        let mut at = 0;
        for (i, (&key_len, &value_len)) in input.key_lens.iter().zip(&input.value_lens).enumerate()
        {
            let key = &input.data[at..at + key_len.max(0) as usize];
            at += key.len();
            let value = &input.data[at..at + value_len as usize];
            at += value.len();
            let mut emit = |value: &[u8]| {
                out.data.extend_from_slice(key);
                out.data.extend_from_slice(value);
                out.key_lens.push(key_len);
                out.value_lens.push(value.len() as u32);
                out.timestamps.push(input.timestamps[i]);
            };
            match value.strip_prefix(b"flood:") {
                Some(n) => {
                    let n: u64 = std::str::from_utf8(n)
                        .ok()
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(0);
                    for copy in 0..n {
                        emit(copy.to_string().as_bytes());
                    }
                }
                None => emit(value),
            }
        }
        Ok(out)
    }

    fn on_timer(_fired: Timers) -> Result<Batch, Error> {
        Ok(empty())
    }

    fn migrate(_state: String, _from: u32, values: Blobs) -> Result<Blobs, MigrateError> {
        Ok(values)
    }
}

fn empty() -> Batch {
    Batch {
        data: Vec::new(),
        key_lens: Vec::new(),
        value_lens: Vec::new(),
        timestamps: Vec::new(),
    }
}

export!(Flood);
