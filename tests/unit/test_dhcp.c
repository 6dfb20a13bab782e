/* Unit tests: DHCP codec, boot-file choice, proxy and full replies, leases (pxe/dhcp.c, lease.c). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "pxe/dhcp.h"
#include "pxe/lease.h"

#define NOW 1700000000

static const uint8_t mac_a[6] = { 0x52, 0x54, 0x00, 0x00, 0x00, 0x0a };
static const uint8_t mac_b[6] = { 0x52, 0x54, 0x00, 0x00, 0x00, 0x0b };

static struct in_addr ip(const char *s)
{
	struct in_addr a;

	assert_int_equal(inet_pton(AF_INET, s, &a), 1);
	return a;
}

/* A request under construction: header fields and an options area written in order. */
struct req {
	uint8_t buf[DHCP_PACKET_MAX];
	size_t len;
};

static void req_init(struct req *r, int type, const uint8_t mac[6])
{
	struct dhcp_wire *w = (struct dhcp_wire *)r->buf;
	static const uint8_t cookie[4] = { 99, 130, 83, 99 };

	memset(r, 0, sizeof *r);
	w->op = BOOTREQUEST;
	w->htype = 1;
	w->hlen = 6;
	w->xid = htonl(0x12345678);
	memcpy(w->chaddr, mac, 6);
	memcpy(w->cookie, cookie, 4);
	r->len = sizeof *w;
	if (type) {
		r->buf[r->len++] = DHCP_OPT_MESSAGE_TYPE;
		r->buf[r->len++] = 1;
		r->buf[r->len++] = (uint8_t)type;
	}
}

static void req_opt(struct req *r, uint8_t code, const void *v, size_t len)
{
	r->buf[r->len++] = code;
	r->buf[r->len++] = (uint8_t)len;
	memcpy(r->buf + r->len, v, len);
	r->len += len;
}

static void req_end(struct req *r)
{
	r->buf[r->len++] = DHCP_OPT_END;
}

static void req_arch(struct req *r, int arch)
{
	uint8_t v[2] = { (uint8_t)(arch >> 8), (uint8_t)arch };

	req_opt(r, DHCP_OPT_CLIENT_ARCH, v, 2);
}

static void req_addr(struct req *r, uint8_t code, const char *a)
{
	struct in_addr in = ip(a);

	req_opt(r, code, &in, 4);
}

static void req_parse(struct req *r, struct dhcp_msg *m)
{
	req_end(r);
	assert_int_equal(dhcp_parse(r->buf, r->len, m), 0);
}

static void config_init(struct dhcp_config *c, enum dhcp_mode mode)
{
	memset(c, 0, sizeof *c);
	c->mode = mode;
	c->server = ip("10.213.0.1");
	c->netmask = ip("255.255.255.0");
	c->lease_secs = 3600;
	snprintf(c->http_base, sizeof c->http_base, "http://10.213.0.1:8080");
	c->bios_file = "undionly.kpxe";
	c->efi_file = "snponly.efi";
	c->http_boot_path = "/ipxe/ipxe.efi";
}

/* A parsed reply and the raw bytes it came from. */
struct reply {
	uint8_t buf[DHCP_REPLY_MAX];
	size_t len;
	struct dhcp_msg m;
	struct dhcp_outcome out;
};

static void run(const struct dhcp_config *c, struct lease_table *t, struct req *r, int port,
		struct reply *rep)
{
	struct dhcp_msg m;

	req_parse(r, &m);
	rep->len = dhcp_reply(c, t, &m, port, NOW, rep->buf, sizeof rep->buf, &rep->out);
	if (rep->len) {
		assert_true(rep->len >= DHCP_REPLY_MIN && rep->len <= DHCP_REPLY_MAX);
		assert_int_equal(dhcp_parse(rep->buf, rep->len, &rep->m), 0);
		assert_int_equal(rep->m.op, BOOTREPLY);
		assert_int_equal(rep->m.xid, htonl(0x12345678));
		assert_int_equal(rep->m.type, rep->out.type);
		assert_true(rep->m.has_server_id);
		assert_int_equal(rep->m.server_id.s_addr, c->server.s_addr);
	}
}

static int option_len(const struct reply *rep, uint8_t code, const uint8_t **v)
{
	return dhcp_option_find(rep->buf, rep->len, code, v);
}

/* --- parsing ------------------------------------------------------------------------- */

struct parse_case {
	const char *name;
	size_t cut;		/* bytes kept of the built packet; 0: all */
	const uint8_t *opts;	/* raw options area */
	size_t opts_len;
	int ok;
};

