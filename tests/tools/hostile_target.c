/* hostile_target: a tiny blocking iSCSI target that logs an initiator in, answers READ CAPACITY,
 * then misbehaves on the first read in a chosen way; for testing initiators (ours, the relay). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "iscsi/pdu.h"
#include "lib/net.h"

#define HT_BLOCK 512
#define HT_DATA_MAX 65536	/* largest data segment we take from the initiator */
#define HT_SEGMENT 262144	/* Data-In payload per PDU */
#define HT_WINDOW 32		/* MaxCmdSN - ExpCmdSN + 1 */
#define HT_DRAIN_S 120		/* how long we wait for the initiator to hang up */

enum ht_mode {
	MODE_GOOD,
	MODE_GARBAGE,
	MODE_BAD_OFFSET,
	MODE_UNKNOWN_ITT,
	MODE_HUGE_DLEN,
	MODE_SHORT_THEN_CLOSE,
	MODE_WRONG_CAPACITY,
	MODE_STALL,
	MODE_LOGOUT,
	MODE_REJECT,
	MODE_CHECK_CONDITION,
	MODE_DATASN_GAP,
	MODE_R2T,
	MODE_CORRUPT,
};

static const struct {
	const char *name;
	enum ht_mode mode;
	const char *what;
} ht_modes[] = {
	{ "good", MODE_GOOD, "behaves (a control)" },
	{ "garbage", MODE_GARBAGE, "answers the first read with 64 KiB of random bytes" },
	{ "bad-offset", MODE_BAD_OFFSET, "Data-In with a buffer offset beyond the read" },
	{ "unknown-itt", MODE_UNKNOWN_ITT, "Data-In for a task the initiator never sent" },
	{ "huge-dlen", MODE_HUGE_DLEN, "Data-In announcing a 16 MiB data segment" },
	{ "short-then-close", MODE_SHORT_THEN_CLOSE, "half a Data-In header, then closes" },
	{ "wrong-capacity", MODE_WRONG_CAPACITY,
	  "serves one read, closes; later sessions report the capacity + 1 MiB" },
	{ "stall", MODE_STALL, "never answers reads (NOP-Out pings are answered)" },
	{ "logout", MODE_LOGOUT, "Async Message: target requests logout" },
	{ "reject", MODE_REJECT, "Reject PDU for the read command" },
	{ "check-condition", MODE_CHECK_CONDITION, "CHECK CONDITION, MEDIUM ERROR 11/00" },
	{ "datasn-gap", MODE_DATASN_GAP, "first Data-In with DataSN 1" },
	{ "r2t", MODE_R2T, "R2T for the read (the initiator never writes)" },
	{ "corrupt", MODE_CORRUPT, "serves every read with one byte per 4 KiB flipped" },
};

struct ht_conn {
	int fd;
	int image_fd;
	uint64_t capacity;	/* what READ CAPACITY reports */
	enum ht_mode mode;
	unsigned conn_no;	/* 1 for the first session (a completed login) */
	bool misbehaved;
	uint32_t statsn, exp_cmdsn;
	union iscsi_hdr req;
	uint8_t data[HT_DATA_MAX + 4];
	uint32_t dlen;
};

