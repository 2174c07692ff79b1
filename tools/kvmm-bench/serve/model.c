/* SPDX-License-Identifier: MIT */
/* KV-cache shapes of known models. */
#include <stdio.h>
#include <string.h>

#include "sim.h"

static const struct sim_model models[] = {
    /* name, layers, KV heads (per GPU), head_dim, dtype bytes (bf16) */
    {"llama-3-8b", 32, 8, 128, 2},
    {"llama-3-70b-tp8", 80, 1, 128, 2}, /* 8 KV heads over 8 GPUs: one per GPU */
    {"mistral-7b", 32, 8, 128, 2},
    {"qwen2.5-7b", 28, 4, 128, 2},
};

int sim_model_find(const char *name, struct sim_model *m)
{
	for (size_t i = 0; i < sizeof(models) / sizeof(models[0]); i++) {
		if (!strcmp(models[i].name, name)) {
			*m = models[i];
			return 0;
		}
	}
	return -1;
}

int sim_model_parse(const char *s, struct sim_model *m)
{
	unsigned l, h, d, b;
	char tail;

	if (sscanf(s, "%u:%u:%u:%u%c", &l, &h, &d, &b, &tail) != 4 || !l || !h || !d ||
	    (b != 1 && b != 2 && b != 4) || l > 1024 || h > 1024 || d > 1024)
		return -1;
	snprintf(m->name, sizeof(m->name), "%u:%u:%u:%u", l, h, d, b);
	m->layers = l;
	m->kv_heads = h;
	m->head_dim = d;
	m->dtype_bytes = b;
	return 0;
}

uint64_t sim_model_token_bytes(const struct sim_model *m)
{
	return 2ULL * m->layers * m->kv_heads * m->head_dim * m->dtype_bytes;
}

const char *sim_model_list(void)
{
	return "llama-3-8b, llama-3-70b-tp8, mistral-7b, qwen2.5-7b, or LAYERS:KV_HEADS:HEAD_DIM:"
	       "DTYPE_BYTES";
}
