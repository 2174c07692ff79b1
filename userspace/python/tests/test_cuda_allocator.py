# SPDX-License-Identifier: MIT
"""libkvmm's PyTorch allocator pair, called through ctypes with the
signatures torch 2.x uses, against the CUDA driver stand-in
(tests/cuda/mock_cuda.c: device memory is host memory the driver maps and
protects, work runs late and in stream order, unmapping under queued work
is counted as a hazard). Debian's torch 1.13 has no pluggable allocator, so
these tests are torch's side of the contract, played by hand."""
from __future__ import annotations

import ctypes
import errno
import os
import threading
import time

import pytest
import torch

import kvmm
from conftest import flash_dir, flash_works

MOCK = os.environ.get("KVMM_TEST_MOCK_CUDA", "")
pytestmark = pytest.mark.skipif(
    not MOCK or not os.path.exists(MOCK),
    reason="no CUDA driver stand-in (make builds tests/cuda's libcuda-mock.so.1 where cuda.h is)")

GRAN = 2 << 20  # the stand-in's granularity


class MockStats(ctypes.Structure):
    _fields_ = [(n, ctypes.c_uint64) for n in (
        "creates", "releases", "live", "maps", "unmaps", "set_access", "rule_violations",
        "event_syncs", "stream_syncs", "ops_queued", "ops_run", "pending", "max_pending",
        "faults", "hazards", "reordered", "events_live", "streams_live", "spin_waits",
        "capture_breaks", "mem_allocs", "mem_frees", "released_mapped")]


@pytest.fixture(scope="module")
def mock():
    os.environ["KVMM_CUDA_LIBRARY"] = MOCK  # read when libkvmm first loads the driver
    m = ctypes.CDLL(MOCK)
    m.mock_cuda_stream.restype = ctypes.c_void_p
    m.mock_cuda_stream.argtypes = [ctypes.c_uint]
    for f in (m.mock_cuda_kernel_write, m.mock_cuda_kernel_read):
        f.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
    m.mock_cuda_sync.argtypes = [ctypes.c_void_p]
    m.mock_cuda_hold.argtypes = [ctypes.c_void_p, ctypes.c_int]
    m.mock_cuda_fail.argtypes = [ctypes.c_char_p, ctypes.c_uint64]
    return m


@pytest.fixture
def lib(mock):
    lib = kvmm._lib.lib()
    mock.mock_cuda_reset()
    yield lib
    st = mstats(mock)
    assert st.rule_violations == 0 and st.faults == 0 and st.hazards == 0, st_dict(st)


def mstats(mock) -> MockStats:
    st = MockStats()
    mock.mock_cuda_stats(ctypes.byref(st))
    return st


def st_dict(st):
    return {n: getattr(st, n) for n, _ in st._fields_}


def write(mock, stream, ptr, data: bytes):
    """A "kernel" on @stream that writes @data at device address @ptr."""
    buf = ctypes.create_string_buffer(data, len(data))
    assert mock.mock_cuda_kernel_write(stream, ptr, buf, len(data)) == 0
    assert mock.mock_cuda_sync(stream) == 0


def read(mock, stream, ptr, n) -> bytes:
    buf = ctypes.create_string_buffer(n)
    assert mock.mock_cuda_kernel_read(stream, buf, ptr, n) == 0
    assert mock.mock_cuda_sync(stream) == 0
    return buf.raw


def pattern(n, seed):
    g = torch.Generator().manual_seed(seed)
    return bytes(torch.randint(0, 256, (n,), generator=g, dtype=torch.uint8).tolist())


def test_the_pair_has_torchs_signatures(lib):
    # void *alloc(ssize_t size, int device, cudaStream_t stream)
    # void free(void *ptr, ssize_t size, int device, cudaStream_t stream)
    assert lib.kvmm_torch_malloc.argtypes == [ctypes.c_ssize_t, ctypes.c_int, ctypes.c_void_p]
    assert lib.kvmm_torch_free.argtypes == [ctypes.c_void_p, ctypes.c_ssize_t, ctypes.c_int,
                                            ctypes.c_void_p]
    fn = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_ssize_t, ctypes.c_int, ctypes.c_void_p)
    assert ctypes.cast(lib.kvmm_torch_malloc, fn)  # callable as a plain C function pointer


