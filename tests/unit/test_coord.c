/* Unit tests: the coordinator's registry, tree placement, re-parenting, persistence. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "appliance/coord.h"

static struct coord coord_a, coord_b;	/* large: not on the stack */

static void config(struct coord_config *cfg, uint32_t fanout, const char *state)
{
	memset(cfg, 0, sizeof *cfg);
	cfg->fanout = fanout;
	cfg->heartbeat_s = 5;
	cfg->vms_per_host = 2;
	cfg->vcpus = 1;
	cfg->memory_mib = 256;
	cfg->prefix_len = 24;
	inet_pton(AF_INET, "10.0.0.1", &cfg->seed_addr);
	cfg->iscsi_port = 3260;
	cfg->iqn = "iqn.2026-11.org.virtman:img";
	cfg->manifest_url = "http://10.0.0.1:8080/api/v1/manifest";
	cfg->token = "secret";
	cfg->state_path = state;
}

/* Registers a host from a body; returns the id or the negative error. */
static int reg(struct coord *c, const char *body_in, uint64_t now)
{
	char body[512], err[160];
	struct kv kv[KV_MAX];
	struct strbuf reply = { 0 };
	int n, id;

	snprintf(body, sizeof body, "%s", body_in);
	n = kv_parse(body, strlen(body), kv, KV_MAX);
	assert_true(n >= 0);
	id = coord_register(c, kv, n, now, (int64_t)now, &reply, err, sizeof err);
	sb_free(&reply);
	return id;
}

static int reg_host(struct coord *c, int k, uint64_t now)
{
	char body[256];

	snprintf(body, sizeof body, "token=secret\nmac=52:54:00:00:00:%02x\naddr=10.0.0.%d\n"
		 "cores=2\nmemory=2048\n", k, 10 + k);
	return reg(c, body, now);
}

static void test_binary_tree(void **state)
{
	struct coord_config cfg;
	char urls[3][128];

	config(&cfg, 2, NULL);
	coord_init(&coord_a, &cfg);
	for (int k = 1; k <= 6; k++)
		assert_int_equal(reg_host(&coord_a, k, 1000), k);
	/* seed -> {1, 2}; 1 -> {3, 4}; 2 -> {5, 6} */
	static const int parents[] = { 0, 0, 1, 1, 2, 2 };
	for (int k = 1; k <= 6; k++)
		assert_int_equal(coord_host(&coord_a, k)->parent, parents[k - 1]);
	assert_int_equal(coord_depth(&coord_a, 5), 2);
	assert_int_equal(coord_upstreams(&coord_a, 1, urls, 3), 1);
	assert_string_equal(urls[0], "iscsi://10.0.0.1:3260/iqn.2026-11.org.virtman:img/0");
	assert_int_equal(coord_upstreams(&coord_a, 3, urls, 3), 3);
	assert_string_equal(urls[0], "iscsi://10.0.0.11:3260/iqn.2026-11.org.virtman:img/0");
	assert_string_equal(urls[1], "iscsi://10.0.0.12:3260/iqn.2026-11.org.virtman:img/0");
	assert_string_equal(urls[2], "iscsi://10.0.0.1:3260/iqn.2026-11.org.virtman:img/0");
}

static void test_chain(void **state)
{
	struct coord_config cfg;
	char urls[3][128];

	config(&cfg, 1, NULL);
	coord_init(&coord_a, &cfg);
	for (int k = 1; k <= 3; k++)
		reg_host(&coord_a, k, 1000);
	assert_int_equal(coord_host(&coord_a, 1)->parent, 0);
	assert_int_equal(coord_host(&coord_a, 2)->parent, 1);
	assert_int_equal(coord_host(&coord_a, 3)->parent, 2);
	assert_int_equal(coord_depth(&coord_a, 3), 3);
	/* No uncle in a chain: parent, then the root. */
	assert_int_equal(coord_upstreams(&coord_a, 3, urls, 3), 2);
}

