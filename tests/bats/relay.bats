#!/usr/bin/env bats
# The relay (virtman export iscsi://...): a tree on loopback, failover, poisoned upstreams,
# persistence of the cache, and hostile upstreams.

load helpers

IMAGE_IQN="iqn.2026-11.org.virtman:relaytest"

NODE_NS=	# when set, nodes, readers and probes run in this network namespace

# ns CMD...: runs CMD in $NODE_NS, or here when it is empty.
ns() {
	if [[ -n $NODE_NS ]]; then
		ip netns exec "$NODE_NS" "$@"
	else
		"$@"
	fi
}

# ns_cmd CMD...: sets NS_CMD to the command line running CMD in $NODE_NS; started with & it
# is the process itself (ip netns exec execs), so its pid can be signalled.
ns_cmd() {
	NS_CMD=("$@")
	[[ -z $NODE_NS ]] || NS_CMD=(ip netns exec "$NODE_NS" "$@")
}

# start_reader NODE OUT: qemu-img reads the whole LUN in the background; sets READER_PID.
start_reader() {
	ns_cmd qemu-img convert -f raw -O raw "$(url_of "$1")" "$2"
	"${NS_CMD[@]}" 3>&- &
	READER_PID=$!
	track_pid "$READER_PID"
}

# ns_free_port: a port free in $NODE_NS itself (its connections use their own ports).
ns_free_port() {
	ns python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# ns_wait_port PORT PID: polls until something listens on 127.0.0.1:PORT in $NODE_NS.
ns_wait_port() {
	local deadline=$((SECONDS + READY_TIMEOUT))
	until ns bash -c "exec 9<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; do
		pid_alive "$2" || return 1
		((SECONDS < deadline)) || return 1
		sleep "$POLL_INTERVAL"
	done
}

# start_node NAME ARGS...: starts `virtman export ARGS` listening on a fresh port with metrics on
# another; records NAME_PORT, NAME_MPORT and NAME_PID.
start_node() {
	local name=$1
	shift
	require_built "$VIRTMAN"
	NODE_PORT=$(ns_free_port)
	NODE_MPORT=$(ns_free_port)
	ns_cmd "$VIRTMAN" export "$@" --listen "127.0.0.1:$NODE_PORT" --iqn "$IMAGE_IQN" \
		--metrics "127.0.0.1:$NODE_MPORT"
	"${NS_CMD[@]}" >"$BATS_TEST_TMPDIR/$name.out" 2>>"$BATS_TEST_TMPDIR/$name.log" 3>&- &
	NODE_PID=$!
	track_pid "$NODE_PID"
	ns_wait_port "$NODE_PORT" "$NODE_PID" || {
		cat "$BATS_TEST_TMPDIR/$name.log" >&2
		fail "$name did not start"
	}
	printf -v "${name}_PORT" %s "$NODE_PORT"
	printf -v "${name}_MPORT" %s "$NODE_MPORT"
	printf -v "${name}_PID" %s "$NODE_PID"
}

# start_relay NAME UPSTREAM_NAMES...: a relay of those nodes, in that order, with its own cache.
start_relay() {
	local name=$1 up urls=()
	shift
	for up in "$@"; do
		local p="${up}_PORT"
		urls+=("iscsi://127.0.0.1:${!p}/$IMAGE_IQN/0")
	done
	start_node "$name" "${urls[@]}" --cache "$BATS_TEST_TMPDIR/cache-$name" \
		--manifest "$MANIFEST" --initiator-name "iqn.2026-11.org.virtman:$(echo "$name" | tr 'A-Z' 'a-z')"
}

# metric NAME_OF_NODE METRIC: the sum of every sample of METRIC on that node.
metric() {
	local mport="${1}_MPORT"
	ns curl -sf "http://127.0.0.1:${!mport}/metrics" |
		awk -v m="$2" '$1 == m || index($1, m "{") == 1 { s += $NF } END { printf "%.0f\n", s }'
}

url_of() {
	local p="${1}_PORT"
	echo "iscsi://127.0.0.1:${!p}/$IMAGE_IQN/0"
}

# read_all NODE OUT: qemu-img reads the whole LUN.
read_all() {
	ns qemu-img convert -f raw -O raw "$(url_of "$1")" "$2"
}

# stop_node NAME: SIGTERM, exit 0, clean sanitizer log.
stop_node() {
	local pid="${1}_PID" rc=0
	kill -TERM "${!pid}"
	wait_pid_exit "${!pid}" "$EXIT_TIMEOUT" || fail "$1 did not stop"
	wait "${!pid}" || rc=$?
	assert_no_sanitizer_report "$BATS_TEST_TMPDIR/$1.log"
	((rc == 0)) || { cat "$BATS_TEST_TMPDIR/$1.log" >&2; fail "$1 exited $rc"; }
}

setup() {
	require_cmd qemu-img
	require_cmd curl
	IMG="$BATS_TEST_TMPDIR/image.raw"
	MANIFEST="$BATS_TEST_TMPDIR/image.manifest"
}

# make_image_and_manifest SIZE [CHUNK]: 1 MiB chunks unless told, so the byte counts the
# tests compute stay simple.
make_image_and_manifest() {
	make_image "$IMG" "$1"
	"$VIRTMAN" manifest "$IMG" -o "$MANIFEST" --chunk-size "${2:-1048576}" || fail "manifest failed"
}

@test "manifest: digests match sha256sum chunk by chunk, odd sizes padded to 512" {
	make_image "$IMG" $((3 * 1024 * 1024 + 1000))
	run "$VIRTMAN" manifest "$IMG" -o "$MANIFEST" --chunk-size 1048576
	assert_success
	assert_equal "$(sed -n 1p "$MANIFEST")" "virtman-manifest 1"
	assert_equal "$(sed -n 2p "$MANIFEST")" "size $((3 * 1024 * 1024 + 1024))"
	assert_equal "$(sed -n 4p "$MANIFEST")" "chunks 4"
	assert_equal "$(sed -n 5p "$MANIFEST")" "$(head -c 1048576 "$IMG" | sha256sum | cut -d' ' -f1)"
	# The last chunk: 1000 bytes of image and 24 of zero padding.
	local last
	last=$( { tail -c 1000 "$IMG"; head -c 24 /dev/zero; } | sha256sum | cut -d' ' -f1)
	assert_equal "$(sed -n 8p "$MANIFEST")" "$last"
}

@test "manifest: bad chunk size and missing image are refused with one line" {
	make_image "$IMG" 1M
	run "$VIRTMAN" manifest "$IMG" -o "$MANIFEST" --chunk-size 3000
	assert_failure 2
	assert_output --partial "power of two"
	run "$VIRTMAN" manifest "$BATS_TEST_TMPDIR/nope" -o "$MANIFEST"
	assert_failure 1
	assert_output --partial "cannot open"
}

@test "relay: a malformed manifest or one of another size is a clear start-up error" {
	make_image_and_manifest 8M
	start_node ROOT "$IMG"
	printf 'virtman-manifest 1\nsize 12\n' >"$BATS_TEST_TMPDIR/bad.manifest"
	run "$VIRTMAN" export "$(url_of ROOT)" --cache "$BATS_TEST_TMPDIR/c1" \
		--manifest "$BATS_TEST_TMPDIR/bad.manifest" --listen 127.0.0.1:$(free_port)
	assert_failure 1
	assert_output --partial "bad size line"
	# A manifest of a 4 MiB image against an 8 MiB upstream.
	head -c 4M "$IMG" >"$BATS_TEST_TMPDIR/small.raw"
	"$VIRTMAN" manifest "$BATS_TEST_TMPDIR/small.raw" -o "$BATS_TEST_TMPDIR/small.manifest"
	run timeout 30 "$VIRTMAN" export "$(url_of ROOT)" --cache "$BATS_TEST_TMPDIR/c2" \
		--manifest "$BATS_TEST_TMPDIR/small.manifest" --listen 127.0.0.1:$(free_port)
	assert_failure 1
	assert_output --partial "does not match the manifest"
}

@test "relay: a binary tree of depth 2 on loopback; every leaf bit-exact, each chunk fetched once" {
	make_image_and_manifest 48M	# whole 1 MiB chunks: bytes fetched = chunks cached x 1 MiB
	local size
	size=$(sed -n 's/^size //p' "$MANIFEST")
	start_node ROOT "$IMG"
	start_relay R1 ROOT
	start_relay R2 ROOT
	start_relay R3 R1 R2 ROOT
	start_relay R4 R1 R2 ROOT
	start_relay R5 R2 R1 ROOT
	start_relay R6 R2 R1 ROOT
	local pids=() leaf
	for leaf in R3 R4 R5 R6; do
		start_reader "$leaf" "$BATS_TEST_TMPDIR/out-$leaf.raw"
		pids+=("$READER_PID")
	done
	for pid in "${pids[@]}"; do
		wait_spawned "$pid" 300 || fail "a leaf read failed"
	done
	for leaf in R3 R4 R5 R6; do
		assert_same_content "$IMG" "$BATS_TEST_TMPDIR/out-$leaf.raw"
	done
	# The root served its two children, about one copy each.
	local served
	served=$(metric ROOT virtman_served_bytes_total)
	((served <= 2 * size + size / 10)) || fail "root served $served bytes for an image of $size"
	# No relay fetched any chunk twice: what came from upstream is exactly what it holds.
	# Leaves hold the whole image; the middle holds what its children asked of it (reads
	# are spread over parent and uncle), together at least the image.
	local node fetched present middle=0
	for node in R1 R2 R3 R4 R5 R6; do
		fetched=$(metric "$node" virtman_upstream_bytes_total)
		present=$(metric "$node" virtman_cache_chunks_present)
		assert_equal "$fetched" $((present * 1024 * 1024))
		assert_equal "$(metric "$node" virtman_verify_failures_total)" 0
		case $node in
		R1 | R2) middle=$((middle + fetched)) ;;
		*) assert_equal "$fetched" "$size" ;;
		esac
	done
	((middle >= size && middle <= 2 * size)) || fail "the middle level fetched $middle bytes"
	for node in R6 R5 R4 R3 R2 R1 ROOT; do
		stop_node "$node"
	done
}

