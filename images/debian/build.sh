#!/usr/bin/env bash
# Builds the Debian VM image: a minimal but real Debian bookworm (debootstrap --variant=minbase
# with a kernel, systemd as init, a getty on the serial console), the realistic image for
# benchmarks. Built on demand (`make images-debian`): it takes minutes and root.
#
# usage: images/debian/build.sh OUT.img [SIZE]     SIZE: bytes or K/M/G (powers of 1024), default 2G
#
# The VM prints "virtman-vm-up NAME" on /dev/ttyS0 once multi-user.target is reached (a
# systemd unit ordered after it), NAME being the SMBIOS system serial (libvirt <sysinfo>,
# QEMU -smbios type=1,serial=NAME; "unnamed" without one), like images/tiny.
#
# Layout (MBR, syslinux's mbr.bin):
#   1: FAT16, bootable, from 1 MiB: SYSLINUX, the kernel and initrd (copied out of the root)
#   2: ext4 "virtman-root", to the end: the root file system, made with mke2fs -d straight
#      from the debootstrap directory into its place in the image (-E offset=)
# Nothing is mounted on the build machine and no loop device is used (the kernel may have
# none); only debootstrap itself mounts /proc inside its chroot. The image is sparse.
#
# env: MIRROR (default: the Debian mirror apt uses), SUITE (default bookworm),
#      KERNEL_PKG (default linux-image-amd64; linux-image-cloud-amd64 boots faster under TCG),
#      MARKER (default virtman-vm-up),
#      DEBOOTSTRAP_CACHE (default: OUT's directory/cache/debootstrap: downloaded packages, so a
#      rebuild fetches nothing)
set -euo pipefail

die() {
	echo "images/debian/build.sh: $*" >&2
	exit 1
}

# shellcheck source=images/common.sh
. "$(dirname "$0")/../common.sh"

