/* SPDX-License-Identifier: MIT */
/*
 * kvmm-bench-cuda: the GPU side of libkvmm on a real device.
 *   vmm     per-call latency of cuMemCreate, cuMemMap, cuMemSetAccess (one
 *           chunk and batched), cuMemUnmap, cuMemRelease
 *   decode  share of a decode loop spent blocked in step(), background
 *           mapper on vs off (a fixed host delay stands for the GPU step)
 *   swap    slot swap GPU -> DRAM -> GPU bandwidth vs plain pinned copies
 *           of the same bytes, in the same run; then GPU -> flash -> GPU
 *           (the flash store in $KVMM_FLASH_DIR, 1 GiB unless
 *           KVMM_FLASH_BYTES says; a flash failure is reported, not fatal)
 * Usage: kvmm-bench-cuda [--json] [--device N] [--quick] [vmm|decode|swap ...]
 * Without a GPU it says why and exits 77.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <kvmm/kvmm.h>

#include "cuda_drv.h"

#ifdef KVMM_HAVE_CUDA_H
struct opts {
	bool json, quick;
	int device;
};

static const struct kvmm_cuda_drv *d;

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

struct lat {
	const char *name;
	double avg, p50, p99; /* us */
	int n;
};

static struct lat lat_of(const char *name, double *v, int n)
{
	struct lat l = {.name = name, .n = n};
	double sum = 0;

	for (int i = 0; i < n; i++)
		sum += v[i];
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	l.avg = sum / n;
	l.p50 = v[n / 2];
	l.p99 = v[(int)(n * 0.99) < n ? (int)(n * 0.99) : n - 1];
	return l;
}

