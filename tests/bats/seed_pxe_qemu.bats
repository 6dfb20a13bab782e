#!/usr/bin/env bats
# QEMU hosts network-boot from `virtman seed` over a bridge and a tap inside a network
# namespace: SeaBIOS with QEMU's iPXE ROMs, and OVMF with its own PXE stack (which fetches
# snponly.efi over TFTP before iPXE takes over). Each boots the kernel and a small busybox
# initramfs whose /init prints a marker on the serial console and powers off.

load seed_helpers

MARKER=virtman-test-initramfs-up
QEMU_BOOT_TIMEOUT="${QEMU_BOOT_TIMEOUT:-300}"	# seconds from power-on to the marker
QEMU_ACCEL="${QEMU_ACCEL:-tcg}"			# /dev/kvm may exist and still not work
OVMF_CODE=/usr/share/OVMF/OVMF_CODE.fd
OVMF_VARS=/usr/share/OVMF/OVMF_VARS.fd

# The kernel: $VIRTMAN_TEST_KERNEL, else the newest Debian kernel in /boot.
find_kernel() {
	if [[ -n ${VIRTMAN_TEST_KERNEL:-} ]]; then
		echo "$VIRTMAN_TEST_KERNEL"
	else
		ls -1 /boot/vmlinuz-* 2>/dev/null | sort -V | tail -n 1
	fi
}

# Builds the test initramfs once for the file: static busybox, /dev/console, and an /init
# that prints the marker with the kernel command line, then powers off.
setup_file() {
	[[ $EUID -eq 0 ]] || return 0
	command -v busybox >/dev/null || return 0
	local d="$BATS_FILE_TMPDIR/initramfs"
	mkdir -p "$d/bin" "$d/dev" "$d/proc"
	cp "$(command -v busybox)" "$d/bin/busybox"
	ln -s busybox "$d/bin/sh"
	mknod "$d/dev/console" c 5 1
	cat >"$d/init" <<-EOF
		#!/bin/sh
		/bin/busybox mount -t proc proc /proc
		echo "$MARKER \$(/bin/busybox cat /proc/cmdline)" >/dev/console
		/bin/busybox poweroff -f
	EOF
	chmod +x "$d/init"
	(cd "$d" && find . | busybox cpio -o -H newc 2>/dev/null | gzip -1) \
		>"$BATS_FILE_TMPDIR/initrd.img"
}

setup() {
	require_seed_env
	require_cmd qemu-system-x86_64
	require_cmd busybox
	KERNEL=$(find_kernel)
	[[ -n $KERNEL && -r $KERNEL ]] || skip "no kernel in /boot (Debian package linux-image-amd64)"
	INITRD="$BATS_FILE_TMPDIR/initrd.img"
	[[ -s $INITRD ]] || fail "the test initramfs was not built"
	pxe_lan_create tap0
}

start_pxe_seed() {
	start_seed pxe seed --iface br0 --kernel "$KERNEL" --initrd "$INITRD" --append "panic=-1" \
		--state-dir "$BATS_TEST_TMPDIR/state" "$@"
}

# boot FIRMWARE MAC DEVICE...: powers on a host with FIRMWARE (bios|uefi) and a NIC on
# tap0 (DEVICE is its -device line without netdev/mac), waits for the marker on its serial
# console, and checks the command line the seed gave it.
boot() {
	local fw=$1 mac=$2 dev=$3 serial="$BATS_TEST_TMPDIR/serial-$2.log" args=()
	args=(-accel "$QEMU_ACCEL" -m 512 -display none -monitor none -no-reboot
		-serial "file:$serial" -boot n
		-netdev tap,id=n0,ifname=tap0,script=no,downscript=no
		-device "$dev,netdev=n0,mac=$mac")
	if [[ $fw == uefi ]]; then
		[[ -r $OVMF_CODE ]] || skip "OVMF not installed (Debian package ovmf)"
		cp "$OVMF_VARS" "$BATS_TEST_TMPDIR/vars.fd"
		args+=(-drive "if=pflash,format=raw,unit=0,readonly=on,file=$OVMF_CODE"
			-drive "if=pflash,format=raw,unit=1,file=$BATS_TEST_TMPDIR/vars.fd")
	fi
	: >"$serial"
	spawn "qemu-$mac" ip netns exec "$(ns pxe)" qemu-system-x86_64 "${args[@]}"
	local qemu=$SPAWN_PID deadline=$((SECONDS + QEMU_BOOT_TIMEOUT))
	until grep -q "^$MARKER" "$serial"; do
		if ! pid_alive "$qemu"; then
			tail -n 30 "$serial" >&2
			cat "$BATS_TEST_TMPDIR/qemu-$mac.err" >&2
			fail "QEMU exited before the marker"
		fi
		if ((SECONDS >= deadline)); then
			tail -n 30 "$serial" >&2
			tail -n 30 "$SEED_LOG" >&2
			fail "no marker on the serial console after $QEMU_BOOT_TIMEOUT s"
		fi
		sleep 0.5
	done
	local line token
	line=$(grep "^$MARKER" "$serial")
	token=$(cat "$BATS_TEST_TMPDIR/state/boot-token")
	[[ $line == *" virtman.seed=http://$SEED_ADDR:$SEED_HTTP_PORT "* ]] || fail "no seed URL: $line"
	[[ $line == *" virtman.token=$token "* ]] || fail "no boot token: $line"
	[[ $line == *" virtman.mac=$mac "* ]] || fail "not this host's MAC: $line"
	# It powers itself off; do not leave it running either way.
	wait_pid_exit "$qemu" 30 || kill -KILL "$qemu" 2>/dev/null || true
}

