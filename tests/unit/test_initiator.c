/* Unit tests: the iSCSI initiator (iscsi/initiator.c): URL parsing, and sessions against the
 * real target (iscsi/target.c) over loopback, driven on the one event loop. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "iscsi/initiator.h"
#include "iscsi/target.h"
#include "lib/evloop.h"
#include "lib/log.h"

#define T_IQN "iqn.2026-11.org.virtman:unit"
#define T_IMAGE_SIZE (24u << 20)	/* more than MaxBurstLength, for one 20 MiB read */
#define T_DEADLINE_MS 15000

/* ---- URL parsing ---- */

struct url_case {
	const char *url;
	int ok;
	const char *host;
	uint16_t port;
	const char *iqn;
	uint64_t lun;
};

static void test_url_table(void **state)
{
	static const struct url_case cases[] = {
		{ "iscsi://10.0.0.1/iqn.2026-11.org.virtman:disk/0", 1, "10.0.0.1", 3260,
		  "iqn.2026-11.org.virtman:disk", 0 },
		{ "iscsi://10.0.0.1:3261/iqn.a:b/1", 1, "10.0.0.1", 3261, "iqn.a:b", 1 },
		{ "iscsi://[::1]:999/iqn.x/16383", 1, "::1", 999, "iqn.x", 16383 },
		{ "iscsi://[fe80::1:2]/iqn.x/7", 1, "fe80::1:2", 3260, "iqn.x", 7 },
		{ "iscsi://seed.lab/iqn.x/2", 1, "seed.lab", 3260, "iqn.x", 2 },
		{ "iscsi://seed-1_b:65535/eui.0123456789abcdef/0", 1, "seed-1_b", 65535,
		  "eui.0123456789abcdef", 0 },
		{ "iscsi://h/naa.6001405/0", 1, "h", 3260, "naa.6001405", 0 },
		{ "iscsi://h/iqn.x/007", 1, "h", 3260, "iqn.x", 7 },
		/* rejected */
		{ NULL, 0, 0, 0, 0, 0 },
		{ "", 0, 0, 0, 0, 0 },
		{ "http://h/iqn.x/0", 0, 0, 0, 0, 0 },
		{ "iscsi:/h/iqn.x/0", 0, 0, 0, 0, 0 },
		{ "ISCSI://h/iqn.x/0", 0, 0, 0, 0, 0 },
		{ "iscsi:///iqn.x/0", 0, 0, 0, 0, 0 },		/* no host */
		{ "iscsi://h", 0, 0, 0, 0, 0 },			/* no IQN, no LUN */
		{ "iscsi://h/iqn.x", 0, 0, 0, 0, 0 },		/* no LUN */
		{ "iscsi://h/iqn.x/", 0, 0, 0, 0, 0 },		/* empty LUN */
		{ "iscsi://h//0", 0, 0, 0, 0, 0 },		/* empty IQN */
		{ "iscsi://h/iqn.x/16384", 0, 0, 0, 0, 0 },	/* LUN out of range */
		{ "iscsi://h/iqn.x/-1", 0, 0, 0, 0, 0 },
		{ "iscsi://h/iqn.x/1x", 0, 0, 0, 0, 0 },
		{ "iscsi://h/iqn.x/0/", 0, 0, 0, 0, 0 },
		{ "iscsi://h/iqn.x/ 1", 0, 0, 0, 0, 0 },
		{ "iscsi://h:/iqn.x/0", 0, 0, 0, 0, 0 },		/* empty port */
		{ "iscsi://h:0/iqn.x/0", 0, 0, 0, 0, 0 },
		{ "iscsi://h:65536/iqn.x/0", 0, 0, 0, 0, 0 },
		{ "iscsi://h:12ab/iqn.x/0", 0, 0, 0, 0, 0 },
		{ "iscsi://h:-1/iqn.x/0", 0, 0, 0, 0, 0 },
		{ "iscsi://h:99999999999/iqn.x/0", 0, 0, 0, 0, 0 },
		{ "iscsi://h/IQN.X/0", 0, 0, 0, 0, 0 },		/* upper case */
		{ "iscsi://h/iqn.x y/0", 0, 0, 0, 0, 0 },
		{ "iscsi://h/iqn_x/0", 0, 0, 0, 0, 0 },
		{ "iscsi://h/iqn.x%2f/0", 0, 0, 0, 0, 0 },
		{ "iscsi://[::1/iqn.x/0", 0, 0, 0, 0, 0 },		/* unclosed bracket */
		{ "iscsi://[]/iqn.x/0", 0, 0, 0, 0, 0 },
		{ "iscsi://[10.0.0.1]/iqn.x/0", 0, 0, 0, 0, 0 },	/* not IPv6 */
		{ "iscsi://[::1]x/iqn.x/0", 0, 0, 0, 0, 0 },
		{ "iscsi://::1/iqn.x/0", 0, 0, 0, 0, 0 },		/* IPv6 without brackets */
		{ "iscsi://10.0.0.256/iqn.x/0", 0, 0, 0, 0, 0 },	/* not an IPv4 address */
		{ "iscsi://1.2.3/iqn.x/0", 0, 0, 0, 0, 0 },
		{ "iscsi://ho st/iqn.x/0", 0, 0, 0, 0, 0 },
		{ "iscsi://user@h/iqn.x/0", 0, 0, 0, 0, 0 },
	};
	struct iscsi_url u;

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const struct url_case *c = &cases[i];
		int rc = iscsi_url_parse(c->url, &u);

		if (!c->ok) {
			if (rc != -EINVAL)
				fail_msg("accepted %s", c->url ? c->url : "NULL");
			continue;
		}
		if (rc != 0)
			fail_msg("rejected %s", c->url);
		assert_string_equal(u.host, c->host);
		assert_int_equal(u.port, c->port);
		assert_string_equal(u.iqn, c->iqn);
		assert_int_equal(u.lun, c->lun);
	}
}

