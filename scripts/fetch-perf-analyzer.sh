#!/usr/bin/env bash
# Installs Triton's load generator, perf_analyzer, runnable on Debian 12
# without changing anything system-wide:
#
#   .tools/perf-analyzer/bin/perf_analyzer   the binary, from the PyPI wheel
#       pinned (version and sha256) in scripts/requirements/downloads.txt
#   .tools/perf-analyzer/runtime/            Debian 13 (trixie)'s C and C++
#       runtime (libc6, libstdc++6, libgcc-s1, libssl3t64, zlib1g), unpacked
#       with dpkg-deb -x: the binary needs glibc 2.38 and GLIBCXX_3.4.32;
#       Debian 12 has glibc 2.36
#   .tools/bin/perf_analyzer                 the wrapper to run: the binary
#       started by that runtime's dynamic loader with --library-path; it
#       also answers --help with the usage (perf_analyzer itself has no
#       --help: it prints the usage, exit 99, when run without arguments)
#   .tools/perf-analyzer/VERSIONS            what was installed
#
# The wheel comes from PyPI through the project's pip (.venv/bin/pip,
# --require-hashes). The .debs come from the Debian mirror this machine's apt
# already uses (scripts/lib/apt-mirror.sh; trixie and trixie-security of
# that mirror), through apt-get with its own sources, lists and cache under a
# temporary directory, checked against the Debian archive keyring
# (/usr/share/keyrings/debian-archive-keyring.gpg, which must know trixie's
# keys, as the current Debian 12 debian-archive-keyring does; an older one is
# upgraded here from apt's own sources when we are root).
#
# Idempotent: with the same pin already installed and the wrapper working, it
# only prints the version. FORCE=1 reinstalls. Needs apt-get, dpkg-deb and
# the project's venv (scripts/requirements/venv.txt); root only to upgrade an
# old keyring.
#
# Usage: scripts/fetch-perf-analyzer.sh
#        CLIPSERVE_TOOLS_DIR=DIR scripts/fetch-perf-analyzer.sh   (default <repo>/.tools)
# Environment: CLIPSERVE_VENV (default <repo>/.venv), DEBIAN_MIRROR,
# SECURITY_MIRROR (default: apt's mirrors for bookworm, bookworm-security).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
tools=${CLIPSERVE_TOOLS_DIR:-$repo/.tools}
venv=${CLIPSERVE_VENV:-$repo/.venv}
dest=$tools/perf-analyzer
wrapper=$tools/bin/perf_analyzer
suite=trixie
debs=(libc6 libstdc++6 libgcc-s1 libssl3t64 zlib1g)
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
multiarch=x86_64-linux-gnu

log() { echo "fetch-perf-analyzer: $*" >&2; }
die() { log "error: $*"; exit 1; }
trap 'log "error: failed at line $LINENO: $BASH_COMMAND"' ERR

# apt_mirror SUITE: the URI apt uses for SUITE.
source "$repo/scripts/lib/apt-mirror.sh"
# pinned_wheel, pinned_version, pinned_sha256: the wheels downloads.txt pins.
source "$repo/scripts/lib/pinned-wheel.sh"

[ "$(uname -m)" = x86_64 ] || die "the wheel is manylinux x86_64 only (this is $(uname -m))"
for tool in apt-get dpkg-deb; do
  command -v "$tool" >/dev/null || die "$tool missing (a Debian machine is assumed)"
done
[ -x "$venv/bin/pip" ] && [ -x "$venv/bin/python" ] ||
  die "no project venv at $venv (pip install --no-deps --require-hashes -r scripts/requirements/venv.txt)"

version=$(pinned_version perf-analyzer)
# What an installation is checked against: the pinned version and hash.
pin="perf-analyzer==$version sha256:$(pinned_sha256 perf-analyzer)"

mkdir -p "$tools/bin"
# One install at a time (two build directories may run their tests at once).
exec 9>"$tools/.perf-analyzer.lock"
if command -v flock >/dev/null; then flock 9; fi

