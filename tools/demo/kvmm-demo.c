/*
 * kvmm-demo: a KV cache for an 8B-class model served from one kvmm region.
 *
 * The cache is token-major ([slot][token][layer][K|V][head][dim], f16), so
 * one 2 MiB chunk holds 16 tokens of every layer. Requests with random
 * prompt and output lengths arrive into free slots; every decode step the
 * cache is made resident up to each slot's length plus a lookahead (one
 * ENSURE per slot), the new token's K/V is written through the mapping, and
 * finished slots are discarded. The table compares what kvmm keeps resident
 * with a static max-length reservation of the same cache.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include <linux/kvmm.h>

/* Llama-3-8B KV shape: 32 layers, 8 KV heads, head_dim 128, f16. */
#define LAYERS 32
#define KV_HEADS 8
#define HEAD_DIM 128
#define TOKEN_BYTES ((uint64_t)LAYERS * 2 * KV_HEADS * HEAD_DIM * 2)
#define SLOTS 8
#define MAX_TOKENS 8192
#define CHUNK (2u << 20)
#define LOOKAHEAD 16
#define STEPS 1200

struct slot {
	uint32_t len, target;	/* tokens held, tokens at completion */
	uint32_t id;
	uint64_t ensured;	/* bytes made resident so far */
};

static uint64_t rng = 0x2545f4914f6cdd1dULL;

static uint32_t rnd(uint32_t lo, uint32_t hi)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return lo + (uint32_t)(rng % (hi - lo + 1));
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int range_ioctl(int fd, unsigned long cmd, uint64_t off, uint64_t len)
{
	struct kvmm_range r = {.offset = off, .length = len};

	return ioctl(fd, cmd, &r) ? -errno : 0;
}

static void sysfs_print(const char *name)
{
	char path[128], buf[64] = "";
	FILE *f;

	snprintf(path, sizeof(path), "/sys/kernel/kvmm/%s", name);
	f = fopen(path, "r");
	if (f && fgets(buf, sizeof(buf), f))
		buf[strcspn(buf, "\n")] = 0;
	if (f)
		fclose(f);
	printf("  %-22s %s\n", name, buf);
}

int main(void)
{
	uint64_t slot_bytes = (uint64_t)MAX_TOKENS * TOKEN_BYTES;
	uint64_t size = SLOTS * slot_bytes, served = 0, tokens = 0;
	struct kvmm_region_create c = {.size = size, .chunk_bytes = CHUNK,
				       .numa_node = KVMM_NUMA_LOCAL};
	struct slot s[SLOTS] = {{0}};
	double t_ensure = 0, t0;
	uint32_t next_id = 1;
	uint8_t *kv;
	int dev, err;

	dev = open(KVMM_DEVICE_PATH, O_RDWR);
	if (dev < 0 || ioctl(dev, KVMM_IOC_REGION_CREATE, &c)) {
		fprintf(stderr, "kvmm-demo: cannot create a region on %s: %s\n",
			KVMM_DEVICE_PATH, strerror(errno));
		return 1;
	}
	kv = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, c.fd, 0);
	if (kv == MAP_FAILED) {
		perror("kvmm-demo: mmap");
		return 1;
	}
	printf("KV cache: llama-3-8b shape (%d layers, %d KV heads, head_dim %d, f16), "
	       "%d slots x %d tokens, token-major, %u KiB per token\n",
	       LAYERS, KV_HEADS, HEAD_DIM, SLOTS, MAX_TOKENS, (unsigned)(TOKEN_BYTES >> 10));
	printf("one region of %.1f GiB virtual, chunk %u MiB = %u tokens; requests: prompt 32-512, "
	       "output 16-256 tokens\n\n",
	       size / (double)(1ULL << 30), CHUNK >> 20, (unsigned)(CHUNK / TOKEN_BYTES));
	printf("%6s %7s %9s %13s %14s %8s\n", "step", "active", "tokens", "resident MiB",
	       "static MiB", "waste");

	t0 = now();
	for (int step = 1; step <= STEPS; step++) {
		uint64_t held = 0;
		int active = 0;

		for (int i = 0; i < SLOTS; i++) {
			struct slot *sl = &s[i];
			uint64_t base = i * slot_bytes, need;
			int admitted = !sl->target;
			double t;

			if (admitted) { /* a new request: its prompt at once */
				sl->id = next_id++;
				sl->len = rnd(32, 512);
				sl->target = sl->len + rnd(16, 256);
				sl->ensured = 0;
			} else {
				sl->len++;
			}
			need = ((uint64_t)(sl->len + LOOKAHEAD) * TOKEN_BYTES + CHUNK - 1) / CHUNK * CHUNK;
			if (need > sl->ensured) {
				t = now();
				err = range_ioctl(c.fd, KVMM_IOC_ENSURE, base + sl->ensured,
						  need - sl->ensured);
				t_ensure += now() - t;
				if (err) {
					fprintf(stderr, "ENSURE: %s\n", strerror(-err));
					return 1;
				}
				sl->ensured = need;
			}
			/* Prefill writes the whole prompt's K/V, decode one token's. */
			{
				uint32_t first = sl->len - 1, nr = 1;

				if (admitted) {
					first = 0;
					nr = sl->len;
				}
				memset(kv + base + (uint64_t)first * TOKEN_BYTES,
				       (int)(sl->id & 0xff), nr * TOKEN_BYTES);
				tokens += nr;
			}
			if (sl->len >= sl->target) {
				/* Finished: check the first token survived, then free. */
				if (kv[base] != (uint8_t)(sl->id & 0xff) && sl->len > 1) {
					fprintf(stderr, "slot %d: data lost\n", i);
					return 1;
				}
				range_ioctl(c.fd, KVMM_IOC_DISCARD, base, sl->ensured);
				sl->target = 0;
				served++;
				continue;
			}
			held += sl->len;
			active++;
		}
		if (step % 100 == 0) {
			struct kvmm_region_stat st;

			ioctl(c.fd, KVMM_IOC_STAT, &st);
			printf("%6d %7d %9llu %13.0f %14.0f %7.1f%%\n", step, active,
			       (unsigned long long)held, st.resident_bytes / 1048576.0,
			       size / 1048576.0,
			       st.resident_bytes ? 100.0 * (1 - held * TOKEN_BYTES /
							    (double)st.resident_bytes) : 0);
		}
	}
	printf("\n%llu requests finished, %llu tokens written in %.2f s; ENSURE took %.1f%% of it\n",
	       (unsigned long long)served, (unsigned long long)tokens, now() - t0,
	       100 * t_ensure / (now() - t0));
	printf("a static reservation would pin %.1f GiB; kvmm held at most what the table shows\n\n",
	       size / (double)(1ULL << 30));
	munmap(kv, size);
	close(c.fd);

	printf("kvmm status (/sys/kernel/kvmm):\n");
	sysfs_print("version");
	sysfs_print("pool_limit_bytes");
	sysfs_print("pool_used_bytes");
	sysfs_print("regions");
	sysfs_print("stats/faults");
	sysfs_print("stats/zero_fills");
	sysfs_print("stats/discards");
	close(dev);
	return 0;
}
