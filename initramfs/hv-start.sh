#!/bin/sh
# hv-start DEVICE [DIR...]: brings up the hypervisor userland (initramfs/userland.sh) from
# DEVICE, the squashfs attached over iSCSI (or an image file), and starts libvirtd in it:
#   DEVICE  --squashfs, ro-->  /hv
#   /hv + tmpfs /hv-rw  --overlay-->  /hv-root, with /proc /sys /dev /run bound in (recursively)
#   each DIR (e.g. the VMs' overlay directory) bound at the same path inside /hv-root
#   chroot /hv-root libvirtd --daemon
# Exits 0 once `virsh -c qemu:///system version` answers in the chroot, 1 with the reason on
# stderr otherwise (everything it set up is undone then), 2 for bad usage.
# env: HV_START_TIMEOUT: seconds libvirtd gets to answer (default 120: QEMU capability probing
#      takes tens of seconds under software emulation)
# Installed as /bin/hv-start in the host boot image; hv-stop undoes it.

lower=/hv
rw=/hv-rw
root=/hv-root
timeout=${HV_START_TIMEOUT:-120}
chroot_env="env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C.UTF-8"

fail() {
	echo "hv-start: $*" >&2
	hv-stop >/dev/null 2>&1
	exit 1
}

is_mounted() {
	awk -v dir="$1" '$2 == dir { found = 1 } END { exit !found }' /proc/mounts
}

# libvirtd answers the same question the agent will ask.
libvirt_answers() {
	$chroot_env chroot "$root" virsh -c qemu:///system version >/dev/null 2>&1
}

if [ $# -lt 1 ]; then
	echo "usage: hv-start DEVICE [DIR...]" >&2
	exit 2
fi
dev=$1
shift
[ -b "$dev" ] || [ -f "$dev" ] || {
	echo "hv-start: $dev: no such block device or image file" >&2
	exit 1
}
if is_mounted "$root"; then
	libvirt_answers && exit 0
	echo "hv-start: $root is mounted but libvirtd does not answer: run hv-stop first" >&2
	exit 1
fi

for module in squashfs overlay loop; do
	modprobe -q "$module" 2>/dev/null
done
mkdir -p "$lower" "$rw" "$root"
# busybox mount sets up a loop device by itself when DEVICE is a file.
out=$(mount -t squashfs -o ro "$dev" "$lower" 2>&1) ||
	fail "$dev: cannot mount as squashfs: $out"
# The upper layer takes what libvirt writes (state, logs, sockets' directories): RAM only, so
# every boot starts from the image as built.
mount -t tmpfs -o mode=0755 hv-rw "$rw" || fail "cannot mount a tmpfs on $rw"
mkdir -p "$rw/upper" "$rw/work"
out=$(mount -t overlay -o "lowerdir=$lower,upperdir=$rw/upper,workdir=$rw/work" hv-root "$root" 2>&1) ||
	fail "cannot mount the overlay on $root: $out"
for dir in /proc /sys /dev /run "$@"; do
	case $dir in /*) ;; *) fail "$dir: not an absolute path" ;; esac
	[ -d "$dir" ] || fail "$dir: no such directory to bind into $root"
	mkdir -p "$root$dir"
	mount -o rbind "$dir" "$root$dir" || fail "cannot bind $dir into $root"
done

$chroot_env chroot "$root" /usr/sbin/libvirtd --daemon ||
	fail "libvirtd did not start: $(tail -n 5 "$root/var/log/libvirt/libvirtd.log" 2>/dev/null)"

# Readiness is libvirtd answering, polled with a deadline; a daemon that died fails at once.
deadline=$(($(date +%s) + timeout))
until libvirt_answers; do
	pid=$(cat /run/libvirtd.pid 2>/dev/null)
	if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then
		fail "libvirtd exited: $(tail -n 5 "$root/var/log/libvirt/libvirtd.log" 2>/dev/null)"
	fi
	if [ "$(date +%s)" -ge "$deadline" ]; then
		fail "libvirtd did not answer within $timeout s: $(tail -n 5 "$root/var/log/libvirt/libvirtd.log" 2>/dev/null)"
	fi
	sleep 0.2
done
echo "hv-start: libvirtd ready in $root ($($chroot_env chroot "$root" virsh -c qemu:///system version --daemon 2>/dev/null | awk '/Running hypervisor/ { print $3, $4 }'))"
