#!/usr/bin/env bash
# Installs what is missing, builds weir and the example operators, and runs
# the demo jobs in examples/ end to end.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install.sh
cargo build --bin weir
weir=target/debug/weir
for op in word-split keyed-count windowed-sum dedupe; do
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
