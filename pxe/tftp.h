/* Read-only TFTP server (RFC 1350) with option negotiation (RFC 2347), blksize (2348),
 * timeout and tsize (2349) and windowsize (7440), for the iPXE binaries. */
#ifndef VIRTMAN_PXE_TFTP_H
#define VIRTMAN_PXE_TFTP_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>

#define TFTP_PORT 69
#define TFTP_REQUEST_MAX 1024		/* a longer request is refused */
#define TFTP_NAME_MAX 255		/* file name length */
#define TFTP_OPTIONS_MAX 16		/* option pairs read from one request */
#define TFTP_BLKSIZE_DEFAULT 512
#define TFTP_BLKSIZE_MIN 8
#define TFTP_BLKSIZE_MAX 65464		/* RFC 2348: 65535 - 20 (IP) - 8 (UDP) - 4 (TFTP) */
#define TFTP_TIMEOUT_DEFAULT_MS 1000
#define TFTP_WINDOW_MAX 64		/* blocks in flight; clients may ask for more */
#define TFTP_RETRIES 6			/* timeouts in a row before a transfer is dropped */
#define TFTP_TRANSFERS_MAX 256
#define TFTP_MODE_MAX 16

enum tftp_opcode {
	TFTP_RRQ = 1,
	TFTP_WRQ = 2,
	TFTP_DATA = 3,
	TFTP_ACK = 4,
	TFTP_ERROR = 5,
	TFTP_OACK = 6,
};

enum tftp_error_code {
	TFTP_ENOTDEFINED = 0,
	TFTP_ENOTFOUND = 1,
	TFTP_EACCESS = 2,
	TFTP_EBADOP = 4,
	TFTP_EBADID = 5,
	TFTP_EOPTNEG = 8,
};

/* A read or write request, checked: every string NUL-terminated inside the packet. Options
 * hold the values the client asked for; absent or malformed ones are left out. */
struct tftp_request {
	int opcode;
	char filename[TFTP_NAME_MAX + 1];
	char mode[TFTP_MODE_MAX];
	int has_blksize, has_tsize, has_timeout, has_windowsize;
	uint32_t blksize, timeout, windowsize;
	uint64_t tsize;
	int error_code;		/* when parsing fails: the TFTP error to answer with */
	const char *error;
};

/* What a transfer runs with once negotiation is over. */
struct tftp_params {
	unsigned blksize;
	unsigned windowsize;
	unsigned timeout_ms;
	int oack;		/* an OACK was built: wait for ACK 0 before the first block */
};

struct tftp_config {
	struct in_addr addr;	/* listen on addr:port; transfers use addr and a fresh port */
	uint16_t port;		/* TFTP_PORT, or another for tests */
	const char *iface;	/* SO_BINDTODEVICE, or NULL */
	const char *root;	/* served directory */
};

/* Parses an RRQ or WRQ of len bytes; 0, or -EBADMSG with error_code and error set. */
int tftp_parse_request(const uint8_t *pkt, size_t len, struct tftp_request *req);

/* Chooses the transfer parameters for req and a file of file_size bytes, and writes the OACK
 * (when any option is accepted) to oack; the OACK's length, or 0 when there is none. */
size_t tftp_negotiate(const struct tftp_request *req, uint64_t file_size, struct tftp_params *p,
		      uint8_t *oack, size_t cap);

/* Writes an ERROR packet; its length. */
size_t tftp_build_error(uint8_t *buf, size_t cap, int code, const char *msg);

/* Blocks in a file of size bytes: the last is short, and empty when size is a multiple. */
uint64_t tftp_block_count(uint64_t size, unsigned blksize);

/* The 16-bit number block abs (counted from 1) has on the wire: it wraps from 65535 to 0. */
uint16_t tftp_wire_block(uint64_t abs);

/* Maps an ACK's 16-bit block number to the block it acknowledges among (acked, sent];
 * 0 and *abs set, or -1 when it acknowledges nothing new (a duplicate or stray ACK). */
int tftp_ack_block(uint64_t acked, uint64_t sent, uint16_t wire, uint64_t *abs);

/* Opens the listening socket and serves files from cfg->root; 0 or negative errno. */
int tftp_start(const struct tftp_config *cfg);

#endif
