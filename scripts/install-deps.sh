#!/usr/bin/env bash
# Install every Debian package kvmm needs to build and test (Debian 12).
# Used by .ci/run and by the README. Safe to run again.
set -euo pipefail

pkgs=(
	build-essential make gcc sparse pkg-config
	linux-image-cloud-amd64 linux-headers-cloud-amd64
	qemu-system-x86 busybox-static e2fsprogs cpio
	libcmocka-dev
	liburing-dev libnuma-dev libxxhash-dev
	fio valgrind
)

SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo

missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
		missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
	echo "install-deps: all ${#pkgs[@]} packages present"
	exit 0
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
