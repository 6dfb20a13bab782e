/* A small HTTP/1.1 server on the event loop: one request per connection, bounded head. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/evloop.h"
#include "lib/http.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "lib/net.h"

#define HTTP_HEAD_MAX 8192	/* a longer request head is refused */
#define HTTP_IDLE_MS 10000	/* a client must send its head within this */
#define HTTP_CONN_MAX 256

struct http_server {
	struct ev_watch watch;
	http_handler *handler;
	struct ev_tick tick;
	struct http_conn *conns;
	int nconns;
};

struct http_conn {
	struct ev_watch watch;
	struct http_server *srv;
	struct http_conn *next, **pprev;
	char peer[ADDR_STRLEN];
	char head[HTTP_HEAD_MAX + 1];
	size_t head_len;
	struct strbuf out;
	size_t out_pos;
	uint64_t deadline;
};

static const char *http_reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 431: return "Request Header Fields Too Large";
	case 503: return "Service Unavailable";
	default: return "Error";
	}
}

static void http_conn_close(struct http_conn *c)
{
	ev_del(&c->watch);
	close(c->watch.fd);
	*c->pprev = c->next;
	if (c->next)
		c->next->pprev = c->pprev;
	c->srv->nconns--;
	sb_free(&c->out);
	free(c);
}

static void http_conn_reply(struct http_conn *c, struct http_reply *r)
{
	sb_printf(&c->out, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
		  "Connection: close\r\n\r\n", r->status, http_reason(r->status),
		  r->content_type ? r->content_type : "text/plain; charset=utf-8", r->body.len);
	if (r->body.len)
		sb_add(&c->out, r->body.data, r->body.len);
	sb_free(&r->body);
	ev_set(&c->watch, EPOLLOUT);
}

static void http_conn_error(struct http_conn *c, int status, const char *why)
{
	struct http_reply r = { .status = status };

	log_msg("http %s: %d: %s", c->peer, status, why);
	sb_printf(&r.body, "%s\n", why);
	http_conn_reply(c, &r);
}

/* Parses the request line of a complete head and runs the handler. */
static void http_conn_dispatch(struct http_conn *c)
{
	struct http_request req = { .peer = c->peer };
	struct http_reply reply = { .status = 200 };
	char *sp1, *sp2, *eol, *q;

	eol = strstr(c->head, "\r\n");
	if (!eol)
		return http_conn_error(c, 400, "malformed request line");
	*eol = '\0';
	sp1 = strchr(c->head, ' ');
	sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
	if (!sp1 || !sp2 || strncmp(sp2 + 1, "HTTP/1.", 7) != 0)
		return http_conn_error(c, 400, "malformed request line");
	*sp1 = *sp2 = '\0';
	req.method = c->head;
	req.path = sp1 + 1;
	q = strchr(sp1 + 1, '?');
	if (q)
		*q++ = '\0';
	req.query = q ? q : "";
	if (req.path[0] != '/' || strstr(req.path, ".."))
		return http_conn_error(c, 400, "bad path");
	c->srv->handler(&req, &reply);
	http_conn_reply(c, &reply);
}

static void http_conn_read(struct http_conn *c)
{
	ssize_t n = read(c->watch.fd, c->head + c->head_len, HTTP_HEAD_MAX - c->head_len);

	if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
		return http_conn_close(c);
	if (n < 0)
		return;
	c->head_len += (size_t)n;
	c->head[c->head_len] = '\0';
	if (strstr(c->head, "\r\n\r\n"))
		return http_conn_dispatch(c);
	if (c->head_len == HTTP_HEAD_MAX)
		return http_conn_error(c, 431, "request head too large");
}

static void http_conn_write(struct http_conn *c)
{
	while (c->out_pos < c->out.len) {
		ssize_t n = write(c->watch.fd, c->out.data + c->out_pos, c->out.len - c->out_pos);

		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n <= 0)
			return http_conn_close(c);
		c->out_pos += (size_t)n;
	}
	http_conn_close(c);
}

static void http_conn_event(void *ctx, uint32_t events)
{
	struct http_conn *c = ctx;

	if (c->out.len)
		http_conn_write(c);
	else if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
		http_conn_read(c);
}

static void http_accept(void *ctx, uint32_t events)
{
	struct http_server *srv = ctx;
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;
	struct http_conn *c;
	int fd;

	fd = accept4(srv->watch.fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0)
		return;
	if (srv->nconns >= HTTP_CONN_MAX || !(c = calloc(1, sizeof *c))) {
		close(fd);
		return;
	}
	c->srv = srv;
	c->watch = (struct ev_watch){ .fd = fd, .fn = http_conn_event, .ctx = c };
	sockaddr_format((struct sockaddr *)&ss, c->peer, sizeof c->peer);
	c->deadline = ev_now_ms() + HTTP_IDLE_MS;
	if (ev_add(&c->watch, EPOLLIN) < 0) {
		close(fd);
		free(c);
		return;
	}
	c->next = srv->conns;
	if (c->next)
		c->next->pprev = &c->next;
	c->pprev = &srv->conns;
	srv->conns = c;
	srv->nconns++;
}

static void http_tick(void *ctx, uint64_t now)
{
	struct http_server *srv = ctx;
	struct http_conn *c = srv->conns, *next;

	for (; c; c = next) {
		next = c->next;
		if (now > c->deadline)
			http_conn_close(c);
	}
}

void http_metrics_handler(const struct http_request *req, struct http_reply *reply)
{
	if (strcmp(req->path, "/metrics") != 0) {
		reply->status = 404;
		sb_printf(&reply->body, "not found\n");
		return;
	}
	if (strcmp(req->method, "GET") != 0) {
		reply->status = 405;
		sb_printf(&reply->body, "only GET\n");
		return;
	}
	reply->content_type = "text/plain; version=0.0.4; charset=utf-8";
	metrics_render(&reply->body);
}

int http_serve(const struct sockaddr_storage *ss, socklen_t len, http_handler *handler)
{
	struct http_server *srv;
	int fd;

	fd = net_listen_tcp(ss, len);
	if (fd < 0)
		return fd;
	srv = calloc(1, sizeof *srv);
	if (!srv) {
		close(fd);
		return -ENOMEM;
	}
	srv->handler = handler;
	srv->watch = (struct ev_watch){ .fd = fd, .fn = http_accept, .ctx = srv };
	srv->tick = (struct ev_tick){ .fn = http_tick, .ctx = srv };
	ev_tick_add(&srv->tick);
	return ev_add(&srv->watch, EPOLLIN);
}
