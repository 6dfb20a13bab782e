#!/usr/bin/env bash
# Benchmarks `virtman export` (build/virtman, the musl release binary) against tgt serving the same
# file, side by side in one run, with libiscsi's iscsi-perf: sequential 128 KiB and random 4 KiB
# reads at 32 in flight. Prints a table with the virtman/tgt ratio.
# usage: tests/bench/target.sh          (root; env: BENCH_SECONDS=10 BENCH_IMAGE_MIB=1024 VIRTMAN=...)
set -euo pipefail

cd "$(dirname "$0")/../.."
VIRTMAN="${VIRTMAN:-build/virtman}"
SECONDS_PER_RUN="${BENCH_SECONDS:-10}"
IMAGE_MIB="${BENCH_IMAGE_MIB:-1024}"
INFLIGHT=32
INITIATOR=iqn.2026-11.org.virtman:bench
IQN_VIRTMAN=iqn.2026-11.org.virtman:bench-virtman
IQN_TGT=iqn.2026-11.org.virtman:bench-tgt
READY_TIMEOUT=30

echo "command: BENCH_SECONDS=$SECONDS_PER_RUN BENCH_IMAGE_MIB=$IMAGE_MIB tests/bench/target.sh"
echo "each run: timeout -s INT $((SECONDS_PER_RUN + 30)) iscsi-perf -i $INITIATOR -m $INFLIGHT -b BLOCKS [-r] -t $SECONDS_PER_RUN iscsi://127.0.0.1:PORT/IQN/LUN"

if [[ $EUID -ne 0 ]]; then
	echo "skip: tgtd needs root; run as root to compare virtman with tgt"
	exit 0
fi
for cmd in iscsi-perf tgtd tgtadm python3; do
	command -v "$cmd" >/dev/null || { echo "skip: $cmd not installed"; exit 0; }
done
[[ -x $VIRTMAN ]] || { echo "$VIRTMAN is not built (run 'make')" >&2; exit 1; }

# Prints a TCP port the kernel just handed out as free on 127.0.0.1.
free_port() {
	python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# wait_until DEADLINE_S CMD...: polls CMD until it succeeds; 1 at the deadline.
wait_until() {
	local deadline=$((SECONDS + $1))
	shift
	until "$@" >/dev/null 2>&1; do
		((SECONDS < deadline)) || return 1
		sleep 0.05
	done
}

listening() {
	(exec 9<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

work=$(mktemp -d)
shm_free_mib=$(df -Pm /dev/shm 2>/dev/null | awk 'NR == 2 { print $4 }')
if [[ -n $shm_free_mib ]] && ((shm_free_mib > IMAGE_MIB + 256)); then
	image_dir=$(mktemp -d /dev/shm/virtman-bench.XXXXXX)
else
	image_dir=$work
fi
image="$image_dir/bench.img"
virtman_pid="" tgt_pid="" tgt_control=""

cleanup() {
	if [[ -n $virtman_pid ]]; then
		kill -TERM "$virtman_pid" 2>/dev/null || true
		wait "$virtman_pid" 2>/dev/null || true
	fi
	if [[ -n $tgt_control ]]; then
		tgtadm -C "$tgt_control" --lld iscsi --op delete --mode target --tid 1 --force >/dev/null 2>&1 || true
		tgtadm -C "$tgt_control" --op delete --mode system >/dev/null 2>&1 || true
	fi
	if [[ -n $tgt_pid ]]; then
		wait_until 10 bash -c "! kill -0 $tgt_pid" || kill -KILL "$tgt_pid" 2>/dev/null || true
		wait "$tgt_pid" 2>/dev/null || true
		rm -f "/var/run/tgtd/socket.$tgt_control" "/var/run/tgtd/socket.$tgt_control.lock"
	fi
	rm -rf "$work" "$image_dir"
}
trap cleanup EXIT

head -c "$((IMAGE_MIB * 1024 * 1024))" /dev/urandom >"$image"
cat "$image" >/dev/null	# page cache warm for both targets

port_virtman=$(free_port)
"$VIRTMAN" export "$image" --listen "127.0.0.1:$port_virtman" --iqn "$IQN_VIRTMAN" 2>"$work/virtman.log" &
virtman_pid=$!
wait_until "$READY_TIMEOUT" listening "$port_virtman" || { cat "$work/virtman.log" >&2; exit 1; }

port_tgt=$(free_port)
tgt_control=$((port_tgt % 31000 + 1000))	# tgtd's -C is a unix socket suffix, at most 32767
mkdir -p /var/run/tgtd
tgtd -f -C "$tgt_control" --iscsi "portal=127.0.0.1:$port_tgt" >"$work/tgtd.log" 2>&1 &
tgt_pid=$!
wait_until "$READY_TIMEOUT" tgtadm -C "$tgt_control" --lld iscsi --mode target --op show ||
	{ cat "$work/tgtd.log" >&2; exit 1; }
tgtadm -C "$tgt_control" --lld iscsi --op new --mode target --tid 1 --targetname "$IQN_TGT"
tgtadm -C "$tgt_control" --lld iscsi --op new --mode logicalunit --tid 1 --lun 1 --backing-store "$image"
tgtadm -C "$tgt_control" --lld iscsi --op update --mode logicalunit --tid 1 --lun 1 --params readonly=1
tgtadm -C "$tgt_control" --lld iscsi --op bind --mode target --tid 1 --initiator-address ALL
wait_until "$READY_TIMEOUT" listening "$port_tgt" || { cat "$work/tgtd.log" >&2; exit 1; }

# perf URL BLOCKS [-r]: prints the IOPS average iscsi-perf reports at the end of its run.
perf() {
	local url=$1 blocks=$2 out iops
	shift 2
	out=$(timeout -s INT $((SECONDS_PER_RUN + 30)) iscsi-perf -i "$INITIATOR" -m "$INFLIGHT" -b "$blocks" "$@" \
		-t "$SECONDS_PER_RUN" "$url" 2>&1 | tr '\r' '\n') || true
	iops=$(grep -o 'iops average [0-9]*' <<<"$out" | tail -n 1 | awk '{ print $3 }')
	if [[ -z $iops ]]; then
		echo "iscsi-perf against $url gave no average:" >&2
		echo "$out" | tail -n 5 >&2
		exit 1
	fi
	echo "$iops"
}

printf '\n%-24s %12s %10s %12s %10s %8s\n' workload "virtman MiB/s" IOPS "tgt MiB/s" IOPS ratio
for workload in "seq-128KiB 256" "rand-4KiB 8 -r"; do
	read -r name blocks flag <<<"$workload"
	v=$(perf "iscsi://127.0.0.1:$port_virtman/$IQN_VIRTMAN/0" "$blocks" ${flag:+"$flag"})
	t=$(perf "iscsi://127.0.0.1:$port_tgt/$IQN_TGT/1" "$blocks" ${flag:+"$flag"})
	awk -v n="$name" -v b="$blocks" -v v="$v" -v t="$t" 'BEGIN {
		printf "%-24s %12.1f %10d %12.1f %10d %8s\n", n, v * b * 512 / 1048576, v,
			t * b * 512 / 1048576, t, (t > 0 ? sprintf("%.2f", v / t) : "n/a") }'
done
echo "(in flight $INFLIGHT, $SECONDS_PER_RUN s per run, image ${IMAGE_MIB} MiB at $image_dir, both on 127.0.0.1)"
kill -0 "$virtman_pid" || { echo "virtman export died during the benchmark" >&2; exit 1; }
