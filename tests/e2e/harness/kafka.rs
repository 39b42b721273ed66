//! Kafka for the end-to-end tests: the shared test broker (`WEIR_TEST_KAFKA`,
//! started by `scripts/test.sh`), private clusters a test may break (started
//! and stopped with `scripts/services.sh --dir`), and Kafka's own command-line
//! tools as the independent client: topics are created with `kafka-topics`,
//! input is produced with `kafka-console-producer`, and output is read back
//! with `kafka-console-consumer --isolation-level read_committed`. And what
//! several Kafka tests share: keyed input and the counts it must give, the
//! Kafka → `keyed-count` → Kafka job, and the log lines they wait for.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use super::fixtures::{root, toml_path};
use super::operators::operator;
use super::process::send_signal;
use super::sandbox::Sandbox;

/// What to do when the tests have no Kafka (one line).
const NO_KAFKA: &str = "WEIR_TEST_KAFKA is not set: run the Kafka tests through \
     scripts/test.sh, or start a broker with `scripts/services.sh up kafka` and set \
     WEIR_TEST_KAFKA to the bootstrap address it prints (e.g. WEIR_TEST_KAFKA=127.0.0.1:9092)";

/// The shared test broker's bootstrap address, from `WEIR_TEST_KAFKA`. A
/// Kafka test without it fails (never passes silently) with one line
/// saying how to run it.
#[track_caller]
pub fn kafka() -> String {
    match std::env::var("WEIR_TEST_KAFKA") {
        Ok(b) if !b.trim().is_empty() => b.trim().to_string(),
        _ => panic!("{NO_KAFKA}"),
    }
}

/// `scripts/services.sh ARGS`.
pub fn services(args: &[&str]) -> Command {
    let mut cmd = Command::new(root().join("scripts/services.sh"));
    cmd.args(args).stdin(Stdio::null());
    cmd
}

