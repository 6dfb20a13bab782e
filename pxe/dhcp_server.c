/* The DHCP / proxyDHCP server on the event loop: sockets bound to one interface, replies
 * routed as RFC 2131 §4.1 says, leases saved atomically after every change. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lib/evloop.h"
#include "lib/fs.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "lib/net.h"
#include "pxe/dhcp.h"

struct dhcp_server {
	const struct dhcp_server_config *cfg;
	struct ev_watch watch67, watch4011;
	struct lease_table leases;
	struct log_limit bad_limit, info_limit;
	uint64_t sent[DHCPINFORM + 1];	/* replies by message type */
	uint64_t malformed;
};

static struct dhcp_server dhcp_srv;

static const char *const dhcp_type_names[] = {
	[DHCPDISCOVER] = "DISCOVER", [DHCPOFFER] = "OFFER", [DHCPREQUEST] = "REQUEST",
	[DHCPDECLINE] = "DECLINE", [DHCPACK] = "ACK", [DHCPNAK] = "NAK",
	[DHCPRELEASE] = "RELEASE", [DHCPINFORM] = "INFORM",
};

static const char *dhcp_type_name(int type)
{
	if (type <= 0 || type > DHCPINFORM)
		return "?";
	return dhcp_type_names[type];
}

/* Reads the lease file; a missing file is an empty table, a bad line is skipped. */
static int dhcp_leases_load(struct dhcp_server *srv)
{
	char line[LEASE_LINE_MAX + 2];
	int bad = 0, n = 0;
	FILE *f = fopen(srv->cfg->lease_file, "re");

	if (!f)
		return errno == ENOENT ? 0 : -errno;
	while (fgets(line, sizeof line, f)) {
		if (!strchr(line, '\n') && !feof(f)) {
			int ch;

			while ((ch = fgetc(f)) != EOF && ch != '\n')
				;
			bad++;
			continue;
		}
		int r = lease_parse_line(&srv->leases, line);

		if (r < 0)
			bad++;
		else if (r == 0)
			n++;
	}
	fclose(f);
	if (bad)
		log_msg("dhcp: %s: %d malformed or out-of-pool lines ignored",
			srv->cfg->lease_file, bad);
	log_msg("dhcp: %d leases loaded from %s", n, srv->cfg->lease_file);
	return 0;
}

static void dhcp_leases_save(struct dhcp_server *srv)
{
	struct strbuf sb = { 0 };
	int err;

	lease_format(&srv->leases, &sb);
	if (sb.failed)
		err = -ENOMEM;
	else
		err = fs_write_atomic(srv->cfg->lease_file, sb.data, sb.len, 0644);
	if (err < 0)
		log_msg("dhcp: cannot save leases to %s: %s", srv->cfg->lease_file,
			strerror(-err));
	sb_free(&sb);
}

static void dhcp_send(struct dhcp_server *srv, int fd, const uint8_t *reply, size_t len,
		      const struct dhcp_outcome *out, const struct sockaddr_in *src)
{
	struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(DHCP_CLIENT_PORT) };
	char to_s[ADDR_STRLEN];

	switch (out->dest) {
	case DHCP_DEST_BROADCAST:
		to.sin_addr.s_addr = htonl(INADDR_BROADCAST);
		break;
	case DHCP_DEST_CIADDR:
		to.sin_addr = out->dest_addr;
		break;
	case DHCP_DEST_RELAY:
		to.sin_addr = out->dest_addr;
		to.sin_port = htons(DHCP_SERVER_PORT);
		break;
	case DHCP_DEST_SOURCE:
		to = *src;
		break;
	}
	if (sendto(fd, reply, len, 0, (struct sockaddr *)&to, sizeof to) < 0) {
		sockaddr_format((struct sockaddr *)&to, to_s, sizeof to_s);
		log_limited(&srv->info_limit, "dhcp: cannot send %s to %s: %s",
			    dhcp_type_name(out->type), to_s, strerror(errno));
		return;
	}
	srv->sent[out->type]++;
}

static void dhcp_log_outcome(struct dhcp_server *srv, const struct dhcp_msg *m,
			     const struct dhcp_outcome *out, const char *src_s)
{
	char mac[18], addr[INET_ADDRSTRLEN];

	mac_format(m->chaddr, mac);
	if (!out->type) {
		log_limited(&srv->info_limit, "dhcp: %s from %s (%s): no reply: %s",
			    dhcp_type_name(m->type), mac, src_s, out->why);
		return;
	}
	inet_ntop(AF_INET, &out->yiaddr, addr, sizeof addr);
	log_limited(&srv->info_limit, "dhcp: %s %s to %s%s%s%s%s", dhcp_type_name(out->type),
		    out->yiaddr.s_addr ? addr : "(proxy)", mac,
		    out->bootfile[0] ? " boot " : "", out->bootfile,
		    out->type == DHCPNAK ? ": " : "", out->type == DHCPNAK ? out->why : "");
}

