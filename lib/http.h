/* A small HTTP/1.1 server on the event loop: one request per connection, bounded head,
 * replies from memory or from a file (sendfile, single byte ranges, HEAD). */
#ifndef VIRTMAN_HTTP_H
#define VIRTMAN_HTTP_H

#include <stdint.h>
#include <sys/socket.h>

#include "lib/strbuf.h"

#define HTTP_HEAD_MAX 8192	/* a longer request head is refused with 431 */
#define HTTP_HEADERS_MAX 64	/* more header fields are refused with 431 */
#define HTTP_BODY_MAX 65536	/* a longer request body is refused with 413 */

struct http_request {
	const char *method;
	const char *path;	/* without the query string */
	const char *query;	/* after '?', or "" */
	const char *peer;	/* "addr:port" for logs */
	const char *range;	/* the Range field's value, or NULL */
	int if_range;		/* an If-Range field was sent: Range is then ignored */
	uint64_t content_length;	/* of the request body (Content-Length), 0 without */
	const char *body;	/* the body, NUL-terminated, or NULL when there is none */
	size_t body_len;
};

struct http_reply {
	int status;
	const char *content_type;
	const char *allow;	/* the Allow field of a 405, or NULL */
	struct strbuf body;
	int fd;			/* -1, or a regular file sent as the body; the server closes it */
};

/* Fills reply for request; called once per request. reply->fd starts as -1. */
typedef void http_handler(const struct http_request *req, struct http_reply *reply);

/* Listens on ss and serves every request through handler; 0 or negative errno. */
int http_serve(const struct sockaddr_storage *ss, socklen_t len, http_handler *handler);

/* Parses a complete request head (request line and fields, ending in an empty line, NUL
 * terminated at head[len]) in place into req; 0, or the HTTP status to refuse it with.
 * Bodies come with Content-Length only (chunked: 501) and at most HTTP_BODY_MAX (413). */
int http_request_parse(char *head, size_t len, struct http_request *req);

/* Interprets a Range value for a body of size bytes: 1 and [*first, *last] for one
 * satisfiable range, 0 to send the whole body (no range, or one we ignore), -1 for 416. */
int http_range_parse(const char *value, uint64_t size, uint64_t *first, uint64_t *last);

/* Makes reply send the regular file at path (opened now, following symlinks: for paths the
 * operator configured, never for paths from a request); 0, or sets 404/403 and returns -1. */
int http_reply_file(struct http_reply *reply, const char *path, const char *content_type);

/* The handler serving GET /metrics from lib/metrics. */
void http_metrics_handler(const struct http_request *req, struct http_reply *reply);

#endif
