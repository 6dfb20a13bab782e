/* Read-only TFTP server (RFC 1350) with option negotiation (RFC 2347), blksize (2348),
 * timeout and tsize (2349) and windowsize (7440), for the iPXE binaries.
 * Each transfer has its own UDP socket (its TID, RFC 1350 §4), connected to the client, and
 * reads the file with pread per block, so a retransmission re-reads instead of buffering.
 * "netascii" is served byte for byte like "octet": the files are binaries, and converting
 * line ends would corrupt them; tftp-hpa's client asks for netascii by default. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/evloop.h"
#include "lib/fs.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "lib/net.h"
#include "pxe/tftp.h"

struct tftp_server {
	struct ev_watch watch;
	struct in_addr addr;
	const char *iface;
	int root_fd;
	struct tftp_xfer *xfers;
	int nxfers;
	struct log_limit bad_limit;
	uint64_t started, completed, failed, bytes;	/* for /metrics */
};

struct tftp_xfer {
	struct ev_watch watch;
	struct ev_timer timer;
	struct tftp_server *srv;
	struct tftp_xfer *next, **pprev;
	struct sockaddr_in peer;
	char peer_s[ADDR_STRLEN];
	char name[TFTP_NAME_MAX + 1];
	int file_fd;
	uint64_t size;
	struct tftp_params params;
	uint64_t nblocks;	/* blocks in the file, the last one short or empty */
	uint64_t acked;		/* highest block the client acknowledged, from 1; 0: none */
	uint64_t sent;		/* highest block sent in the current window */
	int retries;
	uint8_t *oack;
	size_t oack_len;
	uint8_t *buf;		/* one DATA packet: 4-byte header and blksize bytes */
	uint64_t start_ms;
};

static struct tftp_server *tftp_srv;	/* reachable for leak checkers; one per process */

static int tftp_strcaseeq(const char *a, const char *b)
{
	return strcasecmp(a, b) == 0;
}

