#!/bin/sh
# PID 1 of a VM container's guest (busybox sh in the initramfs; docs/VM.md). It loads the
# virtio modules, mounts the container's rootfs (virtio-9p tag "rootfs") at /newroot,
# configures eth0.. from /ct/config.sh (written by the host from the network plugin's
# allocation), writes /etc/hosts, /etc/resolv.conf, the hostname and domain name, runs the
# process in /newroot with its env and workdir, and serves the host's control port: signals, exec,
# then the exit status. /ct/config.sh quotes every value (shlex.quote on the host).
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
while read -r m; do insmod "/lib/modules/$m" || echo "init: insmod $m failed" > /dev/console; done < /modules
. /ct/config.sh
# virtio-serial ports by name (no udev here): port_ctl, port_stdout, port_stderr (the
# host names them; read and case are builtins: no fork per port under emulation). A port
# opens once: fd 3 is the control port.
for p in /sys/class/virtio-ports/*; do
  read -r n < "$p/name"
  case "$n" in
    ctl) port_ctl="/dev/${p##*/}" ;;
    stdout) port_stdout="/dev/${p##*/}" ;;
    stderr) port_stderr="/dev/${p##*/}" ;;
  esac
done
exec 3<> "$port_ctl"
mark() { read -r up _ < /proc/uptime; echo "mark $1 $up" >&3; }
mark init
mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288,access=client rootfs /newroot \
  || { echo "exit 125 cannot mount the root filesystem" >&3; reboot -f; }
mark rootfs
# Interfaces by MAC: virtio-mmio probe order is not the host's eth order. A NIC with
# another name first gets a temporary one, so two NICs never want one name at once.
# (Each command here is a fork and exec under emulation: builtins where they do.)
ip link set lo up
i=0
while [ "$i" -lt "$CT_NICS" ]; do
  eval "mac=\$CT_NIC${i}_MAC name=\$CT_NIC${i}_NAME"
  for n in /sys/class/net/*; do
    read -r a < "$n/address"
    [ "$a" = "$mac" ] || continue
    if [ "${n##*/}" = "$name" ]; then
      eval "dev$i=\$name"
    else
      ip link set "${n##*/}" name "ctnic$i"
      eval "dev$i=ctnic$i"
    fi
  done
  i=$((i + 1))
done
i=0
while [ "$i" -lt "$CT_NICS" ]; do
  eval "dev=\$dev$i name=\$CT_NIC${i}_NAME addr=\$CT_NIC${i}_ADDR gw=\$CT_NIC${i}_GW"
  eval "mtu=\$CT_NIC${i}_MTU addr6=\$CT_NIC${i}_ADDR6 gw6=\$CT_NIC${i}_GW6"
  if [ "$dev" = "$name" ]; then
    ip link set "$name" mtu "$mtu"
  else
    ip link set "$dev" name "$name" mtu "$mtu"
  fi
  if [ -z "$addr6" ]; then
    echo 1 > "/proc/sys/net/ipv6/conf/$name/disable_ipv6"
  else
    echo 0 > "/proc/sys/net/ipv6/conf/$name/accept_dad"
    ip -6 addr add "$addr6" dev "$name"
  fi
  ip addr add "$addr" dev "$name"
  ip link set "$name" up
  if [ "$i" = 0 ]; then
    ip route add default via "$gw" dev "$name"
    [ -n "$gw6" ] && ip -6 route add default via "$gw6" dev "$name"
  fi
  i=$((i + 1))
done
mark network
echo "$CT_HOSTNAME" > /proc/sys/kernel/hostname
[ -n "$CT_DOMAINNAME" ] && echo "$CT_DOMAINNAME" > /proc/sys/kernel/domainname
mkdir -p /newroot/etc /newroot/proc /newroot/sys /newroot/dev /newroot/tmp
copy() { while IFS= read -r l || [ -n "$l" ]; do printf '%s\n' "$l"; done < "$1" > "$2"; }
for f in hosts resolv.conf hostname; do copy "/ct/$f" "/newroot/etc/$f"; done
mount -t proc proc /newroot/proc
mount -t sysfs sys /newroot/sys
mount -t devtmpfs dev /newroot/dev
mkdir -p /newroot/dev/pts /newroot/dev/shm
mount -t devpts devpts /newroot/dev/pts
mount -t tmpfs shm /newroot/dev/shm
# The process: env -i, nsenter -r/-w (chroot + workdir), its user; CT_EXEC is built and
# quoted by the host.
eval "$CT_EXEC" < /dev/null > "$port_stdout" 2> "$port_stderr" 3>&- &
pid=$!
mark started
# Control requests from the host, one line each: "signal N" or "exec ID B64SCRIPT".
(
  while read -r cmd a b <&3; do
    case "$cmd" in
      signal) kill "-$a" "$pid" 2> /dev/null ;;
      exec)
        echo "$b" | base64 -d > "/tmp/exec-$a"
        (
          sh "/tmp/exec-$a" > "/tmp/out-$a" 2> "/tmp/err-$a" < /dev/null 3>&-
          rc=$?
          printf 'exec-result %s %s %s %s\n' "$a" "$rc" "$(base64 -w0 < "/tmp/out-$a")" \
            "$(base64 -w0 < "/tmp/err-$a")" >&3
          rm -f "/tmp/exec-$a" "/tmp/out-$a" "/tmp/err-$a"
        ) &
        ;;
    esac
  done
) &
wait "$pid"
rc=$?
sync
echo "exit $rc" >&3
umount /newroot/dev/shm /newroot/dev/pts /newroot/dev /newroot/sys /newroot/proc 2> /dev/null
umount /newroot 2> /dev/null
reboot -f
