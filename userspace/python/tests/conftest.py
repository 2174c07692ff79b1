# SPDX-License-Identifier: MIT
"""Shared fixtures, and the suite's closing lines for make check: every
skipped test as "SKIP FILE: TEST: why", then "python: N passed, N failed,
N skipped" (errors count as failed)."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Iterator

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the package in this tree
sys.path.insert(0, str(HERE.parent / "examples"))
TOP = HERE.parents[2]
os.environ.setdefault("KVMM_LIBRARY", str(TOP / "build" / "lib" / "libkvmm.so.0"))

import kvmm  # noqa: E402


def flash_dir() -> str:
    """Where flash stores go: $KVMM_FLASH_DIR, else $TMPDIR, else /var/tmp."""
    return os.environ.get("KVMM_FLASH_DIR") or os.environ.get("TMPDIR") or "/var/tmp"


@pytest.fixture
def ctx() -> Iterator[kvmm.Context]:
    """A user-mode context (kvmm_open picks kernel mode only with kvmm.ko)."""
    c = kvmm.Context(mode=os.environ.get("KVMM_MODE", "auto"), flash_dir=flash_dir(),
                     flash_bytes=256 << 20)
    yield c
    c.close()


def flash_works(c: kvmm.Context) -> bool:
    """Whether this context can evict to flash here (O_DIRECT, not tmpfs)."""
    with c.region(1 << 16, chunk_bytes=1 << 16) as r:
        r.ensure()
        try:
            r.evict()
        except (kvmm.NotSupportedError, kvmm.DeviceUnavailableError):
            return False
        r.discard()
    return True


@pytest.fixture
def flash_ctx(ctx: kvmm.Context) -> kvmm.Context:
    if not flash_works(ctx):
        pytest.skip(f"flash directory {flash_dir()} takes no O_DIRECT or is in memory")
    return ctx


_counts = {"passed": 0, "failed": 0, "skipped": 0}
_skips: list = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" or (report.when == "setup" and not report.passed):
        if report.passed:
            _counts["passed"] += 1
        elif report.skipped:
            _counts["skipped"] += 1
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(
                report.longrepr)
            reason = reason.removeprefix("Skipped: ")
            f, _, name = report.nodeid.partition("::")
            _skips.append(f"SKIP {Path(f).name}: {name}: {reason}")
        else:
            _counts["failed"] += 1
    elif report.when == "teardown" and report.failed:
        _counts["failed"] += 1


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.failed:
        _counts["failed"] += 1


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for line in _skips:
        terminalreporter.write_line(line)


def pytest_unconfigure(config: pytest.Config) -> None:
    # After pytest's own summary, so that this is the suite's last line.
    if config.option.collectonly:
        return
    print(f"python: {_counts['passed']} passed, {_counts['failed']} failed, "
          f"{_counts['skipped']} skipped", flush=True)
