//! `map`: stateless; rewrites each event's value, ASCII letters to upper
//! case, and emits it with the same key and timestamp. No config. The
//! benchmarks' `map` case (`weir bench map`) runs it against the same logic
//! compiled into the host.

use weir_sdk::{Context, Error, Event, Operator, Output};

struct Map {
    /// The rewritten value, reused from event to event.
    buf: Vec<u8>,
}

impl Operator for Map {
    const NAME: &'static str = "map";
    const VERSION: &'static str = "1.0.0";

    fn open(_ctx: &mut Context) -> Result<Self, String> {
        Ok(Map { buf: Vec::new() })
    }

    fn process(
        &mut self,
        _ctx: &mut Context,
        event: Event<'_>,
        out: &mut Output,
    ) -> Result<(), Error> {
        self.buf.clear();
        self.buf.extend_from_slice(event.value);
        self.buf.make_ascii_uppercase();
        out.emit(event.key, &self.buf, event.timestamp);
        Ok(())
    }
}

weir_sdk::export!(Map);
