//! The Kafka source end to end, on a real Apache Kafka (the shared test
//! broker, `WEIR_TEST_KAFKA`, or a private one started with
//! `scripts/services.sh --dir`):
//!
//! - a saved offset whose records retention deleted (`kafka-delete-records`)
//!   fails the restore in one line naming the topic, the partition, the
//!   offset, the range and `on_out_of_range`; with `on_out_of_range =
//!   "earliest"` the job reads on from the log start, and warns;
//! - a topic deleted and recreated with fewer records between runs: the same
//!   line (past the end), and `latest` and `earliest` go on as they say;
//! - a broker paused with SIGSTOP for longer than `idle_timeout`, under a
//!   two-partition source whose partition 0 is far ahead of partition 1 in
//!   event time: no partition becomes idle (none was at its end), so the
//!   watermark does not jump and no record of the lagging partition is
//!   late: nothing is dead-lettered, and the output is that of a run
//!   without the pause.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use crate::harness::kafka::{
    create_topic, kafka_offsets, produce, read_committed, services, services_ok, topics, unique,
    Cluster, Record, SLOW_FETCH,
};
use crate::harness::{ev, events, http, kafka, operator, toml_path, wait_until, Ev, Sandbox};

/// A generous guard against a test hanging, not a timed assertion.
const PATIENCE: Duration = Duration::from_secs(120);

/// `n` keyed records from `from` on: key `k<i % 5>`, value `<prefix><i>`.
fn records(prefix: &str, from: usize, n: usize) -> Vec<(String, String)> {
    (from..from + n)
        .map(|i| (format!("k{}", i % 5), format!("{prefix}{i}")))
        .collect()
}

/// A Kafka → `map` (upper case) → file job with checkpoints, savepoints and
/// a REST API; `stop` is the source's, `extra` more source fields.
fn map_job(bootstrap: &str, topic: &str, stop: &str, extra: &str) -> String {
    format!(
        r#"
name = "kafka-source"

[source]
type = "kafka"
bootstrap = "{bootstrap}"
topic = "{topic}"
stop = "{stop}"
connect_timeout = "30s"
{extra}

[[operators]]
id = "upper"
wasm = {map}

[sink]
type = "file"
path = "out.jsonl"

[checkpoint]
interval = "200ms"
dir = "state"

[savepoint]
dir = "savepoints"

[rest]
addr = "127.0.0.1:0"
"#,
        map = toml_path(&operator("map")),
    )
}

/// What `map` writes for `input`: each record upper-cased, its timestamp
/// the event time.
fn upper(input: &[Record]) -> Vec<Ev> {
    let mut out: Vec<Ev> = input
        .iter()
        .map(|r| {
            ev(
                r.key.as_deref().unwrap(),
                &r.value.to_uppercase(),
                r.timestamp,
            )
        })
        .collect();
    out.sort();
    out
}

/// The first run: `map_job` reading `topic` with no stop, stopped with a
/// savepoint once its output holds all `n` records of the topic's one
/// partition. Returns the savepoint's path; it holds offset `n`.
fn read_all_and_stop_with_savepoint(
    sb: &Sandbox,
    bootstrap: &str,
    topic: &str,
    n: usize,
) -> String {
    sb.write("job.toml", map_job(bootstrap, topic, "never", ""));
    let mut child = sb.cmd(&["run", "job.toml"]).log("run-1.log").rest().start();
    let addr = child.rest_addr();
    wait_until(|| {
        let lines = std::fs::read_to_string(sb.path("out.jsonl"))
            .unwrap_or_default()
            .lines()
            .count();
        if lines >= n {
            assert_eq!(lines, n, "more output than input");
            return Ok(());
        }
        if let Some(status) = child.exited() {
            panic!("the job ended ({status}):\n{}", sb.read("run-1.log"));
        }
        Err(format!(
            "the output has {lines} of {n} records:\n{}",
            sb.read("run-1.log")
        ))
    });
    let stop = sb
        .weir(&["stop", "--addr", &addr, "--savepoint", "sp"])
        .ok();
    let status = child.wait();
    assert!(status.success(), "{status}\n{}", sb.read("run-1.log"));
    let sp = stop.stdout.trim().to_string();
    let json: serde_json::Value = serde_json::from_str(
        &sb.weir(&["savepoint", "inspect", "--json", &sp])
            .ok()
            .stdout,
    )
    .unwrap();
    assert_eq!(
        kafka_offsets(&json),
        Some(vec![(0, n as i64)]),
        "the savepoint's position: {json}"
    );
    sp
}

