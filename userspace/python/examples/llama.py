# SPDX-License-Identifier: MIT
"""A Llama-architecture decoder with continuous batching over a KV cache.

RMSNorm, rotary position embeddings (RoPE), grouped-query attention (GQA)
and a SwiGLU feed-forward, with seeded random weights and a size that runs
well on two CPU cores. Attention is torch's own matmul and softmax over
slices of the cache's tensors: with a kvmm cache those are the kvmm
memory itself, read in place (no copy, no gather, no block table).

Two caches behind one small interface, so the same engine runs on both:

* PlainKV: one preallocated torch tensor [layers, 2, slots, tokens, heads,
  dim], cleared at start (resident from the start, as a GPU engine's
  preallocated cache is and as llama.cpp clears its buffer).
* KvmmKV: a kvmm.KVCache; step() maps what each sequence needs as it grows,
  free_slot() keeps memory for the next request, swaps go to DRAM or flash.

The engine admits requests as they arrive (prefill in the same iteration as
the other sequences' decode), frees a slot when a request finishes, and can
preempt a running request to a tier and resume it later.

    python3 examples/llama.py            # serves a small trace, both caches
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Protocol, Sequence, Tuple

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the package in this tree

import kvmm  # noqa: E402


@dataclass(frozen=True)
class LlamaConfig:
    vocab: int = 512
    dim: int = 256
    layers: int = 4
    heads: int = 8
    kv_heads: int = 2  # GQA: 4 query heads share each K/V head
    head_dim: int = 32
    ffn: int = 688
    rope_theta: float = 10000.0
    eps: float = 1e-5
    seed: int = 1234


class Llama:
    """The decoder: seeded random weights, float32, no autograd."""

    def __init__(self, cfg: LlamaConfig) -> None:
        self.cfg = cfg
        g = torch.Generator().manual_seed(cfg.seed)

        def w(*shape: int) -> torch.Tensor:
            return torch.randn(*shape, generator=g) / math.sqrt(shape[-1])

        c = cfg
        self.embed = torch.randn(c.vocab, c.dim, generator=g)
        self.blocks = []
        for _ in range(c.layers):
            self.blocks.append({
                "attn_norm": 1.0 + 0.1 * torch.randn(c.dim, generator=g),
                "wqkv": w((c.heads + 2 * c.kv_heads) * c.head_dim, c.dim),
                "wo": w(c.dim, c.heads * c.head_dim),
                "ffn_norm": 1.0 + 0.1 * torch.randn(c.dim, generator=g),
                "w_gate_up": w(2 * c.ffn, c.dim),
                "w_down": w(c.dim, c.ffn),
            })
        self.norm = torch.ones(c.dim)
        self.lm_head = w(c.vocab, c.dim)
        inv = 1.0 / (c.rope_theta ** (torch.arange(0, c.head_dim, 2).float() / c.head_dim))
        self.inv_freq = inv

    def rms_norm(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.cfg.eps) * weight

    def rope(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """Rotates pairs (x[2i], x[2i+1]) of each head by pos * inv_freq[i]."""
        ang = pos.float()[:, None] * self.inv_freq[None, :]  # [T, hd/2]
        cos, sin = ang.cos()[:, None, :], ang.sin()[:, None, :]
        x1, x2 = x[..., 0::2], x[..., 1::2]
        return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)

    @torch.no_grad()
    def forward(self, kv: "KVBackend", batch: Sequence[Tuple[int, int, torch.Tensor]]) -> torch.Tensor:
        """One iteration for every sequence in @batch: (slot, start, tokens)
        appends tokens at positions [start, start + n) of its slot. Returns
        the logits of each sequence's last new token, [len(batch), vocab].
        The cache must already hold [0, start + n) for each slot (step)."""
        c = self.cfg
        toks = torch.cat([t for _, _, t in batch])
        pos = torch.cat([torch.arange(s, s + len(t)) for _, s, t in batch])
        x = self.embed[toks]
        group = c.heads // c.kv_heads
        scale = 1.0 / math.sqrt(c.head_dim)
        for li, b in enumerate(self.blocks):
            h = self.rms_norm(x, b["attn_norm"])
            qkv = h @ b["wqkv"].T
            q = qkv[:, : c.heads * c.head_dim].view(-1, c.heads, c.head_dim)
            k = qkv[:, c.heads * c.head_dim: (c.heads + c.kv_heads) * c.head_dim]
            v = qkv[:, (c.heads + c.kv_heads) * c.head_dim:]
            q = self.rope(q, pos)
            k = self.rope(k.reshape(-1, c.kv_heads, c.head_dim), pos)
            v = v.reshape(-1, c.kv_heads, c.head_dim)
            K, V = kv.layer(li)  # [slots, tokens, kv_heads, head_dim]: the cache itself
            outs = []
            off = 0
            for slot, start, t in batch:
                n = len(t)
                end = start + n
                K[slot, start:end] = k[off: off + n]
                V[slot, start:end] = v[off: off + n]
                # GQA attention straight over the cache's slice, in place
                ks = K[slot, :end].permute(1, 2, 0)  # [kvh, hd, end]
                vs = V[slot, :end].transpose(0, 1)  # [kvh, end, hd]
                qs = q[off: off + n].view(n, c.kv_heads, group, c.head_dim)
                qs = qs.permute(1, 0, 2, 3).reshape(c.kv_heads, n * group, c.head_dim)
                s = (qs @ ks) * scale  # [kvh, n*group, end]
                if n > 1:  # causal within the new tokens
                    qpos = torch.arange(start, end).repeat_interleave(group)
                    mask = torch.arange(end)[None, :] > qpos[:, None]
                    s = s.masked_fill(mask[None], float("-inf"))
                p = torch.softmax(s, dim=-1)
                o = (p @ vs).view(c.kv_heads, n, group, c.head_dim).permute(1, 0, 2, 3)
                outs.append(o.reshape(n, c.heads * c.head_dim))
                off += n
            x = x + torch.cat(outs) @ b["wo"].T
            h = self.rms_norm(x, b["ffn_norm"])
            gate, up = (h @ b["w_gate_up"].T).chunk(2, dim=-1)
            x = x + (torch.nn.functional.silu(gate) * up) @ b["w_down"].T
        last = torch.cumsum(torch.tensor([len(t) for _, _, t in batch]), 0) - 1
        return self.rms_norm(x[last], self.norm) @ self.lm_head.T

    @torch.no_grad()
    def reference(self, prompt: Sequence[int], new_tokens: int) -> List[int]:
        """Greedy decoding by recomputing the whole sequence every token,
        with no KV cache at all: what every cache must reproduce."""
        c = self.cfg
        seq = list(prompt)
        out = []
        for _ in range(new_tokens):
            kv = PlainKV(c, slots=1, max_tokens=len(seq))
            logits = self.forward(kv, [(0, 0, torch.tensor(seq))])
            tok = int(logits[0].argmax())
            out.append(tok)
            seq.append(tok)
        return out


class KVBackend(Protocol):
    """What the engine needs of a KV cache."""

    def layer(self, layer: int) -> Tuple[torch.Tensor, torch.Tensor]: ...
    def alloc(self, expected_tokens: int) -> int: ...
    def reserve(self, slots: List[int], lens: List[int]) -> None: ...
    def free(self, slot: int) -> None: ...
    def swap_out(self, slot: int, tier: str) -> None: ...
    def swap_in(self, slot: int) -> None: ...
    def resident_bytes(self) -> int: ...


class PlainKV:
    """A preallocated torch KV cache: [layers, 2, slots, tokens, heads, dim]."""

    def __init__(self, cfg: LlamaConfig, slots: int, max_tokens: int) -> None:
        self.data = torch.empty(cfg.layers, 2, slots, max_tokens, cfg.kv_heads, cfg.head_dim)
        self.data.zero_()  # cleared, so every page is resident from the start
        self.free_slots = list(range(slots - 1, -1, -1))
        self.saved: Dict[int, torch.Tensor] = {}
        self.views = [(self.data[i, 0], self.data[i, 1]) for i in range(cfg.layers)]

    def layer(self, layer: int) -> Tuple[torch.Tensor, torch.Tensor]:
        return self.views[layer]

    def alloc(self, expected_tokens: int) -> int:
        return self.free_slots.pop()

    def reserve(self, slots: List[int], lens: List[int]) -> None:
        pass

    def free(self, slot: int) -> None:
        self.free_slots.append(slot)

    def swap_out(self, slot: int, tier: str) -> None:
        """A plain engine's preemption: copy the slot out and clear it."""
        self.saved[slot] = self.data[:, :, slot].clone()
        self.data[:, :, slot].zero_()

    def swap_in(self, slot: int) -> None:
        self.data[:, :, slot].copy_(self.saved.pop(slot))

    def resident_bytes(self) -> int:
        return self.data.numel() * self.data.element_size()


