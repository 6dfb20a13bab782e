/* A small HTTP/1.1 server on the event loop: one request per connection, bounded head. */
#ifndef VIRTMAN_HTTP_H
#define VIRTMAN_HTTP_H

#include <sys/socket.h>

#include "lib/strbuf.h"

struct http_request {
	const char *method;
	const char *path;	/* without the query string */
	const char *query;	/* after '?', or "" */
	const char *peer;	/* "addr:port" for logs */
};

struct http_reply {
	int status;
	const char *content_type;
	struct strbuf body;
};

/* Fills reply for request; called once per request. */
typedef void http_handler(const struct http_request *req, struct http_reply *reply);

/* Listens on ss and serves every request through handler; 0 or negative errno. */
int http_serve(const struct sockaddr_storage *ss, socklen_t len, http_handler *handler);

/* The handler serving GET /metrics from lib/metrics. */
void http_metrics_handler(const struct http_request *req, struct http_reply *reply);

#endif
