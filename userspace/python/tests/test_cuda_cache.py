# SPDX-License-Identifier: MIT
"""A CUDA KV cache through the package, against the CUDA driver stand-in:
the slot API and swaps work on device memory as on host memory. (Torch
tensors over device memory need a CUDA build of torch: not tested here.)"""
from __future__ import annotations


import pytest

import kvmm
from test_cuda_allocator import MOCK, lib, mock, pattern, read, write  # noqa: F401 (fixtures)

pytestmark = pytest.mark.skipif(
    not MOCK, reason="no CUDA driver stand-in (make builds tests/cuda's libcuda-mock.so.1 "
                     "where cuda.h is)")


@pytest.mark.parametrize("layout", ["layer_major", "token_major"])
def test_cuda_cache_steps_and_swaps_through_dram(lib, mock, ctx, layout):  # noqa: F811
    with ctx.kv_cache(layers=2, kv_heads=2, head_dim=64, max_slots=3, max_tokens=4096,
                      dtype="float16", layout=layout, device="cuda") as kv:
        s = mock.mock_cuda_stream(0)
        kv.set_stream(s)
        a = kv.alloc_slot(700)
        kv.step([a], [700])
        assert kv.stats().mapped_bytes > 0
        st = kv.strides(1, "v")
        base = st.base + a.index * st.slot
        n = 700 * st.token
        data = pattern(n, 9)
        write(mock, s, base, data)  # a "kernel" on the engine's stream
        kv.swap_out(a, "host").wait()
        assert kv.slot_state(a) == kvmm.SlotState.HOST and kv.stats().host_bytes > 0
        with pytest.raises(kvmm.SlotBusyError):
            kv.step([a], [701])
        kv.swap_in(a).wait()
        kv.wait_layer(a, 1)
        assert read(mock, s, base, n) == data
        with pytest.raises(kvmm.InvalidArgumentError, match="numpy"):
            kv.array(0, "k")  # device memory: no numpy view
        a.free()
        kv.trim(0)
        assert kv.stats().mapped_bytes == 0


def test_cuda_cache_without_a_device_says_why(lib, ctx):  # noqa: F811
    with pytest.raises(kvmm.DeviceUnavailableError) as e:
        ctx.kv_cache(layers=1, kv_heads=1, head_dim=64, max_slots=1, max_tokens=64,
                     device="cuda", device_index=5)
    assert e.value.errno == 19
