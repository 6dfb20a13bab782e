/* dhcp_probe: a scriptable DHCP/PXE client for the bats tests. It sends what a PXE ROM,
 * iPXE or UEFI HTTP boot would send and prints every answer as one "key=value ..." line.
 *
 *   dhcp_probe IFACE discover [--mac M] [--vendor S] [--arch N] [--user-class S]
 *                             [--ipxe] [--uuid] [--wait MS] [--request]
 *   dhcp_probe IFACE pxe-request --server A --ciaddr C [same client options]
 *   dhcp_probe IFACE garbage [--count N]
 *
 * discover prints one "offer ..." line per OFFER received within --wait (default 2000 ms);
 * --request then requests the first offer that carries an address and prints "ack ..." or
 * "nak ...". pxe-request sends a ProxyDHCP REQUEST to A:4011 from C:68 (C must be assigned
 * to IFACE) and prints the "ack ...". garbage sends malformed packets to port 67.
 * Exit status: 0 when something was received (or sent, for garbage), 1 when nothing, 2 usage. */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "lib/net.h"
#include "pxe/dhcp.h"
#include "pxe/lease.h"

struct probe {
	const char *iface;
	uint8_t mac[6];
	const char *vendor, *user_class;
	int arch;		/* -1: no option 93 */
	int ipxe;		/* option 175 */
	int uuid;		/* option 97 */
	int wait_ms;
	int request;
	struct in_addr server, ciaddr;
	int count;
	uint32_t xid;
};

static uint64_t probe_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int probe_socket(const char *iface, struct in_addr addr, uint16_t port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr = addr,
				   .sin_port = htons(port) };
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), one = 1;

	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_BROADCAST, &one, sizeof one) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, iface, (socklen_t)strlen(iface)) < 0 ||
	    bind(fd, (struct sockaddr *)&sin, sizeof sin) < 0) {
		perror("dhcp_probe: socket");
		exit(1);
	}
	return fd;
}

static void probe_opt(uint8_t *buf, size_t *len, uint8_t code, const void *v, size_t n)
{
	buf[(*len)++] = code;
	buf[(*len)++] = (uint8_t)n;
	memcpy(buf + *len, v, n);
	*len += n;
}

/* Builds a request of type with the client's identity options. */
static size_t probe_build(const struct probe *p, int type, uint8_t *buf, const struct in_addr *req_ip,
			  const struct in_addr *server_id, struct in_addr ciaddr)
{
	static const uint8_t cookie[4] = { 99, 130, 83, 99 };
	struct dhcp_wire *w = (struct dhcp_wire *)buf;
	uint8_t t = (uint8_t)type;
	size_t len = sizeof *w;

	memset(buf, 0, DHCP_PACKET_MAX);
	w->op = BOOTREQUEST;
	w->htype = 1;
	w->hlen = 6;
	w->xid = htonl(p->xid);
	/* Replies to an unconfigured client must be broadcast for a UDP socket to see them
	 * (iPXE asks for the same). */
	if (ciaddr.s_addr == INADDR_ANY)
		w->flags = htons(DHCP_FLAG_BROADCAST);
	w->ciaddr = ciaddr.s_addr;
	memcpy(w->chaddr, p->mac, 6);
	memcpy(w->cookie, cookie, 4);
	probe_opt(buf, &len, DHCP_OPT_MESSAGE_TYPE, &t, 1);
	if (req_ip)
		probe_opt(buf, &len, DHCP_OPT_REQUESTED_IP, req_ip, 4);
	if (server_id)
		probe_opt(buf, &len, DHCP_OPT_SERVER_ID, server_id, 4);
	if (p->vendor)
		probe_opt(buf, &len, DHCP_OPT_VENDOR_CLASS, p->vendor, strlen(p->vendor));
	if (p->user_class)
		probe_opt(buf, &len, DHCP_OPT_USER_CLASS, p->user_class, strlen(p->user_class));
	if (p->arch >= 0) {
		uint8_t a[2] = { (uint8_t)(p->arch >> 8), (uint8_t)p->arch };

		probe_opt(buf, &len, DHCP_OPT_CLIENT_ARCH, a, 2);
	}
	if (p->ipxe)
		probe_opt(buf, &len, DHCP_OPT_IPXE, "\x01\x01\x01", 3);
	if (p->uuid) {
		uint8_t u[17] = { 0, 0x11, 0x22, 0x33 };

		probe_opt(buf, &len, DHCP_OPT_CLIENT_UUID, u, sizeof u);
	}
	buf[len++] = DHCP_OPT_END;
	return len < DHCP_REPLY_MIN ? DHCP_REPLY_MIN : len;
}

