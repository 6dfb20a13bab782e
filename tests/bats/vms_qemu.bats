#!/usr/bin/env bats
# Homogeneous VMs end to end: QEMU hosts PXE-boot from the seed, attach the VM image and the
# hypervisor userland through their relays, start libvirtd from the userland, and start
# their VMs of images/tiny on qcow2 overlays, each VM's NIC on a bridge over its host's boot
# NIC; each VM's marker reaches the seed. The hosts run under software emulation; their
# emulated CPU offers AMD-V (QEMU's qemu64 model), so the Debian kernel's kvm_amd gives the
# nested VMs KVM on top of it and they boot in tens of seconds, not many minutes.

load seed_helpers

QEMU_ACCEL="${QEMU_ACCEL:-tcg}"
VM_TIMEOUT="${VM_TIMEOUT:-900}"		# seconds for every VM to reach a stage
CHUNK=$((256 * 1024))			# the seed's default chunk size

setup() {
	require_seed_env
	require_cmd qemu-system-x86_64
	require_cmd curl
	require_cmd python3
	[[ ${VIRTMAN_NESTED_VMS:-1} == 1 ]] || skip "VIRTMAN_NESTED_VMS=0: nested VM tests turned off"
	KERNEL="$REPO_ROOT/build/boot/vmlinuz"
	INITRD="$REPO_ROOT/build/boot/initrd.img"
	USERLAND="$REPO_ROOT/build/boot/userland.squashfs"
	local img
	for img in tiny tiny-v2 tiny-broken; do
		[[ -s $REPO_ROOT/build/images/$img.img ]] || skip "no build/images/$img.img: run make images-tiny"
		cp "$REPO_ROOT/build/images/$img.img" "$BATS_TEST_TMPDIR/$img.img"
	done
	[[ -s $KERNEL && -s $INITRD ]] || skip "no boot image: run make"
	[[ -s $USERLAND ]] || skip "no hypervisor userland: run make userland (as root)"
	pxe_lan_create tap1 tap2
	API_NS=pxe
	STATE="$BATS_TEST_TMPDIR/state"
	SEED_URL="http://$SEED_ADDR:$SEED_HTTP_PORT"
}

# start_vm_seed IMAGE ARGS...: the seed as the rack's DHCP server, with the userland.
# Heartbeats every 10 s: an emulated host starting a nested VM can stall for 10-15 s on a
# busy machine, and three missed beats would count it lost.
start_vm_seed() {
	local image=$1
	shift
	start_seed pxe seed --iface br0 --dhcp full --pool 10.213.1.100-10.213.1.150 \
		--image "$BATS_TEST_TMPDIR/$image" --userland "$USERLAND" --kernel "$KERNEL" \
		--initrd "$INITRD" --memory 128 --heartbeat 10 --state-dir "$STATE" "$@"
}

power_on() {
	spawn "qemu$1" ip netns exec "$(ns pxe)" qemu-system-x86_64 -accel "$QEMU_ACCEL" \
		-m 1536 -smp 2 -display none -monitor none -no-reboot \
		-serial "file:$BATS_TEST_TMPDIR/host$1.serial" -boot n \
		-netdev "tap,id=n0,ifname=tap$1,script=no,downscript=no" \
		-device "virtio-net-pci,netdev=n0,mac=52:54:00:66:00:0$1"
}

# wait_host_stage ID STAGE: until host ID reports STAGE.
wait_host_stage() {
	local deadline=$((SECONDS + VM_TIMEOUT))
	until [[ $(host_field "$1" stage) == "$2" ]]; do
		((SECONDS < deadline)) || { show_rack; fail "host $1 not $2 after $VM_TIMEOUT s"; }
		sleep 1
	done
}

# vms_in STAGE: how many VMs of live hosts are in STAGE.
vms_in() {
	api /api/v1/hosts | python3 -c 'import json, sys
print(sum(1 for h in json.load(sys.stdin)["hosts"] if h["live"]
          for v in h["vms"] if v["stage"] == sys.argv[1]))' "$1"
}

# show_rack: the seed's view and the hosts' consoles, for a failure.
show_rack() {
	local i
	api /api/v1/hosts >&2 || true
	for i in 1 2; do
		[[ -s $BATS_TEST_TMPDIR/host$i.serial ]] || continue
		echo "--- host $i console" >&2
		tail -n 30 "$BATS_TEST_TMPDIR/host$i.serial" >&2
	done
}

# wait_vms N STAGE: until N VMs are in STAGE.
wait_vms() {
	local want=$1 stage=$2 deadline=$((SECONDS + VM_TIMEOUT))
	until (($(vms_in "$stage") >= want)); do
		if ((SECONDS >= deadline)); then
			show_rack
			fail "fewer than $want VMs reached $stage in $VM_TIMEOUT s"
		fi
		sleep 1
	done
}

# metric ADDR NAME: the sum of a metric's samples on a host's relay (port 9100) or, for
# ADDR "seed", the seed's /metrics.
metric() {
	local url="http://$1:9100/metrics"
	[[ $1 == seed ]] && url="$SEED_URL/metrics"
	in_ns pxe curl -sf "$url" | awk -v name="$2" '
		$1 == name || index($1, name "{") == 1 { sum += $2 } END { printf "%d\n", sum }'
}

