//! Checks against the development broker at 127.0.0.1:9092 (or the one
//! `WEIR_TEST_KAFKA` names), run by hand:
//! `cargo test --workspace --lib kafka -- --ignored`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use super::{
    KafkaSource, KafkaSourceConfig, OnOutOfRange, StartAt, StopAt, DEFAULT_PARTITION_DISCOVERY,
};
use crate::connectors::kafka::{CreateTopic, KafkaCluster};
use crate::model::{KafkaPartition, SourcePosition, SourceReader};

/// The broker: `WEIR_TEST_KAFKA`, else the development one.
pub(super) fn bootstrap() -> String {
    std::env::var("WEIR_TEST_KAFKA")
        .ok()
        .filter(|b| !b.trim().is_empty())
        .unwrap_or_else(|| "127.0.0.1:9092".to_string())
}
/// A guard against a test hanging forever, not a timed assertion.
pub(super) const PATIENCE: Duration = Duration::from_secs(60);

fn cluster() -> KafkaCluster {
    KafkaCluster {
        bootstrap: bootstrap(),
        properties: BTreeMap::new(),
        connect_timeout: Duration::from_secs(10),
    }
}

pub(super) fn unique(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("kafka-source-{what}-{}-{nanos}", std::process::id())
}

pub(super) fn config(topic: &str) -> KafkaSourceConfig {
    KafkaSourceConfig {
        cluster: cluster(),
        topic: topic.into(),
        group: None,
        start: StartAt::Earliest,
        stop: StopAt::Latest,
        parallelism: 1,
        idle_timeout: None,
        partition_discovery: DEFAULT_PARTITION_DISCOVERY,
        create: None,
        on_out_of_range: OnOutOfRange::Fail,
    }
}

pub(super) type Record = (i32, Option<String>, String, i64);

pub(super) fn produce(topic: &str, records: &[Record], transaction: Option<(&str, bool)>) {
    let mut cfg = cluster().client_config();
    if let Some((id, _)) = transaction {
        cfg.set("transactional.id", id);
    }
    let producer: BaseProducer = cfg.create().unwrap();
    if transaction.is_some() {
        producer.init_transactions(PATIENCE).unwrap();
        producer.begin_transaction().unwrap();
    }
    for (p, k, v, ts) in records {
        let mut r = BaseRecord::to(topic)
            .partition(*p)
            .payload(v)
            .timestamp(*ts);
        if let Some(k) = k {
            r = r.key(k);
        }
        producer.send(r).map_err(|(e, _)| e).unwrap();
    }
    producer.flush(PATIENCE).unwrap();
    match transaction {
        Some((_, true)) => producer.commit_transaction(PATIENCE).unwrap(),
        Some((_, false)) => producer.abort_transaction(PATIENCE).unwrap(),
        None => {}
    }
}

/// Reads until the source ends; each event as (partition-less) key,
/// value, timestamp, offset.
fn read_all(source: &mut KafkaSource) -> Vec<(Option<String>, String, i64, u64)> {
    let deadline = Instant::now() + PATIENCE;
    let mut out = Vec::new();
    loop {
        assert!(Instant::now() < deadline, "the source did not end");
        let mut offsets = Vec::new();
        let Some(batch) = source.next_batch(&mut offsets).unwrap() else {
            return out;
        };
        assert_eq!(offsets.len(), batch.len());
        for (e, o) in batch.iter().zip(offsets) {
            out.push((
                e.key.map(|k| String::from_utf8(k.to_vec()).unwrap()),
                String::from_utf8(e.value.to_vec()).unwrap(),
                e.timestamp,
                o,
            ));
        }
    }
}

fn offsets_of(position: &SourcePosition) -> Vec<(i32, i64)> {
    let SourcePosition::Kafka { partitions, .. } = position else {
        panic!("{position:?}")
    };
    partitions.iter().map(|p| (p.partition, p.offset)).collect()
}

