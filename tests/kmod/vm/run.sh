#!/usr/bin/env bash
# Boot a kernel in QEMU (TCG) with kvmm.ko and run test or bench programs in it.
#
#   run.sh [options] PROGRAM...
#     --mode test|bench|shell  test: parse TAP into results (default); bench: print the
#                              programs' output, pass = exit 0; shell: interactive VM
#     --kernel PATH            kernel image to boot (required)
#     --module PATH            kvmm.ko to load (required)
#     --dir DIR                work directory: initramfs, disk images, logs (required)
#     --params "P=V ..."       insmod parameters
#     --timeout SECS           whole-VM limit (default 900)
#     --test-timeout SECS      limit per program inside the VM (default 300)
#     --cmdline "..."          extra kernel command line
#     --label WORD             word before the closing line (default kmod)
#     --verbose                print every line the programs and the kernel log print
#     --extra PATH             another executable for the guest's /usr/bin (with its
#                              shared libraries), e.g. stress-ng; may be repeated
#     --env NAME=VALUE         exported to the programs in the guest; may be repeated
#
# Writes DIR/console.log (serial console: kernel messages and progress markers),
# DIR/results.log (what the programs printed, the markers, and the kernel log) and
# DIR/dmesg.log (the kernel log at the end of the suite), and
# ends with "LABEL: N passed, N failed, N skipped". Exits nonzero on any failure.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
mode=test kernel='' module='' dir='' params='' vm_timeout=900 test_timeout=300
extra_cmdline='' label=kmod verbose=0
extras=() envs=()
QEMU=${QEMU:-qemu-system-x86_64}
BUSYBOX=${BUSYBOX:-/bin/busybox}
CMDLINE_BASE="console=ttyS0 panic=-1 slub_debug=FZPU loglevel=4 log_buf_len=8M"

die() {
	echo "vm: $*" >&2
	echo "$label: 0 passed, 1 failed, 0 skipped"
	exit 2
}

while [ $# -gt 0 ]; do
	case $1 in
	--mode) mode=$2; shift 2 ;;
	--kernel) kernel=$2; shift 2 ;;
	--module) module=$2; shift 2 ;;
	--dir) dir=$2; shift 2 ;;
	--params) params=$2; shift 2 ;;
	--timeout) vm_timeout=$2; shift 2 ;;
	--test-timeout) test_timeout=$2; shift 2 ;;
	--cmdline) extra_cmdline=$2; shift 2 ;;
	--label) label=$2; shift 2 ;;
	--verbose) verbose=1; shift ;;
	--extra) extras+=("$2"); shift 2 ;;
	--env) envs+=("$2"); shift 2 ;;
	--) shift; break ;;
	-*) die "unknown option $1" ;;
	*) break ;;
	esac
done
progs=("$@")

