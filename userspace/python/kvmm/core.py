# SPDX-License-Identifier: MIT
"""Context, Region and Operation: libkvmm's process context, its host
regions and its asynchronous operations."""
from __future__ import annotations

import ctypes
import enum
import time
import weakref
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Callable, List, Optional, Sequence, Union

from . import _lib
from ._dtypes import resolve
from ._handle import _Handle, _ViewOwner
from .errors import ClosedError, KvmmError, check, invalid

if TYPE_CHECKING:  # pragma: no cover
    import numpy
    import torch

    from .cache import KVCache


class Mode(enum.IntEnum):
    """Where host regions come from (kvmm_mode())."""

    AUTO = _lib.MODE_AUTO
    KERNEL = _lib.MODE_KERNEL
    USER = _lib.MODE_USER


_MODES = {"auto": Mode.AUTO, "kernel": Mode.KERNEL, "user": Mode.USER}


class ChunkState(enum.IntFlag):
    """KVMM_STATE_* of one chunk (Region.query())."""

    EMPTY = 0
    RESIDENT = 1
    HOST = 2
    FLASH = 3
    SHARED = 0x04
    ERROR = 0x08
    WRITING = 0x10
    READING = 0x20
    DIRTY = 0x40
    PINNED = 0x80


STATE_MASK = 0x03


def _stats_from(cls: Any, st: ctypes.Structure) -> Any:
    return cls(**{f.name: int(getattr(st, f.name)) for f in fields(cls)})


@dataclass(frozen=True)
class RegionStats:
    """kvmm_region_stats(): sizes in bytes, counters in chunks."""

    bytes: int
    chunk_bytes: int
    id: int
    resident_bytes: int
    pinned_bytes: int
    flash_bytes: int
    faults: int
    zero_fills: int
    discards: int
    fault_failures: int
    flash_writes: int
    flash_reads: int
    flash_errors: int
    shared_bytes: int


class Operation:
    """An asynchronous prefetch or swap (struct kvmm_op).

    ``wait()`` returns once it has finished and raises its error; it is
    waited for exactly once (by ``wait()``, or when the object is dropped).
    ``done()`` polls without blocking.
    """

    def __init__(self, ptr: int, handle: _Handle, call: str,
                 on_done: Optional[Callable[[int], None]] = None) -> None:
        handle.acquire()  # the object the op works on outlives it
        self._ptr: Optional[int] = ptr
        self._handle = handle
        self._call = call
        self._on_done = on_done
        self._result: Optional[int] = None

    def done(self) -> bool:
        """True when the operation has finished (wait() will not block)."""
        if self._ptr is None:
            return True
        return check(_lib.lib().kvmm_op_done(self._ptr), "kvmm_op_done") == 1

    def wait(self, timeout: Optional[float] = None) -> None:
        """Waits for the operation; raises its error (a KvmmError).

        With ``timeout`` (seconds) it polls and raises TimeoutError if the
        operation is still running then; it can be waited for again."""
        if self._ptr is not None:
            if timeout is not None:
                end = time.monotonic() + timeout
                while not self.done():
                    if time.monotonic() >= end:
                        raise TimeoutError(f"{self._call} still running after {timeout} s")
                    time.sleep(0.0005)
            ptr, self._ptr = self._ptr, None
            self._result = _lib.lib().kvmm_wait(ptr)
            try:
                if self._on_done is not None:
                    self._on_done(self._result)
            finally:
                self._handle.release()
        assert self._result is not None
        check(self._result, self._call)

    @property
    def result(self) -> Optional[int]:
        """0 or the negative errno once waited for, else None."""
        return self._result

    def __enter__(self) -> "Operation":
        return self

    def __exit__(self, *exc: Any) -> None:
        if exc[0] is None:
            self.wait()
        else:
            self._quiet_wait()

    def _quiet_wait(self) -> None:
        try:
            self.wait()
        except KvmmError:
            pass

    def __del__(self) -> None:
        if getattr(self, "_ptr", None) is not None:
            self._quiet_wait()


