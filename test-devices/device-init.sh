#!/bin/bash
# PID 1 of the emulated device (kernel command line init=): mounts what the agent needs,
# then hands over to the test's device-side script on the host share (9p, tag "host"), so
# changing that script does not rebuild the cached disk image. No systemd: it would cost
# minutes of emulated boot.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc 2>/dev/null
mount -t sysfs sysfs /sys 2>/dev/null
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs tmpfs /run 2>/dev/null
mount -t tmpfs tmpfs /tmp 2>/dev/null
mount -t bpf bpf /sys/fs/bpf
mount -o remount,rw /
modprobe -a 9pnet_virtio 9p virtio_net
mkdir -p /mnt/host
if mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 host /mnt/host && [ -f /mnt/host/device.sh ]; then
  bash /mnt/host/device.sh >/mnt/host/device.log 2>&1
  echo "galette-device: device.sh exited with $?" >/dev/console
else
  echo "galette-device: FAILED: the host share (9p tag host) did not mount" >/dev/console
fi
echo o >/proc/sysrq-trigger
sleep infinity
