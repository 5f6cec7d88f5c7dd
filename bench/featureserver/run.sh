#!/usr/bin/env bash
# Featureserver load benchmark (DESIGN.md §6, issue 5's evidence).
#
# Builds the binaries, starts the embedded Kafka broker and the featureserver
# (embedded store in a temp dir, free ports), loads tiles for ENTITIES
# entities of the 50-feature view examples/bench/features/wide.yaml through
# features.tiles, waits until every value is served, then drives the real
# gRPC server with ghz in open loop (--async: a slow answer shows up as
# latency, not as a lower rate):
#   1 entity × 50 features at 1k, 5k and 10k requests/s,
#   100 entities × 50 features at 100 requests/s,
# each followed by a no-op call (grpc.health.v1.Health/Check on the same
# server) at the same rate. The featureserver is pinned to core 0, ghz to
# core 1. It prints one table and stops everything it started.
#
# It fails when a step fails (build, start, load, a run without any OK
# answer); it never fails on latency: benchmarks report, they do not assert.
#
# Environment: DURATION (per run, default 10s), ENTITIES (default 200),
# GHZ (default: ghz on PATH, else ~/go/bin/ghz), SERVER_CPU / CLIENT_CPU
# (default 0 / 1), KEEP=1 keeps the temp dir.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DURATION=${DURATION:-10s}
ENTITIES=${ENTITIES:-200}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
GHZ=${GHZ:-$(command -v ghz || echo "$HOME/go/bin/ghz")}
FEATURES_CALL=tributary.features.v1.FeatureService/GetOnlineFeatures
NOOP_CALL=grpc.health.v1.Health/Check

