/* libFuzzer harness: the target's whole receive path (PDU state machine, login,
 * full feature phase, SCSI) fed through a socketpair, as a peer would. */
#include <sys/mman.h>

#include "iscsi/target.c"	/* the statics under test; target.o is not linked */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_IQN "iqn.2026-11.org.virtman:fuzz"

static struct target_config fuzz_cfg;
static struct target *fuzz_tgt;

/* A valid login straight to full feature phase, prepended when the first input byte is
 * odd, so mutations spend their time past the login. */
static size_t fuzz_login_prefix(uint8_t *out, uint8_t flags)
{
	static const char keys[] = "InitiatorName=iqn.2026-11.org.virtman:f\0"
				   "TargetName=" FUZZ_IQN "\0SessionType=Normal\0"
				   "HeaderDigest=None\0DataDigest=None\0";
	union iscsi_hdr h = { 0 };
	uint32_t len = sizeof keys - 1, pad = iscsi_pad(len);

	h.login.opcode = ISCSI_OP_LOGIN_REQ | ISCSI_OP_IMMEDIATE;
	h.login.flags = ISCSI_FLAG_LOGIN_TRANSIT | (ISCSI_STAGE_OPERATIONAL << 2) |
			ISCSI_STAGE_FULL_FEATURE;
	h.login.isid[0] = 0x80;
	h.login.isid[5] = flags;
	iscsi_set_dlen(&h.bhs, len);
	memcpy(out, h.bytes, ISCSI_BHS_LEN);
	memcpy(out + ISCSI_BHS_LEN, keys, len);
	memset(out + ISCSI_BHS_LEN + len, 0, pad);
	return ISCSI_BHS_LEN + len + pad;
}

static void fuzz_init(void)
{
	uint8_t block[4096];
	int fd = memfd_create("fuzz-image", 0);

	for (size_t i = 0; i < sizeof block; i++)
		block[i] = (uint8_t)(i * 7);
	for (int i = 0; i < 64; i++)
		if (write(fd, block, sizeof block) != (ssize_t)sizeof block)
			abort();
	if (write(fd, block, 300) != 300)	/* a partial last block */
		abort();
	log_set_quiet(1);
	if (ev_init() < 0)
		abort();
	fuzz_cfg.iqn = FUZZ_IQN;
	fuzz_cfg.image_fd = fd;
	fuzz_cfg.image_size = 64 * sizeof block + 300;
	target_disk_init(&fuzz_cfg.disk, FUZZ_IQN, fuzz_cfg.image_size);
	fuzz_tgt = calloc(1, sizeof *fuzz_tgt);
	fuzz_tgt->cfg = &fuzz_cfg;
	fuzz_tgt->next_tsih = 1;
}

/* Reads and discards what the target sent, so it never stops for a full socket. */
static void fuzz_drain(int fd)
{
	uint8_t sink[65536];

	while (read(fd, sink, sizeof sink) > 0)
		;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t prefix[512];
	size_t plen = 0, off = 0;
	struct conn *c;
	int sv[2];

	if (!fuzz_tgt)
		fuzz_init();
	if (size < 1 || size > 1 << 20)
		return 0;
	if (data[0] & 1)
		plen = fuzz_login_prefix(prefix, data[0]);
	data++;
	size--;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
		abort();
	c = conn_new(fuzz_tgt, sv[0], "fuzz");
	if (!c)
		abort();
	if (plen && write(sv[1], prefix, plen) != (ssize_t)plen)
		abort();
	for (int round = 0; round < 10000; round++) {
		if (off < size) {
			ssize_t w = write(sv[1], data + off, size - off);

			if (w > 0)
				off += (size_t)w;
		} else if (sv[1] >= 0) {
			close(sv[1]);	/* the peer vanishes, maybe mid-PDU */
			sv[1] = -1;
		}
		if (sv[1] >= 0)
			fuzz_drain(sv[1]);
		/* conn_event frees the connection once it is dead. */
		int dead_next = c->dead || (sv[1] < 0 && off >= size && round > 0);

		conn_event(c, EPOLLIN | EPOLLOUT);
		if (!fuzz_tgt->conns)
			break;
		if (dead_next && fuzz_tgt->conns) {
			conn_destroy(c);
			break;
		}
	}
	if (fuzz_tgt->conns)
		conn_destroy(fuzz_tgt->conns);
	if (sv[1] >= 0)
		close(sv[1]);
	return 0;
}
