#!/usr/bin/env bash
# Local services for development and tests: today a real Apache Kafka (KRaft
# mode, no ZooKeeper) on 127.0.0.1 only. The tests and CI use this script too.
#
#   scripts/services.sh up kafka [--brokers N] [--port P] [--timeout S] [--dir DIR]
#       Starts N brokers (default 1) and prints the bootstrap address list as
#       the last line of stdout: 127.0.0.1:9092 (or 127.0.0.1:9092,...:9094).
#       Broker i listens on P+i-1 (default P 9092), its controller on
#       P+10000+i-1 (19092...). Waits up to S seconds (default 90) until the
#       brokers answer a metadata request. Already up: says so, prints the
#       address. A broker that was stopped (down --broker, a crash) is
#       restarted on its kept data (no need to repeat --brokers and --port).
#       With 3 brokers or more, topics get replication 3 and
#       min.insync.replicas 2 by default (internal ones too), so one broker
#       may be down; with one broker, 1 and 1.
#   scripts/services.sh down [kafka] [--keep] [--broker N [--kill]] [--dir DIR]
#       Stops the brokers this script started (by the PIDs in its state
#       folder, never by name) and deletes their data and logs unless --keep.
#       --broker N stops only broker N and keeps everything (--kill: SIGKILL,
#       a crash). Exit 0 if nothing was running.
#   scripts/services.sh status [kafka] [--dir DIR]
#       One line per broker: state, PID, address. Exit 0 if all are up, 3 if not.
#   scripts/services.sh pid kafka N [--dir DIR]  broker N's PID (to kill it in a test)
#   scripts/services.sh fetch kafka              only download the jars
#   scripts/services.sh kafka-run MAIN_CLASS ARGS...
#       Runs a Kafka main class on the cached jars. Shortcuts: kafka-topics,
#       kafka-console-producer, kafka-console-consumer, kafka-broker-api-versions,
#       kafka-metadata-quorum, kafka-consumer-groups, kafka-storage. E.g.
#         scripts/services.sh kafka-topics --bootstrap-server 127.0.0.1:9092 \
#           --create --topic t --partitions 3 --replication-factor 1
#         scripts/services.sh kafka-console-consumer --bootstrap-server 127.0.0.1:9092 \
#           --topic t --from-beginning --max-messages 5 --isolation-level read_committed
#
#   --dir DIR: the cluster's state folder (data, logs, PID files), default
#   $WEIR_SERVICES/run/kafka. Each folder is its own cluster: tests start
#   private clusters (on other ports) beside the shared one, with the jars
#   cached once.
#
# Kafka's jars come from Maven Central (org.apache.kafka, through `mvn`) once,
# into $WEIR_SERVICES/kafka-VERSION/libs (default ~/.weir/services, like the
# toolchains). Brokers' data, logs and PID files are in
# $WEIR_SERVICES/run/kafka/node-N/ (DIR/node-N/ with --dir DIR). Needs Java
# 17+ and, for the first download, Maven. Environment: WEIR_SERVICES, WEIR_KAFKA_VERSION (default
# 4.3.1), KAFKA_HEAP_OPTS (default -Xms128m -Xmx512m per broker), JAVA.
set -euo pipefail

kafka_version="${WEIR_KAFKA_VERSION:-4.3.1}"
services="${WEIR_SERVICES:-$HOME/.weir/services}"
home="$services/kafka-$kafka_version"
libs="$home/libs"
default_run="$services/run/kafka"
run="$default_run"
java="${JAVA:-java}"
heap="${KAFKA_HEAP_OPTS:--Xms128m -Xmx512m}"

die() {
  echo "error: $*" >&2
  exit 1
}

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
  exit 2
}

need_java() {
  command -v "$java" >/dev/null 2>&1 ||
    die "java is not installed: Kafka needs Java 17+ (e.g. apt-get install openjdk-17-jre-headless)"
  local v
  v="$("$java" -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n 1)"
  [[ -n "$v" && "$v" -ge 17 ]] || die "Kafka $kafka_version needs Java 17+, but \`$java\` is Java ${v:-unknown}"
}

