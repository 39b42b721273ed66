//! Unit tests of the source's pure parts: its table, the partitions'
//! watermark, idleness and stop, and the out-of-range rule.

use std::time::Duration;

use super::config::{
    KafkaSourceConfig, OnOutOfRange, StartAt, StopAt, DEFAULT_PARTITION_DISCOVERY,
};
use super::out_of_range::out_of_range;
use super::partitions::Partitions;
use crate::connectors::kafka::{CreateTopic, KafkaCluster};
use crate::model::config::{Fields, JobFile};
use crate::model::KafkaPartition;

/// Reads `body` as a `[source]` table of a job file (`type` aside);
/// fields left over are an error, as the job parser makes them.
fn parse(body: &str) -> Result<KafkaSourceConfig, String> {
    let cx = JobFile {
        file: "/jobs/job.toml".into(),
        text: body,
        base_dir: "/jobs".into(),
    };
    let mut f: Fields = toml::from_str(body).map_err(|e| cx.toml_error(&e).to_string())?;
    let t = cx.section("source", 0..0);
    let config = KafkaSourceConfig::from_table(&t, &mut f).map_err(|e| e.to_string())?;
    f.check(&t, "a `kafka` source", &[], &[])
        .map_err(|e| e.to_string())?;
    Ok(config)
}

const MINIMAL: &str = "bootstrap = \"127.0.0.1:9092\"\ntopic = \"events\"\n";

#[test]
fn fields_cover_the_cluster_fields() {
    for f in KafkaCluster::FIELDS {
        assert!(KafkaSourceConfig::FIELDS.contains(f), "{f}");
    }
}

#[test]
fn parses_defaults_and_every_field() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(
        c,
        KafkaSourceConfig {
            cluster: KafkaCluster {
                bootstrap: "127.0.0.1:9092".into(),
                properties: Default::default(),
                connect_timeout: super::super::DEFAULT_CONNECT_TIMEOUT,
            },
            topic: "events".into(),
            group: None,
            start: StartAt::Earliest,
            stop: StopAt::Never,
            parallelism: 1,
            idle_timeout: None,
            partition_discovery: DEFAULT_PARTITION_DISCOVERY,
            create: None,
            on_out_of_range: OnOutOfRange::Fail,
        }
    );
    let c = parse(&format!(
        "{MINIMAL}group = \"g\"\nstart = \"committed\"\nstop = \"latest\"\nparallelism = 3\n\
         idle_timeout = \"5s\"\npartition_discovery = \"250ms\"\n\
         create = {{ partitions = 3, replication = 1 }}\nconnect_timeout = \"2s\"\n\
         properties = {{ \"fetch.max.bytes\" = \"1048576\" }}\non_out_of_range = \"earliest\"\n"
    ))
    .unwrap();
    assert_eq!(c.on_out_of_range, OnOutOfRange::Earliest);
    assert_eq!(c.group.as_deref(), Some("g"));
    assert_eq!(c.start, StartAt::Committed);
    assert_eq!(c.stop, StopAt::Latest);
    assert_eq!(c.parallelism, 3);
    assert_eq!(c.idle_timeout, Some(Duration::from_secs(5)));
    assert_eq!(c.partition_discovery, Duration::from_millis(250));
    assert_eq!(
        c.create,
        Some(CreateTopic {
            partitions: 3,
            replication: 1
        })
    );
    assert_eq!(c.cluster.connect_timeout, Duration::from_secs(2));
    assert_eq!(c.cluster.properties["fetch.max.bytes"], "1048576");
    for (start, want) in [
        ("earliest", StartAt::Earliest),
        ("latest", StartAt::Latest),
        (
            "timestamp:1700000000000",
            StartAt::Timestamp(1_700_000_000_000),
        ),
        ("timestamp:0", StartAt::Timestamp(0)),
    ] {
        let c = parse(&format!("{MINIMAL}start = \"{start}\"\n")).unwrap();
        assert_eq!(c.start, want, "{start}");
    }
    for (choice, want) in [
        ("earliest", OnOutOfRange::Earliest),
        ("latest", OnOutOfRange::Latest),
        ("fail", OnOutOfRange::Fail),
    ] {
        let c = parse(&format!("{MINIMAL}on_out_of_range = \"{choice}\"\n")).unwrap();
        assert_eq!(c.on_out_of_range, want, "{choice}");
    }
}

