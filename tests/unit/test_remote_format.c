/* SPDX-License-Identifier: MIT */
/*
 * The remote tier's names and values, without a server: vLLM-compatible
 * block hashes (against fixed vectors and, where Python is installed,
 * against tests/unit/vllm_hash.py on random tokens, which checks its own
 * hand CBOR against cbor2's canonical encoding when cbor2 is there), the
 * layout fingerprint, Redis Cluster hash slots, and the value header: any
 * changed byte, and any field that is not what the reader asks for, makes
 * a value bad.
 */
#include "helpers.h"

#include <kvmm/remote.h>

/* Internals (userspace/lib/remote.h), linked from libkvmm.a. */
#define RM_HDR_BYTES 144
struct rm_hdr_want {
	const struct kvmm_hash256 *fp;
	const struct kvmm_hash256 *chunk;
	const struct kvmm_hash256 *parent;
	uint32_t tokens;
	uint64_t len;
};
uint16_t rm_key_slot(const char *key, size_t len);
void rm_hdr_write(uint8_t *hdr, const struct rm_hdr_want *w, const void *payload);
int rm_value_check(const uint8_t *value, size_t vlen, const struct rm_hdr_want *w);

static void hex(const struct kvmm_hash256 *h, char out[65])
{
	for (int i = 0; i < 32; i++)
		sprintf(out + 2 * i, "%02x", h->b[i]);
}

static void assert_hash(const struct kvmm_hash256 *h, const char *want)
{
	char s[65];

	hex(h, s);
	if (strcmp(s, want))
		fail_msg("hash: expected %s, seen %s", want, s);
}

/* Computed by tests/unit/vllm_hash.py (checked against cbor2). */
static void block_hashes_match_vllm_vectors(void **state)
{
	const uint32_t toks[] = {1, 2, 3, 4, 5, 6, 7, 8, 100000, 70000, 23, 24};
	/* extra_keys = ("lora-a",): an array of one text string */
	const uint8_t lora[] = {0x81, 0x66, 'l', 'o', 'r', 'a', '-', 'a'};
	struct kvmm_hash256 none, h[3];

	(void)state;
	T_OK(kvmm_vllm_none_hash("0", &none));
	assert_hash(&none, "4e1195df020de59e0d65a33a4279f1183e7ae4e5d980e309f8b55adff2e61c3e");
	T_EQ(kvmm_vllm_hash_blocks(&none, toks, 12, 4, h), 3);
	assert_hash(&h[0], "c9d58ba695280d69b243e1e0df813136ca9196b286fb1a021e0b2e028ef071cb");
	assert_hash(&h[1], "24125b23e68883b5c2141db2959d48433fe6bde2f26bd914efad121d154ab2d6");
	assert_hash(&h[2], "1512b90353860cacbdfdb6de0d7547ea661a44618803ea797d1b74f815bb5dd4");
	T_OK(kvmm_vllm_block_hash(&none, toks, 4, lora, sizeof(lora), &h[0]));
	assert_hash(&h[0], "1f36f1a3b150a8ac1e3610368ca25cb8cc67c0a8601615f20a81534e446edada");
	/* a partial block is not hashed */
	T_EQ(kvmm_vllm_hash_blocks(&none, toks, 3, 4, h), 0);
	T_EQ(kvmm_vllm_hash_blocks(&none, toks, 4, 0, h), -EINVAL);
	T_EQ(kvmm_vllm_block_hash(NULL, toks, 4, NULL, 0, h), -EINVAL);
}

/* Random sequences (token ids of every CBOR integer width, blocks of 1 to
 * 300 tokens, 0 to 3 extra strings) against the Python reference. */
