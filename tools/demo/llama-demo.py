#!/usr/bin/python3
"""make demo, part 1: the default trace's kind of traffic through an unmodified
llama-server, with its KV cache on kvmm (LD_PRELOAD=libkvmm-preload.so) and
without, one after the other on the same requests. Prints memory held,
tokens per second and whether the outputs match.

The requests are the first N of a seeded draw from kvmm-bench serve's chat
preset (Poisson arrivals; prompt lognormal median 400 tokens, sigma 1.0;
output lognormal median 160, sigma 0.9), with output lengths divided by
--output-scale so the demo takes about a minute on 2 cores.
    llama-demo.py --so LIB --top DIR [--requests N] [--ctx N]
"""
import argparse
import json
import math
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ap = argparse.ArgumentParser()
ap.add_argument("--so", required=True)
ap.add_argument("--top", required=True)
ap.add_argument("--requests", type=int, default=12)
ap.add_argument("--ctx", type=int, default=65536)
ap.add_argument("--rate", type=float, default=2.0)
ap.add_argument("--output-scale", type=float, default=8.0)
a = ap.parse_args()
MiB = 1 << 20

print("llama.cpp: fetching and building it (cached in ~/.cache/kvmm after the first time)",
      flush=True)
bld = subprocess.run([os.path.join(a.top, "scripts/llama-build.sh")], check=True,
                     capture_output=True, text=True).stdout.split()[-1]
cache = os.environ.get("KVMM_CACHE", os.path.expanduser("~/.cache/kvmm"))
model = os.path.join(cache, "test-llama.gguf")
if not os.path.exists(model):
    subprocess.run(["/usr/bin/python3", os.path.join(a.top, "tools/llama/make-model.py"),
                    os.path.join(os.path.dirname(bld), "src"), model], check=True,
                   capture_output=True)

rng = random.Random(1)
WORDS = ("the of and to in is that for it as was with on be at by this had not are but from "
         "or have an they which one you were all we her she there would their will when who "
         "him been has more if no out so said what up its about than into them can only other").split()
reqs, t = [], 0.0
for i in range(a.requests):
    t += rng.expovariate(a.rate)
    p = int(min(max(math.exp(math.log(400) + rng.gauss(0, 1.0)), 8), 6144))
    o = int(min(max(math.exp(math.log(160) + rng.gauss(0, 0.9)), 4), 2048) / a.output_scale) + 1
    reqs.append((t, " ".join(rng.choice(WORDS) for _ in range(p)), o))


def port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    n = s.getsockname()[1]
    s.close()
    return n


def serve(shim):
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    reg = tempfile.mkdtemp(prefix="kvmm-demo-reg-")
    if shim:
        env.update({"LD_PRELOAD": a.so, "KVMM_PRELOAD_REGISTRY": reg,
                    "KVMM_PRELOAD_RULES": "name=kv,lib=libggml-base.so,min=16M,chunk=256K"})
    p = port()
    proc = subprocess.Popen([os.path.join(bld, "bin", "llama-server"), "-m", model, "-c",
                             str(a.ctx), "-np", "4", "-t", "2", "--host", "127.0.0.1", "--port",
                             str(p)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{p}/health", timeout=2):
                break
        except OSError:
            time.sleep(0.1)
    out = [None] * len(reqs)
    ntok = [0] * len(reqs)
    peak = [0]

    def one(i):
        body = json.dumps({"prompt": reqs[i][1], "n_predict": reqs[i][2], "temperature": 0,
                           "top_k": 1, "seed": 1, "cache_prompt": False}).encode()
        r = urllib.request.Request(f"http://127.0.0.1:{p}/completion", data=body,
                                   headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(r, timeout=900) as resp:
            d = json.loads(resp.read())
        out[i] = d["content"]
        ntok[i] = d.get("tokens_predicted", 0) + d.get("tokens_evaluated", 0)

    def rss():
        return int(re.search(r"VmRSS:\s+(\d+)", open(f"/proc/{proc.pid}/status").read())[1]) * 1024

    t0 = time.time()
    ths = []
    for i, (at, _, _) in enumerate(reqs):
        while time.time() - t0 < at:
            time.sleep(0.01)
            peak[0] = max(peak[0], rss())
        th = threading.Thread(target=one, args=(i,))
        th.start()
        ths.append(th)
    while any(th.is_alive() for th in ths):
        peak[0] = max(peak[0], rss())
        time.sleep(0.05)
    wall = time.time() - t0
    kv = None
    if shim:
        time.sleep(0.6)
        with open(os.path.join(reg, str(proc.pid))) as f:
            kv = [dict(x.split("=", 1) for x in ln.split()[1:]) for ln in f
                  if ln.startswith("region") and "rule=kv" in ln]
    proc.terminate()
    proc.wait()
    return out, sum(ntok), wall, peak[0], kv


print(f"llama-server -c {a.ctx} -np 4, {len(reqs)} requests of the chat trace "
      f"(prompts {min(r[1].count(' ') + 1 for r in reqs)}..{max(r[1].count(' ') + 1 for r in reqs)} "
      f"words, outputs {min(r[2] for r in reqs)}..{max(r[2] for r in reqs)} tokens, "
      f"{a.rate:g}/s Poisson arrivals)", flush=True)
res = {}
for shim in (False, True):
    name = "with kvmm" if shim else "without kvmm"
    print(f"  serving {name} ...", flush=True)
    res[shim] = serve(shim)
kv_bytes = a.ctx * 8 * 1024
(o0, n0, w0, p0, _), (o1, n1, w1, p1, kv) = res[False], res[True]
# The rule routes libggml-base.so's large buffers: the KV cache (exactly
# ctx tokens of KV) and others (compute buffers, the weights when read
# rather than mapped), shown apart.
kv_only = [r for r in kv if int(r["asked_bytes"]) == kv_bytes] or \
    [max(kv, key=lambda r: int(r["bytes"]))]
others = [r for r in kv if r not in kv_only]
kv_res = sum(int(r["resident_bytes"]) for r in kv_only)
print()
print(f"  {'':14} {'RSS peak':>10} {'KV held':>10} {'tokens/s':>9} {'wall s':>7}")
print(f"  {'without kvmm':14} {p0 / MiB:8.0f}Mi {kv_bytes / MiB:8.0f}Mi {n0 / w0:9.1f} {w0:7.1f}")
print(f"  {'with kvmm':14} {p1 / MiB:8.0f}Mi {kv_res / MiB:8.0f}Mi {n1 / w1:9.1f} {w1:7.1f}")
print(f"  KV held: without kvmm the whole {kv_bytes / MiB:.0f} MiB KV buffer is cleared and so "
      f"allocated at start; with kvmm, what the KV buffer's region holds at the end "
      f"(kvmm-preload registry; the rule's {len(others)} other routed buffers: "
      f"{sum(int(r['bytes']) for r in others) / MiB:.0f} MiB reserved, "
      f"{sum(int(r['resident_bytes']) for r in others) / MiB:.0f} MiB resident)")
match = sum(x == y for x, y in zip(o0, o1))
print(f"  outputs identical: {match} of {len(reqs)} requests"
      + ("" if match == len(reqs) else "  <-- MISMATCH"))
sys.exit(0 if match == len(reqs) else 1)
