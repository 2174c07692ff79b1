#!/usr/bin/env bash
# Runs test programs and counts their cmocka results.
#   run.sh NAME [--valgrind] PROGRAM...
# A program exits 0 (all passed), 77 (cannot run here: counted as one skip)
# or anything else (failed). Ends with "NAME: N passed, N failed, N skipped".
set -u
name=$1; shift
vg=()
if [ "${1:-}" = --valgrind ]; then
	shift
	vg=(valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite)
fi
pass=0 fail=0 skip=0
for prog in "$@"; do
	t=$(basename "$prog")
	# A hung test (a fault nobody serves) must not hang the suite.
	out=$(timeout -s KILL "${KVMM_TEST_TIMEOUT:-300}" "${vg[@]}" "$prog" 2>&1)
	rc=$?
	printf '%s\n' "$out" | sed "s/^/[$t] /"
	if [ $rc -eq 77 ]; then
		skip=$((skip + 1))
		continue
	fi
	p=$(printf '%s\n' "$out" | sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' | tail -n1)
	f=$(printf '%s\n' "$out" | sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' | tail -n1)
	s=$(printf '%s\n' "$out" | sed -n 's/^\[  SKIPPED \] \([0-9]*\) test.*/\1/p' | tail -n1)
	p=${p:-0} f=${f:-0} s=${s:-0}
	# A crash, a sanitizer report or a valgrind error is a failure too.
	if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then
		echo "[$t] exit status $rc"
		f=1
	fi
	pass=$((pass + p)) fail=$((fail + f)) skip=$((skip + s))
done
echo "$name: $pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ]
