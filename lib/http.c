/* A small HTTP/1.1 server on the event loop: one request per connection, bounded head,
 * replies from memory or from a file (sendfile, single byte ranges, HEAD). */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/evloop.h"
#include "lib/http.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "lib/net.h"

#define HTTP_IDLE_MS 10000	/* a client must send its head, or take data, within this */
#define HTTP_LINGER_MS 2000	/* how long unread input is drained before closing */
#define HTTP_LINGER_MAX (1 << 20)	/* bytes drained at most before closing anyway */
#define HTTP_CONN_MAX 1024	/* a rack booting at once, each host a few requests */
#define HTTP_SENDFILE_CHUNK (1 << 20)	/* per wake-up, so one fast client cannot starve others */

enum http_conn_state {
	HTTP_READ_HEAD,
	HTTP_READ_BODY,
	HTTP_SEND_HEAD,		/* status line and fields, and a body from memory */
	HTTP_SEND_FILE,
	HTTP_LINGER,		/* reply sent, write side shut: drain input until EOF */
};

struct http_server {
	struct ev_watch watch;
	http_handler *handler;
	struct ev_tick tick;
	struct http_conn *conns;
	int nconns;
	uint64_t requests;
	uint64_t sent_bytes;
};

struct http_conn {
	struct ev_watch watch;
	struct http_server *srv;
	struct http_conn *next, **pprev;
	enum http_conn_state state;
	char peer[ADDR_STRLEN];
	char head[HTTP_HEAD_MAX + 1];
	size_t head_len;
	struct http_request req;	/* parsed; its strings point into head */
	char *body;
	size_t body_len;
	struct strbuf out;
	size_t out_pos;
	int file_fd;
	uint64_t file_pos, file_end;	/* bytes [file_pos, file_end) remain to send */
	size_t drained;
	uint64_t deadline;
};

static const char *http_reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 202: return "Accepted";
	case 206: return "Partial Content";
	case 400: return "Bad Request";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 409: return "Conflict";
	case 413: return "Content Too Large";
	case 416: return "Range Not Satisfiable";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 503: return "Service Unavailable";
	case 507: return "Insufficient Storage";
	case 505: return "HTTP Version Not Supported";
	default: return "Error";
	}
}

/* RFC 9110 token characters, for methods and field names. */
static int http_is_tchar(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

static char *http_trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
		*--e = '\0';
	return s;
}

/* Checks the request line "METHOD SP TARGET SP HTTP/1.x" and splits it in place. */
static int http_parse_request_line(char *line, struct http_request *req)
{
	char *sp1, *sp2, *q;

	sp1 = strchr(line, ' ');
	if (!sp1 || sp1 == line)
		return 400;
	sp2 = strchr(sp1 + 1, ' ');
	if (!sp2 || sp2 == sp1 + 1)
		return 400;
	*sp1 = *sp2 = '\0';
	for (const char *p = line; *p; p++)
		if (!http_is_tchar(*p))
			return 400;
	if (strncmp(sp2 + 1, "HTTP/", 5) != 0)
		return 400;
	if (strcmp(sp2 + 1, "HTTP/1.0") != 0 && strcmp(sp2 + 1, "HTTP/1.1") != 0)
		return 505;
	for (const unsigned char *p = (const unsigned char *)sp1 + 1; *p; p++)
		if (*p <= ' ' || *p == 0x7f)
			return 400;
	req->method = line;
	req->path = sp1 + 1;
	q = strchr(sp1 + 1, '?');
	if (q)
		*q++ = '\0';
	req->query = q ? q : "";
	if (req->path[0] != '/' || strstr(req->path, ".."))
		return 400;
	return 0;
}

