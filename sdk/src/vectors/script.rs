//! The operator the call vectors drive: it declares and opens the states a
//! case names, and carries out each event's (or timer's) `ops` through the
//! SDK's public API, noting every read that differs from its `expect`.

use std::cell::RefCell;
use std::collections::HashMap;

use serde_json::Value;

use crate::{
    Context, Error, Event, ListState, MapState, Operator, Output, StateSpec, TimeDomain, Timer,
    ValueState,
};

/// An event or timer the operator saw: key, value (none for a timer), timestamp.
pub(crate) type Seen = (Option<Vec<u8>>, Option<Vec<u8>>, i64);

/// What the operator does in the current call.
#[derive(Default)]
pub(crate) struct Plan {
    /// The case's `states`.
    pub(crate) states: Vec<Value>,
    /// The step's `prefetch` ops.
    pub(crate) prefetch: Vec<Value>,
    /// The ops of each event (or timer), in order.
    pub(crate) items: Vec<Vec<Value>>,
    /// How many items were handled so far in this call.
    pub(crate) at: usize,
    /// Reads that differed from their `expect`.
    pub(crate) mismatches: Vec<String>,
    /// In record mode (the batch vectors), the events and timers seen:
    /// (key, value, timestamp), the value being `None` for a timer.
    pub(crate) seen: Option<Vec<Seen>>,
}

thread_local! {
    pub(crate) static PLAN: RefCell<Plan> = RefCell::new(Plan::default());
}

enum Handle {
    Value(ValueState<Value>),
    Map(MapState<Value, Value>),
    List(ListState<Value>),
}

/// The operator: its handles by (state, handle number).
pub(crate) struct Script {
    handles: HashMap<(String, u64), Handle>,
}

fn str_of<'a>(op: &'a Value, field: &str) -> &'a str {
    op[field]
        .as_str()
        .unwrap_or_else(|| panic!("op {op}: `{field}` is not a string"))
}

fn key_of<'a>(op: &'a Value, field: &str) -> Option<&'a [u8]> {
    op[field].as_str().map(str::as_bytes)
}

fn domain_of(op: &Value) -> TimeDomain {
    match str_of(op, "domain") {
        "event-time" => TimeDomain::EventTime,
        "processing-time" => TimeDomain::ProcessingTime,
        other => panic!("unknown domain `{other}`"),
    }
}

fn check(op: &Value, got: Value) {
    let want = &op["expect"];
    if &got != want {
        PLAN.with_borrow_mut(|p| {
            p.mismatches
                .push(format!("{op}: read {got}, expected {want}"))
        });
    }
}

impl Script {
    fn handle(&self, op: &Value) -> &Handle {
        let name = str_of(op, "state").to_string();
        let n = op["handle"].as_u64().unwrap_or(0);
        self.handles
            .get(&(name, n))
            .unwrap_or_else(|| panic!("op {op}: no such state handle"))
    }

    fn value(&self, op: &Value) -> &ValueState<Value> {
        match self.handle(op) {
            Handle::Value(s) => s,
            _ => panic!("op {op}: not a value state"),
        }
    }

    fn map(&self, op: &Value) -> &MapState<Value, Value> {
        match self.handle(op) {
            Handle::Map(s) => s,
            _ => panic!("op {op}: not a map state"),
        }
    }

    fn list(&self, op: &Value) -> &ListState<Value> {
        match self.handle(op) {
            Handle::List(s) => s,
            _ => panic!("op {op}: not a list state"),
        }
    }

    fn run(&self, ctx: &mut Context, ops: &[Value], out: Option<&mut Output>) -> Result<(), Error> {
        let mut out = out;
        for op in ops {
            let key = || key_of(op, "key").expect("a state op names a key");
            match str_of(op, "op") {
                "get" => check(op, self.value(op).get(key())?.unwrap_or(Value::Null)),
                "set" => self.value(op).set(key(), op["value"].clone()),
                "remove" => self.value(op).remove(key()),
                "map.get" => check(
                    op,
                    self.map(op)
                        .get(key(), &op["map_key"])?
                        .unwrap_or(Value::Null),
                ),
                "map.put" => self
                    .map(op)
                    .put(key(), &op["map_key"], op["value"].clone())?,
                "map.remove" => self.map(op).remove(key(), &op["map_key"])?,
                "map.prefetch" => {
                    let pairs: Vec<(&[u8], &Value)> = op["pairs"]
                        .as_array()
                        .expect("pairs")
                        .iter()
                        .map(|p| (p[0].as_str().expect("a key").as_bytes(), &p[1]))
                        .collect();
                    self.map(op).prefetch(pairs)?
                }
                "map.entries" => {
                    let entries = self.map(op).entries(key())?;
                    check(
                        op,
                        Value::Array(
                            entries
                                .into_iter()
                                .map(|(k, v)| Value::Array(vec![k, v]))
                                .collect(),
                        ),
                    )
                }
                "map.clear" => self.map(op).clear(key())?,
                "list.add" => self.list(op).add(key(), &op["value"])?,
                "list.get" => check(op, Value::Array(self.list(op).get(key())?)),
                "list.update" => {
                    let values = op["values"].as_array().expect("values").clone();
                    self.list(op).update(key(), &values)?
                }
                "list.clear" => self.list(op).clear(key())?,
                "emit" => out
                    .as_deref_mut()
                    .expect("emit where there is no output")
                    .emit(
                        key_of(op, "key"),
                        str_of(op, "value"),
                        op["timestamp"].as_i64().expect("a timestamp"),
                    ),
                "timer.register" => ctx.register_timer(
                    domain_of(op),
                    key_of(op, "key"),
                    op["timestamp"].as_i64().expect("a timestamp"),
                ),
                "timer.delete" => ctx.delete_timer(
                    domain_of(op),
                    key_of(op, "key"),
                    op["timestamp"].as_i64().expect("a timestamp"),
                ),
                "watermark" => check(op, Value::from(ctx.watermark())),
                "reject" => return Err(Error::bad_input(str_of(op, "message"))),
                "fail" => return Err(Error::fatal(str_of(op, "message"))),
                other => panic!("unknown op `{other}`"),
            }
        }
        Ok(())
    }

