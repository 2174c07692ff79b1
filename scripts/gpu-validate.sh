#!/usr/bin/env bash
# gpu-validate.sh: every GPU test and benchmark of kvmm in one run that
# fits a short GPU window (tests/gpu/README.md). `make gpu-validate` builds
# what it needs into build/ first; on a GPU host with nothing but the
# driver, copy the tree and build/ there and run this script directly:
#     scripts/gpu-validate.sh            (or: OUT=DIR scripts/gpu-validate.sh)
# Each step has its own time cap and the whole run stays under
# GPU_TOTAL_S (470 s: under 8 minutes with the start-up). Nothing is
# fetched (no network), nothing is installed. The report goes to OUT
# (default build/gpu-report): report.md, report.json, one log per step,
# and a summary on stdout. Any failure, timeout, skipped test or missing
# capability is a line "FAIL <step>: why" or "MISSING <step>: why", never a
# silent skip; the exit status is 1 when any step failed.
#
# GPU_DRY_RUN=1 runs the same steps against the driver stand-in
# (build/tests/cuda/libcuda-mock.so.1) on a machine without a GPU: the
# script itself is tested (make check-gpu-validate), nothing runs on a GPU,
# and the report says so on every page. Tests that need real kernels skip
# there; in a real run a skip is a failure.
#
# Environment: OUT, GPU_DEVICE (0), GPU_TOTAL_S (470), GPU_ONLY (steps to
# run, comma-separated), GPU_CAP_<step> (a step's cap in seconds, step
# names with - as _), GPU_NEED_MIB (free device memory the run needs).
set -u

top=$(cd "$(dirname "$0")/.." && pwd)
B=$top/build
out=${OUT:-$B/gpu-report}
dry=${GPU_DRY_RUN:-0}
[ "$dry" = 0 ] && dry=
okst=PASS jdry=false # what a step that worked is called; the JSON flag
[ -n "$dry" ] && okst=DRY jdry=true
okword=passed
[ -n "$dry" ] && okword="ran on the stand-in"
device=${GPU_DEVICE:-0}
total_s=${GPU_TOTAL_S:-470}
need_mib=${GPU_NEED_MIB:-16384}
only=${GPU_ONLY:-}