/* Parses a decimal byte position; -1 when absent or malformed. */
static int http_parse_pos(const char *s, const char *e, uint64_t *out)
{
	uint64_t v = 0;

	if (s == e || e - s > 19)
		return -1;
	for (; s < e; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	*out = v;
	return 0;
}

int http_request_parse(char *head, size_t len, struct http_request *req)
{
	char *p = head, *end = head + len, *eol;
	int status, fields = 0, ranges = 0, lengths = 0, chunked = 0;

	if (len < 4 || strlen(head) != len || memcmp(end - 4, "\r\n\r\n", 4) != 0)
		return 400;
	req->range = NULL;
	req->if_range = 0;
	req->content_length = 0;
	req->body = NULL;
	req->body_len = 0;
	eol = strstr(p, "\r\n");
	*eol = '\0';
	if ((status = http_parse_request_line(p, req)) != 0)
		return status;
	for (p = eol + 2; p < end - 2; p = eol + 2) {
		char *colon, *value;

		eol = strstr(p, "\r\n");
		*eol = '\0';
		if (++fields > HTTP_HEADERS_MAX)
			return 431;
		/* obs-fold and bare CR/LF inside a field are refused (RFC 9112 §5.2). */
		if (*p == ' ' || *p == '\t' || strpbrk(p, "\r\n"))
			return 400;
		colon = strchr(p, ':');
		if (!colon || colon == p)
			return 400;
		*colon = '\0';
		for (const char *n = p; *n; n++)
			if (!http_is_tchar(*n))
				return 400;
		value = http_trim(colon + 1);
		if (strcasecmp(p, "Range") == 0) {
			ranges++;
			req->range = value;
		} else if (strcasecmp(p, "If-Range") == 0) {
			req->if_range = 1;
		} else if (strcasecmp(p, "Transfer-Encoding") == 0) {
			chunked = 1;
		} else if (strcasecmp(p, "Content-Length") == 0) {
			uint64_t v;

			/* Repeated lengths must agree (RFC 9112 §6.3): smuggling otherwise. */
			if (http_parse_pos(value, value + strlen(value), &v) < 0 ||
			    (lengths++ && v != req->content_length))
				return 400;
			req->content_length = v;
		}
	}
	if (ranges > 1 || (chunked && lengths))
		return 400;
	if (chunked)
		return 501;
	if (req->content_length > HTTP_BODY_MAX)
		return 413;
	return 0;
}

int http_range_parse(const char *value, uint64_t size, uint64_t *first, uint64_t *last)
{
	const char *spec, *dash, *end;
	uint64_t a, b;

	if (!value || strncasecmp(value, "bytes=", 6) != 0)
		return 0;	/* another unit: ignored, the whole body is sent */
	spec = value + 6;
	while (*spec == ' ')
		spec++;
	end = spec + strlen(spec);
	while (end > spec && end[-1] == ' ')
		end--;
	if (memchr(spec, ',', (size_t)(end - spec)))
		return 0;	/* several ranges: we do not send multipart, so ignore them */
	dash = memchr(spec, '-', (size_t)(end - spec));
	if (!dash)
		return 0;
	if (dash == spec) {	/* "-n": the last n bytes */
		if (http_parse_pos(dash + 1, end, &b) < 0)
			return 0;
		if (b == 0 || size == 0)
			return -1;
		*first = b >= size ? 0 : size - b;
		*last = size - 1;
		return 1;
	}
	if (http_parse_pos(spec, dash, &a) < 0)
		return 0;
	if (dash + 1 == end) {
		b = UINT64_MAX;
	} else if (http_parse_pos(dash + 1, end, &b) < 0 || b < a) {
		return 0;	/* syntactically invalid: ignored (RFC 9110 §14.2) */
	}
	if (a >= size)
		return -1;
	*first = a;
	*last = b >= size ? size - 1 : b;
	return 1;
}

int http_reply_file(struct http_reply *reply, const char *path, const char *content_type)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);

	if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		int missing = fd < 0 && errno == ENOENT;

		if (fd >= 0)
			close(fd);
		reply->status = missing ? 404 : 403;
		sb_printf(&reply->body, "%s\n", missing ? "not found" : "forbidden");
		return -1;
	}
	reply->fd = fd;
	reply->content_type = content_type;
	return 0;
}

static void http_conn_close(struct http_conn *c)
{
	ev_del(&c->watch);
	close(c->watch.fd);
	if (c->file_fd >= 0)
		close(c->file_fd);
	*c->pprev = c->next;
	if (c->next)
		c->next->pprev = c->pprev;
	c->srv->nconns--;
	sb_free(&c->out);
	free(c->body);
	free(c);
}

/* The reply is out: stop writing, and read what the client still sends until it closes, so
 * that closing with unread input does not reset the connection before it read the reply. */
static void http_conn_linger(struct http_conn *c)
{
	if (c->file_fd >= 0) {
		close(c->file_fd);
		c->file_fd = -1;
	}
	shutdown(c->watch.fd, SHUT_WR);
	c->state = HTTP_LINGER;
	c->deadline = ev_now_ms() + HTTP_LINGER_MS;
	ev_set(&c->watch, EPOLLIN);
}

/* Chooses the status, fields and body range of a file reply. */
static void http_conn_file_head(struct http_conn *c, const struct http_request *req,
				struct http_reply *r, const char *type)
{
	struct stat st;
	uint64_t size, first = 0, last = 0;
	int ranged = 0;

