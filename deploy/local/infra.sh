#!/usr/bin/env bash
# Real servers for the real-server test tier and `make demo-infra`: Apache
# Kafka (KRaft, one node) and Apache Cassandra (the real CQL server standing
# in for ScyllaDB), run from their Maven Central artifacts as background
# processes on loopback. See README.md, "Real servers".
#
#   deploy/local/infra.sh fetch    download the pinned artifacts (Maven checks their checksums)
#   deploy/local/infra.sh up       fetch, write configs, start both, wait until they serve
#   deploy/local/infra.sh down     stop both (SIGTERM, then SIGKILL after a bounded wait)
#   deploy/local/infra.sh status   which are running, where
#   deploy/local/infra.sh env      the environment the test tier uses (eval "$(infra.sh env)")
#   deploy/local/infra.sh kill N   SIGKILL one node (the broker fault test)
#   TRIBUTARY_INFRA_ONLY=kafka3 deploy/local/infra.sh up|down
#                                  a three-node Kafka cluster (replication factor 3,
#                                  min.insync.replicas 2) on 29192/29194/29196
#
# Environment (all optional):
#   TRIBUTARY_CACHE_DIR       downloads: Maven repository and server libraries ($HOME/.cache/tributary)
#   TRIBUTARY_INFRA_DIR       data, logs, configs and pid files (<repo>/.infra, git-ignored)
#   TRIBUTARY_KAFKA_PORT      Kafka's client port (29092); its controller listens on the next port
#   TRIBUTARY_CQL_PORT        Cassandra's CQL port (9042)
#   TRIBUTARY_CASSANDRA_STORAGE_PORT  Cassandra's internode port (7010)
#   TRIBUTARY_INFRA_TIMEOUT   seconds to wait for each server to serve (180)
#   TRIBUTARY_INFRA_ONLY      start only "kafka" or "cassandra"
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${TRIBUTARY_CACHE_DIR:-$HOME/.cache/tributary}
state=${TRIBUTARY_INFRA_DIR:-$repo/.infra}
kafka_port=${TRIBUTARY_KAFKA_PORT:-29092}
kafka_ctl_port=$((kafka_port + 1))
cql_port=${TRIBUTARY_CQL_PORT:-9042}
storage_port=${TRIBUTARY_CASSANDRA_STORAGE_PORT:-7010}
timeout=${TRIBUTARY_INFRA_TIMEOUT:-180}
only=${TRIBUTARY_INFRA_ONLY:-}

KAFKA_VERSION=4.4.0
CASSANDRA_VERSION=5.0.8
# a fixed KRaft cluster id ("tributary-local1", base64url): one local cluster
KAFKA_CLUSTER_ID=dHJpYnV0YXJ5LWxvY2FsMQ
kafka_lib=$cache/kafka-$KAFKA_VERSION/lib
cassandra_lib=$cache/cassandra-$CASSANDRA_VERSION/lib

log() { printf 'infra: %s\n' "$*" >&2; }
die() { printf 'infra: error: %s\n' "$*" >&2; exit 1; }

servers() {
  case "$only" in
    "") echo kafka cassandra ;;
    kafka | cassandra | kafka3) echo "$only" ;;
    *) die "TRIBUTARY_INFRA_ONLY=$only: want kafka, cassandra or kafka3" ;;
  esac
}

# the three-node Kafka cluster of the broker fault test (TRIBUTARY_INFRA_ONLY=kafka3):
# node i listens on kafka3_port+2(i-1), its controller on the port after.
kafka3_port=${TRIBUTARY_KAFKA3_PORT:-29192}
kafka3_voters="1@127.0.0.1:$((kafka3_port + 1)),2@127.0.0.1:$((kafka3_port + 3)),3@127.0.0.1:$((kafka3_port + 5))"
kafka3_brokers="127.0.0.1:$kafka3_port,127.0.0.1:$((kafka3_port + 2)),127.0.0.1:$((kafka3_port + 4))"

