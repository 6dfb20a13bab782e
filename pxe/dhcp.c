/* DHCP (RFC 2131/2132) and proxyDHCP (PXE 2.1, RFC 4578) for network boot: the wire codec,
 * the boot-file choice and the reply builder, all pure so tests and fuzzers need no socket. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "pxe/dhcp.h"

static const uint8_t dhcp_cookie[4] = { 99, 130, 83, 99 };

/* Client architectures (RFC 4578 §2.1 and the IANA registry) we have a boot file for. */
enum {
	ARCH_BIOS = 0,
	ARCH_EFI_X64 = 7,
	ARCH_EFI_BC = 9,	/* EDK2 sends 7; some firmware sends 9 for x86-64 */
	ARCH_EFI_X64_HTTP = 16,
};

typedef void dhcp_option_fn(void *ctx, uint8_t code, const uint8_t *value, size_t len);

/* Walks the options in [p, end): pads skipped, END stops, every length checked against the
 * end before use. Each step consumes at least one byte, so the loop is bounded. */
static int dhcp_walk_area(const uint8_t *p, const uint8_t *end, dhcp_option_fn *fn, void *ctx)
{
	while (p < end) {
		uint8_t code = *p++;
		size_t len;

		if (code == DHCP_OPT_PAD)
			continue;
		if (code == DHCP_OPT_END)
			return 0;
		if (p >= end)
			return -EBADMSG;
		len = *p++;
		if (len > (size_t)(end - p))
			return -EBADMSG;
		fn(ctx, code, p, len);
		p += len;
	}
	return 0;	/* a missing END is tolerated: some clients forget it */
}

/* The overload byte, found in the options area only (RFC 2132 §9.3). */
static void dhcp_find_overload(void *ctx, uint8_t code, const uint8_t *value, size_t len)
{
	if (code == DHCP_OPT_OVERLOAD && len == 1)
		*(uint8_t *)ctx = value[0];
}

/* Walks the options area, then `file` and `sname` when option 52 says they hold options. */
static int dhcp_walk(const uint8_t *pkt, size_t len, dhcp_option_fn *fn, void *ctx,
		     uint8_t *overload)
{
	const struct dhcp_wire *w = (const struct dhcp_wire *)pkt;
	const uint8_t *opts = pkt + sizeof *w, *end = pkt + len;
	int err;

	*overload = 0;
	if ((err = dhcp_walk_area(opts, end, dhcp_find_overload, overload)) < 0)
		return err;
	if ((err = dhcp_walk_area(opts, end, fn, ctx)) < 0)
		return err;
	if ((*overload & 1) &&
	    (err = dhcp_walk_area((const uint8_t *)w->file, (const uint8_t *)w->file +
				  sizeof w->file, fn, ctx)) < 0)
		return err;
	if ((*overload & 2) &&
	    (err = dhcp_walk_area((const uint8_t *)w->sname, (const uint8_t *)w->sname +
				  sizeof w->sname, fn, ctx)) < 0)
		return err;
	return 0;
}

static int dhcp_check_header(const uint8_t *pkt, size_t len, const char **why)
{
	const struct dhcp_wire *w = (const struct dhcp_wire *)pkt;

	if (len < sizeof *w) {
		*why = "shorter than the BOOTP header";
		return -EBADMSG;
	}
	if (memcmp(w->cookie, dhcp_cookie, sizeof dhcp_cookie) != 0) {
		*why = "no DHCP magic cookie";
		return -EBADMSG;
	}
	if (w->hlen > sizeof w->chaddr) {
		*why = "hardware address longer than 16 bytes";
		return -EBADMSG;
	}
	return 0;
}

