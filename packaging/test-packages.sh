#!/usr/bin/env bash
# `make test-packages`: the packages in dist/ installed as a newcomer would.
#
# amd64, in a clean Debian 12 root (debootstrap minbase, cached as a tarball under
# /var/cache/galette and unpacked fresh for every run):
#   apt-get install ./galette-agent_*.deb (dependencies from the Debian mirror), then the
#   agent runs from that root against a controller outside it (the galette package's own
#   bundle and Node runtime, on this machine): it enrols from its bundle, converges on
#   chains/macswap.toml and forwards frames on a veth pair. Then upgrade (keeps /etc and
#   data), remove and purge.
# arm64, in a debootstrapped arm64 Debian 12 root run through qemu-user-static (binfmt_misc):
#   apt-get install ./galette-agent_*_arm64.deb, `galette-agent --version`, the addon loads
#   (libbpf1/libxdp1 from the mirror), and the agent enrols from its bundle and reaches the
#   controller over mTLS (reports its capabilities, polls its assignment), then stops on
#   SIGTERM. qemu-user does not pass bpf() through: no chain is installed there.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
VERSION=${GALETTE_VERSION:-$(node -p "require('./apps/sbc-agent/package.json').version")}
CACHE=${GALETTE_PACKAGING_CACHE:-/var/cache/galette/packaging}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
started=$(date +%s)

step() { printf '\n\033[1m== %s\033[0m (%ss)\n' "$*" "$(($(date +%s) - started))"; }
fail() {
  printf '\033[1;31mtest-packages FAILED:\033[0m %s\n' "$*" >&2
  exit 1
}
ok() { printf '  ok: %s\n' "$*"; }
# shellcheck source=packaging/lib-controller.sh
source "$repo/packaging/lib-controller.sh"

[ "$(id -u)" -eq 0 ] || fail "run as root"
agent_deb=$repo/dist/galette-agent_${VERSION}_amd64.deb
agent_arm64=$repo/dist/galette-agent_${VERSION}_arm64.deb
galette_deb=$repo/dist/galette_${VERSION}_amd64.deb
for f in "$agent_deb" "$agent_arm64" "$galette_deb"; do [ -f "$f" ] || fail "$f is missing: run make packages"; done

