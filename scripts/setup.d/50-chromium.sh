#!/usr/bin/env bash
# Debian's chromium: the web console's browser tests drive it (playwright-core, headless).
# Idempotent: installs it only when missing.
set -euo pipefail
if dpkg-query -W -f='${Status}' chromium 2>/dev/null | grep -q "install ok installed"; then
  printf '[chromium] present: %s\n' "$(chromium --version 2>/dev/null || echo unknown)"
  exit 0
fi
printf '[chromium] installing chromium (browser tests of the web console)\n'
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq chromium >/dev/null