# The jars, from Maven Central, once.
fetch() {
  [[ -d "$libs" ]] && return 0
  if ! command -v mvn >/dev/null 2>&1; then
    # Maven fetches the jars; Debian's package is the one install step needed.
    command -v apt-get >/dev/null 2>&1 ||
      die "mvn is not installed: it fetches Kafka's jars from Maven Central (install Maven 3)"
    echo "services: apt-get install maven (to fetch Kafka's jars from Maven Central)" >&2
    local sudo=""
    [[ "$(id -u)" -ne 0 ]] && sudo="sudo"
    $sudo apt-get install -y -qq maven >/dev/null || {
      $sudo apt-get update -qq >/dev/null
      $sudo apt-get install -y -qq maven >/dev/null
    } || die "cannot install Maven with apt-get: it fetches Kafka's jars from Maven Central"
  fi
  local tmp
  mkdir -p "$services"
  tmp="$(mktemp -d "$services/.kafka-$kafka_version.XXXXXX")"
  cat >"$tmp/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.weir.services</groupId>
  <artifactId>kafka-libs</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$kafka_version</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>$kafka_version</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>2.24.3</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>2.24.3</version></dependency>
  </dependencies>
</project>
EOF
  echo "fetching Kafka $kafka_version from Maven Central into $libs ..." >&2
  if ! mvn -q -B -f "$tmp/pom.xml" \
    org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$tmp/libs" >"$tmp/mvn.log" 2>&1; then
    tail -n 20 "$tmp/mvn.log" >&2
    rm -rf "$tmp"
    die "could not fetch Kafka $kafka_version from Maven Central (mvn failed; see above)"
  fi
  mkdir -p "$home"
  mv "$tmp/libs" "$libs"
  rm -rf "$tmp"
}

# log4j2 configurations: brokers log INFO to their log file (stdout is
# redirected there), tools log warnings to stderr.
write_log_configs() {
  mkdir -p "$home/config"
  cat >"$home/config/server-log4j2.properties" <<'EOF'
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = out
EOF
  cat >"$home/config/tools-log4j2.properties" <<'EOF'
appender.err.type = Console
appender.err.name = err
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = err
EOF
}

run_class() {
  need_java
  fetch
  write_log_configs
  local main="$1"
  shift
  exec "$java" -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
    -Dlog4j2.configurationFile="$home/config/tools-log4j2.properties" \
    -cp "$libs/*" "$main" "$@"
}

# Is PID alive and one of our brokers (java running kafka.Kafka on our config)?
is_ours() {
  local pid="$1" node="$2" args
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  args="$(ps -o args= -p "$pid" 2>/dev/null)" || return 1
  [[ "$args" == *java* && "$args" == *" kafka.Kafka $run/node-$node/server.properties" ]]
}

node_pid() {
  local f="$run/node-$1/pid"
  [[ -f "$f" ]] && cat "$f"
  return 0
}

port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

load_cluster() {
  [[ -f "$run/cluster.env" ]] || return 1
  # shellcheck source=/dev/null
  . "$run/cluster.env"
}

bootstrap() {
  local i addrs=()
  for ((i = 1; i <= brokers; i++)); do addrs+=("127.0.0.1:$((port + i - 1))"); done
  (
    IFS=,
    echo "${addrs[*]}"
  )
}

write_config() {
  local i="$1" voters="" j rf isr
  for ((j = 1; j <= brokers; j++)); do
    voters+="${voters:+,}$j@127.0.0.1:$((controller_port + j - 1))"
  done
  # Three replicas and two in sync from three brokers on (one may be down);
  # fewer brokers: as many replicas as brokers, one in sync.
  rf=$((brokers < 3 ? brokers : 3))
  isr=$((rf < 3 ? 1 : 2))
  mkdir -p "$run/node-$i/data"
  cat >"$run/node-$i/server.properties" <<EOF
# Written by scripts/services.sh: broker $i of $brokers, on 127.0.0.1 only.
process.roles=broker,controller
node.id=$i
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:$((port + i - 1)),CONTROLLER://127.0.0.1:$((controller_port + i - 1))
advertised.listeners=PLAINTEXT://127.0.0.1:$((port + i - 1))
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$run/node-$i/data
num.partitions=1
default.replication.factor=$rf
min.insync.replicas=$isr
offsets.topic.replication.factor=$rf
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$isr
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$isr
group.initial.rebalance.delay.ms=0
EOF
}