static void test_reregister_keeps_id(void **state)
{
	struct coord_config cfg;

	config(&cfg, 2, NULL);
	coord_init(&coord_a, &cfg);
	reg_host(&coord_a, 1, 1000);
	reg_host(&coord_a, 2, 1000);
	assert_int_equal(reg_host(&coord_a, 1, 2000), 1);
	assert_int_equal(coord_a.nhosts, 2);
	/* Upper-case MAC is the same host. */
	assert_int_equal(reg(&coord_a, "token=secret\nmac=52:54:00:00:00:0A\naddr=10.0.0.99\n"
			     "cores=1\nmemory=512", 2000), 3);
	assert_int_equal(reg(&coord_a, "token=secret\nmac=52:54:00:00:00:0a\naddr=10.0.0.99\n"
			     "cores=1\nmemory=512", 2000), 3);
}

static void test_bad_registrations(void **state)
{
	static const char *const bodies[] = {
		"mac=52:54:00:00:00:01\naddr=10.0.0.5\ncores=2\nmemory=512",		/* no token */
		"token=wrong\nmac=52:54:00:00:00:01\naddr=10.0.0.5\ncores=2\nmemory=512",
		"token=secret\naddr=10.0.0.5\ncores=2\nmemory=512",			/* no mac */
		"token=secret\nmac=52:54:00:00:00\naddr=10.0.0.5\ncores=2\nmemory=512",
		"token=secret\nmac=zz:54:00:00:00:01\naddr=10.0.0.5\ncores=2\nmemory=512",
		"token=secret\nmac=ff:ff:ff:ff:ff:ff\naddr=10.0.0.5\ncores=2\nmemory=512",
		"token=secret\nmac=52:54:00:00:00:01\naddr=10.0.0\ncores=2\nmemory=512",
		"token=secret\nmac=52:54:00:00:00:01\naddr=0.0.0.0\ncores=2\nmemory=512",
		"token=secret\nmac=52:54:00:00:00:01\naddr=10.0.0.5\ncores=0\nmemory=512",
		"token=secret\nmac=52:54:00:00:00:01\naddr=10.0.0.5\ncores=99999\nmemory=512",
		"token=secret\nmac=52:54:00:00:00:01\naddr=10.0.0.5\ncores=2\nmemory=1",
		"token=secret\nmac=52:54:00:00:00:01\naddr=10.0.0.5\ncores=2",
		"token=secret\nmac=52:54:00:00:00:01\naddr=10.0.0.5\ncores=-1\nmemory=512",
	};
	struct coord_config cfg;

	config(&cfg, 2, NULL);
	coord_init(&coord_a, &cfg);
	for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++)
		assert_true(reg(&coord_a, bodies[i], 1000) < 0);
	assert_int_equal(coord_a.nhosts, 0);
	assert_int_equal(reg(&coord_a, "mac=52:54:00:00:00:01", 1000), -EACCES);
}

static void test_kv_parse(void **state)
{
	struct kv kv[4];
	char ok[] = "a=1\r\n\nb-c.d_e=two words\n";
	char nokey[] = "=1\n";
	char upper[] = "A=1\n";
	char ctrl[] = "a=\x01\n";
	char many[] = "a=1\nb=2\nc=3\nd=4\ne=5\n";

	assert_int_equal(kv_parse(ok, strlen(ok), kv, 4), 2);
	assert_string_equal(kv_get(kv, 2, "b-c.d_e"), "two words");
	assert_string_equal(kv_get(kv, 2, "a"), "1");
	assert_true(kv_parse(nokey, strlen(nokey), kv, 4) < 0);
	assert_true(kv_parse(upper, strlen(upper), kv, 4) < 0);
	assert_true(kv_parse(ctrl, strlen(ctrl), kv, 4) < 0);
	assert_true(kv_parse(many, strlen(many), kv, 4) < 0);
}