for tool in "$GHZ" jq taskset curl python3; do
	command -v "$tool" >/dev/null || { echo "bench: $tool not found" >&2; exit 1; }
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/featureserver-bench.XXXXXX")
pids=()
cleanup() {
	local rc=$?
	for pid in "${pids[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in "${pids[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	if [[ ${KEEP:-0} == 1 ]]; then
		echo "bench: kept $tmp" >&2
	else
		rm -rf "$tmp"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "bench: $*" >&2; }

free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# wait_for what seconds cmd...: polls cmd every 100ms until it succeeds.
wait_for() {
	local what=$1 secs=$2
	shift 2
	local deadline=$((SECONDS + secs))
	until "$@" >/dev/null 2>&1; do
		if ((SECONDS >= deadline)); then
			log "$what not ready within ${secs}s"
			return 1
		fi
		for pid in "${pids[@]}"; do
			kill -0 "$pid" 2>/dev/null || { log "process $pid exited while waiting for $what"; return 1; }
		done
		sleep 0.1 # polling interval of a bounded wait
	done
}

log "building into $tmp/bin"
mkdir -p "$tmp/bin" "$tmp/data" "$tmp/out"
(cd "$repo" && go build -o "$tmp/bin/" ./cmd/tributary ./services/featureserver/cmd/featureserver)
(cd "$repo/services/featureserver" && go build -o "$tmp/bin/benchload" ./internal/benchload)

kafka_port=$(free_port)
grpc_port=$(free_port)
admin_port=$(free_port)
brokers=127.0.0.1:$kafka_port
grpc_addr=127.0.0.1:$grpc_port

log "starting the embedded Kafka broker on $brokers"
"$tmp/bin/tributary" kafka --port "$kafka_port" >"$tmp/kafka.log" 2>&1 &
pids+=($!)
wait_for "kafka" 20 bash -c "exec 3<>/dev/tcp/127.0.0.1/$kafka_port"

log "starting the featureserver on $grpc_addr, pinned to cpu $SERVER_CPU"
taskset -c "$SERVER_CPU" "$tmp/bin/featureserver" \
	--kafka-brokers "$brokers" --grpc-addr "$grpc_addr" --admin-addr "127.0.0.1:$admin_port" \
	--features "$repo/examples/bench/features" --data-dir "$tmp/data" --log-level warn \
	>"$tmp/featureserver.log" 2>&1 &
pids+=($!)
wait_for "featureserver /readyz" 30 curl -fsS "http://127.0.0.1:$admin_port/readyz"

log "loading $ENTITIES entities"
"$tmp/bin/benchload" --features "$repo/examples/bench/features" --brokers "$brokers" \
	--grpc "$grpc_addr" --entities "$ENTITIES" --out "$tmp/out"

# ghz_run name call rate data-flag data: one open-loop run, JSON report in
# $tmp/out/<name>.json.
ghz_run() {
	local name=$1 call=$2 rate=$3 dflag=$4 data=$5
	taskset -c "$CLIENT_CPU" "$GHZ" --insecure --async --rps "$rate" --concurrency 16 --connections 1 \
		--duration "$DURATION" --duration-stop wait --timeout 5s \
		--call "$call" "$dflag" "$data" --format json --output "$tmp/out/$name.json" "$grpc_addr" \
		|| { log "ghz $name failed"; return 1; }
	local ok
	ok=$(jq '.statusCodeDistribution.OK // 0' "$tmp/out/$name.json")
	if ((ok == 0)); then
		log "ghz $name: no call succeeded: $(jq -c '.errorDistribution' "$tmp/out/$name.json")"
		return 1
	fi
}

log "warming up (not reported)"
saved=$DURATION
DURATION=3s ghz_run warmup "$FEATURES_CALL" 1000 --data-file "$tmp/out/single.json"
DURATION=$saved

runs=("1x50_1k single 1000" "1x50_5k single 5000" "1x50_10k single 10000" "100x50_100 batch 100")
for r in "${runs[@]}"; do
	read -r name data rate <<<"$r"
	log "run $name: GetOnlineFeatures at $rate/s for $DURATION, then the no-op call"
	ghz_run "$name" "$FEATURES_CALL" "$rate" --data-file "$tmp/out/$data.json"
	ghz_run "${name}_noop" "$NOOP_CALL" "$rate" --data '{}'
done

# ms name percentage: a latency percentile of a run in milliseconds.
ms() { jq -r --argjson p "$2" '(.latencyDistribution // [])[] | select(.percentage == $p) | .latency / 1e6' "$tmp/out/$1.json"; }
# okrate name: OK answers per second of the run.
okrate() { jq -r '(.statusCodeDistribution.OK // 0) / (.total / 1e9)' "$tmp/out/$1.json"; }
errors() { jq -r '[.statusCodeDistribution // {} | to_entries[] | select(.key != "OK") | .value] | add // 0' "$tmp/out/$1.json"; }

echo
echo "featureserver GetOnlineFeatures, embedded store, $ENTITIES entities, server on cpu $SERVER_CPU, ghz on cpu $CLIENT_CPU, $DURATION per run (open loop)"
printf '%-16s %8s %9s %9s %9s %7s | %9s %9s | %9s\n' \
	"shape" "target/s" "achieved" "p50 ms" "p99 ms" "errors" "noop p50" "noop p99" "p99/noop"
for r in "${runs[@]}"; do
	read -r name data rate <<<"$r"
	shape=${name%_*}
	shape="${shape/x/ ent × } feat"
	p50=$(ms "$name" 50) p99=$(ms "$name" 99)
	n50=$(ms "${name}_noop" 50) n99=$(ms "${name}_noop" 99)
	printf '%-16s %8d %9.0f %9.3f %9.3f %7d | %9.3f %9.3f | %8.1fx\n' \
		"$shape" "$rate" "$(okrate "$name")" "$p50" "$p99" "$(errors "$name")" \
		"$n50" "$n99" "$(jq -n --argjson a "$p99" --argjson b "$n99" '$a / $b')"
done
echo "targets (DESIGN.md §6): 1×50 p99 ≤ 1 ms at 1k/s, ≤ 1.5 ms at 5k/s, ≤ 2× the no-op p99, ≥ 10k/s; 100×50 p99 ≤ 5 ms at 100/s"
