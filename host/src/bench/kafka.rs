//! The `kafka` case of `weir bench`: Kafka → `keyed-count` → Kafka, with
//! checkpoints every second, against a real broker (`--kafka BOOTSTRAP`).
//!
//! Throughput: the input is produced up front into a topic of
//! [`PARTITIONS`] partitions; each run is a child `weir run` with the source
//! bounded (`stop = "latest"`), so events/s is the input events over the
//! job's own elapsed time, as in the other job cases. The runs alternate
//! between `delivery = "exactly-once"` and `"at-least-once"`, each into an
//! output topic of its own, whose committed records are then counted by a
//! `read_committed` consumer (they must be as many as the input events:
//! `keyed-count` emits one running count per event).
//!
//! Latency: the job runs unbounded (`stop = "never"`) while a producer
//! thread writes records at a fixed rate, each stamped with the wall clock
//! at produce time; the sink writes the event time (the input record's
//! timestamp) as the output record's, so a `read_committed` consumer of the
//! output measures, for each record, its wall clock at consume time minus
//! that timestamp. Records produced before the first output was seen (the
//! job's start) are not counted. The job is then stopped with a savepoint
//! through its REST API, whose address the job writes to its ready file
//! (`weir run --ready-file`) once it is up. With exactly-once, output becomes visible only when
//! the transaction of the checkpoint that covers it commits, so latency is
//! bounded below by the checkpoint interval; at-least-once is measured
//! beside it.
//!
//! Every topic is created for the run (named `weir-bench-<pid>-<ms>-...`)
//! and deleted afterwards, the sinks' marker topics too.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{json, Value};

use super::error::{bail, BenchError, Context as _};
use super::stats::{self, median};
use crate::api::client;
use crate::connectors::kafka::{CreateTopic, KafkaCluster};
use crate::model::now_ms;

/// Partitions of every topic the case creates.
const PARTITIONS: i32 = 4;

/// Distinct keys of the input (as the file-path `keyed-count` case).
const KEYS: u64 = 10_000;

/// Bytes of each input record's value (as the file-path cases).
const VALUE_SIZE: usize = 100;

/// The two sink deliveries, in the order their runs alternate.
const DELIVERIES: [&str; 2] = ["exactly-once", "at-least-once"];

/// Sizes of the case.
pub(super) struct KafkaScale {
    /// Input events of a throughput run.
    pub(super) events: u64,
    /// Throughput runs of each delivery.
    pub(super) runs: usize,
    /// Input rate of a latency run, events/s.
    pub(super) rate: u64,
    /// How long a latency run's producer writes.
    pub(super) duration: Duration,
}

fn cluster(bootstrap: &str) -> KafkaCluster {
    KafkaCluster {
        bootstrap: bootstrap.to_string(),
        properties: Default::default(),
        connect_timeout: Duration::from_secs(10),
    }
}

/// Fails in one line, naming the way to start one, when no Kafka answers at
/// `bootstrap` within 10 s.
pub(super) fn check_reachable(bootstrap: &str) -> Result<(), BenchError> {
    cluster(bootstrap).partitions("weir-bench-probe").map_err(|_| {
        BenchError::from(format!("case `kafka`: cannot reach Kafka at `{bootstrap}` within 10 s: start one with `scripts/services.sh up kafka` (or pass --kafka BOOTSTRAP)"))
    })?;
    Ok(())
}