static void block_hashes_match_the_python_reference(void **state)
{
	const char *top = getenv("KVMM_TEST_TOP");
	char cmd[1024], path[512], out[80];
	uint32_t *toks = malloc(4096 * sizeof(*toks));
	struct kvmm_hash256 *h = malloc(4096 * sizeof(*h)), none;
	const char *py = access("/usr/bin/python3", X_OK) ? "python3" : "/usr/bin/python3";

	(void)state;
	snprintf(path, sizeof(path), "%s/tests/unit/vllm_hash.py", top ? top : ".");
	if (access(path, R_OK) || system("command -v python3 >/dev/null 2>&1")) {
		free(toks);
		free(h);
		T_SKIP("no python3 or no %s (KVMM_TEST_TOP unset?)", path);
	}
	srand(19);
	for (int round = 0; round < 20; round++) {
		uint32_t bs = 1 + (uint32_t)rand() % 300, n = (uint32_t)rand() % 2048;
		int nextra = rand() % 4;
		char in[] = "/tmp/kvmm-vllm-hash-XXXXXX";
		int fd = mkstemp(in);
		FILE *f = fdopen(fd, "w"), *p;
		uint8_t extra[64];
		size_t elen = 0;

		assert_non_null(f);
		fprintf(f, "{\"seed\": \"s%d\", \"block\": %u, \"tokens\": [", round, bs);
		for (uint32_t i = 0; i < n; i++) {
			static const uint32_t widths[] = {23, 255, 65535, 0xffffffffu};

			toks[i] = (uint32_t)rand() % (widths[rand() % 4] + 1ULL);
			fprintf(f, "%s%u", i ? ", " : "", toks[i]);
		}
		fprintf(f, "], \"extra\": ");
		if (!nextra) {
			fprintf(f, "null}\n");
		} else {
			extra[elen++] = (uint8_t)(0x80 | nextra);
			fprintf(f, "[");
			for (int e = 0; e < nextra; e++) {
				extra[elen++] = 0x60 | 2;
				extra[elen++] = (uint8_t)('a' + e);
				extra[elen++] = (uint8_t)('0' + round % 10);
				fprintf(f, "%s\"%c%c\"", e ? ", " : "", 'a' + e, '0' + round % 10);
			}
			fprintf(f, "]}\n");
		}
		fclose(f);
		snprintf(cmd, sizeof(cmd), "%s %s < %s 2>/dev/null", py, path, in);
		p = popen(cmd, "r");
		assert_non_null(p);
		char seed[16];
		snprintf(seed, sizeof(seed), "s%d", round);
		T_OK(kvmm_vllm_none_hash(seed, &none));
		assert_non_null(fgets(out, sizeof(out), p));
		out[strcspn(out, "\n")] = 0;
		assert_hash(&none, out);
		for (uint32_t i = 0; i < n / bs; i++) {
			T_OK(kvmm_vllm_block_hash(i ? &h[i - 1] : &none, toks + i * bs, bs,
						  nextra ? extra : NULL, elen, &h[i]));
			if (!fgets(out, sizeof(out), p))
				fail_msg("round %d: the reference gave fewer than %u blocks", round,
					 n / bs);
			out[strcspn(out, "\n")] = 0;
			assert_hash(&h[i], out);
		}
		assert_null(fgets(out, sizeof(out), p));
		T_EQ(pclose(p), 0);
		unlink(in);
		if (!nextra)
			T_EQ(kvmm_vllm_hash_blocks(&none, toks, n, bs, h + 2048), n / bs);
		for (uint32_t i = 0; !nextra && i < n / bs; i++)
			assert_memory_equal(&h[i], &h[2048 + i], sizeof(h[i]));
	}
	free(toks);
	free(h);
}

static const struct kvmm_remote_layout base_layout = {
    .model = "org/model",
    .revision = "abc123",
    .dtype = "bf16",
    .layers = 32,
    .kv_heads = 8,
    .head_dim = 128,
    .dtype_bytes = 2,
    .block_tokens = 16,
    .chunk_tokens = 256,
    .tp_rank = 0,
    .tp_size = 1,
};

static void every_layout_field_changes_the_fingerprint(void **state)
{
	struct kvmm_hash256 fp0, fp;
	struct kvmm_remote_layout l;

	(void)state;
	T_OK(kvmm_remote_fingerprint(&base_layout, &fp0));
	T_OK(kvmm_remote_fingerprint(&base_layout, &fp));
	assert_memory_equal(&fp0, &fp, sizeof(fp));
	for (int f = 0; f < 11; f++) {
		l = base_layout;
		switch (f) {
		case 0:
			l.model = "org/model2";
			break;
		case 1:
			l.revision = "abc124";
			break;
		case 2:
			l.dtype = "f16";
			break;
		case 3:
			l.layers++;
			break;
		case 4:
			l.kv_heads++;
			break;
		case 5:
			l.head_dim = 64;
			break;
		case 6:
			l.dtype_bytes = 4;
			break;
		case 7:
			l.block_tokens = 32;
			break;
		case 8:
			l.chunk_tokens = 512;
			break;
		case 9:
			l.tp_rank = 1, l.tp_size = 2;
			break;
		case 10:
			l.tp_size = 2;
			break;
		}
		T_OK(kvmm_remote_fingerprint(&l, &fp));
		if (!memcmp(&fp0, &fp, sizeof(fp)))
			fail_msg("layout field %d does not change the fingerprint", f);
	}
	l = base_layout;
	l.chunk_tokens = 250; /* not a multiple of block_tokens */
	T_EQ(kvmm_remote_fingerprint(&l, &fp), -EINVAL);
	l = base_layout;
	l.model = NULL;
	T_EQ(kvmm_remote_fingerprint(&l, &fp), -EINVAL);
	l = base_layout;
	l.tp_rank = 2, l.tp_size = 2;
	T_EQ(kvmm_remote_fingerprint(&l, &fp), -EINVAL);
}

