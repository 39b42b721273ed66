//! The boundary between the host's own types ([`crate::model`]) and the ones
//! `bindgen!` generates from `wit/` (`weir:operator@0.1.0`). Flat buffers
//! move across (a `Vec` changes hands, nothing is copied), so converting a
//! batch costs nothing on the data path. A second version of the contract
//! gets a second set of these conversions, and nothing else changes.

use super::bindings as wit;
use crate::model;

impl From<model::Batch> for wit::Batch {
    fn from(b: model::Batch) -> Self {
        wit::Batch {
            data: b.data,
            key_lens: b.key_lens,
            value_lens: b.value_lens,
            timestamps: b.timestamps,
        }
    }
}

impl From<wit::Batch> for model::Batch {
    fn from(b: wit::Batch) -> Self {
        model::Batch {
            data: b.data,
            key_lens: b.key_lens,
            value_lens: b.value_lens,
            timestamps: b.timestamps,
        }
    }
}

impl From<model::Blobs> for wit::Blobs {
    fn from(b: model::Blobs) -> Self {
        wit::Blobs {
            data: b.data,
            lens: b.lens,
        }
    }
}

impl From<wit::Blobs> for model::Blobs {
    fn from(b: wit::Blobs) -> Self {
        model::Blobs {
            data: b.data,
            lens: b.lens,
        }
    }
}

impl From<wit::StateKind> for model::StateKind {
    fn from(k: wit::StateKind) -> Self {
        match k {
            wit::StateKind::Value => model::StateKind::Value,
            wit::StateKind::Map => model::StateKind::Map,
            wit::StateKind::List => model::StateKind::List,
        }
    }
}

impl From<model::StateKind> for wit::StateKind {
    fn from(k: model::StateKind) -> Self {
        match k {
            model::StateKind::Value => wit::StateKind::Value,
            model::StateKind::Map => wit::StateKind::Map,
            model::StateKind::List => wit::StateKind::List,
        }
    }
}

impl From<wit::StateSpec> for model::StateSpec {
    fn from(s: wit::StateSpec) -> Self {
        model::StateSpec {
            name: s.name,
            kind: s.kind.into(),
            version: s.version,
        }
    }
}

impl From<wit::OperatorSpec> for model::OperatorSpec {
    fn from(s: wit::OperatorSpec) -> Self {
        model::OperatorSpec {
            name: s.name,
            version: s.version,
            states: s.states.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<wit::TimeDomain> for model::TimeDomain {
    fn from(d: wit::TimeDomain) -> Self {
        match d {
            wit::TimeDomain::EventTime => model::TimeDomain::EventTime,
            wit::TimeDomain::ProcessingTime => model::TimeDomain::ProcessingTime,
        }
    }
}

impl From<model::TimeDomain> for wit::TimeDomain {
    fn from(d: model::TimeDomain) -> Self {
        match d {
            model::TimeDomain::EventTime => wit::TimeDomain::EventTime,
            model::TimeDomain::ProcessingTime => wit::TimeDomain::ProcessingTime,
        }
    }
}

impl From<model::Timers> for wit::Timers {
    fn from(t: model::Timers) -> Self {
        wit::Timers {
            domain: t.domain.into(),
            keys: t.keys.into(),
            timestamps: t.timestamps,
        }
    }
}

impl From<wit::Timers> for model::Timers {
    fn from(t: wit::Timers) -> Self {
        model::Timers {
            domain: t.domain.into(),
            keys: t.keys.into(),
            timestamps: t.timestamps,
        }
    }
}

impl From<&model::TaskInfo> for wit::TaskInfo {
    fn from(t: &model::TaskInfo) -> Self {
        wit::TaskInfo {
            operator_id: t.operator_id.clone(),
            subtask: t.subtask,
            parallelism: t.parallelism,
            max_parallelism: t.max_parallelism,
            attempt: t.attempt,
        }
    }
}

impl From<wit::GuestError> for model::GuestError {
    fn from(e: wit::GuestError) -> Self {
        match e {
            wit::GuestError::BadInput(r) => model::GuestError::BadInput(model::Rejected {
                index: r.index,
                message: r.message,
                output: r.output.into(),
            }),
            wit::GuestError::Fatal(m) => model::GuestError::Fatal(m),
        }
    }
}

/// Lends `batch`'s buffers to `f` as the generated type, and takes them back
/// afterwards: the guest call borrows a `wit::Batch`, the host keeps its own.
pub fn lend_batch<R>(batch: &mut model::Batch, f: impl FnOnce(&wit::Batch) -> R) -> R {
    let lent = wit::Batch::from(std::mem::take(batch));
    let result = f(&lent);
    *batch = lent.into();
    result
}

/// Lends `timers`' buffers to `f` as the generated type, as [`lend_batch`].
pub fn lend_timers<R>(timers: &mut model::Timers, f: impl FnOnce(&wit::Timers) -> R) -> R {
    let empty = model::Timers {
        domain: timers.domain,
        keys: model::Blobs::default(),
        timestamps: Vec::new(),
    };
    let lent = wit::Timers::from(std::mem::replace(timers, empty));
    let result = f(&lent);
    *timers = lent.into();
    result
}