static void test_parse_malformed(void **state)
{
	static const uint8_t overrun[] = { 53, 1, 1, 60, 10, 'P', 'X', 'E' };
	static const uint8_t no_len[] = { 53, 1, 1, 60 };
	static const uint8_t pads[] = { 0, 0, 53, 1, 1, 0, 255, 7, 7 };	/* after END: ignored */
	static const uint8_t no_end[] = { 53, 1, 1 };
	static const uint8_t zero_len[] = { 60, 0, 53, 1, 1, 255 };
	static const uint8_t huge[] = { 53, 1, 1, 43, 255 };
	static const struct parse_case cases[] = {
		{ "empty options", 0, NULL, 0, 1 },
		{ "cut in header", 100, NULL, 0, 0 },
		{ "cut before cookie", 238, NULL, 0, 0 },
		{ "option overruns", 0, overrun, sizeof overrun, 0 },
		{ "code without length", 0, no_len, sizeof no_len, 0 },
		{ "pads and garbage after END", 0, pads, sizeof pads, 1 },
		{ "no END", 0, no_end, sizeof no_end, 1 },
		{ "zero-length option", 0, zero_len, sizeof zero_len, 1 },
		{ "length 255 past end", 0, huge, sizeof huge, 0 },
	};
	struct dhcp_msg m;
	struct req r;

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		req_init(&r, 0, mac_a);
		if (cases[i].opts_len) {
			memcpy(r.buf + r.len, cases[i].opts, cases[i].opts_len);
			r.len += cases[i].opts_len;
		}
		size_t len = cases[i].cut ? cases[i].cut : r.len;
		int rc = dhcp_parse(r.buf, len, &m);

		if (cases[i].ok != (rc == 0))
			fail_msg("case '%s': rc %d", cases[i].name, rc);
		if (rc < 0)
			assert_non_null(m.error);
	}
}

static void test_parse_header_checks(void **state)
{
	struct dhcp_msg m;
	struct req r;

	req_init(&r, DHCPDISCOVER, mac_a);
	req_end(&r);
	((struct dhcp_wire *)r.buf)->cookie[0] = 0;
	assert_true(dhcp_parse(r.buf, r.len, &m) < 0);
	req_init(&r, DHCPDISCOVER, mac_a);
	req_end(&r);
	((struct dhcp_wire *)r.buf)->hlen = 17;
	assert_true(dhcp_parse(r.buf, r.len, &m) < 0);
}

static void test_parse_fields(void **state)
{
	static const uint8_t uuid[17] = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 };
	uint8_t arch_list[4] = { 0, 7, 0, 0 };
	struct dhcp_msg m;
	struct req r;

	req_init(&r, DHCPREQUEST, mac_a);
	req_addr(&r, DHCP_OPT_REQUESTED_IP, "10.213.0.5");
	req_addr(&r, DHCP_OPT_SERVER_ID, "10.213.0.1");
	req_opt(&r, DHCP_OPT_CLIENT_ARCH, arch_list, 4);	/* a list: the first counts */
	req_opt(&r, DHCP_OPT_VENDOR_CLASS, "PXEClient:Arch:00007:UNDI:003016", 32);
	req_opt(&r, DHCP_OPT_CLIENT_UUID, uuid, sizeof uuid);
	req_opt(&r, DHCP_OPT_CLIENT_UUID, uuid, 3);	/* a wrong-sized repeat is ignored */
	req_parse(&r, &m);
	assert_int_equal(m.type, DHCPREQUEST);
	assert_true(m.has_requested && m.requested.s_addr == ip("10.213.0.5").s_addr);
	assert_true(m.has_server_id && m.server_id.s_addr == ip("10.213.0.1").s_addr);
	assert_int_equal(m.arch, 7);
	assert_int_equal(m.vendor_class_len, 32);
	assert_int_equal(m.uuid_len, 17);
	assert_memory_equal(m.uuid, uuid, 17);
	assert_memory_equal(m.chaddr, mac_a, 6);
}

/* Option 52 moves options into `file` and `sname`; each area is bounded by its own field. */
static void test_parse_overload(void **state)
{
	struct dhcp_wire *w;
	struct dhcp_msg m;
	uint8_t overload = 3;
	struct req r;

	req_init(&r, DHCPDISCOVER, mac_a);
	req_opt(&r, DHCP_OPT_OVERLOAD, &overload, 1);
	req_end(&r);
	w = (struct dhcp_wire *)r.buf;
	memcpy(w->file, "\x3c\x09PXEClient\xff", 12);
	memcpy(w->sname, "\x5d\x02\x00\x07\xff", 5);
	assert_int_equal(dhcp_parse(r.buf, r.len, &m), 0);
	assert_int_equal(m.vendor_class_len, 9);
	assert_int_equal(m.arch, 7);
	assert_string_equal(m.file, "");	/* `file` held options, not a name */
	/* An option in `sname` may not run past its 64 bytes into `file`. */
	memset(w->sname, 0, sizeof w->sname);
	w->sname[62] = 60;
	w->sname[63] = 9;
	assert_true(dhcp_parse(r.buf, r.len, &m) < 0);
	/* Without option 52 the same bytes are just a name. */
	req_init(&r, DHCPDISCOVER, mac_a);
	req_end(&r);
	w = (struct dhcp_wire *)r.buf;
	memset(w->file, 'x', sizeof w->file);	/* no NUL: the copy is still terminated */
	assert_int_equal(dhcp_parse(r.buf, r.len, &m), 0);
	assert_int_equal(strlen(m.file), DHCP_FILE_MAX - 1);
}

/* --- boot file choice ------------------------------------------------------------------- */

struct boot_case {
	const char *name;
	const char *vendor;	/* option 60, or NULL */
	const char *user;	/* option 77, or NULL */
	int arch;		/* option 93, or -1 */
	int ipxe_opts;		/* option 175 */
	enum dhcp_client_kind kind;
	const char *file;	/* expected, NULL: none */
};

