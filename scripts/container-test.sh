#!/usr/bin/env bash
# Builds the CPU image (deploy/Dockerfile.cpu) for real and runs it, with no
# Docker engine and no registry: Debian's buildah (vfs storage, chroot
# isolation) on a Debian 12 base image made locally with debootstrap
# (scripts/make-debian-base.sh). Then:
#   - checks the image's configuration (user 10001, tini entrypoint,
#     STOPSIGNAL, VOLUME /models, ports, HEALTHCHECK);
#   - starts the image's ENTRYPOINT + CMD in a container on the host network,
#     in the background;
#   - with the project's client built on the host: health, metadata, one
#     random clip classified; the image's own HEALTHCHECK command inside the
#     container; the metrics endpoint from outside;
#   - SIGTERM to the container's PID 1 (tini), as `docker stop` does: the
#     server must drain and the container exit 0, in bounded time.
# Also runs the container lints (tests/container) with their tools installed.
# Prints the time of each phase; exits non-zero on any failure.
#
# Needs root and the host build's client (build/client/clipserve-client;
# .ci/run calls this after scripts/test.sh built it).
#
# Environment:
#   CLIPSERVE_CLIENT  host client binary (default build/client/clipserve-client)
#   CONTAINER_WORK    buildah storage, base tarball, logs
#                     (default /var/tmp/clipserve-container; reused: the base
#                     image and its tarball are made once)
#   IMAGE             tag of the built image (default localhost/clipserve:cpu)
#   BASE_IMAGE        base (default localhost/debian:bookworm-slim, made if absent)
#   BUILD_TIMEOUT     seconds the image build may take (default 1500)
#   KEEP_IMAGE=0      remove the built image at the end (default: keep it)
#   SKIP_BUILD=1      reuse the image if present (debugging the run phases)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

work=${CONTAINER_WORK:-/var/tmp/clipserve-container}
image=${IMAGE:-localhost/clipserve:cpu}
base_image=${BASE_IMAGE:-localhost/debian:bookworm-slim}
client=${CLIPSERVE_CLIENT:-build/client/clipserve-client}
build_timeout=${BUILD_TIMEOUT:-1500}
start_timeout=180    # server start-up (builds the I3D) inside the container
stop_timeout=90      # drain after SIGTERM (--drain-timeout-seconds is 30)

export BUILDAH_ROOT=$work/storage BUILDAH_RUNROOT=$work/run CACHE_DIR=$work
export BUILDAH_ISOLATION=chroot
bah=(buildah --storage-driver vfs --root "$BUILDAH_ROOT" --runroot "$BUILDAH_RUNROOT")

say() { echo "== container-test: $*"; }
fail() { echo "container-test: FAILED: $*" >&2; exit 1; }

# ---- timings ----
phases=()
t_all=$(date +%s.%N)
t_phase=$t_all
phase_name=""
phase() {  # phase NAME: ends the running phase, starts NAME
  local now
  now=$(date +%s.%N)
  if [ -n "$phase_name" ]; then
    phases+=("$(awk -v n="$phase_name" -v a="$t_phase" -v b="$now" 'BEGIN{printf "%-10s %7.1f s", n, b - a}')")
  fi
  phase_name=$1
  t_phase=$now
  [ -n "$1" ] && say "phase $1"
  return 0
}
print_timings() {
  phase ""
  echo "== container-test: timings"
  local p
  for p in "${phases[@]}"; do echo "   $p"; done
  awk -v a="$t_all" -v b="$(date +%s.%N)" 'BEGIN{printf "   %-10s %7.1f s\n", "total", b - a}'
}

