#!/usr/bin/env bash
# Sets up everything the tests need (scripts/setup.sh test), then runs the whole suite.
# Extra arguments go to pytest, e.g.: scripts/test.sh -k naming
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
echo "== running the tests"
set +e
.venv/bin/python -m pytest -ra "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "no test was collected: that is a failure" >&2
  exit 1
fi
exit "$status"
