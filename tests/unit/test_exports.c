/* SPDX-License-Identifier: MIT */
/*
 * libkvmm.so exports every function include/kvmm/kvmm.h, prefix.h and
 * remote.h declare and none of the test hooks of userspace/lib/kvmm_test.h (the
 * tests link those from libkvmm_test.a). The names are read from the
 * headers themselves, so a new declaration without its line in
 * libkvmm.map fails here. make check-unit sets KVMM_TEST_LIBKVMM_SO and
 * KVMM_TEST_TOP; without them (a copy of the programs elsewhere) the
 * program skips.
 */
#include "helpers.h"

#include <ctype.h>
#include <dlfcn.h>

#define MAX_NAMES 128

/* Functions a header declares: a line that starts a declaration (not a
 * comment, macro, typedef or struct member) naming kvmm_*( . */
static int declared(const char *path, char names[][64], int max)
{
	FILE *f = fopen(path, "r");
	char line[512];
	int n = 0;

	assert_non_null(f);
	while (fgets(line, sizeof(line), f) && n < max) {
		const char *p = strstr(line, "kvmm_"), *e;

		if (!p || !isalpha((unsigned char)line[0]) || !strncmp(line, "typedef", 7) ||
		    !strncmp(line, "struct", 6) || !strncmp(line, "enum", 4))
			continue;
		for (e = p; isalnum((unsigned char)*e) || *e == '_'; e++)
			;
		if (*e != '(' || e - p >= 64)
			continue;
		memcpy(names[n], p, (size_t)(e - p));
		names[n++][e - p] = 0;
	}
	fclose(f);
	return n;
}

static void *open_so(void)
{
	const char *so = getenv("KVMM_TEST_LIBKVMM_SO");
	void *h = so ? dlopen(so, RTLD_NOW | RTLD_LOCAL) : NULL;

	if (!h)
		fail_msg("dlopen %s: %s", so ? so : "(unset)", dlerror());
	return h;
}

static void header_path(char *buf, size_t len, const char *rel)
{
	snprintf(buf, len, "%s/%s", getenv("KVMM_TEST_TOP"), rel);
}

static void every_public_function_is_exported(void **state)
{
	static char names[MAX_NAMES][64];
	char path[512];
	void *h = open_so();
	int n;

	(void)state;
	header_path(path, sizeof(path), "include/kvmm/kvmm.h");
	n = declared(path, names, MAX_NAMES);
	assert_true(n > 30); /* the parse found the API */
	for (int i = 0; i < n; i++) {
		if (!dlsym(h, names[i]))
			fail_msg("kvmm.h declares %s, libkvmm.so does not export it", names[i]);
	}
	header_path(path, sizeof(path), "include/kvmm/prefix.h");
	n = declared(path, names, MAX_NAMES);
	assert_true(n >= 10);
	for (int i = 0; i < n; i++) {
		if (!dlsym(h, names[i]))
			fail_msg("prefix.h declares %s, libkvmm.so does not export it", names[i]);
	}
	header_path(path, sizeof(path), "include/kvmm/remote.h");
	n = declared(path, names, MAX_NAMES);
	assert_true(n >= 15);
	for (int i = 0; i < n; i++) {
		if (!dlsym(h, names[i]))
			fail_msg("remote.h declares %s, libkvmm.so does not export it", names[i]);
	}
	/* The ones docs/cuda.md tells engines to call. */
	assert_non_null(dlsym(h, "kvmm_kv_cuda_stats"));
	assert_non_null(dlsym(h, "kvmm_cuda_why"));
	/* The pair docs/python.md hands to torch's CUDAPluggableAllocator. */
	assert_non_null(dlsym(h, "kvmm_torch_malloc"));
	assert_non_null(dlsym(h, "kvmm_torch_free"));
	dlclose(h);
}

static void test_hooks_are_not_exported(void **state)
{
	static char names[MAX_NAMES][64];
	char path[512];
	void *h = open_so();
	int n;

	(void)state;
	header_path(path, sizeof(path), "userspace/lib/kvmm_test.h");
	n = declared(path, names, MAX_NAMES);
	assert_true(n >= 4);
	for (int i = 0; i < n; i++) {
		if (dlsym(h, names[i]))
			fail_msg("libkvmm.so exports the test hook %s", names[i]);
	}
	dlclose(h);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(every_public_function_is_exported),
	    cmocka_unit_test(test_hooks_are_not_exported),
	};

	T_LIST(argc, argv, T_GROUP(tests));
	if (!getenv("KVMM_TEST_LIBKVMM_SO") || !getenv("KVMM_TEST_TOP")) {
		printf("skip: KVMM_TEST_LIBKVMM_SO or KVMM_TEST_TOP is unset (make check-unit sets "
		       "them)\n");
		return T_SKIP_EXIT;
	}
	return cmocka_run_group_tests_name("exports", tests, NULL, NULL);
}
