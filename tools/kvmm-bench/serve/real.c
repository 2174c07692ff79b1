/* SPDX-License-Identifier: MIT */
/*
 * Real memory operations for the kvmm managers. The cache has the model's
 * layer count and a per-layer token size and chunk size both divided by
 * the scale, so every request spans exactly the chunks it would at full
 * scale and mapped bytes are the simulated ones divided by the scale.
 * Each token written gets a stamp (request, token, layer) that is checked
 * after the request is swapped back in.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <kvmm/kvmm.h>

#include "real.h"

#define NO_SLOT UINT32_MAX

struct real {
	struct real_config cfg;
	struct kvmm_ctx *ctx;
	struct kvmm_kv *kv;
	uint32_t layers;
	uint64_t elem_bytes;	  /* one token of one layer's K or V, scaled */
	struct kvmm_kv_tensor *t; /* 2 * layers */
	uint32_t *slot;		  /* per request */
	uint32_t *written;	  /* tokens stamped so far, per request */
	uint32_t *sl, *lens;	  /* step scratch */
	struct real_stats st;
};

static double now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void real_error(struct real *r, const char *what, int err)
{
	if (!r->st.errors++)
		snprintf(r->st.first_error, sizeof(r->st.first_error), "%s: %s", what,
			 kvmm_strerror(err));
}

uint32_t real_scale(const struct sim_model *m, uint32_t chunk_bytes, uint32_t want)
{
	uint64_t elem = (uint64_t)m->kv_heads * m->head_dim * m->dtype_bytes;
	uint32_t s = 1;

	while (s * 2 <= want && chunk_bytes / (s * 2) >= 4096 && !(chunk_bytes % (s * 2)) &&
	       elem / (s * 2) >= 8 && !(elem % (s * 2)) && (elem / (s * 2)) % m->dtype_bytes == 0)
		s *= 2;
	return s;
}

static uint64_t stamp(uint32_t req, uint32_t tok, uint32_t part)
{
	return ((uint64_t)req << 40) ^ ((uint64_t)tok << 12) ^ part ^ 0x5a5a000000000000ULL;
}

static char *token_addr(struct real *r, uint32_t part, uint32_t slot, uint32_t tok)
{
	const struct kvmm_kv_tensor *t = &r->t[part];

	return (char *)t->base + (uint64_t)slot * t->slot_stride_bytes +
	       (uint64_t)tok * t->token_stride_bytes;
}

static void write_tokens(struct real *r, uint32_t req, uint32_t from, uint32_t to)
{
	uint32_t slot = r->slot[req];

	for (uint32_t tok = from; tok < to; tok++) {
		for (uint32_t p = 0; p < 2 * r->layers; p++) {
			char *a = token_addr(r, p, slot, tok);
			uint64_t v = stamp(req, tok, p);

			memset(a + 8, (int)(tok & 0xff), r->elem_bytes - 8);
			memcpy(a, &v, 8);
		}
		r->st.tokens_written++;
		r->st.bytes_written += 2 * r->layers * r->elem_bytes;
	}
}

/* Checks the stamps of layer 0's K and the last layer's V. */
static void verify_tokens(struct real *r, uint32_t req)
{
	uint32_t slot = r->slot[req], parts[2] = {0, 2 * r->layers - 1};

	for (uint32_t tok = 0; tok < r->written[req]; tok++) {
		for (int k = 0; k < 2; k++) {
			uint64_t v;

			memcpy(&v, token_addr(r, parts[k], slot, tok), 8);
			if (v != stamp(req, tok, parts[k]))
				r->st.verify_errors++;
		}
		r->st.verified_tokens++;
	}
}

static int h_admit(void *ctx, uint32_t req, uint32_t tokens)
{
	struct real *r = ctx;
	int ret;

	if (r->slot[req] != NO_SLOT) { /* readmitted after recompute: start over */
		kvmm_kv_free_slot(r->kv, r->slot[req]);
		r->slot[req] = NO_SLOT;
	}
	ret = kvmm_kv_alloc_slot(r->kv, tokens, &r->slot[req]);
	if (ret) {
		r->slot[req] = NO_SLOT;
		real_error(r, "kvmm_kv_alloc_slot", ret);
		return ret;
	}
	r->written[req] = 0;
	return 0;
}