@test "relay: the conformance suite passes against a relay" {
	require_cmd iscsi-test-cu
	make_image_and_manifest 64M
	start_node ROOT "$IMG"
	start_relay R1 ROOT
	local group log
	for group in 'SCSI.Inquiry*' 'SCSI.Mandatory*' 'SCSI.ModeSense6*' 'SCSI.Read6*' \
		'SCSI.Read10*' 'SCSI.Read12*' 'SCSI.Read16*' 'SCSI.ReadCapacity10*' \
		'SCSI.ReadCapacity16*' 'SCSI.ReportSupportedOpcodes*' 'SCSI.TestUnitReady*' \
		'SCSI.Verify10*' 'SCSI.Verify12*' 'SCSI.Verify16*' 'iSCSI.iSCSIcmdsn*' \
		'iSCSI.iSCSIResiduals.Read*'; do
		log="$BATS_TEST_TMPDIR/cu.log"
		timeout 600 iscsi-test-cu -i iqn.2026-11.org.virtman:cu1 -I iqn.2026-11.org.virtman:cu2 \
			-t "$group" "$(url_of R1)" >"$log" 2>&1 || true
		# CUnit's summary: "tests  TOTAL  RAN  PASSED  FAILED  INACTIVE".
		read -r ran failed < <(awk '$1 == "tests" { print $3, $5 }' "$log")
		[[ -n $ran && $ran -gt 0 && $failed -eq 0 ]] || {
			cat "$log" >&2
			fail "$group against the relay: ran ${ran:-?}, failed ${failed:-?}"
		}
	done
	stop_node R1
}

