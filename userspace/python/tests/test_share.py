# SPDX-License-Identifier: MIT
"""Prefix sharing through the package: KVCache.share_prefix and Region.share."""
from __future__ import annotations

import errno

import pytest
import torch

import kvmm
from test_api import LAYOUTS, fill, make


@pytest.mark.parametrize("layout", LAYOUTS)
def test_share_prefix_reads_the_source_and_counts_it_once(ctx, layout):
    with make(ctx, layout) as kv:
        a = kv.alloc_slot(200)
        kv.step([a], [200])
        fill(a, 200, 1)
        before = kv.stats()
        b = kv.alloc_slot(150)
        kv.share_prefix(b, a, 150)
        assert b.seq_len == 150
        for layer in range(kv.layers):
            assert torch.equal(b.k(layer, 150), a.k(layer, 150))
            assert torch.equal(b.v(layer, 150), a.v(layer, 150))
        st = kv.stats()
        parts = 2 * kv.layers if layout == "layer_major" else 1
        assert st.shares == 1
        assert st.shared_bytes > 0
        # only the partial chunk at the end of the prefix is new memory
        assert st.mapped_bytes - before.mapped_bytes == 4096 * parts
        # the sharer writes its own tokens after the prefix; the source never sees them
        kv.step([b], [200])
        b.write(0, kvmm.K, 150, torch.ones(50, kv.kv_heads, kv.head_dim))
        assert not torch.equal(a.k(0, 200), b.k(0, 200))
        assert torch.equal(a.k(0, 150), b.k(0, 150))


def test_share_prefix_refusals_are_errors_and_change_nothing(ctx):
    with make(ctx) as kv:
        a = kv.alloc_slot(100)
        kv.step([a], [100])
        b = kv.alloc_slot(10)
        with pytest.raises(kvmm.InvalidArgumentError):
            kv.share_prefix(a, a, 10)
        with pytest.raises(kvmm.InvalidArgumentError):
            kv.share_prefix(b, a, 0)
        with pytest.raises(OSError) as e:
            kv.share_prefix(b, a, 101)
        assert e.value.errno == errno.ERANGE
        with pytest.raises(OSError) as e:
            kv.share_prefix(2, a, 10)  # slot 2 is free
        assert e.value.errno == errno.EAGAIN
        assert kv.stats().shares == 0


def test_region_share_reads_the_same_bytes(ctx):
    with ctx.region(4 * 4096, chunk_bytes=4096) as src, ctx.region(4 * 4096, chunk_bytes=4096) as dst:
        src.ensure()
        s = src.array()
        s[:] = 7
        dst.share(4096, src, 0, 2 * 4096)
        d = dst.array()
        assert (d[4096:3 * 4096] == 7).all()
        assert dst.stats().shared_bytes == 2 * 4096
        assert kvmm.ChunkState.SHARED in dst.query(1, 1)[0]