if (($# < 1 || $# > 2)); then
	echo "usage: $0 OUT.img [SIZE]" >&2
	exit 2
fi
out=$1
size_arg=${2:-2G}
size=$(numfmt --from=iec "${size_arg%iB}" 2>/dev/null) || die "SIZE '$size_arg': expected bytes or a K/M/G suffix"
suite=${SUITE:-bookworm}
kernel_pkg=${KERNEL_PKG:-linux-image-amd64}
marker=${MARKER:-virtman-vm-up}
[[ $marker =~ ^[A-Za-z0-9._-]+$ ]] || die "MARKER '$marker': use letters, digits, '.', '_', '-'"
# What a bootable, loginable systemd system needs beyond minbase: udev and kmod (the initramfs
# and module autoloading), dbus (without it systemd-logind does not run, and nothing acts on
# the ACPI power button that `virsh shutdown` presses). No network configuration: the
# benchmarks only boot it.
packages=$kernel_pkg,systemd-sysv,udev,kmod,initramfs-tools,dbus

[[ $EUID -eq 0 ]] || die "needs root (debootstrap chroots and installs)"
command -v debootstrap >/dev/null || die "debootstrap missing (apt-get install debootstrap)"
command -v mke2fs >/dev/null || die "mke2fs missing (apt-get install e2fsprogs)"
require_disk_tools
# mke2fs -d writes the directory into the file system; -E offset= places it inside the image.
mke2fs -V 2>&1 | awk '{ split($2, v, "."); exit !(v[1] > 1 || (v[1] == 1 && v[2] >= 43)) }' ||
	die "mke2fs too old for -d (e2fsprogs 1.43 or later needed)"

# The mirror apt already uses (deb822 or one-line sources), so the build needs no other route.
apt_mirror() {
	local file files=()
	for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
		[[ -r $file ]] && files+=("$file")
	done
	((${#files[@]})) || return 0
	awk 'function try(uri) { if (uri ~ /^[a-z]+:\/\/.*\/debian\/?$/) { print uri; exit } }
		/^URIs:/ { for (i = 2; i <= NF; i++) try($i) }
		/^deb / { for (i = 2; i <= NF; i++) try($i) }' "${files[@]}"
}
mirror=${MIRROR:-$(apt_mirror)}
mirror=${mirror:-http://deb.debian.org/debian}

outdir=$(dirname "$out")
mkdir -p "$outdir"
cache=${DEBOOTSTRAP_CACHE:-$outdir/cache/debootstrap}
mkdir -p "$cache"
cache=$(realpath "$cache")
work=$(mktemp -d "${TMPDIR:-/tmp}/virtman-debian.XXXXXX")
root=$work/root
tmp_out="$out.tmp.$$"
cleanup() {
	# debootstrap unmounts what it mounted; this only guards against it being killed midway.
	local m
	for m in proc sys dev/pts dev; do
		mountpoint -q "$root/$m" 2>/dev/null && umount -l "$root/$m"
	done
	rm -rf "$work" "$tmp_out"
}
trap cleanup EXIT
started=$SECONDS

# --- The root file system ------------------------------------------------------------------
# Two stages so that the initramfs configuration is in place before the kernel's postinst
# builds the initrd (one build instead of two).
echo "images/debian/build.sh: debootstrap $suite ($packages) from $mirror"
debootstrap --foreign --variant=minbase --include="$packages" --cache-dir="$cache" \
	"$suite" "$root" "$mirror" >"$work/debootstrap.log" 2>&1 ||
	{
		tail -n 30 "$work/debootstrap.log" >&2
		die "debootstrap (first stage) failed"
	}

# initramfs-tools' default (MODULES=most) puts nearly every storage driver into a ~30 MiB
# initrd, and "dep" cannot see the VM's hardware from a chroot: list what QEMU/libvirt disks
# need instead (virtio, SATA/IDE, SCSI, NVMe) and ext4.
mkdir -p "$root/etc/initramfs-tools/conf.d"
echo "MODULES=list" >"$root/etc/initramfs-tools/conf.d/virtman"
cat >>"$root/etc/initramfs-tools/modules" <<'EOF'
# virtman: the disk controllers QEMU and libvirt give VMs, and the root file system.
virtio_pci
virtio_blk
virtio_scsi
sd_mod
ata_piix
ahci
nvme
ext4
EOF

chroot "$root" /debootstrap/debootstrap --second-stage >"$work/debootstrap2.log" 2>&1 ||
	{
		tail -n 30 "$work/debootstrap2.log" >&2
		die "debootstrap (second stage) failed"
	}
bootstrapped=$SECONDS

# --- Configuration -------------------------------------------------------------------------
root_uuid=$(cat /proc/sys/kernel/random/uuid)
# The root's UUID is fixed per image: fstab and the kernel command line name it.
cat >"$root/etc/fstab" <<EOF
# virtman Debian VM image: the root file system (partition 2). The boot partition (1) holds
# only the bootloader's copies of the kernel and initrd and is not mounted.
UUID=$root_uuid / ext4 errors=remount-ro 0 1
EOF
echo "virtman-vm" >"$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tvirtman-vm\n::1\tlocalhost ip6-localhost ip6-loopback\n' \
	>"$root/etc/hosts"
# Every VM of the rack boots the same image: an empty machine-id makes systemd generate a
# fresh one per VM at its first boot (and commit it to the VM's own overlay).
: >"$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"
# A first boot would otherwise ask for locale, timezone and root password on the console.
ln -sf /dev/null "$root/etc/systemd/system/systemd-firstboot.service"
# A test VM with no network: root logs in on the serial console without a password.
chroot "$root" passwd -d root >/dev/null
ln -sf /lib/systemd/system/multi-user.target "$root/etc/systemd/system/default.target"
# console=ttyS0 makes systemd start this getty by itself; enabled anyway so a changed
# command line keeps it.
mkdir -p "$root/etc/systemd/system/getty.target.wants"
ln -sf /lib/systemd/system/serial-getty@.service \
	"$root/etc/systemd/system/getty.target.wants/serial-getty@ttyS0.service"

# The marker: after multi-user.target is reached (ordered after it, pulled in by it, like
# systemd-update-utmp-runlevel.service).
cat >"$root/usr/local/sbin/virtman-vm-up" <<EOF
#!/bin/sh
# Prints "$marker NAME" on the first serial port; NAME is the SMBIOS system serial.
name=\$(tr -d '[:space:]' </sys/class/dmi/id/product_serial 2>/dev/null)
[ -n "\$name" ] || name=unnamed
echo "$marker \$name" >/dev/ttyS0
EOF
chmod 0755 "$root/usr/local/sbin/virtman-vm-up"
cat >"$root/etc/systemd/system/virtman-vm-up.service" <<'EOF'
[Unit]
Description=virtman: announce this VM on the serial console
After=multi-user.target

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/virtman-vm-up

[Install]
WantedBy=multi-user.target
EOF
mkdir -p "$root/etc/systemd/system/multi-user.target.wants"
ln -sf ../virtman-vm-up.service "$root/etc/systemd/system/multi-user.target.wants/virtman-vm-up.service"

# Downloaded packages live in the cache, not in every VM's image.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin "$root"/var/log/*.log \
	"$root/var/log/apt"/* "$root/etc/resolv.conf"

kernel=$(printf '%s\n' "$root"/boot/vmlinuz-* | sort -V | tail -n 1)
[[ -r $kernel ]] || die "no kernel in $root/boot ($kernel_pkg not installed?)"
kver=${kernel##*/vmlinuz-}
initrd=$root/boot/initrd.img-$kver
[[ -r $initrd ]] || die "no $initrd: the kernel's postinst did not build it"

# --- The disk ------------------------------------------------------------------------------
p1_start=$MIB
# The boot partition: kernel + initrd + 4 MiB (FAT, SYSLINUX, room for a larger initrd),
# rounded up to 4 MiB; the root partition takes the rest.
p1_bytes=$(round_up $(($(stat -c %s "$kernel") + $(stat -c %s "$initrd") + 4 * MIB)) $((4 * MIB)))
p2_start=$((p1_start + p1_bytes))
size=$(round_up "$size" "$MIB")
p2_bytes=$((size - p2_start))
used=$(du -sb "$root" | cut -f1)
((p2_bytes > used * 5 / 4 + 64 * MIB)) ||
	die "SIZE $size_arg too small: the root needs $((used / MIB)) MiB and some room"

boot_fat "$work/boot.img" "$p1_bytes" $((p1_start / 512)) \
	"root=UUID=$root_uuid ro console=ttyS0 quiet" "$kernel" "$initrd"
mbr_disk "$tmp_out" "$size" \
	"start=$((p1_start / 512)), size=$((p1_bytes / 512)), type=e, bootable" \
	"start=$((p2_start / 512)), type=83"
put_at "$tmp_out" "$work/boot.img" "$p1_start"
# ext4 from the directory, written in place at partition 2. lazy_itable_init=0 and
# lazy_journal_init=0 initialise everything now, so no VM spends its first minutes (and its
# overlay) zeroing inode tables; the zeros stay holes in the sparse image.
mke2fs -q -F -t ext4 -L virtman-root -U "$root_uuid" -d "$root" \
	-E "offset=$p2_start,lazy_itable_init=0,lazy_journal_init=0,nodiscard" \
	"$tmp_out" "$((p2_bytes / 1024))k" || die "mke2fs failed"
mv -f "$tmp_out" "$out"
echo "images/debian/build.sh: $out: $((size / MIB)) MiB ($(($(du -k "$out" | cut -f1) / 1024)) MiB" \
	"allocated), root $((used / MIB)) MiB, kernel $kver, initrd $(($(stat -c %s "$initrd") / 1024)) KiB;" \
	"debootstrap $((bootstrapped - started)) s, total $((SECONDS - started)) s"