work=$(mktemp -d /tmp/galette-test-packages-XXXXXX)
root=$work/root
id=$$
gns="gpkg-$id-gen"
dns="gpkg-$id-dev"
gif="gp${id}g"
dif="gp${id}d"
controller_pid=""
agent_pid=""
mounted=()
cleanup() {
  local status=$?
  set +e
  for pid in $agent_pid; do kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; done
  if [ -x "$root/usr/bin/galette-agent" ] && [ -f "$root/etc/galette/agent.json" ]; then
    inroot galette-agent --config /etc/galette/agent.json --uninstall >>"$work/uninstall.log" 2>&1
  fi
  [ -n "$controller_pid" ] && kill -TERM "$controller_pid" 2>/dev/null && wait "$controller_pid" 2>/dev/null
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -l "${mounted[$i]}"; done
  ip netns del "$gns" 2>/dev/null
  ip netns del "$dns" 2>/dev/null
  if [ "$status" -ne 0 ]; then
    for log in "$work"/*.log; do
      [ -f "$log" ] && {
        echo "--- $log (last 25 lines)" >&2
        tail -n 25 "$log" >&2
      }
    done
  fi
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Runs a command inside the root with a clean environment (proxies kept for apt).
inroot() {
  env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
    ${http_proxy:+http_proxy=$http_proxy} ${https_proxy:+https_proxy=$https_proxy} \
    DEBIAN_FRONTEND=noninteractive chroot "$root" "$@"
}

mount_into() { # SRC DEST
  mkdir -p "$2"
  mount --rbind "$1" "$2"
  mount --make-rslave "$2"
  mounted+=("$2")
}

# ------------------------------------------------------------------------------------------
step "1. A clean Debian 12 root"
tarball=$CACHE/debootstrap/bookworm-amd64-minbase.tar.zst
if [ ! -f "$tarball" ]; then
  echo "  debootstrap --variant=minbase bookworm (first run only; cached in $tarball)"
  fresh=$work/fresh
  debootstrap --variant=minbase bookworm "$fresh" "$MIRROR" >"$work/debootstrap.log" 2>&1 ||
    fail "debootstrap failed (log: $work/debootstrap.log)"
  mkdir -p "$(dirname "$tarball")"
  tar -C "$fresh" --zstd -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
  rm -rf "$fresh"
fi
mkdir -p "$root"
tar -C "$root" --zstd -xf "$tarball"
cat >"$root/etc/apt/sources.list" <<EOF
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb ${MIRROR%/debian}/debian-security bookworm-security main
EOF
cp /etc/resolv.conf "$root/etc/resolv.conf"
mount_into /proc "$root/proc"
# /sys without its submounts: a bpffs showing up under the root's path would be the first
# one tools like ip(8) find in the mount table; step 5 binds /sys/fs/bpf itself
mkdir -p "$root/sys"
mount --bind /sys "$root/sys"
mounted+=("$root/sys")
mount_into /dev "$root/dev"
mkdir -p /run/netns
mount_into /run/netns "$root/run/netns"
ok "$(cat "$root/etc/debian_version") root in $root, nothing of Galette in it"
inroot sh -c 'command -v node || command -v galette-agent' >/dev/null && fail "the clean root has node or galette-agent"

step "2. apt-get install ./galette-agent_${VERSION}_amd64.deb inside it"
cp "$agent_deb" "$root/tmp/"
inroot apt-get update -qq >"$work/apt.log" 2>&1 || fail "apt-get update in the root failed"
inroot apt-get install -y "/tmp/$(basename "$agent_deb")" >>"$work/apt.log" 2>&1 ||
  fail "apt-get install of the agent package failed"
v=$(inroot galette-agent --version) || fail "galette-agent --version failed"
[ "$v" = "$VERSION" ] || fail "galette-agent --version printed '$v', expected $VERSION"
ok "galette-agent --version → $v"
inroot sh -c 'command -v tsx || command -v cc || command -v clang-22 || command -v git' >/dev/null &&
  fail "the agent package pulled in a compiler, git or tsx"
ok "no compiler, git or tsx in the root: $(inroot dpkg -l | grep -c '^ii') packages"

step "3. The controller outside (the galette package's bundle and Node runtime)"
gal=$work/galette-pkg
dpkg-deb -x "$galette_deb" "$gal"
g() { "$gal/usr/lib/galette/node" "$gal/usr/lib/galette/galette.mjs" "$@"; }
[ "$(g --version)" = "$VERSION" ] || fail "packaged galette --version"
data=$work/controller
g pki init --data "$data" >/dev/null
# the program itself, not g (see controller_start)
controller_start "$data" "$work/controller.log" 30 env GALETTE_NF_TARGETS=bpf,x86_64 \
  "$gal/usr/lib/galette/node" "$gal/usr/lib/galette/galette.mjs" controller serve --data "$data" --listen 127.0.0.1:0 ||
  fail "the packaged controller did not start"
GALETTE_URL=$controller_url
GALETTE_TOKEN=$(g token create --data "$data" --name test-packages --scopes admin,publish,deploy,read)
GALETTE_CA="$data/ca.crt"
export GALETTE_URL GALETTE_TOKEN GALETTE_CA
ok "listening on $GALETTE_URL"

step "4. Enrol the device; its bundle goes to /etc/galette in the root"
ip netns add "$gns"
ip netns add "$dns"
for ns in "$gns" "$dns"; do
  nsenter --net="/run/netns/$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
  ip -n "$ns" link set lo up
done
ip link add "$gif" netns "$gns" type veth peer name "$dif" netns "$dns"
ip -n "$gns" link set "$gif" address 02:00:00:00:77:0a
ip -n "$dns" link set "$dif" address 02:00:00:00:77:0b
ip -n "$gns" link set "$gif" up
ip -n "$dns" link set "$dif" up
ops() { node --import "$repo/node_modules/tsx/dist/loader.mjs" "$repo/scripts/demo-ops.ts" "$@"; }
ops xdp-pass "$gns" "$gif"
# the device loads only what this release key signed
g release-key init --out "$work/release-key" >/dev/null
g device enroll pkg-amd64 --labels role=pkgtest --out "$work/bundle" --release-key "$work/release-key/release.pub" >/dev/null
mkdir -p "$root/etc/galette"
cp "$work/bundle"/* "$root/etc/galette/"
node -e '
  const fs = require("fs"); const [file, iface, netns] = process.argv.slice(1);
  const c = JSON.parse(fs.readFileSync(file));
  Object.assign(c, { interface: iface, netns, pollIntervalSeconds: 5, statusIntervalSeconds: 1, workerThreads: 1 });
  fs.writeFileSync(file, JSON.stringify(c, null, 2));
' "$root/etc/galette/agent.json" "$dif" "$dns"
ok "bundle: $(ls "$root/etc/galette" | tr '\n' ' ')"

step "5. The agent, from the root, converges on macswap and forwards frames"
# the agent's view of the machine: the root's files, this machine's bpffs and namespaces
mount_into /sys/fs/bpf "$root/sys/fs/bpf"
mkdir -p "$root/run/galette" "$root/var/lib/galette-agent"
# not through inroot: a backgrounded function is a subshell, and $! would be its pid
env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
  chroot "$root" galette-agent --config /etc/galette/agent.json >"$work/agent.log" 2>&1 &
agent_pid=$!
g nf publish nf-examples/macswap >"$work/publish.log" 2>&1 || fail "nf publish macswap failed"
g nf release macswap --key "$work/release-key/release.key" --trust-controller-build >/dev/null
g chain push chains/macswap.toml --key "$work/release-key/release.key" >/dev/null
g chain assign macswap --selector role=pkgtest >/dev/null
ops wait macswap 90 pkg-amd64 || fail "the packaged agent did not converge"
read -r sent got < <(ops traffic "$gns" "$gif" 02:00:00:00:77:0a 02:00:00:00:77:0b 10.77.0.1 10.77.0.2 20 pkg-amd64)
[ "$got" = "$sent" ] && [ "$sent" -gt 0 ] || fail "sent $sent frames, $got came back"
ok "sent $sent frames through the device, $got came back MAC-swapped"
kill -TERM "$agent_pid"
for _ in $(seq 1 50); do kill -0 "$agent_pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$agent_pid" 2>/dev/null && fail "the agent did not stop within 5 s of SIGTERM"
wait "$agent_pid" || true
agent_pid=""
ok "SIGTERM stopped the agent"
read -r sent got < <(ops traffic "$gns" "$gif" 02:00:00:00:77:0a 02:00:00:00:77:0b 10.77.0.1 10.77.0.2 10 pkg-after)
[ "$got" = "$sent" ] || fail "after the agent stopped: sent $sent, $got came back (the chain must stay pinned)"
ok "the chain stays pinned after the agent stops ($got/$sent frames)"
inroot galette-agent --config /etc/galette/agent.json --uninstall >>"$work/uninstall.log" 2>&1
nsenter --net="/run/netns/$dns" ip -j link show dev "$dif" | grep -q '"xdp"' && fail "--uninstall left an XDP program"
ok "--uninstall removed it"

step "6. Upgrade keeps /etc and data; remove; purge"
echo "GALETTE_LOG_LEVEL=debug" >"$root/etc/default/galette-agent" # an admin's change to a conffile
touch "$root/var/lib/galette-agent/kept"
up=$work/upgrade
dpkg-deb -R "$agent_deb" "$up"
sed -i "s/^Version: .*/Version: $VERSION+upgrade1/" "$up/DEBIAN/control"
dpkg-deb --root-owner-group -Znone --build "$up" "$root/tmp/galette-agent_upgrade.deb" >/dev/null
inroot apt-get install -y -o Dpkg::Options::=--force-confold \
  /tmp/galette-agent_upgrade.deb >>"$work/apt.log" 2>&1 || fail "upgrade failed"
[ "$(inroot dpkg-query -W -f='${Version}' galette-agent)" = "$VERSION+upgrade1" ] || fail "upgrade did not happen"
grep -q debug "$root/etc/default/galette-agent" || fail "upgrade replaced the admin's /etc/default/galette-agent"
[ -f "$root/etc/galette/agent.json" ] && [ -f "$root/etc/galette/device.key" ] || fail "upgrade lost the device bundle"
[ -f "$root/var/lib/galette-agent/kept" ] || fail "upgrade lost /var/lib/galette-agent"
ok "upgraded to $VERSION+upgrade1; /etc/galette, /etc/default/galette-agent and /var/lib/galette-agent kept"
inroot apt-get remove -y galette-agent >>"$work/apt.log" 2>&1 || fail "remove failed"
[ ! -e "$root/usr/bin/galette-agent" ] && [ ! -e "$root/usr/lib/galette-agent" ] || fail "remove left the program"
[ -f "$root/etc/default/galette-agent" ] && [ -f "$root/etc/galette/agent.json" ] || fail "remove deleted configuration"
ok "remove: program gone, configuration kept"
inroot apt-get purge -y galette-agent >>"$work/apt.log" 2>&1 || fail "purge failed"
[ ! -e "$root/etc/default/galette-agent" ] && [ ! -e "$root/var/lib/galette-agent" ] && [ ! -e "$root/etc/galette/agent.json" ] ||
  fail "purge left configuration or data"
inroot dpkg -l galette-agent 2>/dev/null | grep -q '^ii' && fail "still installed after purge"
ok "purge: configuration and data gone"

step "7. arm64: apt-get install ./galette-agent_${VERSION}_arm64.deb in an arm64 Debian 12 root (qemu-user)"
# The same newcomer path on an emulated CPU: a debootstrapped arm64 root (cached by recipe)
# whose programs the kernel runs through qemu-user-static (binfmt_misc), the package installed
# with apt (its dependencies from the mirror), then the agent from there.
arm=$work/arm64
mkdir -p "$arm/pkg"
dpkg-deb -x "$agent_arm64" "$arm/pkg"
for f in "$arm/pkg/usr/lib/galette-agent/node" "$arm/pkg/usr/lib/galette-agent/packages/xdp-native/build/Release/"*; do
  case $f in *.o) continue ;; esac
  file -b "$f" | grep -q "ARM aarch64" || fail "$f is not aarch64: $(file -b "$f")"
