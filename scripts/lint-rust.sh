#!/usr/bin/env bash
# Rust lint for every crate in the tree: rustfmt (rustfmt.toml) and clippy with warnings as
# errors, on the NF API (packages/nf), the example NFs and the bench NFs. Offline: the crates
# have path dependencies only. Debian's toolchain (rustc-web, rustfmt-web, rust-web-clippy),
# never a rustup toolchain that PATH may also hold.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/bin:$PATH" RUSTC=/usr/bin/rustc
target=$(mktemp -d -t galette-clippy-XXXXXX)
trap 'rm -rf "$target"' EXIT
status=0
for crate in packages/nf/nf packages/nf/macros nf-examples/*/ bench/nfs/*/; do
  crate=${crate%/}
  (cd "$crate" && cargo fmt --check) || { echo "rustfmt: $crate is not formatted (cargo fmt)" >&2; status=1; }
  (cd "$crate" && CARGO_TARGET_DIR="$target" cargo clippy --offline --quiet --all-targets -- -D warnings) ||
    { echo "clippy: $crate has findings" >&2; status=1; }
done
# The NF API's other two backends, selected by nf-build with --cfg (checked on the host target).
for cfg in nf_native nf_bpf; do
  (cd packages/nf/nf && CARGO_TARGET_DIR="$target" RUSTFLAGS="--cfg $cfg" cargo clippy --offline --quiet -- -D warnings) ||
    { echo "clippy: packages/nf/nf ($cfg) has findings" >&2; status=1; }
done
exit $status
