#!/usr/bin/env bash
# Puts `galette` on PATH: /usr/local/bin/galette runs this checkout's bundled CLI
# (apps/controller/dist/galette.mjs, built by setup's "building packages" step) with the
# system node. A `galette` installed from the Debian package lives in /usr/bin; this one
# (earlier on PATH) is only written when absent or when it is already ours.
# Idempotent: rewrites the wrapper only when its content would change.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
target=/usr/local/bin/galette
marker="# galette: wrapper written by scripts/setup.d/60-galette-command.sh"
content="#!/bin/sh
$marker
exec node \"$repo/apps/controller/dist/galette.mjs\" \"\$@\""

if [ -e "$target" ] && ! grep -qF "$marker" "$target"; then
  echo "galette command: $target exists and is not ours; leaving it alone"
  exit 0
fi
if [ -f "$target" ] && [ "$(cat "$target")" = "$content" ]; then
  echo "galette command up to date ($target)"
  exit 0
fi
printf '%s\n' "$content" >"$target.tmp"
chmod 0755 "$target.tmp"
mv "$target.tmp" "$target"
echo "galette command installed: $target → $repo/apps/controller/dist/galette.mjs"
