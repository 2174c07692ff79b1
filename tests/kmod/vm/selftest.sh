#!/usr/bin/env bash
# Check parse.awk against made-up VM output; runs on any machine in well under a second.
# Prints one line per case and "kmod-harness: N passed, N failed".
set -u
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0

# case NAME EXPECTED-CLOSING-LINE [awk -v settings...] < results
check() {
	local name=$1 want=$2
	shift 2
	cat >"$tmp/results"
	: >"$tmp/console"
	[ -f "$tmp/console.in" ] && mv "$tmp/console.in" "$tmp/console"
	local out got
	out=$(awk -v live=0 -v mode=test -v label=kmod -v console="$tmp/console" "$@" \
		-f "$here/parse.awk" "$tmp/results")
	got=$(tail -n 1 <<<"$out")
	if [ "$got" = "$want" ]; then
		echo "  PASS  $name"
		pass=$((pass + 1))
	else
		echo "  FAIL  $name: wanted '$want', got '$got'"
		printf '        %s\n' "${out//$'\n'/$'\n'        }"
		fail=$((fail + 1))
	fi
}

# listed NAME LINE...: the last case's full output holds each LINE.
listed() {
	local name=$1 line out
	shift
	out=$(awk -v live=0 -v mode=test -v label=kmod -f "$here/parse.awk" "$tmp/results")
	for line in "$@"; do
		if ! grep -qxF -- "$line" <<<"$out"; then
			echo "  FAIL  $name: no line '$line' in:"
			printf '        %s\n' "${out//$'\n'/$'\n'        }"
			fail=$((fail + 1))
			return
		fi
	done
	echo "  PASS  $name"
	pass=$((pass + 1))
}

prologue='@@KVMM BEGIN test 1 6.1.0
@@KVMM INSMOD 0'
epilogue='@@KVMM RMMOD 0
@@KVMM DMESG-BEGIN
[    1.0] boot WARNING: before the module, ignored
[    2.0] kvmm-harness: insmod kvmm.ko
@@KVMM DMESG-END
@@KVMM END'

check "all pass" "kmod: 7 passed, 0 failed, 0 skipped" <<EOF
$prologue
@@KVMM START test_a 1 1
1..2
ok 1 - one
ok 2 - two
# ok - a
@@KVMM EXIT test_a 0 0 0
@@KVMM POOL test_a 0 0
$epilogue
EOF

check "failure, skip and its message" "kmod: 5 passed, 1 failed, 1 skipped" <<EOF
$prologue
@@KVMM START test_a 1 1
1..3
ok 1 - one
ERROR: something broke
not ok 2 - two
# 0x1 != 0x2
not ok 3 # SKIP three
# not ok - a
@@KVMM EXIT test_a 1 0 0
$epilogue
EOF
out=$(awk -v live=0 -v mode=test -v label=kmod -f "$here/parse.awk" "$tmp/results")
if grep -q 'something broke' <<<"$out" && grep -q '0x1 != 0x2' <<<"$out"; then
	echo "  PASS  failure message kept"
	pass=$((pass + 1))
else
	echo "  FAIL  failure message kept"
	fail=$((fail + 1))
fi

check "a skip says why" "kmod: 5 passed, 0 failed, 2 skipped" <<EOF
$prologue
@@KVMM START test_a 1 1
1..3
ok 1 - one
skip: no stress-ng in the VM
not ok 2 # SKIP two
# kvmmctl is not in the VM
ok 3 # SKIP three
# ok - a
@@KVMM EXIT test_a 0 0 0
$epilogue
EOF
listed "each skip listed with its reason" '  SKIP  test_a: two: no stress-ng in the VM' \
	'  SKIP  test_a: three: kvmmctl is not in the VM'

check "a program that cannot run counts each test it lists" "kmod: 5 passed, 0 failed, 3 skipped" <<EOF
$prologue
@@KVMM START test_a 1 2
ok 1 - one
@@KVMM EXIT test_a 0 0 0
@@KVMM START test_b 2 2
skip: these tests need a flash store: no O_DIRECT
@@KVMM EXIT test_b 77 0 0
@@KVMM LIST test_b
first
second
third
@@KVMM LIST-END test_b 0
$epilogue
EOF
listed "a whole-program skip gives its reason for each test" \
	'  SKIP  test_b: first: these tests need a flash store: no O_DIRECT' \
	'  SKIP  test_b: third: these tests need a flash store: no O_DIRECT'