start_node() {
  local i="$1" dir pid
  dir="$run/node-$i"
  local launcher=()
  command -v setsid >/dev/null 2>&1 && launcher=(setsid)
  # shellcheck disable=SC2086 # $heap is a list of JVM options
  nohup "${launcher[@]}" "$java" $heap -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$home/config/server-log4j2.properties" \
    -Dkafka.logs.dir="$dir" \
    -cp "$libs/*" kafka.Kafka "$dir/server.properties" \
    </dev/null >>"$dir/kafka.log" 2>&1 9>&- &
  pid=$!
  echo "$pid" >"$dir/pid"
}

log_tails() {
  local i
  for i in "$@"; do
    echo "--- $run/node-$i/kafka.log (last 30 lines)" >&2
    tail -n 30 "$run/node-$i/kafka.log" >&2 2>/dev/null || true
  done
}

# Waits until every broker in $@ logged that it started and accepts
# connections, then until a metadata request sees all of them.
wait_up() {
  local deadline=$((SECONDS + timeout)) i pending=("$@") still out
  while ((${#pending[@]})); do
    still=()
    for i in "${pending[@]}"; do
      if ! is_ours "$(node_pid "$i")" "$i"; then
        log_tails "$i"
        stop_nodes "${pending[@]}"
        die "kafka broker $i exited during startup (log above: $run/node-$i/kafka.log)"
      fi
      if grep -q "Kafka Server started" "$run/node-$i/kafka.log" 2>/dev/null &&
        port_open "$((port + i - 1))"; then
        :
      else
        still+=("$i")
      fi
    done
    pending=("${still[@]+"${still[@]}"}")
    if ((${#pending[@]})); then
      if ((SECONDS >= deadline)); then
        log_tails "${pending[@]}"
        stop_nodes "$@"
        die "kafka broker(s) ${pending[*]} did not start within ${timeout}s (logs above)"
      fi
      sleep 0.5
    fi
  done
  # A real request: every broker must be in the cluster's metadata.
  local n
  while true; do
    out="$(timeout 30 "$java" -Xmx128m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
      -Dlog4j2.configurationFile="$home/config/tools-log4j2.properties" -cp "$libs/*" \
      org.apache.kafka.tools.BrokerApiVersionsCommand --bootstrap-server "$(bootstrap)" 2>&1)" || true
    n="$(grep -c '^127\.0\.0\.1:[0-9]* (id: ' <<<"$out" || true)"
    ((n == brokers)) && return 0
    if ((SECONDS >= deadline)); then
      echo "$out" | tail -n 20 >&2
      stop_nodes "$@"
      die "kafka: a metadata request saw $n of $brokers brokers after ${timeout}s"
    fi
    sleep 1
  done
}

# Stops the given brokers: SIGTERM, then SIGKILL after a grace period.
stop_nodes() {
  local i pid pids=() grace="${grace:-20}" sig="${sig:-TERM}"
  for i in "$@"; do
    pid="$(node_pid "$i")"
    if is_ours "$pid" "$i"; then
      kill -s "$sig" "$pid" 2>/dev/null || true
      pids+=("$pid:$i")
    fi
  done
  local deadline=$((SECONDS + grace)) p alive
  while true; do
    alive=()
    for p in "${pids[@]+"${pids[@]}"}"; do
      is_ours "${p%%:*}" "${p##*:}" && alive+=("$p")
    done
    ((${#alive[@]})) || break
    if ((SECONDS >= deadline)); then
      for p in "${alive[@]}"; do kill -s KILL "${p%%:*}" 2>/dev/null || true; done
      grace=$((grace + 10))
      deadline=$((SECONDS + 10))
      sig=KILL
    fi
    sleep 0.2
  done
  for i in "$@"; do rm -f "$run/node-$i/pid"; done
}

random_cluster_id() {
  local id
  while true; do
    id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
    [[ "$id" == -* ]] || break
  done
  echo "$id"
}

with_lock() {
  mkdir -p "$run"
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$run/.lock"
    if ! flock -n 9; then
      echo "waiting for another scripts/services.sh (lock $run/.lock) ..." >&2
      flock -w 300 9 || die "kafka: another scripts/services.sh held $run/.lock for 300 s"
    fi
  fi
}

kafka_up() {
  local want_brokers=1 want_port=9092 timeout=90 chosen=0
  while (($#)); do
    case "$1" in
      --brokers) want_brokers="${2:?--brokers needs a number}"; chosen=1; shift 2 ;;
      --port) want_port="${2:?--port needs a number}"; chosen=1; shift 2 ;;
      --timeout) timeout="${2:?--timeout needs seconds}"; shift 2 ;;
      *) die "up kafka: unknown option \`$1\` (expected --brokers N, --port P, --timeout S)" ;;
    esac
  done
  [[ "$want_brokers" =~ ^[1-9]$ ]] || die "up kafka: --brokers must be 1 to 9, not \`$want_brokers\`"
  if ! [[ "$want_port" =~ ^[0-9]+$ ]] || ((want_port < 1024 || want_port + 10000 + want_brokers > 65535)); then
    die "up kafka: --port must be 1024 to $((65535 - 10000 - want_brokers)), not \`$want_port\`"
  fi
  [[ "$timeout" =~ ^[0-9]+$ ]] || die "up kafka: --timeout must be seconds, not \`$timeout\`"
  need_java
  fetch
  write_log_configs
  with_lock

  local i p stopped=() brokers port controller_port cluster_id
  if load_cluster; then
    # Without --brokers and --port: the cluster as it was set up.
    if ((chosen)) && ((brokers != want_brokers || port != want_port)); then
      die "kafka is already set up in $run with $brokers broker(s) on port $port: run \`scripts/services.sh down kafka$(dir_arg)\` first"
    fi
    for ((i = 1; i <= brokers; i++)); do
      is_ours "$(node_pid "$i")" "$i" || stopped+=("$i")
    done
    if ((${#stopped[@]} == 0)); then
      echo "kafka is already up ($brokers broker(s))" >&2
      bootstrap
      return 0
    fi
    echo "restarting kafka broker(s) ${stopped[*]} on their kept data ..." >&2
  else
    brokers="$want_brokers" port="$want_port" controller_port=$((want_port + 10000))
    for ((i = 1; i <= brokers; i++)); do stopped+=("$i"); done
  fi

  for i in "${stopped[@]}"; do
    for p in $((port + i - 1)) $((controller_port + i - 1)); do
      port_open "$p" && die "kafka: port $p on 127.0.0.1 is already in use (another Kafka? \`ss -ltnp | grep :$p\`); choose another with --port"
    done
  done

  local started=$SECONDS
  if [[ ! -f "$run/cluster.env" ]]; then
    rm -rf "$run"/node-*
    cluster_id="$(random_cluster_id)"
    for ((i = 1; i <= brokers; i++)); do
      write_config "$i"
      if ! "$java" -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
        -Dlog4j2.configurationFile="$home/config/tools-log4j2.properties" -cp "$libs/*" \
        kafka.tools.StorageTool format -t "$cluster_id" -c "$run/node-$i/server.properties" \
        >"$run/node-$i/format.log" 2>&1; then
        cat "$run/node-$i/format.log" >&2
        die "kafka: formatting the storage of broker $i failed (above)"
      fi
    done
    cat >"$run/cluster.env" <<EOF
brokers=$brokers
port=$port
controller_port=$controller_port
cluster_id=$cluster_id
EOF
  fi
  echo "starting kafka $kafka_version: ${#stopped[@]} broker(s) on 127.0.0.1 ..." >&2
  for i in "${stopped[@]}"; do start_node "$i"; done
  wait_up "${stopped[@]}"
  echo "kafka is up in $((SECONDS - started))s ($brokers broker(s), logs in $run)" >&2
  bootstrap
}

kafka_down() {
  local keep=0 only="" kill9=0
  while (($#)); do
    case "$1" in
      --keep) keep=1; shift ;;
      --broker) only="${2:?--broker needs a number}"; shift 2 ;;
      --kill) kill9=1; shift ;;
      *) die "down kafka: unknown option \`$1\` (expected --keep, --broker N, --kill)" ;;
    esac
  done
  [[ -d "$run" ]] || return 0
  with_lock
  local brokers=0 port=0 controller_port=0 cluster_id="" i all=()
  load_cluster || true
  if [[ -n "$only" ]]; then
    if ! [[ "$only" =~ ^[0-9]+$ ]] || ((only < 1 || only > brokers)); then
      die "down kafka: --broker must be 1 to $brokers, not \`$only\`"
    fi
    if ((kill9)); then sig=KILL stop_nodes "$only"; else stop_nodes "$only"; fi
    echo "kafka broker $only stopped (data kept; \`scripts/services.sh up kafka$(dir_arg)\` restarts it)" >&2
    return 0
  fi
  for d in "$run"/node-*; do
    [[ -d "$d" ]] && all+=("${d##*/node-}")
  done
  # Without --keep the data goes anyway: a short grace (a broker whose
  # controller quorum is gone waits in its controlled shutdown, then is killed).
  local grace=5
  ((keep)) && grace=30
  if ((${#all[@]})); then
    if ((kill9)); then sig=KILL stop_nodes "${all[@]}"; else stop_nodes "${all[@]}"; fi
  fi
  if ((keep)); then
    echo "kafka stopped (data and logs kept in $run)" >&2
  else
    # Only what this script wrote: --dir may name a folder that holds more.
    rm -rf "$run"/node-* "$run/cluster.env" "$run/.lock"
    rmdir "$run" 2>/dev/null || true
    echo "kafka stopped" >&2
  fi
}

kafka_status() {
  local brokers port controller_port cluster_id i pid all_up=1
  if ! load_cluster; then
    echo "kafka: down"
    return 3
  fi
  for ((i = 1; i <= brokers; i++)); do
    pid="$(node_pid "$i")"
    if is_ours "$pid" "$i"; then
      if port_open "$((port + i - 1))"; then
        echo "kafka broker $i: up       pid $pid  127.0.0.1:$((port + i - 1))"
      else
        echo "kafka broker $i: starting pid $pid  127.0.0.1:$((port + i - 1))"
        all_up=0
      fi
    else
      echo "kafka broker $i: down     pid -      127.0.0.1:$((port + i - 1))"
      all_up=0
    fi
  done
  echo "kafka bootstrap: $(bootstrap)"
  ((all_up)) || return 3
}

kafka_pid() {
  local n="${1:?pid kafka needs a broker number}" pid
  pid="$(node_pid "$n")"
  is_ours "$pid" "$n" || die "kafka broker $n is not running"
  echo "$pid"
}

# ` --dir DIR` when the state folder is not the default one (for hints).
dir_arg() {
  [[ "$run" == "$default_run" ]] || printf ' --dir %q' "$run"
}

service_arg() {
  case "${1:-kafka}" in
    kafka) ;;
    *) die "unknown service \`$1\`: expected kafka" ;;
  esac
}

