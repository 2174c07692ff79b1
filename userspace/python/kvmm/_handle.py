# SPDX-License-Identifier: MIT
"""Ownership of libkvmm objects from Python.

A ``_Handle`` owns one C object (context, region or KV cache). Public
objects, views and calls in progress hold it; the C object is destroyed
only when it has been closed (explicitly, by a context manager, or when
the public object is garbage collected) *and* nothing still uses it. So a
numpy array or torch tensor over kvmm memory keeps that memory mapped for
as long as it exists: no view can dangle. A context is closed after every
region and cache made from it.
"""
from __future__ import annotations

import errno
import threading
from contextlib import contextmanager
from typing import Callable, Iterator, Optional

from .errors import ClosedError, check


class _Handle:
    """One C object, destroyed by ``destroy(ptr)`` once closed and unused."""

    def __init__(
        self,
        ptr: int,
        destroy: Callable[[int], int],
        call: str,
        parent: Optional["_Handle"] = None,
    ) -> None:
        self.ptr: Optional[int] = ptr
        self._destroy = destroy
        self._call = call
        self.parent = parent
        self.closed = False
        self.users = 0  # views, operations and calls in progress
        self.lock = threading.RLock()
        if parent is not None:
            parent.acquire()

    def acquire(self) -> None:
        with self.lock:
            if self.ptr is None:
                raise ClosedError(errno.EBADF, "already destroyed", self._call)
            self.users += 1

    def release(self) -> None:
        with self.lock:
            self.users -= 1
            if self.closed and self.users == 0:
                self._free(raise_errors=False)

    @contextmanager
    def use(self, call: str) -> Iterator[int]:
        """The pointer, for one call; ClosedError once closed."""
        with self.lock:
            if self.closed or self.ptr is None:
                raise ClosedError(errno.EBADF, "the object is closed", call)
            self.users += 1
            ptr = self.ptr
        try:
            yield ptr
        finally:
            self.release()

    def close(self, raise_errors: bool = True) -> bool:
        """Marks closed; frees now when unused. True when freed now."""
        with self.lock:
            self.closed = True
            if self.users == 0 and self.ptr is not None:
                self._free(raise_errors)
                return True
            return self.ptr is None

    def _free(self, raise_errors: bool) -> None:
        ptr, self.ptr = self.ptr, None
        if ptr is None:
            return
        ret = self._destroy(ptr)
        if self.parent is not None:
            self.parent.release()
        if raise_errors:
            check(ret, self._call)


class _ViewOwner:
    """What a numpy/torch view holds on to: a handle, for the view's life."""

    __slots__ = ("handle", "__array_interface__", "__cuda_array_interface__", "__weakref__")

    def __init__(self, handle: _Handle, interface: dict, cuda: bool = False) -> None:
        handle.acquire()
        self.handle = handle
        if cuda:
            self.__cuda_array_interface__ = interface
        else:
            self.__array_interface__ = interface

    def __del__(self) -> None:
        handle = getattr(self, "handle", None)
        if handle is not None:
            self.handle = None
            handle.release()
