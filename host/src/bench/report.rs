//! How results are shown: one line for each (`weir bench` without
//! `--json`), and the machine they were measured on.

use serde_json::{json, Value};

/// The machine: cores, CPU model, memory.
pub(super) fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or("?".to_string(), |kib| format!("{} GiB", kib / (1 << 20)));
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "?".to_string());
    format!("{cores} cores ({cpu}), {mem}")
}

/// One line for a result.
pub(super) fn describe(v: &Value) -> String {
    let case = v["case"].as_str().unwrap_or("?");
    if case.starts_with("kafka-latency") {
        return describe_latency(v);
    }
    if let Some(rate) = v["events_per_s"].as_f64() {
        let mut line = format!(
            "{case:<20} {:>7.2} M events/s (min {:.2}, max {:.2}), peak RSS {:.0} MiB",
            rate / 1e6,
            v["events_per_s_min"].as_f64().unwrap_or(0.0) / 1e6,
            v["events_per_s_max"].as_f64().unwrap_or(0.0) / 1e6,
            v["peak_rss_mib"].as_f64().unwrap_or(0.0)
        );
        if let Some(d) = v["delivery"].as_str() {
            line.push_str(&format!(
                ", {d}, {} partitions, {} events (the bench's own producer wrote them at {:.2} M/s, its read_committed reader read the output at {:.2} M/s)",
                v["partitions"],
                v["events"],
                v["input_produced_per_s"].as_f64().unwrap_or(0.0) / 1e6,
                v["output_read_per_s"].as_f64().unwrap_or(0.0) / 1e6,
            ));
        }
        if let Some(r) = v["of_native"].as_f64() {
            line.push_str(&format!(", {:.0} % of native", r * 100.0));
        }
        if let Some(p99) = v["latency_p99_ms"].as_f64() {
            line.push_str(&format!(
                ", latency p50 {:.3} ms, p99 {p99:.3} ms, max {:.3} ms at {} events/s",
                v["latency_p50_ms"].as_f64().unwrap_or(0.0),
                v["latency_max_ms"].as_f64().unwrap_or(0.0),
                v["input_rate"]
            ));
        }
        if let Some(full) = v["full_checkpoints"].as_array() {
            line.push_str(&format!(
                " (checkpoints per run {}, of them full {}, and a savepoint)",
                v["checkpoints"],
                json!(full)
            ));
        }
        if let Some(b) = v["bytes_per_key"].as_f64() {
            line.push_str(&format!(
                ", {b:.0} bytes per key at the peak with checkpoints every second (over {:.0} MiB with 10,000 keys)",
                v["base_rss_mib"].as_f64().unwrap_or(0.0)
            ));
        }
        if let Some(b) = v["held_bytes_per_key"].as_f64() {
            line.push_str(&format!(
                ", {b:.0} held by the state (the same job without checkpoints)"
            ));
        }
        if let Some(bytes) = v["wasm_bytes"].as_u64() {
            let start = &v["start"];
            line.push_str(&format!(
                "; .wasm {:.2} MiB, start cold {:.0} ms / cached {:.1} ms, {:.1} MiB per subtask",
                bytes as f64 / (1 << 20) as f64,
                start["cold_ms"].as_f64().unwrap_or(0.0),
                start["cached_ms"].as_f64().unwrap_or(0.0),
                v["mib_per_subtask"].as_f64().unwrap_or(0.0),
            ));
        }
        return line;
    }
    let f = &v["figures"];
    match case {
        "checkpoint" => format!(
            "{case:<20} {} keys: full {} bytes (at the barrier {:.1} ms, write {:.0} ms); {} changed: delta {} bytes = {:.2} % of full (at the barrier {:.2} ms, write {:.1} ms)",
            f["keys"], f["full_bytes"],
            f["full_copy_ms"].as_f64().unwrap_or(0.0), f["full_write_ms"].as_f64().unwrap_or(0.0),
            f["changed"], f["delta_bytes"],
            100.0 * f["delta_bytes"].as_f64().unwrap_or(0.0) / f["full_bytes"].as_f64().unwrap_or(1.0),
            f["delta_copy_ms"].as_f64().unwrap_or(0.0), f["delta_write_ms"].as_f64().unwrap_or(0.0),
        ),
        "checkpoint-map" => format!(
            "{case:<20} {} keys of map state + a timer each: full {} bytes ({} state + {} timers; at the barrier {:.1} ms, write {:.0} ms); {} changed: delta {} bytes ({} state + {} timers) = {:.2} % of full (at the barrier {:.2} ms, write {:.1} ms)",
            f["keys"], f["full_bytes"], f["full_state_bytes"], f["full_timer_bytes"],
            f["full_copy_ms"].as_f64().unwrap_or(0.0), f["full_write_ms"].as_f64().unwrap_or(0.0),
            f["changed"], f["delta_bytes"], f["delta_state_bytes"], f["delta_timer_bytes"],
            100.0 * f["delta_bytes"].as_f64().unwrap_or(0.0) / f["full_bytes"].as_f64().unwrap_or(1.0),
            f["delta_copy_ms"].as_f64().unwrap_or(0.0), f["delta_write_ms"].as_f64().unwrap_or(0.0),
        ),
        "savepoint" => format!(
            "{case:<20} {} keys, {} bytes: write {:.0} ms (+ snapshot at the barrier {:.1} ms), check {:.0} ms, restore {:.0} ms",
            f["keys"], f["bytes"],
            f["write_ms"].as_f64().unwrap_or(0.0), f["copy_ms"].as_f64().unwrap_or(0.0),
            f["check_ms"].as_f64().unwrap_or(0.0), f["restore_ms"].as_f64().unwrap_or(0.0),
        ),
        "start" => format!(
            "{case:<20} keyed-count: cold (compile) {:.0} ms, cached {:.1} ms (+ engine set-up {:.1} ms once per process)",
            f["cold_ms"].as_f64().unwrap_or(0.0), f["cached_ms"].as_f64().unwrap_or(0.0),
            f["engine_ms"].as_f64().unwrap_or(0.0),
        ),
        _ => v.to_string(),
    }
}

/// One line for a latency row.
fn describe_latency(v: &Value) -> String {
    format!(
        "{:<20} {}: latency p50 {} ms, p99 {} ms, max {} ms at {} events/s ({} of {} events measured, checkpoints every {} ms)",
        v["case"].as_str().unwrap_or("?"),
        v["delivery"].as_str().unwrap_or("?"),
        v["latency_p50_ms"],
        v["latency_p99_ms"],
        v["latency_max_ms"],
        v["input_rate"],
        v["measured"],
        v["events"],
        v["checkpoint_interval_ms"],
    )
}
