/* The iSCSI target (RFC 7143, ErrorRecoveryLevel 0) serving one read-only LUN. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/uio.h>
#include <unistd.h>

#include "iscsi/keys.h"
#include "iscsi/pdu.h"
#include "iscsi/scsi.h"
#include "iscsi/target.h"
#include "lib/crc32c.h"
#include "lib/evloop.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "lib/net.h"

#define CONN_MAX 8192			/* connections at once; more are refused */
#define CONN_INBUF 16384		/* receive staging buffer */
#define CMD_WINDOW 128			/* commands in flight per session (queue depth) */
#define LOGIN_TIMEOUT_MS 30000		/* a login must finish within this */
#define LOGIN_MRDSL 8192		/* data segment limit until negotiated (RFC 7143 §13.12) */
#define TX_AHEAD_MEM (1u << 20)		/* payload bytes materialised ahead of the socket */
#define TX_AHEAD_PDUS 64		/* PDUs materialised ahead of the socket */
#define TX_MEM_HIGH (8u << 20)		/* stop reading a peer that does not read its replies */
#define TX_IOV_MAX 64
#define SENDFILE_MIN 65536		/* smaller Data-In is copied and batched with writev */
#define DATAOUT_MAX (32u << 20)		/* largest Data-Out we collect (VERIFY BYTCHK) */

enum conn_state {
	CONN_LOGIN,
	CONN_FULL_FEATURE,
	CONN_CLOSING,	/* flush what is queued, then close */
};

enum rx_stage {
	RX_BHS,
	RX_AHS,
	RX_HDIGEST,
	RX_DATA,
	RX_DDIGEST,
};

/* One queued transmission: a built PDU, or a read whose Data-In PDUs are made lazily. */
struct tx_job {
	struct tx_job *next;
	bool is_stream;
	bool finalized;		/* sequence numbers and header digest filled */
	bool status_sn;		/* carries status: takes and advances StatSN */
	uint32_t hdr_len;	/* BHS + header digest */
	uint32_t mem_len;	/* in-memory payload incl. padding and data digest */
	uint32_t file_len;	/* payload sent with sendfile from the image */
	uint64_t file_off;
	uint32_t payload;	/* SCSI data bytes, for the served-bytes counter */
	uint32_t sent;		/* bytes of hdr + payload written so far */
	/* stream state (is_stream) */
	uint32_t itt;
	uint64_t img_off;	/* image offset of the first byte */
	uint32_t total;		/* bytes to send */
	uint32_t done;		/* bytes made into PDUs */
	uint32_t datasn;
	uint8_t rsp_flags;	/* residual flags for the last Data-In */
	uint32_t residual;
	union iscsi_hdr hdr;
	uint8_t hdigest[ISCSI_DIGEST_LEN];
	uint8_t mem[];
};

/* A command waiting for its Data-Out (VERIFY with BYTCHK). */
struct task {
	struct task *next;
	uint32_t itt;
	uint32_t ttt;
	uint32_t edtl;
	uint64_t lun;
	uint8_t cdb[16];
	uint32_t need;		/* Data-Out bytes the command compares */
	uint32_t got;		/* bytes received */
	uint32_t solicited;	/* bytes asked for so far (immediate + R2T) */
	uint32_t r2tsn;
	uint8_t *buf;
};

struct conn;

/* A command whose image bytes the backend is still fetching. */
struct pending {
	struct target_io io;	/* first: the backend hands it back */
	struct pending *next, **pprev;
	struct conn *c;
	uint32_t itt;
	uint32_t edtl;
	uint32_t data_len;	/* what the command transfers (for residuals) */
	struct task *task;	/* a VERIFY compare waiting for its image bytes, or NULL */
};

struct target;

struct conn {
	struct ev_watch watch;
	struct target *tgt;
	struct conn *next, **pprev;
	char peer[ADDR_STRLEN];
	enum conn_state state;
	bool dead;
	uint64_t login_deadline;

	/* receive */
	enum rx_stage rx_stage;
	uint32_t rx_got;	/* bytes of the current stage */
	uint32_t rx_ahs_len, rx_dlen;
	union iscsi_hdr hdr;
	uint8_t ahs[255 * 4];
	uint8_t digest[ISCSI_DIGEST_LEN];
	uint8_t *data;		/* data segment + padding */
	uint32_t data_cap;
	uint8_t in[CONN_INBUF];
	uint32_t in_pos, in_len;

	/* login and session */
	int stage;
	bool first_login;
	struct iscsi_negotiation neg;
	struct iscsi_params params;
	bool digests_on;
	bool in_session_count;	/* counted in target.sessions */
	struct strbuf text_acc;	/* login/text request spanning PDUs */
	uint8_t isid[6];
	uint16_t tsih;
	uint32_t exp_cmdsn;
	uint32_t statsn;
	uint32_t next_ttt;
	struct task *tasks;
	struct pending *pendings;
	struct ev_deferred kick;	/* flush after a backend completion */

	/* transmit */
	struct tx_job *tx_head, **tx_tail;
	uint32_t tx_mem;	/* payload bytes held in memory by jobs */
};

struct target {
	const struct target_config *cfg;
	struct target *next_target;	/* every target of the process, for target_swap */
	struct ev_watch listen;
	struct ev_tick tick;
	struct conn *conns;
	uint32_t nconns;
	uint16_t next_tsih;
	uint64_t served_bytes;
	uint64_t sessions;
	uint64_t logins;
	uint64_t login_failures;
	uint64_t protocol_errors;
	uint64_t refused;
};

static struct log_limit target_log_limit;	/* lines peers can trigger at will */
static struct target *targets;