# Shaped loopback in a private namespace, so a read lasts long enough to break something mid-way.
setup_slow_netns() {
	require_root "network namespaces"
	require_cmd ip
	require_cmd tc
	NETNS="vmrelay-$$-$BATS_TEST_NUMBER"
	ip netns add "$NETNS" || skip "cannot create a network namespace"
	echo "$NETNS" >"$BATS_TEST_TMPDIR/.netns"
	ip -n "$NETNS" link set lo up
	tc -n "$NETNS" qdisc add dev lo root tbf rate 400mbit burst 256kb latency 50ms ||
		skip "tc tbf not available"
	NODE_NS=$NETNS
}

teardown() {
	helpers_teardown
	if [[ -f $BATS_TEST_TMPDIR/.netns ]]; then
		ip netns pids "$(cat "$BATS_TEST_TMPDIR/.netns")" 2>/dev/null | xargs -r kill -KILL
		ip netns del "$(cat "$BATS_TEST_TMPDIR/.netns")" 2>/dev/null || true
	fi
}

@test "relay: kill -9 the parent mid-read; the read completes bit-exact through the root" {
	setup_slow_netns
	make_image_and_manifest 256M
	start_node ROOT "$IMG"
	start_relay A ROOT
	start_relay B A ROOT
	start_reader B "$BATS_TEST_TMPDIR/out.raw"
	local reader=$READER_PID deadline=$((SECONDS + 120))
	# Wait until B has taken a good part of the image from A, then kill A.
	until (($(metric B virtman_upstream_bytes_total) > 32 * 1024 * 1024)); do
		((SECONDS < deadline)) || fail "B never fetched 32 MiB"
		sleep "$POLL_INTERVAL"
	done
	kill -KILL "$A_PID"
	wait_spawned "$reader" 300 || fail "the read through B failed after its parent died"
	assert_same_content "$IMG" "$BATS_TEST_TMPDIR/out.raw"
	grep -q "down" "$BATS_TEST_TMPDIR/B.log" || fail "B did not notice A going down"
}

