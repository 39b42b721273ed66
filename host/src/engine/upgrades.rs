//! Changing the logic of a running job, and checking a change first: live
//! swaps with probation and rollback ([`swap`]), shadow runs of candidate
//! logic beside the running one ([`shadow`]), and the upgrade plan that
//! shows how a savepoint's state maps onto a job before a restore
//! ([`plan`]).
//!
//! The data path sees this part only through two handles: the swap board
//! ([`swap::SwapBoard`], where a subtask finds the order to switch logic at
//! a barrier) and the shadow tap ([`shadow::ShadowTap`], through which a
//! subtask copies its inputs and outputs to a shadow run).

pub mod plan;
pub mod shadow;
pub mod swap;