static void ht_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void ht_log(const char *fmt, ...)
{
	va_list ap;

	fputs("hostile_target: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static int ht_write(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int ht_read(int fd, void *buf, size_t len)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t n = read(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Reads one PDU (we never negotiate digests); -1 on close or a segment we do not take. */
static int ht_recv(struct ht_conn *c)
{
	uint8_t ahs[255 * 4];
	uint32_t ahs_len, pad;

	if (ht_read(c->fd, c->req.bytes, ISCSI_BHS_LEN) < 0)
		return -1;
	ahs_len = (uint32_t)c->req.bhs.ahs_len * 4;
	c->dlen = iscsi_get_dlen(&c->req.bhs);
	pad = iscsi_pad(c->dlen);
	if (c->dlen > HT_DATA_MAX) {
		ht_log("data segment of %u bytes: giving up on this connection", c->dlen);
		return -1;
	}
	if ((ahs_len && ht_read(c->fd, ahs, ahs_len) < 0) ||
	    ht_read(c->fd, c->data, c->dlen + pad) < 0)
		return -1;
	return 0;
}

/* Sends a PDU with StatSN/ExpCmdSN/MaxCmdSN filled; status_sn advances StatSN. */
static int ht_send(struct ht_conn *c, union iscsi_hdr *h, const void *data, uint32_t len,
		   bool status_sn)
{
	static const uint8_t zeros[4];

	iscsi_set_dlen(&h->bhs, len);
	if (status_sn || (h->bhs.opcode & ISCSI_OP_MASK) != ISCSI_OP_DATA_IN)
		h->rsp.statsn = htonl(status_sn ? c->statsn++ : c->statsn);
	h->rsp.exp_cmdsn = htonl(c->exp_cmdsn);
	h->rsp.max_cmdsn = htonl(c->exp_cmdsn + HT_WINDOW - 1);
	if (ht_write(c->fd, h->bytes, ISCSI_BHS_LEN) < 0 || (len && ht_write(c->fd, data, len) < 0) ||
	    ht_write(c->fd, zeros, iscsi_pad(len)) < 0)
		return -1;
	return 0;
}

static void ht_keys(char *buf, uint32_t *len, const char *kv)
{
	size_t n = strlen(kv) + 1;

	memcpy(buf + *len, kv, n);
	*len += (uint32_t)n;
}

static int ht_login(struct ht_conn *c)
{
	static const char *const operational[] = {
		"HeaderDigest=None", "DataDigest=None", "MaxRecvDataSegmentLength=262144",
		"MaxBurstLength=262144", "FirstBurstLength=65536", "ErrorRecoveryLevel=0",
		"DataPDUInOrder=Yes", "DataSequenceInOrder=Yes", "ImmediateData=Yes",
		"InitialR2T=Yes", "MaxOutstandingR2T=1", "MaxConnections=1", "DefaultTime2Wait=0",
		"DefaultTime2Retain=0",
	};

	for (int round = 0; round < 8; round++) {
		union iscsi_hdr h = { 0 };
		char text[1024];
		uint32_t len = 0;
		uint8_t csg;

		if (ht_recv(c) < 0)
			return -1;
		if ((c->req.bhs.opcode & ISCSI_OP_MASK) != ISCSI_OP_LOGIN_REQ)
			return -1;
		csg = ISCSI_LOGIN_CSG(c->req.login.flags);
		c->exp_cmdsn = ntohl(c->req.login.sn1);
		h.login.opcode = ISCSI_OP_LOGIN_RSP;
		memcpy(h.login.isid, c->req.login.isid, sizeof h.login.isid);
		h.login.itt = c->req.login.itt;
		if (csg == ISCSI_STAGE_SECURITY) {
			ht_keys(text, &len, "AuthMethod=None");
			ht_keys(text, &len, "TargetPortalGroupTag=1");
			h.login.flags = ISCSI_FLAG_LOGIN_TRANSIT | ISCSI_STAGE_OPERATIONAL;
		} else {
			for (size_t i = 0; i < sizeof operational / sizeof operational[0]; i++)
				ht_keys(text, &len, operational[i]);
			h.login.flags = ISCSI_FLAG_LOGIN_TRANSIT | ISCSI_STAGE_OPERATIONAL << 2 |
					ISCSI_STAGE_FULL_FEATURE;
			h.login.tsih = htons(1);
		}
		if (ht_send(c, &h, text, len, true) < 0)
			return -1;
		if (csg == ISCSI_STAGE_OPERATIONAL)
			return 0;
	}
	return -1;
}

/* Reads and ignores PDUs until the initiator hangs up (or HT_DRAIN_S pass). */
static void ht_drain(struct ht_conn *c)
{
	struct timeval tv = { .tv_sec = HT_DRAIN_S };
	uint8_t sink[4096];

	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	while (read(c->fd, sink, sizeof sink) > 0)
		;
}

static int ht_send_data(struct ht_conn *c, uint32_t itt, const uint8_t *buf, uint32_t len)
{
	uint32_t datasn = 0;

	for (uint32_t done = 0; done < len;) {
		union iscsi_hdr h = { 0 };
		uint32_t n = len - done < HT_SEGMENT ? len - done : HT_SEGMENT;
		bool last = done + n == len;

		h.data.opcode = ISCSI_OP_DATA_IN;
		h.data.flags = last ? ISCSI_FLAG_FINAL | ISCSI_FLAG_DATA_STATUS : 0;
		h.data.status = 0;
		h.data.itt = itt;
		h.data.ttt = ISCSI_RSVD_TAG;
		h.data.datasn = htonl(datasn++);
		h.data.offset = htonl(done);
		if (ht_send(c, &h, buf + done, n, last) < 0)
			return -1;
		done += n;
	}
	return 0;
}

static int ht_send_status(struct ht_conn *c, uint32_t itt, uint8_t status, const uint8_t *sense,
			  uint32_t sense_len)
{
	union iscsi_hdr h = { 0 };
	uint8_t seg[2 + 32];

	h.rsp.opcode = ISCSI_OP_SCSI_RSP;
	h.rsp.flags = ISCSI_FLAG_FINAL;
	h.rsp.status = status;
	h.rsp.itt = itt;
	seg[0] = 0;
	seg[1] = (uint8_t)sense_len;
	memcpy(seg + 2, sense, sense_len);
	return ht_send(c, &h, seg, sense_len ? 2 + sense_len : 0, true);
}

static int ht_check_condition(struct ht_conn *c, uint32_t itt, uint8_t key, uint8_t asc)
{
	uint8_t sense[18] = { 0x70, 0, key, 0, 0, 0, 0, 10, 0, 0, 0, 0, asc, 0 };

	return ht_send_status(c, itt, 2, sense, sizeof sense);
}

/* Misbehaves on a read; 1 when the connection should be drained, -1 closed, 0 go on. */
static int ht_misbehave(struct ht_conn *c, uint32_t itt, uint32_t edtl)
{
	union iscsi_hdr h = { 0 };
	uint8_t junk[512] = { 0 };

	h.data.opcode = ISCSI_OP_DATA_IN;
	h.data.itt = itt;
	h.data.ttt = ISCSI_RSVD_TAG;
	switch (c->mode) {
	case MODE_GARBAGE: {
		uint8_t noise[65536];
		int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);

		if (fd < 0 || ht_read(fd, noise, sizeof noise) < 0)
			memset(noise, 0xa5, sizeof noise);
		if (fd >= 0)
			close(fd);
		return ht_write(c->fd, noise, sizeof noise) < 0 ? -1 : 1;
	}
	case MODE_BAD_OFFSET:
		h.data.offset = htonl(edtl);
		return ht_send(c, &h, junk, sizeof junk, false) < 0 ? -1 : 1;
	case MODE_UNKNOWN_ITT:
		h.data.itt = itt ^ htonl(0x80000000u);
		return ht_send(c, &h, junk, sizeof junk, false) < 0 ? -1 : 1;
	case MODE_DATASN_GAP:
		h.data.datasn = htonl(1);
		return ht_send(c, &h, junk, sizeof junk, false) < 0 ? -1 : 1;
	case MODE_HUGE_DLEN: {
		uint8_t zeros[65536] = { 0 };

		h.data.exp_cmdsn = htonl(c->exp_cmdsn);
		h.data.max_cmdsn = htonl(c->exp_cmdsn + HT_WINDOW - 1);
		iscsi_set_dlen(&h.bhs, 0xffffff);
		return ht_write(c->fd, h.bytes, ISCSI_BHS_LEN) < 0 ||
		       ht_write(c->fd, zeros, sizeof zeros) < 0 ? -1 : 1;
	}
	case MODE_SHORT_THEN_CLOSE:	/* half a header, then our side of the stream ends */
		iscsi_set_dlen(&h.bhs, 512);
		ht_write(c->fd, h.bytes, ISCSI_BHS_LEN / 2);
		shutdown(c->fd, SHUT_WR);
		return 1;
	case MODE_LOGOUT:
		h = (union iscsi_hdr){ 0 };
		h.bhs.opcode = ISCSI_OP_ASYNC;
		h.bhs.flags = ISCSI_FLAG_FINAL;
		h.bhs.itt = ISCSI_RSVD_TAG;
		h.bytes[36] = 1;	/* AsyncEvent: target requests logout */
		h.bytes[40] = 0;	/* Parameter3: logout within 0 s */
		return ht_send(c, &h, NULL, 0, true) < 0 ? -1 : 1;
	case MODE_REJECT:
		h = (union iscsi_hdr){ 0 };
		h.reject.opcode = ISCSI_OP_REJECT;
		h.reject.flags = ISCSI_FLAG_FINAL;
		h.reject.reason = ISCSI_REJECT_PROTOCOL_ERROR;
		h.reject.tag = ISCSI_RSVD_TAG;
		return ht_send(c, &h, c->req.bytes, ISCSI_BHS_LEN, true) < 0 ? -1 : 0;
	case MODE_CHECK_CONDITION:
		return ht_check_condition(c, itt, 0x03, 0x11) < 0 ? -1 : 0;
	case MODE_R2T:
		h = (union iscsi_hdr){ 0 };
		h.r2t.opcode = ISCSI_OP_R2T;
		h.r2t.flags = ISCSI_FLAG_FINAL;
		h.r2t.itt = itt;
		h.r2t.ttt = htonl(1);
		h.r2t.length = htonl(512);
		return ht_send(c, &h, NULL, 0, false) < 0 ? -1 : 1;
	case MODE_STALL:
		return 0;	/* the read is simply never answered */
	case MODE_GOOD:
	case MODE_WRONG_CAPACITY:
	case MODE_CORRUPT:
		break;
	}
	return 0;
}

/* Serves a READ(10/16) from the image: zeros past its end. */
static int ht_read_image(struct ht_conn *c, uint32_t itt, uint64_t lba, uint32_t blocks,
			 uint32_t edtl)
{
	uint64_t off = lba * HT_BLOCK, len = (uint64_t)blocks * HT_BLOCK;
	uint8_t *buf;
	int rc;

	if (len != edtl || len > (64u << 20) || lba > c->capacity / HT_BLOCK ||
	    blocks > c->capacity / HT_BLOCK - lba)
		return ht_check_condition(c, itt, 0x05, 0x21);
	if (len == 0)
		return ht_send_status(c, itt, 0, NULL, 0);
	buf = calloc(1, len);
	if (!buf)
		return -1;
	if (pread(c->image_fd, buf, len, (off_t)off) < 0) {
		free(buf);
		return -1;
	}
	if (c->mode == MODE_CORRUPT)
		for (uint64_t i = 0; i < len; i += 4096)
			buf[i] ^= 0x5a;
	rc = ht_send_data(c, itt, buf, (uint32_t)len);
	free(buf);
	return rc;
}

static uint64_t get_be(const uint8_t *p, int n)
{
	uint64_t v = 0;

	for (int i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

static void put_be(uint8_t *p, uint64_t v, int n)
{
	for (int i = n - 1; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

/* One SCSI command; 1 when the connection should be drained, -1 closed. */
static int ht_scsi(struct ht_conn *c)
{
	const struct iscsi_scsi_cmd *cmd = &c->req.cmd;
	uint32_t itt = cmd->itt, edtl = ntohl(cmd->edtl);
	const uint8_t *cdb = cmd->cdb;
	uint64_t blocks = c->capacity / HT_BLOCK;
	uint8_t cap[32] = { 0 };
	int rc;

	switch (cdb[0]) {
	case 0x9e:	/* READ CAPACITY(16) */
		put_be(cap, blocks - 1, 8);
		put_be(cap + 8, HT_BLOCK, 4);
		return ht_send_data(c, itt, cap, edtl < 32 ? edtl : 32);
	case 0x25:	/* READ CAPACITY(10) */
		put_be(cap, blocks - 1 > 0xffffffffu ? 0xffffffffu : blocks - 1, 4);
		put_be(cap + 4, HT_BLOCK, 4);
		return ht_send_data(c, itt, cap, edtl < 8 ? edtl : 8);
	case 0x88:	/* READ(16) */
	case 0x28:	/* READ(10) */
		if (!c->misbehaved && c->mode != MODE_GOOD && c->mode != MODE_WRONG_CAPACITY &&
		    c->mode != MODE_CORRUPT) {
			c->misbehaved = true;
			ht_log("session %u: misbehaving on a read of %u bytes", c->conn_no, edtl);
			return ht_misbehave(c, itt, edtl);
		}
		if (cdb[0] == 0x88)
			rc = ht_read_image(c, itt, get_be(cdb + 2, 8), (uint32_t)get_be(cdb + 10, 4),
					   edtl);
		else
			rc = ht_read_image(c, itt, get_be(cdb + 2, 4), (uint32_t)get_be(cdb + 7, 2),
					   edtl);
		if (rc == 0 && c->mode == MODE_WRONG_CAPACITY && c->conn_no == 1) {
			ht_log("session 1: one read served, closing");
			shutdown(c->fd, SHUT_WR);
			return 1;
		}
		return rc;
	case 0x00:	/* TEST UNIT READY */
		return ht_send_status(c, itt, 0, NULL, 0);
	default:
		return ht_check_condition(c, itt, 0x05, 0x20);
	}
}

static void ht_serve(struct ht_conn *c, uint64_t image_size)
{
	static unsigned sessions;

	/* Sessions, not connections, are counted: readiness probes connect and hang up. */
	if (ht_login(c) < 0)
		return;
	c->conn_no = ++sessions;
	c->capacity = image_size / HT_BLOCK * HT_BLOCK;
	if (c->mode == MODE_WRONG_CAPACITY && c->conn_no > 1)
		c->capacity += 1u << 20;
	ht_log("session %u logged in", c->conn_no);
	for (;;) {
		const struct iscsi_bhs *b = &c->req.bhs;
		union iscsi_hdr h = { 0 };
		int rc = 0;

		if (ht_recv(c) < 0)
			return;
		if (!(b->opcode & ISCSI_OP_IMMEDIATE) &&
		    (b->opcode & ISCSI_OP_MASK) != ISCSI_OP_DATA_OUT &&
		    !((b->opcode & ISCSI_OP_MASK) == ISCSI_OP_NOP_OUT && b->itt == ISCSI_RSVD_TAG))
			c->exp_cmdsn = ntohl(c->req.cmd.cmdsn) + 1;
		switch (b->opcode & ISCSI_OP_MASK) {
		case ISCSI_OP_SCSI_CMD:
			rc = ht_scsi(c);
			break;
		case ISCSI_OP_NOP_OUT:
			if (b->itt == ISCSI_RSVD_TAG)
				break;
			h.nop.opcode = ISCSI_OP_NOP_IN;
			h.nop.flags = ISCSI_FLAG_FINAL;
			h.nop.itt = b->itt;
			h.nop.ttt = ISCSI_RSVD_TAG;
			rc = ht_send(c, &h, NULL, 0, true);
			break;
		case ISCSI_OP_LOGOUT_REQ:
			h.logout.opcode = ISCSI_OP_LOGOUT_RSP;
			h.logout.flags = ISCSI_FLAG_FINAL;
			h.logout.itt = b->itt;
			ht_send(c, &h, NULL, 0, true);
			return;
		default:
			break;
		}
		if (rc < 0)
			return;
		if (rc > 0) {
			ht_drain(c);
			return;
		}
	}
}

int main(int argc, char **argv)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	static struct ht_conn c;
	socklen_t slen = sizeof sin;
	uint64_t port;
	struct stat st;
	int lfd, one = 1;
	size_t i;

	if (argc != 4 || parse_u64(argv[1], 0, 65535, &port) < 0) {
		fputs("usage: hostile_target PORT MODE IMAGE\n\nListens on 127.0.0.1:PORT (0: any "
		      "free port, printed on stdout), serves IMAGE as any IQN, LUN 0,\none "
		      "connection at a time, and misbehaves on the first read of a session:\n",
		      stderr);
		for (i = 0; i < sizeof ht_modes / sizeof ht_modes[0]; i++)
			fprintf(stderr, "  %-17s %s\n", ht_modes[i].name, ht_modes[i].what);
		return 2;
	}
	for (i = 0; i < sizeof ht_modes / sizeof ht_modes[0]; i++)
		if (strcmp(argv[2], ht_modes[i].name) == 0)
			break;
	if (i == sizeof ht_modes / sizeof ht_modes[0]) {
		ht_log("unknown mode %s", argv[2]);
		return 2;
	}
	c.mode = ht_modes[i].mode;
	c.image_fd = open(argv[3], O_RDONLY | O_CLOEXEC);
	if (c.image_fd < 0 || fstat(c.image_fd, &st) < 0 || st.st_size < HT_BLOCK) {
		ht_log("%s: cannot open, or smaller than a block", argv[3]);
		return 1;
	}
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin.sin_port = htons((uint16_t)port);
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sin, sizeof sin) < 0 || listen(lfd, 8) < 0 ||
	    getsockname(lfd, (struct sockaddr *)&sin, &slen) < 0) {
		ht_log("cannot listen on 127.0.0.1:%llu: %s", (unsigned long long)port,
		       strerror(errno));
		return 1;
	}
	printf("%u\n", ntohs(sin.sin_port));
	fflush(stdout);
	ht_log("listening on 127.0.0.1:%u, mode %s", ntohs(sin.sin_port), argv[2]);
	for (;;) {
		int fd = accept(lfd, NULL, NULL);

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			ht_log("accept: %s", strerror(errno));
			return 1;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		c.fd = fd;
		c.conn_no = 0;
		c.misbehaved = false;
		c.statsn = 1;
		ht_serve(&c, (uint64_t)st.st_size);
		close(fd);
		if (c.conn_no)
			ht_log("session %u closed", c.conn_no);
	}
}