@test "relay: a poisoned upstream listed first cannot corrupt what the relay serves" {
	make_image_and_manifest 24M
	cp "$IMG" "$BATS_TEST_TMPDIR/poisoned.raw"
	# Flip bytes in three chunks of the copy.
	local off
	for off in 100 $((5 * 1024 * 1024 + 7)) $((20 * 1024 * 1024 + 4096)); do
		printf 'POISON' | dd of="$BATS_TEST_TMPDIR/poisoned.raw" bs=1 seek="$off" conv=notrunc status=none
	done
	start_node BAD "$BATS_TEST_TMPDIR/poisoned.raw"
	start_node ROOT "$IMG"
	start_relay R BAD ROOT
	read_all R "$BATS_TEST_TMPDIR/out.raw"
	assert_same_content "$IMG" "$BATS_TEST_TMPDIR/out.raw"
	local failures
	failures=$(metric R virtman_verify_failures_total)
	((failures > 0)) || fail "no verification failure was counted"
	grep -q "failed verification" "$BATS_TEST_TMPDIR/R.log"
	stop_node R
}

@test "relay: restarted on its cache it fetches nothing it already had" {
	make_image_and_manifest 32M
	start_node ROOT "$IMG"
	start_relay R ROOT
	read_all R "$BATS_TEST_TMPDIR/out1.raw"
	assert_same_content "$IMG" "$BATS_TEST_TMPDIR/out1.raw"
	stop_node R
	start_relay R ROOT
	read_all R "$BATS_TEST_TMPDIR/out2.raw"
	assert_same_content "$IMG" "$BATS_TEST_TMPDIR/out2.raw"
	assert_equal "$(metric R virtman_upstream_bytes_total)" 0
	assert_equal "$(metric R virtman_cache_misses_total)" 0
	stop_node R
}

@test "relay: SIGKILL mid-read, restart: everything served afterwards is bit-exact" {
	setup_slow_netns
	make_image_and_manifest 128M
	start_node ROOT "$IMG"
	start_relay R ROOT
	start_reader R "$BATS_TEST_TMPDIR/partial.raw"
	local reader=$READER_PID deadline=$((SECONDS + 120))
	# Kill it once part of what it holds is durable (its bits synced): that part must
	# survive; what was not yet durable is simply fetched again.
	until (($(metric R virtman_cache_chunks_durable) > 20)); do
		((SECONDS < deadline)) || fail "R never made 20 chunks durable"
		sleep "$POLL_INTERVAL"
	done
	kill -KILL "$R_PID"
	kill -KILL "$reader" 2>/dev/null || true	# libiscsi would retry the dead relay forever
	wait "$reader" 2>/dev/null || true
	wait_pid_exit "$R_PID" 10 || fail "the killed relay is still there"
	start_relay R ROOT
	local kept
	kept=$(metric R virtman_cache_chunks_present)
	((kept > 20)) || fail "only $kept chunks survived the crash"
	read_all R "$BATS_TEST_TMPDIR/out.raw"
	assert_same_content "$IMG" "$BATS_TEST_TMPDIR/out.raw"
	# What it kept was reused, not fetched again.
	local fetched size
	fetched=$(metric R virtman_upstream_bytes_total)
	size=$(sed -n 's/^size //p' "$MANIFEST")
	((fetched == size - kept * 1024 * 1024)) ||
		fail "the restarted relay fetched $fetched bytes; it had $kept of the chunks"
}

