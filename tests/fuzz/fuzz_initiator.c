/* libFuzzer harness: the initiator's whole receive path (PDU state machine, login responses,
 * READ CAPACITY, Data-In placement, SCSI Response, NOP-In, Reject, Async) fed through a
 * socketpair as the target's side of a session. */
#include "iscsi/initiator.c"	/* the statics under test; initiator.o is not linked */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_READS 3
#define FUZZ_READ_LEN 8192

struct fuzz_read {
	int calls;
	uint8_t buf[FUZZ_READ_LEN];
};

static struct fuzz_read fuzz_reads[FUZZ_READS];
static bool fuzz_ready;

static void fuzz_done(void *arg, int err)
{
	struct fuzz_read *r = arg;

	if (++r->calls != 1)
		abort();	/* done is called exactly once */
}

/* Frames one target PDU as the client will expect it (digests once in full feature). */
static size_t fuzz_pdu(uint8_t *out, union iscsi_hdr *h, const void *seg, uint32_t len,
		       bool hd, bool dd)
{
	uint32_t pad = iscsi_pad(len), d;
	size_t n = ISCSI_BHS_LEN;

	iscsi_set_dlen(&h->bhs, len);
	memcpy(out, h->bytes, ISCSI_BHS_LEN);
	if (hd) {
		d = crc32c(0, out, ISCSI_BHS_LEN);
		memcpy(out + n, &d, 4);
		n += 4;
	}
	if (len) {
		memcpy(out + n, seg, len);
		memset(out + n + len, 0, pad);
		if (dd) {
			d = crc32c(0, out + n, len + pad);
			memcpy(out + n + len + pad, &d, 4);
			n += 4;
		}
		n += len + pad;
	}
	return n;
}

/* The target's answers that take the client up: security, operational, READ CAPACITY(16).
 * The client's ITTs are deterministic: 1 and 2 for the logins, 3 for READ CAPACITY. */
static size_t fuzz_prefix(uint8_t *out, const struct iscsi_client *cl, bool hd, bool dd)
{
	static const char sec[] = "AuthMethod=None\0TargetPortalGroupTag=1";
	char op[512];
	uint8_t cap[32] = { 0 };
	union iscsi_hdr h;
	size_t n = 0;
	int len;

	memset(&h, 0, sizeof h);
	h.login.opcode = ISCSI_OP_LOGIN_RSP;
	h.login.flags = ISCSI_FLAG_LOGIN_TRANSIT | ISCSI_STAGE_OPERATIONAL;
	memcpy(h.login.isid, cl->isid, 6);
	h.login.itt = htonl(1);
	h.login.sn1 = htonl(1);
	h.login.sn2 = htonl(1);
	h.login.max_cmdsn = htonl(64);
	n += fuzz_pdu(out + n, &h, sec, sizeof sec, false, false);
	len = snprintf(op, sizeof op, "HeaderDigest=%s%cDataDigest=%s%cMaxRecvDataSegmentLength=8192%c"
		       "MaxBurstLength=262144%cErrorRecoveryLevel=0%cX-Vendor=1",
		       hd ? "CRC32C" : "None", 0, dd ? "CRC32C" : "None", 0, 0, 0, 0);
	h.login.flags = ISCSI_FLAG_LOGIN_TRANSIT | ISCSI_STAGE_OPERATIONAL << 2 |
			ISCSI_STAGE_FULL_FEATURE;
	h.login.itt = htonl(2);
	h.login.tsih = htons(7);
	h.login.sn1 = htonl(2);
	n += fuzz_pdu(out + n, &h, op, (uint32_t)len + 1, false, false);
	memset(&h, 0, sizeof h);
	cap[7] = 0x7f;		/* 128 blocks... */
	cap[6] = 0x01;		/* ...plus 256: 384 blocks of 512 bytes */
	cap[10] = 0x02;
	h.data.opcode = ISCSI_OP_DATA_IN;
	h.data.flags = ISCSI_FLAG_FINAL | ISCSI_FLAG_DATA_STATUS;
	h.data.itt = htonl(3);
	h.data.statsn = htonl(3);
	h.data.exp_cmdsn = htonl(2);
	h.data.max_cmdsn = htonl(64);
	n += fuzz_pdu(out + n, &h, cap, sizeof cap, hd, dd);
	return n;
}

