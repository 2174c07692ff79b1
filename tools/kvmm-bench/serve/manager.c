/* SPDX-License-Identifier: MIT */
/*
 * Bytes each memory manager holds for one sequence:
 *   static      max_context tokens, reserved at admission
 *   paged       whole blocks of block_tokens tokens (PagedAttention, ideal:
 *               no fragmentation beyond the last block, no block-table cost)
 *   kvmm layer  2*layers regions ([slot][token][head][dim]), each slot's
 *               part of each region mapped in whole chunks
 *   kvmm token  one region per slot ([token][layer][K|V][head][dim]) mapped
 *               in whole chunks, so one chunk serves every layer
 * With prefix sharing (+prefix), the whole blocks or chunks of a shared
 * prefix are held once (sim_manager_shared_bytes) and the rest per request.
 */
#include <stdio.h>

#include "sim.h"

static uint64_t round_up(uint64_t v, uint64_t to)
{
	return (v + to - 1) / to * to;
}

uint64_t sim_manager_bytes(const struct sim_manager *mgr, const struct sim_model *m,
			   uint64_t tokens)
{
	uint64_t tok = sim_model_token_bytes(m);
	uint64_t part = (uint64_t)m->kv_heads * m->head_dim * m->dtype_bytes;

	switch (mgr->kind) {
	case SIM_STATIC:
		return (uint64_t)mgr->max_context * tok;
	case SIM_PAGED:
		return round_up(tokens, mgr->block_tokens) * tok;
	case SIM_KVMM_LAYER:
		return 2ULL * m->layers * round_up(tokens * part, mgr->chunk_bytes);
	default:
		return round_up(tokens * tok, mgr->chunk_bytes);
	}
}

uint64_t sim_manager_shared_bytes(const struct sim_manager *mgr, const struct sim_model *m,
				  uint64_t tokens, uint64_t *saved)
{
	uint64_t tok = sim_model_token_bytes(m);
	uint64_t part = (uint64_t)m->kv_heads * m->head_dim * m->dtype_bytes;
	uint64_t units, shared_tokens;

	*saved = 0;
	if (!mgr->share || !tokens)
		return 0;
	switch (mgr->kind) {
	case SIM_PAGED:
		*saved = tokens / mgr->block_tokens * mgr->block_tokens;
		return *saved * tok;
	case SIM_KVMM_LAYER:
		/* Each of the 2*layers regions shares its whole chunks of the prefix. */
		units = tokens * part / mgr->chunk_bytes;
		shared_tokens = units * mgr->chunk_bytes / part;
		*saved = shared_tokens;
		return 2ULL * m->layers * units * mgr->chunk_bytes;
	case SIM_KVMM_TOKEN:
		units = tokens * tok / mgr->chunk_bytes;
		/* A chunk that ends inside a token holds part of a token computed anyway. */
		*saved = units * mgr->chunk_bytes / tok;
		return units * mgr->chunk_bytes;
	default:
		return 0; /* static reserves per request: nothing to share */
	}
}

static const char *chunk_name(uint32_t bytes, char *buf, int len)
{
	if (bytes >= (1u << 20) && !(bytes % (1u << 20)))
		snprintf(buf, len, "%uMiB", bytes >> 20);
	else if (bytes >= 1024 && !(bytes % 1024))
		snprintf(buf, len, "%uKiB", bytes >> 10);
	else
		snprintf(buf, len, "%uB", bytes);
	return buf;
}

void sim_manager_name(const struct sim_manager *mgr, char *buf, int len)
{
	char c[16];

	switch (mgr->kind) {
	case SIM_STATIC:
		snprintf(buf, len, "static");
		break;
	case SIM_PAGED:
		snprintf(buf, len, "paged-%u%s", mgr->block_tokens, mgr->share ? "+prefix" : "");
		break;
	case SIM_KVMM_LAYER:
		snprintf(buf, len, "kvmm-layer-%s%s", chunk_name(mgr->chunk_bytes, c, sizeof(c)),
			 mgr->share ? "+prefix" : "");
		break;
	default:
		snprintf(buf, len, "kvmm-token-%s%s", chunk_name(mgr->chunk_bytes, c, sizeof(c)),
			 mgr->share ? "+prefix" : "");
	}
}

bool sim_manager_swaps(const struct sim_manager *mgr)
{
	return mgr->kind == SIM_KVMM_LAYER || mgr->kind == SIM_KVMM_TOKEN;
}
