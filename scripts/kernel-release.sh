#!/bin/sh
# Print the Debian cloud kernel release kvmm.ko is built for and tested with
# in QEMU: the newest installed 6.1 (bookworm's own) that has headers, else
# the newest cloud kernel with headers, else the running kernel.
# KVMM_KERNEL_SERIES=6.12 (for example) picks that series instead.
series=${KVMM_KERNEL_SERIES:-6.1}
pick() {
	for d in $(ls -d /lib/modules/"$1"*-cloud-amd64/build 2>/dev/null | sort -V -r); do # shellcheck disable=SC2012
		[ -f "$d/Makefile" ] || continue
		basename "$(dirname "$d")"
		return 0
	done
	return 1
}
pick "$series." || pick "" || uname -r
