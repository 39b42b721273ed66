//! `hostile-ghost-state`: a guest that reaches for state it has no right
//! to. Written against the raw WIT contract (no SDK), like every program in
//! `tests/plugins/hostile`. It declares one value state, `count`.
//!
//! - config `open = "ghost"`: `open` opens the undeclared value state
//!   `ghost` and, refused, returns the host's refusal as its own error;
//! - event `ghost`: the same in `process`, returned as a fatal error;
//! - event `wrong-kind`: opens `count` as map state (it is value state),
//!   and returns the host's refusal as a fatal error;
//! - event `foreign`: writes `count` for 64 keys of its own choosing, which
//!   with parallelism above 1 include keys of another subtask's key groups;
//! - any other event passes through unchanged.
//!
//! The host must refuse each: the subtask fails with a one-line message
//! naming the operator, the subtask and the state; never a panic.

wit_bindgen::generate!({ path: "../../../../wit", world: "operator" });

use exports::weir::operator::guest::{
    Batch, Blobs, Error, Guest, MigrateError, OperatorSpec, TaskInfo, Timers,
};
use weir::operator::state::{MapState, ValueState};
use weir::operator::types::{StateKind, StateSpec};

struct GhostState;

impl Guest for GhostState {
    fn describe() -> OperatorSpec {
        OperatorSpec {
            name: "hostile-ghost-state".into(),
            version: "0.1.0".into(),
            states: vec![StateSpec {
                name: "count".into(),
                kind: StateKind::Value,
                version: 1,
            }],
        }
    }

    fn open(_task: TaskInfo, config: Vec<(String, String)>) -> Result<(), String> {
        if config.iter().any(|(k, v)| k == "open" && v == "ghost") {
            ValueState::open("ghost")?;
            return Err("the host opened the undeclared state `ghost`".into());
        }
        Ok(())
    }

    fn process(input: Batch) -> Result<Batch, Error> {
        let mut at = 0;
        for (&key_len, &value_len) in input.key_lens.iter().zip(&input.value_lens) {
            at += key_len.max(0) as usize;
            let value = &input.data[at..at + value_len as usize];
            at += value_len as usize;
            match value {
                b"ghost" => {
                    ValueState::open("ghost").map_err(Error::Fatal)?;
                    return Err(Error::Fatal(
                        "the host opened the undeclared state `ghost`".into(),
                    ));
                }
                b"wrong-kind" => {
                    MapState::open("count").map_err(Error::Fatal)?;
                    return Err(Error::Fatal(
                        "the host opened value state `count` as a map".into(),
                    ));
                }
                b"foreign" => write_foreign_keys(),
                _ => {}
            }
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

/// Writes `count` = `1` for the keys `foreign-0` to `foreign-63`.
fn write_foreign_keys() {
    let count = ValueState::open("count").expect("`count` is declared");
    let mut keys = Blobs {
        data: Vec::new(),
        lens: Vec::new(),
    };
    let mut values = Blobs {
        data: Vec::new(),
        lens: Vec::new(),
    };
    for i in 0..64 {
        let key = format!("foreign-{i}");
        keys.data.extend_from_slice(key.as_bytes());
        keys.lens.push(key.len() as i32);
        values.data.push(b'1');
        values.lens.push(1);
    }
    count.put_many(&keys, &values);
}

export!(GhostState);
