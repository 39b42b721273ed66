//! Kafka end to end, on a real Apache Kafka (the shared test broker of
//! `scripts/test.sh`, `WEIR_TEST_KAFKA`, or private clusters started with
//! `scripts/services.sh --dir`), read back by Kafka's own console consumer
//! with `read_committed`: a Kafka → `keyed-count` → Kafka job killed with
//! SIGKILL at random moments (one kill between a checkpoint's completion and
//! its transaction's commit) gives an uninterrupted run's output; one broker
//! of three killed mid-job, and the only broker going away and coming back,
//! change nothing; stop with a savepoint and restore with new logic at
//! another parallelism carries the counts on (and the README's example of it,
//! `examples/kafka/run.sh`, runs and passes its own check); Kafka → file and
//! file → Kafka; each error a user can meet is one line and writes nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::harness::kafka::{
    assert_same_sequences, closed_port, create_topic, describe_topic, expected_counts, input,
    input_topic, kafka_offsets, kafka_to_kafka, multiset, produce, read_committed, sequences,
    topics, unique, Cluster, CHECKPOINT_DONE, DURABLE, SLOW_FETCH,
};
use crate::harness::{events, kafka, operator, root, toml_path, weir_bin, Rng, Sandbox};

#[test]
fn kafka_sigkill_and_restart_gives_the_uninterrupted_output() {
    let b = kafka();
    let records = input(12000, 97);
    let (input, back) = input_topic(&b, 4, 1, &records);
    let expected = expected_counts(&back);

    // Uninterrupted, into topic A.
    let out_a = unique("weir-out-a");
    let sa = Sandbox::new();
    sa.run_job(&kafka_to_kafka(&b, &input, &out_a, 2, 2, ""))
        .ok();
    let a = read_committed(&b, &out_a);
    assert_same_sequences("the uninterrupted run", &sequences(&a), &expected);

    // Killed at random moments and restarted until it finishes, into topic B.
    let out_b = unique("weir-out-b");
    let sb = Sandbox::new();
    sb.write("job.toml", kafka_to_kafka(&b, &input, &out_b, 2, 2, ""));
    let mut rng = Rng::from_env();
    let mut kills = 0;
    let mut commit_window_kills = 0;
    let mut cycle = 0;
    let finished = loop {
        cycle += 1;
        let log = format!("run-{cycle}.log");
        // Cycles 1 and 4 pause each commit, and are killed in the pause.
        let in_commit_window = cycle == 1 || cycle == 4;
        let env: &[(&str, &str)] = if in_commit_window {
            &[("WEIR_TEST_KAFKA_COMMIT_PAUSE_MS", "2000")]
        } else {
            &[]
        };
        let mut child = sb.cmd(&["run", "job.toml"]).envs(env).log(&log).start();
        let outcome = if in_commit_window {
            // The second commit in cycle 1: the first one is then committed.
            let times = if cycle == 1 { 2 } else { 1 };
            child.wait_for_or_exit(DURABLE, times)
        } else if kills >= 7 {
            // Enough: let it finish.
            Err(child.wait())
        } else if rng.range(0, 2) == 0 {
            // A random moment, startup and recovery included.
            let moment = Duration::from_millis(rng.range(50, 1500));
            child.exit_within(moment).map_or(Ok(()), Err)
        } else {
            // Just after a checkpoint of this run (up to 150 ms after).
            let n = rng.range(1, 4) as usize;
            let after = Duration::from_millis(rng.range(0, 150));
            child
                .wait_for_or_exit(CHECKPOINT_DONE, n)
                .and_then(|()| child.exit_within(after).map_or(Ok(()), Err))
        };
        match outcome {
            Ok(()) => {
                child.kill(); // SIGKILL
                kills += 1;
                if in_commit_window {
                    commit_window_kills += 1;
                }
                eprintln!("cycle {cycle}: killed (in a commit window: {in_commit_window})");
            }
            Err(status) => {
                assert!(
                    status.success(),
                    "weir failed in cycle {cycle}: {status}\n{}",
                    sb.read(&log)
                );
                break cycle;
            }
        }
        assert!(cycle < 100, "the job did not finish in 100 cycles");
    };
    eprintln!("finished in cycle {finished} after {kills} kills");
    assert!(
        commit_window_kills == 2,
        "the job ended before both kills between a checkpoint's completion and its \
         transaction's commit ({commit_window_kills}): its input is too small"
    );
    let got = read_committed(&b, &out_b);
    assert_eq!(
        got.len(),
        a.len(),
        "killed run: {} records, uninterrupted: {}",
        got.len(),
        a.len()
    );
    assert_same_sequences("the killed and restarted run", &sequences(&got), &expected);
    assert!(multiset(&got) == multiset(&a), "the runs' outputs differ");
}