class KvmmKV:
    """A kvmm.KVCache behind the engine's interface: the layer tensors are
    taken once; step() (reserve) maps memory as sequences grow."""

    def __init__(self, ctx: kvmm.Context, cfg: LlamaConfig, slots: int, max_tokens: int,
                 layout: str = "token_major", chunk_bytes: int = 64 << 10,
                 lookahead: int = 0) -> None:
        self.cache = ctx.kv_cache(layers=cfg.layers, kv_heads=cfg.kv_heads,
                                  head_dim=cfg.head_dim, max_slots=slots,
                                  max_tokens=max_tokens, dtype=torch.float32, layout=layout,
                                  chunk_bytes=chunk_bytes, lookahead=lookahead)
        self.views = [(self.cache.tensor(i, kvmm.K), self.cache.tensor(i, kvmm.V))
                      for i in range(cfg.layers)]

    def layer(self, layer: int) -> Tuple[torch.Tensor, torch.Tensor]:
        return self.views[layer]

    def alloc(self, expected_tokens: int) -> int:
        return self.cache.alloc_slot(expected_tokens).index

    def reserve(self, slots: List[int], lens: List[int]) -> None:
        self.cache.step(slots, lens)

    def free(self, slot: int) -> None:
        self.cache.free_slot(slot)

    def swap_out(self, slot: int, tier: str) -> None:
        self.cache.swap_out(slot, tier).wait()

    def swap_in(self, slot: int) -> None:
        self.cache.swap_in(slot).wait()

    def resident_bytes(self) -> int:
        return self.cache.stats().mapped_bytes

    def close(self) -> None:
        self.views = []
        self.cache.close()