@test "relay: hostile upstreams cost only themselves" {
	local hostile="$REPO_ROOT/build/host/tools/hostile_target"
	[[ -x $hostile ]] || skip "hostile_target not built"
	make_image_and_manifest 16M
	start_node ROOT "$IMG"
	local mode
	for mode in garbage bad-offset unknown-itt huge-dlen short-then-close wrong-capacity; do
		HPORT=$(free_port)
		"$hostile" "$HPORT" "$mode" "$IMG" >"$BATS_TEST_TMPDIR/hostile-$mode.log" 2>&1 3>&- &
		track_pid $!
		wait_port 127.0.0.1 "$HPORT" "$READY_TIMEOUT" $! || fail "hostile_target $mode did not start"
		HOSTILE_PORT=$HPORT
		rm -rf "$BATS_TEST_TMPDIR/cache-R"
		start_relay R HOSTILE ROOT
		read_all R "$BATS_TEST_TMPDIR/out-$mode.raw" || fail "read through R failed with a $mode upstream"
		assert_same_content "$IMG" "$BATS_TEST_TMPDIR/out-$mode.raw"
		stop_node R
		: >"$BATS_TEST_TMPDIR/R.log"
	done
}

@test "relay: SIGHUP re-reads --upstreams-file; the relay keeps serving, a dropped parent costs nothing" {
	require_cmd qemu-io
	make_image_and_manifest 32M
	start_node ROOT "$IMG"
	start_relay A ROOT
	echo "$(url_of A)" >"$BATS_TEST_TMPDIR/upstreams"
	start_node R --upstreams-file "$BATS_TEST_TMPDIR/upstreams" \
		--cache "$BATS_TEST_TMPDIR/cache-R" --manifest "$MANIFEST"
	# Half the image arrives through A.
	ns qemu-io -f raw -r -c "read 0 16M" "$(url_of R)" >/dev/null || fail "first read failed"
	(($(metric A virtman_served_bytes_total) >= 16 * 1024 * 1024)) || fail "A served nothing"
	# Re-parent R under the root, then A disappears.
	printf '# re-parented\n%s\n' "$(url_of ROOT)" >"$BATS_TEST_TMPDIR/upstreams"
	kill -HUP "$R_PID"
	wait_file_match "$BATS_TEST_TMPDIR/R.log" "upstreams reloaded" 10 || fail "no reload"
	kill -KILL "$A_PID"
	read_all R "$BATS_TEST_TMPDIR/out.raw"
	assert_same_content "$IMG" "$BATS_TEST_TMPDIR/out.raw"
	pid_alive "$R_PID" || fail "the relay restarted instead of reloading"
	local from_root
	from_root=$(ns curl -sf "http://127.0.0.1:${R_MPORT}/metrics" |
		awk -v u="$(url_of ROOT)" 'index($0, "virtman_upstream_bytes_total{upstream=\"" u "\"}") == 1 { print $NF }')
	((from_root >= 16 * 1024 * 1024)) || fail "the second half did not come from the root ($from_root)"
	# A broken file keeps the current upstreams.
	echo "not-a-url" >"$BATS_TEST_TMPDIR/upstreams"
	kill -HUP "$R_PID"
	wait_file_match "$BATS_TEST_TMPDIR/R.log" "keeping the current ones" 10 || fail "bad file accepted"
	stop_node R
}