#[test]
#[ignore = "needs the Kafka broker at 127.0.0.1:9092"]
fn reads_committed_records_of_its_partitions_and_restores() {
    let topic = unique("read");
    let create = CreateTopic {
        partitions: 3,
        replication: 1,
    };
    cluster().create_topic(&topic, create, &[]).unwrap();
    let plain: Vec<Record> = (0..30)
        .map(|i| {
            let key = (i != 5).then(|| format!("k{i}"));
            (i % 3, key, format!("v{i}"), 1000 + i as i64)
        })
        .collect();
    produce(&topic, &plain, None);
    let aborted: Vec<Record> = (0..3)
        .map(|i| (0, None, format!("aborted{i}"), 5000))
        .collect();
    produce(&topic, &aborted, Some((&unique("tx-a"), false)));
    let committed: Vec<Record> = (0..2)
        .map(|i| (1, Some("t".into()), format!("txn{i}"), 6000 + i))
        .collect();
    produce(&topic, &committed, Some((&unique("tx-c"), true)));

    // Two subtasks: 0 reads partitions 0 and 2, 1 reads partition 1.
    let mut c = config(&topic);
    c.parallelism = 2;
    let mut s0 = KafkaSource::open(&c, 0, 2, 4, None).unwrap();
    let mut s1 = KafkaSource::open(&c, 1, 2, 4, None).unwrap();
    assert_eq!(s0.partitions(), vec![0, 2]);
    assert_eq!(s1.partitions(), vec![1]);
    let r0 = read_all(&mut s0);
    let r1 = read_all(&mut s1);
    let mut values: Vec<String> = r0.iter().chain(&r1).map(|e| e.1.clone()).collect();
    values.sort();
    let mut want: Vec<String> = plain
        .iter()
        .chain(&committed)
        .map(|r| r.2.clone())
        .collect();
    want.sort();
    assert_eq!(values, want, "aborted records are not read");
    let v5 = r0.iter().chain(&r1).find(|e| e.1 == "v5").unwrap();
    assert_eq!(v5.0, None, "a null key is an absent key");
    let v4 = r1.iter().find(|e| e.1 == "v4").unwrap();
    assert_eq!((v4.0.as_deref(), v4.2, v4.3), (Some("k4"), 1004, 1));
    // Positions are past every record and transaction marker.
    let p0 = s0.position().unwrap();
    let p1 = s1.position().unwrap();
    let probe: BaseConsumer = cluster()
        .client_config()
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    let marks = |p| probe.fetch_watermarks(&topic, p, PATIENCE).unwrap().1;
    assert_eq!(offsets_of(&p0), vec![(0, marks(0)), (2, marks(2))]);
    assert_eq!(offsets_of(&p1), vec![(1, marks(1))]);
    assert_eq!(s1.watermark_basis(), Some(6001));
    assert_eq!(
        s0.watermark_basis(),
        Some(1029),
        "the slower of 1027 (p0) and 1029 (p2)"
    );

    // Restore at one parallelism from a merged position in which
    // partition 0 is back at offset 5 and partition 1 is missing.
    let merged = SourcePosition::merge(vec![p0, p1]).unwrap();
    let SourcePosition::Kafka { mut partitions, .. } = merged else {
        unreachable!()
    };
    partitions.retain(|p| p.partition != 1);
    partitions[0].offset = 5;
    let restored = SourcePosition::Kafka {
        topic: topic.clone(),
        partitions,
    };
    let mut s = KafkaSource::open(&config(&topic), 0, 1, 100, Some(&restored)).unwrap();
    let r = read_all(&mut s);
    let mut values: Vec<String> = r.iter().map(|e| e.1.clone()).collect();
    values.sort();
    let mut want: Vec<String> = plain
        .iter()
        .filter(|r| r.0 == 1 || (r.0 == 0 && r.3 >= 1015))
        .chain(&committed)
        .map(|r| r.2.clone())
        .collect();
    want.sort();
    assert_eq!(values, want);

    // start = latest reads nothing of what is there; timestamp:<ms>
    // starts at the first record that late.
    let mut c = config(&topic);
    c.start = StartAt::Latest;
    assert!(read_all(&mut KafkaSource::open(&c, 0, 1, 100, None).unwrap()).is_empty());
    c.start = StartAt::Timestamp(1024);
    let r = read_all(&mut KafkaSource::open(&c, 0, 1, 100, None).unwrap());
    let mut values: Vec<String> = r.iter().map(|e| e.1.clone()).collect();
    values.sort();
    let mut want: Vec<String> = (24..30)
        .map(|i| format!("v{i}"))
        .chain(committed.iter().map(|r| r.2.clone()))
        .collect();
    want.sort();
    assert_eq!(values, want);

    // Errors.
    let e = KafkaSource::open(
        &c,
        0,
        1,
        100,
        Some(&SourcePosition::Kafka {
            topic: "other".into(),
            partitions: vec![],
        }),
    )
    .err()
    .unwrap();
    assert!(
        e.contains("`other`") && e.contains(&format!("`{topic}`")),
        "{e}"
    );
    let missing = unique("missing");
    let e = KafkaSource::open(&config(&missing), 0, 1, 100, None)
        .err()
        .unwrap();
    assert_eq!(
        e,
        format!("Kafka topic `{missing}` does not exist at `{}` (create it, or set `create = {{ partitions = N, replication = R }}` in [source])", bootstrap())
    );
    let mut c = config(&topic);
    c.cluster.bootstrap = "127.0.0.1:1".into();
    c.cluster.connect_timeout = Duration::from_millis(500);
    let e = KafkaSource::open(&c, 0, 1, 100, None).err().unwrap();
    assert!(
        e.starts_with("cannot reach Kafka at `127.0.0.1:1` within 500ms"),
        "{e}"
    );
}

