//! Savepoints: the canonical, self-contained, relocatable snapshot of a job
//! that a user asks for and owns.
//!
//! A savepoint is a directory:
//!
//! ```text
//! savepoint-<job>-<id>-<YYYYMMDD-HHMMSS>/
//!   _metadata          JSON: format version, weir version, job, created-at,
//!                      source position, and for each operator ID its name,
//!                      version, `.wasm` SHA-256, declared states (kind,
//!                      version, key count) and data files (key groups,
//!                      size, SHA-256); last, `metadata_sha256`
//!   op0-sub0.state     data files: one per operator subtask at the time
//!   op0-sub1.state     of the savepoint, each covering a range of key groups
//! ```
//!
//! Nothing in it names an absolute path: data files are named relative to
//! the directory, so a savepoint can be copied or moved anywhere.
//!
//! **`_metadata` protects itself.** Its last field, `metadata_sha256`, is the
//! SHA-256 of every line above the line that holds it (so `head -n -2
//! _metadata | sha256sum` prints it), and the file ends with that line and
//! `}`. Opening a savepoint (what `verify`, `inspect`, `edit`, `state
//! export|import` and `run --from-savepoint` all do first) recomputes it: any
//! change to the file, down to a digit of the source position or a space, is
//! refused with one line naming `_metadata`. The tools that change a
//! savepoint write a new one, with its own checksum. A checksum over the raw
//! lines, not over re-serialized fields, keeps the file plain JSON that a
//! person can read and a shell can check, and does not depend on how a JSON
//! library orders or spells things. This is format version 2; version 1 had
//! no such checksum, and is refused (naming `_metadata` and the version)
//! rather than read with a warning: a manifest that cannot be checked is the
//! very thing that restored from a wrong source position, and weir has not
//! been released, so no one holds version-1 savepoints they cannot re-take.
//!
//! It does not depend on the working state backend (sled checkpoints): a data
//! file is the magic `WEIRSPD1` followed by frames, all integers little-endian:
//!
//! ```text
//! frame   := kind:u8 key_group:u32 name_len:u16 name count:u32 len:u32 payload[len]
//! kind 1  value state: count × (key value)
//! kind 2  map state:   count × (key n:u32 n × (map_key value))
//! kind 3  list state:  count × (key n:u32 n × value)
//! kind 4  timers (name empty): count × (domain:u8 time:i64 has_key:u8 [key])
//! key, value, map_key := len:u32 bytes
//! ```
//!
//! **Canonical.** The same state gives the same bytes, whatever the order
//! the working state's hash maps hold it in: frames are in ascending key
//! group; within a key group, the state frames by state name, each state's
//! entries by key bytes (map entries by map key; list values in list order),
//! then the key group's timers by (domain, time, key). A frame is cut at
//! about 1 MiB of payload, at the same entry every time.
//!
//! **Streamed.** Data files are written, checked and read through bounded
//! buffers, never whole: a writer encodes into the file through a hashing
//! writer (one frame's payload is buffered, to know its length); a full read
//! ([`Savepoint::verify`], the surgery tools, and a restoring subtask that
//! owns every key group of a file) decodes through a hashing reader, and
//! checks size and SHA-256 at its end. A restore at another parallelism
//! (a subtask owning part of a file's key groups) reads each file once in
//! all: since frames are in key-group order, a subtask reads frame headers,
//! seeks past the payloads of key groups before its own, decodes its own, and
//! stops at the first frame past them; so every payload byte is read by the
//! one subtask that owns it. We chose this over one reader per file handing
//! records to the subtasks that own them: subtasks restore on their own
//! threads, and a hand-over would tie them together (a subtask that fails
//! before it reads would stall the others) for no fewer bytes read. A
//! partial read cannot check the file's SHA-256; the runtime verifies every
//! file before any subtask restores, so a restore reads each file twice in
//! all (verify, then load), whatever the parallelism. A restore into
//! another `max_parallelism` cannot skip by key group (the saved key groups
//! say nothing of the new ones): each subtask reads every file of its
//! operator whole and keeps the keys it owns once re-hashed (see
//! [`crate::state::restore`]).
//!
//! A savepoint is written into a hidden `.<name>.inprogress` directory and
//! renamed into place once its `_metadata` is durable, so a crash never
//! leaves something that looks like a complete savepoint. Opening one reads
//! and checks `_metadata`; [`Savepoint::verify`] checks every data file's
//! size and SHA-256, and every error names the file and what is wrong.
//!
//! The parts:
//!
//! - `format`: the constants, the manifest's types and its checksum, and
//!   [`SavepointError`];
//! - `data`: data files' frames and their [`Record`]s, encoded in canonical
//!   order and decoded as they stream;
//! - `read`: [`Savepoint`], opened, verified and loaded;
//! - `write`: [`SavepointWriter`], which makes a savepoint durable and
//!   renames it into place;
//! - `edit`: the surgery of `weir savepoint edit` and `weir state
//!   export|import` (one state read, rewritten or copied);
//! - `jsonl`: one state as JSON lines, what `weir state export` writes
//!   ([`encode_jsonl`]) and `weir state import` reads ([`decode_jsonl`]).

mod data;
mod edit;
mod format;
mod jsonl;
mod read;
mod write;

pub use data::{decode_data, decode_reader, encode_data, Record};
pub use edit::{entry_kind, RewrittenState};
pub use format::{
    manifest_text, new_metadata, sha256_hex, DataFile, Metadata, SavedOperator, SavedState,
    SavepointError, SavepointKind, SinkCommit, DATA_MAGIC, FORMAT, FORMAT_VERSION, METADATA,
    METADATA_SHA256,
};
pub use jsonl::{decode_jsonl, encode_jsonl, JsonLinesError};
pub use read::{manifest_format_version, Savepoint};
pub use write::SavepointWriter;
