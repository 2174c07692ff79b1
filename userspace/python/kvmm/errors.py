# SPDX-License-Identifier: MIT
"""Exceptions: every libkvmm error is an OSError subclass with .errno set to
the library's (positive) errno and .strerror to kvmm_strerror()'s message.

Python-side argument checks raise the same classes, before anything is
passed to the library, so a rejected call changes nothing.
"""
from __future__ import annotations

import errno as _errno
from typing import Dict, Type


class KvmmError(OSError):
    """A libkvmm call failed. ``errno`` is the errno, ``strerror`` the
    library's message, ``call`` the C function (or Python method) that
    failed."""

    call: str

    def __init__(self, err: int, message: str, call: str = "") -> None:
        super().__init__(err, message)
        self.call = call

    def __str__(self) -> str:
        name = _errno.errorcode.get(self.errno or 0, str(self.errno))
        where = f"{self.call}: " if self.call else ""
        return f"{where}{self.strerror} [{name}]"


class InvalidArgumentError(KvmmError, ValueError):
    """EINVAL: a bad slot, layer, size, dtype, shape or state."""


class SlotBusyError(KvmmError):
    """EAGAIN: the slot is swapped out, swapping or pinned; swap it in or wait."""


class NoFreeSlotError(KvmmError):
    """ENOSPC: no free slot (alloc_slot), or the flash store is full."""


class OutOfMemoryError(KvmmError, MemoryError):
    """ENOMEM: over the cache's budget or out of device memory."""


class BusyError(KvmmError):
    """EBUSY: the object is in use (pinned chunks, live regions)."""


class DeviceUnavailableError(KvmmError):
    """ENODEV: no kvmm.ko, no CUDA driver or device."""


class NotSupportedError(KvmmError):
    """EOPNOTSUPP: the flash directory or device cannot do this."""


class KvmmIOError(KvmmError):
    """EIO: a flash read or write failed, or a checksum did not match."""


class ClosedError(KvmmError, ValueError):
    """EBADF: the object was closed."""


class StaleSlotError(KvmmError, ValueError):
    """ESTALE: the slot handle's sequence was freed; the slot may now hold
    another request's tokens."""


_BY_ERRNO: Dict[int, Type[KvmmError]] = {
    _errno.EINVAL: InvalidArgumentError,
    _errno.EAGAIN: SlotBusyError,
    _errno.ENOSPC: NoFreeSlotError,
    _errno.ENOMEM: OutOfMemoryError,
    _errno.EBUSY: BusyError,
    _errno.ENODEV: DeviceUnavailableError,
    _errno.EOPNOTSUPP: NotSupportedError,
    _errno.EIO: KvmmIOError,
    _errno.EBADF: ClosedError,
    _errno.ESTALE: StaleSlotError,
}


def error_class(err: int) -> Type[KvmmError]:
    """The exception class for a positive errno."""
    return _BY_ERRNO.get(err, KvmmError)


def from_errno(err: int, call: str, detail: str = "") -> KvmmError:
    """The exception for libkvmm's negative (or positive) errno @err."""
    from . import _lib

    err = abs(err)
    msg = _lib.lib().kvmm_strerror(-err)
    text = msg.decode() if msg else _errno.errorcode.get(err, str(err))
    if detail:
        text = f"{text} ({detail})"
    return error_class(err)(err, text, call)


def check(ret: int, call: str, detail: str = "") -> int:
    """Raises for a negative libkvmm return value, else returns it."""
    if ret < 0:
        raise from_errno(ret, call, detail)
    return ret


def invalid(call: str, message: str) -> InvalidArgumentError:
    """A Python-side argument check that failed (nothing was changed)."""
    return InvalidArgumentError(_errno.EINVAL, message, call)