static void test_bootfile_table(void **state)
{
	static const struct boot_case cases[] = {
		{ "BIOS PXE", "PXEClient:Arch:00000:UNDI:002001", NULL, 0, 0, DHCP_CLIENT_PXE,
		  "undionly.kpxe" },
		{ "PXE 2.0, no arch", "PXEClient", NULL, -1, 0, DHCP_CLIENT_PXE, "undionly.kpxe" },
		{ "UEFI x64", "PXEClient:Arch:00007:UNDI:003000", NULL, 7, 0, DHCP_CLIENT_PXE,
		  "snponly.efi" },
		{ "UEFI BC", "PXEClient:Arch:00009:UNDI:003000", NULL, 9, 0, DHCP_CLIENT_PXE,
		  "snponly.efi" },
		{ "UEFI ia32", "PXEClient:Arch:00006:UNDI:003000", NULL, 6, 0, DHCP_CLIENT_PXE,
		  NULL },
		{ "ARM64", "PXEClient:Arch:00011:UNDI:003000", NULL, 11, 0, DHCP_CLIENT_PXE, NULL },
		{ "UEFI HTTP", "HTTPClient:Arch:00016:UNDI:003001", NULL, 16, 0, DHCP_CLIENT_HTTP,
		  "http://10.213.0.1:8080/ipxe/ipxe.efi" },
		{ "HTTPClient wrong arch", "HTTPClient:Arch:00015", NULL, 15, 0, DHCP_CLIENT_HTTP,
		  NULL },
		{ "iPXE user class", "PXEClient:Arch:00000:UNDI:002001", "iPXE", 0, 0,
		  DHCP_CLIENT_IPXE, "http://10.213.0.1:8080/boot.ipxe?mac=52:54:00:00:00:0a" },
		{ "iPXE under UEFI", "PXEClient:Arch:00007:UNDI:003010", "iPXE", 7, 1,
		  DHCP_CLIENT_IPXE, "http://10.213.0.1:8080/boot.ipxe?mac=52:54:00:00:00:0a" },
		{ "option 175 only", NULL, NULL, -1, 1, DHCP_CLIENT_IPXE,
		  "http://10.213.0.1:8080/boot.ipxe?mac=52:54:00:00:00:0a" },
		{ "RFC 3004 user class", NULL, "\x04iPXE", -1, 0, DHCP_CLIENT_IPXE,
		  "http://10.213.0.1:8080/boot.ipxe?mac=52:54:00:00:00:0a" },
		{ "plain client", "udhcp 1.35.0", NULL, -1, 0, DHCP_CLIENT_PLAIN, NULL },
		{ "short vendor", "PXEClien", NULL, 0, 0, DHCP_CLIENT_PLAIN, NULL },
		{ "other user class", NULL, "gPXE", -1, 0, DHCP_CLIENT_PLAIN, NULL },
	};
	struct dhcp_config c;
	struct dhcp_msg m;
	char file[DHCP_FILE_MAX];
	struct req r;

	config_init(&c, DHCP_PROXY);
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const struct boot_case *bc = &cases[i];

		req_init(&r, DHCPDISCOVER, mac_a);
		if (bc->vendor)
			req_opt(&r, DHCP_OPT_VENDOR_CLASS, bc->vendor, strlen(bc->vendor));
		if (bc->user)
			req_opt(&r, DHCP_OPT_USER_CLASS, bc->user, strlen(bc->user));
		if (bc->arch >= 0)
			req_arch(&r, bc->arch);
		if (bc->ipxe_opts)
			req_opt(&r, DHCP_OPT_IPXE, "\x01\x01\x01", 3);
		req_parse(&r, &m);
		if (dhcp_client_kind(&m) != bc->kind)
			fail_msg("case '%s': kind %d, want %d", bc->name, dhcp_client_kind(&m),
				 bc->kind);
		int rc = dhcp_bootfile(&c, &m, file, sizeof file);

		if (bc->file && (rc != 0 || strcmp(file, bc->file) != 0))
			fail_msg("case '%s': file '%s' rc %d, want '%s'", bc->name, file, rc,
				 bc->file);
		if (!bc->file && rc == 0)
			fail_msg("case '%s': got file '%s', want none", bc->name, file);
	}
}

/* --- proxy mode ------------------------------------------------------------------------- */

static void test_proxy_bios_offer(void **state)
{
	static const uint8_t uuid[17] = { 0, 0xaa, 0xbb };
	struct dhcp_config c;
	struct reply rep;
	const uint8_t *v;
	struct req r;
	int n;

	config_init(&c, DHCP_PROXY);
	req_init(&r, DHCPDISCOVER, mac_a);
	req_opt(&r, DHCP_OPT_VENDOR_CLASS, "PXEClient:Arch:00000:UNDI:002001", 32);
	req_arch(&r, 0);
	req_opt(&r, DHCP_OPT_CLIENT_UUID, uuid, sizeof uuid);
	run(&c, NULL, &r, DHCP_SERVER_PORT, &rep);
	assert_int_equal(rep.out.type, DHCPOFFER);
	assert_int_equal(rep.m.yiaddr.s_addr, 0);	/* a proxy offer carries no address */
	assert_int_equal(rep.m.siaddr.s_addr, c.server.s_addr);
	assert_string_equal(rep.m.file, "undionly.kpxe");
	assert_int_equal(rep.out.dest, DHCP_DEST_BROADCAST);
	n = option_len(&rep, DHCP_OPT_VENDOR_CLASS, &v);
	assert_int_equal(n, 9);
	assert_memory_equal(v, "PXEClient", 9);
	assert_true(rep.m.has_vendor_options);
	assert_int_equal(rep.m.discovery_control, PXE_DISCOVERY_USE_BOOTFILE);
	assert_int_equal(rep.m.uuid_len, 17);
	assert_memory_equal(rep.m.uuid, uuid, 17);
	assert_int_equal(option_len(&rep, DHCP_OPT_LEASE_TIME, &v), -1);	/* no lease */
	assert_int_equal(option_len(&rep, DHCP_OPT_SUBNET_MASK, &v), -1);
}

