#!/usr/bin/env bash
# Pre-builds the private Rust sysroots (core + compiler_builtins) nf-build compiles NFs
# with: bpfel for XDP and one per native cross target. Idempotent and fast when done.
# (x86_64 uses the installed host sysroot.) Location: $GALETTE_CACHE_DIR (default ~/.cache/galette)/sysroots/<rustc hash>/<target>.
set -euo pipefail
cd "$(dirname "$0")/../.."
RUSTC=${GALETTE_RUSTC:-/usr/bin/rustc}
[ -x "$RUSTC" ] || { echo "missing $RUSTC (apt-get install rustc-web)" >&2; exit 1; }
cache=${GALETTE_CACHE_DIR:-$HOME/.cache/galette}
key=$("$RUSTC" -vV | sha256sum | cut -c1-12)
# the targets come from nf-build's table (bpfel and the cross CPUs), after pnpm install
targets=$(node --import ./node_modules/tsx/dist/loader.mjs packages/nf-build/scripts/sysroot-targets.ts)
[ -n "$targets" ] || { echo "no sysroot targets from packages/nf-build/scripts/sysroot-targets.ts" >&2; exit 1; }
pids=()
for target in $targets; do
  dir="${GALETTE_SYSROOT_DIR:-$cache/sysroots}/$key/$target"
  if [ -f "$dir/.complete" ]; then continue; fi
  echo "building Rust sysroot for $target (once, ~30 s)"
  bash packages/nf-build/scripts/build-sysroot.sh "$target" "$dir" &
  pids+=($!)
  # two at a time: the machine has few cores
  if [ ${#pids[@]} -ge 2 ]; then wait "${pids[0]}"; pids=("${pids[@]:1}"); fi
done
for p in "${pids[@]}"; do wait "$p"; done
