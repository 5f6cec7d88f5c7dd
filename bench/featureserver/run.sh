#!/usr/bin/env bash
# Featureserver load benchmark (DESIGN.md §6, issue 5's evidence).
#
# Builds the binaries, starts the embedded Kafka broker and the featureserver
# (embedded store in a temp dir, free ports), loads tiles for ENTITIES
# entities of the 50-feature view examples/bench/features/wide.yaml through
# features.tiles, waits until every value is served as expected, then drives
# the real gRPC server in open loop (a slow answer shows up as latency, not
# as a lower rate):
#   1 entity × 50 features at 1k, 5k and 10k requests/s,
#   100 entities × 50 features at 100 requests/s,
# each followed by a no-op call (grpc.health.v1.Health/Check on the same
# server) at the same rate. Then it measures the maximum of each shape in
# closed loop: MAX_CALLERS_1 (MAX_CALLERS_100) callers each sending their
# next call as soon as the last is answered, answers checked on the wire
# (rows × values counted, no messages built, so the one-core client keeps
# up); it reports the achieved OK answers/s and which core was full. The
# featureserver is pinned to core 0 and the load generator to core 1. It
# prints the tables, with the server's CPU time per call next to the
# latencies, and stops everything it started.
#
# The load generator is benchdrive (services/featureserver/internal/
# benchdrive), a Go client decoding answers with the generated code. ghz
# (LOADGEN=ghz) decodes answers into dynamic messages, ~150 µs of client CPU
# per 1 × 50 answer and ~17 ms per 100 × 50 one, so on one core it tops out
# near 3.7k/s and 50/s and its own queueing reads as server latency.
#
# It fails when a step fails (build, start, load, a run without any OK
# answer); it never fails on latency: benchmarks report, they do not assert.
#
# Environment: DURATION (per run, default 10s), ENTITIES (default 200),
# MAX_CALLERS_1 / MAX_CALLERS_100 (closed-loop callers, default 32 / 8;
# 0 skips that maximum run),
# LOADGEN (benchdrive or ghz), GHZ (default: ghz on PATH, else ~/go/bin/ghz),
# SERVER_CPU / CLIENT_CPU (default 0 / 1), KEEP=1 keeps the temp dir,
# SERVER_ENV: NAME=value words set only in the featureserver's environment
# (e.g. SERVER_ENV=GODEBUG=gctrace=1: the table then gets a GC line).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DURATION=${DURATION:-10s}
ENTITIES=${ENTITIES:-200}
MAX_CALLERS_1=${MAX_CALLERS_1:-32}
MAX_CALLERS_100=${MAX_CALLERS_100:-8}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
LOADGEN=${LOADGEN:-benchdrive}
GHZ=${GHZ:-$(command -v ghz || echo "$HOME/go/bin/ghz")}
FEATURES_CALL=tributary.features.v1.FeatureService/GetOnlineFeatures
NOOP_CALL=grpc.health.v1.Health/Check

tools=(jq taskset curl python3 getconf)
case $LOADGEN in
benchdrive) ;;
ghz) tools+=("$GHZ") ;;
*) echo "bench: LOADGEN=$LOADGEN is not benchdrive or ghz" >&2; exit 1 ;;
esac
for tool in "${tools[@]}"; do
	command -v "$tool" >/dev/null || { echo "bench: $tool not found" >&2; exit 1; }
done

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
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
(cd "$repo/services/featureserver" && go build -o "$tmp/bin/" ./internal/benchload ./internal/benchdrive)

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
# shellcheck disable=SC2086 # SERVER_ENV is a list of words
env ${SERVER_ENV:-} taskset -c "$SERVER_CPU" "$tmp/bin/featureserver" \
	--kafka-brokers "$brokers" --grpc-addr "$grpc_addr" --admin-addr "127.0.0.1:$admin_port" \
	--features "$repo/examples/bench/features" --data-dir "$tmp/data" --log-level warn \
	>"$tmp/featureserver.log" 2>&1 &
server_pid=$!
pids+=("$server_pid")
wait_for "featureserver /readyz" 30 curl -fsS "http://127.0.0.1:$admin_port/readyz"

log "loading $ENTITIES entities"
"$tmp/bin/benchload" --features "$repo/examples/bench/features" --brokers "$brokers" \
	--grpc "$grpc_addr" --entities "$ENTITIES" --out "$tmp/out"

# server_cpu: CPU time (user + system, in clock ticks) the featureserver
# has used so far. The server's CPU per call does not depend on how much
# of its core other processes take; its latency does.
clk_tck=$(getconf CLK_TCK)
server_cpu() { awk '{ print $14 + $15 }' "/proc/$server_pid/stat"; }

