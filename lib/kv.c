/* key=value line bodies spoken between agents and the seed: easy from C and busybox sh. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "lib/kv.h"
#include "lib/net.h"

static int kv_key_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
	       c == '-';
}

int kv_parse(char *text, size_t len, struct kv *kv, int max)
{
	char *p = text, *end = text + len;
	int n = 0;

	*end = '\0';
	while (p < end) {
		char *nl = memchr(p, '\n', (size_t)(end - p));
		char *line_end = nl ? nl : end;
		char *eq;

		if (line_end > p && line_end[-1] == '\r')	/* tolerate CRLF */
			line_end[-1] = '\0';
		*line_end = '\0';
		if (*p == '\0') {
			p = line_end + 1;
			continue;
		}
		eq = strchr(p, '=');
		if (!eq || eq == p || eq - p > KV_KEY_MAX || strlen(eq + 1) > KV_VALUE_MAX ||
		    n == max)
			return -EBADMSG;
		for (char *k = p; k < eq; k++)
			if (!kv_key_char(*k))
				return -EBADMSG;
		for (char *v = eq + 1; *v; v++)
			if ((unsigned char)*v < 0x20 || (unsigned char)*v > 0x7e)
				return -EBADMSG;
		*eq = '\0';
		kv[n].key = p;
		kv[n].value = eq + 1;
		n++;
		p = line_end + 1;
	}
	return n;
}

const char *kv_get(const struct kv *kv, int n, const char *key)
{
	for (int i = 0; i < n; i++)
		if (strcmp(kv[i].key, key) == 0)
			return kv[i].value;
	return NULL;
}

int kv_get_u64(const struct kv *kv, int n, const char *key, uint64_t min, uint64_t max,
	       uint64_t *out)
{
	const char *v = kv_get(kv, n, key);

	if (!v)
		return -ENOENT;
	return parse_u64(v, min, max, out);
}

void kv_add(struct strbuf *out, const char *key, const char *fmt, ...)
{
	char value[KV_VALUE_MAX + 1];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(value, sizeof value, fmt, ap);
	va_end(ap);
	sb_printf(out, "%s=%s\n", key, value);
}
