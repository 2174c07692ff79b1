/* Test data, golden and error rule for the attention kernels (see attn_util.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attn_util.h"

/* Token-major test caches hold two layers and use the second one. */
#define TM_LAYERS 2
#define TM_LAYER  1
/* Extra elements between token-major slot regions: slot stride is not the region size. */
#define TM_GAP 4096

static uint64_t rng_next(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545f4914f6cdd1dULL;
}

/* Uniform in [-1, 1) on a 2^-23 grid, rounded to what dt holds. */
static double rng_value(uint64_t *s, enum kvmm_attn_dtype dt)
{
	double x = ldexp((double)(rng_next(s) >> 40), -23) - 1.0;

	return attn_gold_round(dt, x);
}

static void fill_random(void *buf, size_t n, enum kvmm_attn_dtype dt, uint64_t *s)
{
	for (size_t i = 0; i < n; i++)
		attn_gold_store(buf, dt, (int64_t)i, rng_value(s, dt));
}

const enum kvmm_attn_dtype attn_grid_dtypes[3] = {KVMM_ATTN_F32, KVMM_ATTN_F16, KVMM_ATTN_BF16};
const int attn_grid_groups[3] = {1, 4, 8};

struct attn_case attn_grid_case(size_t i, const int32_t *seq_lens, const int32_t *q_lens)
{
	static const int dims[] = {64, 128};
	static const enum attn_layout layouts[] = {ATTN_LAYER_MAJOR, ATTN_TOKEN_MAJOR};

	/* dtype outermost, layout innermost */
	return (struct attn_case){
	    .dtype = attn_grid_dtypes[i / 12],
	    .head_dim = dims[i / 6 % 2],
	    .kv_heads = 2,
	    .group = attn_grid_groups[i / 2 % 3],
	    .layout = layouts[i % 2],
	    .batch = 4,
	    .seq_lens = seq_lens,
	    .q_lens = q_lens,
	};
}

const char *attn_case_name(const struct attn_case *c, char *buf, size_t len)
{
	snprintf(buf, len, "%s D=%d kv_heads=%d g=%d %s batch=%d%s", kvmm_attn_dtype_name(c->dtype),
		 c->head_dim, c->kv_heads, c->group,
		 c->layout == ATTN_TOKEN_MAJOR ? "token-major" : "layer-major", c->batch,
		 c->q_lens ? " prefill" : " decode");
	return buf;
}

static int32_t max_of(const int32_t *v, int n, int32_t floor)
{
	for (int i = 0; i < n; i++)
		floor = v[i] > floor ? v[i] : floor;
	return floor;
}

int attn_data_init(struct attn_data *d, const struct attn_case *c, uint64_t seed)
{
	int hd = c->kv_heads * c->head_dim, qh = c->kv_heads * c->group, dim = c->head_dim;
	int32_t max_q = c->q_lens ? max_of(c->q_lens, c->batch, 1) : 1;
	int32_t max_tok = max_of(c->seq_lens, c->batch, 1) + 3;
	size_t es = kvmm_attn_dtype_size(c->dtype), cache_elems;
	struct kvmm_attn_tensor k = {.dtype = c->dtype, .head_stride = dim, .dim_stride = 1};
	struct kvmm_attn_tensor v;
	uint64_t s = seed | 1;

	memset(d, 0, sizeof(*d));
	d->c = *c;
	if (c->layout == ATTN_LAYER_MAJOR) {
		/* Slot 0 stays unused so the slot map is not the identity. */
		k.slot_stride = (int64_t)max_tok * hd;
		k.token_stride = hd;
		cache_elems = 2 * (size_t)(c->batch + 1) * max_tok * hd;
	} else {
		k.slot_stride = (int64_t)max_tok * TM_LAYERS * 2 * hd + TM_GAP;
		k.token_stride = TM_LAYERS * 2 * hd;
		cache_elems = (size_t)(c->batch + 1) * k.slot_stride;
	}
	d->cache_bytes = cache_elems * es;
	d->rows = (size_t)c->batch * max_q * qh;
	d->q_bytes = d->rows * dim * es;
	d->o_bytes = d->q_bytes;
	d->cache = malloc(d->cache_bytes);
	d->q = malloc(d->q_bytes);
	d->o = malloc(d->o_bytes);
	d->out = calloc(d->rows * dim, sizeof(float));
	d->seq_lens = malloc(sizeof(int32_t) * (size_t)c->batch);
	d->q_lens = malloc(sizeof(int32_t) * (size_t)c->batch);
	d->slots = malloc(sizeof(int32_t) * (size_t)c->batch);
	if (!d->cache || !d->q || !d->o || !d->out || !d->seq_lens || !d->q_lens || !d->slots) {
		attn_data_free(d);
		return -1;
	}
	fill_random(d->cache, cache_elems, c->dtype, &s);
	fill_random(d->q, d->rows * dim, c->dtype, &s);
	memset(d->o, 0xff, d->o_bytes); /* NaN everywhere: unwritten rows show */
	v = k;
	if (c->layout == ATTN_LAYER_MAJOR) {
		k.data = d->cache;
		v.data = (char *)d->cache + cache_elems / 2 * es;
	} else {
		k.data = (char *)d->cache + (size_t)(TM_LAYER * 2 + 0) * hd * es;
		v.data = (char *)d->cache + (size_t)(TM_LAYER * 2 + 1) * hd * es;
	}
	for (int b = 0; b < c->batch; b++) {
		d->seq_lens[b] = c->seq_lens[b];
		d->q_lens[b] = c->q_lens ? c->q_lens[b] : 1;
		d->slots[b] = c->batch - b;
	}
	d->p = (struct kvmm_attn_params){
	    .batch = c->batch,
	    .q_heads = qh,
	    .kv_heads = c->kv_heads,
	    .head_dim = dim,
	    .scale = 1.0f / sqrtf((float)dim),
	    .seq_lens = d->seq_lens,
	    .q_lens = c->q_lens ? d->q_lens : NULL,
	    .max_q_len = max_q,
	    .max_seq_len = max_of(c->seq_lens, c->batch, 0),
	    .slots = d->slots,
	    .q = {d->q, c->dtype, (int64_t)max_q * qh * dim, (int64_t)qh * dim, dim, 1},
	    .k = k,
	    .v = v,
	    .o = {d->o, c->dtype, (int64_t)max_q * qh * dim, (int64_t)qh * dim, dim, 1},
	};
	return 0;
}