#[test]
fn bad_values_are_one_line_errors_naming_the_field() {
    for (body, want) in [
        (
            "bootstrap = \"b:1\"\n".to_string(),
            "/jobs/job.toml:1: source: missing `topic` (the Kafka topic to read",
        ),
        (
            "topic = \"t\"\n".to_string(),
            "/jobs/job.toml:1: source: missing `bootstrap`",
        ),
        (
            "bootstrap = \"b:1\"\ntopic = \" \"\n".to_string(),
            "/jobs/job.toml:2: source: `topic` must not be empty",
        ),
        (
            "bootstrap = \"b:1\"\ntopic = 5\n".to_string(),
            "/jobs/job.toml:2: source: `topic` must be a string, found integer 5",
        ),
        (
            format!("{MINIMAL}start = \"committed\"\n"),
            "/jobs/job.toml:3: source: `start = \"committed\"` needs `group`",
        ),
        (
            format!("{MINIMAL}start = \"newest\"\n"),
            "/jobs/job.toml:3: source: `start`: must be `earliest`, `latest`, `committed` or `timestamp:<ms>`, found `newest`",
        ),
        (
            format!("{MINIMAL}start = \"timestamp:soon\"\n"),
            "/jobs/job.toml:3: source: `start`: `timestamp:` must be followed by milliseconds since the Unix epoch, found `timestamp:soon`",
        ),
        (
            format!("{MINIMAL}start = \"timestamp:-5\"\n"),
            "`timestamp:` must be followed by milliseconds",
        ),
        (
            format!("{MINIMAL}stop = \"earliest\"\n"),
            "/jobs/job.toml:3: source: `stop` must be one of `never`, `latest`, found `earliest`",
        ),
        (
            format!("{MINIMAL}parallelism = 0\n"),
            "/jobs/job.toml:3: source: `parallelism` must be between 1 and 4294967295, found 0",
        ),
        (
            format!("{MINIMAL}idle_timeout = \"5\"\n"),
            "/jobs/job.toml:3: source: `idle_timeout`: invalid duration `5`: missing unit",
        ),
        (
            format!("{MINIMAL}idle_timeout = \"0s\"\n"),
            "/jobs/job.toml:3: source: `idle_timeout` must be above 0",
        ),
        (
            format!("{MINIMAL}partition_discovery = \"0s\"\n"),
            "/jobs/job.toml:3: source: `partition_discovery` must be above 0",
        ),
        (
            format!("{MINIMAL}group = \"\"\n"),
            "/jobs/job.toml:3: source: `group` must not be empty",
        ),
        (
            format!("{MINIMAL}create = {{ partitions = 0 }}\n"),
            "/jobs/job.toml:3: source: `create`: `partitions` must be an integer from 1",
        ),
        (
            format!("{MINIMAL}on_out_of_range = \"skip\"\n"),
            "/jobs/job.toml:3: source: `on_out_of_range` must be one of `earliest`, `latest`, `fail`, found `skip`",
        ),
        (
            format!("{MINIMAL}on_out_of_range = true\n"),
            "/jobs/job.toml:3: source: `on_out_of_range` must be a string",
        ),
        (
            format!("{MINIMAL}colour = \"blue\"\n"),
            "/jobs/job.toml:3: unknown field `colour`",
        ),
    ] {
        let e = parse(&body).unwrap_err();
        assert!(e.starts_with(want) || e.contains(want), "{body:?}: {e}");
        assert!(!e.contains('\n'), "{e:?}");
    }
}

/// A step of a [`Partitions`] scenario.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// A record of partition `.0` with timestamp `.1` (at the next offset).
    Rec(i32, i64),
    /// The consumer reports partition `.0`'s end.
    End(i32),
    /// This many ms pass that count (the source is not blocked).
    Poll(u64),
    /// An hour passes without a poll: the source thread is blocked
    /// sending downstream (back-pressure), or busy elsewhere. Nothing
    /// of it reaches the partitions.
    Away,
    /// Expected: whether the subtask is idle, and the watermark basis.
    Is(bool, i64),
}