static void test_proxy_ignores(void **state)
{
	struct dhcp_config c;
	struct reply rep;
	struct req r;

	config_init(&c, DHCP_PROXY);
	/* Not a PXE client: the other DHCP server answers it. */
	req_init(&r, DHCPDISCOVER, mac_a);
	req_opt(&r, DHCP_OPT_VENDOR_CLASS, "udhcp 1.35.0", 12);
	run(&c, NULL, &r, DHCP_SERVER_PORT, &rep);
	assert_int_equal(rep.len, 0);
	/* A PXE client's REQUEST on 67 goes to the address server, not to us. */
	req_init(&r, DHCPREQUEST, mac_a);
	req_opt(&r, DHCP_OPT_VENDOR_CLASS, "PXEClient:Arch:00000:UNDI:002001", 32);
	req_addr(&r, DHCP_OPT_SERVER_ID, "10.213.0.254");
	req_addr(&r, DHCP_OPT_REQUESTED_IP, "10.213.0.77");
	run(&c, NULL, &r, DHCP_SERVER_PORT, &rep);
	assert_int_equal(rep.len, 0);
	/* An architecture we have nothing for. */
	req_init(&r, DHCPDISCOVER, mac_a);
	req_opt(&r, DHCP_OPT_VENDOR_CLASS, "PXEClient:Arch:00011:UNDI:003000", 32);
	req_arch(&r, 11);
	run(&c, NULL, &r, DHCP_SERVER_PORT, &rep);
	assert_int_equal(rep.len, 0);
	/* A DISCOVER on 4011. */
	req_init(&r, DHCPDISCOVER, mac_a);
	req_opt(&r, DHCP_OPT_VENDOR_CLASS, "PXEClient:Arch:00000:UNDI:002001", 32);
	run(&c, NULL, &r, DHCP_PXE_PORT, &rep);
	assert_int_equal(rep.len, 0);
}

static void test_proxy_4011_ack(void **state)
{
	struct dhcp_config c;
	struct dhcp_wire *w;
	struct reply rep;
	const uint8_t *v;
	struct req r;

	config_init(&c, DHCP_PROXY);
	/* EDK2's BINL request: unicast to 4011 with its new address in ciaddr. */
	req_init(&r, DHCPREQUEST, mac_a);
	w = (struct dhcp_wire *)r.buf;
	w->ciaddr = ip("10.213.0.77").s_addr;
	req_opt(&r, DHCP_OPT_VENDOR_CLASS, "PXEClient:Arch:00007:UNDI:003000", 32);
	req_arch(&r, 7);
	run(&c, NULL, &r, DHCP_PXE_PORT, &rep);
	assert_int_equal(rep.out.type, DHCPACK);
	assert_int_equal(rep.out.dest, DHCP_DEST_SOURCE);
	assert_int_equal(rep.m.ciaddr.s_addr, ip("10.213.0.77").s_addr);
	assert_int_equal(rep.m.yiaddr.s_addr, 0);
	assert_string_equal(rep.m.file, "snponly.efi");
	assert_false(rep.m.has_vendor_options);	/* EFI: no discovery options */
	assert_int_equal(option_len(&rep, DHCP_OPT_VENDOR_CLASS, &v), 9);
	/* iPXE's ProxyDHCPREQUEST gets its script, never iPXE again. */
	req_init(&r, DHCPREQUEST, mac_b);
	w = (struct dhcp_wire *)r.buf;
	w->ciaddr = ip("10.213.0.78").s_addr;
	req_opt(&r, DHCP_OPT_VENDOR_CLASS, "PXEClient:Arch:00000:UNDI:002001", 32);
	req_opt(&r, DHCP_OPT_USER_CLASS, "iPXE", 4);
	run(&c, NULL, &r, DHCP_PXE_PORT, &rep);
	assert_int_equal(rep.out.type, DHCPACK);
	assert_string_equal(rep.m.file, "http://10.213.0.1:8080/boot.ipxe?mac=52:54:00:00:00:0b");
}

static void test_http_boot_offer(void **state)
{
	struct dhcp_config c;
	struct reply rep;
	const uint8_t *v;
	struct req r;

	config_init(&c, DHCP_PROXY);
	req_init(&r, DHCPDISCOVER, mac_a);
	req_opt(&r, DHCP_OPT_VENDOR_CLASS, "HTTPClient:Arch:00016:UNDI:003001", 33);
	req_arch(&r, 16);
	run(&c, NULL, &r, DHCP_SERVER_PORT, &rep);
	assert_int_equal(rep.out.type, DHCPOFFER);
	assert_string_equal(rep.m.file, "http://10.213.0.1:8080/ipxe/ipxe.efi");
	assert_int_equal(option_len(&rep, DHCP_OPT_VENDOR_CLASS, &v), 10);
	assert_memory_equal(v, "HTTPClient", 10);
}

/* --- full mode -------------------------------------------------------------------------- */

struct pool {
	struct lease_table t;
};