# nodes SERVER lists the processes of a server.
nodes() {
  case $1 in
    kafka3) echo kafka3-1 kafka3-2 kafka3-3 ;;
    *) echo "$1" ;;
  esac
}

need() { command -v "$1" >/dev/null || die "$1 is not on PATH: $2"; }

# fetch_one NAME POM LIBDIR copies the artifacts of POM into LIBDIR once; a
# marker file records a complete copy so an interrupted one is redone.
fetch_one() {
  local name=$1 pom=$2 lib=$3
  if [[ -f $lib/.complete && $lib/.complete -nt $pom ]]; then
    return
  fi
  need mvn "install Maven (Debian: apt-get install maven)"
  log "fetching $name from Maven Central into $lib"
  rm -rf "$lib"
  if ! mvn -q -B -f "$pom" -Dmaven.repo.local="$cache/m2" dependency:copy-dependencies \
    -DoutputDirectory="$lib" -DincludeScope=runtime >"$cache/fetch-$name.log" 2>&1; then
    tail -n 30 "$cache/fetch-$name.log" >&2
    die "fetching $name failed (full log: $cache/fetch-$name.log)"
  fi
  touch "$lib/.complete"
}

fetch() {
  mkdir -p "$cache"
  for s in $(servers); do
    case $s in
      kafka | kafka3) fetch_one kafka "$here/kafka.pom.xml" "$kafka_lib" ;;
      cassandra) fetch_one cassandra "$here/cassandra.pom.xml" "$cassandra_lib" ;;
    esac
  done
}