static int h_step(void *ctx, uint32_t n, const uint32_t *reqs, const uint32_t *tokens)
{
	struct real *r = ctx;
	struct kvmm_kv_stats ks;
	uint32_t k = 0;
	double t0, dt;
	int ret;

	for (uint32_t i = 0; i < n; i++) {
		if (r->slot[reqs[i]] == NO_SLOT)
			continue;
		r->sl[k] = r->slot[reqs[i]];
		r->lens[k++] = tokens[i];
	}
	t0 = now_s();
	ret = kvmm_kv_step(r->kv, k, r->sl, r->lens);
	dt = now_s() - t0;
	r->st.step_calls++;
	r->st.step_s += dt;
	if (dt > r->st.step_max_s)
		r->st.step_max_s = dt;
	if (ret) {
		real_error(r, "kvmm_kv_step", ret);
		return ret; /* nothing written: the slots may lack memory */
	}
	for (uint32_t i = 0; i < n; i++) {
		uint32_t q = reqs[i];

		if (r->slot[q] == NO_SLOT || tokens[i] <= r->written[q])
			continue;
		write_tokens(r, q, r->written[q], tokens[i]);
		r->written[q] = tokens[i];
	}
	if (!kvmm_kv_stats(r->kv, &ks) && ks.mapped_bytes > r->st.peak_mapped_bytes)
		r->st.peak_mapped_bytes = ks.mapped_bytes;
	return 0;
}

static void h_finish(void *ctx, uint32_t req)
{
	struct real *r = ctx;
	int ret;

	if (r->slot[req] == NO_SLOT)
		return;
	ret = kvmm_kv_free_slot(r->kv, r->slot[req]);
	if (ret)
		real_error(r, "kvmm_kv_free_slot", ret);
	r->slot[req] = NO_SLOT;
}

static int h_swap_out(void *ctx, uint32_t req, bool flash)
{
	struct real *r = ctx;
	struct kvmm_op *op;
	double t0 = now_s();
	int ret;

	if (r->slot[req] == NO_SLOT)
		return -EINVAL;
	ret = kvmm_kv_swap_out(r->kv, r->slot[req], flash ? KVMM_TIER_FLASH : KVMM_TIER_HOST, &op);
	if (!ret)
		ret = kvmm_wait(op);
	/*
	 * No flash tier here (user mode: a flash directory without O_DIRECT or
	 * in memory; kernel mode: no backing store): done to DRAM, and counted
	 * so that the report says so.
	 */
	if ((ret == -EOPNOTSUPP || ret == -ENODEV) && flash) {
		if (!r->st.flash_fallbacks++)
			snprintf(r->st.flash_fallback_why, sizeof(r->st.flash_fallback_why),
				 "%s; %s", kvmm_strerror(ret),
				 kvmm_mode(r->ctx) == KVMM_MODE_KERNEL
				     ? "give kvmm.ko a backing store (kvmmctl set default_backing "
				       "PATH)"
				     : "set KVMM_FLASH_DIR to a directory on a disk filesystem");
		ret = kvmm_kv_swap_out(r->kv, r->slot[req], KVMM_TIER_HOST, &op);
		if (!ret)
			ret = kvmm_wait(op);
	}
	r->st.swap_out_s += now_s() - t0;
	if (ret) {
		real_error(r, "kvmm_kv_swap_out", ret);
		return ret;
	}
	r->st.swap_outs++;
	return 0;
}

static int h_swap_in(void *ctx, uint32_t req)
{
	struct real *r = ctx;
	struct kvmm_op *op;
	double t0 = now_s();
	int ret;

	if (r->slot[req] == NO_SLOT)
		return -EINVAL;
	ret = kvmm_kv_swap_in(r->kv, r->slot[req], &op);
	if (!ret)
		ret = kvmm_wait(op);
	r->st.swap_in_s += now_s() - t0;
	if (ret) {
		real_error(r, "kvmm_kv_swap_in", ret);
		return ret;
	}
	r->st.swap_ins++;
	verify_tokens(r, req);
	return 0;
}

void real_backend(struct real *r, struct sim_backend *be)
{
	memset(be, 0, sizeof(*be));
	be->ctx = r;
	be->admit = h_admit;
	be->step = h_step;
	be->finish = h_finish;
	be->drop = h_finish;
	be->swap_out = h_swap_out;
	be->swap_in = h_swap_in;
}

