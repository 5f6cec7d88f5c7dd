#!/bin/sh
# Registers the model_minute schema and REALTIME upsert table with a Pinot
# controller. Used by docker-compose.yml (pinot-init) and by the Kubernetes
# Job of deploy/k8s/deps/pinot, from an image with sh, sed and curl.
#
# Environment: PINOT_CONTROLLER (controller URL), PINOT_DIR (this
# directory), KAFKA_BROKERS (optional: replaces the table's
# stream.kafka.broker.list, which names the compose broker kafka:9092).
#
# Re-running is harmless: the schema POST overwrites, and 409 (table
# exists) counts as done. Creating a REALTIME table assigns it to a broker
# and a server and reads the topic's partitions, so those must be up.
set -eu
controller=${PINOT_CONTROLLER:?PINOT_CONTROLLER is not set}
dir=${PINOT_DIR:-/pinot}
table=$dir/model_minute_realtime_table.json
if [ -n "${KAFKA_BROKERS:-}" ]; then
	sed "s#\"stream.kafka.broker.list\": \"[^\"]*\"#\"stream.kafka.broker.list\": \"$KAFKA_BROKERS\"#" "$table" >/tmp/table.json
	table=/tmp/table.json
fi
n=0
until curl -sf "$controller/health" >/dev/null; do
	n=$((n + 1))
	if [ "$n" -ge 60 ]; then echo "pinot controller not healthy at $controller" >&2; exit 1; fi
	sleep 2
done
post() {
	# post <path> <file>: retries, accepts 200 and 409 (already exists)
	i=0
	while :; do
		code=$(curl -s -o /tmp/response -w '%{http_code}' -X POST \
			-H 'Content-Type: application/json' --data-binary "@$2" "$controller$1") || true
		case "$code" in
		200 | 201) echo "POST $1 $2: created"; return 0 ;;
		409) echo "POST $1 $2: already exists"; return 0 ;;
		esac
		i=$((i + 1))
		echo "POST $1 $2: HTTP $code: $(cat /tmp/response 2>/dev/null)" >&2
		if [ "$i" -ge 30 ]; then return 1; fi
		sleep 2
	done
}
post /schemas "$dir/model_minute_schema.json"
post /tables "$table"
