# SPDX-License-Identifier: MIT
"""PyTorch integration: libkvmm as torch's CUDA allocator, scoped by tag.

    import kvmm, kvmm.torch
    ctx = kvmm.Context()
    with kvmm.torch.use_allocator(tag="kv_cache", ctx=ctx):
        kv = torch.empty(n, device="cuda")      # served by kvmm, in its own pool
    kvmm.torch.sleep("kv_cache", "host")       # GPU memory released, contents in DRAM
    kvmm.torch.wake("kv_cache")                # same addresses, same contents

Needs torch >= 2.0 (torch.cuda.memory.CUDAPluggableAllocator, MemPool and
use_mem_pool: torch >= 2.5 for the pool scoping). Not yet run on a GPU.
"""
from __future__ import annotations

import errno
import threading
from contextlib import contextmanager
from typing import Any, Dict, Iterator, Optional, Union

import torch as _torch

from . import _lib
from .allocator import CudaAllocator, SleepMode
from .core import Context
from .errors import NotSupportedError

_lock = threading.Lock()
_allocators: Dict[str, CudaAllocator] = {}
_pools: Dict[str, Any] = {}
_pluggable: Any = None


def supported() -> Optional[str]:
    """None when this torch can use kvmm's allocator, else why not."""
    major = int(_torch.__version__.split(".")[0])
    mem = getattr(_torch.cuda, "memory", None)
    if major < 2 or not hasattr(mem, "CUDAPluggableAllocator"):
        return f"torch {_torch.__version__} has no CUDAPluggableAllocator (torch >= 2.0)"
    if not hasattr(_torch.cuda, "MemPool") or not hasattr(_torch.cuda, "use_mem_pool"):
        return f"torch {_torch.__version__} has no MemPool scoping (torch >= 2.5)"
    return None


def pluggable_allocator() -> Any:
    """torch's CUDAPluggableAllocator over libkvmm's kvmm_torch_malloc/free
    (one per process; kvmm picks the allocator by thread and tag)."""
    global _pluggable
    why = supported()
    if why is not None and not hasattr(getattr(_torch.cuda, "memory", None),
                                       "CUDAPluggableAllocator"):
        raise NotSupportedError(errno.EOPNOTSUPP, why, "kvmm.torch.pluggable_allocator")
    with _lock:
        if _pluggable is None:
            _pluggable = _torch.cuda.memory.CUDAPluggableAllocator(
                _lib.path(), "kvmm_torch_malloc", "kvmm_torch_free")
        return _pluggable


def allocator(tag: str, ctx: Optional[Context] = None) -> CudaAllocator:
    """The kvmm allocator for @tag, made on first use (with @ctx, so its
    sleep can keep contents)."""
    with _lock:
        a = _allocators.get(tag)
        if a is None:
            a = _allocators[tag] = CudaAllocator(ctx, tag)
        return a


@contextmanager
def use_allocator(tag: str = "default", ctx: Optional[Context] = None,
                  device: Union[int, str, None] = None) -> Iterator[CudaAllocator]:
    """CUDA allocations of this thread inside the block come from kvmm's
    allocator @tag, in a torch MemPool of their own (tags never share a
    segment), so sleep(tag)/wake(tag) move exactly them."""
    why = supported()
    if why is not None:
        raise NotSupportedError(errno.EOPNOTSUPP, why, "kvmm.torch.use_allocator")
    a = allocator(tag, ctx)
    plug = pluggable_allocator()
    with _lock:
        pool = _pools.get(tag)
        if pool is None:
            pool = _pools[tag] = _torch.cuda.MemPool(plug.allocator())
    with a.use(), _torch.cuda.use_mem_pool(pool, device=device):
        yield a


def sleep(tag: str, mode: Union[SleepMode, str] = "host") -> None:
    """Releases the GPU memory of every allocation made under @tag."""
    allocator(tag).sleep(mode)


def wake(tag: str) -> None:
    """Brings @tag's memory back at the same addresses."""
    allocator(tag).wake()


__all__ = ["allocator", "pluggable_allocator", "sleep", "supported", "use_allocator", "wake"]