check "exit 77 without a list of tests" "kmod: 4 passed, 2 failed, 0 skipped" <<EOF
$prologue
@@KVMM START test_a 1 2
skip: no reason to run
@@KVMM EXIT test_a 77 0 0
@@KVMM LIST test_a
@@KVMM LIST-END test_a 1
@@KVMM START test_b 2 2
@@KVMM EXIT test_b 77 0 0
$epilogue
EOF

check "timeout, crash, bad exit, short plan" "kmod: 7 passed, 3 failed, 0 skipped" <<EOF
$prologue
@@KVMM START test_hang 1 4
1..2
ok 1 - one
@@KVMM EXIT test_hang 143 300 1
@@KVMM START test_crash 2 4
@@KVMM EXIT test_crash 139 0 0
@@KVMM START test_plain 3 4
@@KVMM EXIT test_plain 0 0 0
@@KVMM START test_short 4 4
1..3
ok 1 - one
@@KVMM EXIT test_short 3 0 0
$epilogue
EOF

check "leak, stray process, reload failure" "kmod: 6 passed, 3 failed, 0 skipped" <<EOF
$prologue
@@KVMM START test_a 1 2
ok 1 - one
@@KVMM EXIT test_a 0 0 0
@@KVMM STRAY test_a sleep[42]
@@KVMM RELOAD test_a 1
insmod: can't insert
@@KVMM POOL test_a 0 4096
@@KVMM START test_b 2 2
ok 1 - one
@@KVMM EXIT test_b 0 0 0
@@KVMM POOL test_b 4096 4096
$epilogue
EOF

check "kernel log after insmod" "kmod: 3 passed, 2 failed, 0 skipped" <<EOF
$prologue
@@KVMM START test_a 1 1
ok 1 - one
@@KVMM EXIT test_a 0 0 0
@@KVMM RMMOD 1
rmmod: can't unload module 'kvmm': Resource temporarily unavailable
@@KVMM DMESG-BEGIN
[    1.0] WARNING: at boot, ignored
[    2.0] kvmm-harness: insmod kvmm.ko
[    2.1] kvmm-harness: start test_a
[    2.2] BUG: KASAN: use-after-free in kvmm_fault
@@KVMM DMESG-END
@@KVMM END
EOF

check "kmemleak" "kmod: 5 passed, 1 failed, 0 skipped" <<EOF
$prologue
@@KVMM START test_a 1 1
ok 1 - one
@@KVMM EXIT test_a 0 0 0
@@KVMM RMMOD 0
@@KVMM KMEMLEAK-BEGIN
unreferenced object 0xffff888003c1a000 (size 64):
@@KVMM KMEMLEAK-END
@@KVMM DMESG-BEGIN
[    2.0] kvmm-harness: insmod kvmm.ko
@@KVMM DMESG-END
@@KVMM END
EOF

check "kmemleak: only kvmm's objects count" "kmod: 5 passed, 1 failed, 0 skipped" <<EOF
$prologue
@@KVMM START test_a 1 1
ok 1 - one
@@KVMM EXIT test_a 0 0 0
@@KVMM KMEMLEAK-BEGIN suite
unreferenced object 0xffff888003c1a000 (size 64):
  comm "swapper/0", pid 1, jiffies 4294892296 (age 20.0s)
  backtrace:
    [<ffffffff812a1b2c>] __kmalloc+0x4c/0x170
    [<ffffffff81b0c0de>] acpi_os_allocate+0x1e/0x30
unreferenced object 0xffff888003c1b000 (size 128):
  comm "test_a", pid 90, jiffies 4294892296 (age 12.0s)
  backtrace:
    [<ffffffff812a1b2c>] __kmalloc+0x4c/0x170
    [<ffffffffc0a01234>] kvmm_region_create+0x34/0x400 [kvmm]
@@KVMM KMEMLEAK-END
@@KVMM RMMOD 0
@@KVMM KMEMLEAK-BEGIN unload ffffffffc0a00000 ffffffffc0a10000
unreferenced object 0xffff888003c1c000 (size 32):
  comm "swapper/0", pid 1, jiffies 4294892296 (age 20.0s)
  backtrace:
    [<ffffffff812a1b2c>] __kmalloc+0x4c/0x170
@@KVMM KMEMLEAK-END
@@KVMM DMESG-BEGIN
[    2.0] kvmm-harness: insmod kvmm.ko
[    9.0] kmemleak: 2 new suspected memory leaks (see /sys/kernel/debug/kmemleak)
@@KVMM DMESG-END
@@KVMM END
EOF

