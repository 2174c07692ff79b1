#!/usr/bin/env bash
# Suite "gpu-validate": scripts/gpu-validate.sh tested on every commit, as
# a dry run against the driver stand-in (nothing here runs on a GPU): the
# whole run with its report, then each way a step can fail (a device the
# preflight refuses, a step past its cap, the run's budget spent, a test
# program missing), each of which must give its failure line and exit 1.
# Ends with "gpu-validate: N passed, N failed".
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
# Under build/, as the run's own OUT is: flash needs a disk filesystem.
tmp=$(mktemp -d "$top/build/gpu-validate-test.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
py=/usr/bin/python3
[ -x "$py" ] || py=

ok() {
	echo "PASS $1"
	pass=$((pass + 1))
}
bad() {
	echo "FAIL $1: $2"
	fail=$((fail + 1))
}

# dry NAME ENV...: one dry run into $tmp/NAME; its output in $tmp/NAME.out.
dry() {
	local name=$1
	shift
	env GPU_DRY_RUN=1 OUT="$tmp/$name" "$@" "$top/scripts/gpu-validate.sh" >"$tmp/$name.out" 2>&1
	echo $?
}

# The whole dry run: exit 0, every step reported, both reports written and
# the JSON well formed, and nothing claims to have run on a GPU.
rc=$(dry full)
o=$tmp/full.out
if [ "$rc" != 0 ]; then
	bad dry_run_passes "exit $rc: $(tail -n 3 "$o" | tr '\n' ' ')"
else
	ok dry_run_passes
fi
for s in preflight gpu-kv attn-tests bench-attn bench-kvmm-region bench-cuda bench-flash \
	preload-park preload-park-static; do
	grep -qE "^(DRY|MISSING) +$s " "$o" || bad "dry_run_reports_$s" "no DRY or MISSING line for $s"
done
grep -qE '^PASS ' "$o" && bad dry_run_claims_nothing "a step says PASS in a dry run"
grep -q 'DRY RUN against the driver stand-in' "$tmp/full/report.md" &&
	grep -q '| bench-cuda | DRY |' "$tmp/full/report.md" && ok dry_run_report_md ||
	bad dry_run_report_md "report.md lacks the dry-run banner or the bench-cuda row"
if [ -n "$py" ]; then
	if $py - "$tmp/full/report.json" <<'EOF'; then
import json, sys
r = json.load(open(sys.argv[1]))
assert r["dry_run"] is True, "dry_run flag"
names = [s["name"] for s in r["steps"]]
assert names[0] == "preflight", names
assert all(s["status"] in ("DRY", "MISSING") for s in r["steps"]), r["steps"]
bench = [s for s in r["steps"] if s["name"] == "bench-cuda"][0]
assert "swap" in bench["output"] and "vmm" in bench["output"], bench["output"]
assert r["probe"]["usable"] is True
EOF
		ok dry_run_report_json
	else
		bad dry_run_report_json "report.json is not the expected JSON"
	fi
else
	echo "SKIP validate_test: dry_run_report_json: no /usr/bin/python3 to parse report.json"
fi
grep -qE '^gpu-validate \(dry run\): [0-9]+ ran on the stand-in, 0 failed, [0-9]+ missing' "$o" &&
	ok dry_run_summary_line || bad dry_run_summary_line "no summary line"

# A device below compute capability 8.0 stops the run at the preflight.
rc=$(dry oldgpu MOCK_CUDA_CC=7.5)
o=$tmp/oldgpu.out
if [ "$rc" = 1 ] && grep -q '^FAIL preflight: .*compute capability 7.5' "$o" &&
	! grep -qE '^(DRY|FAIL) +gpu-kv' "$o"; then
	ok preflight_refuses_cc_below_8
else
	bad preflight_refuses_cc_below_8 "exit $rc: $(grep -E 'FAIL|gpu-kv' "$o" | head -n 3 | tr '\n' ' ')"
fi

# No read-only mappings: a warning in the preflight's line, not a failure.
rc=$(dry noro MOCK_CUDA_READ_ONLY=0 GPU_ONLY=preflight)
if [ "$rc" = 0 ] && grep -qE '^DRY +preflight .*WARN: read-only device mappings are refused' \
	"$tmp/noro.out"; then
	ok preflight_warns_without_read_only_mappings
else
	bad preflight_warns_without_read_only_mappings "exit $rc: $(head -n 3 "$tmp/noro.out" | tr '\n' ' ')"
fi

# A step past its cap is killed and reported, and the run goes on.
rc=$(dry slow GPU_ONLY=preflight,bench-cuda,attn-tests GPU_CAP_bench_cuda=1)
o=$tmp/slow.out
if [ "$rc" = 1 ] && grep -q '^FAIL bench-cuda: timed out after 1 s' "$o" &&
	grep -qE '^DRY +attn-tests' "$o"; then
	ok step_past_its_cap_fails
else
	bad step_past_its_cap_fails "exit $rc: $(grep -E 'bench-cuda|attn-tests' "$o" | tr '\n' ' ')"
fi

# The run's budget caps a step, and a step with under 5 s left is not
# started: each says so.
t0=$(date +%s)
rc=$(dry budget GPU_TOTAL_S=7 GPU_ONLY=preflight,bench-cuda)
t=$(($(date +%s) - t0))
if [ "$rc" = 1 ] && grep -qE '^FAIL bench-cuda: timed out after [5-7] s' "$tmp/budget.out" &&
	[ "$t" -le 20 ]; then
	ok budget_caps_a_step
else
	bad budget_caps_a_step "exit $rc in $t s: $(grep -E 'bench-cuda' "$tmp/budget.out" | tr '\n' ' ')"
fi
rc=$(dry spent GPU_TOTAL_S=4)
if [ "$rc" = 1 ] && grep -q "^FAIL preflight: not run: the run's 4 s were spent" "$tmp/spent.out"; then
	ok spent_budget_runs_nothing
else
	bad spent_budget_runs_nothing "exit $rc: $(grep -E 'preflight' "$tmp/spent.out" | tr '\n' ' ')"
fi

# A GPU program that was not built is a failure line, not a skip.
mkdir -p "$tmp/empty/build/tools" "$tmp/empty/scripts"
cp "$top/scripts/gpu-validate.sh" "$tmp/empty/scripts/"
cp "$top/build/tools/kvmm-gpu-probe" "$tmp/empty/build/tools/"
mkdir -p "$tmp/empty/build/tests/cuda"
cp "$top/build/tests/cuda/libcuda-mock.so.1" "$tmp/empty/build/tests/cuda/"
env GPU_DRY_RUN=1 GPU_ONLY=preflight,gpu-kv "$tmp/empty/scripts/gpu-validate.sh" >"$tmp/empty.out" 2>&1
rc=$?
if [ "$rc" = 1 ] && grep -q '^FAIL gpu-kv: not built: ' "$tmp/empty.out"; then
	ok unbuilt_program_fails
else
	bad unbuilt_program_fails "exit $rc: $(grep gpu-kv "$tmp/empty.out" | tr '\n' ' ')"
fi

# The targets table from a benchmark's JSON: a fixture in the attention
# benchmark's output format (made-up numbers, never a measurement) stands in
# for the program, so the parsing is checked without a GPU.
cat >"$tmp/empty/build/tools/kvmm-bench-attn" <<'EOS'
#!/bin/sh
echo '{"gpu":{"device":"fixture","decode":[{"seq_len":1024,"kv_bytes":8388608,"splits":4,"decode_us":10.00,"decode_gbps":838.9,"copy_gbps":883.0,"ratio":0.950,"token_major_layers":8,"token_major_us":23.05,"token_major_gbps":363.9,"token_major_ratio":0.412,"paged16_us":12.50,"paged256_us":10.20}],"prefill":[{"seq_len":1024,"prefill_us":50.0,"tflops":100.0}]}}'
EOS
chmod +x "$tmp/empty/build/tools/kvmm-bench-attn"
env GPU_DRY_RUN=1 GPU_ONLY=preflight,bench-attn OUT="$tmp/fixture" \
	"$tmp/empty/scripts/gpu-validate.sh" >"$tmp/fixture.out" 2>&1
rc=$?
r=$tmp/fixture/report.md
if [ "$rc" = 0 ] &&
	grep -qF '| decode attention GB/s / D2D copy GB/s, layer-major | 0.950 | >= 0.9 | met |' "$r" &&
	grep -qF '| decode attention GB/s / D2D copy GB/s, token-major | 0.412 | >= 0.9 | BELOW |' "$r" &&
	grep -qF '| paged twin us / contiguous us (block 16, 256) | 1.250, 1.020 |' "$r" &&
	grep -qE '^DRY +bench-attn .*layer-major 0.950; token-major 0.412' "$tmp/fixture.out"; then
	ok bench_targets_are_parsed
else
	bad bench_targets_are_parsed "exit $rc: $(grep -E 'bench-attn|GB/s|paged' "$tmp/fixture.out" "$r" | head -n 5 | tr '\n' ' ')"
fi

echo "gpu-validate: $pass passed, $fail failed"
[ "$fail" = 0 ]
