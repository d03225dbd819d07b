#!/usr/bin/env bash
# Installs what orthanc-objstore needs on Debian 12, as root: Debian's Orthanc and its Python plugin,
# DCMTK, and a venv made with the Python that Orthanc embeds (/usr/bin/python3) holding the plugin.
#   scripts/setup.sh          plugin + the demo's local S3 server (moto)
#   scripts/setup.sh test     everything the test suite needs as well, including Orthanc 1.13 in a
#                             chroot (scripts/newest-orthanc.sh: built once, about 40 s, then reused)
#                             and Node.js + the Azure emulator Azurite (package.json); the GCS
#                             emulator comes from pip
# Idempotent: what is already there is kept. Mirrors come from the machine's apt and pip configuration.
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-demo}"

apt_packages=(orthanc orthanc-python dcmtk python3-venv curl ca-certificates iproute2 util-linux)
if [ "$what" = test ]; then
  # The scale-out tests run PostgreSQL and Debian's PostgreSQL index plugin for Orthanc, the viewer tests
  # Debian's DICOMweb plugin; the Docker tests validate docker/*.yml with docker-compose's own parser (no
  # Docker daemon needed). The tests' watchdog dumps a frozen Orthanc's native stacks with gdb (its Python
  # stacks with py-spy, a test extra).
  apt_packages+=(postgresql orthanc-postgresql orthanc-dicomweb docker-compose gdb)
  # tests/providers/test_a1_crosscheck.py checks format A1 against Crypto++, the library of the official
  # plugin, through a small program of ours (tests/crosscheck/a1_cryptopp.cpp, built below into build/).
  apt_packages+=(g++ libcrypto++-dev)
  if ! command -v node >/dev/null 2>&1; then
    # Azurite (Azure emulator) needs Node.js. Debian 12's Node 18 (18.20.4) runs the pinned Azurite 3.35.0:
    # 11 of its dependencies (13 package-lock entries, the @azure/* core packages) declare engines
    # node >= 20, which npm ci only warns about (EBADENGINE), and the Azure provider tests
    # (tests/providers -k azure) passed on Node 18, 57 of 57, as on Node 20. Not pinned for that reason;
    # the version check below fails the set-up if a Node cannot run Azurite. A Node already on PATH is kept.
    apt_packages+=(nodejs npm)
  fi
fi
missing=()
for package in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "== installing Debian packages: ${missing[*]}"
  apt-get update -q
  # Debian's postinst would start the orthanc service on the default ports: the demo and the tests
  # run their own Orthanc on free ports, so a running service does not disturb them.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
fi

if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  echo "== creating .venv with /usr/bin/python3 (the Python that Debian's Orthanc embeds)"
  rm -rf .venv
  /usr/bin/python3 -m venv .venv
fi
extra=demo
[ "$what" = test ] && extra=test
echo "== installing orthanc-objstore[$extra] into .venv"
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install -q --disable-pip-version-check ".[$extra]"
# Always reinstall the package itself from this checkout (same version number, new code).
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps --force-reinstall .
if [ "$what" = test ]; then
  # tests/e2e/test_e2e_install.py installs a freshly built wheel into a new venv while the tests run without
  # network: the wheels of the runtime dependencies are gathered now, while the network is there.
  echo "== gathering the runtime dependencies' wheels into build/wheelhouse"
  .venv/bin/python -m pip wheel -q --disable-pip-version-check -w build/wheelhouse .
  rm -f build/wheelhouse/orthanc_objstore-*.whl
  if [ ! -x node_modules/.bin/azurite-blob ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    echo "== installing the Azure emulator (Azurite, pinned in package.json) with npm ci"
    npm ci --no-audit --no-fund --loglevel=error
  fi
  version="$(node_modules/.bin/azurite-blob --version 2>/dev/null || true)"
  if [ "$version" != "3.35.0" ]; then
    echo "Azurite 3.35.0 does not run with node $(node --version) (got: '${version}')" >&2
    exit 1
  fi
  echo "== Azurite $version on node $(node --version)"
  if [ ! -x build/a1_cryptopp ] || [ tests/crosscheck/a1_cryptopp.cpp -nt build/a1_cryptopp ]; then
    echo "== building build/a1_cryptopp (format A1 with Crypto++) from tests/crosscheck/a1_cryptopp.cpp"
    mkdir -p build
    g++ -std=c++17 -O2 -Wall -Wextra -o build/a1_cryptopp.new tests/crosscheck/a1_cryptopp.cpp -lcryptopp
    mv build/a1_cryptopp.new build/a1_cryptopp
  fi
fi
echo "== ready: plugin file $(.venv/bin/orthanc-objstore plugin-path)"
if [ "$what" = test ]; then
  # the end-to-end tests also run on the newest Orthanc (1.13), in a Debian forky chroot built once
  bash scripts/newest-orthanc.sh
fi
