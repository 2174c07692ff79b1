#!/usr/bin/env bash
# Run each named test suite (make check-<suite>), keep going when one fails,
# and print the total. Each suite ends with a line "N passed, N failed[, N skipped]"
# and prints each skipped test as "SKIP PROGRAM: TEST: why"; the skips are
# summed up by reason before the total.
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$top/build/results"
tp=0 tf=0 ts=0 bad=()
declare -A nskip=()
for s in "$@"; do
	log="$top/build/results/$s.log"
	echo "=== suite $s"
	make --no-print-directory -C "$top" "check-$s" 2>&1 | tee "$log"
	rc=${PIPESTATUS[0]}
	line=$(grep -E '(^|: )[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
	if [ -z "$line" ]; then
		echo "suite $s: no result line (exit $rc)"
		tf=$((tf + 1)); bad+=("$s"); continue
	fi
	p=$(sed -E 's/.*(^|: )([0-9]+) passed.*/\2/' <<<"$line")
	f=$(sed -E 's/.* ([0-9]+) failed.*/\1/' <<<"$line")
	k=0; grep -q skipped <<<"$line" && k=$(sed -E 's/.* ([0-9]+) skipped.*/\1/' <<<"$line")
	tp=$((tp + p)); tf=$((tf + f)); ts=$((ts + k)); nskip[$s]=$k
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then tf=$((tf + 1)); fi
	[ "$rc" -ne 0 ] || [ "$f" -ne 0 ] && bad+=("$s")
done
echo
if [ "$ts" -gt 0 ]; then
	echo "skipped tests by reason (each one in build/results/SUITE.log):"
	for s in "$@"; do
		[ "${nskip[$s]:-0}" -gt 0 ] || continue
		lines=$(grep -E '^ *SKIP +[^ :]+: [^ :]+: ' "$top/build/results/$s.log" | awk '!seen[$0]++')
		[ -z "$lines" ] || sed -E 's/^ *SKIP +[^ :]+: [^ :]+: //' <<<"$lines" | sort | uniq -c |
			sort -rn | sed -E "s/^ *([0-9]+) /  \1  $s: /"
		n=$(grep -c . <<<"$lines")
		[ "$n" -ge "${nskip[$s]}" ] ||
			echo "  $((nskip[$s] - n))  $s: skipped without a line 'SKIP PROGRAM: TEST: why'"
	done
fi
[ ${#bad[@]} -eq 0 ] || echo "failing suites: ${bad[*]}"
echo "check: $tp passed, $tf failed, $ts skipped"
[ ${#bad[@]} -eq 0 ]