/* Stores the options dhcp_parse understands; repeated options keep the first instance. */
static void dhcp_store_option(void *ctx, uint8_t code, const uint8_t *v, size_t len)
{
	struct dhcp_msg *m = ctx;

	switch (code) {
	case DHCP_OPT_MESSAGE_TYPE:
		if (len == 1 && !m->type)
			m->type = v[0];
		break;
	case DHCP_OPT_REQUESTED_IP:
		if (len == 4 && !m->has_requested) {
			memcpy(&m->requested, v, 4);
			m->has_requested = 1;
		}
		break;
	case DHCP_OPT_SERVER_ID:
		if (len == 4 && !m->has_server_id) {
			memcpy(&m->server_id, v, 4);
			m->has_server_id = 1;
		}
		break;
	case DHCP_OPT_CLIENT_ARCH:
		/* A list of 16-bit types; the first is the one the client boots as. */
		if (len >= 2 && m->arch < 0)
			m->arch = (int)((uint32_t)v[0] << 8 | v[1]);
		break;
	case DHCP_OPT_VENDOR_CLASS:
		if (!m->vendor_class_len) {
			memcpy(m->vendor_class, v, len);
			m->vendor_class_len = len;
		}
		break;
	case DHCP_OPT_USER_CLASS:
		/* iPXE sends the bare string "iPXE", not RFC 3004's length-prefixed list. */
		for (size_t i = 0; i + 4 <= len; i++)
			if (memcmp(v + i, "iPXE", 4) == 0)
				m->user_class_ipxe = 1;
		break;
	case DHCP_OPT_IPXE:
		m->has_ipxe_options = 1;
		break;
	case DHCP_OPT_CLIENT_UUID:
		if (len == sizeof m->uuid && !m->uuid_len) {
			memcpy(m->uuid, v, len);
			m->uuid_len = len;
		}
		break;
	case DHCP_OPT_LEASE_TIME:
		if (len == 4)
			m->lease_time = (uint32_t)v[0] << 24 | (uint32_t)v[1] << 16 |
					(uint32_t)v[2] << 8 | v[3];
		break;
	case DHCP_OPT_SUBNET_MASK:
		if (len == 4)
			memcpy(&m->netmask, v, 4);
		break;
	case DHCP_OPT_VENDOR:
		m->has_vendor_options = 1;
		/* PXE sub-options: code, length, value, each checked like the outer ones. */
		for (size_t i = 0; i < len && v[i] != DHCP_OPT_END;) {
			if (v[i] == DHCP_OPT_PAD) {
				i++;
				continue;
			}
			if (i + 1 >= len || v[i + 1] > len - i - 2)
				break;
			if (v[i] == PXE_DISCOVERY_CONTROL && v[i + 1] == 1)
				m->discovery_control = v[i + 2];
			i += 2 + (size_t)v[i + 1];
		}
		break;
	default:
		break;
	}
}

int dhcp_parse(const uint8_t *pkt, size_t len, struct dhcp_msg *m)
{
	const struct dhcp_wire *w = (const struct dhcp_wire *)pkt;

	memset(m, 0, sizeof *m);
	m->arch = -1;
	if (dhcp_check_header(pkt, len, &m->error) < 0)
		return -EBADMSG;
	m->op = w->op;
	m->htype = w->htype;
	m->hlen = w->hlen;
	m->xid = w->xid;
	m->flags = ntohs(w->flags);
	m->ciaddr.s_addr = w->ciaddr;
	m->yiaddr.s_addr = w->yiaddr;
	m->siaddr.s_addr = w->siaddr;
	m->giaddr.s_addr = w->giaddr;
	memcpy(m->chaddr, w->chaddr, sizeof m->chaddr);
	if (dhcp_walk(pkt, len, dhcp_store_option, m, &m->overload) < 0) {
		m->error = "option runs past the end of its area";
		return -EBADMSG;
	}
	if (!(m->overload & 1)) {
		memcpy(m->file, w->file, sizeof w->file);
		m->file[sizeof m->file - 1] = '\0';
	}
	return 0;
}

struct dhcp_find_ctx {
	uint8_t code;
	const uint8_t *value;
	int len;
};

static void dhcp_find_one(void *ctx, uint8_t code, const uint8_t *value, size_t len)
{
	struct dhcp_find_ctx *f = ctx;

	if (code == f->code && f->len < 0) {
		f->value = value;
		f->len = (int)len;
	}
}

int dhcp_option_find(const uint8_t *pkt, size_t len, uint8_t code, const uint8_t **value)
{
	struct dhcp_find_ctx f = { .code = code, .len = -1 };
	const char *why;
	uint8_t overload;

	if (dhcp_check_header(pkt, len, &why) < 0 ||
	    dhcp_walk(pkt, len, dhcp_find_one, &f, &overload) < 0)
		return -1;
	*value = f.value;
	return f.len;
}

static int dhcp_vendor_is(const struct dhcp_msg *m, const char *prefix)
{
	size_t n = strlen(prefix);

	return m->vendor_class_len >= n && memcmp(m->vendor_class, prefix, n) == 0;
}

