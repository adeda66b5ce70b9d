#!/usr/bin/env bash
# Idempotent machine + workspace setup for Debian 12, run as root (`make setup`).
# Installs the toolchain docs/toolchain.md lists, mounts bpffs, installs pnpm and workspace
# dependencies, and builds everything. Safe to re-run: each step checks before acting.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\033[1;34m[setup]\033[0m %s\n' "$*"; }
die() { printf '\033[1;31m[setup] error:\033[0m %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (BPF, XDP and network namespaces need it)"

APT_PACKAGES=(
  rustc-web cargo-web rust-web-src rustfmt-web rust-web-clippy clang-22 llvm-22 lld-22
  clang-format-22 clang-tidy-22
  libbpf-dev libxdp-dev libseccomp-dev xdp-tools bpftool iproute2 util-linux
  gcc-aarch64-linux-gnu gcc-arm-linux-gnueabihf gcc-riscv64-linux-gnu qemu-user
  python3 make g++ pkg-config iputils-ping ethtool
  bubblewrap
)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing apt packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
else
  log "apt packages present"
fi

if ! mount | grep -q ' /sys/fs/bpf type bpf'; then
  log "mounting bpffs on /sys/fs/bpf"
  mount -t bpf bpf /sys/fs/bpf
fi
mkdir -p /run/netns

PNPM_VERSION=$(node -p "require('./package.json').packageManager.split('@')[1]")
if ! command -v pnpm >/dev/null || [ "$(pnpm --version)" != "$PNPM_VERSION" ]; then
  log "installing pnpm@$PNPM_VERSION"
  npm install -g --silent "pnpm@$PNPM_VERSION"
fi

log "installing workspace dependencies"
CI=true pnpm install --frozen-lockfile --reporter=append-only | tail -n 3

# Later steps (Rust sysroots, native addon) register themselves here.
for step in scripts/setup.d/*.sh; do
  [ -e "$step" ] || continue
  log "running $step"
  bash "$step"
done

log "building packages"
build_log=$(mktemp)
if ! pnpm --reporter=append-only -r --if-present build >"$build_log" 2>&1; then
  cat "$build_log" >&2
  rm -f "$build_log"
  die "build failed (output above)"
fi
rm -f "$build_log"
log "ready"
