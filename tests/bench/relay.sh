#!/usr/bin/env bash
# Relay benchmarks, side by side in one run, reported as ratios (see BENCHMARKS.md):
#   1. warm relay vs its root: iscsi-perf sequential 128 KiB and random 4 KiB, 32 in flight;
#   2. cold whole-image reads through chains root -> R1 -> R2 -> R3 against reading the root
#      directly and against copying the whole image first (and time to the first MiB),
#      on plain loopback (CPU-bound) and on veth links shaped with tbf (1 Gbit/s);
#   3. chunk size study: cold full read and over-fetch / time of a boot-like sparse pattern.
#
# Runs as root. Every node lives in network namespaces this script creates (loopback inside
# them, veth pairs between them); nothing is sent anywhere else. Everything it starts or
# creates (processes, namespaces, veths, files in /dev/shm) is removed on exit, Ctrl-C included.
#
# Knobs (environment):
#   IMAGE_MB=1024         image size in MiB (random data, in /dev/shm)
#   SECONDS_PER_RUN=10    length of each iscsi-perf run
#   REPEATS=2             iscsi-perf rounds (root and relay alternate who goes first)
#   DEPTHS="1 2 3"        chain depths
#   CHUNK_SIZES="64K 128K 256K 512K 1M 2M 4M"
#   RATE=1gbit BURST=128kb TBF_LATENCY=20ms    tbf on every veth (both directions)
#   PARTS="warm chains chunks"   which measurements to run
#   CHAIN_MODES="loopback shaped"
#   VIRTMAN=build/virtman  the binary under test (static musl release build)
#   SEED=42               seed of the boot-like read pattern
#   PATTERN_REPEATS=3     cold pattern runs per chunk size (the median is reported)
#   CHAIN_REPEATS=2       runs of each whole-image read in part 2 (the median is reported)
#   RTT_MODEL="0.2 1 5"   round trips (ms) for the modelled pattern-time columns
#   WAIT_QUIET=           e.g. 1.0: first wait (at most 15 min) until the 1-minute load
#                         average is below this; the box is shared, and others' load is noise
set -uo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VIRTMAN="${VIRTMAN:-$REPO_ROOT/build/virtman}"
IMAGE_MB="${IMAGE_MB:-1024}"
SECONDS_PER_RUN="${SECONDS_PER_RUN:-10}"
REPEATS="${REPEATS:-2}"
DEPTHS="${DEPTHS:-1 2 3}"
CHUNK_SIZES="${CHUNK_SIZES:-64K 128K 256K 512K 1M 2M 4M}"
RATE="${RATE:-1gbit}"
BURST="${BURST:-128kb}"
TBF_LATENCY="${TBF_LATENCY:-20ms}"
PARTS="${PARTS:-warm chains chunks}"
CHAIN_MODES="${CHAIN_MODES:-loopback shaped}"
SEED="${SEED:-42}"
WAIT_QUIET="${WAIT_QUIET:-}"
PATTERN_REPEATS="${PATTERN_REPEATS:-3}"
CHAIN_REPEATS="${CHAIN_REPEATS:-2}"
RTT_MODEL="${RTT_MODEL:-0.2 1 5}"

IQN="iqn.2026-11.org.virtman:bench-relay"
INITIATOR_PREFIX=bench-
READY_TIMEOUT=30
POLL=0.05
MiB=1048576

printf '# command: IMAGE_MB=%s SECONDS_PER_RUN=%s REPEATS=%s DEPTHS=%q CHUNK_SIZES=%q RATE=%s BURST=%s TBF_LATENCY=%s PARTS=%q CHAIN_MODES=%q SEED=%s PATTERN_REPEATS=%s CHAIN_REPEATS=%s RTT_MODEL=%q WAIT_QUIET=%s VIRTMAN=%q %q' \
	"$IMAGE_MB" "$SECONDS_PER_RUN" "$REPEATS" "$DEPTHS" "$CHUNK_SIZES" "$RATE" "$BURST" \
	"$TBF_LATENCY" "$PARTS" "$CHAIN_MODES" "$SEED" "$PATTERN_REPEATS" "$CHAIN_REPEATS" "$RTT_MODEL" "$WAIT_QUIET" "$VIRTMAN" "$0"
