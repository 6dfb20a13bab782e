# Shared helpers for virtman's bats tests: start servers, wait for readiness with deadlines, clean up.
# Every background process a test starts is recorded and killed in teardown, even when the test fails.

load '/usr/lib/bats/bats-support/load'
load '/usr/lib/bats/bats-assert/load'

REPO_ROOT="$(cd "$BATS_TEST_DIRNAME/../.." && pwd)"
VIRTMAN="${VIRTMAN:-$REPO_ROOT/build/host/virtman}"
PROBE="${PROBE:-$REPO_ROOT/build/host/tools/iscsi_probe}"
READY_TIMEOUT="${READY_TIMEOUT:-30}"	# seconds a server gets to start listening
EXIT_TIMEOUT="${EXIT_TIMEOUT:-30}"	# seconds a server gets to exit after SIGTERM
POLL_INTERVAL=0.05			# between readiness checks, always inside a deadline loop

# Sanitizer reports must reach the log; leaks fail the exit code.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

# Skips the test when a command is missing.
require_cmd() {
	command -v "$1" >/dev/null 2>&1 || skip "$1 not installed"
}

require_root() {
	[[ $EUID -eq 0 ]] || skip "${1:-this test} needs root"
}

# Fails early with a clear message when a binary under test was not built.
require_built() {
	[[ -x $1 ]] || fail "$1 is not built (run 'make host')"
}

