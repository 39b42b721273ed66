//! `dedupe`: emits an event only the first time its value is seen for its key;
//! later events with the same (key, value) are dropped. No config. State: map
//! state `seen` (value bytes -> timestamp first seen) per key. An event without
//! a key is bad input (dead-letter).

use weir_sdk::{Context, Error, Event, MapState, Operator, Output, StateSpec};

struct Dedupe {
    seen: MapState<Vec<u8>, i64>,
}

impl Operator for Dedupe {
    const NAME: &'static str = "dedupe";
    const VERSION: &'static str = "1.0.0";

    fn states() -> Vec<StateSpec> {
        vec![StateSpec::map("seen", 1)]
    }

    fn open(ctx: &mut Context) -> Result<Self, String> {
        Ok(Dedupe {
            seen: ctx.map_state("seen")?,
        })
    }

    fn prefetch(&mut self, _ctx: &mut Context, events: &[Event<'_>]) -> Result<(), Error> {
        let pairs: Vec<(&[u8], Vec<u8>)> = events
            .iter()
            .filter_map(|e| Some((e.key?, e.value.to_vec())))
            .collect();
        self.seen.prefetch(pairs.iter().map(|(k, v)| (*k, v)))
    }

    fn process(
        &mut self,
        _ctx: &mut Context,
        event: Event<'_>,
        out: &mut Output,
    ) -> Result<(), Error> {
        let key = event.require_key()?;
        let value = event.value.to_vec();
        if !self.seen.contains(key, &value)? {
            self.seen.put(key, &value, event.timestamp)?;
            out.forward(&event);
        }
        Ok(())
    }
}

weir_sdk::export!(Dedupe);
