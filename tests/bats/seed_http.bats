#!/usr/bin/env bats
# virtman seed's HTTP boot server against curl, inside a pair of network namespaces: the iPXE
# script, kernel and initramfs with ranges, HEAD, refusals, and 50 clients at once.

load seed_helpers

setup() {
	require_seed_env
	require_cmd curl
	KERNEL="$BATS_TEST_TMPDIR/vmlinuz"
	INITRD="$BATS_TEST_TMPDIR/initrd.img"
	head -c 3000000 /dev/urandom >"$KERNEL"
	make_image "$INITRD" 16M
	pair_create
	BASE="http://$SEED_ADDR:$SEED_HTTP_PORT"
}

start_boot_seed() {
	start_seed seed seed --iface seed0 --dhcp off --kernel "$KERNEL" --initrd "$INITRD" \
		--append "quiet panic=-1" --state-dir "$BATS_TEST_TMPDIR/state" "$@"
}

# get ARGS...: curl from the client namespace.
get() {
	in_ns client curl -sS --max-time 60 "$@"
}

@test "http: boot.ipxe is an iPXE script with this host's MAC, the seed URL and the token" {
	start_boot_seed
	run get -f "$BASE/boot.ipxe?mac=52:54:00:12:34:56"
	assert_success
	local token
	token=$(cat "$BATS_TEST_TMPDIR/state/boot-token")
	[[ $token =~ ^[0-9a-f]{32}$ ]] || fail "token '$token' is not 32 hex digits"
	assert_line --index 0 '#!ipxe'
	assert_line --regexp "^kernel $BASE/boot/vmlinuz .*virtman.seed=$BASE virtman.token=$token virtman.mac=52:54:00:12:34:56 console=ttyS0 quiet panic=-1\$"
	assert_line "initrd $BASE/boot/initrd.img"
	assert_line "boot"
	# Without ?mac= iPXE fills in the address itself.
	run get -f "$BASE/boot.ipxe"
	assert_success
	assert_output --partial 'virtman.mac=${netX/mac}'
	run get -s -o /dev/null -w '%{http_code}' "$BASE/boot.ipxe?mac=nonsense"
	assert_output 400
	stop_seed
}

@test "http: the boot token survives a restart" {
	start_boot_seed
	local first
	first=$(cat "$BATS_TEST_TMPDIR/state/boot-token")
	stop_seed
	start_boot_seed
	run get -f "$BASE/boot.ipxe"
	assert_output --partial "virtman.token=$first "
	stop_seed
}

@test "http: kernel and initramfs are served bit-exact" {
	start_boot_seed
	run get -f -o "$BATS_TEST_TMPDIR/k" "$BASE/boot/vmlinuz"
	assert_success
	assert_same_content "$KERNEL" "$BATS_TEST_TMPDIR/k"
	run get -f -o "$BATS_TEST_TMPDIR/i" "$BASE/boot/initrd.img"
	assert_success
	assert_same_content "$INITRD" "$BATS_TEST_TMPDIR/i"
	stop_seed
}

@test "http: byte ranges a-b, a- and -n return 206 with the right bytes" {
	start_boot_seed
	local size
	size=$(stat -c %s "$INITRD")
	# range SPEC SKIP COUNT: fetches SPEC and compares with COUNT bytes at SKIP.
	range() {
		run get -f -r "$1" -D "$BATS_TEST_TMPDIR/h" -o "$BATS_TEST_TMPDIR/part" "$BASE/boot/initrd.img"
		assert_success
		grep -q '^HTTP/1.1 206' "$BATS_TEST_TMPDIR/h" || fail "range $1: not a 206"
		grep -qi "^Content-Range: bytes $2-$(($2 + $3 - 1))/$size" "$BATS_TEST_TMPDIR/h" ||
			fail "range $1: wrong Content-Range: $(cat "$BATS_TEST_TMPDIR/h")"
		dd if="$INITRD" of="$BATS_TEST_TMPDIR/want" bs=1M iflag=skip_bytes,count_bytes \
			skip="$2" count="$3" status=none
		assert_same_content "$BATS_TEST_TMPDIR/want" "$BATS_TEST_TMPDIR/part"
	}
	range 0-1023 0 1024
	range 1000000-2999999 1000000 2000000
	range 16000000- 16000000 $((size - 16000000))
	range -4096 $((size - 4096)) 4096
	range "$((size - 10))-$((size + 100))" $((size - 10)) 10
	stop_seed
}

@test "http: an unsatisfiable range gets 416 with the size" {
	start_boot_seed
	local size
	size=$(stat -c %s "$INITRD")
	run get -s -r "$size-" -D - -o /dev/null "$BASE/boot/initrd.img"
	assert_output --partial "HTTP/1.1 416"
	assert_output --partial "Content-Range: bytes */$size"
	stop_seed
}

@test "http: HEAD gives the length and no body" {
	start_boot_seed
	run get -f -I "$BASE/boot/initrd.img"
	assert_success
	assert_output --partial "HTTP/1.1 200"
	assert_output --partial "Content-Length: $(stat -c %s "$INITRD")"
	assert_output --partial "Accept-Ranges: bytes"
	# No body follows the head on the wire.
	run in_ns client bash -c "exec 3<>/dev/tcp/$SEED_ADDR/$SEED_HTTP_PORT
		printf 'HEAD /boot/vmlinuz HTTP/1.1\r\nHost: x\r\n\r\n' >&3
		cat <&3 | wc -c"
	assert_success
	((output < 300)) || fail "HEAD reply is $output bytes: a body was sent"
	stop_seed
}

