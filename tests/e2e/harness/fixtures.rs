//! What the tests run and check, shared by several of them: the job files
//! (keyed counts over a generator, window sums), runs to compare with (the
//! uninterrupted counts, a run stopped with a savepoint), and readers and
//! checks of what a job wrote (events, counts that go on without a gap,
//! `probe`'s items, a folder's bytes); a seeded random number generator.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::operators::operator;
use super::sandbox::Sandbox;

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Keyed counts (`wasm`, operator ID `count`) over a generator, throttled
/// to `rate` events/s if given, into `out.jsonl`; savepoints in
/// `savepoints`, REST on a free port; `extra` TOML lines at the end.
pub fn counts_job(wasm: &Path, parallelism: u32, rate: Option<u64>, extra: &str) -> String {
    format!(
        r#"
name = "counts"
max_parallelism = 32

[source]
type = "generator"
count = 40000
keys = 300
value_size = 3
seed = 5
batch_size = 128
{rate}

[[operators]]
id = "count"
wasm = {wasm}
parallelism = {parallelism}
input = "key"

[sink]
type = "file"
path = "out.jsonl"

[savepoint]
dir = "savepoints"

[rest]
addr = "127.0.0.1:0"
{extra}
"#,
        rate = rate.map(|r| format!("rate = {r}")).unwrap_or_default(),
        wasm = toml_path(wasm),
    )
}

/// A `_metadata` text whose checksum line is made anew for its other lines,
/// by the rule docs/operations/savepoints.md gives: the SHA-256 of every line but the last two.
pub fn resigned(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let above = lines[..lines.len() - 2].join("\n") + "\n";
    let sum = weir_host::state::savepoint::sha256_hex(above.as_bytes());
    format!("{above}  \"metadata_sha256\": \"{sum}\"\n}}\n")
}

/// Window sums over a generator (1,000 events a second of event time, 20
/// keys), checkpointed, with a REST API.
pub fn windows_job(wasm: &Path, rate: Option<u64>) -> String {
    format!(
        r#"
name = "windows"
max_parallelism = 16

[source]
type = "generator"
count = 30000
keys = 20
value_size = 2
seed = 3
batch_size = 100
{rate}

[[operators]]
id = "sums"
wasm = {wasm}
parallelism = 2
input = "key"
config = {{ size_ms = "1000" }}

[sink]
type = "file"
path = "out.jsonl"

[checkpoint]
interval = "100ms"
dir = "state"

[rest]
addr = "127.0.0.1:0"
"#,
        rate = rate.map(|r| format!("rate = {r}")).unwrap_or_default(),
        wasm = toml_path(wasm),
    )
}

/// Each output line's key and running count (the first word of its value:
/// v2 writes `N last_seen=T`).
pub fn counts(output: &str) -> impl Iterator<Item = (String, u64)> + '_ {
    output.lines().map(|line| {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let n = v["value"].as_str().unwrap().split(' ').next().unwrap();
        (v["key"].as_str().unwrap().to_string(), n.parse().unwrap())
    })
}

/// Counts per key: the largest running count each key reached.
pub fn final_counts(output: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for (key, n) in counts(output) {
        let e = out.entry(key).or_insert(0);
        *e = n.max(*e);
    }
    out
}

/// Every key's counts, in output order, must be 1, 2, 3, ...: nothing lost, nothing twice.
#[track_caller]
pub fn assert_counts_continue(output: &str) {
    let mut next: BTreeMap<String, u64> = BTreeMap::new();
    for (key, n) in counts(output) {
        let expected = next.entry(key.clone()).or_insert(1);
        assert_eq!(
            n, *expected,
            "key {key}: count {n} where {expected} was due"
        );
        *expected += 1;
    }
}

/// The output of [`counts_job`] (`keyed-count`) at `parallelism`, run
/// uninterrupted to its end.
pub fn counts_reference(parallelism: u32) -> String {
    let sb = Sandbox::new();
    sb.run_job(&counts_job(&operator("keyed-count"), parallelism, None, ""))
        .ok();
    sb.read("out.jsonl")
}

/// Starts `weir run JOB_FILE EXTRA_ARGS` (a job with a REST API), waits
/// until its output `out.jsonl` has `lines` more lines, stops it with a
/// savepoint through `weir stop STOP_ARGS`; returns the savepoint directory.
pub fn run_and_stop_after(
    sb: &Sandbox,
    job_file: &str,
    extra_args: &[&str],
    stop_args: &[&str],
    lines: usize,
) -> PathBuf {
    let mut args = vec!["run", job_file];
    args.extend_from_slice(extra_args);
    let log = format!("{job_file}.log");
    // Count from what the output already holds (a restored run appends to it).
    let before = std::fs::read_to_string(sb.path("out.jsonl")).map_or(0, |t| t.lines().count());
    let mut child = sb.cmd(&args).log(&log).rest().start();
    let addr = child.rest_addr();
    sb.wait_for("out.jsonl", "\n", before + lines);
    let mut stop = vec!["stop", "--addr", &addr];
    stop.extend_from_slice(stop_args);
    let run = sb.weir(&stop).ok();
    let status = child.wait();
    assert!(status.success(), "job exit {status:?}:\n{}", sb.read(&log));
    let dir = PathBuf::from(run.stdout.trim());
    assert!(dir.join("_metadata").is_file(), "{dir:?}");
    dir
}

/// A JSON-lines event as the sink writes it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ev {
    pub key: Option<String>,
    pub value: String,
    pub timestamp: i64,
}

/// An expected event with a key.
pub fn ev(key: &str, value: &str, timestamp: i64) -> Ev {
    Ev {
        key: Some(key.to_string()),
        value: value.to_string(),
        timestamp,
    }
}

/// Parses JSON-lines output into a sorted multiset of events.
pub fn events(text: &str) -> Vec<Ev> {
    let mut out: Vec<Ev> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l:?}: {e}"));
            Ev {
                key: v["key"].as_str().map(str::to_string),
                value: v["value"]
                    .as_str()
                    .unwrap_or_else(|| panic!("no value in {l}"))
                    .to_string(),
                timestamp: v["timestamp"].as_i64().unwrap(),
            }
        })
        .collect();
    out.sort();
    out
}

/// Every file of a directory with its bytes: to check that nothing changed.
pub fn dir_snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

/// TOML string literal for a path.
pub fn toml_path(p: &Path) -> String {
    format!("{:?}", p.display().to_string())
}

/// Lines of a file, sorted: output compared as a multiset.
pub fn sorted_lines(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines.sort();
    lines
}

/// A small deterministic random number generator for tests (splitmix64).
pub struct Rng(pub u64);

impl Rng {
    /// Seeded from `WEIR_TEST_SEED`, else the clock; prints the seed to reproduce a failure.
    pub fn from_env() -> Self {
        let seed = std::env::var("WEIR_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        eprintln!("random seed: WEIR_TEST_SEED={seed}");
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
}

/// The items the `probe` operator emitted, per key, in order: it emits a key
/// with its collected items joined by `,`.
pub fn probe_items(output: &str) -> BTreeMap<String, Vec<String>> {
    let mut per_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in output.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let items = per_key
            .entry(v["key"].as_str().unwrap().to_string())
            .or_default();
        items.extend(v["value"].as_str().unwrap().split(',').map(str::to_string));
    }
    per_key
}
