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
	libhiredis-dev libssl-dev redis-server redis-tools python3-cbor2
	fio valgrind stress-ng rsync gnuplot-nox
	cmake g++ git python3 python3-pip python3-setuptools
	python3-numpy python3-pytest python3-torch
)

SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo

missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
		missing+=("$p")
done

# npm fetches llama.cpp's source (scripts/llama-build.sh); a nodejs from
# elsewhere (NodeSource) carries its own npm and conflicts with Debian's.
command -v npm >/dev/null 2>&1 || missing+=(npm)

export DEBIAN_FRONTEND=noninteractive
if [ ${#missing[@]} -eq 0 ]; then
	echo "install-deps: all ${#pkgs[@]} packages present"
else
	echo "install-deps: installing ${missing[*]}"
	$SUDO apt-get update -q
	$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

backports() {
	local bpo=/etc/apt/sources.list.d/bookworm-backports.sources
	if ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
		printf '%s\n' 'Types: deb' 'URIs: http://deb.debian.org/debian' \
			'Suites: bookworm-backports' 'Components: main' \
			'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg' | $SUDO tee $bpo >/dev/null
	fi
	$SUDO apt-get update -q
}

# Valkey 8 from bookworm-backports: the remote tier's tests run against it
# as well as against Redis (they skip it where it is absent).
if ! command -v valkey-server >/dev/null 2>&1; then
	backports
	echo "install-deps: installing valkey-server from bookworm-backports"
	$SUDO apt-get install -y -q --no-install-recommends -t bookworm-backports valkey-server ||
		echo "install-deps: no valkey-server in bookworm-backports; skipping it"
fi

# The 6.12 cloud kernel from bookworm-backports, so kvmm.ko is also built
# and tested on the newer kernel API (KVMM_NO_612=1 skips it).
[ "${KVMM_NO_612:-0}" = 1 ] && exit 0
if ls /lib/modules/6.12.*-cloud-amd64/build/Makefile >/dev/null 2>&1 &&
	ls /boot/vmlinuz-6.12.*-cloud-amd64 >/dev/null 2>&1; then
	echo "install-deps: 6.12 cloud kernel and headers present"
	exit 0
fi
backports
ver=$(apt-cache madison linux-image-cloud-amd64 | awk '/bookworm-backports/ { print $3; exit }')
if [ -z "$ver" ]; then
	echo "install-deps: no 6.12 cloud kernel in bookworm-backports; skipping it"
	exit 0
fi
dep() { apt-cache show "$1=$ver" | sed -n "s/^Depends: \($2[^ ,]*\).*/\1/p" | head -n 1; }
img=$(dep linux-image-cloud-amd64 linux-image-)
hdr=$(dep linux-headers-cloud-amd64 linux-headers-)
echo "install-deps: installing $img $hdr from bookworm-backports"
$SUDO apt-get install -y -q --no-install-recommends -t bookworm-backports "$img" "$hdr"
