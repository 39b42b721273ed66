//! `hostile-garbage`: a guest that hands the host malformed data. Written
//! against the raw WIT contract (no SDK), like every program in
//! `tests/plugins/hostile`. It declares one value state, `count`.
//!
//! A batch passes through unchanged unless it holds one of these values;
//! the first one decides what `process` does instead:
//! - `lens`: returns a batch of 2 key lengths, 1 value length, 1 timestamp;
//! - `overrun`: returns a batch whose lengths run past its data;
//! - `negative-key`: returns a batch with a key length of -5;
//! - `huge`: returns a batch whose lengths are `i32::MAX` and `u32::MAX`;
//! - `reject-past-end`: rejects event 99 of its batch as bad input;
//! - `reject-garbage`: rejects itself, with a malformed batch as the output
//!   of the events before it;
//! - `blobs`: `value-state.put-many` with key lengths past the data;
//! - `blob-length`: `value-state.put-many` with a key length of -7;
//! - `blob-count`: `value-state.put-many` with 2 keys and 1 value;
//! - `place-count`: `value-state.put-many-placed` with 1 key and 2 places;
//! - `timer-count`: `timers.register-many` with 2 keys and 1 timestamp;
//! - `state-no-key`: `value-state.put-many` with an absent key (length -1).
//!
//! The host must fail the subtask with a one-line message that says what
//! was malformed: never a panic, never a hang.

wit_bindgen::generate!({ path: "../../../../wit", world: "operator" });

use exports::weir::operator::guest::{
    Batch, Blobs, Error, Guest, MigrateError, OperatorSpec, TaskInfo, Timers,
};
use weir::operator::state::ValueState;
use weir::operator::timers::register_many;
use weir::operator::types::{Rejected, StateKind, StateSpec, TimeDomain};

fn batch(data: &[u8], key_lens: &[i32], value_lens: &[u32], timestamps: &[i64]) -> Batch {
    Batch {
        data: data.to_vec(),
        key_lens: key_lens.to_vec(),
        value_lens: value_lens.to_vec(),
        timestamps: timestamps.to_vec(),
    }
}

fn blobs(data: &[u8], lens: &[i32]) -> Blobs {
    Blobs {
        data: data.to_vec(),
        lens: lens.to_vec(),
    }
}

/// What the guest does for `value`, the event at `index`: `None` passes it through.
fn garbage(value: &[u8], index: u32) -> Option<Result<Batch, Error>> {
    let count = || ValueState::open("count").expect("`count` is declared");
    let reject = |index, output| {
        Err(Error::BadInput(Rejected {
            index,
            message: "garbage".into(),
            output,
        }))
    };
    Some(match value {
        b"lens" => Ok(batch(b"kv", &[1, 1], &[1], &[0])),
        b"overrun" => Ok(batch(b"kv", &[1], &[100], &[0])),
        b"negative-key" => Ok(batch(b"v", &[-5], &[1], &[0])),
        b"huge" => Ok(batch(b"x", &[i32::MAX], &[u32::MAX], &[0])),
        b"reject-past-end" => reject(99, batch(b"", &[], &[], &[])),
        b"reject-garbage" => reject(index, batch(b"kv", &[1], &[100], &[0])),
        b"blobs" => {
            count().put_many(&blobs(b"k", &[100]), &blobs(b"1", &[1]));
            Ok(batch(b"", &[], &[], &[]))
        }
        b"blob-length" => {
            count().put_many(&blobs(b"k", &[-7]), &blobs(b"1", &[1]));
            Ok(batch(b"", &[], &[], &[]))
        }
        b"blob-count" => {
            count().put_many(&blobs(b"k1k2", &[2, 2]), &blobs(b"1", &[1]));
            Ok(batch(b"", &[], &[], &[]))
        }
        b"place-count" => {
            count().put_many_placed(&blobs(b"k", &[1]), &blobs(b"1", &[1]), &[0, u64::MAX]);
            Ok(batch(b"", &[], &[], &[]))
        }
        b"state-no-key" => {
            count().put_many(&blobs(b"", &[-1]), &blobs(b"1", &[1]));
            Ok(batch(b"", &[], &[], &[]))
        }
        b"timer-count" => {
            register_many(TimeDomain::EventTime, &blobs(b"k1k2", &[2, 2]), &[0]);
            Ok(batch(b"", &[], &[], &[]))
        }
        _ => return None,
    })
}

struct Garbage;

impl Guest for Garbage {
    fn describe() -> OperatorSpec {
        let count = StateSpec {
            name: "count".into(),
            kind: StateKind::Value,
            version: 1,
        };
        OperatorSpec {
            name: "hostile-garbage".into(),
            version: "0.1.0".into(),
            states: vec![count],
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
            if let Some(result) = garbage(&input.data[at..at + value_len as usize], i as u32) {
                return result;
            }
            at += value_len as usize;
        }
        Ok(input)
    }

    fn on_timer(_fired: Timers) -> Result<Batch, Error> {
        Ok(batch(b"", &[], &[], &[]))
    }

    fn migrate(_state: String, _from: u32, values: Blobs) -> Result<Blobs, MigrateError> {
        Ok(values)
    }
}

export!(Garbage);
