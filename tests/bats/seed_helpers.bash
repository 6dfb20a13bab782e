# Helpers for the `virtman seed` tests: network namespaces joined by veth pairs or a bridge,
# with addresses in 10.213.1.0/24 that exist only inside those namespaces; the seed started
# inside one of them; everything removed in teardown, whether the test passed or not.

load helpers

DHCP_PROBE="${DHCP_PROBE:-$REPO_ROOT/build/host/tools/dhcp_probe}"
TFTP_GET="$REPO_ROOT/tests/tools/tftp_get.py"
SEED_ADDR=10.213.1.1		# the seed, inside its namespace
CLIENT_ADDR=10.213.1.2		# a client with a static address
SEED_HTTP_PORT=8080

# Skips unless this test can create namespaces and run the seed.
require_seed_env() {
	require_root "network namespaces"
	require_cmd ip
	require_built "$VIRTMAN"
	ip netns list >/dev/null 2>&1 || skip "ip netns does not work here"
}

# ns NAME: the full name of this test's namespace NAME.
ns() {
	echo "vmt$$-${BATS_TEST_NUMBER}-$1"
}

# ns_create NAME: a namespace with loopback up, removed in teardown.
ns_create() {
	local n
	n=$(ns "$1")
	ip netns add "$n" || fail "cannot create namespace $n"
	echo "$n" >>"$BATS_TEST_TMPDIR/.netns"
	ip -n "$n" link set lo up
}

# in_ns NAME CMD...: runs CMD inside namespace NAME.
in_ns() {
	local n
	n=$(ns "$1")
	shift
	ip netns exec "$n" "$@"
}

# ns_veth A IF_A ADDR_A B IF_B ADDR_B: a veth pair between namespaces A and B; an address
# "-" leaves that end unconfigured (for DHCP clients).
ns_veth() {
	local a b
	a=$(ns "$1")
	b=$(ns "$4")
	ip link add "$2" netns "$a" type veth peer name "$5" netns "$b" || fail "veth $2/$5"
	[[ $3 == - ]] || ip -n "$a" addr add "$3/24" dev "$2"
	[[ $6 == - ]] || ip -n "$b" addr add "$6/24" dev "$5"
	ip -n "$a" link set "$2" up
	ip -n "$b" link set "$5" up
}

# lan_create: namespace "lan" holding bridge br0, the L2 segment the others join.
lan_create() {
	ns_create lan
	ip -n "$(ns lan)" link add br0 type bridge
	ip -n "$(ns lan)" link set br0 type bridge forward_delay 0 stp_state 0
	ip -n "$(ns lan)" link set br0 up
}

# lan_join NAME IF ADDR [MAC]: plugs namespace NAME into the lan bridge as interface IF.
lan_join() {
	local port="p-$1"
	ns_veth "$1" "$2" "$3" lan "$port" -
	[[ -z ${4:-} ]] || ip -n "$(ns "$1")" link set "$2" address "$4"
	ip -n "$(ns lan)" link set "$port" master br0
}

# pxe_lan_create TAP...: namespace "pxe" holding bridge br0 with the seed's address and one
# tap device per name given, for QEMU hosts (-netdev tap,ifname=TAP).
pxe_lan_create() {
	ns_create pxe
	local n tap
	n=$(ns pxe)
	ip -n "$n" link add br0 type bridge
	ip -n "$n" link set br0 type bridge forward_delay 0 stp_state 0
	ip -n "$n" addr add "$SEED_ADDR/24" dev br0
	ip -n "$n" link set br0 up
	for tap in "$@"; do
		ip -n "$n" tuntap add "$tap" mode tap
		ip -n "$n" link set "$tap" master br0
		ip -n "$n" link set "$tap" up
	done
}

# api PATH: GET from the seed's HTTP API ($SEED_URL), inside namespace $API_NS (default seed).
api() {
	in_ns "${API_NS:-seed}" curl -sf "$SEED_URL$1"
}

# host_field ID FIELD: a field of host ID in GET /api/v1/hosts (lists and objects as JSON,
# the rest as lower-case text; empty for an unknown host).
host_field() {
	api /api/v1/hosts | python3 -c 'import json, sys
hosts = {h["id"]: h for h in json.load(sys.stdin)["hosts"]}
v = hosts.get(int(sys.argv[1]), {}).get(sys.argv[2], "")
print(json.dumps(v) if isinstance(v, (list, dict)) else str(v).lower())' "$1" "$2"
}

# pair_create: namespaces "seed" and "client" joined by one veth pair, static addresses.
pair_create() {
	ns_create seed
	ns_create client
	ns_veth seed seed0 "$SEED_ADDR" client cli0 "$CLIENT_ADDR"
}

