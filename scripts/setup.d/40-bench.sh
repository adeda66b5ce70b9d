#!/usr/bin/env bash
# Benchmarks (bench/): the PNG plots are rendered with resvg, which needs a system font to
# draw any text; the C tools (built lazily by the runner) need gcc, clang-22, libbpf, libxdp
# (installed by setup.sh) and chrt/taskset/unshare from util-linux.
set -euo pipefail
if ! dpkg-query -W -f='${Status}' fonts-dejavu-core 2>/dev/null | grep -q "install ok installed"; then
  echo "[setup/bench] installing fonts-dejavu-core (plot labels)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq fonts-dejavu-core >/dev/null || { apt-get update -qq && apt-get install -y -qq fonts-dejavu-core >/dev/null; }
fi
for tool in chrt taskset unshare nsenter; do
  command -v "$tool" >/dev/null || { echo "[setup/bench] error: \`$tool\` missing (util-linux)" >&2; exit 1; }
done