	if (fstat(r->fd, &st) < 0) {
		close(r->fd);
		r->fd = -1;
		r->status = 500;
		sb_printf(&r->body, "cannot stat file\n");
		return;
	}
	size = (uint64_t)st.st_size;
	if (r->status == 200 && req->range && !req->if_range)
		ranged = http_range_parse(req->range, size, &first, &last);
	if (ranged < 0) {
		close(r->fd);
		r->fd = -1;
		sb_printf(&c->out, "HTTP/1.1 416 %s\r\nContent-Range: bytes */%llu\r\n"
			  "Content-Length: 0\r\nConnection: close\r\n\r\n", http_reason(416),
			  (unsigned long long)size);
		return;
	}
	if (!ranged) {
		first = 0;
		last = size ? size - 1 : 0;
	}
	c->file_pos = first;
	c->file_end = size ? last + 1 : 0;
	sb_printf(&c->out, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %llu\r\n"
		  "Accept-Ranges: bytes\r\n", ranged ? 206 : r->status,
		  http_reason(ranged ? 206 : r->status), type,
		  (unsigned long long)(c->file_end - c->file_pos));
	if (ranged)
		sb_printf(&c->out, "Content-Range: bytes %llu-%llu/%llu\r\n",
			  (unsigned long long)first, (unsigned long long)last,
			  (unsigned long long)size);
	sb_printf(&c->out, "Connection: close\r\n\r\n");
	if (strcmp(req->method, "HEAD") == 0 || c->file_pos == c->file_end) {
		close(r->fd);
		r->fd = -1;
	}
	c->file_fd = r->fd;
	r->fd = -1;
}

static void http_conn_reply(struct http_conn *c, const struct http_request *req,
			    struct http_reply *r)
{
	const char *type = r->content_type ? r->content_type : "text/plain; charset=utf-8";

	if (r->fd >= 0) {
		http_conn_file_head(c, req, r, type);
		if (c->out.len)
			goto send;
	}
	sb_printf(&c->out, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n",
		  r->status, http_reason(r->status), type, r->body.len);
	if (r->allow)
		sb_printf(&c->out, "Allow: %s\r\n", r->allow);
	sb_printf(&c->out, "Connection: close\r\n\r\n");
	if (r->body.len && !(req && req->method && strcmp(req->method, "HEAD") == 0))
		sb_add(&c->out, r->body.data, r->body.len);
send:
	sb_free(&r->body);
	if (c->out.failed)
		return http_conn_close(c);
	c->state = HTTP_SEND_HEAD;
	c->deadline = ev_now_ms() + HTTP_IDLE_MS;
	ev_set(&c->watch, EPOLLOUT);
}

static void http_conn_error(struct http_conn *c, int status, const char *why)
{
	struct http_reply r = { .status = status, .fd = -1 };

	log_msg("http %s: %d: %s", c->peer, status, why);
	sb_printf(&r.body, "%s\n", why);
	http_conn_reply(c, NULL, &r);
}

/* Runs the handler on the parsed request and its body. */
static void http_conn_dispatch(struct http_conn *c)
{
	struct http_reply reply = { .status = 200, .fd = -1 };

	if (c->body) {
		c->body[c->body_len] = '\0';
		c->req.body = c->body;
		c->req.body_len = c->body_len;
	}
	c->srv->requests++;
	c->srv->handler(&c->req, &reply);
	http_conn_reply(c, &c->req, &reply);
}

/* The head is complete at head[0, hlen): parse it, take the body bytes that came with it,
 * and dispatch or go on reading the body. */
static void http_conn_head_done(struct http_conn *c, size_t hlen)
{
	size_t extra = c->head_len - hlen;
	int status;

	if (memchr(c->head, '\0', hlen))
		return http_conn_error(c, 400, "NUL byte in request head");
	if (c->head_len > hlen && !(c->body = malloc(HTTP_BODY_MAX + 1)))
		return http_conn_close(c);
	if (extra) {
		memcpy(c->body, c->head + hlen, extra);
		c->body_len = extra;
	}
	c->head_len = hlen;
	c->head[hlen] = '\0';
	c->req = (struct http_request){ .peer = c->peer };
	status = http_request_parse(c->head, hlen, &c->req);
	if (status)
		return http_conn_error(c, status, status == 431 ? "too many header fields" :
					  status == 505 ? "only HTTP/1.0 and HTTP/1.1" :
					  status == 413 ? "request body too large" :
					  status == 501 ? "chunked request bodies are not supported" :
					  "malformed request");
	if (c->body_len > c->req.content_length)
		c->body_len = (size_t)c->req.content_length;	/* a pipelined request: unread */
	if (c->body_len == c->req.content_length)
		return http_conn_dispatch(c);
	if (!c->body && !(c->body = malloc(HTTP_BODY_MAX + 1)))
		return http_conn_close(c);
	c->state = HTTP_READ_BODY;
}

