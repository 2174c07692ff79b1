# SPDX-License-Identifier: MIT
"""KVCache and Slot: a kvmm KV cache as zero-copy numpy arrays and torch
tensors, with libkvmm's slot, step and swap API.

Two ways to reach the memory:

* ``KVCache.tensor(layer, kind)``: the whole layer's K or V as one strided
  tensor ``[max_slots, max_tokens, kv_heads, head_dim]`` (both layouts).
  Taken once, indexed by the engine as it likes: the fast path for
  attention. It keeps the cache mapped while it exists, but it is raw
  memory: it cannot know which request a slot belongs to now.
* ``Slot``, returned by ``alloc_slot()``: one request's handle, stamped
  with the slot's generation. ``slot.k(layer)`` / ``slot.v(layer)`` check,
  on every call, that the request still owns the slot and that it is
  resident, and give its tokens ``[0, seq_len)``; once the slot is freed
  (or swapped out) they raise instead of reading another request's (or
  unmapped) tokens.
"""
from __future__ import annotations

import ctypes
import enum
import errno
import threading
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, List, Optional, Tuple, Union

from . import _lib
from ._dtypes import DType, resolve
from ._handle import _Handle, _ViewOwner
from .core import Context, Operation, _stats_from
from .errors import StaleSlotError, SlotBusyError, check, invalid

if TYPE_CHECKING:  # pragma: no cover
    import numpy
    import torch


class Kind(enum.IntEnum):
    """Which half of a layer: keys or values."""

    K = _lib.K
    V = _lib.V


class Layout(enum.IntEnum):
    """KVMM_LAYOUT_*: layer-major (vAttention) or token-major (one region per slot)."""

    LAYER_MAJOR = _lib.LAYOUT_LAYER_MAJOR
    TOKEN_MAJOR = _lib.LAYOUT_TOKEN_MAJOR


class Tier(enum.IntEnum):
    """Where a slot is swapped out to."""

    HOST = _lib.TIER_HOST
    FLASH = _lib.TIER_FLASH


class SlotState(enum.IntEnum):
    """KVMM_SLOT_* of a slot."""

    FREE = _lib.SLOT_FREE
    ACTIVE = _lib.SLOT_ACTIVE
    HOST = _lib.SLOT_HOST
    FLASH = _lib.SLOT_FLASH
    IN_FLIGHT = _lib.SLOT_IN_FLIGHT


KindLike = Union[Kind, str, int]
TierLike = Union[Tier, str, int]
LayoutLike = Union[Layout, str, int]

_KINDS = {"k": Kind.K, "key": Kind.K, "keys": Kind.K, "v": Kind.V, "value": Kind.V, "values": Kind.V}
_TIERS = {"host": Tier.HOST, "dram": Tier.HOST, "flash": Tier.FLASH}
_LAYOUTS = {"layer_major": Layout.LAYER_MAJOR, "layer-major": Layout.LAYER_MAJOR,
            "token_major": Layout.TOKEN_MAJOR, "token-major": Layout.TOKEN_MAJOR}


def _enum(table: Dict[str, Any], cls: Any, value: Any, what: str, call: str) -> Any:
    if isinstance(value, str):
        out = table.get(value.lower())
        if out is None:
            raise invalid(call, f"{what} {value!r}: expected one of {', '.join(sorted(table))}")
        return out
    try:
        return cls(value)
    except ValueError:
        raise invalid(call, f"{what} {value!r}: expected one of {[m.name for m in cls]}") from None


@dataclass(frozen=True)
class KVStats:
    """kvmm_kv_stats(): bytes over all layers, counters since creation."""

    mapped_bytes: int
    used_bytes: int
    waste_bytes: int
    host_bytes: int
    flash_bytes: int
    new_bytes: int
    reused_bytes: int
    reclaimed_bytes: int
    swap_outs: int
    swap_ins: int
    policy_swap_outs: int
    active_slots: int
    free_slots: int
    shared_bytes: int
    shares: int
    share_copied_bytes: int


