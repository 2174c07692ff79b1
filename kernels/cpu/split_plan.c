/*
 * How many KV splits the CUDA decode uses: FlashAttention's wave-efficiency
 * rule. Plain C on the host side so the rule is tested on any machine.
 */
#include <math.h>

#include "cpu.h"

/* No split below this many tokens per split: the combine would cost more (FlashInfer's floor). */
#define MIN_SPLIT_TOKENS 256
#define MAX_SPLITS	 128
/* Split only while the unsplit grid fills less than this share of the GPU. */
#define FULL_GPU_SHARE 0.8
/* Take the fewest splits whose wave efficiency is this close to the best. */
#define WAVE_EFF_SLACK 0.85

int attn_plan_splits(double blocks, double slots, int32_t max_seq_len)
{
	double eff[MAX_SPLITS + 1], best = 0;
	int max_splits;

	if (blocks <= 0 || slots <= 0 || max_seq_len <= MIN_SPLIT_TOKENS ||
	    blocks >= FULL_GPU_SHARE * slots)
		return 1;
	max_splits = (max_seq_len + MIN_SPLIT_TOKENS - 1) / MIN_SPLIT_TOKENS;
	max_splits = max_splits < MAX_SPLITS ? max_splits : MAX_SPLITS;
	for (int s = 1; s <= max_splits; s++) {
		double waves = blocks * s / slots;

		eff[s] = waves / ceil(waves);
		best = eff[s] > best ? eff[s] : best;
	}
	for (int s = 1; s <= max_splits; s++) {
		/* A count that leaves the tokens per split unchanged only adds empty blocks. */
		if (s > 1 && (max_seq_len + s - 1) / s == (max_seq_len + s - 2) / (s - 1))
			continue;
		if (eff[s] >= WAVE_EFF_SLACK * best)
			return s;
	}
	return 1;
}