mkdir -p "$out/logs" || exit 1
rm -f "$out"/logs/*.log "$out"/*.json "$out"/report.md
start=$(date +%s)

# The libraries the build machine linked against travel in build/gpu/lib
# (make gpu-validate-build): a bare GPU host has none of them.
export LD_LIBRARY_PATH=$B/gpu/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
# Flash tests need O_DIRECT on a disk filesystem: build/ is on one.
export KVMM_FLASH_DIR=${KVMM_FLASH_DIR:-$out/flash}
mkdir -p "$KVMM_FLASH_DIR"
export KVMM_MODE=${KVMM_MODE:-user}
if [ -n "$dry" ]; then
	export KVMM_CUDA_LIBRARY=$B/tests/cuda/libcuda-mock.so.1
	export MOCK_CUDA_MEM_BYTES=${MOCK_CUDA_MEM_BYTES:-8589934592}
	export KVMM_FLASH_BYTES=${KVMM_FLASH_BYTES:-268435456} # --quick's slot fits
	need_mib=${GPU_NEED_MIB:-512}
fi

json_esc() { # stdin -> a JSON string body
	sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/\t/\\t/g' | tr -d '\000-\010\013-\037' |
		awk 'BEGIN { ORS = "" } NR > 1 { print "\\n" } { print }'
}

names=() status=() secs=() caps=() lines=() cmds=() jsons=()
nfail=0 nmiss=0 npass=0 nbelow=0

# record NAME STATUS SECONDS CAP LINE CMD JSON: one step's outcome.
record() {
	names+=("$1") status+=("$2") secs+=("$3") caps+=("$4") lines+=("$5") cmds+=("$6")
	jsons+=("${7:-null}")
	case $2 in
	FAIL) nfail=$((nfail + 1)) ;;
	MISSING) nmiss=$((nmiss + 1)) ;;
	*) npass=$((npass + 1)) ;;
	esac
	printf '%-8s %-12s %4ss  %s\n' "$2" "$1" "$3" "$5"
}

wanted() { [ -z "$only" ] || [[ ",$only," == *",$1,"* ]]; }

cap_of() { # NAME DEFAULT
	local v="GPU_CAP_${1//-/_}"
	echo "${!v:-$2}"
}

# run NAME CAP CMD...: runs CMD with its cap, never past the run's budget.
# Sets rc, took, log.
run() {
	local name=$1 cap=$2 left
	shift 2
	log=$out/logs/$name.log
	left=$((total_s - ($(date +%s) - start)))
	if [ "$left" -lt 5 ]; then
		rc=125 took=0 step_cap=0
		echo "not run: the run's ${total_s} s were spent" >"$log"
		return
	fi
	[ "$cap" -gt "$left" ] && cap=$left
	step_cap=$cap
	local t0
	t0=$(date +%s)
	(cd "$top" && exec timeout -k 5 "$cap" "$@") >"$log" 2>&1 </dev/null
	rc=$?
	took=$(($(date +%s) - t0))
}

# The "N passed, N failed, N skipped" line of a test program's log.
counts() { grep -aE '[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1; }

# A test program step: passes only with every test run and passed.
test_step() {
	local name=$1 def=$2 bin=$3 line n_f n_s why
	shift 3
	wanted "$name" || return
	if [ ! -x "$bin" ]; then
		record "$name" FAIL 0 "$def" "not built: $bin (run make gpu-validate-build on the build machine)" "$bin" ""
		return
	fi
	run "$name" "$(cap_of "$name" "$def")" "$bin" "$@"
	line=$(counts)
	if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
		record "$name" FAIL "$took" "$step_cap" "timed out after ${step_cap} s (${line:-no result line}); see logs/$name.log" "$bin $*" ""
		return
	fi
	if [ "$rc" = 125 ]; then
		record "$name" FAIL 0 0 "$(cat "$log")" "$bin $*" ""
		return
	fi
	if [ -z "$line" ]; then
		record "$name" FAIL "$took" "$step_cap" "exit $rc and no result line; see logs/$name.log" "$bin $*" ""
		return
	fi
	n_f=$(sed -E 's/.* ([0-9]+) failed.*/\1/' <<<"$line")
	n_s=0
	grep -q skipped <<<"$line" && n_s=$(sed -E 's/.* ([0-9]+) skipped.*/\1/' <<<"$line")
	why=$(grep -aE '^SKIP ' "$log" | sed -E 's/^SKIP +[^ :]+: [^ :]+: //' | sort | uniq -c |
		sed -E 's/^ *([0-9]+) /\1 x /' | head -n 3 | paste -sd ';' -)
	if [ "$rc" != 0 ] || [ "$n_f" != 0 ]; then
		record "$name" FAIL "$took" "$step_cap" "$line; failed: $(grep -aoE '\[  FAILED  \] [a-z_0-9]+' "$log" | sed 's/.*] //' | sort -u | head -n 5 | paste -sd ' ' -)" "$bin $*" ""
	elif [ "$n_s" != 0 ] && [ -z "$dry" ]; then
		record "$name" FAIL "$took" "$step_cap" "$line: a skip on a GPU host is a failure ($why)" "$bin $*" ""
	elif [ "$n_s" != 0 ]; then
		record "$name" DRY "$took" "$step_cap" "$line (stand-in: $why)" "$bin $*" ""
	else
		record "$name" PASS "$took" "$step_cap" "$line" "$bin $*" ""
	fi
}

