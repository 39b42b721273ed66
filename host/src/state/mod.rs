//! Storage: what weir keeps of an operator's state and where it keeps it.
//! Keyed state in memory ([`keyed`], in flat copy-on-write shards), timers ([`timers`]), the sled-backed
//! checkpoint store ([`checkpoint`]), the savepoint format ([`savepoint`]),
//! and restore planning, which maps stored state onto a new job
//! ([`restore`]). Uses only [`crate::model`].

pub mod checkpoint;
pub mod keyed;
pub mod restore;
pub mod savepoint;
pub(crate) mod shard;
pub mod timers;
