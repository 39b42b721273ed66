//! Against a real broker: `WEIR_TEST_KAFKA` (default `127.0.0.1:9092`,
//! the development broker `scripts/services.sh up kafka` starts). Run
//! with `cargo test --workspace --lib kafka::sink -- --ignored`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::config::{default_transactional_id_prefix, KafkaSinkConfig};
use super::markers::{last_committed, Committed};
use super::writer::KafkaSink;
use crate::connectors::kafka::{CreateTopic, KafkaCluster};
use crate::model::now_ms;
use crate::model::{Batch, SinkWriter};

fn bootstrap() -> String {
    std::env::var("WEIR_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("weir-test-sink-{name}-{}-{nanos}", std::process::id())
}

fn config(name: &str) -> KafkaSinkConfig {
    let topic = unique(name);
    KafkaSinkConfig {
        cluster: KafkaCluster {
            bootstrap: bootstrap(),
            properties: BTreeMap::new(),
            connect_timeout: Duration::from_secs(30),
        },
        transactional_id_prefix: default_transactional_id_prefix("test", &topic),
        topic,
        delivery: None,
        transaction_timeout: Duration::from_secs(60),
        create: Some(CreateTopic {
            partitions: 3,
            replication: 1,
        }),
    }
}

/// The test records' first timestamp: recent, so that the
/// broker's retention (by timestamp) keeps them.
fn base() -> i64 {
    static BASE: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *BASE.get_or_init(now_ms)
}

fn batch(from: usize, n: usize) -> Batch {
    let mut b = Batch::default();
    for i in from..from + n {
        b.push(
            Some(format!("k{i}").as_bytes()),
            format!("v{i}").as_bytes(),
            base() + i as i64,
        );
    }
    b
}

/// Every record a `read_committed` consumer sees in `topic`, as
/// (key, value, timestamp), sorted.
fn visible(config: &KafkaSinkConfig) -> Vec<(String, String, i64)> {
    read(config)
        .into_iter()
        .map(|(k, v, t, _)| (k, v, t))
        .collect()
}

/// Kafka's default partitioner (the Java client's `murmur2`).
fn java_partition(key: &[u8], partitions: i32) -> i32 {
    const M: u32 = 0x5bd1_e995;
    let mut h: u32 = 0x9747_b28c ^ key.len() as u32;
    let mut chunks = key.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        for (i, b) in rest.iter().enumerate().rev() {
            h ^= u32::from(*b) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    ((h & 0x7fff_ffff) % partitions as u32) as i32
}

/// Every record a `read_committed` consumer sees in `topic`, as
/// (key, value, timestamp, partition), sorted.
fn read(config: &KafkaSinkConfig) -> Vec<(String, String, i64, i32)> {
    let consumer: BaseConsumer = config
        .cluster
        .client_config()
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest")
        .set("group.id", unique("reader"))
        .create()
        .unwrap();
    let n = config.cluster.partitions(&config.topic).unwrap().unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..n {
        tpl.add_partition_offset(&config.topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut eof = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "no end of partitions");
        // The end events may come before records fetched earlier,
        // which are queued by then: drain the queue after them.
        let at_end = eof.len() == n as usize;
        match consumer.poll(if at_end {
            Duration::ZERO
        } else {
            Duration::from_millis(200)
        }) {
            None if at_end => break,
            None => {}
            Some(Err(KafkaError::PartitionEOF(p))) => {
                eof.insert(p);
            }
            Some(Err(e)) => panic!("{e}"),
            Some(Ok(m)) => {
                let s = |b: Option<&[u8]>| String::from_utf8(b.unwrap().to_vec()).unwrap();
                out.push((
                    s(m.key()),
                    s(m.payload()),
                    m.timestamp().to_millis().unwrap(),
                    m.partition(),
                ));
            }
        }
    }
    out.sort();
    out
}

/// Waits until a `read_committed` consumer sees `wanted`: a
/// transaction's commit markers reach the partitions shortly after
/// `commit_transaction` returns.
fn await_visible(config: &KafkaSinkConfig, wanted: Vec<(String, String, i64)>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let seen = visible(config);
        if seen == wanted || Instant::now() >= deadline {
            assert_eq!(seen, wanted);
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn expected(from: usize, n: usize) -> Vec<(String, String, i64)> {
    let mut v: Vec<_> = (from..from + n)
        .map(|i| (format!("k{i}"), format!("v{i}"), base() + i as i64))
        .collect();
    v.sort();
    v
}

#[test]
#[ignore = "needs a Kafka broker"]
fn exactly_once_publishes_at_commit_and_recovers_the_last_marker() {
    let c = config("eos");
    assert_eq!(last_committed(&c).unwrap(), None);
    let mut sink = KafkaSink::open(&c, true, "store-a").unwrap();
    sink.write(&batch(0, 10)).unwrap();
    sink.pre_commit(1).unwrap();
    // After the barrier: buffered until checkpoint 1 completes.
    sink.write(&batch(10, 5)).unwrap();
    assert_eq!(visible(&c), vec![]);
    sink.commit(1).unwrap();
    await_visible(&c, expected(0, 10));
    // Epoch 2 (records 10..20) is pre-committed, then the process dies.
    sink.write(&batch(15, 5)).unwrap();
    sink.pre_commit(2).unwrap();
    drop(sink);
    assert_eq!(
        last_committed(&c).unwrap(),
        Some(Committed {
            checkpoint: 1,
            store: "store-a".into()
        })
    );
    await_visible(&c, expected(0, 10));
    // The next attempt recomputes epoch 2 and commits it.
    let mut sink = KafkaSink::open(&c, true, "store-a").unwrap();
    sink.write(&batch(10, 10)).unwrap();
    sink.pre_commit(2).unwrap();
    sink.commit(2).unwrap();
    sink.finish().unwrap();
    await_visible(&c, expected(0, 20));
    assert_eq!(last_committed(&c).unwrap().unwrap().checkpoint, 2);
}

#[test]
#[ignore = "needs a Kafka broker"]
fn an_aborted_checkpoint_is_covered_by_the_next() {
    let c = config("abort");
    let mut sink = KafkaSink::open(&c, true, "s").unwrap();
    sink.write(&batch(0, 3)).unwrap();
    sink.pre_commit(1).unwrap();
    sink.write(&batch(3, 3)).unwrap();
    sink.checkpoint_aborted(1).unwrap();
    sink.write(&batch(6, 3)).unwrap();
    sink.pre_commit(2).unwrap();
    sink.write(&batch(9, 3)).unwrap();
    // pre_commit(3) while awaiting 2: 2 was aborted.
    sink.pre_commit(3).unwrap();
    // A late commit of an older checkpoint publishes nothing.
    sink.commit(1).unwrap();
    assert_eq!(visible(&c), vec![]);
    sink.commit(3).unwrap();
    await_visible(&c, expected(0, 12));
    assert_eq!(last_committed(&c).unwrap().unwrap().checkpoint, 3);
    sink.finish().unwrap();
}

#[test]
#[ignore = "needs a Kafka broker"]
fn at_least_once_flushes_at_the_barrier() {
    let c = config("alo");
    let mut sink = KafkaSink::open(&c, false, "s").unwrap();
    sink.write(&batch(0, 7)).unwrap();
    sink.pre_commit(1).unwrap();
    await_visible(&c, expected(0, 7));
    // Partitioned as Java clients would.
    for (key, _, _, partition) in read(&c) {
        assert_eq!(partition, java_partition(key.as_bytes(), 3), "{key}");
    }
    sink.write(&batch(7, 1)).unwrap();
    sink.finish().unwrap();
    await_visible(&c, expected(0, 8));
    assert_eq!(
        sink.describe(),
        format!("sink kafka `{}` at `{}`", c.topic, bootstrap())
    );
}

#[test]
#[ignore = "needs a Kafka broker"]
fn a_record_over_the_size_limit_names_the_limit_and_key() {
    let c = config("large");
    let mut sink = KafkaSink::open(&c, false, "s").unwrap();
    let mut b = Batch::default();
    b.push(Some(b"big-key"), &vec![b'x'; 2 << 20], 0);
    let e = sink.write(&b).unwrap_err().to_string();
    eprintln!("{e}");
    assert!(e.contains("`message.max.bytes`"), "{e}");
    assert!(e.contains("key `big-key`"), "{e}");
    assert!(!e.contains('\n'), "{e}");
}

#[test]
#[ignore = "needs a Kafka broker"]
fn a_record_over_the_topic_limit_fails_at_delivery() {
    let mut c = config("topiclimit");
    c.create = None;
    c.cluster
        .create_topic(
            &c.topic,
            CreateTopic {
                partitions: 1,
                replication: 1,
            },
            &[("max.message.bytes", "1000")],
        )
        .unwrap();
    let mut sink = KafkaSink::open(&c, true, "s").unwrap();
    let mut b = Batch::default();
    b.push(Some(b"k"), &[b'x'; 5000], 0);
    let e = match sink.write(&b) {
        Err(e) => e,
        Ok(()) => sink.pre_commit(1).unwrap_err(),
    }
    .to_string();
    eprintln!("{e}");
    assert!(e.contains("`max.message.bytes` is 1000"), "{e}");
    assert!(e.contains("key `k`"), "{e}");
}

#[test]
#[ignore = "needs a Kafka broker"]
fn a_transaction_timeout_above_the_brokers_limit_is_named() {
    let mut c = config("ttl");
    c.transaction_timeout = Duration::from_secs(20 * 60);
    let e = KafkaSink::open(&c, true, "s").err().unwrap();
    eprintln!("{e}");
    assert!(e.contains("`transaction.max.timeout.ms` (15m)"), "{e}");
    assert!(e.contains("transaction_timeout 20m"), "{e}");
}

#[test]
#[ignore = "needs a Kafka broker"]
fn a_newer_producer_fences_the_older() {
    let c = config("fence");
    let mut old = KafkaSink::open(&c, true, "s").unwrap();
    old.write(&batch(0, 2)).unwrap();
    let _new = KafkaSink::open(&c, true, "s").unwrap();
    let e = match old.pre_commit(1) {
        Err(e) => e,
        Ok(_) => old.commit(1).unwrap_err(),
    }
    .to_string();
    eprintln!("{e}");
    assert!(
        e.contains(&format!(
            "fenced: another weir process uses transactional id `{}`",
            c.transactional_id()
        )),
        "{e}"
    );
    assert_eq!(visible(&c), vec![]);
}
