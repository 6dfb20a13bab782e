#!/usr/bin/env bats
# The host boot image (initramfs/): what the build puts in it, and that it works when booted
# under QEMU: busybox init starts the agent, open-iscsi attaches a `virtman export` running on
# this machine, and hv-start brings libvirt up from the userland squashfs.
# The guest side of the QEMU tests is bootimage/guest-test.sh, appended to the initrd as the
# /test.sh hook that /init runs instead of the agent when the command line says virtman.test.

load helpers

BOOT="$REPO_ROOT/build/boot"
QEMU_TIMEOUT="${QEMU_TIMEOUT:-300}"	# seconds one boot under software emulation may take

require_boot_image() {
	[[ -f $BOOT/vmlinuz && -f $BOOT/initrd.img ]] || fail "$BOOT/{vmlinuz,initrd.img} not built (run make)"
}

require_qemu() {
	require_cmd qemu-system-x86_64
	require_boot_image
}

# initrd_cat: the initrd, decompressed (both archives: the image and its /dev/console node).
initrd_cat() {
	zstd -dcq "$BOOT/initrd.img" 2>/dev/null || xz -dcq "$BOOT/initrd.img"
}

# initrd_list: every name in the initrd, one a line, without a leading slash.
initrd_list() {
	initrd_cat | { cpio -t --quiet && cpio -t --quiet; } 2>/dev/null
}

# test_initrd OUT: the initrd with guest-test.sh appended as /test.sh. The kernel finds an
# uncompressed archive after a compressed one only at a 4-byte aligned offset.
test_initrd() {
	local dir=$BATS_TEST_TMPDIR/extra
	mkdir -p "$dir"
	install -m 0755 "$BATS_TEST_DIRNAME/bootimage/guest-test.sh" "$dir/test.sh"
	cp "$BOOT/initrd.img" "$1"
	truncate -s %4 "$1"
	(cd "$dir" && echo test.sh | cpio --quiet -o -H newc -R 0:0) >>"$1"
}

# boot_qemu INITRD APPEND [QEMU ARGS...]: boots the image under TCG with a virtio NIC on QEMU's
# user network (the guest reaches this machine's 127.0.0.1 as 10.0.2.2); the serial console
# goes to $SERIAL. Sets SPAWN_PID.
boot_qemu() {
	local initrd=$1 append=$2
	shift 2
	SERIAL=$BATS_TEST_TMPDIR/serial.log
	: >"$SERIAL"
	spawn qemu timeout -k 5 "$QEMU_TIMEOUT" qemu-system-x86_64 -accel tcg -m 1024 \
		-display none -monitor none -serial "file:$SERIAL" -no-reboot \
		-kernel "$BOOT/vmlinuz" -initrd "$initrd" -append "console=ttyS0 panic=-1 $append" \
		-nic user,model=virtio-net-pci "$@" </dev/null
}

# wait_serial REGEX DEADLINE_S: polls the console until a line matches; fails showing the
# console's end when the deadline passes or QEMU exits first.
wait_serial() {
	local deadline=$((SECONDS + $2))
	until grep -Eq -- "$1" "$SERIAL"; do
		if ! pid_alive "$SPAWN_PID" && ! grep -Eq -- "$1" "$SERIAL"; then
			tail -n 60 "$SERIAL" >&2
			fail "QEMU exited before the console matched '$1'"
		fi
		if ((SECONDS >= deadline)); then
			tail -n 60 "$SERIAL" >&2
			fail "the console did not match '$1' within $2 s"
		fi
		sleep "$POLL_INTERVAL"
	done
}

@test "boot image: the build made a kernel and an initrd within 24 MiB" {
	require_boot_image
	local size
	size=$(stat -c %s "$BOOT/initrd.img")
	echo "# initrd: $((size / 1024)) KiB" >&3
	((size <= 24 * 1024 * 1024)) || fail "initrd is $size bytes, over 24 MiB"
	# The x86 boot protocol's signature, at 0x202 in every bzImage.
	assert_equal "$(dd if="$BOOT/vmlinuz" bs=1 skip=514 count=4 status=none)" HdrS
}

@test "boot image: the initrd holds init, virtman, busybox, open-iscsi with its libraries, modules" {
	require_boot_image
	local list lib
	list=$(initrd_list)
	for name in init bin/virtman bin/busybox bin/sh sbin/init sbin/modprobe sbin/udhcpc \
		etc/udhcpc.script etc/iscsi/iscsid.conf etc/passwd etc/group etc/hosts etc/virtman/modules \
		bin/hv-start bin/hv-stop usr/sbin/iscsiadm usr/sbin/iscsid dev/console; do
		grep -qx -- "$name" <<<"$list" || fail "$name is not in the initrd"
	done
	for lib in $(ldd /usr/sbin/iscsiadm /usr/sbin/iscsid | awk '$3 ~ /^\// { print $3 } $1 ~ /^\/.*[^:]$/ { print $1 }'); do
		grep -qx -- "${lib#/}" <<<"$list" || fail "library $lib of open-iscsi is not in the initrd"
	done
	for module in iscsi_tcp virtio_net virtio_blk squashfs overlay; do
		grep -Eq "^lib/modules/[^/]+/kernel/.*/$module\.ko$" <<<"$list" || fail "$module.ko is not in the initrd"
	done
	grep -Eq '^lib/modules/[^/]+/modules\.dep$' <<<"$list" || fail "modules.dep is not in the initrd"
}

