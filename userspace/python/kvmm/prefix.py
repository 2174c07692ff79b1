# SPDX-License-Identifier: MIT
"""The prefix index (include/kvmm/prefix.h): which slots already hold a
prompt's leading tokens, block by block, with LRU eviction of the slots
kept only as a cache.

    px = kvmm.PrefixIndex(block_tokens=16, seed=model_fingerprint)
    hashes = px.hash(prompt_tokens)          # one per full block
    hit = px.lookup(hashes)                  # hit.blocks cached, hit.slots[i] holds block i
    px.insert(slot, hashes)                  # the slot now holds them, in use
    px.release(slot)                         # request done: cached, evictable
    victim = px.evict()                      # under pressure: free that slot

A block hash is 16 bytes (``bytes``); hashes made elsewhere (vLLM's
block hashes, a remote store's names) can be passed as 16-byte values too.
"""
from __future__ import annotations

import ctypes
import errno
import threading
from dataclasses import dataclass
from typing import Callable, List, NamedTuple, Optional, Sequence, Union

from . import _lib
from .errors import NotSupportedError, check, invalid

HASH_BYTES = 16

SlotLike = Union[int, "object"]


def _slot_index(slot: SlotLike) -> int:
    """A slot number, or a KVCache Slot handle's index."""
    index = getattr(slot, "index", slot)
    if not isinstance(index, int) or index < 0:
        raise invalid("PrefixIndex", f"not a slot: {slot!r}")
    return index


def _need() -> ctypes.CDLL:
    lib = _lib.lib()
    if not _lib.has("kvmm_prefix_create"):
        raise NotSupportedError(errno.EOPNOTSUPP, "this libkvmm has no prefix index",
                                "kvmm_prefix_create")
    return lib


def _to_array(hashes: Sequence[bytes], call: str) -> "ctypes.Array[_lib.BlockHash]":
    arr = (_lib.BlockHash * max(len(hashes), 1))()
    for i, h in enumerate(hashes):
        if not isinstance(h, (bytes, bytearray)) or len(h) != HASH_BYTES:
            raise invalid(call, f"hash {i} is not {HASH_BYTES} bytes")
        arr[i].lo = int.from_bytes(h[:8], "little")
        arr[i].hi = int.from_bytes(h[8:], "little")
    return arr


def _from_struct(h: _lib.BlockHash) -> bytes:
    return h.lo.to_bytes(8, "little") + h.hi.to_bytes(8, "little")


class PrefixHit(NamedTuple):
    """What a lookup found: the leading ``blocks`` are cached (``tokens`` of
    them), block i in slot ``slots[i]``."""

    blocks: int
    tokens: int
    slots: List[int]


@dataclass(frozen=True)
class PrefixStats:
    blocks: int
    slots: int
    cached_slots: int
    lookups: int
    lookup_blocks: int
    hit_blocks: int
    inserted_blocks: int
    evictions: int
    evicted_blocks: int


