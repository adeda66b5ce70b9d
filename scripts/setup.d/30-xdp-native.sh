#!/usr/bin/env bash
# Builds the @galette/xdp-native N-API addon (libbpf + libxdp) and its compiled root XDP
# program with node-gyp, against the system Node headers (--nodedir=/usr: node-gyp must
# not try to download headers). pnpm 10 runs no install scripts, so this is the build.
# Idempotent: skipped when build/Release is newer than every source.
set -euo pipefail
cd "$(dirname "$0")/../../packages/xdp-native"

out=build/Release/galette_xdp.node
worker=build/Release/galette-nf-worker
root=build/Release/root.bpf.o
rx=build/Release/rx_upcall.bpf.o
for hdr in /usr/include/node/node_api.h /usr/include/bpf/libbpf.h /usr/include/xdp/xsk.h /usr/include/seccomp.h; do
  [ -f "$hdr" ] || { echo "xdp-native: missing $hdr (nodejs headers, libbpf-dev, libxdp-dev, libseccomp-dev)" >&2; exit 1; }
done
command -v clang-22 >/dev/null || { echo "xdp-native: clang-22 is not installed" >&2; exit 1; }

if [ -f "$out" ] && [ -f "$worker" ] && [ -f "$root" ] && [ -f "$rx" ] &&
  [ -z "$(find binding.gyp native bpf include -newer "$out" -print -quit)" ]; then
  echo "xdp-native addon up to date"
  exit 0
fi
echo "building xdp-native addon (node-gyp, ~10 s)"
log=$(mktemp)
if ! pnpm -s build:native >"$log" 2>&1; then
  cat "$log" >&2
  rm -f "$log"
  echo "xdp-native: node-gyp build failed (log above)" >&2
  exit 1
fi
rm -f "$log"
[ -f "$out" ] && [ -f "$worker" ] && [ -f "$root" ] && [ -f "$rx" ] || { echo "xdp-native: build finished without $out / $worker / $root / $rx" >&2; exit 1; }
