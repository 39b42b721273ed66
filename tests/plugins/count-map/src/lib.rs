//! `count-map`: declares `count` as a map state (where `keyed-count` has a
//! value state of that name): logic whose state kind changed, which a
//! restore or a live swap must refuse. Counts events per key in the map.

use weir_sdk::{Context, Error, Event, MapState, Operator, Output, StateSpec};

struct CountMap {
    count: MapState<String, u64>,
}

impl Operator for CountMap {
    const NAME: &'static str = "count-map";
    const VERSION: &'static str = "1.0.0";

    fn states() -> Vec<StateSpec> {
        vec![StateSpec::map("count", 1)]
    }

    fn open(ctx: &mut Context) -> Result<Self, String> {
        Ok(CountMap {
            count: ctx.map_state("count")?,
        })
    }

    fn process(
        &mut self,
        _ctx: &mut Context,
        event: Event<'_>,
        out: &mut Output,
    ) -> Result<(), Error> {
        let key = event.require_key()?;
        let field = "n".to_string();
        let n = self.count.get(key, &field)?.unwrap_or(0) + 1;
        self.count.put(key, &field, n)?;
        out.emit(Some(key), n.to_string(), event.timestamp);
        Ok(())
    }
}

weir_sdk::export!(CountMap);
