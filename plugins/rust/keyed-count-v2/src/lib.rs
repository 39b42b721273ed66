//! `keyed-count` 2.0.0: a logic swap for `keyed-count` 1.0.0 that adds a
//! state. Value state `count` (v1, the same `u64` as 1.0.0 stores, so a
//! savepoint of 1.0.0 restores unchanged) and a new value state `last_seen`
//! (v1, `i64`: the latest event timestamp seen for the key; absent after a
//! swap from 1.0.0 until the key's next event). Emits each event's key with
//! `value` = `"{count} last_seen={last_seen}"` and the event's timestamp. No
//! config. An event without a key is bad input (dead-letter).

use weir_sdk::{Context, Error, Event, Operator, Output, StateSpec, ValueState};

struct KeyedCountV2 {
    count: ValueState<u64>,
    last_seen: ValueState<i64>,
}

impl Operator for KeyedCountV2 {
    const NAME: &'static str = "keyed-count";
    const VERSION: &'static str = "2.0.0";

    fn states() -> Vec<StateSpec> {
        vec![
            StateSpec::value("count", 1),
            StateSpec::value("last_seen", 1),
        ]
    }

    fn open(ctx: &mut Context) -> Result<Self, String> {
        Ok(KeyedCountV2 {
            count: ctx.value_state("count")?,
            last_seen: ctx.value_state("last_seen")?,
        })
    }

    fn process(
        &mut self,
        _ctx: &mut Context,
        event: Event<'_>,
        out: &mut Output,
    ) -> Result<(), Error> {
        let key = event.require_key()?;
        let n = self.count.get(key)?.unwrap_or(0) + 1;
        let last_seen = match self.last_seen.get(key)? {
            Some(previous) => previous.max(event.timestamp),
            None => event.timestamp,
        };
        self.count.set(key, n);
        self.last_seen.set(key, last_seen);
        out.emit(
            Some(key),
            format!("{n} last_seen={last_seen}"),
            event.timestamp,
        );
        Ok(())
    }
}

weir_sdk::export!(KeyedCountV2);
