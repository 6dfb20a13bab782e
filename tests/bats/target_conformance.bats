#!/usr/bin/env bats
# libiscsi's iscsi-test-cu against `virtman export`: one test per family, plus the whole suite.

load helpers

CU_INITIATOR=iqn.2026-11.org.virtman:conformance
CU_INITIATOR2=iqn.2026-11.org.virtman:conformance-2
CU_TIMEOUT=600		# seconds: a hung suite fails instead of blocking CI

setup_file() {
	IMAGE="$BATS_FILE_TMPDIR/disk.img"
	head -c 64M /dev/urandom >"$IMAGE"
	export IMAGE
}

teardown_file() {
	rm -f "$IMAGE"
}

# Skips unless this iscsi-test-cu has tests named PATTERN (a FAMILY.SUITE[.TEST] prefix plus '*').
require_cu_tests() {
	local prefix=${1%\*}
	require_cmd iscsi-test-cu
	iscsi-test-cu -l 2>/dev/null | grep -Fq -- "$prefix" ||
		skip "this iscsi-test-cu has no tests matching $1"
}

# cu_assert_clean: iscsi-test-cu may exit 0 despite failures, so read CUnit's Run Summary.
# Requires that tests ran, none failed, and no assertion failed.
cu_assert_clean() {
	local tests asserts
	tests=$(awk '$1 == "tests" && NF == 6 { print $3, $5 }' <<<"$output" | tail -n 1)
	asserts=$(awk '$1 == "asserts" && NF == 6 { print $5 }' <<<"$output" | tail -n 1)
	[[ -n $tests ]] || fail "no CUnit Run Summary: iscsi-test-cu did not finish (exit $status)"
	read -r ran failed <<<"$tests"
	((ran > 0)) || fail "iscsi-test-cu ran no test"
	((failed == 0)) || fail "$failed of $ran iscsi-test-cu tests failed"
	((asserts == 0)) || fail "$asserts iscsi-test-cu assertions failed"
}

# cu_family PATTERN [ARGS...]: runs the tests matching PATTERN against a fresh export.
cu_family() {
	local pattern=$1
	shift
	require_cu_tests "$pattern"
	start_export "$IMAGE"
	run timeout -k 10 "$CU_TIMEOUT" iscsi-test-cu -i "$CU_INITIATOR" -I "$CU_INITIATOR2" "$@" \
		-t "$pattern" "iscsi://127.0.0.1:$PORT/$IQN/${LUN:-0}"
	echo "$output"
	cu_assert_clean
	stop_export
}

@test "conformance: SCSI.Inquiry" { cu_family 'SCSI.Inquiry*'; }
@test "conformance: SCSI.Mandatory" { cu_family 'SCSI.Mandatory*'; }
@test "conformance: SCSI.ModeSense6" { cu_family 'SCSI.ModeSense6*'; }
@test "conformance: SCSI.Read6" { cu_family 'SCSI.Read6*'; }
@test "conformance: SCSI.Read10" { cu_family 'SCSI.Read10*'; }
@test "conformance: SCSI.Read12" { cu_family 'SCSI.Read12*'; }
@test "conformance: SCSI.Read16" { cu_family 'SCSI.Read16*'; }
@test "conformance: SCSI.ReadCapacity10" { cu_family 'SCSI.ReadCapacity10*'; }
@test "conformance: SCSI.ReadCapacity16" { cu_family 'SCSI.ReadCapacity16*'; }
@test "conformance: SCSI.ReportLUNs" { cu_family 'SCSI.ReportLUNs*'; }
@test "conformance: SCSI.ReportSupportedOpcodes" { cu_family 'SCSI.ReportSupportedOpcodes*'; }
@test "conformance: SCSI.TestUnitReady" { cu_family 'SCSI.TestUnitReady*'; }
@test "conformance: SCSI.Verify10" { cu_family 'SCSI.Verify10*'; }
@test "conformance: SCSI.Verify12" { cu_family 'SCSI.Verify12*'; }
@test "conformance: SCSI.Verify16" { cu_family 'SCSI.Verify16*'; }
@test "conformance: iSCSI.iSCSIcmdsn" { cu_family 'iSCSI.iSCSIcmdsn*'; }
@test "conformance: iSCSI.iSCSIResiduals.Read" { cu_family 'iSCSI.iSCSIResiduals.Read*'; }
@test "conformance: iSCSI.iSCSISendTargets" { cu_family 'iSCSI.iSCSISendTargets*'; }
@test "conformance: iSCSI.iSCSINop" { cu_family 'iSCSI.iSCSINop*'; }

@test "conformance: SCSI.ReadOnly with --dataloss: every write is refused" {
	cu_family 'SCSI.ReadOnly*' -d
}

@test "conformance: the whole suite runs to completion and the target still serves" {
	require_cmd iscsi-test-cu
	require_built "$PROBE"
	start_export "$IMAGE"
	run timeout -k 10 "$CU_TIMEOUT" iscsi-test-cu -i "$CU_INITIATOR" -I "$CU_INITIATOR2" \
		"iscsi://127.0.0.1:$PORT/$IQN/${LUN:-0}"
	echo "$output" | tail -n 8
	grep -q '^Run Summary:' <<<"$output" || fail "iscsi-test-cu did not finish (exit $status)"
	assert_export_alive
	run "$PROBE" read "127.0.0.1:$PORT" "$IQN" --lun "${LUN:-0}" --out "$BATS_TEST_TMPDIR/after.img"
	assert_success
	assert_same_content "$IMAGE" "$BATS_TEST_TMPDIR/after.img"
	stop_export
}
