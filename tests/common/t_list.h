/* SPDX-License-Identifier: MIT */
/*
 * --list for the cmocka test programs (include after cmocka.h). main()
 * starts with T_LIST(argc, argv, T_GROUP(tests), ...): run as
 * `PROGRAM --list`, the program prints the name of each test it holds, one
 * a line, and exits 0 before it looks at the machine. A harness that finds
 * a program cannot run here at all (it exits 77, or the harness lacks what
 * the program needs) counts each listed test as skipped, with the reason.
 */
#ifndef KVMM_TESTS_T_LIST_H
#define KVMM_TESTS_T_LIST_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The exit status of a program that cannot run here at all. */
#define T_SKIP_EXIT 77

struct t_group {
	const struct CMUnitTest *tests;
	size_t n;
};

#define T_GROUP(a) ((struct t_group){(a), sizeof(a) / sizeof((a)[0])})

static inline void t_list_groups(int argc, char **argv, const struct t_group *g, size_t ng)
{
	if (argc != 2 || strcmp(argv[1], "--list"))
		return;
	for (size_t i = 0; i < ng; i++)
		for (size_t j = 0; j < g[i].n; j++)
			printf("%s\n", g[i].tests[j].name);
	exit(fflush(stdout) ? 1 : 0);
}

#define T_LIST(argc, argv, ...)                                                                    \
	t_list_groups(argc, argv, (const struct t_group[]){__VA_ARGS__},                           \
		      sizeof((const struct t_group[]){__VA_ARGS__}) / sizeof(struct t_group))

/*
 * A table entry for a test that is not built here (its program was built
 * without what it needs): it keeps the test's name for --list, and the
 * program exits 77 before running any.
 */
static inline void t_not_built(void **state)
{
	(void)state;
	abort();
}

#define T_NOT_BUILT(f)                                                                             \
	{                                                                                          \
		.name = #f, .test_func = t_not_built                                               \
	}

/* The program cannot run here at all: one line "skip: why", then exit 77. */
__attribute__((format(printf, 1, 2), noreturn)) static inline void t_skip_program(const char *fmt,
										  ...)
{
	va_list ap;

	printf("skip: ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	exit(T_SKIP_EXIT);
}

#endif /* KVMM_TESTS_T_LIST_H */