/* Parses an option value: decimal, at most 19 digits; -1 when malformed. */
static int tftp_parse_value(const char *s, uint64_t *out)
{
	uint64_t v = 0;
	size_t n = 0;

	for (; *s; s++, n++) {
		if (*s < '0' || *s > '9' || n >= 19)
			return -1;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	if (n == 0)
		return -1;
	*out = v;
	return 0;
}

/* Takes the next NUL-terminated string in [*p, end); NULL when it runs past the end. */
static const char *tftp_next_string(const uint8_t **p, const uint8_t *end)
{
	const uint8_t *nul = memchr(*p, '\0', (size_t)(end - *p));
	const char *s = (const char *)*p;

	if (!nul)
		return NULL;
	*p = nul + 1;
	return s;
}

static int tftp_refuse(struct tftp_request *req, int code, const char *why)
{
	req->error_code = code;
	req->error = why;
	return -EBADMSG;
}

/* Records one option the client asked for; unknown, repeated or malformed ones are ignored,
 * as RFC 2347 lets a server ignore any option. */
static void tftp_store_option(struct tftp_request *req, const char *name, const char *value)
{
	uint64_t v;

	if (tftp_parse_value(value, &v) < 0)
		return;
	if (tftp_strcaseeq(name, "blksize") && !req->has_blksize) {
		if (v < TFTP_BLKSIZE_MIN)
			return;
		req->blksize = v > TFTP_BLKSIZE_MAX ? TFTP_BLKSIZE_MAX : (uint32_t)v;
		req->has_blksize = 1;
	} else if (tftp_strcaseeq(name, "tsize") && !req->has_tsize) {
		req->tsize = v;
		req->has_tsize = 1;
	} else if (tftp_strcaseeq(name, "timeout") && !req->has_timeout) {
		if (v < 1 || v > 255)
			return;
		req->timeout = (uint32_t)v;
		req->has_timeout = 1;
	} else if (tftp_strcaseeq(name, "windowsize") && !req->has_windowsize) {
		if (v < 1 || v > 65535)
			return;
		req->windowsize = (uint32_t)v;
		req->has_windowsize = 1;
	}
}

int tftp_parse_request(const uint8_t *pkt, size_t len, struct tftp_request *req)
{
	const uint8_t *p = pkt + 2, *end = pkt + len;
	const char *name, *mode;

	memset(req, 0, sizeof *req);
	if (len < 4)
		return tftp_refuse(req, TFTP_EBADOP, "request too short");
	if (len > TFTP_REQUEST_MAX)
		return tftp_refuse(req, TFTP_EBADOP, "request too long");
	req->opcode = (int)((uint32_t)pkt[0] << 8 | pkt[1]);
	if (req->opcode != TFTP_RRQ && req->opcode != TFTP_WRQ)
		return tftp_refuse(req, TFTP_EBADOP, "not a read or write request");
	name = tftp_next_string(&p, end);
	mode = name ? tftp_next_string(&p, end) : NULL;
	if (!name || !mode)
		return tftp_refuse(req, TFTP_EBADOP, "file name or mode not NUL-terminated");
	if (!*name)
		return tftp_refuse(req, TFTP_EBADOP, "empty file name");
	if (strlen(name) > TFTP_NAME_MAX)
		return tftp_refuse(req, TFTP_EBADOP, "file name too long");
	if (strlen(mode) >= TFTP_MODE_MAX)
		return tftp_refuse(req, TFTP_EBADOP, "unknown transfer mode");
	memcpy(req->filename, name, strlen(name) + 1);
	memcpy(req->mode, mode, strlen(mode) + 1);
	if (!tftp_strcaseeq(mode, "octet") && !tftp_strcaseeq(mode, "netascii"))
		return tftp_refuse(req, TFTP_EBADOP, "unknown transfer mode");
	for (int n = 0; p < end && n < TFTP_OPTIONS_MAX; n++) {
		const char *opt = tftp_next_string(&p, end);
		const char *val = opt ? tftp_next_string(&p, end) : NULL;

		if (!val)
			break;	/* a truncated trailing option is dropped, the request kept */
		tftp_store_option(req, opt, val);
	}
	return 0;
}

/* Appends "name\0value\0" to an OACK; 0, or -1 when it does not fit. */
static int tftp_oack_add(uint8_t *oack, size_t cap, size_t *len, const char *name, uint64_t v)
{
	char val[24];
	size_t nl = strlen(name) + 1, vl;

	vl = (size_t)snprintf(val, sizeof val, "%llu", (unsigned long long)v) + 1;
	if (nl + vl > cap - *len)
		return -1;
	memcpy(oack + *len, name, nl);
	memcpy(oack + *len + nl, val, vl);
	*len += nl + vl;
	return 0;
}

size_t tftp_negotiate(const struct tftp_request *req, uint64_t file_size, struct tftp_params *p,
		      uint8_t *oack, size_t cap)
{
	size_t len = 2;
	int ok = 0;

	p->blksize = TFTP_BLKSIZE_DEFAULT;
	p->windowsize = 1;
	p->timeout_ms = TFTP_TIMEOUT_DEFAULT_MS;
	p->oack = 0;
	if (cap < 2)
		return 0;
	oack[0] = 0;
	oack[1] = TFTP_OACK;
	if (req->has_blksize && tftp_oack_add(oack, cap, &len, "blksize", req->blksize) == 0) {
		p->blksize = req->blksize;
		ok = 1;
	}
	/* curl (7.88) rejects "tsize 0" in an OACK as invalid: for an empty file, leave it
	 * out (RFC 2347 lets a server ignore an option); the client then just gets block 1. */
	if (req->has_tsize && file_size > 0 &&
	    tftp_oack_add(oack, cap, &len, "tsize", file_size) == 0)
		ok = 1;
	if (req->has_timeout && tftp_oack_add(oack, cap, &len, "timeout", req->timeout) == 0) {
		p->timeout_ms = req->timeout * 1000;
		ok = 1;
	}
	if (req->has_windowsize) {
		unsigned w = req->windowsize > TFTP_WINDOW_MAX ? TFTP_WINDOW_MAX : req->windowsize;

		if (tftp_oack_add(oack, cap, &len, "windowsize", w) == 0) {
			p->windowsize = w;
			ok = 1;
		}
	}
	p->oack = ok;
	return ok ? len : 0;
}

size_t tftp_build_error(uint8_t *buf, size_t cap, int code, const char *msg)
{
	size_t mlen = strlen(msg);

	if (cap < 5)
		return 0;
	if (mlen > cap - 5)
		mlen = cap - 5;
	buf[0] = 0;
	buf[1] = TFTP_ERROR;
	buf[2] = (uint8_t)(code >> 8);
	buf[3] = (uint8_t)code;
	memcpy(buf + 4, msg, mlen);
	buf[4 + mlen] = '\0';
	return 5 + mlen;
}

uint64_t tftp_block_count(uint64_t size, unsigned blksize)
{
	return size / blksize + 1;
}

uint16_t tftp_wire_block(uint64_t abs)
{
	return (uint16_t)(abs & 0xffff);
}

int tftp_ack_block(uint64_t acked, uint64_t sent, uint16_t wire, uint64_t *abs)
{
	/* The window is far below 65536 blocks, so at most one block in it has this number. */
	for (uint64_t b = acked + 1; b <= sent; b++)
		if (tftp_wire_block(b) == wire) {
			*abs = b;
			return 0;
		}
	return -1;
}

static void tftp_xfer_end(struct tftp_xfer *x, int ok, const char *why)
{
	struct tftp_server *srv = x->srv;
	uint64_t ms = ev_now_ms() - x->start_ms;

	if (ok) {
		srv->completed++;
		log_msg("tftp %s: sent %s (%llu bytes, blksize %u, window %u) in %llu ms",
			x->peer_s, x->name, (unsigned long long)x->size, x->params.blksize,
			x->params.windowsize, (unsigned long long)ms);
	} else {
		srv->failed++;
		log_msg("tftp %s: %s: transfer abandoned: %s", x->peer_s, x->name, why);
	}
	ev_timer_cancel(&x->timer);
	ev_del(&x->watch);
	close(x->watch.fd);
	close(x->file_fd);
	*x->pprev = x->next;
	if (x->next)
		x->next->pprev = x->pprev;
	srv->nxfers--;
	free(x->oack);
	free(x->buf);
	free(x);
}

static void tftp_xfer_send_error(struct tftp_xfer *x, int code, const char *msg)
{
	uint8_t pkt[128];
	size_t n = tftp_build_error(pkt, sizeof pkt, code, msg);

	if (send(x->watch.fd, pkt, n, 0) < 0)
		return;	/* best effort: the transfer ends either way */
}

/* Sends block b (from 1); 0, or -1 when the transfer had to end. */
static int tftp_xfer_send_block(struct tftp_xfer *x, uint64_t b)
{
	uint64_t off = (b - 1) * x->params.blksize;
	size_t want = 0;
	ssize_t n = 0;

	if (off < x->size)
		want = x->size - off < x->params.blksize ? (size_t)(x->size - off) : x->params.blksize;
	if (want) {
		n = pread(x->file_fd, x->buf + 4, want, (off_t)off);
		if (n != (ssize_t)want) {
			tftp_xfer_send_error(x, TFTP_ENOTDEFINED, "read error");
			tftp_xfer_end(x, 0, n < 0 ? strerror(errno) : "file shrank");
			return -1;
		}
	}
	x->buf[0] = 0;
	x->buf[1] = TFTP_DATA;
	x->buf[2] = (uint8_t)(tftp_wire_block(b) >> 8);
	x->buf[3] = (uint8_t)tftp_wire_block(b);
	if (send(x->watch.fd, x->buf, 4 + want, 0) < 0 && errno != EAGAIN && errno != ENOBUFS) {
		tftp_xfer_end(x, 0, strerror(errno));
		return -1;
	}
	x->srv->bytes += want;
	return 0;
}

/* Sends the window after the last acknowledged block and arms the retransmission timer. */
static void tftp_xfer_fill(struct tftp_xfer *x)
{
	uint64_t last = x->acked + x->params.windowsize;

	if (last > x->nblocks)
		last = x->nblocks;
	while (x->sent < last) {
		if (tftp_xfer_send_block(x, x->sent + 1) < 0)
			return;
		x->sent++;
	}
	ev_timer_set(&x->timer, ev_now_ms() + x->params.timeout_ms);
}

static void tftp_xfer_timeout(void *ctx)
{
	struct tftp_xfer *x = ctx;

	if (++x->retries > TFTP_RETRIES)
		return tftp_xfer_end(x, 0, "client stopped answering");
	if (x->oack_len) {
		if (send(x->watch.fd, x->oack, x->oack_len, 0) < 0 && errno != EAGAIN)
			return tftp_xfer_end(x, 0, strerror(errno));
		ev_timer_set(&x->timer, ev_now_ms() + x->params.timeout_ms);
		return;
	}
	x->sent = x->acked;	/* go back: resend the whole window */
	tftp_xfer_fill(x);
}

static void tftp_xfer_rx_ack(struct tftp_xfer *x, uint16_t wire)
{
	uint64_t b;

	if (x->oack_len) {
		if (wire != 0)
			return;
		x->oack_len = 0;	/* the client took our options */
		x->retries = 0;
		return tftp_xfer_fill(x);
	}
	if (tftp_ack_block(x->acked, x->sent, wire, &b) < 0)
		return;	/* duplicate: the timer resends, never the ACK (Sorcerer's Apprentice) */
	x->acked = b;
	x->retries = 0;
	if (x->acked == x->nblocks)
		return tftp_xfer_end(x, 1, NULL);
	/* An ACK inside the window means the client lost what follows it (RFC 7440 §4). */
	x->sent = x->acked;
	tftp_xfer_fill(x);
}

/* One packet per wake-up: an ACK may end the transfer and free x, and the socket is
 * level-triggered, so whatever else is queued wakes us again. */
static void tftp_xfer_event(void *ctx, uint32_t events)
{
	struct tftp_xfer *x = ctx;
	uint8_t pkt[512];
	ssize_t n = recv(x->watch.fd, pkt, sizeof pkt, 0);
	int op;

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n < 0)
		return tftp_xfer_end(x, 0, strerror(errno));	/* e.g. port unreachable */
	if (n < 4)
		return;
	op = (int)((uint32_t)pkt[0] << 8 | pkt[1]);
	if (op == TFTP_ACK)
		return tftp_xfer_rx_ack(x, (uint16_t)((uint32_t)pkt[2] << 8 | pkt[3]));
	if (op == TFTP_ERROR) {
		/* EDK2 asks for tsize, then ends that first transfer this way: not a failure
		 * worth more than a line. The message is the client's: printable bytes only. */
		char why[96];
		int len = snprintf(why, sizeof why, "client sent error %u: ",
				   (unsigned)((uint32_t)pkt[2] << 8 | pkt[3]));

		for (ssize_t i = 4; i < n && pkt[i] && len < (int)sizeof why - 1; i++)
			why[len++] = pkt[i] >= ' ' && pkt[i] < 0x7f ? (char)pkt[i] : '?';
		why[len] = '\0';
		return tftp_xfer_end(x, 0, why);
	}
	tftp_xfer_send_error(x, TFTP_EBADOP, "expected an ACK");
	tftp_xfer_end(x, 0, "client sent an unexpected packet");
}

