/* SPDX-License-Identifier: MIT */
/*
 * Which library made an allocation: the return address of the interposed
 * call, looked up with dladdr() and cached by the object's load address
 * range (dladdr takes the loader's lock: it runs once per calling object,
 * and only for allocations large enough for some rule that names a library).
 */
#include <dlfcn.h>
#include <link.h>
#include <string.h>
#include <unistd.h>

#include "shim.h"

#define SHIM_CALLERS 32

struct shim_caller {
	uintptr_t lo, hi; /* the object's mapped range */
	bool self;
	char name[SHIM_NAME_MAX];
};

static struct shim_caller shim_callers[SHIM_CALLERS];
static unsigned shim_nr_callers;
static pthread_mutex_t shim_caller_lock = PTHREAD_MUTEX_INITIALIZER;
static uintptr_t shim_self_base;

struct shim_phdr_find {
	uintptr_t addr, lo, hi;
	bool found;
};

/* The lowest and highest address of the loaded object holding f->addr. */
static int shim_phdr_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
	struct shim_phdr_find *f = arg;
	uintptr_t lo = UINTPTR_MAX, hi = 0;

	(void)size;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];

		if (ph->p_type != PT_LOAD)
			continue;
		if (info->dlpi_addr + ph->p_vaddr < lo)
			lo = info->dlpi_addr + ph->p_vaddr;
		if (info->dlpi_addr + ph->p_vaddr + ph->p_memsz > hi)
			hi = info->dlpi_addr + ph->p_vaddr + ph->p_memsz;
	}
	if (f->addr >= lo && f->addr < hi) {
		f->lo = lo;
		f->hi = hi;
		f->found = true;
		return 1;
	}
	return 0;
}

static void shim_basename(char *dst, const char *path)
{
	const char *b = strrchr(path, '/');
	size_t n;

	b = b ? b + 1 : path;
	n = strlen(b);
	if (n >= SHIM_NAME_MAX)
		n = SHIM_NAME_MAX - 1;
	memcpy(dst, b, n);
	dst[n] = 0;
}

const char *shim_caller_lib(const void *addr, bool *is_self)
{
	uintptr_t a = (uintptr_t)addr;
	struct shim_phdr_find f = {.addr = a};
	struct shim_caller *c;
	Dl_info info;
	const char *ret = "";

	*is_self = false;
	pthread_mutex_lock(&shim_caller_lock);
	if (!shim_self_base && dladdr((void *)shim_caller_lib, &info))
		shim_self_base = (uintptr_t)info.dli_fbase;
	for (unsigned i = 0; i < shim_nr_callers; i++) {
		c = &shim_callers[i];
		if (a >= c->lo && a < c->hi) {
			*is_self = c->self;
			ret = c->name;
			goto out;
		}
	}
	if (!dladdr(addr, &info))
		goto out;
	dl_iterate_phdr(shim_phdr_cb, &f);
	if (!f.found || shim_nr_callers == SHIM_CALLERS) {
		*is_self = (uintptr_t)info.dli_fbase == shim_self_base;
		goto out; /* not cached: looked up again next time */
	}
	c = &shim_callers[shim_nr_callers++];
	c->lo = f.lo;
	c->hi = f.hi;
	c->self = (uintptr_t)info.dli_fbase == shim_self_base;
	if (info.dli_fname && info.dli_fname[0]) {
		shim_basename(c->name, info.dli_fname);
	} else {
		/* The main program: dladdr names it "" */
		char exe[SHIM_PATH_MAX];
		ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

		exe[n > 0 ? n : 0] = 0;
		shim_basename(c->name, exe);
	}
	*is_self = c->self;
	ret = c->name;
out:
	pthread_mutex_unlock(&shim_caller_lock);
	return ret;
}

void shim_caller_reset(void)
{
	pthread_mutex_init(&shim_caller_lock, NULL);
}
