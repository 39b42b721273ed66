//! The native ceiling, for benchmarks only: the logic of the `map` and
//! `keyed-count` example operators compiled into the host, behind the same
//! [`OperatorInstance`] interface and on the same state backend as a
//! WebAssembly operator, so that `weir bench` measures what the component
//! boundary costs as a ratio. A job cannot name these; `weir run
//! --native-operator ID=NAME` (hidden) puts one behind an operator ID.

use crate::model::batch::EventRef;
use crate::model::{Batch, GuestError, OperatorSpec, Rejected, StateKind, StateSpec, Timers};
use crate::wasm::operator::{OperatorInstance, SubtaskCtx};

/// Which logic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NativeLogic {
    /// `plugins/rust/map`: upper-cases ASCII letters of each value.
    Map,
    /// `plugins/rust/keyed-count`: value state `count` (JSON number) per key.
    KeyedCount,
}

impl NativeLogic {
    /// The logic named `name` (`map` or `keyed-count`).
    pub fn from_name(name: &str) -> Result<Self, String> {
        match name {
            "map" => Ok(NativeLogic::Map),
            "keyed-count" => Ok(NativeLogic::KeyedCount),
            other => Err(format!(
                "no native operator `{other}` (there are: map, keyed-count)"
            )),
        }
    }

    /// What the operator says of itself, as its WebAssembly twin does.
    pub fn spec(self) -> OperatorSpec {
        match self {
            NativeLogic::Map => OperatorSpec {
                name: "map".into(),
                version: "1.0.0-native".into(),
                states: Vec::new(),
            },
            NativeLogic::KeyedCount => OperatorSpec {
                name: "keyed-count".into(),
                version: "1.0.0-native".into(),
                states: vec![StateSpec {
                    name: "count".into(),
                    kind: StateKind::Value,
                    version: 1,
                }],
            },
        }
    }
}

/// A running native operator.
pub struct NativeOperator {
    logic: NativeLogic,
    ctx: SubtaskCtx,
    buf: Vec<u8>,
}

impl NativeOperator {
    /// An instance over a subtask's (restored) context.
    pub fn new(logic: NativeLogic, ctx: SubtaskCtx) -> Self {
        NativeOperator {
            logic,
            ctx,
            buf: Vec::new(),
        }
    }

    fn count(&mut self, event: &EventRef<'_>, out: &mut Batch) -> Result<(), String> {
        let key = event.key.ok_or("an event without a key")?;
        let n = match self
            .ctx
            .state
            .value_get(0, key)
            .map_err(|e| e.to_string())?
        {
            Some(v) => parse_u64(v).ok_or("a stored count that is not a number")? + 1,
            None => 1,
        };
        self.buf.clear();
        write_u64(&mut self.buf, n);
        self.ctx
            .state
            .value_put(0, key, Some(&self.buf))
            .map_err(|e| e.to_string())?;
        out.push(Some(key), &self.buf, event.timestamp);
        Ok(())
    }
}

fn parse_u64(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() {
        return None;
    }
    bytes.iter().try_fold(0u64, |n, &b| {
        b.is_ascii_digit()
            .then(|| n.checked_mul(10)?.checked_add(u64::from(b - b'0')))
            .flatten()
    })
}

fn write_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

impl OperatorInstance for NativeOperator {
    fn process(&mut self, input: &mut Batch) -> Result<Result<Batch, GuestError>, String> {
        let mut out = Batch::with_capacity(input.len(), input.data.len());
        for (i, event) in input.iter().enumerate() {
            match self.logic {
                NativeLogic::Map => {
                    self.buf.clear();
                    self.buf.extend_from_slice(event.value);
                    self.buf.make_ascii_uppercase();
                    out.push(event.key, &self.buf, event.timestamp);
                }
                NativeLogic::KeyedCount => {
                    if let Err(message) = self.count(&event, &mut out) {
                        return Ok(Err(GuestError::BadInput(Rejected {
                            index: i as u32,
                            message,
                            output: out,
                        })));
                    }
                }
            }
        }
        Ok(Ok(out))
    }

    fn on_timer(&mut self, _fired: &mut Timers) -> Result<Result<Batch, GuestError>, String> {
        Ok(Ok(Batch::default()))
    }

    fn ctx(&mut self) -> &mut SubtaskCtx {
        &mut self.ctx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip() {
        for n in [0u64, 7, 10, 12345, u64::MAX] {
            let mut b = Vec::new();
            write_u64(&mut b, n);
            assert_eq!(b, n.to_string().as_bytes());
            assert_eq!(parse_u64(&b), Some(n));
        }
        assert_eq!(parse_u64(b""), None);
        assert_eq!(parse_u64(b"1x"), None);
        assert_eq!(parse_u64(b"99999999999999999999"), None);
    }
}
