//! Kafka exactly-once against crashes, stops, renames and retention, on the
//! real broker with the real binary, read back `read_committed` by Kafka's
//! own console consumer and compared with what an uninterrupted run writes:
//! SIGKILLs in a row between a checkpoint's completion and its
//! transaction's commit (at every `retain`), a SIGKILL right after a live
//! swap's probation ends, `weir stop` followed at once by SIGKILL, SIGTERM
//! or a restore; a second copy of a job on the same transactional id
//! prefix, a renamed job and a deleted marker topic, each refused in one
//! line; and a graceful SIGTERM.

use crate::harness::kafka::{
    assert_same_sequences, expected_counts, input, input_topic, kafka_to_kafka, read_committed,
    sequences, services_ok, topics, unique, CHECKPOINT_DONE, DURABLE,
};
use crate::harness::{kafka, operator, wait_until, Sandbox};

/// The default transactional id prefix of a job's Kafka sink.
fn prefix(job: &str, topic: &str) -> String {
    format!("weir-{job}-{topic}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Kills the job `cycles` times in a row between a checkpoint's completion
/// and its transaction's commit (the first time after one commit went
/// through), then lets it finish: the output is exactly the expected one.
fn commit_window_crashes(
    b: &str,
    input: &str,
    expected: &std::collections::BTreeMap<Option<String>, Vec<(String, i64)>>,
    retain: Option<usize>,
    cycles: usize,
) {
    let out = unique("weir-cw-out");
    let sb = Sandbox::new();
    let job = kafka_to_kafka(b, input, &out, 2, 2, "");
    let job = match retain {
        Some(r) => job.replace("retain = 3\n", &format!("retain = {r}\n")),
        None => job.replace("retain = 3\n", ""),
    };
    sb.write("job.toml", job);
    let pause = [("WEIR_TEST_KAFKA_COMMIT_PAUSE_MS", "1500")];
    for cycle in 1..=cycles {
        let log = format!("run-{cycle}.log");
        let mut child = sb.cmd(&["run", "job.toml"]).envs(&pause).log(&log).start();
        // Cycle 1 lets its first commit through and dies in the second.
        let times = if cycle == 1 { 2 } else { 1 };
        if let Err(status) = child.wait_for_or_exit(DURABLE, times) {
            panic!(
                "retain {retain:?}: the job ended ({status}) in cycle {cycle} (it failed, or its input is too small)\n{}",
                sb.read(&log)
            );
        }
        child.kill();
        if cycle > 1 {
            let text = sb.read(&log);
            assert!(
                text.contains("restoring checkpoint"),
                "retain {retain:?}, cycle {cycle}: did not restore the committed checkpoint:\n{text}"
            );
        }
    }
    sb.weir(&["run", "job.toml"]).ok();
    let got = read_committed(b, &out);
    assert_same_sequences(
        &format!("{cycles} crashes in a row in the commit window, retain {retain:?}"),
        &sequences(&got),
        expected,
    );
}

#[test]
fn kafka_crashes_in_a_row_in_the_commit_window_lose_and_repeat_nothing_at_any_retain() {
    let b = kafka();
    let (input, back) = input_topic(&b, 4, 1, &input(16000, 89));
    let expected = expected_counts(&back);
    std::thread::scope(|s| {
        for retain in [Some(1), Some(2), None] {
            let (b, input, expected) = (&b, &input, &expected);
            s.spawn(move || commit_window_crashes(b, input, expected, retain, 4));
        }
    });
}

#[test]
fn kafka_a_crash_after_a_swaps_probation_ends_before_its_commit_loses_nothing() {
    let b = kafka();
    let (input, back) = input_topic(&b, 2, 1, &input(16000, 61));
    let out = unique("weir-probation-out");
    let sb = Sandbox::new();
    let job = kafka_to_kafka(&b, &input, &out, 2, 2, "[rest]\naddr = \"127.0.0.1:0\"\n")
        .replace("retain = 3\n", "retain = 1\n");
    sb.write("job.toml", &job);
    let mut child = sb
        .cmd(&["run", "job.toml"])
        .envs(&[("WEIR_TEST_KAFKA_COMMIT_PAUSE_MS", "1500")])
        .log("run-1.log")
        .rest()
        .start();
    let addr = child.rest_addr();
    if let Err(status) = child.wait_for_or_exit(DURABLE, 2) {
        panic!("the job ended ({status}) before the swap");
    }
    let v2 = operator("keyed-count-v2");
    let swap = sb
        .cmd(&[
            "swap",
            "--operator",
            "count",
            "--wasm",
            v2.to_str().unwrap(),
            "--probation",
            "600 events",
            "--addr",
            &addr,
        ])
        .start();
    // The probation ended at a checkpoint whose commit waits 1.5 s: killed there.
    if let Err(status) = child.wait_for_or_exit("COMPLETED at checkpoint", 1) {
        panic!(
            "the job ended ({status}) before the swap completed\n{}",
            sb.read("run-1.log")
        );
    }
    child.kill();
    let mut swap = swap;
    let _ = swap.wait();
    sb.write(
        "job.toml",
        job.replace("[rest]\naddr = \"127.0.0.1:0\"\n", ""),
    );
    let run = sb.weir(&["run", "job.toml"]).ok();
    assert!(
        run.stderr.contains("restoring checkpoint"),
        "the restart did not restore the swap barrier's checkpoint:\n{}",
        run.stderr
    );
    let got = read_committed(&b, &out);
    // Counts as 1.0.0 writes them (2.0.0 adds ` last_seen=T`; its
    // output was never committed, and the job went on with 1.0.0).
    let mut plain = std::collections::BTreeMap::new();
    for r in &got {
        let n = r.value.split(' ').next().unwrap().to_string();
        plain
            .entry(r.key.clone())
            .or_insert_with(Vec::new)
            .push((n, r.timestamp));
    }
    assert_same_sequences(
        "a crash between the end of a probation and its commit",
        &plain,
        &expected_counts(&back),
    );
}

/// How a `weir stop` is followed at once.
#[derive(Debug, Clone, Copy)]
enum AfterStop {
    Sigkill,
    Sigterm,
    RestoreAtOnce,
}

fn stop_then(b: &str, input: &str, back: &[crate::harness::kafka::Record], after: AfterStop) {
    let out = unique("weir-stop-out");
    let sb = Sandbox::new();
    let job = kafka_to_kafka(
        b,
        input,
        &out,
        2,
        2,
        "[rest]\naddr = \"127.0.0.1:0\"\n[savepoint]\ndir = \"savepoints\"\n",
    );
    sb.write("job.toml", &job);
    let mut child = sb.cmd(&["run", "job.toml"]).log("run-1.log").rest().start();
    let addr = child.rest_addr();
    if let Err(status) = child.wait_for_or_exit(CHECKPOINT_DONE, 3) {
        panic!("{after:?}: the job ended ({status}) before the stop");
    }
    let stop = sb
        .weir(&["stop", "--addr", &addr, "--savepoint", "sp"])
        .ok();
    let sp = stop.stdout.trim().to_string();
    let restored = match after {
        AfterStop::Sigkill => {
            child.kill();
            None
        }
        AfterStop::Sigterm => {
            child.signal("TERM");
            let _ = child.wait();
            None
        }
        AfterStop::RestoreAtOnce => Some(
            sb.cmd(&["run", "job.toml", "--from-savepoint", &sp])
                .log("run-2.log")
                .start(),
        ),
    };
    let done = match restored {
        Some(mut restore) => {
            let status = restore.wait();
            let _ = child.wait();
            assert!(status.success(), "{status}\n{}", sb.read("run-2.log"));
            true
        }
        None => false,
    };
    if !done {
        sb.write(
            "job.toml",
            job.replace("[rest]\naddr = \"127.0.0.1:0\"\n", ""),
        );
        sb.weir(&["run", "job.toml", "--from-savepoint", &sp]).ok();
    }
    let got = read_committed(b, &out);
    assert_same_sequences(
        &format!("weir stop followed at once by {after:?}"),
        &sequences(&got),
        &expected_counts(back),
    );
}

#[test]
fn kafka_stop_followed_at_once_by_sigkill_sigterm_or_a_restore_loses_and_repeats_nothing() {
    let b = kafka();
    let (input, back) = input_topic(&b, 4, 1, &input(12000, 71));
    std::thread::scope(|s| {
        for after in [
            AfterStop::Sigkill,
            AfterStop::Sigterm,
            AfterStop::RestoreAtOnce,
        ] {
            let (b, input, back) = (&b, &input, &back);
            s.spawn(move || stop_then(b, input, back, after));
        }
    });
}

#[test]
fn kafka_a_second_copy_a_renamed_job_and_a_lost_marker_topic_are_refused_in_one_line() {
    let b = kafka();
    let (input, back) = input_topic(&b, 2, 1, &input(6000, 41));
    let expected = expected_counts(&back);
    let out = unique("weir-refused-out");
    // Reads on after the end of its input, until SIGTERM.
    let job = kafka_to_kafka(&b, &input, &out, 2, 2, "").replace("stop = \"latest\"\n", "");
    let sa = Sandbox::new();
    sa.write("job.toml", &job);
    let mut a = sa.cmd(&["run", "job.toml"]).log("a.log").start();
    if let Err(status) = a.wait_for_or_exit(CHECKPOINT_DONE, 2) {
        panic!("the job ended ({status})\n{}", sa.read("a.log"));
    }
    // A copy of the job folder, on the same prefix, while the first runs.
    let copy = Sandbox::new();
    copy.write("job.toml", &job);
    let p = prefix("kafka-counts", &out);
    copy.weir(&["run", "job.toml"]).fails_with(&[
        &format!("another weir process runs with transactional id prefix `{p}`"),
        "stop it first, or give this job its own `transactional_id_prefix`",
    ]);
    // The first was not fenced: it reads everything, and SIGTERM stops it
    // gracefully with all of it committed.
    wait_until(|| {
        if read_committed(&b, &out).len() == back.len() {
            return Ok(());
        }
        Err("the output never became complete".to_string())
    });
    a.signal("TERM");
    let status = a.wait();
    assert!(status.success(), "SIGTERM: {status}\n{}", sa.read("a.log"));
    assert!(
        sa.read("a.log").contains("stopped on a signal"),
        "{}",
        sa.read("a.log")
    );
    let got = read_committed(&b, &out);
    assert_same_sequences("the first copy", &sequences(&got), &expected);

    // Renamed: the sink's default prefix changes with the job's name.
    sa.write(
        "job.toml",
        job.replace("name = \"kafka-counts\"", "name = \"kafka-counts-2\""),
    );
    sa.weir(&["run", "job.toml"]).fails_with(&[
        &format!("under transactional id prefix `{p}`"),
        &format!("set `transactional_id_prefix = \"{p}\"` to resume, or start over with --fresh"),
    ]);

    // The marker topic deleted.
    sa.write("job.toml", &job);
    let markers = format!("{p}.commits");
    services_ok(&[
        "kafka-topics",
        "--bootstrap-server",
        &b,
        "--delete",
        "--topic",
        &markers,
    ]);
    wait_until(|| {
        if !topics(&b).contains(&markers) {
            return Ok(());
        }
        Err(format!("{markers} was not deleted"))
    });
    sa.weir(&["run", "job.toml"])
        .fails_with(&["holds no commit marker", "--fresh"]);
    // Nothing was written twice by the refused starts.
    let after = read_committed(&b, &out);
    assert_eq!(after.len(), got.len(), "a refused start wrote output");
}

/// A savepoint whose process died between writing it and committing its
/// output is never reported complete, and a restore from it is refused.
#[test]
fn kafka_a_savepoint_whose_output_never_committed_is_refused() {
    let b = kafka();
    let (input, _) = input_topic(&b, 2, 1, &input(8000, 31));
    let out = unique("weir-spfail-out");
    let sb = Sandbox::new();
    let job = kafka_to_kafka(
        &b,
        &input,
        &out,
        2,
        2,
        "[rest]\naddr = \"127.0.0.1:0\"\n[savepoint]\ndir = \"savepoints\"\n",
    );
    sb.write("job.toml", &job);
    let mut child = sb
        .cmd(&["run", "job.toml"])
        .envs(&[("WEIR_TEST_KAFKA_COMMIT_PAUSE_MS", "4000")])
        .log("run-1.log")
        .rest()
        .start();
    let addr = child.rest_addr();
    if let Err(status) = child.wait_for_or_exit(DURABLE, 2) {
        panic!("the job ended ({status}) before the stop");
    }
    let mut stop = sb
        .cmd(&["stop", "--addr", &addr, "--savepoint", "sp"])
        .start();
    // Written, and its commit waits: killed there.
    if let Err(status) =
        child.wait_for_or_exit("it is complete once the sink has committed its output", 1)
    {
        panic!("the job ended ({status}) before the savepoint was written");
    }
    child.kill();
    let stopped = stop.wait();
    assert!(
        !stopped.success(),
        "weir stop succeeded for a savepoint never completed"
    );
    let written: Vec<_> = std::fs::read_dir(sb.path("sp"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(written.len(), 1, "{written:?}");
    let sp = written[0].to_str().unwrap().to_string();
    sb.write(
        "job.toml",
        job.replace("[rest]\naddr = \"127.0.0.1:0\"\n", ""),
    );
    sb.weir(&["run", "job.toml", "--from-savepoint", &sp])
        .fails_with(&["its output was never committed to Kafka", &sp]);
}

/// The committed offsets of consumer group `group` on `topic`, by
/// partition, as Kafka's own tool shows them (`None`: none committed).
fn group_offsets(b: &str, group: &str, topic: &str) -> Vec<Option<i64>> {
    let text = services_ok(&[
        "kafka-consumer-groups",
        "--bootstrap-server",
        b,
        "--describe",
        "--group",
        group,
    ]);
    let mut found: Vec<(i64, Option<i64>)> = text
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 4 && f[1] == topic).then(|| (f[2].parse().unwrap(), f[3].parse().ok()))
        })
        .collect();
    found.sort();
    found.into_iter().map(|(_, o)| o).collect()
}

/// Group offsets follow the commit of the transaction that covers them:
/// killed between a checkpoint's completion and its commit, a job leaves
/// the group where its committed output ends, and a fresh state directory
/// with `start = "committed"` goes on from there: every input record's
/// output once.
#[test]
fn kafka_group_offsets_are_committed_after_the_transaction_so_start_committed_resumes_exactly() {
    let b = kafka();
    let (input, back) = input_topic(&b, 4, 1, &input(12000, 67));
    let out = unique("weir-group-out");
    let group = unique("weir-group");
    let job = kafka_to_kafka(&b, &input, &out, 2, 2, "").replace(
        "start = \"earliest\"\n",
        &format!("start = \"committed\"\ngroup = \"{group}\"\n"),
    );
    let first = Sandbox::new();
    first.write("job.toml", &job);
    let mut child = first
        .cmd(&["run", "job.toml"])
        .envs(&[("WEIR_TEST_KAFKA_COMMIT_PAUSE_MS", "8000")])
        .log("run-1.log")
        .start();
    if let Err(status) = child.wait_for_or_exit(DURABLE, 2) {
        panic!("the job ended ({status}) before the kill");
    }
    // The first commit's offsets reached the group (asynchronously).
    wait_until(|| {
        let offsets = group_offsets(&b, &group, &input);
        if offsets.iter().filter(|o| o.is_some()).count() >= 4 {
            return Ok(());
        }
        Err(format!("no group offsets: {offsets:?}"))
    });
    // Killed while the second checkpoint's transaction waits for its commit.
    child.kill();
    assert_eq!(
        first.read("run-1.log").matches(DURABLE).count(),
        2,
        "the second commit went through before the kill"
    );
    let second = Sandbox::new();
    second.write("job.toml", &job);
    second.weir(&["run", "job.toml"]).ok();
    // Every input record (key and timestamp) has exactly one output record.
    let mut want: Vec<(Option<String>, i64)> =
        back.iter().map(|r| (r.key.clone(), r.timestamp)).collect();
    let mut got: Vec<(Option<String>, i64)> = read_committed(&b, &out)
        .iter()
        .map(|r| (r.key.clone(), r.timestamp))
        .collect();
    want.sort();
    got.sort();
    assert_eq!(got.len(), want.len(), "records lost or written twice");
    assert!(
        got == want,
        "the output's records are not the input's, once each"
    );
}

/// A transaction left open under the job's earlier prefix is aborted when
/// the new prefix is first used: `read_committed` consumers see the new
/// output at once, not after the old transaction's timeout.
#[test]
fn kafka_a_transaction_left_open_under_an_old_prefix_is_aborted() {
    let b = kafka();
    let (input, back) = input_topic(&b, 2, 1, &input(6000, 29));
    let out = unique("weir-oldprefix-out");
    let old = unique("weir-old-prefix");
    let new = unique("weir-new-prefix");
    let job = |p: &str| {
        kafka_to_kafka(&b, &input, &out, 2, 2, "").replace(
            "delivery = \"exactly-once\"\n",
            &format!("delivery = \"exactly-once\"\ntransactional_id_prefix = \"{p}\"\n"),
        )
    };
    let sb = Sandbox::new();
    sb.write("job.toml", job(&old));
    let mut child = sb
        .cmd(&["run", "job.toml"])
        .envs(&[("WEIR_TEST_KAFKA_COMMIT_PAUSE_MS", "3000")])
        .log("run-1.log")
        .start();
    if let Err(status) = child.wait_for_or_exit(DURABLE, 2) {
        panic!("the job ended ({status}) before the kill");
    }
    child.kill();
    let committed = read_committed(&b, &out).len();
    sb.write("job.toml", job(&new));
    sb.weir(&["run", "job.toml"]).fails_with(&[&format!(
        "set `transactional_id_prefix = \"{old}\"` to resume, or start over with --fresh"
    )]);
    let run = sb.weir(&["run", "job.toml", "--fresh"]).ok();
    assert!(
        run.stderr.contains(&format!(
            "aborted any transaction left open under transactional id `{old}-0`"
        )),
        "{}",
        run.stderr
    );
    // The old run's committed part, then the whole fresh run's output, visible.
    let got = read_committed(&b, &out);
    assert_eq!(
        got.len(),
        committed + back.len(),
        "the fresh run's output is not visible"
    );
    let expected = expected_counts(&back);
    for (key, seq) in sequences(&got) {
        let want = &expected[&key];
        assert!(
            seq.ends_with(want),
            "key {key:?}: the fresh run's counts are not at the end"
        );
    }
}

/// A stop whose final commit fails (the broker dies while the commit
/// waits) fails: `weir stop` exits 1 with the reason, the savepoint is
/// removed, and the job goes on through its restart strategy once the
/// broker is back, finishing exactly once.
#[test]
fn kafka_a_stop_whose_final_commit_fails_fails_and_the_job_goes_on() {
    let sb = Sandbox::new();
    let cluster = crate::harness::kafka::Cluster::start(&sb, 1);
    let b = cluster.bootstrap().to_string();
    let (input, back) = input_topic(&b, 2, 1, &input(6000, 37));
    let out = unique("weir-failstop-out");
    let job = kafka_to_kafka(
        &b,
        &input,
        &out,
        2,
        2,
        "[rest]\naddr = \"127.0.0.1:0\"\n[savepoint]\ndir = \"savepoints\"\n",
    )
    .replace("connect_timeout = \"30s\"", "connect_timeout = \"5s\"");
    sb.write("job.toml", &job);
    let mut child = sb
        .cmd(&["run", "job.toml"])
        .envs(&[("WEIR_TEST_KAFKA_COMMIT_PAUSE_MS", "3000")])
        .log("run.log")
        .rest()
        .start();
    let addr = child.rest_addr();
    if let Err(status) = child.wait_for_or_exit(DURABLE, 2) {
        panic!("the job ended ({status}) before the stop");
    }
    let stop = std::thread::scope(|s| {
        let stop = s.spawn(|| sb.weir(&["stop", "--addr", &addr, "--savepoint", "sp"]));
        if let Err(status) =
            child.wait_for_or_exit("it is complete once the sink has committed its output", 1)
        {
            panic!("the job ended ({status}) before the savepoint was written");
        }
        // The stop's commit waits 3 s: the broker dies meanwhile.
        cluster.kill_broker(1);
        stop.join().unwrap()
    });
    let line = stop.fails_with(&["the sink could not commit checkpoint"]);
    eprintln!("{line}");
    assert!(
        std::fs::read_dir(sb.path("sp")).map_or(0, |d| d.count()) == 0,
        "the failed savepoint was left"
    );
    cluster.restart();
    let status = child.wait();
    assert!(status.success(), "{status}\n{}", sb.read("run.log"));
    let got = read_committed(&b, &out);
    assert_same_sequences(
        "a stop whose commit failed, then the job went on",
        &sequences(&got),
        &expected_counts(&back),
    );
}