installed_ok() {
  [ -x "$wrapper" ] && [ -f "$dest/VERSIONS" ] || return 1
  # The pin it was installed from, byte for byte.
  [ "$(sed -n '/^# pin$/,/^# debs/p' "$dest/VERSIONS" | sed '1d;$d')" = "$pin" ] || return 1
  "$wrapper" --help >/dev/null 2>&1
}

if [ "${FORCE:-0}" != 1 ] && installed_ok; then
  log "perf_analyzer $version present: $wrapper"
  exit 0
fi

work=$(mktemp -d "$tools/.perf-analyzer.XXXXXX")
# apt's own lists, cache and downloads: under the system's temporary
# directory, which apt's unprivileged _apt user can reach wherever the
# checkout lives.
apt_dir=$(mktemp -d "${TMPDIR:-/tmp}/clipserve-perf-analyzer-apt.XXXXXX")
chmod 755 "$apt_dir"
trap 'rm -rf "$work" "$apt_dir"' EXIT
new=$work/perf-analyzer
mkdir -p "$new/bin" "$new/runtime"

# --- the wheel ---------------------------------------------------------------
wheel=$(pinned_wheel perf-analyzer "$work/wheel" --platform manylinux_2_38_x86_64)
"$venv/bin/python" - "$wheel" "$new/bin/perf_analyzer" <<'EOF'
import os, shutil, sys, zipfile
wheel, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open("perf_analyzer/bin/perf_analyzer") as src, \
        open(out, "wb") as dst:
    shutil.copyfileobj(src, dst)
os.chmod(out, 0o755)
EOF

# --- Debian 13's runtime -------------------------------------------------------
if [ ! -f /usr/share/keyrings/debian-archive-trixie-automatic.gpg ]; then
  [ "$(id -u)" = 0 ] || die "$keyring lacks Debian 13 (trixie)'s keys: upgrade debian-archive-keyring (as root: apt-get install debian-archive-keyring)"
  log "upgrading debian-archive-keyring (it lacks Debian 13's keys)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --only-upgrade debian-archive-keyring >/dev/null
  [ -f /usr/share/keyrings/debian-archive-trixie-automatic.gpg ] ||
    die "debian-archive-keyring still lacks Debian 13's keys after the upgrade"
fi
mirror=${DEBIAN_MIRROR:-$(apt_mirror bookworm | head -n1)}
security=${SECURITY_MIRROR:-$(apt_mirror bookworm-security | head -n1)}
[ -n "$mirror" ] || die "apt has no deb source for bookworm to take the mirror from (set DEBIAN_MIRROR)"
mkdir -p "$apt_dir/sources.list.d" "$apt_dir/preferences.d" "$apt_dir/state/lists/partial" \
  "$apt_dir/cache/archives/partial" "$apt_dir/debs"
{
  echo "deb [signed-by=$keyring] $mirror $suite main"
  if [ -n "$security" ]; then echo "deb [signed-by=$keyring] $security $suite-security main"; fi
} >"$apt_dir/sources.list"
# Only this directory's sources, lists, cache and pins; the machine's other
# apt settings (proxies, ...) still apply. Packages indexes only: no
# Contents, DEP-11 or translations, whatever apt.conf.d enables.
apt_opts=(
  -o "Dir::Etc::SourceList=$apt_dir/sources.list"
  -o "Dir::Etc::SourceParts=$apt_dir/sources.list.d"
  -o "Dir::Etc::Preferences=$apt_dir/preferences"
  -o "Dir::Etc::PreferencesParts=$apt_dir/preferences.d"
  -o "Dir::State=$apt_dir/state"
  -o "Dir::Cache=$apt_dir/cache"
  -o "Acquire::Languages=none"
)
for target in $(apt-config dump | sed -n 's/^Acquire::IndexTargets::deb::\([^:]*\) .*/\1/p' | sort -u); do
  [ "$target" = Packages ] || apt_opts+=(-o "Acquire::IndexTargets::deb::$target::DefaultEnabled=false")
