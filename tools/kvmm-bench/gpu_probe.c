/* SPDX-License-Identifier: MIT */
/*
 * kvmm-gpu-probe: what a GPU host offers, asked of the driver before any
 * GPU test runs (scripts/gpu-validate.sh, step "preflight"), so that what
 * a real driver refuses and the stand-in accepts is a readable line up
 * front instead of a failure deep inside a test.
 *   kvmm-gpu-probe [--device N] [--need-mib M]
 * Prints one JSON object on stdout (device, driver, capabilities) and, on
 * stderr, a line "FAIL: ..." for each thing kvmm cannot do without and
 * "WARN: ..." for each it works around. Exit 0: usable; 1: a FAIL; 77: no
 * driver or no device (also a FAIL line). The driver is libcuda.so.1, or
 * $KVMM_CUDA_LIBRARY (the stand-in in a dry run); every entry point comes
 * from cuGetProcAddress, as libkvmm resolves them.
 */
#include <dlfcn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cuda.h>

static int fails, warns;

static void say(const char *level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(const char *level, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", level);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	if (!strcmp(level, "FAIL"))
		fails++;
	else
		warns++;
}

typedef CUresult (*gpa_fn)(const char *, void **, int, cuuint64_t,
			   CUdriverProcAddressQueryResult *);
/* cuGetProcAddress before CUDA 12.5 had no symbolStatus argument. */
typedef CUresult (*gpa1_fn)(const char *, void **, int, cuuint64_t);
static gpa1_fn gpa1;

static struct {
	__typeof__(&cuInit) init;
	__typeof__(&cuDriverGetVersion) version;
	__typeof__(&cuDeviceGetCount) count;
	__typeof__(&cuDeviceGet) get;
	__typeof__(&cuDeviceGetName) name;
	__typeof__(&cuDeviceGetAttribute) attr;
	__typeof__(&cuDeviceGetPCIBusId) busid;
	__typeof__(&cuDeviceTotalMem) total;
	__typeof__(&cuDevicePrimaryCtxRetain) retain;
	__typeof__(&cuDevicePrimaryCtxRelease) release_ctx;
	__typeof__(&cuCtxPushCurrent) push;
	__typeof__(&cuCtxPopCurrent) pop;
	__typeof__(&cuMemGetInfo) info;
	__typeof__(&cuMemGetAllocationGranularity) gran;
	__typeof__(&cuMemAddressReserve) reserve;
	__typeof__(&cuMemAddressFree) unreserve;
	__typeof__(&cuMemCreate) create;
	__typeof__(&cuMemRelease) release;
	__typeof__(&cuMemMap) map;
	__typeof__(&cuMemUnmap) unmap;
	__typeof__(&cuMemSetAccess) access;
} cu;

/* One entry point through cuGetProcAddress (the driver's own ABI for it). */
static void *sym(void *lib, gpa_fn gpa, int version, const char *name)
{
	void *fn = NULL;

	if (gpa && gpa(name, &fn, version, CU_GET_PROC_ADDRESS_DEFAULT, NULL) == CUDA_SUCCESS)
		return fn;
	if (gpa1 && gpa1(name, &fn, version, CU_GET_PROC_ADDRESS_DEFAULT) == CUDA_SUCCESS)
		return fn;
	(void)lib;
	return NULL; /* never dlsym: a bare name may be an older ABI (cuMemGetInfo) */
}

static int load(const char **why)
{
	const char *path = getenv("KVMM_CUDA_LIBRARY");
	void *lib = dlopen(path && *path ? path : "libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
	gpa_fn gpa;
	int v = 0;
	__typeof__(&cuDriverGetVersion) ver;

	if (!lib) {
		*why = dlerror();
		return -1;
	}
	gpa = (gpa_fn)dlsym(lib, "cuGetProcAddress_v2");
	if (!gpa)
		gpa1 = (gpa1_fn)dlsym(lib, "cuGetProcAddress");
	ver = (__typeof__(ver))dlsym(lib, "cuDriverGetVersion");
	if (!ver || ver(&v) != CUDA_SUCCESS) {
		*why = "cuDriverGetVersion failed: not a CUDA driver";
		return -1;
	}
	v = v < CUDA_VERSION ? v : CUDA_VERSION;
#define GET(field, name)                                                                           \
	do {                                                                                       \
		*(void **)&cu.field = sym(lib, gpa, v, name);                                      \
		if (!cu.field) {                                                                   \
			*why = "the driver has no " name;                                          \
			return -1;                                                                 \
		}                                                                                  \
	} while (0)
	GET(init, "cuInit");
	GET(version, "cuDriverGetVersion");
	GET(count, "cuDeviceGetCount");
	GET(get, "cuDeviceGet");
	GET(name, "cuDeviceGetName");
	GET(attr, "cuDeviceGetAttribute");
	GET(busid, "cuDeviceGetPCIBusId");
	GET(total, "cuDeviceTotalMem");
	GET(retain, "cuDevicePrimaryCtxRetain");
	GET(release_ctx, "cuDevicePrimaryCtxRelease");
	GET(push, "cuCtxPushCurrent");
	GET(pop, "cuCtxPopCurrent");
	GET(info, "cuMemGetInfo");
	GET(gran, "cuMemGetAllocationGranularity");
	GET(reserve, "cuMemAddressReserve");
	GET(unreserve, "cuMemAddressFree");
	GET(create, "cuMemCreate");
	GET(release, "cuMemRelease");
	GET(map, "cuMemMap");
	GET(unmap, "cuMemUnmap");
	GET(access, "cuMemSetAccess");
#undef GET
	return 0;
}

static int attr(CUdevice dev, CUdevice_attribute a)
{
	int v = 0;

	return cu.attr(&v, a, dev) == CUDA_SUCCESS ? v : -1;
}

/*
 * What the CUDA backend does with the VMM calls, on one chunk: one handle
 * mapped at two addresses, read-only access with one cuMemSetAccess over
 * both mappings (the shared zero chunk), then read-write on one of them.
 * Returns "ok", or which call the driver refused.
 */
static const char *vmm_trial(CUdevice dev, size_t chunk, bool *ro_ok)
{
	CUmemAllocationProp prop = {0};
	CUmemAccessDesc a = {0};
	CUmemGenericAllocationHandle h = 0;
	CUdeviceptr va = 0;
	const char *why = "ok";
	int mapped = 0;

	prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
	prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
	prop.location.id = dev;
	a.location = prop.location;
	*ro_ok = false;
	if (cu.reserve(&va, 2 * chunk, 0, 0, 0) != CUDA_SUCCESS) {
		va = 0;
		why = "cuMemAddressReserve";
		goto out;
	}
	if (cu.create(&h, chunk, &prop, 0) != CUDA_SUCCESS) {
		h = 0;
		why = "cuMemCreate";
		goto out;
	}
	for (; mapped < 2; mapped++)
		if (cu.map(va + mapped * chunk, chunk, 0, h, 0) != CUDA_SUCCESS) {
			why = "cuMemMap of one handle at a second address";
			goto out;
		}
	a.flags = CU_MEM_ACCESS_FLAGS_PROT_READ;
	*ro_ok = cu.access(va, 2 * chunk, &a, 1) == CUDA_SUCCESS;
	a.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
	if (cu.access(va + chunk, chunk, &a, 1) != CUDA_SUCCESS)
		why = "cuMemSetAccess read-write";
out:
	while (mapped-- > 0)
		cu.unmap(va + mapped * chunk, chunk);
	if (h)
		cu.release(h);
	if (va)
		cu.unreserve(va, 2 * chunk);
	return why;
}

static void json_str(const char *key, const char *v, bool comma)
{
	printf("\"%s\": \"", key);
	for (; *v; v++)
		if (*v == '"' || *v == '\\')
			printf("\\%c", *v);
		else if ((unsigned char)*v >= 0x20)
			putchar(*v);
	printf("\"%s", comma ? ", " : "");
}

int main(int argc, char **argv)
{
	char name[256] = "", busid[32] = "";
	int device = 0, count = 0, drv = 0, ccmaj, ccmin, vmm, uva;
	long need_mib = 0, page = sysconf(_SC_PAGESIZE);
	size_t total = 0, free_b = 0, gmin = 0, grec = 0;
	CUmemAllocationProp prop = {0};
	const char *why = NULL, *trial = "not run";
	CUcontext ctx = NULL, unused;
	bool ro_ok = false;
	CUdevice dev;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--device") && i + 1 < argc)
			device = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--need-mib") && i + 1 < argc)
			need_mib = atol(argv[++i]);
		else {
			fprintf(stderr, "usage: %s [--device N] [--need-mib M]\n", argv[0]);
			return 2;
		}
	}
	if (load(&why) || cu.init(0) != CUDA_SUCCESS || cu.count(&count) != CUDA_SUCCESS ||
	    count <= device) {
		say("FAIL", "no usable CUDA driver or device %d: %s", device,
		    why		      ? why
		    : count <= device ? "no such device"
				      : "cuInit failed");
		printf("{\"usable\": false}\n");
		return 77;
	}
	cu.version(&drv);
	cu.get(&dev, device);
	cu.name(name, sizeof(name), dev);
	cu.busid(busid, sizeof(busid), dev);
	cu.total(&total, dev);
	ccmaj = attr(dev, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR);
	ccmin = attr(dev, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR);
	vmm = attr(dev, CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED);
	uva = attr(dev, CU_DEVICE_ATTRIBUTE_UNIFIED_ADDRESSING);
	prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
	prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
	prop.location.id = dev;
	if (cu.retain(&ctx, dev) == CUDA_SUCCESS && cu.push(ctx) == CUDA_SUCCESS) {
		cu.info(&free_b, &total);
		cu.gran(&gmin, &prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM);
		cu.gran(&grec, &prop, CU_MEM_ALLOC_GRANULARITY_RECOMMENDED);
		if (vmm > 0 && gmin)
			trial = vmm_trial(dev, gmin, &ro_ok);
		cu.pop(&unused);
		cu.release_ctx(dev);
	} else {
		say("FAIL", "device %d: cannot make its primary context current", device);
	}
	if (ccmaj < 8)
		say("FAIL",
		    "device %d (%s) has compute capability %d.%d: the CUDA attention kernels need "
		    "8.0 or newer (sm_80 SASS, compute_90 PTX; mma.sync bf16)",
		    device, name, ccmaj, ccmin);
	if (vmm <= 0)
		say("FAIL", "device %d has no virtual memory management: no CUDA KV cache", device);
	if (uva <= 0)
		say("FAIL", "device %d has no unified addressing: no cuMemAddressReserve", device);
	if (!gmin || gmin % (size_t)page)
		say("FAIL",
		    "allocation granularity %zu is not a multiple of the %ld-byte host page", gmin,
		    page);
	if (strcmp(trial, "ok") && strcmp(trial, "not run"))
		say("FAIL", "the VMM calls a CUDA cache makes were refused: %s", trial);
	if (!strcmp(trial, "ok") && !ro_ok)
		say("WARN", "read-only device mappings are refused: the shared zero chunk is "
			    "mapped read-write (a device write past a slot's tokens then lands in "
			    "the zeros every unmapped range reads; docs/cuda.md)");
	if (need_mib && free_b < (size_t)need_mib << 20)
		say("FAIL", "device %d has %zu MiB free; the GPU run needs %ld MiB", device,
		    free_b >> 20, need_mib);
	printf("{");
	json_str("name", name, true);
	json_str("pci_bus_id", busid, true);
	printf("\"device\": %d, \"devices\": %d, \"driver_version\": %d, \"cuda_h_version\": %d, "
	       "\"cc\": \"%d.%d\", \"vmm\": %d, \"unified_addressing\": %d, "
	       "\"granularity_min\": %zu, \"granularity_recommended\": %zu, "
	       "\"total_mib\": %zu, \"free_mib\": %zu, \"read_only_mappings\": %s, ",
	       device, count, drv, CUDA_VERSION, ccmaj, ccmin, vmm, uva, gmin, grec, total >> 20,
	       free_b >> 20, ro_ok ? "true" : "false");
	json_str("vmm_trial", trial, true);
	printf("\"failures\": %d, \"warnings\": %d, \"usable\": %s}\n", fails, warns,
	       fails ? "false" : "true");
	return fails ? 1 : 0;
}