static void http_conn_read(struct http_conn *c)
{
	ssize_t n = read(c->watch.fd, c->head + c->head_len, HTTP_HEAD_MAX - c->head_len);
	char *end;

	if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
		return http_conn_close(c);
	if (n < 0)
		return;
	c->head_len += (size_t)n;
	c->head[c->head_len] = '\0';
	c->deadline = ev_now_ms() + HTTP_IDLE_MS;
	end = memmem(c->head, c->head_len, "\r\n\r\n", 4);
	if (end)
		return http_conn_head_done(c, (size_t)(end + 4 - c->head));
	if (c->head_len == HTTP_HEAD_MAX)
		return http_conn_error(c, 431, "request head too large");
}

static void http_conn_read_body(struct http_conn *c)
{
	size_t want = (size_t)c->req.content_length - c->body_len;
	ssize_t n = read(c->watch.fd, c->body + c->body_len, want);

	if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
		return http_conn_close(c);
	if (n < 0)
		return;
	c->body_len += (size_t)n;
	c->deadline = ev_now_ms() + HTTP_IDLE_MS;
	if (c->body_len == c->req.content_length)
		http_conn_dispatch(c);
}

static void http_conn_send_file(struct http_conn *c)
{
	uint64_t budget = HTTP_SENDFILE_CHUNK;

	while (c->file_pos < c->file_end && budget) {
		uint64_t want = c->file_end - c->file_pos;
		off_t off = (off_t)c->file_pos;
		ssize_t n;

		if (want > budget)
			want = budget;
		n = sendfile(c->watch.fd, c->file_fd, &off, (size_t)want);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n <= 0) {
			/* 0: the file shrank under us; the client sees a short body and no more. */
			if (n < 0)
				log_msg("http %s: sendfile: %s", c->peer, strerror(errno));
			return http_conn_close(c);
		}
		c->file_pos += (uint64_t)n;
		c->srv->sent_bytes += (uint64_t)n;
		budget -= (uint64_t)n;
		c->deadline = ev_now_ms() + HTTP_IDLE_MS;
	}
	if (c->file_pos == c->file_end)
		http_conn_linger(c);
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
		c->srv->sent_bytes += (uint64_t)n;
		c->deadline = ev_now_ms() + HTTP_IDLE_MS;
	}
	if (c->file_fd >= 0) {
		c->state = HTTP_SEND_FILE;
		return http_conn_send_file(c);
	}
	http_conn_linger(c);
}

static void http_conn_drain(struct http_conn *c)
{
	char scratch[4096];
	ssize_t n = read(c->watch.fd, scratch, sizeof scratch);

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0)
		return http_conn_close(c);
	c->drained += (size_t)n;
	if (c->drained > HTTP_LINGER_MAX)
		http_conn_close(c);
}

static void http_conn_event(void *ctx, uint32_t events)
{
	struct http_conn *c = ctx;

	switch (c->state) {
	case HTTP_READ_HEAD:
		return http_conn_read(c);
	case HTTP_READ_BODY:
		return http_conn_read_body(c);
	case HTTP_SEND_HEAD:
		return http_conn_write(c);
	case HTTP_SEND_FILE:
		return http_conn_send_file(c);
	case HTTP_LINGER:
		return http_conn_drain(c);
	}
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
	c->file_fd = -1;
	c->state = HTTP_READ_HEAD;
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
		reply->allow = "GET";
		sb_printf(&reply->body, "only GET\n");
		return;
	}
	reply->content_type = "text/plain; version=0.0.4; charset=utf-8";
	metrics_render(&reply->body);
}

static void http_metrics(struct strbuf *out, void *ctx)
{
	const struct http_server *srv = ctx;

	metrics_family(out, "virtman_http_requests_total", "counter", "HTTP requests answered");
	metrics_sample(out, "virtman_http_requests_total", "", srv->requests);
	metrics_family(out, "virtman_http_sent_bytes_total", "counter",
		       "HTTP bytes sent, heads and bodies");
	metrics_sample(out, "virtman_http_sent_bytes_total", "", srv->sent_bytes);
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
	metrics_register(http_metrics, srv);
	return ev_add(&srv->watch, EPOLLIN);
}