/* Runs one heartbeat with extra lines (and the boot token, unless they start with "!"). */
static int beat(struct coord *c, int id, const char *body_in, uint64_t now)
{
	char body[512], err[160];
	struct kv kv[KV_MAX];
	struct strbuf reply = { 0 };
	int n, rc;

	if (body_in[0] == '!')
		snprintf(body, sizeof body, "%s", body_in + 1);
	else
		snprintf(body, sizeof body, "token=secret\n%s", body_in);
	n = kv_parse(body, strlen(body), kv, KV_MAX);
	assert_true(n >= 0);
	rc = coord_heartbeat(c, id, kv, n, now, (int64_t)now, &reply, err, sizeof err);
	sb_free(&reply);
	return rc;
}

static void test_expire_and_reparent(void **state)
{
	struct coord_config cfg;

	config(&cfg, 2, NULL);
	coord_init(&coord_a, &cfg);
	for (int k = 1; k <= 4; k++)
		reg_host(&coord_a, k, 1000);
	/* 1 and 2 under the seed, 3 and 4 under 1. Host 1 falls silent. */
	for (uint64_t t = 6000; t <= 16000; t += 5000) {
		for (int k = 2; k <= 4; k++)
			assert_int_equal(beat(&coord_a, k, "", t), 0);
		coord_expire(&coord_a, t, (int64_t)t);
	}
	assert_true(coord_host(&coord_a, 1)->live);	/* 15 s silent: exactly the limit */
	coord_expire(&coord_a, 16001, 16001);
	assert_false(coord_host(&coord_a, 1)->live);
	assert_string_equal(coord_host(&coord_a, 1)->stage, "lost");
	/* Its children found new parents breadth-first: the seed had room for one more (3),
	 * then the oldest depth-1 host with room (2) took the other. */
	assert_int_equal(coord_host(&coord_a, 3)->parent, 0);
	assert_int_equal(coord_host(&coord_a, 4)->parent, 2);
	/* A lost host must register again. */
	assert_int_equal(beat(&coord_a, 1, "", 17000), -ENOENT);
	assert_int_equal(reg_host(&coord_a, 1, 17000), 1);
	assert_true(coord_host(&coord_a, 1)->live);
}

static void test_stages_and_vms(void **state)
{
	struct coord_config cfg;
	struct coord_host *h;

	config(&cfg, 2, NULL);
	coord_init(&coord_a, &cfg);
	reg_host(&coord_a, 1, 1000);
	assert_int_equal(beat(&coord_a, 1, "stage=relay-ready", 2000), 0);
	assert_int_equal(beat(&coord_a, 1, "stage=ready", 3000), 0);
	assert_int_equal(beat(&coord_a, 1, "stage=bogus", 3000), -EINVAL);
	assert_int_equal(beat(&coord_a, 1, "vm=vm1\nvm-stage=vm-booting", 4000), 0);
	assert_int_equal(beat(&coord_a, 1, "vm=vm1\nvm-stage=vm-up", 6500), 0);
	assert_int_equal(beat(&coord_a, 1, "vm=vm2\nvm-stage=failed\nreason=no bootloader", 7000), 0);
	assert_int_equal(beat(&coord_a, 1, "vm=vm3", 7000), -EINVAL);
	/* Without the boot token, or with another, nobody speaks for the host. */
	assert_int_equal(beat(&coord_a, 1, "!stage=failed\nreason=spoofed", 7500), -EACCES);
	assert_int_equal(beat(&coord_a, 1, "!token=guess\nvm=vm1\nvm-stage=failed", 7500), -EACCES);
	assert_int_equal(beat(&coord_a, 1, "!token=\nstage=failed", 7500), -EACCES);
	h = coord_host(&coord_a, 1);
	assert_string_equal(h->stage, "ready");
	assert_string_equal(h->vms[0].stage, "vm-up");
	assert_int_equal(h->seen_ms, 7000);
	assert_int_equal(h->nstages, 3);	/* registered, relay-ready, ready */
	assert_int_equal(h->stages[1].at_ms, 2000);
	assert_int_equal(h->nvms, 2);
	assert_int_equal(h->vms[0].boot_ms, 2500);
	assert_string_equal(h->vms[1].reason, "no bootloader");

	struct strbuf json = { 0 };

	coord_json_tree(&coord_a, &json);
	assert_non_null(strstr(json.data, "\"stage\":\"ready\""));
	assert_non_null(strstr(json.data, "\"boot_ms\":2500"));
	sb_free(&json);
}

