#!/usr/bin/env bats
# The initiator (iscsi/initiator.c), through iscsi_fetch: bit-exact reads from virtman export and
# from tgt, with and without CRC32C digests, pipelined, across 4 GiB, and its failure reasons.

load helpers

FETCH="$REPO_ROOT/build/host/tools/iscsi_fetch"

setup_file() {
	IMAGE="$BATS_FILE_TMPDIR/disk.img"
	head -c 40M /dev/urandom >"$IMAGE"
	export IMAGE
}

teardown_file() {
	rm -f "$IMAGE"
}

# fetch URL OFFSET LEN [ARGS...]: iscsi_fetch into $BATS_TEST_TMPDIR/out.img; output in $output.
fetch() {
	require_built "$FETCH"
	run "$FETCH" "$1" "$2" "$3" "$BATS_TEST_TMPDIR/out.img" --timeout 60 "${@:4}"
	echo "$output"
	refute_output --regexp 'AddressSanitizer|LeakSanitizer|runtime error'
}

# expect_range IMAGE OFFSET LEN: the fetched file holds exactly those bytes of IMAGE.
expect_range() {
	dd if="$1" of="$BATS_TEST_TMPDIR/want.img" bs=1M skip="$2" count="$3" \
		iflag=skip_bytes,count_bytes status=none
	assert_same_content "$BATS_TEST_TMPDIR/want.img" "$BATS_TEST_TMPDIR/out.img"
}

export_url() {
	echo "iscsi://127.0.0.1:$PORT/$IQN/0"
}

tgt_url() {
	echo "iscsi://127.0.0.1:$TGT_PORT/$TGT_IQN/$TGT_LUN"
}

@test "initiator: whole LUN from virtman export, no digests, bit-exact" {
	start_export "$IMAGE"
	fetch "$(export_url)" 0 0
	assert_success
	assert_same_content "$IMAGE" "$BATS_TEST_TMPDIR/out.img"
	stop_export
}

@test "initiator: whole LUN from virtman export, HeaderDigest=CRC32C" {
	start_export "$IMAGE"
	fetch "$(export_url)" 0 0 --header-digest
	assert_success
	assert_output --partial "header digest CRC32C, data digest None"
	assert_same_content "$IMAGE" "$BATS_TEST_TMPDIR/out.img"
	stop_export
}

@test "initiator: whole LUN from virtman export, DataDigest=CRC32C" {
	start_export "$IMAGE"
	fetch "$(export_url)" 0 0 --data-digest
	assert_success
	assert_output --partial "header digest None, data digest CRC32C"
	assert_same_content "$IMAGE" "$BATS_TEST_TMPDIR/out.img"
	stop_export
}

@test "initiator: whole LUN from virtman export, both digests" {
	start_export "$IMAGE"
	fetch "$(export_url)" 0 0 --header-digest --data-digest
	assert_success
	assert_output --partial "header digest CRC32C, data digest CRC32C"
	assert_same_content "$IMAGE" "$BATS_TEST_TMPDIR/out.img"
	stop_export
}

@test "initiator: 4 KiB chunks, 64 in flight, at an odd offset, bit-exact" {
	start_export "$IMAGE"
	fetch "$(export_url)" $((12345 * 512)) $((3 * 1024 * 1024 + 512)) --chunk 4096 --inflight 64
	assert_success
	expect_range "$IMAGE" $((12345 * 512)) $((3 * 1024 * 1024 + 512))
	stop_export
}

@test "initiator: one 20 MiB READ, more than MaxBurstLength, bit-exact" {
	start_export "$IMAGE"
	fetch "$(export_url)" 1048576 $((20 * 1024 * 1024)) --chunk $((20 * 1024 * 1024))
	assert_success
	expect_range "$IMAGE" 1048576 $((20 * 1024 * 1024))
	stop_export
}

@test "initiator: reads across 4 GiB of a 5 GiB sparse LUN" {
	local big="$BATS_TEST_TMPDIR/big.img" four_g=$((4 * 1024 * 1024 * 1024))
	make_image "$big" 5G
	start_export "$big"
	fetch "$(export_url)" $((four_g - 1048576)) 2097152
	assert_success
	expect_range "$big" $((four_g - 1048576)) 2097152
	fetch "$(export_url)" $((5 * 1024 * 1024 * 1024 - 1048576)) 0
	assert_success
	expect_range "$big" $((5 * 1024 * 1024 * 1024 - 1048576)) 1048576
	stop_export
}

