#!/usr/bin/env bash
# Memory under steady load (DESIGN.md §6: flat under a 10-minute steady
# load). Builds and starts `tributary dev` (the five services, the embedded
# Kafka broker, a throw-away PostgreSQL and the fraud workload), lets it
# warm up, then samples every service's Go heap in use and resident memory
# from its admin /metrics every INTERVAL for DURATION, and prints one row
# per sample and each service's growth from the first sample to the last.
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

# metric port name: a gauge's value from the service's Prometheus page.
metric() { curl -fsS "http://127.0.0.1:$1/metrics" | awk -v n="$2" '$1 == n { printf "%.0f", $2 / 1048576; exit }'; }

printf '%-8s' "t (s)"
for s in "${services[@]}"; do printf ' %22s' "${s%%:*} heap/rss MiB"; done
printf ' | %s\n' "workload (tributary dev summary)"
declare -A first last
start=$SECONDS
end=$((start + $(secs "$DURATION")))
while :; do
	printf '%-8d' $((SECONDS - start))
	for s in "${services[@]}"; do
		port=${s#*:}
		h=$(metric "$port" go_memstats_heap_inuse_bytes) r=$(metric "$port" process_resident_memory_bytes)
		printf ' %22s' "$h / $r"
		[[ -z ${first[$port]:-} ]] && first[$port]="$h $r"
		last[$port]="$h $r"
	done
	printf ' | %s\n' "$(grep 'events/s' "$tmp/dev.log" | tail -1 | cut -c1-100)"
	((SECONDS >= end)) && break
	sleep "$(secs "$INTERVAL")" # the sampling interval
done

echo
echo "growth from the first sample to the last over $DURATION (heap in use / resident, MiB):"
for s in "${services[@]}"; do
	port=${s#*:}
	read -r h0 r0 <<<"${first[$port]}"
	read -r h1 r1 <<<"${last[$port]}"
	printf '  %-14s heap %5d -> %5d (%+d)   rss %5d -> %5d (%+d)\n' "${s%%:*}" "$h0" "$h1" $((h1 - h0)) "$r0" "$r1" $((r1 - r0))
done
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) cores)"
