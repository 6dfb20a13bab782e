/* Prometheus text exposition: components register a writer, /metrics renders them all. */
#include <stdlib.h>

#include "lib/metrics.h"

#define METRICS_MAX 16

static struct {
	metrics_fn *fn;
	void *ctx;
} metrics_writers[METRICS_MAX];
static int metrics_count;

void metrics_register(metrics_fn *fn, void *ctx)
{
	if (metrics_count == METRICS_MAX)
		abort();	/* a programming error, not an input */
	metrics_writers[metrics_count].fn = fn;
	metrics_writers[metrics_count].ctx = ctx;
	metrics_count++;
}

void metrics_render(struct strbuf *out)
{
	for (int i = 0; i < metrics_count; i++)
		metrics_writers[i].fn(out, metrics_writers[i].ctx);
}

void metrics_family(struct strbuf *out, const char *name, const char *type, const char *help)
{
	sb_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void metrics_sample(struct strbuf *out, const char *name, const char *labels, uint64_t value)
{
	if (labels && *labels)
		sb_printf(out, "%s{%s} %llu\n", name, labels, (unsigned long long)value);
	else
		sb_printf(out, "%s %llu\n", name, (unsigned long long)value);
}
