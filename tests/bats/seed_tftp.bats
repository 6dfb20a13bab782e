#!/usr/bin/env bats
# virtman seed's TFTP server against curl's TFTP client (and a windowsize client), inside a
# pair of network namespaces: files bit-exact, options, rollover, concurrency, confinement.

load seed_helpers

setup() {
	require_seed_env
	require_cmd curl
	ROOT="$BATS_TEST_TMPDIR/tftproot"
	mkdir -p "$ROOT/sub"
	head -c 100000 /dev/urandom >"$ROOT/small.bin"
	head -c 65536 /dev/urandom >"$ROOT/exact.bin"	# a multiple of 512: ends with an empty block
	head -c 3000 /dev/urandom >"$ROOT/sub/inner.bin"
	: >"$ROOT/empty.bin"
	echo secret >"$BATS_TEST_TMPDIR/outside.txt"
	ln -s "$BATS_TEST_TMPDIR/outside.txt" "$ROOT/link-out"
	ln -s sub/inner.bin "$ROOT/link-in"
	pair_create
	start_seed seed seed --iface seed0 --dhcp off --tftp-root "$ROOT" \
		--state-dir "$BATS_TEST_TMPDIR/state"
}

# fetch NAME OUT [CURL ARGS...]: curl tftp://seed/NAME into OUT from the client namespace.
fetch() {
	local name=$1 out=$2
	shift 2
	in_ns client curl -sS --max-time 120 "$@" -o "$out" "tftp://$SEED_ADDR/$name"
}

@test "tftp: curl fetches a file with default options, bit-exact" {
	run fetch small.bin "$BATS_TEST_TMPDIR/got"
	assert_success
	assert_same_content "$ROOT/small.bin" "$BATS_TEST_TMPDIR/got"
	stop_seed
}

@test "tftp: blksize 1432, 8 and 65464 are negotiated and served bit-exact" {
	for bs in 1432 8 65464; do
		run fetch small.bin "$BATS_TEST_TMPDIR/got-$bs" --tftp-blksize "$bs"
		assert_success
		assert_same_content "$ROOT/small.bin" "$BATS_TEST_TMPDIR/got-$bs"
	done
	grep -q 'blksize 65464' "$SEED_LOG" || fail "no transfer with blksize 65464 in the log"
	stop_seed
}

@test "tftp: a file that is a multiple of the block size, and an empty file" {
	run fetch exact.bin "$BATS_TEST_TMPDIR/got"
	assert_success
	assert_same_content "$ROOT/exact.bin" "$BATS_TEST_TMPDIR/got"
	run fetch empty.bin "$BATS_TEST_TMPDIR/got-empty"
	assert_success
	[[ -f $BATS_TEST_TMPDIR/got-empty && ! -s $BATS_TEST_TMPDIR/got-empty ]] ||
		fail "empty file not fetched as empty"
	stop_seed
}

@test "tftp: a 40 MiB file at blksize 512 wraps the block number, bit-exact" {
	make_image "$ROOT/big.bin" 40M
	run fetch big.bin "$BATS_TEST_TMPDIR/got" --tftp-blksize 512
	assert_success
	assert_same_content "$ROOT/big.bin" "$BATS_TEST_TMPDIR/got"
	grep -q 'sent big.bin (41943040 bytes, blksize 512' "$SEED_LOG" ||
		fail "the log does not show the 512-byte transfer"
	stop_seed
}

@test "tftp: eight clients at once, each bit-exact" {
	make_image "$ROOT/mid.bin" 4M
	local pids=() i
	for i in 1 2 3 4 5 6 7 8; do
		fetch mid.bin "$BATS_TEST_TMPDIR/got-$i" --tftp-blksize $((512 * i)) &
		pids+=($!)
	done
	for i in "${!pids[@]}"; do
		wait "${pids[$i]}" || fail "client $((i + 1)) failed"
	done
	for i in 1 2 3 4 5 6 7 8; do
		assert_same_content "$ROOT/mid.bin" "$BATS_TEST_TMPDIR/got-$i"
	done
	stop_seed
}