/* Answers a request that starts no transfer, from the listening port. */
static void tftp_reply_error(struct tftp_server *srv, const struct sockaddr_in *peer, int code,
			     const char *msg)
{
	uint8_t pkt[128];
	size_t n = tftp_build_error(pkt, sizeof pkt, code, msg);

	sendto(srv->watch.fd, pkt, n, 0, (const struct sockaddr *)peer, sizeof *peer);
}

static int tftp_xfer_socket(struct tftp_server *srv, struct in_addr local,
			    const struct sockaddr_in *peer)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr = local };
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), err;

	if (fd < 0)
		return -errno;
	if (srv->iface && setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, srv->iface,
				     (socklen_t)strlen(srv->iface)) < 0)
		goto fail;
	if (bind(fd, (struct sockaddr *)&sin, sizeof sin) < 0 ||
	    connect(fd, (const struct sockaddr *)peer, sizeof *peer) < 0)
		goto fail;
	return fd;
fail:
	err = -errno;
	close(fd);
	return err;
}

static int tftp_open_error(int err, const char **msg)
{
	switch (err) {
	case -ENOENT:
	case -ENOTDIR:
		*msg = "file not found";
		return TFTP_ENOTFOUND;
	case -EACCES:
	case -EPERM:
	case -EISDIR:
	case -ENAMETOOLONG:
		*msg = "access violation";
		return TFTP_EACCESS;
	default:
		*msg = "cannot open file";
		return TFTP_ENOTDEFINED;
	}
}

