# Runs inside the emulated device as the init's child (test-devices/device-init.sh), from the
# host share /mnt/host. Writes progress markers the host waits for, starts the packaged agent
# from its bundle, then serves commands the host drops in /mnt/host/cmd (N.sh → N.out, N.rc).
set -u
share=/mnt/host
mark() { echo "$*" >>"$share/progress"; echo "galette-device: $*" >/dev/console; }
now=$(sed -n 's/.*galette\.now=\([0-9]*\).*/\1/p' /proc/cmdline)
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
/usr/bin/galette-agent --config /etc/galette/agent.json >"$share/agent.log" 2>&1 &
mark "agent started $(cut -d' ' -f1 /proc/uptime)"
n=0
while :; do
  n=$((n + 1))
  while [ ! -f "$share/cmd/$n.sh" ]; do sleep 0.2; done
  bash "$share/cmd/$n.sh" >"$share/cmd/$n.out" 2>&1
  echo $? >"$share/cmd/$n.rc"
done
