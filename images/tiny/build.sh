#!/usr/bin/env bash
# Builds the tiny VM image: a small bootable raw disk that boots fast even under nested
# software emulation (QEMU TCG), for tests that start many identical VMs.
#
# usage: images/tiny/build.sh OUT.img [MARKER]       a bootable image
#        images/tiny/build.sh --no-bootloader OUT.img a disk that cannot boot
#
# The bootable image: an MBR partition table (syslinux's mbr.bin as boot code) with one
# active FAT16 partition holding SYSLINUX, a Debian kernel and a tiny busybox initramfs.
# Its /init prints "MARKER NAME" on the serial console (MARKER defaults to virtman-vm-up;
# the reimaging tests build a second image with virtman-vm-up-v2 to tell the two apart),
# NAME being the SMBIOS system serial that libvirt's <sysinfo> or QEMU's
# -smbios type=1,serial=NAME sets ("unnamed" without one), and then stays up: VMs are
# expected to keep running until someone stops them. After the marker, a VM with a virtio
# NIC loads its drivers, asks for an address with DHCP and prints "virtman-vm-net NAME
# eth0 ADDRESS/PREFIX MAC" (or "virtman-vm-net NAME eth0 none MAC"): the proof that it
# sits on the network it was given.
#
# The broken image has the same partition table and MBR boot code but an empty partition:
# the MBR code finds no boot sector there, prints "Missing operating system." and hands back
# to the BIOS (int 18h), so SeaBIOS ends with "No bootable device." — deterministic, unlike
# an MBR with no code at all, whose CPU would run on into whatever memory follows.
#
# Nothing is mounted and no loop device is used (see images/common.sh); root is not needed.
#
# env: KERNEL=PATH   the kernel to use. Default: Debian's cloud kernel (linux-image-cloud-
#                    amd64, fetched once with apt-get download into KERNEL_CACHE, never
#                    installed), which boots in about half the time of the generic one under
#                    TCG; when apt cannot get it, the newest /boot/vmlinuz-* (with a warning).
#      KERNEL_CACHE  default: OUT's directory/cache
#      KERNEL_MODULES  a directory holding the kernel's virtio NIC modules (VIRTIO_NET_MODULES
#                    of images/common.sh, as NAME.ko). Default: the cloud kernel's, kept in
#                    KERNEL_CACHE; for another kernel, /lib/modules/VERSION. Without them the
#                    image has no network (a warning says so).
#      BUSYBOX       default: /bin/busybox (busybox-static)
#      INITRD_COMPRESS=none|gzip   default none (measured no faster with gzip: images/README.md)
#      SOURCE_DATE_EPOCH           default 0: the times inside the image (reproducible builds)
set -euo pipefail

die() {
	echo "images/tiny/build.sh: $*" >&2
	exit 1
}

usage() {
	echo "usage: $0 OUT.img [MARKER] | $0 --no-bootloader OUT.img" >&2
	exit 2
}

# shellcheck source=images/common.sh
. "$(dirname "$0")/../common.sh"

