#!/usr/bin/env bash
# Creates (once) the Python environment the Go tests use as a real client
# (services/offline reads its archive with DuckDB and pyarrow), and prints
# its interpreter. Use it as:
#   export TRIBUTARY_TEST_PYTHON=$(scripts/python-test-env.sh)
# The venv and pip's cache live in ${TRIBUTARY_CACHE_DIR:-$HOME/.cache/tributary};
# it is rebuilt when the pinned requirements change.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cache=${TRIBUTARY_CACHE_DIR:-$HOME/.cache/tributary}
venv=$cache/venv
reqs=("$root/services/offline/testdata/requirements.txt")
stamp=$venv/.requirements.sha256
want=$(cat "${reqs[@]}" | sha256sum | cut -d' ' -f1)
if [[ ! -x $venv/bin/python || ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
	mkdir -p "$cache"
	python3 -m venv "$venv" >&2
	for r in "${reqs[@]}"; do
		PIP_CACHE_DIR=$cache/pip "$venv/bin/python" -m pip install --disable-pip-version-check -q -r "$r" >&2
	done
	echo "$want" >"$stamp"
fi
echo "$venv/bin/python"
