#!/usr/bin/env bats
# CRC32C digests: iscsi_probe negotiates them, checks every digest it receives, and reads bit-exact.

load helpers

setup_file() {
	IMAGE="$BATS_FILE_TMPDIR/disk.img"
	head -c 32M /dev/urandom >"$IMAGE"
	export IMAGE
}

teardown_file() {
	rm -f "$IMAGE"
}

# probe_read ARGS...: reads the whole LUN with iscsi_probe and compares it with the image.
probe_read() {
	require_built "$PROBE"
	start_export "$IMAGE"
	run "$PROBE" read "127.0.0.1:$PORT" "$IQN" --lun "${LUN:-0}" --out "$BATS_TEST_TMPDIR/out.img" "$@"
	echo "$output"
	assert_success
	assert_same_content "$IMAGE" "$BATS_TEST_TMPDIR/out.img"
	stop_export
}

@test "digest: HeaderDigest=CRC32C read is bit-exact" {
	probe_read --header-digest
}

@test "digest: DataDigest=CRC32C read is bit-exact" {
	probe_read --data-digest
}

@test "digest: HeaderDigest and DataDigest CRC32C read is bit-exact" {
	probe_read --header-digest --data-digest
}

@test "digest: both digests with a 4 KiB MaxRecvDataSegmentLength split Data-In correctly" {
	probe_read --header-digest --data-digest --mrdsl 4096
}
