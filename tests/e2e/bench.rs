//! `weir bench --quick`: a smoke run of every benchmark case, so that the
//! benchmark command does not rot. It checks what each case reports, never
//! how fast: speed is measured by the benchmarks themselves (BENCHMARKS.md).

use crate::harness::kafka::topics;
use crate::harness::{kafka, operator, polyglot, root, wait_until, Weir, LANGUAGES};

#[test]
fn every_benchmark_case_runs_and_reports() {
    // Built like every test operator; `weir bench` finds them in plugins/rust.
    for op in ["map", "keyed-count", "windowed-sum"] {
        operator(op);
    }
    for lang in LANGUAGES {
        polyglot(lang, "keyed-count");
    }
    let out = Weir::new(&["bench", "--quick", "--json"])
        .current_dir(root())
        .run();
    let stderr = &out.stderr;
    assert!(out.status.success(), "weir bench failed: {stderr}");
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let results = v["results"].as_array().unwrap();
    let case = |name: &str| -> &serde_json::Value {
        results
            .iter()
            .find(|r| r["case"] == name)
            .unwrap_or_else(|| panic!("no result for {name}: {v}"))
    };
    for name in [
        "map",
        "map-native",
        "keyed-count",
        "keyed-count-native",
        "keyed-count-1m",
        "windowed-sum",
        "latency",
        "latency-1m",
    ] {
        let r = case(name);
        assert!(r["events_per_s"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["peak_rss_mib"].as_f64().unwrap() > 0.0, "{r}");
    }
    assert!(case("keyed-count")["of_native"].as_f64().unwrap() > 0.0);
    let latency = case("latency");
    assert!(
        latency["latency_p99_ms"].as_f64().unwrap() >= latency["latency_p50_ms"].as_f64().unwrap()
    );
    // Through checkpoints (some full) and a savepoint triggered over REST.
    let l1m = case("latency-1m");
    assert!(l1m["latency_max_ms"].as_f64().unwrap() >= l1m["latency_p99_ms"].as_f64().unwrap());
    assert!(l1m["full_checkpoints"][0].as_u64().unwrap() >= 1, "{l1m}");
    let cpm = &case("checkpoint-map")["figures"];
    assert_eq!(cpm["keys"], 10_000);
    assert!(
        cpm["delta_state_bytes"].as_u64().unwrap() < cpm["full_state_bytes"].as_u64().unwrap() / 10,
        "{cpm}"
    );
    assert_eq!(
        cpm["full_bytes"].as_u64().unwrap(),
        cpm["full_state_bytes"].as_u64().unwrap() + cpm["full_timer_bytes"].as_u64().unwrap()
    );
    let cp = &case("checkpoint")["figures"];
    assert_eq!(cp["keys"], 10_000);
    assert!(cp["delta_bytes"].as_u64().unwrap() < cp["full_bytes"].as_u64().unwrap() / 10);
    let sp = &case("savepoint")["figures"];
    assert_eq!(sp["keys"], 10_000);
    assert!(sp["bytes"].as_u64().unwrap() > 0);
    for lang in LANGUAGES {
        let r = case(&format!("keyed-count-{lang}"));
        assert_eq!(r["language"], lang);
        assert!(r["events_per_s"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["wasm_bytes"].as_u64().unwrap() > 1000, "{r}");
        assert!(r["start"]["cached_ms"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["mib_per_subtask"].is_number(), "{r}");
    }
    let start = &case("start")["figures"];
    assert!(start["cold_ms"].as_f64().unwrap() > 0.0 && start["cached_ms"].as_f64().unwrap() > 0.0);

    // A case that does not exist is an error that lists the ones there are.
    let out = Weir::new(&["bench", "nope"]).current_dir(root()).run();
    assert_eq!(out.status.code(), Some(1));
    let stderr = &out.stderr;
    assert!(
        stderr.contains("no benchmark case `nope`") && stderr.contains("keyed-count-1m"),
        "{stderr}"
    );
}

/// The `kafka` case needs a broker: without one it fails in one line that
/// says how to start one (the case itself is measured against a real
/// broker: BENCHMARKS.md).
#[test]
fn the_kafka_case_without_a_broker_says_how_to_start_one() {
    let out = Weir::new(&["bench", "kafka", "--quick", "--kafka", "127.0.0.1:1"])
        .current_dir(root())
        .run();
    assert_eq!(out.status.code(), Some(1));
    let stderr = &out.stderr;
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("`127.0.0.1:1`") && stderr.contains("scripts/services.sh up kafka"),
        "{stderr}"
    );
}

/// `weir bench kafka --quick` against the test broker: both deliveries
/// report a throughput row (every input event counted once in the output,
/// events/s finite and positive) and a latency row (figures present and in
/// order), and the case deletes every topic it created. How fast is never
/// asserted: BENCHMARKS.md measures that.
#[test]
fn kafka_bench_quick_reports_both_deliveries() {
    let b = kafka();
    operator("keyed-count");
    let child = Weir::new(&["bench", "kafka", "--quick", "--json", "--kafka", &b])
        .current_dir(root())
        .start();
    let pid = child.id();
    let out = child.finish();
    let stderr = &out.stderr;
    assert!(out.status.success(), "weir bench kafka failed: {stderr}");
    let v: serde_json::Value =
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout));
    let results = v["results"].as_array().unwrap();
    let case = |name: &str| -> &serde_json::Value {
        results
            .iter()
            .find(|r| r["case"] == name)
            .unwrap_or_else(|| panic!("no result for {name}: {v}"))
    };
    let positive = |r: &serde_json::Value, field: &str| -> f64 {
        let x = r[field]
            .as_f64()
            .unwrap_or_else(|| panic!("no {field} in {r}"));
        assert!(x.is_finite() && x > 0.0, "{field} in {r}");
        x
    };
    for (name, delivery) in [
        ("kafka", "exactly-once"),
        ("kafka-at-least-once", "at-least-once"),
    ] {
        let r = case(name);
        assert_eq!(r["delivery"], delivery, "{r}");
        // The case itself fails unless the output holds as many committed
        // records as input events: a row is a run that counted them all.
        assert_eq!(r["events"], 20_000, "{r}");
        assert!(r["runs"].as_u64().unwrap() >= 1, "{r}");
        let rate = positive(r, "events_per_s");
        assert!(
            positive(r, "events_per_s_min") <= rate && rate <= positive(r, "events_per_s_max"),
            "{r}"
        );
        for field in ["peak_rss_mib", "input_produced_per_s", "output_read_per_s"] {
            positive(r, field);
        }
    }
    for (name, delivery) in [
        ("kafka-latency", "exactly-once"),
        ("kafka-latency-at-least-once", "at-least-once"),
    ] {
        let r = case(name);
        assert_eq!(r["delivery"], delivery, "{r}");
        let events = r["events"].as_u64().unwrap();
        let measured = r["measured"].as_u64().unwrap();
        assert!(measured > 0 && measured <= events, "{r}");
        let q = |field: &str| -> i64 {
            r[field]
                .as_i64()
                .unwrap_or_else(|| panic!("no {field} in {r}"))
        };
        let (p50, p99, max) = (
            q("latency_p50_ms"),
            q("latency_p99_ms"),
            q("latency_max_ms"),
        );
        assert!(0 <= p50 && p50 <= p99 && p99 <= max, "{r}");
    }

    // Every topic the case made (`weir-bench-<pid>-...`) is gone.
    let prefix = format!("weir-bench-{pid}-");
    wait_until(|| {
        let left: Vec<String> = topics(&b)
            .into_iter()
            .filter(|t| t.starts_with(&prefix))
            .collect();
        if left.is_empty() {
            return Ok(());
        }
        Err(format!("topics left after the bench: {left:?}"))
    });
}
