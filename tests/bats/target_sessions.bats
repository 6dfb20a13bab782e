#!/usr/bin/env bats
# Many concurrent sessions each read the whole LUN bit-exact.

load helpers

SESSIONS=64
READ_DEADLINE=600	# seconds for all readers together: a hang fails instead of blocking CI

@test "sessions: 64 concurrent iscsi_probe sessions all read bit-exact" {
	local img="$BATS_TEST_TMPDIR/disk.img" i pids=() rc bad=0
	require_built "$PROBE"
	make_image "$img" 4M
	start_export "$img"
	for ((i = 0; i < SESSIONS; i++)); do
		spawn "reader$i" "$PROBE" read "127.0.0.1:$PORT" "$IQN" --lun "${LUN:-0}" \
			--out "$BATS_TEST_TMPDIR/out$i.img"
		pids+=("$SPAWN_PID")
	done
	for ((i = 0; i < SESSIONS; i++)); do
		rc=0
		wait_spawned "${pids[$i]}" "$READ_DEADLINE" || rc=$?
		if ((rc != 0)); then
			echo "reader $i exited $rc: $(cat "$BATS_TEST_TMPDIR/reader$i.err")"
			bad=$((bad + 1))
		elif [[ $(sha256_of "$BATS_TEST_TMPDIR/out$i.img") != "$(sha256_of "$img")" ]]; then
			echo "reader $i read different bytes"
			bad=$((bad + 1))
		fi
	done
	((bad == 0)) || fail "$bad of $SESSIONS sessions failed"
	stop_export
}