/// Runs the case; returns its rows: `kafka` (exactly-once) and
/// `kafka-at-least-once` (throughput), then `kafka-latency` and
/// `kafka-latency-at-least-once`.
pub(super) fn run(
    bootstrap: &str,
    wasm: &Path,
    work: &Path,
    scale: &KafkaScale,
) -> Result<Vec<Value>, BenchError> {
    let cluster = cluster(bootstrap);
    let mut topics = Topics {
        cluster: cluster.clone(),
        names: Vec::new(),
    };
    let base = format!("weir-bench-{}-{}", std::process::id(), now_ms());
    let dir = work.join("kafka");
    std::fs::create_dir_all(&dir)?;
    let mut rows = Vec::new();

    // Throughput: one input, produced up front, read by every run.
    let input = topics.create(&format!("{base}-in"))?;
    let t = Instant::now();
    produce_all(&cluster, &input, scale.events)?;
    // The broker's own pace here, for comparison: the rate the input was
    // produced at and the rate the outputs are read back at.
    let produce_rate = scale.events as f64 / t.elapsed().as_secs_f64();
    let mut read_rates: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut figures: [Vec<(f64, f64)>; 2] = [Vec::new(), Vec::new()];
    for run in 0..scale.runs {
        for (d, delivery) in DELIVERIES.iter().enumerate() {
            let name = format!("{base}-{}-{run}", short(delivery));
            let output = topics.create(&format!("{name}-out"))?;
            topics.names.push(format!("{name}.commits"));
            let job = Job {
                bootstrap,
                input: &input,
                output: &output,
                prefix: &name,
                delivery,
                bounded: true,
                wasm,
            };
            let report = job.run_to_end(&dir)?;
            let events = report["events_in"].as_u64().unwrap_or(0);
            if events != scale.events {
                bail!(
                    "case `kafka` ({delivery}): {events} events read of {}",
                    scale.events
                );
            }
            let t = Instant::now();
            let committed = count_committed(&cluster, &output)?;
            read_rates[d].push(committed as f64 / t.elapsed().as_secs_f64());
            if committed != scale.events {
                bail!(
                    "case `kafka` ({delivery}): {committed} records committed to the output of {} events in",
                    scale.events
                );
            }
            figures[d].push((
                events as f64 / report["elapsed_s"].as_f64().unwrap_or(f64::NAN),
                report["peak_rss_kib"].as_f64().unwrap_or(0.0) / 1024.0,
            ));
            // The output has been counted: its disk space goes back now.
            topics.delete(&[&output, &format!("{name}.commits")]);
        }
    }
    topics.delete(&[&input]);
    for (d, delivery) in DELIVERIES.iter().enumerate() {
        let mut rates: Vec<f64> = figures[d].iter().map(|f| f.0).collect();
        let mut rss: Vec<f64> = figures[d].iter().map(|f| f.1).collect();
        rows.push(json!({
            "case": row_name("kafka", delivery),
            "delivery": delivery,
            "events": scale.events,
            "keys": KEYS,
            "partitions": PARTITIONS,
            "runs": rates.len(),
            "checkpoints": true,
            "events_per_s": median(&mut rates),
            "events_per_s_min": stats::min(&rates),
            "events_per_s_max": stats::max(&rates),
            "peak_rss_mib": median(&mut rss),
            "input_produced_per_s": produce_rate,
            "output_read_per_s": median(&mut read_rates[d]),
        }));
    }

    // Latency at a fixed rate, one run per delivery.
    for delivery in DELIVERIES {
        let name = format!("{base}-lat-{}", short(delivery));
        let input = topics.create(&format!("{name}-in"))?;
        let output = topics.create(&format!("{name}-out"))?;
        topics.names.push(format!("{name}.commits"));
        let job = Job {
            bootstrap,
            input: &input,
            output: &output,
            prefix: &name,
            delivery,
            bounded: false,
            wasm,
        };
        let l = job.latency(&dir, &cluster, scale)?;
        rows.push(json!({
            "case": row_name("kafka-latency", delivery),
            "delivery": delivery,
            "input_rate": scale.rate,
            "events": l.produced,
            "measured": l.samples,
            "latency_p50_ms": l.p50,
            "latency_p99_ms": l.p99,
            "latency_max_ms": l.max,
            "checkpoint_interval_ms": 1000,
        }));
        topics.delete(&[&input, &output, &format!("{name}.commits")]);
    }
    Ok(rows)
}

/// `eo` or `alo`, for topic names.
fn short(delivery: &str) -> &'static str {
    if delivery == "exactly-once" {
        "eo"
    } else {
        "alo"
    }
}

/// A row's name: `base` for exactly-once, `base-at-least-once` otherwise.
fn row_name(base: &str, delivery: &str) -> String {
    if delivery == "exactly-once" {
        base.to_string()
    } else {
        format!("{base}-{delivery}")
    }
}

/// The topics the case created, deleted when it ends however it ends.
struct Topics {
    cluster: KafkaCluster,
    names: Vec<String>,
}

impl Topics {
    /// Creates `name` with [`PARTITIONS`] partitions; returns the name.
    fn create(&mut self, name: &str) -> Result<String, BenchError> {
        self.names.push(name.to_string());
        self.cluster.ensure_topic(
            name,
            Some(CreateTopic {
                partitions: PARTITIONS,
                replication: 1,
            }),
            "weir bench",
        )?;
        Ok(name.to_string())
    }

