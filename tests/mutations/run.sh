#!/usr/bin/env bash
# Checks that a suite catches hand-made bugs: for each patch, apply it,
# build, run "make check-SUITE", expect a failure, revert.
#   tests/mutations/run.sh SUITE PATCH...
#   tests/mutations/run.sh cuda tests/mutations/cuda-*.patch
# Ends with "mutations: N caught, N missed"; exits 1 if any was missed.
# Each patch's first line says what bug it makes.
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
suite=$1
shift
caught=0 missed=0 current=
revert() {
	[ -n "$current" ] && patch -s -R -p1 -d "$top" <"$current"
	current=
}
trap 'revert; exit 130' INT TERM
for p in "$@"; do
	p=$(cd "$(dirname "$p")" && pwd)/$(basename "$p")
	name=$(basename "$p" .patch)
	if ! patch -s -p1 --dry-run -d "$top" <"$p" >/dev/null; then
		echo "$name: does not apply"
		missed=$((missed + 1))
		continue
	fi
	patch -s -p1 -d "$top" <"$p"
	current=$p
	log=$top/build/results/mutation-$name.log
	mkdir -p "$(dirname "$log")"
	if make --no-print-directory -C "$top" "check-$suite" >"$log" 2>&1; then
		echo "$name: MISSED ($(head -n1 "$p" | sed 's/^# //'))"
		missed=$((missed + 1))
	else
		echo "$name: caught by $(grep -oE '\[  FAILED  \] [a-z_]+$' "$log" | sed 's/.* //' |
			sort -u | tr '\n' ' ')"
		caught=$((caught + 1))
	fi
	revert
done
make --no-print-directory -C "$top" "check-$suite" >/dev/null 2>&1 # rebuild unpatched
echo "mutations: $caught caught, $missed missed"
[ "$missed" -eq 0 ]