static void test_url_limits(void **state)
{
	char url[ISCSI_URL_MAX + 64], iqn[300];
	struct iscsi_url u;

	/* An IQN of 223 characters is the longest allowed (RFC 3722). */
	memset(iqn, 'a', sizeof iqn);
	memcpy(iqn, "iqn.", 4);
	iqn[223] = '\0';
	snprintf(url, sizeof url, "iscsi://h/%s/0", iqn);
	assert_int_equal(iscsi_url_parse(url, &u), 0);
	assert_int_equal(strlen(u.iqn), 223);
	iqn[223] = 'a';
	iqn[224] = '\0';
	snprintf(url, sizeof url, "iscsi://h/%s/0", iqn);
	assert_int_equal(iscsi_url_parse(url, &u), -EINVAL);
	/* A host name of 255 characters fits; 256 do not. */
	memset(iqn, 'h', 256);
	iqn[255] = '\0';
	snprintf(url, sizeof url, "iscsi://%s/iqn.x/0", iqn);
	assert_int_equal(iscsi_url_parse(url, &u), 0);
	iqn[255] = 'h';
	iqn[256] = '\0';
	snprintf(url, sizeof url, "iscsi://%s/iqn.x/0", iqn);
	assert_int_equal(iscsi_url_parse(url, &u), -EINVAL);
	/* The whole URL is bounded. */
	memset(url, 'a', sizeof url);
	memcpy(url, "iscsi://h/iqn.", 14);
	memcpy(url + ISCSI_URL_MAX - 3, "/0", 3);
	assert_int_equal(iscsi_url_parse(url, &u), -EINVAL);
}

/* ---- sessions against the real target ---- */

static struct target_config t_cfg;
static uint16_t t_port;
static uint8_t *t_image;	/* the image's bytes, to compare with */
static bool t_inside_read;	/* set while a test is inside iscsi_client_read */

struct t_client {
	struct iscsi_client *cl;
	int ups, downs;
	char reason[256];
};

struct t_read {
	int calls;
	int err;
	uint64_t off;
	uint32_t len;
	uint8_t *buf;
	struct t_client *owner;
	bool free_client;	/* frees its client from inside the callback */
};