static void conn_fail(struct conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Marks the connection for closing and logs the reason once, naming the peer. */
static void conn_fail(struct conn *c, const char *fmt, ...)
{
	char why[256];
	va_list ap;

	if (c->dead)
		return;
	va_start(ap, fmt);
	vsnprintf(why, sizeof why, fmt, ap);
	va_end(ap);
	log_msg("%s: closing: %s", c->peer, why);
	c->tgt->protocol_errors++;
	c->dead = true;
}

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* ---- transmit ---- */

static struct tx_job *tx_job_new(struct conn *c, uint32_t mem_cap)
{
	struct tx_job *j = calloc(1, sizeof *j + mem_cap);

	if (!j)
		conn_fail(c, "out of memory");
	return j;
}

static void tx_job_free(struct conn *c, struct tx_job *j)
{
	c->tx_mem -= j->mem_len;
	free(j);
}

static void tx_append(struct conn *c, struct tx_job *j)
{
	j->next = NULL;
	*c->tx_tail = j;
	c->tx_tail = &j->next;
	c->tx_mem += j->mem_len;
}

/* Copies payload into the job and adds padding and, once negotiated, the data digest. */
static void tx_set_data(struct conn *c, struct tx_job *j, const void *data, uint32_t len)
{
	uint32_t pad = iscsi_pad(len);

	if (len && data != j->mem)
		memcpy(j->mem, data, len);
	memset(j->mem + len, 0, pad);
	j->mem_len = len + pad;
	if (len && c->digests_on && c->params.data_digest) {
		uint32_t d = crc32c(0, j->mem, len + pad);

		memcpy(j->mem + j->mem_len, &d, ISCSI_DIGEST_LEN);	/* little-endian on the wire */
		j->mem_len += ISCSI_DIGEST_LEN;
	}
	iscsi_set_dlen(&j->hdr.bhs, len);
}

/* Room a job needs for len payload bytes plus padding and digest. */
static uint32_t tx_mem_need(uint32_t len)
{
	return len + 3 + ISCSI_DIGEST_LEN;
}

/* Queues a PDU with an in-memory payload; status_sn when it takes a StatSN. */
static int tx_queue_pdu(struct conn *c, const union iscsi_hdr *hdr, const void *data,
			uint32_t len, bool status_sn)
{
	struct tx_job *j = tx_job_new(c, tx_mem_need(len));

	if (!j)
		return -ENOMEM;
	j->hdr = *hdr;
	j->status_sn = status_sn;
	tx_set_data(c, j, data, len);
	tx_append(c, j);
	return 0;
}

static uint32_t conn_max_cmdsn(const struct conn *c)
{
	return c->exp_cmdsn + CMD_WINDOW - 1;
}

/* Fills StatSN/ExpCmdSN/MaxCmdSN at send time, so StatSN leaves in order, and the digest. */
static void tx_finalize(struct conn *c, struct tx_job *j)
{
	uint8_t *b = j->hdr.bytes;
	uint8_t op = b[0] & ISCSI_OP_MASK;

	if (op != ISCSI_OP_DATA_IN || j->status_sn)
		put_be32(b + 24, j->status_sn ? c->statsn++ : c->statsn);
	put_be32(b + 28, c->exp_cmdsn);
	put_be32(b + 32, conn_max_cmdsn(c));
	j->hdr_len = ISCSI_BHS_LEN;
	/* Digests start after the final login response, which is finalized only when it is
	 * sent, after they were switched on (RFC 7143 §13.1). */
	if (c->digests_on && c->params.header_digest && op != ISCSI_OP_LOGIN_RSP) {
		uint32_t d = crc32c(0, b, ISCSI_BHS_LEN);

		memcpy(j->hdigest, &d, ISCSI_DIGEST_LEN);
		j->hdr_len += ISCSI_DIGEST_LEN;
	}
	j->finalized = true;
}

/* Reads image bytes, reading past the end of the file as zeros. */
static int image_read(const struct target_config *cfg, uint8_t *buf, uint32_t len, uint64_t off)
{
	uint32_t got = 0;

	while (got < len) {
		ssize_t n;

		if (off + got >= cfg->image_size) {
			memset(buf + got, 0, len - got);
			return 0;
		}
		n = pread(cfg->image_fd, buf + got, len - got, (off_t)(off + got));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		got += (uint32_t)n;
	}
	return 0;
}

/* Makes the next Data-In PDU of a stream into a job inserted before it. */
static struct tx_job *tx_stream_next(struct conn *c, struct tx_job *s)
{
	const struct target_config *cfg = c->tgt->cfg;
	uint32_t mrdsl = c->params.initiator_mrdsl, burst = c->params.max_burst;
	uint32_t left = s->total - s->done, n, to_burst_end;
	uint64_t off = s->img_off + s->done;
	bool last, use_file;
	struct tx_job *j;

	to_burst_end = burst - (s->done % burst);
	n = left < mrdsl ? left : mrdsl;
	if (n > to_burst_end)
		n = to_burst_end;
	last = n == left;
	use_file = n >= SENDFILE_MIN && !(c->digests_on && c->params.data_digest) &&
		   off + n <= cfg->image_size && (n & 3) == 0;
	j = tx_job_new(c, use_file ? 0 : tx_mem_need(n));
	if (!j)
		return NULL;
	struct iscsi_data *d = &j->hdr.data;

	d->opcode = ISCSI_OP_DATA_IN;
	d->flags = (last || n == to_burst_end) ? ISCSI_FLAG_FINAL : 0;
	if (last) {
		d->flags |= ISCSI_FLAG_DATA_STATUS | s->rsp_flags;
		d->status = SCSI_STATUS_GOOD;
		d->residual = htonl(s->residual);
		j->status_sn = true;
	}
	d->itt = s->itt;
	d->ttt = ISCSI_RSVD_TAG;
	d->datasn = htonl(s->datasn++);
	d->offset = htonl(s->done);
	j->payload = n;
	if (use_file) {
		iscsi_set_dlen(&j->hdr.bhs, n);
		j->file_off = off;
		j->file_len = n;
	} else {
		int err = image_read(cfg, j->mem, n, off);

		if (err < 0) {
			conn_fail(c, "reading image at %llu: %s", (unsigned long long)off,
				  strerror(-err));
			free(j);
			return NULL;
		}
		tx_set_data(c, j, j->mem, n);
	}
	s->done += n;
	return j;
}

/* Expands streams near the head of the queue into PDUs, within the look-ahead budget. */
static void tx_expand(struct conn *c)
{
	struct tx_job **pp = &c->tx_head;
	uint32_t pdus = 0;

	while (*pp && pdus < TX_AHEAD_PDUS && !c->dead) {
		struct tx_job *s = *pp;

		if (!s->is_stream) {
			if (!s->finalized)
				tx_finalize(c, s);
			pp = &s->next;
			pdus++;
			continue;
		}
		if (pdus && c->tx_mem >= TX_AHEAD_MEM)
			return;
		struct tx_job *j = tx_stream_next(c, s);

		if (!j)
			return;
		tx_finalize(c, j);
		j->next = s;
		*pp = j;
		c->tx_mem += j->mem_len;
		pp = &j->next;
		pdus++;
		if (s->done == s->total) {	/* stream fully expanded: drop it */
			j->next = s->next;
			if (c->tx_tail == &s->next)
				c->tx_tail = &j->next;
			free(s);
		}
	}
}

/* Advances the queue by n written bytes, freeing finished jobs. */
static void tx_consume(struct conn *c, size_t n)
{
	while (n && c->tx_head) {
		struct tx_job *j = c->tx_head;
		uint32_t total = j->hdr_len + j->mem_len + j->file_len;
		uint32_t left = total - j->sent;

		if (n < left) {
			j->sent += (uint32_t)n;
			return;
		}
		n -= left;
		c->tgt->served_bytes += j->payload;
		c->tx_head = j->next;
		if (!c->tx_head)
			c->tx_tail = &c->tx_head;
		tx_job_free(c, j);
	}
}

/* Writes as much of the queue as the socket takes: writev for built PDUs, sendfile for
 * large image payloads. Returns 0, or -1 when the connection failed. */
static int tx_flush(struct conn *c)
{
	for (;;) {
		struct iovec iov[TX_IOV_MAX];
		struct tx_job *j;
		bool more = false;
		int n = 0;

		tx_expand(c);
		if (c->dead)
			return -1;
		j = c->tx_head;
		if (!j)
			return 0;
		if (j->is_stream)	/* expansion is waiting for memory to drain */
			return 0;
		/* A header sent, only the file part left: sendfile it. */
		if (j->file_len && j->sent >= j->hdr_len) {
			off_t off = (off_t)(j->file_off + (j->sent - j->hdr_len));
			ssize_t w = sendfile(c->watch.fd, c->tgt->cfg->image_fd, &off,
					     j->hdr_len + j->file_len - j->sent);

			if (w < 0 && (errno == EAGAIN || errno == EINTR))
				return 0;
			if (w <= 0) {
				conn_fail(c, "sendfile: %s", w < 0 ? strerror(errno) : "short image");
				return -1;
			}
			tx_consume(c, (size_t)w);
			continue;
		}
		for (struct tx_job *p = j; p && n < TX_IOV_MAX - 3 && p->finalized; p = p->next) {
			uint32_t s = p == j ? p->sent : 0;
			uint8_t hbuf_len = (uint8_t)(p->hdr_len > ISCSI_BHS_LEN ? ISCSI_BHS_LEN : p->hdr_len);

			if (s < hbuf_len)
				iov[n++] = (struct iovec){ p->hdr.bytes + s, hbuf_len - s };
			if (p->hdr_len > ISCSI_BHS_LEN && s < p->hdr_len) {
				uint32_t ds = s > ISCSI_BHS_LEN ? s - ISCSI_BHS_LEN : 0;

				iov[n++] = (struct iovec){ p->hdigest + ds, ISCSI_DIGEST_LEN - ds };
			}
			if (p->file_len) {
				more = true;	/* its payload follows by sendfile */
				break;
			}
			if (p->mem_len) {
				uint32_t ms = s > p->hdr_len ? s - p->hdr_len : 0;

				iov[n++] = (struct iovec){ p->mem + ms, p->mem_len - ms };
			}
		}
		if (n == 0)
			return 0;
		struct msghdr mh = { .msg_iov = iov, .msg_iovlen = (size_t)n };
		ssize_t w = sendmsg(c->watch.fd, &mh, MSG_NOSIGNAL | (more ? MSG_MORE : 0));

		if (w < 0 && (errno == EAGAIN || errno == EINTR))
			return 0;
		if (w <= 0) {
			conn_fail(c, "send: %s", w < 0 ? strerror(errno) : "closed");
			return -1;
		}
		tx_consume(c, (size_t)w);
	}
}

/* Queues the Data-In of a read served from the image; the last PDU carries status. */
static int tx_queue_read(struct conn *c, uint32_t itt, uint64_t off, uint32_t len,
			 uint8_t rsp_flags, uint32_t residual)
{
	struct tx_job *s = tx_job_new(c, 0);

	if (!s)
		return -ENOMEM;
	s->is_stream = true;
	s->itt = itt;
	s->img_off = off;
	s->total = len;
	s->rsp_flags = rsp_flags;
	s->residual = residual;
	tx_append(c, s);
	return 0;
}

/* ---- responses ---- */

static int conn_send_reject(struct conn *c, uint8_t reason)
{
	union iscsi_hdr h = { 0 };

	h.reject.opcode = ISCSI_OP_REJECT;
	h.reject.flags = ISCSI_FLAG_FINAL;
	h.reject.reason = reason;
	h.reject.tag = ISCSI_RSVD_TAG;
	return tx_queue_pdu(c, &h, c->hdr.bytes, ISCSI_BHS_LEN, true);
}

static int conn_send_scsi_rsp(struct conn *c, uint32_t itt, const struct scsi_result *res,
			      uint8_t rsp_flags, uint32_t residual)
{
	uint8_t sense[2 + SCSI_SENSE_LEN];
	union iscsi_hdr h = { 0 };
	uint32_t slen = 0;

	h.rsp.opcode = ISCSI_OP_SCSI_RSP;
	h.rsp.flags = ISCSI_FLAG_FINAL | rsp_flags;
	h.rsp.status = res->status;
	h.rsp.itt = itt;
	h.rsp.residual = htonl(residual);
	if (res->status != SCSI_STATUS_GOOD && res->sense_len) {
		sense[0] = 0;
		sense[1] = res->sense_len;
		memcpy(sense + 2, res->sense, res->sense_len);
		slen = 2u + res->sense_len;
	}
	return tx_queue_pdu(c, &h, sense, slen, true);
}

static int conn_fail_read(struct conn *c, uint32_t itt, struct task *task, int err);

static void pending_free(struct pending *p)
{
	*p->pprev = p->next;
	if (p->next)
		p->next->pprev = p->pprev;
	free(p);
}

static void pending_done(struct target_io *io, int err);

/* Asks the backend for [off, off + len) of a command. 1: readable now; 0: the command
 * waits (pending_done resumes it); -1: the connection failed. A backend error answers
 * the command with MEDIUM ERROR and returns 0. */
static int conn_backend_prepare(struct conn *c, uint32_t itt, uint32_t edtl, uint32_t data_len,
				uint64_t off, uint32_t len, struct task *task)
{
	const struct target_backend *be = c->tgt->cfg->backend;
	struct pending *p;
	int rc;

	if (!be)
		return 1;
	p = calloc(1, sizeof *p);
	if (!p) {
		conn_fail(c, "out of memory");
		return -1;
	}
	p->io.off = off;
	p->io.len = len;
	p->io.done = pending_done;
	p->c = c;
	p->itt = itt;
	p->edtl = edtl;
	p->data_len = data_len;
	p->task = task;
	p->next = c->pendings;
	if (p->next)
		p->next->pprev = &p->next;
	p->pprev = &c->pendings;
	c->pendings = p;
	rc = be->prepare(be->ctx, &p->io);
	if (rc == 1)
		return 0;
	pending_free(p);
	if (rc == 0)
		return 1;
	return conn_fail_read(c, itt, task, rc) < 0 ? -1 : 0;
}

/* Sends a command's data and status, applying iSCSI residuals against EDTL (§11.4.5). */
static int conn_complete(struct conn *c, uint32_t itt, uint32_t edtl, struct scsi_result *res)
{
	uint32_t want = res->data_len, send = want < edtl ? want : edtl;
	uint8_t flags = 0;
	uint32_t residual = 0;

	if (res->status != SCSI_STATUS_GOOD)
		return conn_send_scsi_rsp(c, itt, res, 0, 0);
	if (want > edtl) {
		flags = ISCSI_FLAG_RSP_OVERFLOW;
		residual = want - edtl;
	} else if (want < edtl) {
		flags = ISCSI_FLAG_RSP_UNDERFLOW;
		residual = edtl - want;
	}
	if (send == 0)
		return conn_send_scsi_rsp(c, itt, res, flags, residual);
	if (res->action == SCSI_ACT_READ) {
		int ready = conn_backend_prepare(c, itt, edtl, res->data_len, res->read_offset,
						 send, NULL);

		if (ready <= 0)
			return ready < 0 ? -1 : 0;	/* failed, or waiting for the backend */
		return tx_queue_read(c, itt, res->read_offset, send, flags, residual);
	}
	/* A small payload built by the emulation: one Data-In per MaxRecvDataSegmentLength. */
	for (uint32_t done = 0, sn = 0; done < send; sn++) {
		uint32_t n = send - done < c->params.initiator_mrdsl ? send - done
								    : c->params.initiator_mrdsl;
		union iscsi_hdr h = { 0 };
		bool last = done + n == send;

		h.data.opcode = ISCSI_OP_DATA_IN;
		h.data.flags = last ? (ISCSI_FLAG_FINAL | ISCSI_FLAG_DATA_STATUS | flags) : 0;
		h.data.itt = itt;
		h.data.ttt = ISCSI_RSVD_TAG;
		h.data.datasn = htonl(sn);
		h.data.offset = htonl(done);
		h.data.residual = last ? htonl(residual) : 0;
		if (tx_queue_pdu(c, &h, res->buf + done, n, last) < 0)
			return -1;
		done += n;
	}
	return 0;
}

/* ---- full feature phase ---- */

static struct task *task_find(struct conn *c, uint32_t itt)
{
	for (struct task *t = c->tasks; t; t = t->next)
		if (t->itt == itt)
			return t;
	return NULL;
}

static void task_remove(struct conn *c, struct task *t)
{
	for (struct task **pp = &c->tasks; *pp; pp = &(*pp)->next) {
		if (*pp == t) {
			*pp = t->next;
			break;
		}
	}
	free(t->buf);
	free(t);
}

/* Asks for the next part of a task's Data-Out (MaxOutstandingR2T is 1). */
static int task_send_r2t(struct conn *c, struct task *t)
{
	union iscsi_hdr h = { 0 };
	uint32_t len = t->need - t->solicited;

	if (len > c->params.max_burst)
		len = c->params.max_burst;
	h.r2t.opcode = ISCSI_OP_R2T;
	h.r2t.flags = ISCSI_FLAG_FINAL;
	iscsi_lun_encode(t->lun, h.r2t.lun);
	h.r2t.itt = t->itt;
	h.r2t.ttt = htonl(t->ttt);
	h.r2t.r2tsn = htonl(t->r2tsn++);
	h.r2t.offset = htonl(t->solicited);
	h.r2t.length = htonl(len);
	t->solicited += len;
	return tx_queue_pdu(c, &h, NULL, 0, false);
}

/* Compares a VERIFY's Data-Out with the image, now readable, and answers it. */
static int task_compare(struct conn *c, struct task *t)
{
	struct scsi_result *res = malloc(sizeof *res);
	uint8_t *image = malloc(t->need ? t->need : 1);
	int rc = -1;

	if (!res || !image) {
		conn_fail(c, "out of memory");
		goto out;
	}
	scsi_execute(&c->tgt->cfg->disk, t->lun, t->cdb, sizeof t->cdb, res);
	if (res->action == SCSI_ACT_COMPARE) {
		uint32_t len = res->data_len;

		if (len > t->need || image_read(c->tgt->cfg, image, len, res->read_offset) < 0)
			scsi_set_sense(res, SENSE_MEDIUM_ERROR, 0x11, 0x00);
		else
			scsi_compare_finish(image, t->buf, len, res);
	}
	res->data_len = 0;	/* VERIFY transfers nothing to the initiator */
	rc = conn_send_scsi_rsp(c, t->itt, res, 0, 0);
	task_remove(c, t);
out:
	free(res);
	free(image);
	return rc;
}

/* All Data-Out of a VERIFY arrived: compare once the image bytes are at hand. */
static int task_finish(struct conn *c, struct task *t)
{
	static struct scsi_result res;
	int ready;

	scsi_execute(&c->tgt->cfg->disk, t->lun, t->cdb, sizeof t->cdb, &res);
	if (res.action != SCSI_ACT_COMPARE)	/* task_compare answers with its error */
		return task_compare(c, t);
	ready = conn_backend_prepare(c, t->itt, t->edtl, 0, res.read_offset, res.data_len, t);
	if (ready <= 0)
		return ready;
	return task_compare(c, t);
}

/* Answers a command whose image bytes could not be had: MEDIUM ERROR, unrecovered read. */
static int conn_fail_read(struct conn *c, uint32_t itt, struct task *task, int err)
{
	static struct scsi_result res;

	log_msg("%s: read for task 0x%08x failed: %s", c->peer, ntohl(itt), strerror(-err));
	memset(&res, 0, sizeof res);
	scsi_set_sense(&res, SENSE_MEDIUM_ERROR, 0x11, 0x00);
	if (task)
		task_remove(c, task);
	return conn_send_scsi_rsp(c, itt, &res, 0, 0);
}

static void conn_kick(void *ctx);

/* The backend has the bytes of a waiting command (or gave up): answer it. */
static void pending_done(struct target_io *io, int err)
{
	struct pending *p = (struct pending *)io;
	struct conn *c = p->c;
	static struct scsi_result res;

	if (err < 0) {
		conn_fail_read(c, p->itt, p->task, err);
	} else if (p->task) {
		task_compare(c, p->task);
	} else {
		memset(&res, 0, sizeof res);
		res.action = SCSI_ACT_READ;
		res.status = SCSI_STATUS_GOOD;
		res.data_len = p->data_len;
		res.read_offset = io->off;
		uint32_t send = p->data_len < p->edtl ? p->data_len : p->edtl;
		uint8_t flags = 0;
		uint32_t residual = 0;

		if (p->data_len > p->edtl) {
			flags = ISCSI_FLAG_RSP_OVERFLOW;
			residual = p->data_len - p->edtl;
		} else if (p->data_len < p->edtl) {
			flags = ISCSI_FLAG_RSP_UNDERFLOW;
			residual = p->edtl - p->data_len;
		}
		tx_queue_read(c, p->itt, io->off, send, flags, residual);
	}
	pending_free(p);
	ev_defer(&c->kick);	/* flush outside the backend's call stack */
}

/* Cancels a command waiting for the backend (abort, reset, disconnect). */
static void pending_cancel(struct conn *c, struct pending *p)
{
	const struct target_backend *be = c->tgt->cfg->backend;

	be->cancel(be->ctx, &p->io);
	if (p->task)
		task_remove(c, p->task);
	pending_free(p);
}

static struct pending *pending_find(struct conn *c, uint32_t itt)
{
	for (struct pending *p = c->pendings; p; p = p->next)
		if (p->itt == itt)
			return p;
	return NULL;
}

static int conn_rx_scsi_cmd(struct conn *c)
{
	const struct iscsi_scsi_cmd *cmd = &c->hdr.cmd;
	uint32_t edtl = ntohl(cmd->edtl), dlen = c->rx_dlen;
	uint64_t lun = iscsi_lun_decode(cmd->lun);
	static struct scsi_result res;	/* 4 KiB: not on the stack; one loop, one user */
	uint8_t cdb[16];
	uint32_t need;

	if (c->neg.discovery) {
		conn_fail(c, "SCSI command in a discovery session");
		return -1;
	}
	if (dlen > c->params.first_burst || dlen > edtl) {
		conn_fail(c, "immediate data %u exceeds FirstBurstLength or EDTL", dlen);
		return -1;
	}
	memcpy(cdb, cmd->cdb, sizeof cdb);
	need = scsi_dataout_len(&c->tgt->cfg->disk, cdb, sizeof cdb);
	scsi_execute(&c->tgt->cfg->disk, lun, cdb, sizeof cdb, &res);
	if (need && res.action == SCSI_ACT_COMPARE &&
	    (need > DATAOUT_MAX || edtl < need || !(cmd->flags & ISCSI_FLAG_CMD_WRITE))) {
		/* The initiator will not send the bytes the compare needs. */
		scsi_set_sense(&res, SENSE_ILLEGAL_REQUEST, 0x24, 0x00);
		need = 0;
	}
	if (need && res.action == SCSI_ACT_COMPARE && res.status == SCSI_STATUS_GOOD) {
		struct task *t = calloc(1, sizeof *t);

		if (!t || !(t->buf = malloc(need))) {
			free(t);
			conn_fail(c, "out of memory");
			return -1;
		}
		t->itt = cmd->itt;
		t->ttt = c->next_ttt++ & 0x7fffffff;
		t->edtl = edtl;
		t->lun = lun;
		t->need = need;
		memcpy(t->cdb, cdb, sizeof cdb);
		t->got = t->solicited = dlen < need ? dlen : need;
		memcpy(t->buf, c->data, t->got);
		t->next = c->tasks;
		c->tasks = t;
		if (t->got == need)
			return task_finish(c, t);
		return task_send_r2t(c, t);
	}
	if (res.action == SCSI_ACT_COMPARE) {	/* VERIFY without its data: nothing to compare */
		res.action = SCSI_ACT_STATUS;
		res.data_len = 0;
	}
	return conn_complete(c, cmd->itt, edtl, &res);
}

static int conn_rx_data_out(struct conn *c)
{
	const struct iscsi_data *d = &c->hdr.data;
	struct task *t = task_find(c, d->itt);
	uint32_t off = ntohl(d->offset), len = c->rx_dlen;

	if (!t || ntohl(d->ttt) != t->ttt) {
		/* Data nobody asked for (we never accept unsolicited data: InitialR2T=Yes):
		 * refuse the PDU, keep the connection. */
		log_limited(&target_log_limit, "%s: rejecting Data-Out for unknown task 0x%08x",
			    c->peer, ntohl(d->itt));
		return conn_send_reject(c, ISCSI_REJECT_INVALID_FIELD);
	}
	if (off > t->need || len > t->need - off || off != t->got) {
		conn_fail(c, "Data-Out offset %u length %u outside the solicited range", off, len);
		return -1;
	}
	memcpy(t->buf + off, c->data, len);
	t->got += len;
	if (t->got == t->need)
		return task_finish(c, t);
	if ((d->flags & ISCSI_FLAG_FINAL) && t->got == t->solicited)
		return task_send_r2t(c, t);
	return 0;
}

static int conn_rx_nop_out(struct conn *c)
{
	const struct iscsi_nop *n = &c->hdr.nop;
	union iscsi_hdr h = { 0 };

	if (n->itt == ISCSI_RSVD_TAG)	/* an answer to a ping of ours, or a bare CmdSN update */
		return 0;
	h.nop.opcode = ISCSI_OP_NOP_IN;
	h.nop.flags = ISCSI_FLAG_FINAL;
	memcpy(h.nop.lun, n->lun, sizeof h.nop.lun);
	h.nop.itt = n->itt;
	h.nop.ttt = ISCSI_RSVD_TAG;
	return tx_queue_pdu(c, &h, c->data, c->rx_dlen, true);
}

static int conn_rx_tmf(struct conn *c)
{
	const struct iscsi_tmf *r = &c->hdr.tmf;
	union iscsi_hdr h = { 0 };
	uint8_t fn = r->flags & 0x7f;
	struct pending *p;
	struct task *t;

	h.tmf.opcode = ISCSI_OP_TMF_RSP;
	h.tmf.flags = ISCSI_FLAG_FINAL;
	h.tmf.itt = r->itt;
	switch (fn) {
	case ISCSI_TMF_ABORT_TASK:
		t = task_find(c, r->rtt);
		p = pending_find(c, r->rtt);
		if (p) {
			pending_cancel(c, p);
			h.tmf.response = ISCSI_TMF_RSP_COMPLETE;
		} else if (t) {
			task_remove(c, t);
			h.tmf.response = ISCSI_TMF_RSP_COMPLETE;
		} else {
			/* RFC 7143 §11.5.1: an already answered command within the window
			 * counts as done; one we never saw does not exist. */
			uint32_t ref = ntohl(r->ref_cmdsn);

			h.tmf.response = sn_lt(ref, c->exp_cmdsn) &&
					 !sn_lt(ref, c->exp_cmdsn - CMD_WINDOW)
					 ? ISCSI_TMF_RSP_COMPLETE : ISCSI_TMF_RSP_NO_TASK;
		}
		break;
	case ISCSI_TMF_ABORT_TASK_SET:
	case ISCSI_TMF_CLEAR_TASK_SET:
	case ISCSI_TMF_LUN_RESET:
		while (c->pendings)
			pending_cancel(c, c->pendings);
		while (c->tasks)
			task_remove(c, c->tasks);
		h.tmf.response = ISCSI_TMF_RSP_COMPLETE;	/* and no UNIT ATTENTION afterwards */
		break;
	default:
		h.tmf.response = ISCSI_TMF_RSP_NOT_SUPPORTED;
		break;
	}
	return tx_queue_pdu(c, &h, NULL, 0, true);
}

/* Answers SendTargets with our one target at the address the initiator reached us on. */
static void conn_send_targets(struct conn *c, const char *value, struct strbuf *out)
{
	const char *iqn = c->tgt->cfg->iqn;
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;
	char addr[ADDR_STRLEN + 8];

	if (strcmp(value, "All") != 0 && strcmp(value, iqn) != 0 &&
	    !(value[0] == '\0' && !c->neg.discovery))
		return;
	iscsi_keys_add(out, "TargetName", iqn);
	if (getsockname(c->watch.fd, (struct sockaddr *)&ss, &len) == 0) {
		sockaddr_format((struct sockaddr *)&ss, addr, ADDR_STRLEN);
		strcat(addr, ",1");
		iscsi_keys_add(out, "TargetAddress", addr);
	}
}

/* Appends a request's data segment to the text spanning PDUs (C bit). */
static int conn_text_append(struct conn *c)
{
	if (c->text_acc.len + c->rx_dlen > ISCSI_TEXT_MAX) {
		conn_fail(c, "text spanning PDUs exceeds %u bytes", ISCSI_TEXT_MAX);
		return -1;
	}
	sb_add(&c->text_acc, c->data, c->rx_dlen);
	if (c->text_acc.failed) {
		conn_fail(c, "out of memory");
		return -1;
	}
	return 0;
}

static int conn_rx_text(struct conn *c)
{
	const struct iscsi_text *r = &c->hdr.text;
	struct iscsi_kv kv[ISCSI_KEYS_MAX];
	struct strbuf out = { 0 };
	union iscsi_hdr h = { 0 };
	int n, rc;

	h.text.opcode = ISCSI_OP_TEXT_RSP;
	h.text.itt = r->itt;
	if (conn_text_append(c) < 0)
		return -1;
	if (r->flags & ISCSI_FLAG_CONTINUE) {	/* more to come: answer empty, keep going */
		h.text.ttt = htonl(c->next_ttt++ & 0x7fffffff);
		return tx_queue_pdu(c, &h, NULL, 0, true);
	}
	h.text.flags = ISCSI_FLAG_FINAL;
	h.text.ttt = ISCSI_RSVD_TAG;
	sb_add(&c->text_acc, "", 1);	/* room for the parser's NUL */
	n = c->text_acc.failed ? -ENOMEM
			       : iscsi_keys_parse(c->text_acc.data, c->text_acc.len - 1, kv,
						  ISCSI_KEYS_MAX);
	if (n < 0) {
		sb_free(&c->text_acc);
		return conn_send_reject(c, ISCSI_REJECT_PROTOCOL_ERROR);
	}
	for (int i = 0; i < n; i++) {
		if (strcmp(kv[i].key, "SendTargets") == 0)
			conn_send_targets(c, kv[i].value, &out);
		else
			iscsi_keys_add(&out, kv[i].key, "NotUnderstood");
	}
	sb_free(&c->text_acc);
	if (out.len > c->params.initiator_mrdsl) {	/* one target never gets this long */
		sb_free(&out);
		return conn_send_reject(c, ISCSI_REJECT_PROTOCOL_ERROR);
	}
	rc = tx_queue_pdu(c, &h, out.data, (uint32_t)out.len, true);
	sb_free(&out);
	return rc;
}

static int conn_rx_logout(struct conn *c)
{
	union iscsi_hdr h = { 0 };

	h.logout.opcode = ISCSI_OP_LOGOUT_RSP;
	h.logout.flags = ISCSI_FLAG_FINAL;
	h.logout.itt = c->hdr.logout.itt;
	h.logout.response = 0;	/* closed successfully */
	c->state = CONN_CLOSING;
	return tx_queue_pdu(c, &h, NULL, 0, true);
}

/* Checks a command's CmdSN against the window; false means ignore it (§4.2.2.1). */
static bool conn_cmdsn_accept(struct conn *c)
{
	uint32_t cmdsn = ntohl(c->hdr.cmd.cmdsn);

	if (c->hdr.bhs.opcode & ISCSI_OP_IMMEDIATE)
		return true;
	if (cmdsn == c->exp_cmdsn) {
		c->exp_cmdsn++;
		return true;
	}
	log_msg("%s: ignoring %s with CmdSN %u outside the window (expected %u)", c->peer,
		iscsi_opcode_name(c->hdr.bhs.opcode), cmdsn, c->exp_cmdsn);
	return false;
}

static int conn_rx_full_feature(struct conn *c)
{
	uint8_t op = c->hdr.bhs.opcode & ISCSI_OP_MASK;

	switch (op) {
	case ISCSI_OP_SCSI_CMD:
	case ISCSI_OP_NOP_OUT:
	case ISCSI_OP_TMF_REQ:
	case ISCSI_OP_TEXT_REQ:
	case ISCSI_OP_LOGOUT_REQ:
		/* NOP-Out without a reply wanted carries no new CmdSN (§11.18). */
		if (!(op == ISCSI_OP_NOP_OUT && c->hdr.nop.itt == ISCSI_RSVD_TAG) &&
		    !conn_cmdsn_accept(c))
			return 0;
		break;
	default:
		break;
	}
	switch (op) {
	case ISCSI_OP_SCSI_CMD:
		return conn_rx_scsi_cmd(c);
	case ISCSI_OP_DATA_OUT:
		return conn_rx_data_out(c);
	case ISCSI_OP_NOP_OUT:
		return conn_rx_nop_out(c);
	case ISCSI_OP_TMF_REQ:
		return conn_rx_tmf(c);
	case ISCSI_OP_TEXT_REQ:
		return conn_rx_text(c);
	case ISCSI_OP_LOGOUT_REQ:
		return conn_rx_logout(c);
	case ISCSI_OP_LOGIN_REQ:
		conn_fail(c, "Login request in full feature phase");
		return -1;
	case ISCSI_OP_SNACK:	/* ErrorRecoveryLevel 0 has no SNACK */
		log_msg("%s: rejecting SNACK (ErrorRecoveryLevel 0)", c->peer);
		return conn_send_reject(c, ISCSI_REJECT_PROTOCOL_ERROR);
	default:
		log_msg("%s: rejecting unknown opcode 0x%02x", c->peer, op);
		return conn_send_reject(c, ISCSI_REJECT_NOT_SUPPORTED);
	}
}

/* ---- login ---- */

/* Closes an older session of the same initiator and ISID: session reinstatement (§6.3.5). */
static void conn_reinstate(struct conn *c)
{
	for (struct conn *o = c->tgt->conns; o; o = o->next) {
		if (o == c || o->state != CONN_FULL_FEATURE || o->neg.discovery || o->dead ||
		    memcmp(o->isid, c->isid, sizeof c->isid) != 0 ||
		    strcmp(o->neg.initiator_name, c->neg.initiator_name) != 0)
			continue;
		log_msg("%s: session reinstated by %s", o->peer, c->peer);
		o->dead = true;
	}
}

static int conn_login_reply(struct conn *c, uint8_t flags, uint16_t status, struct strbuf *text)
{
	const struct iscsi_login *req = &c->hdr.login;
	union iscsi_hdr h = { 0 };
	int rc;

	h.login.opcode = ISCSI_OP_LOGIN_RSP;
	h.login.flags = flags;
	memcpy(h.login.isid, req->isid, sizeof h.login.isid);
	h.login.tsih = htons(c->tsih);
	h.login.itt = req->itt;
	h.login.status_class = (uint8_t)(status >> 8);
	h.login.status_detail = (uint8_t)status;
	rc = tx_queue_pdu(c, &h, text ? text->data : NULL, text ? (uint32_t)text->len : 0, true);
	if (status != ISCSI_LOGIN_OK) {
		log_msg("%s: login failed: status 0x%04x", c->peer, status);
		c->tgt->login_failures++;
		c->state = CONN_CLOSING;
	}
	return rc;
}

/* Validates who logs in to what once the first request's keys are known. */
static uint16_t conn_login_check_identity(struct conn *c)
{
	if (!c->neg.have_initiator_name)
		return ISCSI_LOGIN_MISSING_PARAMETER;
	if (c->neg.discovery)
		return ISCSI_LOGIN_OK;
	if (!c->neg.have_target_name)
		return ISCSI_LOGIN_MISSING_PARAMETER;
	if (strcmp(c->neg.target_name, c->tgt->cfg->iqn) != 0)
		return ISCSI_LOGIN_NOT_FOUND;
	return ISCSI_LOGIN_OK;
}

static void conn_enter_full_feature(struct conn *c)
{
	struct target *tgt = c->tgt;

	c->params = c->neg.params;
	c->digests_on = true;
	c->state = CONN_FULL_FEATURE;
	tgt->logins++;
	if (!c->neg.discovery) {
		conn_reinstate(c);
		tgt->sessions++;
		c->in_session_count = true;
	}
	log_msg("%s: %s session of %s (header digest %s, data digest %s, MRDSL %u)", c->peer,
		c->neg.discovery ? "discovery" : "normal", c->neg.initiator_name,
		c->params.header_digest ? "CRC32C" : "None",
		c->params.data_digest ? "CRC32C" : "None", c->params.initiator_mrdsl);
}

static int conn_rx_login(struct conn *c)
{
	const struct iscsi_login *req = &c->hdr.login;
	uint8_t csg = ISCSI_LOGIN_CSG(req->flags), nsg = ISCSI_LOGIN_NSG(req->flags);
	bool transit = req->flags & ISCSI_FLAG_LOGIN_TRANSIT;
	struct iscsi_kv kv[ISCSI_KEYS_MAX];
	struct strbuf out = { 0 };
	uint16_t status;
	uint8_t flags;
	int n, rc;

	if ((req->opcode & ISCSI_OP_MASK) != ISCSI_OP_LOGIN_REQ) {
		conn_fail(c, "%s before login", iscsi_opcode_name(req->opcode));
		return -1;
	}
	if (c->first_login) {
		c->first_login = false;
		memcpy(c->isid, req->isid, sizeof c->isid);
		c->exp_cmdsn = ntohl(req->sn1);
		c->statsn = ntohl(req->sn2);
		c->stage = csg;
		if (req->version_min > 0 || req->version_max < req->version_min)
			return conn_login_reply(c, 0, ISCSI_LOGIN_UNSUPPORTED_VERSION, NULL);
		if (ntohs(req->tsih) != 0)	/* one connection per session: nothing to join */
			return conn_login_reply(c, 0, ISCSI_LOGIN_NO_SESSION, NULL);
	}
	if (csg != c->stage || csg == 2 || csg == ISCSI_STAGE_FULL_FEATURE ||
	    (transit && (nsg <= csg || nsg == 2)) || memcmp(c->isid, req->isid, 6) != 0)
		return conn_login_reply(c, 0, ISCSI_LOGIN_INITIATOR_ERROR, NULL);
	if (conn_text_append(c) < 0)
		return -1;
	if (req->flags & ISCSI_FLAG_CONTINUE)	/* keys continue in the next PDU */
		return conn_login_reply(c, (uint8_t)(csg << 2), ISCSI_LOGIN_OK, NULL);
	sb_add(&c->text_acc, "", 1);
	n = c->text_acc.failed ? -ENOMEM
			       : iscsi_keys_parse(c->text_acc.data, c->text_acc.len - 1, kv,
						  ISCSI_KEYS_MAX);
	if (n < 0) {
		log_msg("%s: malformed login text", c->peer);
		sb_free(&c->text_acc);
		return conn_login_reply(c, 0, ISCSI_LOGIN_INITIATOR_ERROR, NULL);
	}
	status = (uint16_t)iscsi_negotiate(&c->neg, kv, n, &out);
	sb_free(&c->text_acc);
	if (status == ISCSI_LOGIN_OK)
		status = conn_login_check_identity(c);
	if (status != ISCSI_LOGIN_OK) {
		rc = conn_login_reply(c, 0, status, &out);
		sb_free(&out);
		return rc;
	}
	if (!c->neg.discovery && !c->neg.tpgt_sent) {
		iscsi_keys_add(&out, "TargetPortalGroupTag", "1");
		c->neg.tpgt_sent = true;
	}
	flags = (uint8_t)(csg << 2);
	if (transit) {
		if (nsg == ISCSI_STAGE_FULL_FEATURE && !c->neg.mrdsl_declared) {
			char num[16];

			snprintf(num, sizeof num, "%u", ISCSI_TARGET_MRDSL);
			iscsi_keys_add(&out, "MaxRecvDataSegmentLength", num);
			c->neg.mrdsl_declared = true;
		}
		flags |= ISCSI_FLAG_LOGIN_TRANSIT | nsg;
		c->stage = nsg;
		if (nsg == ISCSI_STAGE_FULL_FEATURE) {
			c->tsih = c->tgt->next_tsih++;
			if (c->tgt->next_tsih == 0)	/* TSIH 0 means "new session" */
				c->tgt->next_tsih = 1;
		}
	}
	rc = conn_login_reply(c, flags, ISCSI_LOGIN_OK, &out);
	sb_free(&out);
	if (rc == 0 && transit && nsg == ISCSI_STAGE_FULL_FEATURE)
		conn_enter_full_feature(c);
	return rc;
}

/* ---- receive ---- */

static uint32_t conn_rx_limit(const struct conn *c)
{
	return c->state == CONN_FULL_FEATURE ? ISCSI_TARGET_MRDSL : LOGIN_MRDSL;
}

/* Where the bytes of the current stage go, and how many it needs. */
static uint8_t *conn_rx_dest(struct conn *c, uint32_t *need)
{
	switch (c->rx_stage) {
	case RX_BHS:
		*need = ISCSI_BHS_LEN;
		return c->hdr.bytes;
	case RX_AHS:
		*need = c->rx_ahs_len;
		return c->ahs;
	case RX_HDIGEST:
	case RX_DDIGEST:
		*need = ISCSI_DIGEST_LEN;
		return c->digest;
	case RX_DATA:
		*need = c->rx_dlen + iscsi_pad(c->rx_dlen);
		return c->data;
	}
	*need = 0;
	return NULL;
}

/* Moves to the stage after `from`, skipping empty ones; true when the PDU is complete. */
static bool conn_rx_next(struct conn *c, enum rx_stage from)
{
	bool hd = c->digests_on && c->params.header_digest;
	bool dd = c->digests_on && c->params.data_digest;

	c->rx_got = 0;
	switch (from) {
	case RX_BHS:
		if (c->rx_ahs_len) {
			c->rx_stage = RX_AHS;
			return false;
		}
		__attribute__((fallthrough));
	case RX_AHS:
		if (hd) {
			c->rx_stage = RX_HDIGEST;
			return false;
		}
		__attribute__((fallthrough));
	case RX_HDIGEST:
		if (c->rx_dlen) {
			c->rx_stage = RX_DATA;
			return false;
		}
		c->rx_stage = RX_BHS;
		return true;
	case RX_DATA:
		if (dd) {
			c->rx_stage = RX_DDIGEST;
			return false;
		}
		__attribute__((fallthrough));
	case RX_DDIGEST:
		c->rx_stage = RX_BHS;
		return true;
	}
	return false;
}

/* Validates a stage just completed; -1 closes the connection, 1 drops the PDU. */
static int conn_rx_check(struct conn *c)
{
	uint32_t d, limit;

	switch (c->rx_stage) {
	case RX_BHS:
		c->rx_ahs_len = (uint32_t)c->hdr.bhs.ahs_len * 4;
		c->rx_dlen = iscsi_get_dlen(&c->hdr.bhs);
		limit = conn_rx_limit(c);
		if (c->rx_dlen > limit) {
			conn_fail(c, "%s data segment %u exceeds MaxRecvDataSegmentLength %u",
				  iscsi_opcode_name(c->hdr.bhs.opcode), c->rx_dlen, limit);
			return -1;
		}
		if (c->rx_dlen + 8 > c->data_cap) {
			uint8_t *p = realloc(c->data, c->rx_dlen + 8);

			if (!p) {
				conn_fail(c, "out of memory");
				return -1;
			}
			c->data = p;
			c->data_cap = c->rx_dlen + 8;
		}
		return 0;
	case RX_HDIGEST:
		d = crc32c(crc32c(0, c->hdr.bytes, ISCSI_BHS_LEN), c->ahs, c->rx_ahs_len);
		if (memcmp(&d, c->digest, ISCSI_DIGEST_LEN) != 0) {
			/* The header cannot be trusted, so neither can the stream (§7.8). */
			conn_fail(c, "header digest mismatch");
			return -1;
		}
		return 0;
	case RX_DDIGEST:
		d = crc32c(0, c->data, c->rx_dlen + iscsi_pad(c->rx_dlen));
		if (memcmp(&d, c->digest, ISCSI_DIGEST_LEN) != 0) {
			log_msg("%s: data digest mismatch on %s: rejected", c->peer,
				iscsi_opcode_name(c->hdr.bhs.opcode));
			c->tgt->protocol_errors++;
			return conn_send_reject(c, ISCSI_REJECT_DIGEST_ERROR) < 0 ? -1 : 1;
		}
		return 0;
	case RX_AHS:
	case RX_DATA:
		return 0;
	}
	return 0;
}

/* Checks the additional header segments: each inside TotalAHSLength, of a type RFC 7143
 * defines (1: extended CDB, 2: bidirectional read length), and only on a SCSI command. */
static bool conn_ahs_valid(const struct conn *c)
{
	const uint8_t *p = c->ahs, *end = c->ahs + c->rx_ahs_len;

	if (!c->rx_ahs_len)
		return true;
	if ((c->hdr.bhs.opcode & ISCSI_OP_MASK) != ISCSI_OP_SCSI_CMD)
		return false;
	while (p < end) {	/* each segment is at least 4 bytes: the loop is capped */
		uint32_t len, seg;

		if (end - p < 4)
			return false;
		len = (uint32_t)p[0] << 8 | p[1];
		seg = (3 + len + 3) & ~3u;
		if (seg > (uint32_t)(end - p) || (p[2] != 1 && p[2] != 2))
			return false;
		p += seg;
	}
	return true;
}

static int conn_rx_pdu(struct conn *c)
{
	if (!conn_ahs_valid(c)) {
		log_limited(&target_log_limit, "%s: rejecting %s with a malformed AHS", c->peer,
			    iscsi_opcode_name(c->hdr.bhs.opcode));
		return c->state == CONN_FULL_FEATURE ? conn_send_reject(c, ISCSI_REJECT_PROTOCOL_ERROR)
						     : (conn_fail(c, "malformed AHS during login"), -1);
	}
	if (c->state == CONN_LOGIN)
		return conn_rx_login(c);
	if (c->state == CONN_FULL_FEATURE)
		return conn_rx_full_feature(c);
	return 0;	/* closing: ignore */
}

/* Feeds received bytes through the PDU state machine. */
static int conn_rx_process(struct conn *c)
{
	while (c->in_pos < c->in_len && !c->dead && c->state != CONN_CLOSING &&
	       c->tx_mem < TX_MEM_HIGH) {
		uint32_t need, take;
		uint8_t *dst = conn_rx_dest(c, &need);
		enum rx_stage stage = c->rx_stage;
		int rc;

		take = c->in_len - c->in_pos;
		if (take > need - c->rx_got)
			take = need - c->rx_got;
		memcpy(dst + c->rx_got, c->in + c->in_pos, take);
		c->in_pos += take;
		c->rx_got += take;
		if (c->rx_got < need)
			break;
		rc = conn_rx_check(c);
		if (rc < 0)
			return -1;
		if (rc > 0) {	/* PDU dropped after a data digest error */
			c->rx_stage = RX_BHS;
			c->rx_got = 0;
			continue;
		}
		if (conn_rx_next(c, stage) && conn_rx_pdu(c) < 0)
			return -1;
	}
	return c->dead ? -1 : 0;
}

static int conn_rx(struct conn *c)
{
	for (int rounds = 0; rounds < 4; rounds++) {
		ssize_t n;

		if (c->in_pos < c->in_len) {
			if (conn_rx_process(c) < 0)
				return -1;
			if (c->in_pos < c->in_len)
				return 0;	/* held back: replies are not being read */
		}
		c->in_pos = c->in_len = 0;
		n = recv(c->watch.fd, c->in, sizeof c->in, 0);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return 0;
		if (n == 0) {
			if (c->rx_stage != RX_BHS || c->rx_got)
				conn_fail(c, "peer closed in the middle of a PDU");
			else
				c->dead = true;
			return -1;
		}
		if (n < 0 && errno == ECONNRESET && c->rx_stage == RX_BHS && !c->rx_got) {
			c->dead = true;	/* gone between PDUs (iscsiadm after discovery) */
			return -1;
		}
		if (n < 0) {
			conn_fail(c, "recv: %s", strerror(errno));
			return -1;
		}
		c->in_len = (uint32_t)n;
	}
	return 0;
}

static void conn_destroy(struct conn *c)
{
	struct target *tgt = c->tgt;

	ev_del(&c->watch);
	close(c->watch.fd);
	*c->pprev = c->next;
	if (c->next)
		c->next->pprev = c->pprev;
	tgt->nconns--;
	if (c->in_session_count)
		tgt->sessions--;
	while (c->tx_head) {
		struct tx_job *j = c->tx_head;

		c->tx_head = j->next;
		free(j);
	}
	while (c->pendings)
		pending_cancel(c, c->pendings);
	while (c->tasks)
		task_remove(c, c->tasks);
	ev_undefer(&c->kick);
	sb_free(&c->text_acc);
	free(c->data);
	free(c);
}

/* Sets which events to wait for: input unless held back, output while anything is queued. */
static void conn_update_events(struct conn *c)
{
	uint32_t ev = 0;

	if (c->state != CONN_CLOSING && c->tx_mem < TX_MEM_HIGH)
		ev |= EPOLLIN;
	if (c->tx_head)
		ev |= EPOLLOUT;
	ev_set(&c->watch, ev);
}

static void conn_kick(void *ctx)
{
	struct conn *c = ctx;

	if (!c->dead && c->tx_head)
		tx_flush(c);
	if (c->dead) {
		conn_destroy(c);
		return;
	}
	conn_update_events(c);
}

static void conn_event(void *ctx, uint32_t events)
{
	struct conn *c = ctx;

	if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
		if (c->state != CONN_CLOSING && conn_rx(c) < 0)
			goto out;
	} else if (c->in_pos < c->in_len && conn_rx_process(c) < 0) {
		goto out;
	}
	if (c->tx_head && tx_flush(c) < 0)
		goto out;
	if (c->state == CONN_CLOSING && !c->tx_head)
		c->dead = true;
	/* Input held back while replies drained: resume parsing it now. */
	if (!c->dead && c->in_pos < c->in_len && c->tx_mem < TX_MEM_HIGH &&
	    c->state != CONN_CLOSING) {
		if (conn_rx_process(c) < 0 || (c->tx_head && tx_flush(c) < 0))
			goto out;
	}
out:
	if (c->dead) {
		conn_destroy(c);
		return;
	}
	conn_update_events(c);
}