/// Runs `steps` over partitions `(partition, highest timestamp read)`
/// with `idle_timeout` (ms), checking each `Is`.
fn scenario(name: &str, idle_timeout: Option<u64>, parts: &[(i32, i64)], steps: &[Step]) {
    let mut p = Partitions::new(idle_timeout.map(Duration::from_millis));
    for &(partition, max_timestamp) in parts {
        p.add(partition, 0, max_timestamp, None, false);
    }
    let mut offsets = std::collections::BTreeMap::new();
    for (i, step) in steps.iter().enumerate() {
        match *step {
            Step::Rec(partition, ts) => {
                let offset = offsets.entry(partition).or_insert(0);
                assert!(p.record(partition, *offset, ts), "{name}: step {i}");
                *offset += 1;
            }
            Step::End(partition) => p.reached_end(partition, None),
            Step::Poll(ms) => p.polled(Duration::from_millis(ms)),
            Step::Away => {}
            Step::Is(idle, basis) => assert_eq!(
                (p.idle(), p.watermark_basis()),
                (idle, basis),
                "{name}: step {i} ({step:?})"
            ),
        }
    }
}

#[test]
fn idleness_counts_time_at_the_end_not_blocked_and_never_advances_the_watermark() {
    use Step::*;
    // Name, idle_timeout (ms), partitions with their highest timestamps,
    // steps.
    type Case<'a> = (&'a str, Option<u64>, &'a [(i32, i64)], &'a [Step]);
    let cases: &[Case] = &[
        (
            "the watermark follows the slowest partition; an older record does not lower it",
            Some(1000),
            &[(0, i64::MIN), (1, 500)],
            &[
                Is(false, i64::MIN),
                Rec(0, 100),
                Rec(0, 300),
                Is(false, 300),
                Rec(0, 50),
                Is(false, 300),
                Rec(1, 200),
                Is(false, 300),
                Rec(0, 900),
                Is(false, 500),
            ],
        ),
        (
            "all idle: the subtask is idle, the watermark does not advance",
            Some(1000),
            &[(0, i64::MIN), (1, i64::MIN)],
            &[
                Rec(0, 9000),
                Rec(1, 100),
                End(0),
                End(1),
                Poll(999),
                Is(false, 100),
                Poll(1),
                Is(true, 100),
                Poll(60_000),
                Is(true, 100),
            ],
        ),
        (
            "one partition idle: the other one leads",
            Some(1000),
            &[(0, i64::MIN), (1, i64::MIN)],
            &[
                Rec(0, 9000),
                Rec(1, 100),
                End(1),
                Poll(1000),
                Is(false, 9000),
                // It has nothing new, and the other goes idle too: the
                // lowest over all again, below what was sent (held back
                // by the stage's monotonic watermark).
                End(0),
                Poll(1000),
                Is(true, 100),
            ],
        ),
        (
            "back-pressure: time without polling does not make a partition idle",
            Some(1000),
            &[(0, i64::MIN), (1, i64::MIN)],
            &[
                Rec(0, 9000),
                Rec(1, 100),
                End(0),
                End(1),
                Poll(400),
                Away,
                Is(false, 100),
                Poll(599),
                Away,
                Is(false, 100),
                Poll(1),
                Is(true, 100),
            ],
        ),
        (
            "a stalled broker: polling without the end of the partition is not idleness",
            Some(1000),
            &[(0, i64::MIN), (1, i64::MIN)],
            &[
                Rec(0, 9000),
                Rec(1, 100),
                Poll(3_600_000),
                Is(false, 100),
                // Partition 0 was at its end, partition 1 was not.
                End(0),
                Poll(3_600_000),
                Is(false, 100),
            ],
        ),
        (
            "quiet time counts from the end of the partition",
            Some(1000),
            &[(0, 5)],
            &[
                Poll(5000),
                End(0),
                Poll(999),
                Is(false, 5),
                Poll(1),
                Is(true, 5),
            ],
        ),
        (
            "a record ends idleness, and quiet time starts again",
            Some(1000),
            &[(0, i64::MIN), (1, i64::MIN)],
            &[
                Rec(0, 300),
                Rec(1, 100),
                End(1),
                Poll(1000),
                Is(false, 300),
                Rec(1, 200),
                Is(false, 200),
                End(1),
                Poll(999),
                Is(false, 200),
                Poll(1),
                Is(false, 300),
                // A second report of the end (past transaction markers)
                // does not start it again.
                End(1),
                Is(false, 300),
            ],
        ),
        (
            "without idle_timeout a partition is never idle",
            None,
            &[(0, i64::MIN), (1, i64::MIN)],
            &[
                Rec(0, 100),
                End(0),
                End(1),
                Poll(3_600_000 * 24),
                Is(false, i64::MIN),
            ],
        ),
        (
            "no partitions: idle, no watermark",
            Some(1000),
            &[],
            &[Is(true, i64::MIN)],
        ),
    ];
    for (name, idle_timeout, parts, steps) in cases {
        scenario(name, *idle_timeout, parts, steps);
    }
}

