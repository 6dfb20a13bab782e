# shellcheck shell=bash
# Shared by images/tiny/build.sh and images/debian/build.sh (sourced, not run): raw disks
# assembled without mounting anything and without loop devices — the partition table is
# written into a plain file by sfdisk, file systems are made in files (mkfs.fat -C, mke2fs -d)
# and copied or written in place, and SYSLINUX is installed through mtools.
# The caller sets `set -euo pipefail` and defines die().

MIB=$((1024 * 1024))
MBR_BIN=/usr/lib/syslinux/mbr/mbr.bin
# A fixed disk identifier ("virm"): sfdisk picks a random one otherwise, and equal inputs
# should give equal images.
DISK_ID=0x7669726d

# Fails with the package to install when a tool the assembly needs is missing.
require_disk_tools() {
	local cmd
	for cmd in sfdisk mkfs.fat mcopy syslinux; do
		command -v "$cmd" >/dev/null ||
			die "$cmd missing (apt-get install fdisk dosfstools mtools syslinux syslinux-common)"
	done
	[[ -r $MBR_BIN ]] || die "$MBR_BIN missing (apt-get install syslinux-common)"
}

# round_up N ALIGN: N rounded up to a multiple of ALIGN.
round_up() {
	echo $((($1 + $2 - 1) / $2 * $2))
}

# mbr_disk DISK BYTES SFDISK_LINE...: a new sparse DISK of BYTES with an MBR partition table
# (one sfdisk line per partition, in sectors) and syslinux's MBR boot code, which starts the
# partition marked bootable and hands back to the BIOS (int 18h) when that has no boot sector.
mbr_disk() {
	local disk=$1 bytes=$2
	shift 2
	rm -f "$disk"
	truncate -s "$bytes" "$disk"
	{
		echo "label: dos"
		echo "label-id: $DISK_ID"
		printf '%s\n' "$@"
	} | sfdisk --quiet --no-reread --no-tell-kernel "$disk" >/dev/null || die "sfdisk failed on $disk"
	# The first 440 bytes of the MBR are boot code; the disk id and partition table follow.
	dd if="$MBR_BIN" of="$disk" bs=440 count=1 conv=notrunc status=none
}

# boot_fat PART BYTES START_SECTOR APPEND KERNEL INITRD: a FAT16 file system in the new file
# PART, of BYTES, meant for a partition starting at START_SECTOR, holding SYSLINUX and a
# configuration that boots KERNEL with INITRD and the command line APPEND at once.
# SERIAL 0 makes SYSLINUX echo its messages on the first serial port too (for debugging).
# File times come from SOURCE_DATE_EPOCH (mtools honours it; mkfs.fat --invariant fixes the
# volume id and its own times), so equal inputs give an equal file system.
boot_fat() {
	local part=$1 bytes=$2 start=$3 append=$4 kernel=$5 initrd=$6 stage
	stage=$(mktemp -d "${TMPDIR:-/tmp}/virtman-fat.XXXXXX")
	cat >"$stage/syslinux.cfg" <<-EOF
		SERIAL 0 115200
		DEFAULT vm
		PROMPT 0
		TIMEOUT 0
		LABEL vm
		  LINUX /vmlinuz
		  INITRD /initrd.img
		  APPEND $append
	EOF
	# Copies under the names the configuration uses, with fixed times (mcopy -m keeps them).
	cp "$kernel" "$stage/vmlinuz"
	cp "$initrd" "$stage/initrd.img"
	touch -d "@${SOURCE_DATE_EPOCH:-0}" "$stage"/*
	rm -f "$part"
	# -h: the partition's start, recorded in the boot sector as its hidden sectors.
	mkfs.fat -C -F 16 -h "$start" -n VIRTMAN --invariant "$part" $((bytes / 1024)) >/dev/null ||
		{ rm -rf "$stage"; die "mkfs.fat failed"; }
	syslinux --install "$part" || { rm -rf "$stage"; die "syslinux --install failed"; }
	mcopy -m -i "$part" "$stage/syslinux.cfg" "$stage/vmlinuz" "$stage/initrd.img" ::/ ||
		{ rm -rf "$stage"; die "mcopy failed"; }
	rm -rf "$stage"
}

# put_at DISK FILE OFFSET: writes FILE into DISK at byte OFFSET (a multiple of 1 MiB), keeping
# runs of zeros as holes.
put_at() {
	dd if="$2" of="$1" bs=$MIB seek=$(($3 / MIB)) conv=notrunc,sparse status=none
}

# The modules a VM's virtio NIC needs, in load order (all of them are modules in Debian's
# kernels).
VIRTIO_NET_MODULES="virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci failover net_failover virtio_net"

# cloud_kernel CACHE: prints the path of the kernel of Debian's cloud flavour
# (linux-image-cloud-amd64), fetched once with `apt-get download` and kept in CACHE as
# vmlinuz-VERSION, with the VIRTIO_NET_MODULES of its package in CACHE/modules-VERSION/.
# The package is never installed: a second kernel in /boot would become
# "the newest /boot/vmlinuz-*" that other build scripts pick. Returns 1 (quietly) when apt
# does not know the package or cannot fetch it.
# Why this kernel: it is LZ4-compressed where the generic one is XZ, and has fewer built-in
# drivers to initialise; under QEMU TCG it reaches /init in about half the CPU time.
cloud_kernel() {
	local cache=$1 pkg kver dl
	pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
		awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }')
	[[ -n $pkg ]] || return 1
	kver=${pkg#linux-image-}
	if [[ ! -s $cache/vmlinuz-$kver || ! -d $cache/modules-$kver ]]; then
		mkdir -p "$cache"
		dl=$(mktemp -d "$cache/download.XXXXXX")
		# The sandbox user _apt could not write into this private directory.
		if ! (cd "$dl" && apt-get download -q -o APT::Sandbox::User=root "$pkg" >/dev/null 2>&1) ||
			! dpkg-deb --fsys-tarfile "$dl/${pkg}_"*.deb | tar -x -O "./boot/vmlinuz-$kver" >"$dl/vmlinuz" ||
			[[ ! -s $dl/vmlinuz ]]; then
			rm -rf "$dl"
			return 1
		fi
		mkdir -p "$dl/modules"
		dpkg-deb --fsys-tarfile "$dl/${pkg}_"*.deb | tar -x -C "$dl/modules" --wildcards \
			--no-anchored --transform='s|.*/||' $(for m in $VIRTIO_NET_MODULES; do echo "*/$m.ko"; done) ||
			{ rm -rf "$dl"; return 1; }
		rm -rf "$cache/modules-$kver"
		mv -f "$dl/modules" "$cache/modules-$kver"
		mv -f "$dl/vmlinuz" "$cache/vmlinuz-$kver"
		rm -rf "$dl"
	fi
	echo "$cache/vmlinuz-$kver"
}
