# SPDX-License-Identifier: MIT
"""kvmm: demand-paged, tiered KV-cache memory for LLM inference, over libkvmm.

    import kvmm
    with kvmm.Context() as ctx, ctx.kv_cache(layers=2, kv_heads=2, head_dim=64,
                                             max_slots=8, max_tokens=4096) as kv:
        s = kv.alloc_slot(expected_tokens=100)
        kv.step([s], [17])                  # tokens [0, 17) are resident now
        s.k(0)[:] = 1.0                     # torch view, shared with libkvmm
        kv.swap_out(s, "flash").wait(); kv.swap_in(s).wait()

See docs/python.md.
"""
from .allocator import AllocatorStats, CudaAllocator, SleepMode
from .cache import KVCache, KVStats, Kind, Layout, Slot, SlotState, Strides, Tier
from .core import ChunkState, Context, Mode, Operation, Region, RegionStats
from .prefix import PrefixHit, PrefixIndex, PrefixStats
from .errors import (
    BusyError,
    ClosedError,
    DeviceUnavailableError,
    InvalidArgumentError,
    KvmmError,
    KvmmIOError,
    NoFreeSlotError,
    NotSupportedError,
    OutOfMemoryError,
    SlotBusyError,
    StaleSlotError,
)

K = Kind.K
V = Kind.V

__version__ = "0.1.0"

__all__ = [
    "AllocatorStats", "CudaAllocator", "SleepMode", "BusyError", "ChunkState", "ClosedError", "Context", "DeviceUnavailableError",
    "InvalidArgumentError", "K", "KVCache", "KVStats", "Kind", "KvmmError", "KvmmIOError",
    "Layout", "Mode", "NoFreeSlotError", "NotSupportedError", "Operation", "OutOfMemoryError",
    "PrefixHit", "PrefixIndex", "PrefixStats",
    "Region", "RegionStats", "Slot", "SlotBusyError", "SlotState", "StaleSlotError", "Strides",
    "Tier", "V",
]
