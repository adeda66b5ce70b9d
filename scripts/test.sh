#!/usr/bin/env bash
# All tests: formatting/lint, typecheck, then every vitest project (unit + real-kernel e2e).
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== lint (biome)"
pnpm -s lint
echo "== lint (clang-format: C, C++ and BPF C)"
git ls-files -z '*.c' '*.h' '*.cc' | xargs -0 clang-format-22 --dry-run --Werror
echo "== lint (clang-tidy: the addon and worker C++)"
bash scripts/lint-c.sh
echo "== lint (rustfmt, clippy)"
bash scripts/lint-rust.sh
echo "== typecheck (tsc)"
pnpm -s typecheck
echo "== tests (vitest)"
report=$(mktemp -t galette-vitest-XXXXXX.json)
trap 'rm -f "$report"' EXIT
status=0
pnpm -s vitest run --reporter=default --reporter=json --outputFile.json="$report" "$@" || status=$?
# One plain closing line for CI: "N passed, N failed, N skipped".
node -e '
  const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  const skipped = r.numPendingTests + r.numTodoTests;
  console.log(`tests: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${skipped} skipped`);
' "$report" || true
exit $status