#[test]
fn kafka_one_broker_of_three_killed_mid_job_changes_nothing() {
    let sb = Sandbox::new();
    let cluster = Cluster::start(&sb, 3);
    let b = cluster.bootstrap().to_string();
    let records = input(6000, 61);
    let input = unique("weir-in");
    create_topic(&b, &input, 3, 3, &[("min.insync.replicas", "2")]);
    produce(&b, &input, &records);
    let back = read_committed(&b, &input);
    assert_eq!(back.len(), records.len());
    let output = unique("weir-out");
    create_topic(&b, &output, 3, 3, &[("min.insync.replicas", "2")]);

    let mut rng = Rng::from_env();
    sb.write("job.toml", kafka_to_kafka(&b, &input, &output, 2, 2, ""));
    let mut child = sb.cmd(&["run", "job.toml"]).log("log").start();
    let after = rng.range(1, 4) as usize;
    if let Err(status) = child.wait_for_or_exit(CHECKPOINT_DONE, after) {
        panic!(
            "the job ended ({status}) before the broker was killed: its input is too small\n{}",
            sb.read("log")
        );
    }
    let victim = rng.range(1, u64::from(cluster.brokers()) + 1) as u32;
    eprintln!("killing broker {victim} after checkpoint {after}");
    cluster.kill_broker(victim);
    let status = child.wait();
    assert!(
        status.success(),
        "weir failed: {status}\n{}",
        sb.read("log")
    );

    let got = read_committed(&b, &output);
    assert_same_sequences(
        "with a broker killed",
        &sequences(&got),
        &expected_counts(&back),
    );
    // The commit markers were created as safely as the cluster allows.
    let markers = format!("weir-kafka-counts-{output}.commits");
    assert_eq!(describe_topic(&b, &markers), (1, 3), "{markers}");
    let configs = crate::harness::kafka::services_ok(&[
        "kafka-topics",
        "--bootstrap-server",
        &b,
        "--describe",
        "--topic",
        &markers,
    ]);
    assert!(
        configs.contains("min.insync.replicas=2"),
        "{markers}: {configs}"
    );
}

/// A Kafka → `keyed-count` (or another version) → file job with a REST API
/// and a savepoint folder.
fn savepoint_job(bootstrap: &str, input: &str, wasm: &str, source_p: u32, p: u32) -> String {
    format!(
        r#"
name = "kafka-swap"
max_parallelism = 32

[source]
type = "kafka"
bootstrap = "{bootstrap}"
topic = "{input}"
stop = "latest"
parallelism = {source_p}
batch_size = 64
{SLOW_FETCH}

[[operators]]
id = "count"
wasm = {wasm}
parallelism = {p}
input = "key"

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
        wasm = toml_path(&operator(wasm)),
    )
}