pid_of() { # prints the pid of a running server, or fails
  local f=$state/$1/pid
  [[ -f $f ]] || return 1
  local pid
  pid=$(cat "$f")
  kill -0 "$pid" 2>/dev/null || return 1
  echo "$pid"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

java_check() {
  need java "install a Java 17 runtime"
  local v
  v=$(java -XX:+IgnoreUnrecognizedVMOptions -version 2>&1 | awk -F'"' '/version/ {print $2; exit}')
  [[ ${v%%.*} -ge 17 ]] || die "java $v: Kafka $KAFKA_VERSION and Cassandra $CASSANDRA_VERSION need Java 17 or later"
}

# wait_ready NAME PORT PATTERN waits until the server's log shows PATTERN and
# PORT accepts connections; on a dead process or the timeout it prints the
# log's tail and fails.
wait_ready() {
  local name=$1 port=$2 pattern=$3 logf=$state/$1/server.log
  local start=$SECONDS
  while :; do
    if ! pid_of "$name" >/dev/null; then
      tail -n 40 "$logf" >&2 || true
      die "$name exited during start-up (log above; full log: $logf)"
    fi
    if grep -q "$pattern" "$logf" 2>/dev/null && port_open "$port"; then
      log "$name ready on 127.0.0.1:$port after $((SECONDS - start))s"
      return
    fi
    if ((SECONDS - start >= timeout)); then
      tail -n 40 "$logf" >&2 || true
      stop_one "$name"
      die "$name not ready on 127.0.0.1:$port within ${timeout}s (log above; full log: $logf); stopped it"
    fi
    sleep 0.5
  done
}

# launch NAME CMD... starts CMD in its own session, output to the server log.
launch() {
  local name=$1
  shift
  mkdir -p "$state/$name"
  : >"$state/$name/server.log"
  setsid "$@" >>"$state/$name/server.log" 2>&1 </dev/null &
  echo $! >"$state/$name/pid"
}

check_port_free() {
  if port_open "$1"; then
    die "port $1 ($2) is already in use by another process: stop it or set $3"
  fi
}

kafka_up() {
  kafka_node_up kafka 1 "$kafka_port" "1@127.0.0.1:$kafka_ctl_port" 1
}

kafka3_up() {
  local i
  for i in 1 2 3; do
    kafka_node_up "kafka3-$i" "$i" $((kafka3_port + 2 * (i - 1))) "$kafka3_voters" 3
  done
}

# kafka_node_up NAME NODE_ID PORT VOTERS REPLICAS starts one KRaft node
# (broker and controller) listening on PORT, its controller on PORT+1.
kafka_node_up() {
  local name=$1 id=$2 port=$3 voters=$4 rf=$5
  local ctl=$((port + 1)) dir=$state/$1
  if pid_of "$name" >/dev/null; then
    log "$name already running (pid $(pid_of "$name")) on 127.0.0.1:$port"
    return
  fi
  check_port_free "$port" "$name" TRIBUTARY_KAFKA_PORT
  check_port_free "$ctl" "$name controller" TRIBUTARY_KAFKA_PORT
  mkdir -p "$dir/data"
  local isr=1
  ((rf > 1)) && isr=2
  cat >"$dir/server.properties" <<EOF
# written by deploy/local/infra.sh
process.roles=broker,controller
node.id=$id
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$ctl
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$dir/data
num.partitions=4
auto.create.topics.enable=true
delete.topic.enable=true
default.replication.factor=$rf
min.insync.replicas=$isr
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$isr
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$isr
group.initial.rebalance.delay.ms=0
# a dead node loses its partitions' leadership after 3s, not 9s
broker.session.timeout.ms=3000
broker.heartbeat.interval.ms=500
num.network.threads=2
num.io.threads=4
background.threads=4
# the log cleaner runs often so compacted topics (features.tiles) really compact in tests
log.cleaner.enable=true
log.cleaner.threads=1
log.cleaner.backoff.ms=1000
log.cleaner.dedupe.buffer.size=16777216
EOF
  cat >"$dir/log4j2.properties" <<'EOF'
status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.out.ref = out
logger.kafka.name = kafka
logger.kafka.level = info
logger.cleaner.name = kafka.log.LogCleaner
logger.cleaner.level = info
EOF
  local heap=768m
  ((rf > 1)) && heap=384m
  local jvm=(java -Xms256m "-Xmx$heap" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:TieredStopAtLevel=1
    -Djava.awt.headless=true -Dlog4j2.configurationFile="$dir/log4j2.properties"
    -cp "$kafka_lib/*")
  if [[ ! -f $dir/data/meta.properties ]]; then
    log "formatting $name's KRaft storage in $dir/data"
    if ! "${jvm[@]}" kafka.tools.StorageTool format --ignore-formatted \
      -t "$KAFKA_CLUSTER_ID" \
      -c "$dir/server.properties" >"$dir/format.log" 2>&1; then
      cat "$dir/format.log" >&2
      die "formatting $name's storage failed"
    fi
  fi
  log "starting $name (kafka $KAFKA_VERSION) on 127.0.0.1:$port (log: $dir/server.log)"
  launch "$name" "${jvm[@]}" kafka.Kafka "$dir/server.properties"
}

cassandra_up() {
  local dir=$state/cassandra
  if pid_of cassandra >/dev/null; then
    log "cassandra already running (pid $(pid_of cassandra)) on 127.0.0.1:$cql_port"
    return
  fi
  check_port_free "$cql_port" "cassandra CQL" TRIBUTARY_CQL_PORT
  check_port_free "$storage_port" "cassandra storage" TRIBUTARY_CASSANDRA_STORAGE_PORT
  mkdir -p "$dir/data" "$dir/commitlog" "$dir/saved_caches" "$dir/hints" "$dir/cdc_raw" "$dir/logs"
  cat >"$dir/cassandra.yaml" <<EOF
# written by deploy/local/infra.sh: one node on loopback, small and quick to start
cluster_name: tributary-local
num_tokens: 1
initial_token: 0
allocate_tokens_for_local_replication_factor: 1
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
authenticator: AllowAllAuthenticator
authorizer: AllowAllAuthorizer
role_manager: CassandraRoleManager
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "127.0.0.1:$storage_port"
listen_address: 127.0.0.1
rpc_address: 127.0.0.1
storage_port: $storage_port
native_transport_port: $cql_port
start_native_transport: true
endpoint_snitch: SimpleSnitch
data_file_directories: [$dir/data]
commitlog_directory: $dir/commitlog
saved_caches_directory: $dir/saved_caches
hints_directory: $dir/hints
cdc_raw_directory: $dir/cdc_raw
commitlog_sync: periodic
commitlog_sync_period: 10000ms
commit_failure_policy: stop
disk_failure_policy: stop
concurrent_reads: 8
concurrent_writes: 8
concurrent_counter_writes: 4
concurrent_compactors: 1
compaction_throughput: 64MiB/s
memtable_allocation_type: heap_buffers
key_cache_size: 16MiB
storage_compatibility_mode: NONE
# tests create and drop keyspaces and tables: do not snapshot them on drop/truncate
auto_snapshot: false
read_request_timeout: 5000ms
write_request_timeout: 2000ms
request_timeout: 10000ms
EOF
  cat >"$dir/logback.xml" <<EOF
<configuration>
  <appender name="OUT" class="ch.qos.logback.core.ConsoleAppender">
    <encoder><pattern>%-5level [%thread] %date{ISO8601} %F:%L - %msg%n</pattern></encoder>
  </appender>
  <root level="INFO"><appender-ref ref="OUT"/></root>
</configuration>
EOF
  # The JVM options Cassandra's own jvm17-server.options sets for Java 17,
  # a small heap, no remote JMX, and the start-up delays of a multi-node
  # ring turned off (one node, nothing to wait for).
  local jvm=(java -Xms512m -Xmx1g -Xss512k -XX:+UseG1GC -XX:MaxGCPauseMillis=100
    -XX:TieredStopAtLevel=1 -XX:+ExitOnOutOfMemoryError
    -Djava.net.preferIPv4Stack=true -Djava.awt.headless=true
    -Djdk.attach.allowAttachSelf=true
    --add-exports java.base/jdk.internal.misc=ALL-UNNAMED
    --add-exports java.base/jdk.internal.ref=ALL-UNNAMED
    --add-exports java.base/sun.nio.ch=ALL-UNNAMED
    --add-exports java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED
    --add-exports java.rmi/sun.rmi.registry=ALL-UNNAMED
    --add-exports java.rmi/sun.rmi.server=ALL-UNNAMED
    --add-exports java.sql/java.sql=ALL-UNNAMED
    --add-opens java.base/java.lang.module=ALL-UNNAMED
    --add-opens java.base/jdk.internal.loader=ALL-UNNAMED
    --add-opens java.base/jdk.internal.ref=ALL-UNNAMED
    --add-opens java.base/jdk.internal.reflect=ALL-UNNAMED
    --add-opens java.base/jdk.internal.math=ALL-UNNAMED
    --add-opens java.base/jdk.internal.module=ALL-UNNAMED
    --add-opens java.base/jdk.internal.util.jar=ALL-UNNAMED
    --add-opens jdk.management/com.sun.management.internal=ALL-UNNAMED
    --add-opens java.base/sun.nio.ch=ALL-UNNAMED
    --add-opens java.base/java.io=ALL-UNNAMED
    --add-opens java.base/java.nio=ALL-UNNAMED
    --add-opens java.base/java.util.concurrent=ALL-UNNAMED
    --add-opens java.base/java.util=ALL-UNNAMED
    --add-opens java.base/java.util.concurrent.atomic=ALL-UNNAMED
    --add-opens java.base/java.lang=ALL-UNNAMED
    --add-opens java.base/java.math=ALL-UNNAMED
    --add-opens java.base/java.lang.reflect=ALL-UNNAMED
    --add-opens java.base/java.net=ALL-UNNAMED
    -Dcassandra.config="file://$dir/cassandra.yaml"
    -Dlogback.configurationFile="$dir/logback.xml"
    -Dcassandra.logdir="$dir/logs" -Dcassandra.storagedir="$dir"
    -Dcassandra-foreground=yes
    -Dcassandra.skip_wait_for_gossip_to_settle=0
    -Dcassandra.ring_delay_ms=1000
    -Dcassandra.superuser_setup_delay_ms=0
    -Dcassandra.memtable_row_overhead_computation_step=100
    -cp "$cassandra_lib/*")
  log "starting cassandra $CASSANDRA_VERSION on 127.0.0.1:$cql_port (log: $dir/server.log)"
  launch cassandra "${jvm[@]}" org.apache.cassandra.service.CassandraDaemon
}

up() {
  java_check
  fetch
  local t0=$SECONDS
  for s in $(servers); do "${s}_up"; done
  for s in $(servers); do
    case $s in
      kafka) wait_ready kafka "$kafka_port" "Kafka Server started" ;;
      kafka3)
        for i in 1 2 3; do wait_ready "kafka3-$i" $((kafka3_port + 2 * (i - 1))) "Kafka Server started"; done
        ;;
      cassandra) wait_ready cassandra "$cql_port" "Starting listening for CQL clients" ;;
    esac
  done
  log "up in $((SECONDS - t0))s; for the test tier: eval \"\$($0 env)\""
}

