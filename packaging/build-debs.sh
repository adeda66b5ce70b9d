#!/usr/bin/env bash
# `make packages`: Debian packages under dist/ —
#   galette-agent_<version>_{amd64,arm64,armhf}.deb  the device agent
#   galette_<version>_{amd64,arm64}.deb              the CLI and the controller
# Each carries its bundled JavaScript (apps/*/dist), a Node runtime from npm's
# node-linux-<cpu> package, the xdp-native addon compiled for that CPU (cross-compiled
# against Debian's libbpf/libxdp .debs for that CPU, unpacked into a private sysroot), the
# BPF objects (one bytecode for every CPU), a systemd unit and its maintainer scripts.
# Needs `make setup` (packaging tools).
#
#   AGENT_ARCHES="amd64"  GALETTE_ARCHES=""  GALETTE_VERSION=0.1.1  bash packaging/build-debs.sh
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
# shellcheck source=packaging/node-runtime.sh
. packaging/node-runtime.sh

VERSION=${GALETTE_VERSION:-$(node -p "require('./apps/sbc-agent/package.json').version")}
AGENT_ARCHES=${AGENT_ARCHES-amd64 arm64 armhf}
GALETTE_ARCHES=${GALETTE_ARCHES-amd64 arm64}
OUT=${OUT:-$repo/dist}
CACHE=${GALETTE_PACKAGING_CACHE:-/var/cache/galette/packaging}
MAINTAINER="Galette maintainers <galette@lists.galette.dev>"

log() { printf '\033[1;34m[packages]\033[0m %s\n' "$*" >&2; }
die() {
  printf '\033[1;31m[packages] error:\033[0m %s\n' "$*" >&2
  exit 1
}

[ "$(id -u)" -eq 0 ] || die "run as root (files in the packages are owned by root)"
for tool in dpkg-deb npm readelf; do command -v "$tool" >/dev/null || die "$tool is missing: run make setup"; done
[[ "$VERSION" =~ ^[0-9][0-9A-Za-z.+~-]*$ ]] || die "version \"$VERSION\" is not a Debian version"

triple() {
  case $1 in
    amd64) echo x86_64-linux-gnu ;;
    arm64) echo aarch64-linux-gnu ;;
    armhf) echo arm-linux-gnueabihf ;;
    *) die "no such architecture: $1" ;;
  esac
}
gyp_arch() {
  case $1 in amd64) echo x64 ;; arm64) echo arm64 ;; armhf) echo arm ;; esac
}

# ------------------------------------------------------------------------------------------
# Inputs built once: the bundles (and the amd64 addon make setup built for the tests)

log "bundling galette and galette-agent (tsup)"
(cd apps/sbc-agent && pnpm -s build) || die "bundling galette-agent failed"
(cd apps/controller && pnpm -s build) || die "bundling galette failed"
release=packages/xdp-native/build/Release
for f in galette_xdp.node root.bpf.o rx_upcall.bpf.o; do
  [ -f "$release/$f" ] || die "$release/$f is missing: run make setup"
done
# this run's own copy of the host's native files and BPF objects: a rebuild of the addon in
# the tree (node-gyp empties build/ first) must not pull them from under a running build
native=$(mktemp -d)
trap 'rm -rf "$native"' EXIT
cp "$release/galette_xdp.node" "$release/root.bpf.o" "$release/rx_upcall.bpf.o" "$native/"
[ -f "$release/galette-nf-worker" ] && cp "$release/galette-nf-worker" "$native/"

