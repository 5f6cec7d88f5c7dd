#!/usr/bin/env bash
# Memory under steady load (DESIGN.md §6: flat under a 10-minute steady
# load). Builds and starts `tributary dev` (the five services in one
# process, the embedded Kafka broker, a throw-away PostgreSQL and the fraud
# workload), lets it warm up, then reads the process's Go heap in use
# every 2 seconds from an admin /metrics and prints, per INTERVAL for
# DURATION, its lowest and highest reading (the lowest is about the live
# heap: right after a collection), resident memory, live goroutines and
# the tiles the featurizer holds (state grows until the longest window's
# tiles start to expire, an hour into the demo for its 1h windows kept in
# 5-minute tiles), and the growth from the first interval to the last.
#
# It never fails on growth (a measurement, not an assertion); it fails
# when a step fails (build, start, a service not answering).
#
# Environment: DURATION (default 10m), INTERVAL (default 30s), WARMUP
# (default 60s), KEEP=1 keeps the log.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DURATION=${DURATION:-10m}
INTERVAL=${INTERVAL:-30s}
WARMUP=${WARMUP:-60s}
secs() { local d=$1; case $d in *m) echo $((${d%m} * 60)) ;; *s) echo "${d%s}" ;; *) echo "$d" ;; esac; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/soak.XXXXXX")
pid=
cleanup() {
	local rc=$?
	if [[ -n $pid ]]; then
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	fi
	if [[ ${KEEP:-0} == 1 ]]; then echo "soak: kept $tmp" >&2; else rm -rf "$tmp"; fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "soak: building" >&2
(cd "$repo" && go build -o "$tmp/tributary" ./cmd/tributary)
"$tmp/tributary" dev >"$tmp/dev.log" 2>&1 &
pid=$!

# name:admin port, as DESIGN.md §4 assigns them.
services=(ingest:8081 featurizer:8082 featureserver:8083 modelserver:8084 metrics:8085)
for s in "${services[@]}"; do
	port=${s#*:}
	for _ in $(seq 1 600); do
		curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
		kill -0 "$pid" 2>/dev/null || { echo "soak: tributary dev exited:" >&2; tail -20 "$tmp/dev.log" >&2; exit 1; }
		sleep 0.1 # polling interval of a bounded wait
	done
	curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null || { echo "soak: ${s%%:*} not ready" >&2; exit 1; }
done
echo "soak: all services ready; warming up for $WARMUP" >&2
sleep "$(secs "$WARMUP")" # warm-up before the first sample, not synchronisation

# metric name: a gauge's value from the process's Prometheus page (all
# five services share the process, so any admin port tells).
metric() { curl -fsS "http://127.0.0.1:${2:-8081}/metrics" | awk -v n="$1" '$1 == n { v = $2 } END { printf "%.0f", v }'; }
mib() { echo $(($1 / 1048576)); }

printf '%-8s %14s %14s %10s %11s %12s | %s\n' "t (s)" "heap min MiB" "heap max MiB" "rss MiB" "goroutines" "state tiles" "workload (tributary dev summary)"
start=$SECONDS
end=$((start + $(secs "$DURATION")))
first=
while :; do
	lo= hi=0
	until_=$((SECONDS + $(secs "$INTERVAL")))
	while :; do
		h=$(metric go_memstats_heap_inuse_bytes)
		[[ -z $lo || $h -lt $lo ]] && lo=$h
		((h > hi)) && hi=$h
		((SECONDS >= until_)) && break
		sleep 2 # the reading interval
	done
	r=$(metric process_resident_memory_bytes) g=$(metric go_goroutines) tl=$(metric tributary_featurizer_state_tiles 8082)
	printf '%-8d %14d %14d %10d %11d %12d | %s\n' $((SECONDS - start)) "$(mib "$lo")" "$(mib "$hi")" "$(mib "$r")" "$g" "$tl" \
		"$(grep 'events/s' "$tmp/dev.log" | tail -1 | cut -c1-110)"
	[[ -z $first ]] && first="$lo $r $g"
	last="$lo $r $g"
	((SECONDS >= end)) && break
done

read -r h0 r0 g0 <<<"$first"
read -r h1 r1 g1 <<<"$last"
echo
printf 'over %s: lowest heap in use %d -> %d MiB (%+d), resident %d -> %d MiB (%+d), goroutines %d -> %d\n' \
	"$DURATION" "$(mib "$h0")" "$(mib "$h1")" $(($(mib "$h1") - $(mib "$h0"))) "$(mib "$r0")" "$(mib "$r1")" $(($(mib "$r1") - $(mib "$r0"))) "$g0" "$g1"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) cores)"
