#!/usr/bin/python3
"""Suite preload-engines: unmodified engines under libkvmm-preload.so.

llama.cpp (built from node-llama-cpp's bundle by scripts/llama-build.sh,
cached) serves a random-weight GGUF (tools/llama/make-model.py); PyTorch is
Debian's python3-torch. Every test compares the engine under the shim with
the same engine without it, and measures memory from outside: the shim's
registry file and /proc/PID/status.

    engines.py --so LIB --top DIR [--only NAME]
Ends with "preload-engines: N passed, N failed, N skipped".
"""
import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ap = argparse.ArgumentParser()
ap.add_argument("--so", required=True)
ap.add_argument("--top", required=True)
ap.add_argument("--only")
args = ap.parse_args()

MiB = 1 << 20
KV_PER_TOKEN = 8 * 2 * 4 * 64 * 2  # layers x K,V x KV heads x head_dim x f16
PROMPTS = [
    "The quick brown fox jumps over the lazy dog because",
    "Once upon a time in a small village by the sea there lived",
    "In 1969 the first humans walked on the moon and then",
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return",
]
results = {"passed": 0, "failed": 0, "skipped": 0}
skips = []


class Skip(Exception):
    pass


def log(msg):
    print(msg, flush=True)


def flash_dir():
    d = os.environ.get("KVMM_FLASH_DIR") or os.environ.get("TMPDIR") or "/var/tmp"
    return d


def flash_unusable():
    d = flash_dir()
    try:
        st = os.statvfs(d)
    except OSError as e:
        return f"flash directory {d}: {e.strerror}"
    with open("/proc/mounts") as f:
        best = ("", "")
        for line in f:
            dev, mnt, fs = line.split()[:3]
            if d.startswith(mnt) and len(mnt) > len(best[0]):
                best = (mnt, fs)
    if best[1] in ("tmpfs", "ramfs"):
        return f"flash directory {d} is on {best[1]} (set KVMM_FLASH_DIR to a disk directory)"
    del st
    return None


_llama = None