@dataclass(frozen=True)
class Strides:
    """Base address and byte strides of one layer's K or V (kvmm_kv_tensor())."""

    base: int
    slot: int
    token: int
    head: int
    dim: int


class Slot:
    """One sequence's slot, as handed out by KVCache.alloc_slot().

    Its accessors check the slot's generation: after free() (by this handle
    or KVCache.free_slot) every use raises StaleSlotError, because the slot
    index may already hold another request."""

    __slots__ = ("cache", "index", "generation")

    def __init__(self, cache: "KVCache", index: int, generation: int) -> None:
        self.cache = cache
        self.index = index
        self.generation = generation

    @property
    def valid(self) -> bool:
        """True while this handle's sequence still owns the slot."""
        return not self.cache.closed and self.cache._gen[self.index] == self.generation

    @property
    def seq_len(self) -> int:
        """Tokens the last step made this slot hold."""
        self.cache._check_slot(self, "Slot.seq_len")
        return self.cache._seq_len[self.index]

    @property
    def state(self) -> SlotState:
        self.cache._check_slot(self, "Slot.state")
        return self.cache.slot_state(self.index)

    def k(self, layer: int, length: Optional[int] = None) -> "torch.Tensor":
        """Keys of ``layer``, tokens [0, length or seq_len): [length, kv_heads, head_dim]."""
        return self.cache._slot_tensor(self, layer, Kind.K, length)

    def v(self, layer: int, length: Optional[int] = None) -> "torch.Tensor":
        """Values of ``layer`` (see k())."""
        return self.cache._slot_tensor(self, layer, Kind.V, length)

    def array(self, layer: int, kind: KindLike, length: Optional[int] = None) -> "numpy.ndarray":
        """numpy view of the slot's tokens (bfloat16 as raw int16)."""
        return self.cache._slot_array(self, layer, kind, length)

    def write(self, layer: int, kind: KindLike, start: int, data: Any) -> None:
        """Copies ``data`` ([n, kv_heads, head_dim], the cache's dtype) into
        tokens [start, start + n), which the last step must cover."""
        self.cache._slot_write(self, layer, kind, start, data)

    def step(self, seq_len: int) -> None:
        """Steps this slot alone (KVCache.step)."""
        self.cache.step([self], [seq_len])

    def free(self) -> None:
        """The sequence is done (KVCache.free_slot)."""
        self.cache.free_slot(self)

    def __index__(self) -> int:
        return self.index

    def __repr__(self) -> str:
        return f"<kvmm.Slot {self.index} gen {self.generation}{'' if self.valid else ' stale'}>"


SlotLike = Union[Slot, int]