@test "boot image: every module modules.dep names is in the initrd" {
	require_boot_image
	local list deps ko
	list=$(initrd_list)
	deps=$(initrd_cat | cpio -i --quiet --to-stdout 'lib/modules/*/modules.dep' 2>/dev/null)
	grep -q '^kernel/drivers/scsi/iscsi_tcp.ko: .*libiscsi_tcp.ko' <<<"$deps" ||
		fail "modules.dep does not list iscsi_tcp's dependencies"
	for ko in $(tr -d ':' <<<"$deps"); do
		grep -Eq "^lib/modules/[^/]+/$ko$" <<<"$list" || fail "modules.dep names $ko, which is not in the initrd"
	done
}

@test "boot image: boots under QEMU to the banner, and busybox init starts the agent" {
	require_qemu
	local started=$SECONDS
	boot_qemu "$BOOT/initrd.img" "virtman.debug virtman.seed=http://10.0.2.2:1/"
	wait_serial 'virtman: initramfs up \(kernel ' "$QEMU_TIMEOUT"
	echo "# banner after $((SECONDS - started)) s (TCG)" >&3
	# Whatever the agent does with an unreachable seed, it prints under its name; a binary
	# without the command says so, which still proves init ran /bin/virtman agent.
	wait_serial "virtman agent|unknown command 'agent'" 120
	# virtman.debug offers a shell on the console.
	wait_serial 'Please press Enter to activate this console' 60
	run grep -E 'Kernel panic|unable to open an initial console|Initramfs unpacking failed|can.t run' "$SERIAL"
	assert_failure
}

@test "boot image: in QEMU, udhcpc writes the lease and open-iscsi reads a virtman export bit-exact" {
	require_qemu
	require_built "$VIRTMAN"
	local img=$BATS_TEST_TMPDIR/disk.img initrd=$BATS_TEST_TMPDIR/initrd.img got
	make_image "$img" 16M
	start_export "$img"
	test_initrd "$initrd"
	boot_qemu "$initrd" "virtman.test virtman.test.mode=iscsi virtman.test.portal=10.0.2.2:$PORT virtman.test.iqn=$IQN"
	wait_serial 'virtman-test-done' "$QEMU_TIMEOUT"
	wait_spawned "$SPAWN_PID" 60 || fail "QEMU did not power off after the test"
	# The serial console ends lines with CR LF.
	for line in interface=eth0 ip=10.0.2.15 mask=255.255.255.0 prefix=24 router=10.0.2.2 \
		dns=10.0.2.3 serverid=10.0.2.2; do
		tr -d '\r' <"$SERIAL" | grep -qx -- "$line" || { cat "$SERIAL" >&2; fail "lease file without $line"; }
	done
	got=$(grep -Eo 'virtman-test-sha256 [0-9a-f]{64}' "$SERIAL" | cut -d' ' -f2) ||
		{ cat "$SERIAL" >&2; fail "the guest printed no sha256 of /dev/sda"; }
	assert_equal "$got" "$(sha256_of "$img")"
	grep -q 'virtman-test-done status=0' "$SERIAL" || { cat "$SERIAL" >&2; fail "the guest test failed"; }
	stop_export
}

@test "userland: libvirtd and qemu.conf are set up for a chroot without polkit or systemd" {
	[[ -f $BOOT/userland.squashfs ]] || skip "no $BOOT/userland.squashfs: run make userland first (root)"
	require_cmd unsquashfs
	run unsquashfs -cat "$BOOT/userland.squashfs" etc/libvirt/libvirtd.conf
	assert_success
	assert_output --partial 'auth_unix_rw = "none"'
	run unsquashfs -cat "$BOOT/userland.squashfs" etc/libvirt/qemu.conf
	assert_success
	assert_output --partial 'security_driver = "none"'
	assert_output --partial 'stdio_handler = "file"'
	run unsquashfs -l "$BOOT/userland.squashfs" usr/sbin/libvirtd
	assert_output --partial 'squashfs-root/usr/sbin/libvirtd'
}

@test "userland: in QEMU, hv-start refuses a bad device, brings libvirtd up; a VM starts; hv-stop undoes it" {
	require_qemu
	[[ -f $BOOT/userland.squashfs ]] || skip "no $BOOT/userland.squashfs: run make userland first (root)"
	local initrd=$BATS_TEST_TMPDIR/initrd.img
	test_initrd "$initrd"
	boot_qemu "$initrd" "virtman.test virtman.test.mode=userland" \
		-drive "file=$BOOT/userland.squashfs,if=virtio,format=raw,readonly=on"
	wait_serial 'virtman-test-done' "$QEMU_TIMEOUT"
	wait_spawned "$SPAWN_PID" 60 || fail "QEMU did not power off after the test"
	for marker in virtman-test-hv-bad-device-refused 'hv-start: libvirtd ready' virtman-test-hv-ready 'Running hypervisor: QEMU' \
		virtman-test-vm-started virtman-test-hv-stopped 'virtman-test-done status=0'; do
		grep -q -- "$marker" "$SERIAL" || { cat "$SERIAL" >&2; fail "no '$marker' on the console"; }
	done
}
