/* A small blocking HTTP/1.1 client with deadlines, for the agent talking to the seed. */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "lib/httpc.h"
#include "lib/net.h"

#define HTTPC_HEAD_MAX 16384

static int64_t httpc_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Splits http://HOST[:PORT]/PATH; host and port into their buffers, *path into url. */
static int httpc_parse_url(const char *url, char *host, size_t hlen, char *port, size_t plen,
			   const char **path)
{
	const char *p, *slash, *colon;
	size_t n;

	if (strncmp(url, "http://", 7) != 0)
		return -EINVAL;
	p = url + 7;
	slash = strchr(p, '/');
	*path = slash ? slash : "/";
	n = slash ? (size_t)(slash - p) : strlen(p);
	if (p[0] == '[') {	/* [IPv6]:PORT: the port colon follows the bracket */
		const char *rb = memchr(p, ']', n);

		if (!rb)
			return -EINVAL;
		colon = rb + 1 < p + n && rb[1] == ':' ? rb + 1 : NULL;
	} else {
		colon = memchr(p, ':', n);
	}
	if (colon) {
		size_t pl = n - (size_t)(colon - p) - 1;
		uint64_t v;

		if (pl == 0 || pl >= plen)
			return -EINVAL;
		memcpy(port, colon + 1, pl);
		port[pl] = '\0';
		if (parse_u64(port, 1, 65535, &v) < 0)
			return -EINVAL;
		n = (size_t)(colon - p);
	} else {
		snprintf(port, plen, "80");
	}
	if (p[0] == '[' && n >= 2 && p[n - 1] == ']') {
		p++;
		n -= 2;
	}
	if (n == 0 || n >= hlen)
		return -EINVAL;
	memcpy(host, p, n);
	host[n] = '\0';
	return 0;
}

/* Waits until fd is ready for events or the deadline passes. */
static int httpc_wait(int fd, short events, int64_t deadline)
{
	for (;;) {
		int64_t left = deadline - httpc_now_ms();
		struct pollfd pfd = { .fd = fd, .events = events };
		int rc;

		if (left <= 0)
			return -ETIMEDOUT;
		rc = poll(&pfd, 1, (int)left);
		if (rc > 0)
			return 0;
		if (rc < 0 && errno != EINTR)
			return -errno;
	}
}

static int httpc_connect(const char *host, const char *port, int64_t deadline)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res, *ai;
	int fd = -1, rc = -EHOSTUNREACH;

	if (getaddrinfo(host, port, &hints, &res) != 0)
		return -EHOSTUNREACH;
	for (ai = res; ai; ai = ai->ai_next) {
		int err = 0;
		socklen_t elen = sizeof err;

		fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0)
			continue;
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 && errno != EINPROGRESS) {
			rc = -errno;
		} else if ((rc = httpc_wait(fd, POLLOUT, deadline)) == 0) {
			getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen);
			if (err == 0)
				break;
			rc = -err;
		}
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	return fd >= 0 ? fd : rc;
}

static int httpc_send_all(int fd, const char *p, size_t len, int64_t deadline)
{
	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
			int rc = httpc_wait(fd, POLLOUT, deadline);

			if (rc < 0)
				return rc;
			continue;
		}
		if (n <= 0)
			return n < 0 ? -errno : -EPIPE;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Parses the status line and Content-Length of a complete head. */
