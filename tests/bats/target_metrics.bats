#!/usr/bin/env bats
# --metrics serves Prometheus text with the served bytes and the session count.

load helpers

setup() {
	require_cmd curl
	require_built "$PROBE"
}

# metric_sum NAME: sums every sample of NAME (with or without labels) in $output.
metric_sum() {
	awk -v name="$1" '$1 == name || index($1, name "{") == 1 { sum += $NF; found = 1 }
		END { if (found) printf "%.0f\n", sum }' <<<"$output"
}

# start_export_with_metrics IMAGE: start_export plus --metrics on 127.0.0.1:$METRICS_PORT.
start_export_with_metrics() {
	METRICS_PORT=$(free_port)
	start_export "$1" --metrics "127.0.0.1:$METRICS_PORT"
	wait_port 127.0.0.1 "$METRICS_PORT" "$READY_TIMEOUT" "$EXPORT_PID" || fail "metrics endpoint not listening"
}

@test "metrics: virtman_served_bytes_total covers a full read" {
	local img="$BATS_TEST_TMPDIR/disk.img"
	make_image "$img" 8M
	start_export_with_metrics "$img"
	run "$PROBE" read "127.0.0.1:$PORT" "$IQN" --lun "${LUN:-0}"
	assert_success
	run curl -sSf "http://127.0.0.1:$METRICS_PORT/metrics"
	assert_success
	local served
	served=$(metric_sum virtman_served_bytes_total)
	[[ -n $served ]] || fail "no virtman_served_bytes_total sample in: $output"
	((served >= $(stat -c %s "$img"))) || fail "virtman_served_bytes_total $served < image size"
	stop_export
}

@test "metrics: virtman_sessions is exported" {
	local img="$BATS_TEST_TMPDIR/disk.img"
	make_image "$img" 1M
	start_export_with_metrics "$img"
	run curl -sSf "http://127.0.0.1:$METRICS_PORT/metrics"
	assert_success
	[[ -n $(metric_sum virtman_sessions) ]] || fail "no virtman_sessions sample in: $output"
	stop_export
}
