//! `hostile-trap`: a guest that executes `unreachable`. Written against the
//! raw WIT contract (no SDK), like every program in `tests/plugins/hostile`.
//!
//! `process` goes through its batch event by event and emits each event
//! unchanged, except:
//! - `boom`: calls `explode`, which traps (a wasm `unreachable`);
//! - `log:TEXT`: writes TEXT through the WIT `logging.log` (at warn), to
//!   stdout and to stderr, each tagged with how it was written, and emits
//!   nothing;
//! - `timer:T`: registers an event-time timer at T for the event's key and
//!   emits nothing. `on_timer` traps (in `explode_in_timer`) on a timer set
//!   for an odd time, and ignores the others.
//!
//! The host must fail the subtask with a one-line message naming the
//! operator, the subtask, the trap and the guest function (`explode`), and
//! put every line the guest writes in its log with the operator ID.

wit_bindgen::generate!({ path: "../../../../wit", world: "operator" });

use exports::weir::operator::guest::{
    Batch, Blobs, Error, Guest, MigrateError, OperatorSpec, TaskInfo, Timers,
};
use weir::operator::logging::{log, Level};
use weir::operator::timers::register_many;
use weir::operator::types::TimeDomain;

struct Trap;

impl Guest for Trap {
    fn describe() -> OperatorSpec {
        OperatorSpec {
            name: "hostile-trap".into(),
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
            let start = at;
            at += key_len.max(0) as usize;
            let value = &input.data[at..at + value_len as usize];
            at += value_len as usize;
            if value == b"boom" {
                explode();
            }
            if let Some(time) = value.strip_prefix(b"timer:") {
                let time: i64 = String::from_utf8_lossy(time).parse().unwrap_or(0);
                let key = Blobs {
                    data: input.data[start..start + key_len.max(0) as usize].to_vec(),
                    lens: vec![key_len],
                };
                register_many(TimeDomain::EventTime, &key, &[time]);
                continue;
            }
            if let Some(text) = value.strip_prefix(b"log:") {
                let text = String::from_utf8_lossy(text);
                log(Level::Warn, &format!("{text} (through logging)"));
                println!("{text} (on stdout)");
                eprintln!("{text} (on stderr)");
                continue;
            }
            out.data.extend_from_slice(&input.data[start..at]);
            out.key_lens.push(key_len);
            out.value_lens.push(value_len);
            out.timestamps.push(input.timestamps[i]);
        }
        Ok(out)
    }

    fn on_timer(fired: Timers) -> Result<Batch, Error> {
        if fired.timestamps.iter().any(|t| t % 2 != 0) {
            explode_in_timer();
        }
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

/// Traps: the wasm `unreachable` instruction.
#[inline(never)]
fn explode() -> ! {
    core::arch::wasm32::unreachable()
}

/// Traps, from `on_timer`.
#[inline(never)]
fn explode_in_timer() -> ! {
    core::arch::wasm32::unreachable()
}

export!(Trap);