enum dhcp_client_kind dhcp_client_kind(const struct dhcp_msg *m)
{
	/* Checked first: iPXE also says "PXEClient", and must not be sent iPXE again. */
	if (m->user_class_ipxe || m->has_ipxe_options)
		return DHCP_CLIENT_IPXE;
	if (dhcp_vendor_is(m, "HTTPClient"))
		return DHCP_CLIENT_HTTP;
	if (dhcp_vendor_is(m, "PXEClient"))
		return DHCP_CLIENT_PXE;
	return DHCP_CLIENT_PLAIN;
}

static void dhcp_format_mac(const uint8_t *mac, char *out, size_t len)
{
	snprintf(out, len, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3],
		 mac[4], mac[5]);
}

int dhcp_bootfile(const struct dhcp_config *cfg, const struct dhcp_msg *m, char *out,
		  size_t len)
{
	int arch = m->arch < 0 ? ARCH_BIOS : m->arch;	/* PXE 2.0 ROMs predate option 93 */
	const char *name = NULL;
	char mac[18];
	int n;

	out[0] = '\0';
	switch (dhcp_client_kind(m)) {
	case DHCP_CLIENT_PLAIN:
		return -ENOENT;
	case DHCP_CLIENT_IPXE:
		/* The script is per host: the MAC is in the URL rather than left to iPXE's
		 * ${net0/mac}, which names the first NIC, not necessarily the booting one. */
		dhcp_format_mac(m->chaddr, mac, sizeof mac);
		n = snprintf(out, len, "%s/boot.ipxe?mac=%s", cfg->http_base, mac);
		return n > 0 && (size_t)n < len ? 0 : -ENAMETOOLONG;
	case DHCP_CLIENT_HTTP:
		if (arch != ARCH_EFI_X64_HTTP || !cfg->http_boot_path)
			return -ENOENT;
		n = snprintf(out, len, "%s%s", cfg->http_base, cfg->http_boot_path);
		return n > 0 && (size_t)n < len ? 0 : -ENAMETOOLONG;
	case DHCP_CLIENT_PXE:
		if (arch == ARCH_BIOS)
			name = cfg->bios_file;
		else if (arch == ARCH_EFI_X64 || arch == ARCH_EFI_BC)
			name = cfg->efi_file;
		if (!name)
			return -ENOENT;
		n = snprintf(out, len, "%s", name);
		return n > 0 && (size_t)n < len ? 0 : -ENAMETOOLONG;
	}
	return -ENOENT;
}

/* Appends options to a reply, keeping one byte for END; a full buffer marks it overflowed. */
struct dhcp_writer {
	uint8_t *p, *end;
	int overflow;
};

static void dhcp_put(struct dhcp_writer *w, uint8_t code, const void *value, size_t len)
{
	if (len > 255 || 2 + len > (size_t)(w->end - w->p) - 1) {
		w->overflow = 1;
		return;
	}
	*w->p++ = code;
	*w->p++ = (uint8_t)len;
	memcpy(w->p, value, len);
	w->p += len;
}