/* Clients and reads live in pools, not on a test's stack: a failed assertion leaves the
 * test early, and the per-test teardown then frees what it left behind. */
#define T_CLIENTS 4
#define T_READS 32
static struct t_client t_clients[T_CLIENTS];
static struct t_read t_reads_pool[T_READS];
static size_t t_nclients, t_nreads;

static void t_up(void *ctx, struct iscsi_client *cl)
{
	struct t_client *tc = ctx;

	assert_false(t_inside_read);
	tc->ups++;
}

static void t_down(void *ctx, struct iscsi_client *cl, const char *reason)
{
	struct t_client *tc = ctx;

	assert_false(t_inside_read);
	tc->downs++;
	snprintf(tc->reason, sizeof tc->reason, "%s", reason);
}

static void t_read_done(void *arg, int err)
{
	struct t_read *r = arg;

	assert_false(t_inside_read);
	r->calls++;
	r->err = err;
	if (r->free_client) {
		iscsi_client_free(r->owner->cl);
		r->owner->cl = NULL;
	}
}

/* Runs the loop until cond(arg) holds or ms pass; returns whether it holds. */
struct t_wait {
	bool (*cond)(void *arg);
	void *arg;
	uint64_t deadline;
	struct ev_timer timer;
	bool met;
};

static void t_wait_poll(void *ctx)
{
	struct t_wait *w = ctx;

	w->met = w->cond(w->arg);
	if (w->met || ev_now_ms() >= w->deadline)
		ev_stop();
	else
		ev_timer_set(&w->timer, ev_now_ms() + 2);
}

static bool t_run_until(bool (*cond)(void *), void *arg, uint32_t ms)
{
	struct t_wait w = { .cond = cond, .arg = arg, .deadline = ev_now_ms() + ms };

	w.timer = (struct ev_timer){ .fn = t_wait_poll, .ctx = &w };
	ev_timer_set(&w.timer, ev_now_ms());
	ev_run();
	ev_timer_cancel(&w.timer);
	return w.met || cond(arg);
}

static bool t_is_up(void *arg)
{
	struct t_client *tc = arg;

	return tc->cl && iscsi_client_state(tc->cl) == ICLIENT_UP && tc->ups > 0;
}

static bool t_is_settled(void *arg)
{
	struct t_client *tc = arg;

	return t_is_up(arg) || tc->downs > 0;
}

/* Waits until the client is up; fails with the reason it went down instead. */
static void t_wait_up(struct t_client *tc)
{
	if (!t_run_until(t_is_settled, tc, T_DEADLINE_MS))
		fail_msg("client neither up nor down after %d ms", T_DEADLINE_MS);
	if (tc->downs)
		fail_msg("client went down: %s", tc->reason);
}

static bool t_is_down(void *arg)
{
	struct t_client *tc = arg;

	return tc->downs > 0;
}

struct t_reads {
	struct t_read **r;
	size_t n;
};

static bool t_all_done(void *arg)
{
	struct t_reads *rs = arg;

	for (size_t i = 0; i < rs->n; i++)
		if (rs->r[i]->calls == 0)
			return false;
	return true;
}

static bool t_never(void *arg)
{
	return false;
}

static struct t_client *t_client_start(const char *iqn, uint64_t lun, bool hd, bool dd,
				       uint32_t inflight, uint16_t port)
{
	struct iscsi_client_config cfg = {
		.initiator_name = "iqn.2026-11.org.virtman:unit-initiator",
		.header_digest = hd,
		.data_digest = dd,
		.read_timeout_ms = 5000,
		.max_inflight = inflight,
	};
	struct iscsi_client_events ev = { .up = t_up, .down = t_down };
	struct t_client *tc;
	char url[ISCSI_URL_MAX];

	assert_true(t_nclients < T_CLIENTS);
	tc = &t_clients[t_nclients++];
	memset(tc, 0, sizeof *tc);
	ev.ctx = tc;
	snprintf(url, sizeof url, "iscsi://127.0.0.1:%u/%s/%llu", port, iqn,
		 (unsigned long long)lun);
	assert_int_equal(iscsi_url_parse(url, &cfg.url), 0);
	tc->cl = iscsi_client_new(&cfg, &ev);
	assert_non_null(tc->cl);
	assert_string_equal(iscsi_client_name(tc->cl), url);
	return tc;
}

