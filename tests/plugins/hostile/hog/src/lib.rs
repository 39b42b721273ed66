//! `hostile-hog`: a guest that allocates without end. Written against the
//! raw WIT contract (no SDK), like every program in `tests/plugins/hostile`.
//!
//! `process` passes a batch through unchanged, unless one of its events has
//! the value `hog`: then `hoard` keeps every 1 MiB buffer it allocates, for
//! ever.
//!
//! The host must stop it with the memory budget (`[operators.limits]
//! memory`): the subtask fails naming the operator, the subtask, the budget
//! and its value, and the job's restart strategy applies.

wit_bindgen::generate!({ path: "../../../../wit", world: "operator" });

use exports::weir::operator::guest::{
    Batch, Blobs, Error, Guest, MigrateError, OperatorSpec, TaskInfo, Timers,
};

struct Hog;

impl Guest for Hog {
    fn describe() -> OperatorSpec {
        OperatorSpec {
            name: "hostile-hog".into(),
            version: "0.1.0".into(),
            states: Vec::new(),
        }
    }

    fn open(_task: TaskInfo, _config: Vec<(String, String)>) -> Result<(), String> {
        Ok(())
    }

    fn process(input: Batch) -> Result<Batch, Error> {
        let mut at = 0;
        for (&key_len, &value_len) in input.key_lens.iter().zip(&input.value_lens) {
            at += key_len.max(0) as usize;
            if &input.data[at..at + value_len as usize] == b"hog" {
                hoard();
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

/// Keeps allocating 1 MiB buffers (touched, so they are real) until the
/// linear memory cannot grow.
#[inline(never)]
fn hoard() -> ! {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(vec![1u8; 1 << 20]);
        std::hint::black_box(&hoard);
    }
}

export!(Hog);