#[test]
fn partitions_positions_and_resets() {
    let mut p = Partitions::new(Some(Duration::from_secs(1)));
    p.add(1, 7, 500, None, true);
    p.add(0, 0, i64::MIN, None, false);
    assert_eq!(p.unfinished(), vec![(0, 0, false), (1, 7, true)]);
    assert!(p.record(0, 0, 100));
    assert!(p.record(0, 1, 300));
    assert!(p.record(1, 7, 1000));
    // Records of partitions it does not read are refused.
    assert!(!p.record(7, 0, 5));
    assert!(!p.contains(7));
    assert_eq!(p.unfinished(), vec![(0, 2, true), (1, 8, true)]);
    assert_eq!(
        p.positions(),
        vec![
            KafkaPartition {
                partition: 0,
                offset: 2,
                max_timestamp: 300
            },
            KafkaPartition {
                partition: 1,
                offset: 8,
                max_timestamp: 1000
            },
        ]
    );
    // A topic recreated with fewer records: the position is exactly
    // where reading goes on, lower than before, and follows the
    // records read from there.
    p.reached_end(1, Some(8));
    p.polled(Duration::from_secs(5));
    assert_eq!(p.watermark_basis(), 300, "partition 1 is idle");
    p.reset(1, 0);
    assert_eq!(p.positions()[1].offset, 0);
    assert_eq!(p.watermark_basis(), 300, "no longer at its end");
    p.polled(Duration::from_secs(5));
    assert_eq!(p.watermark_basis(), 300, "no longer idle");
    assert!(p.record(1, 0, 10));
    assert!(p.record(1, 1, 20));
    assert_eq!(p.positions()[1].offset, 2);
    assert_eq!(p.positions()[1].max_timestamp, 1000);
    // With stop = latest, a reset at or past the end is done.
    let mut q = Partitions::new(None);
    q.add(0, 3, i64::MIN, Some(10), true);
    q.reset(0, 12);
    assert!(q.all_done());
    assert_eq!(q.positions()[0].offset, 12);
    let mut q = Partitions::new(None);
    q.add(0, 30, i64::MIN, Some(40), true);
    q.reset(0, 5);
    assert!(!q.all_done());
    assert_eq!(q.unfinished(), vec![(0, 5, true)]);
}