def test_malloc_gives_usable_device_memory_and_free_returns_it(lib, mock):
    live = mstats(mock).live
    with kvmm.Context() as ctx, kvmm.CudaAllocator(ctx, "t") as a, a.use():
        s = mock.mock_cuda_stream(0)
        p = lib.kvmm_torch_malloc(3 * GRAN + 5, 0, s)
        assert p and p % GRAN == 0
        st = a.stats()
        assert (st.allocations, st.bytes, st.mapped_bytes) == (1, 4 * GRAN, 4 * GRAN)
        assert mstats(mock).live == live + 1
        data = pattern(3 * GRAN + 5, 1)
        write(mock, s, p, data)
        assert read(mock, s, p, len(data)) == data
        lib.kvmm_torch_free(p, 3 * GRAN + 5, 0, s)
        st = a.stats()
        assert (st.allocations, st.bytes, st.mapped_bytes, st.frees) == (0, 0, 0, 1)
        assert mstats(mock).live == live


def test_free_waits_for_work_queued_on_the_stream(lib, mock):
    with kvmm.CudaAllocator(None, "t") as a, a.use():
        s = mock.mock_cuda_stream(0)
        p = lib.kvmm_torch_malloc(GRAN, 0, s)
        mock.mock_cuda_hold(s, 1)  # a long kernel, still running
        buf = ctypes.create_string_buffer(b"x" * 4096)
        assert mock.mock_cuda_kernel_write(s, p, buf, 4096) == 0  # queued behind it
        t = threading.Thread(target=lib.kvmm_torch_free, args=(p, GRAN, 0, s))
        t.start()
        time.sleep(0.2)
        assert t.is_alive()  # free waits for the stream...
        assert a.stats().mapped_bytes == GRAN
        mock.mock_cuda_hold(s, 0)
        t.join(10)
        assert not t.is_alive() and a.stats().allocations == 0
        assert mstats(mock).hazards == 0  # ...so nothing was unmapped under the kernel


@pytest.mark.parametrize("mode", ["host", "flash", "discard"])
def test_sleep_releases_gpu_memory_and_wake_restores_it_at_the_same_address(lib, mock, ctx,
                                                                            mode):
    if mode == "flash" and not flash_works(ctx):
        pytest.skip(f"flash directory {flash_dir()} takes no O_DIRECT or is in memory")
    live = mstats(mock).live
    with kvmm.CudaAllocator(ctx, "weights") as a:
        s = mock.mock_cuda_stream(0)
        with a.use():
            ptrs = [lib.kvmm_torch_malloc(n, 0, s) for n in (GRAN, 5 * GRAN - 100)]
        datas = [pattern(GRAN, 2), pattern(5 * GRAN - 100, 3)]
        for p, d in zip(ptrs, datas):
            write(mock, s, p, d)
        a.sleep(mode)
        st = a.stats()
        assert st.asleep == 1 and st.mapped_bytes == 0 and st.bytes == 6 * GRAN
        assert st.saved_bytes == (0 if mode == "discard" else 6 * GRAN)
        assert mstats(mock).live == live  # every handle went back to the driver
        with a.use():
            assert not lib.kvmm_torch_malloc(GRAN, 0, s)  # asleep: refused
        assert a.stats().last_error == -errno.EAGAIN
        with pytest.raises(OSError) as e:
            a.sleep("host")
        assert e.value.errno == errno.EALREADY
        a.wake()
        st = a.stats()
        assert st.asleep == 0 and st.mapped_bytes == 6 * GRAN and st.saved_bytes == 0
        for p, d in zip(ptrs, datas):
            got = read(mock, s, p, len(d))
            assert got == (d if mode != "discard" else bytes(len(d)))
        for p in ptrs:
            lib.kvmm_torch_free(p, 0, 0, s)
        assert mstats(mock).live == live


