/* libFuzzer harness: TFTP request parsing, option negotiation and ACK numbering (pxe/tftp.c). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pxe/tftp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t oack[TFTP_REQUEST_MAX];
	struct tftp_request req;
	struct tftp_params p;
	uint64_t abs, acked, sent;
	uint8_t *pkt;

	if (size > 4 * TFTP_REQUEST_MAX)
		return 0;
	pkt = malloc(size ? size : 1);
	if (!pkt)
		return 0;
	memcpy(pkt, data, size);
	if (tftp_parse_request(pkt, size, &req) == 0) {
		size_t n = tftp_negotiate(&req, size * 1000003ull, &p, oack, sizeof oack);

		if (n > sizeof oack || strlen(req.filename) > TFTP_NAME_MAX)
			abort();
		if (p.blksize < TFTP_BLKSIZE_MIN || p.blksize > TFTP_BLKSIZE_MAX ||
		    p.windowsize < 1 || p.windowsize > TFTP_WINDOW_MAX ||
		    p.timeout_ms < 1000 || p.timeout_ms > 255000)
			abort();
		if (n && (oack[0] != 0 || oack[1] != TFTP_OACK || oack[n - 1] != '\0'))
			abort();
	} else if (!req.error || req.error_code < 0) {
		abort();
	}
	/* ACK numbering: any window position and any 16-bit number. */
	if (size >= 12) {
		acked = (uint64_t)data[0] << 24 | (uint64_t)data[1] << 16 | (uint64_t)data[2] << 8 |
			data[3];
		sent = acked + data[4] % (TFTP_WINDOW_MAX + 1);
		if (tftp_ack_block(acked, sent, (uint16_t)(data[5] << 8 | data[6]), &abs) == 0 &&
		    (abs <= acked || abs > sent || tftp_wire_block(abs) != (data[5] << 8 | data[6])))
			abort();
	}
	free(pkt);
	return 0;
}
