//! The faces of a running weir: the REST API ([`rest`]), its client for the
//! commands that talk to a running job ([`client`]), and the in-process
//! measurements of `weir bench` ([`mod@bench`]). May use every layer below.

pub mod bench;
pub mod client;
pub mod rest;