case $mode in test | bench | shell) ;; *) die "--mode must be test, bench or shell" ;; esac
[ -n "$dir" ] || die "--dir is required"
[ -r "$kernel" ] || die "kernel image '$kernel' not readable (set VM_KERNEL)"
[ -r "$module" ] || die "module '$module' not found (make module, or set KMOD)"
command -v "$QEMU" >/dev/null || die "$QEMU not installed (scripts/install-deps.sh)"
[ -x "$BUSYBOX" ] || die "$BUSYBOX missing (apt-get install busybox-static)"
command -v mkfs.ext4 >/dev/null || die "mkfs.ext4 missing (apt-get install e2fsprogs)"
[[ $vm_timeout =~ ^[0-9]+$ ]] || die "--timeout must be a number of seconds"
[[ $test_timeout =~ ^[0-9]+$ ]] || die "--test-timeout must be a number of seconds"
for p in "${progs[@]}"; do
	[ -x "$p" ] || die "program '$p' not found"
	case ${p##*/} in *[!A-Za-z0-9_.-]*) die "program name '${p##*/}' has odd characters" ;; esac
done
for p in ${extras[@]+"${extras[@]}"}; do
	if [ ! -f "$p" ] || [ ! -x "$p" ]; then die "extra program '$p' not found"; fi
done
for e in ${envs[@]+"${envs[@]}"}; do
	[[ $e =~ ^[A-Za-z_][A-Za-z0-9_]*=[A-Za-z0-9_.,:/+-]*$ ]] || die "--env '$e' is not NAME=VALUE (plain characters)"
done

if [ "$mode" = bench ] && [ ${#progs[@]} -eq 0 ]; then
	echo "$label: no bench programs"
	echo "$label: 0 passed, 0 failed, 0 skipped"
	exit 0
fi

mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

# One VM per work directory at a time.
exec 9>"$dir/.lock"
if ! flock -n 9; then
	echo "vm: waiting for another run using $dir"
	flock 9
fi

t_start=$(date +%s.%N)

# --- initramfs -------------------------------------------------------------
root=$dir/root
rm -rf "$root"
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,tmp,etc,mnt/flash,mnt/small,tests,bench,root}
cp "$BUSYBOX" "$root/bin/busybox"
while read -r applet; do
	[ -e "$root/$applet" ] || ln -s /bin/busybox "$root/$applet"
done < <("$BUSYBOX" --list-full)
install -m 0755 "$here/init" "$root/init"
cp "$module" "$root/kvmm.ko"
# The kernel's own null_blk (and configfs, which it needs), when its modules
# are installed: tests that need I/O with a set latency load it from
# /lib/kvmm-vm. The debug kernel is built without modules: they skip there.
kver=${kernel##*/vmlinuz-}
mkdir -p "$root/lib/kvmm-vm"
for m in fs/configfs/configfs drivers/block/null_blk/null_blk; do
	f=/lib/modules/$kver/kernel/$m.ko
	if [ -e "$f" ]; then
		cp "$f" "$root/lib/kvmm-vm/"
	elif [ -e "$f.xz" ]; then
		xz -dc "$f.xz" >"$root/lib/kvmm-vm/${m##*/}.ko"
	fi
done
# No crc32c-intel in the guest: TCG emulates its crc32 instruction about 3x
# slower than the kernel's generic table-driven crc32c (hosts load it).

guest_progs=()
for p in "${progs[@]}"; do
	sub=tests
	case ${p##*/} in bench_*) sub=bench ;; esac
	cp "$p" "$root/$sub/"
	guest_progs+=("/$sub/${p##*/}")
done
for p in ${extras[@]+"${extras[@]}"}; do
	cp -L "$p" "$root/usr/bin/${p##*/}"
done

# Shared libraries (and the dynamic loader) of every program, at their own paths.
declare -A libs=()
for p in "${progs[@]}" ${extras[@]+"${extras[@]}"}; do
	missing=$(ldd "$p" 2>/dev/null | grep 'not found' || true)
	[ -z "$missing" ] || die "${p##*/} needs libraries that are not installed: $missing"
	while read -r lib; do
		[ -n "$lib" ] && libs[$lib]=1
	done < <(ldd "$p" 2>/dev/null | sed -nE 's@.*=> (/[^ ]+) .*@\1@p; s@^[[:space:]]*(/[^ ]+) \(0x.*@\1@p')
done
for lib in "${!libs[@]}"; do
	mkdir -p "$root$(dirname "$lib")"
	cp -L "$lib" "$root$lib"
done

{
	printf 'MODE=%q\n' "$mode"
	printf 'KMOD_PARAMS=%q\n' "$params"
	printf 'TEST_TIMEOUT=%q\n' "$test_timeout"
	printf 'PROGS=%q\n' "${guest_progs[*]}"
	for e in ${envs[@]+"${envs[@]}"}; do
		printf 'export %s\n' "$e"
	done
} >"$root/etc/kvmm-vm.conf"
echo "root:x:0:0:root:/root:/bin/sh" >"$root/etc/passwd"

initrd=$dir/initramfs.cpio.gz
(cd "$root" && find . -print0 | LC_ALL=C sort -z | cpio -o -0 -H newc -R 0:0 --quiet) |
	gzip -1 >"$initrd"

# --- disks -----------------------------------------------------------------
# Fresh ext4 each run: a sparse 2 GiB flash disk and a 64 MiB one for ENOSPC tests;
# and a sparse 256 MiB disk without a filesystem (block-device backing tests).
mkdisk() { # file size label
	rm -f "$1"
	truncate -s "$2" "$1"
	mkfs.ext4 -F -q -m 0 -L "$3" -E lazy_itable_init=0,lazy_journal_init=0 "$1"
}
mkdisk "$dir/flash.img" 2G kvmmflash
mkdisk "$dir/small.img" 64M kvmmsmall
rm -f "$dir/raw.img"
truncate -s 256M "$dir/raw.img"

# cache=none (O_DIRECT on the host) where the host filesystem allows it.
cache=none
if ! dd if=/dev/zero of="$dir/.odirect" bs=4096 count=1 oflag=direct status=none 2>/dev/null; then
	cache=writeback
fi
rm -f "$dir/.odirect"

t_prep=$(date +%s.%N)

# --- QEMU ------------------------------------------------------------------
console=$dir/console.log
results=$dir/results.log
pidfile=$dir/qemu.pid
: >"$results"
rm -f "$pidfile"

# shellcheck disable=SC2054 # commas are part of QEMU options
qemu_args=(
	-machine q35 -accel tcg -cpu "${VM_CPU:-max}" -smp 2,sockets=2,cores=1,threads=1 -m 2G
	-object memory-backend-ram,id=m0,size=1G
	-object memory-backend-ram,id=m1,size=1G
	-numa node,nodeid=0,cpus=0,memdev=m0
	-numa node,nodeid=1,cpus=1,memdev=m1
	-kernel "$kernel" -initrd "$initrd"
	-append "$CMDLINE_BASE${extra_cmdline:+ $extra_cmdline}"
	-drive "file=$dir/flash.img,if=none,id=nv0,format=raw,cache=$cache"
	-device nvme,serial=kvmmflash,drive=nv0
	-drive "file=$dir/small.img,if=none,id=nv1,format=raw,cache=$cache"
	-device nvme,serial=kvmmsmall,drive=nv1
	-drive "file=$dir/raw.img,if=none,id=nv2,format=raw,cache=$cache"
	-device nvme,serial=kvmmraw,drive=nv2
	-nic none -no-reboot -nographic
	-chardev "file,id=results,path=$results,append=on"
	-pidfile "$pidfile"
)
# Extra QEMU arguments, split on spaces (for experiments, e.g. "-bios qboot.rom").
# shellcheck disable=SC2206
qemu_args+=(${VM_QEMU_ARGS:-})

if [ "$mode" = shell ]; then
	echo "vm: interactive shell; Ctrl-A x quits QEMU"
	exec "$QEMU" "${qemu_args[@]}" -serial mon:stdio -serial chardev:results
fi

qpid=
cleanup() {
	if [ -n "$qpid" ] && kill -0 "$qpid" 2>/dev/null; then
		kill -TERM "$qpid" 2>/dev/null || true
	fi
	# QEMU itself, should it have outlived timeout(1).
	if [ -s "$pidfile" ]; then
		local q
		q=$(cat "$pidfile" 2>/dev/null || true)
		if [ -n "$q" ] && grep -qa "$dir" "/proc/$q/cmdline" 2>/dev/null; then
			kill -TERM "$q" 2>/dev/null || true
			sleep 0.5
			kill -KILL "$q" 2>/dev/null || true
		fi
	fi
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM HUP

echo "$label: booting $(basename "$kernel") with ${#progs[@]} program(s) (VM limit ${vm_timeout} s, log $console)"
timeout -k 10 "$vm_timeout" "$QEMU" "${qemu_args[@]}" -monitor none -serial stdio \
	-serial chardev:results </dev/null >"$console" 2>&1 &
qpid=$!

# Progress while it runs.
tail --pid="$qpid" -s 0.2 -n +1 -F "$results" 2>/dev/null |
	awk -v live=1 -v mode="$mode" -v label="$label" -v verbose="$verbose" -f "$here/parse.awk" || true

set +e
wait "$qpid"
qrc=$?
set -e
qpid=
t_end=$(date +%s.%N)

timedout=0
if [ "$qrc" -eq 124 ] || [ "$qrc" -eq 137 ]; then
	timedout=1
elif [ "$qrc" -ne 0 ]; then
	echo "vm: QEMU exited with status $qrc:"
	tail -n 5 "$console" | sed 's/^/    /'
fi

# A kernel without a second UART: /init wrote everything to the console.
if ! grep -q '^@@KVMM BEGIN' "$results" && grep -aq '^@@KVMM BEGIN' "$console"; then
	echo "vm: no second serial port in the guest; reading results from the console"
	tr -d '\r' <"$console" >"$results"
fi

sed -n '/^@@KVMM DMESG-BEGIN/,/^@@KVMM DMESG-END/{/^@@KVMM /d;p;}' "$results" >"$dir/dmesg.log"

awk -v "prep=$t_prep" -v "start=$t_start" -v "end=$t_end" 'BEGIN {
	printf "vm: prepared in %.1f s, VM ran %.1f s\n", prep - start, end - prep }'

awk -v live=0 -v mode="$mode" -v label="$label" -v console="$console" \
	-v timedout="$timedout" -v vmlimit="$vm_timeout" -f "$here/parse.awk" "$results"
