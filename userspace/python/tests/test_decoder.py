# SPDX-License-Identifier: MIT
"""A Llama-architecture decoder (examples/llama.py) serving batches over a
kvmm KV cache: the same greedy tokens as on a plain torch cache, through
slot reuse and swaps to DRAM and flash, with resident KV memory that
follows the tokens held, not max_tokens."""
from __future__ import annotations

import pytest
import torch

import llama
from memory import rss

CFG = llama.LlamaConfig()
MODEL = llama.Llama(CFG)
PER_TOKEN = CFG.layers * 2 * CFG.kv_heads * CFG.head_dim * 4  # bytes, every layer's K and V
CHUNK = 64 << 10


def trace():
    return llama.demo_trace(n=10, seed=11)


@pytest.fixture(scope="module")
def plain_tokens():
    return llama.serve(MODEL, llama.PlainKV(CFG, 4, 512), trace(), max_batch=4)


def test_plain_cache_matches_recomputing_without_a_cache(plain_tokens):
    # The reference the kvmm runs are compared with is itself right.
    reqs = trace()
    for i in (0, 3):
        n = min(8, reqs[i].max_new_tokens)
        assert plain_tokens[i][:n] == MODEL.reference(reqs[i].prompt, n)


@pytest.mark.parametrize("layout", ["layer_major", "token_major"])
def test_greedy_tokens_match_a_plain_cache(ctx, plain_tokens, layout):
    reqs = trace()
    assert len({len(r.prompt) for r in reqs}) > 5  # requests of different lengths
    kv = llama.KvmmKV(ctx, CFG, 4, 512, layout=layout, chunk_bytes=CHUNK)
    got = llama.serve(MODEL, kv, reqs, max_batch=4)
    st = kv.cache.stats()
    kv.close()
    assert got == plain_tokens
    assert sum(map(len, got)) == sum(r.max_new_tokens for r in trace())
    assert st.reused_bytes > 0  # later requests ran in freed slots' memory


PREEMPT = [
    llama.Preemption(req=0, at=4, tier="host", after=3),
    llama.Preemption(req=1, at=5, tier="flash", after=2),
    llama.Preemption(req=2, at=9, tier="flash", after=4),
    llama.Preemption(req=3, at=9, tier="host", after=1),
    llama.Preemption(req=4, at=14, tier="flash", after=2),
]


@pytest.mark.parametrize("layout", ["layer_major", "token_major"])
def test_tokens_match_after_swaps_to_dram_and_flash_mid_generation(flash_ctx, plain_tokens,
                                                                   layout):
    want = llama.serve(MODEL, llama.PlainKV(CFG, 4, 512), trace(), max_batch=4, preempt=PREEMPT)
    kv = llama.KvmmKV(flash_ctx, CFG, 4, 512, layout=layout, chunk_bytes=CHUNK)
    seen = {}
    swaps = []
    swap_out = kv.swap_out
    kv.swap_out = lambda slot, tier: (swaps.append(tier), swap_out(slot, tier))  # type: ignore

    def watch(it):
        st = kv.cache.stats()
        seen[it] = (st.host_bytes, st.flash_bytes)

    got = llama.serve(MODEL, kv, trace(), max_batch=4, preempt=PREEMPT, on_iteration=watch)
    st = kv.cache.stats()
    kv.close()
    assert got == want
    # Preemption does not change what a greedy request generates.
    assert got == plain_tokens
    assert st.swap_outs == st.swap_ins == len(swaps) >= 4
    assert set(swaps) == {"host", "flash"}
    assert seen[4][0] > 0 and seen[5][1] > 0  # the data really sat in DRAM, then on flash
    assert seen[9][0] > 0 and seen[9][1] > 0


def grow_trace():
    g = torch.Generator().manual_seed(3)
    return [llama.Request(torch.randint(0, CFG.vocab, (p,), generator=g).tolist(), 60)
            for p in (5, 40, 77)]


def resident_run(ctx, max_tokens):
    kv = llama.KvmmKV(ctx, CFG, 3, max_tokens, layout="token_major", chunk_bytes=CHUNK)
    reqs = grow_trace()
    base = kv.cache.strides(0, "k").base
    span = 3 * kv.cache.strides(0, "k").slot
    points = []

    def watch(it):
        if it == 59:
            return  # the last iteration frees every slot
        lens = [r.pos for r in reqs]
        want = sum(-(-n * PER_TOKEN // CHUNK) * CHUNK for n in lens)
        points.append((sum(lens), kv.cache.stats().mapped_bytes, rss(base, span), want))

    out = llama.serve(MODEL, kv, reqs, max_batch=3, on_iteration=watch)
    kv.close()
    return out, points


def test_resident_kv_grows_with_tokens_not_with_max_tokens(ctx):
    out_small, small = resident_run(ctx, 512)
    out_big, big = resident_run(ctx, 8192)
    assert out_small == out_big
    for tokens, mapped, resident, want in small:
        # each slot holds its tokens rounded up to whole 64 KiB chunks, no more
        assert mapped == want, (tokens, mapped, want)
        # and the process really has that much, seen from /proc/self/smaps
        assert want <= resident <= want + 3 * 4096, (tokens, resident, want)
    assert [p[1] for p in small] == [p[1] for p in big]  # max_tokens changes nothing
    assert small[-1][1] > small[0][1]  # grew as tokens were generated
    plain = CFG.layers * 2 * 3 * 8192 * CFG.kv_heads * CFG.head_dim * 4
    assert max(p[1] for p in big) < plain / 20
