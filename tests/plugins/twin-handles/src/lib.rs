//! `twin-handles`: opens each of its states twice, writes through one
//! handle and reads through the other, in the same call and in later ones
//! (the SDK's state cache lasts from call to call, so two handles must
//! share it). Emits, per event, `count,read,entry,clash`: the key's count
//! as written through the first value handle, the count read back through
//! the second, the map entry `n` written through one map handle and read
//! through the other, and whether opening `count` with another value type
//! was refused.

use weir_sdk::{Context, Error, Event, MapState, Operator, Output, StateSpec, ValueState};

struct TwinHandles {
    count: ValueState<u64>,
    count_again: ValueState<u64>,
    seen: MapState<String, u64>,
    seen_again: MapState<String, u64>,
    clash_refused: bool,
}

impl Operator for TwinHandles {
    const NAME: &'static str = "twin-handles";
    const VERSION: &'static str = "1.0.0";

    fn states() -> Vec<StateSpec> {
        vec![StateSpec::value("count", 1), StateSpec::map("seen", 1)]
    }

    fn open(ctx: &mut Context) -> Result<Self, String> {
        let count = ctx.value_state("count")?;
        let count_again = ctx.value_state("count")?;
        let clash = ctx.value_state::<String>("count");
        Ok(TwinHandles {
            count,
            count_again,
            seen: ctx.map_state("seen")?,
            seen_again: ctx.map_state("seen")?,
            clash_refused: clash.is_err_and(|e| e.contains("another value type")),
        })
    }

    fn process(
        &mut self,
        _ctx: &mut Context,
        event: Event<'_>,
        out: &mut Output,
    ) -> Result<(), Error> {
        let key = event.require_key()?;
        let n = self.count_again.get(key)?.unwrap_or(0) + 1;
        self.count.set(key, n);
        let read = self.count_again.get(key)?.unwrap_or(0);
        let field = "n".to_string();
        let m = self.seen.get(key, &field)?.unwrap_or(0) + 1;
        self.seen_again.put(key, &field, m)?;
        let entry = self.seen.get(key, &field)?.unwrap_or(0);
        let clash = if self.clash_refused {
            "refused"
        } else {
            "allowed"
        };
        out.emit(
            Some(key),
            format!("{n},{read},{entry},{clash}"),
            event.timestamp,
        );
        Ok(())
    }
}

weir_sdk::export!(TwinHandles);
