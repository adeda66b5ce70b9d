#!/usr/bin/env bash
# The main job. For now: validate and plan every chain in chains/.
set -euo pipefail
cd "$(dirname "$0")/.."
for f in chains/*.toml; do
  pnpm -s galette chain validate --structure-only "$f"
  pnpm -s galette chain plan "$f"
  echo
done
