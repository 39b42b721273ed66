//! `probe`: a test operator whose behaviour is driven by each event's value.
//!
//! - `panic` panics (the subtask traps); `panic-once` panics on the first
//!   attempt only (after a restart it is an ordinary item); `fatal` returns a fatal error;
//!   `bad` is rejected as bad input; `log:TEXT` logs TEXT at info level.
//! - anything else is appended to the list state `items` of its key, and a
//!   processing-time timer is set for now; when it fires, the operator emits
//!   the key with `value` = the list joined by `,` and clears the list.
//! - `loop` never returns (the CPU budget stops it); `grow` allocates
//!   without end (the memory budget stops it); `flood:N` emits N events;
//!   `echo:TEXT` emits TEXT (to drive a probe downstream).
//! - `handed` emits `C calls, E events`: how many `process` calls this
//!   instance has had and how many events they were handed in all (this one
//!   included), to see how the host re-submits a batch after a rejection.
//! - `keys:N` adds an item to the lists of N new keys (`KEY-new-0`, ...;
//!   at parallelism 1, where every key is the subtask's), and `timers:N`
//!   registers N event-time timers for its key, far in the future: to run
//!   into the state memory and pending timer budgets.
//! - `timer-no-key` registers, and `delete-timer-no-key` deletes, an
//!   event-time timer with no key; when one fires, the probe emits
//!   `timer-no-key` with no key.
//! - `read:PATH`, `write:PATH`, `list:PATH`, `env:NAME` and `connect:HOST:PORT`
//!   try that WASI access and emit the key with `value` = `ok:…` (what was
//!   read, listed or found) or `err:…` (the error), to test capabilities.
//! - config `mode = "foreign"` writes state under a key of its own choosing
//!   (not the event's), to test the key-group check; `mode = "keyless-timers"`
//!   also registers, for every ordinary item, an event-time timer with no key
//!   2^40 ms after the event.

use weir_sdk::{Context, Error, Event, ListState, Operator, Output, StateSpec, TimeDomain, Timer};

struct Probe {
    items: ListState<String>,
    foreign: bool,
    calls: u64,
    handed: u64,
    keyless_timers: bool,
}

impl Operator for Probe {
    const NAME: &'static str = "probe";
    const VERSION: &'static str = "0.1.0";

    fn states() -> Vec<StateSpec> {
        vec![StateSpec::list("items", 1)]
    }

    fn open(ctx: &mut Context) -> Result<Self, String> {
        Ok(Probe {
            items: ctx.list_state("items")?,
            foreign: ctx.config().get("mode") == Some("foreign"),
            calls: 0,
            handed: 0,
            keyless_timers: ctx.config().get("mode") == Some("keyless-timers"),
        })
    }

    fn prefetch(&mut self, _ctx: &mut Context, events: &[Event<'_>]) -> Result<(), Error> {
        self.calls += 1;
        self.handed += events.len() as u64;
        Ok(())
    }

    fn process(
        &mut self,
        ctx: &mut Context,
        event: Event<'_>,
        out: &mut Output,
    ) -> Result<(), Error> {
        let value = event.value_str()?;
        let key = event.key.unwrap_or(b"");
        if let Some(result) = try_access(value) {
            out.emit(event.key, result, event.timestamp);
            return Ok(());
        }
        match value {
            "loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "grow" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            v if v.starts_with("flood:") => {
                let n: u64 = v[6..].parse().map_err(|_| Error::bad_input("flood:N"))?;
                for i in 0..n {
                    out.emit(event.key, i.to_string(), event.timestamp);
                }
            }
            "panic" => panic!("probe was asked to panic"),
            "panic-once" if ctx.task().attempt == 0 => {
                panic!("probe was asked to panic on the first attempt")
            }
            "fatal" => return Err(Error::fatal("probe was asked to fail")),
            "bad" => return Err(Error::bad_input("probe was told this event is bad")),
            v if v.starts_with("log:") => weir_sdk::log::info(&v[4..]),
            v if v.starts_with("echo:") => out.emit(event.key, &v[5..], event.timestamp),
            "handed" => out.emit(
                event.key,
                format!("{} calls, {} events", self.calls, self.handed),
                event.timestamp,
            ),
            v if v.starts_with("keys:") => {
                let n: u64 = v[5..].parse().map_err(|_| Error::bad_input("keys:N"))?;
                for i in 0..n {
                    let new = [key, format!("-new-{i}").as_bytes()].concat();
                    self.items.add(&new, &"x".to_string())?;
                }
            }
            v if v.starts_with("timers:") => {
                let n: i64 = v[7..].parse().map_err(|_| Error::bad_input("timers:N"))?;
                for i in 0..n {
                    ctx.register_timer(TimeDomain::EventTime, Some(key), i64::MAX - 1 - i);
                }
            }
            "timer-no-key" => ctx.register_timer(TimeDomain::EventTime, None, event.timestamp),
            "delete-timer-no-key" => ctx.delete_timer(TimeDomain::EventTime, None, event.timestamp),
            v => {
                let key = if self.foreign {
                    format!("{}-elsewhere", v).into_bytes()
                } else {
                    key.to_vec()
                };
                self.items.add(&key, &v.to_string())?;
                let now = ctx.processing_time();
                ctx.register_timer(TimeDomain::ProcessingTime, Some(&key), now);
                if self.keyless_timers {
                    // Far ahead, so that they are pending when a savepoint is taken.
                    let later = event.timestamp.saturating_add(1 << 40);
                    ctx.register_timer(TimeDomain::EventTime, None, later);
                }
            }
        }
        Ok(())
    }

    fn on_timer(
        &mut self,
        _ctx: &mut Context,
        timer: Timer<'_>,
        out: &mut Output,
    ) -> Result<(), Error> {
        let Some(key) = timer.key else {
            // A timer with no key (older weir let one be registered) has no state.
            out.emit(None, "timer-no-key", timer.timestamp);
            return Ok(());
        };
        let items = self.items.get(key)?;
        if !items.is_empty() {
            out.emit(Some(key), items.join(","), timer.timestamp);
            self.items.clear(key)?;
        }
        Ok(())
    }
}

/// Tries the access that `value` asks for: `ok:…` or `err:…`, or `None`
/// when `value` asks for none.
fn try_access(value: &str) -> Option<String> {
    let (verb, arg) = value.split_once(':')?;
    let result = match verb {
        "read" => std::fs::read_to_string(arg).map(|text| text.trim().to_string()),
        "write" => std::fs::write(arg, "written by probe").map(|()| "written".to_string()),
        "list" => std::fs::read_dir(arg).map(|entries| {
            let mut names: Vec<String> = entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names.join(",")
        }),
        "env" => std::env::var(arg).map_err(|e| std::io::Error::other(e.to_string())),
        "connect" => std::net::TcpStream::connect(arg).map(|_| "connected".to_string()),
        _ => return None,
    };
    Some(match result {
        Ok(found) => format!("ok:{found}"),
        Err(e) => format!("err:{e}"),
    })
}

weir_sdk::export!(Probe);
