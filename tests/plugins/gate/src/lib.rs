//! `gate`: a well-behaved test operator that lets a test decide when events
//! pass. An event whose value is `gate:NAME` is held (the call waits) until
//! the file `/gates/NAME` exists, then dropped; every other event passes
//! through unchanged. The job grants the folder:
//! `[operators.capabilities] dirs = { "/gates" = "gates" }`.
//!
//! Before it waits it logs `gate NAME holds`: a barrier triggered after a
//! test has seen that line is behind the held event, so it is stuck until
//! the test opens the gate.
//!
//! A test puts it in front of a hostile operator to make a checkpoint
//! complete before the hostile event arrives, without timing: while the
//! gate holds, back-pressure stops the source, so a checkpoint triggered
//! then has its barrier ahead of the events still unread.

use weir_sdk::{Context, Error, Event, Operator, Output};

struct Gate;

impl Operator for Gate {
    const NAME: &'static str = "gate";
    const VERSION: &'static str = "0.1.0";

    fn open(_ctx: &mut Context) -> Result<Self, String> {
        Ok(Gate)
    }

    fn process(
        &mut self,
        _ctx: &mut Context,
        event: Event<'_>,
        out: &mut Output,
    ) -> Result<(), Error> {
        match event.value_str()?.strip_prefix("gate:") {
            Some(name) => {
                let path = format!("/gates/{name}");
                // Tests wait for this line: from now on, the stream is held here.
                weir_sdk::log::info(&format!("gate {name} holds"));
                while !std::path::Path::new(&path).exists() {
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
            }
            None => out.emit(event.key, event.value, event.timestamp),
        }
        Ok(())
    }
}

weir_sdk::export!(Gate);