@test "http: other methods get 405 with Allow, unknown paths 404" {
	start_boot_seed
	local m
	for m in POST PUT DELETE OPTIONS; do
		run get -s -X "$m" -D - -o /dev/null "$BASE/boot/vmlinuz"
		assert_output --partial "HTTP/1.1 405"
		assert_output --partial "Allow: GET, HEAD"
	done
	run get -s -o /dev/null -w '%{http_code}' "$BASE/nothing-here"
	assert_output 404
	run get -s -o /dev/null -w '%{http_code}' "$BASE/ipxe/.hidden"
	assert_output 404
	stop_seed
}

@test "http: request bodies are read up to 64 KiB; larger get 413, chunked 501" {
	start_boot_seed
	head -c 60000 /dev/urandom >"$BATS_TEST_TMPDIR/body"
	run get -s -o /dev/null -w '%{http_code}' --data-binary "@$BATS_TEST_TMPDIR/body" "$BASE/boot.ipxe"
	assert_output 405
	head -c 70000 /dev/urandom >"$BATS_TEST_TMPDIR/body"
	run get -s -o /dev/null -w '%{http_code}' --data-binary "@$BATS_TEST_TMPDIR/body" "$BASE/boot.ipxe"
	assert_output 413
	run get -s -o /dev/null -w '%{http_code}' -H 'Transfer-Encoding: chunked' \
		--data-binary "@$BATS_TEST_TMPDIR/body" "$BASE/boot.ipxe"
	assert_output 501
	run get -s -o /dev/null -w '%{http_code}' "$BASE/boot.ipxe"
	assert_output 200
	stop_seed
}

@test "http: a request head over 8 KiB gets 431 and the server goes on" {
	start_boot_seed
	local big
	big=$(head -c 9000 /dev/zero | tr '\0' a)
	run get -s -o /dev/null -w '%{http_code}' -H "X-Big: $big" "$BASE/boot.ipxe"
	assert_output 431
	run get -s -o /dev/null -w '%{http_code}' "$BASE/boot.ipxe"
	assert_output 200
	stop_seed
}

@test "http: path traversal is refused" {
	start_boot_seed
	run get -s -o /dev/null -w '%{http_code}' --path-as-is "$BASE/ipxe/../../etc/passwd"
	assert_output 400
	run get -s -o /dev/null -w '%{http_code}' --path-as-is "$BASE/boot/../../etc/passwd"
	assert_output 400
	run get -s -o /dev/null -w '%{http_code}' "$BASE/ipxe/%2e%2e%2f%2e%2e%2fetc%2fpasswd"
	assert_output 404
	run get -s -o /dev/null -w '%{http_code}' "$BASE/ipxe/sub%2fx"
	assert_output 404
	stop_seed
}

@test "http: garbage and half-sent requests do not stop the server" {
	start_boot_seed
	run in_ns client bash -c "exec 3<>/dev/tcp/$SEED_ADDR/$SEED_HTTP_PORT
		printf 'GARBAGE\r\n\r\n' >&3; cat <&3"
	assert_output --partial "HTTP/1.1 400"
	run in_ns client bash -c "exec 3<>/dev/tcp/$SEED_ADDR/$SEED_HTTP_PORT
		printf 'GET / HTTP/9.9\r\n\r\n' >&3; cat <&3"
	assert_output --partial "HTTP/1.1 505"
	# A client that sends half a head and goes away.
	in_ns client bash -c "exec 3<>/dev/tcp/$SEED_ADDR/$SEED_HTTP_PORT; printf 'GET /boo' >&3"
	run get -f -o "$BATS_TEST_TMPDIR/k" "$BASE/boot/vmlinuz"
	assert_success
	assert_same_content "$KERNEL" "$BATS_TEST_TMPDIR/k"
	stop_seed
}

@test "http: 50 clients fetch the initramfs at once, each bit-exact" {
	start_boot_seed
	local want i pids=()
	want=$(sha256_of "$INITRD")
	for i in $(seq 1 50); do
		in_ns client bash -c "curl -sSf --max-time 120 '$BASE/boot/initrd.img' | sha256sum |
			cut -d' ' -f1 >'$BATS_TEST_TMPDIR/sum-$i'" &
		pids+=($!)
	done
	for i in "${!pids[@]}"; do
		wait "${pids[$i]}" || fail "client $((i + 1)) failed"
	done
	for i in $(seq 1 50); do
		[[ $(cat "$BATS_TEST_TMPDIR/sum-$i") == "$want" ]] || fail "client $i got other bytes"
	done
	stop_seed
}

@test "http: the distribution's iPXE binaries are served under /ipxe/" {
	[[ -r /usr/lib/ipxe/ipxe.efi && -r /usr/lib/ipxe/undionly.kpxe ]] ||
		skip "Debian's ipxe package is not installed"
	start_boot_seed
	run get -f -o "$BATS_TEST_TMPDIR/e" "$BASE/ipxe/ipxe.efi"
	assert_success
	assert_same_content /usr/lib/ipxe/ipxe.efi "$BATS_TEST_TMPDIR/e"
	run get -f -o "$BATS_TEST_TMPDIR/u" "$BASE/ipxe/undionly.kpxe"
	assert_success
	assert_same_content /usr/lib/ipxe/undionly.kpxe "$BATS_TEST_TMPDIR/u"
	stop_seed
}

@test "http: without --kernel, boot.ipxe is 503 and the kernel 404" {
	start_seed seed seed --iface seed0 --dhcp off --state-dir "$BATS_TEST_TMPDIR/state"
	run get -s -o /dev/null -w '%{http_code}' "$BASE/boot.ipxe"
	assert_output 503
	run get -s -o /dev/null -w '%{http_code}' "$BASE/boot/vmlinuz"
	assert_output 404
	run get -sf "$BASE/metrics"
	assert_success
	stop_seed
}
