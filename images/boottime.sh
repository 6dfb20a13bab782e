#!/usr/bin/env bash
# Boots a VM image once under plain QEMU, the way a host would (a qcow2 overlay over the raw
# image, which stays untouched; the VM's name as the SMBIOS serial), and prints the time from
# starting QEMU to the image's marker on the serial console. A quick self-test of an image.
#
# usage: images/boottime.sh IMAGE [MARKER] [NAME]
#        MARKER defaults to virtman-vm-up, NAME to boottime-1; the line waited for is
#        "MARKER NAME".
# env:   QEMU_ACCEL (default tcg: /dev/kvm may exist and not work), MEMORY (MiB, default 256),
#        BOOT_TIMEOUT (seconds, default 300), DISK_BUS (default virtio), KEEP_LOG=FILE
# exit:  0 with "IMAGE: MARKER NAME after N.NN s (accel)", 1 when the marker does not come.
set -euo pipefail

if (($# < 1 || $# > 3)); then
	echo "usage: $0 IMAGE [MARKER] [NAME]" >&2
	exit 2
fi
image=$1
marker=${2:-virtman-vm-up}
name=${3:-boottime-1}
accel=${QEMU_ACCEL:-tcg}
memory=${MEMORY:-256}
timeout=${BOOT_TIMEOUT:-300}
bus=${DISK_BUS:-virtio}

die() {
	echo "images/boottime.sh: $*" >&2
	exit 1
}
[[ -r $image ]] || die "$image: no such image"
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 missing (apt-get install qemu-system-x86)"
command -v qemu-img >/dev/null || die "qemu-img missing (apt-get install qemu-utils)"

work=$(mktemp -d "${TMPDIR:-/tmp}/virtman-boottime.XXXXXX")
qemu_pid=
cleanup() {
	if [[ -n $qemu_pid ]]; then
		kill "$qemu_pid" 2>/dev/null || true
		wait "$qemu_pid" 2>/dev/null || true
	fi
	[[ -z ${KEEP_LOG:-} ]] || cp "$work/serial.log" "$KEEP_LOG" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

# The VM writes to its own overlay, never to the shared image (as on a host).
qemu-img create -q -f qcow2 -b "$(realpath "$image")" -F raw "$work/overlay.qcow2"
: >"$work/serial.log"
start=$(date +%s%N)
# -nodefaults: no NIC, so SeaBIOS does not try a network boot after the disk.
qemu-system-x86_64 -accel "$accel" -m "$memory" -nodefaults -display none \
	-smbios "type=1,serial=$name" \
	-drive "file=$work/overlay.qcow2,format=qcow2,if=$bus" \
	-serial "file:$work/serial.log" \
	-chardev "file,id=bios,path=$work/bios.log" -device isa-debugcon,iobase=0x402,chardev=bios \
	</dev/null >"$work/qemu.log" 2>&1 &
qemu_pid=$!

deadline=$((SECONDS + timeout))
until grep -qx -- "$marker $name"$'\r\\?' "$work/serial.log"; do
	if ! kill -0 "$qemu_pid" 2>/dev/null; then
		cat "$work/qemu.log" >&2
		die "QEMU exited before the marker"
	fi
	if ((SECONDS >= deadline)); then
		echo "--- serial console" >&2
		tail -n 30 "$work/serial.log" >&2
		echo "--- SeaBIOS" >&2
		tail -n 10 "$work/bios.log" >&2
		die "no '$marker $name' on the serial console after $timeout s"
	fi
	sleep 0.05
done
end=$(date +%s%N)
ms=$(((end - start) / 1000000))
printf '%s: %s %s after %d.%02d s (%s)\n' "$image" "$marker" "$name" $((ms / 1000)) $((ms % 1000 / 10)) "$accel"