#[test]
fn stop_at_the_end_offsets_seen_at_open() {
    let mut p = Partitions::new(None);
    p.add(0, 0, i64::MIN, Some(2), false);
    p.add(1, 5, i64::MIN, Some(5), false); // empty (or read) already
    p.add(2, 0, i64::MIN, Some(10), false);
    assert_eq!(p.done().collect::<Vec<_>>(), vec![1]);
    assert!(p.record(0, 0, 1));
    assert!(!p.all_done());
    assert!(p.record(0, 1, 2));
    assert_eq!(p.done().collect::<Vec<_>>(), vec![0, 1]);
    // Records past the end are not read.
    assert!(!p.record(0, 2, 3));
    assert!(!p.record(2, 10, 3));
    assert!(p.all_done());
    assert!(p.unfinished().is_empty());
    // Partition 2 ended on transaction markers: end of partition.
    let mut q = Partitions::new(None);
    q.add(2, 0, i64::MIN, Some(10), false);
    assert!(q.record(2, 7, 1));
    q.reached_end(2, Some(10));
    assert!(q.all_done());
    assert_eq!(q.positions()[0].offset, 10);
    // Done partitions do not hold the watermark back, idle_timeout or
    // not, and the subtask is idle once all are done.
    for idle_timeout in [None, Some(Duration::from_secs(3600))] {
        let mut r = Partitions::new(idle_timeout);
        r.add(0, 0, i64::MIN, Some(1), false);
        r.add(1, 0, i64::MIN, None, false);
        assert!(r.record(0, 0, 50));
        assert!(r.record(1, 0, 70));
        assert_eq!(r.watermark_basis(), 70);
        assert!(!r.idle());
        // All done: nothing more comes, the highest over all, as ever.
        let mut s = Partitions::new(idle_timeout);
        s.add(0, 0, i64::MIN, Some(1), false);
        s.add(1, 0, i64::MIN, Some(1), false);
        assert!(s.record(1, 0, 70));
        assert_eq!(s.watermark_basis(), i64::MIN);
        assert!(!s.idle());
        assert!(s.record(0, 0, 50));
        assert!(s.idle());
        assert_eq!(s.watermark_basis(), 70);
    }
    // Done partitions do not count among the idle ones either.
    let mut t = Partitions::new(Some(Duration::from_secs(1)));
    t.add(0, 0, i64::MIN, Some(1), false);
    t.add(1, 0, i64::MIN, None, false);
    assert!(t.record(0, 0, 10));
    assert!(t.record(1, 0, 50));
    assert_eq!(t.watermark_basis(), 50);
    t.reached_end(1, None);
    t.polled(Duration::from_secs(1));
    assert!(t.idle());
    assert_eq!(t.watermark_basis(), 50);
    // Without a stop, the end of a partition is only a position.
    let mut n = Partitions::new(None);
    n.add(0, 0, i64::MIN, None, false);
    n.reached_end(0, Some(3));
    assert!(!n.all_done());
    assert_eq!(n.positions()[0].offset, 3);
}

#[test]
fn an_offset_out_of_range_goes_where_on_out_of_range_says_or_fails_in_one_line() {
    // Below the log start (retention), restored.
    let e = out_of_range("events", 2, true, 1200, (1500, 3000), OnOutOfRange::Fail).unwrap_err();
    assert_eq!(
        e,
        "Kafka topic `events` partition 2: the restored offset 1200 is out of range \
         [1500, 3000) (records deleted by retention, or the topic was recreated): set \
         [source] on_out_of_range = \"earliest\" or \"latest\" to go on"
    );
    assert_eq!(
        out_of_range(
            "events",
            2,
            true,
            1200,
            (1500, 3000),
            OnOutOfRange::Earliest
        ),
        Ok((
            1500,
            "Kafka topic `events` partition 2: the restored offset 1200 is out of range \
             [1500, 3000) (records deleted by retention, or the topic was recreated); \
             on_out_of_range = \"earliest\": reading on from offset 1500"
                .to_string()
        ))
    );
    assert_eq!(
        out_of_range("events", 2, true, 1200, (1500, 3000), OnOutOfRange::Latest)
            .unwrap()
            .0,
        3000
    );
    // Past the end (a recreated topic), reached while reading.
    let e = out_of_range("events", 0, false, 100, (0, 30), OnOutOfRange::Fail).unwrap_err();
    assert_eq!(
        e,
        "Kafka topic `events` partition 0: the next offset to read, 100, is out of range \
         [0, 30) (past the end: the topic was recreated, or its log truncated): set \
         [source] on_out_of_range = \"earliest\" or \"latest\" to go on"
    );
    assert_eq!(
        out_of_range("events", 0, false, 100, (0, 30), OnOutOfRange::Earliest)
            .unwrap()
            .0,
        0
    );
    let (to, warning) =
        out_of_range("events", 0, false, 100, (0, 30), OnOutOfRange::Latest).unwrap();
    assert_eq!(to, 30);
    assert!(
        warning.ends_with("; on_out_of_range = \"latest\": reading on from offset 30"),
        "{warning}"
    );
    assert!(!warning.contains('\n'));
}
