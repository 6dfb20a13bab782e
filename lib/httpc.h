/* A small blocking HTTP/1.1 client with deadlines, for the agent talking to the seed. */
#ifndef VIRTMAN_HTTPC_H
#define VIRTMAN_HTTPC_H

#include <stddef.h>

#include "lib/strbuf.h"

struct httpc_response {
	int status;
	struct strbuf body;
};

/* Sends METHOD url (http://HOST[:PORT]/PATH) with an optional body and reads the reply,
 * all within timeout_ms. 0 with resp filled (any status), or a negative errno:
 * -EINVAL bad URL, -ETIMEDOUT, -ECONNREFUSED..., -EPROTO malformed reply, -EFBIG body
 * over max_body. The caller frees resp->body. */
int httpc_request(const char *method, const char *url, const char *body, size_t body_len,
		  size_t max_body, int timeout_ms, struct httpc_response *resp);

#endif
