# Runs inside the emulated device as the init's child (test-devices/device-init.sh), from the
# host share /mnt/host. Writes progress markers the host waits for, starts the packaged agent
# from its bundle, then serves commands the host drops in /mnt/host/cmd (N.sh → N.out, N.rc).
set -u
share=/mnt/host
mark() { echo "$*" >>"$share/progress"; echo "galette-device: $*" >/dev/console; }
# The host's clock, so the agent's log lines and the host's timings compare: QEMU's 9p server
# stamps a touched file with the host's time (the command line's galette.now is when QEMU
# started, a boot behind).
now=$(touch "$share/.clock" && stat -c %.3Y "$share/.clock")
[[ $now =~ ^[0-9]+(\.[0-9]+)?$ ]] || now=$(sed -n 's/.*galette\.now=\([0-9]*\).*/\1/p' /proc/cmdline)
[ -n "$now" ] && date -s "@$now" >/dev/null
ip link set lo up
# systemd-tmpfiles creates /dev/net/tun at boot on a real system (kmod static nodes); the
# agent's host delivery opens it
modprobe tun || { mark "FAILED modprobe tun"; exit 1; }
# interfaces by MAC: the host chose them (management, data0, data1)
for dev in /sys/class/net/*; do
  name=${dev##*/}
  case "$(cat "$dev/address")" in
    52:54:00:12:34:56) ip link set "$name" name mgmt0 ;;
    02:00:00:00:aa:01) ip link set "$name" name data0 ;;
    02:00:00:00:aa:02) ip link set "$name" name data1 ;;
  esac
done
for i in mgmt0 data0 data1; do
  ip link set "$i" up || { mark "FAILED interfaces: $i missing ($(ls /sys/class/net | tr '\n' ' '))"; exit 1; }
done
ip addr add 10.0.2.15/24 dev mgmt0
ip route add default via 10.0.2.2
mark "kernel $(uname -r) $(uname -m) ($(uname -v | grep -o 'Debian [^ ]*' || uname -v))"
mark "booted $(cut -d' ' -f1 /proc/uptime)"
mkdir -p /etc/galette
cp "$share"/bundle/* /etc/galette/
[ -f /etc/default/galette-agent ] && set -a && . /etc/default/galette-agent && set +a
# the test's settings for this run (the log level)
[ -f "$share/agent.env" ] && set -a && . "$share/agent.env" && set +a
# Through a pipe, not straight into the share: the agent logs synchronously (pino), and a 9p
# write that QEMU is slow to serve (a busy host) would stop its event loop; cat absorbs it.
/usr/bin/galette-agent --config /etc/galette/agent.json 2>&1 | cat >"$share/agent.log" &
mark "agent started $(cut -d' ' -f1 /proc/uptime)"
# Waits without a process per wait (read's timeout on a FIFO nothing writes): under TCG a
# sleep process every 0.2 s cost the device a tenth of a CPU, taken from the agent.
if mkfifo /run/galette-nap && exec 9<>/run/galette-nap; then
  nap() { read -rt "$1" -u 9; }
else
  nap() { sleep "$1"; }
fi
n=0
while :; do
  n=$((n + 1))
  while [ ! -f "$share/cmd/$n.sh" ]; do nap 0.2; done
  bash "$share/cmd/$n.sh" >"$share/cmd/$n.out" 2>&1
  # renamed into place: the host, waiting for the file, must not read it before its status
  echo $? >"$share/cmd/$n.rc.tmp" && mv "$share/cmd/$n.rc.tmp" "$share/cmd/$n.rc"
done
