#!/usr/bin/env bash
# What `make packages` and `make test-packages` need: the arm64/armhf builds of libbpf,
# libxdp and libseccomp (the agent's native files are cross-compiled against them), the
# cross C++ compilers, dpkg-dev and lintian, debootstrap for the clean Debian root the
# install test uses, and qemu-user-static (foreign-architecture binaries and chroots).
# Idempotent: installs only what is missing.
#
# One foreign architecture at a time: a Debian mirror that is mid-sync can serve one
# architecture's index with the wrong size ("File has unexpected size … Mirror sync in
# progress?"), and apt then ignores that whole suite (bookworm-security) for every
# architecture, so multiarch -dev packages no longer match the host's versions. Such an
# architecture is retried, then taken back out (apt keeps working for everyone else) and
# reported; `make packages` then says which architecture is missing.
set -euo pipefail

log() { printf '[packaging] %s\n' "$*"; }
warn() { printf '[packaging] warning: %s\n' "$*" >&2; }
export DEBIAN_FRONTEND=noninteractive

missing_of() {
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
  done
}

apt_install() {
  local log_file
  log_file=$(mktemp)
  if apt-get install -y -qq "$@" >"$log_file" 2>&1; then
    rm -f "$log_file"
    return 0
  fi
  # -qq hides why: ask for the explanation
  apt-get install -s "$@" 2>&1 | tail -8 >&2 || true
  rm -f "$log_file"
  return 1
}

# apt-get update until it fetches every index (a mirror mid-sync clears within minutes).
update_indexes() {
  local attempt out
  for attempt in 1 2 3; do
    out=$(apt-get update 2>&1) && ! grep -qE '^(E|W): (Failed to fetch|Some index files failed)' <<<"$out" && return 0
    grep -E '^E:' <<<"$out" | head -2 >&2 || true
    [ "$attempt" = 3 ] && return 1
    log "apt-get update attempt $attempt failed (mirror mid-sync?); retrying in $((attempt * 20)) s"
    sleep $((attempt * 20))
  done
}

# Host packages
host=(g++-aarch64-linux-gnu g++-arm-linux-gnueabihf dpkg-dev lintian debootstrap
  qemu-user-static binfmt-support file zstd)
mapfile -t need < <(missing_of "${host[@]}")
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  apt_install "${need[@]}" || { echo "packaging: installing ${need[*]} failed (above)" >&2; exit 1; }
fi

failed=()
for arch in arm64 armhf; do
  pkgs=("libbpf-dev:$arch" "libxdp-dev:$arch" "libseccomp-dev:$arch")
  mapfile -t need < <(missing_of "${pkgs[@]}")
  [ ${#need[@]} -eq 0 ] && continue
  added=0
  if ! dpkg --print-foreign-architectures | grep -qx "$arch"; then
    log "dpkg --add-architecture $arch"
    dpkg --add-architecture "$arch"
    added=1
  fi
  if update_indexes && log "installing ${need[*]}" && apt_install "${need[@]}"; then
    continue
  fi
  failed+=("$arch")
  if [ "$added" = 1 ] && [ -z "$(dpkg -l | awk -v a=":$arch" '$1 ~ /^.i/ && index($2, a)')" ]; then
    warn "taking $arch back out of dpkg's architectures so apt works for the others"
    dpkg --remove-architecture "$arch"
    apt-get update -qq >/dev/null 2>&1 || true
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  warn "could not install libbpf/libxdp/libseccomp for: ${failed[*]} (Debian mirror mid-sync?)."
  warn "make packages cannot build those architectures until make setup is re-run successfully."
fi
log "packaging tools ready (foreign architectures: $(dpkg --print-foreign-architectures | tr '\n' ' '))"
