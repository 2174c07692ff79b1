# SPDX-License-Identifier: MIT
"""Benchmark: the Llama-architecture decoder of llama.py serving one trace
on a kvmm KV cache and on a plain preallocated torch cache, side by side.

Prints, per cache: decode throughput (generated tokens per second of
serve() wall time, prefill included in the time), and peak resident KV
bytes (kvmm: the most the cache had mapped, as libkvmm counts it and as
/proc/self/smaps shows it; plain: the preallocated tensor, all of it
resident once cleared). Runs alternate between the caches so that machine
noise hits both; the table gives the median of --runs runs.

    python3 examples/bench_decoder.py [--runs 5] [--requests 24] [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Dict, List

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the package in this tree
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import kvmm  # noqa: E402
import llama  # noqa: E402
from memory import rss  # noqa: E402


def run_once(model: llama.Llama, kind: str, ctx: kvmm.Context, args: argparse.Namespace,
             measure_memory: bool = False) -> Dict:
    """One serve() of the trace; with @measure_memory, resident KV is sampled
    every iteration (/proc/self/smaps: slow, so never in a timed run)."""
    cfg = model.cfg
    reqs = llama.demo_trace(n=args.requests, seed=args.seed, vocab=cfg.vocab)
    peak = {"mapped": 0, "rss": 0}
    if kind == "plain":
        kv = llama.PlainKV(cfg, args.slots, args.max_tokens)
        watch = None
    else:
        kv = llama.KvmmKV(ctx, cfg, args.slots, args.max_tokens, layout=args.layout,
                          chunk_bytes=args.chunk_kib << 10)
        first = kv.cache.strides(0, "k")
        last = kv.cache.strides(cfg.layers - 1, "v")
        base = first.base
        # token-major: one region per slot; layer-major: one per layer and K/V
        end = (first.base if args.layout == "token_major" else last.base) + args.slots * first.slot
        span = end - base

        def sample(it: int) -> None:
            peak["mapped"] = max(peak["mapped"], kv.cache.stats().mapped_bytes)
            peak["rss"] = max(peak["rss"], rss(base, span))

        watch = sample if measure_memory else None

    t0 = time.perf_counter()
    out = llama.serve(model, kv, reqs, max_batch=args.slots, on_iteration=watch)
    dt = time.perf_counter() - t0
    tokens = sum(map(len, out))
    if kind == "plain":
        peak["mapped"] = peak["rss"] = kv.resident_bytes()
    else:
        kv.close()
    return {"tokens": tokens, "seconds": dt, "tok_s": tokens / dt, "out": out,
            "peak_mapped": peak["mapped"], "peak_rss": peak["rss"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--requests", type=int, default=24)
    ap.add_argument("--slots", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=2048)
    ap.add_argument("--layout", default="token_major", choices=["token_major", "layer_major"])
    ap.add_argument("--chunk-kib", type=int, default=64)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2")))
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = llama.Llama(llama.LlamaConfig())
    results: Dict[str, List[Dict]] = {"plain": [], "kvmm": []}
    with kvmm.Context() as ctx:
        mode = ctx.mode.name.lower()
        # Untimed first runs: warm-up, and the resident KV sampled each iteration.
        mem = {k: run_once(model, k, ctx, args, measure_memory=True) for k in ("plain", "kvmm")}
        for i in range(args.runs):
            for kind in (("plain", "kvmm") if i % 2 == 0 else ("kvmm", "plain")):
                results[kind].append(run_once(model, kind, ctx, args))
                if not args.json:
                    print(f"run {i + 1}/{args.runs} {kind:5s}: "
                          f"{results[kind][-1]['tok_s']:.1f} tokens/s", file=sys.stderr)
    same = all(r["out"] == mem["plain"]["out"] for k in results for r in results[k] + [mem[k]])
    med = {k: statistics.median(r["tok_s"] for r in v) for k, v in results.items()}
    peak = {k: mem[k]["peak_mapped"] for k in mem}
    peak_rss = {k: mem[k]["peak_rss"] for k in mem}
    summary = {
        "machine": f"{platform.node()} {os.cpu_count()} CPUs, torch {torch.__version__}, "
                   f"{args.threads} threads, libkvmm {mode} mode",
        "trace": f"{args.requests} requests, {args.slots} slots x {args.max_tokens} tokens, "
                 f"{results['kvmm'][0]['tokens']} generated tokens",
        "kvmm": f"{args.layout}, {args.chunk_kib} KiB chunks",
        "tokens_per_s": med, "tokens_per_s_ratio": med["kvmm"] / med["plain"],
        "tokens_per_s_runs": {k: [round(r["tok_s"], 2) for r in v] for k, v in results.items()},
        "peak_resident_kv_bytes": peak, "peak_rss_kv_bytes": peak_rss,
        "peak_resident_ratio": peak["kvmm"] / peak["plain"],
        "identical_tokens": same,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    print(f"machine: {summary['machine']}")
    print(f"trace:   {summary['trace']}; kvmm cache {summary['kvmm']}")
    print(f"{'cache':8s} {'tokens/s':>10s} {'peak KV (counted)':>18s} {'peak KV (RSS)':>15s}")
    for k in ("plain", "kvmm"):
        print(f"{k:8s} {med[k]:10.1f} {peak[k] / 2**20:14.2f} MiB {peak_rss[k] / 2**20:11.2f} MiB")
    print(f"kvmm/plain: tokens/s {summary['tokens_per_s_ratio']:.3f}, "
          f"peak resident KV {summary['peak_resident_ratio']:.3f}; "
          f"identical tokens: {'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