# vm_lease MAC: the address the seed's DHCP server leased to MAC, or nothing.
vm_lease() {
	awk -v mac="$1" 'tolower($1) == mac && $4 == "bound" { print $2 }' "$STATE/dhcp-leases" 2>/dev/null
}

@test "vms qemu: two chained hosts with one VM of images/tiny each; every VM up, on the LAN, read through the relays, the root serving each chunk once" {
	# --fanout 1: root -> host 1 -> host 2, so the root serves only host 1.
	start_vm_seed tiny.img --vms-per-host 1 --vm-timeout 600 --fanout 1
	power_on 1
	# Host 2 starts once host 1's relay serves: before, its reads would go to the root.
	wait_host_stage 1 ready
	power_on 2
	wait_vms 2 vm-up
	api /api/v1/hosts | python3 -c 'import json, sys
hosts = json.load(sys.stdin)["hosts"]
assert len(hosts) == 2, hosts
for h in hosts:
    assert h["stage"] == "ready", h
    assert [v["name"] for v in h["vms"]] == ["host%d-vm1" % h["id"]], h
    for v in h["vms"]:
        assert v["stage"] == "vm-up" and v["boot_ms"] > 0, v'
	assert_equal "$(host_field 2 parent)" 1
	local a1 a2 root chunks1 chunks2 fetched1
	a1=$(host_field 1 addr)
	a2=$(host_field 2 addr)
	# Each VM booted from the shared base through its host's relay.
	(($(metric "$a1" virtman_served_bytes_total) > 0)) || fail "host 1's relay served nothing"
	(($(metric "$a2" virtman_served_bytes_total) > 0)) || fail "host 2's relay served nothing"
	# A block crossed each link once: the root served host 1's chunks, each once; host 2's
	# came from host 1's cache.
	root=$(metric seed virtman_served_bytes_total)
	chunks1=$(metric "$a1" virtman_cache_chunks_present)
	chunks2=$(metric "$a2" virtman_cache_chunks_present)
	fetched1=$(metric "$a1" virtman_upstream_bytes_total)
	echo "root served $root bytes; host 1 holds $chunks1 chunks (fetched $fetched1), host 2 $chunks2" >&3
	((chunks2 > 0 && chunks1 >= chunks2)) || fail "host 1 holds $chunks1 chunks, host 2 $chunks2"
	assert_equal "$root" $((chunks1 * CHUNK))
	assert_equal "$fetched1" "$root"
	# Each VM's NIC is on its host's bridge: the seed's DHCP server leased it an address.
	local n mac addr deadline=$((SECONDS + 120))
	for n in 1 2; do
		mac=52:54:76:00:0$n:01
		until addr=$(vm_lease "$mac") && [[ -n $addr ]]; do
			((SECONDS < deadline)) || { cat "$STATE/dhcp-leases" >&2; fail "no lease for VM $mac"; }
			sleep 1
		done
		[[ $addr == 10.213.1.1[0-5][0-9] ]] || fail "VM $mac leased $addr, outside the pool"
		[[ $addr != "$a1" && $addr != "$a2" ]] || fail "VM $mac got its host's address $addr"
	done
	grep -q "bridge over eth0" "$BATS_TEST_TMPDIR/host1.serial" || fail "host 1 made no bridge"
	stop_seed
}

@test "vms qemu: virtman reimage to an image with another marker; every VM comes back with it" {
	start_vm_seed tiny.img --vms-per-host 1 --vm-timeout 600
	power_on 1
	power_on 2
	wait_vms 2 vm-up
	run in_ns pxe "$VIRTMAN" reimage --state-dir "$STATE" --image "$BATS_TEST_TMPDIR/tiny-v2.img" \
		--vm-marker virtman-vm-up-v2 --timeout "$VM_TIMEOUT"
	echo "$output"
	((status == 0)) || show_rack
	assert_success
	assert_output --partial "2 hosts ready, 0 failed, 0 lost, 0 not done"
	# "virtman-vm-up-v2 NAME" is the only line that makes a VM up now: the new image booted.
	api /api/v1/hosts | python3 -c 'import json, sys
for h in json.load(sys.stdin)["hosts"]:
    assert h["generation"] == 2, h
    assert len(h["vms"]) == 1, h
    for v in h["vms"]:
        assert v["stage"] == "vm-up" and v["boot_ms"] > 0, v'
	run in_ns pxe curl -sf "$SEED_URL/api/v1/hosts/1/log"
	assert_output --partial "vm host1-vm1: stopped"
	stop_seed
}

@test "vms qemu: a VM image without a bootloader is failed with the reason at once; the host stays up and takes a good image" {
	start_vm_seed tiny-broken.img --vms-per-host 1 --vm-timeout 600
	power_on 1
	wait_vms 1 failed
	run host_field 1 vms
	echo "$output"
	assert_output --partial "the BIOS found no bootable disk"
	assert_output --partial "No bootable device"
	# Well before --vm-timeout: the console said why.
	refute_output --partial "within 600 s"
	assert_equal "$(host_field 1 stage)" ready
	# The same host, untouched otherwise, runs a good image's VM after a reimage.
	run in_ns pxe "$VIRTMAN" reimage --state-dir "$STATE" --image "$BATS_TEST_TMPDIR/tiny.img" \
		--timeout "$VM_TIMEOUT"
	echo "$output"
	((status == 0)) || show_rack
	assert_success
	assert_output --partial "1 hosts ready, 0 failed"
	assert_equal "$(vms_in vm-up)" 1
	stop_seed
}
