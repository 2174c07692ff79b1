# SPDX-License-Identifier: MIT
"""ctypes declarations of libkvmm's public C API (include/kvmm/kvmm.h).

Nothing here is compiled: the structs mirror the header field by field and
every function gets its argument and result types, so a wrong call is a
Python TypeError instead of memory corruption. The library is found, in
order, at $KVMM_LIBRARY, next to an installed package
(PREFIX/lib/libkvmm.so.0), in a source tree's build/lib, then by the
dynamic linker's search path.
"""
from __future__ import annotations

import ctypes
import os
import threading
from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
    c_char_p,
    c_int,
    c_int32,
    c_ssize_t,
    c_uint8,
    c_uint32,
    c_uint64,
    c_void_p,
)
from pathlib import Path
from typing import List, Optional

SONAME = "libkvmm.so.0"

# enum kvmm_mode
MODE_AUTO, MODE_KERNEL, MODE_USER = 0, 1, 2
# enum kvmm_kv_layout, kvmm_kv_which, kvmm_device
LAYOUT_LAYER_MAJOR, LAYOUT_TOKEN_MAJOR = 0, 1
K, V = 0, 1
DEVICE_HOST, DEVICE_CUDA = 0, 1
# KVMM_SLOT_*, enum kvmm_tier
SLOT_FREE, SLOT_ACTIVE, SLOT_HOST, SLOT_FLASH, SLOT_IN_FLIGHT = 0, 1, 2, 3, 4
TIER_HOST, TIER_FLASH = SLOT_HOST, SLOT_FLASH
KV_AUTO_SWAP = 1 << 0
# KVMM_CUDA_SLEEP_* (kvmm_cuda_alloc_sleep)
CUDA_SLEEP_DISCARD, CUDA_SLEEP_HOST, CUDA_SLEEP_FLASH = 0, 1, 2


class Config(Structure):
    _fields_ = [
        ("size", c_uint32),
        ("mode", c_uint32),
        ("flash_dir", c_char_p),
        ("flash_bytes", c_uint64),
        ("queue_depth", c_uint32),
        ("staging_node", c_int32),
        ("chunk_bytes", c_uint32),
        ("flags", c_uint32),
    ]


class RegionConfig(Structure):
    _fields_ = [
        ("size", c_uint32),
        ("chunk_bytes", c_uint32),
        ("bytes", c_uint64),
        ("numa_node", c_int32),
        ("priority", c_uint32),
        ("addr", c_void_p),
    ]


class RegionStats(Structure):
    _fields_ = [
        ("bytes", c_uint64),
        ("chunk_bytes", c_uint32),
        ("id", c_uint32),
        ("resident_bytes", c_uint64),
        ("pinned_bytes", c_uint64),
        ("flash_bytes", c_uint64),
        ("faults", c_uint64),
        ("zero_fills", c_uint64),
        ("discards", c_uint64),
        ("fault_failures", c_uint64),
        ("flash_writes", c_uint64),
        ("flash_reads", c_uint64),
        ("flash_errors", c_uint64),
        ("shared_bytes", c_uint64),
        ("reserved", c_uint64 * 7),
    ]


EVICT_FN = CFUNCTYPE(None, c_void_p, c_uint32, c_int)


class KVConfig(Structure):
    _fields_ = [
        ("size", c_uint32),
        ("layers", c_uint32),
        ("kv_heads", c_uint32),
        ("head_dim", c_uint32),
        ("dtype_bytes", c_uint32),
        ("max_slots", c_uint32),
        ("max_tokens", c_uint32),
        ("device", c_uint32),
        ("device_index", c_uint32),
        ("chunk_bytes", c_uint32),
        ("layout", c_uint32),
        ("lookahead", c_uint32),
        ("flags", c_uint32),
        ("budget_bytes", c_uint64),
        ("evict_cb", EVICT_FN),
        ("evict_arg", c_void_p),
    ]


class KVTensor(Structure):
    _fields_ = [
        ("base", c_void_p),
        ("slot_stride", c_uint64),
        ("token_stride", c_uint64),
        ("head_stride", c_uint64),
        ("dim_stride", c_uint64),
        ("slot_stride_bytes", c_uint64),
        ("token_stride_bytes", c_uint64),
        ("head_stride_bytes", c_uint64),
        ("dim_stride_bytes", c_uint64),
    ]


class KVStats(Structure):
    _fields_ = [
        ("mapped_bytes", c_uint64),
        ("used_bytes", c_uint64),
        ("waste_bytes", c_uint64),
        ("host_bytes", c_uint64),
        ("flash_bytes", c_uint64),
        ("new_bytes", c_uint64),
        ("reused_bytes", c_uint64),
        ("reclaimed_bytes", c_uint64),
        ("swap_outs", c_uint64),
        ("swap_ins", c_uint64),
        ("policy_swap_outs", c_uint64),
        ("active_slots", c_uint32),
        ("free_slots", c_uint32),
        ("shared_bytes", c_uint64),
        ("shares", c_uint64),
        ("share_copied_bytes", c_uint64),
        ("reserved", c_uint64 * 5),
    ]


