#!/usr/bin/env bash
# Build (once) the debug kernel for `make check-debug`: Debian's
# linux-source-6.1 with Debian's cloud-amd64 config plus
# tests/kmod/debug.config. The build lives outside the tree, in
# ${KVMM_CACHE:-~/.cache/kvmm}/debug-<hash>, and is reused while the
# fragment and the kernel source are unchanged. Prints the tree's path last.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
frag=$top/tests/kmod/debug.config
cache=${KVMM_CACHE:-$HOME/.cache/kvmm}
tarball=$(ls /usr/src/linux-source-6.1*.tar.xz 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$tarball" ]; then
	echo "debug-kernel: installing linux-source-6.1" >&2
	SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
	$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
		linux-source-6.1 bc bison flex libelf-dev libssl-dev dwarves rsync >&2
	tarball=$(ls /usr/src/linux-source-6.1*.tar.xz | sort -V | tail -n 1)
fi
base=$(ls /boot/config-6.1.*-cloud-amd64 | sort -V | tail -n 1)
key=$( (sha256sum "$frag" "$base"; stat -c %s "$tarball") | sha256sum | cut -c1-12)
dir=$cache/debug-$key
# One build at a time: a second run waits instead of wiping the first's tree.
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9
if [ -f "$dir/.built" ]; then
	echo "debug-kernel: reusing $dir (built in $(cat "$dir/.built") s)" >&2
	echo "$dir/linux"
	exit 0
fi
for p in bc bison flex libelf-dev libssl-dev; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || {
		SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
		$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
			bc bison flex libelf-dev libssl-dev >&2
		break
	}
done
rm -rf "$dir"
mkdir -p "$dir"
start=$(date +%s)
echo "debug-kernel: extracting $tarball into $dir" >&2
tar -C "$dir" -xaf "$tarball"
mv "$dir"/linux-source-6.1 "$dir/linux"
cd "$dir/linux"
cp "$base" .config
scripts/kconfig/merge_config.sh -m .config "$frag" >/dev/null
make olddefconfig >/dev/null
for opt in KASAN PROVE_LOCKING DEBUG_KMEMLEAK FAILSLAB FAIL_PAGE_ALLOC DEBUG_ATOMIC_SLEEP; do
	grep -q "^CONFIG_$opt=y" .config || { echo "debug-kernel: CONFIG_$opt did not stick" >&2; exit 1; }
done
echo "debug-kernel: building bzImage and modules_prepare with $(nproc) jobs (this takes a while)" >&2
make -j"$(nproc)" bzImage modules_prepare >"$dir/build.log" 2>&1 || {
	tail -n 30 "$dir/build.log" >&2
	exit 1
}
# Out-of-tree modules that use only vmlinux symbols resolve them from here.
cp vmlinux.symvers Module.symvers
secs=$(( $(date +%s) - start ))
echo "$secs" >"$dir/.built"
echo "debug-kernel: built in $secs s" >&2
echo "$dir/linux"