check "kmemleak: a leak at kvmm's old addresses after rmmod" "kmod: 5 passed, 1 failed, 0 skipped" <<EOF
$prologue
@@KVMM START test_a 1 1
ok 1 - one
@@KVMM EXIT test_a 0 0 0
@@KVMM RMMOD 0
@@KVMM KMEMLEAK-BEGIN unload ffffffffc0a00000 ffffffffc0a10000
unreferenced object 0xffff888003c1c000 (size 32):
  comm "rmmod", pid 120, jiffies 4294892296 (age 7.0s)
  backtrace:
    [<ffffffff812a1b2c>] __kmalloc+0x4c/0x170
    [<ffffffffc0a0f00d>] 0xffffffffc0a0f00d
@@KVMM KMEMLEAK-END
@@KVMM DMESG-BEGIN
[    2.0] kvmm-harness: insmod kvmm.ko
@@KVMM DMESG-END
@@KVMM END
EOF

check "kmemleak: other objects are notes" "kmod: 6 passed, 0 failed, 0 skipped" <<EOF
$prologue
@@KVMM START test_a 1 1
ok 1 - one
@@KVMM EXIT test_a 0 0 0
@@KVMM KMEMLEAK-BEGIN suite
unreferenced object 0xffff888003c1a000 (size 64):
  comm "swapper/0", pid 1, jiffies 4294892296 (age 20.0s)
  backtrace:
    [<ffffffff812a1b2c>] __kmalloc+0x4c/0x170
@@KVMM KMEMLEAK-END
@@KVMM RMMOD 0
@@KVMM DMESG-BEGIN
[    2.0] kvmm-harness: insmod kvmm.ko
[    9.0] kmemleak: 1 new suspected memory leaks (see /sys/kernel/debug/kmemleak)
@@KVMM DMESG-END
@@KVMM END
EOF

printf '%s\n' '@@KVMM BEGIN test 1 6.1.0' '@@KVMM INSMOD 0' '@@KVMM START test_a 1 1' \
	'[    3.0] general protection fault, probably for non-canonical address' \
	'[    3.1] Kernel panic - not syncing: Fatal exception' >"$tmp/console.in"
check "guest panic" "kmod: 1 passed, 2 failed, 0 skipped" <<EOF
$prologue
@@KVMM START test_a 1 1
1..1
EOF

check "VM time limit" "kmod: 2 passed, 1 failed, 0 skipped" -v timedout=1 -v vmlimit=900 <<EOF
$prologue
@@KVMM START test_a 1 1
1..1
EOF

echo 'qemu: could not load kernel' >"$tmp/console.in"
check "no boot" "kmod: 0 passed, 1 failed, 0 skipped" </dev/null

check "test disk missing" "kmod: 5 passed, 1 failed, 0 skipped" <<EOF
@@KVMM BEGIN test 1 6.1.0
@@KVMM MOUNT-FAILED kvmmsmall /mnt/small
mount: mounting /dev/nvme1n1 on /mnt/small failed: Invalid argument
@@KVMM INSMOD 0
@@KVMM START test_a 1 1
ok 1 - one
@@KVMM EXIT test_a 0 0 0
$epilogue
EOF

check "forked child repeats results" "kmod: 6 passed, 2 failed, 0 skipped" <<EOF
$prologue
@@KVMM START test_a 1 1
1..3
ok 1 - first
not ok 2 - forks
# Test failed with exception: Segmentation fault(11)
ok 3 - last
not ok 2 - forks
# test_a.c:15: error: Failure!
ok 3 - last
@@KVMM EXIT test_a 1 0 0
$epilogue
EOF

check "insmod fails" "kmod: 2 passed, 1 failed, 0 skipped" <<EOF
@@KVMM BEGIN test 1 6.1.0
@@KVMM INSMOD 22
insmod: can't insert '/kvmm.ko': Invalid argument
@@KVMM RMMOD-SKIPPED
@@KVMM DMESG-BEGIN
@@KVMM DMESG-END
@@KVMM END
EOF

check "bench exit status" "kmod: 5 passed, 1 failed, 0 skipped" -v mode=bench <<EOF
$prologue
@@KVMM START bench_a 1 2
not ok 1 - numbers are not TAP here
@@KVMM EXIT bench_a 0 12 0
@@KVMM START bench_b 2 2
@@KVMM EXIT bench_b 1 1 0
$epilogue
EOF

echo "kmod-harness: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
