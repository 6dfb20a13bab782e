/* DHCP (RFC 2131/2132) and proxyDHCP (PXE 2.1, RFC 4578) for network boot: the wire codec,
 * the boot-file choice and the reply builder, all pure so tests and fuzzers need no socket. */
#ifndef VIRTMAN_PXE_DHCP_H
#define VIRTMAN_PXE_DHCP_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>

#include "pxe/lease.h"

#define DHCP_SERVER_PORT 67
#define DHCP_CLIENT_PORT 68
#define DHCP_PXE_PORT 4011		/* PXE boot server / ProxyDHCP requests */
#define DHCP_PACKET_MAX 1500		/* the largest request we read */
#define DHCP_REPLY_MAX 548		/* 576-byte IP datagram: every client must accept it */
#define DHCP_REPLY_MIN 300		/* BOOTP minimum; some relays drop shorter replies */
#define DHCP_FILE_MAX 128		/* the `file` header field, NUL included */
#define DHCP_DNS_MAX 4
#define DHCP_HTTP_BASE_MAX 64		/* "http://255.255.255.255:65535" and room to spare */

#define BOOTREQUEST 1
#define BOOTREPLY 2

/* Message types (option 53). */
enum dhcp_type {
	DHCPDISCOVER = 1,
	DHCPOFFER = 2,
	DHCPREQUEST = 3,
	DHCPDECLINE = 4,
	DHCPACK = 5,
	DHCPNAK = 6,
	DHCPRELEASE = 7,
	DHCPINFORM = 8,
};

/* Option codes we read or write. */
enum dhcp_option {
	DHCP_OPT_PAD = 0,
	DHCP_OPT_SUBNET_MASK = 1,
	DHCP_OPT_ROUTER = 3,
	DHCP_OPT_DNS = 6,
	DHCP_OPT_VENDOR = 43,		/* PXE vendor options, encapsulated */
	DHCP_OPT_REQUESTED_IP = 50,
	DHCP_OPT_LEASE_TIME = 51,
	DHCP_OPT_OVERLOAD = 52,
	DHCP_OPT_MESSAGE_TYPE = 53,
	DHCP_OPT_SERVER_ID = 54,
	DHCP_OPT_MESSAGE = 56,
	DHCP_OPT_MAX_SIZE = 57,
	DHCP_OPT_RENEWAL_TIME = 58,
	DHCP_OPT_REBINDING_TIME = 59,
	DHCP_OPT_VENDOR_CLASS = 60,
	DHCP_OPT_BOOTFILE = 67,
	DHCP_OPT_USER_CLASS = 77,
	DHCP_OPT_CLIENT_ARCH = 93,
	DHCP_OPT_CLIENT_UUID = 97,
	DHCP_OPT_IPXE = 175,		/* iPXE's encapsulated options: the client runs iPXE */
	DHCP_OPT_END = 255,
};

/* PXE vendor sub-option (inside option 43) and its value that makes the client boot the
 * file named in the offer, with no boot server discovery or menu (PXE 2.1 §2.4.2). */
#define PXE_DISCOVERY_CONTROL 6
#define PXE_DISCOVERY_USE_BOOTFILE 8

/* The fixed BOOTP header and the magic cookie, as on the wire (network byte order). */
struct dhcp_wire {
	uint8_t op, htype, hlen, hops;
	uint32_t xid;
	uint16_t secs, flags;
	uint32_t ciaddr, yiaddr, siaddr, giaddr;
	uint8_t chaddr[16];
	char sname[64];
	char file[DHCP_FILE_MAX];
	uint8_t cookie[4];
} __attribute__((packed));

_Static_assert(sizeof(struct dhcp_wire) == 240, "BOOTP header and cookie are 240 bytes");

#define DHCP_FLAG_BROADCAST 0x8000

/* What a client told us, with every field already bounds-checked. Addresses stay in network
 * byte order (struct in_addr), as the sockets API wants them. */
struct dhcp_msg {
	uint8_t op, htype, hlen;
	uint32_t xid;			/* network byte order, echoed as is */
	uint16_t flags;			/* host order */
	struct in_addr ciaddr, yiaddr, siaddr, giaddr;
	uint8_t chaddr[16];
	char file[DHCP_FILE_MAX];	/* NUL-terminated copy (replies; empty when overloaded) */
	int type;			/* option 53, 0 when absent (plain BOOTP) */
	int has_requested, has_server_id;
	struct in_addr requested, server_id;
	int arch;			/* first option-93 entry, -1 when absent */
	uint8_t vendor_class[255];	/* option 60 */
	size_t vendor_class_len;
	int user_class_ipxe;		/* option 77 names "iPXE" */
	int has_ipxe_options;		/* option 175 present */
	uint8_t uuid[17];		/* option 97, echoed to PXE clients */
	size_t uuid_len;
	uint8_t overload;		/* option 52 */
	/* Read back from replies (tests, tools). */
	uint32_t lease_time;		/* option 51, 0 when absent */
	struct in_addr netmask;		/* option 1 */
	int has_vendor_options;		/* option 43 */
	uint8_t discovery_control;	/* PXE sub-option 6 inside option 43 */
	const char *error;		/* why dhcp_parse refused the packet */
};

