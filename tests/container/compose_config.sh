#!/usr/bin/env bash
# Validates deploy/docker-compose.yml with Compose itself, offline: Debian's
# docker-compose (v1, 1.29: the Compose Specification, profiles, GPU device
# reservations) or the docker compose v2 plugin, whichever is installed;
# `config` resolves and validates the file without a Docker engine.
#   compose_config.sh SOURCE_DIR
# Fails when neither is installed (Debian: apt-get install docker-compose;
# scripts/install-deps.sh installs it).
set -uo pipefail
repo=${1:?usage: compose_config.sh SOURCE_DIR}
file=$repo/deploy/docker-compose.yml
if command -v docker-compose >/dev/null; then
  compose=(docker-compose)
elif command -v docker >/dev/null && docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
else
  echo "FAIL: neither docker-compose nor docker compose installed (scripts/install-deps.sh installs docker-compose)"
  exit 1
fi
"${compose[@]}" --version
# --project-directory: the file's own folder, as when run from anywhere.
out=$("${compose[@]}" -f "$file" --project-directory "$repo/deploy" config 2>&1)
rc=$?
if [ $rc != 0 ]; then
  echo "$out"
  echo "FAIL: ${compose[*]} config rejects deploy/docker-compose.yml"
  exit 1
fi
# The services it resolved, GPU profile included.
services=$("${compose[@]}" -f "$file" --project-directory "$repo/deploy" config --services 2>/dev/null | sort | tr '\n' ' ')
echo "services: $services"
for s in clipserve clipserve-gpu grafana prometheus; do
  case " $services " in *" $s "*) ;; *) echo "FAIL: service $s missing"; exit 1 ;; esac
done
echo "docker-compose config: OK"