static void pool_init(struct pool *p, const char *first, const char *last)
{
	assert_int_equal(lease_table_init(&p->t, ip(first), ip(last)), 0);
}

static void discover(const struct dhcp_config *c, struct lease_table *t, const uint8_t *mac,
		     struct reply *rep)
{
	struct req r;

	req_init(&r, DHCPDISCOVER, mac);
	run(c, t, &r, DHCP_SERVER_PORT, rep);
}

static void request_selecting(const struct dhcp_config *c, struct lease_table *t,
			      const uint8_t *mac, const char *addr, const char *server,
			      struct reply *rep)
{
	struct req r;

	req_init(&r, DHCPREQUEST, mac);
	req_addr(&r, DHCP_OPT_REQUESTED_IP, addr);
	req_addr(&r, DHCP_OPT_SERVER_ID, server);
	run(c, t, &r, DHCP_SERVER_PORT, rep);
}

static void test_full_discover_request(void **state)
{
	struct dhcp_config c;
	struct reply rep;
	struct pool p;
	const uint8_t *v;
	char a[INET_ADDRSTRLEN];

	config_init(&c, DHCP_FULL);
	pool_init(&p, "10.213.0.1", "10.213.0.20");
	lease_reserve(&p.t, c.server);	/* the seed's own address is in the range */
	discover(&c, &p.t, mac_a, &rep);
	assert_int_equal(rep.out.type, DHCPOFFER);
	assert_int_equal(rep.m.yiaddr.s_addr, ip("10.213.0.2").s_addr);
	assert_int_equal(rep.m.lease_time, 3600);
	assert_int_equal(rep.m.netmask.s_addr, ip("255.255.255.0").s_addr);
	assert_int_equal(option_len(&rep, DHCP_OPT_ROUTER, &v), -1);	/* not configured */
	assert_int_equal(option_len(&rep, DHCP_OPT_DNS, &v), -1);
	assert_int_equal(option_len(&rep, DHCP_OPT_VENDOR_CLASS, &v), -1);
	assert_string_equal(rep.m.file, "");	/* a plain client gets no boot file */
	assert_int_equal(rep.out.dest, DHCP_DEST_BROADCAST);
	assert_false(rep.out.leases_changed);	/* offers are not worth a disk write */
	inet_ntop(AF_INET, &rep.m.yiaddr, a, sizeof a);
	request_selecting(&c, &p.t, mac_a, a, "10.213.0.1", &rep);
	assert_int_equal(rep.out.type, DHCPACK);
	assert_int_equal(rep.m.yiaddr.s_addr, ip("10.213.0.2").s_addr);
	assert_true(rep.out.leases_changed);
	/* A second client gets the next address; the first keeps its own on rediscovery. */
	discover(&c, &p.t, mac_b, &rep);
	assert_int_equal(rep.m.yiaddr.s_addr, ip("10.213.0.3").s_addr);
	discover(&c, &p.t, mac_a, &rep);
	assert_int_equal(rep.m.yiaddr.s_addr, ip("10.213.0.2").s_addr);
	lease_table_free(&p.t);
}

static void test_full_options(void **state)
{
	struct dhcp_config c;
	struct reply rep;
	struct pool p;
	const uint8_t *v;
	struct req r;

	config_init(&c, DHCP_FULL);
	c.router = ip("10.213.0.254");
	c.dns[0] = ip("10.213.0.253");
	c.dns[1] = ip("10.213.0.252");
	c.ndns = 2;
	pool_init(&p, "10.213.0.10", "10.213.0.20");
	req_init(&r, DHCPDISCOVER, mac_a);
	req_opt(&r, DHCP_OPT_VENDOR_CLASS, "PXEClient:Arch:00000:UNDI:002001", 32);
	req_arch(&r, 0);
	run(&c, &p.t, &r, DHCP_SERVER_PORT, &rep);
	assert_int_equal(option_len(&rep, DHCP_OPT_ROUTER, &v), 4);
	assert_memory_equal(v, &c.router, 4);
	assert_int_equal(option_len(&rep, DHCP_OPT_DNS, &v), 8);
	assert_memory_equal(v, c.dns, 8);
	assert_string_equal(rep.m.file, "undionly.kpxe");
	assert_int_equal(rep.m.siaddr.s_addr, c.server.s_addr);
	/* Full mode is not a proxy: no PXEClient, so EDK2 takes the file without BINL. */
	assert_int_equal(option_len(&rep, DHCP_OPT_VENDOR_CLASS, &v), -1);
	assert_int_equal(option_len(&rep, DHCP_OPT_RENEWAL_TIME, &v), 4);
	assert_int_equal(option_len(&rep, DHCP_OPT_REBINDING_TIME, &v), 4);
	/* The requested address is honoured when free. */
	req_init(&r, DHCPDISCOVER, mac_b);
	req_addr(&r, DHCP_OPT_REQUESTED_IP, "10.213.0.15");
	run(&c, &p.t, &r, DHCP_SERVER_PORT, &rep);
	assert_int_equal(rep.m.yiaddr.s_addr, ip("10.213.0.15").s_addr);
	lease_table_free(&p.t);
}

