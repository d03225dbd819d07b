# Sourced by scripts/newest-orthanc.sh and scripts/newest-orthanc-chroot.sh: the versions the tests are written
# for in the Orthanc 1.13 chroot (tests/support/orthanc.py checks the same at every Orthanc start: PROMISED),
# and check_newest_versions ROOT, which fails the set-up clearly when forky has moved on.
NEWEST_ORTHANC=1.13          # Debian package orthanc, upstream version 1.13.x
NEWEST_PYTHON_PLUGIN=7       # orthanc-python 7.x
NEWEST_PYTHON=3.14           # the chroot's python3, which the Python plugin embeds

# upstream version of a Debian package version: 1:1.13.0+dfsg-1+b1 -> 1.13.0
_upstream() { sed -E 's/^[0-9]+://; s/[+~-].*$//' <<<"$1"; }
# of the release: 1.13.0 is of 1.13; 1.130 is not
_of_release() { [ "$1" = "$2" ] || [ "${1#"$2".}" != "$1" ]; }

check_newest_versions() {
  local root=$1 orthanc plugin python problems=()
  orthanc=$(chroot "$root" dpkg-query -W -f='${Version}' orthanc 2>/dev/null || echo none)
  plugin=$(chroot "$root" dpkg-query -W -f='${Version}' orthanc-python 2>/dev/null || echo none)
  python=$(chroot "$root" python3 -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null || echo none)
  _of_release "$(_upstream "$orthanc")" "$NEWEST_ORTHANC" || problems+=("Orthanc $orthanc (want $NEWEST_ORTHANC.x)")
  _of_release "$(_upstream "$plugin")" "$NEWEST_PYTHON_PLUGIN" ||
    problems+=("orthanc-python $plugin (want $NEWEST_PYTHON_PLUGIN.x)")
  _of_release "$python" "$NEWEST_PYTHON" || problems+=("Python $python (want $NEWEST_PYTHON)")
  if [ "${#problems[@]}" -gt 0 ]; then
    {
      echo "forky moved on: found ${problems[*]} in the chroot $root;"
      echo "  the tests are written for Orthanc $NEWEST_ORTHANC.x, orthanc-python $NEWEST_PYTHON_PLUGIN.x and Python $NEWEST_PYTHON."
      echo "  Either keep using a chroot built before (ORTHANC_OBJSTORE_FORKY_ROOT=<its folder>), or build one from a"
      echo "  mirror that still serves those versions (MIRROR=<Debian mirror> bash scripts/newest-orthanc.sh), or move"
      echo "  the tests to the new versions: NEWEST_* in scripts/newest-orthanc-versions.sh, NEWEST_VERSION and"
      echo "  PROMISED in tests/support/orthanc.py, the pins in scripts/newest-orthanc-pip.txt, then run the e2e tests."
    } >&2
    return 1
  fi
  echo "== chroot $root: Orthanc $(_upstream "$orthanc"), orthanc-python $(_upstream "$plugin"), Python $python"
}