void attn_data_free(struct attn_data *d)
{
	free(d->cache);
	free(d->q);
	free(d->o);
	attn_gold_free(&d->gold);
	free(d->out);
	free(d->seq_lens);
	free(d->q_lens);
	free(d->slots);
	memset(d, 0, sizeof(*d));
}

/* Element of K or V for entry b, token t, KV head h, dim 0, as an offset. */
static int64_t kv_off(const struct kvmm_attn_params *p, const struct kvmm_attn_tensor *t, int b,
		      int32_t tok, int h)
{
	return p->slots[b] * t->slot_stride + (int64_t)tok * t->token_stride + h * t->head_stride;
}

static size_t row_index(const struct attn_data *d, int b, int i, int h)
{
	return ((size_t)b * d->p.max_q_len + i) * d->p.q_heads + h;
}

void attn_data_expect(struct attn_data *d)
{
	attn_gold_free(&d->gold);
	if (attn_gold_run(&d->p, d->c.q_lens != NULL, &d->gold) != 0)
		abort();
}

void attn_data_expect_segmented(struct attn_data *d, int32_t seg)
{
	attn_gold_free(&d->gold);
	if (attn_gold_run_segmented(&d->p, seg, &d->gold) != 0)
		abort();
}

int attn_paged_init(struct attn_paged *pg, const struct attn_data *d, int block_size, uint64_t seed)
{
	const struct kvmm_attn_params *p = &d->p;
	int dim = p->head_dim, hd = p->kv_heads * dim;
	int32_t max_blocks = (p->max_seq_len + block_size - 1) / block_size, nblocks = 0;
	size_t es = kvmm_attn_dtype_size(d->c.dtype), half;
	int32_t *perm;
	uint64_t s = seed | 1;

	memset(pg, 0, sizeof(*pg));
	if (max_blocks < 1)
		max_blocks = 1;
	for (int b = 0; b < p->batch; b++)
		nblocks += (d->seq_lens[b] + block_size - 1) / block_size;
	half = ((size_t)nblocks + 1) * block_size * hd * es;
	pg->blocks_bytes = 2 * half;
	pg->blocks = malloc(pg->blocks_bytes);
	pg->table = malloc(sizeof(int32_t) * (size_t)p->batch * max_blocks);
	perm = malloc(sizeof(int32_t) * ((size_t)nblocks + 1));
	if (!pg->blocks || !pg->table || !perm) {
		free(perm);
		attn_paged_free(pg);
		return -1;
	}
	/* Physical blocks in shuffled order; unused table entries point nowhere. */
	for (int32_t i = 0; i < nblocks; i++)
		perm[i] = i;
	for (int32_t i = nblocks - 1; i > 0; i--) {
		int32_t j = (int32_t)(rng_next(&s) % (uint64_t)(i + 1)), t = perm[i];

		perm[i] = perm[j];
		perm[j] = t;
	}
	for (size_t i = 0; i < (size_t)p->batch * max_blocks; i++)
		pg->table[i] = -1;
	memset(pg->blocks, 0, pg->blocks_bytes);
	pg->p = *p;
	pg->p.k =
	    (struct kvmm_attn_tensor){pg->blocks, d->c.dtype, (int64_t)block_size * hd, hd, dim, 1};
	pg->p.v = pg->p.k;
	pg->p.v.data = (char *)pg->blocks + half;
	pg->p.slots = NULL;
	pg->p.paged = (struct kvmm_attn_paged){pg->table, max_blocks, block_size};
	for (int b = 0, next = 0; b < p->batch; b++)
		for (int32_t t = 0; t < d->seq_lens[b]; t++) {
			int32_t *entry = &pg->table[(size_t)b * max_blocks + t / block_size];
			int64_t dst;

			if (t % block_size == 0)
				*entry = perm[next++];
			dst = *entry * pg->p.k.slot_stride + (int64_t)(t % block_size) * hd;
			for (int h = 0; h < p->kv_heads; h++) {
				memcpy((char *)pg->p.k.data + (dst + h * dim) * es,
				       (const char *)p->k.data + kv_off(p, &p->k, b, t, h) * es,
				       dim * es);
				memcpy((char *)pg->p.v.data + (dst + h * dim) * es,
				       (const char *)p->v.data + kv_off(p, &p->v, b, t, h) * es,
				       dim * es);
			}
		}
	free(perm);
	return 0;
}

