#!/usr/bin/env bash
# Lints deploy/Dockerfile.cpu and deploy/Dockerfile.gpu with dockerfile-utils
# (the Dockerfile validator of VS Code's Docker support: unknown instructions
# and flags, bad ARG/FROM use, duplicate CMD/ENTRYPOINT/HEALTHCHECK, malformed
# JSON forms, ...). Any diagnostic, warning or error, fails.
#   lint_dockerfiles.sh SOURCE_DIR
# Fails when the linter cannot be installed (no npm, or no registry on first use).
set -uo pipefail
repo=${1:?usage: lint_dockerfiles.sh SOURCE_DIR}
here=$(cd "$(dirname "$0")" && pwd)
bin=$repo/.tools/dockerlint/node_modules/.bin/dockerfile-utils
bash "$here/install-dockerlint.sh" "$repo" || { echo "FAIL: dockerfile linter not installed"; exit 1; }
command -v node >/dev/null || { echo "FAIL: node missing (scripts/install-deps.sh installs it)"; exit 1; }

failed=0
for f in "$repo"/deploy/Dockerfile.cpu "$repo"/deploy/Dockerfile.gpu; do
  [ -f "$f" ] || { echo "missing: $f"; failed=1; continue; }
  out=$("$bin" lint --json "$f")
  if [ "$out" != "[]" ]; then
    echo "$f:"
    "$bin" lint "$f"
    failed=1
  else
    echo "$(basename "$f"): clean ($("$bin" --version))"
  fi
done
exit $failed
