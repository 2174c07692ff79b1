# SPDX-License-Identifier: MIT
"""The kvmm package's API over libkvmm: objects, views, swaps, lifetime."""
from __future__ import annotations

import errno
import gc
import os

import numpy as np
import pytest
import torch

import kvmm
from memory import mapped, rss

LAYOUTS = ["layer_major", "token_major"]
SHAPE = dict(layers=3, kv_heads=2, head_dim=16, max_slots=4, max_tokens=512)


def make(ctx, layout="layer_major", dtype="float32", **kw):
    args = dict(SHAPE, dtype=dtype, layout=layout, chunk_bytes=4096)
    args.update(kw)
    return ctx.kv_cache(**args)


def fill(slot, n, seed):
    g = torch.Generator().manual_seed(seed)
    data = {}
    for layer in range(slot.cache.layers):
        for kind in (kvmm.K, kvmm.V):
            d = torch.randn(n, slot.cache.kv_heads, slot.cache.head_dim, generator=g)
            slot.write(layer, kind, 0, d.to(slot.cache.tensor(0, kvmm.K).dtype))
            data[(layer, kind)] = d
    return data


def same(slot, data, n):
    return all(torch.equal(slot.k(l, n) if k == kvmm.K else slot.v(l, n), d.to(slot.k(0).dtype))
               for (l, k), d in data.items())


def test_context_picks_user_mode_without_kvmm_ko(ctx):
    if os.path.exists("/dev/kvmm"):
        pytest.skip("/dev/kvmm exists: kvmm_open may pick kernel mode")
    assert ctx.mode == kvmm.Mode.USER


@pytest.mark.parametrize("layout", LAYOUTS)
def test_tensor_has_the_layouts_shape_and_strides(ctx, layout):
    with make(ctx, layout, dtype="float16") as kv:
        s = kv.strides(1, "v")
        t = kv.tensor(1, "v")
        a = kv.array(1, "v")
        assert t.shape == (4, 512, 2, 16) and t.dtype == torch.float16
        assert t.data_ptr() == s.base == a.ctypes.data
        assert tuple(x * 2 for x in t.stride()) == (s.slot, s.token, s.head, s.dim)
        assert a.strides == (s.slot, s.token, s.head, s.dim)
        # head and dim are dense in both layouts; the token stride tells them apart
        assert s.dim == 2 and s.head == 32
        if layout == "layer_major":
            assert s.token == 2 * 16 * 2
        else:  # [token][layer][K|V][head][dim]
            assert s.token == 3 * 2 * 2 * 16 * 2
            assert kv.strides(1, "k").base + 2 * 16 * 2 == s.base
        del t, a


@pytest.mark.parametrize("layout", LAYOUTS)
def test_views_share_memory_with_libkvmm_both_ways(ctx, layout):
    with make(ctx, layout) as kv:
        slot = kv.alloc_slot(40)
        kv.step([slot], [40])
        t = kv.tensor(2, "k")
        t[slot.index, :40] = 7.5  # through torch
        assert np.all(kv.array(2, "k")[slot.index, :40] == 7.5)  # seen by numpy
        # libkvmm moves what the tensor wrote: out to DRAM, memory released...
        kv.swap_out(slot, "host").wait()
        assert kv.stats().mapped_bytes == 0
        kv.swap_in(slot).wait()
        assert torch.all(t[slot.index, :40] == 7.5)  # ...and back, written by libkvmm
        # libkvmm's release is seen through the same tensor: zeros
        kv.free_slot(slot)
        kv.trim(0)
        assert kv.stats().reclaimed_bytes > 0
        assert torch.all(t[slot.index, :40] == 0)
        del t


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("tier", ["host", "flash"])
def test_swap_out_and_in_keeps_every_layer(ctx, layout, tier):
    if tier == "flash":
        from conftest import flash_dir, flash_works

        if not flash_works(ctx):
            pytest.skip(f"flash directory {flash_dir()} takes no O_DIRECT or is in memory")
    with make(ctx, layout) as kv:
        a, b = kv.alloc_slot(100), kv.alloc_slot(30)
        kv.step([a, b], [100, 30])
        da, db = fill(a, 100, 1), fill(b, 30, 2)
        op = kv.swap_out(a, tier)
        op.wait()
        assert op.done() and op.result == 0
        assert kv.slot_state(a) == kvmm.SlotState(kvmm.Tier[tier.upper()])
        st = kv.stats()
        assert (st.host_bytes if tier == "host" else st.flash_bytes) > 0
        with pytest.raises(kvmm.SlotBusyError) as e:
            a.k(0)  # swapped out: the accessor refuses
        assert e.value.errno == errno.EAGAIN
        with kv.swap_in(a):
            pass
        assert kv.slot_state(a) == kvmm.SlotState.ACTIVE
        assert same(a, da, 100) and same(b, db, 30)
        assert kv.stats().swap_outs == 1 and kv.stats().swap_ins == 1


