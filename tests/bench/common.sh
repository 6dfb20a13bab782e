# shellcheck shell=bash
# Bookkeeping shared by the benchmarks that run `virtman export` nodes in network namespaces
# (relay.sh, vmboot.sh); sourced after the script has set these:
#   WORK          its scratch directory (removed on exit)
#   NAMESPACES    array of the namespaces it made (deleted on exit)
#   ALL_PIDS      array of the processes it started (stopped on exit)
#   POLL, READY_TIMEOUT   seconds between polls, seconds a node gets to listen
#   VIRTMAN       the binary start_node runs
#   IQN, INITIATOR_PREFIX   the target name every node serves; relays log in upstream as
#                 iqn.2026-11.org.virtman:PREFIX<name in lower case>
# and the associative arrays PID_OF, NS_OF, MPORT_OF that start_node fills.

pid_alive() {
	local state
	state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
	[[ -n $state && $state != Z ]]
}

# bench_cleanup: stops every process (TERM, then KILL after 10 s), deletes the namespaces
# and WORK. Installed as the EXIT trap; Ctrl-C and TERM exit through it too.
bench_cleanup() {
	local pid ns deadline
	trap - EXIT INT TERM
	for pid in "${ALL_PIDS[@]}"; do
		pid_alive "$pid" && kill -TERM "$pid" 2>/dev/null
	done
	deadline=$((SECONDS + 10))
	for pid in "${ALL_PIDS[@]}"; do
		while pid_alive "$pid" && ((SECONDS < deadline)); do sleep "$POLL"; done
		pid_alive "$pid" && kill -KILL "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
	done
	for ns in "${NAMESPACES[@]}"; do
		ip netns pids "$ns" 2>/dev/null | xargs -r kill -KILL 2>/dev/null
		ip netns del "$ns" 2>/dev/null
	done
	rm -rf "$WORK"
}
trap bench_cleanup EXIT
trap 'echo "$(basename "$0"): interrupted" >&2; exit 130' INT TERM

nsx() {
	local ns=$1
	shift
	ip netns exec "$ns" "$@"
}

# fmt EXPR [DECIMALS]: evaluates a floating-point expression.
fmt() {
	awk "BEGIN { printf \"%.${2:-2}f\", $1 }"
}

cpu_ticks() { # utime + stime of a process, in clock ticks
	awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0
}

wait_port() { # wait_port NS PORT PID
	local deadline=$((SECONDS + READY_TIMEOUT))
	until nsx "$1" bash -c "exec 9<>/dev/tcp/127.0.0.1/$2" 2>/dev/null; do
		pid_alive "$3" || return 1
		((SECONDS < deadline)) || return 1
		sleep "$POLL"
	done
}

metric() { # metric NODE NAME: the sum of every sample of NAME on that node
	nsx "${NS_OF[$1]}" curl -sf "http://127.0.0.1:${MPORT_OF[$1]}/metrics" |
		awk -v m="$2" '$1 == m || index($1, m "{") == 1 { s += $NF } END { printf "%.0f\n", s }'
}

# start_node NAME NS PORT MPORT ARGS...: virtman export ARGS in NS, ready when it listens.
start_node() {
	local name=$1 ns=$2 port=$3 mport=$4 pid
	shift 4
	# Not through nsx: started with & a function would be a subshell, and $! its pid.
	# ip netns exec execs, so $! is virtman itself.
	ip netns exec "$ns" "$VIRTMAN" export "$@" --listen "0.0.0.0:$port" --iqn "$IQN" \
		--metrics "127.0.0.1:$mport" >>"$WORK/logs/$name.log" 2>&1 </dev/null &
	pid=$!
	ALL_PIDS+=("$pid")
	PID_OF[$name]=$pid
	NS_OF[$name]=$ns
	MPORT_OF[$name]=$mport
	wait_port "$ns" "$port" "$pid" || { tail -20 "$WORK/logs/$name.log" >&2; die "$name did not start"; }
	wait_port "$ns" "$mport" "$pid" || die "$name: no metrics listener"
}

# start_relay NAME NS PORT MPORT MANIFEST UPSTREAM_URL: fresh cache; ready when logged in upstream.
start_relay() {
	local name=$1 ns=$2 port=$3 mport=$4 manifest=$5 up=$6 deadline
	rm -rf "$WORK/cache-$name"
	start_node "$name" "$ns" "$port" "$mport" "$up" --cache "$WORK/cache-$name" \
		--manifest "$manifest" --initiator-name "iqn.2026-11.org.virtman:$INITIATOR_PREFIX${name,,}"
	deadline=$((SECONDS + READY_TIMEOUT))
	until (($(metric "$name" virtman_upstream_up) >= 1)); do
		((SECONDS < deadline)) || die "$name never logged in to $up"
		sleep "$POLL"
	done
}

# stop_node NAME: TERM (KILL after 15 s), and its cache goes.
stop_node() {
	local pid=${PID_OF[$1]} deadline=$((SECONDS + 15))
	kill -TERM "$pid" 2>/dev/null
	while pid_alive "$pid" && ((SECONDS < deadline)); do sleep "$POLL"; done
	pid_alive "$pid" && { echo "$(basename "$0"): $1 ignored SIGTERM; killed" >&2; kill -KILL "$pid"; }
	wait "$pid" 2>/dev/null
	rm -rf "$WORK/cache-$1"
}

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
