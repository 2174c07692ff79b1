# SPDX-License-Identifier: MIT
"""kvmm.PrefixIndex over libkvmm's prefix index: the engine's view of
"how much of this prompt is cached and where", with real KV slots."""
from __future__ import annotations

import pytest

import kvmm


def test_a_shared_system_prompt_is_found_block_by_block():
    with kvmm.PrefixIndex(block_tokens=16, seed=42) as px:
        system = list(range(1000, 1000 + 100))  # 6 full blocks + 4 tokens
        a = px.hash(system + [1, 2, 3] * 20)
        b = px.hash(system + [7, 8, 9] * 20)
        assert len(a) == len(b) == (100 + 60) // 16
        assert a[:6] == b[:6] and a[6] != b[6]
        assert all(len(h) == 16 for h in a)
        px.insert(3, a)
        hit = px.lookup(b)
        assert hit.blocks == 6 and hit.tokens == 96 and hit.slots == [3] * 6
        # The chain continues from a parent hash exactly as from the start.
        assert px.hash(system[16:96], parent=a[0]) == a[1:6]
        st = px.stats()
        assert (st.blocks, st.slots, st.lookups, st.hit_blocks) == (len(a), 1, 1, 6)


def test_seeds_keep_models_apart():
    with kvmm.PrefixIndex(block_tokens=4, seed=1) as p1, kvmm.PrefixIndex(block_tokens=4, seed=2) as p2:
        toks = list(range(64))
        assert set(p1.hash(toks)).isdisjoint(p2.hash(toks))


def test_released_slots_are_evicted_least_recently_used_first():
    evicted = []
    with kvmm.PrefixIndex(block_tokens=4, max_blocks=8, on_evict=evicted.append) as px:
        h = [px.hash([s * 100 + i for i in range(16)]) for s in range(3)]
        px.insert(0, h[0])
        px.insert(1, h[1])
        with pytest.raises(kvmm.KvmmError):
            px.insert(2, h[2])  # full, and nothing is cached yet
        px.release(0)
        px.release(1)
        px.lookup(h[0])  # slot 0 is recent again
        px.insert(2, h[2])
        assert evicted == [1]
        assert px.lookup(h[1]).blocks == 0
        assert px.evict() == 0
        assert px.evict() is None


def test_bad_arguments_raise_and_change_nothing():
    with kvmm.PrefixIndex(block_tokens=4) as px:
        h = px.hash(list(range(16)))
        px.insert(0, h)
        with pytest.raises(kvmm.InvalidArgumentError):
            px.insert(0, px.hash(list(range(50, 66))))  # another sequence in slot 0
        with pytest.raises(kvmm.InvalidArgumentError):
            px.insert(1, [b"short"])
        with pytest.raises(kvmm.InvalidArgumentError):
            px.release(-1)
        with pytest.raises(kvmm.KvmmError):
            px.release(5)  # not in the index
        assert px.slot_blocks(0) == 4 and px.stats().slots == 1
    with pytest.raises(kvmm.InvalidArgumentError):
        px.lookup(h)  # closed
    with pytest.raises(kvmm.InvalidArgumentError):
        kvmm.PrefixIndex(block_tokens=0)


def test_index_names_slots_of_a_real_cache(ctx):
    """The index takes KVCache slot handles; a hit names the slot whose
    memory holds those tokens' KV."""
    with ctx.kv_cache(layers=1, kv_heads=1, head_dim=64, max_slots=4, max_tokens=256) as kv, \
            kvmm.PrefixIndex(block_tokens=16) as px:
        prompt = list(range(64))
        s = kv.alloc_slot(expected_tokens=64)
        kv.step([s], [64])
        s.k(0)[:64] = 3.0
        px.insert(s, px.hash(prompt))
        hit = px.lookup(px.hash(prompt + [99] * 16))
        assert hit.blocks == 4 and set(hit.slots) == {s.index}
        assert float(s.k(0)[:hit.tokens].sum()) == 3.0 * 64 * 64
        px.remove(s)
        kv.free_slot(s)
        assert px.lookup(px.hash(prompt)).blocks == 0
