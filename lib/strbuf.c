/* Growable byte buffer for building replies and texts. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/strbuf.h"

static int sb_reserve(struct strbuf *sb, size_t extra)
{
	size_t cap;
	char *p;

	if (sb->failed)
		return -1;
	if (extra <= sb->cap - sb->len)
		return 0;
	cap = sb->cap ? sb->cap : 256;
	while (cap - sb->len < extra) {
		if (cap > ((size_t)1 << 30))
			goto fail;
		cap *= 2;
	}
	p = realloc(sb->data, cap);
	if (!p)
		goto fail;
	sb->data = p;
	sb->cap = cap;
	return 0;
fail:
	sb->failed = 1;
	return -1;
}

void sb_add(struct strbuf *sb, const void *p, size_t len)
{
	if (sb_reserve(sb, len + 1) < 0)
		return;
	memcpy(sb->data + sb->len, p, len);
	sb->len += len;
	sb->data[sb->len] = '\0';
}

void sb_printf(struct strbuf *sb, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || sb_reserve(sb, (size_t)n + 1) < 0)
		return;
	va_start(ap, fmt);
	vsnprintf(sb->data + sb->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	sb->len += (size_t)n;
}

void sb_free(struct strbuf *sb)
{
	free(sb->data);
	sb->data = NULL;
	sb->len = sb->cap = 0;
	sb->failed = 0;
}