stop_one() { stop_nodes "$1"; }

# stop_nodes NAME... sends SIGTERM to every running node first, then waits
# for each (30s, then SIGKILL): the nodes of a KRaft cluster stop cleanly
# only while a quorum of them still runs.
stop_nodes() {
  local name pid pids=() names=()
  for name in "$@"; do
    if pid=$(pid_of "$name"); then
      log "stopping $name (pid $pid)"
      kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid")
      names+=("$name")
    else
      rm -f "$state/$name/pid"
    fi
  done
  local start=$SECONDS i
  for i in "${!pids[@]}"; do
    while kill -0 "${pids[$i]}" 2>/dev/null; do
      if ((SECONDS - start >= 30)); then
        log "${names[$i]} did not stop within 30s of SIGTERM: SIGKILL"
        kill -KILL -- "-${pids[$i]}" 2>/dev/null || kill -KILL "${pids[$i]}" 2>/dev/null || true
        break
      fi
      sleep 0.2
    done
    rm -f "$state/${names[$i]}/pid"
  done
}

down() {
  local s all=()
  for s in $(servers); do all+=($(nodes "$s")); done
  # the fault test's cluster too, when left running
  [[ -z $only ]] && all+=($(nodes kafka3))
  stop_nodes "${all[@]}"
}

