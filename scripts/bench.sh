#!/usr/bin/env bash
# `make bench`: the benchmark suite on a veth pair between fresh namespaces (needs root).
# QUICK=1 (make bench QUICK=1) runs the ~1-minute smoke version into bench/results/tmp/.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "bench: run as root (XDP, AF_XDP and namespaces need it)" >&2; exit 1; }
export QUICK="${QUICK:-}"
exec pnpm exec tsx bench/src/cli.ts
