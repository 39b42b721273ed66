//! `swap-trap`: `keyed-count` 1.0.0's logic (value state `count`, the same
//! output) that panics on the 1000th event an instance processes: new logic
//! for a live swap that fails on probation, to test the rollback.

use weir_sdk::{Context, Error, Event, Operator, Output, StateSpec, ValueState};

/// The event (counted per instance, from 1) it panics on.
const TRAP_AT: u64 = 1000;

struct SwapTrap {
    count: ValueState<u64>,
    seen: u64,
}

impl Operator for SwapTrap {
    const NAME: &'static str = "keyed-count";
    const VERSION: &'static str = "1.1.0-trap";

    fn states() -> Vec<StateSpec> {
        vec![StateSpec::value("count", 1)]
    }

    fn open(ctx: &mut Context) -> Result<Self, String> {
        Ok(SwapTrap {
            count: ctx.value_state("count")?,
            seen: 0,
        })
    }

    fn process(
        &mut self,
        _ctx: &mut Context,
        event: Event<'_>,
        out: &mut Output,
    ) -> Result<(), Error> {
        self.seen += 1;
        if self.seen == TRAP_AT {
            panic!("swap-trap: event {TRAP_AT}");
        }
        let key = event.require_key()?;
        let n = self.count.get(key)?.unwrap_or(0) + 1;
        self.count.set(key, n);
        out.emit(Some(key), n.to_string(), event.timestamp);
        Ok(())
    }
}

weir_sdk::export!(SwapTrap);
