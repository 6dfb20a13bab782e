#!/usr/bin/env bash
# Builds the hypervisor userland of a host: a read-only squashfs holding a minimal Debian root
# with libvirt and QEMU, set up to run in a chroot with no systemd, dbus or polkit (hv-start).
# Hosts attach it over iSCSI like a VM image, so it stays out of the small initramfs.
# usage: initramfs/userland.sh OUTFILE        (needs root: debootstrap chroots and installs)
# env:   MIRROR (default: the Debian mirror apt uses), SUITE (default bookworm),
#        COMPRESS=zstd|xz (default zstd: faster to read back, see initramfs/README.md)
set -euo pipefail

if (($# != 1)); then
	echo "usage: $0 OUTFILE" >&2
	exit 2
fi
out=$1
suite=${SUITE:-bookworm}
compress=${COMPRESS:-zstd}
# libvirtd and the QEMU driver, virsh to drive and probe it, qemu-img for the VMs' overlays.
packages=libvirt-daemon,libvirt-daemon-driver-qemu,libvirt-clients,qemu-system-x86,qemu-utils

die() {
	echo "userland.sh: $*" >&2
	exit 1
}

[[ $EUID -eq 0 ]] || die "needs root (debootstrap)"
command -v debootstrap >/dev/null || die "debootstrap missing (apt-get install debootstrap)"
command -v mksquashfs >/dev/null || die "mksquashfs missing (apt-get install squashfs-tools)"
case $compress in
zstd) comp=(-comp zstd -Xcompression-level 19) ;;
xz) comp=(-comp xz) ;;
*) die "COMPRESS=$compress: expected zstd or xz" ;;
esac

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

work=$(mktemp -d "${TMPDIR:-/tmp}/virtman-userland.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root
started=$SECONDS

echo "userland.sh: debootstrap $suite from $mirror with $packages"
debootstrap --variant=minbase --include="$packages" "$suite" "$root" "$mirror" >"$work/debootstrap.log" 2>&1 ||
	{
		tail -n 30 "$work/debootstrap.log" >&2
		die "debootstrap failed"
	}

# Nobody reads documentation or translations on a diskless hypervisor.
rm -rf "$root"/usr/share/{doc,man,info,locale,lintian,bug}/* "$root"/var/cache/apt/* \
	"$root"/var/lib/apt/lists/* "$root"/var/log/* "$root"/var/cache/debconf/*-old
mkdir -p "$root/var/log/libvirt"
# Per-host identity files must not be shared by every host that mounts the image.
: >"$root/etc/machine-id"
rm -f "$root/etc/hostname"
# libvirt looks up its built-in QEMU user and group before it reads qemu.conf (which says
# root), and only libvirt-daemon-system, a systemd package we leave out, would create them.
chroot "$root" groupadd --system kvm
chroot "$root" groupadd --system libvirt-qemu
chroot "$root" useradd --system --gid libvirt-qemu --groups kvm --home-dir /var/lib/libvirt \
	--no-create-home --shell /usr/sbin/nologin libvirt-qemu

mkdir -p "$root/etc/libvirt"
cat >"$root/etc/libvirt/libvirtd.conf" <<'EOF'
# virtman: libvirtd runs in a chroot of the host boot image, without systemd, dbus or polkit.
# Only root on the host talks to it, over the UNIX socket; nothing listens on the network.
unix_sock_group = "root"
unix_sock_ro_perms = "0700"
unix_sock_rw_perms = "0700"
auth_unix_ro = "none"
auth_unix_rw = "none"
# No journald or syslog to catch its messages: hv-start prints this file when libvirtd fails.
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
EOF
cat >"$root/etc/libvirt/qemu.conf" <<'EOF'
# virtman: VMs run as root with no security driver: the host runs nothing but its VMs, and
# the boot image has neither AppArmor profiles nor SELinux policy to load.
user = "root"
group = "root"
security_driver = "none"
dynamic_ownership = 0
remember_owner = 0
# Console logs straight to files: there is no virtlogd to hand them to.
stdio_handler = "file"
# Private /dev mount namespaces per VM do not work inside the chroot.
namespaces = [ ]
EOF

# Fixed timestamps and owners: the same inputs give the same image.
mkdir -p "$(dirname "$out")"
rm -f "$out.tmp"
mksquashfs "$root" "$out.tmp" -noappend -quiet -no-progress "${comp[@]}" \
	-mkfs-time 0 -all-time 0 >/dev/null
mv -f "$out.tmp" "$out"
echo "userland.sh: $out: $(($(stat -c %s "$out") / 1024 / 1024)) MiB ($compress)," \
	"$(du -sm "$root" | cut -f1) MiB unpacked, built in $((SECONDS - started)) s"