cmd="${1:-}"
[[ -n "$cmd" ]] || usage
shift
# `--dir DIR` (up, down, status, pid): the cluster's state folder, absolute
# (the brokers' command lines name it, and `down` recognises them by it).
case "$cmd" in
  up | down | status | pid)
    args=()
    while (($#)); do
      case "$1" in
        --dir | --dir=*)
          if [[ "$1" == --dir ]]; then
            run="${2:-}"
            shift $(($# < 2 ? 1 : 2))
          else
            run="${1#--dir=}"
            shift
          fi
          [[ -n "$run" ]] || die "$cmd: --dir needs a directory"
          [[ "$run" == /* ]] || run="$PWD/$run"
          while [[ "$run" == */ && "$run" != / ]]; do run="${run%/}"; done
          [[ "$run" != / ]] || die "$cmd: --dir / is not a cluster's folder"
          ;;
        *)
          args+=("$1")
          shift
          ;;
      esac
    done
    set -- "${args[@]+"${args[@]}"}"
    ;;
esac
case "$cmd" in
  up)
    [[ $# -ge 1 ]] || die "up needs a service: \`scripts/services.sh up kafka\`"
    service_arg "$1"
    shift
    kafka_up "$@"
    ;;
  down | status)
    if [[ $# -ge 1 && "$1" != --* ]]; then
      service_arg "$1"
      shift
    fi
    if [[ "$cmd" == down ]]; then kafka_down "$@"; else kafka_status "$@"; fi
    ;;
  pid)
    service_arg "${1:-}"
    shift
    kafka_pid "$@"
    ;;
  fetch)
    service_arg "${1:-kafka}"
    fetch
    echo "$libs"
    ;;
  kafka-run)
    [[ $# -ge 1 ]] || die "kafka-run needs a main class, e.g. org.apache.kafka.tools.TopicCommand"
    run_class "$@"
    ;;
  kafka-topics) run_class org.apache.kafka.tools.TopicCommand "$@" ;;
  kafka-console-producer) run_class org.apache.kafka.tools.ConsoleProducer "$@" ;;
  kafka-console-consumer) run_class org.apache.kafka.tools.consumer.ConsoleConsumer "$@" ;;
  kafka-broker-api-versions) run_class org.apache.kafka.tools.BrokerApiVersionsCommand "$@" ;;
  kafka-metadata-quorum) run_class org.apache.kafka.tools.MetadataQuorumCommand "$@" ;;
  kafka-consumer-groups) run_class org.apache.kafka.tools.consumer.group.ConsumerGroupCommand "$@" ;;
  kafka-storage) run_class kafka.tools.StorageTool "$@" ;;
  -h | --help | help) usage ;;
  *) die "unknown command \`$cmd\`: expected up, down, status, pid, fetch, kafka-run or a kafka-* tool (see --help)" ;;
esac
