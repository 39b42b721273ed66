#!/usr/bin/env bash
# The logic swap over Kafka (docs/operations/savepoints.md: "The swap", as
# examples/swap does with files): Kafka -> keyed-count -> Kafka, exactly-once.
#
#   1. starts Kafka with scripts/services.sh (unless it is up; stops it at the
#      end only if it started it), creates topic `swap-events` (3 partitions);
#   2. produces 3,000 events over 10 keys with Kafka's console producer;
#   3. runs v1.toml (keyed-count 1.0.0, source 1 / operator 2 subtasks) until
#      its 3,000 counts are committed, then stops it with a savepoint;
#   4. restores the savepoint into v2.toml: keyed-count 2.0.0 behind the same
#      operator ID, source 2 / operator 3 subtasks; produces 2,000 more events;
#      stops it with a savepoint once 5,000 counts are committed;
#   5. reads `swap-counts` with Kafka's console consumer, read_committed, and
#      checks that every key's counts ran 1, 2, 3, ... across the swap.
#
# Environment:
#   KAFKA_BOOTSTRAP  the cluster to use (default 127.0.0.1:9092). When set, the
#                    script neither starts nor stops Kafka: the cluster must be up.
#   WEIR             the weir binary (default: target/debug/weir, built with
#                    `cargo build --bin weir`; when set, nothing is built but
#                    the two operators).
#
# The jobs run from copies of v1.toml and v2.toml in work/ with the bootstrap
# address put in; their state, savepoints and logs are in work/ too, which is
# emptied at each run. Topics `swap-events`, `swap-counts` and the sink's
# marker topic are recreated at each run. Needs Java 17+ (and Maven once, for
# Kafka's jars).
set -euo pipefail
# A relative WEIR is relative to where the script was started from.
case ${WEIR:-} in /* | "") ;; */*) WEIR=$PWD/$WEIR ;; esac
cd "$(dirname "$0")"
root=../..
services=$root/scripts/services.sh
bootstrap=${KAFKA_BOOTSTRAP:-127.0.0.1:9092}
events=swap-events
counts=swap-counts
# The sink's default transactional id prefix is weir-<job>-<topic>.
markers=weir-kafka-swap-swap-counts.commits

if [ -n "${WEIR:-}" ]; then
  weir=$WEIR
else
  weir=$root/target/debug/weir
  (cd "$root" && cargo build --bin weir)
fi
$weir build "$root/plugins/rust/keyed-count" >/dev/null
$weir build "$root/plugins/rust/keyed-count-v2" >/dev/null

# At exit, however it comes: the job still running (if any) is killed, and
# Kafka stopped if this script started it.
pid=""
started=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill "$pid"; fi
  if [ -n "$started" ]; then "$services" down kafka >/dev/null; fi
}
trap cleanup EXIT
if [ -n "${KAFKA_BOOTSTRAP:-}" ]; then
  echo "== Kafka at $bootstrap (KAFKA_BOOTSTRAP; neither started nor stopped here)"
elif "$services" status kafka >/dev/null 2>&1; then
  echo "== Kafka is up at $bootstrap (left running at the end)"
else
  echo "== starting Kafka (scripts/services.sh up kafka; stopped at the end)"
  started=1
  "$services" up kafka | tail -n 1
fi
kafka() { "$services" "$@" --bootstrap-server "$bootstrap" 2>/dev/null; }

echo "== topic $events (3 partitions), fresh"
for t in $events $counts $markers; do kafka kafka-topics --delete --if-exists --topic "$t"; done
while kafka kafka-topics --list | grep -qxE "$events|$counts|${markers//./\\.}"; do sleep 0.2; done
kafka kafka-topics --create --topic $events --partitions 3 --replication-factor 1 >/dev/null

# The job files, with the cluster's address: copies of v1.toml and v2.toml in
# work/ (one folder down, so their relative paths go one more level up).
rm -rf work
mkdir work
for v in v1 v2; do
  sed -e "s|^bootstrap = .*|bootstrap = \"$bootstrap\"|" -e 's|"\.\./\.\./|"../../../|' $v.toml > work/$v.toml
done

# Produces events `user-(i % 10):click-i` for i in FROM..TO (key:value).
produce() {
  seq "$1" "$2" | awk '{ print "user-" ($1 % 10) ":click-" $1 }' |
    kafka kafka-console-producer --topic $events \
      --reader-property parse.key=true --reader-property key.separator=:
}
# Waits until N counts are committed in `swap-counts`; prints them (key TAB value).
committed() {
  kafka kafka-console-consumer --topic $counts --from-beginning --isolation-level read_committed \
    --max-messages "$1" --timeout-ms 120000 --formatter-property print.key=true
}
# Starts a job file in the background; sets $pid and $addr (its REST API,
# which weir writes to the --ready-file once it listens).
start() {
  local job=$1; shift
  rm -f "${job%.toml}.addr"
  $weir run "$job" "$@" --ready-file "${job%.toml}.addr" 2> "${job%.toml}.log" &
  pid=$!
  until [ -s "${job%.toml}.addr" ]; do
    kill -0 "$pid" 2>/dev/null || { cat "${job%.toml}.log" >&2; exit 1; }
    sleep 0.1
  done
  addr=$(cat "${job%.toml}.addr")
}

echo "== 3,000 events into $events (kafka-console-producer, keys user-0 .. user-9)"
produce 1 3000

echo "== v1: keyed-count 1.0.0, source 1 subtask, operator 2 subtasks"
start work/v1.toml
committed 3000 | tail -n 3 | sed 's/^/  committed: /'
sp1=$($weir stop --addr "$addr")
wait "$pid"
echo "v1 stopped with savepoint $sp1; it holds (the Kafka offsets are the source position):"
$weir savepoint inspect "$sp1" | sed 's/^/  /'

echo "== v2: keyed-count 2.0.0 behind the same ID, source 2 subtasks, operator 3, from the savepoint"
start work/v2.toml --from-savepoint "$sp1"
echo "== 2,000 more events into $events while v2 runs"
produce 3001 5000
committed 5000 >/dev/null
sp2=$($weir stop --addr "$addr")
wait "$pid"
echo "v2 stopped with savepoint $sp2"

echo "== $counts read back by kafka-console-consumer --isolation-level read_committed"
kafka kafka-console-consumer --topic $counts --from-beginning --isolation-level read_committed \
  --timeout-ms 5000 --formatter-property print.key=true > work/committed.txt || true
python3 - work/committed.txt <<'PY'
import sys
nxt, v1_last, v2_first = {}, {}, {}
for line in open(sys.argv[1]):
    key, value = line.rstrip("\n").split("\t", 1)
    n = int(value.split()[0])
    want = nxt.get(key, 1)
    assert n == want, f"key {key}: count {n} where {want} was due"
    nxt[key] = n + 1
    if "last_seen" in value:
        v2_first.setdefault(key, value)
    else:
        v1_last[key] = value
for key in sorted(nxt):
    print(f"  {key}: v1's last count {v1_last.get(key)!s:>4}, v2's first {v2_first.get(key)}, final {nxt[key] - 1}")
total = sum(v - 1 for v in nxt.values())
print(f"every key's counts went on across the swap: {len(nxt)} keys, {total} records, "
      f"nothing missing, nothing twice (expected 5000)")
assert total == 5000
PY