(($#)) && printf ' %q' "$@"
printf '\n'

die() {
	echo "relay.sh: $*" >&2
	exit 1
}

if [[ $EUID -ne 0 ]]; then
	echo "skip: needs root (network namespaces, tc)"
	exit 0
fi
for cmd in ip tc curl qemu-img qemu-io iscsi-perf timeout awk numfmt; do
	command -v "$cmd" >/dev/null || { echo "skip: $cmd not installed"; exit 0; }
done
[[ -x $VIRTMAN ]] || die "$VIRTMAN is not built (run 'make')"
((IMAGE_MB >= 64)) || die "IMAGE_MB must be at least 64"
SIZE=$((IMAGE_MB * MiB))
MAXDEPTH=0
for d in $DEPTHS; do ((d > MAXDEPTH)) && MAXDEPTH=$d; done
((MAXDEPTH <= 8)) || die "DEPTHS: at most 8"
CLK_TCK=$(getconf CLK_TCK)

# ---------------------------------------------------------------- bookkeeping and cleanup
WORK=$(mktemp -d /dev/shm/vmbench-relay.XXXXXX) || die "mktemp failed"
mkdir -p "$WORK/logs"
TAG="vr$$"
NAMESPACES=()
ALL_PIDS=()
declare -A PID_OF NS_OF MPORT_OF

# shellcheck source=tests/bench/common.sh
. "$REPO_ROOT/tests/bench/common.sh"

# --------------------------------------------------------------------------- small helpers
ratio() { # ratio A B: A/B with two decimals, "-" when B is 0 or empty
	awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "-"; else printf "%.2f", a / b }'
}
mibs() { # mibs BYTES SECONDS
	awk -v b="$1" -v s="$2" 'BEGIN { if (s + 0 == 0) print "-"; else printf "%.0f", b / 1048576 / s }'
}
since() { # since T0: seconds from EPOCHREALTIME T0 to now
	awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f\n", b - a }'
}
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
bytes_of() { # 64K -> 65536
	numfmt --from=iec "$1"
}

# ------------------------------------------------------------------------------- readers
# Each prints the elapsed seconds; a failed read ends the benchmark.

read_full() { # read_full NS URL: qemu-img reads the whole LUN into a null target
	local t0=$EPOCHREALTIME
	nsx "$1" qemu-img convert -n -f raw "$2" --target-image-opts "driver=null-co,size=$SIZE" \
		>"$WORK/logs/reader.log" 2>&1 || { cat "$WORK/logs/reader.log" >&2; die "read of $2 failed"; }
	since "$t0"
}

copy_full() { # copy_full NS URL OUT: what a user does otherwise: copy the image to local storage
	local t0=$EPOCHREALTIME
	nsx "$1" qemu-img convert -f raw -O raw "$2" "$3" >"$WORK/logs/reader.log" 2>&1 ||
		{ cat "$WORK/logs/reader.log" >&2; die "copy of $2 failed"; }
	since "$t0"
}

first_mib() { # first_mib NS URL: a fresh initiator reads the first MiB (open + login + read)
	local t0=$EPOCHREALTIME
	nsx "$1" qemu-io -r -f raw -c 'read -q 0 1M' "$2" >"$WORK/logs/reader.log" 2>&1 ||
		{ cat "$WORK/logs/reader.log" >&2; die "first MiB of $2 failed"; }
	grep -qi 'error\|fail' "$WORK/logs/reader.log" && { cat "$WORK/logs/reader.log" >&2; die "first MiB of $2 failed"; }
	since "$t0"
}

run_pattern() { # run_pattern NS URL: the boot-like pattern, one synchronous read after another
	local t0=$EPOCHREALTIME
	nsx "$1" qemu-io -r -f raw "$2" <"$WORK/pattern.txt" >"$WORK/logs/pattern.log" 2>&1 ||
		{ tail "$WORK/logs/pattern.log" >&2; die "pattern through $2 failed"; }
	grep -qi 'error\|fail' "$WORK/logs/pattern.log" && { grep -i 'error\|fail' "$WORK/logs/pattern.log" | head >&2; die "pattern through $2 failed"; }
	since "$t0"
}

# perf_run NS URL seq|rand PID: iscsi-perf for SECONDS_PER_RUN; prints "IOPS MiB/s CPU%"
# (CPU% = the server PID's CPU time over the run).
perf_run() {
	local ns=$1 url=$2 mode=$3 pid=$4 args c0 c1 t0 el line iops bs
	if [[ $mode == seq ]]; then args=(-m 32 -b 256); bs=131072; else args=(-m 32 -b 8 -r); bs=4096; fi
	c0=$(cpu_ticks "$pid")
	t0=$EPOCHREALTIME
	line=$(nsx "$ns" timeout --foreground -s INT -k 5 "$SECONDS_PER_RUN" iscsi-perf -i "iqn.2026-11.org.virtman:bench-perf" \
		"${args[@]}" "$url" 2>&1 | tr '\r' '\n' | grep -o 'iops average [0-9]*' | tail -1)
	el=$(since "$t0")
	c1=$(cpu_ticks "$pid")
	iops=${line##* }
	[[ -n $iops ]] || die "iscsi-perf $mode against $url printed no average"
	awk -v i="$iops" -v bs="$bs" -v c=$((c1 - c0)) -v hz="$CLK_TCK" -v el="$el" \
		'BEGIN { printf "%d %.0f %.0f\n", i, i * bs / 1048576, 100 * c / hz / el }'
}

# ------------------------------------------------------------------------- the test data
manifest_for() { # manifest_for CHUNK: path of the manifest with that chunk size (made once)
	local cs=$1 out="$WORK/m-$1.manifest"
	if [[ ! -f $out ]]; then
		"$VIRTMAN" manifest "$WORK/image.raw" -o "$out" --chunk-size "$(bytes_of "$cs")" ||
			die "manifest --chunk-size $cs failed"
	fi
	echo "$out"
}

# The boot-like pattern: deterministic (awk srand(SEED)), scaled to the image size.
# 1. bootloader: kernel + initrd, 40 MiB contiguous near the start, read 128 KiB at a time;
# 2. root filesystem: 360 files (per GiB) in 24 clusters (directories allocated in nearby
#    block groups, +-16 MiB around a random centre), each preceded by 1-3 4 KiB reads of its
#    group's inode table, then its header page and 30-100 % of its pages in 4-128 KiB reads
#    with holes (pages nobody touches); file sizes log-uniform 16-768 KiB.
# Prints "reads total_bytes unique_bytes files clusters" on stderr.
make_pattern() {
	awk -v seed="$SEED" -v S="$SIZE" '
	function al(x) { return int(x / 4096) * 4096 }
	function emit(o, len,   b) {
		if (o < 0) o = 0
		if (o + len > S) o = S - len
		o = al(o)
		printf "read -q %d %d\n", o, len
		nreads++; total += len
		for (b = o / 4096; b < (o + len) / 4096; b++) if (!(b in seen)) { seen[b] = 1; uniq += 4096 }
	}
	BEGIN {
		srand(seed)
		M = 1048576; K = 1024
		f = S / (1024 * M)
		kstart = al(S * 0.01); klen = int(40 * M * f / (128 * K)) * 128 * K
		for (o = kstart; o < kstart + klen; o += 128 * K) emit(o, 128 * K)
		nclusters = int(24 * f); if (nclusters < 4) nclusters = 4
		spread = 16 * M * f
		for (c = 1; c <= nclusters; c++) {
			center[c] = S * (0.08 + 0.88 * rand())
			meta[c] = center[c] - spread - 2 * M * f
		}
		nfiles = int(360 * f); if (nfiles < 20) nfiles = 20
		split("4096 16384 32768 65536 131072", rs, " ")
		for (i = 0; i < nfiles; i++) {
			c = 1 + int(rand() * nclusters)
			nmeta = 1 + int(rand() * 3)
			for (k = 0; k < nmeta; k++) emit(meta[c] + rand() * 2 * M * f, 4096)
			fsize = al(16 * K * exp(rand() * log(48))) + 4096
			fo = center[c] + (rand() * 2 - 1) * spread
			emit(fo, 4096)
			want = fsize * (0.3 + 0.7 * rand()); got = 4096; p = 4096
			while (got < want && p < fsize) {
				if (rand() < 0.3) p += al(4 * K + rand() * 60 * K)
				len = rs[1 + int(rand() * 5)]
				if (p + len > fsize) len = al(fsize - p)
				if (len <= 0) break
				emit(fo + p, len); p += len; got += len
			}
		}
		printf "%d %d %d %d %d\n", nreads, total, uniq, nfiles, nclusters > "/dev/stderr"
	}' >"$WORK/pattern.txt" 2>"$WORK/pattern.stats"
}

# pattern_chunks CS: "BYTES WAITS": the chunks the pattern touches times CS (the least a relay
# must fetch), and how many of its reads find a chunk not yet fetched (in order, one at a time).
pattern_chunks() {
	awk -v cs="$1" '{
		miss = 0
		for (c = int($3 / cs); c <= int(($3 + $4 - 1) / cs); c++) if (!(c in t)) { t[c] = 1; n++; miss = 1 }
		w += miss
	} END { printf "%.0f %d\n", n * cs, w }' "$WORK/pattern.txt"
}

# ------------------------------------------------------------------------------- topology
# loopback: one namespace, every node on its own port of 127.0.0.1 (CPU-bound).
# shaped: node i in namespace n<i>; link i joins n<i-1> (10.213.i.1) and n<i> (10.213.i.2),
#   tbf on both ends. A reader runs on the node it reads from (like a VM on that host).
declare -A NODE_NS NODE_PORT UP_URL ROOT_READER_NS ROOT_URL

setup_loopback() {
	local ns="vmbench-relay-$$-lo" i
	ip netns add "$ns" || die "cannot create namespace $ns"
	NAMESPACES+=("$ns")
	ip -n "$ns" link set lo up
	for ((i = 0; i <= MAXDEPTH; i++)); do
		NODE_NS[loopback,$i]=$ns
		NODE_PORT[loopback,$i]=$((3260 + i))
		((i > 0)) && UP_URL[loopback,$i]="iscsi://127.0.0.1:$((3260 + i - 1))/$IQN/0"
	done
	ROOT_READER_NS[loopback]=$ns
	ROOT_URL[loopback]="iscsi://127.0.0.1:3260/$IQN/0"
}

setup_shaped() {
	local i ns prev up down
	for ((i = 0; i <= MAXDEPTH; i++)); do
		ns="vmbench-relay-$$-n$i"
		ip netns add "$ns" || die "cannot create namespace $ns"
		NAMESPACES+=("$ns")
		ip -n "$ns" link set lo up
		NODE_NS[shaped,$i]=$ns
		NODE_PORT[shaped,$i]=3260
		if ((i > 0)); then
			prev="vmbench-relay-$$-n$((i - 1))"
			up="${TAG}u$i"
			down="${TAG}d$i"
			ip link add "$up" netns "$prev" type veth peer name "$down" netns "$ns" ||
				die "cannot create veth $up/$down"
			ip -n "$prev" addr add "10.213.$i.1/24" dev "$up"
			ip -n "$ns" addr add "10.213.$i.2/24" dev "$down"
			ip -n "$prev" link set "$up" up
			ip -n "$ns" link set "$down" up
			tc -n "$prev" qdisc add dev "$up" root tbf rate "$RATE" burst "$BURST" latency "$TBF_LATENCY" ||
				die "tc tbf failed"
			tc -n "$ns" qdisc add dev "$down" root tbf rate "$RATE" burst "$BURST" latency "$TBF_LATENCY" ||
				die "tc tbf failed"
			UP_URL[shaped,$i]="iscsi://10.213.$i.1:3260/$IQN/0"
		fi
	done
	ROOT_READER_NS[shaped]=${NODE_NS[shaped,1]}
	ROOT_URL[shaped]="iscsi://10.213.1.1:3260/$IQN/0"
}

local_url() { # local_url MODE I: node I seen from its own namespace
	echo "iscsi://127.0.0.1:${NODE_PORT[$1,$2]}/$IQN/0"
}

root_running() {
	[[ -n ${PID_OF[ROOT]:-} ]] && pid_alive "${PID_OF[ROOT]}"
}

# ensure_root MODE: the root of that topology runs (and no other root).
ensure_root() {
	if root_running; then
		[[ ${NS_OF[ROOT]} == "${NODE_NS[$1,0]}" ]] && return
		stop_node ROOT
	fi
	start_node ROOT "${NODE_NS[$1,0]}" "${NODE_PORT[$1,0]}" 9100 "$WORK/image.raw"
}

# chain_start MODE DEPTH MANIFEST: fresh relays R1..R<DEPTH>, each with one upstream.
chain_start() {
	local i
	for ((i = 1; i <= $2; i++)); do
		start_relay "R$i" "${NODE_NS[$1,$i]}" "${NODE_PORT[$1,$i]}" $((9100 + i)) "$3" "${UP_URL[$1,$i]}"
	done
}

chain_stop() {
	local i
	for ((i = $1; i >= 1; i--)); do stop_node "R$i"; done
}

# Checks after a cold full read through R1..R<DEPTH>: each fetched the image exactly once,
# nothing failed verification.
chain_check() {
	local i fetched vf
	for ((i = 1; i <= $1; i++)); do
		fetched=$(metric "R$i" virtman_upstream_bytes_total)
		vf=$(metric "R$i" virtman_verify_failures_total)
		((vf == 0)) || die "R$i: $vf verify failures"
		((fetched == SIZE)) || echo "note: R$i fetched $fetched bytes for an image of $SIZE" >&2
	done
}

chain_cpu() { # "a/b/c" CPU seconds of R1..R<DEPTH> since they started
	local i out=
	for ((i = 1; i <= $1; i++)); do
		out+="${out:+/}$(awk -v t="$(cpu_ticks "${PID_OF[R$i]}")" -v hz="$CLK_TCK" 'BEGIN { printf "%.1f", t / hz }')"
	done
	echo "$out"
}


# ---------------------------------------------------------------------------------- start
if [[ -n $WAIT_QUIET ]]; then
	deadline=$((SECONDS + 900))
	until awk -v l="$(cut -d' ' -f1 /proc/loadavg)" -v q="$WAIT_QUIET" 'BEGIN { exit !(l < q) }'; do
		((SECONDS < deadline)) || { echo "# the load average stayed above $WAIT_QUIET for 15 min; running anyway"; break; }
		sleep 5
	done
fi
echo "# date: $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "# machine: $(nproc) cores, $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo), kernel $(uname -r), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM"
echo "# load average at start: $(loadavg) (this box is shared: other work running meanwhile is noise)"
echo "# virtman: $VIRTMAN ($(stat -c %s "$VIRTMAN") bytes, built $(date -u -r "$VIRTMAN" '+%Y-%m-%d %H:%M UTC'))"
echo "# image: $IMAGE_MB MiB of random data in /dev/shm; relay caches in /dev/shm; MiB/s = 2^20 bytes/s"
T_START=$SECONDS

head -c "$SIZE" /dev/urandom >"$WORK/image.raw" || die "cannot write the image"
t0=$EPOCHREALTIME
M1=$(manifest_for 1M) || exit 1
t=$(since "$t0")
echo "# virtman manifest (SHA-256 of the whole image, 1 MiB chunks): $t s = $(mibs "$SIZE" "$t") MiB/s on one core; every relay hashes each chunk it fetches at about this speed"
make_pattern
read -r P_READS P_TOTAL P_UNIQ P_FILES P_CLUSTERS <"$WORK/pattern.stats"
echo "# boot-like pattern (seed $SEED): $P_READS reads, $(mibs "$P_TOTAL" 1) MiB requested, $(mibs "$P_UNIQ" 1) MiB distinct ($(awk -v u="$P_UNIQ" -v s="$SIZE" 'BEGIN { printf "%.1f", 100 * u / s }') % of the image), $P_FILES files in $P_CLUSTERS clusters + 40 MiB kernel/initrd per GiB"

[[ " $PARTS " == *" warm "* || " $CHAIN_MODES " == *" loopback "* ]] && setup_loopback
[[ " $CHAIN_MODES " == *" shaped "* || " $PARTS " == *" chunks "* ]] && setup_shaped

# ------------------------------------------------------------- 1. warm relay vs its root
if [[ " $PARTS " == *" warm "* ]]; then
	echo
	echo "== 1. Warm relay vs its root (loopback, one namespace; iscsi-perf -m 32, $SECONDS_PER_RUN s per run, $REPEATS rounds) [load $(loadavg)]"
	ensure_root loopback
	start_relay R1 "${NODE_NS[loopback,1]}" "${NODE_PORT[loopback,1]}" 9101 "$M1" "${UP_URL[loopback,1]}"
	ns=${NODE_NS[loopback,0]}
	t=$(read_full "$ns" "$(local_url loopback 1)") || exit 1
	present=$(metric R1 virtman_cache_chunks_present)
	total=$(metric R1 virtman_cache_chunks)
	((present == total)) || die "R1 holds $present of $total chunks after the warm-up read"
	echo "warm-up: whole image through the cold relay in $t s ($(mibs "$SIZE" "$t") MiB/s); cache full ($present chunks)"
	declare -A RES WARM_RATIO
	for ((rep = 1; rep <= REPEATS; rep++)); do
		if ((rep % 2)); then order=(root relay); else order=(relay root); fi
		for mode in seq rand; do
			for who in "${order[@]}"; do
				if [[ $who == root ]]; then
					RES[$who,$mode,$rep]=$(perf_run "$ns" "$(local_url loopback 0)" "$mode" "${PID_OF[ROOT]}") || exit 1
				else
					RES[$who,$mode,$rep]=$(perf_run "$ns" "$(local_url loopback 1)" "$mode" "${PID_OF[R1]}") || exit 1
				fi
			done
		done
	done
	misses_after=$(metric R1 virtman_cache_misses_total)
	printf '\n%-22s %5s | %9s %8s %5s | %9s %8s %5s | %s\n' "workload" "round" "root IOPS" "MiB/s" "CPU%" \
		"relay IOPS" "MiB/s" "CPU%" "relay/root"
	for mode in seq rand; do
		label="sequential 128 KiB"; [[ $mode == rand ]] && label="random 4 KiB"
		sr=0; sl=0
		for ((rep = 1; rep <= REPEATS; rep++)); do
			read -r ri rm rc <<<"${RES[root,$mode,$rep]}"
			read -r li lm lc <<<"${RES[relay,$mode,$rep]}"
			sr=$((sr + ri)); sl=$((sl + li))
			printf '%-22s %5s | %9s %8s %5s | %10s %7s %5s | %s\n' "$label" "$rep" "$ri" "$rm" "$rc" "$li" "$lm" "$lc" "$(ratio "$li" "$ri")"
		done
		WARM_RATIO[$mode]=$(ratio "$sl" "$sr")
		printf '%-22s %5s | %9s %8s %5s | %10s %7s %5s | %s\n' "$label" "mean" "$((sr / REPEATS))" \
			"$(awk -v i=$((sr / REPEATS)) -v m="$mode" 'BEGIN { printf "%.0f", i * (m == "seq" ? 131072 : 4096) / 1048576 }')" "" \
			"$((sl / REPEATS))" \
			"$(awk -v i=$((sl / REPEATS)) -v m="$mode" 'BEGIN { printf "%.0f", i * (m == "seq" ? 131072 : 4096) / 1048576 }')" "" \
			"${WARM_RATIO[$mode]}"
	done
	echo "relay cache misses during the runs: $((misses_after - total)) (expected 0: the warm-up missed each chunk once)"
	echo "ratio relay/root (goal >= 0.9): sequential ${WARM_RATIO[seq]}, random ${WARM_RATIO[rand]}"
	stop_node R1
fi

# ------------------------------------------------- 2. cold full reads through chains
declare -A CH
if [[ " $PARTS " == *" chains "* ]]; then
	for mode in $CHAIN_MODES; do
		echo
		if [[ $mode == loopback ]]; then
			echo "== 2(i). Cold whole-image reads through chains, plain loopback (all nodes on 127.0.0.1 in one namespace: CPU-bound, $(nproc) cores) [load $(loadavg)]"
		else
			echo "== 2(ii). Cold whole-image reads through chains, one namespace per node, veth links shaped with tbf rate $RATE burst $BURST latency $TBF_LATENCY (no added delay: netem is not available) [load $(loadavg)]"
		fi
		ensure_root "$mode"
		rns=${ROOT_READER_NS[$mode]}
		rurl=${ROOT_URL[$mode]}
		fms=() roots=() copies=()
		for ((k = 0; k < CHAIN_REPEATS; k++)); do
			t=$(first_mib "$rns" "$rurl") || exit 1
			fms+=("$t")
			t=$(read_full "$rns" "$rurl") || exit 1
			roots+=("$t")
			t=$(copy_full "$rns" "$rurl" "$WORK/copy.raw") || exit 1
			copies+=("$t")
			cmp -s "$WORK/image.raw" "$WORK/copy.raw" || die "the copy differs from the image"
			rm -f "$WORK/copy.raw"
		done
		t_fm_root=$(printf '%s\n' "${fms[@]}" | sort -g | head -1)
		t_root=$(printf '%s\n' "${roots[@]}" | median)
		t_copy=$(printf '%s\n' "${copies[@]}" | median)
		CH[$mode,root]=$t_root
		CH[$mode,copy]=$t_copy
		printf '\n%-32s %8s %6s %8s %8s %9s  %-22s %s\n' "reader of the whole image" "time s" "MiB/s" "vs root" "vs copy" "1st MiB ms" "runs (s)" "relay CPU s (R1/R2/..)"
		printf '%-32s %8s %6s %8s %8s %9s  %-22s\n' "root directly (one link)" "$t_root" "$(mibs "$SIZE" "$t_root")" "1.00" \
			"$(ratio "$t_root" "$t_copy")" "$(fmt "$t_fm_root * 1000" 1)" "$(IFS=/; echo "${roots[*]}")"
		printf '%-32s %8s %6s %8s %8s %9s  %-22s\n' "copy whole image to local file" "$t_copy" "$(mibs "$SIZE" "$t_copy")" \
			"$(ratio "$t_copy" "$t_root")" "1.00" "$(fmt "$t_copy * 1000" 0)" "$(IFS=/; echo "${copies[*]}")"
		for d in $DEPTHS; do
			fms=() fulls=()
			for ((k = 0; k < CHAIN_REPEATS; k++)); do
				chain_start "$mode" "$d" "$M1"
				t=$(first_mib "${NODE_NS[$mode,$d]}" "$(local_url "$mode" "$d")") || exit 1
				fms+=("$t")
				chain_stop "$d"
				chain_start "$mode" "$d" "$M1"
				t=$(read_full "${NODE_NS[$mode,$d]}" "$(local_url "$mode" "$d")") || exit 1
				fulls+=("$t")
				chain_check "$d"
				cpu=$(chain_cpu "$d")
				chain_stop "$d"
			done
			t=$(printf '%s\n' "${fulls[@]}" | median)
			t_fm=$(printf '%s\n' "${fms[@]}" | sort -g | head -1)
			CH[$mode,$d]=$t
			CH[$mode,fm,$d]=$t_fm
			printf '%-32s %8s %6s %8s %8s %9s  %-22s %s\n' "cold relay chain, depth $d" "$t" "$(mibs "$SIZE" "$t")" \
				"$(ratio "$t" "$t_root")" "$(ratio "$t" "$t_copy")" "$(fmt "$t_fm * 1000" 1)" "$(IFS=/; echo "${fulls[*]}")" "$cpu"
		done
		echo "(time: median of $CHAIN_REPEATS runs, each on fresh caches. vs root / vs copy: time ratios, lower is better."
		echo " 1st MiB: a fresh qemu-io opening the LUN and reading 1 MiB at offset 0 (best of $CHAIN_REPEATS); for the copy it is the whole"
		echo " copy, after which a VM could start. relay CPU: user+sys seconds of each relay during the last full read.)"
		for d in $DEPTHS; do
			echo "  depth $d: a VM can start after $(fmt "${CH[$mode,fm,$d]} * 1000" 1) ms instead of $(fmt "$t_copy * 1000" 0) ms (x$(ratio "$t_copy" "${CH[$mode,fm,$d]}") sooner); whole image read in $(ratio "${CH[$mode,$d]}" "$t_root") x the direct time"
		done
	done
fi

# ----------------------------------------------------------------------- 3. chunk size

if [[ " $PARTS " == *" chunks "* ]]; then
	echo
	echo "== 3. Chunk size: one relay R1 (namespace n1) of the root (n0) over one link shaped to $RATE; readers on R1's host [load $(loadavg)]"
	ensure_root shaped
	ns1=${NODE_NS[shaped,1]}
	url1=$(local_url shaped 1)
	t_pat_root=$(for ((k = 0; k < PATTERN_REPEATS; k++)); do run_pattern "$ns1" "${ROOT_URL[shaped]}" || exit 1; done | median) || exit 1
	t_full_root=$(read_full "$ns1" "${ROOT_URL[shaped]}") || exit 1
	echo "pattern: $P_READS synchronous reads (qemu-io), $(mibs "$P_UNIQ" 1) MiB distinct; over-fetch = bytes R1 fetched upstream / distinct bytes the pattern asked for"
	echo "reference, no relay (reading the root over the link): full read $t_full_root s ($(mibs "$SIZE" "$t_full_root") MiB/s), pattern $t_pat_root s (median of $PATTERN_REPEATS)"
	mhdr=
	for r in $RTT_MODEL; do mhdr+=$(printf ' %9s' "+${r}ms RTT"); done
	printf '\n%6s %6s %8s %7s %6s | %9s %15s %8s %6s %6s %6s %7s |%s | %s\n' "chunk" "chunks" "manifest" "full s" "MiB/s" \
		"pattern s" "(min-max)" "fetch MiB" "o-f" "ideal" "waits" "warm s" "$mhdr" "R1 CPU s"
	declare -A CS
	for cs in $CHUNK_SIZES; do
		csb=$(bytes_of "$cs")
		man=$(manifest_for "$cs") || exit 1
		nchunks=$(awk '$1 == "chunks" { print $2 }' "$man")
		mansize=$(stat -c %s "$man")
		# (b) the boot-like pattern on a cold relay, PATTERN_REPEATS times (a fresh cache each)
		times=()
		for ((k = 0; k < PATTERN_REPEATS; k++)); do
			start_relay R1 "$ns1" 3260 9101 "$man" "${UP_URL[shaped,1]}"
			t=$(run_pattern "$ns1" "$url1") || exit 1
			times+=("$t")
			fetched=$(metric R1 virtman_upstream_bytes_total)
			stop_node R1
		done
		t_pat=$(printf '%s\n' "${times[@]}" | median)
		range="$(printf '%s\n' "${times[@]}" | sort -g | head -1)-$(printf '%s\n' "${times[@]}" | sort -g | tail -1)"
		# (a) the whole image on a cold relay; then the pattern once more, on the warm relay
		start_relay R1 "$ns1" 3260 9101 "$man" "${UP_URL[shaped,1]}"
		t_full=$(read_full "$ns1" "$url1") || exit 1
		chain_check 1
		cpu=$(chain_cpu 1)
		t_warm=$(run_pattern "$ns1" "$url1") || exit 1
		stop_node R1
		read -r ideal waits < <(pattern_chunks "$csb")
		CS[$cs,full]=$t_full
		CS[$cs,pat]=$t_pat
		CS[$cs,of]=$(ratio "$fetched" "$P_UNIQ")
		CS[$cs,waits]=$waits
		mcols=
		for r in $RTT_MODEL; do
			CS[$cs,m$r]=$(awk -v t="$t_pat" -v w="$waits" -v r="$r" 'BEGIN { printf "%.2f", t + w * r / 1000 }')
			mcols+=$(printf ' %9s' "${CS[$cs,m$r]}")
		done
		printf '%6s %6s %7sK %7s %6s | %9s %15s %8s %6s %6s %6s %7s |%s | %s\n' "$cs" "$nchunks" "$((mansize / 1024))" \
			"$t_full" "$(mibs "$SIZE" "$t_full")" "$t_pat" "$range" "$(mibs "$fetched" 1)" "${CS[$cs,of]}" \
			"$(ratio "$ideal" "$P_UNIQ")" "$waits" "$t_warm" "$mcols" "$cpu"
	done
	echo "(full s: cold whole-image read through R1. pattern s: median time of the boot-like pattern on a cold R1."
	echo " o-f: over-fetch measured (R1's upstream bytes / distinct bytes asked); ideal: the same if only the chunks the pattern"
	echo " touches were fetched. waits: reads that find a chunk missing (each waits for at least one fetch). warm s: the pattern"
	echo " once R1 holds everything. +N ms RTT: a MODEL, not a measurement: pattern s + waits x N ms, what each wait would add"
	echo " on a link with that round trip (these links add none: tbf only, netem is not available).)"
	# The pick: least pattern time among chunk sizes whose full read is within 10 % of the best.
	best_full=$(for cs in $CHUNK_SIZES; do echo "${CS[$cs,full]}"; done | sort -g | head -1)
	pick_by() { # pick_by KEY: least CS[cs,KEY] among chunk sizes with a full read within 10 % of the best
		local cs p=
		for cs in $CHUNK_SIZES; do
			awk -v f="${CS[$cs,full]}" -v b="$best_full" 'BEGIN { exit !(f <= 1.1 * b) }' || continue
			if [[ -z $p ]] || awk -v a="${CS[$cs,$1]}" -v b="${CS[$p,$1]}" 'BEGIN { exit !(a < b) }'; then
				p=$cs
			fi
		done
		echo "$p"
	}
	pick=$(pick_by pat)
	echo "best full read: $best_full s; least pattern time (full read within 10 % of the best): $pick" \
		"(pattern ${CS[$pick,pat]} s, over-fetch ${CS[$pick,of]}, full read ${CS[$pick,full]} s)"
	for r in $RTT_MODEL; do
		p=$(pick_by "m$r")
		echo "  modelled with a ${r} ms round trip per wait: $p (${CS[$p,m$r]} s, over-fetch ${CS[$p,of]})"
	done
fi

echo
echo "# load average at end: $(loadavg); total run time $((SECONDS - T_START)) s"
