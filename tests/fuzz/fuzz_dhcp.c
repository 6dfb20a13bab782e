/* libFuzzer harness: DHCP packet parsing and reply building in every mode (pxe/dhcp.c). */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pxe/dhcp.h"
#include "pxe/lease.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_config(struct dhcp_config *c, enum dhcp_mode mode)
{
	memset(c, 0, sizeof *c);
	c->mode = mode;
	inet_pton(AF_INET, "10.213.0.1", &c->server);
	inet_pton(AF_INET, "255.255.255.0", &c->netmask);
	inet_pton(AF_INET, "10.213.0.254", &c->router);
	inet_pton(AF_INET, "10.213.0.253", &c->dns[0]);
	c->ndns = 1;
	c->lease_secs = 3600;
	snprintf(c->http_base, sizeof c->http_base, "http://10.213.0.1:8080");
	c->bios_file = "undionly.kpxe";
	c->efi_file = "snponly.efi";
	c->http_boot_path = "/ipxe/ipxe.efi";
}

/* Every reply we build must be one our own parser accepts, within the size we promise. */
static void fuzz_check_reply(const uint8_t *reply, size_t len, const struct dhcp_outcome *out)
{
	struct dhcp_msg m;

	if (!len)
		return;
	if (len < DHCP_REPLY_MIN || len > DHCP_REPLY_MAX || !out->type)
		abort();
	if (dhcp_parse(reply, len, &m) < 0 || m.op != BOOTREPLY || m.type != out->type)
		abort();
	if (memchr(m.file, '\0', sizeof m.file) == NULL)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const enum dhcp_mode modes[] = { DHCP_FULL, DHCP_PROXY };
	static const int ports[] = { DHCP_SERVER_PORT, DHCP_PXE_PORT };
	uint8_t reply[DHCP_REPLY_MAX];
	struct dhcp_outcome out;
	struct dhcp_config c;
	struct lease_table t;
	struct in_addr first, last;
	struct dhcp_msg m;
	const uint8_t *v;
	uint8_t *pkt;

	if (size > DHCP_PACKET_MAX)
		return 0;
	pkt = malloc(size ? size : 1);	/* exactly the bytes received: ASan sees any overread */
	if (!pkt)
		return 0;
	memcpy(pkt, data, size);
	dhcp_option_find(pkt, size, DHCP_OPT_VENDOR_CLASS, &v);
	if (dhcp_parse(pkt, size, &m) == 0) {
		inet_pton(AF_INET, "10.213.0.1", &first);
		inet_pton(AF_INET, "10.213.0.8", &last);
		if (lease_table_init(&t, first, last) == 0) {
			lease_reserve(&t, first);
			for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++)
				for (size_t j = 0; j < sizeof ports / sizeof ports[0]; j++) {
					size_t n;

					fuzz_config(&c, modes[i]);
					n = dhcp_reply(&c, &t, &m, ports[j], 1700000000, reply,
						       sizeof reply, &out);
					fuzz_check_reply(reply, n, &out);
				}
			lease_table_free(&t);
		}
	}
	free(pkt);
	return 0;
}
