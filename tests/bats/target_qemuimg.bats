#!/usr/bin/env bats
# qemu-img (QEMU's libiscsi block driver) copies the exported LUN bit-exactly.

load helpers

setup() {
	require_cmd qemu-img
	qemu-img --help | grep -q 'Supported formats:.* iscsi' ||
		skip "qemu-img has no iscsi driver (install qemu-block-extra)"
}

# qemu_read URL_OR_OPTS OUT: copies the LUN to a raw file (sparse where the LUN reads zeros).
qemu_read() {
	run timeout -k 10 900 qemu-img convert -f raw -O raw "$1" "$2"
	echo "$output"
	assert_success
}

@test "qemu-img: an image of odd size (10 MiB + 3 blocks) reads bit-exact" {
	local img="$BATS_TEST_TMPDIR/odd.img"
	make_image "$img" $((10 * 1024 * 1024 + 3 * 512))
	start_export "$img"
	qemu_read "iscsi://127.0.0.1:$PORT/$IQN/${LUN:-0}" "$BATS_TEST_TMPDIR/out.img"
	assert_equal "$(stat -c %s "$BATS_TEST_TMPDIR/out.img")" "$(stat -c %s "$img")"
	assert_same_content "$img" "$BATS_TEST_TMPDIR/out.img"
	stop_export
}

@test "qemu-img: a sparse image above 4 GiB reads bit-exact, across the 4 GiB boundary" {
	local img="$BATS_TEST_TMPDIR/big.img"
	make_image "$img" $((4 * 1024 * 1024 * 1024 + 64 * 1024 * 1024))
	start_export "$img"
	qemu_read "iscsi://127.0.0.1:$PORT/$IQN/${LUN:-0}" "$BATS_TEST_TMPDIR/out.img"
	assert_equal "$(stat -c %s "$BATS_TEST_TMPDIR/out.img")" "$(stat -c %s "$img")"
	assert_same_content "$img" "$BATS_TEST_TMPDIR/out.img"
	stop_export
}

@test "qemu-img: a read with HeaderDigest=CRC32C is bit-exact" {
	local img="$BATS_TEST_TMPDIR/hd.img"
	make_image "$img" 16M
	start_export "$img"
	run timeout -k 10 900 qemu-img convert -O raw --image-opts \
		"driver=iscsi,transport=tcp,portal=127.0.0.1:$PORT,target=$IQN,lun=${LUN:-0},header-digest=crc32c" \
		"$BATS_TEST_TMPDIR/out.img"
	echo "$output"
	assert_success
	assert_same_content "$img" "$BATS_TEST_TMPDIR/out.img"
	stop_export
}
