#!/usr/bin/env bats
# The coordinator end to end without QEMU: `virtman seed --image` and three `virtman agent`
# processes, each host in its own network namespace on one bridge. The agents run their
# relays but do not attach the disk (--attach none: the host kernel has no iscsi_tcp);
# reads go through each host's relay with qemu-img instead.

load seed_helpers

IMG_SIZE=$((24 * 1024 * 1024))

setup() {
	require_seed_env
	require_cmd qemu-img
	require_cmd curl
	require_cmd python3
	lan_create
	ns_create seed
	lan_join seed seed0 "$SEED_ADDR"
	IMG="$BATS_TEST_TMPDIR/rack.img"
	make_image "$IMG" "$IMG_SIZE"
	STATE="$BATS_TEST_TMPDIR/state"
	SEED_URL="http://$SEED_ADDR:$SEED_HTTP_PORT"
	IQN="iqn.2026-11.org.virtman:rack.img"
}

# start_rack_seed ARGS...: the seed with the image, heartbeats every second.
start_rack_seed() {
	start_seed seed seed --iface seed0 --dhcp off --image "$IMG" --state-dir "$STATE" \
		--heartbeat 1 "$@"
}

# read_via N OUT: reads the whole image through host N's relay.
read_via() {
	read_via_iqn "$1" "$IQN" "$2"
}

# read_via_iqn N IQN OUT: reads target IQN whole through host N's relay.
read_via_iqn() {
	in_ns "h$1" qemu-img convert -f raw -O raw "iscsi://127.0.0.1:3260/$2/0" "$3"
}

root_served() {
	api /metrics | awk '$1 == "virtman_served_bytes_total" { print $2 }'
}

@test "rack: three agents register and form root -> {1, 2}, 1 -> 3; every relay serves the image" {
	start_rack_seed
	for n in 1 2 3; do
		start_host "$n"
		# One at a time, so placement follows the registration order.
		wait_hosts_ready "$n"
	done
	assert_equal "$(host_field 1 parent)" 0
	assert_equal "$(host_field 2 parent)" 0
	assert_equal "$(host_field 3 parent)" 1
	assert_equal "$(host_field 3 depth)" 2
	# Host 3 fetches from its parent and its uncle, the root last.
	assert_equal "$(host_field 3 upstreams)" \
		"[\"iscsi://10.213.1.11:3260/$IQN/0\", \"iscsi://10.213.1.12:3260/$IQN/0\", \"iscsi://$SEED_ADDR:3260/$IQN/0\"]"
	local pids=() n
	for n in 1 2 3; do
		read_via "$n" "$BATS_TEST_TMPDIR/out$n.raw" &
		pids+=($!)
	done
	for pid in "${pids[@]}"; do
		wait "$pid" || fail "a read through a host's relay failed"
	done
	for n in 1 2 3; do
		assert_same_content "$IMG" "$BATS_TEST_TMPDIR/out$n.raw"
	done
	# The root served its two children, one copy each, nothing for host 3.
	local served
	served=$(root_served)
	((served <= 2 * IMG_SIZE + IMG_SIZE / 10)) || fail "the root served $served bytes"
	run in_ns seed "$VIRTMAN" status --seed "$SEED_URL"
	assert_success
	assert_equal "$(grep -c ' ready ' <<<"$output")" 3
	api /api/v1/hosts/3/log | grep -q "stage ready" || fail "no agent log at the seed"
	api / | grep -q "<title>virtman rack</title>" || fail "no dashboard"
	api /api/v1/tree | python3 -c 'import json, sys
t = json.load(sys.stdin)
assert [c["id"] for c in t["children"]] == [1, 2], t
assert [c["id"] for c in t["children"][0]["children"]] == [3], t'
	stop_seed
}

@test "rack: with --fanout 1 the hosts form a chain and the root serves one copy" {
	start_rack_seed --fanout 1
	for n in 1 2 3; do
		start_host "$n"
		wait_hosts_ready "$n"
	done
	assert_equal "$(host_field 2 parent)" 1
	assert_equal "$(host_field 3 parent)" 2
	assert_equal "$(host_field 3 depth)" 3
	read_via 3 "$BATS_TEST_TMPDIR/out.raw"
	assert_same_content "$IMG" "$BATS_TEST_TMPDIR/out.raw"
	local served
	served=$(root_served)
	((served <= IMG_SIZE + IMG_SIZE / 10)) || fail "the root served $served bytes for one chain"
	stop_seed
}