void attn_paged_free(struct attn_paged *pg)
{
	free(pg->blocks);
	free(pg->table);
	memset(pg, 0, sizeof(*pg));
}

int attn_paged_expect(const struct attn_paged *pg, const struct attn_data *d)
{
	char name[128];

	if (attn_gold_same_kv(&pg->p, &d->p))
		return 1;
	fprintf(stderr,
		"golden [%s]: expected the same K and V through the block table (block size %d), "
		"seen a difference\n",
		attn_case_name(&d->c, name, sizeof(name)), pg->p.paged.block_size);
	return 0;
}

int attn_check_close(const struct attn_data *d, const void *out, unsigned flags, const char *what)
{
	struct attn_gold_prec pr = {
	    .out = flags & ATTN_CHECK_OUT_F32 ? KVMM_ATTN_F32 : d->c.dtype,
	    .u_acc = flags & ATTN_CHECK_F64 ? 0x1p-53 : 0x1p-24,
	    .u_p = flags & ATTN_CHECK_MMA ? attn_gold_unit(d->c.dtype) : 0,
	    .mma = !!(flags & ATTN_CHECK_MMA),
	};
	const struct attn_gold *g = &d->gold;
	int dim = d->p.head_dim, wb = 0, wi = 0, wh = 0, wd = 0, bad = 0;
	double worst = -1, wg = 0, wx = 0, wtol = 0;
	char name[128];

	for (int b = 0; b < d->c.batch; b++)
		for (int i = 0; i < d->q_lens[b]; i++)
			for (int h = 0; h < d->p.q_heads; h++)
				for (int e = 0; e < dim; e++) {
					size_t r = row_index(d, b, i, h), at = r * dim + e;
					double x = attn_gold_load(out, pr.out, (int64_t)at);
					double tol = attn_gold_bound(g, r, e, &pr);
					double err = fabs(x - g->o[at]);
					/* error over bound; NaN counts as the worst */
					double over = isnan(err) ? INFINITY
						      : tol > 0	 ? err / tol
						      : err > 0	 ? INFINITY
								 : 0;

					if (err <= tol)
						continue;
					bad++;
					if (over > worst) {
						worst = over;
						wb = b, wi = i, wh = h, wd = e;
						wg = g->o[at], wx = x, wtol = tol;
					}
				}
	if (!bad)
		return 1;
	fprintf(stderr,
		"%s [%s]: expected every element within its bound, seen %d outside; worst at "
		"entry %d token %d head %d dim %d (%d keys): golden %.9f, got %.9f, error %.3g, "
		"bound %.3g\n",
		what, attn_case_name(&d->c, name, sizeof(name)), bad, wb, wi, wh, wd,
		g->keys[row_index(d, wb, wi, wh)], wg, wx, fabs(wx - wg), wtol);
	return 0;
}

int attn_check_equal(const struct attn_data *d, const void *a, const void *b, const char *what)
{
	size_t es = kvmm_attn_dtype_size(d->c.dtype), row = (size_t)d->p.head_dim * es;
	char name[128];

	for (int e = 0; e < d->c.batch; e++)
		for (int i = 0; i < d->q_lens[e]; i++)
			for (int h = 0; h < d->p.q_heads; h++) {
				size_t at = row_index(d, e, i, h) * row;

				if (memcmp((const char *)a + at, (const char *)b + at, row) == 0)
					continue;
				for (int x = 0; x < d->p.head_dim; x++) {
					double va =
					    attn_gold_load(a, d->c.dtype, (int64_t)(at / es) + x);
					double vb =
					    attn_gold_load(b, d->c.dtype, (int64_t)(at / es) + x);

					if (memcmp(&va, &vb, sizeof(va)) == 0)
						continue;
					fprintf(stderr,
						"%s [%s]: expected bitwise equal outputs, entry %d "
						"token %d head %d dim %d: %.9g vs %.9g\n",
						what, attn_case_name(&d->c, name, sizeof(name)), e,
						i, h, x, va, vb);
					return 0;
				}
			}
	return 1;
}