static void t_client_free(struct t_client *tc)
{
	iscsi_client_free(tc->cl);
	tc->cl = NULL;
}

/* Starts a read into a fresh pool entry; *out is set to it. */
static int t_read_start(struct t_client *tc, struct t_read **out, uint64_t off, uint32_t len)
{
	struct t_read *r;
	int rc;

	assert_true(t_nreads < T_READS);
	r = *out = &t_reads_pool[t_nreads++];
	memset(r, 0, sizeof *r);
	r->off = off;
	r->len = len;
	r->owner = tc;
	r->buf = malloc(len ? len : 1);
	assert_non_null(r->buf);
	memset(r->buf, 0xee, len);
	t_inside_read = true;
	rc = iscsi_client_read(tc->cl, off, len, r->buf, t_read_done, r);
	t_inside_read = false;
	return rc;
}

static void t_read_check(const struct t_read *r)
{
	assert_int_equal(r->calls, 1);
	assert_int_equal(r->err, 0);
	if (memcmp(r->buf, t_image + r->off, r->len) != 0)
		fail_msg("read of %u bytes at %llu differs from the image", r->len,
			 (unsigned long long)r->off);
}

/* Reads a mix of ranges at once and compares them with the image. */
static void t_read_mix(bool hd, bool dd)
{
	static const struct { uint64_t off; uint32_t len; } ranges[] = {
		{ 0, 512 }, { 512, 4096 }, { 1 << 20, 1 << 20 }, { 3 << 20, 4 << 20 },
		{ T_IMAGE_SIZE - 512, 512 }, { 12345 * 512, 262144 }, { 7 << 20, 262144 + 512 },
		{ 0, 1 << 20 }, { 17 << 20, 3 << 20 }, { 1000 * 512, 3 * 512 },
		{ 2 << 20, 1 << 20 }, { 9 << 20, 8192 }, { 20 << 20, 4 << 20 },
	};
	enum { N = sizeof ranges / sizeof ranges[0] };
	struct t_read *r[N];
	struct t_reads rs = { r, N };
	struct t_client *tc = t_client_start(T_IQN, 0, hd, dd, 4, t_port);
	uint64_t expect = 0;

	t_wait_up(tc);
	assert_int_equal(iscsi_client_capacity(tc->cl), T_IMAGE_SIZE);
	assert_int_equal(iscsi_client_block_size(tc->cl), 512);
	for (size_t i = 0; i < N; i++) {
		assert_int_equal(t_read_start(tc, &r[i], ranges[i].off, ranges[i].len), 0);
		expect += ranges[i].len;
	}
	/* More reads than max_inflight: the rest wait in the client's queue. */
	assert_int_equal(iscsi_client_inflight(tc->cl), N);
	assert_true(t_run_until(t_all_done, &rs, T_DEADLINE_MS));
	for (size_t i = 0; i < N; i++)
		t_read_check(r[i]);
	assert_int_equal(iscsi_client_inflight(tc->cl), 0);
	assert_true(iscsi_client_bytes_read(tc->cl) >= expect);
	assert_int_equal(tc->downs, 0);
}

static void test_read_plain(void **state)
{
	t_read_mix(false, false);
}

static void test_read_data_digest(void **state)
{
	t_read_mix(false, true);
}

static void test_read_header_digest(void **state)
{
	t_read_mix(true, false);
}

static void test_read_both_digests(void **state)
{
	t_read_mix(true, true);
}