@test "rack: a host dies; the seed marks it lost and re-parents its child, which keeps serving" {
	start_rack_seed
	for n in 1 2 3; do
		start_host "$n"
		wait_hosts_ready "$n"
	done
	read_via 3 "$BATS_TEST_TMPDIR/warm.raw"	# host 3 caches everything; host 1 half of it
	# Host 1 vanishes: every process in its namespace, at once.
	ip netns pids "$(ns h1)" | xargs -r kill -KILL
	local deadline=$((SECONDS + 30))
	until [[ $(host_field 1 live) == false && $(host_field 3 parent) != 1 ]]; do
		((SECONDS < deadline)) || { api /api/v1/status >&2; fail "host 1 not lost or 3 not moved"; }
		sleep "$POLL_INTERVAL"
	done
	assert_equal "$(host_field 1 stage)" lost
	wait_file_match "$BATS_TEST_TMPDIR/h3.log" "upstreams reloaded" 20 || fail "host 3 kept its old upstreams"
	# A fresh cache on a new host under 3's new parent still gets everything.
	read_via 3 "$BATS_TEST_TMPDIR/after.raw"
	assert_same_content "$IMG" "$BATS_TEST_TMPDIR/after.raw"
	grep -q "upstream iscsi://10.213.1.11" "$BATS_TEST_TMPDIR/h3.log"
	stop_seed
}

@test "rack: the seed restarts; it keeps its rack and the hosts keep running" {
	start_rack_seed
	for n in 1 2; do
		start_host "$n"
		wait_hosts_ready "$n"
	done
	stop_seed
	[[ -s $STATE/rack ]] || fail "no rack state saved"
	local restarted_ms=$(($(date +%s%3N)))
	start_rack_seed
	assert_equal "$(host_field 1 live)" true
	assert_equal "$(host_field 2 stage)" ready
	# Heartbeats reach the new seed: both hosts heard from later than three intervals
	# after the restart, so past the point where silence would have lost them.
	local deadline=$((SECONDS + 30)) n
	for n in 1 2; do
		until (($(host_field "$n" seen_ms) > restarted_ms + 3000)); do
			((SECONDS < deadline)) || fail "no heartbeat from host $n after the restart"
			sleep "$POLL_INTERVAL"
		done
		assert_equal "$(host_field "$n" live)" true
	done
	read_via 2 "$BATS_TEST_TMPDIR/out.raw"
	assert_same_content "$IMG" "$BATS_TEST_TMPDIR/out.raw"
	stop_seed
}

