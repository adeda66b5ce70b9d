#!/usr/bin/env bash
# Debian's PostgreSQL 15: the controller's PostgreSQL backend is tested against a real server
# that each test file starts itself (initdb in a temp dir, its own port). No cluster is
# created and no system service is started here. Idempotent: installs only when missing.
set -euo pipefail
if [ -x /usr/lib/postgresql/15/bin/initdb ] && [ -x /usr/lib/postgresql/15/bin/pg_ctl ]; then
  printf '[postgresql] present: %s\n' "$(/usr/lib/postgresql/15/bin/postgres --version 2>/dev/null || echo unknown)"
  exit 0
fi
printf '[postgresql] installing postgresql-15 (tests of the PostgreSQL backend)\n'
export DEBIAN_FRONTEND=noninteractive
# postgresql-common reads this before the server package's postinst: no "main" cluster.
mkdir -p /etc/postgresql-common
if ! grep -qs '^create_main_cluster' /etc/postgresql-common/createcluster.conf; then
  printf 'create_main_cluster = false\n' >>/etc/postgresql-common/createcluster.conf
fi
# No service start during the install (containers without an init, CI machines).
policy=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  made_policy=1
fi
cleanup() { if [ "$made_policy" = 1 ]; then rm -f "$policy"; fi; }
trap cleanup EXIT
apt-get update -qq
apt-get install -y -qq --no-install-recommends postgresql-15 >/dev/null
/usr/lib/postgresql/15/bin/postgres --version
