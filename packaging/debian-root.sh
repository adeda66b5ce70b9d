# Sourced by packaging/test-packages.sh and test-devices/run.sh: clean Debian 12 roots,
# debootstrapped once and cached as tarballs under /var/cache/galette, keyed by a hash of
# their recipe (architecture, variant, package list, mirror), so changing the recipe
# builds a new one and an unchanged recipe costs only the unpacking.
#
# debian_root_tarball ARCH VARIANT PACKAGES → prints the cached tarball's path, building
# it first when missing. A foreign ARCH runs debootstrap's second stage under
# qemu-user-static through binfmt_misc (enabled here: mounting binfmt_misc and enabling
# the qemu-<cpu> handler are idempotent).
# Needs: DEBIAN_MIRROR (optional), a log file in $DEBIAN_ROOT_LOG (optional).

debian_root_cache=${GALETTE_ROOT_CACHE:-/var/cache/galette/roots}

debian_root_binfmt() { # ARCH: lets this kernel run ARCH binaries (chroot) through qemu-user
  local cpu
  cpu=$(debian_root_cpu "$1")
  [ "$cpu" != "$1" ] || return 0
  [ -d /proc/sys/fs/binfmt_misc ] || modprobe binfmt_misc 2>/dev/null || true
  mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  if ! grep -qx enabled "/proc/sys/fs/binfmt_misc/qemu-$cpu" 2>/dev/null; then
    update-binfmts --enable "qemu-$cpu" >/dev/null 2>&1 || update-binfmts --import "qemu-$cpu" >/dev/null
  fi
  grep -qx enabled "/proc/sys/fs/binfmt_misc/qemu-$cpu" 2>/dev/null || {
    echo "binfmt_misc: qemu-$cpu could not be enabled (is qemu-user-static installed?)" >&2
    return 1
  }
}

debian_root_qemu() { # ARCH ROOT: the binfmt interpreter inside ROOT (chroot into a foreign root)
  local interp
  interp=$(sed -n 's/^interpreter //p' "/proc/sys/fs/binfmt_misc/qemu-$(debian_root_cpu "$1")")
  [ -n "$interp" ] || { echo "no binfmt interpreter for $1" >&2; return 1; }
  mkdir -p "$2$(dirname "$interp")"
  cp -L "$interp" "$2$interp"
}

debian_root_cpu() { case "$1" in arm64) echo aarch64 ;; armhf) echo arm ;; *) echo "$1" ;; esac; }

debian_root_tarball() { # ARCH VARIANT PACKAGES(comma-separated, may be empty) [PREPARE_FUNCTION]
  # PREPARE_FUNCTION ROOT runs after the packages are unpacked, before they are configured
  # (foreign roots only): e.g. configuration their maintainer scripts read. Its body is part
  # of the recipe.
  local arch=$1 variant=$2 packages=$3 prepare=${4:-} mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
  local recipe key tarball fresh log=${DEBIAN_ROOT_LOG:-/dev/null}
  recipe="bookworm arch=$arch variant=$variant include=$packages mirror=$mirror recipe=2"
  [ -z "$prepare" ] || recipe+=" prepare=$(declare -f "$prepare" | sha256sum | cut -c1-16)"
  key=$(printf '%s' "$recipe" | sha256sum | cut -c1-16)
  tarball=$debian_root_cache/bookworm-$arch-$variant-$key.tar.zst
  if [ ! -f "$tarball" ]; then
    [ "$arch" = "$(dpkg --print-architecture)" ] || debian_root_binfmt "$arch" || return 1
    mkdir -p "$debian_root_cache"
    fresh=$(mktemp -d "$debian_root_cache/build-XXXXXX")
    echo "$recipe" >"$log"
    local foreign=""
    [ "$arch" = "$(dpkg --print-architecture)" ] || foreign=1
    if ! debootstrap --arch="$arch" --variant="$variant" ${foreign:+--foreign} ${packages:+--include="$packages"} \
      bookworm "$fresh" "$mirror" >>"$log" 2>&1; then
      rm -rf "$fresh"
      echo "debootstrap ($recipe) failed: see $log" >&2
      return 1
    fi
    if [ -n "$foreign" ]; then
      # the kernel's binfmt handler runs this path inside the chroot: put qemu-user there
      debian_root_qemu "$arch" "$fresh" || return 1
      [ -z "$prepare" ] || "$prepare" "$fresh" || { echo "$prepare $fresh failed" >&2; return 1; }
      if ! chroot "$fresh" /debootstrap/debootstrap --second-stage >>"$log" 2>&1; then
        rm -rf "$fresh"
        echo "debootstrap --second-stage ($recipe, under qemu-user) failed: see $log" >&2
        return 1
      fi
    fi
    rm -rf "$fresh/var/cache/apt/archives"/*.deb "$fresh/var/lib/apt/lists"/*_Packages
    echo "$recipe" >"$fresh/etc/galette-root-recipe"
    tar -C "$fresh" --zstd -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
    rm -rf "$fresh"
  fi
  echo "$tarball"
}
