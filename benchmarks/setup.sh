#!/usr/bin/env bash
# Tools for benchmarks/meter.py: redis-benchmark (Debian's redis-tools) and wrk. Idempotent.
set -euo pipefail
need=()
command -v redis-benchmark >/dev/null || need+=(redis-tools)
command -v wrk >/dev/null || need+=(wrk)
if ((${#need[@]})); then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq "${need[@]}"
fi
mkdir -p "$(dirname "$0")/.bin" && gcc -O2 -Wall -Wextra -o "$(dirname "$0")/.bin/openloop" "$(dirname "$0")/openloop.c"
redis-benchmark --version
wrk --version 2>&1 | head -1 || true