/* Starts a transfer for a parsed RRQ from peer received on local. */
static void tftp_start_xfer(struct tftp_server *srv, const struct tftp_request *req,
			    const struct sockaddr_in *peer, struct in_addr local, const char *peer_s)
{
	struct tftp_xfer *x;
	struct stat st;
	const char *msg;
	int fd, code;

	for (x = srv->xfers; x; x = x->next)
		if (x->peer.sin_addr.s_addr == peer->sin_addr.s_addr &&
		    x->peer.sin_port == peer->sin_port)
			return;	/* a retransmitted RRQ: the transfer it started answers it */
	if (srv->nxfers >= TFTP_TRANSFERS_MAX) {
		log_limited(&srv->bad_limit, "tftp %s: %s: refused, %d transfers running", peer_s,
			    req->filename, srv->nxfers);
		return tftp_reply_error(srv, peer, TFTP_ENOTDEFINED, "server busy");
	}
	fd = fs_open_beneath(srv->root_fd, req->filename);
	if (fd < 0) {
		code = tftp_open_error(fd, &msg);
		log_limited(&srv->bad_limit, "tftp %s: %s: %s (%s)", peer_s, req->filename, msg,
			    strerror(-fd));
		return tftp_reply_error(srv, peer, code, msg);
	}
	x = calloc(1, sizeof *x);
	if (!x || fstat(fd, &st) < 0) {
		free(x);
		close(fd);
		return tftp_reply_error(srv, peer, TFTP_ENOTDEFINED, "out of resources");
	}
	x->srv = srv;
	x->file_fd = fd;
	x->size = (uint64_t)st.st_size;
	x->peer = *peer;
	snprintf(x->peer_s, sizeof x->peer_s, "%s", peer_s);
	snprintf(x->name, sizeof x->name, "%s", req->filename);
	x->oack = malloc(TFTP_REQUEST_MAX);
	x->oack_len = x->oack ? tftp_negotiate(req, x->size, &x->params, x->oack,
					       TFTP_REQUEST_MAX) : 0;
	x->buf = malloc(4 + (size_t)x->params.blksize);
	x->nblocks = tftp_block_count(x->size, x->params.blksize);
	x->start_ms = ev_now_ms();
	x->timer = (struct ev_timer){ .fn = tftp_xfer_timeout, .ctx = x };
	x->watch = (struct ev_watch){ .fd = -1, .fn = tftp_xfer_event, .ctx = x };
	if (!x->oack || !x->buf ||
	    (x->watch.fd = tftp_xfer_socket(srv, local, peer)) < 0 ||
	    ev_add(&x->watch, EPOLLIN) < 0) {
		if (x->watch.fd >= 0)
			close(x->watch.fd);
		close(fd);
		free(x->oack);
		free(x->buf);
		free(x);
		return tftp_reply_error(srv, peer, TFTP_ENOTDEFINED, "out of resources");
	}
	x->next = srv->xfers;
	if (x->next)
		x->next->pprev = &x->next;
	x->pprev = &srv->xfers;
	srv->xfers = x;
	srv->nxfers++;
	srv->started++;
	if (x->oack_len) {
		if (send(x->watch.fd, x->oack, x->oack_len, 0) < 0 && errno != EAGAIN)
			return tftp_xfer_end(x, 0, strerror(errno));
		ev_timer_set(&x->timer, ev_now_ms() + x->params.timeout_ms);
		return;
	}
	tftp_xfer_fill(x);
}

