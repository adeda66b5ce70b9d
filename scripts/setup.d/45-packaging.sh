#!/usr/bin/env bash
# What `make packages` and `make test-packages` need: the cross C/C++ compilers (the agent's
# native files for arm64 and armhf), dpkg-dev and lintian, debootstrap for the clean Debian
# roots the install test uses, and qemu-user-static (foreign-architecture binaries and
# chroots). Idempotent: installs only what is missing.
#
# The arm64/armhf builds of libbpf, libxdp and libseccomp the native files link against are
# not installed here: `make packages` unpacks Debian's own .debs of them (fetched and checked
# through the signed index of the main suite) into a private sysroot per architecture, so a
# mirror mid-sync or a security update of another architecture cannot break packaging.
set -euo pipefail
cd "$(dirname "$0")/../.."
log() { printf '[packaging] %s\n' "$*"; }
# shellcheck source=scripts/lib/apt.sh
. scripts/lib/apt.sh

host=(g++-aarch64-linux-gnu g++-arm-linux-gnueabihf dpkg-dev lintian debootstrap
  qemu-user-static binfmt-support file zstd)
mapfile -t need < <(apt_missing "${host[@]}")
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  apt_install "${need[@]}" || { echo "packaging: installing ${need[*]} failed (above)" >&2; exit 1; }
fi
log "packaging tools ready"
