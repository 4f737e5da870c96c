#!/usr/bin/env bash
# Validates deploy/docker-compose.yml against the Compose Specification's
# JSON schema, offline: check-jsonschema --builtin-schema vendor.compose-spec
# (the schema that check-jsonschema vendors; PyPI check-jsonschema, pinned in
# scripts/requirements/venv.txt). Unknown keys, wrong types and bad values
# (ports, durations, restart policies, GPU device reservations) fail; it
# complements compose_config.sh, which asks docker-compose itself.
#   compose_schema.sh SOURCE_DIR [CHECK_JSONSCHEMA]
# CHECK_JSONSCHEMA: default $CLIPSERVE_VENV/bin/check-jsonschema,
# CLIPSERVE_VENV defaulting to SOURCE_DIR/.venv (scripts/install-deps.sh
# installs it). Fails when it is missing.
set -uo pipefail
repo=${1:?usage: compose_schema.sh SOURCE_DIR [CHECK_JSONSCHEMA]}
checker=${2:-${CLIPSERVE_VENV:-$repo/.venv}/bin/check-jsonschema}
file=$repo/deploy/docker-compose.yml
[ -x "$checker" ] ||
  { echo "FAIL: $checker missing (scripts/install-deps.sh installs it into .venv)"; exit 1; }
[ -f "$file" ] || { echo "FAIL: $file missing"; exit 1; }
"$checker" --version
if ! "$checker" --color never --builtin-schema vendor.compose-spec "$file"; then
  echo "FAIL: deploy/docker-compose.yml does not match the Compose Specification's schema"
  exit 1
fi
echo "compose schema: OK"
