#!/usr/bin/env bash
# Boot time of one images/debian VM through relay chains, against the same VM booted from a
# local copy of the image (see BENCHMARKS.md, "Booting images/debian through relay chains"):
#
#   root (namespace n0: `virtman export IMAGE`) -> R1 (n1) -> R2 (n2) -> R3 (n3), one veth
#   link between neighbours, shaped with tbf on both ends; relay caches 256 KiB chunks.
#
#   - local: copy the image to n1 (one link from the root), then boot the VM on a qcow2 overlay
#     over the copy. Two copies are timed: `qemu-img convert` of the root's LUN (iSCSI, all
#     2 GiB cross the link: zeros included) and `tar --sparse` streamed over one TCP
#     connection (only the allocated extents cross: the best a plain copy does). Reported:
#     the boot alone, and copy + boot.
#   - direct: the VM in n1 on an overlay over the root's LUN itself, no relay (a diskless host
#     reading the seed directly).
#   - depth d = 1, 2, 3: relays R1..Rd with empty caches; the VM runs in Rd's namespace on a
#     fresh qcow2 overlay whose backing file is Rd's LUN over QEMU's own iSCSI client
#     (iscsi://127.0.0.1:3260/IQN/0), as a host's VMs read the shared base. "cold": the first
#     boot through the fresh chain; "warm": a second VM (new overlay) through the same,
#     still-running relays.
#
# Boot time = QEMU start until the image's marker line ("virtman-vm-up NAME", printed on
# ttyS0 by a unit ordered after multi-user.target) appears in the serial log (polled every
# 0.1 s, BOOT_TIMEOUT deadline); the getty's "login:" comes a moment later and is reported
# too. Also recorded: QEMU's own CPU time until the marker (under TCG, the guest's CPU work),
# the boot working set (bytes the VM's target, the last relay, served to QEMU until the marker:
# `virtman_served_bytes_total` on its /metrics), what the guest read from its disk (QMP), and
# the bytes the root served meanwhile (root's /metrics). For every cold chain it checks that
# each relay fetched exactly the bytes the root served and that the root served the chunks Rd
# holds exactly once (the working set rounded up to chunks), not d times.
#
# Runs as root. Every node lives in network namespaces this script creates (loopback inside
# them, veth pairs between them); nothing is sent anywhere else. Everything it starts or
# creates (processes, namespaces, veths, files in /dev/shm) is removed on exit, Ctrl-C included.
#
# Knobs (environment):
#   IMAGE=build/images/debian.img   the VM image (make images-debian); copied (sparse) to /dev/shm
#   DEPTHS="1 2 3"        chain depths
#   REPEATS=3             rounds of everything (medians are reported); a round copies the
#                         image twice and boots the VM 2 + 2 x (number of depths) times
#                         (~20-25 s each under TCG here: ~4 min a round with the defaults)
#   RATE=1gbit BURST=128kb TBF_LATENCY=20ms    tbf on every veth, both ends (RATE=none: unshaped)
#   CHUNK_SIZE=256K       relay chunk size (virtman manifest --chunk-size)
#   MEMORY=1024           VM memory (MiB)
#   QEMU_ACCEL=tcg        (KVM does not work on these machines)
#   MARKER=virtman-vm-up  the boot-done line is "MARKER NAME"
#   BOOT_TIMEOUT=900      seconds per boot before giving up
#   VIRTMAN=build/virtman the binary under test (copied aside at the start, so a rebuild
#                         during the run cannot swap it)
#   WAIT_QUIET=           e.g. 1.0: first wait (at most 15 min) until the 1-minute load average
#                         is below this; the box is shared, and others' load is noise
set -uo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
IMAGE="${IMAGE:-$REPO_ROOT/build/images/debian.img}"
VIRTMAN="${VIRTMAN:-$REPO_ROOT/build/virtman}"
DEPTHS="${DEPTHS:-1 2 3}"
REPEATS="${REPEATS:-3}"
RATE="${RATE:-1gbit}"
BURST="${BURST:-128kb}"
TBF_LATENCY="${TBF_LATENCY:-20ms}"
CHUNK_SIZE="${CHUNK_SIZE:-256K}"
MEMORY="${MEMORY:-1024}"
QEMU_ACCEL="${QEMU_ACCEL:-tcg}"
MARKER="${MARKER:-virtman-vm-up}"
BOOT_TIMEOUT="${BOOT_TIMEOUT:-900}"
WAIT_QUIET="${WAIT_QUIET:-}"

