#!/usr/bin/env bash
# Sets up everything the tests need (scripts/setup.sh test), then runs the whole suite.
# Extra arguments go to pytest, e.g.: scripts/test.sh -k naming
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
echo "== static checks of the package: ruff, mypy, the layers (lint-imports, contracts in pyproject.toml);"
echo "   of the documentation: mkdocs build --strict"
.venv/bin/ruff check orthanc_objstore
.venv/bin/mypy orthanc_objstore
.venv/bin/lint-imports
# offline: no plugin of mkdocs.yml downloads anything; --strict fails on a page missing from the nav, a
# broken link or a broken anchor. NO_MKDOCS_2_WARNING silences the theme's banner about MkDocs 2.
NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict --quiet
echo "== running the tests"
# Orthanc 1.10.1 cannot choose its bind address (it listens on every interface). Where we may, the
# tests run in a network namespace of their own that has only the loopback interface, so nothing
# they start is reachable from outside and nothing they do can reach out.
run=(.venv/bin/python -m pytest -ra "$@")
set +e
if [ "$(id -u)" = 0 ] && unshare --net true 2>/dev/null; then
  unshare --net sh -c 'ip link set lo up && exec "$@"' sh "${run[@]}"
else
  echo "(not root or no unshare: the tests run in this machine's network namespace)"
  "${run[@]}"
fi
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "no test was collected: that is a failure" >&2
  exit 1
fi
exit "$status"