#[test]
#[ignore = "needs the Kafka broker at 127.0.0.1:9092"]
fn commits_checkpoints_to_the_group_and_starts_from_them() {
    let topic = unique("group");
    let group = unique("g");
    let create = CreateTopic {
        partitions: 2,
        replication: 1,
    };
    cluster().create_topic(&topic, create, &[]).unwrap();
    let records: Vec<Record> = (0..10)
        .map(|i| (i % 2, None, format!("v{i}"), i as i64))
        .collect();
    produce(&topic, &records, None);
    let mut c = config(&topic);
    c.group = Some(group.clone());
    let mut s = KafkaSource::open(&c, 0, 1, 3, None).unwrap();
    let mut offsets = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    while offsets.len() < 4 {
        assert!(Instant::now() < deadline);
        s.next_batch(&mut offsets).unwrap().unwrap();
    }
    let at = s.position().unwrap();
    s.checkpoint_complete(1, &at);
    // The commit is asynchronous: wait until the group has it.
    let probe: BaseConsumer = cluster()
        .client_config()
        .set("group.id", &group)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(&topic, 0);
    tpl.add_partition(&topic, 1);
    let want = offsets_of(&at);
    loop {
        assert!(Instant::now() < deadline, "the group never got {want:?}");
        s.next_batch(&mut Vec::new()).unwrap();
        let got = probe.committed_offsets(tpl.clone(), PATIENCE).unwrap();
        let got: Vec<(i32, i64)> = got
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(n) => Some((e.partition(), n)),
                _ => None,
            })
            .collect();
        if got == want {
            break;
        }
    }
    c.start = StartAt::Committed;
    let s = KafkaSource::open(&c, 0, 1, 3, None).unwrap();
    assert_eq!(offsets_of(&s.position().unwrap()), want);
}