/* Takes over a connected socket; NULL (socket closed) when it cannot. */
static struct conn *conn_new(struct target *tgt, int fd, const char *peer)
{
	struct conn *c;

	if (tgt->nconns >= CONN_MAX || !(c = calloc(1, sizeof *c))) {
		tgt->refused++;
		close(fd);
		return NULL;
	}
	c->tgt = tgt;
	c->watch = (struct ev_watch){ .fd = fd, .fn = conn_event, .ctx = c };
	c->kick = (struct ev_deferred){ .fn = conn_kick, .ctx = c };
	c->state = CONN_LOGIN;
	c->first_login = true;
	c->tx_tail = &c->tx_head;
	c->login_deadline = ev_now_ms() + LOGIN_TIMEOUT_MS;
	iscsi_params_default(&c->neg.params);
	c->params = c->neg.params;
	snprintf(c->peer, sizeof c->peer, "%s", peer);
	if (ev_add(&c->watch, EPOLLIN) < 0) {
		close(fd);
		free(c);
		return NULL;
	}
	c->next = tgt->conns;
	if (c->next)
		c->next->pprev = &c->next;
	c->pprev = &tgt->conns;
	tgt->conns = c;
	tgt->nconns++;
	return c;
}

static void target_accept(void *ctx, uint32_t events)
{
	struct target *tgt = ctx;

	for (int i = 0; i < 64; i++) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof ss;
		char peer[ADDR_STRLEN];
		int fd, one = 1, idle = 30, intvl = 10, cnt = 3;

		fd = accept4(tgt->listen.fd, (struct sockaddr *)&ss, &len,
			     SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE)
				log_msg("accept: %s", strerror(errno));
			return;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		/* Dead initiators are found by TCP keepalive, never by unanswered NOP-In:
		 * iPXE does not answer NOP-In. */
		setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
		setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
		setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
		setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
		sockaddr_format((struct sockaddr *)&ss, peer, sizeof peer);
		conn_new(tgt, fd, peer);
	}
}