class Context:
    """A libkvmm context (kvmm_open()): one per process is enough.

    ``mode``: "auto" (kvmm.ko when /dev/kvmm speaks libkvmm's ABI, else
    user mode), "kernel" or "user". Zero/None settings take libkvmm's
    environment variables, then its defaults (docs/libkvmm.md). Use it as a
    context manager, or call close(): the C context is freed once every
    region and cache made from it is gone.
    """

    def __init__(
        self,
        mode: Union[str, Mode] = "auto",
        flash_dir: Optional[str] = None,
        flash_bytes: int = 0,
        queue_depth: int = 0,
        staging_node: int = -1,
        chunk_bytes: int = 0,
    ) -> None:
        m = _MODES.get(mode) if isinstance(mode, str) else mode
        if m is None:
            raise invalid("Context", f"mode {mode!r}: expected auto, kernel or user")
        lib = _lib.lib()
        self._flash_dir = flash_dir.encode() if flash_dir else None  # kept alive
        cfg = _lib.Config(size=ctypes.sizeof(_lib.Config), mode=int(m),
                          flash_dir=self._flash_dir, flash_bytes=flash_bytes,
                          queue_depth=queue_depth, staging_node=staging_node,
                          chunk_bytes=chunk_bytes)
        ptr = ctypes.c_void_p()
        check(lib.kvmm_open(ctypes.byref(ptr), ctypes.byref(cfg)), "kvmm_open")
        self._handle = _Handle(ptr.value or 0, lib.kvmm_close, "kvmm_close")
        self._fin = weakref.finalize(self, self._handle.close, False)

    @property
    def mode(self) -> Mode:
        """Mode.KERNEL or Mode.USER: the mode in use."""
        with self._handle.use("kvmm_mode") as p:
            return Mode(check(_lib.lib().kvmm_mode(p), "kvmm_mode"))

    @property
    def closed(self) -> bool:
        return self._handle.closed

    def region(self, nbytes: int, chunk_bytes: int = 0, numa_node: int = -1,
               priority: int = 0) -> "Region":
        """A demand-paged host region of ``nbytes`` (kvmm_region_create())."""
        return Region(self, nbytes, chunk_bytes, numa_node, priority)

    def kv_cache(self, **kwargs: Any) -> "KVCache":
        """A KV cache; see KVCache for the arguments."""
        from .cache import KVCache

        return KVCache(self, **kwargs)

    def close(self) -> None:
        """Closes the context; the C context goes with its last region or
        cache. Idempotent."""
        self._fin.detach()
        self._handle.close()

    def __enter__(self) -> "Context":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else self.mode.name.lower()
        return f"<kvmm.Context {state}>"