# ---- cleanup: only what this run started ----
ctr=""
run_pid=""
tmp=$(mktemp -d)
cleanup() {
  local rc=$?
  set +e
  if [ -n "$run_pid" ] && kill -0 "$run_pid" 2>/dev/null; then
    say "cleanup: stopping the container's processes"
    for p in $(descendants "$run_pid"); do kill -KILL "$p" 2>/dev/null; done
    # buildah run reaps them and exits; it is killed only if it does not.
    for _ in $(seq 50); do kill -0 "$run_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$run_pid" 2>/dev/null
    wait "$run_pid" 2>/dev/null
  fi
  [ -n "$ctr" ] && "${bah[@]}" rm "$ctr" >/dev/null 2>&1
  if [ "${KEEP_IMAGE:-1}" = 0 ]; then "${bah[@]}" rmi "$image" >/dev/null 2>&1; fi
  rm -rf "$tmp"
  print_timings
  if [ $rc = 0 ]; then say "PASSED"; else echo "container-test: FAILED (exit $rc)" >&2; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# All descendants of PID (children first-level, then theirs), from /proc.
descendants() {
  local kids k
  kids=$(cat /proc/"$1"/task/*/children 2>/dev/null || true)
  for k in $kids; do echo "$k"; descendants "$k"; done
}

# ---- tools ----
phase tools
[ "$(id -u)" = 0 ] || fail "needs root (buildah with vfs storage, debootstrap)"
[ -x "$client" ] || fail "$client missing: build the project first (scripts/build.sh)"
need=()
for p in buildah debootstrap docker-compose; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need+=("$p")
done
if ((${#need[@]})); then
  say "apt-get install ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
buildah --version

# ---- lints (tests/container), with their tools present ----
# hadolint and check-jsonschema come from the project's .venv (PyPI,
# scripts/requirements/venv.txt; scripts/install-deps.sh makes it).
phase lint
venv=${CLIPSERVE_VENV:-$repo/.venv}
for t in hadolint check-jsonschema; do
  [ -x "$venv/bin/$t" ] || fail "$venv/bin/$t missing: run scripts/install-deps.sh"
done
for t in check_dockerfiles.py check_compose.py selftest.py; do
  /usr/bin/python3 "tests/container/$t" "$repo" || fail "tests/container/$t"
done
bash tests/container/lint_dockerfiles.sh "$repo" "$venv/bin/hadolint" || fail "dockerfile lint"
bash tests/container/compose_schema.sh "$repo" "$venv/bin/check-jsonschema" || fail "compose schema"
bash tests/container/compose_config.sh "$repo" || fail "docker-compose config"

# ---- base image ----
phase base
bash scripts/make-debian-base.sh "$base_image"

# ---- build ----
phase build
build_log=$work/build.log
if [ "${SKIP_BUILD:-0}" = 1 ] && "${bah[@]}" inspect --type image "$image" >/dev/null 2>&1; then
  say "SKIP_BUILD=1: reusing $image"
else
  # The image's pip (LibTorch's wheel) uses the PyPI index this machine's pip
  # is set up with, if any (else pip's default).
  pip_index=${PIP_INDEX_URL:-$("$repo/.venv/bin/pip" config get global.index-url 2>/dev/null || true)}
  # ... and the CA bundle it is set up to trust (a TLS-inspecting proxy's
  # CA may be in it), as a build secret: it never lands in a layer.
  pip_cert=${PIP_CERT:-$("$repo/.venv/bin/pip" config get global.cert 2>/dev/null || true)}
  secret=()
  if [ -n "$pip_cert" ] && [ -s "$pip_cert" ]; then secret=(--secret "id=pip_cert,src=$pip_cert"); fi
  say "buildah bud -f deploy/Dockerfile.cpu --build-arg BASE_IMAGE=$base_image -t $image (log: $build_log)"
  # Each log line gets the seconds since the build started (the STEP lines
  # show where the time goes).
  stamp() { local t0=$SECONDS l; while IFS= read -r l; do printf '%5ds %s\n' $((SECONDS - t0)) "$l"; done; }
  if ! timeout "$build_timeout" "${bah[@]}" bud \
      --isolation chroot --layers=false --pull=never --force-rm --format docker \
      --build-arg BASE_IMAGE="$base_image" --build-arg PIP_INDEX_URL="$pip_index" "${secret[@]}" \
      -f deploy/Dockerfile.cpu -t "$image" . 2>&1 | stamp >"$build_log"; then
    tail -n 40 "$build_log" >&2
    fail "image build (exit status above; timeout ${build_timeout} s)"
  fi
  grep -E '^ *[0-9]+s (\[[0-9/]+\] )?(STEP|COMMIT)' "$build_log" | cut -c1-110 || true
  tail -n 2 "$build_log"
  # Drop the previous build of the same tag, if any (vfs keeps full copies).
  "${bah[@]}" rmi --prune >/dev/null 2>&1 || true
fi
"${bah[@]}" images "$image"

# ---- image configuration ----
phase inspect
"${bah[@]}" inspect --type image "$image" >"$tmp/image.json"
# The Docker-format configuration, as built; prints ENTRYPOINT and CMD as
# JSON on two lines for the run phase.
/usr/bin/python3 - "$tmp/image.json" >"$tmp/argv.json" <<'PY' || fail "image configuration (above)"
import json, sys
image = json.load(open(sys.argv[1]))["Docker"]
c = image["config"]
want = {
    "User": "10001:10001",
    "Entrypoint": ["/usr/bin/tini", "--", "clipserve"],
    "Cmd": ["--grpc-port", "8001", "--metrics-port", "8002"],
    "StopSignal": "SIGTERM",
    "Volumes": {"/models": {}},
    "ExposedPorts": {"8001/tcp": {}, "8002/tcp": {}},
}
bad = [f"{k}: {c.get(k)!r}, want {v!r}" for k, v in want.items() if c.get(k) != v]
hc = (c.get("Healthcheck") or {}).get("Test")
if hc != ["CMD", "clipserve-client", "--server", "localhost:8001", "health"]:
    bad.append(f"Healthcheck {hc!r}")
for b in bad:
    print("image config:", b, file=sys.stderr)
print(f"user {c['User']}, entrypoint {c.get('Entrypoint')}, cmd {c.get('Cmd')}, "
      f"stop signal {c.get('StopSignal')}, volumes {list(c.get('Volumes') or {})}, "
      f"ports {list(c.get('ExposedPorts') or {})}, healthcheck {hc}, "
      f"layers {len(image['rootfs']['diff_ids'])}", file=sys.stderr)
print(json.dumps(c.get("Entrypoint")))
print(json.dumps(c.get("Cmd")))
sys.exit(1 if bad else 0)
PY
entrypoint=$(sed -n 1p "$tmp/argv.json")
cmd=$(sed -n 2p "$tmp/argv.json")

# ---- run: the image's ENTRYPOINT and CMD, host network ----
phase start
port_free() { ! (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null; }
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
mapfile -t argv < <(/usr/bin/python3 -c 'import json,sys; [print(a) for a in json.loads(sys.argv[1])+json.loads(sys.argv[2])]' "$entrypoint" "$cmd")
grpc_port=8001 metrics_port=8002
if ! port_free 8001 || ! port_free 8002; then
  # Something on this machine holds the default ports (host networking):
  # the same command with other ports, as `docker run IMAGE --grpc-port ...`.
  grpc_port=$(free_port); metrics_port=$(free_port)
  while [ "$metrics_port" = "$grpc_port" ]; do metrics_port=$(free_port); done
  argv=("${argv[@]:0:3}" --grpc-port "$grpc_port" --metrics-port "$metrics_port")
  say "ports 8001/8002 busy here: using $grpc_port/$metrics_port"
fi
ctr=$("${bah[@]}" from --pull=never --name "clipserve-ci-$$" "$image")
server_log=$work/server.log
# chroot isolation has no PID namespace, so tini is not PID 1 here as it is
# under Docker: TINI_SUBREAPER makes it reap orphans all the same (and keeps
# it from warning). SIGTERM goes to tini below, as docker stop sends it to
# PID 1.
say "buildah run --network host $ctr -- ${argv[*]}"
"${bah[@]}" run --isolation chroot --network host --env TINI_SUBREAPER=1 "$ctr" -- "${argv[@]}" \
  >"$server_log" 2>&1 &
run_pid=$!
deadline=$((SECONDS + start_timeout))
until grep -q "serving gRPC on port $grpc_port" "$server_log"; do
  kill -0 "$run_pid" 2>/dev/null || { cat "$server_log" >&2; fail "the container exited during start-up"; }
  ((SECONDS < deadline)) || { cat "$server_log" >&2; fail "no 'serving gRPC' within ${start_timeout} s"; }
  sleep 0.5
done
grep -q "serving metrics on port $metrics_port" "$server_log" || fail "no 'serving metrics on port $metrics_port'"
cat "$server_log"

# The container's init: tini, running clipserve as uid 10001.
tini_pid=""
for p in $(descendants "$run_pid"); do
  if [ "$(cat /proc/"$p"/comm 2>/dev/null)" = tini ]; then tini_pid=$p; break; fi
done
[ -n "$tini_pid" ] || fail "no tini among the container's processes"
server_pid=$(cat /proc/"$tini_pid"/task/*/children | awk '{print $1; exit}')
[ "$(cat /proc/"$server_pid"/comm)" = clipserve ] || fail "tini's child is not clipserve"
server_uid=$(awk '/^Uid:/{print $2}' /proc/"$server_pid"/status)
[ "$server_uid" = 10001 ] || fail "clipserve runs as uid $server_uid, not 10001"
say "tini pid $tini_pid, clipserve pid $server_pid (uid $server_uid)"

# ---- requests from outside, with the host's client ----
phase requests
addr=localhost:$grpc_port
"$client" --server "$addr" health | tee "$tmp/health" || fail "health"
grep -qx SERVING "$tmp/health" || fail "health is not SERVING"
"$client" --server "$addr" metadata || fail "metadata"
"$client" --server "$addr" --timeout-ms 120000 --top-k 3 | tee "$tmp/classify" ||
  fail "classify failed"
# The image's own HEALTHCHECK command, inside the running container (its
# port is the default one; with other ports the same client, other address).
"${bah[@]}" run --isolation chroot --network host "$ctr" -- \
  clipserve-client --server "$addr" health || fail "HEALTHCHECK command inside the container"
/usr/bin/python3 -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())' \
  "http://localhost:$metrics_port/metrics" >"$tmp/metrics" || fail "GET /metrics"
grep -E '^clipserve_requests_total\{.*code="OK".*\} 1$' "$tmp/metrics" ||
  fail "/metrics does not count the one OK request"

# ---- stop: SIGTERM to the init, as docker stop sends it to PID 1 ----
phase stop
kill -TERM "$tini_pid"
deadline=$((SECONDS + stop_timeout))
while kill -0 "$run_pid" 2>/dev/null; do
  ((SECONDS < deadline)) || { cat "$server_log" >&2; fail "still running ${stop_timeout} s after SIGTERM"; }
  sleep 0.2
done
set +e
wait "$run_pid"
status=$?
set -e
run_pid=""
tail -n 5 "$server_log"
[ "$status" = 0 ] || fail "the container exited with status $status after SIGTERM"
grep -q "draining" "$server_log" || fail "no drain in the server log"
grep -q "clipserve stopped" "$server_log" || fail "no 'clipserve stopped' in the server log"
say "SIGTERM: drained, exit status 0"
"${bah[@]}" rm "$ctr" >/dev/null
ctr=""
phase ""
