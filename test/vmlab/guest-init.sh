#!/bin/sh
# PID 1 of the VM lab's guest once its root is mounted (image/init hands over
# here): mounts the basics and runs the guest test binary the host put in the
# share, with the arguments in /share/run.args, one per line. Its output (the test2json
# stream) goes to /share/out/guest.out and its exit status to /share/out/rc; the
# host reads both, never qemu's exit status. Then the guest powers off.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tmpfs -o mode=0755 tmpfs /run
mount -t tmpfs tmpfs /tmp
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
# cgroup2 gives the tests the kernel's view of the pods' processes.
mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null
hostname lab
ip link set lo up
# Modules that nothing loads on demand here (no udev, no static device nodes).
for m in loop virtio_rng; do modprobe "$m" || echo "LAB_GUEST: modprobe $m failed"; done
echo "LAB_GUEST_UP kernel=$(uname -r) uptime=$(cut -d' ' -f1 /proc/uptime)"
mkdir -p /share/out
# The test binary gets its flags one per line, so patterns with spaces survive.
set --
while IFS= read -r a; do set -- "$@" "$a"; done </share/run.args
cd /share/out
PVNFS_VMLAB_GUEST=1 /share/bin/vmlab-guest.test "$@" >/share/out/guest.out 2>&1
echo $? >/share/out/rc
dmesg >/share/out/dmesg.txt
echo "LAB_GUEST_DONE rc=$(cat /share/out/rc) uptime=$(cut -d' ' -f1 /proc/uptime)"
# The share is written through (9p without a cache); a global sync could wait
# forever on an NFS mount a test left with its server gone.
timeout 10 sync -f /share/out/rc
# No init system in the image to call poweroff: the kernel's own.
echo o >/proc/sysrq-trigger
# The power-off runs from a kernel worker; PID 1 must not exit before it does.
sleep 120
