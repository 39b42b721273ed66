//! `swap-reject`: declares `keyed-count` 1.0.0's state (value `count`) and
//! rejects every event as bad input: new logic for a live swap that sends
//! more than its share of events to the dead-letter output on probation.

use weir_sdk::{Context, Error, Event, Operator, Output, StateSpec, ValueState};

struct SwapReject {
    _count: ValueState<u64>,
}

impl Operator for SwapReject {
    const NAME: &'static str = "keyed-count";
    const VERSION: &'static str = "1.2.0-reject";

    fn states() -> Vec<StateSpec> {
        vec![StateSpec::value("count", 1)]
    }

    fn open(ctx: &mut Context) -> Result<Self, String> {
        Ok(SwapReject {
            _count: ctx.value_state("count")?,
        })
    }

    fn process(
        &mut self,
        _ctx: &mut Context,
        _event: Event<'_>,
        _out: &mut Output,
    ) -> Result<(), Error> {
        Err(Error::bad_input("swap-reject rejects every event"))
    }
}

weir_sdk::export!(SwapReject);
