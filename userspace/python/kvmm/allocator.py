# SPDX-License-Identifier: MIT
"""CUDA allocators with a sleep mode (libkvmm's PyTorch allocator), without
torch: create, make current for this thread, sleep, wake, stats.

kvmm.torch.use_allocator() plugs them into PyTorch (torch >= 2.0). Not yet
run on a GPU: tested against libkvmm's CUDA driver stand-in.
"""
from __future__ import annotations

import ctypes
import enum
import errno
import weakref
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Optional, Union

from . import _lib
from ._handle import _Handle
from .core import Context, _stats_from
from .errors import NotSupportedError, check, invalid


class SleepMode(enum.IntEnum):
    """What sleep() does with the contents."""

    DISCARD = _lib.CUDA_SLEEP_DISCARD  # dropped: wake gives zeros
    HOST = _lib.CUDA_SLEEP_HOST  # kept in DRAM (a kvmm host region)
    FLASH = _lib.CUDA_SLEEP_FLASH  # kept on flash


_MODES = {"discard": SleepMode.DISCARD, "host": SleepMode.HOST, "dram": SleepMode.HOST,
          "flash": SleepMode.FLASH}


@dataclass(frozen=True)
class AllocatorStats:
    """kvmm_cuda_alloc_stats(): bytes rounded up to the device's granularity."""

    allocations: int
    bytes: int
    mapped_bytes: int
    saved_bytes: int
    mallocs: int
    frees: int
    refusals: int
    sleeps: int
    wakes: int
    asleep: int
    last_error: int


def _need() -> ctypes.CDLL:
    lib = _lib.lib()
    if not _lib.has("kvmm_cuda_alloc_create"):
        raise NotSupportedError(errno.EOPNOTSUPP, "this libkvmm has no CUDA allocator",
                                "kvmm_cuda_alloc_create")
    return lib


class CudaAllocator:
    """One allocator (kvmm_cuda_alloc_create()). ``ctx`` (optional) holds
    the host regions that keep contents while asleep; without it sleep can
    only discard."""

    def __init__(self, ctx: Optional[Context] = None, tag: str = "") -> None:
        lib = _need()
        self.tag = tag
        self._tag = tag.encode()
        cfg = _lib.CudaAllocConfig(size=ctypes.sizeof(_lib.CudaAllocConfig), flags=0,
                                   tag=self._tag)
        ptr = ctypes.c_void_p()
        if ctx is not None:
            with ctx._handle.use("kvmm_cuda_alloc_create") as cp:
                ret = lib.kvmm_cuda_alloc_create(cp, ctypes.byref(cfg), ctypes.byref(ptr))
        else:
            ret = lib.kvmm_cuda_alloc_create(None, ctypes.byref(cfg), ctypes.byref(ptr))
        if ret < 0:
            check(ret, "kvmm_cuda_alloc_create", lib.kvmm_cuda_why().decode())
        self._handle = _Handle(ptr.value or 0, lib.kvmm_cuda_alloc_destroy,
                               "kvmm_cuda_alloc_destroy",
                               parent=ctx._handle if ctx is not None else None)
        self._fin = weakref.finalize(self, self._handle.close, False)

    @property
    def ptr(self) -> int:
        """The C handle (for kvmm_cuda_alloc_use from other bindings)."""
        assert self._handle.ptr is not None
        return self._handle.ptr

    @contextmanager
    def use(self) -> Iterator["CudaAllocator"]:
        """Makes this the calling thread's allocator for kvmm_torch_malloc
        inside the block; the previous one is restored after."""
        lib = _lib.lib()
        prev = ctypes.c_void_p()
        with self._handle.use("kvmm_cuda_alloc_use") as p:
            check(lib.kvmm_cuda_alloc_use(p, ctypes.byref(prev)), "kvmm_cuda_alloc_use")
            try:
                yield self
            finally:
                lib.kvmm_cuda_alloc_use(prev, None)

    def sleep(self, mode: Union[SleepMode, str] = "host") -> None:
        """Releases the GPU memory of every allocation, keeping addresses
        (and contents, in DRAM or on flash, unless mode is "discard")."""
        m = _MODES.get(mode) if isinstance(mode, str) else SleepMode(mode)
        if m is None:
            raise invalid("kvmm_cuda_alloc_sleep", f"mode {mode!r}: discard, host or flash")
        with self._handle.use("kvmm_cuda_alloc_sleep") as p:
            check(_lib.lib().kvmm_cuda_alloc_sleep(p, int(m)), "kvmm_cuda_alloc_sleep")

    def wake(self) -> None:
        """Maps GPU memory again at the same addresses, with the contents back."""
        with self._handle.use("kvmm_cuda_alloc_wake") as p:
            check(_lib.lib().kvmm_cuda_alloc_wake(p), "kvmm_cuda_alloc_wake")

    def stats(self) -> AllocatorStats:
        st = _lib.CudaAllocStats()
        with self._handle.use("kvmm_cuda_alloc_stats") as p:
            check(_lib.lib().kvmm_cuda_alloc_stats(p, ctypes.byref(st)), "kvmm_cuda_alloc_stats")
        return _stats_from(AllocatorStats, st)

    def close(self) -> None:
        """Destroys the allocator; BusyError while it has live allocations."""
        self._handle.close()
        self._fin.detach()

    def __enter__(self) -> "CudaAllocator":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


__all__ = ["AllocatorStats", "CudaAllocator", "SleepMode"]
