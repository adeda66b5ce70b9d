#!/usr/bin/env bash
# The controller stores its state in SQLite through better-sqlite3, a native addon.
# pnpm runs its install script (it is in onlyBuiltDependencies): the prebuilt download
# fails offline, so it falls back to node-gyp, which must build against the system Node
# headers (/usr/include/node from Debian's nodejs) rather than download them.
# Idempotent: does nothing when the addon already loads.
set -euo pipefail
cd "$(dirname "$0")/../../apps/controller"

loads() { node -e "new (require('better-sqlite3'))(':memory:').prepare('select 1').get()" >/dev/null 2>&1; }

if loads; then
  echo "better-sqlite3 addon loads"
  exit 0
fi
[ -f /usr/include/node/node_api.h ] || { echo "better-sqlite3: missing /usr/include/node (Debian nodejs headers)" >&2; exit 1; }
pkg=$(node -p "require('node:path').dirname(require.resolve('better-sqlite3/package.json'))")
echo "building better-sqlite3 from source in $pkg (node-gyp, ~1 min)"
log=$(mktemp)
if ! (cd "$pkg" && npm_config_nodedir=/usr npx --no node-gyp rebuild --release --nodedir=/usr) >"$log" 2>&1; then
  cat "$log" >&2
  rm -f "$log"
  echo "better-sqlite3: node-gyp build failed (log above)" >&2
  exit 1
fi
rm -f "$log"
loads || { echo "better-sqlite3: built but still does not load" >&2; exit 1; }
echo "better-sqlite3 built"
