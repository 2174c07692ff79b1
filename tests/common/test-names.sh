#!/usr/bin/env bash
# The names of the tests a cmocka program's source holds (its
# cmocka_unit_test*(NAME, ...) table entries), one a line, for a harness that
# counts the tests of a program it cannot build here as skipped. A program
# that is built answers `PROGRAM --list` instead (tests/common/t_list.h).
#   test-names.sh SOURCE...
set -euo pipefail
for f in "$@"; do
	# Entries may be split over lines: read the source as one line.
	tr -d ' \t\n' <"$f" | grep -o 'cmocka_unit_test[a-z_]*([A-Za-z_][A-Za-z0-9_]*' | sed 's/.*(//'
done
