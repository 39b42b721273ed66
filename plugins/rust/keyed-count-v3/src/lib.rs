//! `keyed-count` 3.0.0: a logic swap for `keyed-count` 1.0.0 that raises a
//! state's schema version. Value state `count` is now at version 2 and holds
//! `{"n": <count>}` instead of a bare number; [`Operator::migrate`] turns each
//! version-1 value (`41`) into `{"n":41}` when a savepoint of 1.0.0 is
//! restored, and refuses anything that is not a count. Emits each event's key
//! with `value` = the running count as decimal text, like 1.0.0, so counts go
//! on where 1.0.0 stopped. No config. An event without a key is bad input
//! (dead-letter).

use serde::{Deserialize, Serialize};
use weir_sdk::{Context, Error, Event, Operator, Output, StateSpec, ValueState};

/// A value of state `count` at schema version 2.
#[derive(Clone, Serialize, Deserialize)]
struct Count {
    n: u64,
}

struct KeyedCountV3 {
    count: ValueState<Count>,
}

impl Operator for KeyedCountV3 {
    const NAME: &'static str = "keyed-count";
    const VERSION: &'static str = "3.0.0";

    fn states() -> Vec<StateSpec> {
        vec![StateSpec::value("count", 2)]
    }

    fn open(ctx: &mut Context) -> Result<Self, String> {
        Ok(KeyedCountV3 {
            count: ctx.value_state("count")?,
        })
    }

    fn process(
        &mut self,
        _ctx: &mut Context,
        event: Event<'_>,
        out: &mut Output,
    ) -> Result<(), Error> {
        let key = event.require_key()?;
        let n = self.count.get(key)?.map_or(0, |c| c.n) + 1;
        self.count.set(key, Count { n });
        out.emit(Some(key), n.to_string(), event.timestamp);
        Ok(())
    }

    fn migrate(state: &str, from_version: u32, value: &[u8]) -> Result<Vec<u8>, String> {
        if state != "count" || from_version != 1 {
            return Err(format!(
                "{} {} has no migration for state `{state}` from version {from_version}",
                Self::NAME,
                Self::VERSION
            ));
        }
        let n: u64 = serde_json::from_slice(value)
            .map_err(|_| format!("count from version 1: `{}` is not a count", shown(value)))?;
        serde_json::to_vec(&Count { n })
            .map_err(|e| format!("count from version 1: cannot encode {n}: {e}"))
    }
}

/// `value` as text for an error message, cut to its first 64 characters.
fn shown(value: &[u8]) -> String {
    let text = String::from_utf8_lossy(value);
    match text.char_indices().nth(64) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.into_owned(),
    }
}

weir_sdk::export!(KeyedCountV3);
