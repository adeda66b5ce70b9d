#!/usr/bin/env bash
# std for NFs on ARM: Debian's multiarch libstd-rust-web-dev:arm64 and :armhf, at exactly the
# version of the host's rustc-web (rustc refuses a std of another release). nf-build finds
# them under /usr/lib/rustlib/<triple>/lib. riscv64 has no std: Debian 12 has no riscv64 port.
# Idempotent: does nothing when both are installed at the right version.
#
# One architecture at a time: a mirror mid-sync can serve one architecture's index of a
# suite with the wrong size, and apt then ignores that suite (the std packages live in
# bookworm-security) for every architecture. Such an update is retried; if it keeps failing,
# this says which architecture and suite, takes the architecture back out when nothing of it
# is installed (so apt works for everything else), and goes on: `galette nf build` then
# refuses std NFs for that CPU with the same advice.
set -euo pipefail
cd "$(dirname "$0")/../.."
log() { printf '[rust-std] %s\n' "$*"; }
warn() { printf '[rust-std] warning: %s\n' "$*" >&2; }
# shellcheck source=scripts/lib/apt.sh
. scripts/lib/apt.sh

want=$(dpkg-query -W -f='${Version}' rustc-web 2>/dev/null) || {
  warn "rustc-web is not installed: no std for other CPUs"
  exit 0
}
have() { dpkg-query -W -f='${Version}' "libstd-rust-web-dev:$1" 2>/dev/null || true; }
arch_in_use() { dpkg-query -W -f='${Architecture} ${db:Status-Abbrev}\n' 2>/dev/null | grep -q "^$1 ii"; }
# An architecture added earlier but with nothing installed (a failed run): out, so that its
# index cannot break the update for the others; it is added again below when needed.
drop_unused() {
  if dpkg --print-foreign-architectures | grep -qx "$1" && ! arch_in_use "$1"; then
    dpkg --remove-architecture "$1"
    return 0
  fi
  return 1
}

arches=(arm64 armhf)
todo=()
for arch in "${arches[@]}"; do [ "$(have "$arch")" = "$want" ] || todo+=("$arch"); done
if [ ${#todo[@]} -eq 0 ]; then
  log "std for arm64 and armhf present ($want)"
  exit 0
fi
for arch in "${todo[@]}"; do drop_unused "$arch" || true; done

failed=()
for arch in "${todo[@]}"; do
  pkg="libstd-rust-web-dev:$arch"
  dpkg --print-foreign-architectures | grep -qx "$arch" || {
    log "dpkg --add-architecture $arch"
    dpkg --add-architecture "$arch"
  }
  updated=1
  # two tries 15 s apart: every make setup (and so make test) pays this while a sync lasts
  APT_UPDATE_TRIES=2 APT_UPDATE_WAIT=15 apt_update_indexes || updated=0
  # the update may have failed on another suite: what matters is whether apt sees this version
  if apt-cache madison "libstd-rust-web-dev:$arch" 2>/dev/null | awk -F'|' '{gsub(/ /, "", $2); print $2}' | grep -qxF "$want"; then
    log "installing $pkg=$want"
    if apt_install "$pkg=$want"; then continue; fi
    why="apt could not install it (above)"
  elif [ "$updated" = 0 ]; then
    index=$(apt_failed_index)
    why="the Debian mirror's ${index:-package} index kept failing (mirror sync in progress?): ${APT_UPDATE_ERRORS//$'\n'/ }"
  else
    why="no $pkg $want in the configured suites (bookworm-security carries rustc-web's std)"
  fi
  warn "no std for $arch: $why"
  failed+=("$arch")
  if drop_unused "$arch"; then
    warn "took $arch back out of dpkg's architectures (nothing of it was installed) so apt keeps working"
    apt-get update -qq >/dev/null 2>&1 || true
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  cpus=$(for a in "${failed[@]}"; do case $a in arm64) printf 'aarch64 ' ;; armhf) printf 'armv7 ' ;; esac; done)
  warn "std NFs will not build for: ${cpus% } (galette nf build says so and why)"
  warn "re-run make setup later (a mirror sync ends within hours); no_std NFs build for every CPU meanwhile"
fi
log "std for other CPUs: $(for a in "${arches[@]}"; do v=$(have "$a"); printf '%s=%s ' "$a" "${v:-missing}"; done)"
