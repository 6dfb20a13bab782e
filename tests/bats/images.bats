#!/usr/bin/env bats
# The VM images (images/): they boot under plain QEMU with software emulation the way a host
# starts its VMs — a qcow2 overlay over the shared raw image, the VM's name as the SMBIOS
# system serial — and print their marker on the serial console; the broken one cannot boot;
# many VMs share one base image without changing it.

load helpers

IMAGES="$REPO_ROOT/build/images"
QEMU_ACCEL="${QEMU_ACCEL:-tcg}"			# /dev/kvm may exist and still not work
TINY_BOOT_TIMEOUT="${TINY_BOOT_TIMEOUT:-180}"		# seconds from power-on to the tiny marker
DEBIAN_BOOT_TIMEOUT="${DEBIAN_BOOT_TIMEOUT:-900}"	# ... to the Debian image's marker
NO_BOOT_TIMEOUT="${NO_BOOT_TIMEOUT:-120}"		# ... to SeaBIOS giving up on the broken disk

# The tiny images are quick to build (seconds, no root): make keeps them current. A failed
# build is reported by every test that needs them rather than by setup_file.
setup_file() {
	make -C "$REPO_ROOT" -s images-tiny >"$BATS_FILE_TMPDIR/build.log" 2>&1 &&
		echo 0 >"$BATS_FILE_TMPDIR/build.rc" || echo 1 >"$BATS_FILE_TMPDIR/build.rc"
}

# The boot tests need QEMU; the build test does not.
require_qemu() {
	require_cmd qemu-system-x86_64
	require_cmd qemu-img
}

teardown() {
	helpers_teardown
}

# require_tiny: fails with the build log when `make images-tiny` did not work.
require_tiny() {
	if [[ $(cat "$BATS_FILE_TMPDIR/build.rc" 2>/dev/null) != 0 ]]; then
		cat "$BATS_FILE_TMPDIR/build.log" >&2
		fail "make images-tiny failed"
	fi
}

# overlay BASE NAME: a qcow2 overlay of the raw BASE in the test's directory; prints its path.
overlay() {
	local path="$BATS_TEST_TMPDIR/$2.qcow2"
	qemu-img create -q -f qcow2 -b "$1" -F raw "$path" || fail "qemu-img create $path failed"
	echo "$path"
}

# start_vm ID DISK [SERIAL] [QEMU_ARGS...]: powers on a VM (no NIC, so SeaBIOS tries only the
# disk) with DISK as its virtio disk, its serial console in $BATS_TEST_TMPDIR/ID.serial and,
# unless SERIAL is empty, SERIAL as its SMBIOS system serial (its name). Sets VM_PID.
start_vm() {
	local id=$1 disk=$2 serial=${3:-} args=()
	shift 3 || shift $#
	args=(-accel "$QEMU_ACCEL" -m 256 -nodefaults -display none
		-drive "file=$disk,format=qcow2,if=virtio"
		-serial "file:$BATS_TEST_TMPDIR/$id.serial")
	[[ -z $serial ]] || args+=(-smbios "type=1,serial=$serial")
	: >"$BATS_TEST_TMPDIR/$id.serial"
	spawn "qemu-$id" qemu-system-x86_64 "${args[@]}" "$@"
	VM_PID=$SPAWN_PID
	VM_STARTED=$SECONDS
}

# marker MARKER NAME: the regex of exactly that marker line (the console ends lines with CR).
marker() {
	echo "^$1 $2[[:space:]]*\$"
}

# wait_serial ID PID REGEX DEADLINE_S: polls the VM's serial log for a line matching REGEX
# (extended); fails with the log when the deadline passes or QEMU exits first.
wait_serial() {
	local id=$1 pid=$2 regex=$3 deadline=$((SECONDS + $4)) log="$BATS_TEST_TMPDIR/$1.serial"
	until grep -Eq -- "$regex" "$log"; do
		if ! pid_alive "$pid"; then
			tail -n 40 "$log" >&2
			cat "$BATS_TEST_TMPDIR/qemu-$id.err" >&2
			fail "QEMU ($id) exited before '$regex' on its serial console"
		fi
		if ((SECONDS >= deadline)); then
			echo "--- serial console of $id (last 40 lines)" >&2
			tail -n 40 "$log" >&2
			fail "no '$regex' on the serial console of $id after $4 s"
		fi
		sleep "$POLL_INTERVAL"
	done
}

@test "images: tiny.img boots on a qcow2 overlay and prints 'virtman-vm-up NAME' from SMBIOS" {
	require_qemu
	require_tiny
	start_vm vm1 "$(overlay "$IMAGES/tiny.img" vm1)" vm-test-1
	wait_serial vm1 "$VM_PID" "$(marker virtman-vm-up vm-test-1)" "$TINY_BOOT_TIMEOUT"
	echo "# tiny.img: marker after $((SECONDS - VM_STARTED)) s ($QEMU_ACCEL)" >&3
	# It stays up: VMs run until they are stopped.
	pid_alive "$VM_PID" || fail "the VM powered off after its marker"
}