def test_freed_slot_handle_raises_and_never_reads_the_next_request(ctx):
    with make(ctx, max_slots=1) as kv:
        old = kv.alloc_slot(10)
        kv.step([old], [10])
        fill(old, 10, 3)
        old.free()
        new = kv.alloc_slot(10)  # the same index, reused memory
        assert new.index == old.index and new.generation != old.generation
        kv.step([new], [10])
        mine = fill(new, 10, 4)
        for use in (lambda: old.k(0), lambda: old.v(2), lambda: old.seq_len,
                    lambda: old.array(0, "k"),
                    lambda: old.write(0, "k", 0, torch.zeros(1, 2, 16)),
                    lambda: kv.step([old], [11]), lambda: kv.swap_out(old),
                    lambda: kv.free_slot(old)):
            with pytest.raises(kvmm.StaleSlotError) as e:
                use()
            assert e.value.errno == errno.ESTALE and "freed" in str(e.value)
        assert not old.valid and new.valid
        assert same(new, mine, 10)  # nothing the stale handle tried changed it
        assert new.seq_len == 10


def test_a_view_keeps_the_cache_mapped_after_close(ctx):
    kv = make(ctx)
    slot = kv.alloc_slot(8)
    kv.step([slot], [8])
    v = slot.v(1)
    v[:] = 3.0
    base = kv.strides(0, "k").base
    kv.close()
    assert kv.closed
    with pytest.raises(kvmm.ClosedError) as e:
        kv.stats()
    assert e.value.errno == errno.EBADF
    gc.collect()
    assert mapped(base) and torch.all(v == 3.0)  # still valid memory
    del v
    gc.collect()
    assert not mapped(base)  # the last view took the cache with it


def test_context_managers_release_everything(ctx):
    with kvmm.Context(mode=os.environ.get("KVMM_MODE", "auto")) as c:
        with make(c) as kv:
            s = kv.alloc_slot(64)
            kv.step([s], [64])
            kv.tensor(0, "k")[s.index, :64] = 1
            base = kv.strides(0, "k").base
            assert rss(base, kv.strides(0, "v").base - base) > 0
        with c.region(1 << 20, chunk_bytes=1 << 16) as r:
            r.array()[:] = 1
            rbase = r.base
        assert kv.closed and r.closed
    assert c.closed
    assert not mapped(base) and not mapped(rbase)


def test_close_of_a_context_waits_for_its_caches(ctx):
    c = kvmm.Context(mode=os.environ.get("KVMM_MODE", "auto"))
    kv = make(c)
    c.close()  # a live cache: the C context stays until the cache goes
    s = kv.alloc_slot(4)
    kv.step([s], [4])
    assert kv.stats().active_slots == 1
    with pytest.raises(kvmm.ClosedError):
        c.kv_cache(**SHAPE)
    kv.close()


def test_bad_input_raises_and_changes_nothing(ctx):
    with make(ctx) as kv:
        s = kv.alloc_slot(16)
        kv.step([s], [16])
        data = fill(s, 16, 5)
        before = kv.stats()
        bad = [
            (lambda: s.write(0, "k", 0, torch.zeros(4, 2, 16, dtype=torch.float64)), "dtype"),
            (lambda: s.write(0, "k", 0, torch.zeros(4, 3, 16)), "shape"),
            (lambda: s.write(0, "k", 0, torch.zeros(4, 2 * 16)), "shape"),
            (lambda: s.write(0, "k", 14, torch.zeros(4, 2, 16)), "tokens"),
            (lambda: s.write(3, "k", 0, torch.zeros(1, 2, 16)), "layer"),
            (lambda: s.write(0, "x", 0, torch.zeros(1, 2, 16)), "kind"),
            (lambda: s.k(0, length=17), "length"),
            (lambda: kv.step([4], [1]), "out of range"),
            (lambda: kv.step([-1], [1]), "out of range"),
            (lambda: kv.step([s, 1], [20]), "seq_lens"),
            (lambda: kv.step([s, 1], [20, 513]), "seq_len"),
            (lambda: kv.step([s, s], [20, 20]), "twice"),
            (lambda: kv.free_slot(9), "out of range"),
            (lambda: kv.swap_out(s, "tape"), "tier"),
            (lambda: kv.tensor(7, "k"), "layer"),
            (lambda: kv.alloc_slot(10**6), "expected_tokens"),
        ]
        for fn, word in bad:
            with pytest.raises(kvmm.InvalidArgumentError) as e:
                fn()
            assert isinstance(e.value, ValueError) and isinstance(e.value, OSError)
            assert e.value.errno == errno.EINVAL and word in str(e.value), str(e.value)
        assert kv.stats() == before
        assert s.seq_len == 16 and kv.slot_state(1) == kvmm.SlotState.FREE
        assert same(s, data, 16)
        # wrong dtype for the cache itself, and numpy data of the wrong type
        with pytest.raises(kvmm.InvalidArgumentError, match="dtype"):
            ctx.kv_cache(**dict(SHAPE, dtype=torch.int64))
        with pytest.raises(kvmm.InvalidArgumentError, match="dtype"):
            s.write(0, "v", 0, np.zeros((1, 2, 16), dtype=np.float64))
    with pytest.raises(kvmm.ClosedError):
        kv.step([0], [1])
    with pytest.raises(kvmm.ClosedError):
        s.k(0)
    with pytest.raises(kvmm.ClosedError):
        kv.tensor(0, "k")


