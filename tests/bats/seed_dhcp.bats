#!/usr/bin/env bats
# virtman seed's DHCP server on a bridge inside network namespaces: busybox udhcpc leases in
# full mode, leases kept across a restart, proxy mode beside busybox udhcpd, PXE boot files,
# and malformed packets.

load seed_helpers

MAC_A=52:54:00:01:00:0a
MAC_B=52:54:00:01:00:0b
POOL=10.213.1.100-10.213.1.120

setup() {
	require_seed_env
	require_cmd busybox
	busybox udhcpc --help >/dev/null 2>&1 || skip "busybox has no udhcpc"
	require_built "$DHCP_PROBE"
	lan_create
	ns_create seed
	lan_join seed seed0 "$SEED_ADDR"
	ns_create cla
	lan_join cla cli0 - "$MAC_A"
	ns_create clb
	lan_join clb cli0 - "$MAC_B"
	# udhcpc runs this with the lease in its environment; we only record it.
	UDHCPC_SCRIPT="$BATS_TEST_TMPDIR/udhcpc.sh"
	cat >"$UDHCPC_SCRIPT" <<-'EOF'
		#!/bin/sh
		case "$1" in bound|renew) env | sort >"$LEASE_OUT" ;; esac
		exit 0
	EOF
	chmod +x "$UDHCPC_SCRIPT"
}

# lease NS: busybox udhcpc in namespace NS until it has a lease (or fails); the lease's
# variables (ip, subnet, router, dns, lease, serverid, boot_file) land in $BATS_TEST_TMPDIR/NS.lease.
lease() {
	local out="$BATS_TEST_TMPDIR/$1.lease"
	rm -f "$out"
	in_ns "$1" env LEASE_OUT="$out" busybox udhcpc -i cli0 -f -q -n -t 6 -T 1 -A 1 \
		-s "$UDHCPC_SCRIPT" >"$BATS_TEST_TMPDIR/$1.udhcpc" 2>&1 || {
		cat "$BATS_TEST_TMPDIR/$1.udhcpc" >&2
		return 1
	}
	[[ -s $out ]]
}

# lease_var NS NAME: one variable of the last lease in namespace NS.
lease_var() {
	sed -n "s/^$2=//p" "$BATS_TEST_TMPDIR/$1.lease"
}

start_full_seed() {
	start_seed seed seed --iface seed0 --dhcp full --pool "$POOL" \
		--state-dir "$BATS_TEST_TMPDIR/state" "$@"
}

@test "dhcp full: udhcpc gets a lease with mask, router, DNS and lease time" {
	start_full_seed --router 10.213.1.254 --dns 10.213.1.253,10.213.1.252 --lease-time 600
	lease cla || fail "no lease"
	[[ $(lease_var cla ip) == 10.213.1.100 ]] || fail "ip $(lease_var cla ip)"
	[[ $(lease_var cla subnet) == 255.255.255.0 ]] || fail "subnet $(lease_var cla subnet)"
	[[ $(lease_var cla router) == 10.213.1.254 ]] || fail "router $(lease_var cla router)"
	[[ $(lease_var cla dns) == "10.213.1.253 10.213.1.252" ]] || fail "dns $(lease_var cla dns)"
	[[ $(lease_var cla lease) == 600 ]] || fail "lease $(lease_var cla lease)"
	[[ $(lease_var cla serverid) == "$SEED_ADDR" ]] || fail "serverid $(lease_var cla serverid)"
	grep -q "^$MAC_A 10.213.1.100 [0-9]* bound\$" "$BATS_TEST_TMPDIR/state/dhcp-leases" ||
		fail "lease not saved: $(cat "$BATS_TEST_TMPDIR/state/dhcp-leases")"
	stop_seed
}

@test "dhcp full: router and DNS are left out when not configured" {
	start_full_seed
	lease cla || fail "no lease"
	[[ -z $(lease_var cla router) && -z $(lease_var cla dns) ]] ||
		fail "router '$(lease_var cla router)' dns '$(lease_var cla dns)' sent unasked"
	stop_seed
}