/* Reads one request from the listening socket, with the address it was sent to; -1 when
 * there was none to read. */
static int tftp_rx_request(struct tftp_server *srv)
{
	uint8_t pkt[TFTP_REQUEST_MAX + 1];
	char cbuf[CMSG_SPACE(sizeof(struct in_pktinfo))];
	struct sockaddr_in peer;
	struct iovec iov = { .iov_base = pkt, .iov_len = sizeof pkt };
	struct msghdr mh = {
		.msg_name = &peer, .msg_namelen = sizeof peer, .msg_iov = &iov, .msg_iovlen = 1,
		.msg_control = cbuf, .msg_controllen = sizeof cbuf,
	};
	struct in_addr local = srv->addr;
	struct tftp_request req;
	char peer_s[ADDR_STRLEN];
	ssize_t n = recvmsg(srv->watch.fd, &mh, 0);

	if (n < 0)
		return -1;
	if (mh.msg_namelen != sizeof peer || peer.sin_family != AF_INET)
		return 0;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
		if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO)
			local = ((struct in_pktinfo *)(void *)CMSG_DATA(c))->ipi_spec_dst;
	sockaddr_format((struct sockaddr *)&peer, peer_s, sizeof peer_s);
	if (peer.sin_port == 0)
		return 0;
	if (tftp_parse_request(pkt, (size_t)n, &req) < 0) {
		log_limited(&srv->bad_limit, "tftp %s: bad request: %s", peer_s, req.error);
		tftp_reply_error(srv, &peer, req.error_code, req.error);
	} else if (req.opcode == TFTP_WRQ) {
		log_limited(&srv->bad_limit, "tftp %s: write request for %s refused", peer_s,
			    req.filename);
		tftp_reply_error(srv, &peer, TFTP_EACCESS, "read-only server");
	} else {
		tftp_start_xfer(srv, &req, &peer, local, peer_s);
	}
	return 0;
}