# A benchmark step: its JSON output is kept; numbers are checked against
# their targets by verdict().
bench_step() {
	local name=$1 def=$2 bin=$3 json
	shift 3
	wanted "$name" || return
	if [ ! -x "$bin" ]; then
		record "$name" FAIL 0 "$def" "not built: $bin (run make gpu-validate-build on the build machine)" "$bin" ""
		return
	fi
	run "$name" "$(cap_of "$name" "$def")" "$bin" "$@"
	json=$(grep -a '^{' "$log" | tail -n 1)
	if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
		record "$name" FAIL "$took" "$step_cap" "timed out after ${step_cap} s; see logs/$name.log" "$bin $*" ""
	elif [ "$rc" = 125 ]; then
		record "$name" FAIL 0 0 "$(cat "$log")" "$bin $*" ""
	elif [ "$rc" = 77 ] && [ -n "$dry" ]; then
		record "$name" DRY "$took" "$step_cap" "no GPU (stand-in): $(grep -aim1 'skip\|no gpu' "$log")" "$bin $*" ""
	elif [ "$rc" != 0 ] || [ -z "$json" ]; then
		record "$name" FAIL "$took" "$step_cap" "exit $rc: $(grep -av '^{' "$log" | tail -n 1)" "$bin $*" ""
	elif grep -q '"skipped"' <<<"$json"; then
		if [ -n "$dry" ]; then
			record "$name" DRY "$took" "$step_cap" "stand-in: $(grep -oE '"skipped": ?"[^"]*"' <<<"$json")" "$bin $*" ""
		else
			record "$name" FAIL "$took" "$step_cap" "skipped on a GPU host: $(grep -oE '"skipped": ?"[^"]*"' <<<"$json")" "$bin $*" ""
		fi
	else
		printf '%s\n' "$json" >"$out/$name.json"
		record "$name" "$okst" "$took" "$step_cap" "$(summary_of "$name" "$json")" "$bin $*" "$json"
	fi
}

# The numbers of a benchmark's JSON that have targets, one line.
num() { grep -oE "\"$1\": ?-?[0-9.]+" <<<"$2" | sed -E 's/.*: ?//'; }
summary_of() {
	case $1 in
	bench-cuda)
		printf 'swap out/in vs pinned %s/%s; mapper on blocked %s%%' \
			"$(num out_ratio "$2" | head -n1)" "$(num in_ratio "$2" | head -n1)" \
			"$(blocked_on "$2" | paste -sd / -)"
		;;
	bench-kvmm-region)
		printf 'cudaMalloc/kvmm time ratio by layout and seq_len: %s' "$(num ratio "$2" | paste -sd ' ' -)"
		;;
	bench-attn)
		printf 'decode/copy ratio by seq_len: layer-major %s; token-major %s' \
			"$(num ratio "$2" | paste -sd ' ' -)" "$(num token_major_ratio "$2" | paste -sd ' ' -)"
		;;
	esac
}

# blocked_pct of the decode loops with the mapper on.
blocked_on() {
	grep -oE '\{[^{}]*"mapper": true[^{}]*\}' <<<"$1" | grep -oE '"blocked_pct": [0-9.]+' |
		sed -E 's/.*: //'
}

targets=()
# target WHAT VALUE OP GOAL: one line of the targets table (BELOW is not a failure).
target() {
	local v=$2 ok
	if [ -z "$v" ]; then
		targets+=("| $1 | not measured | $3 $4 | MISSING |")
		return
	fi
	ok=$(awk -v v="$v" -v g="$4" -v op="$3" 'BEGIN { print (op == ">=" ? v >= g : v <= g) ? "met" : "BELOW" }')
	[ "$ok" = BELOW ] && nbelow=$((nbelow + 1))
	targets+=("| $1 | $v | $3 $4 | $ok |")
}

missing() { # NAME WHY
	wanted "$1" || return
	record "$1" MISSING 0 0 "$2" "" ""
}

echo "kvmm gpu-validate${dry:+ (DRY RUN against the driver stand-in: nothing runs on a GPU)}: report in $out"

# ---------------------------------------------------------------- steps

probe=null
if wanted preflight; then
	bin=$B/tools/kvmm-gpu-probe
	if [ -x "$bin" ]; then
		run preflight "$(cap_of preflight 30)" "$bin" --device "$device" --need-mib "$need_mib"
		probe=$(grep -a '^{' "$log" | tail -n 1)
		probe=${probe:-null}
		fl=$(grep -a '^FAIL: ' "$log" | sed 's/^FAIL: //' | paste -sd ';' -)
		wl=$(grep -a '^WARN: ' "$log" | sed 's/^WARN: //' | paste -sd ';' -)
		if [ "$rc" = 125 ]; then
			record preflight FAIL 0 0 "$(cat "$log")" "$bin" ""
		elif [ "$rc" = 0 ]; then
			record preflight "$okst" "$took" "$step_cap" \
				"$(num granularity_min "$probe") B granularity, cc $(grep -oE '"cc": "[0-9.]+"' <<<"$probe" | sed -E 's/.*: "(.*)"/\1/'), $(num free_mib "$probe") MiB free${wl:+; WARN: $wl}" "$bin" "$probe"
		else
			record preflight FAIL "$took" "$step_cap" "${fl:-exit $rc, see logs/preflight.log}" "$bin" "$probe"
		fi
	else
		record preflight FAIL 0 30 "not built: $bin (run make gpu-validate-build)" "$bin" ""
	fi