done
ok "node, the addon and the worker in the package are aarch64 ELF files"
# shellcheck source=packaging/debian-root.sh
source "$repo/packaging/debian-root.sh"
export DEBIAN_ROOT_LOG=$work/debootstrap-arm64.log
arm_tarball=$(debian_root_tarball arm64 minbase "") || fail "debootstrap of the arm64 root failed"
debian_root_binfmt arm64 || fail "binfmt_misc cannot run aarch64 programs (qemu-user-static)"
aroot=$arm/root
mkdir -p "$aroot"
tar -C "$aroot" --zstd -xf "$arm_tarball"
cp "$root/etc/apt/sources.list" "$aroot/etc/apt/sources.list"
cp /etc/resolv.conf "$aroot/etc/resolv.conf"
mount_into /proc "$aroot/proc"
mkdir -p "$aroot/sys" && mount --bind /sys "$aroot/sys" && mounted+=("$aroot/sys")
mount_into /dev "$aroot/dev"
mount_into /run/netns "$aroot/run/netns"
ainroot() {
  env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
    ${http_proxy:+http_proxy=$http_proxy} ${https_proxy:+https_proxy=$https_proxy} \
    DEBIAN_FRONTEND=noninteractive chroot "$aroot" "$@"
}
[ "$(ainroot dpkg --print-architecture)" = arm64 ] || fail "the arm64 root's dpkg is not arm64"
cp "$agent_arm64" "$aroot/tmp/"
ainroot apt-get update -qq >"$work/apt-arm64.log" 2>&1 || fail "apt-get update in the arm64 root failed"
ainroot apt-get install -y "/tmp/$(basename "$agent_arm64")" >>"$work/apt-arm64.log" 2>&1 ||
  fail "apt-get install of the arm64 agent package failed"