/* Bounded per wake-up so a request flood cannot starve running transfers. */
static void tftp_listen_event(void *ctx, uint32_t events)
{
	for (int i = 0; i < 64 && tftp_rx_request(ctx) == 0; i++)
		;
}

static void tftp_metrics(struct strbuf *out, void *ctx)
{
	struct tftp_server *srv = ctx;

	metrics_family(out, "virtman_tftp_transfers_total", "counter",
		       "TFTP transfers by outcome.");
	metrics_sample(out, "virtman_tftp_transfers_total", "outcome=\"completed\"", srv->completed);
	metrics_sample(out, "virtman_tftp_transfers_total", "outcome=\"failed\"", srv->failed);
	metrics_family(out, "virtman_tftp_transfers", "gauge", "TFTP transfers running.");
	metrics_sample(out, "virtman_tftp_transfers", "", (uint64_t)srv->nxfers);
	metrics_family(out, "virtman_tftp_sent_bytes_total", "counter",
		       "File bytes sent over TFTP, retransmissions included.");
	metrics_sample(out, "virtman_tftp_sent_bytes_total", "", srv->bytes);
}

int tftp_start(const struct tftp_config *cfg)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr = cfg->addr,
				   .sin_port = htons(cfg->port) };
	struct tftp_server *srv;
	int fd, one = 1, err;

	srv = calloc(1, sizeof *srv);
	if (!srv)
		return -ENOMEM;
	srv->addr = cfg->addr;
	srv->iface = cfg->iface;
	srv->root_fd = open(cfg->root, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (srv->root_fd < 0) {
		err = -errno;
		free(srv);
		return err;
	}
	fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto fail;
	if (setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof one) < 0 ||
	    (cfg->iface && setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, cfg->iface,
				      (socklen_t)strlen(cfg->iface)) < 0) ||
	    bind(fd, (struct sockaddr *)&sin, sizeof sin) < 0)
		goto fail;
	srv->watch = (struct ev_watch){ .fd = fd, .fn = tftp_listen_event, .ctx = srv };
	if (ev_add(&srv->watch, EPOLLIN) < 0)
		goto fail;
	tftp_srv = srv;
	metrics_register(tftp_metrics, srv);
	return 0;
fail:
	err = -errno;
	if (fd >= 0)
		close(fd);
	close(srv->root_fd);
	free(srv);
	return err;
}