done
# apt downloads as the unprivileged _apt user when run as root.
if [ "$(id -u)" = 0 ] && id _apt >/dev/null 2>&1; then
  chown -R _apt "$apt_dir/state/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/debs"
fi
log "apt-get update ($suite from $mirror${security:+, $suite-security from $security})"
apt-get "${apt_opts[@]}" -qq update >"$apt_dir/update.log" 2>&1 || {
  cat "$apt_dir/update.log" >&2
  die "apt-get update of $suite failed"
}
# A source that failed (e.g. a bad signature) is only a warning to apt.
if grep -E '^(W|E):' "$apt_dir/update.log" >&2; then
  die "apt-get update of $suite reported errors or warnings (above)"
fi
log "apt-get download ${debs[*]}"
(cd "$apt_dir/debs" && apt-get "${apt_opts[@]}" -qq download "${debs[@]}")
for deb in "$apt_dir"/debs/*.deb; do
  dpkg-deb -x "$deb" "$new/runtime"
done
lib=$new/runtime/usr/lib/$multiarch
[ -f "$lib/ld-linux-x86-64.so.2" ] || die "libc6 of $suite has no $multiarch/ld-linux-x86-64.so.2"

{
  echo "# perf_analyzer $version, installed by scripts/fetch-perf-analyzer.sh"
  echo "# pin"
  printf '%s\n' "$pin"
  echo "# debs ($suite, from $mirror)"
  for deb in "$apt_dir"/debs/*.deb; do
    # shellcheck disable=SC2016  # dpkg-deb's own ${field} syntax
    dpkg-deb --show --showformat='${Package} ${Version}\n' "$deb"
  done
} >"$new/VERSIONS"

# --- the wrapper -----------------------------------------------------------------
cat >"$work/wrapper" <<'EOF'
#!/bin/sh
# Triton's perf_analyzer, run by Debian 13's dynamic loader on the runtime
# unpacked beside it (scripts/fetch-perf-analyzer.sh): nothing system-wide.
# perf_analyzer itself has no --help (it prints its usage, exit 99, when run
# without arguments); here --help and -h print that usage and exit 0.
d=$(dirname -- "$(readlink -f -- "$0")")/../perf-analyzer
lib=$d/runtime/usr/lib/x86_64-linux-gnu
if [ $# -eq 1 ] && { [ "$1" = --help ] || [ "$1" = -h ]; }; then
  usage=$("$lib/ld-linux-x86-64.so.2" --library-path "$lib" --argv0 perf_analyzer \
    "$d/bin/perf_analyzer" 2>&1)
  printf '%s\n' "$usage"
  case $usage in Usage:*) exit 0 ;; *) exit 1 ;; esac
fi
exec "$lib/ld-linux-x86-64.so.2" --library-path "$lib" --argv0 perf_analyzer \
  "$d/bin/perf_analyzer" "$@"
EOF
chmod 755 "$work/wrapper"

rm -rf "$dest"
mv "$new" "$dest"
mv "$work/wrapper" "$wrapper"
"$wrapper" --help >"$work/help.txt" 2>&1 || {
  cat "$work/help.txt" >&2
  die "$wrapper --help failed"
}
grep -q -- '--concurrency-range' "$work/help.txt" || {
  cat "$work/help.txt" >&2
  die "$wrapper --help does not look like perf_analyzer's"
}
"$wrapper" --version >"$work/version.txt" 2>&1 && grep -q 'Perf Analyzer Version' "$work/version.txt" || {
  cat "$work/version.txt" >&2
  die "$wrapper --version failed"
}
log "perf_analyzer $version installed: $wrapper ($(sed -n '/^# debs/,$p' "$dest/VERSIONS" | sed 1d | paste -sd, -))"