class CudaAllocConfig(Structure):
    _fields_ = [
        ("size", c_uint32),
        ("flags", c_uint32),
        ("tag", c_char_p),
    ]


class CudaAllocStats(Structure):
    _fields_ = [
        ("allocations", c_uint64),
        ("bytes", c_uint64),
        ("mapped_bytes", c_uint64),
        ("saved_bytes", c_uint64),
        ("mallocs", c_uint64),
        ("frees", c_uint64),
        ("refusals", c_uint64),
        ("sleeps", c_uint64),
        ("wakes", c_uint64),
        ("asleep", c_uint32),
        ("last_error", c_int32),
        ("reserved", c_uint64 * 8),
    ]


class BlockHash(Structure):
    _fields_ = [("lo", c_uint64), ("hi", c_uint64)]


PREFIX_EVICTED_FN = CFUNCTYPE(None, c_void_p, c_uint32)


class PrefixConfig(Structure):
    _fields_ = [
        ("size", c_uint32),
        ("block_tokens", c_uint32),
        ("max_blocks", c_uint64),
        ("seed", c_uint64),
        ("evicted", PREFIX_EVICTED_FN),
        ("arg", c_void_p),
    ]


class PrefixStats(Structure):
    _fields_ = [
        ("blocks", c_uint64),
        ("slots", c_uint64),
        ("cached_slots", c_uint64),
        ("lookups", c_uint64),
        ("lookup_blocks", c_uint64),
        ("hit_blocks", c_uint64),
        ("inserted_blocks", c_uint64),
        ("evictions", c_uint64),
        ("evicted_blocks", c_uint64),
    ]


_P = c_void_p
_PP = POINTER(c_void_p)

# name: (restype, argtypes)
_PROTOS = {
    "kvmm_open": (c_int, [_PP, POINTER(Config)]),
    "kvmm_close": (c_int, [_P]),
    "kvmm_mode": (c_int, [_P]),
    "kvmm_strerror": (c_char_p, [c_int]),
    "kvmm_wait": (c_int, [_P]),
    "kvmm_op_done": (c_int, [_P]),
    "kvmm_region_create": (c_int, [_P, POINTER(RegionConfig), _PP]),
    "kvmm_region_destroy": (c_int, [_P]),
    "kvmm_region_base": (c_void_p, [_P]),
    "kvmm_region_ensure": (c_int, [_P, c_uint64, c_uint64]),
    "kvmm_region_discard": (c_int, [_P, c_uint64, c_uint64]),
    "kvmm_region_evict": (c_int, [_P, c_uint64, c_uint64]),
    "kvmm_region_prefetch": (c_int, [_P, c_uint64, c_uint64, _PP]),
    "kvmm_region_pin": (c_int, [_P, c_uint64, c_uint64]),
    "kvmm_region_unpin": (c_int, [_P, c_uint64, c_uint64]),
    "kvmm_region_stats": (c_int, [_P, POINTER(RegionStats)]),
    "kvmm_region_query": (c_int, [_P, c_uint64, c_uint64, POINTER(c_uint8)]),
    "kvmm_region_share": (c_int, [_P, c_uint64, _P, c_uint64, c_uint64]),
    "kvmm_kv_create": (c_int, [_P, POINTER(KVConfig), _PP]),
    "kvmm_kv_destroy": (c_int, [_P]),
    "kvmm_kv_tensor": (c_int, [_P, c_uint32, c_int, POINTER(KVTensor)]),
    "kvmm_kv_alloc_slot": (c_int, [_P, c_uint32, POINTER(c_uint32)]),
    "kvmm_kv_step": (c_int, [_P, c_uint32, POINTER(c_uint32), POINTER(c_uint32)]),
    "kvmm_kv_free_slot": (c_int, [_P, c_uint32]),
    "kvmm_kv_share_prefix": (c_int, [_P, c_uint32, c_uint32, c_uint32]),
    "kvmm_kv_trim": (c_int, [_P, c_uint64]),
    "kvmm_kv_swap_out": (c_int, [_P, c_uint32, c_int, _PP]),
    "kvmm_kv_swap_in": (c_int, [_P, c_uint32, _PP]),
    "kvmm_kv_set_stream": (c_int, [_P, c_void_p]),
    "kvmm_kv_swap_in_wait_layer": (c_int, [_P, c_uint32, c_uint32, c_void_p]),
    "kvmm_kv_pin_slot": (c_int, [_P, c_uint32]),
    "kvmm_kv_unpin_slot": (c_int, [_P, c_uint32]),
    "kvmm_kv_set_priority": (c_int, [_P, c_uint32, c_int32]),
    "kvmm_kv_slot_state": (c_int, [_P, c_uint32]),
    "kvmm_kv_stats": (c_int, [_P, POINTER(KVStats)]),
    "kvmm_cuda_why": (c_char_p, []),
}

