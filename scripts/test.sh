#!/usr/bin/env bash
# All tests: formatting/lint, typecheck, then every vitest project (unit + kernel e2e).
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== lint"; pnpm -s lint
echo "== typecheck"; pnpm -s typecheck
echo "== tests"
pnpm -s vitest run "$@"
