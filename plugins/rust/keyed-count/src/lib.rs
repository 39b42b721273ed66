//! `keyed-count`: value state `count` per key; emits each event's key with
//! `value` = the running count as decimal text. No config. An event without a
//! key is bad input (dead-letter).

use weir_sdk::{Context, Error, Event, Operator, Output, StateSpec, ValueState};

struct KeyedCount {
    count: ValueState<u64>,
}

impl Operator for KeyedCount {
    const NAME: &'static str = "keyed-count";
    const VERSION: &'static str = "1.0.0";

    fn states() -> Vec<StateSpec> {
        vec![StateSpec::value("count", 1)]
    }

    fn open(ctx: &mut Context) -> Result<Self, String> {
        Ok(KeyedCount {
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
        let n = self.count.get(key)?.unwrap_or(0) + 1;
        self.count.set(key, n);
        // Decimal text written on the stack: no allocation per event (and no
        // dependency beyond the SDK, as `weir new` scaffolds this file).
        let mut text = [0u8; 20];
        let mut at = text.len();
        let mut rest = n;
        loop {
            at -= 1;
            text[at] = b'0' + (rest % 10) as u8;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        out.emit(Some(key), &text[at..], event.timestamp);
        Ok(())
    }
}

weir_sdk::export!(KeyedCount);