#[test]
fn kafka_stop_with_savepoint_and_restore_with_new_logic_at_another_parallelism() {
    let b = kafka();
    let records = input(6000, 53);
    let partitions = 4;
    let (input, back) = input_topic(&b, partitions, 1, &records);
    let expected = expected_counts(&back);

    let sb = Sandbox::new();
    sb.write("job.toml", savepoint_job(&b, &input, "keyed-count", 2, 2));
    let mut child = sb.cmd(&["run", "job.toml"]).log("run-1.log").rest().start();
    let addr = child.rest_addr();
    if let Err(status) = child.wait_for_or_exit(CHECKPOINT_DONE, 2) {
        panic!("the job ended ({status}) before the stop: its input is too small");
    }
    let stop = sb
        .weir(&["stop", "--addr", &addr, "--savepoint", "sp"])
        .ok();
    let status = child.wait();
    assert!(status.success(), "{status}\n{}", sb.read("run-1.log"));
    let sp = stop.stdout.trim().to_string();
    let before = sb.read("out.jsonl").lines().count();
    assert!(
        before > 0 && before < records.len(),
        "the stop came at {before} of {} records",
        records.len()
    );

    // The savepoint holds each partition's offset: the records before it are
    // exactly those the first run counted.
    let text = sb.weir(&["savepoint", "inspect", &sp]).ok().stdout;
    assert!(
        text.contains(&format!("kafka topic={input}")),
        "no topic in:\n{text}"
    );
    let json: serde_json::Value = serde_json::from_str(
        &sb.weir(&["savepoint", "inspect", "--json", &sp])
            .ok()
            .stdout,
    )
    .unwrap();
    let offsets = kafka_offsets(&json).unwrap_or_else(|| panic!("no partition offsets in {json}"));
    assert!(!offsets.is_empty());
    let mut per_partition = BTreeMap::new();
    for r in &back {
        *per_partition.entry(i64::from(r.partition)).or_insert(0i64) += 1;
    }
    for (p, offset) in &offsets {
        assert!(
            *offset >= 0 && *offset <= per_partition[p],
            "partition {p}: offset {offset} of {} records",
            per_partition[p]
        );
        assert!(
            text.contains(&format!("partition {p} offset={offset}")),
            "partition {p} offset {offset} not shown:\n{text}"
        );
    }
    let read: i64 = offsets.iter().map(|(_, o)| o).sum();
    assert_eq!(
        read as usize, before,
        "the savepoint's offsets and the output disagree"
    );

    // Restore with v2 (keeps `count`, adds `last_seen`), source at 3 and
    // the operator at 3.
    sb.write(
        "job.toml",
        savepoint_job(&b, &input, "keyed-count-v2", 3, 3),
    );
    sb.weir(&["run", "job.toml", "--from-savepoint", &sp]).ok();
    let out = sb.read("out.jsonl");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[before..].iter().all(|l| l.contains("last_seen=")),
        "v2 output after the swap"
    );
    crate::harness::assert_counts_continue(&out);
    let finals = crate::harness::final_counts(&out);
    let want: BTreeMap<String, u64> = expected
        .iter()
        .map(|(k, v)| (k.clone().unwrap(), v.len() as u64))
        .collect();
    assert_eq!(finals, want, "final counts");
}

/// The README's Kafka example, `examples/kafka/run.sh`, as a user runs it
/// but against the test broker (`KAFKA_BOOTSTRAP`) and with this build's
/// `weir` (`WEIR`, so the script builds nothing but the operators): it
/// exits 0, and its own check (Kafka's console consumer, read_committed)
/// says every key's counts ran on across the swap.
#[test]
fn kafka_example_script_swaps_the_logic_over_kafka() {
    let b = kafka();
    // Built here first, as every test operator (the script's `weir build`
    // then finds them up to date).
    operator("keyed-count");
    operator("keyed-count-v2");
    let out = std::process::Command::new(root().join("examples/kafka/run.sh"))
        .env("KAFKA_BOOTSTRAP", &b)
        .env("WEIR", weir_bin())
        .env_remove("WEIR_LOG")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("running examples/kafka/run.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "examples/kafka/run.sh failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains(&format!("== Kafka at {b} (KAFKA_BOOTSTRAP")),
        "the script did not use KAFKA_BOOTSTRAP:\n{stdout}"
    );
    let check = stdout
        .lines()
        .find(|l| l.starts_with("every key's counts went on across the swap"))
        .unwrap_or_else(|| panic!("no final check line:\n{stdout}\n{stderr}"));
    assert!(
        check.contains("10 keys, 5000 records, nothing missing, nothing twice"),
        "{check}"
    );
}

