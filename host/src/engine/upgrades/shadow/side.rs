//! One side of a shadow run: an instance of the live or the candidate
//! logic, fed the same calls ([`Side`]), and which logic it is ([`SideLogic`]).

use serde::Serialize;

use crate::model::{Batch, Blobs, GuestError, LogicId, TimeDomain, Timers};
use crate::wasm::component::LoadedOperator;
use crate::wasm::operator::{OperatorImpl, OperatorInstance};

/// Most timers handed to one `on-timer` call.
pub(super) const TIMERS_PER_CALL: usize = 4096;

/// One side of a shadow run: an operator instance, driven as a subtask
/// drives it. An event it rejects as bad input is skipped (counted in
/// `rejected`, written nowhere) and the call goes on with the events after
/// it; a trap, budget overrun or fatal error is an error.
pub struct Side {
    /// The instance.
    pub op: Box<dyn OperatorInstance>,
    /// Events it rejected as bad input.
    pub rejected: u64,
}

impl Side {
    /// A side over `op`.
    pub fn new(op: Box<dyn OperatorInstance>) -> Self {
        Side { op, rejected: 0 }
    }

    /// Processes `input`; returns what it emitted.
    pub fn process(&mut self, input: &Batch) -> Result<Vec<Batch>, String> {
        let mut out = Vec::new();
        let mut call = input.clone();
        while !call.is_empty() {
            match self.op.process(&mut call)? {
                Ok(b) => {
                    out.push(b);
                    break;
                }
                Err(GuestError::BadInput(r)) => {
                    let next = r.index as usize + 1;
                    out.push(r.output);
                    self.rejected += 1;
                    call = call.tail(next.min(call.len()));
                }
                Err(GuestError::Fatal(m)) => return Err(format!("failed: {m}")),
            }
        }
        Ok(out)
    }

    /// Fires its timers of `domain` due at `time`; returns what it emitted.
    pub fn fire(&mut self, domain: TimeDomain, time: i64) -> Result<Vec<Batch>, String> {
        let mut out = Vec::new();
        loop {
            let mut keys = Blobs::with_capacity(0);
            let mut timestamps = Vec::new();
            let popped =
                self.op
                    .ctx()
                    .timers
                    .pop_due_with(domain, time, TIMERS_PER_CALL, |ts, key| {
                        keys.push(key);
                        timestamps.push(ts);
                    });
            if popped == 0 {
                return Ok(out);
            }
            let mut fired = Timers {
                domain,
                keys,
                timestamps,
            };
            match self.op.on_timer(&mut fired)? {
                Ok(b) => out.push(b),
                Err(GuestError::Fatal(m)) => return Err(format!("failed in on_timer: {m}")),
                Err(GuestError::BadInput(r)) => {
                    return Err(format!(
                        "on_timer rejected timer {}: {}",
                        r.index, r.message
                    ))
                }
            }
        }
    }

    /// Moves its watermark to `watermark`, if that is ahead, and fires the
    /// event-time timers it passes; returns what they emitted.
    pub fn advance(&mut self, watermark: i64) -> Result<Vec<Batch>, String> {
        if watermark <= self.op.ctx().watermark {
            return Ok(Vec::new());
        }
        self.op.ctx().watermark = watermark;
        self.fire(TimeDomain::EventTime, watermark)
    }
}

/// Which logic a side runs, and from which `.wasm`, for reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SideLogic {
    /// The `.wasm`.
    pub wasm: String,
    /// The logic.
    pub logic: LogicId,
}

impl SideLogic {
    pub(super) fn of(loaded: &LoadedOperator) -> Self {
        SideLogic {
            wasm: loaded.path.display().to_string(),
            logic: OperatorImpl::Wasm(loaded.clone()).logic_id(),
        }
    }
}

/// A shadow report shows a side's logic as `wasm`, `name`, `version` and `sha256`.
impl Serialize for SideLogic {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("SideLogic", 4)?;
        st.serialize_field("wasm", &self.wasm)?;
        st.serialize_field("name", &self.logic.name)?;
        st.serialize_field("version", &self.logic.version)?;
        st.serialize_field("sha256", &self.logic.wasm_sha256)?;
        st.end()
    }
}