class KVCache:
    """A KV cache of ``layers x {K, V}`` strided tensors (kvmm_kv_create()).

    Arguments: ``layers``, ``kv_heads``, ``head_dim``, ``max_slots``,
    ``max_tokens`` (all positive); ``dtype`` (float16, bfloat16, float32,
    int8, uint8: a name, numpy or torch dtype); ``layout`` ("layer_major"
    or "token_major"); ``device`` ("cpu" or "cuda") and ``device_index``;
    ``chunk_bytes`` (0: the context's); ``lookahead`` (tokens mapped past
    each stepped seq_len); ``budget_bytes`` (0: no limit); ``auto_swap``
    (the policy swaps cold slots out to stay in budget) and ``on_evict``
    (called with (slot index, Tier) for each slot the policy swapped out,
    after the call that did it returns, on the calling thread).

    No memory is attached until step(). Use it as a context manager or
    call close(); the cache is destroyed once no view of it remains.
    """

    def __init__(
        self,
        ctx: Context,
        *,
        layers: int,
        kv_heads: int,
        head_dim: int,
        max_slots: int,
        max_tokens: int,
        dtype: Any = "float16",
        layout: LayoutLike = "layer_major",
        device: str = "cpu",
        device_index: int = 0,
        chunk_bytes: int = 0,
        lookahead: int = 0,
        budget_bytes: int = 0,
        auto_swap: bool = False,
        on_evict: Optional[Callable[[int, Tier], None]] = None,
    ) -> None:
        call = "kvmm_kv_create"
        for name, v in (("layers", layers), ("kv_heads", kv_heads), ("head_dim", head_dim),
                        ("max_slots", max_slots), ("max_tokens", max_tokens)):
            if not isinstance(v, int) or v <= 0 or v >= 1 << 32:
                raise invalid(call, f"{name} {v!r}: must be a positive 32-bit integer")
        try:
            self.dtype: DType = resolve(dtype)
        except ValueError as e:
            raise invalid(call, str(e)) from None
        self.layout = _enum(_LAYOUTS, Layout, layout, "layout", call)
        if device not in ("cpu", "host", "cuda"):
            raise invalid(call, f"device {device!r}: expected 'cpu' or 'cuda'")
        self.device = "cuda" if device == "cuda" else "cpu"
        self.device_index = device_index if self.device == "cuda" else 0
        self.layers, self.kv_heads, self.head_dim = layers, kv_heads, head_dim
        self.max_slots, self.max_tokens, self.lookahead = max_slots, max_tokens, lookahead
        self._lock = threading.RLock()
        self._gen = [0] * max_slots
        self._seq_len = [0] * max_slots
        self._evicted: List[Tuple[int, Tier]] = []
        self._evict_lock = threading.Lock()
        self._on_evict = on_evict

        # Runs inside libkvmm with the cache locked: only records.
        def evict_cb(_arg: Any, slot: int, tier: int) -> None:
            with self._evict_lock:
                self._evicted.append((slot, Tier(tier)))

        self._evict_cb = _lib.EVICT_FN(evict_cb)  # kept alive with the cache
        cfg = _lib.KVConfig(
            size=ctypes.sizeof(_lib.KVConfig), layers=layers, kv_heads=kv_heads,
            head_dim=head_dim, dtype_bytes=self.dtype.itemsize, max_slots=max_slots,
            max_tokens=max_tokens,
            device=_lib.DEVICE_CUDA if self.device == "cuda" else _lib.DEVICE_HOST,
            device_index=self.device_index, chunk_bytes=chunk_bytes, layout=int(self.layout),
            lookahead=lookahead, flags=_lib.KV_AUTO_SWAP if auto_swap else 0,
            budget_bytes=budget_bytes,
            evict_cb=self._evict_cb if auto_swap else _lib.EVICT_FN(), evict_arg=None)
        lib = _lib.lib()
        ptr = ctypes.c_void_p()
        with ctx._handle.use(call) as cp:
            ret = lib.kvmm_kv_create(cp, ctypes.byref(cfg), ctypes.byref(ptr))
        if ret < 0:
            why = lib.kvmm_cuda_why().decode() if self.device == "cuda" else ""
            check(ret, call, why or f"{layers} layers x {kv_heads} heads x {head_dim}, "
                  f"{max_slots} slots x {max_tokens} tokens, {self.dtype.name}, chunk "
                  f"{chunk_bytes or 'default'}")
        self._handle = _Handle(ptr.value or 0, lib.kvmm_kv_destroy, "kvmm_kv_destroy",
                               parent=ctx._handle)
        # The callback object lives as long as the C cache, not the Python one.
        self._handle.keep = self._evict_cb  # type: ignore[attr-defined]
        self._fin = weakref.finalize(self, self._handle.close, False)
        self._strides: Dict[Tuple[int, int], Strides] = {}
        for layer in range(layers):
            for kind in Kind:
                t = _lib.KVTensor()
                check(lib.kvmm_kv_tensor(ptr, layer, int(kind), ctypes.byref(t)), "kvmm_kv_tensor")
                self._strides[(layer, int(kind))] = Strides(
                    t.base or 0, t.slot_stride_bytes, t.token_stride_bytes,
                    t.head_stride_bytes, t.dim_stride_bytes)

    # ------------------------------------------------------------ basics
    @property
    def closed(self) -> bool:
        return self._handle.closed

    @property
    def shape(self) -> Tuple[int, int, int, int]:
        """Shape of every tensor(): (max_slots, max_tokens, kv_heads, head_dim)."""
        return (self.max_slots, self.max_tokens, self.kv_heads, self.head_dim)

    def close(self) -> None:
        """Destroys the cache once no view of it remains (after its queued
        swaps finish). Every later call raises ClosedError. Idempotent."""
        self._fin.detach()
        self._handle.close()

    def __enter__(self) -> "KVCache":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{self.device}"
        return (f"<kvmm.KVCache {self.layers}x{{K,V}} {self.shape} {self.dtype.name} "
                f"{self.layout.name.lower()} {state}>")

    # -------------------------------------------------------- validation
    def _slot_index(self, slot: SlotLike, call: str) -> int:
        if isinstance(slot, Slot):
            self._check_slot(slot, call)
            return slot.index
        if isinstance(slot, bool) or not isinstance(slot, int):
            raise invalid(call, f"slot {slot!r}: expected a Slot or an int")
        if not 0 <= slot < self.max_slots:
            raise invalid(call, f"slot {slot} out of range 0..{self.max_slots - 1}")
        return slot

    def _check_slot(self, slot: Slot, call: str) -> None:
        if slot.cache is not self:
            raise invalid(call, f"{slot!r} belongs to another cache")
        if self.closed:
            from .errors import ClosedError

            raise ClosedError(errno.EBADF, "the cache is closed", call)
        if self._gen[slot.index] != slot.generation:
            raise StaleSlotError(
                errno.ESTALE,
                f"slot {slot.index} was freed (handle generation {slot.generation}, now "
                f"{self._gen[slot.index]}); it may hold another request", call)

    def _layer(self, layer: int, call: str) -> int:
        if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < self.layers:
            raise invalid(call, f"layer {layer!r} out of range 0..{self.layers - 1}")
        return layer

    def _kind(self, kind: KindLike, call: str) -> Kind:
        return _enum(_KINDS, Kind, kind, "kind", call)

    def _deliver_evictions(self) -> None:
        if self._on_evict is None:
            return
        with self._evict_lock:
            ev, self._evicted = self._evicted, []
        for slot, tier in ev:
            self._on_evict(slot, tier)

    # ------------------------------------------------------------ views
    def strides(self, layer: int, kind: KindLike) -> Strides:
        """Base address and byte strides of ``layer``'s K or V."""
        call = "KVCache.strides"
        with self._handle.use(call):
            return self._strides[(self._layer(layer, call), int(self._kind(kind, call)))]

    def _interface(self, s: Strides, shape: Tuple[int, ...], strides: Tuple[int, ...],
                   offset: int) -> dict:
        return {"version": 3 if self.device == "cpu" else 2, "shape": shape,
                "typestr": self.dtype.typestr, "data": (s.base + offset, False),
                "strides": strides}

    def _view(self, call: str, s: Strides, shape: Tuple[int, ...], strides: Tuple[int, ...],
              offset: int = 0, as_torch: bool = True) -> Any:
        import numpy as np

        with self._handle.use(call):
            owner = _ViewOwner(self._handle, self._interface(s, shape, strides, offset),
                               cuda=self.device == "cuda")
        if self.device == "cuda":
            import torch

            if not as_torch:
                raise invalid(call, "a CUDA cache has no numpy view; use tensor()")
            t = torch.as_tensor(owner, device=f"cuda:{self.device_index}")
            return t.view(torch.bfloat16) if self.dtype.name == "bfloat16" else t
        arr = np.asarray(owner)
        if not as_torch:
            return arr
        import torch

        t = torch.from_numpy(arr)
        return t.view(torch.bfloat16) if self.dtype.name == "bfloat16" else t

    def tensor(self, layer: int, kind: KindLike) -> "torch.Tensor":
        """``layer``'s K or V as one torch tensor [max_slots, max_tokens,
        kv_heads, head_dim] over the cache's memory (no copy). Keeps the
        cache alive. Raw: only tokens a step made resident may be touched;
        it cannot tell a freed slot from its next owner (use Slot for that)."""
        call = "KVCache.tensor"
        s = self.strides(layer, kind)
        return self._view(call, s, self.shape, (s.slot, s.token, s.head, s.dim))

    def array(self, layer: int, kind: KindLike) -> "numpy.ndarray":
        """tensor() as a numpy array (bfloat16 as raw int16; host caches only)."""
        call = "KVCache.array"
        s = self.strides(layer, kind)
        return self._view(call, s, self.shape, (s.slot, s.token, s.head, s.dim), as_torch=False)

    def _slot_len(self, slot: Slot, length: Optional[int], call: str) -> int:
        state = self.slot_state(slot.index)
        if state != SlotState.ACTIVE:
            raise SlotBusyError(errno.EAGAIN, f"slot {slot.index} is {state.name.lower()}, not "
                                              "resident: swap it in first", call)
        have = self._seq_len[slot.index]
        if length is None:
            return have
        if isinstance(length, bool) or not isinstance(length, int) or not 0 <= length <= have:
            raise invalid(call, f"length {length!r}: slot {slot.index} holds {have} tokens")
        return length

    def _slot_view(self, slot: Slot, layer: int, kind: KindLike, length: Optional[int],
                   call: str, as_torch: bool) -> Any:
        with self._lock:
            self._check_slot(slot, call)
            self._layer(layer, call)
            k = self._kind(kind, call)
            n = self._slot_len(slot, length, call)
            s = self._strides[(layer, int(k))]
            return self._view(call, s, (n, self.kv_heads, self.head_dim),
                              (s.token, s.head, s.dim), slot.index * s.slot, as_torch)

    def _slot_tensor(self, slot: Slot, layer: int, kind: KindLike,
                     length: Optional[int]) -> "torch.Tensor":
        return self._slot_view(slot, layer, kind, length, "Slot.tensor", True)

    def _slot_array(self, slot: Slot, layer: int, kind: KindLike,
                    length: Optional[int]) -> "numpy.ndarray":
        return self._slot_view(slot, layer, kind, length, "Slot.array", False)

    def _slot_write(self, slot: Slot, layer: int, kind: KindLike, start: int, data: Any) -> None:
        call = "Slot.write"
        import torch

        with self._lock:
            self._check_slot(slot, call)
            if not isinstance(data, torch.Tensor):
                import numpy as np

                if not isinstance(data, np.ndarray):
                    raise invalid(call, f"data: expected a torch tensor or numpy array, got "
                                        f"{type(data).__name__}")
                data = torch.from_numpy(data)
            want = getattr(torch, self.dtype.torch_name)
            if data.dtype != want:
                raise invalid(call, f"dtype {data.dtype}: the cache holds {want}")
            if data.dim() != 3 or tuple(data.shape[1:]) != (self.kv_heads, self.head_dim):
                raise invalid(call, f"shape {tuple(data.shape)}: expected [n, {self.kv_heads}, "
                                    f"{self.head_dim}]")
            n = data.shape[0]
            have = self._seq_len[slot.index]
            if isinstance(start, bool) or not isinstance(start, int) or start < 0 or \
                    start + n > have:
                raise invalid(call, f"tokens [{start}, {start + n}) are not inside the "
                                    f"{have} the last step made resident")
            dst = self._slot_view(slot, layer, kind, have, call, True)
            dst[start:start + n].copy_(data)

    # ---------------------------------------------------------- slots
    def alloc_slot(self, expected_tokens: int = 0) -> Slot:
        """A free slot for a new sequence (best fit for ``expected_tokens``);
        NoFreeSlotError when none is free."""
        call = "kvmm_kv_alloc_slot"
        if isinstance(expected_tokens, bool) or not isinstance(expected_tokens, int) or \
                not 0 <= expected_tokens <= self.max_tokens:
            raise invalid(call, f"expected_tokens {expected_tokens!r}: 0..{self.max_tokens}")
        out = ctypes.c_uint32()
        with self._lock, self._handle.use(call) as p:
            check(_lib.lib().kvmm_kv_alloc_slot(p, expected_tokens, ctypes.byref(out)), call)
            return Slot(self, out.value, self._gen[out.value])

    def slot(self, index: int) -> Slot:
        """A checked handle for slot ``index`` in its current generation."""
        i = self._slot_index(index, "KVCache.slot")
        return Slot(self, i, self._gen[i])

    def step(self, slots: Iterable[SlotLike], seq_lens: Iterable[int]) -> None:
        """Makes tokens [0, seq_len + lookahead) of each slot resident (a free
        slot index becomes active). Checks everything before calling
        libkvmm, so a bad argument changes nothing."""
        call = "kvmm_kv_step"
        sl = list(slots)
        ln = list(seq_lens)
        if len(sl) != len(ln):
            raise invalid(call, f"{len(sl)} slots but {len(ln)} seq_lens")
        with self._lock:
            idx = [self._slot_index(s, call) for s in sl]
            if len(set(idx)) != len(idx):
                raise invalid(call, f"a slot is listed twice: {idx}")
            for n in ln:
                if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= self.max_tokens:
                    raise invalid(call, f"seq_len {n!r}: must be 0..{self.max_tokens}")
            cs = (ctypes.c_uint32 * len(idx))(*idx)
            cl = (ctypes.c_uint32 * len(ln))(*ln)
            with self._handle.use(call) as p:
                ret = _lib.lib().kvmm_kv_step(p, len(idx), cs, cl)
            # On failure the slots before the failing one keep their new
            # memory, but which one failed is not reported: views stay
            # limited to the lengths known to be resident.
            if ret == 0:
                for i, n in zip(idx, ln):
                    self._seq_len[i] = n
        self._deliver_evictions()
        check(ret, call)

    def free_slot(self, slot: SlotLike) -> None:
        """The sequence is done: the slot's memory stays mapped for reuse,
        and every Slot handle of it goes stale."""
        call = "kvmm_kv_free_slot"
        with self._lock:
            i = self._slot_index(slot, call)
            with self._handle.use(call) as p:
                check(_lib.lib().kvmm_kv_free_slot(p, i), call, f"slot {i}")
            self._gen[i] += 1
            self._seq_len[i] = 0

    def share_prefix(self, dst: SlotLike, src: SlotLike, ntokens: int) -> None:
        """Starts ``dst`` with the first ``ntokens`` tokens of ``src`` without
        copying them (kvmm_kv_share_prefix()): the whole chunks are shared,
        the partial one at the end is copied; ``dst`` then holds ``ntokens``
        tokens and must write its own only after them. The prefix must not
        be written through either slot."""
        call = "kvmm_kv_share_prefix"
        with self._lock:
            d = self._slot_index(dst, call)
            s = self._slot_index(src, call)
            if isinstance(ntokens, bool) or not isinstance(ntokens, int) or \
                    not 0 < ntokens <= self.max_tokens:
                raise invalid(call, f"ntokens {ntokens!r}: must be 1..{self.max_tokens}")
            if d == s:
                raise invalid(call, f"slot {d} cannot share with itself")
            with self._handle.use(call) as p:
                check(_lib.lib().kvmm_kv_share_prefix(p, d, s, ntokens), call,
                      f"slot {d} from slot {s}, {ntokens} tokens")
            self._seq_len[d] = ntokens

    def slot_state(self, slot: SlotLike) -> SlotState:
        """KVMM_SLOT_* of a slot."""
        call = "kvmm_kv_slot_state"
        i = slot.index if isinstance(slot, Slot) else self._slot_index(slot, call)
        with self._handle.use(call) as p:
            return SlotState(check(_lib.lib().kvmm_kv_slot_state(p, i), call))

    def trim(self, keep_bytes: int = 0) -> None:
        """Releases memory freed slots keep for reuse, down to ``keep_bytes``."""
        if keep_bytes < 0:
            raise invalid("kvmm_kv_trim", f"keep_bytes {keep_bytes}: must be >= 0")
        with self._handle.use("kvmm_kv_trim") as p:
            check(_lib.lib().kvmm_kv_trim(p, keep_bytes), "kvmm_kv_trim")

    def pin(self, slot: SlotLike) -> None:
        """The policy never swaps a pinned slot; pins nest."""
        i = self._slot_index(slot, "kvmm_kv_pin_slot")
        with self._handle.use("kvmm_kv_pin_slot") as p:
            check(_lib.lib().kvmm_kv_pin_slot(p, i), "kvmm_kv_pin_slot", f"slot {i}")

    def unpin(self, slot: SlotLike) -> None:
        """Undoes one pin()."""
        i = self._slot_index(slot, "kvmm_kv_unpin_slot")
        with self._handle.use("kvmm_kv_unpin_slot") as p:
            check(_lib.lib().kvmm_kv_unpin_slot(p, i), "kvmm_kv_unpin_slot", f"slot {i}")

    def set_priority(self, slot: SlotLike, priority: int) -> None:
        """Policy victims: lowest priority first, then least recently stepped."""
        i = self._slot_index(slot, "kvmm_kv_set_priority")
        with self._handle.use("kvmm_kv_set_priority") as p:
            check(_lib.lib().kvmm_kv_set_priority(p, i, priority), "kvmm_kv_set_priority")

    # ------------------------------------------------------------ swaps
    def swap_out(self, slot: SlotLike, tier: TierLike = "host") -> Operation:
        """Starts moving the slot's data to ``tier`` ("host"/DRAM or
        "flash") and releasing its memory; returns the Operation. The slot
        must not be written until swapped in again."""
        call = "kvmm_kv_swap_out"
        t = _enum(_TIERS, Tier, tier, "tier", call)
        with self._lock:
            i = self._slot_index(slot, call)
            op = ctypes.c_void_p()
            with self._handle.use(call) as p:
                check(_lib.lib().kvmm_kv_swap_out(p, i, int(t), ctypes.byref(op)), call,
                      f"slot {i} to {t.name.lower()}")
            return Operation(op.value or 0, self._handle, call)

    def swap_in(self, slot: SlotLike) -> Operation:
        """Starts bringing the slot back; it is active once the Operation succeeds."""
        call = "kvmm_kv_swap_in"
        with self._lock:
            i = self._slot_index(slot, call)
            op = ctypes.c_void_p()
            with self._handle.use(call) as p:
                check(_lib.lib().kvmm_kv_swap_in(p, i, ctypes.byref(op)), call, f"slot {i}")
        return Operation(op.value or 0, self._handle, call,
                         on_done=lambda _r: self._deliver_evictions())

    def wait_layer(self, slot: SlotLike, layer: int, stream: Optional[int] = None) -> None:
        """While ``slot`` swaps in, waits until ``layer``'s K and V are in
        place (a CUDA cache: ``stream`` waits instead, when given)."""
        call = "kvmm_kv_swap_in_wait_layer"
        i = self._slot_index(slot, call)
        self._layer(layer, call)
        with self._handle.use(call) as p:
            check(_lib.lib().kvmm_kv_swap_in_wait_layer(p, i, layer, stream), call)

    def set_stream(self, stream: Optional[int]) -> None:
        """CUDA caches: the engine's stream (an int cudaStream_t, e.g.
        torch.cuda.current_stream().cuda_stream; None: the legacy one)."""
        with self._handle.use("kvmm_kv_set_stream") as p:
            check(_lib.lib().kvmm_kv_set_stream(p, stream), "kvmm_kv_set_stream")

    def stats(self) -> KVStats:
        """Memory per tier, waste and reuse counters (kvmm_kv_stats())."""
        st = _lib.KVStats()
        with self._handle.use("kvmm_kv_stats") as p:
            check(_lib.lib().kvmm_kv_stats(p, ctypes.byref(st)), "kvmm_kv_stats")
        return _stats_from(KVStats, st)

    def evicted(self) -> List[Tuple[int, Tier]]:
        """(slot, tier) of slots the policy swapped out since the last call
        (when no on_evict callback was given)."""
        with self._evict_lock:
            ev, self._evicted = self._evicted, []
        return ev


__all__ = ["KVCache", "KVStats", "Kind", "Layout", "Slot", "SlotState", "Strides", "Tier"]
