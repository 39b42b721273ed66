//! Comparing the live output with the candidate's, cause by cause, and
//! the differences found ([`Comparator`], [`DiffFile`]).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::job::SourceSpec;
use crate::model::{Batch, TimeDomain};

/// Output events of one key: (value, timestamp), in order.
pub(super) type KeyOutputs<'a> = Vec<(&'a [u8], i64)>;

/// Differences kept for the status (the diff file has them all).
pub const DIFFERENCES_KEPT: usize = 20;

/// What the comparator counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Counts {
    /// Input events handed to both sides.
    pub inputs: u64,
    /// Output events compared: pairs plus unpaired events.
    pub compared: u64,
    /// Pairs with the same value and timestamp.
    pub equal: u64,
    /// Pairs that differ.
    pub different: u64,
    /// Events only the live logic emitted.
    pub only_live: u64,
    /// Events only the candidate emitted.
    pub only_candidate: u64,
}

impl Counts {
    /// Adds `other` to these counts.
    pub fn add(&mut self, other: &Counts) {
        self.inputs += other.inputs;
        self.compared += other.compared;
        self.equal += other.equal;
        self.different += other.different;
        self.only_live += other.only_live;
        self.only_candidate += other.only_candidate;
    }
}

/// The kind of a difference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DiffKind {
    /// Both emitted an event at this place, with another value or timestamp.
    Different,
    /// Only the live logic emitted it.
    OnlyLive,
    /// Only the candidate emitted it.
    OnlyCandidate,
}

/// One emitted event, as a difference shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Emitted {
    /// The value, as text (bytes that are not UTF-8 as `�`).
    pub value: String,
    /// Its timestamp.
    pub timestamp: i64,
}

/// One difference between the live output and the candidate's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    /// Which kind.
    pub kind: DiffKind,
    /// The subtask it was seen in.
    pub subtask: u32,
    /// The output key, as text (`null`: no key).
    pub key: Option<String>,
    /// The source offset of the input event it came from, when known.
    pub offset: Option<u64>,
    /// Where that is, e.g. ``offset 40 (line 41 of `/data/in.jsonl`)``; or
    /// the timer firing it came from.
    pub at: String,
    /// The live logic's event.
    pub live: Option<Emitted>,
    /// The candidate's event.
    pub candidate: Option<Emitted>,
}

/// What a set of outputs was produced by.
#[derive(Debug, Clone, Copy)]
pub enum Cause<'a> {
    /// One input batch; its events' source offsets when it came from the source.
    Input {
        /// The batch.
        batch: &'a Batch,
        /// Its source offsets.
        offsets: Option<&'a [u64]>,
    },
    /// Timers of `domain` due at `time` fired.
    Timers {
        /// The time domain.
        domain: TimeDomain,
        /// The watermark or clock they fired at.
        time: i64,
    },
}

/// The JSON-lines file every difference is written to, shared by the
/// comparators of one shadow run.
#[derive(Clone)]
pub struct DiffFile {
    pub(super) path: PathBuf,
    pub(super) out: Arc<Mutex<std::io::BufWriter<std::fs::File>>>,
}

impl DiffFile {
    /// Creates (or truncates) `path`, with its folder.
    pub fn create(path: &Path) -> Result<Self, String> {
        let fail = |e: std::io::Error| format!("cannot create diff file `{}`: {e}", path.display());
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(fail)?;
        }
        let file = std::fs::File::create(path).map_err(fail)?;
        Ok(DiffFile {
            path: path.to_path_buf(),
            out: Arc::new(Mutex::new(std::io::BufWriter::new(file))),
        })
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn write(&self, diffs: &[Difference]) -> Result<(), String> {
        let mut out = self.out.lock().expect("diff file lock");
        let mut write = || -> std::io::Result<()> {
            for d in diffs {
                serde_json::to_writer(&mut *out, d)?;
                out.write_all(b"\n")?;
            }
            out.flush()
        };
        write().map_err(|e| format!("cannot write diff file `{}`: {e}", self.path.display()))
    }
}

/// Compares the live output with the candidate's, cause by cause (see
/// the module doc), and counts and records the differences.
pub struct Comparator {
    /// The counts so far.
    pub counts: Counts,
    /// The first [`DIFFERENCES_KEPT`] differences.
    pub first: Vec<Difference>,
    pub(super) subtask: u32,
    pub(super) source: Option<SourceSpec>,
    pub(super) file: Option<DiffFile>,
}

/// The output of `batches` grouped by key, keys in order of first appearance.
pub(super) fn by_key<'a>(
    batches: &'a [Batch],
    order: &mut Vec<Option<&'a [u8]>>,
    index: &mut HashMap<Option<&'a [u8]>, usize>,
) -> Vec<KeyOutputs<'a>> {
    let mut groups: Vec<KeyOutputs<'a>> = vec![Vec::new(); order.len()];
    for batch in batches {
        for e in batch.iter() {
            let i = *index.entry(e.key).or_insert_with(|| {
                order.push(e.key);
                order.len() - 1
            });
            if groups.len() <= i {
                groups.resize_with(i + 1, Vec::new);
            }
            groups[i].push((e.value, e.timestamp));
        }
    }
    groups
}