@dataclass
class Request:
    prompt: List[int]
    max_new_tokens: int
    arrival: int = 0  # iteration it arrives at
    out: List[int] = field(default_factory=list)
    slot: int = -1
    pos: int = 0  # tokens in the cache


@dataclass
class Preemption:
    """Swap request @req out to @tier at iteration @at, back @after iterations later."""

    req: int
    at: int
    tier: str
    after: int = 2


def serve(model: Llama, kv: KVBackend, requests: List[Request], max_batch: int,
          preempt: Sequence[Preemption] = (),
          on_iteration=None) -> List[List[int]]:
    """Continuous batching, greedy: each iteration admits arrived requests
    (up to @max_batch running), prefills them and decodes one token for
    every other running request; a finished request frees its slot at
    once. Returns each request's generated tokens."""
    waiting = sorted(range(len(requests)), key=lambda i: requests[i].arrival)
    running: List[int] = []
    out_until: Dict[int, int] = {}  # preempted request -> iteration it resumes
    it = 0
    while waiting or running or out_until:
        for p in preempt:
            if p.at == it and p.req in running:
                kv.swap_out(requests[p.req].slot, p.tier)
                running.remove(p.req)
                out_until[p.req] = it + p.after
        for r, back in list(out_until.items()):
            if back <= it:
                kv.swap_in(requests[r].slot)
                running.append(r)
                del out_until[r]
        while waiting and requests[waiting[0]].arrival <= it and \
                len(running) + len(out_until) < max_batch:
            r = waiting.pop(0)
            req = requests[r]
            req.slot = kv.alloc(len(req.prompt) + req.max_new_tokens)
            running.append(r)
        if not running:
            it += 1
            continue
        batch = []
        for r in running:
            req = requests[r]
            new = req.prompt if req.pos == 0 else req.out[-1:]
            batch.append((req.slot, req.pos, torch.tensor(new)))
        kv.reserve([s for s, _, _ in batch], [s + len(t) for _, s, t in batch])
        logits = model.forward(kv, batch)
        for r, (_, start, t), row in zip(list(running), batch, logits):
            req = requests[r]
            req.pos = start + len(t)
            req.out.append(int(row.argmax()))
            if len(req.out) == req.max_new_tokens:
                kv.free(req.slot)
                running.remove(r)
        if on_iteration is not None:
            on_iteration(it)
        it += 1
    return [r.out for r in requests]


def demo_trace(n: int = 12, seed: int = 7, vocab: int = 512) -> List[Request]:
    """Requests of different prompt and output lengths arriving over time."""
    g = torch.Generator().manual_seed(seed)
    reqs = []
    for i in range(n):
        plen = int(torch.randint(3, 96, (1,), generator=g))
        new = int(torch.randint(8, 48, (1,), generator=g))
        prompt = torch.randint(0, vocab, (plen,), generator=g).tolist()
        reqs.append(Request(prompt, new, arrival=2 * i))
    return reqs


def main() -> None:
    cfg = LlamaConfig()
    model = Llama(cfg)
    plain = serve(model, PlainKV(cfg, 8, 1024), demo_trace(), max_batch=8)
    with kvmm.Context() as ctx:
        kv = KvmmKV(ctx, cfg, 8, 1024)
        got = serve(model, kv, demo_trace(), max_batch=8)
        kv.close()
    print("requests:", len(plain), "identical:", plain == got)
    print("first request:", got[0])


if __name__ == "__main__":
    main()
