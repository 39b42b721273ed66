//! `word-split`: stateless; splits each event's value on whitespace and emits
//! one event per word, with the word as both key and value and the input's
//! timestamp. Config: `lowercase = "true"` lowercases the words (default false).

use weir_sdk::{Context, Error, Event, Operator, Output};

struct WordSplit {
    lowercase: bool,
}

impl Operator for WordSplit {
    const NAME: &'static str = "word-split";
    const VERSION: &'static str = "1.0.0";

    fn open(ctx: &mut Context) -> Result<Self, String> {
        Ok(WordSplit {
            lowercase: ctx.config().parse_or("lowercase", false)?,
        })
    }

    fn process(
        &mut self,
        _ctx: &mut Context,
        event: Event<'_>,
        out: &mut Output,
    ) -> Result<(), Error> {
        let text = event.value_str()?;
        for word in text.split_whitespace() {
            if self.lowercase {
                let word = word.to_lowercase();
                out.emit(Some(word.as_bytes()), &word, event.timestamp);
            } else {
                out.emit(Some(word.as_bytes()), word, event.timestamp);
            }
        }
        Ok(())
    }
}

weir_sdk::export!(WordSplit);
