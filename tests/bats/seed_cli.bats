#!/usr/bin/env bats
# virtman seed's command line: --help, exit 2 for bad usage, exit 1 when it cannot start.

load seed_helpers

setup() {
	require_built "$VIRTMAN"
}

# seed_run ARGS...: runs the seed expecting it to exit at once (never serving).
seed_run() {
	run timeout 20 "$VIRTMAN" seed "$@"
}

@test "seed cli: --help documents every flag and exits 0" {
	seed_run --help
	assert_success
	local flag
	for flag in --iface --dhcp --pool --router --dns --lease-time --kernel --initrd --append \
		--http --tftp-root --state-dir --help; do
		assert_output --partial -- "$flag"
	done
}

@test "seed cli: bad usage exits 2 with one line" {
	local args
	while IFS= read -r args; do
		eval "seed_run $args"
		((status == 2)) || fail "'$args' exited $status, expected 2: $output"
		[[ -n $output ]] || fail "'$args' printed nothing"
	done <<-'EOF'
		--dhcp off
		--iface lo --dhcp sometimes
		--iface lo --dhcp full
		--iface lo --dhcp full --pool 10.0.0.5
		--iface lo --dhcp full --pool 10.0.0.9-10.0.0.5
		--iface lo --dhcp full --pool 10.0.0.1-10.1.0.1
		--iface lo --dhcp full --pool a-b
		--iface lo --dhcp proxy --pool 10.0.0.1-10.0.0.5
		--iface lo --dhcp full --pool 10.0.0.1-10.0.0.5 --router nowhere
		--iface lo --dhcp full --pool 10.0.0.1-10.0.0.5 --dns 1.1.1.1,2.2.2.2,3.3.3.3,4.4.4.4,5.5.5.5
		--iface lo --dhcp full --pool 10.0.0.1-10.0.0.5 --lease-time 5
		--iface lo --kernel /boot/vmlinuz
		--iface lo --dhcp off --http localhost
		--iface lo --dhcp off --http '[::1]:8080'
		--iface lo --dhcp off stray-argument
		--iface lo --no-such-flag
		--iface lo --dhcp off --vm-network user
		--iface lo --dhcp off --vm-marker up
	EOF
}

@test "agent cli: --bridge takes an interface name of letters, digits, '.', '_', '-'" {
	local name
	for name in "" "a/b" "br'0" "br 0" "abcdefghijklmnop"; do
		run timeout 20 "$VIRTMAN" agent --bridge "$name" --seed http://127.0.0.1:1
		((status == 2)) || fail "--bridge '$name' exited $status, expected 2: $output"
		assert_output --partial "--bridge"
	done
	run timeout 20 "$VIRTMAN" agent --help
	assert_success
	assert_output --partial "--bridge NAME"
}

@test "seed cli: an unknown interface exits 1 with one line" {
	seed_run --iface vmtest-none0 --dhcp off
	assert_failure 1
	assert_output --partial "no such interface"
	[[ ${#lines[@]} -eq 1 ]] || fail "expected one line, got: $output"
}

@test "seed cli: a pool outside the interface's subnet exits 1" {
	require_seed_env
	pair_create
	run in_ns seed timeout 20 "$VIRTMAN" seed --iface seed0 --dhcp full \
		--pool 10.99.0.10-10.99.0.20 --state-dir "$BATS_TEST_TMPDIR/state"
	assert_failure 1
	assert_output --partial "not inside seed0's subnet"
}

@test "seed cli: a missing kernel or TFTP root exits 1" {
	require_seed_env
	pair_create
	run in_ns seed timeout 20 "$VIRTMAN" seed --iface seed0 --dhcp off \
		--kernel "$BATS_TEST_TMPDIR/nope" --initrd "$BATS_TEST_TMPDIR/nope2" \
		--state-dir "$BATS_TEST_TMPDIR/state"
	assert_failure 1
	assert_output --partial "--kernel"
	run in_ns seed timeout 20 "$VIRTMAN" seed --iface seed0 --dhcp off \
		--tftp-root "$BATS_TEST_TMPDIR/nope" --state-dir "$BATS_TEST_TMPDIR/state"
	assert_failure 1
	assert_output --partial "--tftp-root"
}

@test "seed cli: a second seed on the same interface exits 1 (ports in use)" {
	require_seed_env
	pair_create
	start_seed seed seed --iface seed0 --dhcp proxy --state-dir "$BATS_TEST_TMPDIR/state"
	run in_ns seed timeout 20 "$VIRTMAN" seed --iface seed0 --dhcp proxy \
		--state-dir "$BATS_TEST_TMPDIR/state2"
	assert_failure 1
	assert_output --partial "already in use"
	# Only the HTTP port taken: another port lets it reach TFTP, which is taken too.
	run in_ns seed timeout 20 "$VIRTMAN" seed --iface seed0 --dhcp off --http :8081 \
		--state-dir "$BATS_TEST_TMPDIR/state2"
	assert_failure 1
	assert_output --partial "TFTP"
	stop_seed
}