IQN="iqn.2026-11.org.virtman:bench-vmboot"
INITIATOR_PREFIX=bench-vmboot-
READY_TIMEOUT=30
POLL=0.05
BOOT_POLL=0.1
NET=10.216        # link i: $NET.i.1 (upstream end, namespace n<i-1>) -- $NET.i.2 (n<i>)
TAR_PORT=5000

printf '# command: DEPTHS=%q REPEATS=%s RATE=%s BURST=%s TBF_LATENCY=%s CHUNK_SIZE=%s MEMORY=%s QEMU_ACCEL=%s MARKER=%s BOOT_TIMEOUT=%s WAIT_QUIET=%s IMAGE=%q VIRTMAN=%q %q' \
	"$DEPTHS" "$REPEATS" "$RATE" "$BURST" "$TBF_LATENCY" "$CHUNK_SIZE" "$MEMORY" "$QEMU_ACCEL" \
	"$MARKER" "$BOOT_TIMEOUT" "$WAIT_QUIET" "$IMAGE" "$VIRTMAN" "$0"
(($#)) && printf ' %q' "$@"
printf '\n'

die() {
	echo "vmboot.sh: $*" >&2
	exit 1
}

if [[ $EUID -ne 0 ]]; then
	echo "skip: needs root (network namespaces, tc)"
	exit 0
fi
for cmd in ip tc curl qemu-img qemu-system-x86_64 python3 tar cmp awk numfmt; do
	command -v "$cmd" >/dev/null || { echo "skip: $cmd not installed"; exit 0; }
done
[[ -x $VIRTMAN ]] || die "$VIRTMAN is not built (run 'make')"
[[ -r $IMAGE ]] || { echo "skip: $IMAGE missing (make images-debian)"; exit 0; }
qemu-img --help 2>/dev/null | grep -qw iscsi ||
	{ echo "skip: QEMU has no iSCSI block driver (apt-get install qemu-block-extra)"; exit 0; }
MAXDEPTH=0
for d in $DEPTHS; do
	[[ $d =~ ^[1-8]$ ]] || die "DEPTHS: 1 to 8"
	((d > MAXDEPTH)) && MAXDEPTH=$d
done
((REPEATS >= 1)) || die "REPEATS must be at least 1"
CS=$(numfmt --from=iec "$CHUNK_SIZE") || die "CHUNK_SIZE '$CHUNK_SIZE'"
CLK_TCK=$(getconf CLK_TCK)
PYTHON=$(command -v python3)

# ---------------------------------------------------------------- bookkeeping and cleanup
WORK=$(mktemp -d /dev/shm/vmbench-boot.XXXXXX) || die "mktemp failed"
mkdir -p "$WORK/logs"
TAG="vb$$"
NSP="vmbench-boot-$$"
NAMESPACES=()
ALL_PIDS=()
declare -A PID_OF NS_OF MPORT_OF

# shellcheck source=tests/bench/common.sh
. "$REPO_ROOT/tests/bench/common.sh"

# --------------------------------------------------------------------------- small helpers
ratio() { # ratio A B: A/B with two decimals, "-" when B is 0 or empty
	awk -v a="$1" -v b="$2" 'BEGIN { if (b == "" || b == "-" || b + 0 == 0 || a == "" || a == "-") print "-"; else printf "%.2f", a / b }'
}
mib() { # mib BYTES: MiB with one decimal
	awk -v b="$1" 'BEGIN { if (b == "" || b == "-") print "-"; else printf "%.1f", b / 1048576 }'
}
since() { # since T0: seconds from EPOCHREALTIME T0 to now
	awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f\n", b - a }'
}
median() { # of the numbers on stdin ("-" ignored); "-" when none
	grep -v '^-$' | sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
secs() { # secs TICKS
	awk -v t="$1" -v hz="$CLK_TCK" 'BEGIN { printf "%.1f", t / hz }'
}

# chain_relay I: Ri in namespace n<i> with a fresh cache, one upstream (R<i-1> or the root).
chain_relay() {
	start_relay "R$1" "$NSP-n$1" 3260 $((9100 + $1)) "$WORK/image.manifest" \
		"iscsi://$NET.$1.1:3260/$IQN/0"
}

# ------------------------------------------------------------------------------ topology
# Namespace n<i> holds node i (0 = root). Link i joins n<i-1> ($NET.i.1) and n<i> ($NET.i.2).
setup_net() {
	local i ns prev up down
	for ((i = 0; i <= MAXDEPTH; i++)); do
		ns="$NSP-n$i"
		ip netns add "$ns" || die "cannot create namespace $ns"
		NAMESPACES+=("$ns")
		ip -n "$ns" link set lo up
		((i > 0)) || continue
		prev="$NSP-n$((i - 1))"
		up="${TAG}u$i"
		down="${TAG}d$i"
		ip link add "$up" netns "$prev" type veth peer name "$down" netns "$ns" ||
			die "cannot create veth $up/$down"
		ip -n "$prev" addr add "$NET.$i.1/24" dev "$up"
		ip -n "$ns" addr add "$NET.$i.2/24" dev "$down"
		ip -n "$prev" link set "$up" up
		ip -n "$ns" link set "$down" up
		if [[ $RATE != none ]]; then
			tc -n "$prev" qdisc add dev "$up" root tbf rate "$RATE" burst "$BURST" latency "$TBF_LATENCY" ||
				die "tc tbf failed"
			tc -n "$ns" qdisc add dev "$down" root tbf rate "$RATE" burst "$BURST" latency "$TBF_LATENCY" ||
				die "tc tbf failed"
		fi
	done
}

# ------------------------------------------------------------------------------ the copies
# copy_iscsi: qemu-img convert of the root's LUN into n1 (one link): every byte of the LUN
# crosses the link, zeros included (iSCSI has no notion of holes); the copy is sparse.
copy_iscsi() {
	local t0=$EPOCHREALTIME
	rm -f "$WORK/copy.raw"
	nsx "$NSP-n1" qemu-img convert -f raw -O raw "iscsi://$NET.1.1:3260/$IQN/0" "$WORK/copy.raw" \
		>"$WORK/logs/copy.log" 2>&1 || { cat "$WORK/logs/copy.log" >&2; die "qemu-img convert of the root failed"; }
	T_COPY_ISCSI=$(since "$t0")
	cmp -s "$WORK/image.raw" "$WORK/copy.raw" || die "the iSCSI copy differs from the image"
}

# copy_tar: GNU tar --sparse on the root's host streamed over one TCP connection to n1 and
# unpacked there (`tar -S | ssh host tar -x` without the encryption): only the allocated
# extents cross the link.
copy_tar() {
	local t0 rpid spid
	rm -rf "$WORK/tarcopy" "$WORK/tar.ready"
	mkdir -p "$WORK/tarcopy"
	# shellcheck disable=SC2016 # expanded by the inner bash
	ip netns exec "$NSP-n1" bash -c '"$1" -c "
import socket, sys
s = socket.create_server((sys.argv[1], int(sys.argv[2])))
open(sys.argv[3], \"w\").close()
c, _ = s.accept()
out = sys.stdout.buffer
while True:
    b = c.recv(1 << 20)
    if not b:
        break
    out.write(b)
out.flush()
" "$2" "$3" "$4" | tar -xSf - -C "$5"' _ "$PYTHON" "$NET.1.2" "$TAR_PORT" "$WORK/tar.ready" "$WORK/tarcopy" \
		>"$WORK/logs/tar-rx.log" 2>&1 </dev/null &
	rpid=$!
	ALL_PIDS+=("$rpid")
	local deadline=$((SECONDS + READY_TIMEOUT))
	until [[ -e $WORK/tar.ready ]]; do
		pid_alive "$rpid" || { cat "$WORK/logs/tar-rx.log" >&2; die "tar receiver did not start"; }
		((SECONDS < deadline)) || die "tar receiver did not start"
		sleep "$POLL"
	done
	t0=$EPOCHREALTIME
	# shellcheck disable=SC2016 # expanded by the inner bash
	ip netns exec "$NSP-n0" bash -c 'tar -cSf - -C "$1" image.raw >"/dev/tcp/$2/$3"' _ "$WORK" "$NET.1.2" "$TAR_PORT" \
		>"$WORK/logs/tar-tx.log" 2>&1 </dev/null &
	spid=$!
	ALL_PIDS+=("$spid")
	wait "$spid" || { cat "$WORK/logs/tar-tx.log" >&2; die "tar sender failed"; }
	wait "$rpid" || { cat "$WORK/logs/tar-rx.log" >&2; die "tar receiver failed"; }
	T_COPY_TAR=$(since "$t0")
	cmp -s "$WORK/image.raw" "$WORK/tarcopy/image.raw" || die "the tar copy differs from the image"
	rm -rf "$WORK/tarcopy"
}

# ----------------------------------------------------------------------------- the VM
# qmp SOCKET ACTION...: QMP commands in order; ACTION is "stop" (pause the vCPUs: returns once
# QEMU has drained every block request in flight), "cont", or "read": print the bytes the guest
# has read from its disk so far (query-blockstats of the virtio drive). Per-node statistics of
# the backing node stay 0 in QEMU (accounting is done at the device's BlockBackend), so "read"
# is the guest's view: it includes re-reads of blocks the guest wrote (served by the overlay)
# and excludes qcow2's copy-on-write reads of the backing file.
qmp() {
	"$PYTHON" - "$@" <<'EOF' 2>>"$WORK/logs/qmp.log"
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(30)
s.connect(sys.argv[1])
f = s.makefile("rw")
f.readline()
def cmd(name, args=None):
    msg = {"execute": name}
    if args:
        msg["arguments"] = args
    f.write(json.dumps(msg) + "\n")
    f.flush()
    while True:
        r = json.loads(f.readline())
        if "return" in r:
            return r["return"]
        if "error" in r:
            raise SystemExit(name + ": " + str(r["error"]))
cmd("qmp_capabilities")
for action in sys.argv[2:]:
    if action == "read":
        print(sum(x["stats"]["rd_bytes"] for x in cmd("query-blockstats") if x.get("device") or x.get("qdev")))
    else:
        cmd(action)
EOF
}

# boot_vm NS BACKING NAME: boots the VM on a fresh overlay over BACKING (file or iscsi URL)
# in NS; returns when the marker is on the serial console, with QEMU still running
# (VM_PID), and sets B_WALL, B_CPU, B_READ (guest reads, bytes) and B_LOAD.
boot_vm() {
	local ns=$1 backing=$2 name=$3 dir="$WORK/vm-$3" deadline
	rm -rf "$dir"
	mkdir -p "$dir"
	nsx "$ns" qemu-img create -q -f qcow2 -F raw -b "$backing" "$dir/overlay.qcow2" \
		>"$dir/qemu-img.log" 2>&1 || { cat "$dir/qemu-img.log" >&2; die "qemu-img create over $backing failed"; }
	: >"$dir/serial.log"
	B_LOAD=$(cut -d' ' -f1 /proc/loadavg)
	B_T0=$EPOCHREALTIME
	# -nodefaults: no NIC (SeaBIOS would try a network boot after the disk), no monitor.
	ip netns exec "$ns" qemu-system-x86_64 -accel "$QEMU_ACCEL" -m "$MEMORY" -smp 1 -nodefaults \
		-display none -no-reboot -smbios "type=1,serial=$name" \
		-drive "file=$dir/overlay.qcow2,format=qcow2,if=virtio" \
		-serial "file:$dir/serial.log" -qmp "unix:$dir/qmp.sock,server=on,wait=off" \
		</dev/null >"$dir/qemu.log" 2>&1 &
	VM_PID=$!
	ALL_PIDS+=("$VM_PID")
	deadline=$((SECONDS + BOOT_TIMEOUT))
	until grep -q "^$MARKER $name" "$dir/serial.log"; do
		if ! pid_alive "$VM_PID"; then
			cat "$dir/qemu.log" >&2
			tail -n 20 "$dir/serial.log" >&2
			die "$name: QEMU exited before the marker"
		fi
		if ((SECONDS >= deadline)); then
			tail -n 30 "$dir/serial.log" >&2
			die "$name: no '$MARKER $name' on the serial console after $BOOT_TIMEOUT s"
		fi
		sleep "$BOOT_POLL"
	done
	B_WALL=$(since "$B_T0")
	# Pause the guest (and let its reads in flight finish) so that the counters read next are
	# those of the boot, not of whatever the guest does after the marker; stop_vm resumes it.
	B_PAUSE=$EPOCHREALTIME
	B_READ=$(qmp "$dir/qmp.sock" stop read) || { B_READ=-; note "$name: QMP stop/read failed (see the qmp log)"; }
	B_CPU=$(secs "$(cpu_ticks "$VM_PID")")
}

# stop_vm NAME: resumes the paused guest, waits (at most 30 s) for the getty's "login:"
# prompt, which comes shortly after the marker (B_LOGIN: seconds from QEMU start not counting
# the pause, "-" if it never came), then stops QEMU.
stop_vm() {
	local deadline=$((SECONDS + 30)) dir="$WORK/vm-$1" paused
	paused=$(since "$B_PAUSE")
	B_LOGIN=-
	# Already there when the marker was seen: before it (reported as "<" the boot time).
	grep -q 'login:' "$dir/serial.log" && B_LOGIN="<$B_WALL"
	qmp "$dir/qmp.sock" cont || note "$1: QMP cont failed"
	until [[ $B_LOGIN != - ]] || grep -q 'login:' "$dir/serial.log"; do
		((SECONDS < deadline)) || break
		sleep "$BOOT_POLL"
	done
	[[ $B_LOGIN == - ]] && grep -q 'login:' "$dir/serial.log" && B_LOGIN=$(fmt "$(since "$B_T0") - $paused")
	kill -TERM "$VM_PID" 2>/dev/null
	deadline=$((SECONDS + 15))
	while pid_alive "$VM_PID" && ((SECONDS < deadline)); do sleep "$POLL"; done
	pid_alive "$VM_PID" && kill -KILL "$VM_PID"
	wait "$VM_PID" 2>/dev/null
	cp "$dir/serial.log" "$WORK/logs/serial-$1.log" 2>/dev/null
	rm -rf "$dir"
}

# ------------------------------------------------------------------------- chain counters
# snap D: the counters of the root and R1..RD now, into SNAP[...].
declare -A SNAP S0
snap() {
	local i
	SNAP[root,served]=$(metric ROOT virtman_served_bytes_total)
	SNAP[root,cpu]=$(cpu_ticks "${PID_OF[ROOT]}")
	for ((i = 1; i <= $1; i++)); do
		SNAP[$i,served]=$(metric "R$i" virtman_served_bytes_total)
		SNAP[$i,up]=$(metric "R$i" virtman_upstream_bytes_total)
		SNAP[$i,cpu]=$(cpu_ticks "${PID_OF[R$i]}")
	done
}
snap0() { # snap0 D: snap into S0
	local k
	snap "$1"
	S0=()
	for k in "${!SNAP[@]}"; do S0[$k]=${SNAP[$k]}; done
}

# ------------------------------------------------------------------------------- results
declare -A RES # RES[config,field,round]
NOTES=()
note() {
	NOTES+=("$*")
	echo "note: $*" >&2
}
ROWFMT='%-4s %-26s %8s %8s %7s %6s | %8s %9s %9s %8s %7s | %s\n'
# row ROUND CONFIG LABEL: prints and keeps the last boot's numbers (and WS ROOTB CHUNKS RCPU).
row() {
	local rep=$1 cfg=$2
	RES[$cfg,wall,$rep]=$B_WALL RES[$cfg,login,$rep]=$B_LOGIN RES[$cfg,cpu,$rep]=$B_CPU
	RES[$cfg,read,$rep]=$B_READ RES[$cfg,ws,$rep]=$WS RES[$cfg,root,$rep]=$ROOTB
	RES[$cfg,chunks,$rep]=$CHUNKS RES[$cfg,rcpu,$rep]=$RCPU
	# shellcheck disable=SC2059
	printf "$ROWFMT" "$rep" "$3" "$B_WALL" "$B_LOGIN" "$B_CPU" "$B_LOAD" "$(mib "$WS")" "$(mib "$B_READ")" \
		"$(mib "$ROOTB")" "$(ratio "$ROOTB" "$WS")" "$CHUNKS" "$RCPU"
}

# run_local ROUND: both copies over link 1, then the VM on an overlay over the iSCSI copy.
run_local() {
	local rep=$1 s0 s1
	copy_tar
	RES[tar,copy,$rep]=$T_COPY_TAR
	copy_iscsi
	RES[iscsi,copy,$rep]=$T_COPY_ISCSI
	printf '%-4s %-26s (over one link: tar --sparse %s s for %s MiB allocated; qemu-img convert of the LUN %s s for %s MiB)\n' \
		"$rep" "copies" "$T_COPY_TAR" "$(mib "$ALLOC")" "$T_COPY_ISCSI" "$(mib "$SIZE")"
	s0=$(metric ROOT virtman_served_bytes_total)
	boot_vm "$NSP-n1" "$WORK/copy.raw" "local-$rep"
	s1=$(metric ROOT virtman_served_bytes_total)
	((s1 == s0)) || note "the root served $((s1 - s0)) bytes during the local boot"
	stop_vm "local-$rep"
	rm -f "$WORK/copy.raw"
	WS=- ROOTB=- CHUNKS=- RCPU=-
	row "$rep" local "local copy, boot only"
}

# run_direct ROUND: the VM one link from the root, its overlay over the root's LUN, no relay
# (a diskless host without virtman's relays).
run_direct() {
	local rep=$1
	snap0 0
	boot_vm "$NSP-n1" "iscsi://$NET.1.1:3260/$IQN/0" "direct-$rep"
	snap 0
	WS=$((SNAP[root,served] - S0[root,served]))
	stop_vm "direct-$rep"
	ROOTB=$WS CHUNKS=- RCPU=$(secs $((SNAP[root,cpu] - S0[root,cpu])))
	row "$rep" direct "root over iSCSI, no relay"
}

# run_chain D ROUND: fresh relays R1..RD (empty caches); a cold boot, then a warm one.
run_chain() {
	local d=$1 rep=$2 i temp name cpu up sv vf
	for ((i = 1; i <= d; i++)); do chain_relay "$i"; done
	for temp in cold warm; do
		name="d$d-$temp-$rep"
		snap0 "$d"
		boot_vm "$NSP-n$d" "iscsi://127.0.0.1:3260/$IQN/0" "$name"
		snap "$d"
		WS=$((SNAP[$d,served] - S0[$d,served]))
		ROOTB=$((SNAP[root,served] - S0[root,served]))
		cpu=$((SNAP[root,cpu] - S0[root,cpu]))
		for ((i = 1; i <= d; i++)); do
			cpu=$((cpu + SNAP[$i,cpu] - S0[$i,cpu]))
			# Each level fetches exactly what the level below asked for, once.
			up=$((SNAP[$i,up] - S0[$i,up]))
			((up == ROOTB)) || note "$name: R$i fetched $up bytes upstream, the root served $ROOTB"
		done
		for ((i = 1; i < d; i++)); do
			sv=$((SNAP[$i,served] - S0[$i,served]))
			((sv == ROOTB)) || note "$name: R$i served $sv bytes to R$((i + 1)), the root served $ROOTB"
		done
		CHUNKS=$(metric "R$d" virtman_cache_chunks_present)
		# Cold: the root served the chunks Rd holds, each once (the working set rounded up to
		# chunks), however deep the chain.
		[[ $temp == warm ]] || ((ROOTB == CHUNKS * CS)) ||
			note "$name: the root served $ROOTB bytes; R$d holds $CHUNKS chunks of $CS = $((CHUNKS * CS))"
		stop_vm "$name"
		RCPU=$(secs "$cpu")
		row "$rep" "d$d-$temp" "depth $d, $temp relays"
	done
	for ((i = 1; i <= d; i++)); do
		vf=$(metric "R$i" virtman_verify_failures_total)
		((vf == 0)) || note "R$i (depth $d, round $rep): $vf verify failures"
	done
	for ((i = d; i >= 1; i--)); do stop_node "R$i"; done
}

# ---------------------------------------------------------------------------------- start
if [[ -n $WAIT_QUIET ]]; then
	deadline=$((SECONDS + 900))
	until awk -v l="$(cut -d' ' -f1 /proc/loadavg)" -v q="$WAIT_QUIET" 'BEGIN { exit !(l < q) }'; do
		((SECONDS < deadline)) || { echo "# the load average stayed above $WAIT_QUIET for 15 min; running anyway"; break; }
		sleep 5
	done
fi
T_START=$SECONDS
echo "# date: $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "# machine: $(nproc) cores, $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo), kernel $(uname -r), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM; $(qemu-system-x86_64 --version | head -1)"
echo "# load average at start: $(loadavg) (this box is shared: other work running meanwhile is noise)"
cp "$VIRTMAN" "$WORK/virtman" || die "cannot copy $VIRTMAN"
echo "# virtman: $VIRTMAN ($(stat -c %s "$VIRTMAN") bytes, built $(date -u -r "$VIRTMAN" '+%Y-%m-%d %H:%M UTC'); run from a copy)"
VIRTMAN=$WORK/virtman
cp --sparse=always "$IMAGE" "$WORK/image.raw" || die "cannot copy $IMAGE"
SIZE=$(stat -c %s "$WORK/image.raw")
ALLOC=$(($(stat -c %b "$WORK/image.raw") * $(stat -c %B "$WORK/image.raw")))
t0=$EPOCHREALTIME
"$VIRTMAN" manifest "$WORK/image.raw" -o "$WORK/image.manifest" --chunk-size "$CS" || die "virtman manifest failed"
echo "# image: $IMAGE, $(mib "$SIZE") MiB ($(mib "$ALLOC") MiB allocated), copied to /dev/shm; manifest ($CHUNK_SIZE chunks) in $(since "$t0") s"
echo "# links: veth, $(if [[ $RATE == none ]]; then echo "unshaped"; else echo "tbf rate $RATE burst $BURST latency $TBF_LATENCY on both ends (no added delay)"; fi); relay caches in /dev/shm"
echo "# VM: qemu-system-x86_64 -accel $QEMU_ACCEL -m $MEMORY -smp 1, virtio disk on a qcow2 overlay; boot done = '$MARKER NAME' on ttyS0"

setup_net
start_node ROOT "$NSP-n0" 3260 9100 "$WORK/image.raw"

# shellcheck disable=SC2059
printf "\n$ROWFMT" "rnd" "run" "boot s" "login s" "CPU s" "load" "ws MiB" "guest MiB" "root MiB" "root/ws" "chunks" "root+relays CPU s"
# Odd rounds run local, direct, then the chains by increasing depth; even rounds the reverse,
# so a load that drifts during the run does not favour one side.
CHAIN_ORDER=$DEPTHS
CHAIN_REV=$(for d in $DEPTHS; do echo "$d"; done | sort -rn | tr '\n' ' ')
for ((rep = 1; rep <= REPEATS; rep++)); do
	if ((rep % 2)); then
		run_local "$rep"
		run_direct "$rep"
		for d in $CHAIN_ORDER; do run_chain "$d" "$rep"; done
	else
		for d in $CHAIN_REV; do run_chain "$d" "$rep"; done
		run_direct "$rep"
		run_local "$rep"
	fi
done

# ------------------------------------------------------------------------------- summary
med() { # med CONFIG FIELD: the median over the rounds
	local r
	for ((r = 1; r <= REPEATS; r++)); do echo "${RES[$1,$2,$r]:--}"; done | sed 's/^<//' | median
}
T_LOCAL=$(med local wall)
T_TAR=$(med tar copy)
T_ISCSI=$(med iscsi copy)
T_TAR_BOOT=$(fmt "$T_TAR + $T_LOCAL")
T_ISCSI_BOOT=$(fmt "$T_ISCSI + $T_LOCAL")
SUMFMT='%-44s %7s %8s %8s %8s %7s | %8s %9s %9s %8s | %s\n'

echo
echo "== Results: medians of $REPEATS round(s). vs local / vs copy+boot: boot-time ratios (lower is better);"
echo "   copy+boot = copy the image over one link with tar --sparse (the faster copy), then boot it locally."
# shellcheck disable=SC2059
{
	printf "\n$SUMFMT" "run" "boot s" "vs local" "vs copy+" "login s" "CPU s" "ws MiB" "guest MiB" "root MiB" "root/ws" "root+relays CPU s"
	printf "$SUMFMT" "local copy, boot only" "$T_LOCAL" "1.00" "$(ratio "$T_LOCAL" "$T_TAR_BOOT")" \
		"$(med local login)" "$(med local cpu)" "-" "$(mib "$(med local read)")" "-" "-" ""
	printf "$SUMFMT" "copy (tar --sparse, $(mib "$ALLOC") MiB) + boot" "$T_TAR_BOOT" \
		"$(ratio "$T_TAR_BOOT" "$T_LOCAL")" "1.00" "" "" "" "" "$(mib "$ALLOC")" "" "(copy $T_TAR s)"
	printf "$SUMFMT" "copy (qemu-img convert, $(mib "$SIZE") MiB) + boot" "$T_ISCSI_BOOT" \
		"$(ratio "$T_ISCSI_BOOT" "$T_LOCAL")" "$(ratio "$T_ISCSI_BOOT" "$T_TAR_BOOT")" "" "" "" "" "$(mib "$SIZE")" "" "(copy $T_ISCSI s)"
	for cfg in direct $(for d in $DEPTHS; do echo "d$d-cold d$d-warm"; done); do
		if [[ $cfg == direct ]]; then
			label="root over iSCSI, no relay (one link)"
		else
			d=${cfg%%-*}
			label="depth ${d#d}, ${cfg#*-} relays"
		fi
		t=$(med "$cfg" wall)
		ws=$(med "$cfg" ws)
		rb=$(med "$cfg" root)
		printf "$SUMFMT" "$label" "$t" "$(ratio "$t" "$T_LOCAL")" "$(ratio "$t" "$T_TAR_BOOT")" "$(med "$cfg" login)" \
			"$(med "$cfg" cpu)" "$(mib "$ws")" "$(mib "$(med "$cfg" read)")" "$(mib "$rb")" "$(ratio "$rb" "$ws")" "$(med "$cfg" rcpu)"
	done
}
echo "(boot s: QEMU start to '$MARKER NAME' on ttyS0; login s: to the getty's 'login:' ('<': before the marker). CPU s: QEMU's user+sys"
echo " CPU until the marker. ws: the boot working set, bytes the VM's iSCSI target (the last relay, or the root) served"
echo " to QEMU until the marker (virtman_served_bytes_total). guest MiB: what the guest read from its disk (QMP; includes"
echo " re-reads of its own writes, which the overlay serves). root MiB: what the root served meanwhile (cold: the chunks"
echo " the chain fetched; warm: only chunks the cold boot had not read). root/ws: the root's bytes per working-set byte"
echo " ($CHUNK_SIZE chunk rounding); a chain fetching per level would show d x this. root+relays CPU: their CPU meanwhile.)"
for d in $DEPTHS; do
	echo "  depth $d cold: the root served $(mib "$(med "d$d-cold" root)") MiB = $(ratio "$(med "d$d-cold" root)" "$(med "d$d-cold" ws)") x the boot working set ($(med "d$d-cold" chunks) chunks of $CHUNK_SIZE), once for the whole chain"
done

for n in ROOT $(for ((i = 1; i <= MAXDEPTH; i++)); do echo "R$i"; done); do
	[[ -f $WORK/logs/$n.log ]] || continue
	e=$(grep -ci 'error\|warn\|fail' "$WORK/logs/$n.log")
	((e == 0)) || { note "$n logged $e error/warning lines; first:"; grep -i 'error\|warn\|fail' "$WORK/logs/$n.log" | head -5 >&2; }
done
if ((${#NOTES[@]})); then
	echo
	echo "notes (${#NOTES[@]}):"
	printf '  %s\n' "${NOTES[@]}"
else
	echo "checks passed: every relay fetched exactly the bytes the root served; on every cold chain the root served the last"
	echo "relay's chunks exactly once; no verify failures; no error or warning lines in the root's and relays' logs"
fi
echo
echo "# load average at end: $(loadavg); total run time $((SECONDS - T_START)) s"
