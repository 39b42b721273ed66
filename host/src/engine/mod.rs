//! The engine: runs a job's dataflow, checkpoints it, restores it, restarts
//! it, and changes its logic while it runs. It reads the job as
//! [`crate::job`] parsed it and uses [`crate::wasm`], [`crate::connectors`],
//! [`crate::state`] and [`crate::model`].
//!
//! Its parts, from the bottom up; a part names only the parts above it in
//! this list (the `layers` test holds the order):
//!
//! | part | holds |
//! | --- | --- |
//! | [`channel`] | what flows on the data path's channels: batches, watermarks, barriers, the end marker; a stage's view of its inputs |
//! | [`recovery`] | the pure rule of which checkpoint a run restores |
//! | [`errors`] | typed reasons: why a run failed, why a request was refused |
//! | [`logic`] | which logic each operator runs (its `.wasm`, a swapped-in copy, a native override) |
//! | [`connect`] | opening the job's source and sink; what an exactly-once sink's commit markers say |
//! | [`restore`] | restore selection: the checkpoint or savepoint to start from, its restore plan, whether the source can resume |
//! | [`upgrades`] | live swaps, shadow runs and the upgrade plan; the data path sees them through the swap board and the shadow tap |
//! | [`control`] | the control plane's handle on a running job ([`control::JobControl`]): status, savepoint and swap requests |
//! | [`coordinator`] | the checkpoint coordinator: triggers barriers, collects acknowledgements, completes checkpoints and savepoints |
//! | [`dataflow`] | the data path: source stage, partitioner, operator subtasks, sink stage |
//! | [`runtime`] | `weir run`: wires a run, watches it, restarts it after failures, stops it on a signal |
//!
//! Where to look for one thing:
//!
//! - a job-file field: [`crate::job`] parses it; the part that uses it is
//!   named in the field's doc there.
//! - a checkpoint barrier: the coordinator triggers it
//!   ([`coordinator::Coordinator`]), the source stage injects it
//!   ([`dataflow::source`]), subtasks align and snapshot at it
//!   ([`dataflow::subtask`]), the sink pre-commits at it ([`dataflow::sink`]).
//! - a Kafka commit: the sink stage publishes a completed checkpoint
//!   ([`dataflow::sink`]), the Kafka sink commits its transaction
//!   ([`crate::connectors::kafka::sink`]), and the coordinator completes
//!   savepoints and frees old checkpoints once it hears of the commit.

pub mod channel;
pub mod connect;
pub mod control;
pub mod coordinator;
pub mod dataflow;
pub mod errors;
pub mod logic;
pub mod recovery;
pub mod restore;
pub mod runtime;
pub mod upgrades;
