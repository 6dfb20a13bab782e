#!/usr/bin/env bash
# Builds the host boot image: OUTDIR/vmlinuz (the distribution kernel, unchanged) and
# OUTDIR/initrd.img, a small initramfs with busybox, open-iscsi, virtman and the kernel modules
# a rack host needs. Called by the Makefile; see initramfs/README.md for what is inside.
# usage: initramfs/build.sh OUTDIR VIRTMAN_BINARY
# env:   KVER=6.1.0-56-amd64 (default: the newest /boot/vmlinuz-*), INITRD_MAX_MIB (default 24),
#        COMPRESS=zstd|xz|none (default zstd: see initramfs/README.md for the measurement)
set -euo pipefail

if (($# != 2)); then
	echo "usage: $0 OUTDIR VIRTMAN_BINARY" >&2
	exit 2
fi
outdir=$1 virtman=$2
src=$(cd "$(dirname "$0")" && pwd)
max_mib=${INITRD_MAX_MIB:-24}
compress=${COMPRESS:-zstd}
busybox=/bin/busybox
# Userland the agent drives: open-iscsi (iscsistart logs in without a daemon, for rescue work).
tools=(/usr/sbin/iscsiadm /usr/sbin/iscsid /usr/sbin/iscsistart)

# Modules, by role. /init loads all of them: a hardware driver binds only where its device is.
# The NICs cover 1/10/25/100 GbE in racks and the virtual NICs of clouds and test VMs.
nic_modules=(e1000 e1000e igb igc ixgbe ixgbevf i40e iavf ice bnxt_en tg3 bnx2 r8169
	mlx4_en mlx5_core sfc be2net ena vmxnet3 virtio_net)
disk_modules=(virtio_pci virtio_blk virtio_scsi virtio_console ahci nvme sd_mod sr_mod sg)
# iSCSI (+ crc32c for header/data digests), the hypervisor userland (squashfs + overlay), the
# local cache disk (ext4), and what VMs need (kvm, tun, vhost, bridge).
service_modules=(iscsi_tcp crc32c_generic crc32c_intel squashfs overlay loop ext4
	kvm_intel kvm_amd tun vhost_net bridge)

die() {
	echo "build.sh: $*" >&2
	exit 1
}

if [[ -z ${KVER:-} ]]; then
	newest=$(printf '%s\n' /boot/vmlinuz-* | sort -V | tail -n 1)
	[[ -e $newest ]] || die "no /boot/vmlinuz-* (install linux-image-amd64) and no KVER set"
	KVER=${newest#/boot/vmlinuz-}
fi
kernel=/boot/vmlinuz-$KVER
moddir=/lib/modules/$KVER
[[ -r $kernel ]] || die "$kernel: not readable"
[[ -d $moddir ]] || die "$moddir: missing (modules of kernel $KVER)"
[[ -x $virtman ]] || die "$virtman: not built"
# The kernel's xz decoder knows only CRC32 checks; its zstd decoder takes -19's window.
case $compress in
zstd) compressor=(zstd -q -19 -T0 -c) ;;
xz) compressor=(xz -q -9 -T0 --check=crc32 -c) ;;
none) compressor=(cat) ;;
*) die "COMPRESS=$compress: expected zstd, xz or none" ;;
esac
# A dynamic binary would find no C library in the image.
for static in "$busybox" "$virtman"; do
	! ldd "$static" >/dev/null 2>&1 || die "$static is dynamically linked; it must be static"
done

stage=$(mktemp -d "${TMPDIR:-/tmp}/virtman-initrd.XXXXXX")
trap 'rm -rf "$stage"' EXIT

# copy_file PATH: copies PATH to the same path in the image, following symlinks.
copy_file() {
	mkdir -p "$stage$(dirname "$1")"
	cp -L --preserve=mode "$1" "$stage$1"
}

