/* key=value line bodies spoken between agents and the seed: easy from C and busybox sh. */
#ifndef VIRTMAN_KV_H
#define VIRTMAN_KV_H

#include <stddef.h>
#include <stdint.h>

#include "lib/strbuf.h"

#define KV_KEY_MAX 32
#define KV_VALUE_MAX 1024
#define KV_MAX 128

struct kv {
	const char *key;
	const char *value;
};

/* Splits text[0..len) (room for text[len] = NUL) into "key=value" lines in place. Keys are
 * [a-z0-9._-], values printable ASCII; blank lines are skipped. Count, or -EBADMSG. */
int kv_parse(char *text, size_t len, struct kv *kv, int max);

/* The value of the first pair named key, or NULL. */
const char *kv_get(const struct kv *kv, int n, const char *key);

/* Parses the value of key as a number in [min, max]; 0, -ENOENT or -ERANGE/-EINVAL. */
int kv_get_u64(const struct kv *kv, int n, const char *key, uint64_t min, uint64_t max,
	       uint64_t *out);

/* Appends "key=value\n". */
void kv_add(struct strbuf *out, const char *key, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
