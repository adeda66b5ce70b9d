# Sourced by packaging/test-packages.sh, test-devices/run.sh and scripts/demo.sh: a controller on this machine
# (for the device under test, or the demo).
#
# controller_start DATA LOG TIMEOUT_S COMMAND...: runs COMMAND (a `galette controller serve
# --data DATA ...`, as `env VAR=... PROGRAM ARGS...`) in the background with its output in
# LOG, sets controller_pid to its pid and waits until it has written DATA/controller.json,
# then sets controller_url. Returns 1 with a message on stderr when the controller exits
# first or takes longer than TIMEOUT_S. The caller's clean-up kills controller_pid.
#
# COMMAND must be a program, not a shell function, and this function must not itself run in
# the background or in $(...): either way the controller would run in a subshell whose pid is
# all $! gives, and killing that pid at clean-up would leave the controller running.
controller_start() {
  local data=$1 log=$2 timeout_s=$3
  shift 3
  "$@" >"$log" 2>&1 &
  controller_pid=$!
  local deadline=$((SECONDS + timeout_s))
  until [ -f "$data/controller.json" ]; do
    kill -0 "$controller_pid" 2>/dev/null || {
      echo "the controller exited before it listened (log: $log)" >&2
      return 1
    }
    [ "$SECONDS" -lt "$deadline" ] || {
      echo "the controller did not listen within $timeout_s s (log: $log)" >&2
      return 1
    }
    sleep 0.1
  done
  controller_url=$(node -p 'JSON.parse(require("fs").readFileSync(process.argv[1])).url' "$data/controller.json")
}