#[test]
#[ignore = "needs the Kafka broker at 127.0.0.1:9092"]
fn new_partitions_are_read_from_their_start() {
    let topic = unique("discover");
    let create = CreateTopic {
        partitions: 1,
        replication: 1,
    };
    cluster().create_topic(&topic, create, &[]).unwrap();
    produce(&topic, &[(0, None, "a".into(), 1)], None);
    let mut c = config(&topic);
    c.stop = StopAt::Never;
    c.partition_discovery = Duration::from_millis(100);
    c.idle_timeout = Some(Duration::from_secs(3600));
    let mut s = KafkaSource::open(&c, 0, 1, 100, None).unwrap();
    let mut seen = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    let read = |s: &mut KafkaSource, seen: &mut Vec<String>, n| {
        while seen.len() < n {
            assert!(Instant::now() < deadline, "read only {seen:?}");
            let b = s.next_batch(&mut Vec::new()).unwrap().expect("never ends");
            seen.extend(
                b.iter()
                    .map(|e| String::from_utf8(e.value.to_vec()).unwrap()),
            );
        }
    };
    read(&mut s, &mut seen, 1);
    // Nothing more to read: an empty batch, not the end.
    assert_eq!(
        s.next_batch(&mut Vec::new()).unwrap().map(|b| b.len()),
        Some(0)
    );
    let admin: AdminClient<DefaultClientContext> = cluster().client_config().create().unwrap();
    let more = NewPartitions::new(&topic, 2);
    futures_executor::block_on(admin.create_partitions([&more], &AdminOptions::new()))
        .unwrap()
        .into_iter()
        .for_each(|r| {
            r.unwrap();
        });
    produce(&topic, &[(1, None, "b".into(), 2)], None);
    read(&mut s, &mut seen, 2);
    assert_eq!(seen, vec!["a", "b"]);
    assert_eq!(s.partitions(), vec![0, 1]);
    assert_eq!(offsets_of(&s.position().unwrap()), vec![(0, 1), (1, 1)]);
    assert_eq!(s.watermark_basis(), Some(1));
    assert!(!s.idle());
}

/// Topic settings that keep records for ever: retention goes by record
/// timestamps, and the tests' are in January 1970.
const KEEP: &[(&str, &str)] = &[("retention.ms", "-1")];

/// Produces records `from..from + n` into partition 0 of `topic`, one
/// record batch each, with timestamps `from + 1`, ...
fn produce_one_by_one(topic: &str, from: usize, n: usize) {
    let producer: BaseProducer = cluster()
        .client_config()
        .set("linger.ms", "0")
        .set("batch.num.messages", "1")
        .create()
        .unwrap();
    for i in from..from + n {
        let v = format!("v{i}");
        producer
            .send(
                BaseRecord::<(), str>::to(topic)
                    .partition(0)
                    .payload(&v)
                    .timestamp(i as i64 + 1),
            )
            .map_err(|(e, _)| e)
            .unwrap();
    }
    producer.flush(PATIENCE).unwrap();
}

/// Deletes the records of `topic`'s partition 0 below `offset`, as
/// retention does.
fn delete_below(topic: &str, offset: i64) {
    let admin: AdminClient<DefaultClientContext> = cluster().client_config().create().unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(offset))
        .unwrap();
    let done =
        futures_executor::block_on(admin.delete_records(&tpl, &AdminOptions::new())).unwrap();
    for e in done.elements() {
        e.error().unwrap();
    }
}

/// Reads one batch; its events' offsets go to `offsets`.
fn read_some(s: &mut KafkaSource, offsets: &mut Vec<u64>) -> Result<(), String> {
    s.next_batch(offsets)?.expect("the source never ends");
    Ok(())
}

