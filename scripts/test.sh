#!/usr/bin/env bash
# Sets up everything the tests need (scripts/setup.sh test), then runs the whole suite in two runs: the unit
# and provider tiers in one process, then the end-to-end tier on ORTHANC_OBJSTORE_E2E_WORKERS pytest-xdist
# workers (default 2; 0 runs it in one process, as before). Extra arguments go to both runs, e.g.:
# scripts/test.sh -k naming
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

workers="${ORTHANC_OBJSTORE_E2E_WORKERS:-2}"
case "$workers" in
  ''|*[!0-9]*) echo "ORTHANC_OBJSTORE_E2E_WORKERS must be a number of workers (0: no xdist), not '$workers'" >&2
               exit 2 ;;
esac
parallel=()
if [ "$workers" -gt 0 ]; then
  # loadgroup: the tests of a module with a module-scoped fixture stay on one worker (tests/support/xdist_groups.py)
  parallel=(-n "$workers" --dist loadgroup)
fi

# Orthanc 1.10.1 cannot choose its bind address (it listens on every interface). Where we may, the
# tests run in a network namespace of their own that has only the loopback interface, so nothing
# they start is reachable from outside and nothing they do can reach out.
isolated=0
if [ "$(id -u)" = 0 ] && unshare --net true 2>/dev/null; then
  isolated=1
else
  echo "(not root or no unshare: the tests run in this machine's network namespace)"
fi

run_pytest() {
  local run=(.venv/bin/python -m pytest -ra "$@")
  if [ "$isolated" = 1 ]; then
    unshare --net sh -c 'ip link set lo up && exec "$@"' sh "${run[@]}"
  else
    "${run[@]}"
  fi
}

set +e
echo "== running the unit and provider tests"
run_pytest -m "not e2e" "$@"
first=$?
echo "== running the end-to-end tests (${workers} xdist workers)"
run_pytest -m e2e "${parallel[@]}" "$@"
second=$?
set -e
# 5 is pytest's "no test collected": fine for one run (e.g. -k naming selects no e2e test), not for both
if [ "$first" -eq 5 ] && [ "$second" -eq 5 ]; then
  echo "no test was collected: that is a failure" >&2
  exit 1
fi
for status in "$first" "$second"; do
  if [ "$status" -ne 0 ] && [ "$status" -ne 5 ]; then
    exit "$status"
  fi
done
exit 0
