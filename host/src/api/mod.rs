//! The faces of a running weir: the REST API ([`rest`]) and the in-process
//! measurements of `weir bench` ([`mod@bench`]). May use every layer below.

pub mod bench;
pub mod rest;