@test "dhcp full: a lease survives a seed restart (same MAC, same address)" {
	start_full_seed
	lease cla || fail "no lease for A"
	[[ $(lease_var cla ip) == 10.213.1.100 ]] || fail "A got $(lease_var cla ip)"
	stop_seed
	start_full_seed
	grep -q '1 leases loaded' "$SEED_LOG" || fail "leases not loaded: $(cat "$SEED_LOG")"
	lease clb || fail "no lease for B"
	[[ $(lease_var clb ip) == 10.213.1.101 ]] || fail "B got $(lease_var clb ip), A's address?"
	lease cla || fail "no second lease for A"
	[[ $(lease_var cla ip) == 10.213.1.100 ]] || fail "A got $(lease_var cla ip) after restart"
	stop_seed
}

@test "dhcp full: an exhausted pool offers nothing and says so" {
	start_seed seed seed --iface seed0 --dhcp full --pool 10.213.1.100-10.213.1.100 \
		--state-dir "$BATS_TEST_TMPDIR/state"
	lease cla || fail "no lease for A"
	run lease clb
	assert_failure
	grep -q 'address pool exhausted' "$SEED_LOG" || fail "exhaustion not logged"
	stop_seed
}

@test "dhcp full: PXE clients get the iPXE binary for their firmware, iPXE its script" {
	start_full_seed
	run in_ns cla "$DHCP_PROBE" cli0 discover --request --mac "$MAC_A" \
		--vendor PXEClient:Arch:00000:UNDI:002001 --arch 0 --wait 1500
	assert_success
	assert_line --regexp '^offer server=10.213.1.1 yiaddr=10.213.1.100 siaddr=10.213.1.1 file=undionly.kpxe '
	assert_line --regexp '^ack server=10.213.1.1 yiaddr=10.213.1.100 .*file=undionly.kpxe '
	run in_ns cla "$DHCP_PROBE" cli0 discover --mac "$MAC_A" \
		--vendor PXEClient:Arch:00007:UNDI:003000 --arch 7 --wait 1000
	assert_line --regexp 'file=snponly.efi '
	run in_ns cla "$DHCP_PROBE" cli0 discover --mac "$MAC_A" \
		--vendor PXEClient:Arch:00000:UNDI:002001 --user-class iPXE --ipxe --wait 1000
	assert_line --regexp "file=http://$SEED_ADDR:$SEED_HTTP_PORT/boot.ipxe\\?mac=$MAC_A "
	run in_ns cla "$DHCP_PROBE" cli0 discover --mac "$MAC_A" \
		--vendor HTTPClient:Arch:00016:UNDI:003001 --arch 16 --wait 1000
	assert_line --regexp "file=http://$SEED_ADDR:$SEED_HTTP_PORT/ipxe/[a-z]+\\.efi .*vendor=HTTPClient "
	stop_seed
}

# start_udhcpd: busybox udhcpd in namespace "other" at 10.213.1.254, leasing .200-.210.
start_udhcpd() {
	ns_create other
	lan_join other oth0 10.213.1.254
	cat >"$BATS_TEST_TMPDIR/udhcpd.conf" <<-EOF
		start 10.213.1.200
		end 10.213.1.210
		interface oth0
		lease_file $BATS_TEST_TMPDIR/udhcpd.leases
		pidfile $BATS_TEST_TMPDIR/udhcpd.pid
		opt subnet 255.255.255.0
		opt lease 600
	EOF
	: >"$BATS_TEST_TMPDIR/udhcpd.leases"
	spawn udhcpd ip netns exec "$(ns other)" busybox udhcpd -f "$BATS_TEST_TMPDIR/udhcpd.conf"
	wait_file_match "$BATS_TEST_TMPDIR/udhcpd.err" 'started' "$READY_TIMEOUT" ||
		fail "udhcpd did not start: $(cat "$BATS_TEST_TMPDIR/udhcpd.err")"
}