v=$(ainroot galette-agent --version 2>/dev/null) || fail "galette-agent --version failed under qemu-user"
[ "$v" = "$VERSION" ] || fail "arm64 galette-agent --version printed '$v', expected $VERSION"
ok "installed with apt; galette-agent --version under qemu-user → $v"
n=$(ainroot /usr/lib/galette-agent/node -e '
  const m = { exports: {} };
  process.dlopen(m, "/usr/lib/galette-agent/packages/xdp-native/build/Release/galette_xdp.node");
  console.log(Object.keys(m.exports).length);' 2>/dev/null) || fail "the arm64 addon does not load (libbpf/libxdp from the mirror)"
[ "$n" -gt 10 ] || fail "the arm64 addon loaded with $n exports"
ok "the arm64 Node runtime loads the addon ($n functions; libbpf1/libxdp1 from the mirror)"

# The agent from the arm64 root: enrols from its bundle and reports to the controller over
# mTLS. qemu-user passes neither bpf() nor setns() through, so it reports what it could not
# probe and installs nothing (make test-devices runs the arm64 package on an emulated machine).
g device enroll pkg-arm64 --labels role=pkgtest-arm64 --out "$work/bundle-arm64" --release-key "$work/release-key/release.pub" >/dev/null
mkdir -p "$aroot/etc/galette"
cp "$work/bundle-arm64"/* "$aroot/etc/galette/"
aif="${dif}a"
ip -n "$dns" link add "$aif" type veth peer name "${aif}p"
ip -n "$dns" link set "$aif" up
node -e '
  const fs = require("fs"); const [file, iface, netns] = process.argv.slice(1);
  const c = JSON.parse(fs.readFileSync(file));
  Object.assign(c, { interface: iface, netns, pollIntervalSeconds: 5, statusIntervalSeconds: 2, workerThreads: 1 });
  fs.writeFileSync(file, JSON.stringify(c, null, 2));
' "$aroot/etc/galette/agent.json" "$aif" "$dns"
mkdir -p "$aroot/run/galette" "$aroot/var/lib/galette-agent"
env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
  chroot "$aroot" galette-agent --config /etc/galette/agent.json >"$work/agent-arm64.log" 2>&1 &
agent_pid=$!
seen=""
for _ in $(seq 1 120); do
  seen=$(g device list --json | node -e '
    const d = JSON.parse(require("fs").readFileSync(0)).devices.find((x) => x.name === "pkg-arm64");
    if (d && d.online && d.arch === "aarch64" && d.agentVersion && d.capabilities)
      console.log(`${d.arch} agent ${d.agentVersion}, kernel ${d.kernelVersion}, last seen ${d.lastSeenAt}`);')
  [ -n "$seen" ] && break
  kill -0 "$agent_pid" 2>/dev/null || fail "the arm64 agent exited"
  sleep 1
done
[ -n "$seen" ] || fail "the arm64 agent did not report to the controller within 120 s"
ok "the arm64 agent reached the controller over mTLS: $seen"
for _ in $(seq 1 60); do grep -q '"assignment received"' "$work/agent-arm64.log" && break; sleep 0.5; done
grep -q '"assignment received"' "$work/agent-arm64.log" || fail "the arm64 agent did not poll its assignment"
ok "it polls its assignment"
kill -TERM "$agent_pid"
for _ in $(seq 1 100); do kill -0 "$agent_pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$agent_pid" 2>/dev/null && fail "the arm64 agent did not stop within 10 s of SIGTERM"
wait "$agent_pid" || true
agent_pid=""
ok "SIGTERM stopped it"

step "passed in $(($(date +%s) - started)) s"
