#!/usr/bin/env bash
# What `make test-devices` needs: qemu-system-aarch64 (the emulated arm64 device, TCG),
# qemu-efi-aarch64, qemu-utils (the throw-away disk overlay), and for the arm64 root
# debootstrap, qemu-user-static and binfmt-support. Idempotent: installs only what is missing.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
need=()
for p in qemu-system-arm qemu-efi-aarch64 qemu-utils qemu-user-static binfmt-support debootstrap zstd e2fsprogs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "[test-devices] installing ${need[*]}"
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null || {
    echo "[test-devices] apt-get install ${need[*]} failed" >&2
    exit 1
  }
fi