@test "dhcp proxy: beside udhcpd, a plain client gets udhcpd's lease and nothing from the seed" {
	start_udhcpd
	start_seed seed seed --iface seed0 --dhcp proxy --state-dir "$BATS_TEST_TMPDIR/state"
	lease cla || fail "no lease from udhcpd"
	[[ $(lease_var cla ip) == 10.213.1.20[0-9] ]] || fail "ip $(lease_var cla ip)"
	[[ $(lease_var cla serverid) == 10.213.1.254 ]] || fail "serverid $(lease_var cla serverid)"
	grep -q 'no reply: not a PXE client' "$SEED_LOG" || fail "the seed did not stay silent"
	! grep -q ' OFFER ' "$SEED_LOG" || fail "the seed offered something to a plain client"
	stop_seed
}

@test "dhcp proxy: a PXE client gets its address from udhcpd and its boot file from the seed" {
	start_udhcpd
	start_seed seed seed --iface seed0 --dhcp proxy --state-dir "$BATS_TEST_TMPDIR/state"
	# udhcpd ARP-probes an address for about 2 s before offering it: wait past that.
	run in_ns cla "$DHCP_PROBE" cli0 discover --request --mac "$MAC_A" --uuid \
		--vendor PXEClient:Arch:00000:UNDI:002001 --arch 0 --wait 4000
	assert_success
	# udhcpd's offer: an address, no boot file.
	assert_line --regexp '^offer server=10.213.1.254 yiaddr=10.213.1.20[0-9] .*file=- '
	# The seed's proxy offer: no address, PXEClient, boot file, discovery control 8.
	assert_line --regexp '^offer server=10.213.1.1 yiaddr=0.0.0.0 siaddr=10.213.1.1 file=undionly.kpxe .*vendor=PXEClient pxe_options=1 discovery_control=8 uuid=17$'
	assert_line --regexp '^ack server=10.213.1.254 yiaddr=10.213.1.20[0-9] '
	local addr
	addr=$(sed -n 's/^ack server=10.213.1.254 yiaddr=\([0-9.]*\) .*/\1/p' <<<"$output")
	# The ProxyDHCP REQUEST on port 4011, as EDK2 sends it once it has an address.
	ip -n "$(ns cla)" addr add "$addr/24" dev cli0
	run in_ns cla "$DHCP_PROBE" cli0 pxe-request --server "$SEED_ADDR" --ciaddr "$addr" \
		--mac "$MAC_A" --vendor PXEClient:Arch:00007:UNDI:003000 --arch 7 --wait 1500
	assert_success
	assert_line --regexp '^ack server=10.213.1.1 yiaddr=0.0.0.0 siaddr=10.213.1.1 file=snponly.efi .*vendor=PXEClient pxe_options=0 '
	# And iPXE, later in the same boot, gets its script there too.
	run in_ns cla "$DHCP_PROBE" cli0 pxe-request --server "$SEED_ADDR" --ciaddr "$addr" \
		--mac "$MAC_A" --vendor PXEClient:Arch:00007:UNDI:003010 --user-class iPXE --wait 1500
	assert_line --regexp "file=http://$SEED_ADDR:$SEED_HTTP_PORT/boot.ipxe\\?mac=$MAC_A "
	stop_seed
}

@test "dhcp: malformed packets are logged, rate-limited, and the next client is served" {
	start_full_seed
	run in_ns cla "$DHCP_PROBE" cli0 garbage --count 300
	assert_success
	lease clb || fail "no lease after the garbage"
	[[ $(lease_var clb ip) == 10.213.1.100 ]] || fail "ip $(lease_var clb ip)"
	grep -q 'malformed packet from' "$SEED_LOG" || fail "malformed packets not logged"
	local lines
	lines=$(grep -c 'malformed packet from' "$SEED_LOG")
	((lines < 300)) || fail "$lines log lines for 300 bad packets: not rate-limited"
	stop_seed
}

@test "dhcp off: nothing answers on port 67" {
	start_seed seed seed --iface seed0 --dhcp off --state-dir "$BATS_TEST_TMPDIR/state"
	run in_ns cla "$DHCP_PROBE" cli0 discover --mac "$MAC_A" --wait 1000
	assert_failure 1
	stop_seed
}