@test "pxe qemu: BIOS with iPXE's virtio-net ROM boots kernel and initramfs over HTTP" {
	start_pxe_seed --dhcp full --pool 10.213.1.100-10.213.1.120
	boot bios 52:54:00:42:00:01 virtio-net-pci
	grep -q 'boot script for mac=52%3A54%3A00%3A42%3A00%3A01' "$SEED_LOG" ||
		grep -q 'boot script for mac=52:54:00:42:00:01' "$SEED_LOG" || fail "no boot script served"
	! grep -q 'sent undionly.kpxe' "$SEED_LOG" || fail "iPXE was sent iPXE again"
	stop_seed
}

@test "pxe qemu: BIOS with iPXE's e1000 ROM boots" {
	start_pxe_seed --dhcp full --pool 10.213.1.100-10.213.1.120
	boot bios 52:54:00:42:00:02 e1000
	stop_seed
}

@test "pxe qemu: UEFI PXE fetches snponly.efi over TFTP once, then iPXE boots the host" {
	start_pxe_seed --dhcp full --pool 10.213.1.100-10.213.1.120
	# romfile= leaves OVMF's own virtio-net driver and PXE stack in charge, as on a server
	# whose firmware is not iPXE.
	boot uefi 52:54:00:42:00:03 virtio-net-pci,romfile=
	grep -q 'OFFER 10.213.1.100 to 52:54:00:42:00:03 boot snponly.efi' "$SEED_LOG" ||
		fail "UEFI PXE was not offered snponly.efi"
	[[ $(grep -c 'sent snponly.efi' "$SEED_LOG") -eq 1 ]] ||
		fail "snponly.efi sent $(grep -c 'sent snponly.efi' "$SEED_LOG") times: a chainload loop?"
	grep -q 'boot http://10.213.1.1:8080/boot.ipxe?mac=52:54:00:42:00:03' "$SEED_LOG" ||
		fail "iPXE was not given its script"
	stop_seed
}

@test "pxe qemu: UEFI PXE in proxy mode beside udhcpd gets its file through port 4011" {
	ns_create other
	ip link add oth0 netns "$(ns other)" type veth peer name p-o netns "$(ns pxe)"
	ip -n "$(ns pxe)" link set p-o master br0
	ip -n "$(ns pxe)" link set p-o up
	ip -n "$(ns other)" addr add 10.213.1.254/24 dev oth0
	ip -n "$(ns other)" link set oth0 up
	cat >"$BATS_TEST_TMPDIR/udhcpd.conf" <<-EOF
		start 10.213.1.200
		end 10.213.1.210
		interface oth0
		lease_file $BATS_TEST_TMPDIR/udhcpd.leases
		pidfile $BATS_TEST_TMPDIR/udhcpd.pid
		opt subnet 255.255.255.0
	EOF
	: >"$BATS_TEST_TMPDIR/udhcpd.leases"
	spawn udhcpd ip netns exec "$(ns other)" busybox udhcpd -f "$BATS_TEST_TMPDIR/udhcpd.conf"
	wait_file_match "$BATS_TEST_TMPDIR/udhcpd.err" started "$READY_TIMEOUT" || fail "udhcpd"
	start_pxe_seed --dhcp proxy
	boot uefi 52:54:00:42:00:04 virtio-net-pci,romfile=
	grep -q 'ACK (proxy) to 52:54:00:42:00:04 boot snponly.efi' "$SEED_LOG" ||
		fail "no ProxyDHCP ACK on port 4011"
	grep -q 'sending ACK to 10.213.1.20' "$BATS_TEST_TMPDIR/udhcpd.err" ||
		fail "the address did not come from udhcpd"
	! grep -Eq '(OFFER|ACK) 10\.213\.1\.' "$SEED_LOG" || fail "the proxy handed out an address"
	stop_seed
}

@test "pxe qemu: UEFI with iPXE's e1000 ROM goes straight to the script" {
	start_pxe_seed --dhcp full --pool 10.213.1.100-10.213.1.120
	boot uefi 52:54:00:42:00:05 e1000
	! grep -q 'sent snponly.efi' "$SEED_LOG" || fail "iPXE was sent iPXE again"
	stop_seed
}
