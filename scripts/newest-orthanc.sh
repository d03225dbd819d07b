#!/usr/bin/env bash
# The newest Orthanc (1.13 + Python plugin 7.1, Debian forky) in a chroot, for the test suite, next to
# the host's Debian 12 Orthanc 1.10.1. Run as root; scripts/setup.sh test calls it.
#   scripts/newest-orthanc.sh            build the chroot if missing (about 40 s), then install the plugin
#   scripts/newest-orthanc.sh install    (re)install this checkout's plugin only: run it after changing code
# The chroot lives in a fixed cache folder, shared by every checkout and reused when present:
#   ORTHANC_OBJSTORE_FORKY_ROOT (default /var/cache/orthanc-objstore/forky); tests/support/orthanc.py
#   reads the same variable. Delete it with: rm -rf --one-file-system "$ORTHANC_OBJSTORE_FORKY_ROOT"
# Inside, the plugin sits in a venv made with the chroot's Python 3.14 (/opt/orthanc-objstore), which sees
# Debian's python3-boto3 and python3-cryptography (--system-site-packages), as an administrator would do.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=${ORTHANC_OBJSTORE_FORKY_ROOT:-/var/cache/orthanc-objstore/forky}
VENV=/opt/orthanc-objstore
what="${1:-all}"
[ "$(id -u)" = 0 ] || { echo "run as root (chroot needs it)" >&2; exit 1; }

if [ "$what" = all ] && [ ! -e "$ROOT/etc/os-release" ]; then
  echo "== building the Orthanc 1.13 chroot in $ROOT"
  mkdir -p "$(dirname "$ROOT")"
  exec 9>"$ROOT.lock"; flock 9        # two checkouts setting up at once build it once
  if [ ! -e "$ROOT/etc/os-release" ]; then
    partial="$ROOT.partial"
    umount "$partial/proc" 2>/dev/null || true
    rm -rf --one-file-system "$partial"
    METHOD=mmdebstrap AZURE=pip ROOT="$partial" bash scripts/newest-orthanc-chroot.sh
    mv "$partial" "$ROOT"             # only a complete chroot ever gets the final name
  fi
  flock -u 9
fi
[ -e "$ROOT/etc/os-release" ] || { echo "no chroot in $ROOT: run $0 first" >&2; exit 1; }
# built now or reused: it must hold the versions the tests are written for
. scripts/newest-orthanc-versions.sh
check_newest_versions "$ROOT"

# Debian packages the tests need beyond what newest-orthanc-chroot.sh (the verified build, kept as is)
# installs: the PostgreSQL index plugin of the scale-out tests, the DICOMweb plugin of the viewer tests.
extra=(orthanc-postgresql orthanc-dicomweb)
missing=()
for package in "${extra[@]}"; do
  chroot "$ROOT" dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "== installing into the chroot: ${missing[*]}"
  mount -t proc proc "$ROOT/proc"
  trap 'umount "$ROOT/proc" 2>/dev/null || true' EXIT
  chroot "$ROOT" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  chroot "$ROOT" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  chroot "$ROOT" apt-get clean
  umount "$ROOT/proc"; trap - EXIT
fi

if [ ! -x "$ROOT$VENV/bin/python" ]; then
  echo "== creating $VENV in the chroot with its $(chroot "$ROOT" python3 --version)"
  chroot "$ROOT" python3 -m venv --system-site-packages "$VENV"
fi
echo "== installing orthanc-objstore into the chroot's $VENV"
wheels=$(mktemp -d)
trap 'rm -rf "$wheels" "$ROOT/tmp/objstore-wheel"' EXIT
.venv/bin/python -m pip wheel -q --disable-pip-version-check --no-deps -w "$wheels" . >/dev/null
mkdir -p "$ROOT/tmp/objstore-wheel"
cp "$wheels"/orthanc_objstore-*.whl "$ROOT/tmp/objstore-wheel/"
wheel=/tmp/objstore-wheel/$(basename "$wheels"/orthanc_objstore-*.whl)
# The host's PIP_FIND_LINKS / PIP_CONSTRAINT may name host-only paths; the dependencies come from Debian,
# the optional extras the tests use (azure-identity, azure-keyvault-keys, google-cloud-kms) from PyPI, pinned
# by newest-orthanc-pip.txt (a chroot built before they were pinned gets them here).
cp scripts/newest-orthanc-pip.txt "$ROOT/tmp/objstore-wheel/constraints.txt"
pip_in_root() { chroot "$ROOT" env -u PIP_FIND_LINKS -u PIP_CONSTRAINT "$VENV/bin/pip" -q --disable-pip-version-check "$@"; }
pip_in_root install -c /tmp/objstore-wheel/constraints.txt "$wheel[azure,azure-keyvault,gcp-kms]"
pip_in_root install --no-deps --force-reinstall "$wheel"
echo "== ready: Orthanc 1.13 plugin file $(chroot "$ROOT" "$VENV/bin/orthanc-objstore" plugin-path) (in $ROOT)"
