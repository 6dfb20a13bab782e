/* iSCSI initiator (client side of RFC 7143, ErrorRecoveryLevel 0) on the event loop:
 * one session to one upstream target, pipelined READ(16), keepalive, reconnect. */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "iscsi/initiator.h"
#include "iscsi/keys.h"
#include "iscsi/pdu.h"
#include "iscsi/scsi.h"
#include "lib/crc32c.h"
#include "lib/evloop.h"
#include "lib/log.h"
#include "lib/net.h"
#include "lib/strbuf.h"

#define ICL_MRDSL 262144		/* our MaxRecvDataSegmentLength: the largest segment we take */
#define ICL_MAX_BURST 16776192		/* MaxBurstLength we offer (2^24 - 512) */
#define ICL_FIRST_BURST 262144
#define ICL_LOGIN_TIMEOUT_MS 10000	/* connect + login + READ CAPACITY */
#define ICL_LOGIN_ROUNDS 16		/* login exchanges per stage before we give up */
#define ICL_KEEPALIVE_MS 5000		/* silence from the target before a NOP-Out ping */
#define ICL_BACKOFF_MIN_MS 1000
#define ICL_BACKOFF_MAX_MS 30000
#define ICL_STABLE_MS 10000		/* a session up this long resets the backoff */
#define ICL_READ_TIMEOUT_MS 30000	/* when the configuration says 0 */
#define ICL_INFLIGHT_DEFAULT 16
#define ICL_INFLIGHT_MAX 1024
#define ICL_ADDRS_MAX 8			/* addresses of one host name tried per attempt */
#define ICL_INBUF 16384			/* receive staging buffer */
#define ICL_RX_DIRECT 4096		/* larger pieces of Data-In are received in place */
#define ICL_RX_ROUNDS 64		/* recv calls per event, so other sockets get a turn */
#define ICL_TX_MAX (1u << 20)		/* output queued for a target that does not read */
#define ICL_TX_IOV 64
#define ICL_UA_RETRIES 4		/* UNIT ATTENTIONs tolerated per command (tgt: power-on) */
#define ICL_CAPBUF 32			/* READ CAPACITY(16) allocation length */
#define ICL_DEFAULT_INITIATOR "iqn.2026-11.org.virtman:initiator"

#define SCSI_READ_16 0x88
#define SCSI_READ_CAPACITY_10 0x25
#define SCSI_SERVICE_ACTION_IN_16 0x9e
#define SCSI_SA_READ_CAPACITY_16 0x10
#define ISCSI_ATTR_SIMPLE 0x01
#define ISCSI_ASYNC_LOGOUT_REQUEST 1
#define ISCSI_ASYNC_DROP_CONNECTION 2
#define ISCSI_ASYNC_DROP_ALL 3

/* Where the session is, finer than the public state. */
enum icl_phase {
	PH_IDLE,	/* down: waiting for the reconnect timer */
	PH_TCP,		/* non-blocking connect under way */
	PH_LOGIN,	/* login request/response exchanges */
	PH_CAPACITY,	/* full feature phase, READ CAPACITY under way */
	PH_FULL,	/* up: reads flow */
};

enum rx_stage {
	RX_BHS,
	RX_AHS,
	RX_HDIGEST,
	RX_DATA,
	RX_PAD,
	RX_DDIGEST,
};

enum icl_task_kind {
	TASK_READ,
	TASK_CAPACITY16,
	TASK_CAPACITY10,
};

/* One SCSI command: a caller's read, or READ CAPACITY while coming up. */
struct icl_task {
	struct icl_task *next;
	enum icl_task_kind kind;
	uint32_t itt;
	uint64_t off;		/* bytes */
	uint32_t len;		/* bytes expected (EDTL) */
	uint8_t *buf;		/* NULL once cancelled: its data is discarded */
	iscsi_read_done *done;
	void *arg;
	int err;		/* the result, once in the completed list */
	uint32_t got;		/* bytes received, always in order */
	uint32_t datasn;	/* next Data-In DataSN expected */
	uint8_t ua_retries;
	uint64_t queued_ms;
	uint64_t sent_ms;
};

/* One PDU built whole: BHS, header digest, data, padding, data digest. */
struct icl_pdu {
	struct icl_pdu *next;
	uint32_t len;
	uint32_t sent;
	uint8_t bytes[];
};

/* The SCSI status of a task, from a SCSI Response or the last Data-In. */
struct icl_status {
	uint8_t response;
	uint8_t status;
	uint8_t flags;		/* residual overflow / underflow */
	uint32_t residual;
	const uint8_t *sense;
	uint32_t sense_len;
	const char *failure;	/* set when the command failed outside SCSI (Reject) */
};

struct iscsi_client {
	struct iscsi_client_config cfg;
	struct iscsi_client_events ev;
	char name[ISCSI_URL_MAX];
	char initiator_name[ISCSI_NAME_MAX + 1];
	enum iscsi_client_state state;
	enum icl_phase phase;
	struct ev_watch watch;		/* fd -1 while down */
	struct ev_timer timer;		/* down: reconnect; connecting: deadline; up: watchdog */
	struct ev_deferred defer;	/* delivers callbacks outside every handler */
	struct log_limit log_limit;
	uint64_t backoff_ms;
	uint64_t up_since;

	/* where to connect */
	struct sockaddr_storage addrs[ICL_ADDRS_MAX];
	socklen_t addr_lens[ICL_ADDRS_MAX];
	int naddrs, addr_idx;
	int connect_err;

	/* login */
	uint8_t isid[6];
	uint16_t tsih;
	uint8_t login_stage;		/* CSG of our requests */
	int login_rounds;
	uint32_t login_itt;
	struct strbuf login_text;	/* a response spanning PDUs (C bit) */
	bool hd_answered, dd_answered;
	bool neg_hd, neg_dd;		/* negotiated digests */
	bool hdigest, ddigest;		/* digests in force (full feature phase) */
	uint32_t tx_mrdsl;		/* the target's MaxRecvDataSegmentLength */
	uint32_t max_burst;

	/* sequence numbers */
	uint32_t itt_next;
	uint32_t cmdsn, exp_cmdsn, max_cmdsn;
	uint32_t exp_statsn;
	bool statsn_known;

	/* tasks */
	struct icl_task *sent;		/* commands on the wire */
	struct icl_task *queue, **queue_tail;	/* waiting for the window */
	struct icl_task *completed, **completed_tail;	/* done callbacks to deliver */
	uint32_t nsent;
	uint32_t nreads;		/* callers' reads accepted and not completed */
	uint64_t capacity;		/* bytes, known after the first session */
	uint32_t block_size;
	uint8_t capbuf[ICL_CAPBUF];

	/* keepalive */
	uint64_t last_rx_ms;
	bool ping_out;
	uint32_t ping_itt;
	uint64_t ping_ms;

	/* receive */
	enum rx_stage rx_stage;
	uint32_t rx_got, rx_need;
	uint32_t rx_ahs_len, rx_dlen;
	uint32_t rx_crc;
	uint8_t *rx_dst;		/* data segment destination; NULL: discard */
	struct icl_task *rx_task;	/* the task of the Data-In being received */
	union iscsi_hdr hdr;
	uint8_t ahs[255 * 4];
	uint8_t digest[ISCSI_DIGEST_LEN];
	uint8_t pad[4];
	uint8_t *scratch;		/* data segments of PDUs other than Data-In */
	uint32_t scratch_cap;
	uint8_t sink[ICL_RX_DIRECT];	/* Data-In of cancelled reads */
	uint8_t in[ICL_INBUF];
	uint32_t in_pos, in_len;

	/* transmit */
	struct icl_pdu *tx_head, **tx_tail;
	uint32_t tx_bytes;

	/* callbacks waiting for the deferred flush */
	bool notify_up, notify_down;
	char down_reason[256];
	bool flushing, free_pending;

	uint64_t bytes_read;
};

/* ---- small helpers ---- */

static uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t get_be64(const uint8_t *p)
{
	return (uint64_t)get_be32(p) << 32 | get_be32(p + 4);
}

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static void put_be64(uint8_t *p, uint64_t v)
{
	put_be32(p, (uint32_t)(v >> 32));
	put_be32(p + 4, (uint32_t)v);
}

static const char *sense_key_name(uint8_t key)
{
	static const char *const names[16] = {
		"NO SENSE", "RECOVERED ERROR", "NOT READY", "MEDIUM ERROR",
		"HARDWARE ERROR", "ILLEGAL REQUEST", "UNIT ATTENTION", "DATA PROTECT",
		"BLANK CHECK", "VENDOR SPECIFIC", "COPY ABORTED", "ABORTED COMMAND",
		"reserved", "VOLUME OVERFLOW", "MISCOMPARE", "COMPLETED",
	};

	return names[key & 0xf];
}

