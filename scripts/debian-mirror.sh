#!/usr/bin/env bash
# Prints the Debian mirror this machine's apt uses (for scripts/newest-orthanc-chroot.sh), from its apt sources
# in any of the three forms apt reads:
#   sources.list / *.list, one-line:  deb http://mirror/debian bookworm main
#                          with options: deb [signed-by=/usr/share/keyrings/x.gpg arch=amd64] http://mirror/debian bookworm main
#   *.sources, deb822 (Debian 12's default /etc/apt/sources.list.d/debian.sources):
#                                      Types: deb / URIs: http://mirror/debian / Suites: bookworm bookworm-updates
# The files are read in apt's order (sources.list, then sources.list.d/ by name). The first "deb" entry whose
# suites name the release itself (VERSION_CODENAME of os-release, e.g. bookworm) wins, so that a third-party or
# -security repository listed first is not taken for the mirror; failing that, the first "deb" entry whose suites
# are not all -security ones. deb-src entries, "Enabled: no" stanzas, comments and cdrom: URIs are ignored.
#   scripts/debian-mirror.sh [ETC_APT_DIR]     (default /etc/apt; CODENAME=... overrides os-release)
# Exits 1, saying so, when it finds none.
set -euo pipefail
APT_DIR=${1:-/etc/apt}
if [ -z "${CODENAME:-}" ]; then
  CODENAME=$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}") || CODENAME=
fi

files=()
[ -f "$APT_DIR/sources.list" ] && files+=("$APT_DIR/sources.list")
if [ -d "$APT_DIR/sources.list.d" ]; then
  while IFS= read -r file; do files+=("$file"); done < <(
    find "$APT_DIR/sources.list.d" -maxdepth 1 -type f \( -name '*.list' -o -name '*.sources' \) | LC_ALL=C sort)
fi

# every "deb" entry as one line: URI<TAB>SUITES (space-separated)
entries() {
  local file
  for file in "${files[@]}"; do
    case "$file" in
      *.sources)
        awk '
          function flush() {
            if (types ~ /(^| )deb( |$)/ && tolower(enabled) != "no" && uris != "") {
              split(uris, u, " "); printf "%s\t%s\n", u[1], suites
            }
            types = ""; uris = ""; suites = ""; enabled = ""; field = ""
          }
          /^#/ { next }
          /^[ \t]*$/ { flush(); next }
          /^[ \t]/ {                       # a continuation line of the previous field
            sub(/^[ \t]+/, ""); if (field == "uris") uris = uris " " $0; else if (field == "suites") suites = suites " " $0
            next
          }
          {
            name = tolower($0); sub(/:.*/, "", name); value = $0; sub(/^[^:]*:[ \t]*/, "", value)
            gsub(/[ \t]+/, " ", value); sub(/ $/, "", value); field = name
            if (name == "types") types = value
            else if (name == "uris") uris = value
            else if (name == "suites") suites = value
            else if (name == "enabled") enabled = value
          }
          END { flush() }' "$file" ;;
      *)
        awk '
          { sub(/#.*/, "") }
          $1 == "deb" {
            line = $0; sub(/^[ \t]*deb[ \t]+/, "", line)
            if (line ~ /^\[/) { if (!sub(/^\[[^]]*\][ \t]*/, "", line)) next }   # [options], spaces allowed inside
            n = split(line, word, /[ \t]+/)
            if (n >= 2) printf "%s\t%s\n", word[1], word[2]
          }' "$file" ;;
    esac
  done | awk -F '\t' '$1 !~ /^cdrom:/'
}

list=$(entries)
mirror=
if [ -n "$CODENAME" ]; then
  mirror=$(printf '%s\n' "$list" | awk -F '\t' -v c="$CODENAME" \
    '{ n = split($2, s, " "); for (i = 1; i <= n; i++) if (s[i] == c) { print $1; exit } }')
fi
if [ -z "$mirror" ]; then
  mirror=$(printf '%s\n' "$list" | awk -F '\t' \
    '$1 != "" { n = split($2, s, " "); for (i = 1; i <= n; i++) if (s[i] !~ /-security$/) { print $1; exit } }')
fi
if [ -z "$mirror" ]; then
  echo "no Debian mirror found in the apt sources of $APT_DIR (sources.list, sources.list.d/*.list or *.sources);" \
    "set MIRROR=http://your-mirror/debian" >&2
  exit 1
fi
echo "$mirror"