# The libraries the addon and the worker link against, for a foreign CPU: a private sysroot
# of Debian's own arm64/armhf .debs of libbpf, libxdp, libseccomp and what they link
# (libelf, zlib), fetched with a private apt state that reads only the main and updates
# suites through their signed index (apt-get download checks every .deb against it), and
# unpacked with dpkg-deb -x. Not the multiarch -dev packages: those must match the host's
# versions of shared packages (linux-libc-dev, libssl3) exactly, which a mirror mid-sync on
# one architecture's security index breaks. C library and libstdc++ come from the cross
# toolchain. Prints the extra compiler/linker flags.
sysroot_packages=(libbpf1 libbpf-dev libxdp1 libxdp-dev libseccomp2 libseccomp-dev libelf1 zlib1g)
# Prints the sysroot's directory (built once per architecture and package list).
cross_sysroot() {
  local arch=$1 t root apt recipe
  t=$(triple "$arch")
  recipe=$(printf '%s\n' "$arch" "${sysroot_packages[@]}" main updates recipe=1 | sha256sum | cut -c1-12)
  root=$CACHE/sysroot/$arch-$recipe
  if [ ! -f "$root/.complete" ]; then
    log "fetching Debian's $arch builds of ${sysroot_packages[*]} into $root"
    apt=$CACHE/apt-$arch
    rm -rf "$root" "$apt"
    mkdir -p "$apt/lists/partial" "$apt/archives/partial" "$apt/etc" "$root"
    : >"$apt/status"
    {
      echo "deb [arch=$arch signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] ${DEBIAN_MIRROR:-http://deb.debian.org/debian} bookworm main"
      echo "deb [arch=$arch signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] ${DEBIAN_MIRROR:-http://deb.debian.org/debian} bookworm-updates main"
    } >"$apt/etc/sources.list"
    local opts=(-o "Dir::State=$apt" -o "Dir::State::Lists=$apt/lists" -o "Dir::State::status=$apt/status"
      -o "Dir::Cache=$apt" -o "Dir::Cache::archives=$apt/archives" -o "Dir::Etc::SourceList=$apt/etc/sources.list"
      -o "Dir::Etc::SourceParts=/nonexistent" -o "Dir::Etc::Preferences=/nonexistent"
      -o "Dir::Etc::PreferencesParts=/nonexistent" -o "APT::Architecture=$arch" -o "APT::Architectures=$arch" -q)
    apt-get "${opts[@]}" update >"$apt/update.log" 2>&1 && ! grep -qE '^(E|W): ' "$apt/update.log" || {
      cat "$apt/update.log" >&2
      die "apt-get update of the $arch sysroot's index (bookworm, bookworm-updates) failed (above)"
    }
    (cd "$apt/archives" && apt-get "${opts[@]}" download "${sysroot_packages[@]}") >"$apt/download.log" 2>&1 || {
      cat "$apt/download.log" >&2
      die "downloading the $arch libraries failed (above)"
    }
    local deb
    for deb in "$apt/archives"/*.deb; do dpkg-deb -x "$deb" "$root"; done
    rm -rf "$apt"
    [ -e "$root/usr/lib/$t/libbpf.so" ] || die "the $arch sysroot has no usr/lib/$t/libbpf.so"
    touch "$root/.complete"
  fi
  echo "$root"
}

# The addon for one CPU: the host's build for amd64, a cross build for the others.
# Prints the directory holding galette_xdp.node (and galette-nf-worker when the sources
# have one); cached by CPU and a hash of the sources.
addon_dir() {
  local arch=$1 t key dir work
  if [ "$arch" = amd64 ]; then
    echo "$native"
    return
  fi
  t=$(triple "$arch")
  command -v "$t-g++" >/dev/null || die "$t-g++ is missing: run make setup"
  local sysroot
  sysroot=$(cross_sysroot "$arch")
  key=$( (
    cd packages/xdp-native && cat binding.gyp native/* include/*
    basename "$sysroot"
  ) | sha256sum | cut -c1-16)
  dir=$CACHE/addon/$arch-$key
  if [ ! -f "$dir/galette_xdp.node" ]; then
    # -isystem: the target's libbpf/libxdp headers before the host's /usr/include, which the
    # Debian cross compilers also search; -rpath-link: libbpf's own libelf and zlib
    local cflags="-isystem $sysroot/usr/include"
    local ldflags="-L$sysroot/usr/lib/$t -L$sysroot/lib/$t -Wl,-rpath-link,$sysroot/usr/lib/$t:$sysroot/lib/$t"
    log "cross-compiling the xdp-native addon for $arch ($t) against $sysroot"
    work=$(mktemp -d)
    cp -r packages/xdp-native/binding.gyp packages/xdp-native/native packages/xdp-native/include \
      packages/xdp-native/bpf "$work/"
    ln -s "$repo/packages/xdp-native/node_modules" "$work/node_modules"
    if ! (cd "$work" && CC="$t-gcc" CXX="$t-g++" LINK="$t-g++" AR="$t-ar" CPPFLAGS="$cflags" LDFLAGS="$ldflags" \
      "$repo/packages/xdp-native/node_modules/.bin/node-gyp" rebuild --release \
      --arch="$(gyp_arch "$arch")" --nodedir="$(node_dir "$arch")") >"$work/build.log" 2>&1; then
      cat "$work/build.log" >&2
      die "cross-compiling the addon for $arch failed (log above)"
    fi
    mkdir -p "$dir"
    cp "$work/build/Release/galette_xdp.node" "$dir/"
    [ -f "$work/build/Release/galette-nf-worker" ] && cp "$work/build/Release/galette-nf-worker" "$dir/"
    rm -rf "$work"
  fi
  echo "$dir"
}

# better-sqlite3 compiled against the Node the galette package ships (its ABI is Node's).
sqlite_dir() {
  local arch=$1 t src ver key dir work
  t=$(triple "$arch")
  src=$(readlink -f apps/controller/node_modules/better-sqlite3)
  ver=$(node -p "require('$src/package.json').version")
  key="$ver-node$(node_version "$arch")"
  dir=$CACHE/better-sqlite3/$arch-$key
  if [ ! -f "$dir/better_sqlite3.node" ]; then
    log "compiling better-sqlite3 $ver for $arch against Node $(node_version "$arch") (~2 min)"
    work=$(mktemp -d)
    cp -r "$src/." "$work/"
    rm -rf "$work/build"
    local cross=()
    [ "$arch" = amd64 ] || cross=(CC="$t-gcc" CXX="$t-g++" LINK="$t-g++" AR="$t-ar")
    if ! (cd "$work" && env "${cross[@]}" "$repo/packages/xdp-native/node_modules/.bin/node-gyp" rebuild \
      --release --arch="$(gyp_arch "$arch")" --nodedir="$(node_dir "$arch")") >"$work/build.log" 2>&1; then
      tail -40 "$work/build.log" >&2
      die "compiling better-sqlite3 for $arch failed (log above)"
    fi
    mkdir -p "$dir"
    cp "$work/build/Release/better_sqlite3.node" "$dir/"
    rm -rf "$work"
  fi
  echo "$dir"
}

# ------------------------------------------------------------------------------------------
# Package dependencies from the ELF files' DT_NEEDED (the sonames Debian 12 ships them in)

needed_depends() {
  local sonames
  sonames=$(for f in "$@"; do readelf -d "$f" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'; done | sort -u)
  for so in $sonames; do
    case $so in
      libc.so.6 | libm.so.6 | libdl.so.2 | libpthread.so.0 | librt.so.1 | ld-linux*) echo "libc6 (>= 2.36)" ;;
      libstdc++.so.6) echo "libstdc++6 (>= 12)" ;;
      libgcc_s.so.1) echo "libgcc-s1 (>= 3.0)" ;;
      libatomic.so.1) echo "libatomic1 (>= 4.8)" ;; # Node's armv7l build
      libbpf.so.1) echo "libbpf1 (>= 1:1.1.2)" ;;
      libxdp.so.1) echo "libxdp1 (>= 1.3.1)" ;;
      libelf.so.1) echo "libelf1 (>= 0.188)" ;;
      libz.so.1) echo "zlib1g (>= 1:1.2.13)" ;;
      libseccomp.so.2) echo "libseccomp2 (>= 2.5.4)" ;;
      *) die "no Debian package known for $so (needed by one of: $*)" ;;
    esac
  done | sort -u | paste -sd, | sed 's/,/, /g'
}

# Checks every ELF file in a staged tree is for the package's CPU.
check_elf_arch() {
  local root=$1 arch=$2 want f
  case $arch in amd64) want="x86-64" ;; arm64) want="aarch64" ;; armhf) want="ARM, EABI5" ;; esac
  while IFS= read -r f; do
    file -b "$f" | grep -q "$want" || die "$f is not a $arch ELF file: $(file -b "$f")"
  done < <(find "$root" -type f \( -name '*.node' -o -name node -o -name galette-nf-worker \))
}

write_common() {
  # $1 root, $2 package, $3 arch, $4 depends, $5 description (first line), $6 long description file
  local root=$1 pkg=$2 arch=$3 depends=$4 summary=$5 long=$6 size
  local doc=$root/usr/share/doc/$pkg
  mkdir -p "$doc" "$root/DEBIAN" "$root/usr/share/lintian/overrides" "$root/usr/share/man/man1"
  sed "s/@NODE_VERSION@/$(node_version "$arch")/" packaging/debian/copyright >"$doc/copyright"
  cp "packaging/debian/$pkg/README.Debian" "$doc/README.Debian"
  # a native package (no Debian revision): its changelog is changelog.gz
  printf '%s (%s) bookworm; urgency=medium\n\n  * Release %s.\n\n -- %s  %s\n' \
    "$pkg" "$VERSION" "$VERSION" "$MAINTAINER" "$(date -R -d "@${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}")" |
    gzip -9n >"$doc/changelog.gz"
  for page in packaging/debian/"$pkg"/*.1; do gzip -9n <"$page" >"$root/usr/share/man/man1/$(basename "$page").gz"; done
  cp "packaging/debian/$pkg/lintian-overrides" "$root/usr/share/lintian/overrides/$pkg"
  for script in postinst prerm postrm; do install -m 0755 "packaging/debian/$pkg/$script" "$root/DEBIAN/$script"; done
  (cd "$root" && find etc -type f 2>/dev/null | sed 's|^|/|' | sort) >"$root/DEBIAN/conffiles"
  [ -s "$root/DEBIAN/conffiles" ] || rm "$root/DEBIAN/conffiles"
  (cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) >"$root/DEBIAN/md5sums"
  size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
  {
    echo "Package: $pkg"
    echo "Version: $VERSION"
    echo "Architecture: $arch"
    echo "Maintainer: $MAINTAINER"
    echo "Installed-Size: $size"
    echo "Depends: $depends"
    echo "Section: net"
    echo "Priority: optional"
    echo "Homepage: https://galette.dev"
    echo "Description: $summary"
    sed 's/^$/./; s/^/ /' "$long"
  } >"$root/DEBIAN/control"
  find "$root" -type d -exec chmod 0755 {} +
}

build_deb() {
  local root=$1 file=$2
  mkdir -p "$OUT"
  # xz at level 1: lintian (and dpkg before 1.21.18) refuses zstd members; level 1 takes a
  # fifth of the default level's time on the ~100 MB Node binary (about 10 s of CPU) and
  # makes a package about 15 % larger
  dpkg-deb --root-owner-group -Zxz -z1 --build "$root" "$OUT/$file" >/dev/null || die "dpkg-deb failed for $file"
  log "wrote dist/$file ($(du -h "$OUT/$file" | cut -f1))"
}

strip_for() {
  local arch=$1
  shift
  "$(triple "$arch")-strip" --strip-unneeded "$@" 2>/dev/null || strip --strip-unneeded "$@"
}

# ------------------------------------------------------------------------------------------

build_agent() {
  local arch=$1 root addon lib
  root=$(mktemp -d)/galette-agent
  lib=$root/usr/lib/galette-agent
  addon=$(addon_dir "$arch")
  mkdir -p "$lib" "$root/usr/bin" "$root/lib/systemd/system" "$root/etc/default"
  # not a script of its own (the wrapper runs it with the packaged node): no #! line, not executable
  sed '1{/^#!/d}' apps/sbc-agent/dist/galette-agent.mjs >"$lib/galette-agent.mjs"
  mkdir -p "$lib/$release"
  cp "$native/root.bpf.o" "$native/rx_upcall.bpf.o" "$lib/$release/"
  install -m 0644 "$addon/galette_xdp.node" "$lib/$release/"
  [ -f "$addon/galette-nf-worker" ] && install -m 0755 "$addon/galette-nf-worker" "$lib/$release/"
  install -m 0755 "$(node_dir "$arch")/bin/node" "$lib/node"
  strip_for "$arch" "$lib/node" "$lib/$release/"*.node $([ -f "$lib/$release/galette-nf-worker" ] && echo "$lib/$release/galette-nf-worker")
  install -m 0755 packaging/debian/galette-agent/galette-agent.sh "$root/usr/bin/galette-agent"
  # the V8 flags the launcher runs the agent with (one definition for every launcher)
  install -m 0644 apps/sbc-agent/node-flags "$lib/node-flags"
  install -m 0644 packaging/debian/galette-agent/galette-agent.service "$root/lib/systemd/system/"
  install -m 0644 packaging/debian/galette-agent/default "$root/etc/default/galette-agent"
  check_elf_arch "$root" "$arch"
  local depends
  depends="$(needed_depends "$lib/node" "$lib/$release/"*.node $([ -f "$lib/$release/galette-nf-worker" ] && echo "$lib/$release/galette-nf-worker")), init-system-helpers (>= 1.54)"
  write_common "$root" galette-agent "$arch" "$depends" \
    "Galette device agent: keeps a device's assigned XDP/AF_XDP chain installed" \
    packaging/debian/galette-agent/description
  build_deb "$root" "galette-agent_${VERSION}_${arch}.deb"
  rm -rf "$(dirname "$root")"
}

build_galette() {
  local arch=$1 root addon sqlite lib toolchain
  root=$(mktemp -d)/galette
  lib=$root/usr/lib/galette
  addon=$(addon_dir "$arch")
  sqlite=$(sqlite_dir "$arch")
  mkdir -p "$lib" "$root/usr/bin" "$root/lib/systemd/system" "$root/etc/galette"
  cp -r apps/controller/dist/. "$lib/"
  rm -f "$lib"/metafile-*.json
  sed -i '1{/^#!/d}' "$lib/galette.mjs"
  chmod 0644 "$lib/galette.mjs"
  # the CPU's own native files in place of the build machine's
  install -m 0644 "$addon/galette_xdp.node" "$lib/$release/"
  rm -f "$lib/$release/galette-nf-worker"
  [ -f "$addon/galette-nf-worker" ] && install -m 0755 "$addon/galette-nf-worker" "$lib/$release/"
  install -m 0644 "$sqlite/better_sqlite3.node" "$lib/node_modules/better-sqlite3/build/Release/"
  # documentation, tests and dotfiles of the copied trees are not needed at run time; only
  # ELF files are executable
  find "$lib/node_modules" \( -name test -o -name '*.md' \) -prune -exec rm -rf {} +
  find "$lib" -name '.*' -prune -exec rm -rf {} +
  find "$lib" -type f ! -name node ! -name '*.node' ! -name galette-nf-worker ! -name '*.sh' -exec chmod 0644 {} +
  install -m 0755 "$(node_dir "$arch")/bin/node" "$lib/node"
  strip_for "$arch" "$lib/node" "$lib/$release/"*.node "$lib/node_modules/better-sqlite3/build/Release/better_sqlite3.node" \
    $([ -f "$lib/$release/galette-nf-worker" ] && echo "$lib/$release/galette-nf-worker")
  install -m 0755 packaging/debian/galette/galette.sh "$root/usr/bin/galette"
  install -m 0644 packaging/debian/galette/galette-controller.service "$root/lib/systemd/system/"
  install -m 0644 packaging/debian/galette/controller.env "$root/etc/galette/controller.env"
  check_elf_arch "$root" "$arch"
  # The NF toolchain `galette nf build|publish` and `controller serve` drive: rustc-web with
  # its library sources (sysroots are built from them on first use), LLVM/clang 22, gcc as
  # the native linker, a cross linker per other device CPU, bubblewrap for the sandbox.
  case $arch in
    amd64) toolchain="gcc-aarch64-linux-gnu, gcc-arm-linux-gnueabihf, gcc-riscv64-linux-gnu" ;;
    arm64) toolchain="gcc-x86-64-linux-gnu, gcc-arm-linux-gnueabihf" ;;
  esac
  local depends
  depends="$(needed_depends "$lib/node" "$lib/$release/galette_xdp.node" "$lib/node_modules/better-sqlite3/build/Release/better_sqlite3.node" \
    $([ -f "$lib/$release/galette-nf-worker" ] && echo "$lib/$release/galette-nf-worker")), rustc-web, rust-web-src, clang-22, llvm-22, lld-22, gcc, libc6-dev, libbpf-dev, $toolchain, bubblewrap, adduser, init-system-helpers (>= 1.54)"
  write_common "$root" galette "$arch" "$depends" \
    "CLI and controller for chains of XDP/AF_XDP network functions" \
    packaging/debian/galette/description
  build_deb "$root" "galette_${VERSION}_${arch}.deb"
  rm -rf "$(dirname "$root")"
}

mkdir -p "$CACHE"
for arch in $AGENT_ARCHES $GALETTE_ARCHES; do
  node_dir "$arch" >/dev/null || die "no Node runtime for $arch (npm pack $(node_npm_package "$arch")@$(node_version "$arch") failed)"
done
for arch in $AGENT_ARCHES; do build_agent "$arch"; done
for arch in $GALETTE_ARCHES; do build_galette "$arch"; done
log "done: $(cd "$OUT" && ls ./*_"$VERSION"_*.deb | tr '\n' ' ')"