def test_two_allocators_in_one_process_sleep_apart(lib, mock, ctx):
    with kvmm.CudaAllocator(ctx, "kv") as kv_alloc, kvmm.CudaAllocator(ctx, "w") as w_alloc:
        s = mock.mock_cuda_stream(0)
        with kv_alloc.use():
            p_kv = lib.kvmm_torch_malloc(GRAN, 0, s)
            with w_alloc.use():  # nested: the inner one, then back
                p_w = lib.kvmm_torch_malloc(2 * GRAN, 0, s)
            p_kv2 = lib.kvmm_torch_malloc(GRAN, 0, s)
        assert kv_alloc.stats().allocations == 2 and w_alloc.stats().allocations == 1
        d = pattern(2 * GRAN, 4)
        write(mock, s, p_w, d)
        kv_alloc.sleep("discard")
        assert w_alloc.stats().mapped_bytes == 2 * GRAN
        assert read(mock, s, p_w, len(d)) == d  # the other allocator's memory is untouched
        # frees find the owner from the pointer, on any thread
        threads = [threading.Thread(target=lib.kvmm_torch_free, args=(p, 0, 0, s))
                   for p in (p_kv, p_w, p_kv2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert kv_alloc.stats().allocations == 0 and w_alloc.stats().allocations == 0
        kv_alloc.wake()


def test_threads_allocate_and_free_at_once(lib, mock):
    live = mstats(mock).live
    allocs = [kvmm.CudaAllocator(None, f"t{i}") for i in range(3)]
    errors = []

    def worker(i):
        try:
            s = mock.mock_cuda_stream(0)
            a = allocs[i % 3]
            with a.use():
                for n in range(40):
                    p = lib.kvmm_torch_malloc(GRAN * (1 + n % 3), 0, s)
                    assert p, a.stats()
                    write(mock, s, p, bytes([i]) * 64)
                    assert read(mock, s, p, 64) == bytes([i]) * 64
                    lib.kvmm_torch_free(p, 0, 0, s)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sum(a.stats().mallocs for a in allocs) == 240
    assert all(a.stats().allocations == 0 for a in allocs)
    assert mstats(mock).live == live
    for a in allocs:
        a.close()


def test_bad_calls_fail_cleanly(lib, mock, ctx):
    live = mstats(mock).live
    with kvmm.CudaAllocator(ctx, "t") as a:
        with a.use():
            assert not lib.kvmm_torch_malloc(0, 0, None)
            assert a.stats().last_error == -errno.EINVAL
            assert not lib.kvmm_torch_malloc(GRAN, 7, None)  # the stand-in has one device
            assert a.stats().last_error == -errno.ENODEV
            assert not lib.kvmm_torch_malloc(GRAN, -1, None)
            mock.mock_cuda_fail(b"cuMemMap", 1)
            assert not lib.kvmm_torch_malloc(GRAN, 0, None)  # rolled back
            p = lib.kvmm_torch_malloc(GRAN, 0, None)
        assert a.stats().refusals == 4 and a.stats().allocations == 1
        lib.kvmm_torch_free(p + 4096, 0, 0, None)  # not an allocation: ignored
        lib.kvmm_torch_free(None, 0, 0, None)
        assert a.stats().allocations == 1
        with pytest.raises(kvmm.BusyError):
            a.close()  # a live allocation
        with pytest.raises(kvmm.InvalidArgumentError):
            a.sleep("tape")
        lib.kvmm_torch_free(p, 0, 0, None)
    assert mstats(mock).live == live
    with kvmm.CudaAllocator(None, "no-ctx") as b:
        with pytest.raises(kvmm.InvalidArgumentError):
            b.sleep("host")  # keeping contents needs a context's regions
        b.sleep("discard")
        b.wake()


def test_a_failed_wake_can_be_retried(lib, mock, ctx):
    with kvmm.CudaAllocator(ctx, "t") as a:
        s = mock.mock_cuda_stream(0)
        with a.use():
            ps = [lib.kvmm_torch_malloc(GRAN, 0, s) for _ in range(3)]
        ds = [pattern(GRAN, 10 + i) for i in range(3)]
        for p, d in zip(ps, ds):
            write(mock, s, p, d)
        a.sleep("host")
        mock.mock_cuda_fail(b"cuMemCreate", 2)  # the second block's memory
        with pytest.raises(kvmm.KvmmError):
            a.wake()
        st = a.stats()
        assert st.asleep == 1 and st.mapped_bytes == GRAN and st.saved_bytes == 2 * GRAN
        a.wake()
        assert [read(mock, s, p, GRAN) for p in ps] == ds
        for p in ps:
            lib.kvmm_torch_free(p, 0, 0, s)


def test_use_allocator_needs_torch_2():
    import kvmm.torch as kt

    why = kt.supported()
    if why is None:
        pytest.skip("torch has a pluggable allocator here: the GPU tests cover it")
    with pytest.raises(kvmm.NotSupportedError, match="torch"):
        with kt.use_allocator("kv"):
            pass
