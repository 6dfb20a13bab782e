/* Prometheus text exposition: components register a writer, /metrics renders them all. */
#ifndef VIRTMAN_METRICS_H
#define VIRTMAN_METRICS_H

#include <stdint.h>

#include "lib/strbuf.h"

typedef void metrics_fn(struct strbuf *out, void *ctx);

/* Adds a writer called on every scrape. */
void metrics_register(metrics_fn *fn, void *ctx);

/* Renders every registered writer into out. */
void metrics_render(struct strbuf *out);

/* Writes the HELP and TYPE lines of one metric family. */
void metrics_family(struct strbuf *out, const char *name, const char *type, const char *help);

/* Writes one sample; labels is "" or e.g. "upstream=\"a\"". */
void metrics_sample(struct strbuf *out, const char *name, const char *labels, uint64_t value);

#endif