static const char *login_status_name(uint16_t status)
{
	switch (status) {
	case 0x0101: return "target moved temporarily";
	case 0x0102: return "target moved permanently";
	case 0x0200: return "initiator error";
	case 0x0201: return "authentication failed";
	case 0x0202: return "authorization failure";
	case 0x0203: return "target not found";
	case 0x0204: return "target removed";
	case 0x0205: return "unsupported version";
	case 0x0206: return "too many connections";
	case 0x0207: return "missing parameter";
	case 0x0208: return "cannot include in session";
	case 0x0209: return "session type not supported";
	case 0x020a: return "session does not exist";
	case 0x020b: return "invalid request during login";
	case 0x0300: return "target error";
	case 0x0301: return "service unavailable";
	case 0x0302: return "out of resources";
	default: return "unknown status";
	}
}

/* Sense key and ASC/ASCQ from fixed (0x70/0x71) or descriptor (0x72/0x73) sense data. */
static void sense_decode(const uint8_t *s, uint32_t len, uint8_t *key, uint8_t *asc,
			 uint8_t *ascq)
{
	*key = *asc = *ascq = 0;
	if (len < 1)
		return;
	switch (s[0] & 0x7f) {
	case 0x70:
	case 0x71:
		if (len > 2)
			*key = s[2] & 0xf;
		if (len > 13) {
			*asc = s[12];
			*ascq = s[13];
		}
		break;
	case 0x72:
	case 0x73:
		if (len > 3) {
			*key = s[1] & 0xf;
			*asc = s[2];
			*ascq = s[3];
		}
		break;
	default:
		break;
	}
}

/* ---- URL ---- */

static bool url_host_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '.' || c == '-' || c == '_';
}

static bool url_iqn_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == ':' ||
	       c == '-';
}

int iscsi_url_parse(const char *s, struct iscsi_url *url)
{
	const char *p, *host;
	size_t hlen, n;
	uint64_t v;
	char num[8];

	if (!s || strlen(s) >= ISCSI_URL_MAX || strncmp(s, "iscsi://", 8) != 0)
		return -EINVAL;
	memset(url, 0, sizeof *url);
	p = s + 8;
	if (*p == '[') {
		const char *rb = strchr(p, ']');
		struct in6_addr a6;

		if (!rb)
			return -EINVAL;
		host = p + 1;
		hlen = (size_t)(rb - host);
		if (hlen == 0 || hlen >= sizeof url->host)
			return -EINVAL;
		memcpy(url->host, host, hlen);
		if (inet_pton(AF_INET6, url->host, &a6) != 1)
			return -EINVAL;
		p = rb + 1;
	} else {
		struct in_addr a4;
		bool numeric = true;

		host = p;
		hlen = strcspn(p, ":/");
		if (hlen == 0 || hlen >= sizeof url->host)
			return -EINVAL;
		for (size_t i = 0; i < hlen; i++) {
			if (!url_host_char(host[i]))
				return -EINVAL;
			if (!(host[i] == '.' || (host[i] >= '0' && host[i] <= '9')))
				numeric = false;
		}
		memcpy(url->host, host, hlen);
		/* Digits and dots only is meant as an IPv4 address: it must be one. */
		if (numeric && inet_pton(AF_INET, url->host, &a4) != 1)
			return -EINVAL;
		p += hlen;
	}
	url->port = 3260;
	if (*p == ':') {
		p++;
		n = strcspn(p, "/");
		if (n == 0 || n >= sizeof num)
			return -EINVAL;
		memcpy(num, p, n);
		num[n] = '\0';
		if (parse_u64(num, 1, 65535, &v) < 0)
			return -EINVAL;
		url->port = (uint16_t)v;
		p += n;
	}
	if (*p++ != '/')
		return -EINVAL;
	n = strcspn(p, "/");
	if (n == 0 || n > ISCSI_NAME_MAX)
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		if (!url_iqn_char(p[i]))
			return -EINVAL;
	memcpy(url->iqn, p, n);
	p += n;
	if (*p++ != '/')
		return -EINVAL;
	if (parse_u64(p, 0, 16383, &v) < 0)
		return -EINVAL;
	url->lun = v;
	return 0;
}

/* ---- task lists ---- */

static void task_unlink(struct icl_task **head, struct icl_task ***tail, struct icl_task *t)
{
	for (struct icl_task **pp = head; *pp; pp = &(*pp)->next) {
		if (*pp != t)
			continue;
		*pp = t->next;
		if (tail && *tail == &t->next)
			*tail = pp;
		t->next = NULL;
		return;
	}
}

static void task_append(struct icl_task ***tail, struct icl_task *t)
{
	t->next = NULL;
	**tail = t;
	*tail = &t->next;
}

static struct icl_task *task_find_sent(struct iscsi_client *cl, uint32_t itt)
{
	for (struct icl_task *t = cl->sent; t; t = t->next)
		if (t->itt == itt)
			return t;
	return NULL;
}

/* Hands a caller's read to the deferred flush with its result; internal tasks just go. */
static void task_complete(struct iscsi_client *cl, struct icl_task *t, int err)
{
	if (t->kind != TASK_READ || !t->done) {
		free(t);
		return;
	}
	t->err = err;
	task_append(&cl->completed_tail, t);
	ev_defer(&cl->defer);
}

static uint32_t itt_new(struct iscsi_client *cl)
{
	uint32_t itt = cl->itt_next++;

	if (cl->itt_next == ISCSI_RSVD_TAG)
		cl->itt_next = 1;
	return itt;
}

/* ---- transmit ---- */

static void tx_free_all(struct iscsi_client *cl)
{
	while (cl->tx_head) {
		struct icl_pdu *p = cl->tx_head;

		cl->tx_head = p->next;
		free(p);
	}
	cl->tx_tail = &cl->tx_head;
	cl->tx_bytes = 0;
}

static void client_update_events(struct iscsi_client *cl)
{
	if (cl->watch.fd < 0)
		return;
	if (cl->phase == PH_TCP)
		ev_set(&cl->watch, EPOLLOUT);
	else
		ev_set(&cl->watch, EPOLLIN | (cl->tx_head ? EPOLLOUT : 0));
}

/* Closes the socket and forgets every per-connection byte. */
static void session_close(struct iscsi_client *cl)
{
	if (cl->watch.fd >= 0) {
		ev_del(&cl->watch);
		close(cl->watch.fd);
		cl->watch.fd = -1;
	}
	tx_free_all(cl);
	sb_free(&cl->login_text);
	cl->rx_stage = RX_BHS;
	cl->rx_got = 0;
	cl->rx_need = ISCSI_BHS_LEN;
	cl->rx_dst = NULL;
	cl->rx_task = NULL;
	cl->in_pos = cl->in_len = 0;
	cl->hdigest = cl->ddigest = false;
	cl->ping_out = false;
}

