# Sourced by the benchmark and check scripts: start_clipserve BIN LOG
# [ARGS...] starts BIN (clipserve) on 127.0.0.1 with --grpc-port 0
# --metrics-port 0 and ARGS, its output in LOG, stops it (SIGTERM, then
# waits) when the calling script exits, and returns once it serves, with
# $server (its pid) and $port (the gRPC port it logged) set. It fails, with
# the log's tail on stderr, when the server exits or has not started within
# START_TIMEOUT seconds (default 300: LibTorch and the models load first).
start_clipserve() {
  local bin=$1 log=$2
  shift 2
  "$bin" --grpc-address 127.0.0.1 --grpc-port 0 --metrics-port 0 "$@" >"$log" 2>&1 &
  server=$!
  trap 'kill -TERM "$server" 2>/dev/null; wait "$server" 2>/dev/null || true' EXIT
  port=
  local deadline=$(( $(date +%s) + ${START_TIMEOUT:-300} ))
  while [ "$(date +%s)" -lt "$deadline" ]; do
    port=$(sed -n 's/.*serving gRPC on port \([0-9]*\).*/\1/p' "$log" | head -1)
    [ -n "$port" ] && return 0
    kill -0 "$server" 2>/dev/null || break
    sleep 0.2
  done
  echo "clipserve did not start; the end of $log:" >&2
  tail -5 "$log" >&2
  return 1
}