/* One READ(16) larger than MaxBurstLength: the target sends it as several sequences. */
static void test_read_beyond_max_burst(void **state)
{
	struct t_client *tc = t_client_start(T_IQN, 0, false, false, 0, t_port);
	struct t_read *r;
	struct t_reads rs = { &r, 1 };

	t_wait_up(tc);
	assert_int_equal(t_read_start(tc, &r, 1 << 20, 20 << 20), 0);
	assert_true(t_run_until(t_all_done, &rs, T_DEADLINE_MS));
	t_read_check(r);
}

static void test_read_invalid(void **state)
{
	struct t_client *tc = t_client_start(T_IQN, 0, false, false, 0, t_port);
	static uint8_t buf[1024];
	struct t_read *r = &t_reads_pool[0];	/* never completes: every read is refused */

	/* Not up yet. */
	assert_int_equal(iscsi_client_read(tc->cl, 0, 512, buf, t_read_done, r), -ENOTCONN);
	t_wait_up(tc);
	assert_int_equal(iscsi_client_read(tc->cl, T_IMAGE_SIZE, 512, buf, t_read_done, r),
			 -EINVAL);
	assert_int_equal(iscsi_client_read(tc->cl, T_IMAGE_SIZE - 512, 1024, buf, t_read_done, r),
			 -EINVAL);
	assert_int_equal(iscsi_client_read(tc->cl, UINT64_MAX - 511, 1024, buf, t_read_done, r),
			 -EINVAL);
	assert_int_equal(iscsi_client_read(tc->cl, 100, 512, buf, t_read_done, r), -EINVAL);
	assert_int_equal(iscsi_client_read(tc->cl, 0, 100, buf, t_read_done, r), -EINVAL);
	assert_int_equal(iscsi_client_read(tc->cl, 0, 0, buf, t_read_done, r), -EINVAL);
	assert_int_equal(iscsi_client_inflight(tc->cl), 0);
}

/* Cancelled reads: done never called, buffer never written, the session carries on. */
static void test_cancel(void **state)
{
	struct t_client *tc = t_client_start(T_IQN, 0, false, false, 0, t_port);
	struct t_read *r[5];
	struct t_reads keep = { r, 2 };

	t_wait_up(tc);
	for (int i = 0; i < 4; i++)
		assert_int_equal(t_read_start(tc, &r[i], (uint64_t)i << 20, 1 << 20), 0);
	iscsi_client_cancel(tc->cl, r[2]);
	iscsi_client_cancel(tc->cl, r[3]);
	assert_int_equal(iscsi_client_inflight(tc->cl), 2);
	assert_true(t_run_until(t_all_done, &keep, T_DEADLINE_MS));
	t_run_until(t_never, NULL, 200);	/* the cancelled reads' data arrives meanwhile */
	t_read_check(r[0]);
	t_read_check(r[1]);
	for (int i = 2; i < 4; i++) {
		assert_int_equal(r[i]->calls, 0);
		for (uint32_t j = 0; j < r[i]->len; j++)
			if (r[i]->buf[j] != 0xee)
				fail_msg("cancelled read %d written at byte %u", i, j);
	}
	/* The session still works. */
	assert_int_equal(t_read_start(tc, &r[4], 5 << 20, 65536), 0);
	keep.r = &r[4];
	keep.n = 1;
	assert_true(t_run_until(t_all_done, &keep, T_DEADLINE_MS));
	t_read_check(r[4]);
	assert_int_equal(tc->downs, 0);
}