    /// Deletes `names` (those that exist), best effort.
    fn delete(&mut self, names: &[&str]) {
        self.names.retain(|n| !names.contains(&n.as_str()));
        let admin: AdminClient<DefaultClientContext> = match self.cluster.client_config().create() {
            Ok(a) => a,
            Err(e) => {
                eprintln!("weir bench: cannot delete topics {names:?}: {e}");
                return;
            }
        };
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        match futures_executor::block_on(admin.delete_topics(names, &options)) {
            Ok(results) => {
                for r in results {
                    match r {
                        Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
                        Err((name, code)) => {
                            eprintln!("weir bench: cannot delete topic `{name}`: {code}")
                        }
                    }
                }
            }
            Err(e) => eprintln!("weir bench: cannot delete topics {names:?}: {e}"),
        }
    }
}

impl Drop for Topics {
    fn drop(&mut self) {
        if !self.names.is_empty() {
            let names = std::mem::take(&mut self.names);
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            self.delete(&refs);
        }
    }
}

/// A producer's context that counts failed deliveries and keeps the first error.
#[derive(Default)]
struct Deliveries {
    failed: AtomicU64,
    first: std::sync::Mutex<Option<String>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            self.failed.fetch_add(1, Ordering::Relaxed);
            let mut first = self.first.lock().unwrap_or_else(|e| e.into_inner());
            first.get_or_insert_with(|| e.to_string());
        }
    }
}

fn producer(
    cluster: &KafkaCluster,
    linger_ms: &str,
) -> Result<BaseProducer<Deliveries>, BenchError> {
    let mut config: ClientConfig = cluster.client_config();
    config
        .set("partitioner", "murmur2_random")
        .set("linger.ms", linger_ms)
        .set("queue.buffering.max.messages", "1000000");
    config
        .create_with_context(Deliveries::default())
        .with_context(|| format!("creating a Kafka producer for `{}`", cluster.bootstrap))
}

/// Sends one record, waiting while librdkafka's queue is full.
fn send(
    producer: &BaseProducer<Deliveries>,
    topic: &str,
    key: &[u8],
    value: &[u8],
    timestamp: i64,
) -> Result<(), BenchError> {
    let mut record = BaseRecord::to(topic)
        .key(key)
        .payload(value)
        .timestamp(timestamp);
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                producer.poll(Duration::from_millis(10));
            }
            Err((e, _)) => bail!("producing into `{topic}`: {e}"),
        }
    }
}

/// Flushes a producer and fails if any record was not delivered.
fn finish(producer: &BaseProducer<Deliveries>, topic: &str) -> Result<(), BenchError> {
    producer
        .flush(Duration::from_secs(120))
        .with_context(|| format!("flushing the records into `{topic}`"))?;
    let context = producer.context();
    let failed = context.failed.load(Ordering::Relaxed);
    if failed > 0 {
        bail!(
            "{failed} records were not delivered into `{topic}`: {}",
            context
                .first
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
                .unwrap_or_default()
        );
    }
    Ok(())
}

/// Produces `events` records up front: keys `key-0` … over [`KEYS`] keys.
fn produce_all(cluster: &KafkaCluster, topic: &str, events: u64) -> Result<(), BenchError> {
    let producer = producer(cluster, "20")?;
    let value = [b'v'; VALUE_SIZE];
    let mut key = String::new();
    let ts = now_ms();
    for i in 0..events {
        key.clear();
        use std::fmt::Write as _;
        let _ = write!(key, "key-{}", i % KEYS);
        send(&producer, topic, key.as_bytes(), &value, ts)?;
        if i % 10_000 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    finish(&producer, topic)
}

/// The readers' context: the end of a partition is news, not an error.
struct Reader;

impl ClientContext for Reader {
    fn error(&self, error: KafkaError, reason: &str) {
        if !matches!(
            error,
            KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF)
        ) {
            tracing::warn!("Kafka reader: {error}: {reason}");
        }
    }
}

impl ConsumerContext for Reader {}

/// A `read_committed` consumer of every partition of `topic` from the
/// start; `eof`: it reports the end of each partition.
fn committed_reader(
    cluster: &KafkaCluster,
    topic: &str,
    eof: bool,
) -> Result<BaseConsumer<Reader>, BenchError> {
    let consumer: BaseConsumer<Reader> = cluster
        .client_config()
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", if eof { "true" } else { "false" })
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        // The measuring reader must not add its own wait to a latency.
        .set("fetch.wait.max.ms", "10")
        .set("group.id", format!("{topic}-reader"))
        .create_with_context(Reader)
        .with_context(|| format!("creating a Kafka consumer for `{}`", cluster.bootstrap))?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    Ok(consumer)
}