# Prints a TCP port on 127.0.0.1 that the kernel just handed out as free.
free_port() {
	python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# Records a background pid for teardown.
track_pid() {
	echo "$1" >>"$BATS_TEST_TMPDIR/.pids"
}

# True while pid exists and is not a zombie.
pid_alive() {
	local state
	[[ -e /proc/$1/stat ]] || return 1
	state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
	[[ $state != Z && -n $state ]]
}

# wait_pid_exit PID DEADLINE_S: polls until PID has exited; 1 when the deadline passes first.
wait_pid_exit() {
	local pid=$1 deadline=$((SECONDS + $2))
	while pid_alive "$pid"; do
		((SECONDS < deadline)) || return 1
		sleep "$POLL_INTERVAL"
	done
}

# wait_port HOST PORT DEADLINE_S [PID]: polls with connect() until something listens.
# With PID, gives up as soon as that process has died.
wait_port() {
	local host=$1 port=$2 deadline=$((SECONDS + $3)) pid=${4:-}
	until (exec 9<>"/dev/tcp/$host/$port") 2>/dev/null; do
		if [[ -n $pid ]] && ! pid_alive "$pid"; then
			echo "process $pid exited before listening on $host:$port" >&2
			return 1
		fi
		if ((SECONDS >= deadline)); then
			echo "nothing listens on $host:$port after $3 s" >&2
			return 1
		fi
		sleep "$POLL_INTERVAL"
	done
}

# wait_file_match FILE REGEX DEADLINE_S: polls until a line of FILE matches the extended regex.
wait_file_match() {
	local file=$1 regex=$2 deadline=$((SECONDS + $3))
	until grep -Eq -- "$regex" "$file" 2>/dev/null; do
		if ((SECONDS >= deadline)); then
			echo "no line matching '$regex' in $file after $3 s" >&2
			return 1
		fi
		sleep "$POLL_INTERVAL"
	done
}

# spawn NAME CMD...: runs CMD in the background with stdout/stderr in $BATS_TEST_TMPDIR/NAME.{out,err};
# sets SPAWN_PID. fd 3 is closed so bats does not wait for the process.
spawn() {
	local name=$1
	shift
	"$@" >"$BATS_TEST_TMPDIR/$name.out" 2>"$BATS_TEST_TMPDIR/$name.err" 3>&- &
	SPAWN_PID=$!
	track_pid "$SPAWN_PID"
}

# wait_spawned PID DEADLINE_S: waits for a spawned process and returns its exit status
# (124 when it is still running at the deadline; it is then killed).
wait_spawned() {
	local pid=$1 rc=0
	if ! wait_pid_exit "$pid" "$2"; then
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
		return 124
	fi
	wait "$pid" || rc=$?
	return "$rc"
}

# make_image PATH SIZE: SIZE in bytes or with a K/M/G suffix (powers of 1024).
# Up to 512 MiB: random bytes. Larger: sparse, with 1 MiB of random data at a few offsets,
# including one straddling the 4 GiB boundary when the image is larger than that.
make_image() {
	local path=$1 size
	size=$(numfmt --from=iec "$2") || fail "make_image: bad size '$2'"
	if ((size <= 512 * 1024 * 1024)); then
		head -c "$size" /dev/urandom >"$path"
	else
		local mib=$((1024 * 1024)) four_g=$((4 * 1024 * 1024 * 1024)) off
		truncate -s "$size" "$path"
		local offsets=(0 $((size / 3 / mib * mib)) $((size - mib)))
		((size > four_g + mib)) && offsets+=($((four_g - mib / 2)))
		for off in "${offsets[@]}"; do
			head -c "$mib" /dev/urandom |
				dd of="$path" bs="$mib" seek="$off" oflag=seek_bytes conv=notrunc status=none
		done
		[[ $(stat -c %s "$path") -eq $size ]] || fail "make_image: $path has the wrong size"
	fi
}

# start_export IMAGE [ARGS...]: starts $VIRTMAN export on 127.0.0.1:$PORT with a per-test IQN,
# waits until it listens; exports PORT IQN EXPORT_PID EXPORT_LOG.
start_export() {
	local image=$1
	shift
	require_built "$VIRTMAN"
	PORT=$(free_port)
	IQN="iqn.2026-11.org.virtman:test${BATS_TEST_NUMBER}-$$"
	EXPORT_LOG="$BATS_TEST_TMPDIR/export.log"
	"$VIRTMAN" export "$image" --listen "127.0.0.1:$PORT" --iqn "$IQN" "$@" \
		>"$BATS_TEST_TMPDIR/export.out" 2>"$EXPORT_LOG" 3>&- &
	EXPORT_PID=$!
	track_pid "$EXPORT_PID"
	export PORT IQN EXPORT_PID EXPORT_LOG
	wait_port 127.0.0.1 "$PORT" "$READY_TIMEOUT" "$EXPORT_PID" || {
		cat "$EXPORT_LOG" >&2
		fail "virtman export did not start listening on 127.0.0.1:$PORT"
	}
}

# Fails the test when the log shows a sanitizer report.
assert_no_sanitizer_report() {
	local log=$1
	if grep -Eq 'AddressSanitizer|LeakSanitizer|runtime error|UndefinedBehaviorSanitizer' "$log"; then
		cat "$log" >&2
		fail "sanitizer report in $log"
	fi
}

# Asserts the export is still running and serving: a fresh session reads one whole LUN.
assert_export_alive() {
	pid_alive "$EXPORT_PID" || { cat "$EXPORT_LOG" >&2; fail "virtman export (pid $EXPORT_PID) died"; }
}

# stop_export: SIGTERM, wait with a deadline, require exit status 0 and a clean sanitizer log.
stop_export() {
	local rc=0
	assert_export_alive
	kill -TERM "$EXPORT_PID"
	if ! wait_pid_exit "$EXPORT_PID" "$EXIT_TIMEOUT"; then
		kill -KILL "$EXPORT_PID" 2>/dev/null || true
		cat "$EXPORT_LOG" >&2
		fail "virtman export did not exit within $EXIT_TIMEOUT s of SIGTERM"
	fi
	wait "$EXPORT_PID" || rc=$?
	EXPORT_PID=
	assert_no_sanitizer_report "$EXPORT_LOG"
	if ((rc != 0)); then
		cat "$EXPORT_LOG" >&2
		fail "virtman export exited $rc after SIGTERM, expected 0"
	fi
}

# Prints a tgtd control number (-C, at most 32767) whose unix socket nobody uses yet.
tgt_control_number() {
	local n
	for _ in 1 2 3 4 5 6 7 8; do
		n=$(($(free_port) % 31000 + 1000))
		[[ -e /var/run/tgtd/socket.$n || -e /var/run/tgtd/socket.$n.lock ]] || { echo "$n"; return; }
	done
	fail "no free tgtd control number"
}

# start_tgt IMAGE: tgtd in the foreground with its own control port, serving IMAGE read-only as
# LUN 1 (tgt's LUN 0 is its controller) on 127.0.0.1:$TGT_PORT. Exports TGT_PORT TGT_IQN TGT_LUN
# TGT_PID TGT_CONTROL.
start_tgt() {
	local image=$1 deadline
	require_root "tgtd"
	require_cmd tgtd
	require_cmd tgtadm
	TGT_PORT=$(free_port)
	TGT_CONTROL=$(tgt_control_number)
	TGT_IQN="iqn.2026-11.org.virtman:tgt${BATS_TEST_NUMBER}-$$"
	TGT_LUN=1
	mkdir -p /var/run/tgtd
	tgtd -f -C "$TGT_CONTROL" --iscsi "portal=127.0.0.1:$TGT_PORT" \
		>"$BATS_TEST_TMPDIR/tgtd.log" 2>&1 3>&- &
	TGT_PID=$!
	track_pid "$TGT_PID"
	echo "$TGT_CONTROL" >>"$BATS_TEST_TMPDIR/.tgt_controls"
	export TGT_PORT TGT_IQN TGT_LUN TGT_PID TGT_CONTROL
	deadline=$((SECONDS + READY_TIMEOUT))
	until tgtadm -C "$TGT_CONTROL" --lld iscsi --mode target --op show >/dev/null 2>&1; do
		pid_alive "$TGT_PID" || { cat "$BATS_TEST_TMPDIR/tgtd.log" >&2; fail "tgtd exited"; }
		((SECONDS < deadline)) || fail "tgtd control channel not ready after $READY_TIMEOUT s"
		sleep "$POLL_INTERVAL"
	done
	_tgtadm --op new --mode target --tid 1 --targetname "$TGT_IQN"
	_tgtadm --op new --mode logicalunit --tid 1 --lun "$TGT_LUN" --backing-store "$image"
	_tgtadm --op update --mode logicalunit --tid 1 --lun "$TGT_LUN" --params readonly=1
	_tgtadm --op update --mode target --tid 1 --name HeaderDigest --value CRC32C,None
	_tgtadm --op update --mode target --tid 1 --name DataDigest --value CRC32C,None
	_tgtadm --op bind --mode target --tid 1 --initiator-address ALL
	wait_port 127.0.0.1 "$TGT_PORT" "$READY_TIMEOUT" "$TGT_PID" || fail "tgtd portal not listening"
}

_tgtadm() {
	tgtadm -C "$TGT_CONTROL" --lld iscsi "$@" || fail "tgtadm $* failed"
}

# Stops one tgtd: tgtd ignores SIGTERM while it has targets, so delete them and the system first.
_stop_tgt() {
	local control=$1 pid=$2
	tgtadm -C "$control" --lld iscsi --op delete --mode target --tid 1 --force >/dev/null 2>&1
	tgtadm -C "$control" --op delete --mode system >/dev/null 2>&1
	if [[ -n $pid ]] && ! wait_pid_exit "$pid" 10; then
		kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -f "/var/run/tgtd/socket.$control" "/var/run/tgtd/socket.$control.lock"
}

stop_tgt() {
	_stop_tgt "$TGT_CONTROL" "$TGT_PID"
	wait "$TGT_PID" 2>/dev/null || true
	TGT_PID=
}

# sha256 of a file, alone.
sha256_of() {
	sha256sum "$1" | cut -d' ' -f1
}

# assert_same_content EXPECTED ACTUAL: compares by sha256.
assert_same_content() {
	local want got
	want=$(sha256_of "$1")
	got=$(sha256_of "$2")
	[[ $want == "$got" ]] || fail "$2 (sha256 $got) differs from $1 (sha256 $want)"
}

# Kills everything this test started, whether it passed or not, and removes big files.
helpers_teardown() {
	local pid control
	if [[ -f $BATS_TEST_TMPDIR/.tgt_controls ]]; then
		while read -r control; do
			_stop_tgt "$control" ""
		done <"$BATS_TEST_TMPDIR/.tgt_controls"
	fi
	if [[ -f $BATS_TEST_TMPDIR/.pids ]]; then
		while read -r pid; do
			pid_alive "$pid" && kill -TERM "$pid" 2>/dev/null
		done <"$BATS_TEST_TMPDIR/.pids"
		while read -r pid; do
			if ! wait_pid_exit "$pid" 10; then
				kill -KILL "$pid" 2>/dev/null || true
			fi
			wait "$pid" 2>/dev/null || true
		done <"$BATS_TEST_TMPDIR/.pids"
		rm -f "$BATS_TEST_TMPDIR/.pids"
	fi
	if [[ -s ${EXPORT_LOG:-} ]]; then
		echo "--- virtman export log (last 40 lines)" >&2
		tail -n 40 "$EXPORT_LOG" >&2
	fi
	find "$BATS_TEST_TMPDIR" -type f -size +1M -delete 2>/dev/null || true
}

teardown() {
	helpers_teardown
}
