#!/usr/bin/env bash
# tshark (Wireshark's command-line reader): the tests of `galette trace --pcapng` read the
# files back with it, so they are checked by the reference parser, not by our own.
set -euo pipefail
if ! command -v tshark >/dev/null; then
  echo "[setup/tshark] installing tshark"
  export DEBIAN_FRONTEND=noninteractive
  # wireshark-common asks whether non-root users may capture: keep the default (no)
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
  apt-get install -y -qq --no-install-recommends tshark >/dev/null ||
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends tshark >/dev/null; }
fi
tshark --version | head -1