/// `weir run job.toml --from-savepoint SP`.
fn restore(sb: &Sandbox, sp: &str) -> crate::harness::Run {
    sb.weir(&["run", "job.toml", "--from-savepoint", sp])
}

/// The one line a restore fails with when the saved offset of `topic`'s
/// partition 0 is out of range.
fn out_of_range_line(topic: &str, offset: i64, range: (i64, i64), why: &str) -> String {
    format!(
        "Kafka topic `{topic}` partition 0: the restored offset {offset} is out of range [{}, {}) ({why}): set [source] on_out_of_range = \"earliest\" or \"latest\" to go on",
        range.0, range.1
    )
}

const RETENTION: &str = "records deleted by retention, or the topic was recreated";
const RECREATED: &str = "past the end: the topic was recreated, or its log truncated";

/// Asserts that the log `stderr` has a warning line containing `warning`.
#[track_caller]
fn assert_warned(stderr: &str, warning: &str) {
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("WARN") && l.contains(warning)),
        "no warning {warning:?} in:\n{stderr}"
    );
}

#[test]
fn kafka_source_restore_below_the_log_start_fails_in_one_line_or_reads_on_from_earliest() {
    let b = kafka();
    let topic = unique("weir-retained");
    create_topic(&b, &topic, 1, 1, &[]);
    produce(&b, &topic, &records("v", 0, 100));
    let sb = Sandbox::new();
    let sp = read_all_and_stop_with_savepoint(&sb, &b, &topic, 100);

    // More records, then retention deletes those below 150: the saved
    // offset, 100, is below the log start.
    produce(&b, &topic, &records("v", 100, 100));
    let input = read_committed(&b, &topic);
    assert_eq!(input.len(), 200);
    let delete = sb.write(
        "delete.json",
        format!(
            r#"{{"partitions": [{{"topic": "{topic}", "partition": 0, "offset": 150}}], "version": 1}}"#
        ),
    );
    let deleted = services_ok(&[
        "kafka-run",
        "org.apache.kafka.tools.DeleteRecordsCommand",
        "--bootstrap-server",
        &b,
        "--offset-json-file",
        delete.to_str().unwrap(),
    ]);
    assert!(deleted.contains("low_watermark: 150"), "{deleted}");

    // By default: one line, non-zero exit, nothing written.
    sb.write("job.toml", map_job(&b, &topic, "latest", ""));
    restore(&sb, &sp).fails_with(&[&out_of_range_line(&topic, 100, (150, 200), RETENTION)]);
    assert_eq!(events(&sb.read("out.jsonl")), upper(&input[..100]));

    // `earliest`: a warning, and reading goes on at 150.
    sb.write(
        "job.toml",
        map_job(&b, &topic, "latest", "on_out_of_range = \"earliest\""),
    );
    let run = restore(&sb, &sp).ok();
    let warning = format!(
        "Kafka topic `{topic}` partition 0: the restored offset 100 is out of range [150, 200) ({RETENTION}); on_out_of_range = \"earliest\": reading on from offset 150"
    );
    assert_warned(&run.stderr, &warning);
    let mut want = upper(&input[..100]);
    want.extend(upper(&input[150..]));
    want.sort();
    assert_eq!(events(&sb.read("out.jsonl")), want);
}

