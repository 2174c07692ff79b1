#!/usr/bin/env bash
# make demo: run `kvmm-bench serve` on the default trace with kvmm.ko and
# print `kvmmctl status`. Uses the real module when this machine can load
# it (module support, a module built for the running kernel, root);
# otherwise boots the kernel the module was built for in QEMU.
# First, with --preload, an unmodified llama-server serves part of the
# trace with its KV cache on kvmm (LD_PRELOAD) next to the same server
# without it (tools/demo/llama-demo.py; user mode on this machine). The
# shared-system-prompt trace's plots are drawn on this machine (gnuplot).
#   demo.sh --module KO --kernel IMAGE --bench KVMM_BENCH --ctl KVMMCTL --dir DIR [--params P]
#           [--preload LIBKVMM_PRELOAD_SO]
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
module='' kernel='' bench='' ctl='' dir='' params='' preload=''
while [ $# -gt 0 ]; do
	case $1 in
	--module) module=$2; shift 2 ;;
	--kernel) kernel=$2; shift 2 ;;
	--bench) bench=$2; shift 2 ;;
	--ctl) ctl=$2; shift 2 ;;
	--dir) dir=$2; shift 2 ;;
	--params) params=$2; shift 2 ;;
	--preload) preload=$2; shift 2 ;;
	*) echo "demo: unknown option $1" >&2; exit 2 ;;
	esac
done

if [ -n "$preload" ]; then
	echo "demo: part 1, llama-server with and without its KV cache on kvmm (libkvmm-preload.so)"
	if [ ! -x /usr/bin/python3 ]; then
		echo "demo: part 1 skipped: /usr/bin/python3 missing (make deps installs it)"
	elif ! /usr/bin/python3 "$here/llama-demo.py" --so "$preload" --top "$top"; then
		echo "demo: part 1 failed (above); going on with the simulator"
	fi
	echo
	echo "demo: part 2, the serving simulator's capacity table on kvmm.ko"
fi

# Plots need no module (the simulation alone) and gnuplot, which only the
# host has: drawn here whichever way the tables below run.
mkdir -p "$dir"
rm -rf "$dir/plots"
if "$bench" serve --trace system-prompt --no-real --quiet --plot "$dir/plots" \
	--managers paged,paged+prefix,kvmm-layer,kvmm-token,kvmm-token+prefix >/dev/null 2>&1 &&
	[ -f "$dir/plots/capacity.png" ]; then
	echo "demo: plots of the shared-system-prompt trace (running requests, held memory, waste over time per manager):"
	echo "  $dir/plots/capacity.png $dir/plots/held.png $dir/plots/waste.png"
else
	echo "demo: no plots (gnuplot missing? make deps installs it); data in $dir/plots"
fi

# Why the module cannot be loaded here, or nothing when it can.
host_refusal() {
	local vermagic
	[ -r /proc/modules ] || { echo "this kernel has no module support (no /proc/modules)"; return; }
	[ "$(id -u)" -eq 0 ] || { echo "loading a module needs root"; return; }
	vermagic=$(modinfo -F vermagic "$module" 2>/dev/null | cut -d' ' -f1)
	[ "$vermagic" = "$(uname -r)" ] ||
		{ echo "kvmm.ko is built for ${vermagic:-another kernel}, this machine runs $(uname -r)"; return; }
}

why=$(host_refusal)
if [ -z "$why" ]; then
	loaded_here=0
	if ! grep -q '^kvmm ' /proc/modules; then
		# shellcheck disable=SC2086 # params is a list of words
		if insmod "$module" $params; then
			loaded_here=1
		else
			why="insmod $module failed"
		fi
	fi
fi
if [ -z "$why" ]; then
	echo "demo: using kvmm.ko on this machine"
	rc=0
	"$bench" serve || rc=$?
	echo
	"$bench" serve --trace system-prompt --no-real \
		--managers paged,paged+prefix,kvmm-layer,kvmm-token,kvmm-token+prefix || rc=$?
	echo
	echo "kvmmctl status:"
	"$ctl" status || rc=$?
	if [ "$loaded_here" = 1 ]; then rmmod kvmm || true; fi
	exit $rc
fi

echo "demo: $why; booting $(basename "$kernel") in QEMU with kvmm.ko"
exec "$top/tests/kmod/vm/run.sh" --mode bench --label demo --kernel "$kernel" --module "$module" \
	--dir "$dir" --params "$params" --test-timeout 600 --extra "$bench" --extra "$ctl" \
	"$here/kvmm-demo"