#[test]
fn kafka_to_file_and_file_to_kafka() {
    let b = kafka();
    let records = input(500, 7);
    let (input, back) = input_topic(&b, 3, 1, &records);

    // Kafka → file: keys, values and the record timestamps as event time.
    let sb = Sandbox::new();
    sb.run_job(&format!(
        r#"
name = "kafka-to-file"
[source]
type = "kafka"
bootstrap = "{b}"
topic = "{input}"
stop = "latest"
parallelism = 2
[[operators]]
id = "upper"
wasm = {map}
[sink]
type = "file"
path = "out.jsonl"
"#,
        map = toml_path(&operator("map")),
    ))
    .ok();
    let got = events(&sb.read("out.jsonl"));
    let mut want: Vec<_> = back
        .iter()
        .map(|r| {
            crate::harness::ev(
                r.key.as_deref().unwrap(),
                &r.value.to_uppercase(),
                r.timestamp,
            )
        })
        .collect();
    want.sort();
    assert_eq!(got, want);

    // File → Kafka (no checkpoints: at-least-once, one run, no duplicate):
    // the record timestamp is the event time, and each key is in the
    // partition Kafka's own producer puts it in.
    let sb = Sandbox::new();
    let mut lines = String::new();
    for (i, (k, v)) in records.iter().enumerate() {
        lines.push_str(&format!(
            "{{\"key\": \"{k}\", \"value\": \"{v}\", \"timestamp\": {}}}\n",
            1_700_000_000_000i64 + i as i64
        ));
    }
    sb.write("in.jsonl", lines);
    let output = unique("weir-out");
    sb.run_job(&format!(
        r#"
name = "file-to-kafka"
[source]
type = "file"
path = "in.jsonl"
[[operators]]
id = "upper"
wasm = {map}
[sink]
type = "kafka"
bootstrap = "{b}"
topic = "{output}"
create = {{ partitions = 3, replication = 1 }}
"#,
        map = toml_path(&operator("map")),
    ))
    .ok();
    let got = read_committed(&b, &output);
    let mut want: Vec<_> = records
        .iter()
        .enumerate()
        .map(|(i, (k, v))| {
            (
                Some(k.clone()),
                v.to_uppercase(),
                1_700_000_000_000i64 + i as i64,
            )
        })
        .collect();
    want.sort();
    assert_eq!(multiset(&got), want);
    // Kafka's Java producer (the console producer, default partitioner)
    // into a topic with as many partitions: every key lands where weir put it.
    let java = unique("weir-java");
    create_topic(&b, &java, 3, 1, &[]);
    produce(&b, &java, &records);
    let where_java: BTreeMap<_, _> = read_committed(&b, &java)
        .into_iter()
        .map(|r| (r.key, r.partition))
        .collect();
    for r in &got {
        assert_eq!(
            where_java[&r.key], r.partition,
            "key {:?}: weir wrote partition {}, Kafka's producer {}",
            r.key, r.partition, where_java[&r.key]
        );
    }
}

/// A file → `map` → Kafka job into `topic` at `bootstrap`.
fn file_to_kafka(bootstrap: &str, topic: &str, sink_extra: &str) -> String {
    format!(
        r#"
name = "errors"
[source]
type = "file"
path = "in.jsonl"
[[operators]]
id = "upper"
wasm = {map}
[sink]
type = "kafka"
bootstrap = "{bootstrap}"
topic = "{topic}"
connect_timeout = "30s"
{sink_extra}
[checkpoint]
interval = "200ms"
dir = "state"
"#,
        map = toml_path(&operator("map")),
    )
}

/// A Kafka → `map` → file job reading `topic` at `bootstrap`.
fn kafka_to_file(bootstrap: &str, topic: &str, source_extra: &str) -> String {
    format!(
        r#"
name = "errors"
[source]
type = "kafka"
bootstrap = "{bootstrap}"
topic = "{topic}"
stop = "latest"
connect_timeout = "30s"
{source_extra}
[[operators]]
id = "upper"
wasm = {map}
[sink]
type = "file"
path = "out.jsonl"
"#,
        map = toml_path(&operator("map")),
    )
}

const SMALL_INPUT: &str = "{\"key\": \"a\", \"value\": \"x\", \"timestamp\": 1}\n\
                           {\"key\": \"b\", \"value\": \"y\", \"timestamp\": 2}\n";

#[test]
fn kafka_unreachable_at_start_is_one_line_naming_the_address() {
    let port = closed_port();
    let addr = format!("127.0.0.1:{port}");
    // A source.
    // A bounded wait (2 s here, 30 s by default), then one line.
    let sb = Sandbox::new();
    sb.run_job(&kafka_to_file(&addr, "events", "").replace("\"30s\"", "\"2s\""))
        .fails_with(&[&addr]);
    assert!(!sb.path("out.jsonl").exists() || sb.read("out.jsonl").is_empty());
    // A sink.
    let sb = Sandbox::new();
    sb.write("in.jsonl", SMALL_INPUT);
    sb.run_job(&file_to_kafka(&addr, "counts", "").replace("\"30s\"", "\"2s\""))
        .fails_with(&[&addr]);
}