static void probe_print(const char *what, const struct dhcp_msg *m, const uint8_t *pkt, size_t len)
{
	char server[INET_ADDRSTRLEN] = "", yi[INET_ADDRSTRLEN], si[INET_ADDRSTRLEN];
	char mask[INET_ADDRSTRLEN];
	const uint8_t *v;
	int n;

	if (m->has_server_id)
		inet_ntop(AF_INET, &m->server_id, server, sizeof server);
	inet_ntop(AF_INET, &m->yiaddr, yi, sizeof yi);
	inet_ntop(AF_INET, &m->siaddr, si, sizeof si);
	inet_ntop(AF_INET, &m->netmask, mask, sizeof mask);
	printf("%s server=%s yiaddr=%s siaddr=%s file=%s mask=%s lease=%u", what, server, yi, si,
	       m->file[0] ? m->file : "-", mask, m->lease_time);
	n = dhcp_option_find(pkt, len, DHCP_OPT_VENDOR_CLASS, &v);
	printf(" vendor=%.*s", n > 0 ? n : 1, n > 0 ? (const char *)v : "-");
	printf(" pxe_options=%d discovery_control=%d uuid=%zu\n", m->has_vendor_options,
	       m->discovery_control, m->uuid_len);
	fflush(stdout);
}

/* Waits until deadline for replies to our xid; prints each; returns the count. With want,
 * stops at the first reply of that type and copies it to *out. */
static int probe_collect(const struct probe *p, int fd, uint64_t deadline, int want,
			 struct dhcp_msg *out)
{
	uint8_t pkt[DHCP_PACKET_MAX];
	struct dhcp_msg m;
	int got = 0;

	for (;;) {
		uint64_t now = probe_now_ms();
		struct pollfd pfd = { .fd = fd, .events = POLLIN };

		if (now >= deadline)
			return got;
		if (poll(&pfd, 1, (int)(deadline - now)) <= 0)
			continue;
		ssize_t n = recv(fd, pkt, sizeof pkt, 0);

		if (n <= 0 || dhcp_parse(pkt, (size_t)n, &m) < 0 || m.op != BOOTREPLY ||
		    m.xid != htonl(p->xid) || memcmp(m.chaddr, p->mac, 6) != 0)
			continue;
		got++;
		probe_print(m.type == DHCPOFFER ? "offer" : m.type == DHCPACK ? "ack" :
			    m.type == DHCPNAK ? "nak" : "reply", &m, pkt, (size_t)n);
		if (want && (m.type == want || m.type == DHCPNAK)) {
			*out = m;
			return got;
		}
	}
}

static int probe_discover(struct probe *p)
{
	struct sockaddr_in bcast = { .sin_family = AF_INET, .sin_port = htons(DHCP_SERVER_PORT),
				     .sin_addr.s_addr = htonl(INADDR_BROADCAST) };
	struct in_addr any = { .s_addr = htonl(INADDR_ANY) };
	uint8_t pkt[DHCP_PACKET_MAX], raw[DHCP_PACKET_MAX];
	int fd = probe_socket(p->iface, any, DHCP_CLIENT_PORT), offers = 0;
	struct dhcp_msg m, chosen = { 0 };
	size_t len = probe_build(p, DHCPDISCOVER, pkt, NULL, NULL, any);
	uint64_t deadline = probe_now_ms() + (uint64_t)p->wait_ms;

	if (sendto(fd, pkt, len, 0, (struct sockaddr *)&bcast, sizeof bcast) < 0) {
		perror("dhcp_probe: sendto");
		return 1;
	}
	/* Collect every offer until the deadline, remembering the first with an address. */
	while (probe_now_ms() < deadline) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		uint64_t now = probe_now_ms();

		if (poll(&pfd, 1, (int)(deadline - now)) <= 0)
			continue;
		ssize_t n = recv(fd, raw, sizeof raw, 0);

		if (n > 0 && dhcp_parse(raw, (size_t)n, &m) < 0)
			fprintf(stderr, "dhcp_probe: unparsable reply (%zd bytes): %s\n", n, m.error);
		if (n <= 0 || dhcp_parse(raw, (size_t)n, &m) < 0 || m.op != BOOTREPLY ||
		    m.xid != htonl(p->xid) || m.type != DHCPOFFER)
			continue;
		offers++;
		probe_print("offer", &m, raw, (size_t)n);
		if (!chosen.type && m.yiaddr.s_addr)
			chosen = m;
	}
	if (!p->request)
		return offers ? 0 : 1;
	if (!chosen.type) {
		fprintf(stderr, "dhcp_probe: no offer with an address\n");
		return 1;
	}
	len = probe_build(p, DHCPREQUEST, pkt, &chosen.yiaddr, &chosen.server_id, any);
	if (sendto(fd, pkt, len, 0, (struct sockaddr *)&bcast, sizeof bcast) < 0)
		return 1;
	return probe_collect(p, fd, probe_now_ms() + (uint64_t)p->wait_ms, DHCPACK, &m) ? 0 : 1;
}