/* Reads and answers one packet; -1 when there was none to read. */
static int dhcp_rx(struct dhcp_server *srv, int fd, int port)
{
	uint8_t pkt[DHCP_PACKET_MAX + 1], reply[DHCP_REPLY_MAX];
	struct sockaddr_in src;
	socklen_t slen = sizeof src;
	struct dhcp_outcome out;
	struct dhcp_msg m;
	char src_s[ADDR_STRLEN];
	ssize_t n = recvfrom(fd, pkt, sizeof pkt, 0, (struct sockaddr *)&src, &slen);
	size_t len;

	if (n < 0)
		return -1;
	if (slen != sizeof src || src.sin_family != AF_INET)
		return 0;
	sockaddr_format((struct sockaddr *)&src, src_s, sizeof src_s);
	if ((size_t)n > DHCP_PACKET_MAX || dhcp_parse(pkt, (size_t)n, &m) < 0) {
		srv->malformed++;
		log_limited(&srv->bad_limit, "dhcp: malformed packet from %s (%zd bytes): %s",
			    src_s, n, (size_t)n > DHCP_PACKET_MAX ? "too long" : m.error);
		return 0;
	}
	if (m.op != BOOTREQUEST)
		return 0;	/* another server's reply, seen because it was broadcast */
	len = dhcp_reply(&srv->cfg->dhcp, &srv->leases, &m, port, (int64_t)time(NULL), reply,
			 sizeof reply, &out);
	dhcp_log_outcome(srv, &m, &out, src_s);
	if (out.leases_changed)
		dhcp_leases_save(srv);
	if (len)
		dhcp_send(srv, fd, reply, len, &out, &src);
	return 0;
}

static void dhcp_event67(void *ctx, uint32_t events)
{
	struct dhcp_server *srv = ctx;

	for (int i = 0; i < 64 && dhcp_rx(srv, srv->watch67.fd, DHCP_SERVER_PORT) == 0; i++)
		;
}

static void dhcp_event4011(void *ctx, uint32_t events)
{
	struct dhcp_server *srv = ctx;

	for (int i = 0; i < 64 && dhcp_rx(srv, srv->watch4011.fd, DHCP_PXE_PORT) == 0; i++)
		;
}

static int dhcp_socket(const char *iface, uint16_t port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(port),
				   .sin_addr.s_addr = htonl(INADDR_ANY) };
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1, err;

	if (fd < 0)
		return -errno;
	/* Bound to the interface, not an address: DISCOVERs go to 255.255.255.255. No
	 * SO_REUSEADDR: a second server on the same interface must fail to start. */
	if (setsockopt(fd, SOL_SOCKET, SO_BROADCAST, &one, sizeof one) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, iface, (socklen_t)strlen(iface)) < 0 ||
	    bind(fd, (struct sockaddr *)&sin, sizeof sin) < 0) {
		err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

static void dhcp_metrics(struct strbuf *out, void *ctx)
{
	struct dhcp_server *srv = ctx;
	char label[32];

	metrics_family(out, "virtman_dhcp_replies_total", "counter",
		       "DHCP replies sent, by message type.");
	for (int t = DHCPOFFER; t <= DHCPNAK; t++) {
		if (t == DHCPREQUEST || t == DHCPDECLINE)
			continue;
		snprintf(label, sizeof label, "type=\"%s\"", dhcp_type_name(t));
		metrics_sample(out, "virtman_dhcp_replies_total", label, srv->sent[t]);
	}
	metrics_family(out, "virtman_dhcp_malformed_total", "counter",
		       "DHCP packets dropped as malformed.");
	metrics_sample(out, "virtman_dhcp_malformed_total", "", srv->malformed);
}

int dhcp_server_start(const struct dhcp_server_config *cfg, const char **what)
{
	struct dhcp_server *srv = &dhcp_srv;
	int fd, err;

	srv->cfg = cfg;
	srv->watch67.fd = srv->watch4011.fd = -1;
	if (cfg->dhcp.mode == DHCP_FULL) {
		*what = "address pool";
		if ((err = lease_table_init(&srv->leases, cfg->pool_first, cfg->pool_last)) < 0)
			return err;
		lease_reserve(&srv->leases, cfg->dhcp.server);
		lease_reserve(&srv->leases, cfg->dhcp.router);
		for (int i = 0; i < cfg->dhcp.ndns; i++)
			lease_reserve(&srv->leases, cfg->dhcp.dns[i]);
		*what = cfg->lease_file;
		if ((err = dhcp_leases_load(srv)) < 0)
			return err;
	}
	*what = "port 67";
	if ((fd = dhcp_socket(cfg->iface, DHCP_SERVER_PORT)) < 0)
		return fd;
	srv->watch67 = (struct ev_watch){ .fd = fd, .fn = dhcp_event67, .ctx = srv };
	if ((err = ev_add(&srv->watch67, EPOLLIN)) < 0)
		return err;
	if (cfg->dhcp.mode == DHCP_PROXY) {
		*what = "port 4011";
		if ((fd = dhcp_socket(cfg->iface, DHCP_PXE_PORT)) < 0)
			return fd;
		srv->watch4011 = (struct ev_watch){ .fd = fd, .fn = dhcp_event4011, .ctx = srv };
		if ((err = ev_add(&srv->watch4011, EPOLLIN)) < 0)
			return err;
	}
	metrics_register(dhcp_metrics, srv);
	return 0;
}
