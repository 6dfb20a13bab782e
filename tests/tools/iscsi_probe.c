/* iscsi_probe: a small raw-socket iSCSI initiator, independent of iscsi/, that cross-checks a target in tests. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define BHS_LEN 48
#define AHS_MAX (255 * 4)		/* TotalAHSLength is one byte of 4-byte words */
#define DIGEST_LEN 4
#define LOGIN_MRDSL 8192		/* MaxRecvDataSegmentLength in force during login (RFC 7143 13.12) */
#define TEXT_MAX 8192			/* largest key=value text we accept in one login */
#define LOGIN_ROUNDS 8			/* cap on login request/response round trips per stage */
#define NO_TAG 0xffffffffu
#define PROBE_INITIATOR "iqn.2026-11.org.virtman:probe"
#define DEFAULT_TIMEOUT_S 30
#define DEFAULT_MRDSL 262144
#define DEFAULT_CHUNK (256 * 1024)
#define DEFAULT_DEPTH 8
#define MAX_DEPTH 64
#define IDLE_MAX 100000
#define IDLE_HOLD_S 120
#define IDLE_POLL_MS 100
#define UA_RETRIES 4			/* UNIT ATTENTIONs tolerated per command (tgt reports power-on first) */
#define SENSE_UNIT_ATTENTION 0x6

enum opcode {
	OP_NOP_OUT = 0x00,
	OP_SCSI_CMD = 0x01,
	OP_LOGIN = 0x03,
	OP_DATA_OUT = 0x05,
	OP_LOGOUT = 0x06,
	OP_SNACK = 0x10,
	OP_NOP_IN = 0x20,
	OP_SCSI_RSP = 0x21,
	OP_LOGIN_RSP = 0x23,
	OP_DATA_IN = 0x25,
	OP_LOGOUT_RSP = 0x26,
	OP_R2T = 0x31,
	OP_ASYNC = 0x32,
	OP_REJECT = 0x3f,
};
#define OP_IMMEDIATE 0x40
#define OP_UNKNOWN 0x1f		/* reserved initiator opcode */

#define FLAG_FINAL 0x80
#define LOGIN_TRANSIT 0x80
#define SCSI_READ 0x40
#define SCSI_WRITE 0x20
#define SCSI_ATTR_SIMPLE 0x01
#define DATAIN_STATUS 0x01
#define RSP_UNDERFLOW 0x02
#define RSP_OVERFLOW 0x04

enum stage { STAGE_SECURITY = 0, STAGE_OPERATIONAL = 1, STAGE_FFP = 3 };

struct options {
	const char *addr;		/* HOST:PORT */
	const char *iqn;
	const char *out;
	bool header_digest, data_digest;
	uint32_t mrdsl;			/* MaxRecvDataSegmentLength we declare */
	uint32_t lun;
	uint32_t depth;			/* READ commands in flight */
	uint32_t chunk;			/* bytes per READ command */
	int timeout_ms;			/* bound on every wait for the target */
	uint32_t idle_count;
	const char *until;		/* idle: hold until this file exists */
	int hold_s;			/* idle: hold at most this long */
};

struct conn {
	int fd;
	char local[80];			/* our address as the target logs it */
	int timeout_ms;
	bool ffp;			/* digests apply once in full feature phase */
	bool hdigest, ddigest;
	uint32_t my_mrdsl, peer_mrdsl;
	uint8_t isid[6];
	uint16_t tsih;
	uint32_t itt;
	uint32_t cmdsn, expcmdsn, maxcmdsn;
	uint32_t expstatsn;
	bool statsn_known;
	uint8_t *rxbuf;			/* data segment + padding + digest */
	size_t rxcap;
};

struct pdu {
	uint8_t bhs[BHS_LEN];
	uint32_t ahs_len;
	uint8_t ahs[AHS_MAX];
	uint32_t data_len;
	const uint8_t *data;		/* points into conn->rxbuf */
};

struct task {
	bool busy;
	uint32_t itt;
	uint64_t offset;		/* byte offset in the LUN */
	uint32_t len;			/* expected data transfer length */
	uint32_t got;
	uint32_t next_datasn;
	bool allow_underflow;
	bool done;
	bool retry;			/* ended with UNIT ATTENTION: send it again */
	uint32_t retries;
	uint8_t *buf;
};

/* What a target did after we sent something hostile. */
enum reaction { R_CLOSED, R_REJECT, R_LOGIN_FAIL, R_LOGIN_OK, R_NOP, R_OTHER, R_TIMEOUT, R_BAD };

static const char *reaction_name[] = {
	[R_CLOSED] = "closed the connection", [R_REJECT] = "sent Reject",
	[R_LOGIN_FAIL] = "refused the login", [R_LOGIN_OK] = "accepted the login",
	[R_NOP] = "answered the NOP-Out ping", [R_OTHER] = "sent an unexpected PDU",
	[R_TIMEOUT] = "did nothing before the deadline", [R_BAD] = "sent a malformed PDU",
};

static uint32_t crc32c_table[256];
static unsigned probe_sessions;		/* makes each ISID of this process distinct */

static void die(const char *fmt, ...)
{
	va_list ap;

	fputs("iscsi_probe: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static void warnx(const char *fmt, ...)
{
	va_list ap;

	fputs("iscsi_probe: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static uint32_t get24(const uint8_t *p)
{
	return (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2];
}

static void put24(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 16);
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)v;
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static uint64_t get64(const uint8_t *p)
{
	return (uint64_t)get32(p) << 32 | get32(p + 4);
}

static void put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)(v >> 32));
	put32(p + 4, (uint32_t)v);
}

/* Serial number arithmetic (RFC 1982) on 32-bit sequence numbers. */
static bool sn_lt(uint32_t a, uint32_t b)
{
	return a != b && (int32_t)(a - b) < 0;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void crc32c_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
		crc32c_table[i] = c;
	}
}

static uint32_t crc32c_update(uint32_t crc, const uint8_t *p, size_t n)
{
	while (n--)
		crc = crc32c_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return crc;
}

/* iSCSI puts the CRC32C on the wire least significant byte first (as libiscsi and Linux do). */
static void digest_put(uint8_t *p, uint32_t crc)
{
	p[0] = (uint8_t)crc;
	p[1] = (uint8_t)(crc >> 8);
	p[2] = (uint8_t)(crc >> 16);
	p[3] = (uint8_t)(crc >> 24);
}

static uint32_t digest_get(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint32_t digest_of(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
	uint32_t crc = crc32c_update(0xffffffffu, a, alen);
	return crc32c_update(crc, b, blen) ^ 0xffffffffu;
}

static uint32_t pad4(uint32_t n)
{
	return (n + 3) & ~3u;
}

/* Parses an unsigned decimal in [min, max]; dies naming the option otherwise. */
static uint32_t parse_u32(const char *s, const char *what, uint32_t min, uint32_t max)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-' || v < min || v > max)
		die("%s: '%s' is not a number in [%" PRIu32 ", %" PRIu32 "]", what, s, min, max);
	return (uint32_t)v;
}

