#!/usr/bin/python3
"""llama.cpp with and without libkvmm-preload.so, side by side in one run.

Prints (docs/benchmarks.md records them):
  1. llama-batched-bench throughput (tokens/s), without / with the shim, runs alternated;
  2. resident KV bytes of llama-server at 10% context use, without / with;
  3. time to first token of llama-server started with a 128k context, without / with
     (from the start of the process to the first token of a one-token request).

    bench-preload.py --so LIB --top DIR [--runs N]
"""
import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.request

ap = argparse.ArgumentParser()
ap.add_argument("--so", required=True)
ap.add_argument("--top", required=True)
ap.add_argument("--runs", type=int, default=3)
a = ap.parse_args()
MiB = 1 << 20
KV_TOKEN_BYTES = 8 << 10  # the model of tools/llama/make-model.py: 8 layers x K,V x 4 heads x 64 x f16
RULE = "name=kv,lib=libggml-base.so,min=16M,chunk=256K"

bld = subprocess.run([os.path.join(a.top, "scripts/llama-build.sh")], check=True,
                     capture_output=True, text=True).stdout.split()[-1]
BIN = os.path.join(bld, "bin")
MODEL = os.path.join(os.environ.get("KVMM_CACHE", os.path.expanduser("~/.cache/kvmm")),
                     "test-llama.gguf")
if not os.path.exists(MODEL):
    subprocess.run(["/usr/bin/python3", os.path.join(a.top, "tools/llama/make-model.py"),
                    os.path.join(os.path.dirname(bld), "src"), MODEL], check=True)


def env(shim, regdir=None):
    e = dict(os.environ)
    e.pop("LD_PRELOAD", None)
    if shim:
        e.update({"LD_PRELOAD": a.so, "KVMM_PRELOAD_RULES": RULE})
        if regdir:
            e["KVMM_PRELOAD_REGISTRY"] = regdir
    return e


def batched(shim):
    out = subprocess.run([os.path.join(BIN, "llama-batched-bench"), "-m", MODEL, "-c", "16384",
                          "-b", "512", "-ub", "512", "-npp", "128", "-ntg", "64", "-npl", "4",
                          "-t", "2"],
                         env=env(shim), check=True, capture_output=True, text=True).stdout
    row = [line for line in out.splitlines() if re.match(r"\|\s+128 \|", line)][-1]
    return float(row.split("|")[-2])


def port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def server(shim, ctx, prompt_tokens):
    """(seconds from start to the first token, KV resident bytes or None, RSS bytes)."""
    reg = tempfile.mkdtemp(prefix="kvmm-bench-reg-")
    p = port()
    t0 = time.time()
    proc = subprocess.Popen([os.path.join(BIN, "llama-server"), "-m", MODEL, "-c", str(ctx),
                             "-np", "1", "-t", "2", "--host", "127.0.0.1", "--port", str(p),
                             "--no-warmup"], env=env(shim, reg), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    body = json.dumps({"prompt": "hello " * prompt_tokens, "n_predict": 1, "temperature": 0,
                       "cache_prompt": True}).encode()
    while True:
        try:
            req = urllib.request.Request(f"http://127.0.0.1:{p}/completion", data=body,
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=600) as r:
                r.read()
            break
        except OSError:
            time.sleep(0.05)
    ttft = time.time() - t0
    rss = int(re.search(r"VmRSS:\s+(\d+)", open(f"/proc/{proc.pid}/status").read())[1]) * 1024
    kv = None
    if shim:
        time.sleep(0.7)  # the shim rewrites its registry file every 500 ms
        with open(os.path.join(reg, str(proc.pid))) as f:
            regs = [dict(x.split("=", 1) for x in line.split()[1:]) for line in f
                    if line.startswith("region") and "rule=kv" in line]
        # The rule also routes llama.cpp's other large buffers (the weights
        # when the model is read rather than mapped, the compute buffer):
        # the KV cache is the region of exactly ctx tokens of KV.
        kv_regs = [r for r in regs if int(r["asked_bytes"]) == ctx * KV_TOKEN_BYTES]
        assert len(kv_regs) == 1, f"no single KV region of {ctx} tokens in {regs}"
        kv = int(kv_regs[0]["resident_bytes"])
    proc.terminate()
    proc.wait()
    return ttft, kv, rss


print(f"llama.cpp {os.path.basename(os.path.dirname(bld))}, model {MODEL} "
      "(8 layers, 8 KiB of KV per token), 2 threads; user mode")
base, shim = [], []
for i in range(a.runs):
    base.append(batched(False))
    shim.append(batched(True))
mb, ms = statistics.median(base), statistics.median(shim)
print(f"1. llama-batched-bench -c 16384 -npp 128 -ntg 64 -npl 4, total tokens/s "
      f"(median of {a.runs}, runs alternated):")
print(f"   without {mb:.1f}  with {ms:.1f}  ratio {ms / mb:.3f}   "
      f"(without {', '.join(f'{x:.1f}' for x in base)}; with {', '.join(f'{x:.1f}' for x in shim)})")

ctx = 16384
_, _, rss_b = server(False, ctx, ctx // 10)
_, kv_s, rss_s = server(True, ctx, ctx // 10)
kv_total = ctx * 8 * 1024
print(f"2. llama-server -c {ctx} -np 1, a {ctx // 10}-token prompt (10% of the context):")
print(f"   KV resident: without {kv_total / MiB:.1f} MiB (the whole buffer, cleared at start), "
      f"with {kv_s / MiB:.1f} MiB (kvmm registry)")
print(f"   server RSS:  without {rss_b / MiB:.1f} MiB, with {rss_s / MiB:.1f} MiB")

tb, ts = [], []
for i in range(a.runs):
    tb.append(server(False, 131072, 16)[0])
    ts.append(server(True, 131072, 16)[0])
print(f"3. llama-server -c 131072: start to first token of a 16-token prompt, seconds "
      f"(median of {a.runs}):")
print(f"   without {statistics.median(tb):.2f}  with {statistics.median(ts):.2f}   "
      f"(without {', '.join(f'{x:.2f}' for x in tb)}; with {', '.join(f'{x:.2f}' for x in ts)})")