static void test_full_request_cases(void **state)
{
	struct dhcp_config c;
	struct dhcp_wire *w;
	struct reply rep;
	struct pool p;
	struct req r;

	config_init(&c, DHCP_FULL);
	pool_init(&p, "10.213.0.10", "10.213.0.20");
	discover(&c, &p.t, mac_a, &rep);
	/* SELECTING another server: silence, and our offer is withdrawn. */
	request_selecting(&c, &p.t, mac_a, "10.213.0.10", "10.213.0.99", &rep);
	assert_int_equal(rep.len, 0);
	assert_int_equal(p.t.slot[0].state, LEASE_FREE);
	/* SELECTING us with an address we did not offer: NAK, broadcast. */
	discover(&c, &p.t, mac_a, &rep);
	request_selecting(&c, &p.t, mac_a, "10.213.0.11", "10.213.0.1", &rep);
	assert_int_equal(rep.out.type, DHCPNAK);
	assert_int_equal(rep.out.dest, DHCP_DEST_BROADCAST);
	assert_int_equal(rep.m.yiaddr.s_addr, 0);
	request_selecting(&c, &p.t, mac_a, "10.213.0.10", "10.213.0.1", &rep);
	assert_int_equal(rep.out.type, DHCPACK);
	/* INIT-REBOOT with its own address: ACK. */
	req_init(&r, DHCPREQUEST, mac_a);
	req_addr(&r, DHCP_OPT_REQUESTED_IP, "10.213.0.10");
	run(&c, &p.t, &r, DHCP_SERVER_PORT, &rep);
	assert_int_equal(rep.out.type, DHCPACK);
	/* INIT-REBOOT from another network: NAK. */
	req_init(&r, DHCPREQUEST, mac_a);
	req_addr(&r, DHCP_OPT_REQUESTED_IP, "192.0.2.10");
	run(&c, &p.t, &r, DHCP_SERVER_PORT, &rep);
	assert_int_equal(rep.out.type, DHCPNAK);
	/* INIT-REBOOT from a client we never saw: silence (RFC 2131 §4.3.2). */
	req_init(&r, DHCPREQUEST, mac_b);
	req_addr(&r, DHCP_OPT_REQUESTED_IP, "10.213.0.12");
	run(&c, &p.t, &r, DHCP_SERVER_PORT, &rep);
	assert_int_equal(rep.len, 0);
	/* INIT-REBOOT for someone else's address: NAK once we know the client. */
	discover(&c, &p.t, mac_b, &rep);
	req_init(&r, DHCPREQUEST, mac_b);
	req_addr(&r, DHCP_OPT_REQUESTED_IP, "10.213.0.10");
	run(&c, &p.t, &r, DHCP_SERVER_PORT, &rep);
	assert_int_equal(rep.out.type, DHCPNAK);
	/* RENEWING: ciaddr, unicast back to it. */
	req_init(&r, DHCPREQUEST, mac_a);
	w = (struct dhcp_wire *)r.buf;
	w->ciaddr = ip("10.213.0.10").s_addr;
	run(&c, &p.t, &r, DHCP_SERVER_PORT, &rep);
	assert_int_equal(rep.out.type, DHCPACK);
	assert_int_equal(rep.out.dest, DHCP_DEST_CIADDR);
	assert_int_equal(rep.out.dest_addr.s_addr, ip("10.213.0.10").s_addr);
	/* A request carrying nothing to act on. */
	req_init(&r, DHCPREQUEST, mac_a);
	run(&c, &p.t, &r, DHCP_SERVER_PORT, &rep);
	assert_int_equal(rep.len, 0);
	lease_table_free(&p.t);
}

static void test_full_release_decline(void **state)
{
	struct dhcp_config c;
	struct dhcp_wire *w;
	struct reply rep;
	struct pool p;
	struct req r;

	config_init(&c, DHCP_FULL);
	pool_init(&p, "10.213.0.10", "10.213.0.11");
	discover(&c, &p.t, mac_a, &rep);
	request_selecting(&c, &p.t, mac_a, "10.213.0.10", "10.213.0.1", &rep);
	/* RELEASE: free, but the same client gets the same address back. */
	req_init(&r, DHCPRELEASE, mac_a);
	w = (struct dhcp_wire *)r.buf;
	w->ciaddr = ip("10.213.0.10").s_addr;
	req_addr(&r, DHCP_OPT_SERVER_ID, "10.213.0.1");
	run(&c, &p.t, &r, DHCP_SERVER_PORT, &rep);
	assert_int_equal(rep.len, 0);
	assert_true(rep.out.leases_changed);
	assert_int_equal(p.t.slot[0].state, LEASE_FREE);
	discover(&c, &p.t, mac_b, &rep);
	assert_int_equal(rep.m.yiaddr.s_addr, ip("10.213.0.11").s_addr);	/* never-used first */
	discover(&c, &p.t, mac_a, &rep);
	assert_int_equal(rep.m.yiaddr.s_addr, ip("10.213.0.10").s_addr);
	request_selecting(&c, &p.t, mac_a, "10.213.0.10", "10.213.0.1", &rep);
	/* DECLINE: quarantined; the client then gets nothing while the pool is taken. */
	req_init(&r, DHCPDECLINE, mac_a);
	req_addr(&r, DHCP_OPT_REQUESTED_IP, "10.213.0.10");
	req_addr(&r, DHCP_OPT_SERVER_ID, "10.213.0.1");
	run(&c, &p.t, &r, DHCP_SERVER_PORT, &rep);
	assert_int_equal(rep.len, 0);
	assert_int_equal(p.t.slot[0].state, LEASE_DECLINED);
	request_selecting(&c, &p.t, mac_b, "10.213.0.11", "10.213.0.1", &rep);
	discover(&c, &p.t, mac_a, &rep);
	assert_int_equal(rep.len, 0);	/* .10 declined, .11 bound to b: exhausted */
	/* A DECLINE for an address the client does not hold changes nothing. */
	req_init(&r, DHCPDECLINE, mac_a);
	req_addr(&r, DHCP_OPT_REQUESTED_IP, "10.213.0.11");
	req_addr(&r, DHCP_OPT_SERVER_ID, "10.213.0.1");
	run(&c, &p.t, &r, DHCP_SERVER_PORT, &rep);
	assert_int_equal(p.t.slot[1].state, LEASE_BOUND);
	lease_table_free(&p.t);
}