#[test]
fn kafka_missing_topic_is_named_and_created_only_when_asked() {
    let b = kafka();
    // A source topic that does not exist.
    let missing = unique("weir-missing");
    let sb = Sandbox::new();
    sb.run_job(&kafka_to_file(&b, &missing, ""))
        .fails_with(&[&missing]);
    // A sink topic that does not exist.
    let sb = Sandbox::new();
    sb.write("in.jsonl", SMALL_INPUT);
    sb.run_job(&file_to_kafka(&b, &missing, ""))
        .fails_with(&[&missing]);
    assert!(
        !topics(&b).contains(&missing),
        "the job created {missing} without `create`"
    );
    // With `create`, the sink makes it, as asked.
    sb.run_job(&file_to_kafka(
        &b,
        &missing,
        "create = { partitions = 2, replication = 1 }",
    ))
    .ok();
    assert_eq!(describe_topic(&b, &missing), (2, 1));
    let got = read_committed(&b, &missing);
    assert_eq!(
        multiset(&got),
        vec![
            (Some("a".to_string()), "X".to_string(), 1),
            (Some("b".to_string()), "Y".to_string(), 2)
        ]
    );
    // And the source, as asked.
    let created = unique("weir-created");
    let sb = Sandbox::new();
    sb.run_job(&kafka_to_file(
        &b,
        &created,
        "create = { partitions = 3, replication = 1 }",
    ))
    .ok();
    assert_eq!(describe_topic(&b, &created), (3, 1));
}

#[test]
fn kafka_record_over_the_size_limit_names_the_limit_and_the_key() {
    let b = kafka();
    let topic = unique("weir-small");
    create_topic(&b, &topic, 1, 1, &[("max.message.bytes", "1024")]);
    let sb = Sandbox::new();
    let mut lines = String::new();
    for i in 0..20 {
        lines.push_str(&format!(
            "{{\"key\": \"k{i}\", \"value\": \"small\", \"timestamp\": {i}}}\n"
        ));
    }
    lines.push_str(&format!(
        "{{\"key\": \"the-big-one\", \"value\": \"{}\", \"timestamp\": 99}}\n",
        "z".repeat(5000)
    ));
    sb.write("in.jsonl", lines);
    sb.run_job(&file_to_kafka(&b, &topic, ""))
        .fails_with(&["1024", "the-big-one"]);
    assert_eq!(
        read_committed(&b, &topic),
        vec![],
        "records were committed before the failure"
    );
}

#[test]
fn kafka_broker_going_away_restarts_the_job_which_resumes_exactly_once() {
    let sb = Sandbox::new();
    let cluster = Cluster::start(&sb, 1);
    let b = cluster.bootstrap().to_string();
    let records = input(6000, 41);
    let input = unique("weir-in");
    create_topic(&b, &input, 2, 1, &[]);
    produce(&b, &input, &records);
    let back = read_committed(&b, &input);
    assert_eq!(back.len(), records.len());
    let output = unique("weir-out");

    sb.write(
        "job.toml",
        kafka_to_kafka(&b, &input, &output, 1, 2, "")
            .replace("attempts = 50", "attempts = 1000")
            .replace("connect_timeout = \"30s\"", "connect_timeout = \"5s\""),
    );
    let mut child = sb.cmd(&["run", "job.toml"]).log("log").start();
    if let Err(status) = child.wait_for_or_exit(CHECKPOINT_DONE, 2) {
        panic!(
            "the job ended ({status}) before the broker went away: its input is too small\n{}",
            sb.read("log")
        );
    }
    cluster.kill_broker(1);
    // The restart strategy applies: the job fails and restarts (again and
    // again while the broker is away).
    if let Err(status) = child.wait_for_or_exit("; restart ", 1) {
        panic!(
            "weir exited ({status}) instead of restarting:\n{}",
            sb.read("log")
        );
    }
    cluster.restart();
    let status = child.wait();
    assert!(
        status.success(),
        "weir failed: {status}\n{}",
        sb.read("log")
    );
    let got = read_committed(&b, &output);
    assert_same_sequences(
        "with the broker gone and back",
        &sequences(&got),
        &expected_counts(&back),
    );
}

