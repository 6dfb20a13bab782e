/* Growable byte buffer for building replies and texts. */
#ifndef VIRTMAN_STRBUF_H
#define VIRTMAN_STRBUF_H

#include <stddef.h>

struct strbuf {
	char *data;
	size_t len;
	size_t cap;
	int failed;	/* an allocation failed; contents are truncated */
};

/* Appends len bytes. */
void sb_add(struct strbuf *sb, const void *p, size_t len);

/* Appends formatted text (without its NUL). */
void sb_printf(struct strbuf *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Releases the buffer and leaves it empty and reusable. */
void sb_free(struct strbuf *sb);

#endif