static void test_full_inform_and_routing(void **state)
{
	struct dhcp_config c;
	struct dhcp_wire *w;
	struct reply rep;
	struct pool p;
	const uint8_t *v;
	struct req r;

	config_init(&c, DHCP_FULL);
	pool_init(&p, "10.213.0.10", "10.213.0.20");
	req_init(&r, DHCPINFORM, mac_a);
	w = (struct dhcp_wire *)r.buf;
	w->ciaddr = ip("10.213.0.50").s_addr;
	run(&c, &p.t, &r, DHCP_SERVER_PORT, &rep);
	assert_int_equal(rep.out.type, DHCPACK);
	assert_int_equal(rep.m.yiaddr.s_addr, 0);
	assert_int_equal(option_len(&rep, DHCP_OPT_LEASE_TIME, &v), -1);
	assert_int_equal(rep.out.dest, DHCP_DEST_CIADDR);
	/* Relayed from a relay inside our subnet: back to the relay. */
	req_init(&r, DHCPDISCOVER, mac_a);
	w = (struct dhcp_wire *)r.buf;
	w->giaddr = ip("10.213.0.254").s_addr;
	run(&c, &p.t, &r, DHCP_SERVER_PORT, &rep);
	assert_int_equal(rep.out.dest, DHCP_DEST_RELAY);
	assert_int_equal(rep.m.giaddr.s_addr, ip("10.213.0.254").s_addr);
	/* Relayed from another subnet: ignored. */
	req_init(&r, DHCPDISCOVER, mac_b);
	w = (struct dhcp_wire *)r.buf;
	w->giaddr = ip("192.0.2.1").s_addr;
	run(&c, &p.t, &r, DHCP_SERVER_PORT, &rep);
	assert_int_equal(rep.len, 0);
	/* The broadcast bit is echoed. */
	req_init(&r, DHCPDISCOVER, mac_b);
	w = (struct dhcp_wire *)r.buf;
	w->flags = htons(DHCP_FLAG_BROADCAST);
	run(&c, &p.t, &r, DHCP_SERVER_PORT, &rep);
	assert_int_equal(rep.m.flags, DHCP_FLAG_BROADCAST);
	lease_table_free(&p.t);
}

static void test_reply_refusals(void **state)
{
	struct dhcp_config c;
	struct dhcp_wire *w;
	struct reply rep;
	struct pool p;
	struct req r;

	config_init(&c, DHCP_FULL);
	pool_init(&p, "10.213.0.10", "10.213.0.20");
	req_init(&r, 0, mac_a);	/* BOOTP */
	run(&c, &p.t, &r, DHCP_SERVER_PORT, &rep);
	assert_int_equal(rep.len, 0);
	req_init(&r, DHCPDISCOVER, mac_a);
	((struct dhcp_wire *)r.buf)->op = BOOTREPLY;
	run(&c, &p.t, &r, DHCP_SERVER_PORT, &rep);
	assert_int_equal(rep.len, 0);
	req_init(&r, DHCPDISCOVER, mac_a);
	w = (struct dhcp_wire *)r.buf;
	w->htype = 32;	/* InfiniBand */
	w->hlen = 0;
	run(&c, &p.t, &r, DHCP_SERVER_PORT, &rep);
	assert_int_equal(rep.len, 0);
	req_init(&r, DHCPOFFER, mac_a);
	run(&c, &p.t, &r, DHCP_SERVER_PORT, &rep);
	assert_int_equal(rep.len, 0);
	req_init(&r, DHCPDISCOVER, mac_a);
	run(&c, &p.t, &r, DHCP_PXE_PORT, &rep);	/* 4011 is proxy-only */
	assert_int_equal(rep.len, 0);
	c.mode = DHCP_OFF;
	req_init(&r, DHCPDISCOVER, mac_a);
	run(&c, &p.t, &r, DHCP_SERVER_PORT, &rep);
	assert_int_equal(rep.len, 0);
	lease_table_free(&p.t);
}

/* --- leases ----------------------------------------------------------------------------- */