#[test]
fn kafka_services_script_runs_private_clusters_and_the_console_tools_agree() {
    // The shared test broker: keyed records in, read back with read_committed.
    let b = kafka();
    let records = input(50, 5);
    let (_, back) = input_topic(&b, 2, 1, &records);
    let got: Vec<_> = back
        .iter()
        .map(|r| (r.key.clone().unwrap(), r.value.clone()))
        .collect();
    let mut want = records.clone();
    let mut sorted = got.clone();
    want.sort();
    sorted.sort();
    assert_eq!(sorted, want);

    // A private cluster of three beside it: replication 3 and
    // min.insync.replicas 2 by default, one broker killed and started again.
    let sb = Sandbox::new();
    let cluster = Cluster::start(&sb, 3);
    let c = cluster.bootstrap().to_string();
    assert_eq!(c.split(',').count(), 3, "{c}");
    assert_ne!(c, b);
    let topic = unique("weir-default");
    crate::harness::kafka::services_ok(&[
        "kafka-topics",
        "--bootstrap-server",
        &c,
        "--create",
        "--topic",
        &topic,
        "--partitions",
        "2",
    ]);
    assert_eq!(describe_topic(&c, &topic), (2, 3));
    cluster.kill_broker(2);
    let dir = sb.path("kafka");
    let status = crate::harness::kafka::services(&["status", "--dir", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(status.status.code(), Some(3), "one broker is down");
    // Writes with acks=all still succeed with two of three in sync.
    produce(&c, &topic, &records);
    cluster.restart();
    let status = crate::harness::kafka::services(&["status", "--dir", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(status.status.success(), "all brokers are up again");
    assert_eq!(read_committed(&c, &topic).len(), records.len());
    // The shared broker was not touched.
    assert!(topics(&b).iter().any(|t| t.starts_with("weir-in-")));
}

/// A live swap into an exactly-once Kafka sink: a swap to logic that traps
/// on probation rolls back (its output, held in the open transaction, is
/// aborted), then a swap to `keyed-count` 2.0.0 completes; a
/// `read_committed` consumer sees every key's counts once, in order, 1.0.0's
/// before 2.0.0's.
#[test]
fn kafka_live_swaps_roll_back_and_complete_exactly_once() {
    let b = kafka();
    let records = input(20000, 61);
    let (input, back) = input_topic(&b, 2, 1, &records);
    let output = unique("weir-swap-out");
    let sb = Sandbox::new();
    sb.write(
        "job.toml",
        kafka_to_kafka(
            &b,
            &input,
            &output,
            2,
            2,
            "[rest]\naddr = \"127.0.0.1:0\"\n",
        ),
    );
    let mut child = sb.cmd(&["run", "job.toml"]).log("log").rest().start();
    let addr = child.rest_addr();
    let trap = operator("swap-trap");
    sb.weir(&[
        "swap",
        "--operator",
        "count",
        "--wasm",
        trap.to_str().unwrap(),
        "--probation",
        "1000000 events",
        "--addr",
        &addr,
    ])
    .fails_with(&["ROLLED_BACK", "swap-trap: event 1000"]);
    let v2 = operator("keyed-count-v2");
    let done = sb
        .weir(&[
            "swap",
            "--operator",
            "count",
            "--wasm",
            v2.to_str().unwrap(),
            "--probation",
            "1500 events",
            "--addr",
            &addr,
        ])
        .ok();
    assert!(done.stdout.starts_with("COMPLETED"), "{}", done.stdout);
    assert!(child.wait().success(), "{}", sb.read("log"));
    let got = read_committed(&b, &output);
    let expected = expected_counts(&back);
    // Counts as 1.0.0 wrote them (2.0.0 adds ` last_seen=T`).
    let mut first_v2: BTreeMap<Option<String>, usize> = BTreeMap::new();
    let mut plain: BTreeMap<Option<String>, Vec<(String, i64)>> = BTreeMap::new();
    for r in &got {
        let seq = plain.entry(r.key.clone()).or_default();
        let v2 = r.value.contains(" last_seen=");
        if v2 {
            first_v2.entry(r.key.clone()).or_insert(seq.len());
        } else {
            assert!(
                !first_v2.contains_key(&r.key),
                "key {:?}: 1.0.0 output after 2.0.0's",
                r.key
            );
        }
        let n = r.value.split(' ').next().unwrap().to_string();
        seq.push((n, r.timestamp));
    }
    assert_same_sequences("after two live swaps", &plain, &expected);
    assert!(!first_v2.is_empty(), "2.0.0 wrote nothing");
}