pub(super) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

impl Comparator {
    /// A comparator for subtask `subtask`; `source` names offsets, `file`
    /// receives every difference.
    pub fn new(subtask: u32, source: Option<SourceSpec>, file: Option<DiffFile>) -> Self {
        Comparator {
            counts: Counts::default(),
            first: Vec::new(),
            subtask,
            source,
            file,
        }
    }

    /// Compares what `cause` made the live logic emit (`live`) with what
    /// it made the candidate emit; returns the differences found.
    pub fn compare(
        &mut self,
        cause: Cause<'_>,
        live: &[Batch],
        candidate: &[Batch],
    ) -> Result<usize, String> {
        let mut order = Vec::new();
        let mut index = HashMap::new();
        let live_groups = by_key(live, &mut order, &mut index);
        let cand_groups = by_key(candidate, &mut order, &mut index);
        if let Cause::Input { batch, .. } = cause {
            self.counts.inputs += batch.len() as u64;
        }
        let mut diffs = Vec::new();
        for (i, key) in order.iter().enumerate() {
            let l = live_groups.get(i).map_or(&[][..], Vec::as_slice);
            let c = cand_groups.get(i).map_or(&[][..], Vec::as_slice);
            for j in 0..l.len().max(c.len()) {
                self.counts.compared += 1;
                let (kind, lv, cv) = match (l.get(j), c.get(j)) {
                    (Some(a), Some(b)) if a == b => {
                        self.counts.equal += 1;
                        continue;
                    }
                    (Some(a), Some(b)) => {
                        self.counts.different += 1;
                        (DiffKind::Different, Some(a), Some(b))
                    }
                    (Some(a), None) => {
                        self.counts.only_live += 1;
                        (DiffKind::OnlyLive, Some(a), None)
                    }
                    (None, Some(b)) => {
                        self.counts.only_candidate += 1;
                        (DiffKind::OnlyCandidate, None, Some(b))
                    }
                    (None, None) => continue,
                };
                let (offset, at) = self.place(cause, *key, j);
                let emitted = |e: &(&[u8], i64)| Emitted {
                    value: text(e.0),
                    timestamp: e.1,
                };
                diffs.push(Difference {
                    kind,
                    subtask: self.subtask,
                    key: key.map(text),
                    offset,
                    at,
                    live: lv.map(emitted),
                    candidate: cv.map(emitted),
                });
            }
        }
        let n = diffs.len();
        if n > 0 {
            if let Some(f) = &self.file {
                f.write(&diffs)?;
            }
            let room = DIFFERENCES_KEPT.saturating_sub(self.first.len());
            self.first.extend(diffs.into_iter().take(room));
        }
        Ok(n)
    }

    /// Where a batch with source offsets `offsets` came from, for messages.
    pub fn place_of(&self, offsets: &[u64]) -> String {
        let locate = |o: u64| {
            self.source
                .as_ref()
                .map_or(format!("offset {o}"), |s| s.locate(o))
        };
        match offsets {
            [] => "no offset".to_string(),
            [one] => locate(*one),
            [first, .., last] => format!("{} to {}", locate(*first), locate(*last)),
        }
    }

    /// The offset and place of the `j`-th output of `key` for `cause`.
    pub(super) fn place(
        &self,
        cause: Cause<'_>,
        key: Option<&[u8]>,
        j: usize,
    ) -> (Option<u64>, String) {
        match cause {
            Cause::Input { batch, offsets } => {
                let of_key: Vec<usize> = batch
                    .iter()
                    .enumerate()
                    .filter(|(_, e)| e.key == key)
                    .map(|(i, _)| i)
                    .collect();
                let event = of_key.get(j).or(of_key.last()).copied();
                match (event, offsets) {
                    (Some(i), Some(offsets)) => match offsets.get(i) {
                        Some(&o) => (
                            Some(o),
                            self.source
                                .as_ref()
                                .map_or(format!("offset {o}"), |s| s.locate(o)),
                        ),
                        None => (None, "an input batch".to_string()),
                    },
                    (Some(i), None) => (
                        None,
                        format!(
                            "event {} of a batch of {} from the operator upstream",
                            i + 1,
                            batch.len()
                        ),
                    ),
                    (None, _) => (None, "an input batch with no event of this key".to_string()),
                }
            }
            Cause::Timers { domain, time } => {
                let what = match domain {
                    TimeDomain::EventTime => "event-time timers at watermark",
                    TimeDomain::ProcessingTime => "processing-time timers at",
                };
                let time = if time == i64::MAX {
                    "the end of the input".to_string()
                } else {
                    time.to_string()
                };
                (None, format!("{what} {time}"))
            }
        }
    }
}