@test "rack: bad registrations, tokens, methods and routes are refused with a reason" {
	start_rack_seed
	local body="mac=52:54:00:aa:00:09
addr=10.213.1.19
cores=2
memory=1024"
	run in_ns seed curl -s -o /dev/stderr -w '%{http_code}' --data-binary "$body
token=wrong" "$SEED_URL/api/v1/hosts"
	assert_output --partial 403
	run in_ns seed curl -s --data-binary "$body
token=wrong" "$SEED_URL/api/v1/hosts"
	assert_output --partial "boot token"
	run in_ns seed curl -s --data-binary "token=$(cat "$STATE/boot-token")
mac=52:54:00:aa:00:09
addr=10.213.1.19
cores=0
memory=1024" "$SEED_URL/api/v1/hosts"
	assert_output --partial "cores"
	run in_ns seed curl -s --data-binary "not key value" "$SEED_URL/api/v1/hosts"
	assert_output --partial "key=value"
	run in_ns seed curl -s -o /dev/null -w '%{http_code}' -X DELETE "$SEED_URL/api/v1/hosts"
	assert_output 405
	run in_ns seed curl -s -o /dev/null -w '%{http_code}' --data-binary "token=$(cat "$STATE/boot-token")
stage=ready" "$SEED_URL/api/v1/hosts/42/heartbeat"
	assert_output 404
	# A heartbeat speaks for a host only with the boot token.
	run in_ns seed curl -sf --data-binary "token=$(cat "$STATE/boot-token")
$body" "$SEED_URL/api/v1/hosts"
	assert_output --partial "host-id=1"
	run in_ns seed curl -s -w ' %{http_code}' --data-binary "stage=failed
reason=spoofed" "$SEED_URL/api/v1/hosts/1/heartbeat"
	assert_output --partial "boot token"
	assert_output --regexp ' 403$'
	run in_ns seed curl -s -o /dev/null -w '%{http_code}' --data-binary "token=wrong
vm=host1-vm1
vm-stage=failed" "$SEED_URL/api/v1/hosts/1/heartbeat"
	assert_output 403
	assert_equal "$(host_field 1 stage)" registered
	assert_equal "$(host_field 1 vms)" "[]"
	run in_ns seed curl -s -o /dev/null -w '%{http_code}' "$SEED_URL/api/v1/hosts/abc/log"
	assert_output 404
	# An agent with the wrong token says so on its console and keeps trying.
	ns_create h1
	lan_join h1 eth0 10.213.1.11 52:54:00:aa:00:01
	ip netns exec "$(ns h1)" "$VIRTMAN" agent --seed "$SEED_URL" --token nope --iface eth0 \
		--attach none --cache "$BATS_TEST_TMPDIR" --run-dir "$BATS_TEST_TMPDIR/h1" \
		2>"$BATS_TEST_TMPDIR/h1.log" 3>&- &
	track_pid $!
	wait_file_match "$BATS_TEST_TMPDIR/h1.log" "registration refused: HTTP 403" 20
	# The seed keeps serving; the agent with the wrong token was not registered.
	[[ -z $(host_field 2 mac) ]] || fail "a refused host was registered"
	stop_seed
}

@test "rack: an agent whose seed answers garbage says so on its console and keeps trying" {
	ns_create h1
	lan_join h1 eth0 10.213.1.11 52:54:00:aa:00:01
	# A "seed" that answers every request with 200 and bytes that are not key=value lines,
	# and one that does not even speak HTTP.
	cat >"$BATS_TEST_TMPDIR/garbage.py" <<-'PY'
		import socket, sys
		s = socket.socket()
		s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
		s.bind(("127.0.0.1", int(sys.argv[1])))
		s.listen(16)
		while True:
		    c, _ = s.accept()
		    c.recv(65536)
		    if sys.argv[2] == "http":
		        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n\x00\x01\x02garbage!!")
		    else:
		        c.sendall(b"\xff\xfe this is not HTTP at all\r\n\r\n")
		    c.close()
	PY
	ip netns exec "$(ns h1)" python3 "$BATS_TEST_TMPDIR/garbage.py" 8081 http 3>&- &
	track_pid $!
	ip netns exec "$(ns h1)" python3 "$BATS_TEST_TMPDIR/garbage.py" 8082 raw 3>&- &
	track_pid $!
	local port
	for port in 8081 8082; do
		ip netns exec "$(ns h1)" "$VIRTMAN" agent --seed "http://127.0.0.1:$port" --token x \
			--iface eth0 --attach none --cache "$BATS_TEST_TMPDIR" \
			--run-dir "$BATS_TEST_TMPDIR/h1-$port" 2>"$BATS_TEST_TMPDIR/agent-$port.log" 3>&- &
		track_pid $!
	done
	wait_file_match "$BATS_TEST_TMPDIR/agent-8081.log" "registration refused|not key=value|lacks host-id" 30 ||
		{ cat "$BATS_TEST_TMPDIR/agent-8081.log" >&2; fail "no complaint about the garbage reply"; }
	wait_file_match "$BATS_TEST_TMPDIR/agent-8082.log" "cannot reach the seed .*Protocol error" 30 ||
		{ cat "$BATS_TEST_TMPDIR/agent-8082.log" >&2; fail "no complaint about a seed that is not HTTP"; }
	# Both keep trying rather than giving up or crashing.
	wait_file_match "$BATS_TEST_TMPDIR/agent-8082.log" "retrying in" 30
	assert_no_sanitizer_report "$BATS_TEST_TMPDIR/agent-8081.log"
	assert_no_sanitizer_report "$BATS_TEST_TMPDIR/agent-8082.log"
}

# reimage ARGS...: `virtman reimage` from inside the seed's namespace, against its state dir.
reimage() {
	in_ns seed "$VIRTMAN" reimage --state-dir "$STATE" "$@"
}

