#!/usr/bin/env bash
# Savepoint write and restore time for about 1 million keys (keyed-count,
# value state): runs a throttled generator over 1,000,000 keys until about
# 8 million events are in (so ~99.97% of the keys exist), takes a savepoint
# through the REST API, stops the job, then restores the savepoint into a
# fresh run. Prints the times from weir's own log lines:
#   "savepoint N complete in X ms"   trigger -> barrier -> every subtask's
#                                     state written, checksummed, fsynced,
#                                     _metadata written and renamed
#   "checked savepoint ... in X ms"  read every data file and verify its
#                                     size, SHA-256 and frames (before the
#                                     job starts)
#   "restored savepoint ... in X ms" then every subtask reads and decodes
#                                     its key groups' files and opens
# Usage: benches/savepoint.sh [PARALLELISM]   (after cargo build --bin weir
# and weir build plugins/rust/keyed-count)
set -euo pipefail
cd "$(dirname "$0")/.."
p=${1:-2}
weir=$PWD/target/debug/weir
wasm=$PWD/plugins/rust/keyed-count/keyed_count.wasm
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cat > "$dir/job.toml" <<TOML
name = "bench"
max_parallelism = 128
[source]
type = "generator"
count = 12000000
keys = 1000000
value_size = 8
rate = 1500000
[[operators]]
id = "count"
wasm = "$wasm"
parallelism = $p
input = "key"
[sink]
type = "blackhole"
[savepoint]
dir = "savepoints"
[rest]
addr = "127.0.0.1:0"
TOML
cd "$dir"
"$weir" run job.toml 2> run.log &
pid=$!
until addr=$(grep -o 'http://[0-9.:]*' run.log | head -n 1) && [ -n "$addr" ]; do sleep 0.1; done
events_in() {
  python3 -c 'import json,sys,urllib.request; print(json.load(urllib.request.urlopen(sys.argv[1] + "/jobs/bench"))["events-in"])' "$addr"
}
until [ "$(events_in)" -gt 8000000 ]; do sleep 0.2; done
sp=$("$weir" savepoint trigger --addr "${addr#http://}")
"$weir" stop --addr "${addr#http://}" > /dev/null
wait "$pid"
keys=$("$weir" savepoint inspect --json "$sp" | python3 -c 'import json,sys; m=json.load(sys.stdin); print(m["totals"]["keys"], m["totals"]["data_bytes"])')
echo "savepoint: $keys (keys, data bytes) at parallelism $p"
grep -o 'savepoint [0-9]* complete in [0-9.]* ms' run.log | head -n 1
sed -i 's/^rate = .*//' job.toml
"$weir" run job.toml --from-savepoint "$sp" 2> restore.log
grep -o 'checked savepoint .* in [0-9.]* ms' restore.log | sed 's/`[^`]*`/SP/'
grep -o 'restored savepoint .* in [0-9.]* ms ([0-9]* keys)' restore.log | sed 's/`[^`]*`/SP/'