static void test_subnet_grouping(void **state)
{
	struct coord_config cfg;

	config(&cfg, 2, NULL);
	coord_init(&coord_a, &cfg);
	/* Two depth-1 hosts, one per subnet; a third-subnet... a host of 10.0.1.0/24 then
	 * goes under the depth-1 host of its own subnet, although the other came first. */
	reg(&coord_a, "token=secret\nmac=52:54:00:00:01:01\naddr=10.0.0.11\ncores=2\nmemory=512", 1000);
	reg(&coord_a, "token=secret\nmac=52:54:00:00:01:02\naddr=10.0.1.11\ncores=2\nmemory=512", 1000);
	reg(&coord_a, "token=secret\nmac=52:54:00:00:01:03\naddr=10.0.1.12\ncores=2\nmemory=512", 1000);
	assert_int_equal(coord_host(&coord_a, 3)->parent, 2);
	reg(&coord_a, "token=secret\nmac=52:54:00:00:01:04\naddr=10.0.0.12\ncores=2\nmemory=512", 1000);
	assert_int_equal(coord_host(&coord_a, 4)->parent, 1);
}

static void test_persistence(void **state)
{
	char path[] = "/tmp/test_coord_XXXXXX";
	struct coord_config cfg;
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	close(fd);
	unlink(path);
	config(&cfg, 2, path);
	coord_init(&coord_a, &cfg);
	for (int k = 1; k <= 3; k++)
		reg_host(&coord_a, k, 1000);
	beat(&coord_a, 3, "vm=vm1\nvm-stage=vm-up", 2000);
	assert_int_equal(coord_save(&coord_a), 0);
	coord_init(&coord_b, &cfg);
	assert_int_equal(coord_b.nhosts, 3);
	assert_int_equal(coord_host(&coord_b, 3)->parent, 1);
	assert_string_equal(coord_host(&coord_b, 2)->mac, "52:54:00:00:00:02");
	assert_int_equal(coord_host(&coord_b, 3)->nvms, 1);
	assert_true(coord_host(&coord_b, 1)->live);
	/* A damaged file means an empty rack, not a crash. */
	FILE *f = fopen(path, "w");

	fputs("virtman-rack 1\nhost 7 nonsense\n", f);
	fclose(f);
	coord_init(&coord_b, &cfg);
	assert_int_equal(coord_b.nhosts, 0);
	f = fopen(path, "w");
	fputs("virtman-rack 1\nhost 1 52:54:00:00:00:01 10.0.0.11 2 2048 1 1 1 0 0 ready\n", f);
	fclose(f);	/* a host that is its own parent: a loop */
	coord_init(&coord_b, &cfg);
	assert_int_equal(coord_b.nhosts, 0);
	unlink(path);
}

/* The reply to a heartbeat of host id with body, as text. */
static void beat_reply(struct coord *c, int id, const char *body_in, uint64_t now, char *out,
		       size_t len)
{
	char body[512], err[160];
	struct kv kv[KV_MAX];
	struct strbuf reply = { 0 };
	int n;

	snprintf(body, sizeof body, "token=secret\n%s", body_in);
	n = kv_parse(body, strlen(body), kv, KV_MAX);
	assert_true(n >= 0);
	assert_int_equal(coord_heartbeat(c, id, kv, n, now, (int64_t)now, &reply, err, sizeof err), 0);
	snprintf(out, len, "%.*s", (int)reply.len, reply.data ? reply.data : "");
	sb_free(&reply);
}