static void dhcp_put_u32(struct dhcp_writer *w, uint8_t code, uint32_t v)
{
	uint8_t b[4] = { (uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v };

	dhcp_put(w, code, b, sizeof b);
}

/* Starts a reply: header copied from the request as RFC 2131 table 3 says, cookie, type. */
static struct dhcp_writer dhcp_begin(const struct dhcp_config *cfg, const struct dhcp_msg *m,
				     int type, uint8_t *reply, size_t cap)
{
	struct dhcp_wire *w = (struct dhcp_wire *)reply;
	struct dhcp_writer wr = { .p = reply + sizeof *w, .end = reply + cap };
	uint8_t t = (uint8_t)type;

	memset(reply, 0, cap);
	w->op = BOOTREPLY;
	w->htype = m->htype;
	w->hlen = m->hlen;
	w->xid = m->xid;
	w->flags = htons(m->flags & DHCP_FLAG_BROADCAST);
	w->giaddr = m->giaddr.s_addr;
	memcpy(w->chaddr, m->chaddr, sizeof w->chaddr);
	memcpy(w->cookie, dhcp_cookie, sizeof dhcp_cookie);
	dhcp_put(&wr, DHCP_OPT_MESSAGE_TYPE, &t, 1);
	dhcp_put(&wr, DHCP_OPT_SERVER_ID, &cfg->server, 4);
	return wr;
}

/* Closes the option list and pads to the BOOTP minimum; the length, or 0 on overflow. */
static size_t dhcp_finish(struct dhcp_writer *wr, uint8_t *reply, struct dhcp_outcome *out)
{
	size_t len;

	if (wr->overflow) {
		out->type = 0;
		out->why = "reply does not fit";
		return 0;
	}
	*wr->p++ = DHCP_OPT_END;
	len = (size_t)(wr->p - reply);
	return len < DHCP_REPLY_MIN ? DHCP_REPLY_MIN : len;
}

/* The boot part of a reply: next-server, file, and what each kind of client needs. */
static void dhcp_put_boot(const struct dhcp_config *cfg, const struct dhcp_msg *m,
			  struct dhcp_writer *wr, uint8_t *reply, const struct dhcp_outcome *out,
			  int proxy)
{
	struct dhcp_wire *w = (struct dhcp_wire *)reply;

	if (!out->bootfile[0])
		return;
	w->siaddr = cfg->server.s_addr;
	memcpy(w->file, out->bootfile, strlen(out->bootfile));	/* < DHCP_FILE_MAX: NUL stays */
	if (out->kind == DHCP_CLIENT_HTTP) {
		/* UEFI HTTP boot ignores an offer without this (UEFI 2.5 §24.7.2). */
		dhcp_put(wr, DHCP_OPT_VENDOR_CLASS, "HTTPClient", 10);
	} else if (proxy) {
		/* "PXEClient" and a zero yiaddr are what make an offer a proxy offer. */
		dhcp_put(wr, DHCP_OPT_VENDOR_CLASS, "PXEClient", 9);
		/* BIOS PXE ROMs: boot the file named here, no boot server discovery or menu.
		 * Left out for EFI: EDK2 then treats the offer as BINL and asks port 4011 for
		 * the file, a path it handles more simply than PXE discovery. */
		if (out->kind == DHCP_CLIENT_PXE && (m->arch <= ARCH_BIOS)) {
			static const uint8_t pxe_opts[] = { PXE_DISCOVERY_CONTROL, 1,
							    PXE_DISCOVERY_USE_BOOTFILE, DHCP_OPT_END };

			dhcp_put(wr, DHCP_OPT_VENDOR, pxe_opts, sizeof pxe_opts);
		}
	}
	/* PXE 2.1 §2.2: a PXE server echoes the client's machine identifier. */
	if (m->uuid_len && out->kind != DHCP_CLIENT_PLAIN)
		dhcp_put(wr, DHCP_OPT_CLIENT_UUID, m->uuid, m->uuid_len);
}

/* Subnet options for a client of the full server. */
static void dhcp_put_network(const struct dhcp_config *cfg, struct dhcp_writer *wr)
{
	dhcp_put(wr, DHCP_OPT_SUBNET_MASK, &cfg->netmask, 4);
	if (cfg->router.s_addr != INADDR_ANY)
		dhcp_put(wr, DHCP_OPT_ROUTER, &cfg->router, 4);
	if (cfg->ndns > 0)
		dhcp_put(wr, DHCP_OPT_DNS, cfg->dns, 4 * (size_t)cfg->ndns);
}

/* Picks the destination of a reply (RFC 2131 §4.1); unicast to an unconfigured client
 * would need an ARP entry we cannot add portably, so those replies are broadcast. */
static void dhcp_route(const struct dhcp_msg *m, int type, struct dhcp_outcome *out)
{
	if (m->giaddr.s_addr != INADDR_ANY) {
		out->dest = DHCP_DEST_RELAY;
		out->dest_addr = m->giaddr;
	} else if (type != DHCPNAK && m->ciaddr.s_addr != INADDR_ANY) {
		out->dest = DHCP_DEST_CIADDR;
		out->dest_addr = m->ciaddr;
	} else {
		out->dest = DHCP_DEST_BROADCAST;
	}
}

static size_t dhcp_none(struct dhcp_outcome *out, const char *why)
{
	out->type = 0;
	out->why = why;
	return 0;
}

static size_t dhcp_nak(const struct dhcp_config *cfg, const struct dhcp_msg *m, uint8_t *reply,
		       size_t cap, struct dhcp_outcome *out, const char *why)
{
	struct dhcp_writer wr = dhcp_begin(cfg, m, DHCPNAK, reply, cap);

	dhcp_put(&wr, DHCP_OPT_MESSAGE, why, strlen(why));
	out->type = DHCPNAK;
	out->why = why;
	dhcp_route(m, DHCPNAK, out);
	/* A NAK through a relay is broadcast by it: ask with the broadcast bit (§4.3.2). */
	if (out->dest == DHCP_DEST_RELAY)
		((struct dhcp_wire *)reply)->flags = htons(DHCP_FLAG_BROADCAST);
	return dhcp_finish(&wr, reply, out);
}

/* An OFFER or ACK carrying an address of our pool. */
static size_t dhcp_lease_reply(const struct dhcp_config *cfg, const struct dhcp_msg *m, int type,
			       struct in_addr yiaddr, uint8_t *reply, size_t cap,
			       struct dhcp_outcome *out)
{
	struct dhcp_writer wr = dhcp_begin(cfg, m, type, reply, cap);

	((struct dhcp_wire *)reply)->yiaddr = yiaddr.s_addr;
	out->type = type;
	out->yiaddr = yiaddr;
	dhcp_put_u32(&wr, DHCP_OPT_LEASE_TIME, cfg->lease_secs);
	dhcp_put_u32(&wr, DHCP_OPT_RENEWAL_TIME, cfg->lease_secs / 2);
	dhcp_put_u32(&wr, DHCP_OPT_REBINDING_TIME, (uint32_t)((uint64_t)cfg->lease_secs * 7 / 8));
	dhcp_put_network(cfg, &wr);
	dhcp_put_boot(cfg, m, &wr, reply, out, 0);
	dhcp_route(m, type, out);
	return dhcp_finish(&wr, reply, out);
}

static int dhcp_in_subnet(const struct dhcp_config *cfg, struct in_addr a)
{
	return (a.s_addr & cfg->netmask.s_addr) == (cfg->server.s_addr & cfg->netmask.s_addr);
}

/* DHCPREQUEST in full mode: SELECTING, INIT-REBOOT, RENEWING/REBINDING (RFC 2131 §4.3.2). */
static size_t dhcp_full_request(const struct dhcp_config *cfg, struct lease_table *leases,
				const struct dhcp_msg *m, int64_t now, uint8_t *reply, size_t cap,
				struct dhcp_outcome *out)
{
	const uint8_t *mac = m->chaddr;
	struct in_addr want;
	int mine = lease_find_mac(leases, mac), i;

	if (m->has_server_id) {
		/* SELECTING: the client answers one offer; if not ours, our offer is void. */
		if (m->server_id.s_addr != cfg->server.s_addr) {
			if (mine >= 0 && leases->slot[mine].state == LEASE_OFFERED) {
				lease_release(leases, mine, now);
				out->leases_changed = 1;
			}
			return dhcp_none(out, "client chose another server");
		}
		if (!m->has_requested)
			return dhcp_nak(cfg, m, reply, cap, out, "no requested address");
		want = m->requested;
	} else if (m->has_requested) {
		want = m->requested;	/* INIT-REBOOT */
		if (!dhcp_in_subnet(cfg, want))
			return dhcp_nak(cfg, m, reply, cap, out, "wrong network");
		if (mine < 0)
			return dhcp_none(out, "INIT-REBOOT from a client we have no record of");
	} else if (m->ciaddr.s_addr != INADDR_ANY) {
		want = m->ciaddr;	/* RENEWING (unicast) or REBINDING (broadcast) */
		if (mine < 0)
			return dhcp_none(out, "renewal from a client we have no record of");
	} else {
		return dhcp_none(out, "REQUEST without server id, requested address or ciaddr");
	}
	i = lease_index(leases, want);
	if (i < 0 || i != mine || !lease_usable(leases, i, mac, now))
		return dhcp_nak(cfg, m, reply, cap, out, "address not available");
	lease_bind(leases, i, mac, now, cfg->lease_secs);
	out->leases_changed = 1;
	return dhcp_lease_reply(cfg, m, DHCPACK, want, reply, cap, out);
}

static size_t dhcp_full(const struct dhcp_config *cfg, struct lease_table *leases,
			const struct dhcp_msg *m, int64_t now, uint8_t *reply, size_t cap,
			struct dhcp_outcome *out)
{
	const uint8_t *mac = m->chaddr;
	int i;

	switch (m->type) {
	case DHCPDISCOVER:
		i = lease_pick(leases, mac, m->has_requested ? &m->requested : NULL, now);
		if (i < 0)
			return dhcp_none(out, "address pool exhausted");
		lease_offer(leases, i, mac, now);
		return dhcp_lease_reply(cfg, m, DHCPOFFER, lease_addr(leases, i), reply, cap, out);
	case DHCPREQUEST:
		return dhcp_full_request(cfg, leases, m, now, reply, cap, out);
	case DHCPDECLINE:
		if (!m->has_server_id || m->server_id.s_addr != cfg->server.s_addr ||
		    !m->has_requested)
			return dhcp_none(out, "DECLINE not meant for us");
		i = lease_index(leases, m->requested);
		if (i < 0 || lease_find_mac(leases, mac) != i)
			return dhcp_none(out, "DECLINE of an address the client does not hold");
		lease_decline(leases, i, now);
		out->leases_changed = 1;
		return dhcp_none(out, "client declined the address: it is in use elsewhere");
	case DHCPRELEASE:
		i = lease_index(leases, m->ciaddr);
		if ((m->has_server_id && m->server_id.s_addr != cfg->server.s_addr) || i < 0 ||
		    lease_find_mac(leases, mac) != i)
			return dhcp_none(out, "RELEASE of an address the client does not hold");
		lease_release(leases, i, now);
		out->leases_changed = 1;
		return dhcp_none(out, "released");
	case DHCPINFORM: {
		/* No address, no lease time (§3.4); the client has its address already. */
		struct dhcp_writer wr = dhcp_begin(cfg, m, DHCPACK, reply, cap);

		out->type = DHCPACK;
		dhcp_put_network(cfg, &wr);
		dhcp_put_boot(cfg, m, &wr, reply, out, 0);
		dhcp_route(m, DHCPACK, out);
		return dhcp_finish(&wr, reply, out);
	}
	default:
		return dhcp_none(out, "message type a server does not answer");
	}
}

/* proxyDHCP: an offer without an address on port 67, an ACK on port 4011 (PXE 2.1 §2.2). */
static size_t dhcp_proxy(const struct dhcp_config *cfg, const struct dhcp_msg *m, int port,
			 uint8_t *reply, size_t cap, struct dhcp_outcome *out)
{
	struct dhcp_writer wr;
	int type;

	if (port == DHCP_PXE_PORT) {
		if (m->type != DHCPREQUEST && m->type != DHCPINFORM)
			return dhcp_none(out, "only REQUEST and INFORM are answered on port 4011");
		type = DHCPACK;
	} else {
		if (m->type != DHCPDISCOVER)
			return dhcp_none(out, "proxy mode answers only DISCOVER on port 67");
		type = DHCPOFFER;
	}
	wr = dhcp_begin(cfg, m, type, reply, cap);
	out->type = type;
	if (port == DHCP_PXE_PORT) {
		((struct dhcp_wire *)reply)->ciaddr = m->ciaddr.s_addr;
		out->dest = DHCP_DEST_SOURCE;
	} else {
		dhcp_route(m, type, out);
	}
	dhcp_put_boot(cfg, m, &wr, reply, out, 1);
	return dhcp_finish(&wr, reply, out);
}

size_t dhcp_reply(const struct dhcp_config *cfg, struct lease_table *leases,
		  const struct dhcp_msg *m, int port, int64_t now, uint8_t *reply, size_t cap,
		  struct dhcp_outcome *out)
{
	memset(out, 0, sizeof *out);
	if (cap < DHCP_REPLY_MIN)
		return dhcp_none(out, "reply buffer too small");
	if (m->op != BOOTREQUEST)
		return dhcp_none(out, "not a BOOTREQUEST");
	if (m->htype != 1 || m->hlen != 6)
		return dhcp_none(out, "not an Ethernet client");
	if (!m->type)
		return dhcp_none(out, "BOOTP without a DHCP message type");
	if (m->giaddr.s_addr != INADDR_ANY && !dhcp_in_subnet(cfg, m->giaddr))
		return dhcp_none(out, "relayed from another subnet");
	out->kind = dhcp_client_kind(m);
	if (dhcp_bootfile(cfg, m, out->bootfile, sizeof out->bootfile) < 0)
		out->bootfile[0] = '\0';	/* never a truncated name or URL */
	switch (cfg->mode) {
	case DHCP_FULL:
		if (port == DHCP_PXE_PORT)
			return dhcp_none(out, "port 4011 is served in proxy mode only");
		return dhcp_full(cfg, leases, m, now, reply, cap, out);
	case DHCP_PROXY:
		if (out->kind == DHCP_CLIENT_PLAIN)
			return dhcp_none(out, "not a PXE client");
		if (!out->bootfile[0])
			return dhcp_none(out, "no boot file for the client's architecture");
		return dhcp_proxy(cfg, m, port, reply, cap, out);
	case DHCP_OFF:
		break;
	}
	return dhcp_none(out, "DHCP is off");
}