/* Drop: pending reads fail with -ECONNRESET, down is announced, the client comes back. */
static void test_drop_reconnect(void **state)
{
	struct t_client *tc = t_client_start(T_IQN, 0, false, false, 0, t_port);
	struct t_read *r[3];
	struct t_reads rs = { r, 2 };
	static uint8_t one_block[512];
	uint64_t t0;

	t_wait_up(tc);
	assert_int_equal(t_read_start(tc, &r[0], 0, 4 << 20), 0);
	assert_int_equal(t_read_start(tc, &r[1], 4 << 20, 4 << 20), 0);
	t_inside_read = true;	/* no callback from inside drop either */
	iscsi_client_drop(tc->cl, "chunk 3 failed verification");
	t_inside_read = false;
	assert_int_equal(iscsi_client_state(tc->cl), ICLIENT_DOWN);
	assert_int_equal(iscsi_client_read(tc->cl, 0, 512, one_block, t_read_done, r[0]),
			 -ENOTCONN);
	assert_true(t_run_until(t_all_done, &rs, T_DEADLINE_MS));
	assert_int_equal(r[0]->err, -ECONNRESET);
	assert_int_equal(r[1]->err, -ECONNRESET);
	assert_int_equal(r[0]->calls, 1);
	assert_int_equal(tc->downs, 1);
	assert_string_equal(tc->reason, "chunk 3 failed verification");
	t0 = ev_now_ms();
	assert_true(t_run_until(t_is_up, tc, 5000));
	assert_true(ev_now_ms() - t0 >= 900);	/* the first backoff is 1 s */
	assert_int_equal(tc->ups, 2);
	assert_int_equal(t_read_start(tc, &r[2], 512, 512), 0);
	rs.r = &r[2];
	rs.n = 1;
	assert_true(t_run_until(t_all_done, &rs, T_DEADLINE_MS));
	t_read_check(r[2]);
}

static void test_connect_refused(void **state)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof sin;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct t_client *tc;

	/* A port that was free a moment ago, with nobody listening. */
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof sin), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	close(fd);
	tc = t_client_start(T_IQN, 0, false, false, 0, ntohs(sin.sin_port));
	assert_true(t_run_until(t_is_down, tc, T_DEADLINE_MS));
	assert_int_equal(tc->ups, 0);
	assert_string_equal(tc->reason, "connect: Connection refused");
	assert_int_equal(iscsi_client_state(tc->cl), ICLIENT_DOWN);
}

static void test_login_target_not_found(void **state)
{
	struct t_client *tc = t_client_start("iqn.2026-11.org.virtman:nobody", 0, false, false, 0,
					     t_port);

	assert_true(t_run_until(t_is_down, tc, T_DEADLINE_MS));
	assert_string_equal(tc->reason, "login failed: status 0x0203 (target not found)");
}

/* A LUN that does not exist: READ CAPACITY (16, then 10) fail with ILLEGAL REQUEST. */
static void test_missing_lun(void **state)
{
	struct t_client *tc = t_client_start(T_IQN, 3, false, false, 0, t_port);

	assert_true(t_run_until(t_is_down, tc, T_DEADLINE_MS));
	assert_int_equal(tc->ups, 0);
	if (!strstr(tc->reason, "READ CAPACITY(10) failed") ||
	    !strstr(tc->reason, "ILLEGAL REQUEST"))
		fail_msg("reason: %s", tc->reason);
}

/* Freeing with reads pending completes them with -ECANCELED, at once. */
static void test_free_pending(void **state)
{
	struct t_client *tc = t_client_start(T_IQN, 0, false, false, 1, t_port);
	struct t_read *r[2];

	t_wait_up(tc);
	assert_int_equal(t_read_start(tc, &r[0], 0, 1 << 20), 0);
	assert_int_equal(t_read_start(tc, &r[1], 1 << 20, 1 << 20), 0);	/* queued */
	t_client_free(tc);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(r[i]->calls, 1);
		assert_int_equal(r[i]->err, -ECANCELED);
	}
	t_run_until(t_never, NULL, 50);	/* nothing of the client may fire any more */
}

/* A client freed from inside its own read callback. */
static void test_free_from_callback(void **state)
{
	struct t_client *tc = t_client_start(T_IQN, 0, false, false, 1, t_port);
	struct t_read *r[2];
	struct t_reads rs = { r, 2 };

	t_wait_up(tc);
	assert_int_equal(t_read_start(tc, &r[0], 0, 65536), 0);
	assert_int_equal(t_read_start(tc, &r[1], 65536, 65536), 0);
	r[0]->free_client = true;
	assert_true(t_run_until(t_all_done, &rs, T_DEADLINE_MS));
	assert_null(tc->cl);
	assert_int_equal(r[0]->err, 0);
	assert_int_equal(r[1]->err, -ECANCELED);
	t_run_until(t_never, NULL, 50);
}

