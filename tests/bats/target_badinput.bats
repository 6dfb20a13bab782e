#!/usr/bin/env bats
# Hostile peers cost only their own connection: a concurrent read stays bit-exact, the log names
# each bad peer with a reason, and bad command lines fail with the documented exit codes.

load helpers

bats_require_minimum_version 1.5.0

HOSTILE_TIMEOUT=20	# seconds iscsi_probe gives the target to react to each bad input
READ_DEADLINE=600	# seconds the concurrent read may take: a hang fails instead of blocking CI

setup_file() {
	IMAGE="$BATS_FILE_TMPDIR/disk.img"
	head -c 256M /dev/urandom >"$IMAGE"
	export IMAGE
}

teardown_file() {
	rm -f "$IMAGE"
}

# start_reader: a qemu-img copy of the whole LUN in the background; sets READER_PID.
start_reader() {
	require_cmd qemu-img
	qemu-img --help | grep -q 'Supported formats:.* iscsi' ||
		skip "qemu-img has no iscsi driver (install qemu-block-extra)"
	spawn reader qemu-img convert -f raw -O raw "iscsi://127.0.0.1:$PORT/$IQN/${LUN:-0}" \
		"$BATS_TEST_TMPDIR/read.img"
	READER_PID=$SPAWN_PID
}

# assert_reader_exact: the background read finished successfully with the image's bytes.
assert_reader_exact() {
	local rc=0
	wait_spawned "$READER_PID" "$READ_DEADLINE" || rc=$?
	((rc == 0)) || fail "concurrent qemu-img read exited $rc: $(cat "$BATS_TEST_TMPDIR/reader.err")"
	assert_same_content "$IMAGE" "$BATS_TEST_TMPDIR/read.img"
}

# peer_reason_logged PEER: the log has a line "virtman export: PEER: REASON" other than the line
# that announces the peer's session.
peer_reason_logged() {
	grep -F "virtman export: $1: " "$EXPORT_LOG" | grep -Evq ': (normal|discovery) session of '
}

# assert_peers_logged: every connection iscsi_probe opened ("local ADDR" in $output) is named in
# the log with a reason, within a deadline (the target may log after the probe has gone).
assert_peers_logged() {
	local peer n=0 deadline
	for peer in $(awk '$1 == "local" { print $2 }' <<<"$output"); do
		deadline=$((SECONDS + 10))
		until peer_reason_logged "$peer"; do
			((SECONDS < deadline)) || fail "no log line names peer $peer with a reason"
			sleep "$POLL_INTERVAL"
		done
		n=$((n + 1))
	done
	((n > 0)) || fail "iscsi_probe reported no connection"
}

# hostile SCENARIO: throws SCENARIO at the target while a read runs, then checks all of the above.
hostile() {
	require_built "$PROBE"
	start_export "$IMAGE"
	start_reader
	run "$PROBE" hostile "127.0.0.1:$PORT" "$IQN" "$1" --lun "${LUN:-0}" --timeout "$HOSTILE_TIMEOUT"
	echo "$output"
	assert_success
	assert_reader_exact
	assert_peers_logged
	stop_export
}

@test "bad input: random bytes instead of a login" { hostile garbage; }
@test "bad input: half a header, then the peer closes" { hostile truncated; }
@test "bad input: data segment above MaxRecvDataSegmentLength" { hostile oversized; }
@test "bad input: malformed login keys" { hostile badkey; }
@test "bad input: unknown opcode in full feature phase" { hostile unknown-opcode; }
@test "bad input: peer resets the connection in the middle of a header" { hostile midpdu; }
@test "bad input: SNACK with ErrorRecoveryLevel=0" { hostile snack; }
@test "bad input: Data-Out for an unknown task" { hostile dataout-unknown; }
@test "bad input: huge TotalAHSLength with a malformed AHS" { hostile bad-ahs; }

