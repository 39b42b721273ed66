//! `hostile-spin`: a guest that never returns. Written against the raw WIT
//! contract (no SDK), like every program in `tests/plugins/hostile`.
//!
//! `process` passes a batch through unchanged, unless one of its events has
//! the value `spin`: then it loops forever in `spin_forever`.
//!
//! The host must stop it with the CPU budget (`[operators.limits]
//! cpu_per_call`): the subtask fails naming the operator, the subtask, the
//! budget and its value, and the job's restart strategy applies.

wit_bindgen::generate!({ path: "../../../../wit", world: "operator" });

use exports::weir::operator::guest::{
    Batch, Blobs, Error, Guest, MigrateError, OperatorSpec, TaskInfo, Timers,
};

struct Spin;

impl Guest for Spin {
    fn describe() -> OperatorSpec {
        OperatorSpec {
            name: "hostile-spin".into(),
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
            if &input.data[at..at + value_len as usize] == b"spin" {
                spin_forever();
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

/// Counts for ever; `black_box` keeps the loop from being optimised away.
#[inline(never)]
fn spin_forever() -> ! {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

export!(Spin);
