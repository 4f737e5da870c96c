#!/bin/sh
# promtool.sh PROMTOOL ARGS...: runs PROMTOOL ARGS, or exits 77 (CTest:
# skipped) when PROMTOOL is not there (install Debian's prometheus package).
promtool="$1"
shift
if [ ! -x "$promtool" ]; then
  echo "promtool not found ($promtool): skipped; install Debian's prometheus package"
  exit 77
fi
exec "$promtool" "$@"
