# Runs inside the emulated device (test-devices/run.sh starts it in the background around a
# step): every second, every task's /proc stat line (CPU ticks, state) and the kernel stacks
# of the agent's and the NF worker's threads, until STOP_FILE exists or SECONDS_MAX pass.
# Three processes per pass and the parsing left to the host (cpu-summary.mjs): under TCG
# each process started costs the device milliseconds.
# Lines: "T epoch", then grep -H output: "/proc/PID/task/TID/stat:…", "…/stack:[<0>] frame+off/len".
# usage: sample.sh OUT STOP_FILE SECONDS_MAX
out=$1 stop=$2 max=$3
exec >"$out" 2>/dev/null
end=$((SECONDS + max))
# waits without a process (device.sh's FIFO trick)
nap=$(mktemp -u /run/galette-sample-XXXXXX) && mkfifo "$nap" && exec 9<>"$nap" && rm -f "$nap"
while [ ! -e "$stop" ] && [ "$SECONDS" -lt "$end" ]; do
  echo "T $EPOCHREALTIME"
  grep -H "" /proc/[0-9]*/task/[0-9]*/stat
  # the agent (node) and its NF worker (galette-nf-worker, "galette-nf-wor" in comm)
  procs=$(grep -lE '^(node|galette)' /proc/[0-9]*/comm)
  [ -n "$procs" ] && grep -H "" ${procs//comm/task\/[0-9]*\/stack}
  read -rt 1 -u 9
done