static void fuzz_drain(int fd)
{
	uint8_t sink[65536];

	while (read(fd, sink, sizeof sink) > 0)
		;
}

/* Runs the client's socket handler and its deferred callbacks once. */
static void fuzz_step(struct iscsi_client *cl)
{
	if (cl->watch.fd >= 0)
		client_event(cl, EPOLLIN | EPOLLOUT);
	ev_undefer(&cl->defer);
	client_flush(cl);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t prefix[2048];
	struct iscsi_client_config cfg = { .read_timeout_ms = 1000, .max_inflight = 2 };
	struct iscsi_client *cl;
	size_t off = 0, plen;
	uint8_t flags;
	int sv[2];

	if (!fuzz_ready) {
		log_set_quiet(!getenv("FUZZ_VERBOSE"));
		if (ev_init() < 0)
			abort();
		fuzz_ready = true;
	}
	if (size < 1 || size > 1 << 20)
		return 0;
	flags = data[0];
	data++;
	size--;
	if (iscsi_url_parse("iscsi://127.0.0.1:1/iqn.2026-11.org.virtman:fuzz/0", &cfg.url) < 0)
		abort();
	cfg.header_digest = flags & 2;
	cfg.data_digest = flags & 4;
	cl = client_alloc(&cfg, NULL);
	if (!cl || socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
		abort();
	memcpy(cl->isid, "\x80\x00\x00\x00\x00\x01", 6);	/* random in real life */
	cl->watch.fd = sv[0];
	cl->phase = PH_TCP;
	if (ev_add(&cl->watch, EPOLLOUT) < 0)
		abort();
	session_login_start(cl);
	memset(fuzz_reads, 0, sizeof fuzz_reads);
	if (flags & 1) {	/* mutations start in full feature phase with reads pending */
		plen = fuzz_prefix(prefix, cl, flags & 2, flags & 4);
		if (write(sv[1], prefix, plen) != (ssize_t)plen)
			abort();
		for (int i = 0; i < 8 && cl->state != ICLIENT_UP && cl->watch.fd >= 0; i++) {
			fuzz_drain(sv[1]);
			fuzz_step(cl);
		}
		for (int i = 0; i < FUZZ_READS && cl->state == ICLIENT_UP; i++)
			iscsi_client_read(cl, (uint64_t)i * 512, FUZZ_READ_LEN, fuzz_reads[i].buf,
					  fuzz_done, &fuzz_reads[i]);
		if (flags & 8)
			iscsi_client_cancel(cl, &fuzz_reads[1]);
	}
	for (int round = 0; round < 10000 && cl->watch.fd >= 0; round++) {
		if (off < size) {
			ssize_t w = write(sv[1], data + off, size - off);

			if (w > 0)
				off += (size_t)w;
		} else if (sv[1] >= 0) {
			close(sv[1]);	/* the target vanishes, maybe mid-PDU */
			sv[1] = -1;
		}
		if (sv[1] >= 0)
			fuzz_drain(sv[1]);
		if (round == 2 && (flags & 16))
			iscsi_client_cancel(cl, &fuzz_reads[0]);
		fuzz_step(cl);
		if (sv[1] < 0) {
			fuzz_step(cl);	/* sees the end of the stream */
			break;
		}
	}
	if ((flags & 32) && cl->phase == PH_FULL) {
		session_watchdog(cl);	/* as if time passed */
		client_flush(cl);
	}
	iscsi_client_free(cl);
	if (sv[1] >= 0)
		close(sv[1]);
	for (int i = 0; i < FUZZ_READS; i++)
		if (fuzz_reads[i].calls > 1)
			abort();
	return 0;
}