def test_library_errors_carry_errno_and_message(ctx):
    with make(ctx, max_slots=2) as kv:
        with pytest.raises(kvmm.InvalidArgumentError) as e:
            kv.free_slot(0)  # not active: libkvmm's own -EINVAL
        assert e.value.errno == errno.EINVAL and e.value.call == "kvmm_kv_free_slot"
        assert e.value.strerror and "slot 0" in str(e.value)
        with pytest.raises(kvmm.SlotBusyError):
            kv.swap_in(1)  # not swapped out: -EAGAIN
        kv.alloc_slot(1), kv.step([0, 1], [1, 1])
        with pytest.raises(kvmm.NoFreeSlotError) as e2:
            kv.alloc_slot(1)
        assert e2.value.errno == errno.ENOSPC and isinstance(e2.value, OSError)


def test_lookahead_maps_past_seq_len_and_stats_follow_tokens(ctx):
    with make(ctx, "token_major", lookahead=64) as kv:
        s = kv.alloc_slot(0)
        kv.step([s], [1])
        per_token = 3 * 2 * 2 * 16 * 4
        st = kv.stats()
        assert st.used_bytes == per_token
        assert st.mapped_bytes >= 65 * per_token
        prev = st.mapped_bytes
        for n in (100, 200, 400):
            kv.step([s], [n])
            assert kv.stats().mapped_bytes >= (n + 64) * per_token > prev
            prev = kv.stats().mapped_bytes


def test_pin_trim_priority(ctx):
    with make(ctx) as kv:
        a = kv.alloc_slot(50)
        kv.step([a], [50])
        kv.pin(a)
        with pytest.raises(kvmm.SlotBusyError):
            kv.swap_out(a, "host")
        kv.unpin(a)
        kv.set_priority(a, 5)
        kv.free_slot(a)
        kept = kv.stats().mapped_bytes
        assert kept > 0  # deferred reclamation
        kv.trim(0)
        assert kv.stats().mapped_bytes == 0 and kv.stats().reclaimed_bytes == kept


def test_auto_swap_policy_reports_evictions(flash_ctx):
    seen = []
    per_slot = 3 * 2 * 2 * 16 * 4 * 128  # 128 tokens of every layer, token-major
    with make(flash_ctx, "token_major", budget_bytes=per_slot + 4096, auto_swap=True,
              on_evict=lambda slot, tier: seen.append((slot, tier))) as kv:
        a = kv.alloc_slot(128)
        kv.step([a], [128])
        da = fill(a, 128, 6)
        b = kv.alloc_slot(128)
        kv.step([b], [128])  # a is swapped out to make room
        assert seen == [(a.index, kvmm.Tier.FLASH)]
        assert kv.slot_state(a) == kvmm.SlotState.FLASH
        with pytest.raises(kvmm.SlotBusyError):
            kv.step([a], [129])
        kv.free_slot(b)
        kv.trim(0)
        kv.swap_in(a).wait()
        assert same(a, da, 128)


def test_bfloat16_cache(ctx):
    with make(ctx, dtype=torch.bfloat16) as kv:
        s = kv.alloc_slot(4)
        kv.step([s], [4])
        x = torch.randn(4, 2, 16).to(torch.bfloat16)
        s.write(1, "v", 0, x)
        assert s.v(1).dtype == torch.bfloat16 and torch.equal(s.v(1), x)
        assert kv.array(1, "v").dtype == np.int16  # raw bits


def test_region_views_and_tiers(flash_ctx):
    with flash_ctx.region(1 << 20, chunk_bytes=1 << 16) as r:
        assert r.nbytes == 1 << 20 and r.chunk_bytes == 1 << 16
        assert set(r.query()) == {kvmm.ChunkState.EMPTY}
        a = r.array("uint32")
        t = r.tensor(torch.float32, offset=1 << 16, shape=(16, 1024))
        a[:] = np.arange(a.size, dtype=np.uint32)
        assert r.stats().resident_bytes == 1 << 20
        r.evict(0, 1 << 19)
        assert r.query(0, 8) == [kvmm.ChunkState.FLASH] * 8
        assert r.stats().flash_writes == 8
        r.prefetch(0, 1 << 18).wait()
        assert r.query(0, 1)[0] & 7 == kvmm.ChunkState.RESIDENT
        assert np.array_equal(a, np.arange(a.size, dtype=np.uint32))  # all read back
        r.pin(0, 1 << 16)
        assert r.query(0, 1)[0] & kvmm.ChunkState.PINNED
        with pytest.raises(kvmm.BusyError):
            r.discard(0, 1 << 16)
        r.unpin(0, 1 << 16)
        r.discard()
        assert int(a.sum()) == 0 and float(t.sum()) == 0.0
        with pytest.raises(kvmm.InvalidArgumentError):
            r.ensure(0, 3 << 20)
        with pytest.raises(kvmm.InvalidArgumentError):
            r.ensure(100, 1 << 16)  # libkvmm's own check: not chunk-aligned
        del a, t
