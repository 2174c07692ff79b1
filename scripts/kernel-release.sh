#!/bin/sh
# Print the newest installed Debian cloud kernel release that has headers
# (the kernel kvmm.ko is built for and tested with in QEMU).
for d in $(ls -d /lib/modules/*-cloud-amd64/build 2>/dev/null | sort -V -r); do
	[ -f "$d/Makefile" ] || continue
	basename "$(dirname "$d")"
	exit 0
done
uname -r