#[test]
fn kafka_source_restore_into_a_recreated_topic_fails_in_one_line_or_goes_on_as_asked() {
    let b = kafka();
    let topic = unique("weir-recreated");
    create_topic(&b, &topic, 1, 1, &[]);
    produce(&b, &topic, &records("v", 0, 100));
    let old = read_committed(&b, &topic);
    assert_eq!(old.len(), 100);
    let sb = Sandbox::new();
    let sp = read_all_and_stop_with_savepoint(&sb, &b, &topic, 100);

    // The topic is deleted and created again, with 30 records.
    services_ok(&[
        "kafka-topics",
        "--bootstrap-server",
        &b,
        "--delete",
        "--topic",
        &topic,
    ]);
    wait_until(|| {
        if !topics(&b).contains(&topic) {
            return Ok(());
        }
        Err(format!("{topic} is never deleted"))
    });
    // Its deletion may still be under way: try until the broker takes it.
    wait_until(|| {
        let out = services(&[
            "kafka-topics",
            "--bootstrap-server",
            &b,
            "--create",
            "--topic",
            &topic,
            "--partitions",
            "1",
            "--replication-factor",
            "1",
        ])
        .output()
        .unwrap();
        if out.status.success() {
            return Ok(());
        }
        Err(format!(
            "cannot create {topic} again:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ))
    });
    produce(&b, &topic, &records("w", 0, 30));
    let new = read_committed(&b, &topic);
    assert_eq!(new.len(), 30);

    // By default: one line, non-zero exit, nothing written.
    sb.write("job.toml", map_job(&b, &topic, "latest", ""));
    restore(&sb, &sp).fails_with(&[&out_of_range_line(&topic, 100, (0, 30), RECREATED)]);
    assert_eq!(events(&sb.read("out.jsonl")), upper(&old));

    // `latest`: a warning, and reading goes on at the end, 30 (nothing
    // more is read before the stop).
    sb.write(
        "job.toml",
        map_job(&b, &topic, "latest", "on_out_of_range = \"latest\""),
    );
    let run = restore(&sb, &sp).ok();
    let warning = format!(
        "Kafka topic `{topic}` partition 0: the restored offset 100 is out of range [0, 30) ({RECREATED}); on_out_of_range = \"latest\": reading on from offset 30"
    );
    assert_warned(&run.stderr, &warning);
    assert_eq!(events(&sb.read("out.jsonl")), upper(&old));

    // `earliest`, from the same savepoint: the new topic's records.
    sb.write(
        "job.toml",
        map_job(&b, &topic, "latest", "on_out_of_range = \"earliest\""),
    );
    let run = restore(&sb, &sp).ok();
    assert!(
        run.stderr
            .contains("on_out_of_range = \"earliest\": reading on from offset 0"),
        "{}",
        run.stderr
    );
    let mut want = upper(&old);
    want.extend(upper(&new));
    want.sort();
    assert_eq!(events(&sb.read("out.jsonl")), want);
}

/// Records of partition 1: many, behind in event time.
const BEHIND: i64 = 4000;
/// Records of partition 0: few, far ahead in event time.
const AHEAD: i64 = 400;
/// Where partition 0's event time starts (ms).
const AHEAD_FROM: i64 = 1_000_000_000;
/// The window of `windowed-sum` (ms).
const WINDOW: i64 = 1000;

/// Produces `(partition, key, value, timestamp)` records with librdkafka
/// (the console producer sets neither partitions nor timestamps), in
/// order, in record batches of two, as the console producer of the other
/// tests does, so that a source reading with `SLOW_FETCH` takes its time.
fn produce_timed(bootstrap: &str, topic: &str, records: &[(i32, String, String, i64)]) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("linger.ms", "0")
        .set("batch.num.messages", "2")
        .create()
        .unwrap();
    for (p, k, v, ts) in records {
        producer
            .send(
                BaseRecord::to(topic)
                    .partition(*p)
                    .key(k.as_str())
                    .payload(v.as_str())
                    .timestamp(*ts),
            )
            .map_err(|(e, _)| e)
            .unwrap();
        producer.poll(Duration::ZERO);
    }
    producer.flush(PATIENCE).unwrap();
}

/// What `windowed-sum` writes for `input`: per key and window, the sum,
/// at the window's last millisecond.
fn window_sums(input: &[(i32, String, String, i64)]) -> Vec<Ev> {
    let mut sums: BTreeMap<(String, i64), i64> = BTreeMap::new();
    for (_, k, v, ts) in input {
        let end = ts - ts.rem_euclid(WINDOW) + WINDOW;
        *sums.entry((k.clone(), end)).or_default() += v.parse::<i64>().unwrap();
    }
    let mut out: Vec<Ev> = sums
        .into_iter()
        .map(|((k, end), sum)| ev(&k, &sum.to_string(), end - 1))
        .collect();
    out.sort();
    out
}

/// A Kafka (two partitions, one source subtask) → `windowed-sum` → file
/// job whose late records go to `<name>-dead.jsonl`; partitions idle after
/// 1 s.
fn skew_job(bootstrap: &str, topic: &str, name: &str, extra: &str) -> String {
    format!(
        r#"
name = "skew"

[source]
type = "kafka"
bootstrap = "{bootstrap}"
topic = "{topic}"
stop = "latest"
idle_timeout = "1s"
batch_size = 16
connect_timeout = "60s"
{SLOW_FETCH}

[[operators]]
id = "sum"
wasm = {sum}
input = "key"
config = {{ size_ms = "{WINDOW}" }}

[sink]
type = "file"
path = "{name}.jsonl"

[dead_letter]
path = "{name}-dead.jsonl"
{extra}
"#,
        sum = toml_path(&operator("windowed-sum")),
    )
}

/// Asserts that nothing was dead-lettered into `file`.
#[track_caller]
fn assert_no_dead_letters(sb: &Sandbox, file: &str) {
    let dead = std::fs::read_to_string(sb.path(file)).unwrap_or_default();
    assert!(
        dead.trim().is_empty(),
        "dead letters ({} lines), the first: {}",
        dead.lines().count(),
        dead.lines().next().unwrap_or_default()
    );
}

#[test]
fn kafka_source_a_stalled_broker_makes_no_partition_idle_and_no_record_late() {
    let sb = Sandbox::new();
    let cluster = Cluster::start(&sb, 1);
    let b = cluster.bootstrap().to_string();
    let topic = unique("weir-skew");
    // Kept for ever: retention goes by record timestamps, and these are in
    // January 1970.
    create_topic(&b, &topic, 2, 1, &[("retention.ms", "-1")]);
    let mut input = Vec::new();
    for i in 0..AHEAD {
        input.push((
            0,
            format!("a{}", i % 3),
            (i % 7).to_string(),
            AHEAD_FROM + i * 10,
        ));
    }
    for i in 0..BEHIND {
        // From 1 on: librdkafka takes a timestamp of 0 for "now".
        input.push((1, format!("b{}", i % 5), (i % 7).to_string(), 1 + i * 10));
    }
    produce_timed(&b, &topic, &input);
    // The topic holds them as written (an independent client reads them).
    let mut back: Vec<(i32, String, String, i64)> = read_committed(&b, &topic)
        .into_iter()
        .map(|r| (r.partition, r.key.unwrap(), r.value, r.timestamp))
        .collect();
    back.sort();
    let mut sorted = input.clone();
    sorted.sort();
    if back != sorted {
        let at = back.iter().zip(&sorted).position(|(a, b)| a != b);
        panic!(
            "the input topic holds {} records, {} were written; first difference at {at:?}: {:?} where {:?} was written",
            back.len(),
            sorted.len(),
            at.map(|i| &back[i]),
            at.map(|i| &sorted[i]),
        );
    }
    let expected = window_sums(&input);

    // Without a pause: every window, nothing late.
    sb.write("calm.toml", skew_job(&b, &topic, "calm", ""));
    sb.weir(&["run", "calm.toml"]).ok();
    let calm = events(&sb.read("calm.jsonl"));
    assert_no_dead_letters(&sb, "calm-dead.jsonl");
    assert_eq!(calm, expected);

    // The broker paused mid-read for three times idle_timeout.
    sb.write(
        "paused.toml",
        skew_job(&b, &topic, "paused", "[rest]\naddr = \"127.0.0.1:0\""),
    );
    let mut child = sb
        .cmd(&["run", "paused.toml"])
        .log("paused.log")
        .rest()
        .start();
    let addr = child.rest_addr();
    let events_in = || {
        let (status, job) = http(&addr, "GET", "/jobs/skew", "");
        assert_eq!(status, 200, "{job}");
        job["events-in"].as_u64().unwrap_or(0)
    };
    wait_until(|| {
        if events_in() >= 100 {
            return Ok(());
        }
        if let Some(status) = child.exited() {
            panic!("the job ended ({status}):\n{}", sb.read("paused.log"));
        }
        Err(sb.read("paused.log"))
    });
    cluster.pause_broker(1);
    std::thread::sleep(Duration::from_secs(3));
    let read = events_in();
    cluster.continue_broker(1);
    eprintln!("the broker was paused for 3 s after the job had read {read} records");
    assert!(
        read < BEHIND as u64,
        "the job had read {read} records when the pause ended: partition 1 may have been read \
         to its end (its input is too small)"
    );
    let status = child.wait();
    assert!(status.success(), "{status}\n{}", sb.read("paused.log"));
    assert_no_dead_letters(&sb, "paused-dead.jsonl");
    assert_eq!(events(&sb.read("paused.jsonl")), calm);
}