#[test]
#[ignore = "needs the Kafka broker at 127.0.0.1:9092"]
fn an_offset_out_of_range_while_reading_fails_or_reads_on_as_on_out_of_range_says() {
    for choice in [
        OnOutOfRange::Fail,
        OnOutOfRange::Earliest,
        OnOutOfRange::Latest,
    ] {
        let topic = unique("range");
        let create = CreateTopic {
            partitions: 1,
            replication: 1,
        };
        cluster().create_topic(&topic, create, KEEP).unwrap();
        produce_one_by_one(&topic, 0, 100);
        let mut c = config(&topic);
        c.stop = StopAt::Never;
        c.on_out_of_range = choice;
        // The consumer fetches a record batch at a time, only when it
        // has none queued: it is never far ahead of what is read.
        c.cluster
            .properties
            .insert("queued.min.messages".into(), "1".into());
        c.cluster
            .properties
            .insert("fetch.message.max.bytes".into(), "1".into());
        c.cluster
            .properties
            .insert("fetch.queue.backoff.ms".into(), "1".into());
        let mut s = KafkaSource::open(&c, 0, 1, 1, None).unwrap();
        let mut offsets = Vec::new();
        let deadline = Instant::now() + PATIENCE;
        while offsets.len() < 10 {
            assert!(Instant::now() < deadline);
            read_some(&mut s, &mut offsets).unwrap();
        }
        delete_below(&topic, 60);
        let result = loop {
            assert!(Instant::now() < deadline, "{choice:?}: read {offsets:?}");
            if let Err(e) = read_some(&mut s, &mut offsets) {
                break Err(e);
            }
            let at = offsets_of(&s.position().unwrap())[0].1;
            if at >= 100 {
                break Ok(at);
            }
        };
        // What was read before: from 0 on, without a gap, below 60.
        let before: Vec<u64> = offsets.iter().copied().take_while(|&o| o < 60).collect();
        assert_eq!(before, (0..before.len() as u64).collect::<Vec<_>>());
        match choice {
            OnOutOfRange::Fail => {
                let e = result.unwrap_err();
                assert_eq!(
                    e,
                    format!(
                        "Kafka topic `{topic}` partition 0: the next offset to read, {}, is out of range [60, 100) (records deleted by retention, or the topic was recreated): set [source] on_out_of_range = \"earliest\" or \"latest\" to go on",
                        before.len()
                    )
                );
            }
            OnOutOfRange::Earliest => {
                assert_eq!(result, Ok(100));
                assert_eq!(
                    offsets[before.len()..],
                    (60..100).collect::<Vec<u64>>(),
                    "{offsets:?}"
                );
            }
            OnOutOfRange::Latest => {
                // At the end, then what comes next.
                assert_eq!(result, Ok(100));
                assert_eq!(offsets.len(), before.len(), "{offsets:?}");
                produce_one_by_one(&topic, 100, 5);
                while offsets.len() < before.len() + 5 {
                    assert!(Instant::now() < deadline);
                    read_some(&mut s, &mut offsets).unwrap();
                }
                assert_eq!(offsets[before.len()..], (100..105).collect::<Vec<u64>>());
                assert_eq!(offsets_of(&s.position().unwrap()), vec![(0, 105)]);
            }
        }
    }
}