# start_seed NS NAME ARGS...: runs `virtman seed ARGS` inside namespace NS, logging to
# $BATS_TEST_TMPDIR/NAME.log, and waits for its "serving" line (printed once every socket
# is bound). Sets SEED_PID and SEED_LOG.
start_seed() {
	local nsname=$1 name=$2
	shift 2
	SEED_LOG="$BATS_TEST_TMPDIR/$name.log"
	# A restarted seed must not be found ready by the previous one's "serving" line.
	rm -f "$SEED_LOG"
	ip netns exec "$(ns "$nsname")" "$VIRTMAN" seed "$@" >"$BATS_TEST_TMPDIR/$name.out" \
		2>"$SEED_LOG" 3>&- &
	SEED_PID=$!
	track_pid "$SEED_PID"
	echo "$SEED_LOG" >>"$BATS_TEST_TMPDIR/.seedlogs"
	local deadline=$((SECONDS + READY_TIMEOUT))
	until grep -q 'serving ' "$SEED_LOG" 2>/dev/null; do
		if ! pid_alive "$SEED_PID"; then
			cat "$SEED_LOG" >&2
			fail "virtman seed exited before serving"
		fi
		((SECONDS < deadline)) || { cat "$SEED_LOG" >&2; fail "virtman seed not ready"; }
		sleep "$POLL_INTERVAL"
	done
}

# stop_seed [PID] [LOG]: SIGTERM, exit status 0 within the deadline, no sanitizer report.
stop_seed() {
	local pid=${1:-$SEED_PID} log=${2:-$SEED_LOG} rc=0
	pid_alive "$pid" || { cat "$log" >&2; fail "virtman seed (pid $pid) died"; }
	kill -TERM "$pid"
	if ! wait_pid_exit "$pid" "$EXIT_TIMEOUT"; then
		kill -KILL "$pid" 2>/dev/null || true
		fail "virtman seed did not exit within $EXIT_TIMEOUT s of SIGTERM"
	fi
	wait "$pid" || rc=$?
	assert_no_sanitizer_report "$log"
	((rc == 0)) || { cat "$log" >&2; fail "virtman seed exited $rc after SIGTERM"; }
}

# Kills this test's processes, then removes its namespaces (and with them veths and taps).
seed_teardown() {
	local n log
	helpers_teardown
	if [[ -f $BATS_TEST_TMPDIR/.seedlogs ]]; then
		while read -r log; do
			[[ -s $log ]] || continue
			if grep -Eq 'AddressSanitizer|LeakSanitizer|runtime error' "$log"; then
				echo "--- sanitizer report in $log" >&2
				cat "$log" >&2
			fi
		done <"$BATS_TEST_TMPDIR/.seedlogs"
	fi
	if [[ -f $BATS_TEST_TMPDIR/.netns ]]; then
		while read -r n; do
			# Anything still running inside (a client we started) goes first.
			for pid in $(ip netns pids "$n" 2>/dev/null); do
				kill -KILL "$pid" 2>/dev/null || true
			done
			ip netns del "$n" 2>/dev/null || true
		done <"$BATS_TEST_TMPDIR/.netns"
		rm -f "$BATS_TEST_TMPDIR/.netns"
	fi
}

teardown() {
	seed_teardown
}

# start_host N [ARGS...]: namespace hN at 10.213.1.(10+N) on the lan bridge (lan_create and
# a seed started with --image first; $SEED_URL and $STATE set), running `virtman agent`
# with --attach none (the host kernel needs no iscsi_tcp) and ARGS. Sets HN_PID.
start_host() {
	local n=$1
	shift
	if ! ip netns list | grep -q "^$(ns "h$n")"; then
		ns_create "h$n"
		lan_join "h$n" eth0 "10.213.1.$((10 + n))" "52:54:00:aa:00:0$n"
	fi
	mkdir -p "$BATS_TEST_TMPDIR/h$n/cache"
	ip netns exec "$(ns "h$n")" "$VIRTMAN" agent --seed "$SEED_URL" \
		--token "$(cat "$STATE/boot-token")" --iface eth0 --attach none \
		--cache "$BATS_TEST_TMPDIR/h$n/cache" --run-dir "$BATS_TEST_TMPDIR/h$n" "$@" \
		>"$BATS_TEST_TMPDIR/h$n.out" 2>>"$BATS_TEST_TMPDIR/h$n.log" 3>&- &
	track_pid $!
	printf -v "H${n}_PID" %s $!
	echo "$BATS_TEST_TMPDIR/h$n.log" >>"$BATS_TEST_TMPDIR/.seedlogs"
}

# wait_hosts_ready N: until N live hosts report stage ready (60 s at most).
wait_hosts_ready() {
	local deadline=$((SECONDS + 60)) ready
	until ready=$(api /api/v1/hosts | python3 -c 'import json, sys
print(sum(1 for h in json.load(sys.stdin)["hosts"] if h["live"] and h["stage"] == "ready"))') &&
		((ready >= $1)); do
		((SECONDS < deadline)) || { api /api/v1/status >&2; fail "only ${ready:-0} of $1 hosts ready"; }
		sleep "$POLL_INTERVAL"
	done
}