@test "initiator: a range beyond the LUN or not block-aligned is refused, not sent" {
	start_export "$IMAGE"
	fetch "$(export_url)" $((40 * 1024 * 1024)) 512
	assert_failure 1
	assert_output --partial "Invalid argument"
	fetch "$(export_url)" 100 512
	assert_failure 1
	assert_output --partial "Invalid argument"
	stop_export
}

@test "initiator: an unknown IQN fails the login with the target's status" {
	start_export "$IMAGE"
	fetch "iscsi://127.0.0.1:$PORT/iqn.2026-11.org.virtman:nobody/0" 0 512
	assert_failure 1
	assert_output --partial "login failed: status 0x0203 (target not found)"
	stop_export
}

@test "initiator: a LUN that does not exist fails READ CAPACITY" {
	start_export "$IMAGE"
	fetch "iscsi://127.0.0.1:$PORT/$IQN/5" 0 512
	assert_failure 1
	assert_output --regexp "READ CAPACITY\(10\) failed: CHECK CONDITION, sense key 0x5 \(ILLEGAL REQUEST\)"
	stop_export
}

@test "initiator: nothing listening: connect: Connection refused" {
	fetch "iscsi://127.0.0.1:$(free_port)/iqn.2026-11.org.virtman:none/0" 0 512
	assert_failure 1
	assert_output --partial "connect: Connection refused"
}

@test "initiator: the export restarts on the same port: the client reconnects and finishes" {
	start_export "$IMAGE"
	local port=$PORT iqn=$IQN
	# 8 MiB twenty times in 4 KiB reads one at a time: long enough to be cut in the middle.
	spawn fetch "$FETCH" "$(export_url)" 0 8388608 "$BATS_TEST_TMPDIR/out.img" --chunk 4096 \
		--inflight 1 --repeat 20 --retries 5 --timeout 120
	local fetch_pid=$SPAWN_PID
	wait_file_match "$BATS_TEST_TMPDIR/fetch.err" "up \(" 30 || fail "never came up"
	kill -KILL "$EXPORT_PID"
	wait "$EXPORT_PID" 2>/dev/null || true
	"$VIRTMAN" export "$IMAGE" --listen "127.0.0.1:$port" --iqn "$iqn" \
		>"$BATS_TEST_TMPDIR/export2.out" 2>"$BATS_TEST_TMPDIR/export2.log" 3>&- &
	EXPORT_PID=$!
	track_pid "$EXPORT_PID"
	wait_port 127.0.0.1 "$port" "$READY_TIMEOUT" "$EXPORT_PID" || fail "export did not restart"
	wait_spawned "$fetch_pid" 120 || { cat "$BATS_TEST_TMPDIR/fetch.err"; fail "fetch failed"; }
	cat "$BATS_TEST_TMPDIR/fetch.err"
	grep -q "down: target closed the connection\|down: recv\|down: connect" \
		"$BATS_TEST_TMPDIR/fetch.err" || fail "the session never went down"
	assert_no_sanitizer_report "$BATS_TEST_TMPDIR/fetch.err"
	expect_range "$IMAGE" 0 8388608
	EXPORT_LOG="$BATS_TEST_TMPDIR/export2.log"
	stop_export
}

@test "initiator: whole LUN from tgt, no digests, bit-exact" {
	start_tgt "$IMAGE"
	fetch "$(tgt_url)" 0 0
	assert_success
	assert_same_content "$IMAGE" "$BATS_TEST_TMPDIR/out.img"
	stop_tgt
}

@test "initiator: whole LUN from tgt, HeaderDigest=CRC32C" {
	start_tgt "$IMAGE"
	fetch "$(tgt_url)" 0 0 --header-digest
	assert_success
	assert_output --partial "header digest CRC32C, data digest None"
	assert_same_content "$IMAGE" "$BATS_TEST_TMPDIR/out.img"
	stop_tgt
}

@test "initiator: whole LUN from tgt, DataDigest=CRC32C" {
	start_tgt "$IMAGE"
	fetch "$(tgt_url)" 0 0 --data-digest
	assert_success
	assert_output --partial "header digest None, data digest CRC32C"
	assert_same_content "$IMAGE" "$BATS_TEST_TMPDIR/out.img"
	stop_tgt
}

@test "initiator: whole LUN from tgt, both digests, 4 KiB chunks 32 in flight" {
	start_tgt "$IMAGE"
	fetch "$(tgt_url)" 0 0 --header-digest --data-digest --chunk 4096 --inflight 32
	assert_success
	assert_output --partial "header digest CRC32C, data digest CRC32C"
	assert_same_content "$IMAGE" "$BATS_TEST_TMPDIR/out.img"
	stop_tgt
}
