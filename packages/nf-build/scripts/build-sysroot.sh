#!/usr/bin/env bash
# build-sysroot.sh TARGET SYSROOT_DIR
# Builds core + compiler_builtins for TARGET from Debian's rust-web-src into SYSROOT_DIR
# (a private sysroot for `rustc --sysroot`). Idempotent: a finished sysroot carries a
# .complete stamp. Used by scripts/setup.d/20-rust-toolchain.sh and by nf-build on demand.
set -euo pipefail
target=$1
sysroot=$2
RUSTC=${GALETTE_RUSTC:-/usr/bin/rustc}
LIBSRC=${GALETTE_RUST_LIBRARY_SRC:-/usr/src/rustc-1.96.0/library}
[ -f "$sysroot/.complete" ] && exit 0
[ -d "$LIBSRC/core" ] || { echo "rust library source not found at $LIBSRC (apt-get install rust-web-src)" >&2; exit 1; }

libdir="$sysroot/lib/rustlib/$target/lib"
tmp="$sysroot.tmp.$$"
rm -rf "$tmp"
mkdir -p "$tmp/lib/rustlib/$target/lib"
trap 'rm -rf "$tmp"' EXIT
out="$tmp/lib/rustlib/$target/lib"

flags=(--edition 2024 --target "$target" -C panic=abort -C opt-level=3 -C codegen-units=1
  -Zforce-unstable-if-unmarked --cap-lints allow)
case "$target" in
  bpfel-unknown-none) flags+=(-C target-cpu=v3 -C debuginfo=2) ;;
esac

export RUSTC_BOOTSTRAP=1
"$RUSTC" "${flags[@]}" --crate-type rlib --crate-name core \
  "$LIBSRC/core/src/lib.rs" -o "$out/libcore.rlib"
"$RUSTC" "${flags[@]}" --crate-type rlib --crate-name compiler_builtins \
  --cfg 'feature="compiler-builtins"' \
  -L "$out" --extern core="$out/libcore.rlib" \
  "$LIBSRC/compiler-builtins/compiler-builtins/src/lib.rs" -o "$out/libcompiler_builtins.rlib"
touch "$tmp/.complete"
# another build may have finished first (and be in use): keep it
[ -f "$sysroot/.complete" ] && exit 0
rm -rf "$sysroot"
mkdir -p "$(dirname "$sysroot")"
mv "$tmp" "$sysroot"
trap - EXIT
