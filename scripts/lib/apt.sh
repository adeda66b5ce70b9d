# apt helpers shared by scripts/setup.d steps (sourced). Each step defines log/warn first.
#
# A Debian mirror that is mid-sync can serve one architecture's index of a suite with the
# wrong size ("File has unexpected size (…) Mirror sync in progress?"); apt then ignores that
# suite for every architecture until a later update succeeds. update_indexes retries such
# failures, and names the suite and architecture when they persist.
export DEBIAN_FRONTEND=noninteractive

# Prints the packages of "$@" that are not installed.
apt_missing() {
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
  done
}

# apt-get install -y, quiet; on failure shows apt's explanation (-s) and returns 1.
apt_install() {
  local log_file
  log_file=$(mktemp)
  if apt-get install -y -qq "$@" >"$log_file" 2>&1; then
    rm -f "$log_file"
    return 0
  fi
  tail -4 "$log_file" >&2
  apt-get install -s "$@" 2>&1 | tail -8 >&2 || true
  rm -f "$log_file"
  return 1
}

# apt-get update until every index is fetched ($APT_UPDATE_TRIES tries, default 3, waiting
# $APT_UPDATE_WAIT s (default 20) times the attempt number in between). On failure
# the last attempt's error lines are in $APT_UPDATE_ERRORS (e.g. the index and suite that
# had the wrong size) and it returns 1.
APT_UPDATE_ERRORS=""
apt_update_indexes() {
  local attempt out tries=${APT_UPDATE_TRIES:-3}
  for ((attempt = 1; attempt <= tries; attempt++)); do
    if out=$(apt-get update 2>&1) && ! grep -qE '^(E|W): (Failed to fetch|Some index files failed)' <<<"$out"; then
      APT_UPDATE_ERRORS=""
      return 0
    fi
    APT_UPDATE_ERRORS=$(grep -E '^(E|W):' <<<"$out" | head -3)
    [ "$attempt" -lt "$tries" ] || return 1
    log "apt-get update attempt $attempt failed (mirror mid-sync?); retrying in $((attempt * ${APT_UPDATE_WAIT:-20})) s"
    sleep $((attempt * ${APT_UPDATE_WAIT:-20}))
  done
}

# The suite (e.g. bookworm-security) and architecture of the index apt could not fetch,
# from $APT_UPDATE_ERRORS ("" when it names none).
apt_failed_index() {
  grep -oE '/dists/[^/ ]+/[^ ]*binary-[a-z0-9]+' <<<"$APT_UPDATE_ERRORS" | head -1 |
    sed -E 's|/dists/([^/]+)/.*binary-([a-z0-9]+)|\1 (\2)|'
}
