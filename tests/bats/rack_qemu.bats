#!/usr/bin/env bats
# A rack of QEMU hosts PXE-boots from `virtman seed` into the real boot image
# (build/boot/vmlinuz + initrd.img): each host's agent registers, runs its relay, attaches
# the image with open-iscsi inside the guest, reads it whole (virtman.verify) and reports
# its SHA-256. Everything runs inside a network namespace: a bridge, one tap per host.

load seed_helpers

QEMU_ACCEL="${QEMU_ACCEL:-tcg}"
RACK_TIMEOUT="${RACK_TIMEOUT:-600}"	# seconds for every host to reach ready
IMG_SIZE=$((16 * 1024 * 1024))

setup() {
	require_seed_env
	require_cmd qemu-system-x86_64
	require_cmd curl
	require_cmd python3
	KERNEL="$REPO_ROOT/build/boot/vmlinuz"
	INITRD="$REPO_ROOT/build/boot/initrd.img"
	[[ -s $KERNEL && -s $INITRD ]] || skip "no boot image: run make (needs linux-image-amd64)"
	pxe_lan_create tap1 tap2 tap3
	API_NS=pxe
	IMG="$BATS_TEST_TMPDIR/rack.img"
	make_image "$IMG" "$IMG_SIZE"
	IMG_SHA=$(sha256_of "$IMG")
	STATE="$BATS_TEST_TMPDIR/state"
	SEED_URL="http://$SEED_ADDR:$SEED_HTTP_PORT"
}

start_rack_seed() {
	start_seed pxe seed --iface br0 --dhcp full --pool 10.213.1.100-10.213.1.150 \
		--image "$IMG" --kernel "$KERNEL" --initrd "$INITRD" \
		--append "virtman.verify" --heartbeat 2 --state-dir "$STATE" "$@"
}

# power_on N: host N (MAC 52:54:00:77:00:0N) on tapN; records HOST_N_PID and its serial log.
# A reboot ends QEMU, unless REBOOTS=1: then the host boots again (from the network).
power_on() {
	local n=$1 serial="$BATS_TEST_TMPDIR/host$1.serial" no_reboot=-no-reboot
	[[ ${REBOOTS:-0} == 1 ]] && no_reboot=
	: >"$serial"
	spawn "qemu$n" ip netns exec "$(ns pxe)" qemu-system-x86_64 -accel "$QEMU_ACCEL" \
		-m 768 -smp 1 -display none -monitor none $no_reboot -serial "file:$serial" \
		-boot n -netdev "tap,id=n0,ifname=tap$n,script=no,downscript=no" \
		-device "virtio-net-pci,netdev=n0,mac=52:54:00:77:00:0$n"
	printf -v "HOST_${n}_PID" %s "$SPAWN_PID"
}

