#!/usr/bin/env bash
# Runs the unit tests (cmocka, TAP) and the bats scenarios, and totals their TAP results.
# usage: tests/run.sh [unit|bats|all]   (default all; run from anywhere, after `make host`)
# The last line printed is always "N passed, N failed, N skipped"; the exit status is 1 if any failed.
set -u -o pipefail

cd "$(dirname "$0")/.." || exit 2
what="${1:-all}"
case "$what" in
unit | bats | all) ;;
*)
	echo "usage: tests/run.sh [unit|bats|all]" >&2
	exit 2
	;;
esac

BUILD="${BUILD:-build}"
UNIT_TIMEOUT="${UNIT_TIMEOUT:-300}"		# seconds per unit test binary
BATS_FILE_TIMEOUT="${BATS_FILE_TIMEOUT:-2400}"	# seconds per .bats file

passed=0 failed=0 skipped=0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# tap_tally NAME LOG RC: adds the TAP results in LOG to the totals. A suite that exits non-zero
# without any "not ok", prints no plan, or stops short of its plan (a crash) counts one failure more.
tap_tally() {
	local name=$1 log=$2 rc=$3 p f s planned results
	read -r p f s planned results < <(awk '
		/^1\.\.[0-9]+/ { sub(/^1\.\./, ""); plan += $0 + 0; plans++ }
		/^(not )?ok( |$)/ {
			n++
			if ($0 ~ /#[ \t]*[Ss][Kk][Ii][Pp]/) s++
			else if ($0 ~ /^not ok/) f++
			else p++
		}
		END { printf "%d %d %d %d %d\n", p, f, s, (plans ? plan : -1), n }' "$log")
	if ((planned < 0)); then
		echo "# $name: no TAP plan (crashed or not a test?), exit status $rc: counted as a failure"
		f=$((f + 1))
	elif ((results < planned)); then
		echo "# $name: $results of $planned planned results, exit status $rc: counted as a failure"
		f=$((f + 1))
	elif ((rc != 0 && f == 0)); then
		echo "# $name: exit status $rc without a failing test: counted as a failure"
		f=$((f + 1))
	fi
	echo "# $name: pass $p, fail $f, skip $s"
	passed=$((passed + p))
	failed=$((failed + f))
	skipped=$((skipped + s))
}

run_unit() {
	local bin name log rc
	shopt -s nullglob
	for bin in "$BUILD"/host/unit/test_*; do
		[[ -x $bin && ! -d $bin && $bin != *.d && $bin != *.o ]] || continue
		name=${bin##*/}
		log="$work/unit-$name.tap"
		echo "# unit: $bin"
		CMOCKA_MESSAGE_OUTPUT=TAP timeout -k 10 "$UNIT_TIMEOUT" "$bin" </dev/null 2>&1 | tee "$log"
		rc=${PIPESTATUS[0]}
		tap_tally "$name" "$log" "$rc"
	done
}

run_bats() {
	local file name log rc
	shopt -s nullglob
	if ! command -v bats >/dev/null; then
		echo "# bats not installed: counted as a failure"
		failed=$((failed + 1))
		return
	fi
	for file in tests/bats/*.bats; do
		name=${file##*/}
		log="$work/bats-$name.tap"
		echo "# bats: $file"
		timeout -k 30 "$BATS_FILE_TIMEOUT" bats --tap "$file" </dev/null 2>&1 | tee "$log"
		rc=${PIPESTATUS[0]}
		tap_tally "$name" "$log" "$rc"
	done
}

case "$what" in
unit) run_unit ;;
bats) run_bats ;;
all)
	run_unit
	run_bats
	;;
esac

echo "$passed passed, $failed failed, $skipped skipped"
((failed == 0))