static void test_lease_expiry(void **state)
{
	struct lease_table t;
	struct in_addr want = ip("10.213.0.10");

	assert_int_equal(lease_table_init(&t, ip("10.213.0.10"), ip("10.213.0.10")), 0);
	assert_int_equal(lease_pick(&t, mac_a, NULL, NOW), 0);
	lease_bind(&t, 0, mac_a, NOW, 100);
	assert_int_equal(lease_pick(&t, mac_b, NULL, NOW + 99), -1);
	assert_int_equal(lease_pick(&t, mac_b, &want, NOW + 100), 0);	/* expired: reusable */
	lease_offer(&t, 0, mac_b, NOW + 100);
	assert_int_equal(lease_pick(&t, mac_a, NULL, NOW + 101), -1);	/* held for b */
	assert_int_equal(lease_pick(&t, mac_a, NULL, NOW + 100 + LEASE_OFFER_HOLD), 0);
	lease_decline(&t, 0, NOW);
	assert_int_equal(lease_pick(&t, mac_a, NULL, NOW + LEASE_DECLINE_HOLD - 1), -1);
	assert_int_equal(lease_pick(&t, mac_a, NULL, NOW + LEASE_DECLINE_HOLD), 0);
	lease_table_free(&t);
	assert_true(lease_table_init(&t, ip("10.213.0.10"), ip("10.213.0.9")) < 0);
	assert_true(lease_table_init(&t, ip("10.0.0.0"), ip("10.1.0.0")) < 0);	/* too big */
}

static void test_lease_roundtrip(void **state)
{
	struct lease_table a, b;
	struct strbuf sb = { 0 };
	char *line, *save = NULL;

	assert_int_equal(lease_table_init(&a, ip("10.213.0.10"), ip("10.213.0.20")), 0);
	assert_int_equal(lease_table_init(&b, ip("10.213.0.10"), ip("10.213.0.20")), 0);
	lease_bind(&a, 3, mac_a, NOW, 3600);
	lease_bind(&a, 5, mac_b, NOW, 3600);
	lease_release(&a, 5, NOW + 10);
	lease_decline(&a, 7, NOW);
	lease_reserve(&a, ip("10.213.0.11"));
	lease_format(&a, &sb);
	for (line = strtok_r(sb.data, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
		assert_true(lease_parse_line(&b, line) >= 0);
	assert_int_equal(lease_find_mac(&b, mac_a), 3);
	assert_int_equal(b.slot[3].state, LEASE_BOUND);
	assert_int_equal(b.slot[3].expires, NOW + 3600);
	assert_int_equal(lease_find_mac(&b, mac_b), 5);
	assert_int_equal(b.slot[5].state, LEASE_FREE);
	assert_int_equal(b.slot[7].state, LEASE_DECLINED);
	assert_int_equal(b.slot[1].state, LEASE_FREE);	/* reservations are not saved */
	sb_free(&sb);
	lease_table_free(&a);
	lease_table_free(&b);
}

static void test_lease_parse_table(void **state)
{
	static const struct {
		const char *line;
		int rc;
	} cases[] = {
		{ "# comment", 1 },
		{ "", 1 },
		{ "   \n", 1 },
		{ "52:54:00:00:00:0a 10.213.0.12 1700003600 bound", 0 },
		{ "52-54-00-00-00-0a 10.213.0.12 1700003600 free\n", 0 },
		{ "- 10.213.0.12 1700003600 declined", 0 },
		{ "- 10.213.0.12 1700003600 bound", -1 },		/* bound needs a MAC */
		{ "52:54:00:00:00:0a 10.213.0.12 1700003600 declined", -1 },
		{ "52:54:00:00:00:0a 10.213.0.99 1700003600 bound", -1 },	/* outside pool */
		{ "52:54:00:00:00:0a 10.213.0.11 1700003600 bound", -1 },	/* reserved */
		{ "52:54:00:00:00 10.213.0.12 1700003600 bound", -1 },
		{ "52:54:00:00:00:0a:0b 10.213.0.12 1700003600 bound", -1 },
		{ "52:54:00:00:00:zz 10.213.0.12 1700003600 bound", -1 },
		{ "52:54:00:00:00:0a 10.213.0.12 soon bound", -1 },
		{ "52:54:00:00:00:0a 10.213.0.12 1700003600 bound extra", -1 },
		{ "52:54:00:00:00:0a 10.213.0.12 1700003600 leased", -1 },
		{ "52:54:00:00:00:0a 10.213.0.1234 1700003600 bound", -1 },
	};
	struct lease_table t;

	assert_int_equal(lease_table_init(&t, ip("10.213.0.10"), ip("10.213.0.20")), 0);
	lease_reserve(&t, ip("10.213.0.11"));
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		int rc = lease_parse_line(&t, cases[i].line);

		if ((cases[i].rc < 0) != (rc < 0) || (cases[i].rc >= 0 && rc != cases[i].rc))
			fail_msg("line '%s': rc %d, want %d", cases[i].line, rc, cases[i].rc);
	}
	lease_table_free(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_malformed),
		cmocka_unit_test(test_parse_header_checks),
		cmocka_unit_test(test_parse_fields),
		cmocka_unit_test(test_parse_overload),
		cmocka_unit_test(test_bootfile_table),
		cmocka_unit_test(test_proxy_bios_offer),
		cmocka_unit_test(test_proxy_ignores),
		cmocka_unit_test(test_proxy_4011_ack),
		cmocka_unit_test(test_http_boot_offer),
		cmocka_unit_test(test_full_discover_request),
		cmocka_unit_test(test_full_options),
		cmocka_unit_test(test_full_request_cases),
		cmocka_unit_test(test_full_release_decline),
		cmocka_unit_test(test_full_inform_and_routing),
		cmocka_unit_test(test_reply_refusals),
		cmocka_unit_test(test_lease_expiry),
		cmocka_unit_test(test_lease_roundtrip),
		cmocka_unit_test(test_lease_parse_table),
	};
	return cmocka_run_group_tests_name("dhcp", tests, NULL, NULL);
}