@test "rack: virtman reimage moves every host to the new image under a new name; progress and summary" {
	start_rack_seed
	for n in 1 2 3; do
		start_host "$n"
		wait_hosts_ready "$n"
	done
	read_via 3 "$BATS_TEST_TMPDIR/gen1.raw"	# warm caches of generation 1 along 1 -> 3
	local img2="$BATS_TEST_TMPDIR/rack2.img" n
	make_image "$img2" $((20 * 1024 * 1024))
	run reimage --image "$img2" --timeout 120
	assert_success
	assert_output --partial "generation 2: the seed digests $img2"
	assert_output --partial "the seed serves generation 2"
	# Each host's way through it, then the summary.
	for n in 1 2 3; do
		grep -qE "host $n +10\.213\.1\.1$n +generation 2 +reimaging" <<<"$output" ||
			fail "no reimaging line for host $n"
		grep -qE "host $n +10\.213\.1\.1$n +generation 2 +ready" <<<"$output" ||
			{ echo "$output" >&2; fail "no ready line for host $n"; }
	done
	assert_output --partial "generation 2 after"
	assert_output --partial "3 hosts ready, 0 failed, 0 lost, 0 not done"
	for n in 1 2 3; do
		assert_equal "$(host_field "$n" generation)" 2
		assert_equal "$(host_field "$n" stage)" ready
	done
	api /api/v1/tree | python3 -c 'import json, sys
t = json.load(sys.stdin)
assert t["generation"] == 2, t'
	# The new image under the new name through every relay, the tree unchanged; the old
	# name is gone everywhere, so no relay can mix the two generations' blocks.
	assert_equal "$(host_field 3 parent)" 1
	for n in 1 2 3; do
		in_ns "h$n" qemu-img convert -f raw -O raw "iscsi://127.0.0.1:3260/$IQN-g2/0" \
			"$BATS_TEST_TMPDIR/gen2-$n.raw" || fail "no generation 2 through host $n"
		assert_same_content "$img2" "$BATS_TEST_TMPDIR/gen2-$n.raw"
	done
	run in_ns h3 qemu-img convert -f raw -O raw "iscsi://127.0.0.1:3260/$IQN/0" \
		"$BATS_TEST_TMPDIR/old.raw"
	assert_failure
	run in_ns seed qemu-img convert -f raw -O raw "iscsi://$SEED_ADDR:3260/$IQN/0" \
		"$BATS_TEST_TMPDIR/old.raw"
	assert_failure
	# The old generation's cache is gone: the relay's cache holds the new image only.
	local cached
	cached=$(du -sb "$BATS_TEST_TMPDIR/h3/cache/image" | cut -f1)
	((cached <= 20 * 1024 * 1024 + 1024 * 1024)) || fail "host 3 still caches $cached bytes"
	stop_seed
}

@test "rack: a host silent for a while during a reimage is waited for and comes back on the new image" {
	start_rack_seed
	for n in 1 2; do
		start_host "$n"
		wait_hosts_ready "$n"
	done
	local img2="$BATS_TEST_TMPDIR/rack2.img"
	make_image "$img2" $((4 * 1024 * 1024))
	# Host 2's agent stops (as a host stalls under load) just as the reimage starts: live at
	# the switch, lost three heartbeats later.
	kill -STOP "$H2_PID"
	reimage --image "$img2" --timeout 120 >"$BATS_TEST_TMPDIR/reimage.out" 2>&1 &
	local rpid=$! deadline=$((SECONDS + 60))
	until [[ $(host_field 2 stage) == lost && $(host_field 1 generation) == 2 &&
		$(host_field 1 stage) == ready ]]; do
		((SECONDS < deadline)) || { kill -CONT "$H2_PID"; fail "host 2 not lost, or host 1 not reimaged"; }
		sleep "$POLL_INTERVAL"
	done
	# The reimage is still waiting for host 2...
	pid_alive "$rpid" || { kill -CONT "$H2_PID"; cat "$BATS_TEST_TMPDIR/reimage.out" >&2; fail "reimage gave up on the lost host at once"; }
	# ...then it wakes, registers again, and the reimage sees it through.
	kill -CONT "$H2_PID"
	wait "$rpid" || { cat "$BATS_TEST_TMPDIR/reimage.out" >&2; fail "reimage failed"; }
	run cat "$BATS_TEST_TMPDIR/reimage.out"
	assert_output --partial "2 hosts ready, 0 failed, 0 lost, 0 not done"
	assert_output --regexp "host 2 +10\.213\.1\.12 +generation [12] +lost"
	assert_equal "$(host_field 2 generation)" 2
	assert_equal "$(host_field 2 stage)" ready
	stop_seed
}