/* An idle session pings the target after 5 s and stays up. */
static void test_keepalive(void **state)
{
	struct t_client *tc = t_client_start(T_IQN, 0, false, true, 0, t_port);
	struct t_read *r;
	struct t_reads rs = { &r, 1 };

	t_wait_up(tc);
	t_run_until(t_never, NULL, 6500);
	assert_int_equal(tc->downs, 0);
	assert_int_equal(t_read_start(tc, &r, 0, 4096), 0);
	assert_true(t_run_until(t_all_done, &rs, T_DEADLINE_MS));
	t_read_check(r);
	assert_int_equal(tc->downs, 0);
}

/* After each test: free the clients it left (a failed assertion leaves early), then buffers. */
static int t_test_teardown(void **state)
{
	for (size_t i = 0; i < t_nclients; i++)
		if (t_clients[i].cl)
			t_client_free(&t_clients[i]);
	for (size_t i = 0; i < t_nreads; i++)
		free(t_reads_pool[i].buf);
	memset(t_reads_pool, 0, sizeof t_reads_pool);
	t_nclients = t_nreads = 0;
	return 0;
}

static int t_setup(void **state)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)&t_cfg.listen;
	socklen_t len = sizeof *sin;
	uint32_t x = 2463534242u;
	int fd, lfd;

	if (!getenv("TEST_VERBOSE"))
		log_set_quiet(1);
	if (ev_init() < 0)
		return -1;
	t_image = malloc(T_IMAGE_SIZE);
	fd = memfd_create("initiator-test", 0);
	if (!t_image || fd < 0)
		return -1;
	for (uint32_t i = 0; i < T_IMAGE_SIZE; i++) {	/* xorshift: no repeating blocks */
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		t_image[i] = (uint8_t)x;
	}
	if (write(fd, t_image, T_IMAGE_SIZE) != T_IMAGE_SIZE)
		return -1;
	/* Learn a free port, then let the target listen on it. */
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	sin->sin_family = AF_INET;
	sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(lfd, (struct sockaddr *)sin, sizeof *sin) < 0 ||
	    getsockname(lfd, (struct sockaddr *)sin, &len) < 0)
		return -1;
	close(lfd);
	t_port = ntohs(sin->sin_port);
	t_cfg.listen_len = sizeof *sin;
	t_cfg.iqn = T_IQN;
	t_cfg.image_fd = fd;
	t_cfg.image_size = T_IMAGE_SIZE;
	target_disk_init(&t_cfg.disk, T_IQN, T_IMAGE_SIZE);
	return target_start(&t_cfg) < 0 ? -1 : 0;
}

static int t_teardown(void **state)
{
	free(t_image);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_url_table),
		cmocka_unit_test(test_url_limits),
		cmocka_unit_test_teardown(test_read_plain, t_test_teardown),
		cmocka_unit_test_teardown(test_read_data_digest, t_test_teardown),
		cmocka_unit_test_teardown(test_read_header_digest, t_test_teardown),
		cmocka_unit_test_teardown(test_read_both_digests, t_test_teardown),
		cmocka_unit_test_teardown(test_read_beyond_max_burst, t_test_teardown),
		cmocka_unit_test_teardown(test_read_invalid, t_test_teardown),
		cmocka_unit_test_teardown(test_cancel, t_test_teardown),
		cmocka_unit_test_teardown(test_drop_reconnect, t_test_teardown),
		cmocka_unit_test_teardown(test_connect_refused, t_test_teardown),
		cmocka_unit_test_teardown(test_login_target_not_found, t_test_teardown),
		cmocka_unit_test_teardown(test_missing_lun, t_test_teardown),
		cmocka_unit_test_teardown(test_free_pending, t_test_teardown),
		cmocka_unit_test_teardown(test_free_from_callback, t_test_teardown),
		cmocka_unit_test_teardown(test_keepalive, t_test_teardown),
	};

	return cmocka_run_group_tests(tests, t_setup, t_teardown);
}