class PrefixIndex:
    """One index (kvmm_prefix_create()). ``max_blocks`` caps the distinct
    blocks held (0: no cap); when an insert needs room it evicts cached
    slots and calls ``on_evict(slot)`` for each, after which the engine
    should free that slot. Without ``on_evict`` an insert past the cap
    raises instead. Thread-safe."""

    def __init__(self, block_tokens: int = 16, seed: int = 0, max_blocks: int = 0,
                 on_evict: Optional[Callable[[int], None]] = None) -> None:
        lib = _need()
        if block_tokens <= 0:
            raise invalid("kvmm_prefix_create", "block_tokens must be positive")
        self.block_tokens = block_tokens
        self._on_evict = on_evict
        # Kept alive as long as the index: the C side holds the pointer.
        self._cb = _lib.PREFIX_EVICTED_FN(self._evicted) if on_evict else _lib.PREFIX_EVICTED_FN()
        cfg = _lib.PrefixConfig(size=ctypes.sizeof(_lib.PrefixConfig), block_tokens=block_tokens,
                                max_blocks=max_blocks, seed=seed & (2**64 - 1),
                                evicted=self._cb, arg=None)
        ptr = ctypes.c_void_p()
        check(lib.kvmm_prefix_create(ctypes.byref(cfg), ctypes.byref(ptr)), "kvmm_prefix_create")
        self._ptr: Optional[int] = ptr.value
        self._lib = lib
        self._lock = threading.Lock()

    def _evicted(self, _arg: Optional[int], slot: int) -> None:
        if self._on_evict is not None:
            self._on_evict(int(slot))

    def _p(self, call: str) -> int:
        if self._ptr is None:
            raise invalid(call, "the prefix index is closed")
        return self._ptr

    def close(self) -> None:
        with self._lock:
            if self._ptr is not None:
                self._lib.kvmm_prefix_destroy(self._ptr)
                self._ptr = None

    def __enter__(self) -> "PrefixIndex":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def hash(self, tokens: Sequence[int], parent: Optional[bytes] = None) -> List[bytes]:
        """Hashes of the full blocks of ``tokens``, continuing after ``parent``
        (the hash of the block before them) if given."""
        n = len(tokens)
        toks = (ctypes.c_uint32 * max(n, 1))(*[int(t) & 0xFFFFFFFF for t in tokens])
        out = (_lib.BlockHash * max(n // self.block_tokens, 1))()
        par = _to_array([parent], "kvmm_prefix_hash") if parent is not None else None
        got = check(self._lib.kvmm_prefix_hash(self._p("kvmm_prefix_hash"), par, toks, n, out),
                    "kvmm_prefix_hash")
        return [_from_struct(out[i]) for i in range(got)]

    def insert(self, slot: SlotLike, hashes: Sequence[bytes]) -> None:
        """``slot`` holds blocks ``hashes`` (from its start) and is in use."""
        arr = _to_array(hashes, "kvmm_prefix_insert")
        check(self._lib.kvmm_prefix_insert(self._p("kvmm_prefix_insert"), _slot_index(slot), arr,
                                           len(hashes)), "kvmm_prefix_insert")

    def lookup(self, hashes: Sequence[bytes]) -> PrefixHit:
        """How much of a sequence is cached, and where."""
        arr = _to_array(hashes, "kvmm_prefix_lookup")
        slots = (ctypes.c_uint32 * max(len(hashes), 1))()
        matched = ctypes.c_size_t()
        check(self._lib.kvmm_prefix_lookup(self._p("kvmm_prefix_lookup"), arr, len(hashes), slots,
                                           ctypes.byref(matched)), "kvmm_prefix_lookup")
        m = matched.value
        return PrefixHit(m, m * self.block_tokens, [int(slots[i]) for i in range(m)])

    def release(self, slot: SlotLike) -> None:
        check(self._lib.kvmm_prefix_release(self._p("kvmm_prefix_release"), _slot_index(slot)),
              "kvmm_prefix_release")

    def acquire(self, slot: SlotLike) -> None:
        check(self._lib.kvmm_prefix_acquire(self._p("kvmm_prefix_acquire"), _slot_index(slot)),
              "kvmm_prefix_acquire")

    def remove(self, slot: SlotLike) -> None:
        check(self._lib.kvmm_prefix_remove(self._p("kvmm_prefix_remove"), _slot_index(slot)),
              "kvmm_prefix_remove")

    def evict(self) -> Optional[int]:
        """The least recently used cached slot, now out of the index (free
        it), or None when every slot is in use."""
        slot = ctypes.c_uint32()
        ret = self._lib.kvmm_prefix_evict(self._p("kvmm_prefix_evict"), ctypes.byref(slot))
        if ret == -errno.ENOENT:
            return None
        check(ret, "kvmm_prefix_evict")
        return int(slot.value)

    def slot_blocks(self, slot: SlotLike) -> int:
        n = ctypes.c_size_t()
        check(self._lib.kvmm_prefix_slot_blocks(self._p("kvmm_prefix_slot_blocks"),
                                                _slot_index(slot), ctypes.byref(n)),
              "kvmm_prefix_slot_blocks")
        return int(n.value)

    def stats(self) -> PrefixStats:
        st = _lib.PrefixStats()
        check(self._lib.kvmm_prefix_stats(self._p("kvmm_prefix_stats"), ctypes.byref(st)),
              "kvmm_prefix_stats")
        return PrefixStats(*(int(getattr(st, f)) for f, _ in _lib.PrefixStats._fields_))
