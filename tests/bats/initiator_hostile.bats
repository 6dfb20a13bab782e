#!/usr/bin/env bats
# The initiator against a hostile target (tests/tools/hostile_target): every fault is reported
# with its reason, and the client neither crashes nor trips a sanitizer.

load helpers

FETCH="$REPO_ROOT/build/host/tools/iscsi_fetch"
HOSTILE="$REPO_ROOT/build/host/tools/hostile_target"

setup_file() {
	IMAGE="$BATS_FILE_TMPDIR/disk.img"
	head -c 8M /dev/urandom >"$IMAGE"
	export IMAGE
}

teardown_file() {
	rm -f "$IMAGE"
}

# start_hostile MODE: hostile_target on a free port; exports HPORT and HLOG.
start_hostile() {
	require_built "$HOSTILE"
	require_built "$FETCH"
	HPORT=$(free_port)
	HLOG="$BATS_TEST_TMPDIR/hostile.log"
	"$HOSTILE" "$HPORT" "$1" "$IMAGE" >/dev/null 2>"$HLOG" 3>&- &
	track_pid $!
	wait_port 127.0.0.1 "$HPORT" "$READY_TIMEOUT" $! || fail "hostile_target $1 did not start"
}

# hostile_fetch MODE [ARGS...]: one 1 MiB read (in 256 KiB chunks) from a hostile target.
hostile_fetch() {
	start_hostile "$1"
	run "$FETCH" "iscsi://127.0.0.1:$HPORT/iqn.2026-11.org.virtman:hostile/0" 0 1048576 \
		"$BATS_TEST_TMPDIR/out.img" --chunk 262144 --read-timeout 2000 --timeout 30 "${@:2}"
	echo "$output"
	refute_output --regexp 'AddressSanitizer|LeakSanitizer|runtime error'
}

# The session went down for REGEX, and the fetch failed cleanly (exit 1, not a crash).
assert_fault() {
	assert_failure 1
	assert_output --regexp "down: $1"
	grep -q "misbehaving\|one read served" "$HLOG" || fail "the target never misbehaved"
}

@test "hostile: good (control): the read succeeds, bit-exact" {
	hostile_fetch good
	assert_success
	dd if="$IMAGE" of="$BATS_TEST_TMPDIR/want.img" bs=1M count=1 status=none
	assert_same_content "$BATS_TEST_TMPDIR/want.img" "$BATS_TEST_TMPDIR/out.img"
}

@test "hostile: garbage instead of Data-In takes the session down" {
	hostile_fetch garbage
	assert_fault "(protocol error|header digest|target closed|read timed out|keepalive)"
}

@test "hostile: Data-In offset beyond the read is a protocol error" {
	hostile_fetch bad-offset
	assert_fault "protocol error: Data-In offset 262144 length 512 beyond read length 262144"
}

@test "hostile: Data-In for a task never sent is a protocol error" {
	hostile_fetch unknown-itt
	assert_fault "protocol error: Data-In for unknown task 0x8"
}

@test "hostile: a 16 MiB data segment is refused before any allocation" {
	hostile_fetch huge-dlen
	assert_fault "protocol error: Data-In data segment 16777215 exceeds MaxRecvDataSegmentLength 262144"
}

@test "hostile: half a PDU, then close" {
	hostile_fetch short-then-close
	assert_fault "target closed the connection in the middle of a PDU"
}

@test "hostile: a capacity that changes across a reconnect is a hard error" {
	hostile_fetch wrong-capacity --repeat 2 --retries 1
	assert_fault "capacity changed from 8388608 to 9437184 bytes"
}

@test "hostile: a read never answered times out" {
	hostile_fetch stall
	assert_fault "read timed out after 2000 ms"
}

@test "hostile: Async Message 'logout requested' takes the session down" {
	hostile_fetch logout
	assert_fault "target requests logout"
}

@test "hostile: DataSN gap (ErrorRecoveryLevel 0) is a protocol error" {
	hostile_fetch datasn-gap
	assert_fault "protocol error: Data-In DataSN 1, expected 0"
}

@test "hostile: R2T for a read is a protocol error" {
	hostile_fetch r2t
	assert_fault "protocol error: unexpected R2T"
}

@test "hostile: Reject of the read fails that read only" {
	hostile_fetch reject
	assert_failure 1
	assert_output --partial "target rejected our SCSI Command"
	assert_output --partial "failed: Input/output error"
	refute_output --partial "down:"
}

@test "hostile: CHECK CONDITION fails that read, naming the sense" {
	hostile_fetch check-condition
	assert_failure 1
	assert_output --partial "CHECK CONDITION, sense key 0x3 (MEDIUM ERROR), ASC/ASCQ 11/00"
	assert_output --partial "failed: Input/output error"
	refute_output --partial "down:"
}

@test "hostile: corrupt data passes the protocol: catching it is the relay's job (manifest)" {
	hostile_fetch corrupt
	assert_success
	dd if="$IMAGE" of="$BATS_TEST_TMPDIR/want.img" bs=1M count=1 status=none
	run cmp -s "$BATS_TEST_TMPDIR/want.img" "$BATS_TEST_TMPDIR/out.img"
	assert_failure
}
