/* SPDX-License-Identifier: MIT */
/* Size formatting and parsing; see fmt.h. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

#include "fmt.h"

const char *fmt_bytes(char *buf, size_t len, uint64_t bytes)
{
	static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
	double v = (double)bytes;
	int u = 0;

	while (v >= 1024.0 && u < 6) {
		v /= 1024.0;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%llu B", (unsigned long long)bytes);
	else
		snprintf(buf, len,
			 v >= 100.0  ? "%.0f %s"
			 : v >= 10.0 ? "%.1f %s"
				     : "%.2f %s",
			 v, unit[u]);
	return buf;
}

int parse_u64(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (!s || !*s || !isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno == ERANGE)
		return -ERANGE;
	if (*end)
		return -EINVAL;
	*out = v;
	return 0;
}

int parse_bytes(const char *s, uint64_t *out)
{
	static const char *const sfx[] = {"k", "m", "g", "t"};
	char *end;
	unsigned long long v;
	int shift = -1;

	if (!s || !*s || !isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno == ERANGE)
		return -ERANGE;
	if (!*end) {
		*out = v;
		return 0;
	}
	for (int i = 0; i < 4; i++) {
		char ib[4] = {sfx[i][0], 'i', 'b', 0};

		if (!strcasecmp(end, sfx[i]) || !strcasecmp(end, ib))
			shift = 10 * (i + 1);
	}
	if (shift < 0)
		return -EINVAL;
	if (v > (UINT64_MAX >> shift))
		return -ERANGE;
	*out = (uint64_t)v << shift;
	return 0;
}