fi
if [ "$nfail" != 0 ] && wanted preflight; then
	echo "FAIL preflight: the device cannot run kvmm's GPU steps; nothing else was run"
	only=preflight
fi

test_step gpu-kv 80 "$B/tests/gpu/test_cuda_kv"
test_step attn-tests 80 "$B/tests/gpu/attn_gpu_test"
# The pluggable-allocator entry points run inside gpu-kv (gpu_alloc_*).
# The preload shim's GPU part: routing, park/unpark at the same addresses,
# the all-or-nothing unpark, under the shared and the static CUDA runtime.
export KVMM_TEST_PRELOAD_SO=$B/lib/libkvmm-preload.so
if [ -x "$B/tests/gpu/test_preload_gpu" ] || [ -x "$B/tests/gpu/test_preload_gpu_static" ]; then
	test_step preload-park 20 "$B/tests/gpu/test_preload_gpu"
	test_step preload-park-static 10 "$B/tests/gpu/test_preload_gpu_static"
else
	missing preload-park "not built: tests/gpu/test_preload_gpu needs libcudart.so on the build machine (make gpu-validate-build)"
fi
bench_step bench-attn 80 "$B/tools/kvmm-bench-attn" --gpu-only --json --lens 1024,8192,32768
bench_step bench-kvmm-region 60 "$B/tools/kvmm-bench-region" --json --device "$device"
bench_step bench-cuda 110 "$B/tools/kvmm-bench-cuda" --json --device "$device" ${dry:+--quick} vmm decode swap
# GPU <-> flash: the swap section of bench-cuda, reported as its own step.
if wanted bench-cuda; then
	j=$(cat "$out/bench-cuda.json" 2>/dev/null)
	fe=$(grep -oE '"flash_error": ?"[^"]*"' <<<"$j" | sed -E 's/.*: ?"(.*)"/\1/')
	if [ -z "$j" ]; then
		record bench-flash FAIL 0 0 "not measured: bench-cuda gave no JSON" "" ""
	elif [ -n "$fe" ]; then
		record bench-flash FAIL 0 0 "GPU <-> flash swaps failed: $fe (KVMM_FLASH_DIR=$KVMM_FLASH_DIR)" "(bench-cuda swap)" ""
	else
		record bench-flash "$okst" 0 0 "GPU -> flash $(num flash_out_gbs "$j") GB/s, flash -> GPU $(num flash_in_gbs "$j") GB/s (bench-cuda's swap section)" "(bench-cuda swap)" ""
	fi
fi

# ---------------------------------------------------------------- targets

for i in "${!names[@]}"; do
	j=${jsons[$i]}
	case ${names[$i]} in
	bench-attn)
		for r in $(num ratio "$j"); do target "decode attention GB/s / D2D copy GB/s, layer-major" "$r" ">=" 0.9; done
		for r in $(num token_major_ratio "$j"); do target "decode attention GB/s / D2D copy GB/s, token-major" "$r" ">=" 0.9; done
		# The paged twin: its time over the contiguous kernel's (no target; 1.0 is parity).
		paste -d ' ' <(num decode_us "$j") <(num paged16_us "$j") <(num paged256_us "$j") |
			while read -r c p16 p256; do
				awk -v c="$c" -v a="$p16" -v b="$p256" 'BEGIN { if (c > 0) printf "| paged twin us / contiguous us (block 16, 256) | %.3f, %.3f | (none) | info |\n", a / c, b / c }'
			done >"$out/.paged"
		while read -r l; do targets+=("$l"); done <"$out/.paged"
		rm -f "$out/.paged"
		;;
	bench-kvmm-region)
		for r in $(num ratio "$j"); do target "decode on cudaMalloc us / on a kvmm region us" "$r" ">=" 0.99; done
		;;
	bench-cuda)
		target "swap out GB/s / pinned cuMemcpyDtoHAsync" "$(num out_ratio "$j")" ">=" 0.9
		target "swap in GB/s / pinned cuMemcpyHtoDAsync" "$(num in_ratio "$j")" ">=" 0.9
		for p in $(blocked_on "$j"); do target "decode loop blocked in step, mapper on (%)" "$p" "<=" 1; done
		for k in flash_out_gbs flash_in_gbs; do
			v=$(num $k "$j")
			[ -n "$v" ] && targets+=("| slot swap through flash, $k | $v | (none set) | info |")
		done
		;;
	esac
