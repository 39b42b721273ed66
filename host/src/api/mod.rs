//! The faces of a running weir: the REST API ([`rest`]), the JSON it shows
//! a running job in ([`views`]), and its client for
//! the commands that talk to a running job ([`client`]). May use every
//! layer below.

pub mod client;
pub mod rest;
pub mod views;
