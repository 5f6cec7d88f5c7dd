#!/usr/bin/env bash
# The real-server test tier (`make test-infra`): the suites below run on the
# servers `make infra-up` started (deploy/local/infra.sh), none may skip.
# Packages run one at a time (-p 1): tests share the one Kafka cluster, and
# a test that takes it resets it (libs/testutil.Kafka).
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
eval "$(deploy/local/infra.sh env)"
if ! deploy/local/infra.sh status; then
  echo "test-infra: the real servers are not running: run 'make infra-up' first" >&2
  exit 1
fi
export TRIBUTARY_TEST_POSTGRES_DSN=${TRIBUTARY_TEST_POSTGRES_DSN:-postgres://tributary:tributary@127.0.0.1:5432/tributary}
# The CQL fault test restarts Cassandra through the same script.
export TRIBUTARY_TEST_CQL_RESTART=$repo/deploy/local/infra.sh
logs=${TRIBUTARY_INFRA_DIR:-$repo/.infra}/test-logs
mkdir -p "$logs"
failed=()

# suite NAME MODULE RUN PACKAGES... runs the tests matching RUN (and not
# $skip, when set) in PACKAGES of MODULE; it fails when one fails or skips.
suite() {
  local name=$1 module=$2 run=$3
  shift 3
  local log=$logs/$name.log t0=$SECONDS
  printf '\n== %s (%s: %s)\n' "$name" "$module" "$*"
  if (cd "$module" && go test -count=1 -p 1 -timeout 10m -v -run "$run" ${skip:+-skip "$skip"} "$@") >"$log" 2>&1; then
    rc=0
  else
    rc=1
  fi
  grep -E '^(--- |ok |FAIL|panic:)' "$log" | grep -v '^    ---' || true
  if grep -q -- '--- SKIP' "$log"; then
    grep -B3 -- '--- SKIP' "$log" | grep -E 'SKIP|\.go:' >&2 || true
    echo "test-infra: $name: a test skipped; every test of this tier must run" >&2
    rc=1
  fi
  if ! grep -qE '^(--- PASS|=== RUN)' "$log"; then
    echo "test-infra: $name: no test ran (pattern $run)" >&2
    rc=1
  fi
  if ((rc != 0)); then
    tail -n 40 "$log" >&2
    failed+=("$name")
  fi
  printf '   %s: %ds, log %s\n' "$name" $((SECONDS - t0)) "$log"
}

# (the broker fault test runs last, on its own cluster)
skip=TestBrokerKilledMidStreamLosesNothing suite kafka-clients libs '.' ./kafka/
suite cql-store-conformance services/featureserver 'TestConformanceOnScyllaDB' ./internal/store/scylla/
suite featureserver-restore services/featureserver 'TestServesTheTilesOfACompactedTopic|TestTilesFromKafkaAreServed' .
suite end-to-end cmd/tributary 'TestEndToEnd' .
suite ingest-sigkill services/ingest 'TestSIGKILLLosesNothing' .
suite featurizer-crash services/featurizer 'TestCrashAtRandomPointsEndsWithTheSameTiles' ./internal/kafkaio/
suite featurizer-rebalance services/featurizer 'TestTwoInstancesRebalanceToTheTilesOfOne' .
suite cql-restart services/featureserver 'TestCQLServerRestartAnswersUnavailableThenRecovers' .
suite metrics-restarts services/metrics 'TestServiceAggregatesRestartsAndAnswers|TestCrashBeforeCommitRestoresSameRows' . ./internal/stream/

# Broker faults need a three-node cluster: started for this suite only.
kafka3() { TRIBUTARY_INFRA_ONLY=kafka3 deploy/local/infra.sh "$@"; }
if kafka3 up; then
  export TRIBUTARY_TEST_KAFKA3_CONTROL=$repo/deploy/local/infra.sh
  suite kafka-broker-fault libs 'TestBrokerKilledMidStreamLosesNothing' ./kafka/
else
  failed+=(kafka3-up)
fi
kafka3 down

if ((${#failed[@]})); then
  echo "test-infra: failed: ${failed[*]}" >&2
  exit 1
fi
echo "test-infra: every suite passed on the real servers"