# kill NODE stops one node at once (SIGKILL), as a crash would.
kill_node() {
  local pid
  pid=$(pid_of "$1") || die "$1 is not running"
  log "SIGKILL $1 (pid $pid)"
  kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid"
  while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  rm -f "$state/$1/pid"
}

status() {
  local rc=0 pid
  for s in $(servers); do
    local port=$kafka_port
    [[ $s == cassandra ]] && port=$cql_port
    [[ $s == kafka3 ]] && { s=kafka3-1; port=$kafka3_port; }
    if pid=$(pid_of "$s"); then
      if port_open "$port"; then
        echo "$s: running (pid $pid) on 127.0.0.1:$port"
      else
        echo "$s: starting (pid $pid), 127.0.0.1:$port not open yet"
        rc=1
      fi
    else
      echo "$s: stopped"
      rc=1
    fi
  done
  return $rc
}

env_vars() {
  echo "export TRIBUTARY_TEST_KAFKA_BROKERS=127.0.0.1:$kafka_port"
  echo "export TRIBUTARY_SCYLLA_HOSTS=127.0.0.1:$cql_port"
  echo "export TRIBUTARY_TEST_KAFKA3_BROKERS=$kafka3_brokers"
}

case ${1:-} in
  fetch) fetch ;;
  up) up ;;
  down) down ;;
  status) status ;;
  env) env_vars ;;
  kill) kill_node "${2:?usage: $0 kill NODE (e.g. kafka3-2)}" ;;
  *) echo "usage: $0 fetch|up|down|status|env|kill NODE" >&2; exit 2 ;;
esac