@test "images: tiny.img with a virtio NIC gets an address by DHCP after its marker and says so" {
	require_qemu
	require_tiny
	# QEMU's user network: its DHCP server leases 10.0.2.15; nothing leaves this machine.
	start_vm net "$(overlay "$IMAGES/tiny.img" net)" vm-net -netdev user,id=n0,restrict=on \
		-device virtio-net-pci,netdev=n0,mac=52:54:76:00:00:07
	wait_serial net "$VM_PID" "$(marker virtman-vm-up vm-net)" "$TINY_BOOT_TIMEOUT"
	wait_serial net "$VM_PID" '^virtman-vm-net ' 60
	run grep -a '^virtman-vm-net ' "$BATS_TEST_TMPDIR/net.serial"
	assert_output --regexp '^virtman-vm-net vm-net eth0 10\.0\.2\.15/24 52:54:76:00:00:07[[:space:]]*$'
	! grep -q 'insmod' "$BATS_TEST_TMPDIR/net.serial" || fail "a NIC driver did not load"
}

@test "images: tiny-v2.img prints 'virtman-vm-up-v2 NAME', and 'unnamed' without a serial" {
	require_qemu
	require_tiny
	start_vm v2 "$(overlay "$IMAGES/tiny-v2.img" v2)" ""
	wait_serial v2 "$VM_PID" "$(marker virtman-vm-up-v2 unnamed)" "$TINY_BOOT_TIMEOUT"
	! grep -q '^virtman-vm-up ' "$BATS_TEST_TMPDIR/v2.serial" || fail "v2 printed the v1 marker"
}

@test "images: tiny-broken.img has a partition table, prints no marker, and SeaBIOS finds no bootable device" {
	require_qemu
	require_tiny
	require_cmd sfdisk
	run sfdisk --dump "$IMAGES/tiny-broken.img"
	assert_success
	assert_output --partial 'label: dos'
	assert_output --regexp 'start= *2048,.*bootable'
	# graphics=off puts SeaBIOS's own console on the serial port (libvirt: <bios useserial='yes'/>).
	start_vm broken "$(overlay "$IMAGES/tiny-broken.img" broken)" vm-broken -machine graphics=off
	wait_serial broken "$VM_PID" 'No bootable device' "$NO_BOOT_TIMEOUT"
	grep -q 'Missing operating system' "$BATS_TEST_TMPDIR/broken.serial" ||
		fail "the MBR code did not report the empty partition"
	! grep -q 'virtman-vm-up' "$BATS_TEST_TMPDIR/broken.serial" || fail "the broken image printed a marker"
}

@test "images: two VMs on overlays of one tiny.img both boot; the base is unchanged" {
	require_qemu
	require_tiny
	local base="$BATS_TEST_TMPDIR/base.img" before pid_a pid_b
	cp --sparse=always "$IMAGES/tiny.img" "$base"
	chmod 0444 "$base" # shared read-only, as on a host
	before=$(sha256_of "$base")
	start_vm a "$(overlay "$base" a)" vm-a
	pid_a=$VM_PID
	start_vm b "$(overlay "$base" b)" vm-b
	pid_b=$VM_PID
	wait_serial a "$pid_a" "$(marker virtman-vm-up vm-a)" "$TINY_BOOT_TIMEOUT"
	wait_serial b "$pid_b" "$(marker virtman-vm-up vm-b)" "$TINY_BOOT_TIMEOUT"
	! grep -q 'vm-b' "$BATS_TEST_TMPDIR/a.serial" || fail "VM a saw VM b's name"
	kill -TERM "$pid_a" "$pid_b"
	wait_pid_exit "$pid_a" 30 && wait_pid_exit "$pid_b" 30 || fail "QEMU did not exit on SIGTERM"
	[[ $(sha256_of "$base") == "$before" ]] || fail "the shared base image changed"
}

@test "images: tiny.img builds reproducibly (same inputs, same bytes)" {
	require_tiny
	local i
	# Two builds at different times (times inside come from SOURCE_DATE_EPOCH, not the clock),
	# with the kernel `make images-tiny` fetched.
	for i in 1 2; do
		KERNEL_CACHE="$IMAGES/cache" "$REPO_ROOT/images/tiny/build.sh" "$BATS_TEST_TMPDIR/build$i.img" \
			>/dev/null || fail "images/tiny/build.sh failed"
	done
	assert_same_content "$BATS_TEST_TMPDIR/build1.img" "$BATS_TEST_TMPDIR/build2.img"
}

@test "images: debian.img boots to multi-user.target, prints its marker, offers a serial getty, powers off on ACPI" {
	require_qemu
	[[ -r $IMAGES/debian.img ]] || skip "no build/images/debian.img: make images-debian first"
	local before mon="$BATS_TEST_TMPDIR/monitor"
	before=$(sha256_of "$IMAGES/debian.img")
	# The QEMU monitor on two FIFOs (QEMU opens them read-write, so neither side blocks).
	mkfifo "$mon.in" "$mon.out"
	start_vm deb "$(overlay "$IMAGES/debian.img" deb)" vm-debian-1 -m 512 -monitor "pipe:$mon"
	wait_serial deb "$VM_PID" "$(marker virtman-vm-up vm-debian-1)" "$DEBIAN_BOOT_TIMEOUT"
	echo "# debian.img: marker after $((SECONDS - VM_STARTED)) s ($QEMU_ACCEL)" >&3
	wait_serial deb "$VM_PID" 'login: ?$' 120
	# What `virsh shutdown` does: press the ACPI power button. QEMU exits when the guest is off.
	echo system_powerdown >"$mon.in"
	wait_pid_exit "$VM_PID" 120 || fail "the VM did not power off within 120 s of the ACPI power button"
	[[ $(sha256_of "$IMAGES/debian.img") == "$before" ]] || fail "debian.img changed"
}
