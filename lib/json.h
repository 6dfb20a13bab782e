/* Writing JSON for the API and the dashboard. */
#ifndef VIRTMAN_JSON_H
#define VIRTMAN_JSON_H

#include "lib/strbuf.h"

/* Appends s as a JSON string literal, quotes included. */
void json_str(struct strbuf *out, const char *s);

#endif