/// Runs `scripts/services.sh ARGS`, asserting success; returns its stdout.
#[track_caller]
pub fn services_ok(args: &[&str]) -> String {
    let out = services(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("running scripts/services.sh");
    assert!(
        out.status.success(),
        "scripts/services.sh {} failed ({}):\n{}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A topic (or transactional ID prefix) name no other test or run uses:
/// `PREFIX-<pid>-<n>-<time>`.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        % 1_000_000_000_000;
    format!(
        "{prefix}-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Creates `topic` with `kafka-topics`: `partitions`, `replication`, and
/// topic configs such as `("max.message.bytes", "1024")`.
#[track_caller]
pub fn create_topic(
    bootstrap: &str,
    topic: &str,
    partitions: u32,
    replication: u32,
    configs: &[(&str, &str)],
) {
    let partitions = partitions.to_string();
    let replication = replication.to_string();
    let mut args = vec![
        "kafka-topics",
        "--bootstrap-server",
        bootstrap,
        "--create",
        "--topic",
        topic,
        "--partitions",
        &partitions,
        "--replication-factor",
        &replication,
    ];
    let configs: Vec<String> = configs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    for c in &configs {
        args.extend(["--config", c]);
    }
    services_ok(&args);
}

/// The topics of the cluster, by `kafka-topics --list`.
pub fn topics(bootstrap: &str) -> Vec<String> {
    services_ok(&["kafka-topics", "--bootstrap-server", bootstrap, "--list"])
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// `kafka-topics --describe` of `topic`: `(partition count, replication factor)`.
#[track_caller]
pub fn describe_topic(bootstrap: &str, topic: &str) -> (u32, u32) {
    let text = services_ok(&[
        "kafka-topics",
        "--bootstrap-server",
        bootstrap,
        "--describe",
        "--topic",
        topic,
    ]);
    let field = |name: &str| -> u32 {
        let at = text
            .find(name)
            .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
            + name.len();
        text[at..]
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    (field("PartitionCount:"), field("ReplicationFactor:"))
}

/// Key and value separator for the console tools: a tab (the tests' keys
/// and values have none).
const SEP: &str = "\t";

/// Produces keyed records (key, value) with `kafka-console-producer`, in
/// order, `acks=all`, in small record batches (`batch.size=0`: a couple
/// of records each), so that a source reading with small fetches gets a
/// few records at a time.
#[track_caller]
pub fn produce(bootstrap: &str, topic: &str, records: &[(String, String)]) {
    let mut input = String::new();
    for (k, v) in records {
        assert!(
            !k.contains(['\t', '\n']) && !v.contains(['\t', '\n']),
            "a tab or newline in {k:?} / {v:?}"
        );
        input.push_str(k);
        input.push_str(SEP);
        input.push_str(v);
        input.push('\n');
    }
    let mut child = services(&[
        "kafka-console-producer",
        "--bootstrap-server",
        bootstrap,
        "--topic",
        topic,
        "--reader-property",
        "parse.key=true",
        "--reader-property",
        &format!("key.separator={SEP}"),
        "--command-property",
        "acks=all",
        // Patient (the tool's defaults give up after 1.5 s and 3 retries):
        // right after a broker dies, acks=all waits until it leaves the ISR.
        "--request-timeout-ms",
        "60000",
        "--message-send-max-retries",
        "1000",
        "--command-property",
        "delivery.timeout.ms=300000",
        "--command-property",
        "batch.size=0",
        "--command-property",
        "linger.ms=0",
    ])
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("running kafka-console-producer");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !stderr.contains("ERROR"),
        "kafka-console-producer into {topic} failed ({}):\n{stderr}",
        out.status
    );
}

/// One record read back from Kafka.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Record {
    /// The key (`None`: no key).
    pub key: Option<String>,
    /// The value.
    pub value: String,
    /// The record timestamp (ms).
    pub timestamp: i64,
    /// The partition it is in.
    pub partition: i32,
}

/// Every committed record of `topic`, read from the beginning by Kafka's
/// console consumer with `--isolation-level read_committed` (an
/// independent client), in each partition's order. It ends when no record
/// came for 10 s: call it when nothing writes to the topic any more.
#[track_caller]
pub fn read_committed(bootstrap: &str, topic: &str) -> Vec<Record> {
    let out = services(&[
        "kafka-console-consumer",
        "--bootstrap-server",
        bootstrap,
        "--topic",
        topic,
        "--from-beginning",
        "--isolation-level",
        "read_committed",
        "--timeout-ms",
        "10000",
        "--formatter-property",
        "print.key=true",
        "--formatter-property",
        "print.timestamp=true",
        "--formatter-property",
        "print.partition=true",
        "--formatter-property",
        &format!("key.separator={SEP}"),
        "--formatter-property",
        "null.literal=\u{1}null",
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .output()
    .expect("running kafka-console-consumer");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "kafka-console-consumer of {topic} failed ({}):\n{stderr}",
        out.status
    );
    let records: Vec<Record> = stdout
        .lines()
        .filter(|l| l.starts_with("CreateTime:") || l.starts_with("LogAppendTime:"))
        .map(|line| {
            let mut f = line.splitn(4, SEP);
            let mut next = || {
                f.next()
                    .unwrap_or_else(|| panic!("odd consumer line {line:?}"))
            };
            let timestamp = next().split_once(':').unwrap().1.parse().unwrap();
            let partition = next()
                .strip_prefix("Partition:")
                .unwrap_or_else(|| panic!("odd consumer line {line:?}"))
                .parse()
                .unwrap();
            let key = next();
            let value = next();
            Record {
                key: (key != "\u{1}null").then(|| key.to_string()),
                value: value.to_string(),
                timestamp,
                partition,
            }
        })
        .collect();
    let total = stderr
        .lines()
        .find_map(|l| l.strip_prefix("Processed a total of "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse::<usize>().ok());
    assert_eq!(
        total,
        Some(records.len()),
        "kafka-console-consumer of {topic}: parsed {} records, it says:\n{stderr}",
        records.len()
    );
    records
}

/// Records as a sorted multiset of (key, value, timestamp).
pub fn multiset(records: &[Record]) -> Vec<(Option<String>, String, i64)> {
    let mut out: Vec<_> = records
        .iter()
        .map(|r| (r.key.clone(), r.value.clone(), r.timestamp))
        .collect();
    out.sort();
    out
}

/// A port on 127.0.0.1 nobody listens on (bound, then let go).
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A Kafka cluster of a test's own (it may kill brokers): started by
/// `scripts/services.sh up kafka --dir` into a folder of the sandbox, on
/// ports of its own, stopped (and its data deleted) on drop. One private
/// cluster at a time in a test process: the machine is small.
pub struct Cluster {
    dir: PathBuf,
    bootstrap: String,
    brokers: u32,
    _one_at_a_time: MutexGuard<'static, ()>,
}

impl Cluster {
    /// Starts `brokers` brokers with their state in `sb`'s `kafka/` folder.
    pub fn start(sb: &Sandbox, brokers: u32) -> Cluster {
        static ONE: Mutex<()> = Mutex::new(());
        let guard = ONE.lock().unwrap_or_else(|e| e.into_inner());
        let dir = sb.path("kafka");
        let dir_s = dir.to_str().unwrap().to_string();
        let n = brokers.to_string();
        let mut seed = u64::from(std::process::id())
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64;
        let mut last_error = String::new();
        for _ in 0..10 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let port = 30000 + ((seed >> 33) % 2500) as u16 * 4;
            let ports = (0..brokers as u16).flat_map(|i| [port + i, port + 10000 + i]);
            if !ports
                .into_iter()
                .all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok())
            {
                continue;
            }
            let port_s = port.to_string();
            let out = services(&[
                "up",
                "kafka",
                "--brokers",
                &n,
                "--port",
                &port_s,
                "--dir",
                &dir_s,
            ])
            .env("KAFKA_HEAP_OPTS", "-Xms64m -Xmx384m")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .expect("running scripts/services.sh");
            let stdout = String::from_utf8_lossy(&out.stdout);
            if out.status.success() {
                let bootstrap = stdout.lines().last().unwrap().trim().to_string();
                eprintln!("private kafka cluster: {bootstrap} (state in {dir_s})");
                return Cluster {
                    dir,
                    bootstrap,
                    brokers,
                    _one_at_a_time: guard,
                };
            }
            last_error = String::from_utf8_lossy(&out.stderr).into_owned();
            // Whatever half-started is stopped before the next try.
            let _ = services(&["down", "kafka", "--kill", "--dir", &dir_s]).status();
            // A port taken between the check above and the broker's bind
            // (by any process's outgoing connection: these ports are in the
            // ephemeral range) makes a broker exit at startup: other ports.
            if !last_error.contains("already in use")
                && !last_error.contains("exited during startup")
            {
                break;
            }
        }
        panic!("could not start a private kafka cluster of {brokers} broker(s):\n{last_error}");
    }

    /// Its bootstrap address list.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// How many brokers it has.
    pub fn brokers(&self) -> u32 {
        self.brokers
    }

    fn dir(&self) -> &str {
        self.dir.to_str().unwrap()
    }

    /// Kills broker `n` (1-based) with SIGKILL: a crash; its data is kept.
    #[track_caller]
    pub fn kill_broker(&self, n: u32) {
        let n = n.to_string();
        services_ok(&[
            "down",
            "kafka",
            "--broker",
            &n,
            "--kill",
            "--dir",
            self.dir(),
        ]);
    }

    /// Pauses broker `n` (1-based) with SIGSTOP: a broker that stalls. Its
    /// connections stay open and nothing is answered (no error, no end of
    /// partition) until [`Cluster::continue_broker`]; dropping the cluster
    /// kills it, paused or not.
    #[track_caller]
    pub fn pause_broker(&self, n: u32) {
        self.signal_broker(n, "STOP");
    }

    /// Lets broker `n` (1-based), paused by [`Cluster::pause_broker`], go
    /// on with SIGCONT.
    #[track_caller]
    pub fn continue_broker(&self, n: u32) {
        self.signal_broker(n, "CONT");
    }

    /// Sends `signal` to broker `n`, by the PID `scripts/services.sh pid`
    /// gives (the one it keeps in the cluster's folder).
    #[track_caller]
    fn signal_broker(&self, n: u32, signal: &str) {
        let n = n.to_string();
        let pid = services_ok(&["pid", "kafka", &n, "--dir", self.dir()]);
        let pid = pid
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("scripts/services.sh pid kafka {n}: {pid:?}"));
        send_signal(pid, signal);
    }

    /// Starts again every broker that is down, on its kept data; waits
    /// until the cluster answers.
    #[track_caller]
    pub fn restart(&self) {
        let out = services(&["up", "kafka", "--dir", self.dir()])
            .env("KAFKA_HEAP_OPTS", "-Xms64m -Xmx384m")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "restarting the private cluster failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = services(&["down", "kafka", "--kill", "--dir", self.dir()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// librdkafka settings for a test source that reads a few records per
/// fetch, so that a job over a few thousand records lasts several
/// checkpoints and kills land mid-job: at most about 200 bytes (a couple of
/// the console producer's small record batches) per partition per fetch,
/// and the broker holds each fetch 5 ms (it never has the 1 MB asked for).
/// Measured by hand: about 1,000 records/s per consumer instead of
/// 6,000+. Speed is asserted nowhere: this only spreads the run out.
pub const SLOW_FETCH: &str = r#"properties = { "fetch.message.max.bytes" = "200", "fetch.min.bytes" = "1000000", "fetch.wait.max.ms" = "5" }"#;

/// `count` keyed records over `keys` keys, as `(key, value)`: key
/// `k<i*7919 % keys>`, value `v<i>`.
pub fn input(count: usize, keys: usize) -> Vec<(String, String)> {
    (0..count)
        .map(|i| (format!("k{}", i * 7919 % keys), format!("v{i}")))
        .collect()
}

/// A fresh input topic with `records` in it, read back (to know the
/// timestamps the broker gave them).
pub fn input_topic(
    bootstrap: &str,
    partitions: u32,
    replication: u32,
    records: &[(String, String)],
) -> (String, Vec<Record>) {
    let topic = unique("weir-in");
    create_topic(bootstrap, &topic, partitions, replication, &[]);
    produce(bootstrap, &topic, records);
    let back = read_committed(bootstrap, &topic);
    assert_eq!(back.len(), records.len(), "the input topic is not complete");
    (topic, back)
}

/// What `keyed-count` must write for `input`: per key, values 1, 2, 3, ...
/// with each input record's timestamp, in the key's order.
pub fn expected_counts(input: &[Record]) -> BTreeMap<Option<String>, Vec<(String, i64)>> {
    let mut out: BTreeMap<Option<String>, Vec<(String, i64)>> = BTreeMap::new();
    for r in input {
        let seq = out.entry(r.key.clone()).or_default();
        seq.push(((seq.len() + 1).to_string(), r.timestamp));
    }
    out
}

/// Output records per key as (value, timestamp) in order.
pub fn sequences(records: &[Record]) -> BTreeMap<Option<String>, Vec<(String, i64)>> {
    let mut out: BTreeMap<Option<String>, Vec<(String, i64)>> = BTreeMap::new();
    for r in records {
        out.entry(r.key.clone())
            .or_default()
            .push((r.value.clone(), r.timestamp));
    }
    out
}

/// Asserts `got` is exactly `expected` per key (nothing missing, nothing
/// twice), with a short account of the first difference.
#[track_caller]
pub fn assert_same_sequences(
    what: &str,
    got: &BTreeMap<Option<String>, Vec<(String, i64)>>,
    expected: &BTreeMap<Option<String>, Vec<(String, i64)>>,
) {
    let total = |m: &BTreeMap<Option<String>, Vec<(String, i64)>>| -> usize {
        m.values().map(Vec::len).sum()
    };
    for (key, want) in expected {
        let have = got.get(key).map(Vec::as_slice).unwrap_or_default();
        if have != want.as_slice() {
            let at = have
                .iter()
                .zip(want)
                .position(|(a, b)| a != b)
                .unwrap_or(have.len().min(want.len()));
            panic!(
                "{what}: key {key:?} has {} records where {} were due; first difference at #{at}: \
                 {:?} where {:?} was due ({} records in all, {} due)",
                have.len(),
                want.len(),
                have.get(at),
                want.get(at),
                total(got),
                total(expected),
            );
        }
    }
    let extra: Vec<_> = got.keys().filter(|k| !expected.contains_key(*k)).collect();
    assert!(extra.is_empty(), "{what}: unexpected keys {extra:?}");
}

/// A Kafka → `keyed-count` → Kafka job: exactly-once checkpoints every
/// 200 ms, restarts with a fixed delay, the source bounded (`stop = "latest"`).
pub fn kafka_to_kafka(
    bootstrap: &str,
    input: &str,
    output: &str,
    source_parallelism: u32,
    parallelism: u32,
    extra: &str,
) -> String {
    format!(
        r#"
name = "kafka-counts"
max_parallelism = 32

[source]
type = "kafka"
bootstrap = "{bootstrap}"
topic = "{input}"
start = "earliest"
stop = "latest"
parallelism = {source_parallelism}
batch_size = 64
connect_timeout = "30s"
{SLOW_FETCH}

[[operators]]
id = "count"
wasm = {count}
parallelism = {parallelism}
input = "key"

[sink]
type = "kafka"
bootstrap = "{bootstrap}"
topic = "{output}"
delivery = "exactly-once"
create = {{ partitions = 3, replication = 1 }}
connect_timeout = "30s"

[checkpoint]
interval = "200ms"
dir = "state"
retain = 3
mode = "exactly-once"

[restart]
strategy = "fixed-delay"
attempts = 50
delay = "300ms"
{extra}
"#,
        count = toml_path(&operator("keyed-count")),
    )
}

/// The log line the sink writes (with `WEIR_TEST_KAFKA_COMMIT_PAUSE_MS`)
/// between a checkpoint's completion and its transaction's commit.
pub const DURABLE: &str = "is durable; committing its Kafka transaction";

/// The log line of a completed checkpoint.
pub const CHECKPOINT_DONE: &str = "complete in";

/// The Kafka partitions of a savepoint's `inspect --json`, wherever they
/// are: `(partition, offset)`.
pub fn kafka_offsets(v: &serde_json::Value) -> Option<Vec<(i64, i64)>> {
    match v {
        serde_json::Value::Object(m) => {
            if let Some(serde_json::Value::Array(parts)) = m.get("partitions") {
                let found: Option<Vec<(i64, i64)>> = parts
                    .iter()
                    .map(|p| Some((p["partition"].as_i64()?, p["offset"].as_i64()?)))
                    .collect();
                if found.is_some() {
                    return found;
                }
            }
            m.values().find_map(kafka_offsets)
        }
        serde_json::Value::Array(a) => a.iter().find_map(kafka_offsets),
        _ => None,
    }
}