@test "rack: reimage refusals: no admin token, a wrong one, a missing image, a bad path, a bad marker" {
	start_rack_seed
	start_host 1
	wait_hosts_ready 1
	run in_ns seed env VIRTMAN_ADMIN_TOKEN=0123456789abcdef0123456789abcdef "$VIRTMAN" reimage \
		--state-dir "$STATE" --image "$IMG"
	assert_failure 1
	assert_output --partial "HTTP 403"
	assert_output --partial "wrong or missing admin token"
	run in_ns seed "$VIRTMAN" reimage --state-dir "$BATS_TEST_TMPDIR/nowhere" --image "$IMG"
	assert_failure
	assert_output --partial "no admin token"
	run reimage --image /nonexistent/disk.img
	assert_failure 1
	assert_output --partial "/nonexistent/disk.img"
	run reimage --image relative.img
	assert_failure 2
	run reimage --image "$BATS_TEST_TMPDIR"
	assert_failure 1
	assert_output --partial "not a regular file"
	local empty="$BATS_TEST_TMPDIR/empty.img"
	: >"$empty"
	run reimage --image "$empty"
	assert_failure 1
	assert_output --partial "empty"
	# A VM marker must be one line of printable text, on the command line and in the API.
	run reimage --image "$IMG" --vm-marker $'up\there'
	assert_failure 2
	assert_output --partial "--vm-marker: 1 to 128 printable characters expected"
	run reimage --image "$IMG" --vm-marker "$(printf 'x%.0s' {1..129})"
	assert_failure 2
	run in_ns seed curl -s -w ' %{http_code}' --data-binary "token=$(cat "$STATE/admin-token")
image=$IMG
vm-marker=" "$SEED_URL/api/v1/reimage"
	assert_output --partial "vm-marker: 1 to 128 printable characters expected"
	assert_output --regexp ' 400$'
	# Straight to the API: a body that is not key=value lines, a bad reboot flag.
	run in_ns seed curl -s -w ' %{http_code}' --data-binary $'\x01garbage' "$SEED_URL/api/v1/reimage"
	assert_output --partial 400
	run in_ns seed curl -s -w ' %{http_code}' --data-binary "token=$(cat "$STATE/admin-token")
image=$IMG
reboot=yes" "$SEED_URL/api/v1/reimage"
	assert_output --partial 400
	# Nothing changed: still generation 1, the host ready on it.
	assert_equal "$(host_field 1 generation)" 1
	assert_equal "$(host_field 1 stage)" ready
	stop_seed
}

@test "rack: a restarted seed keeps a reimaged generation; started on another image it moves on" {
	start_rack_seed
	start_host 1
	wait_hosts_ready 1
	local img2="$BATS_TEST_TMPDIR/rack2.img"
	make_image "$img2" $((8 * 1024 * 1024))
	run reimage --image "$img2" --timeout 120
	assert_success
	stop_seed
	# The same image as before the restart: the same generation and name.
	start_seed seed seed --iface seed0 --dhcp off --image "$img2" --state-dir "$STATE" \
		--heartbeat 1
	api /api/v1/reimage | grep -qx "generation=2" || fail "generation 2 not kept"
	api /api/v1/reimage | grep -qx "iqn=$IQN-g2" && fail "the name should follow rack2.img"
	api /api/v1/reimage | grep -qx "iqn=iqn.2026-11.org.virtman:rack2.img-g2" ||
		fail "not the generation 2 name"
	assert_equal "$(host_field 1 generation)" 2
	stop_seed
	# The original image again: that is a new generation, which the host takes.
	start_rack_seed
	api /api/v1/reimage | grep -qx "generation=3" || fail "no generation 3"
	local deadline=$((SECONDS + 60))
	until [[ $(host_field 1 generation) == 3 && $(host_field 1 stage) == ready ]]; do
		((SECONDS < deadline)) || { api /api/v1/status >&2; fail "host 1 did not take generation 3"; }
		sleep "$POLL_INTERVAL"
	done
	read_via_iqn 1 "$IQN-g3" "$BATS_TEST_TMPDIR/gen3.raw"
	assert_same_content "$IMG" "$BATS_TEST_TMPDIR/gen3.raw"
	stop_seed
}