def llama():
    """(bin dir, model path), building and writing them on first use (cached)."""
    global _llama
    if _llama:
        return _llama
    try:
        out = subprocess.run([os.path.join(args.top, "scripts/llama-build.sh")], check=True,
                             capture_output=True, text=True, timeout=3000)
    except FileNotFoundError as e:
        raise Skip(f"scripts/llama-build.sh: {e}")
    except subprocess.CalledProcessError as e:
        raise Skip("llama.cpp could not be built (npm or cmake missing?): "
                   + (e.stderr.strip().splitlines() or ["?"])[-1])
    bld = out.stdout.strip().splitlines()[-1]
    cache = os.environ.get("KVMM_CACHE", os.path.expanduser("~/.cache/kvmm"))
    model = os.path.join(cache, "test-llama.gguf")
    if not os.path.exists(model):
        src = os.path.join(os.path.dirname(bld), "src")
        subprocess.run(["/usr/bin/python3", os.path.join(args.top, "tools/llama/make-model.py"),
                        src, model], check=True, capture_output=True, timeout=600)
    _llama = (os.path.join(bld, "bin"), model)
    return _llama


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Server:
    def __init__(self, ctx, rules=None, extra_env=None, np_=4):
        bindir, model = llama()
        self.port = free_port()
        self.regdir = tempfile.mkdtemp(prefix="kvmm-reg-")
        env = dict(os.environ)
        env.pop("LD_PRELOAD", None)
        self.shim = rules is not None
        if self.shim:
            env.update({"LD_PRELOAD": args.so, "KVMM_PRELOAD_RULES": rules,
                        "KVMM_PRELOAD_REGISTRY": self.regdir, "KVMM_PRELOAD_SIGNAL": "USR2"})
        env.update(extra_env or {})
        self.t0 = time.time()
        self.log = tempfile.TemporaryFile()
        self.p = subprocess.Popen(
            [os.path.join(bindir, "llama-server"), "-m", model, "-c", str(ctx), "-np", str(np_),
             "-t", "2", "--host", "127.0.0.1", "--port", str(self.port), "--no-warmup"],
            env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 300
        while time.time() < deadline:
            if self.p.poll() is not None:
                raise AssertionError("llama-server exited: " + self.output()[-2000:])
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.2)
        else:
            raise AssertionError("llama-server did not come up")
        self.ready_s = time.time() - self.t0

    def output(self):
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def complete(self, prompt, n=24, cache=False):
        body = json.dumps({"prompt": prompt, "n_predict": n, "temperature": 0, "top_k": 1,
                           "seed": 1, "cache_prompt": cache, "samplers": ["top_k"]}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/completion", data=body,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=600) as r:
            return json.loads(r.read())

    def round(self, cache=False, n=24):
        """All prompts at once, from one thread each; the completions in prompt order."""
        out = [None] * len(PROMPTS)
        errs = []

        def one(i):
            try:
                out[i] = self.complete(PROMPTS[i], n, cache)["content"]
            except Exception as e:  # noqa: BLE001
                errs.append(e)
        ts = [threading.Thread(target=one, args=(i,)) for i in range(len(PROMPTS))]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        if errs:
            raise errs[0]
        return out

    def rss(self):
        with open(f"/proc/{self.p.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def registry(self):
        """The shim's registry file: ('process' fields, [region fields])."""
        try:
            with open(os.path.join(self.regdir, str(self.p.pid))) as f:
                lines = f.read().splitlines()
        except OSError:
            return {}, []
        proc, regions = {}, []
        for line in lines:
            kind, *kv = line.split()
            d = dict(x.split("=", 1) for x in kv)
            if kind == "process":
                proc = d
            else:
                regions.append(d)
        return proc, regions

    def kv_region(self):
        regs = [r for r in self.registry()[1] if r.get("rule") == "kv"]
        assert regs, "no region of rule kv in the registry: " + repr(self.registry())
        return max(regs, key=lambda r: int(r["bytes"]))

    def wait_registry(self, cond, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                r = self.kv_region()
                if cond(r):
                    return r
            except AssertionError:
                pass
            time.sleep(0.25)
        return self.kv_region()

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        try:
            self.p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()


KV_RULE = "name=kv,lib=libggml-base.so,min=16M,chunk=256K"
_baseline = {}


def baseline(ctx):
    """The completions of the server without the shim (two rounds, the second with the
    prompt cache), and its RSS."""
    if ctx not in _baseline:
        s = Server(ctx)
        try:
            r1 = s.round(cache=True)
            r2 = s.round(cache=True)
            _baseline[ctx] = (r1, r2, s.rss(), s.ready_s)
        finally:
            s.stop()
    return _baseline[ctx]


def same(a, b, what):
    if a != b:
        for i, (x, y) in enumerate(zip(a, b)):
            if x != y:
                raise AssertionError(f"{what}: prompt {i}: without the shim {x!r}, with it {y!r}")
    assert any(a), f"{what}: every completion empty"


def test_llama_server_answers_identically_and_holds_only_used_kv():
    """128k context: outputs identical, resident KV what the tokens use."""
    ctx = 131072
    b1, b2, b_rss, _ = baseline(ctx)
    s = Server(ctx, KV_RULE)
    try:
        r1 = s.round(cache=True)
        same(b1, r1, "concurrent greedy completions")
        kv = s.kv_region()
        reserve, resident = int(kv["bytes"]), int(kv["resident_bytes"])
        rss = s.rss()
        # 4 sequences of < 64 tokens, each in its own cell stream of every one of the
        # 16 K/V tensors: 64 places of < 32 KiB, one 256 KiB chunk each
        log(f"  KV reservation {reserve / MiB:.0f} MiB, resident {resident / MiB:.0f} MiB; "
            f"server RSS {rss / MiB:.0f} MiB with the shim, {b_rss / MiB:.0f} MiB without")
        assert reserve >= ctx * KV_PER_TOKEN, f"reservation {reserve} < {ctx * KV_PER_TOKEN}"
        assert resident <= 64 * 256 * 1024, f"resident KV {resident} bytes for < 256 tokens"
        assert rss < b_rss - (reserve - 64 * MiB), f"RSS {rss} vs {b_rss} without the shim"
    finally:
        s.stop()


def test_llama_server_kv_pushed_to_flash_faults_back_identically():
    why = flash_unusable()
    if why:
        raise Skip(why)
    ctx = 131072
    b1, b2, _, _ = baseline(ctx)
    s = Server(ctx, KV_RULE, {"KVMM_FLASH_DIR": flash_dir()})
    try:
        same(b1, s.round(cache=True), "first round")
        # the registry file is rewritten periodically: wait for the round's KV
        before = s.wait_registry(lambda r: int(r["resident_bytes"]) > 0)
        assert int(before["resident_bytes"]) > 0, "no KV resident after the first round"
        s.p.send_signal(signal.SIGUSR2)
        after = s.wait_registry(lambda r: int(r["resident_bytes"]) == 0)
        log(f"  after SIGUSR2: resident {int(after['resident_bytes']) / MiB:.0f} MiB, "
            f"on flash {int(after['flash_bytes']) / MiB:.0f} MiB")
        assert int(after["resident_bytes"]) == 0 and int(after["flash_bytes"]) > 0, \
            f"SIGUSR2 did not push the KV to flash: {after}"
        # the prompt cache reuses the evicted cells: they fault back from flash
        same(b2, s.round(cache=True), "second round, KV read back from flash")
        back = s.wait_registry(lambda r: int(r["resident_bytes"]) > 0)
        assert int(back["resident_bytes"]) > 0, "nothing faulted back from flash"
    finally:
        s.stop()


def test_llama_server_under_a_pool_limit_answers_identically():
    why = flash_unusable()
    if why:
        raise Skip(why)
    ctx = 131072
    b1, _, _, _ = baseline(ctx)
    rules = f"{KV_RULE},limit=8M,flash={flash_dir()}"
    s = Server(ctx, rules)
    try:
        same(b1, s.round(cache=True), "completions with the KV pool limited to 8 MiB")
        kv = s.kv_region()
        proc = s.registry()[0]
        log(f"  resident peak {int(proc['resident_peak_bytes']) / MiB:.0f} MiB of a "
            f"{int(kv['bytes']) / MiB:.0f} MiB reservation; on flash now "
            f"{int(kv['flash_bytes']) / MiB:.0f} MiB")
        assert int(kv["resident_bytes"]) <= 16 * MiB
        assert int(kv["flash_bytes"]) > 0
    finally:
        s.stop()


TORCH_PROG = r"""
import hashlib, torch
def rss():
    return int(open('/proc/self/status').read().split('VmRSS:')[1].split()[0]) * 1024
g = torch.Generator().manual_seed(7)
r0 = rss()
big = torch.empty(384 * 1024 * 1024 // 4)          # 384 MiB, a tenth of it used
used = big[: len(big) // 10 // 1024 * 1024].view(-1, 1024)
used.copy_(torch.randn(used.shape, generator=g))
w = torch.randn(1024, 512, generator=g)
y = torch.relu(used @ w).sum(dim=0)
z = torch.nn.functional.softmax(y, dim=0)
print("digest", hashlib.sha256(z.numpy().tobytes() + y.numpy().tobytes()).hexdigest())
print("rss_growth", rss() - r0)
"""


def test_torch_program_runs_unmodified_and_untouched_bytes_stay_unallocated():
    try:
        subprocess.run(["/usr/bin/python3", "-c", "import torch"], check=True,
                       capture_output=True, timeout=120)
    except (subprocess.CalledProcessError, FileNotFoundError):
        raise Skip("python3-torch is not installed (apt-get install python3-torch)")

    stats = tempfile.NamedTemporaryFile(prefix="kvmm-torch-stats-")

    def run(shim):
        env = dict(os.environ)
        env.pop("LD_PRELOAD", None)
        if shim:
            env.update({"LD_PRELOAD": args.so, "KVMM_PRELOAD_RULES": "name=torch,min=64M",
                        "KVMM_PRELOAD_STATS": stats.name})
        out = subprocess.run(["/usr/bin/python3", "-c", TORCH_PROG], env=env, check=True,
                             capture_output=True, text=True, timeout=600).stdout
        d = dict(line.split(" ", 1) for line in out.splitlines())
        return d["digest"], int(d["rss_growth"])
    d0, g0 = run(False)
    d1, g1 = run(True)
    st = dict(line.strip().split(": ", 1) for line in open(stats.name) if ": " in line)
    log(f"  RSS growth {g0 / MiB:.0f} MiB without the shim, {g1 / MiB:.0f} MiB with it; "
        f"{st.get('routed_allocations')} tensors routed, {int(st.get('routed_bytes', 0)) / MiB:.0f} MiB")
    assert d0 == d1, f"results differ: {d0} without, {d1} with"
    assert int(st["routed_allocations"]) >= 1, "the 384 MiB tensor was not routed"
    # 38 MiB of the 384 MiB tensor written, plus randn's temporary
    assert g1 < 120 * MiB, f"with the shim {g1} bytes for 38 MiB used"


TESTS = [
    test_llama_server_answers_identically_and_holds_only_used_kv,
    test_llama_server_kv_pushed_to_flash_faults_back_identically,
    test_llama_server_under_a_pool_limit_answers_identically,
    test_torch_program_runs_unmodified_and_untouched_bytes_stay_unallocated,
]

for t in TESTS:
    name = t.__name__
    if args.only and args.only not in name:
        continue
    log(f"[ RUN      ] {name}")
    t0 = time.time()
    try:
        t()
        results["passed"] += 1
        log(f"[       OK ] {name} ({time.time() - t0:.0f} s)")
    except Skip as e:
        results["skipped"] += 1
        skips.append(f"engines.py: {name}: {e}")
        log(f"[  SKIPPED ] {name}: {e}")
    except Exception as e:  # noqa: BLE001
        results["failed"] += 1
        log(f"[  FAILED  ] {name}: {type(e).__name__}: {e}")
if skips:
    log("preload-engines: skipped tests and why:")
    for s in skips:
        log(f"  SKIP  {s}")
log(f"preload-engines: {results['passed']} passed, {results['failed']} failed, "
    f"{results['skipped']} skipped")
sys.exit(1 if results["failed"] else 0)
