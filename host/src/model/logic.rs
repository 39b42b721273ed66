//! An operator's logic identity: the one type every part of weir uses to
//! say which logic an operator runs (status, swaps, shadow runs, upgrade
//! plans, checkpoints).

use serde::{Deserialize, Serialize};

/// An operator's logic: what it says of itself (`describe()`) and the
/// SHA-256 of its `.wasm`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct LogicId {
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Hex SHA-256 of its `.wasm` (`native` for native logic).
    pub wasm_sha256: String,
}