# copy_with_libs BINARY: copies a dynamic binary, every library ldd resolves for it and the
# loader, each at the path the loader will look for it.
copy_with_libs() {
	local lib missing
	copy_file "$1"
	missing=$(ldd "$1" | grep 'not found' || true)
	[[ -z $missing ]] || die "$1: a library is missing: $missing"
	for lib in $(ldd "$1" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'); do
		[[ -e $stage$lib ]] || copy_file "$lib"
	done
}

# --- layout and configuration
mkdir -p "$stage"/{bin,sbin,usr/bin,usr/sbin,lib,etc/iscsi,etc/virtman,proc,sys,dev,run,tmp,root}
mkdir -p "$stage"/{var/lib,var/log,mnt,hv,hv-root,usr/share/udhcpc}
ln -s ../run "$stage/var/run"
ln -s ../run/lock "$stage/var/lock"
chmod 1777 "$stage/tmp"
chmod 0700 "$stage/root"

install -m 0755 "$src/init" "$stage/init"
install -m 0755 "$src/udhcpc.script" "$stage/etc/udhcpc.script"
ln -s /etc/udhcpc.script "$stage/usr/share/udhcpc/default.script"
install -m 0755 "$src/hv-start.sh" "$stage/bin/hv-start"
install -m 0755 "$src/hv-stop.sh" "$stage/bin/hv-stop"
install -m 0644 "$src/iscsid.conf" "$stage/etc/iscsi/iscsid.conf"
install -m 0755 "$virtman" "$stage/bin/virtman"

printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' \
	>"$stage/etc/passwd"
printf 'root:x:0:\ntty:x:5:\ndisk:x:6:\nnogroup:x:65534:\n' >"$stage/etc/group"
printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >"$stage/etc/hosts"
printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$stage/etc/nsswitch.conf"
echo "virtman-host" >"$stage/etc/hostname"
# /init rewrites it at boot; this copy only makes the image usable by a bare busybox init.
printf '::respawn:/bin/virtman agent\n::ctrlaltdel:/bin/poweroff -f\n::shutdown:/bin/umount -a -r\n' \
	>"$stage/etc/inittab"

# --- programs
install -m 0755 "$busybox" "$stage/bin/busybox"
for tool in "${tools[@]}"; do
	copy_with_libs "$tool"
done
# Applet links last, so they never replace a real program placed above.
for applet in $("$busybox" --list-full); do
	[[ -e $stage/$applet || -L $stage/$applet ]] || ln -s /bin/busybox "$stage/$applet"
done

# --- kernel modules, with everything modprobe says they depend on
mkdir -p "$stage$moddir"
: >"$stage/etc/virtman/modules"
for module in "${nic_modules[@]}" "${disk_modules[@]}" "${service_modules[@]}"; do
	if ! deps=$(modprobe --set-version "$KVER" --show-depends "$module" 2>/dev/null); then
		echo "build.sh: note: module $module does not exist in kernel $KVER, skipped" >&2
		continue
	fi
	for ko in $(awk '$1 == "insmod" { print $2 }' <<<"$deps"); do
		[[ -e $stage$ko ]] || copy_file "$ko"
	done
	echo "$module" >>"$stage/etc/virtman/modules"
done
for meta in modules.order modules.builtin modules.builtin.modinfo; do
	cp "$moddir/$meta" "$stage$moddir/"
done
depmod -b "$stage" "$KVER"

# --- the archive: sorted names, zero mtimes, root-owned, renumbered inodes
# newc_entry INO MODE MAJOR MINOR NAME: a header with no data (a device node, the trailer);
# adds its length to newc_bytes.
newc_entry() {
	local name=$5 pad
	printf '070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%s\0' \
		"$1" "$2" 0 0 1 0 0 0 0 "$3" "$4" $((${#name} + 1)) 0 "$name"
	pad=$(((4 - (110 + ${#name} + 1) % 4) % 4))
	head -c "$pad" /dev/zero
	newc_bytes=$((newc_bytes + 110 + ${#name} + 1 + pad))
}

# The kernel opens /dev/console before /init runs, when devtmpfs is not mounted yet, so the
# image carries the node. mknod in the staging directory would need root: the node comes from
# a hand-written second archive instead (the kernel unpacks concatenated archives in order),
# padded to 512 bytes like cpio's own output so that `cpio -t` can read on into it.
console_archive() {
	newc_bytes=0
	newc_entry 1 $((8#020600)) 5 1 dev/console
	newc_entry 0 0 0 0 'TRAILER!!!'
	head -c $((512 - newc_bytes)) /dev/zero
}

find "$stage" -exec touch -h -d @0 {} +
mkdir -p "$outdir"
tmp=$outdir/initrd.img.tmp
{
	(cd "$stage" && find . -mindepth 1 -printf '%P\n' | LC_ALL=C sort |
		cpio --quiet -o -H newc --reproducible -R 0:0)
	console_archive
} | "${compressor[@]}" >"$tmp"

size=$(stat -c %s "$tmp")
if ((size > max_mib * 1024 * 1024)); then
	rm -f "$tmp"
	die "initrd is $((size / 1024)) KiB, over the ${max_mib} MiB limit"
fi
mv -f "$tmp" "$outdir/initrd.img"
cp "$kernel" "$outdir/vmlinuz"
echo "build.sh: $outdir/initrd.img: $((size / 1024)) KiB ($compress), kernel $KVER," \
	"$(wc -l <"$stage/etc/virtman/modules") modules listed, $(find "$stage$moddir" -name '*.ko' | wc -l) .ko files"
