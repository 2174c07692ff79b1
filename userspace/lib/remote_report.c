/* SPDX-License-Identifier: MIT */
/*
 * The remote tier's registry file, for kvmmctl remote and kvmmctl metrics:
 * one per open handle, named PID-N in $KVMM_REMOTE_REGISTRY (default
 * /tmp/kvmm-remote-UID, "none": no file), removed at close. Two lines of
 * key=value words (docs/remote.md lists them):
 *   remote pid= start= comm= servers= model= dtype= layers= tp= chunk_tokens= fingerprint=
 *   stats  one word per counter of struct kvmm_remote_stats
 * Strings are cut to one word (no blanks, no '='); a reader treats the file
 * as untrusted text all the same.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "remote.h"

/* @s as one word into @buf: blanks, '=' and control characters become '_'. */
static const char *rm_word(const char *s, char *buf, size_t len)
{
	size_t n = 0;

	for (; s && *s && n + 1 < len; s++, n++)
		buf[n] = (*s <= ' ' || *s == '=' || *s == 0x7f) ? '_' : *s;
	if (!n && len > 1)
		buf[n++] = '-';
	buf[n] = 0;
	return buf;
}

void rm_report_write(const char *dir, const char *name, const char *servers,
		     const struct kvmm_remote_layout *l, const struct kvmm_hash256 *fp,
		     const struct kvmm_remote_stats *st)
{
	char comm[64], srv[256], model[128], dtype[32], fph[17];
	struct kvmm_registry_file f;
	FILE *out;

	if (kvmm_registry_begin(&f, dir, name))
		return;
	out = fdopen(dup(f.fd), "w");
	if (!out) {
		kvmm_registry_end(&f, false);
		return;
	}
	for (int i = 0; i < 8; i++)
		snprintf(fph + 2 * i, 3, "%02x", fp->b[i]);
	fprintf(out,
		"remote pid=%d start=%llu comm=%s servers=%s model=%s dtype=%s layers=%u "
		"kv_heads=%u head_dim=%u tp=%u/%u chunk_tokens=%u fingerprint=%s nodes=%u "
		"cluster=%u\n",
		(int)getpid(), kvmm_proc_start_time(), kvmm_proc_comm(comm, sizeof(comm)),
		rm_word(servers, srv, sizeof(srv)), rm_word(l->model, model, sizeof(model)),
		rm_word(l->dtype, dtype, sizeof(dtype)), l->layers, l->kv_heads, l->head_dim,
		l->tp_rank, l->tp_size, l->chunk_tokens, fph, st->nodes, st->cluster);
#define W(f) (unsigned long long)st->f
	fprintf(out,
		"stats lookups=%llu lookup_keys=%llu lookup_hits=%llu lookup_round_trips=%llu "
		"lookup_ns=%llu gets=%llu get_hits=%llu get_misses=%llu get_bad=%llu "
		"get_failed=%llu puts=%llu put_new=%llu put_existing=%llu put_failed=%llu "
		"bytes_read=%llu bytes_written=%llu timeouts=%llu errors=%llu moved=%llu ask=%llu "
		"reconnects=%llu refreshes=%llu get_ns=%llu put_ns=%llu get_ns_max=%llu "
		"put_ns_max=%llu\n",
		W(lookups), W(lookup_keys), W(lookup_hits), W(lookup_round_trips), W(lookup_ns),
		W(gets), W(get_hits), W(get_misses), W(get_bad), W(get_failed), W(puts), W(put_new),
		W(put_existing), W(put_failed), W(bytes_read), W(bytes_written), W(timeouts),
		W(errors), W(moved), W(ask), W(reconnects), W(refreshes), W(get_ns), W(put_ns),
		W(get_ns_max), W(put_ns_max));
#undef W
	kvmm_registry_end(&f, !fclose(out));
}