static void target_tick(void *ctx, uint64_t now)
{
	struct target *tgt = ctx;
	struct conn *c = tgt->conns, *next;

	for (; c; c = next) {
		next = c->next;
		if (c->state == CONN_LOGIN && now > c->login_deadline) {
			conn_fail(c, "login not finished within %d s", LOGIN_TIMEOUT_MS / 1000);
			conn_destroy(c);
		} else if (c->dead) {
			conn_destroy(c);
		}
	}
}

static void target_metrics(struct strbuf *out, void *ctx)
{
	struct target *tgt = ctx;

	metrics_family(out, "virtman_served_bytes_total", "counter",
		       "SCSI payload bytes sent to initiators");
	metrics_sample(out, "virtman_served_bytes_total", "", tgt->served_bytes);
	metrics_family(out, "virtman_sessions", "gauge", "Normal iSCSI sessions logged in");
	metrics_sample(out, "virtman_sessions", "", tgt->sessions);
	metrics_family(out, "virtman_connections", "gauge", "TCP connections open");
	metrics_sample(out, "virtman_connections", "", tgt->nconns);
	metrics_family(out, "virtman_logins_total", "counter", "Logins completed");
	metrics_sample(out, "virtman_logins_total", "", tgt->logins);
	metrics_family(out, "virtman_login_failures_total", "counter", "Logins refused");
	metrics_sample(out, "virtman_login_failures_total", "", tgt->login_failures);
	metrics_family(out, "virtman_protocol_errors_total", "counter",
		       "Connections closed or PDUs rejected for bad input");
	metrics_sample(out, "virtman_protocol_errors_total", "", tgt->protocol_errors);
}

