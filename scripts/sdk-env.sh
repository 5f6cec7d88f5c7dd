#!/usr/bin/env bash
# Creates (or refreshes) the Python SDK's test environment and prints its
# interpreter: a venv under ${TRIBUTARY_CACHE_DIR:-$HOME/.cache/tributary}/sdk-venv
# (pip's cache beside it) with ./sdk/python and its test extras installed,
# every version pinned by sdk/python/requirements-test.txt. The SDK itself is
# reinstalled on every call (it is quick; the dependencies only when the pins
# change). Needs Python 3.11 or newer: $PYTHON, else python3.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cache=${TRIBUTARY_CACHE_DIR:-$HOME/.cache/tributary}
venv=$cache/sdk-venv
python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
	echo "sdk-env: the Python SDK needs Python 3.11 or newer; $python is $("$python" --version 2>&1 || echo missing) (set PYTHON=...)" >&2
	exit 1
fi
sdk=$root/sdk/python
stamp=$venv/.requirements.sha256
want=$(cat "$sdk/requirements-test.txt" "$sdk/pyproject.toml" | sha256sum | cut -d' ' -f1)
export PIP_CACHE_DIR=$cache/pip PIP_DISABLE_PIP_VERSION_CHECK=1
if [[ ! -x $venv/bin/python || ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
	mkdir -p "$cache"
	rm -rf "$venv"
	"$python" -m venv "$venv" >&2
	"$venv/bin/python" -m pip install -q -c "$sdk/requirements-test.txt" "$sdk[test]" >&2
	echo "$want" >"$stamp"
fi
# The SDK's own code, fresh from the checkout (a build directory would be left in the tree).
build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
cp -r "$sdk/." "$build/"
rm -rf "$build/build" "$build"/*.egg-info
"$venv/bin/python" -m pip install -q --no-deps --force-reinstall "$build" >&2
echo "$venv/bin/python"