static int probe_pxe_request(struct probe *p)
{
	struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(DHCP_PXE_PORT),
				  .sin_addr = p->server };
	uint8_t pkt[DHCP_PACKET_MAX];
	int fd = probe_socket(p->iface, p->ciaddr, DHCP_CLIENT_PORT);
	size_t len = probe_build(p, DHCPREQUEST, pkt, NULL, NULL, p->ciaddr);
	struct dhcp_msg m;

	if (sendto(fd, pkt, len, 0, (struct sockaddr *)&to, sizeof to) < 0) {
		perror("dhcp_probe: sendto");
		return 1;
	}
	return probe_collect(p, fd, probe_now_ms() + (uint64_t)p->wait_ms, DHCPACK, &m) ? 0 : 1;
}

/* Malformed packets of every kind the parser must survive. */
static int probe_garbage(struct probe *p)
{
	struct sockaddr_in bcast = { .sin_family = AF_INET, .sin_port = htons(DHCP_SERVER_PORT),
				     .sin_addr.s_addr = htonl(INADDR_BROADCAST) };
	struct in_addr any = { .s_addr = htonl(INADDR_ANY) };
	uint8_t pkt[DHCP_PACKET_MAX];
	int fd = probe_socket(p->iface, any, DHCP_CLIENT_PORT), sent = 0;

	for (int i = 0; i < p->count; i++) {
		size_t len = probe_build(p, DHCPDISCOVER, pkt, NULL, NULL, any);
		uint8_t *opts = pkt + sizeof(struct dhcp_wire);

		switch (i % 6) {
		case 0:	/* truncated header */
			len = 1 + (size_t)(i % 200);
			break;
		case 1:	/* no magic cookie */
			((struct dhcp_wire *)pkt)->cookie[0] ^= 0xff;
			break;
		case 2:	/* an option running past the end */
			opts[3] = DHCP_OPT_VENDOR_CLASS;
			opts[4] = 255;
			len = sizeof(struct dhcp_wire) + 10;
			break;
		case 3:	/* random bytes */
			if (getrandom(pkt, sizeof pkt, 0) < 0)
				return 1;
			len = 1 + (size_t)(i * 37 % (int)sizeof pkt);
			break;
		case 4:	/* overload into a `file` full of lengths */
			opts[3] = DHCP_OPT_OVERLOAD;
			opts[4] = 1;
			opts[5] = 3;
			opts[6] = DHCP_OPT_END;
			memset(((struct dhcp_wire *)pkt)->file, 0x3c, DHCP_FILE_MAX);
			break;
		default:	/* an oversized hardware address length */
			((struct dhcp_wire *)pkt)->hlen = 200;
			break;
		}
		if (sendto(fd, pkt, len, 0, (struct sockaddr *)&bcast, sizeof bcast) == (ssize_t)len)
			sent++;
	}
	printf("garbage sent=%d\n", sent);
	return sent ? 0 : 1;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "mac", required_argument, NULL, 'm' },
		{ "vendor", required_argument, NULL, 'v' },
		{ "arch", required_argument, NULL, 'a' },
		{ "user-class", required_argument, NULL, 'u' },
		{ "ipxe", no_argument, NULL, 'x' },
		{ "uuid", no_argument, NULL, 'U' },
		{ "wait", required_argument, NULL, 'w' },
		{ "request", no_argument, NULL, 'r' },
		{ "server", required_argument, NULL, 's' },
		{ "ciaddr", required_argument, NULL, 'c' },
		{ "count", required_argument, NULL, 'n' },
		{ NULL, 0, NULL, 0 },
	};
	struct probe p = { .arch = -1, .wait_ms = 2000, .count = 60,
			   .mac = { 0x52, 0x54, 0x00, 0xaa, 0xbb, 0xcc } };
	const char *cmd;
	int opt;

	if (argc < 3) {
		fprintf(stderr, "usage: dhcp_probe IFACE discover|pxe-request|garbage [options]\n");
		return 2;
	}
	p.iface = argv[1];
	cmd = argv[2];
	optind = 3;
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 'm':
			if (mac_parse(optarg, p.mac) < 0)
				return 2;
			break;
		case 'v': p.vendor = optarg; break;
		case 'a': p.arch = atoi(optarg); break;
		case 'u': p.user_class = optarg; break;
		case 'x': p.ipxe = 1; break;
		case 'U': p.uuid = 1; break;
		case 'w': p.wait_ms = atoi(optarg); break;
		case 'r': p.request = 1; break;
		case 's':
			if (inet_pton(AF_INET, optarg, &p.server) != 1)
				return 2;
			break;
		case 'c':
			if (inet_pton(AF_INET, optarg, &p.ciaddr) != 1)
				return 2;
			break;
		case 'n': p.count = atoi(optarg); break;
		default: return 2;
		}
	}
	if (getrandom(&p.xid, sizeof p.xid, 0) < 0)
		return 1;
	if (strcmp(cmd, "discover") == 0)
		return probe_discover(&p);
	if (strcmp(cmd, "pxe-request") == 0)
		return probe_pxe_request(&p);
	if (strcmp(cmd, "garbage") == 0)
		return probe_garbage(&p);
	fprintf(stderr, "dhcp_probe: unknown command %s\n", cmd);
	return 2;
}
