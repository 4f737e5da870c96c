# shellcheck shell=bash
# Sourced by scripts that fetch Debian packages (make-debian-base.sh,
# fetch-perf-analyzer.sh): which mirror this machine's apt already uses, so
# that no script names a host of its own.
#
#   apt_mirror SUITE   prints the URI of every deb source apt has for SUITE
#                      (deb822 files, *.sources, first; then one-line lists),
#                      one per line; nothing when apt has none.

# The URI apt uses for SUITE: deb822 files (*.sources) and one-line lists.
apt_mirror() {
  local want=$1 f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    # Stanzas are separated by blank lines; print the first URI of a stanza
    # of Types deb whose Suites name WANT.
    awk -v want="$want" '
      function flush() { if (isdeb && hit && uri != "") { print uri; found = 1; exit } isdeb = 0; hit = 0; uri = "" }
      /^[[:space:]]*$/ { flush(); next }
      /^[[:space:]]*#/ { next }
      tolower($1) == "types:" { for (i = 2; i <= NF; i++) if ($i == "deb") isdeb = 1 }
      tolower($1) == "uris:" { uri = $2 }
      tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i == want) hit = 1 }
      END { if (!found) flush() }' "$f"
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    # deb [options] URI SUITE COMPONENTS...
    sed -e 's/\[[^]]*\]//' "$f" | awk -v want="$want" '$1 == "deb" && $3 == want { print $2 }'
  done
}