@test "tftp: windowsize 16 with lost blocks, across the wrap, bit-exact (RFC 7440)" {
	require_cmd python3
	make_image "$ROOT/big.bin" 33M
	run in_ns client python3 "$TFTP_GET" "$SEED_ADDR" big.bin "$BATS_TEST_TMPDIR/got" \
		--blksize 512 --windowsize 16 --drop 3,17,65535,65536,65540
	assert_success
	assert_output --partial "windowsize:16"
	assert_same_content "$ROOT/big.bin" "$BATS_TEST_TMPDIR/got"
	stop_seed
}

@test "tftp: a lost block in lock-step is retransmitted after the timeout" {
	require_cmd python3
	run in_ns client python3 "$TFTP_GET" "$SEED_ADDR" small.bin "$BATS_TEST_TMPDIR/got" \
		--blksize 1024 --drop 5
	assert_success
	assert_same_content "$ROOT/small.bin" "$BATS_TEST_TMPDIR/got"
	stop_seed
}

@test "tftp: a write request is refused with an access violation" {
	echo data >"$BATS_TEST_TMPDIR/up.txt"
	run in_ns client curl -sS --max-time 20 -T "$BATS_TEST_TMPDIR/up.txt" "tftp://$SEED_ADDR/up.txt"
	assert_failure 69	# CURLE_TFTP_PERM
	[[ ! -e $ROOT/up.txt ]] || fail "the write request created a file"
	grep -q 'write request for up.txt refused' "$SEED_LOG" || fail "refusal not logged"
	stop_seed
}

@test "tftp: ../ components are refused" {
	run fetch ../outside.txt "$BATS_TEST_TMPDIR/got" --path-as-is
	assert_failure 69
	run fetch sub/../small.bin "$BATS_TEST_TMPDIR/got" --path-as-is
	assert_failure 69
	[[ ! -s $BATS_TEST_TMPDIR/got ]] || fail "something was served"
	stop_seed
}

@test "tftp: an absolute path is resolved under the root" {
	run fetch /small.bin "$BATS_TEST_TMPDIR/got"
	assert_success
	assert_same_content "$ROOT/small.bin" "$BATS_TEST_TMPDIR/got"
	run fetch "/$BATS_TEST_TMPDIR/outside.txt" "$BATS_TEST_TMPDIR/got2"
	assert_failure 68	# CURLE_TFTP_NOTFOUND: looked up inside the root only
	stop_seed
}

@test "tftp: a symlink out of the root is refused, one inside is followed" {
	run fetch link-out "$BATS_TEST_TMPDIR/got"
	assert_failure 69
	run fetch link-in "$BATS_TEST_TMPDIR/got-in"
	assert_success
	assert_same_content "$ROOT/sub/inner.bin" "$BATS_TEST_TMPDIR/got-in"
	stop_seed
}

@test "tftp: a missing file and a directory get errors, and the server goes on" {
	run fetch missing.bin "$BATS_TEST_TMPDIR/got"
	assert_failure 68
	run fetch sub "$BATS_TEST_TMPDIR/got"
	assert_failure 69
	run in_ns client python3 "$TFTP_GET" "$SEED_ADDR" small.bin "$BATS_TEST_TMPDIR/got" --mode mail
	assert_failure 1
	assert_output --partial "error code=4"
	run fetch small.bin "$BATS_TEST_TMPDIR/got"
	assert_success
	assert_same_content "$ROOT/small.bin" "$BATS_TEST_TMPDIR/got"
	stop_seed
}

@test "tftp: netascii is served byte for byte" {
	require_cmd python3
	run in_ns client python3 "$TFTP_GET" "$SEED_ADDR" small.bin "$BATS_TEST_TMPDIR/got" \
		--mode netascii
	assert_success
	assert_same_content "$ROOT/small.bin" "$BATS_TEST_TMPDIR/got"
	stop_seed
}

@test "tftp: /metrics counts completed transfers" {
	run fetch small.bin "$BATS_TEST_TMPDIR/got"
	assert_success
	run in_ns client curl -sSf "http://$SEED_ADDR:$SEED_HTTP_PORT/metrics"
	assert_success
	assert_output --partial 'virtman_tftp_transfers_total{outcome="completed"} 1'
	stop_seed
}