# wait_ready N: until N live hosts are ready; shows the consoles when the deadline passes.
wait_ready() {
	local deadline=$((SECONDS + RACK_TIMEOUT)) ready=0 i
	until ready=$(api /api/v1/hosts | python3 -c 'import json, sys
print(sum(1 for h in json.load(sys.stdin)["hosts"] if h["live"] and h["stage"] == "ready"))') &&
		((ready >= $1)); do
		if ((SECONDS >= deadline)); then
			api /api/v1/status >&2 || true
			for i in 1 2 3; do
				[[ -s $BATS_TEST_TMPDIR/host$i.serial ]] || continue
				echo "--- host $i console" >&2
				tail -n 25 "$BATS_TEST_TMPDIR/host$i.serial" >&2
			done
			fail "only ${ready:-0} of $1 hosts ready after $RACK_TIMEOUT s"
		fi
		sleep 0.5
	done
}

root_served() {
	api /metrics | awk '$1 == "virtman_served_bytes_total" { print $2 }'
}

@test "rack qemu: three hosts PXE-boot to ready, form root -> {1, 2}, 1 -> 3, and read the image bit-exact" {
	local userland="$REPO_ROOT/build/boot/userland.squashfs"
	[[ -s $userland ]] || skip "no hypervisor userland: run make userland (as root)"
	# With the userland every host also attaches it through the tree and starts libvirtd
	# from it before it reports ready (no VMs: --vms-per-host 0).
	start_rack_seed --userland "$userland" --vms-per-host 0
	for n in 1 2 3; do
		power_on "$n"
		wait_ready "$n"	# one at a time: placement follows the boot order
	done
	assert_equal "$(host_field 1 parent)" 0
	assert_equal "$(host_field 2 parent)" 0
	assert_equal "$(host_field 3 parent)" 1
	for n in 1 2 3; do
		assert_equal "$(host_field "$n" disk_sha256)" "$IMG_SHA"
		grep -q "stage ready" "$BATS_TEST_TMPDIR/host$n.serial" || fail "host $n's console is silent"
		api "/api/v1/hosts/$n/log" | grep -q "hypervisor userland up" ||
			fail "host $n did not start libvirtd from the userland"
	done
	# Each of the seed's two children took one copy; host 3 took nothing from the root.
	local served
	served=$(root_served)
	((served <= 2 * IMG_SIZE + IMG_SIZE / 10)) || fail "the root served $served bytes, not 2 copies"
	# Host 1 dies (QEMU quits): the seed loses it and moves host 3, whose relay still serves.
	kill -KILL "$HOST_1_PID"
	local deadline=$((SECONDS + 60))
	until [[ $(host_field 1 live) == false && $(host_field 3 parent) != 1 ]]; do
		((SECONDS < deadline)) || { api /api/v1/status >&2; fail "host 1 not lost or host 3 not moved"; }
		sleep 0.5
	done
	in_ns pxe qemu-img convert -f raw -O raw \
		"iscsi://$(host_field 3 addr):3260/iqn.2026-11.org.virtman:rack.img/0" "$BATS_TEST_TMPDIR/via3.raw"
	assert_same_content "$IMG" "$BATS_TEST_TMPDIR/via3.raw"
	# The seed restarts: the rack is still there, the hosts keep heartbeating.
	stop_seed
	start_rack_seed
	deadline=$((SECONDS + 60))
	local restarted_ms
	restarted_ms=$(date +%s%3N)
	for n in 2 3; do
		until (($(host_field "$n" seen_ms) > restarted_ms)); do
			((SECONDS < deadline)) || fail "host $n never came back to the restarted seed"
			sleep 0.5
		done
		assert_equal "$(host_field "$n" live)" true
	done
	stop_seed
}

@test "rack qemu: with --fanout 1 the hosts chain and the root serves one copy" {
	start_rack_seed --fanout 1
	for n in 1 2; do
		power_on "$n"
		wait_ready "$n"
	done
	assert_equal "$(host_field 2 parent)" 1
	assert_equal "$(host_field 2 disk_sha256)" "$IMG_SHA"
	local served
	served=$(root_served)
	((served <= IMG_SIZE + IMG_SIZE / 10)) || fail "the root served $served bytes for a chain"
	stop_seed
}

@test "rack qemu: a wrong boot token is refused and said on the console and to no one else" {
	start_rack_seed --append "virtman.verify virtman.token=0123456789abcdef"
	power_on 1
	wait_file_match "$BATS_TEST_TMPDIR/host1.serial" "registration refused: HTTP 403" "$RACK_TIMEOUT" ||
		{ tail -n 30 "$BATS_TEST_TMPDIR/host1.serial" >&2; fail "no refusal on the console"; }
	api /api/v1/hosts | grep -q '"hosts":\[\]' || fail "a host with a wrong token was registered"
	stop_seed
}

@test "rack qemu: an image that fails verification ends in a failed stage with the reason" {
	start_rack_seed
	# The image changes behind the manifest's back (same size, same mtime): every relay
	# now receives chunks that do not match and must refuse them.
	local mtime
	mtime=$(stat -c %Y "$IMG")
	printf 'CORRUPT' | dd of="$IMG" bs=1 seek=4096 conv=notrunc status=none
	touch -d "@$mtime" "$IMG"
	power_on 1
	local deadline=$((SECONDS + RACK_TIMEOUT))
	until [[ $(host_field 1 stage) == failed ]]; do
		((SECONDS < deadline)) || { tail -n 30 "$BATS_TEST_TMPDIR/host1.serial" >&2; fail "no failed stage"; }
		sleep 0.5
	done
	run host_field 1 reason
	assert_output --partial "failed verification"
	grep -q "failed verification" "$BATS_TEST_TMPDIR/host1.serial" || fail "nothing on the console"
	stop_seed
}

# generation_ready GEN N: until N live hosts run generation GEN and are ready.
generation_ready() {
	local deadline=$((SECONDS + RACK_TIMEOUT)) n
	until n=$(api /api/v1/hosts | python3 -c 'import json, sys
print(sum(1 for h in json.load(sys.stdin)["hosts"]
          if h["live"] and h["stage"] == "ready" and h["generation"] == int(sys.argv[1])))' "$1") &&
		((n >= $2)); do
		((SECONDS < deadline)) || { api /api/v1/status >&2; fail "only ${n:-0} hosts on generation $1"; }
		sleep 0.5
	done
}

@test "rack qemu: reimage in place, then with --reboot; every host reads each new image bit-exact" {
	REBOOTS=1
	start_rack_seed
	for n in 1 2; do
		power_on "$n"
		wait_ready "$n"
	done
	# In place: the agents log out of the old disk, stop its relay, attach the new one.
	local img2="$BATS_TEST_TMPDIR/rack2.img" img3="$BATS_TEST_TMPDIR/rack3.img"
	make_image "$img2" $((12 * 1024 * 1024))
	make_image "$img3" $((10 * 1024 * 1024))
	run in_ns pxe "$VIRTMAN" reimage --state-dir "$STATE" --image "$img2" --timeout "$RACK_TIMEOUT"
	echo "$output"
	assert_success
	assert_output --partial "2 hosts ready, 0 failed, 0 lost, 0 not done"
	for n in 1 2; do
		assert_equal "$(host_field "$n" generation)" 2
		assert_equal "$(host_field "$n" disk_sha256)" "$(sha256_of "$img2")"
	done
	api /api/v1/hosts/1/log | grep -q "stage reimaging" || fail "host 1 did not reimage in place"
	# With --reboot: each host reboots, PXE-boots again and attaches generation 3.
	local boots_before
	boots_before=$(grep -c "virtman agent: starting" "$BATS_TEST_TMPDIR/host1.serial")
	run in_ns pxe "$VIRTMAN" reimage --state-dir "$STATE" --image "$img3" --reboot \
		--timeout "$RACK_TIMEOUT"
	echo "$output"
	assert_success
	assert_output --partial "rebooting"
	generation_ready 3 2
	for n in 1 2; do
		assert_equal "$(host_field "$n" disk_sha256)" "$(sha256_of "$img3")"
	done
	(($(grep -c "virtman agent: starting" "$BATS_TEST_TMPDIR/host1.serial") > boots_before)) ||
		fail "host 1 did not boot again"
	stop_seed
}