done



# ---------------------------------------------------------------- report

elapsed=$(($(date +%s) - start))
now=$(date -u '+%Y-%m-%d %H:%M:%S UTC')
pv() { grep -oE "\"$1\": (\"[^\"]*\"|[0-9.]+|true|false)" <<<"$probe" | head -n1 | sed -E 's/^[^:]*: "?//; s/"$//'; }
smi=
command -v nvidia-smi >/dev/null 2>&1 &&
	smi=$(timeout 10 nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -n 1)
{
	echo "# kvmm gpu-validate report"
	echo
	[ -n "$dry" ] && echo "**DRY RUN against the driver stand-in (tests/cuda/mock_cuda.c): nothing here ran on a GPU; every number is the stand-in's, not a measurement.**" && echo
	echo "- date: $now"
	echo "- host: $(uname -srm), glibc $(getconf GNU_LIBC_VERSION 2>/dev/null | sed 's/glibc //')"
	echo "- device: $(pv name) (cc $(pv cc), $(pv total_mib) MiB, PCI $(pv pci_bus_id))"
	echo "- driver: CUDA driver API $(pv driver_version)${smi:+; nvidia-smi: $smi}; built against cuda.h $(pv cuda_h_version)"
	echo "- VMM: granularity $(pv granularity_min) B (recommended $(pv granularity_recommended) B), read-only mappings: $(pv read_only_mappings)"
	echo "- run: ${elapsed} s of a ${total_s} s budget; $npass $okword, $nfail failed, $nmiss missing"
	echo
	echo "| step | status | s (cap) | result | command |"
	echo "|---|---|---|---|---|"
	for i in "${!names[@]}"; do
		echo "| ${names[$i]} | ${status[$i]} | ${secs[$i]} (${caps[$i]}) | ${lines[$i]//|/\\|} | \`${cmds[$i]}\` |"
	done
	echo
	echo "## Targets"
	echo
	echo "| measure | value | target | verdict |"
	echo "|---|---|---|---|"
	for t in "${targets[@]}"; do echo "$t"; done
	echo
	echo "Raw benchmark output: the *.json files beside this report; each step's log in logs/."
} >"$out/report.md"
{
	printf '{"kvmm_gpu_validate": 1, "dry_run": %s, "date": "%s", "elapsed_s": %d, "budget_s": %d, ' \
		"$jdry" "$now" "$elapsed" "$total_s"
	printf '"passed": %d, "failed": %d, "missing": %d, "below_target": %d, "probe": %s, "steps": [' \
		"$npass" "$nfail" "$nmiss" "$nbelow" "$probe"
	for i in "${!names[@]}"; do
		[ "$i" -gt 0 ] && printf ', '
		printf '{"name": "%s", "status": "%s", "seconds": %s, "cap_s": %s, "result": "%s", "command": "%s", "output": %s}' \
			"${names[$i]}" "${status[$i]}" "${secs[$i]}" "${caps[$i]}" \
			"$(json_esc <<<"${lines[$i]}")" "$(json_esc <<<"${cmds[$i]}")" "${jsons[$i]}"
	done
	printf ']}\n'
} >"$out/report.json"

echo
for i in "${!names[@]}"; do
	case ${status[$i]} in
	FAIL | MISSING) echo "${status[$i]} ${names[$i]}: ${lines[$i]}" ;;
	esac
done
echo "gpu-validate${dry:+ (dry run)}: $npass $okword, $nfail failed, $nmiss missing, $nbelow below target, ${elapsed} s; report: $out/report.md"
[ "$nfail" = 0 ]