@test "rack: while a big image is digested the seed keeps serving; a second reimage waits its turn" {
	start_rack_seed
	start_host 1
	wait_hosts_ready 1
	local big="$BATS_TEST_TMPDIR/big.img"
	truncate -s 1G "$big"
	reimage --image "$big" --no-wait --timeout 300 >"$BATS_TEST_TMPDIR/cli.out" 2>&1 &
	local cli=$!
	local deadline=$((SECONDS + 30))
	until api /api/v1/reimage | grep -qx "state=digesting"; do
		((SECONDS < deadline)) || fail "the seed never said it was digesting"
		sleep "$POLL_INTERVAL"
	done
	run in_ns seed "$VIRTMAN" reimage --state-dir "$STATE" --image "$IMG"
	assert_failure 1
	assert_output --partial "HTTP 409"
	assert_output --partial "being prepared"
	# Meanwhile the API answers, and so does the root export, on generation 1.
	assert_equal "$(host_field 1 generation)" 1
	read_via 1 "$BATS_TEST_TMPDIR/during.raw"
	assert_same_content "$IMG" "$BATS_TEST_TMPDIR/during.raw"
	wait "$cli" || { cat "$BATS_TEST_TMPDIR/cli.out" >&2; fail "the first reimage failed"; }
	api /api/v1/reimage | grep -qx "generation=2" || fail "no generation 2"
	local deadline=$((SECONDS + 60))
	until [[ $(host_field 1 generation) == 2 && $(host_field 1 stage) == ready ]]; do
		((SECONDS < deadline)) || fail "host 1 did not take the big image"
		sleep "$POLL_INTERVAL"
	done
	stop_seed
}

@test "rack: --vm-data serves each VM's cloud-init NoCloud seed, the hosts learn where" {
	local data="$BATS_TEST_TMPDIR/vm-data"
	mkdir -p "$data/host1-vm2"
	printf '#cloud-config\nruncmd: [echo hello]\n' >"$data/user-data"
	printf 'instance-id: special\nlocal-hostname: special\n' >"$data/host1-vm2/meta-data"
	start_rack_seed --vm-data "$data"
	# Registration and heartbeat replies tell the agents where the data is.
	run in_ns seed curl -sf --data-binary "token=$(cat "$STATE/boot-token")
mac=52:54:00:aa:00:09
addr=10.213.1.19
cores=2
memory=1024" "$SEED_URL/api/v1/hosts"
	assert_success
	assert_output --partial "vm-data-url=$SEED_URL/api/v1/vm-data/"
	run api /api/v1/vm-data/host1-vm2/meta-data
	assert_output "$(printf 'instance-id: special\nlocal-hostname: special')"
	run api /api/v1/vm-data/host1-vm1/meta-data
	assert_output "$(printf 'instance-id: host1-vm1-g1\nlocal-hostname: host1-vm1')"
	run api /api/v1/vm-data/host1-vm1/user-data
	assert_output --partial "runcmd: [echo hello]"
	# Names and files outside the pattern are refused: no way out of the directory.
	local path code
	for path in "../user-data" "host1-vm1/../../etc/passwd" "host1-vm1/passwd" ".." \
		"host1-vm1" "a%2f..%2fuser-data/meta-data" "$(printf 'x%.0s' {1..40})/meta-data"; do
		code=$(in_ns seed curl -s -o /dev/null -w '%{http_code}' --path-as-is \
			"$SEED_URL/api/v1/vm-data/$path")
		[[ $code == 404 || $code == 400 ]] || fail "/api/v1/vm-data/$path answered $code"
	done
	stop_seed
	run in_ns seed "$VIRTMAN" seed --iface seed0 --dhcp off --image "$IMG" --state-dir "$STATE" \
		--vm-data "$BATS_TEST_TMPDIR/nowhere"
	assert_failure 1
	assert_output --partial "--vm-data"
}