    /// The ops of the next item, or `None` in record mode.
    fn next_item(key: Option<&[u8]>, value: Option<&[u8]>, timestamp: i64) -> Option<Vec<Value>> {
        PLAN.with_borrow_mut(|p| {
            if let Some(seen) = &mut p.seen {
                seen.push((
                    key.map(<[u8]>::to_vec),
                    value.map(<[u8]>::to_vec),
                    timestamp,
                ));
                return None;
            }
            let ops = p.items.get(p.at).cloned().unwrap_or_default();
            p.at += 1;
            Some(ops)
        })
    }
}

impl Operator for Script {
    const NAME: &'static str = "vectors";
    const VERSION: &'static str = "1.0.0";

    fn states() -> Vec<StateSpec> {
        PLAN.with_borrow(|p| {
            p.states
                .iter()
                .map(|s| {
                    let name = str_of(s, "name");
                    match str_of(s, "kind") {
                        "value" => StateSpec::value(name, 1),
                        "map" => StateSpec::map(name, 1),
                        "list" => StateSpec::list(name, 1),
                        other => panic!("unknown kind `{other}`"),
                    }
                })
                .collect()
        })
    }

    fn open(ctx: &mut Context) -> Result<Self, String> {
        let states = PLAN.with_borrow(|p| p.states.clone());
        let mut handles = HashMap::new();
        for s in &states {
            let name = str_of(s, "name");
            for n in 0..s["handles"].as_u64().unwrap_or(1) {
                let handle = match str_of(s, "kind") {
                    "value" => Handle::Value(ctx.value_state(name)?),
                    "map" => Handle::Map(ctx.map_state(name)?),
                    _ => Handle::List(ctx.list_state(name)?),
                };
                handles.insert((name.to_string(), n), handle);
            }
        }
        Ok(Script { handles })
    }

    fn prefetch(&mut self, ctx: &mut Context, _events: &[Event<'_>]) -> Result<(), Error> {
        let ops = PLAN.with_borrow(|p| p.prefetch.clone());
        self.run(ctx, &ops, None)
    }

    fn process(
        &mut self,
        ctx: &mut Context,
        event: Event<'_>,
        out: &mut Output,
    ) -> Result<(), Error> {
        match Self::next_item(event.key, Some(event.value), event.timestamp) {
            Some(ops) => self.run(ctx, &ops, Some(out)),
            None => Ok(()),
        }
    }

    fn on_timer(
        &mut self,
        ctx: &mut Context,
        timer: Timer<'_>,
        out: &mut Output,
    ) -> Result<(), Error> {
        match Self::next_item(timer.key, None, timer.timestamp) {
            Some(ops) => self.run(ctx, &ops, Some(out)),
            None => Ok(()),
        }
    }

    fn prefetch_timers(&mut self, ctx: &mut Context, _timers: &[Timer<'_>]) -> Result<(), Error> {
        let ops = PLAN.with_borrow(|p| p.prefetch.clone());
        self.run(ctx, &ops, None)
    }

    /// The vectors' migrate: `[STATE,FROM,VALUE]`, refusing the value `"refuse"`.
    fn migrate(state: &str, from_version: u32, value: &[u8]) -> Result<Vec<u8>, String> {
        if value == br#""refuse""# {
            return Err(format!("refused at version {from_version}"));
        }
        let mut out = format!("[{},{from_version},", Value::from(state)).into_bytes();
        out.extend_from_slice(value);
        out.push(b']');
        Ok(out)
    }
}

/// An operator without a migrate of its own (the vectors' `"migrate": false`).
pub(crate) struct Plain;

impl Operator for Plain {
    const NAME: &'static str = "vectors";
    const VERSION: &'static str = "1.0.0";

    fn open(_ctx: &mut Context) -> Result<Self, String> {
        Ok(Plain)
    }

    fn process(&mut self, _: &mut Context, _: Event<'_>, _: &mut Output) -> Result<(), Error> {
        Ok(())
    }
}