/* Reads exactly len bytes before the deadline: 0, -EPIPE (orderly close), -ETIMEDOUT or -errno. */
static int sock_read_full(int fd, void *buf, size_t len, int64_t deadline)
{
	uint8_t *p = buf;

	while (len > 0) {
		int64_t left = deadline - now_ms();
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		ssize_t n;

		if (left <= 0)
			return -ETIMEDOUT;
		if (poll(&pfd, 1, left > INT_MAX ? INT_MAX : (int)left) < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (!pfd.revents)
			continue;
		n = recv(fd, p, len, 0);
		if (n == 0)
			return -EPIPE;
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Writes all of buf before the deadline: 0, -ETIMEDOUT or -errno (EPIPE/ECONNRESET once closed). */
static int sock_write_full(int fd, const void *buf, size_t len, int64_t deadline)
{
	const uint8_t *p = buf;

	while (len > 0) {
		int64_t left = deadline - now_ms();
		struct pollfd pfd = { .fd = fd, .events = POLLOUT };
		ssize_t n;

		if (left <= 0)
			return -ETIMEDOUT;
		if (poll(&pfd, 1, left > INT_MAX ? INT_MAX : (int)left) < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (!pfd.revents)
			continue;
		n = send(fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static bool err_is_closed(int err)
{
	return err == -EPIPE || err == -ECONNRESET;
}

/* Splits HOST:PORT (or [V6]:PORT) and connects with a deadline; returns the socket or -errno. */
static int tcp_connect(const char *addr, int timeout_ms)
{
	char host[256];
	const char *colon = strrchr(addr, ':');
	const char *h = addr;
	size_t hlen;
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV };
	struct addrinfo *res;
	int fd, rc, one = 1;

	if (!colon || colon == addr || !colon[1])
		die("address '%s' is not HOST:PORT", addr);
	hlen = (size_t)(colon - addr);
	if (h[0] == '[' && hlen >= 2 && h[hlen - 1] == ']') {
		h++;
		hlen -= 2;
	}
	if (hlen >= sizeof host)
		die("address '%s': host too long", addr);
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	rc = getaddrinfo(host, colon + 1, &hints, &res);
	if (rc)
		die("%s: %s", addr, gai_strerror(rc));
	fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		rc = -errno;
		freeaddrinfo(res);
		return rc;
	}
	rc = connect(fd, res->ai_addr, res->ai_addrlen);
	freeaddrinfo(res);
	if (rc < 0 && errno == EINPROGRESS) {
		struct pollfd pfd = { .fd = fd, .events = POLLOUT };
		int soerr = 0;
		socklen_t sl = sizeof soerr;

		rc = poll(&pfd, 1, timeout_ms);
		if (rc == 0) {
			close(fd);
			return -ETIMEDOUT;
		}
		if (rc < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
			soerr = errno;
		rc = soerr ? -1 : 0;
		errno = soerr;
	}
	if (rc < 0) {
		rc = -errno;
		close(fd);
		return rc;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	return fd;
}

static void sockaddr_format(const struct sockaddr_storage *ss, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
		inet_ntop(AF_INET, &sin->sin_addr, host, sizeof host);
		port = ntohs(sin->sin_port);
		snprintf(buf, len, "%s:%u", host, port);
	} else {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
		inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof host);
		port = ntohs(sin6->sin6_port);
		snprintf(buf, len, "[%s]:%u", host, port);
	}
}

/* Opens a connection and prints our address, which the target's log should name. */
static void conn_open(struct conn *c, const struct options *o)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	uint32_t id = ((uint32_t)getpid() << 8) ^ probe_sessions++;

	memset(c, 0, sizeof *c);
	c->timeout_ms = o->timeout_ms;
	c->fd = tcp_connect(o->addr, o->timeout_ms);
	if (c->fd < 0)
		die("connect %s: %s", o->addr, strerror(-c->fd));
	if (getsockname(c->fd, (struct sockaddr *)&ss, &sl) == 0)
		sockaddr_format(&ss, c->local, sizeof c->local);
	printf("local %s\n", c->local);
	fflush(stdout);
	/* ISID type 10b (random) with a per-process qualifier, so concurrent probes are distinct sessions. */
	c->isid[0] = 0x80;
	c->isid[1] = 0x00;
	put32(c->isid + 2, id);
	c->itt = 0x10;
	c->cmdsn = 1;
	c->my_mrdsl = o->mrdsl;
	c->peer_mrdsl = LOGIN_MRDSL;
	c->rxcap = (o->mrdsl > TEXT_MAX ? o->mrdsl : TEXT_MAX) + 4 + DIGEST_LEN;
	c->rxbuf = malloc(c->rxcap);
	if (!c->rxbuf)
		die("out of memory");
}

static void conn_close(struct conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	free(c->rxbuf);
	c->rxbuf = NULL;
}

/* Sends raw bytes as they are (hostile scenarios); 0, or -errno. */
static int conn_send_raw(struct conn *c, const void *buf, size_t len)
{
	return sock_write_full(c->fd, buf, len, now_ms() + c->timeout_ms);
}

/* Frames and sends one PDU: BHS, AHS, header digest, data, padding, data digest. */
static int pdu_send(struct conn *c, uint8_t *bhs, const uint8_t *ahs, uint32_t ahs_len,
		    const uint8_t *data, uint32_t data_len)
{
	size_t total = BHS_LEN + ahs_len + DIGEST_LEN + pad4(data_len) + DIGEST_LEN;
	uint8_t *buf = calloc(1, total);
	size_t n = 0;
	int rc;

	if (!buf)
		die("out of memory");
	bhs[4] = (uint8_t)(ahs_len / 4);
	put24(bhs + 5, data_len);
	memcpy(buf, bhs, BHS_LEN);
	n = BHS_LEN;
	if (ahs_len) {
		memcpy(buf + n, ahs, ahs_len);
		n += ahs_len;
	}
	if (c->ffp && c->hdigest) {
		digest_put(buf + n, digest_of(buf, n, NULL, 0));
		n += DIGEST_LEN;
	}
	if (data_len) {
		size_t start = n;
		memcpy(buf + n, data, data_len);
		n += pad4(data_len);
		if (c->ffp && c->ddigest) {
			digest_put(buf + n, digest_of(buf + start, n - start, NULL, 0));
			n += DIGEST_LEN;
		}
	}
	rc = conn_send_raw(c, buf, n);
	free(buf);
	return rc;
}

/*
 * Receives one PDU, checking its framing and digests; 0, -EPIPE/-ECONNRESET (closed),
 * -ETIMEDOUT, or -EPROTO after printing what was wrong.
 */
static int pdu_recv(struct conn *c, struct pdu *p, int64_t deadline)
{
	uint32_t limit = c->ffp ? c->my_mrdsl : LOGIN_MRDSL;
	uint32_t padded;
	uint8_t dig[DIGEST_LEN];
	int rc;

	rc = sock_read_full(c->fd, p->bhs, BHS_LEN, deadline);
	if (rc)
		return rc;
	p->ahs_len = (uint32_t)p->bhs[4] * 4;
	p->data_len = get24(p->bhs + 5);
	p->data = c->rxbuf;
	if (p->ahs_len) {
		rc = sock_read_full(c->fd, p->ahs, p->ahs_len, deadline);
		if (rc)
			return rc;
	}
	if (c->ffp && c->hdigest) {
		uint32_t want, got;

		rc = sock_read_full(c->fd, dig, DIGEST_LEN, deadline);
		if (rc)
			return rc;
		want = digest_of(p->bhs, BHS_LEN, p->ahs, p->ahs_len);
		got = digest_get(dig);
		if (want != got) {
			warnx("header digest mismatch on opcode 0x%02x: got 0x%08" PRIx32 ", computed 0x%08" PRIx32,
			      p->bhs[0] & 0x3f, got, want);
			return -EPROTO;
		}
	}
	if (p->data_len > limit) {
		warnx("target sent opcode 0x%02x with a %" PRIu32 "-byte data segment, above our MaxRecvDataSegmentLength %" PRIu32,
		      p->bhs[0] & 0x3f, p->data_len, limit);
		return -EPROTO;
	}
	if (p->data_len == 0)
		return 0;
	padded = pad4(p->data_len);
	rc = sock_read_full(c->fd, c->rxbuf, padded, deadline);
	if (rc)
		return rc;
	if (c->ffp && c->ddigest) {
		uint32_t want, got;

		rc = sock_read_full(c->fd, dig, DIGEST_LEN, deadline);
		if (rc)
			return rc;
		want = digest_of(c->rxbuf, padded, NULL, 0);
		got = digest_get(dig);
		if (want != got) {
			warnx("data digest mismatch on opcode 0x%02x (%" PRIu32 " bytes): got 0x%08" PRIx32 ", computed 0x%08" PRIx32,
			      p->bhs[0] & 0x3f, p->data_len, got, want);
			return -EPROTO;
		}
	}
	return 0;
}

/* Follows ExpCmdSN/MaxCmdSN, which every target PDU we handle carries at bytes 28 and 32. */
static void conn_note_window(struct conn *c, const struct pdu *p)
{
	uint32_t exp = get32(p->bhs + 28), max = get32(p->bhs + 32);

	/* MaxCmdSN = ExpCmdSN - 1 means a closed window; anything below that is invalid and ignored. */
	if (sn_lt(max, exp - 1))
		return;
	if (sn_lt(c->expcmdsn, exp) || c->expcmdsn == 0)
		c->expcmdsn = exp;
	if (sn_lt(c->maxcmdsn, max) || c->maxcmdsn == 0)
		c->maxcmdsn = max;
}

/* Checks the StatSN of a status-bearing PDU and advances ExpStatSN; -EPROTO when out of order. */
static int conn_take_statsn(struct conn *c, const struct pdu *p, bool advance)
{
	uint32_t statsn = get32(p->bhs + 24);

	if (c->statsn_known && statsn != c->expstatsn) {
		warnx("opcode 0x%02x has StatSN %" PRIu32 ", expected %" PRIu32, p->bhs[0] & 0x3f, statsn,
		      c->expstatsn);
		return -EPROTO;
	}
	c->statsn_known = true;
	c->expstatsn = advance ? statsn + 1 : statsn;
	return 0;
}

/* Answers a target's NOP-In ping (TTT != 0xffffffff) with an immediate NOP-Out echoing its data. */
static int nop_answer(struct conn *c, const struct pdu *p)
{
	uint8_t bhs[BHS_LEN] = { 0 };

	bhs[0] = OP_NOP_OUT | OP_IMMEDIATE;
	bhs[1] = FLAG_FINAL;
	memcpy(bhs + 8, p->bhs + 8, 8);
	put32(bhs + 16, NO_TAG);
	memcpy(bhs + 20, p->bhs + 20, 4);
	put32(bhs + 24, c->cmdsn);
	put32(bhs + 28, c->expstatsn);
	return pdu_send(c, bhs, NULL, 0, p->data, p->data_len);
}

/* Sends an immediate NOP-Out ping with the given ITT; the target must answer with a NOP-In. */
static int nop_ping(struct conn *c, uint32_t itt)
{
	uint8_t bhs[BHS_LEN] = { 0 };

	bhs[0] = OP_NOP_OUT | OP_IMMEDIATE;
	bhs[1] = FLAG_FINAL;
	put32(bhs + 16, itt);
	put32(bhs + 20, NO_TAG);
	put32(bhs + 24, c->cmdsn);
	put32(bhs + 28, c->expstatsn);
	return pdu_send(c, bhs, NULL, 0, NULL, 0);
}

/* Handles a NOP-In that is not an answer to us: unsolicited pings need a NOP-Out back. */
static int nop_in_handle(struct conn *c, const struct pdu *p)
{
	int rc;

	rc = conn_take_statsn(c, p, get32(p->bhs + 16) != NO_TAG);
	if (rc)
		return rc;
	conn_note_window(c, p);
	if (get32(p->bhs + 20) != NO_TAG)
		return nop_answer(c, p);
	return 0;
}

/* Appends "key=value\0" to a text buffer; dies when it would not fit. */
static void text_add(char *buf, size_t cap, size_t *len, const char *key, const char *value)
{
	int n = snprintf(buf + *len, cap - *len, "%s=%s", key, value);

	if (n < 0 || (size_t)n + 1 > cap - *len)
		die("login text too long");
	*len += (size_t)n + 1;
}

/* Finds key in NUL-separated key=value text; NULL when absent. */
static const char *text_find(const char *text, size_t len, const char *key)
{
	size_t klen = strlen(key);
	const char *p = text, *end = text + len;

	while (p < end) {
		size_t n = strnlen(p, (size_t)(end - p));
		if (n > klen && !memcmp(p, key, klen) && p[klen] == '=')
			return p + klen + 1;
		p += n + 1;
	}
	return NULL;
}

/* Checks that a login response's text is well formed: every entry NUL-terminated and key=value. */
static int text_check(const uint8_t *data, uint32_t len)
{
	const char *p = (const char *)data, *end = p + len;

	while (p < end) {
		size_t n = strnlen(p, (size_t)(end - p));
		const char *eq = memchr(p, '=', n);

		if (n == (size_t)(end - p)) {
			warnx("login response text is not NUL-terminated");
			return -EPROTO;
		}
		if (!eq || eq == p) {
			warnx("login response has a malformed entry '%.*s'", (int)n, p);
			return -EPROTO;
		}
		p += n + 1;
	}
	return 0;
}

/* Builds a Login Request BHS for the current stage. */
static void login_bhs(struct conn *c, uint8_t *bhs, int csg, int nsg, bool transit)
{
	memset(bhs, 0, BHS_LEN);
	bhs[0] = OP_LOGIN | OP_IMMEDIATE;
	bhs[1] = (uint8_t)((transit ? LOGIN_TRANSIT : 0) | csg << 2 | (transit ? nsg : 0));
	memcpy(bhs + 8, c->isid, 6);
	bhs[14] = (uint8_t)(c->tsih >> 8);
	bhs[15] = (uint8_t)c->tsih;
	put32(bhs + 16, c->itt++);
	put32(bhs + 24, c->cmdsn);
	put32(bhs + 28, c->expstatsn);
}

/*
 * Sends one login request and reads the response into rsp. Returns 0 for a response with
 * status 0, 1 for a login failure status, or a negative errno.
 */
static int login_round(struct conn *c, int csg, int nsg, const char *text, size_t len, struct pdu *rsp)
{
	uint8_t bhs[BHS_LEN];
	uint32_t itt;
	int rc;

	login_bhs(c, bhs, csg, nsg, true);
	itt = get32(bhs + 16);
	rc = pdu_send(c, bhs, NULL, 0, (const uint8_t *)text, (uint32_t)len);
	if (rc)
		return rc;
	rc = pdu_recv(c, rsp, now_ms() + c->timeout_ms);
	if (rc)
		return rc;
	if ((rsp->bhs[0] & 0x3f) != OP_LOGIN_RSP) {
		warnx("expected a Login Response, got opcode 0x%02x", rsp->bhs[0] & 0x3f);
		return -EPROTO;
	}
	if (get32(rsp->bhs + 16) != itt) {
		warnx("Login Response ITT 0x%08" PRIx32 " does not match ours 0x%08" PRIx32, get32(rsp->bhs + 16), itt);
		return -EPROTO;
	}
	if (rsp->bhs[36] != 0)
		return 1;
	if (rsp->bhs[3] != 0) {
		warnx("Login Response has Version-active %u, not 0", rsp->bhs[3]);
		return -EPROTO;
	}
	if (((rsp->bhs[1] >> 2) & 3) != csg) {
		warnx("Login Response CSG %d, we are in stage %d", (rsp->bhs[1] >> 2) & 3, csg);
		return -EPROTO;
	}
	rc = text_check(rsp->data, rsp->data_len);
	if (rc)
		return rc;
	c->statsn_known = true;
	c->expstatsn = get32(rsp->bhs + 24) + 1;
	conn_note_window(c, rsp);
	return 0;
}

/* Runs one login stage until the target agrees to move to nsg, gathering its keys into keys. */
static int login_stage(struct conn *c, int csg, int nsg, const char *text, size_t len, char *keys, size_t *keys_len)
{
	struct pdu rsp;

	for (int round = 0; round < LOGIN_ROUNDS; round++) {
		int rc = login_round(c, csg, nsg, text, len, &rsp);

		if (rc < 0)
			return rc;
		if (rc > 0) {
			warnx("login refused: status 0x%02x%02x", rsp.bhs[36], rsp.bhs[37]);
			return -EACCES;
		}
		if (rsp.data_len > TEXT_MAX - *keys_len)
			die("target sent more than %d bytes of login keys", TEXT_MAX);
		memcpy(keys + *keys_len, rsp.data, rsp.data_len);
		*keys_len += rsp.data_len;
		if ((rsp.bhs[1] & LOGIN_TRANSIT) && (rsp.bhs[1] & 3) == nsg) {
			c->tsih = (uint16_t)((uint32_t)rsp.bhs[14] << 8 | rsp.bhs[15]);
			return 0;
		}
		/* The target wants another round (T=0): continue with nothing new to say. */
		text = "";
		len = 0;
	}
	warnx("login stage %d did not finish after %d rounds", csg, LOGIN_ROUNDS);
	return -EPROTO;
}

/* Requires the target's answer for a digest key to be exactly what we asked for. */
static int login_check_digest(const char *keys, size_t len, const char *key, bool want_crc)
{
	const char *v = text_find(keys, len, key);
	const char *want = want_crc ? "CRC32C" : "None";

	if (!v) {
		if (!want_crc)
			return 0;	/* absent means the default, None */
		warnx("target did not answer %s", key);
		return -EPROTO;
	}
	if (strcmp(v, want)) {
		warnx("target answered %s=%s, we offered %s", key, v, want);
		return -EPROTO;
	}
	return 0;
}

/* Logs in security -> operational -> full feature phase, negotiating digests as asked. */
static int session_login(struct conn *c, const struct options *o, bool hdigest, bool ddigest)
{
	char text[1024], keys[TEXT_MAX];
	size_t len = 0, klen = 0;
	char mrdsl[16];
	const char *v;
	int rc;

	text_add(text, sizeof text, &len, "InitiatorName", PROBE_INITIATOR);
	text_add(text, sizeof text, &len, "SessionType", "Normal");
	text_add(text, sizeof text, &len, "TargetName", o->iqn);
	text_add(text, sizeof text, &len, "AuthMethod", "None");
	rc = login_stage(c, STAGE_SECURITY, STAGE_OPERATIONAL, text, len, keys, &klen);
	if (rc)
		return rc;
	v = text_find(keys, klen, "AuthMethod");
	if (v && strcmp(v, "None")) {
		warnx("target wants AuthMethod=%s", v);
		return -EPROTO;
	}

	len = 0;
	klen = 0;
	snprintf(mrdsl, sizeof mrdsl, "%" PRIu32, o->mrdsl);
	text_add(text, sizeof text, &len, "HeaderDigest", hdigest ? "CRC32C" : "None");
	text_add(text, sizeof text, &len, "DataDigest", ddigest ? "CRC32C" : "None");
	text_add(text, sizeof text, &len, "MaxRecvDataSegmentLength", mrdsl);
	text_add(text, sizeof text, &len, "ErrorRecoveryLevel", "0");
	text_add(text, sizeof text, &len, "InitialR2T", "Yes");
	text_add(text, sizeof text, &len, "ImmediateData", "Yes");
	text_add(text, sizeof text, &len, "MaxBurstLength", "262144");
	text_add(text, sizeof text, &len, "FirstBurstLength", "65536");
	text_add(text, sizeof text, &len, "MaxOutstandingR2T", "1");
	text_add(text, sizeof text, &len, "MaxConnections", "1");
	text_add(text, sizeof text, &len, "DataPDUInOrder", "Yes");
	text_add(text, sizeof text, &len, "DataSequenceInOrder", "Yes");
	text_add(text, sizeof text, &len, "DefaultTime2Wait", "0");
	text_add(text, sizeof text, &len, "DefaultTime2Retain", "0");
	rc = login_stage(c, STAGE_OPERATIONAL, STAGE_FFP, text, len, keys, &klen);
	if (rc)
		return rc;
	rc = login_check_digest(keys, klen, "HeaderDigest", hdigest);
	if (rc)
		return rc;
	rc = login_check_digest(keys, klen, "DataDigest", ddigest);
	if (rc)
		return rc;
	v = text_find(keys, klen, "MaxRecvDataSegmentLength");
	if (v) {
		char *end;
		unsigned long n = strtoul(v, &end, 10);

		if (*end || n < 512 || n > 16777215) {
			warnx("target declared MaxRecvDataSegmentLength=%s, outside [512, 2^24-1]", v);
			return -EPROTO;
		}
		c->peer_mrdsl = (uint32_t)n;
	}
	v = text_find(keys, klen, "ErrorRecoveryLevel");
	if (v && strcmp(v, "0")) {
		warnx("target answered ErrorRecoveryLevel=%s to our 0", v);
		return -EPROTO;
	}
	c->ffp = true;
	c->hdigest = hdigest;
	c->ddigest = ddigest;
	c->cmdsn = c->expcmdsn;
	return 0;
}

static void session_login_or_die(struct conn *c, const struct options *o)
{
	int rc = session_login(c, o, o->header_digest, o->data_digest);

	if (rc)
		die("login to %s on %s failed: %s", o->iqn, o->addr, strerror(-rc));
}

/* Sends a SCSI command with a 16-byte CDB and advances CmdSN. */
static int scsi_send(struct conn *c, uint32_t itt, uint32_t lun, const uint8_t *cdb, uint32_t edtl)
{
	uint8_t bhs[BHS_LEN] = { 0 };

	bhs[0] = OP_SCSI_CMD;
	bhs[1] = FLAG_FINAL | SCSI_READ | SCSI_ATTR_SIMPLE;
	bhs[9] = (uint8_t)lun;		/* SAM peripheral addressing, LUN < 256 */
	put32(bhs + 16, itt);
	put32(bhs + 20, edtl);
	put32(bhs + 24, c->cmdsn++);
	put32(bhs + 28, c->expstatsn);
	memcpy(bhs + 32, cdb, 16);
	return pdu_send(c, bhs, NULL, 0, NULL, 0);
}

static struct task *task_find(struct task *tasks, uint32_t n, uint32_t itt)
{
	for (uint32_t i = 0; i < n; i++)
		if (tasks[i].busy && tasks[i].itt == itt)
			return &tasks[i];
	return NULL;
}

/* Checks the end of a command: status GOOD, residuals consistent with what arrived. */
static int task_finish(struct task *t, const struct pdu *p, uint8_t status)
{
	uint8_t flags = p->bhs[1];
	uint32_t residual = get32(p->bhs + 44);

	if (status != 0) {
		warnx("command ITT 0x%08" PRIx32 " at byte %" PRIu64 " ended with SCSI status 0x%02x", t->itt,
		      t->offset, status);
		return -EPROTO;
	}
	if (flags & RSP_OVERFLOW) {
		warnx("command ITT 0x%08" PRIx32 " reports residual overflow %" PRIu32, t->itt, residual);
		return -EPROTO;
	}
	if (flags & RSP_UNDERFLOW) {
		if (!t->allow_underflow || residual != t->len - t->got) {
			warnx("command ITT 0x%08" PRIx32 " reports underflow %" PRIu32 " after %" PRIu32 " of %" PRIu32 " bytes",
			      t->itt, residual, t->got, t->len);
			return -EPROTO;
		}
	} else if (t->got != t->len) {
		warnx("command ITT 0x%08" PRIx32 " got %" PRIu32 " of %" PRIu32 " bytes without a residual", t->itt,
		      t->got, t->len);
		return -EPROTO;
	}
	t->done = true;
	return 0;
}

static int datain_handle(struct conn *c, struct task *t, const struct pdu *p)
{
	uint32_t datasn = get32(p->bhs + 36), offset = get32(p->bhs + 40);

	if (datasn != t->next_datasn) {
		warnx("Data-In for ITT 0x%08" PRIx32 " has DataSN %" PRIu32 ", expected %" PRIu32, t->itt, datasn,
		      t->next_datasn);
		return -EPROTO;
	}
	/* We negotiated DataPDUInOrder=Yes and DataSequenceInOrder=Yes: offsets must be contiguous. */
	if (offset != t->got) {
		warnx("Data-In for ITT 0x%08" PRIx32 " at offset %" PRIu32 ", expected %" PRIu32, t->itt, offset, t->got);
		return -EPROTO;
	}
	if (p->data_len > t->len - t->got) {
		warnx("Data-In for ITT 0x%08" PRIx32 " carries %" PRIu32 " bytes beyond the %" PRIu32 " requested",
		      t->itt, p->data_len, t->len);
		return -EPROTO;
	}
	memcpy(t->buf + t->got, p->data, p->data_len);
	t->got += p->data_len;
	t->next_datasn++;
	conn_note_window(c, p);
	if (p->bhs[1] & DATAIN_STATUS) {
		int rc;

		if (!(p->bhs[1] & FLAG_FINAL)) {
			warnx("Data-In with status but without the F bit");
			return -EPROTO;
		}
		rc = conn_take_statsn(c, p, true);
		if (rc)
			return rc;
		return task_finish(t, p, p->bhs[3]);
	}
	return 0;
}

/* Extracts key/ASC/ASCQ from the SCSI Response's sense data (fixed or descriptor format). */
static int sense_parse(const struct pdu *p, uint8_t *key, uint8_t *asc, uint8_t *ascq)
{
	const uint8_t *s = p->data + 2;
	uint32_t len;

	if (p->data_len < 2)
		return -EPROTO;
	len = (uint32_t)p->data[0] << 8 | p->data[1];
	if (len > p->data_len - 2 || len < 4)
		return -EPROTO;
	if ((s[0] & 0x7f) == 0x72 || (s[0] & 0x7f) == 0x73) {
		*key = s[1] & 0x0f;
		*asc = s[2];
		*ascq = s[3];
		return 0;
	}
	if (len < 14)
		return -EPROTO;
	*key = s[2] & 0x0f;
	*asc = s[12];
	*ascq = s[13];
	return 0;
}

static int scsirsp_handle(struct conn *c, struct task *t, const struct pdu *p)
{
	int rc;

	rc = conn_take_statsn(c, p, true);
	if (rc)
		return rc;
	conn_note_window(c, p);
	if (p->bhs[2] != 0) {
		warnx("SCSI Response for ITT 0x%08" PRIx32 " has iSCSI response 0x%02x", t->itt, p->bhs[2]);
		return -EPROTO;
	}
	if (p->bhs[3] == 0x02) {
		uint8_t key, asc, ascq;

		if (sense_parse(p, &key, &asc, &ascq)) {
			warnx("CHECK CONDITION without readable sense data");
			return -EPROTO;
		}
		/* Initiators retry after a UNIT ATTENTION; tgt reports power-on/reset on the first command. */
		if (key == SENSE_UNIT_ATTENTION && t->retries < UA_RETRIES) {
			t->retries++;
			t->retry = true;
			t->done = true;
			return 0;
		}
		warnx("sense key 0x%x asc 0x%02x ascq 0x%02x", key, asc, ascq);
	}
	if (p->bhs[3] == 0 && get32(p->bhs + 36) != t->next_datasn) {
		warnx("SCSI Response ExpDataSN %" PRIu32 " but %" PRIu32 " Data-In PDUs arrived", get32(p->bhs + 36),
		      t->next_datasn);
		return -EPROTO;
	}
	return task_finish(t, p, p->bhs[3]);
}

/* Receives and dispatches one PDU while commands are outstanding. */
static int conn_pump(struct conn *c, struct task *tasks, uint32_t ntasks)
{
	struct pdu p;
	struct task *t;
	int rc;

	rc = pdu_recv(c, &p, now_ms() + c->timeout_ms);
	if (rc == -ETIMEDOUT)
		warnx("no PDU from the target for %d ms", c->timeout_ms);
	else if (err_is_closed(rc))
		warnx("target closed the connection during the read");
	if (rc)
		return rc;
	switch (p.bhs[0] & 0x3f) {
	case OP_DATA_IN:
	case OP_SCSI_RSP:
		t = task_find(tasks, ntasks, get32(p.bhs + 16));
		if (!t) {
			warnx("opcode 0x%02x for unknown ITT 0x%08" PRIx32, p.bhs[0] & 0x3f, get32(p.bhs + 16));
			return -EPROTO;
		}
		if ((p.bhs[0] & 0x3f) == OP_DATA_IN)
			return datain_handle(c, t, &p);
		return scsirsp_handle(c, t, &p);
	case OP_NOP_IN:
		return nop_in_handle(c, &p);
	case OP_REJECT:
		warnx("target rejected a PDU: reason 0x%02x", p.bhs[2]);
		return -EPROTO;
	case OP_ASYNC:
		warnx("target sent an Async Message, event %u", p.bhs[36]);
		return -EPROTO;
	default:
		warnx("unexpected opcode 0x%02x from the target", p.bhs[0] & 0x3f);
		return -EPROTO;
	}
}

static bool window_open(const struct conn *c)
{
	return !sn_lt(c->maxcmdsn, c->cmdsn);
}

/* Issues READ CAPACITY(16) and returns the number of blocks and the block size. */
static int read_capacity(struct conn *c, const struct options *o, uint64_t *nblocks, uint32_t *block_size)
{
	uint8_t cdb[16] = { 0x9e, 0x10 };
	uint8_t buf[32] = { 0 };
	struct task t = { .busy = true, .len = sizeof buf, .allow_underflow = true, .buf = buf };
	int64_t deadline = now_ms() + c->timeout_ms;
	int rc;

	put32(cdb + 10, sizeof buf);
	while (!window_open(c)) {
		if (now_ms() > deadline)
			die("command window stays closed (CmdSN %" PRIu32 ", MaxCmdSN %" PRIu32 ")", c->cmdsn, c->maxcmdsn);
		rc = conn_pump(c, &t, 1);
		if (rc)
			return rc;
	}
	do {
		t.itt = c->itt++;
		t.done = t.retry = false;
		t.got = t.next_datasn = 0;
		rc = scsi_send(c, t.itt, o->lun, cdb, t.len);
		while (!rc && !t.done)
			rc = conn_pump(c, &t, 1);
		if (rc)
			return rc;
	} while (t.retry);
	if (t.got < 12) {
		warnx("READ CAPACITY(16) returned %" PRIu32 " bytes", t.got);
		return -EPROTO;
	}
	*nblocks = get64(buf) + 1;
	*block_size = get32(buf + 8);
	if (*block_size < 512 || *block_size > 65536 || (*block_size & (*block_size - 1))) {
		warnx("READ CAPACITY(16) reports block size %" PRIu32, *block_size);
		return -EPROTO;
	}
	return 0;
}

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

/* Stores a finished READ's bytes; zero chunks stay holes so big sparse LUNs stay cheap. */
static void output_store(int fd, const struct task *t)
{
	size_t done = 0;

	if (fd < 0 || all_zero(t->buf, t->len))
		return;
	while (done < t->len) {
		ssize_t n = pwrite(fd, t->buf + done, t->len - done, (off_t)(t->offset + done));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("write output: %s", strerror(errno));
		}
		done += (size_t)n;
	}
}

/* Logs out (close the session) and waits for the Logout Response. */
static int session_logout(struct conn *c)
{
	uint8_t bhs[BHS_LEN] = { 0 };
	uint32_t itt = c->itt++;
	int64_t deadline = now_ms() + c->timeout_ms;
	int rc;

	bhs[0] = OP_LOGOUT | OP_IMMEDIATE;
	bhs[1] = FLAG_FINAL | 0;	/* reason 0: close the session */
	put32(bhs + 16, itt);
	put32(bhs + 24, c->cmdsn);
	put32(bhs + 28, c->expstatsn);
	rc = pdu_send(c, bhs, NULL, 0, NULL, 0);
	while (!rc) {
		struct pdu p;

		rc = pdu_recv(c, &p, deadline);
		if (rc)
			break;
		if ((p.bhs[0] & 0x3f) == OP_NOP_IN) {
			rc = nop_in_handle(c, &p);
			continue;
		}
		if ((p.bhs[0] & 0x3f) != OP_LOGOUT_RSP || get32(p.bhs + 16) != itt) {
			warnx("expected a Logout Response, got opcode 0x%02x", p.bhs[0] & 0x3f);
			return -EPROTO;
		}
		rc = conn_take_statsn(c, &p, true);
		if (rc)
			return rc;
		if (p.bhs[2] != 0) {
			warnx("Logout Response 0x%02x", p.bhs[2]);
			return -EPROTO;
		}
		return 0;
	}
	return rc;
}

/* Sends (or re-sends after a UNIT ATTENTION) the READ(16) of one task. */
static int read_issue(struct conn *c, const struct options *o, struct task *t, uint32_t block_size)
{
	uint8_t cdb[16] = { 0x88 };

	t->done = t->retry = false;
	t->itt = c->itt++;
	t->got = 0;
	t->next_datasn = 0;
	put64(cdb + 2, t->offset / block_size);
	put32(cdb + 10, t->len / block_size);
	return scsi_send(c, t->itt, o->lun, cdb, t->len);
}

/* read: logs in, reads the whole LUN with several READ(16) in flight, logs out. */
static int cmd_read(const struct options *o)
{
	struct conn c;
	struct task tasks[MAX_DEPTH];
	uint64_t nblocks, total, next = 0, written = 0;
	uint32_t block_size, inflight = 0;
	int out = -1, rc;

	if (o->out) {
		out = open(o->out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (out < 0)
			die("%s: %s", o->out, strerror(errno));
	}
	conn_open(&c, o);
	session_login_or_die(&c, o);
	rc = read_capacity(&c, o, &nblocks, &block_size);
	if (rc)
		die("READ CAPACITY(16) failed");
	if (nblocks > UINT64_MAX / block_size)
		die("LUN size overflows");
	total = nblocks * block_size;
	if (o->chunk % block_size)
		die("--chunk %" PRIu32 " is not a multiple of the block size %" PRIu32, o->chunk, block_size);

	memset(tasks, 0, sizeof tasks);
	for (uint32_t i = 0; i < o->depth; i++) {
		tasks[i].buf = malloc(o->chunk);
		if (!tasks[i].buf)
			die("out of memory");
	}
	while (written < total) {
		for (uint32_t i = 0; i < o->depth && window_open(&c); i++) {
			struct task *t = &tasks[i];

			if (t->busy && !t->retry)
				continue;
			if (!t->busy) {
				if (next >= total)
					continue;
				t->busy = true;
				t->retries = 0;
				t->offset = next;
				t->len = (uint32_t)(total - next < o->chunk ? total - next : o->chunk);
				next += t->len;
				inflight++;
			}
			rc = read_issue(&c, o, t, block_size);
			if (rc)
				die("send READ(16): %s", strerror(-rc));
		}
		if (inflight == 0 && !window_open(&c))
			warnx("command window closed, waiting for the target to open it");
		rc = conn_pump(&c, tasks, o->depth);
		if (rc)
			die("read failed at byte %" PRIu64 " of %" PRIu64 ": %s", written, total, strerror(-rc));
		for (uint32_t i = 0; i < o->depth; i++) {
			if (tasks[i].busy && tasks[i].done && !tasks[i].retry) {
				output_store(out, &tasks[i]);
				written += tasks[i].len;
				tasks[i].busy = false;
				inflight--;
			}
		}
	}
	rc = session_logout(&c);
	if (rc)
		die("logout failed: %s", strerror(-rc));
	if (out >= 0) {
		if (ftruncate(out, (off_t)total) < 0 || close(out) < 0)
			die("%s: %s", o->out, strerror(errno));
	}
	printf("read %" PRIu64 " bytes (%" PRIu64 " blocks of %" PRIu32 ")%s%s\n", total, nblocks, block_size,
	       o->header_digest ? " header-digest" : "", o->data_digest ? " data-digest" : "");
	for (uint32_t i = 0; i < o->depth; i++)
		free(tasks[i].buf);
	conn_close(&c);
	return 0;
}

/*
 * Waits for the target's reaction to something hostile. Target pings are answered on the way.
 * ping_itt, when not NO_TAG, is the ITT of our NOP-Out whose answer means "ignored and alive".
 */
static enum reaction await_reaction(struct conn *c, struct pdu *p, uint32_t ping_itt)
{
	int64_t deadline = now_ms() + c->timeout_ms;

	for (;;) {
		int rc = pdu_recv(c, p, deadline);
		uint8_t op;

		if (err_is_closed(rc))
			return R_CLOSED;
		if (rc == -ETIMEDOUT)
			return R_TIMEOUT;
		if (rc)
			return R_BAD;
		op = p->bhs[0] & 0x3f;
		if (op == OP_NOP_IN && get32(p->bhs + 20) != NO_TAG) {
			if (nop_answer(c, p))
				return R_CLOSED;
			continue;
		}
		if (op == OP_NOP_IN && ping_itt != NO_TAG && get32(p->bhs + 16) == ping_itt)
			return R_NOP;
		if (op == OP_REJECT)
			return R_REJECT;
		if (op == OP_LOGIN_RSP)
			return p->bhs[36] ? R_LOGIN_FAIL : R_LOGIN_OK;
		warnx("unexpected opcode 0x%02x in reaction", op);
		return R_OTHER;
	}
}

/*
 * Validates a Reject: it must carry exactly the rejected BHS, whose opcode and ITT are ours,
 * with a reason in the allowed list. Returns true when acceptable.
 */
static bool reject_ok(const struct pdu *p, const uint8_t *sent, const uint8_t *reasons, size_t nreasons)
{
	bool reason_ok = false;

	for (size_t i = 0; i < nreasons; i++)
		reason_ok |= p->bhs[2] == reasons[i];
	if (!reason_ok) {
		warnx("Reject reason 0x%02x is not one expected here", p->bhs[2]);
		return false;
	}
	if (p->data_len != BHS_LEN) {
		warnx("Reject carries %" PRIu32 " bytes, not the %d-byte rejected header", p->data_len, BHS_LEN);
		return false;
	}
	if (sent && ((p->data[0] & 0x3f) != (sent[0] & 0x3f) || memcmp(p->data + 16, sent + 16, 4))) {
		warnx("Reject does not carry the header we sent (opcode 0x%02x)", p->data[0] & 0x3f);
		return false;
	}
	return true;
}

/* Closes with a TCP reset instead of an orderly FIN: the peer simply vanishes. */
static void conn_vanish(struct conn *c)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };

	setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
	conn_close(c);
}

static uint32_t xorshift32(uint32_t *s)
{
	uint32_t x = *s;

	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	return *s = x;
}

static int report(const char *scenario, enum reaction r, bool ok)
{
	printf("%s: target %s: %s\n", scenario, reaction_name[r], ok ? "ok" : "WRONG");
	return ok ? 0 : 1;
}

/* garbage: pseudo-random bytes instead of a Login Request; the target must close or refuse. */
static int hostile_garbage(const struct options *o)
{
	struct conn c;
	struct pdu p;
	uint8_t buf[4096];
	uint32_t seed = 0x5eed1234;
	enum reaction r;
	int rc;

	for (size_t i = 0; i < sizeof buf; i++)
		buf[i] = (uint8_t)xorshift32(&seed);
	buf[0] = 0x3e;		/* never a Login Request opcode, so no valid login can follow */
	conn_open(&c, o);
	rc = conn_send_raw(&c, buf, sizeof buf);
	r = (rc && err_is_closed(rc)) ? R_CLOSED : await_reaction(&c, &p, NO_TAG);
	conn_close(&c);
	return report("garbage", r, r == R_CLOSED || r == R_REJECT || r == R_LOGIN_FAIL);
}

/* truncated: half a Login Request BHS, then our FIN; the target must close its side too. */
static int hostile_truncated(const struct options *o)
{
	struct conn c;
	struct pdu p;
	uint8_t bhs[BHS_LEN];
	enum reaction r;

	conn_open(&c, o);
	login_bhs(&c, bhs, STAGE_SECURITY, STAGE_OPERATIONAL, true);
	put24(bhs + 5, 100);
	if (conn_send_raw(&c, bhs, BHS_LEN / 2) == 0)
		shutdown(c.fd, SHUT_WR);
	r = await_reaction(&c, &p, NO_TAG);
	conn_close(&c);
	return report("truncated", r, r == R_CLOSED || r == R_REJECT || r == R_LOGIN_FAIL);
}

/* midpdu: in full feature phase, 30 bytes of a SCSI Command BHS, then a TCP reset. */
static int hostile_midpdu(const struct options *o)
{
	struct conn c;
	uint8_t bhs[BHS_LEN] = { 0 };

	conn_open(&c, o);
	session_login_or_die(&c, o);
	bhs[0] = OP_SCSI_CMD;
	bhs[1] = FLAG_FINAL | SCSI_READ | SCSI_ATTR_SIMPLE;
	put32(bhs + 16, c.itt++);
	put32(bhs + 20, 512);
	put32(bhs + 24, c.cmdsn);
	put32(bhs + 28, c.expstatsn);
	bhs[32] = 0x88;
	conn_send_raw(&c, bhs, 30);
	conn_vanish(&c);
	printf("midpdu: sent 30 of %d header bytes and reset the connection: ok\n", BHS_LEN);
	return 0;
}

/* oversized: a SCSI Command announcing a data segment far above the target's MaxRecvDataSegmentLength. */
static int hostile_oversized(const struct options *o)
{
	static const uint8_t reasons[] = { 0x04, 0x09 };
	static uint8_t data[65536];
	struct conn c;
	struct pdu p;
	uint8_t bhs[BHS_LEN] = { 0 };
	uint32_t dsl = 9000000;
	enum reaction r;
	bool ok;
	int rc;

	conn_open(&c, o);
	session_login_or_die(&c, o);
	if (dsl <= c.peer_mrdsl)
		die("target MaxRecvDataSegmentLength %" PRIu32 " is not below %" PRIu32, c.peer_mrdsl, dsl);
	bhs[0] = OP_SCSI_CMD;
	bhs[1] = FLAG_FINAL | SCSI_WRITE | SCSI_ATTR_SIMPLE;
	put24(bhs + 5, dsl);
	bhs[9] = (uint8_t)o->lun;
	put32(bhs + 16, c.itt++);
	put32(bhs + 20, dsl);
	put32(bhs + 24, c.cmdsn++);
	put32(bhs + 28, c.expstatsn);
	bhs[32] = 0x8a;		/* WRITE(16) */
	put32(bhs + 42, dsl / 512);
	rc = conn_send_raw(&c, bhs, BHS_LEN);
	if (!rc)
		rc = conn_send_raw(&c, data, sizeof data);
	r = (rc && err_is_closed(rc)) ? R_CLOSED : await_reaction(&c, &p, NO_TAG);
	ok = r == R_CLOSED || (r == R_REJECT && reject_ok(&p, bhs, reasons, sizeof reasons));
	conn_close(&c);
	return report("oversized", r, ok);
}

/* Entries of a badkey case: "@T" stands for TargetName=<iqn>, "@L" for an over-long InitiatorName. */
#define BADKEY_ENTRIES 4
#define BADKEY_LONG_NAME 400		/* iSCSI names are at most 223 bytes (RFC 7143 4.2.7.1) */

/* Appends the entries of one badkey case to text, each NUL-terminated unless told otherwise. */
static size_t badkey_text(char *text, size_t cap, const char *const *entries, bool last_nul, const char *iqn)
{
	size_t len = 0;

	for (int i = 0; i < BADKEY_ENTRIES && entries[i]; i++) {
		int n;

		if (!strcmp(entries[i], "@T")) {
			n = snprintf(text + len, cap - len, "TargetName=%s", iqn);
		} else if (!strcmp(entries[i], "@L")) {
			n = snprintf(text + len, cap - len, "InitiatorName=iqn.2026-11.org.virtman:%0*d",
				     BADKEY_LONG_NAME, 0);
		} else {
			n = snprintf(text + len, cap - len, "%s", entries[i]);
		}
		if (n < 0 || (size_t)n + 1 > cap - len)
			die("badkey text too long");
		len += (size_t)n + 1;	/* keep the NUL */
	}
	return last_nul ? len : len - 1;
}

/* badkey: several malformed login texts, each on its own connection; each must be refused. */
static int hostile_badkey(const struct options *o)
{
	static const struct {
		const char *name;
		const char *entries[BADKEY_ENTRIES];
		bool last_nul;
	} cases[] = {
		{ "no-equals", { "InitiatorName=" PROBE_INITIATOR, "@T", "SessionType=Normal", "AuthMethodNone" }, true },
		{ "empty-key", { "InitiatorName=" PROBE_INITIATOR, "@T", "=Normal", "AuthMethod=None" }, true },
		{ "non-utf8", { "InitiatorName=iqn.2026-11.org.virtman:\xff\xfe\xc0\x80", "@T", "SessionType=Normal" }, true },
		{ "long-key", { "InitiatorName=" PROBE_INITIATOR, "@T",
				"XAVeryLongKeyNameThatGoesOnAndOnBeyondTheSixtyThreeByteLimitOfRFC7143=Yes" }, true },
		{ "long-value", { "@L", "@T", "SessionType=Normal" }, true },
		{ "no-nul", { "InitiatorName=" PROBE_INITIATOR, "@T", "SessionType=Normal" }, false },
	};
	int failed = 0;

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char text[2048], name[64];
		size_t len = badkey_text(text, sizeof text, cases[i].entries, cases[i].last_nul, o->iqn);
		struct conn c;
		struct pdu p;
		uint8_t bhs[BHS_LEN];
		enum reaction r;
		int rc;

		conn_open(&c, o);
		login_bhs(&c, bhs, STAGE_SECURITY, STAGE_OPERATIONAL, true);
		rc = pdu_send(&c, bhs, NULL, 0, (const uint8_t *)text, (uint32_t)len);
		r = (rc && err_is_closed(rc)) ? R_CLOSED : await_reaction(&c, &p, NO_TAG);
		conn_close(&c);
		snprintf(name, sizeof name, "badkey %s", cases[i].name);
		if (r == R_LOGIN_FAIL)
			printf("%s: login status 0x%02x%02x\n", name, p.bhs[36], p.bhs[37]);
		failed |= report(name, r, r == R_CLOSED || r == R_REJECT || r == R_LOGIN_FAIL);
	}
	return failed;
}

/*
 * Sends one hostile PDU in full feature phase followed by a NOP-Out ping: the target must
 * Reject it (with one of reasons) or close; answering only the ping means it was ignored.
 */
static int hostile_ffp_pdu(const struct options *o, const char *scenario, uint8_t *bhs, const uint8_t *ahs,
			   uint32_t ahs_len, const uint8_t *data, uint32_t data_len, const uint8_t *reasons,
			   size_t nreasons)
{
	struct conn c;
	struct pdu p;
	enum reaction r;
	uint32_t ping_itt;
	bool ok;
	int rc;

	conn_open(&c, o);
	session_login_or_die(&c, o);
	put32(bhs + 24, c.cmdsn);
	put32(bhs + 28, c.expstatsn);
	rc = pdu_send(&c, bhs, ahs, ahs_len, data, data_len);
	ping_itt = c.itt++;
	if (!rc)
		rc = nop_ping(&c, ping_itt);
	r = (rc && err_is_closed(rc)) ? R_CLOSED : await_reaction(&c, &p, ping_itt);
	ok = r == R_CLOSED || (r == R_REJECT && reject_ok(&p, bhs, reasons, nreasons));
	if (r == R_REJECT)
		printf("%s: Reject reason 0x%02x\n", scenario, p.bhs[2]);
	if (r == R_REJECT && ok) {
		/* After a Reject the connection must still work (or close): the ping gets its answer. */
		enum reaction after = await_reaction(&c, &p, ping_itt);
		if (after != R_NOP && after != R_CLOSED) {
			printf("%s: after the Reject the target %s\n", scenario, reaction_name[after]);
			ok = false;
		}
	}
	conn_close(&c);
	return report(scenario, r, ok);
}

static int hostile_unknown_opcode(const struct options *o)
{
	static const uint8_t reasons[] = { 0x04, 0x05 };
	uint8_t bhs[BHS_LEN] = { 0 };

	bhs[0] = OP_UNKNOWN | OP_IMMEDIATE;
	bhs[1] = FLAG_FINAL;
	put32(bhs + 16, 0x0bad0001);
	return hostile_ffp_pdu(o, "unknown-opcode", bhs, NULL, 0, NULL, 0, reasons, sizeof reasons);
}

/* snack: SNACK needs ErrorRecoveryLevel > 0; we negotiated 0. */
static int hostile_snack(const struct options *o)
{
	static const uint8_t reasons[] = { 0x03, 0x04, 0x05, 0x09 };
	uint8_t bhs[BHS_LEN] = { 0 };

	bhs[0] = OP_SNACK;
	bhs[1] = FLAG_FINAL | 0;	/* type 0: Data/R2T SNACK */
	bhs[9] = (uint8_t)o->lun;
	put32(bhs + 16, 0x0bad0002);
	put32(bhs + 20, NO_TAG);
	put32(bhs + 40, 0);		/* BegRun */
	put32(bhs + 44, 0);		/* RunLength: all */
	return hostile_ffp_pdu(o, "snack", bhs, NULL, 0, NULL, 0, reasons, sizeof reasons);
}

/* dataout-unknown: Data-Out for a task the target never saw. */
static int hostile_dataout_unknown(const struct options *o)
{
	static const uint8_t reasons[] = { 0x04, 0x09 };
	static const uint8_t data[512];
	uint8_t bhs[BHS_LEN] = { 0 };

	bhs[0] = OP_DATA_OUT;
	bhs[1] = FLAG_FINAL;
	bhs[9] = (uint8_t)o->lun;
	put32(bhs + 16, 0x0bad0003);
	put32(bhs + 20, NO_TAG);
	/* Data-Out has no CmdSN: bytes 24-27 are reserved, hostile_ffp_pdu's value there is harmless. */
	return hostile_ffp_pdu(o, "dataout-unknown", bhs, NULL, 0, data, sizeof data, reasons, sizeof reasons);
}

/* bad-ahs: a READ(16) with the largest TotalAHSLength, whose AHS claims even more. */
static int hostile_bad_ahs(const struct options *o)
{
	static const uint8_t reasons[] = { 0x04, 0x09 };
	static uint8_t ahs[AHS_MAX];
	uint8_t bhs[BHS_LEN] = { 0 };

	memset(ahs, 0xa5, sizeof ahs);
	ahs[0] = 0xff;			/* AHSLength 0xfff0: far past the 1020 bytes present */
	ahs[1] = 0xf0;
	ahs[2] = 0x7f;			/* reserved AHS type */
	bhs[0] = OP_SCSI_CMD;
	bhs[1] = FLAG_FINAL | SCSI_READ | SCSI_ATTR_SIMPLE;
	bhs[9] = (uint8_t)o->lun;
	put32(bhs + 16, 0x0bad0004);
	put32(bhs + 20, 512);
	bhs[32] = 0x88;
	bhs[45] = 1;			/* one block */
	return hostile_ffp_pdu(o, "bad-ahs", bhs, ahs, sizeof ahs, NULL, 0, reasons, sizeof reasons);
}

/* idle N: N connections that never speak, held until --until FILE exists or --hold seconds pass. */
static int hostile_idle(const struct options *o)
{
	struct pollfd *pfds;
	struct rlimit rl;
	uint32_t n = o->idle_count, closed = 0;
	int64_t deadline;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < n + 64) {
		rl.rlim_cur = rl.rlim_max < n + 64 ? rl.rlim_max : n + 64;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	pfds = calloc(n, sizeof *pfds);
	if (!pfds)
		die("out of memory");
	for (uint32_t i = 0; i < n; i++) {
		int fd = tcp_connect(o->addr, o->timeout_ms);
		if (fd < 0)
			die("idle: connection %" PRIu32 " of %" PRIu32 ": %s", i + 1, n, strerror(-fd));
		pfds[i].fd = fd;
		pfds[i].events = POLLIN;
	}
	printf("idle: %" PRIu32 " open\n", n);
	fflush(stdout);
	deadline = now_ms() + (int64_t)o->hold_s * 1000;
	while (now_ms() < deadline && !(o->until && access(o->until, F_OK) == 0)) {
		int rc = poll(pfds, n, IDLE_POLL_MS);

		if (rc < 0 && errno != EINTR)
			die("poll: %s", strerror(errno));
		for (uint32_t i = 0; rc > 0 && i < n; i++) {
			char b[256];

			if (pfds[i].fd < 0 || !pfds[i].revents)
				continue;
			/* A target may time out connections that never log in; it must not talk to them. */
			if (recv(pfds[i].fd, b, sizeof b, MSG_DONTWAIT) > 0)
				die("idle: target sent bytes on a connection that never sent any");
			close(pfds[i].fd);
			pfds[i].fd = -1;
			closed++;
		}
	}
	for (uint32_t i = 0; i < n; i++)
		if (pfds[i].fd >= 0)
			close(pfds[i].fd);
	free(pfds);
	printf("idle: held %" PRIu32 " connections, %" PRIu32 " closed by the target: ok\n", n, closed);
	return 0;
}

static void usage(FILE *f)
{
	fputs("usage: iscsi_probe read HOST:PORT IQN [--header-digest] [--data-digest] [--mrdsl N]\n"
	      "                       [--out FILE] [--lun N] [--depth N] [--chunk BYTES] [--timeout S]\n"
	      "       iscsi_probe hostile HOST:PORT IQN SCENARIO [--lun N] [--timeout S]\n"
	      "       iscsi_probe hostile HOST:PORT IQN idle N [--until FILE] [--hold S]\n"
	      "\n"
	      "read     logs in as " PROBE_INITIATOR " (security, operational, full feature),\n"
	      "         negotiates CRC32C digests when asked and checks every one received, reads\n"
	      "         the whole LUN with READ(16) (--depth commands of --chunk bytes in flight),\n"
	      "         writes it to FILE (zero chunks as holes) and logs out.\n"
	      "hostile  sends bad input and checks the target's reaction (a Reject, a refused\n"
	      "         login or closing the connection, within --timeout). SCENARIO is one of:\n"
	      "           garbage          pseudo-random bytes instead of a Login Request\n"
	      "           truncated        half a BHS, then an orderly close of our side\n"
	      "           oversized        SCSI Command with a data segment above MaxRecvDataSegmentLength\n"
	      "           badkey           malformed login key text (6 variants, one connection each)\n"
	      "           unknown-opcode   opcode 0x1f in full feature phase\n"
	      "           midpdu           30 bytes of a SCSI Command BHS, then a TCP reset\n"
	      "           snack            SNACK although ErrorRecoveryLevel=0\n"
	      "           dataout-unknown  Data-Out for an ITT never sent\n"
	      "           bad-ahs          TotalAHSLength 255 with a malformed AHS\n"
	      "           idle N           N connections that never speak, held until FILE exists\n"
	      "                            (or --hold seconds, default 120)\n"
	      "\n"
	      "Each connection prints 'local ADDR:PORT' first, the address the target's log names.\n"
	      "Exit 0: read bit-exact / the target reacted acceptably; 1: protocol error, digest\n"
	      "mismatch or wrong reaction; 2: usage.\n",
	      f);
}

int main(int argc, char **argv)
{
	struct options o = {
		.mrdsl = DEFAULT_MRDSL, .depth = DEFAULT_DEPTH, .chunk = DEFAULT_CHUNK,
		.timeout_ms = DEFAULT_TIMEOUT_S * 1000, .hold_s = IDLE_HOLD_S,
	};
	static const uint8_t check[] = "123456789";
	const char *cmd, *scenario = NULL;
	int pos = 0;

	crc32c_init();
	if (digest_of(check, 9, NULL, 0) != 0xE3069283u)
		die("CRC32C self-check failed");
	if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	cmd = argv[1];
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i];
		bool has_value = i + 1 < argc;

		if (!strcmp(a, "--header-digest")) {
			o.header_digest = true;
		} else if (!strcmp(a, "--data-digest")) {
			o.data_digest = true;
		} else if (a[0] == '-' && a[1] == '-' && !has_value) {
			fprintf(stderr, "iscsi_probe: %s needs a value\n", a);
			return 2;
		} else if (!strcmp(a, "--mrdsl")) {
			o.mrdsl = parse_u32(argv[++i], "--mrdsl", 512, 16777215);
		} else if (!strcmp(a, "--out")) {
			o.out = argv[++i];
		} else if (!strcmp(a, "--lun")) {
			o.lun = parse_u32(argv[++i], "--lun", 0, 255);
		} else if (!strcmp(a, "--depth")) {
			o.depth = parse_u32(argv[++i], "--depth", 1, MAX_DEPTH);
		} else if (!strcmp(a, "--chunk")) {
			o.chunk = parse_u32(argv[++i], "--chunk", 512, 16 << 20);
		} else if (!strcmp(a, "--timeout")) {
			o.timeout_ms = (int)parse_u32(argv[++i], "--timeout", 1, 3600) * 1000;
		} else if (!strcmp(a, "--until")) {
			o.until = argv[++i];
		} else if (!strcmp(a, "--hold")) {
			o.hold_s = (int)parse_u32(argv[++i], "--hold", 0, 86400);
		} else if (a[0] == '-' && a[1] == '-') {
			fprintf(stderr, "iscsi_probe: unknown option %s\n", a);
			usage(stderr);
			return 2;
		} else if (pos == 0) {
			o.addr = a;
			pos++;
		} else if (pos == 1) {
			o.iqn = a;
			pos++;
		} else if (pos == 2 && !strcmp(cmd, "hostile")) {
			scenario = a;
			pos++;
		} else if (pos == 3 && scenario && !strcmp(scenario, "idle")) {
			o.idle_count = parse_u32(a, "idle N", 1, IDLE_MAX);
			pos++;
		} else {
			fprintf(stderr, "iscsi_probe: unexpected argument '%s'\n", a);
			usage(stderr);
			return 2;
		}
	}
	if (pos < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(cmd, "read"))
		return cmd_read(&o);
	if (strcmp(cmd, "hostile") || !scenario) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(scenario, "garbage"))
		return hostile_garbage(&o);
	if (!strcmp(scenario, "truncated"))
		return hostile_truncated(&o);
	if (!strcmp(scenario, "midpdu"))
		return hostile_midpdu(&o);
	if (!strcmp(scenario, "oversized"))
		return hostile_oversized(&o);
	if (!strcmp(scenario, "badkey"))
		return hostile_badkey(&o);
	if (!strcmp(scenario, "unknown-opcode"))
		return hostile_unknown_opcode(&o);
	if (!strcmp(scenario, "snack"))
		return hostile_snack(&o);
	if (!strcmp(scenario, "dataout-unknown"))
		return hostile_dataout_unknown(&o);
	if (!strcmp(scenario, "bad-ahs"))
		return hostile_bad_ahs(&o);
	if (!strcmp(scenario, "idle")) {
		if (!o.idle_count) {
			fprintf(stderr, "iscsi_probe: idle needs a connection count\n");
			return 2;
		}
		return hostile_idle(&o);
	}
	fprintf(stderr, "iscsi_probe: unknown scenario '%s'\n", scenario);
	usage(stderr);
	return 2;
}