# drive name call rate [data]: one open-loop run of call (features or noop)
# at rate per second; the report (benchdrive's JSON) goes to
# $tmp/out/<name>.json with the server's CPU µs per call added.
drive() {
	local name=$1 call=$2 rate=$3 data=${4:-}
	local cpu0 out=$tmp/out/$name.json
	cpu0=$(server_cpu)
	if [[ $LOADGEN == ghz ]]; then
		local method=$NOOP_CALL dflag=(--data '{}')
		if [[ $call == features ]]; then
			method=$FEATURES_CALL dflag=(--data-file "$data")
		fi
		taskset -c "$CLIENT_CPU" "$GHZ" --insecure --async --rps "$rate" --concurrency 16 --connections 1 \
			--duration "$DURATION" --duration-stop wait --timeout 5s --call "$method" "${dflag[@]}" \
			--format json --output "$tmp/out/$name.ghz.json" "$grpc_addr" || { log "ghz $name failed"; return 1; }
		# The same report shape as benchdrive's.
		jq --argjson rate "$rate" '{rate: $rate, count, ok: (.statusCodeDistribution.OK // 0),
			codes: (.statusCodeDistribution // {} | with_entries(select(.key != "OK"))), skipped: 0,
			elapsed_s: (.total / 1e9), ok_per_s: ((.statusCodeDistribution.OK // 0) / (.total / 1e9)),
			p50_ms: ((.latencyDistribution // [])[] | select(.percentage == 50) | .latency / 1e6),
			p99_ms: ((.latencyDistribution // [])[] | select(.percentage == 99) | .latency / 1e6)}' \
			"$tmp/out/$name.ghz.json" >"$out"
		if [[ $(jq '.ok' "$out") == 0 ]]; then
			log "ghz $name: no call succeeded: $(jq -c '.errorDistribution' "$tmp/out/$name.ghz.json")"
			return 1
		fi
	elif [[ $call == max ]]; then
		# rate is the number of closed-loop callers here.
		taskset -c "$CLIENT_CPU" "$tmp/bin/benchdrive" --addr "$grpc_addr" --call features --data "$data" \
			--concurrency "$rate" --decode shape --duration "$DURATION" --timeout 5s >"$out" || { log "benchdrive $name failed"; return 1; }
	else
		taskset -c "$CLIENT_CPU" "$tmp/bin/benchdrive" --addr "$grpc_addr" --call "$call" --data "$data" \
			--rate "$rate" --duration "$DURATION" --timeout 5s >"$out" || { log "benchdrive $name failed"; return 1; }
	fi
	local cpu1
	cpu1=$(server_cpu)
	jq --argjson ticks "$((cpu1 - cpu0))" --argjson hz "$clk_tck" \
		'. + {server_cpu_us: ($ticks * 1e6 / $hz / .count)}' "$out" >"$out.tmp" && mv "$out.tmp" "$out"
}

# The server's own background work (Kafka polling, GC of the tile heap),
# which every run's CPU per call includes.
idle0=$(server_cpu)
sleep 3 # measuring idle CPU over 3s, not synchronisation
idle_ms_per_s=$(( ($(server_cpu) - idle0) * 1000 / clk_tck / 3 ))

log "warming up (not reported)"
saved=$DURATION
DURATION=3s drive warmup features 1000 "$tmp/out/single.json"
DURATION=$saved

gc_from=$(grep -c '^gc ' "$tmp/featureserver.log" || true)
runs_start=$SECONDS
runs=("1x50_1k single 1000" "1x50_5k single 5000" "1x50_10k single 10000" "100x50_100 batch 100")
for r in "${runs[@]}"; do
	read -r name data rate <<<"$r"
	log "run $name: GetOnlineFeatures at $rate/s for $DURATION, then the no-op call"
	drive "$name" features "$rate" "$tmp/out/$data.json"
	drive "${name}_noop" noop "$rate"
done
maxruns=()
if [[ $LOADGEN == benchdrive ]]; then
	((MAX_CALLERS_1 > 0)) && maxruns+=("1x50_max single $MAX_CALLERS_1")
	((MAX_CALLERS_100 > 0)) && maxruns+=("100x50_max batch $MAX_CALLERS_100")
fi
for r in "${maxruns[@]}"; do
	read -r name data callers <<<"$r"
	log "run $name: GetOnlineFeatures in closed loop, $callers callers, for $DURATION"
	drive "$name" max "$callers" "$tmp/out/$data.json"
done

runs_secs=$((SECONDS - runs_start))

# field name key: one number of a run's report.
field() { jq -r ".$2 // 0" "$tmp/out/$1.json"; }
errors() { jq -r '([.codes[]] | add // 0) + .skipped' "$tmp/out/$1.json"; }

echo
echo "featureserver GetOnlineFeatures, embedded store, $ENTITIES entities, server on cpu $SERVER_CPU, load generator ($LOADGEN) on cpu $CLIENT_CPU, $DURATION per run (open loop)"
printf '%-17s %8s %8s %8s %9s %6s %7s | %8s %8s %7s | %8s\n' \
	"shape" "target/s" "achieved" "p50 ms" "p99 ms" "errors" "cpu µs" "noop p50" "noop p99" "cpu µs" "p99/noop"
for r in "${runs[@]}"; do
	read -r name data rate <<<"$r"
	shape=${name%_*}
	shape="${shape/x/ ent × } feat"
	p99=$(field "$name" p99_ms) n99=$(field "${name}_noop" p99_ms)
	printf '%-17s %8d %8.0f %8.3f %9.3f %6d %7.0f | %8.3f %8.3f %7.0f | %7.1fx\n' \
		"$shape" "$rate" "$(field "$name" ok_per_s)" "$(field "$name" p50_ms)" "$p99" "$(errors "$name")" \
		"$(field "$name" server_cpu_us)" "$(field "${name}_noop" p50_ms)" "$n99" "$(field "${name}_noop" server_cpu_us)" \
		"$(jq -n --argjson a "$p99" --argjson b "$n99" '$a / $b')"
done
echo "achieved: OK answers/s; p50/p99 of OK answers; errors: non-OK answers (RESOURCE_EXHAUSTED past --max-in-flight, DEADLINE_EXCEEDED past the 5s timeout) and calls the load generator skipped;"
echo "cpu µs: featureserver CPU time per call (user+system, all its threads), independent of what else runs on its core;"
echo "        it includes the server's background work (${idle_ms_per_s} ms of CPU per second when idle: Kafka polling, GC); at low rates each"
echo "        call also pays its own wake-ups and system calls, which calls share at high rates"
if ((${#maxruns[@]} > 0)); then
	echo
	echo "maximum: closed loop, each caller sends its next call when the last is answered; answers checked on the wire (rows × values), no messages built"
	printf '%-17s %8s %8s %8s %9s %6s %7s %7s | %s\n' "shape" "callers" "achieved" "p50 ms" "p99 ms" "errors" "cpu µs" "client" "full core (CPU use at the achieved rate)"
	for r in "${maxruns[@]}"; do
		read -r name data callers <<<"$r"
		shape=${name%_*}
		shape="${shape/x/ ent × } feat"
		ok=$(field "$name" ok_per_s) scpu=$(field "$name" server_cpu_us) ccpu=$(field "$name" client_cpu_us)
		printf '%-17s %8d %8.0f %8.3f %9.3f %6d %7.0f %7.0f | %s\n' \
			"$shape" "$callers" "$ok" "$(field "$name" p50_ms)" "$(field "$name" p99_ms)" "$(errors "$name")" "$scpu" "$ccpu" \
			"$(awk -v r="$ok" -v s="$scpu" -v c="$ccpu" 'BEGIN { su = r * s / 1e4; cu = r * c / 1e4
				who = "neither (add callers)"; if (su >= 90) who = "server"; if (cu >= 90 && cu > su) who = "client"
				printf "%s (server %.0f%%, client %.0f%%)", who, su, cu }')"
	done
	echo "cpu µs / client: featureserver / load generator CPU time per call; a core is full at 1e6 / (µs per call) calls per second"
fi
echo "load average (1, 5, 15 min; $(nproc) cores): $load_before before the benchmark, $(cut -d' ' -f1-3 /proc/loadavg) after it"
if ((gc_from > 0)) || grep -q '^gc ' "$tmp/featureserver.log"; then
	# gctrace lines: "gc N @Ts P%: a+b+c ms clock, a+ast/bg/idle+c ms cpu, H0->H1->H2 MB, G MB goal, ...".
	grep '^gc ' "$tmp/featureserver.log" | tail -n +"$((gc_from + 1))" | awk -v secs="$runs_secs" '
		{ split($5, clk, "+"); mark += clk[2]; if (clk[2] > maxmark) maxmark = clk[2]
		  split($8, c, "[+/]"); cpu += c[1] + c[2] + c[3] + c[5]
		  split($11, h, "->"); heap += h[3]; n++ }
		END { if (n == 0) { print "gc (gctrace): no GC during the runs"; exit }
		      printf "gc (gctrace) during the runs (%ds): %d GCs (one per %.1fs), %.0f ms GC CPU per GC (%.1f%% of the runs), mark %.0f ms mean, %.0f ms max (wall), live heap %.0f MB mean\n",
		             secs, n, secs / n, cpu / n, cpu / 10 / secs, mark / n, maxmark, heap / n }'
fi
echo "targets (DESIGN.md §6): 1×50 p99 ≤ 1 ms at 1k/s, ≤ 1.5 ms at 5k/s, ≤ 2× the no-op p99, max ≥ 10k/s; 100×50 p99 ≤ 5 ms at 100/s, max ≥ 1k/s"
