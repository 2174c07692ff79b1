#!/usr/bin/env bash
# Run each named test suite (make check-<suite>), keep going when one fails,
# and print the total. Each suite ends with a line "N passed, N failed[, N skipped]".
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$top/build/results"
tp=0 tf=0 ts=0 bad=()
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
	tp=$((tp + p)); tf=$((tf + f)); ts=$((ts + k))
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then tf=$((tf + 1)); fi
	[ "$rc" -ne 0 ] || [ "$f" -ne 0 ] && bad+=("$s")
done
echo
[ ${#bad[@]} -eq 0 ] || echo "failing suites: ${bad[*]}"
echo "check: $tp passed, $tf failed, $ts skipped"
[ ${#bad[@]} -eq 0 ]