static int session_down(struct iscsi_client *cl, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Takes the session down once: every read completes with -ECONNRESET, the down event is
 * announced from the deferred flush, the reconnect timer starts. Returns -1 for callers. */
static int session_down(struct iscsi_client *cl, const char *fmt, ...)
{
	uint64_t now = ev_now_ms();
	struct icl_task *t;
	va_list ap;

	if (cl->state == ICLIENT_DOWN)
		return -1;
	va_start(ap, fmt);
	vsnprintf(cl->down_reason, sizeof cl->down_reason, fmt, ap);
	va_end(ap);
	log_msg("upstream %s: down: %s", cl->name, cl->down_reason);
	session_close(cl);
	while ((t = cl->sent)) {
		cl->sent = t->next;
		task_complete(cl, t, -ECONNRESET);
	}
	cl->nsent = 0;
	while ((t = cl->queue)) {
		cl->queue = t->next;
		task_complete(cl, t, -ECONNRESET);
	}
	cl->queue_tail = &cl->queue;
	if (cl->state == ICLIENT_UP && now - cl->up_since >= ICL_STABLE_MS)
		cl->backoff_ms = ICL_BACKOFF_MIN_MS;
	cl->state = ICLIENT_DOWN;
	cl->phase = PH_IDLE;
	ev_timer_set(&cl->timer, now + cl->backoff_ms);
	cl->backoff_ms = cl->backoff_ms * 2 > ICL_BACKOFF_MAX_MS ? ICL_BACKOFF_MAX_MS
								 : cl->backoff_ms * 2;
	cl->notify_up = false;	/* an up nobody heard of yet is moot */
	cl->notify_down = true;
	ev_defer(&cl->defer);
	return -1;
}

/* Builds one PDU with its digests and queues it; -1 when the session went down. */
static int tx_queue(struct iscsi_client *cl, const union iscsi_hdr *hdr, const void *data,
		    uint32_t len)
{
	uint32_t pad = iscsi_pad(len);
	uint32_t total = ISCSI_BHS_LEN + (cl->hdigest ? ISCSI_DIGEST_LEN : 0) + len + pad +
			 (len && cl->ddigest ? ISCSI_DIGEST_LEN : 0);
	struct icl_pdu *p;
	uint32_t n = 0, d;

	if (cl->tx_bytes + total > ICL_TX_MAX)
		return session_down(cl, "target does not read its socket (%u bytes queued)",
				    cl->tx_bytes);
	p = malloc(sizeof *p + total);
	if (!p)
		return session_down(cl, "out of memory");
	memcpy(p->bytes, hdr->bytes, ISCSI_BHS_LEN);
	iscsi_set_dlen((struct iscsi_bhs *)p->bytes, len);
	n = ISCSI_BHS_LEN;
	if (cl->hdigest) {
		d = crc32c(0, p->bytes, ISCSI_BHS_LEN);
		memcpy(p->bytes + n, &d, ISCSI_DIGEST_LEN);	/* little-endian on the wire */
		n += ISCSI_DIGEST_LEN;
	}
	if (len) {
		memcpy(p->bytes + n, data, len);
		memset(p->bytes + n + len, 0, pad);
		if (cl->ddigest) {
			d = crc32c(0, p->bytes + n, len + pad);
			memcpy(p->bytes + n + len + pad, &d, ISCSI_DIGEST_LEN);
		}
	}
	p->len = total;
	p->sent = 0;
	p->next = NULL;
	*cl->tx_tail = p;
	cl->tx_tail = &p->next;
	cl->tx_bytes += total;
	return 0;
}

/* Writes what the socket takes; -1 when the session went down. */
static int tx_flush(struct iscsi_client *cl)
{
	while (cl->tx_head && cl->phase != PH_TCP) {
		struct iovec iov[ICL_TX_IOV];
		int n = 0;

		for (struct icl_pdu *p = cl->tx_head; p && n < ICL_TX_IOV; p = p->next)
			iov[n++] = (struct iovec){ p->bytes + p->sent, p->len - p->sent };
		struct msghdr mh = { .msg_iov = iov, .msg_iovlen = (size_t)n };
		ssize_t w = sendmsg(cl->watch.fd, &mh, MSG_NOSIGNAL);

		if ((w < 0 && (errno == EAGAIN || errno == EINTR)) || w == 0)
			break;
		if (w < 0)
			return session_down(cl, "send: %s", strerror(errno));
		size_t left = (size_t)w;

		while (left && cl->tx_head) {
			struct icl_pdu *p = cl->tx_head;
			uint32_t rest = p->len - p->sent;

			if (left < rest) {
				p->sent += (uint32_t)left;
				break;
			}
			left -= rest;
			cl->tx_bytes -= p->len;
			cl->tx_head = p->next;
			if (!cl->tx_head)
				cl->tx_tail = &cl->tx_head;
			free(p);
		}
	}
	client_update_events(cl);
	return 0;
}

/* ---- commands ---- */

static bool window_open(const struct iscsi_client *cl)
{
	return !sn_lt(cl->max_cmdsn, cl->cmdsn);
}

/* Queues the SCSI Command PDU of a task and puts it on the sent list. */
static int task_send(struct iscsi_client *cl, struct icl_task *t)
{
	union iscsi_hdr h = { 0 };
	uint8_t *cdb = h.cmd.cdb;

	h.cmd.opcode = ISCSI_OP_SCSI_CMD;
	h.cmd.flags = ISCSI_FLAG_FINAL | ISCSI_FLAG_CMD_READ | ISCSI_ATTR_SIMPLE;
	iscsi_lun_encode(cl->cfg.url.lun, h.cmd.lun);
	t->itt = itt_new(cl);
	t->got = 0;
	t->datasn = 0;
	h.cmd.itt = htonl(t->itt);
	h.cmd.edtl = htonl(t->len);
	h.cmd.cmdsn = htonl(cl->cmdsn++);
	h.cmd.exp_statsn = htonl(cl->exp_statsn);
	switch (t->kind) {
	case TASK_READ:
		cdb[0] = SCSI_READ_16;
		put_be64(cdb + 2, t->off / cl->block_size);
		put_be32(cdb + 10, t->len / cl->block_size);
		break;
	case TASK_CAPACITY16:
		cdb[0] = SCSI_SERVICE_ACTION_IN_16;
		cdb[1] = SCSI_SA_READ_CAPACITY_16;
		put_be32(cdb + 10, ICL_CAPBUF);
		break;
	case TASK_CAPACITY10:
		cdb[0] = SCSI_READ_CAPACITY_10;
		break;
	}
	t->sent_ms = ev_now_ms();
	t->next = cl->sent;
	cl->sent = t;
	cl->nsent++;
	return tx_queue(cl, &h, NULL, 0);
}

/* Sends queued tasks while the CmdSN window and max_inflight allow. */
static int tasks_send(struct iscsi_client *cl)
{
	while (cl->queue && cl->nsent < cl->cfg.max_inflight && window_open(cl) &&
	       (cl->phase == PH_CAPACITY || cl->phase == PH_FULL)) {
		struct icl_task *t = cl->queue;

		cl->queue = t->next;
		if (!cl->queue)
			cl->queue_tail = &cl->queue;
		if (task_send(cl, t) < 0)
			return -1;
	}
	return 0;
}

/* Puts a task back at the head of the queue (after UNIT ATTENTION). */
static void task_requeue(struct iscsi_client *cl, struct icl_task *t)
{
	t->next = cl->queue;
	cl->queue = t;
	if (cl->queue_tail == &cl->queue)
		cl->queue_tail = &t->next;
}

static int capacity_start(struct iscsi_client *cl, enum icl_task_kind kind)
{
	struct icl_task *t = calloc(1, sizeof *t);

	if (!t)
		return session_down(cl, "out of memory");
	t->kind = kind;
	t->buf = cl->capbuf;
	t->len = kind == TASK_CAPACITY16 ? ICL_CAPBUF : 8;
	t->queued_ms = ev_now_ms();
	task_requeue(cl, t);
	return tasks_send(cl);
}

static int ping_send(struct iscsi_client *cl)
{
	union iscsi_hdr h = { 0 };

	h.nop.opcode = ISCSI_OP_NOP_OUT | ISCSI_OP_IMMEDIATE;
	h.nop.flags = ISCSI_FLAG_FINAL;
	cl->ping_itt = itt_new(cl);
	h.nop.itt = htonl(cl->ping_itt);
	h.nop.ttt = ISCSI_RSVD_TAG;
	h.nop.sn1 = htonl(cl->cmdsn);
	h.nop.sn2 = htonl(cl->exp_statsn);
	cl->ping_out = true;
	cl->ping_ms = ev_now_ms();
	return tx_queue(cl, &h, NULL, 0);
}

/* ---- login ---- */

static uint8_t login_next_stage(const struct iscsi_client *cl)
{
	return cl->login_stage == ISCSI_STAGE_SECURITY ? ISCSI_STAGE_OPERATIONAL
						       : ISCSI_STAGE_FULL_FEATURE;
}

/* Sends a login request of the current stage; transit asks for the next stage. */
static int login_send(struct iscsi_client *cl, const struct strbuf *text, bool transit)
{
	union iscsi_hdr h = { 0 };

	h.login.opcode = ISCSI_OP_LOGIN_REQ | ISCSI_OP_IMMEDIATE;
	h.login.flags = (uint8_t)(cl->login_stage << 2);
	if (transit)
		h.login.flags |= ISCSI_FLAG_LOGIN_TRANSIT | login_next_stage(cl);
	memcpy(h.login.isid, cl->isid, sizeof cl->isid);
	cl->login_itt = itt_new(cl);
	h.login.itt = htonl(cl->login_itt);
	h.login.sn1 = htonl(cl->cmdsn);
	h.login.sn2 = htonl(cl->exp_statsn);
	if (text && text->failed)
		return session_down(cl, "out of memory");
	return tx_queue(cl, &h, text ? text->data : NULL, text ? (uint32_t)text->len : 0);
}

static int login_send_security(struct iscsi_client *cl)
{
	struct strbuf sb = { 0 };
	int rc;

	iscsi_keys_add(&sb, "InitiatorName", cl->initiator_name);
	iscsi_keys_add(&sb, "TargetName", cl->cfg.url.iqn);
	iscsi_keys_add(&sb, "SessionType", "Normal");
	iscsi_keys_add(&sb, "AuthMethod", "None");
	rc = login_send(cl, &sb, true);
	sb_free(&sb);
	return rc;
}

/* The operational stage's offer, after any answers still owed from the security stage. */
static int login_send_operational(struct iscsi_client *cl, struct strbuf *sb)
{
	static const char *const fixed[][2] = {
		{ "MaxBurstLength", "16776192" },
		{ "FirstBurstLength", "262144" },
		{ "ImmediateData", "Yes" },
		{ "InitialR2T", "Yes" },
		{ "MaxOutstandingR2T", "1" },
		{ "MaxConnections", "1" },
		{ "DataPDUInOrder", "Yes" },
		{ "DataSequenceInOrder", "Yes" },
		{ "ErrorRecoveryLevel", "0" },
		{ "DefaultTime2Wait", "0" },
		{ "DefaultTime2Retain", "0" },
	};
	char num[16];

	_Static_assert(ICL_MAX_BURST == 16776192 && ICL_FIRST_BURST == 262144, "key text");
	iscsi_keys_add(sb, "HeaderDigest", cl->cfg.header_digest ? "CRC32C" : "None");
	iscsi_keys_add(sb, "DataDigest", cl->cfg.data_digest ? "CRC32C" : "None");
	snprintf(num, sizeof num, "%u", ICL_MRDSL);
	iscsi_keys_add(sb, "MaxRecvDataSegmentLength", num);
	for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
		iscsi_keys_add(sb, fixed[i][0], fixed[i][1]);
	return login_send(cl, sb, true);
}

static bool key_in(const char *key, const char *const *list)
{
	for (; *list; list++)
		if (strcmp(key, *list) == 0)
			return true;
	return false;
}

/* Applies one key of a login response; -1 when the login failed. Keys we did not offer
 * and do not know are answered NotUnderstood in `answer`. */
static int login_key(struct iscsi_client *cl, const char *key, const char *value,
		     struct strbuf *answer)
{
	static const char *const essential[] = {
		"HeaderDigest", "DataDigest", "ErrorRecoveryLevel", "DataPDUInOrder",
		"DataSequenceInOrder", "AuthMethod", NULL,
	};
	static const char *const declarative[] = {
		"TargetAlias", "TargetAddress", "TargetPortalGroupTag", NULL,
	};
	static const char *const ignored[] = {
		"ImmediateData", "InitialR2T", "DefaultTime2Wait", "DefaultTime2Retain",
		"FirstBurstLength", "MaxConnections", "MaxOutstandingR2T", NULL,
	};
	uint64_t v;

	if (strcmp(value, "Reject") == 0 || strcmp(value, "NotUnderstood") == 0 ||
	    strcmp(value, "Irrelevant") == 0) {
		if (key_in(key, essential))
			return session_down(cl, "login failed: target answered %s=%s", key, value);
		log_limited(&cl->log_limit, "upstream %s: target answered %s=%s; using the default",
			    cl->name, key, value);
		return 0;
	}
	if (strcmp(key, "HeaderDigest") == 0 || strcmp(key, "DataDigest") == 0) {
		bool header = key[0] == 'H';
		bool want = header ? cl->cfg.header_digest : cl->cfg.data_digest;

		if (strcmp(value, want ? "CRC32C" : "None") != 0)
			return session_down(cl, "login failed: target answered %s=%.32s to our %s",
					    key, value, want ? "CRC32C" : "None");
		*(header ? &cl->hd_answered : &cl->dd_answered) = true;
		*(header ? &cl->neg_hd : &cl->neg_dd) = want;
	} else if (strcmp(key, "MaxRecvDataSegmentLength") == 0) {
		if (parse_u64(value, 512, 16777215, &v) < 0)
			return session_down(cl, "login failed: bad MaxRecvDataSegmentLength=%.32s",
					    value);
		cl->tx_mrdsl = (uint32_t)v;
	} else if (strcmp(key, "MaxBurstLength") == 0) {
		if (parse_u64(value, 512, ICL_MAX_BURST, &v) < 0)
			return session_down(cl, "login failed: bad MaxBurstLength=%.32s", value);
		cl->max_burst = (uint32_t)v;
	} else if (strcmp(key, "ErrorRecoveryLevel") == 0) {
		if (strcmp(value, "0") != 0)
			return session_down(cl, "login failed: target answered ErrorRecoveryLevel=%.32s",
					    value);
	} else if (strcmp(key, "DataPDUInOrder") == 0 || strcmp(key, "DataSequenceInOrder") == 0) {
		if (strcmp(value, "Yes") != 0)
			return session_down(cl, "login failed: target answered %s=%.32s", key, value);
	} else if (strcmp(key, "AuthMethod") == 0) {
		if (strcmp(value, "None") != 0)
			return session_down(cl, "login failed: target requires authentication "
					    "(AuthMethod=%.32s)", value);
	} else if (key_in(key, declarative) || key_in(key, ignored)) {
		return 0;	/* nothing we act on: we never write */
	} else {
		iscsi_keys_add(answer, key, "NotUnderstood");
	}
	return 0;
}

/* Full feature phase: digests start with the next PDU; learn the capacity next. */
static int session_enter_ffp(struct iscsi_client *cl)
{
	if (cl->cfg.header_digest && !cl->hd_answered)
		return session_down(cl, "login failed: target did not answer HeaderDigest");
	if (cl->cfg.data_digest && !cl->dd_answered)
		return session_down(cl, "login failed: target did not answer DataDigest");
	cl->hdigest = cl->neg_hd;
	cl->ddigest = cl->neg_dd;
	cl->phase = PH_CAPACITY;
	return capacity_start(cl, TASK_CAPACITY16);
}

/* ExpStatSN acknowledges the target's StatSN; its first one sets where numbering starts. */
static void statsn_update(struct iscsi_client *cl, uint32_t statsn)
{
	if (!cl->statsn_known || sn_lt(cl->exp_statsn, statsn + 1))
		cl->exp_statsn = statsn + 1;
	cl->statsn_known = true;
}

/* ExpCmdSN/MaxCmdSN from any response; never backwards, invalid pairs ignored (§4.2.2.1). */
static void cmdsn_update(struct iscsi_client *cl, uint32_t exp, uint32_t max)
{
	if (sn_lt(max, exp - 1))
		return;
	if (sn_lt(cl->exp_cmdsn, exp))
		cl->exp_cmdsn = exp;
	if (sn_lt(cl->max_cmdsn, max))
		cl->max_cmdsn = max;
}

static int rx_login(struct iscsi_client *cl)
{
	const struct iscsi_login *r = &cl->hdr.login;
	uint16_t status = (uint16_t)(r->status_class << 8 | r->status_detail);
	bool transit = r->flags & ISCSI_FLAG_LOGIN_TRANSIT;
	bool cont = r->flags & ISCSI_FLAG_CONTINUE;
	struct iscsi_kv kv[ISCSI_KEYS_MAX];
	struct strbuf answer = { 0 };
	int n, rc = 0;

	if ((r->opcode & ISCSI_OP_MASK) != ISCSI_OP_LOGIN_RSP)
		return session_down(cl, "protocol error: %s during login",
				    iscsi_opcode_name(r->opcode));
	if (ntohl(r->itt) != cl->login_itt)
		return session_down(cl, "protocol error: login response for task 0x%08x",
				    ntohl(r->itt));
	if (r->status_class != 0)
		return session_down(cl, "login failed: status 0x%04x (%s)", status,
				    login_status_name(status));
	if (memcmp(r->isid, cl->isid, sizeof cl->isid) != 0)
		return session_down(cl, "protocol error: login response for another ISID");
	if (ISCSI_LOGIN_CSG(r->flags) != cl->login_stage || (transit && cont) ||
	    (transit && ISCSI_LOGIN_NSG(r->flags) != login_next_stage(cl)))
		return session_down(cl, "protocol error: login response flags 0x%02x in stage %u",
				    r->flags, cl->login_stage);
	statsn_update(cl, ntohl(r->sn1));
	cmdsn_update(cl, ntohl(r->sn2), ntohl(r->max_cmdsn));
	cl->tsih = ntohs(r->tsih);
	if (++cl->login_rounds > ICL_LOGIN_ROUNDS)
		return session_down(cl, "login failed: no agreement after %d exchanges",
				    ICL_LOGIN_ROUNDS);
	if (cl->login_text.len + cl->rx_dlen > ISCSI_TEXT_MAX)
		return session_down(cl, "protocol error: login text longer than %u bytes",
				    ISCSI_TEXT_MAX);
	if (cl->rx_dlen)
		sb_add(&cl->login_text, cl->scratch, cl->rx_dlen);
	if (cl->login_text.failed)
		return session_down(cl, "out of memory");
	if (cont)	/* the rest of the text follows when we ask with an empty request */
		return login_send(cl, NULL, false);
	n = cl->login_text.len ? iscsi_keys_parse(cl->login_text.data, cl->login_text.len, kv,
						  ISCSI_KEYS_MAX) : 0;
	if (n < 0) {
		sb_free(&cl->login_text);
		return session_down(cl, "protocol error: malformed login response text");
	}
	for (int i = 0; i < n && rc == 0; i++)
		rc = login_key(cl, kv[i].key, kv[i].value, &answer);
	sb_free(&cl->login_text);
	if (rc < 0) {
		sb_free(&answer);
		return -1;
	}
	if (!transit) {		/* the target wants another exchange in this stage */
		rc = login_send(cl, &answer, true);
	} else if (login_next_stage(cl) == ISCSI_STAGE_OPERATIONAL) {
		cl->login_stage = ISCSI_STAGE_OPERATIONAL;
		cl->login_rounds = 0;
		rc = login_send_operational(cl, &answer);
	} else {
		rc = session_enter_ffp(cl);
	}
	sb_free(&answer);
	return rc;
}

/* ---- full feature phase ---- */

static int capacity_parse(struct iscsi_client *cl, struct icl_task *t)
{
	uint64_t last, blocks, cap;
	uint32_t bs;

	if (t->kind == TASK_CAPACITY16) {
		if (t->got < 12)
			return session_down(cl, "protocol error: READ CAPACITY(16) returned %u bytes",
					    t->got);
		last = get_be64(cl->capbuf);
		bs = get_be32(cl->capbuf + 8);
	} else {
		if (t->got < 8)
			return session_down(cl, "protocol error: READ CAPACITY(10) returned %u bytes",
					    t->got);
		last = get_be32(cl->capbuf);
		bs = get_be32(cl->capbuf + 4);
		if (last == 0xffffffffu)
			return session_down(cl, "LUN too large for READ CAPACITY(10), and "
					    "READ CAPACITY(16) was refused");
	}
	blocks = last + 1;
	if (bs < 512 || bs > 65536 || (bs & (bs - 1)) || blocks == 0 ||
	    blocks > UINT64_MAX / bs)
		return session_down(cl, "protocol error: READ CAPACITY: %llu blocks of %u bytes",
				    (unsigned long long)blocks, bs);
	cap = blocks * bs;
	if (cl->capacity && (cap != cl->capacity || bs != cl->block_size)) {
		log_msg("upstream %s: capacity changed from %llu bytes (block %u) to %llu (block %u)",
			cl->name, (unsigned long long)cl->capacity, cl->block_size,
			(unsigned long long)cap, bs);
		return session_down(cl, "capacity changed from %llu to %llu bytes",
				    (unsigned long long)cl->capacity, (unsigned long long)cap);
	}
	cl->capacity = cap;
	cl->block_size = bs;
	cl->phase = PH_FULL;
	cl->state = ICLIENT_UP;
	cl->up_since = ev_now_ms();
	cl->notify_up = true;
	ev_defer(&cl->defer);
	ev_timer_set(&cl->timer, cl->up_since + 100);	/* the watchdog */
	log_msg("upstream %s: up (%s, %llu bytes, block %u, header digest %s, data digest %s)",
		cl->name, cl->initiator_name, (unsigned long long)cap, bs,
		cl->hdigest ? "CRC32C" : "None", cl->ddigest ? "CRC32C" : "None");
	return tasks_send(cl);
}

/* Finishes a task whose status arrived. */
static int task_status(struct iscsi_client *cl, struct icl_task *t, const struct icl_status *st)
{
	uint8_t key = 0, asc = 0, ascq = 0;
	char why[160];
	int err = 0;

	task_unlink(&cl->sent, NULL, t);
	cl->nsent--;
	if (cl->rx_task == t)
		cl->rx_task = NULL;
	sense_decode(st->sense, st->sense_len, &key, &asc, &ascq);
	why[0] = '\0';
	if (st->failure) {
		snprintf(why, sizeof why, "%s", st->failure);
	} else if (st->response != 0) {
		snprintf(why, sizeof why, "target failure (response 0x%02x)", st->response);
	} else if (st->status == SCSI_STATUS_CHECK_CONDITION && key == SENSE_UNIT_ATTENTION &&
		   t->ua_retries < ICL_UA_RETRIES) {
		t->ua_retries++;	/* a reset or power-on report: the command itself is fine */
		t->queued_ms = ev_now_ms();
		task_requeue(cl, t);
		return tasks_send(cl);
	} else if (st->status == SCSI_STATUS_CHECK_CONDITION) {
		snprintf(why, sizeof why, "CHECK CONDITION, sense key 0x%x (%s), ASC/ASCQ %02x/%02x",
			 key, sense_key_name(key), asc, ascq);
	} else if (st->status != SCSI_STATUS_GOOD) {
		snprintf(why, sizeof why, "SCSI status 0x%02x", st->status);
	} else if (t->kind == TASK_READ &&
		   (st->flags & (ISCSI_FLAG_RSP_OVERFLOW | ISCSI_FLAG_RSP_UNDERFLOW))) {
		snprintf(why, sizeof why, "residual %s of %u bytes",
			 st->flags & ISCSI_FLAG_RSP_OVERFLOW ? "overflow" : "underflow",
			 st->residual);
	} else if (t->kind == TASK_READ && t->got != t->len) {
		snprintf(why, sizeof why, "GOOD status after %u of %u bytes", t->got, t->len);
	}
	if (why[0])
		err = -EIO;
	switch (t->kind) {
	case TASK_READ:
		if (err && t->done)
			log_limited(&cl->log_limit, "upstream %s: read of %u bytes at %llu failed: %s",
				    cl->name, t->len, (unsigned long long)t->off, why);
		task_complete(cl, t, err);
		return tasks_send(cl);
	case TASK_CAPACITY16:
		if (err && !st->failure && st->response == 0 &&
		    st->status == SCSI_STATUS_CHECK_CONDITION && key == SENSE_ILLEGAL_REQUEST) {
			free(t);
			return capacity_start(cl, TASK_CAPACITY10);
		}
		__attribute__((fallthrough));
	case TASK_CAPACITY10:
		if (err) {
			int kind = t->kind;

			free(t);
			return session_down(cl, "READ CAPACITY(%d) failed: %s",
					    kind == TASK_CAPACITY16 ? 16 : 10, why);
		}
		err = capacity_parse(cl, t);
		free(t);
		return err;
	}
	return 0;
}

/* Checks a Data-In header before its payload is received, and picks where it goes. */
static int rx_data_in_header(struct iscsi_client *cl)
{
	const struct iscsi_data *d = &cl->hdr.data;
	uint32_t itt = ntohl(d->itt), off = ntohl(d->offset), len = cl->rx_dlen;
	struct icl_task *t = task_find_sent(cl, itt);

	if (!t)
		return session_down(cl, "protocol error: Data-In for unknown task 0x%08x", itt);
	if (ntohl(d->datasn) != t->datasn)
		return session_down(cl, "protocol error: Data-In DataSN %u, expected %u",
				    ntohl(d->datasn), t->datasn);
	if (off > t->len || len > t->len - off)
		return session_down(cl, "protocol error: Data-In offset %u length %u beyond read "
				    "length %u", off, len, t->len);
	if (off != t->got)	/* DataPDUInOrder=Yes: no holes, no overlaps */
		return session_down(cl, "protocol error: Data-In offset %u, expected %u", off,
				    t->got);
	if ((d->flags & ISCSI_FLAG_DATA_STATUS) && !(d->flags & ISCSI_FLAG_FINAL))
		return session_down(cl, "protocol error: Data-In with status but without F bit");
	cl->rx_task = t;
	cl->rx_dst = t->buf ? t->buf + off : NULL;
	return 0;
}

static int rx_data_in(struct iscsi_client *cl)
{
	const struct iscsi_data *d = &cl->hdr.data;
	struct icl_task *t = cl->rx_task;
	struct icl_status st = { 0 };

	cl->rx_task = NULL;
	cl->rx_dst = NULL;
	if (!t)		/* cannot happen: the header check set it */
		return session_down(cl, "internal error: Data-In without task");
	t->got += cl->rx_dlen;
	t->datasn++;
	cl->bytes_read += cl->rx_dlen;
	if (!(d->flags & ISCSI_FLAG_DATA_STATUS))
		return 0;
	statsn_update(cl, ntohl(d->statsn));
	st.status = d->status;
	st.flags = d->flags & (ISCSI_FLAG_DATA_OVERFLOW | ISCSI_FLAG_DATA_UNDERFLOW);
	st.residual = ntohl(d->residual);
	return task_status(cl, t, &st);
}

static int rx_scsi_rsp(struct iscsi_client *cl)
{
	const struct iscsi_scsi_rsp *r = &cl->hdr.rsp;
	struct icl_task *t = task_find_sent(cl, ntohl(r->itt));
	struct icl_status st = { 0 };

	if (!t)
		return session_down(cl, "protocol error: SCSI Response for unknown task 0x%08x",
				    ntohl(r->itt));
	statsn_update(cl, ntohl(r->statsn));
	if (cl->rx_dlen >= 2) {
		uint32_t slen = (uint32_t)cl->scratch[0] << 8 | cl->scratch[1];

		if (slen > cl->rx_dlen - 2)
			return session_down(cl, "protocol error: SenseLength %u beyond data segment %u",
					    slen, cl->rx_dlen);
		st.sense = cl->scratch + 2;
		st.sense_len = slen;
	} else if (cl->rx_dlen == 1) {
		return session_down(cl, "protocol error: SCSI Response data segment of 1 byte");
	}
	st.response = r->response;
	st.status = r->status;
	st.flags = r->flags & (ISCSI_FLAG_RSP_OVERFLOW | ISCSI_FLAG_RSP_UNDERFLOW);
	st.residual = ntohl(r->residual);
	return task_status(cl, t, &st);
}

static int rx_nop_in(struct iscsi_client *cl)
{
	const struct iscsi_nop *n = &cl->hdr.nop;
	union iscsi_hdr h = { 0 };

	if (n->itt != ISCSI_RSVD_TAG) {		/* an answer to our ping */
		statsn_update(cl, ntohl(n->sn1));
		if (cl->ping_out && ntohl(n->itt) == cl->ping_itt)
			cl->ping_out = false;
		else
			log_limited(&cl->log_limit, "upstream %s: NOP-In for unknown task 0x%08x",
				    cl->name, ntohl(n->itt));
	}
	if (n->ttt == ISCSI_RSVD_TAG)
		return 0;
	/* The target pings us: echo its TTT and LUN, without a reply wanted. */
	h.nop.opcode = ISCSI_OP_NOP_OUT | ISCSI_OP_IMMEDIATE;
	h.nop.flags = ISCSI_FLAG_FINAL;
	memcpy(h.nop.lun, n->lun, sizeof h.nop.lun);
	h.nop.itt = ISCSI_RSVD_TAG;
	h.nop.ttt = n->ttt;
	h.nop.sn1 = htonl(cl->cmdsn);
	h.nop.sn2 = htonl(cl->exp_statsn);
	return tx_queue(cl, &h, NULL, 0);
}

static int rx_reject(struct iscsi_client *cl)
{
	const struct iscsi_reject *r = &cl->hdr.reject;
	const struct iscsi_bhs *bad = (const struct iscsi_bhs *)cl->scratch;
	struct icl_status st = { .failure = "rejected by the target" };
	struct icl_task *t;
	uint32_t itt;

	statsn_update(cl, ntohl(r->statsn));
	if (cl->rx_dlen < ISCSI_BHS_LEN)
		return session_down(cl, "protocol error: Reject (reason 0x%02x) without the "
				    "rejected header", r->reason);
	itt = ntohl(bad->itt);
	log_limited(&cl->log_limit, "upstream %s: target rejected our %s (task 0x%08x): "
		    "reason 0x%02x", cl->name, iscsi_opcode_name(bad->opcode), itt, r->reason);
	if (cl->ping_out && itt == cl->ping_itt) {
		cl->ping_out = false;	/* it answered, if not as hoped */
		return 0;
	}
	t = task_find_sent(cl, itt);
	if (!t || (bad->opcode & ISCSI_OP_MASK) != ISCSI_OP_SCSI_CMD)
		return 0;
	if (t->kind != TASK_READ)
		return session_down(cl, "target rejected READ CAPACITY (reason 0x%02x)", r->reason);
	return task_status(cl, t, &st);
}

static int rx_async(struct iscsi_client *cl)
{
	uint8_t event = cl->hdr.bytes[36];

	statsn_update(cl, get_be32(cl->hdr.bytes + 24));
	switch (event) {
	case ISCSI_ASYNC_LOGOUT_REQUEST:
		return session_down(cl, "target requests logout");
	case ISCSI_ASYNC_DROP_CONNECTION:
	case ISCSI_ASYNC_DROP_ALL:
		return session_down(cl, "target announces it drops the connection (event %u)",
				    event);
	default:
		log_limited(&cl->log_limit, "upstream %s: async message, event %u code %u",
			    cl->name, event, cl->hdr.bytes[37]);
		return 0;
	}
}

/* Dispatches a complete PDU. */
static int rx_pdu(struct iscsi_client *cl)
{
	uint8_t op = cl->hdr.bhs.opcode & ISCSI_OP_MASK;

	if (cl->phase == PH_LOGIN)
		return rx_login(cl);
	cmdsn_update(cl, get_be32(cl->hdr.bytes + 28), get_be32(cl->hdr.bytes + 32));
	if (cl->queue && tasks_send(cl) < 0)	/* the window may have opened */
		return -1;
	switch (op) {
	case ISCSI_OP_DATA_IN:
		return rx_data_in(cl);
	case ISCSI_OP_SCSI_RSP:
		return rx_scsi_rsp(cl);
	case ISCSI_OP_NOP_IN:
		return rx_nop_in(cl);
	case ISCSI_OP_REJECT:
		return rx_reject(cl);
	case ISCSI_OP_ASYNC:
		return rx_async(cl);
	case ISCSI_OP_R2T:	/* we never write */
	case ISCSI_OP_LOGIN_RSP:
	case ISCSI_OP_TEXT_RSP:
	case ISCSI_OP_TMF_RSP:
	case ISCSI_OP_LOGOUT_RSP:
		return session_down(cl, "protocol error: unexpected %s", iscsi_opcode_name(op));
	default:
		return session_down(cl, "protocol error: unknown opcode 0x%02x", op);
	}
}

/* ---- receive state machine: BHS -> AHS -> header digest -> data -> pad -> data digest ---- */

static void rx_enter(struct iscsi_client *cl, enum rx_stage stage, uint32_t need)
{
	cl->rx_stage = stage;
	cl->rx_need = need;
	cl->rx_got = 0;
}

static int rx_pdu_done(struct iscsi_client *cl)
{
	rx_enter(cl, RX_BHS, ISCSI_BHS_LEN);
	return rx_pdu(cl);
}

static int rx_after_pad(struct iscsi_client *cl)
{
	if (cl->ddigest) {
		rx_enter(cl, RX_DDIGEST, ISCSI_DIGEST_LEN);
		return 0;
	}
	return rx_pdu_done(cl);
}

static int rx_after_data(struct iscsi_client *cl)
{
	uint32_t pad = iscsi_pad(cl->rx_dlen);

	if (pad) {
		rx_enter(cl, RX_PAD, pad);
		return 0;
	}
	return rx_after_pad(cl);
}

/* The header is whole and trusted: check it against what we expect, then take the data. */
static int rx_header_done(struct iscsi_client *cl)
{
	uint8_t op = cl->hdr.bhs.opcode & ISCSI_OP_MASK;
	uint32_t dlen = cl->rx_dlen;

	if (dlen > ICL_MRDSL)
		return session_down(cl, "protocol error: %s data segment %u exceeds "
				    "MaxRecvDataSegmentLength %u", iscsi_opcode_name(op), dlen,
				    ICL_MRDSL);
	cl->rx_dst = NULL;
	cl->rx_task = NULL;
	if (op == ISCSI_OP_DATA_IN && cl->phase != PH_LOGIN) {
		if (rx_data_in_header(cl) < 0)
			return -1;
	} else if (dlen) {
		if (dlen > cl->scratch_cap) {
			uint8_t *p = realloc(cl->scratch, dlen);

			if (!p)
				return session_down(cl, "out of memory");
			cl->scratch = p;
			cl->scratch_cap = dlen;
		}
		cl->rx_dst = cl->scratch;
	}
	if (dlen) {
		cl->rx_crc = 0;
		rx_enter(cl, RX_DATA, dlen);
		return 0;
	}
	return rx_pdu_done(cl);
}

static int rx_after_ahs(struct iscsi_client *cl)
{
	if (cl->hdigest) {
		rx_enter(cl, RX_HDIGEST, ISCSI_DIGEST_LEN);
		return 0;
	}
	return rx_header_done(cl);
}

/* A stage has all its bytes; moves on. -1 when the session went down. */
static int rx_stage_done(struct iscsi_client *cl)
{
	uint32_t d;

	switch (cl->rx_stage) {
	case RX_BHS:
		cl->rx_ahs_len = (uint32_t)cl->hdr.bhs.ahs_len * 4;
		cl->rx_dlen = iscsi_get_dlen(&cl->hdr.bhs);
		if (cl->rx_ahs_len) {
			rx_enter(cl, RX_AHS, cl->rx_ahs_len);
			return 0;
		}
		return rx_after_ahs(cl);
	case RX_AHS:
		return rx_after_ahs(cl);
	case RX_HDIGEST:
		d = crc32c(crc32c(0, cl->hdr.bytes, ISCSI_BHS_LEN), cl->ahs, cl->rx_ahs_len);
		if (memcmp(&d, cl->digest, ISCSI_DIGEST_LEN) != 0)
			return session_down(cl, "header digest mismatch");
		return rx_header_done(cl);
	case RX_DATA:
		return rx_after_data(cl);
	case RX_PAD:
		return rx_after_pad(cl);
	case RX_DDIGEST:
		if (memcmp(&cl->rx_crc, cl->digest, ISCSI_DIGEST_LEN) != 0)
			return session_down(cl, "data digest mismatch on %s",
					    iscsi_opcode_name(cl->hdr.bhs.opcode));
		return rx_pdu_done(cl);
	}
	return 0;
}

/* Where the next bytes of the current stage go, and how many fit there now. */
static uint8_t *rx_dest(struct iscsi_client *cl, uint32_t *room)
{
	uint32_t left = cl->rx_need - cl->rx_got;

	*room = left;
	switch (cl->rx_stage) {
	case RX_BHS:
		return cl->hdr.bytes + cl->rx_got;
	case RX_AHS:
		return cl->ahs + cl->rx_got;
	case RX_HDIGEST:
	case RX_DDIGEST:
		return cl->digest + cl->rx_got;
	case RX_PAD:
		return cl->pad + cl->rx_got;
	case RX_DATA:
		if (cl->rx_dst)
			return cl->rx_dst + cl->rx_got;
		if (left > sizeof cl->sink)
			*room = sizeof cl->sink;
		return cl->sink;
	}
	return cl->sink;
}

/* Accounts n bytes that landed at dst. */
static int rx_advance(struct iscsi_client *cl, const uint8_t *dst, uint32_t n)
{
	if (cl->ddigest && (cl->rx_stage == RX_DATA || cl->rx_stage == RX_PAD))
		cl->rx_crc = crc32c(cl->rx_crc, dst, n);
	cl->rx_got += n;
	if (cl->rx_got < cl->rx_need)
		return 0;
	return rx_stage_done(cl);
}

/* Reads what the socket has and feeds it through the state machine. Large pieces of a
 * data segment are received straight into their destination, small ones via `in`. */
static int rx_run(struct iscsi_client *cl)
{
	for (int rounds = 0;;) {
		uint32_t room, n;
		uint8_t *dst = rx_dest(cl, &room);
		ssize_t r;

		if (cl->in_pos < cl->in_len) {
			n = cl->in_len - cl->in_pos;
			if (n > room)
				n = room;
			memcpy(dst, cl->in + cl->in_pos, n);
			cl->in_pos += n;
			if (rx_advance(cl, dst, n) < 0)
				return -1;
			continue;
		}
		if (rounds++ == ICL_RX_ROUNDS)
			return 0;	/* level-triggered: the rest comes with the next event */
		if (room >= ICL_RX_DIRECT)
			r = recv(cl->watch.fd, dst, room, 0);
		else
			r = recv(cl->watch.fd, cl->in, sizeof cl->in, 0);
		if (r < 0 && (errno == EAGAIN || errno == EINTR))
			return 0;
		if (r < 0)
			return session_down(cl, "recv: %s", strerror(errno));
		if (r == 0) {
			if (cl->rx_stage != RX_BHS || cl->rx_got)
				return session_down(cl, "target closed the connection in the middle "
						    "of a PDU");
			return session_down(cl, "target closed the connection");
		}
		cl->last_rx_ms = ev_now_ms();
		if (room >= ICL_RX_DIRECT) {
			if (rx_advance(cl, dst, (uint32_t)r) < 0)
				return -1;
		} else {
			cl->in_pos = 0;
			cl->in_len = (uint32_t)r;
		}
	}
}

/* ---- connection ---- */

/* The TCP connection is up: start the login. */
static int session_login_start(struct iscsi_client *cl)
{
	int one = 1;

	setsockopt(cl->watch.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	cl->phase = PH_LOGIN;
	cl->login_stage = ISCSI_STAGE_SECURITY;
	cl->login_rounds = 0;
	cl->hd_answered = cl->dd_answered = false;
	cl->neg_hd = cl->neg_dd = false;
	cl->tx_mrdsl = 8192;
	cl->max_burst = 262144;
	cl->cmdsn = 1;
	cl->exp_cmdsn = 1;
	cl->max_cmdsn = 0;	/* closed until the target opens it */
	cl->exp_statsn = 0;
	cl->statsn_known = false;
	cl->last_rx_ms = ev_now_ms();
	rx_enter(cl, RX_BHS, ISCSI_BHS_LEN);
	if (login_send_security(cl) < 0)
		return -1;
	return tx_flush(cl);
}

/* Starts a non-blocking connect to the next address; -1 when none is left. */
static int session_try_addr(struct iscsi_client *cl)
{
	while (cl->addr_idx < cl->naddrs) {
		const struct sockaddr_storage *ss = &cl->addrs[cl->addr_idx];
		int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

		if (fd < 0) {
			cl->connect_err = errno;
			cl->addr_idx++;
			continue;
		}
		if (connect(fd, (const struct sockaddr *)ss, cl->addr_lens[cl->addr_idx]) < 0 &&
		    errno != EINPROGRESS) {
			cl->connect_err = errno;
			close(fd);
			cl->addr_idx++;
			continue;
		}
		cl->watch.fd = fd;
		cl->phase = PH_TCP;
		int err = ev_add(&cl->watch, EPOLLOUT);

		if (err < 0) {
			cl->connect_err = -err;
			close(fd);
			cl->watch.fd = -1;
			cl->addr_idx++;
			continue;
		}
		return 0;
	}
	return session_down(cl, "connect: %s", strerror(cl->connect_err ? cl->connect_err
									  : ECONNREFUSED));
}

/* Resolves the host (literal addresses never block; names are looked up with
 * getaddrinfo, which blocks for DNS: use addresses or /etc/hosts names) and connects. */
static int session_connect(struct iscsi_client *cl)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV };
	struct addrinfo *res = NULL;
	char port[8];
	int rc;

	cl->state = ICLIENT_CONNECTING;
	cl->phase = PH_TCP;
	ev_timer_set(&cl->timer, ev_now_ms() + ICL_LOGIN_TIMEOUT_MS);
	snprintf(port, sizeof port, "%u", cl->cfg.url.port);
	rc = getaddrinfo(cl->cfg.url.host, port, &hints, &res);
	if (rc != 0)
		return session_down(cl, "resolve %s: %s", cl->cfg.url.host,
				    rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
	cl->naddrs = 0;
	for (struct addrinfo *ai = res; ai && cl->naddrs < ICL_ADDRS_MAX; ai = ai->ai_next) {
		if (ai->ai_addrlen > sizeof cl->addrs[0])
			continue;
		memcpy(&cl->addrs[cl->naddrs], ai->ai_addr, ai->ai_addrlen);
		cl->addr_lens[cl->naddrs] = ai->ai_addrlen;
		cl->naddrs++;
	}
	freeaddrinfo(res);
	cl->addr_idx = 0;
	cl->connect_err = 0;
	return session_try_addr(cl);
}

static void session_connected(struct iscsi_client *cl)
{
	int err = 0;
	socklen_t len = sizeof err;

	if (getsockopt(cl->watch.fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	if (err == 0) {
		session_login_start(cl);
		return;
	}
	cl->connect_err = err;
	ev_del(&cl->watch);
	close(cl->watch.fd);
	cl->watch.fd = -1;
	cl->addr_idx++;
	session_try_addr(cl);
}

static void client_event(void *ctx, uint32_t events)
{
	struct iscsi_client *cl = ctx;

	if (cl->phase == PH_TCP) {
		session_connected(cl);
		return;
	}
	if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && rx_run(cl) < 0)
		return;
	if (cl->phase != PH_IDLE)
		tx_flush(cl);
}

static uint64_t watchdog_interval(const struct iscsi_client *cl)
{
	uint64_t ms = cl->cfg.read_timeout_ms / 4;

	return ms < 100 ? 100 : ms > 1000 ? 1000 : ms;
}

/* Up: reads, queued reads and the keepalive ping each get read_timeout_ms. */
static void session_watchdog(struct iscsi_client *cl)
{
	uint64_t now = ev_now_ms(), limit = cl->cfg.read_timeout_ms;

	if (cl->ping_out && now - cl->ping_ms >= limit) {
		session_down(cl, "keepalive: no NOP-In answer within %llu ms",
			     (unsigned long long)limit);
		return;
	}
	for (struct icl_task *t = cl->sent; t; t = t->next) {
		if (now - t->sent_ms >= limit) {
			session_down(cl, "read timed out after %llu ms", (unsigned long long)limit);
			return;
		}
	}
	if (cl->queue && now - cl->queue->queued_ms >= limit) {
		session_down(cl, "reads stalled for %llu ms: command window closed (CmdSN %u, "
			     "MaxCmdSN %u)", (unsigned long long)limit, cl->cmdsn, cl->max_cmdsn);
		return;
	}
	if (!cl->ping_out && now - cl->last_rx_ms >= ICL_KEEPALIVE_MS &&
	    (ping_send(cl) < 0 || tx_flush(cl) < 0))
		return;
	ev_timer_set(&cl->timer, now + watchdog_interval(cl));
}

static void client_timer(void *ctx)
{
	struct iscsi_client *cl = ctx;

	switch (cl->phase) {
	case PH_IDLE:
		session_connect(cl);
		break;
	case PH_TCP:
		session_down(cl, "connect: timed out after %d s", ICL_LOGIN_TIMEOUT_MS / 1000);
		break;
	case PH_LOGIN:
	case PH_CAPACITY:
		session_down(cl, "login not finished within %d s", ICL_LOGIN_TIMEOUT_MS / 1000);
		break;
	case PH_FULL:
		session_watchdog(cl);
		break;
	}
}

/* Frees everything; reads still pending complete with -ECANCELED. */
static void client_destroy(struct iscsi_client *cl)
{
	struct icl_task *t;

	ev_timer_cancel(&cl->timer);
	ev_undefer(&cl->defer);
	session_close(cl);
	cl->state = ICLIENT_DOWN;	/* callbacks below see a client that takes no reads */
	cl->free_pending = true;
	while ((t = cl->sent)) {
		cl->sent = t->next;
		t->next = NULL;
		task_complete(cl, t, -ECANCELED);
	}
	while ((t = cl->queue)) {
		cl->queue = t->next;
		task_complete(cl, t, -ECANCELED);
	}
	ev_undefer(&cl->defer);
	while ((t = cl->completed)) {
		cl->completed = t->next;
		if (t->done)
			t->done(t->arg, t->err == 0 ? 0 : -ECANCELED);
		free(t);
	}
	free(cl->scratch);
	free(cl);
}

/* The deferred work: up/down events first, then read completions, in order. Callbacks
 * may call back into the client (read, cancel, drop, free). */
static void client_flush(void *ctx)
{
	struct iscsi_client *cl = ctx;
	struct icl_task *t;

	cl->flushing = true;
	while (!cl->free_pending) {
		if (cl->notify_up) {
			cl->notify_up = false;
			if (cl->ev.up)
				cl->ev.up(cl->ev.ctx, cl);
			continue;
		}
		if (cl->notify_down) {
			char reason[sizeof cl->down_reason];

			cl->notify_down = false;
			memcpy(reason, cl->down_reason, sizeof reason);
			if (cl->ev.down)
				cl->ev.down(cl->ev.ctx, cl, reason);
			continue;
		}
		t = cl->completed;
		if (!t)
			break;
		cl->completed = t->next;
		if (!cl->completed)
			cl->completed_tail = &cl->completed;
		cl->nreads--;
		t->done(t->arg, t->err);
		free(t);
	}
	cl->flushing = false;
	if (cl->free_pending)
		client_destroy(cl);
}

/* Allocates a client without connecting it. */
static struct iscsi_client *client_alloc(const struct iscsi_client_config *cfg,
					 const struct iscsi_client_events *ev)
{
	struct iscsi_client *cl = calloc(1, sizeof *cl);
	const char *iname = cfg->initiator_name ? cfg->initiator_name : ICL_DEFAULT_INITIATOR;
	const struct iscsi_url *u = &cfg->url;
	bool v6 = strchr(u->host, ':') != NULL;

	if (!cl)
		return NULL;
	cl->cfg = *cfg;
	if (ev)
		cl->ev = *ev;
	snprintf(cl->initiator_name, sizeof cl->initiator_name, "%s", iname);
	cl->cfg.initiator_name = cl->initiator_name;
	if (!cl->cfg.read_timeout_ms)
		cl->cfg.read_timeout_ms = ICL_READ_TIMEOUT_MS;
	if (!cl->cfg.max_inflight)
		cl->cfg.max_inflight = ICL_INFLIGHT_DEFAULT;
	if (cl->cfg.max_inflight > ICL_INFLIGHT_MAX)
		cl->cfg.max_inflight = ICL_INFLIGHT_MAX;
	snprintf(cl->name, sizeof cl->name, "iscsi://%s%s%s:%u/%s/%llu", v6 ? "[" : "", u->host,
		 v6 ? "]" : "", u->port, u->iqn, (unsigned long long)u->lun);
	cl->watch = (struct ev_watch){ .fd = -1, .fn = client_event, .ctx = cl };
	cl->timer = (struct ev_timer){ .fn = client_timer, .ctx = cl };
	cl->defer = (struct ev_deferred){ .fn = client_flush, .ctx = cl };
	cl->queue_tail = &cl->queue;
	cl->completed_tail = &cl->completed;
	cl->tx_tail = &cl->tx_head;
	cl->backoff_ms = ICL_BACKOFF_MIN_MS;
	cl->itt_next = 1;
	cl->state = ICLIENT_CONNECTING;
	/* ISID type "random" (RFC 7143 §11.12.5), kept across reconnects so that the target
	 * reinstates our old session instead of keeping it. */
	if (getrandom(cl->isid + 1, 5, GRND_NONBLOCK) != 5) {
		uint64_t x = ev_now_ms() ^ (uint64_t)getpid() << 20 ^ (uintptr_t)cl;

		memcpy(cl->isid + 1, &x, 5);
	}
	cl->isid[0] = 0x80;
	session_close(cl);
	return cl;
}

/* ---- public entry points ---- */

struct iscsi_client *iscsi_client_new(const struct iscsi_client_config *cfg,
				      const struct iscsi_client_events *ev)
{
	struct iscsi_client *cl = client_alloc(cfg, ev);

	if (cl)
		session_connect(cl);
	return cl;
}

int iscsi_client_read(struct iscsi_client *cl, uint64_t off, uint32_t len, uint8_t *buf,
		      iscsi_read_done *done, void *arg)
{
	struct icl_task *t;

	if (cl->state != ICLIENT_UP || cl->free_pending)
		return -ENOTCONN;
	if (!len || !buf || !done || off % cl->block_size || len % cl->block_size ||
	    off > cl->capacity || len > cl->capacity - off)
		return -EINVAL;
	t = calloc(1, sizeof *t);
	if (!t)
		return -ENOMEM;
	t->kind = TASK_READ;
	t->off = off;
	t->len = len;
	t->buf = buf;
	t->done = done;
	t->arg = arg;
	t->queued_ms = ev_now_ms();
	task_append(&cl->queue_tail, t);
	cl->nreads++;
	/* A send failure takes the session down; this read then completes with
	 * -ECONNRESET from the deferred flush, never from here. */
	if (tasks_send(cl) == 0)
		tx_flush(cl);
	return 0;
}

void iscsi_client_cancel(struct iscsi_client *cl, void *arg)
{
	struct icl_task **pp, *t;

	for (pp = &cl->queue; (t = *pp);) {
		if (t->kind == TASK_READ && t->done && t->arg == arg) {
			*pp = t->next;
			cl->nreads--;
			free(t);
		} else {
			pp = &t->next;
		}
	}
	cl->queue_tail = pp;
	/* Sent ones stay until the target finishes them (their ITT and window slot), but
	 * their data from now on goes nowhere. */
	for (t = cl->sent; t; t = t->next) {
		if (t->kind != TASK_READ || !t->done || t->arg != arg)
			continue;
		t->done = NULL;
		t->buf = NULL;
		cl->nreads--;
		if (cl->rx_task == t)
			cl->rx_dst = NULL;
	}
	for (pp = &cl->completed; (t = *pp);) {
		if (t->arg == arg) {
			*pp = t->next;
			cl->nreads--;
			free(t);
		} else {
			pp = &t->next;
		}
	}
	cl->completed_tail = pp;
}

void iscsi_client_drop(struct iscsi_client *cl, const char *reason)
{
	session_down(cl, "%s", reason ? reason : "dropped");
}

void iscsi_client_free(struct iscsi_client *cl)
{
	if (!cl)
		return;
	if (cl->flushing || cl->free_pending) {	/* inside its own callbacks: after them */
		cl->free_pending = true;
		return;
	}
	client_destroy(cl);
}

enum iscsi_client_state iscsi_client_state(const struct iscsi_client *cl)
{
	return cl->state;
}

uint64_t iscsi_client_capacity(const struct iscsi_client *cl)
{
	return cl->capacity;
}

uint32_t iscsi_client_block_size(const struct iscsi_client *cl)
{
	return cl->block_size;
}

uint32_t iscsi_client_inflight(const struct iscsi_client *cl)
{
	return cl->nreads;
}

uint64_t iscsi_client_bytes_read(const struct iscsi_client *cl)
{
	return cl->bytes_read;
}

const char *iscsi_client_name(const struct iscsi_client *cl)
{
	return cl->name;
}
