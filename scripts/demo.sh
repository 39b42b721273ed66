#!/usr/bin/env bash
# Installs what is missing, builds weir and the example operators, and runs
# the demo jobs in examples/ end to end.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install.sh
cargo build --bin weir
weir=target/debug/weir
for op in word-split keyed-count keyed-count-v2 keyed-count-v3 windowed-sum dedupe; do
  $weir build "plugins/rust/$op" >/dev/null
done

echo
echo "== word count: word-split -> keyed-count (keyed, 2 subtasks), declared value state"
$weir operator inspect plugins/rust/keyed-count/keyed_count.wasm
$weir run examples/wordcount/job.toml
echo "final counts (last running count per word):"
python3 - examples/wordcount/counts.jsonl <<'PY' 2>/dev/null || sort examples/wordcount/counts.jsonl | tail -n 5
import json, sys
final = {}
for line in open(sys.argv[1]):
    e = json.loads(line)
    final[e["key"]] = max(final.get(e["key"], 0), int(e["value"]))
for word, n in sorted(final.items(), key=lambda kv: (-kv[1], kv[0]))[:8]:
    print(f"  {word:10} {n}")
PY

echo
echo "== windowed sums: event-time tumbling windows over out-of-order input"
$weir run examples/windows/job.toml
echo "window sums (key, sum, window end - 1):"
cat examples/windows/sums.jsonl
echo "dead letters (late or malformed events):"
cat examples/windows/dead.jsonl

echo
echo "== crash and recovery: checkpoints every 200 ms, killed with SIGKILL after 1.5 s, then resumed"
rm -rf examples/recovery/state examples/recovery/counts.jsonl examples/recovery/.counts.jsonl.pending
$weir run examples/recovery/job.toml 2>/dev/null &
pid=$!
sleep 1.5
kill -9 "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
echo "killed; completed checkpoints so far:"
$weir checkpoints list examples/recovery/state
echo "published lines so far: $(wc -l < examples/recovery/counts.jsonl)"
$weir run examples/recovery/job.toml
lines=$(wc -l < examples/recovery/counts.jsonl)
dups=$(sort examples/recovery/counts.jsonl | uniq -d | wc -l)
echo "after recovery: $lines lines (expected 300000), $dups duplicated"
test "$lines" -eq 300000 && test "$dups" -eq 0

echo
echo "== logic swap by operator ID: keyed-count v1 -> savepoint -> v2 (adds a state) -> savepoint -> v3 (migrates a state)"
cd examples/swap
rm -rf state savepoints counts.jsonl .counts.jsonl.pending ./*.log
weir=../../target/debug/weir
# Runs a job file in the background until some output is published, then
# stops it with a savepoint through the REST API; prints the savepoint's path.
run_and_stop() {
  local job=$1; shift
  $weir run "$job" "$@" 2> "$job.log" &
  local pid=$!
  local addr="" before
  before=$(wc -l 2>/dev/null < counts.jsonl || echo 0)
  until addr=$(grep -o 'http://[0-9.:]*' "$job.log" | head -n 1) && [ -n "$addr" ]; do sleep 0.1; done
  until [ "$(wc -l 2>/dev/null < counts.jsonl || echo 0)" -gt $((before + 20000)) ]; do sleep 0.1; done
  if [ "$job" = v1.toml ]; then
    echo "  a savepoint while v1 runs: $($weir savepoint trigger --addr "${addr#http://}")" >&2
  fi
  $weir stop --addr "${addr#http://}"
  wait "$pid"
}
sp1=$(run_and_stop v1.toml)
echo "v1 stopped with savepoint $sp1 after $(wc -l < counts.jsonl) lines; it holds:"
$weir savepoint inspect "$sp1"
echo "last v1 line:  $(tail -n 1 counts.jsonl)"
sp2=$(run_and_stop v2.toml --from-savepoint "$sp1")
echo "v2 (same ID, new .wasm) carried on from the v1 counts and stopped with savepoint $sp2"
echo "last v2 line:  $(tail -n 1 counts.jsonl)"
# v3 no longer keeps last_seen: dropping saved state must be asked for.
$weir run v3.toml --from-savepoint "$sp2" --allow-non-restored-state 2>&1 | grep -E "restor|finished" || true
echo "last v3 line:  $(tail -n 1 counts.jsonl)"
echo -n "every key's counts went on across both swaps: "
python3 ../../scripts/check_counts.py counts.jsonl 300000
cd ../..

echo
weir=target/debug/weir
echo "== live swap: keyed-count 1.0.0 -> 2.0.0 inside the running job, at a checkpoint barrier, on probation"
rm -rf examples/live-swap/state examples/live-swap/counts.jsonl examples/live-swap/.counts.jsonl.pending examples/live-swap/run.log
$weir run examples/live-swap/job.toml 2> examples/live-swap/run.log &
pid=$!
addr=""
until addr=$(grep -o 'http://[0-9.:]*' examples/live-swap/run.log | head -n 1) && [ -n "$addr" ]; do sleep 0.1; done
# Let 1.0.0 publish some counts first.
until [ -s examples/live-swap/counts.jsonl ]; do sleep 0.1; done
$weir swap --operator count --wasm plugins/rust/keyed-count-v2/keyed_count_v2.wasm --probation 2s --addr "${addr#http://}"
$weir status --addr "${addr#http://}"
wait "$pid"
echo -n "the job never stopped: "
python3 scripts/check_counts.py examples/live-swap/counts.jsonl 300000 --v2