enum dhcp_mode {
	DHCP_OFF,
	DHCP_FULL,	/* we hand out addresses from our pool */
	DHCP_PROXY,	/* another server hands out addresses; we answer PXE clients only */
};

struct dhcp_config {
	enum dhcp_mode mode;
	struct in_addr server;		/* our address on the interface: server id, next-server */
	struct in_addr netmask;		/* of the interface's subnet */
	struct in_addr router;		/* option 3; INADDR_ANY: not sent */
	struct in_addr dns[DHCP_DNS_MAX];	/* option 6 */
	int ndns;
	uint32_t lease_secs;
	char http_base[DHCP_HTTP_BASE_MAX];	/* "http://ADDR:PORT", no trailing slash */
	const char *bios_file;		/* TFTP name for arch 0, e.g. "undionly.kpxe"; NULL: none */
	const char *efi_file;		/* TFTP name for arch 7 and 9, e.g. "snponly.efi" */
	const char *http_boot_path;	/* HTTP path for arch 16, e.g. "/ipxe/ipxe.efi" */
};

/* How the client is booting, from options 60, 77, 93 and 175. */
enum dhcp_client_kind {
	DHCP_CLIENT_PLAIN,	/* no PXE: an address only */
	DHCP_CLIENT_PXE,	/* a PXE ROM: wants an iPXE binary over TFTP */
	DHCP_CLIENT_HTTP,	/* UEFI HTTP boot: wants an iPXE binary over HTTP */
	DHCP_CLIENT_IPXE,	/* already iPXE: wants its boot script */
};

/* Where a reply goes (RFC 2131 §4.1). */
enum dhcp_dest {
	DHCP_DEST_BROADCAST,	/* 255.255.255.255:68 on the interface */
	DHCP_DEST_CIADDR,	/* unicast to ciaddr:68 */
	DHCP_DEST_RELAY,	/* unicast to giaddr:67 */
	DHCP_DEST_SOURCE,	/* back to the request's source address and port (port 4011) */
};

/* The decision taken for one request, for the caller's socket and log. */
struct dhcp_outcome {
	int type;		/* message type sent, 0 when nothing is sent */
	enum dhcp_dest dest;
	struct in_addr dest_addr;	/* ciaddr or giaddr for those destinations */
	struct in_addr yiaddr;
	enum dhcp_client_kind kind;
	char bootfile[DHCP_FILE_MAX];	/* "" when none */
	const char *why;	/* a reason for no reply or a NAK, for the log */
	int leases_changed;	/* the lease table must be saved */
};

/* Parses one packet of len bytes; 0, or -EBADMSG with m->error saying why. Every option is
 * bounds-checked; an option-overload (52) reads options from `file`/`sname` too. */
int dhcp_parse(const uint8_t *pkt, size_t len, struct dhcp_msg *m);

/* Finds option code in a packet (options area, then overloaded fields); its length or -1. */
int dhcp_option_find(const uint8_t *pkt, size_t len, uint8_t code, const uint8_t **value);

/* Classifies the client from its options. */
enum dhcp_client_kind dhcp_client_kind(const struct dhcp_msg *m);

/* Writes the boot file for a client into out (a TFTP name or an HTTP URL); 0, or -ENOENT
 * when we have nothing for its architecture. */
int dhcp_bootfile(const struct dhcp_config *cfg, const struct dhcp_msg *m, char *out,
		  size_t len);

/* Builds the reply to request m received on port (67 or 4011), updating leases in full
 * mode; the reply's length, or 0 when nothing is to be sent (out->why says why). */
size_t dhcp_reply(const struct dhcp_config *cfg, struct lease_table *leases,
		  const struct dhcp_msg *m, int port, int64_t now, uint8_t *reply, size_t cap,
		  struct dhcp_outcome *out);

/* The server on the event loop: the sockets of one interface and the lease file. */
struct dhcp_server_config {
	struct dhcp_config dhcp;
	const char *iface;		/* replies and requests only on this interface */
	struct in_addr pool_first, pool_last;	/* full mode */
	const char *lease_file;		/* full mode: leases kept here across restarts */
};

/* Loads the leases, opens port 67 (and 4011 in proxy mode) on cfg->iface and serves; 0 or
 * negative errno with *what naming the step that failed. cfg must outlive the loop. */
int dhcp_server_start(const struct dhcp_server_config *cfg, const char **what);

#endif