broken=0
if [[ ${1:-} == --no-bootloader ]]; then
	broken=1
	shift
	(($# == 1)) || usage
else
	(($# == 1 || $# == 2)) || usage
fi
out=$1
marker=${2:-virtman-vm-up}
# The marker goes into a shell script and is matched by tests as a word: keep it one.
[[ $marker =~ ^[A-Za-z0-9._-]+$ ]] || die "MARKER '$marker': use letters, digits, '.', '_', '-'"

compress=${INITRD_COMPRESS:-none}
case $compress in none | gzip) ;; *) die "INITRD_COMPRESS=$compress: expected none or gzip" ;; esac
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-0}
export TZ=UTC LC_ALL=C
require_disk_tools
command -v cpio >/dev/null || die "cpio missing (apt-get install cpio)"

PART_START=$MIB # the usual 1 MiB alignment; only the MBR lives before it
outdir=$(dirname "$out")
mkdir -p "$outdir"
work=$(mktemp -d "${TMPDIR:-/tmp}/virtman-tiny.XXXXXX")
# The image is written beside OUT and renamed at the end: a failed build leaves no half image.
tmp_out="$out.tmp.$$"
trap 'rm -rf "$work" "$tmp_out"' EXIT

if ((broken)); then
	# 4 MiB: the partition table, the MBR code, and a partition of zeros.
	mbr_disk "$tmp_out" $((4 * MIB)) "start=$((PART_START / 512)), type=e, bootable"
	mv -f "$tmp_out" "$out"
	echo "images/tiny/build.sh: $out: 4 MiB, partition table without a bootloader"
	exit 0
fi

kernel=${KERNEL:-}
if [[ -z $kernel ]]; then
	kernel=$(cloud_kernel "${KERNEL_CACHE:-$outdir/cache}") || {
		kernel=$(printf '%s\n' /boot/vmlinuz-* | sort -V | tail -n 1)
		echo "images/tiny/build.sh: warning: cannot get linux-image-cloud-amd64 through apt;" \
			"using ${kernel:-no kernel} (boots about twice as slowly under TCG)" >&2
	}
fi
[[ -n $kernel && -r $kernel ]] || die "no kernel: set KERNEL or apt-get install linux-image-amd64"
kver=$(basename "$kernel")
kver=${kver#vmlinuz-}
moddir=${KERNEL_MODULES:-}
if [[ -z $moddir ]]; then
	moddir=$(dirname "$kernel")/modules-$kver
	[[ -d $moddir ]] || moddir=/lib/modules/$kver
fi
busybox=${BUSYBOX:-/bin/busybox}
[[ -x $busybox ]] || die "$busybox missing (apt-get install busybox-static)"
# A dynamic busybox would need its libraries in the initramfs too.
! ldd "$busybox" >/dev/null 2>&1 || die "$busybox is dynamically linked (apt-get install busybox-static)"

# --- The initramfs -------------------------------------------------------------------------
# Only /init and busybox. /dev/console comes from the kernel's own built-in initramfs, which
# is unpacked first, so the archive needs no device nodes and no root to build. No kernel
# modules: proc, sysfs, devtmpfs, DMI and the 8250 serial port are built into Debian's
# kernels, and loading anything would cost seconds under TCG.
ird=$work/initramfs
mkdir -p "$ird/bin" "$ird/dev" "$ird/proc" "$ird/sys"
cp "$busybox" "$ird/bin/busybox"
ln -s busybox "$ird/bin/sh"
# The NIC's drivers, loaded after the marker (they cost nothing before it).
nmods=0
mkdir -p "$ird/lib/modules"
for m in $VIRTIO_NET_MODULES; do
	ko=$moddir/$m.ko
	[[ -f $ko ]] || ko=$(find "$moddir" -name "$m.ko" -print -quit 2>/dev/null)
	[[ -n $ko && -f $ko ]] || break
	cp "$ko" "$ird/lib/modules/$m.ko"
	nmods=$((nmods + 1))
done
if ((nmods != $(wc -w <<<"$VIRTIO_NET_MODULES"))); then
	rm -rf "$ird/lib/modules"
	echo "images/tiny/build.sh: warning: no virtio NIC modules for $kver in $moddir: the VM" \
		"has no network" >&2
fi
# udhcpc's hook: configure eth0 from the lease, nothing else.
cat >"$ird/bin/dhcp-hook" <<'HOOK'
#!/bin/busybox sh
bb=/bin/busybox
case $1 in
bound | renew)
	$bb ip addr add "$ip/${mask:-24}" dev "$interface"
	echo "$ip/${mask:-24}" >/dhcp-address
	;;
esac
exit 0
HOOK
chmod 0755 "$ird/bin/dhcp-hook"
cat >"$ird/init" <<EOF
#!/bin/busybox sh
# virtman tiny VM: say which VM this is on the serial console, then stay up.
bb=/bin/busybox
\$bb mount -t proc proc /proc
\$bb mount -t sysfs sysfs /sys
\$bb mount -t devtmpfs devtmpfs /dev
# The VM's name is the SMBIOS system serial (libvirt <sysinfo>, QEMU -smbios type=1,serial=).
name=\$(\$bb tr -d '[:space:]' </sys/class/dmi/id/product_serial 2>/dev/null)
[ -n "\$name" ] || name=unnamed
\$bb hostname "\$name"
# Straight to the first serial port, whatever the console is, so the host always sees it.
out=/dev/ttyS0
[ -c \$out ] || out=/dev/console
echo "$marker \$name" >\$out
# Then the network, when the image has the NIC's drivers and the VM a NIC.
if [ -d /lib/modules ]; then
	for m in $VIRTIO_NET_MODULES; do \$bb insmod /lib/modules/\$m.ko 2>\$out; done
	i=0
	while [ ! -e /sys/class/net/eth0 ] && [ \$i -lt 20 ]; do \$bb sleep 0.1; i=\$((i + 1)); done
	if [ -e /sys/class/net/eth0 ]; then
		mac=\$(\$bb cat /sys/class/net/eth0/address)
		\$bb ip link set eth0 up
		\$bb udhcpc -i eth0 -n -q -t 10 -T 2 -s /bin/dhcp-hook >/dev/null 2>&1
		addr=\$(\$bb cat /dhcp-address 2>/dev/null)
		echo "virtman-vm-net \$name eth0 \${addr:-none} \$mac" >\$out
	fi
fi
# PID 1 must never exit (the kernel would panic): the VM runs until it is stopped.
while :; do \$bb sleep 3600; done
EOF
chmod 0755 "$ird/init"

# Fixed times, sorted names, owner root: the same inputs give the same archive.
find "$ird" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
initrd=$work/initrd.img
(cd "$ird" && find . -mindepth 1 -print0 | sort -z |
	cpio --quiet --null --create --format=newc --owner=0:0 --reproducible) >"$work/initrd.cpio"
case $compress in
none) mv "$work/initrd.cpio" "$initrd" ;;
gzip) gzip -n -9 <"$work/initrd.cpio" >"$initrd" ;;
esac

# --- The disk ------------------------------------------------------------------------------
# The partition holds the kernel, the initramfs and 1 MiB for FAT tables and SYSLINUX; the
# whole disk is rounded up to 4 MiB. "quiet" keeps the kernel from printing its log through
# the slow emulated UART; console=ttyS0 still shows a panic.
payload=$(($(stat -c %s "$kernel") + $(stat -c %s "$initrd") + MIB))
disk_bytes=$(round_up $((PART_START + payload)) $((4 * MIB)))
part_bytes=$((disk_bytes - PART_START))
boot_fat "$work/part.img" "$part_bytes" $((PART_START / 512)) "console=ttyS0 quiet" "$kernel" "$initrd"
# FAT16 with LBA addressing (type 0e), bootable: the partition the MBR code starts.
mbr_disk "$tmp_out" "$disk_bytes" "start=$((PART_START / 512)), type=e, bootable"
put_at "$tmp_out" "$work/part.img" "$PART_START"
mv -f "$tmp_out" "$out"
echo "images/tiny/build.sh: $out: $((disk_bytes / MIB)) MiB (kernel $(basename "$kernel")," \
	"initramfs $(($(stat -c %s "$initrd") / 1024)) KiB, $compress), marker '$marker'"