@test "bad input: 2000 idle connections do not stop a concurrent read" {
	local idle_pid rc=0
	require_built "$PROBE"
	start_export "$IMAGE"
	spawn idle "$PROBE" hostile "127.0.0.1:$PORT" "$IQN" idle 2000 \
		--until "$BATS_TEST_TMPDIR/idle.done" --hold 600 --timeout 60
	idle_pid=$SPAWN_PID
	wait_file_match "$BATS_TEST_TMPDIR/idle.out" '^idle: 2000 open' 120 ||
		fail "idle connections not open: $(cat "$BATS_TEST_TMPDIR/idle.err")"
	run "$PROBE" read "127.0.0.1:$PORT" "$IQN" --lun "${LUN:-0}" --out "$BATS_TEST_TMPDIR/read.img"
	echo "$output"
	assert_success
	assert_same_content "$IMAGE" "$BATS_TEST_TMPDIR/read.img"
	touch "$BATS_TEST_TMPDIR/idle.done"
	wait_spawned "$idle_pid" 60 || rc=$?
	((rc == 0)) || fail "idle prober exited $rc: $(cat "$BATS_TEST_TMPDIR/idle.err")"
	stop_export
}

# run_export ARGS...: runs `virtman export ARGS` to completion (bounded), stderr apart in $stderr.
run_export() {
	require_built "$VIRTMAN"
	run --separate-stderr timeout -k 5 30 "$VIRTMAN" export "$@"
	echo "exit $status; stderr: $stderr"
}

# assert_one_line_error: exactly one stderr line, prefixed "virtman export: ".
assert_one_line_error() {
	assert_equal "$(wc -l <<<"$stderr")" 1
	[[ $stderr == "virtman export: "?* ]] || fail "stderr is not 'virtman export: ...': $stderr"
}

@test "cli: a missing image file exits 1 with one line" {
	run_export "$BATS_TEST_TMPDIR/no-such.img" --listen "127.0.0.1:$(free_port)"
	assert_equal "$status" 1
	assert_one_line_error
}

@test "cli: an unreadable image file exits 1 with one line" {
	local img="$BATS_TEST_TMPDIR/secret.img" cmd=()
	make_image "$img" 1M
	chmod 000 "$img"
	if [[ $EUID -eq 0 ]]; then
		# root reads anything: run as nobody, who can reach the binary but not the image.
		require_cmd setpriv
		cmd=(setpriv --reuid=65534 --regid=65534 --clear-groups)
		setpriv --reuid=65534 --regid=65534 --clear-groups test -x "$VIRTMAN" ||
			skip "user nobody cannot execute $VIRTMAN"
	fi
	require_built "$VIRTMAN"
	run --separate-stderr timeout -k 5 30 "${cmd[@]}" "$VIRTMAN" export "$img" --listen "127.0.0.1:$(free_port)"
	echo "exit $status; stderr: $stderr"
	assert_equal "$status" 1
	assert_one_line_error
}

@test "cli: a directory as image exits 1 with one line" {
	run_export "$BATS_TEST_TMPDIR" --listen "127.0.0.1:$(free_port)"
	assert_equal "$status" 1
	assert_one_line_error
}

@test "cli: a port already in use exits 1 with one line" {
	local img="$BATS_TEST_TMPDIR/disk.img"
	make_image "$img" 1M
	start_export "$img"
	run_export "$img" --listen "127.0.0.1:$PORT"
	assert_equal "$status" 1
	assert_one_line_error
	stop_export
}

@test "cli: an unknown flag exits 2" {
	local img="$BATS_TEST_TMPDIR/disk.img"
	make_image "$img" 1M
	run_export "$img" --no-such-flag
	assert_equal "$status" 2
	[[ -n $stderr ]] || fail "no message on stderr"
}

@test "cli: a missing IMAGE exits 2" {
	run_export
	assert_equal "$status" 2
	[[ -n $stderr ]] || fail "no message on stderr"
}

@test "cli: a malformed --listen exits 2" {
	local img="$BATS_TEST_TMPDIR/disk.img"
	make_image "$img" 1M
	run_export "$img" --listen 127.0.0.1:99999
	assert_equal "$status" 2
	[[ -n $stderr ]] || fail "no message on stderr"
}