void target_disk_init(struct scsi_disk *disk, const char *name, uint64_t image_size)
{
	uint32_t h = crc32c(0, name, strlen(name));
	uint64_t h64 = (uint64_t)h << 32 | crc32c(h, &image_size, sizeof image_size);

	memset(disk, 0, sizeof *disk);
	disk->block_size = 512;
	disk->nblocks = (image_size + 511) / 512;
	/* NAA 6 with a locally administered-looking OUI; stable for a given image. */
	disk->naa = 0x6000000000000000ull | (h64 & 0x0fffffffffffffffull);
	snprintf(disk->serial, sizeof disk->serial, "%016llx", (unsigned long long)h64);
	snprintf(disk->product, sizeof disk->product, "virtman disk");
}

int target_start(const struct target_config *cfg)
{
	struct target *tgt = calloc(1, sizeof *tgt);
	struct rlimit rl;
	int fd;

	if (!tgt)
		return -ENOMEM;
	/* Thousands of initiators: take every descriptor we are allowed. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	fd = net_listen_tcp(&cfg->listen, cfg->listen_len);
	if (fd < 0) {
		free(tgt);
		return fd;
	}
	tgt->cfg = cfg;
	tgt->next_tsih = 1;
	tgt->listen = (struct ev_watch){ .fd = fd, .fn = target_accept, .ctx = tgt };
	tgt->tick = (struct ev_tick){ .fn = target_tick, .ctx = tgt };
	ev_tick_add(&tgt->tick);
	if (!cfg->no_metrics)
		metrics_register(target_metrics, tgt);
	tgt->next_target = targets;
	targets = tgt;
	return ev_add(&tgt->listen, EPOLLIN);
}

int target_swap(const struct target_config *cfg, const struct target_config *next)
{
	struct target *tgt = targets;

	while (tgt && tgt->cfg != cfg)
		tgt = tgt->next_target;
	if (!tgt)
		return -ENOENT;
	while (tgt->conns)
		conn_destroy(tgt->conns);
	tgt->cfg = next;
	return 0;
}