static void test_generations(void **state)
{
	char path[] = "/tmp/test_coord_XXXXXX", reply[2048];
	struct coord_config cfg;
	struct coord_host *h;
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	close(fd);
	unlink(path);
	config(&cfg, 2, path);
	cfg.image_id = "aaaa";
	coord_init(&coord_a, &cfg);
	assert_int_equal(coord_a.generation, 1);
	reg_host(&coord_a, 1, 1000);
	beat(&coord_a, 1, "generation=1\nstage=ready", 2000);
	beat(&coord_a, 1, "vm=vm1\nvm-stage=vm-up", 2500);
	coord_new_generation(&coord_a, "iqn.2026-11.org.virtman:img-g2", "bbbb", false, NULL);
	assert_int_equal(coord_a.generation, 2);
	/* The host learns the new generation and name from its next reply. */
	beat_reply(&coord_a, 1, "generation=1\nstage=ready", 3000, reply, sizeof reply);
	assert_non_null(strstr(reply, "generation=2\n"));
	assert_non_null(strstr(reply, "iqn=iqn.2026-11.org.virtman:img-g2\n"));
	assert_non_null(strstr(reply, "iscsi://10.0.0.1:3260/iqn.2026-11.org.virtman:img-g2/0"));
	assert_null(strstr(reply, "reboot="));
	/* Without a marker of its own, a generation keeps the default. */
	assert_non_null(strstr(reply, "vm-marker=virtman-vm-up\n"));
	h = coord_host(&coord_a, 1);
	assert_int_equal(h->generation, 1);
	assert_int_equal(h->nvms, 1);
	/* Its first word on generation 2 starts the host's history again, old VMs gone. */
	beat(&coord_a, 1, "generation=2\nstage=reimaging", 4000);
	assert_int_equal(h->generation, 2);
	assert_int_equal(h->nvms, 0);
	assert_int_equal(h->nstages, 1);
	assert_string_equal(h->stages[0].name, "reimaging");
	assert_int_equal(beat(&coord_a, 1, "generation=0", 4000), -EINVAL);
	assert_int_equal(beat(&coord_a, 1, "generation=x", 4000), -EINVAL);
	/* With --reboot the reply says so. */
	coord_new_generation(&coord_a, "iqn.2026-11.org.virtman:img-g3", "cccc", true, "v3-up");
	beat_reply(&coord_a, 1, "stage=ready", 5000, reply, sizeof reply);
	assert_non_null(strstr(reply, "generation=3\nreboot=1\n"));
	/* ... and names the generation's marker. */
	assert_non_null(strstr(reply, "vm-marker=v3-up\n"));
	assert_false(coord_marker_valid(""));
	assert_false(coord_marker_valid("two\nlines"));
	assert_false(coord_marker_valid("tab\there"));
	assert_true(coord_marker_valid("login:"));
	assert_int_equal(coord_save(&coord_a), 0);
	/* A restart on the same image keeps generation, reboot and marker; a marker given to
	 * the seed wins; another image moves on, with the default marker. */
	cfg.image_id = "cccc";
	coord_init(&coord_b, &cfg);
	assert_int_equal(coord_b.generation, 3);
	assert_true(coord_b.reboot);
	assert_string_equal(coord_b.vm_marker, "v3-up");
	cfg.vm_marker = "login:";
	coord_init(&coord_b, &cfg);
	assert_string_equal(coord_b.vm_marker, "login:");
	cfg.vm_marker = NULL;
	cfg.image_id = "dddd";
	coord_init(&coord_b, &cfg);
	assert_int_equal(coord_b.generation, 4);
	assert_false(coord_b.reboot);
	assert_string_equal(coord_b.image_id, "dddd");
	assert_string_equal(coord_b.vm_marker, "");
	/* A host registering on an older generation's history starts a new one. */
	reg_host(&coord_b, 1, 6000);
	assert_int_equal(coord_host(&coord_b, 1)->generation, 4);
	assert_int_equal(coord_host(&coord_b, 1)->nstages, 1);
	unlink(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_binary_tree),
		cmocka_unit_test(test_chain),
		cmocka_unit_test(test_reregister_keeps_id),
		cmocka_unit_test(test_bad_registrations),
		cmocka_unit_test(test_kv_parse),
		cmocka_unit_test(test_expire_and_reparent),
		cmocka_unit_test(test_stages_and_vms),
		cmocka_unit_test(test_subnet_grouping),
		cmocka_unit_test(test_persistence),
		cmocka_unit_test(test_generations),
	};
	return cmocka_run_group_tests_name("coord", tests, NULL, NULL);
}
