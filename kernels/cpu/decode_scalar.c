/* Portable decode step: per-token online softmax in f32 (base 2), state carried on. */
#include <math.h>

#include "cpu.h"
#include "dtype.h"

void attn_decode_chunk_scalar(const struct attn_chunk *c)
{
	int dim = c->dim;

	for (int h = 0; h < c->g; h++) {
		const float *q = c->q + (int64_t)h * dim;
		float *o = c->o + (int64_t)h * dim;
		float m = c->m[h], l = c->l[h];

		for (int32_t t = c->start; t < c->end; t++) {
			const char *k = attn_chunk_row(c->k, c->k_tok, c->k_blk, c, t);
			const char *v = attn_chunk_row(c->v, c->v_tok, c->v_blk, c, t);
			float s = 0, p;

			for (int d = 0; d < dim; d++)
				s += q[d] * attn_load(k, c->dtype, d);
			if (s > m) {
				float alpha = exp2f(m - s);

				for (int d = 0; d < dim; d++)
					o[d] *= alpha;
				l *= alpha;
				m = s;
			}
			p = exp2f(s - m);
			l += p;
			for (int d = 0; d < dim; d++)
				o[d] += p * attn_load(v, c->dtype, d);
		}
		c->m[h] = m;
		c->l[h] = l;
	}
}
