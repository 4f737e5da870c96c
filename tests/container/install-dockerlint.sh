#!/usr/bin/env bash
# Installs the Dockerfile linter (npm's dockerfile-utils, pinned with its
# dependencies by dockerlint/package-lock.json) into .tools/dockerlint of the
# repository. Idempotent: nothing is fetched when the installed lock file is
# the same. Once installed it runs offline.
#   install-dockerlint.sh [SOURCE_DIR]   exit 0: installed; 1: no npm or
#                                        no registry
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=${1:-$(cd "$here/../.." && pwd)}
dest=$repo/.tools/dockerlint
bin=$dest/node_modules/.bin/dockerfile-utils

if [ -x "$bin" ] && cmp -s "$here/dockerlint/package-lock.json" "$dest/package-lock.json"; then
  exit 0
fi
if ! command -v npm >/dev/null; then
  echo "install-dockerlint: npm missing (Debian: apt-get install npm)" >&2
  exit 1
fi
mkdir -p "$dest"
cp "$here/dockerlint/package.json" "$here/dockerlint/package-lock.json" "$dest/"
if ! (cd "$dest" && npm ci --no-audit --no-fund --loglevel=error >&2); then
  echo "install-dockerlint: npm ci failed (no registry?)" >&2
  rm -rf "$dest/node_modules"
  exit 1
fi
echo "install-dockerlint: $("$bin" --version) in $dest" >&2