/* Redis Cluster's own examples: CRC16("123456789") = 0x31c3. */
static void keys_hash_to_redis_cluster_slots(void **state)
{
	(void)state;
	T_EQ(rm_key_slot("123456789", 9), 0x31c3 & 16383);
	T_EQ(rm_key_slot("foo", 3), 12182);
	T_EQ(rm_key_slot("{user1000}.following", 20), rm_key_slot("{user1000}.followers", 20));
	T_EQ(rm_key_slot("{user1000}.following", 20), rm_key_slot("user1000", 8));
	T_EQ(rm_key_slot("foo{}{bar}", 10), rm_key_slot("foo{}{bar}", 10));
	T_EQ(rm_key_slot("foo{}{bar}", 10) == rm_key_slot("bar", 3), 0); /* empty tag: whole key */
	T_EQ(rm_key_slot("foo{{bar}}zap", 13), rm_key_slot("{bar", 4));
}

static void any_changed_byte_makes_a_value_bad(void **state)
{
	struct kvmm_hash256 fp = {{1}}, chunk = {{2}}, parent = {{3}}, other = {{4}};
	const size_t len = 1000;
	uint8_t *v = malloc(RM_HDR_BYTES + len);
	struct rm_hdr_want w = {&fp, &chunk, &parent, 256, len}, w2;

	(void)state;
	for (size_t i = 0; i < len; i++)
		v[RM_HDR_BYTES + i] = (uint8_t)(i * 7);
	rm_hdr_write(v, &w, v + RM_HDR_BYTES);
	T_OK(rm_value_check(v, RM_HDR_BYTES + len, &w));
	for (size_t i = 0; i < RM_HDR_BYTES + len; i += i < RM_HDR_BYTES ? 1 : 97) {
		for (int bit = 0; bit < 8; bit += 3) {
			v[i] ^= (uint8_t)(1 << bit);
			if (rm_value_check(v, RM_HDR_BYTES + len, &w) != -EBADMSG)
				fail_msg("byte %zu bit %d changed, the value still checks", i, bit);
			v[i] ^= (uint8_t)(1 << bit);
		}
	}
	T_OK(rm_value_check(v, RM_HDR_BYTES + len, &w));
	T_EQ(rm_value_check(v, RM_HDR_BYTES + len - 1, &w), -EBADMSG); /* truncated */
	T_EQ(rm_value_check(v, RM_HDR_BYTES - 1, &w), -EBADMSG);
	w2 = w, w2.fp = &other;
	T_EQ(rm_value_check(v, RM_HDR_BYTES + len, &w2), -EBADMSG);
	w2 = w, w2.chunk = &other;
	T_EQ(rm_value_check(v, RM_HDR_BYTES + len, &w2), -EBADMSG);
	w2 = w, w2.parent = &other;
	T_EQ(rm_value_check(v, RM_HDR_BYTES + len, &w2), -EBADMSG);
	w2 = w, w2.tokens = 128;
	T_EQ(rm_value_check(v, RM_HDR_BYTES + len, &w2), -EBADMSG);
	w2 = w, w2.len = len - 1;
	T_EQ(rm_value_check(v, RM_HDR_BYTES + len - 1, &w2), -EBADMSG);
	free(v);
}

static void open_refuses_bad_configs(void **state)
{
	struct kvmm_remote_config c = KVMM_REMOTE_CONFIG_INIT;
	struct kvmm_remote *r = NULL;

	(void)state;
	c.layout = base_layout;
	c.hash_seed = "0";
	T_EQ(kvmm_remote_open(&c, &r), -EINVAL); /* no servers */
	c.servers = "127.0.0.1";		 /* no port */
	T_EQ(kvmm_remote_open(&c, &r), -EINVAL);
	c.servers = "127.0.0.1:1";
	c.layout.dtype = NULL;
	T_EQ(kvmm_remote_open(&c, &r), -EINVAL);
	c.layout = base_layout;
	c.size = 8;
	T_EQ(kvmm_remote_open(&c, &r), -EINVAL);
	c.size = sizeof(c);
	/* Nothing listens on port 1 (in a guest without loopback, nothing is there at all). */
	{
		int err = kvmm_remote_open(&c, &r);

		if (err != -ECONNREFUSED && err != -ENETUNREACH)
			fail_msg("kvmm_remote_open of 127.0.0.1:1: expected ECONNREFUSED or "
				 "ENETUNREACH, saw %d (%s)",
				 err, strerror(-err));
	}
	assert_null(r);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(block_hashes_match_vllm_vectors),
	    cmocka_unit_test(block_hashes_match_the_python_reference),
	    cmocka_unit_test(every_layout_field_changes_the_fingerprint),
	    cmocka_unit_test(keys_hash_to_redis_cluster_slots),
	    cmocka_unit_test(any_changed_byte_makes_a_value_bad),
	    cmocka_unit_test(open_refuses_bad_configs),
	};

	T_LIST(argc, argv, T_GROUP(tests));
	return cmocka_run_group_tests_name("remote_format", tests, NULL, NULL);
}
