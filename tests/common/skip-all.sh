#!/usr/bin/env bash
# A suite that cannot run here at all: every test of its programs counts as
# skipped, with the reason. Each program names its tests with --list
# (tests/common/t_list.h); one that cannot is a failure.
#   skip-all.sh SUITE REASON PROGRAM...
# Ends with "SUITE: 0 passed, N failed, N skipped".
set -u
suite=$1 why=$2
shift 2
skip=0 fail=0
for prog in "$@"; do
	t=${prog##*/}
	if ! list=$(timeout 30 "$prog" --list 2>&1) || [ -z "$list" ]; then
		echo "  FAIL  $t: '$t --list' named no tests: ${list:-no output}"
		fail=$((fail + 1))
		continue
	fi
	while IFS= read -r test; do
		echo "  SKIP  $t: $test: $why"
		skip=$((skip + 1))
	done <<<"$list"
done
echo "$suite: 0 passed, $fail failed, $skip skipped"
[ $fail -eq 0 ]