int real_open(const struct real_config *cfg, struct real **rp, char *why, int len)
{
	struct kvmm_config kc = KVMM_CONFIG_INIT;
	struct kvmm_kv_config c = KVMM_KV_CONFIG_INIT;
	uint64_t elem =
	    (uint64_t)cfg->model.kv_heads * cfg->model.head_dim * cfg->model.dtype_bytes;
	uint64_t flash;
	struct real *r = calloc(1, sizeof(*r));
	int ret = -ENOMEM;

	if (!r)
		goto fail;
	r->cfg = *cfg;
	r->layers = cfg->model.layers;
	r->elem_bytes = elem / cfg->scale;
	r->t = calloc(2 * r->layers, sizeof(*r->t));
	r->slot = malloc(cfg->requests * sizeof(*r->slot));
	r->written = calloc(cfg->requests, sizeof(*r->written));
	r->sl = malloc(cfg->max_slots * sizeof(*r->sl));
	r->lens = malloc(cfg->max_slots * sizeof(*r->lens));
	if (!r->t || !r->slot || !r->written || !r->sl || !r->lens)
		goto fail;
	memset(r->slot, 0xff, cfg->requests * sizeof(*r->slot));
	/* A user-mode flash store sized for what could be swapped there, at most 1 GiB. */
	flash = 2 * (cfg->budget_bytes / cfg->scale);
	flash = flash < (64u << 20) ? (64u << 20) : flash > (1u << 30) ? (1u << 30) : flash;
	kc.flash_bytes = flash;
	kc.chunk_bytes = cfg->chunk_bytes / cfg->scale;
	ret = kvmm_open(&r->ctx, &kc);
	if (ret) {
		snprintf(why, len, "kvmm_open: %s", kvmm_strerror(ret));
		goto fail;
	}
	r->st.mode = kvmm_mode(r->ctx) == KVMM_MODE_KERNEL ? "kernel" : "user";
	c.layers = cfg->model.layers;
	c.kv_heads = 1;
	c.dtype_bytes = cfg->model.dtype_bytes;
	c.head_dim = (uint32_t)(r->elem_bytes / c.dtype_bytes);
	c.max_slots = cfg->max_slots;
	c.max_tokens = cfg->max_tokens;
	c.device = KVMM_DEVICE_HOST;
	c.chunk_bytes = cfg->chunk_bytes / cfg->scale;
	c.layout = cfg->token_major ? KVMM_LAYOUT_TOKEN_MAJOR : KVMM_LAYOUT_LAYER_MAJOR;
	/*
	 * libkvmm runs inside the simulated budget: the fast tier plus the
	 * DRAM for swap copies, which libkvmm counts as resident too. Freed
	 * slots stay mapped for the next request until its policy reclaims
	 * them to make room, so the policy engages as it would in an engine;
	 * a step or swap it refuses where the simulation admitted one is a
	 * disagreement, reported (real_stats errors).
	 */
	c.budget_bytes = (cfg->budget_bytes + cfg->dram_swap_bytes) / cfg->scale;
	ret = kvmm_kv_create(r->ctx, &c, &r->kv);
	if (ret) {
		snprintf(why, len, "kvmm_kv_create: %s", kvmm_strerror(ret));
		goto fail;
	}
	for (uint32_t l = 0; l < r->layers; l++) {
		kvmm_kv_tensor(r->kv, l, KVMM_K, &r->t[2 * l]);
		kvmm_kv_tensor(r->kv, l, KVMM_V, &r->t[2 * l + 1]);
	}
	*rp = r;
	return 0;
fail:
	if (ret == -ENOMEM && why[0] == 0)
		snprintf(why, len, "out of memory");
	real_close(r);
	return ret;
}

void real_stats(struct real *r, struct real_stats *st)
{
	*st = r->st;
}

void real_close(struct real *r)
{
	if (!r)
		return;
	if (r->kv)
		kvmm_kv_destroy(r->kv);
	if (r->ctx)
		kvmm_close(r->ctx);
	free(r->t);
	free(r->slot);
	free(r->written);
	free(r->sl);
	free(r->lens);
	free(r);
}