class Region:
    """A virtually contiguous host region (kvmm_region_create()); memory is
    attached a chunk at a time on first touch or by ensure().

    Range methods take ``offset`` and ``length`` in bytes, multiples of the
    chunk size; ``length=None`` means to the end. ``array()`` and
    ``tensor()`` are views of the region's memory (no copy) that keep the
    region mapped while they exist.
    """

    def __init__(self, ctx: Context, nbytes: int, chunk_bytes: int = 0,
                 numa_node: int = -1, priority: int = 0) -> None:
        if nbytes <= 0:
            raise invalid("kvmm_region_create", f"size {nbytes}: must be positive")
        lib = _lib.lib()
        cfg = _lib.RegionConfig(size=ctypes.sizeof(_lib.RegionConfig), chunk_bytes=chunk_bytes,
                                bytes=nbytes, numa_node=numa_node, priority=priority)
        ptr = ctypes.c_void_p()
        with ctx._handle.use("kvmm_region_create") as cp:
            check(lib.kvmm_region_create(cp, ctypes.byref(cfg), ctypes.byref(ptr)),
                  "kvmm_region_create", f"{nbytes} bytes, chunk {chunk_bytes}")
        self._handle = _Handle(ptr.value or 0, lib.kvmm_region_destroy, "kvmm_region_destroy",
                               parent=ctx._handle)
        self._fin = weakref.finalize(self, self._handle.close, False)
        self.base: int = lib.kvmm_region_base(ptr) or 0
        st = self.stats()
        self.nbytes: int = st.bytes
        self.chunk_bytes: int = st.chunk_bytes

    @property
    def closed(self) -> bool:
        return self._handle.closed

    def _range(self, call: str, offset: int, length: Optional[int]) -> tuple:
        if length is None:
            length = self.nbytes - offset
        if offset < 0 or length <= 0 or offset + length > self.nbytes:
            raise invalid(call, f"range [{offset}, {offset + length}) is not inside the "
                                f"{self.nbytes}-byte region")
        return offset, length

    def _op(self, name: str, offset: int, length: Optional[int]) -> None:
        off, ln = self._range(name, offset, length)
        with self._handle.use(name) as p:
            check(getattr(_lib.lib(), name)(p, off, ln), name, f"[{off}, {off + ln})")

    def ensure(self, offset: int = 0, length: Optional[int] = None) -> None:
        """Makes the range resident now (zero-filled or read back from flash)."""
        self._op("kvmm_region_ensure", offset, length)

    def discard(self, offset: int = 0, length: Optional[int] = None) -> None:
        """Drops the range's memory and flash copies: it reads as zeros."""
        self._op("kvmm_region_discard", offset, length)

    def evict(self, offset: int = 0, length: Optional[int] = None) -> None:
        """Writes the range to flash and drops its memory (synchronous)."""
        self._op("kvmm_region_evict", offset, length)

    def share(self, offset: int, src: "Region", src_offset: int, length: int) -> None:
        """Makes [offset, offset + length) read the memory of ``src``'s
        [src_offset, src_offset + length) without a copy (kvmm_region_share():
        copy-on-write, counted once); what the range held is dropped."""
        name = "kvmm_region_share"
        if not isinstance(src, Region):
            raise invalid(name, f"src {src!r}: expected a Region")
        off, ln = self._range(name, offset, length)
        soff, sln = src._range(name, src_offset, length)
        with self._handle.use(name) as p, src._handle.use(name) as q:
            check(_lib.lib().kvmm_region_share(p, off, q, soff, ln), name,
                  f"[{off}, {off + ln}) from [{soff}, {soff + sln})")

    def pin(self, offset: int = 0, length: Optional[int] = None) -> None:
        """Ensures the range and keeps it resident; pins nest."""
        self._op("kvmm_region_pin", offset, length)

    def unpin(self, offset: int = 0, length: Optional[int] = None) -> None:
        """Undoes one pin."""
        self._op("kvmm_region_unpin", offset, length)

    def prefetch(self, offset: int = 0, length: Optional[int] = None) -> Operation:
        """Starts reading the range's flash chunks back; returns the operation."""
        off, ln = self._range("kvmm_region_prefetch", offset, length)
        op = ctypes.c_void_p()
        with self._handle.use("kvmm_region_prefetch") as p:
            check(_lib.lib().kvmm_region_prefetch(p, off, ln, ctypes.byref(op)),
                  "kvmm_region_prefetch")
            return Operation(op.value or 0, self._handle, "kvmm_region_prefetch")

    def stats(self) -> RegionStats:
        """Sizes and counters (kvmm_region_stats())."""
        st = _lib.RegionStats()
        with self._handle.use("kvmm_region_stats") as p:
            check(_lib.lib().kvmm_region_stats(p, ctypes.byref(st)), "kvmm_region_stats")
        return _stats_from(RegionStats, st)

    def query(self, first: int = 0, count: Optional[int] = None) -> List[ChunkState]:
        """The KVMM_STATE_* of chunks [first, first + count)."""
        total = self.nbytes // self.chunk_bytes
        if count is None:
            count = total - first
        if first < 0 or count <= 0 or first + count > total:
            raise invalid("kvmm_region_query", f"chunks [{first}, {first + count}) of {total}")
        buf = (ctypes.c_uint8 * count)()
        with self._handle.use("kvmm_region_query") as p:
            check(_lib.lib().kvmm_region_query(p, first, count, buf), "kvmm_region_query")
        return [ChunkState(b) for b in buf]

    def array(self, dtype: Any = "uint8", offset: int = 0,
              shape: Optional[Sequence[int]] = None) -> "numpy.ndarray":
        """A numpy view of the region from byte ``offset`` (C order)."""
        import numpy as np

        d = np.dtype(dtype)
        if offset < 0 or offset % d.itemsize:
            raise invalid("Region.array", f"offset {offset} is not a multiple of {d.itemsize}")
        if shape is None:
            shape = ((self.nbytes - offset) // d.itemsize,)
        shape = tuple(int(s) for s in shape)
        n = 1
        for s in shape:
            if s < 0:
                raise invalid("Region.array", f"shape {shape} has a negative size")
            n *= s
        if offset + n * d.itemsize > self.nbytes:
            raise invalid("Region.array", f"{n} x {d.itemsize} bytes from {offset} pass the "
                                          f"end of the {self.nbytes}-byte region")
        with self._handle.use("Region.array"):
            owner = _ViewOwner(self._handle, {
                "version": 3, "shape": shape, "typestr": d.str,
                "data": (self.base + offset, False), "strides": None,
            })
        return np.asarray(owner)

    def tensor(self, dtype: Any = None, offset: int = 0,
               shape: Optional[Sequence[int]] = None) -> "torch.Tensor":
        """A torch view of the region (see array()); shares memory."""
        import torch

        tdt = dtype if dtype is not None else torch.uint8
        d = resolve(tdt)
        raw = self.array(d.typestr, offset, shape)
        t = torch.from_numpy(raw)
        return t.view(getattr(torch, d.torch_name)) if d.name == "bfloat16" else t

    def close(self) -> None:
        """Destroys the region once no view of it remains. Idempotent."""
        self._fin.detach()
        self._handle.close()

    def __enter__(self) -> "Region":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        if self.closed:
            return "<kvmm.Region closed>"
        return f"<kvmm.Region {self.nbytes} bytes, chunk {self.chunk_bytes}>"


__all__ = ["ChunkState", "Context", "Mode", "Operation", "Region", "RegionStats", "ClosedError"]