# The PyTorch allocator (userspace/lib/cuda_alloc.c): optional, so a
# package newer than its library still loads.
_OPTIONAL = {
    "kvmm_cuda_alloc_create": (c_int, [_P, POINTER(CudaAllocConfig), _PP]),
    "kvmm_cuda_alloc_destroy": (c_int, [_P]),
    "kvmm_cuda_alloc_use": (c_int, [_P, _PP]),
    "kvmm_cuda_alloc_sleep": (c_int, [_P, c_uint32]),
    "kvmm_cuda_alloc_wake": (c_int, [_P]),
    "kvmm_cuda_alloc_stats": (c_int, [_P, POINTER(CudaAllocStats)]),
    "kvmm_torch_malloc": (c_void_p, [c_ssize_t, c_int, c_void_p]),
    "kvmm_torch_free": (None, [c_void_p, c_ssize_t, c_int, c_void_p]),
    # The prefix index (include/kvmm/prefix.h).
    "kvmm_prefix_create": (c_int, [POINTER(PrefixConfig), _PP]),
    "kvmm_prefix_destroy": (None, [_P]),
    "kvmm_prefix_hash": (ctypes.c_long, [_P, POINTER(BlockHash), POINTER(c_uint32),
                                         ctypes.c_size_t, POINTER(BlockHash)]),
    "kvmm_prefix_insert": (c_int, [_P, c_uint32, POINTER(BlockHash), ctypes.c_size_t]),
    "kvmm_prefix_lookup": (c_int, [_P, POINTER(BlockHash), ctypes.c_size_t, POINTER(c_uint32),
                                   POINTER(ctypes.c_size_t)]),
    "kvmm_prefix_release": (c_int, [_P, c_uint32]),
    "kvmm_prefix_acquire": (c_int, [_P, c_uint32]),
    "kvmm_prefix_remove": (c_int, [_P, c_uint32]),
    "kvmm_prefix_evict": (c_int, [_P, POINTER(c_uint32)]),
    "kvmm_prefix_slot_blocks": (c_int, [_P, c_uint32, POINTER(ctypes.c_size_t)]),
    "kvmm_prefix_stats": (c_int, [_P, POINTER(PrefixStats)]),
}


def candidates() -> List[str]:
    """Paths tried for libkvmm.so, first to last."""
    out: List[str] = []
    env = os.environ.get("KVMM_LIBRARY")
    if env:
        return [env]
    here = Path(__file__).resolve().parent
    # PREFIX/lib/python3.X/{site,dist}-packages/kvmm -> PREFIX/lib
    out.append(str(here.parents[2] / SONAME))
    # a source tree: userspace/python/kvmm -> build/lib
    out.append(str(here.parents[2] / "build" / "lib" / SONAME))
    out.append(SONAME)
    return out


_lib: Optional[ctypes.CDLL] = None
_lib_lock = threading.Lock()


def lib() -> ctypes.CDLL:
    """libkvmm, loaded and typed on first use."""
    global _lib
    with _lib_lock:
        if _lib is not None:
            return _lib
        errors = []
        handle = None
        for path in candidates():
            if os.sep in path and not os.path.exists(path):
                continue
            try:
                handle = ctypes.CDLL(path, use_errno=False)
                break
            except OSError as e:
                errors.append(f"{path}: {e}")
        if handle is None:
            raise ImportError(
                "kvmm: cannot load libkvmm.so (set KVMM_LIBRARY, or install libkvmm "
                "with `make install`): " + "; ".join(errors or ["nothing found"])
            )
        for name, (res, args) in _PROTOS.items():
            fn = getattr(handle, name)
            fn.restype = res
            fn.argtypes = args
        for name, (res, args) in _OPTIONAL.items():
            fn = getattr(handle, name, None)
            if fn is not None:
                fn.restype = res
                fn.argtypes = args
        _lib = handle
        return handle


def path() -> str:
    """The file libkvmm was loaded from (for CUDAPluggableAllocator)."""
    handle = lib()
    info = ctypes.CDLL(None)
    # dladdr of one of its functions names the file that was really loaded.

    class DlInfo(Structure):
        _fields_ = [
            ("dli_fname", c_char_p),
            ("dli_fbase", c_void_p),
            ("dli_sname", c_char_p),
            ("dli_saddr", c_void_p),
        ]

    dladdr = info.dladdr
    dladdr.argtypes = [c_void_p, POINTER(DlInfo)]
    dladdr.restype = c_int
    di = DlInfo()
    addr = ctypes.cast(handle.kvmm_open, c_void_p).value
    if dladdr(addr, ctypes.byref(di)) and di.dli_fname:
        return os.path.realpath(di.dli_fname.decode())
    return handle._name


def has(name: str) -> bool:
    """Whether the loaded library exports @name."""
    return getattr(lib(), name, None) is not None
