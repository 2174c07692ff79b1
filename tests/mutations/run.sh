#!/usr/bin/env bash
# make check-mutations: every tests/mutations/*.patch puts one realistic bug
# into the tree; the suite its header names must fail with it applied.
#   tests/mutations/run.sh [PATCH...]     (default: every patch)
# Header of a patch (before the diff):
#   # what the bug is
#   # suite: make arguments that run the suite meant to catch it
# Each patch is applied to a scratch copy of the tree (sources and build
# outputs with their times, so only what the patch touches is rebuilt),
# never to this tree. Ends with "mutations: N caught, N missed (of N)";
# exits 1 if any was missed. MUTATION_TIMEOUT (s, default 1800) bounds one
# suite run; a run that times out counts as missed.
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
out=$top/build/results/mutations
timeout_s=${MUTATION_TIMEOUT:-1800}
mkdir -p "$out"
if [ $# -eq 0 ]; then
	set -- "$top"/tests/mutations/*.patch
fi

scratch=$(mktemp -d "${TMPDIR:-/tmp}/kvmm-mutations.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
tree=$scratch/tree
# VM disk images and earlier results are made again by the suites.
rsync -a --exclude /.git --exclude '*.img' --exclude '*.cpio.gz' \
	--exclude /build/results "$top/" "$tree/"

caught=0 missed=0 total=0
for p in "$@"; do
	p=$(cd "$(dirname "$p")" && pwd)/$(basename "$p")
	name=$(basename "$p" .patch)
	what=$(sed -n '1s/^# //p' "$p")
	suite=$(sed -n 's/^# suite: //p' "$p" | head -n1)
	log=$out/$name.log
	total=$((total + 1))
	if [ -z "$suite" ]; then
		echo "$name: MISSED (no '# suite:' line in its header)"
		missed=$((missed + 1))
		continue
	fi
	if ! patch -s -p1 --dry-run -d "$tree" <"$p" >"$log" 2>&1; then
		echo "$name: MISSED (does not apply to this tree; see $log)"
		missed=$((missed + 1))
		continue
	fi
	patch -s -p1 -d "$tree" <"$p"
	t0=$(date +%s)
	# The suite line is make arguments, quotes and all.
	(cd "$tree" && timeout "$timeout_s" bash -c "make --no-print-directory $suite") >>"$log" 2>&1
	rc=$?
	secs=$(($(date +%s) - t0))
	if [ $rc -eq 0 ]; then
		echo "$name: MISSED by '$suite' in ${secs} s ($what)"
		missed=$((missed + 1))
	elif [ $rc -eq 124 ]; then
		echo "$name: MISSED ('$suite' timed out after ${timeout_s} s; see $log)"
		missed=$((missed + 1))
	elif grep -aqE ':[0-9]+:[0-9]+: error:' "$log" ||
		! grep -aqE 'FAIL|passed|AddressSanitizer|runtime error' "$log"; then
		# A patch that breaks the build, or a suite that never ran, catches nothing.
		echo "$name: MISSED ('$suite' did not build or did not run; see $log)"
		missed=$((missed + 1))
	else
		by=$(grep -aoE '(FAIL:? +[A-Za-z0-9_.:-]+( [a-z0-9_]+)?|\[  FAILED  \] [A-Za-z0-9_]+)' "$log" |
			sed -E 's/^(FAIL:? +|\[  FAILED  \] )//' | sort -u | head -n4 | tr '\n' ' ')
		echo "$name: caught by '$suite' in ${secs} s: ${by:-a failed suite (see $log)}"
		caught=$((caught + 1))
	fi
	patch -s -R -p1 -d "$tree" <"$p"
done
echo "mutations: $caught caught, $missed missed (of $total)"
[ $missed -eq 0 ]