#[test]
#[ignore = "needs the Kafka broker at 127.0.0.1:9092"]
fn a_restored_offset_out_of_range_fails_or_moves_at_open() {
    let topic = unique("restore-range");
    let create = CreateTopic {
        partitions: 1,
        replication: 1,
    };
    cluster().create_topic(&topic, create, KEEP).unwrap();
    produce_one_by_one(&topic, 0, 20);
    delete_below(&topic, 15);
    let at = |offset| SourcePosition::Kafka {
        topic: topic.clone(),
        partitions: vec![KafkaPartition {
            partition: 0,
            offset,
            max_timestamp: 7,
        }],
    };
    let mut c = config(&topic);
    let e = KafkaSource::open(&c, 0, 1, 100, Some(&at(10)))
        .err()
        .unwrap();
    assert_eq!(
        e,
        format!("Kafka topic `{topic}` partition 0: the restored offset 10 is out of range [15, 20) (records deleted by retention, or the topic was recreated): set [source] on_out_of_range = \"earliest\" or \"latest\" to go on")
    );
    let e = KafkaSource::open(&c, 0, 1, 100, Some(&at(25)))
        .err()
        .unwrap();
    assert!(
        e.contains("the restored offset 25 is out of range [15, 20) (past the end: the topic was recreated, or its log truncated)"),
        "{e}"
    );
    // In range, at either end: as it is.
    for offset in [15, 20] {
        let s = KafkaSource::open(&c, 0, 1, 100, Some(&at(offset))).unwrap();
        assert_eq!(offsets_of(&s.position().unwrap()), vec![(0, offset)]);
    }
    c.on_out_of_range = OnOutOfRange::Earliest;
    let mut s = KafkaSource::open(&c, 0, 1, 100, Some(&at(10))).unwrap();
    assert_eq!(offsets_of(&s.position().unwrap()), vec![(0, 15)]);
    let r = read_all(&mut s);
    assert_eq!(
        r.iter().map(|e| e.3).collect::<Vec<_>>(),
        (15..20).collect::<Vec<u64>>()
    );
    c.on_out_of_range = OnOutOfRange::Latest;
    let mut s = KafkaSource::open(&c, 0, 1, 100, Some(&at(10))).unwrap();
    assert_eq!(offsets_of(&s.position().unwrap()), vec![(0, 20)]);
    assert!(read_all(&mut s).is_empty());
    // Fresh starts are as before: `committed` with a commit below the
    // range starts at the earliest offset.
    let group = unique("g");
    let probe: BaseConsumer = cluster()
        .client_config()
        .set("group.id", &group)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, Offset::Offset(3))
        .unwrap();
    probe.commit(&tpl, CommitMode::Sync).unwrap();
    c.on_out_of_range = OnOutOfRange::Fail;
    c.group = Some(group);
    c.start = StartAt::Committed;
    let s = KafkaSource::open(&c, 0, 1, 100, None).unwrap();
    assert_eq!(offsets_of(&s.position().unwrap()), vec![(0, 15)]);
}

#[test]
#[ignore = "needs the Kafka broker at 127.0.0.1:9092"]
fn idle_only_after_time_at_the_end_never_under_back_pressure() {
    let topic = unique("idle");
    let create = CreateTopic {
        partitions: 2,
        replication: 1,
    };
    cluster().create_topic(&topic, create, KEEP).unwrap();
    produce(
        &topic,
        &[(0, None, "a".into(), 1000), (1, None, "b".into(), 5)],
        None,
    );
    let mut c = config(&topic);
    c.stop = StopAt::Never;
    c.idle_timeout = Some(Duration::from_millis(300));
    let mut s = KafkaSource::open(&c, 0, 1, 100, None).unwrap();
    let deadline = Instant::now() + PATIENCE;
    let mut read = 0;
    // Both partitions read, at their end, and polled quiet for 300 ms.
    while !s.idle() {
        assert!(Instant::now() < deadline, "never idle");
        read += s.next_batch(&mut Vec::new()).unwrap().unwrap().len();
    }
    assert_eq!(read, 2);
    assert_eq!(
        s.watermark_basis(),
        Some(5),
        "all idle: the watermark does not advance past the slower partition"
    );
    // New records end the idleness.
    produce(
        &topic,
        &[(0, None, "c".into(), 2000), (1, None, "d".into(), 6)],
        None,
    );
    while read < 4 {
        assert!(Instant::now() < deadline);
        read += s.next_batch(&mut Vec::new()).unwrap().unwrap().len();
    }
    assert!(!s.idle());
    // The source blocked sending downstream, longer than idle_timeout
    // (the stage says so): no partition became idle for that.
    std::thread::sleep(Duration::from_millis(900));
    s.blocked(Duration::from_millis(900));
    assert_eq!(s.next_batch(&mut Vec::new()).unwrap().unwrap().len(), 0);
    assert!(!s.idle(), "idle while blocked downstream");
    while !s.idle() {
        assert!(Instant::now() < deadline, "never idle");
        assert_eq!(s.next_batch(&mut Vec::new()).unwrap().unwrap().len(), 0);
    }
    assert_eq!(s.watermark_basis(), Some(6));
}