/// Counts the committed records of `topic` (to the end of every partition).
fn count_committed(cluster: &KafkaCluster, topic: &str) -> Result<u64, BenchError> {
    let consumer = committed_reader(cluster, topic, true)?;
    let mut at_end = std::collections::BTreeSet::new();
    let mut n = 0;
    let mut last_news = Instant::now();
    loop {
        // The end events may come before records fetched earlier, which
        // are queued by then: drain the queue after them.
        let done = at_end.len() == PARTITIONS as usize;
        match consumer.poll(if done {
            Duration::ZERO
        } else {
            Duration::from_millis(200)
        }) {
            None if done => return Ok(n),
            None if last_news.elapsed() > Duration::from_secs(60) => {
                bail!("reading back `{topic}`: nothing for 60 s")
            }
            None => {}
            Some(Err(KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            Some(Err(e)) => bail!("reading back `{topic}`: {e}"),
            Some(Ok(_)) => {
                n += 1;
                last_news = Instant::now();
            }
        }
    }
}

/// One job of the case.
struct Job<'a> {
    bootstrap: &'a str,
    input: &'a str,
    output: &'a str,
    prefix: &'a str,
    delivery: &'a str,
    bounded: bool,
    wasm: &'a Path,
}

/// What a latency run measured.
struct Latency {
    produced: u64,
    samples: usize,
    p50: i64,
    p99: i64,
    max: i64,
}

impl Job<'_> {
    fn file(&self) -> String {
        format!(
            r#"name = "bench-kafka"
max_parallelism = 128

[source]
type = "kafka"
bootstrap = "{bootstrap}"
topic = "{input}"
start = "earliest"
stop = "{stop}"

[[operators]]
id = "op"
wasm = {wasm:?}
parallelism = 1
input = "key"

[sink]
type = "kafka"
bootstrap = "{bootstrap}"
topic = "{output}"
delivery = "{delivery}"
transactional_id_prefix = "{prefix}"

[checkpoint]
interval = "1s"
dir = "state"
mode = "exactly-once"

[savepoint]
dir = "savepoints"

[rest]
addr = "127.0.0.1:0"
"#,
            bootstrap = self.bootstrap,
            input = self.input,
            output = self.output,
            stop = if self.bounded { "latest" } else { "never" },
            wasm = self.wasm.display().to_string(),
            delivery = self.delivery,
            prefix = self.prefix,
        )
    }

    /// Starts the job in a child `weir run` with a fresh state directory.
    fn start(&self, dir: &Path) -> Result<Child, BenchError> {
        let dir = dir.join(self.prefix);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("job.toml"), self.file())?;
        let me = std::env::current_exe().context("finding the weir binary")?;
        Command::new(me)
            .current_dir(&dir)
            .args([
                "run",
                "job.toml",
                "--report",
                "report.json",
                "--ready-file",
                "ready",
            ])
            .env("WEIR_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("stderr.log"))?)
            .spawn()
            .context("running weir run")
    }

    /// The job's stderr so far, for messages.
    fn stderr(&self, dir: &Path) -> String {
        std::fs::read_to_string(dir.join(self.prefix).join("stderr.log"))
            .unwrap_or_default()
            .trim()
            .to_string()
    }

    fn report(&self, dir: &Path) -> Result<Value, BenchError> {
        Ok(serde_json::from_slice(&std::fs::read(
            dir.join(self.prefix).join("report.json"),
        )?)?)
    }

    /// Runs a bounded job to its end; returns its report.
    fn run_to_end(&self, dir: &Path) -> Result<Value, BenchError> {
        let status = self.start(dir)?.wait()?;
        if !status.success() {
            bail!(
                "case `kafka` ({}): the job failed: {}",
                self.delivery,
                self.stderr(dir)
            );
        }
        self.report(dir)
    }

    /// Runs an unbounded job while records come at a fixed rate; measures
    /// their latency at a `read_committed` consumer of the output; stops
    /// the job with a savepoint.
    fn latency(
        &self,
        dir: &Path,
        cluster: &KafkaCluster,
        scale: &KafkaScale,
    ) -> Result<Latency, BenchError> {
        let mut child = self.start(dir)?;
        let result = self.measure(dir, &mut child, cluster, scale);
        if result.is_err() {
            let _ = child.kill();
            let _ = child.wait();
        }
        result
    }

    fn measure(
        &self,
        dir: &Path,
        child: &mut Child,
        cluster: &KafkaCluster,
        scale: &KafkaScale,
    ) -> Result<Latency, BenchError> {
        let what = format!("case `kafka` latency ({})", self.delivery);
        // The REST address, once the job is up.
        let addr = super::child::rest_address(
            &dir.join(self.prefix).join("ready"),
            child,
            Duration::from_secs(120),
            &what,
        )?;

        let consumer = committed_reader(cluster, self.output, false)?;
        let produced = Arc::new(AtomicU64::new(0));
        let writer = {
            let cluster = cluster.clone();
            let topic = self.input.to_string();
            let produced = produced.clone();
            let rate = scale.rate;
            let duration = scale.duration;
            std::thread::spawn(move || -> Result<u64, BenchError> {
                let producer = producer(&cluster, "0")?;
                let value = [b'v'; VALUE_SIZE];
                let start = Instant::now();
                let mut sent = 0u64;
                while start.elapsed() < duration {
                    let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
                    while sent < due {
                        let key = format!("key-{}", sent % KEYS);
                        send(&producer, &topic, key.as_bytes(), &value, now_ms())?;
                        sent += 1;
                    }
                    producer.poll(Duration::ZERO);
                    std::thread::sleep(Duration::from_millis(1));
                }
                finish(&producer, &topic)?;
                produced.store(sent, Ordering::SeqCst);
                Ok(sent)
            })
        };

        // Each output record's latency; records produced before the first
        // output was seen (while the job started) are not counted.
        let mut first_seen: Option<i64> = None;
        let mut latencies: Vec<i64> = Vec::new();
        let mut seen = 0u64;
        let mut last_news = Instant::now();
        loop {
            let total = produced.load(Ordering::SeqCst);
            if total > 0 && seen >= total {
                break;
            }
            if writer.is_finished() && total == 0 {
                // The writer failed: its error says why.
                writer.join().map_err(|_| {
                    BenchError::from(format!("{what}: the producer thread panicked"))
                })??;
                bail!("{what}: nothing was produced");
            }
            if last_news.elapsed() > Duration::from_secs(60) {
                bail!(
                    "{what}: {seen} of {} records reached the output, then nothing for 60 s: {}",
                    if total > 0 {
                        total.to_string()
                    } else {
                        "?".to_string()
                    },
                    self.stderr(dir)
                );
            }
            if let Some(status) = child.try_wait()? {
                bail!("{what}: the job ended ({status}): {}", self.stderr(dir));
            }
            match consumer.poll(Duration::from_millis(100)) {
                None | Some(Err(KafkaError::PartitionEOF(_))) => {}
                Some(Err(e)) => bail!("{what}: reading `{}`: {e}", self.output),
                Some(Ok(m)) => {
                    let now = now_ms();
                    let ts = m.timestamp().to_millis().unwrap_or(now);
                    let first = *first_seen.get_or_insert(now);
                    if ts >= first {
                        latencies.push(now - ts);
                    }
                    seen += 1;
                    last_news = Instant::now();
                }
            }
        }
        let produced = writer
            .join()
            .map_err(|_| BenchError::from(format!("{what}: the producer thread panicked")))??;
        if seen != produced {
            bail!("{what}: {seen} records reached the output of {produced} produced");
        }

        client::savepoint_and_wait(&addr, "stop", json!({}), Duration::from_secs(120))
            .with_context(|| format!("{what}: stopping the job"))?;
        let status = child.wait()?;
        if !status.success() {
            bail!("{what}: the job failed: {}", self.stderr(dir));
        }
        let events = self.report(dir)?["events_in"].as_u64().unwrap_or(0);
        if events != produced {
            bail!("{what}: the job read {events} events of {produced} produced");
        }
        if latencies.is_empty() {
            bail!("{what}: no record was produced after the first output");
        }
        latencies.sort_unstable();
        let q = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];
        Ok(Latency {
            produced,
            samples: latencies.len(),
            p50: q(0.5),
            p99: q(0.99),
            max: *latencies.last().unwrap_or(&0),
        })
    }
}