static int httpc_parse_head(char *head, int *status, int64_t *content_length)
{
	char *line, *save = NULL;

	*content_length = -1;
	line = strtok_r(head, "\r\n", &save);
	if (!line || strncmp(line, "HTTP/1.", 7) != 0 || strlen(line) < 12 || line[8] != ' ')
		return -EPROTO;
	if (line[9] < '1' || line[9] > '5' || line[10] < '0' || line[10] > '9' ||
	    line[11] < '0' || line[11] > '9')
		return -EPROTO;
	*status = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
	while ((line = strtok_r(NULL, "\r\n", &save))) {
		if (strncasecmp(line, "Content-Length:", 15) == 0) {
			uint64_t v;
			char *val = line + 15;

			while (*val == ' ' || *val == '\t')
				val++;
			if (parse_u64(val, 0, INT64_MAX, &v) < 0)
				return -EPROTO;
			*content_length = (int64_t)v;
		} else if (strncasecmp(line, "Transfer-Encoding:", 18) == 0) {
			return -EPROTO;	/* the seed never chunks; nothing else is spoken to */
		}
	}
	return 0;
}

int httpc_request(const char *method, const char *url, const char *body, size_t body_len,
		  size_t max_body, int timeout_ms, struct httpc_response *resp)
{
	char host[256], port[8], head[HTTPC_HEAD_MAX + 1], req[1024];
	int64_t deadline = httpc_now_ms() + timeout_ms, clen = -1;
	size_t hlen = 0;
	const char *path, *end = NULL;
	int fd, rc, n;

	memset(resp, 0, sizeof *resp);
	if (httpc_parse_url(url, host, sizeof host, port, sizeof port, &path) < 0)
		return -EINVAL;
	n = snprintf(req, sizeof req, "%s %s HTTP/1.1\r\nHost: %s:%s\r\nConnection: close\r\n"
		     "Content-Type: text/plain\r\nContent-Length: %zu\r\n\r\n", method, path, host,
		     port, body_len);
	if (n < 0 || n >= (int)sizeof req)
		return -EINVAL;
	fd = httpc_connect(host, port, deadline);
	if (fd < 0)
		return fd;
	rc = httpc_send_all(fd, req, (size_t)n, deadline);
	if (rc == 0 && body_len)
		rc = httpc_send_all(fd, body, body_len, deadline);
	/* Read the head, then the body as far as Content-Length (or the end). */
	while (rc == 0 && !end) {
		ssize_t got;

		if (hlen == HTTPC_HEAD_MAX) {
			rc = -EPROTO;
			break;
		}
		if ((rc = httpc_wait(fd, POLLIN, deadline)) < 0)
			break;
		got = recv(fd, head + hlen, HTTPC_HEAD_MAX - hlen, 0);
		if (got < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (got <= 0) {
			rc = got < 0 ? -errno : -EPROTO;
			break;
		}
		hlen += (size_t)got;
		head[hlen] = '\0';
		end = strstr(head, "\r\n\r\n");
	}
	if (rc == 0) {
		size_t head_bytes = (size_t)(end - head) + 4, extra = hlen - head_bytes;

		end = NULL;
		head[head_bytes - 2] = '\0';
		rc = httpc_parse_head(head, &resp->status, &clen);
		if (rc == 0 && clen >= 0 && (uint64_t)clen > max_body)
			rc = -EFBIG;
		if (rc == 0 && extra)
			sb_add(&resp->body, head + head_bytes, extra);
	}
	while (rc == 0 && (clen < 0 || (int64_t)resp->body.len < clen)) {
		char buf[16384];
		ssize_t got;

		if ((rc = httpc_wait(fd, POLLIN, deadline)) < 0)
			break;
		got = recv(fd, buf, sizeof buf, 0);
		if (got < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (got < 0) {
			rc = -errno;
			break;
		}
		if (got == 0) {
			if (clen >= 0)
				rc = -EPROTO;	/* cut short */
			break;
		}
		if (resp->body.len + (size_t)got > max_body) {
			rc = -EFBIG;
			break;
		}
		sb_add(&resp->body, buf, (size_t)got);
		if (resp->body.failed)
			rc = -ENOMEM;
	}
	if (rc == 0 && clen >= 0 && (int64_t)resp->body.len > clen)
		resp->body.len = (size_t)clen;	/* ignore anything past the announced length */
	close(fd);
	if (rc < 0)
		sb_free(&resp->body);
	return rc;
}
