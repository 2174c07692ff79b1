# SPDX-License-Identifier: MIT
"""Observing memory from outside libkvmm: /proc/self/maps and smaps."""
from __future__ import annotations

from typing import List, Tuple


def _vmas() -> List[Tuple[int, int, int]]:
    """(start, end, rss_bytes) of every mapping of this process."""
    out = []
    cur = None
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split(None, 1)[0]
            if "-" in head and not head.endswith(":"):
                a, b = head.split("-")
                cur = [int(a, 16), int(b, 16), 0]
                out.append(cur)
            elif head == "Rss:" and cur is not None:
                cur[2] = int(line.split()[1]) * 1024
    return [tuple(v) for v in out]  # type: ignore[misc]


def rss(base: int, length: int) -> int:
    """Resident bytes of the mappings inside [base, base + length); a
    mapping that only partly overlaps counts in proportion."""
    total = 0
    end = base + length
    for a, b, r in _vmas():
        lo, hi = max(a, base), min(b, end)
        if lo < hi and r:
            total += r * (hi - lo) // (b - a)
    return total


def mapped(addr: int) -> bool:
    """Whether @addr lies in any mapping of this process."""
    return any(a <= addr < b for a, b, _ in _vmas())
