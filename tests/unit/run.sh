#!/usr/bin/env bash
# Runs test programs and counts their cmocka results.
#   run.sh NAME [--valgrind] PROGRAM...
# A program exits 0 (all passed), 77 (cannot run here at all, after a line
# "skip: why": each test `PROGRAM --list` names counts as skipped) or
# anything else (failed). Every skip is listed with its reason before the
# closing line "NAME: N passed, N failed, N skipped".
set -u
name=$1; shift
vg=()
if [ "${1:-}" = --valgrind ]; then
	shift
	vg=(valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite)
fi
pass=0 fail=0 skip=0
skips=()

# The reason a skip printed: its last line of output, without "skip: ".
reason() {
	local r
	r=$(sed -e '/^[[:space:]]*$/d' -e 's/^# *//' -e 's/^skip\(ped\)\?: *//I' | tail -n 1)
	printf '%s' "${r:-no reason printed (a test bug: a skip must say why)}"
}

for prog in "$@"; do
	t=$(basename "$prog")
	# A hung test (a fault nobody serves) must not hang the suite.
	out=$(timeout -s KILL "${KVMM_TEST_TIMEOUT:-300}" "${vg[@]}" "$prog" 2>&1)
	rc=$?
	printf '%s\n' "$out" | sed "s/^/[$t] /"
	if [ $rc -eq 77 ]; then
		# The whole program skipped: each of its tests counts.
		why=$(printf '%s\n' "$out" | reason)
		if ! list=$(timeout 30 "$prog" --list 2>&1) || [ -z "$list" ]; then
			echo "[$t] exit status 77 (cannot run here: $why), but '$t --list' named no tests"
			fail=$((fail + 1))
			continue
		fi
		while IFS= read -r test; do
			skips+=("$t: $test: $why")
			skip=$((skip + 1))
		done <<<"$list"
		continue
	fi
	p=$(printf '%s\n' "$out" | sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' | tail -n1)
	f=$(printf '%s\n' "$out" | sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' | tail -n1)
	s=$(printf '%s\n' "$out" | sed -n 's/^\[  SKIPPED \] \([0-9]*\) test.*/\1/p' | tail -n1)
	p=${p:-0} f=${f:-0} s=${s:-0}
	# Each skipped test and the lines it printed between its RUN and SKIPPED.
	while IFS= read -r test; do
		[ -n "$test" ] || continue
		why=$(printf '%s\n' "$out" | awk -v t="$test" '
			$0 == "[ RUN      ] " t { on = 1; next }
			on && $0 == "[  SKIPPED ] " t { exit }
			on && /^\[ (RUN|      OK|  FAILED|  SKIPPED) +\] / { on = 0 }
			on { print }' | reason)
		skips+=("$t: $test: $why")
	done < <(printf '%s\n' "$out" | awk '
		/^\[ RUN      \] / { name = substr($0, 14) }
		/^\[  SKIPPED \] / && substr($0, 14) == name && !(name in seen) { seen[name]; print name }')
	# A crash, a sanitizer report or a valgrind error is a failure too.
	if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then
		echo "[$t] exit status $rc"
		f=1
	fi
	pass=$((pass + p)) fail=$((fail + f)) skip=$((skip + s))
done
if [ ${#skips[@]} -gt 0 ]; then
	echo "$name: skipped tests and why:"
	printf '  SKIP  %s\n' "${skips[@]}"
fi
echo "$name: $pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ]
