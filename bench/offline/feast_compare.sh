#!/usr/bin/env bash
# Latest-value training sets: Tributary's point-in-time engine vs Feast's
# own get_historical_features (file offline store) on the same data and
# spine; checks the values are identical and prints both timings.
# Feast is installed from PyPI into a cache venv, for this benchmark only.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cache="${TRIBUTARY_CACHE_DIR:-$HOME/.cache/tributary}"
venv="$cache/feast-venv"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import feast, sys; sys.exit(feast.__version__ != "0.67.0")' 2>/dev/null; then
	echo "installing feast==0.67.0 into $venv"
	python3 -m venv "$venv"
	"$venv/bin/pip" install -q feast==0.67.0
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$root/services/offline" && go build -o "$work/feastbench" ./internal/feastbench)
"$venv/bin/python" "$here/feast_compare.py" --work "$work/data" --binary "$work/feastbench" "$@"