#define CK(call)                                                                                   \
	do {                                                                                       \
		CUresult r_ = (call);                                                              \
		if (r_ != CUDA_SUCCESS) {                                                          \
			fprintf(stderr, "%s: CUresult %d\n", #call, (int)r_);                      \
			return -EIO;                                                               \
		}                                                                                  \
	} while (0)

static int bench_vmm(const struct opts *o, CUdevice dev)
{
	int n = o->quick ? 16 : 128;
	CUmemAllocationProp prop = {0};
	CUmemAccessDesc acc = {0};
	CUmemGenericAllocationHandle *h = calloc((size_t)n, sizeof(*h));
	double *t = calloc((size_t)n, sizeof(*t));
	struct lat l[6];
	size_t gran;
	CUdeviceptr va;
	double t0;

	prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
	prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
	prop.location.id = dev;
	acc.location = prop.location;
	acc.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
	CK(d->cuMemGetAllocationGranularity(&gran, &prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM));
	CK(d->cuMemAddressReserve(&va, n * gran, gran, 0, 0));
	for (int i = 0; i < n; i++) {
		t0 = now_us();
		CK(d->cuMemCreate(&h[i], gran, &prop, 0));
		t[i] = now_us() - t0;
	}
	l[0] = lat_of("cuMemCreate", t, n);
	for (int i = 0; i < n; i++) {
		t0 = now_us();
		CK(d->cuMemMap(va + i * gran, gran, 0, h[i], 0));
		t[i] = now_us() - t0;
	}
	l[1] = lat_of("cuMemMap", t, n);
	for (int i = 0; i < n; i++) {
		t0 = now_us();
		CK(d->cuMemSetAccess(va + i * gran, gran, &acc, 1));
		t[i] = now_us() - t0;
	}
	l[2] = lat_of("cuMemSetAccess (1 chunk)", t, n);
	for (int i = 0; i < 8; i++) {
		t0 = now_us();
		CK(d->cuMemSetAccess(va, n * gran, &acc, 1));
		t[i] = (now_us() - t0) / n;
	}
	l[3] = lat_of("cuMemSetAccess (batched, per chunk)", t, 8);
	for (int i = 0; i < n; i++) {
		t0 = now_us();
		CK(d->cuMemUnmap(va + i * gran, gran));
		t[i] = now_us() - t0;
	}
	l[4] = lat_of("cuMemUnmap", t, n);
	for (int i = 0; i < n; i++) {
		t0 = now_us();
		CK(d->cuMemRelease(h[i]));
		t[i] = now_us() - t0;
	}
	l[5] = lat_of("cuMemRelease", t, n);
	d->cuMemAddressFree(va, n * gran);
	if (o->json) {
		printf("\"vmm\": {\"chunk_bytes\": %zu, \"calls\": [", gran);
		for (int i = 0; i < 6; i++)
			printf(
			    "%s{\"call\": \"%s\", \"n\": %d, \"avg_us\": %.2f, \"p50_us\": %.2f, "
			    "\"p99_us\": %.2f}",
			    i ? ", " : "", l[i].name, l[i].n, l[i].avg, l[i].p50, l[i].p99);
		printf("]}");
	} else {
		printf("VMM call latency, %zu KiB chunks (granularity)\n", gran >> 10);
		printf("  %-36s %8s %10s %10s %10s\n", "call", "calls", "avg us", "p50 us",
		       "p99 us");
		for (int i = 0; i < 6; i++)
			printf("  %-36s %8d %10.2f %10.2f %10.2f\n", l[i].name, l[i].n, l[i].avg,
			       l[i].p50, l[i].p99);
	}
	free(h);
	free(t);
	return 0;
}

/* A Llama-3-8B-shaped cache: 32 layers, 8 KV heads of 128, fp16. */
static struct kvmm_kv_config model_cfg(const struct opts *o, uint32_t layout)
{
	struct kvmm_kv_config c = KVMM_KV_CONFIG_INIT;

	c.layers = 32, c.kv_heads = 8, c.head_dim = 128, c.dtype_bytes = 2;
	c.max_slots = 32, c.max_tokens = 8192, c.layout = layout;
	c.device = KVMM_DEVICE_CUDA, c.device_index = (uint32_t)o->device;
	c.lookahead = 16;
	return c;
}

struct decode_result {
	double loop_ms, blocked_ms;
	uint64_t steps, blocked_steps, ahead_mib;
};

static int decode_run(struct kvmm_ctx *ctx, const struct opts *o, const char *mapper,
		      uint32_t layout, struct decode_result *r)
{
	struct kvmm_kv_config c = model_cfg(o, layout);
	uint32_t batch = 16, iters = o->quick ? 200 : 2000, slots[16], lens[16];
	struct kvmm_kv_cuda_stats st, st0;
	struct kvmm_kv *kv;
	double t0;
	int ret;

	setenv("KVMM_CUDA_MAPPER", mapper, 1);
	ret = kvmm_kv_create(ctx, &c, &kv);
	if (ret)
		return ret;
	for (uint32_t i = 0; i < batch; i++) {
		slots[i] = i;
		lens[i] = 100 + 37 * i; /* staggered, so chunk crossings spread out */
	}
	/* The prompts are mapped first (prefill), outside the measured decode. */
	ret = kvmm_kv_step(kv, batch, slots, lens);
	usleep(100 * 1000);
	kvmm_kv_cuda_stats(kv, &st0);
	t0 = now_us();
	for (uint32_t it = 0; it < iters && !ret; it++) {
		for (uint32_t i = 0; i < batch; i++)
			lens[i]++;
		ret = kvmm_kv_step(kv, batch, slots, lens);
		usleep(1000); /* the GPU decode step the engine would launch */
	}
	r->loop_ms = (now_us() - t0) / 1e3;
	kvmm_kv_cuda_stats(kv, &st);
	r->blocked_ms = (st.step_blocked_ns - st0.step_blocked_ns) / 1e6;
	r->steps = st.steps - st0.steps;
	r->blocked_steps = st.step_blocked - st0.step_blocked;
	r->ahead_mib = (st.ahead_bytes - st0.ahead_bytes) >> 20;
	kvmm_kv_destroy(kv);
	unsetenv("KVMM_CUDA_MAPPER");
	return ret;
}

static int bench_decode(struct kvmm_ctx *ctx, const struct opts *o)
{
	const char *names[2] = {"layer-major", "token-major"};
	struct decode_result r[2][2];
	int ret;

	for (uint32_t lay = 0; lay < 2; lay++)
		for (int m = 0; m < 2; m++) {
			ret = decode_run(ctx, o, m ? "1" : "0", lay, &r[lay][m]);
			if (ret)
				return ret;
		}
	if (o->json)
		printf("\"decode\": [");
	else
		printf("Decode loop, 16 sequences, 1 ms per step stands for the GPU\n"
		       "  %-12s %-7s %8s %10s %12s %10s %14s\n",
		       "layout", "mapper", "steps", "loop ms", "blocked ms", "blocked %",
		       "blocked steps");
	for (uint32_t lay = 0; lay < 2; lay++)
		for (int m = 0; m < 2; m++) {
			struct decode_result *x = &r[lay][m];
			double pct = 100.0 * x->blocked_ms / x->loop_ms;

			if (o->json)
				printf("%s{\"layout\": \"%s\", \"mapper\": %s, \"steps\": %llu, "
				       "\"loop_ms\": %.1f, \"blocked_ms\": %.3f, \"blocked_pct\": "
				       "%.3f, \"blocked_steps\": %llu, \"ahead_mib\": %llu}",
				       lay || m ? ", " : "", names[lay], m ? "true" : "false",
				       (unsigned long long)x->steps, x->loop_ms, x->blocked_ms, pct,
				       (unsigned long long)x->blocked_steps,
				       (unsigned long long)x->ahead_mib);
			else
				printf("  %-12s %-7s %8llu %10.1f %12.3f %9.3f%% %14llu\n",
				       names[lay], m ? "on" : "off", (unsigned long long)x->steps,
				       x->loop_ms, x->blocked_ms, pct,
				       (unsigned long long)x->blocked_steps);
		}
	if (o->json)
		printf("]");
	return 0;
}

/* Plain pinned copies of @bytes from/to @dev: the bandwidth to compare with. */
static int raw_copy_gbs(CUdeviceptr dev, uint64_t bytes, double *d2h, double *h2d)
{
	CUstream s;
	void *host;
	double t0;

	CK(d->cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
	CK(d->cuMemHostAlloc(&host, bytes, CU_MEMHOSTALLOC_PORTABLE));
	CK(d->cuMemcpyDtoHAsync(host, dev, bytes, s)); /* warm up */
	CK(d->cuStreamSynchronize(s));
	t0 = now_us();
	CK(d->cuMemcpyDtoHAsync(host, dev, bytes, s));
	CK(d->cuStreamSynchronize(s));
	*d2h = bytes / ((now_us() - t0) * 1e3);
	t0 = now_us();
	CK(d->cuMemcpyHtoDAsync(dev, host, bytes, s));
	CK(d->cuStreamSynchronize(s));
	*h2d = bytes / ((now_us() - t0) * 1e3);
	d->cuMemFreeHost(host);
	d->cuStreamDestroy(s);
	return 0;
}

static int bench_swap(struct kvmm_ctx *ctx, const struct opts *o)
{
	struct kvmm_kv_config c = model_cfg(o, KVMM_LAYOUT_TOKEN_MAJOR);
	uint32_t slot = 0, tokens = o->quick ? 1024 : 4096;
	struct kvmm_kv *kv;
	struct kvmm_kv_tensor t;
	struct kvmm_op *op;
	double t0, out_s = 1e30, in_s = 1e30, d2h = 0, h2d = 0, fout_s = 1e30, fin_s = 1e30;
	uint64_t bytes;
	int ret, fret = 0, reps = o->quick ? 2 : 5;

	setenv("KVMM_CUDA_MAPPER", "0", 1);
	ret = kvmm_kv_create(ctx, &c, &kv);
	unsetenv("KVMM_CUDA_MAPPER");
	if (ret)
		return ret;
	ret = kvmm_kv_step(kv, 1, &slot, &tokens);
	kvmm_kv_tensor(kv, 0, KVMM_K, &t);
	bytes = (uint64_t)(tokens + c.lookahead) * t.token_stride_bytes;
	for (int i = 0; i < reps && !ret; i++) {
		t0 = now_us();
		ret = kvmm_kv_swap_out(kv, slot, KVMM_TIER_HOST, &op);
		ret = ret ? ret : kvmm_wait(op);
		out_s = ret || now_us() - t0 > out_s ? out_s : now_us() - t0;
		t0 = now_us();
		ret = ret ? ret : kvmm_kv_swap_in(kv, slot, &op);
		ret = ret ? ret : kvmm_wait(op);
		in_s = ret || now_us() - t0 > in_s ? in_s : now_us() - t0;
	}
	if (!ret) /* the same bytes, straight through one pinned buffer */
		ret = raw_copy_gbs((CUdeviceptr)(uintptr_t)t.base, bytes, &d2h, &h2d);
	/* Through flash: out is GPU -> DRAM -> flash, in the way back. */
	for (int i = 0; i < reps && !ret && !fret; i++) {
		t0 = now_us();
		fret = kvmm_kv_swap_out(kv, slot, KVMM_TIER_FLASH, &op);
		fret = fret ? fret : kvmm_wait(op);
		fout_s = fret || now_us() - t0 > fout_s ? fout_s : now_us() - t0;
		t0 = now_us();
		fret = fret ? fret : kvmm_kv_swap_in(kv, slot, &op);
		fret = fret ? fret : kvmm_wait(op);
		fin_s = fret || now_us() - t0 > fin_s ? fin_s : now_us() - t0;
	}
	kvmm_kv_destroy(kv);
	if (ret)
		return ret;
	if (o->json) {
		printf("\"swap\": {\"slot_bytes\": %llu, \"swap_out_gbs\": %.2f, \"swap_in_gbs\": "
		       "%.2f, \"pinned_d2h_gbs\": %.2f, \"pinned_h2d_gbs\": %.2f, \"out_ratio\": "
		       "%.3f, \"in_ratio\": %.3f, ",
		       (unsigned long long)bytes, bytes / (out_s * 1e3), bytes / (in_s * 1e3), d2h,
		       h2d, bytes / (out_s * 1e3) / d2h, bytes / (in_s * 1e3) / h2d);
		if (fret)
			printf("\"flash_error\": \"%s\"}", kvmm_strerror(fret));
		else
			printf("\"flash_out_gbs\": %.2f, \"flash_in_gbs\": %.2f}",
			       bytes / (fout_s * 1e3), bytes / (fin_s * 1e3));
		return 0;
	}
	printf("Slot swap, %llu MiB token-major slot, best of %d\n"
	       "  %-28s %10.2f GB/s  (pinned cuMemcpy %.2f GB/s, ratio %.3f)\n"
	       "  %-28s %10.2f GB/s  (pinned cuMemcpy %.2f GB/s, ratio %.3f)\n",
	       (unsigned long long)(bytes >> 20), reps, "GPU -> DRAM (swap out)",
	       bytes / (out_s * 1e3), d2h, bytes / (out_s * 1e3) / d2h, "DRAM -> GPU (swap in)",
	       bytes / (in_s * 1e3), h2d, bytes / (in_s * 1e3) / h2d);
	if (fret)
		printf("  GPU <-> flash: failed: %s\n", kvmm_strerror(fret));
	else
		printf("  %-28s %10.2f GB/s\n  %-28s %10.2f GB/s\n", "GPU -> flash (swap out)",
		       bytes / (fout_s * 1e3), "flash -> GPU (swap in)", bytes / (fin_s * 1e3));
	return 0;
}

int main(int argc, char **argv)
{
	struct opts o = {0};
	bool want[3] = {false, false, false}, any = false;
	struct kvmm_config cfg = KVMM_CONFIG_INIT;
	struct kvmm_ctx *ctx;
	CUdevice dev;
	int ret, count = 0;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json"))
			o.json = true;
		else if (!strcmp(argv[i], "--quick"))
			o.quick = true;
		else if (!strcmp(argv[i], "--device") && i + 1 < argc)
			o.device = atoi(argv[++i]);
		else if (!strcmp(argv[i], "vmm") || !strcmp(argv[i], "decode") ||
			 !strcmp(argv[i], "swap"))
			any = want[argv[i][0] == 'v' ? 0 : argv[i][0] == 'd' ? 1 : 2] = true;
		else {
			fprintf(stderr,
				"usage: %s [--json] [--quick] [--device N] "
				"[vmm|decode|swap ...]\n",
				argv[0]);
			return 2;
		}
	}
	if (!any)
		want[0] = want[1] = want[2] = true;
	if (kvmm_cuda_drv_get(&d) || d->cuDeviceGetCount(&count) || o.device >= count) {
		printf("kvmm-bench-cuda: no GPU: %s\n",
		       kvmm_cuda_why()[0] ? kvmm_cuda_why() : "no such CUDA device");
		return 77;
	}
	if (!getenv("KVMM_FLASH_BYTES"))
		cfg.flash_bytes = 1ULL << 30; /* the swap section's slot, twice over */
	ret = kvmm_open(&ctx, &cfg);
	if (ret) {
		fprintf(stderr, "kvmm_open: %s\n", kvmm_strerror(ret));
		return 1;
	}
	/* The VMM calls need the device's context; the cache makes its own. */
	{
		CUcontext cu, unused;

		if (d->cuDeviceGet(&dev, o.device) || d->cuDevicePrimaryCtxRetain(&cu, dev) ||
		    d->cuCtxPushCurrent(cu)) {
			fprintf(stderr, "cannot use CUDA device %d\n", o.device);
			return 1;
		}
		if (o.json)
			printf("{\"device\": %d, \"mode\": \"%s\"", o.device,
			       kvmm_mode(ctx) == KVMM_MODE_KERNEL ? "kernel" : "user");
		ret = 0;
		if (!ret && want[0]) {
			printf(o.json ? ", " : "");
			ret = bench_vmm(&o, dev);
		}
		if (!ret && want[1]) {
			printf(o.json ? ", " : "\n");
			ret = bench_decode(ctx, &o);
		}
		if (!ret && want[2]) {
			printf(o.json ? ", " : "\n");
			ret = bench_swap(ctx, &o);
		}
		printf(o.json ? "}\n" : "");
		d->cuCtxPopCurrent(&unused);
		d->cuDevicePrimaryCtxRelease(dev);
	}
	kvmm_close(ctx);
	if (ret)
		fprintf(stderr, "kvmm-bench-cuda: %s\n", kvmm_strerror(ret));
	return ret ? 1 : 0;
}
#else
int main(void)
{
	printf("kvmm-bench-cuda: built without cuda.h: no CUDA backend\n");
	return 77;
}
#endif
