/* Unit tests: TFTP request parsing, option negotiation, block numbering, and the confined
 * open the server reads files through (pxe/tftp.c, lib/fs.c). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/fs.h"
#include "pxe/tftp.h"

/* Builds a request from NUL-separated text: "\0\1" opcode then "name\0mode\0opt\0val\0". */
static size_t pkt(uint8_t *buf, int opcode, const char *body, size_t body_len)
{
	buf[0] = (uint8_t)(opcode >> 8);
	buf[1] = (uint8_t)opcode;
	memcpy(buf + 2, body, body_len);
	return 2 + body_len;
}

#define BODY(s) (s), sizeof(s) - 1

struct parse_case {
	const char *name;
	int opcode;
	const char *body;
	size_t body_len;
	int ok;
	int error_code;		/* when !ok */
};

static void test_parse_table(void **state)
{
	static const struct parse_case cases[] = {
		{ "plain RRQ", TFTP_RRQ, BODY("undionly.kpxe\0octet\0"), 1, 0 },
		{ "mode is case-insensitive", TFTP_RRQ, BODY("a\0OcTeT\0"), 1, 0 },
		{ "netascii served as octet", TFTP_RRQ, BODY("a\0netascii\0"), 1, 0 },
		{ "mail mode", TFTP_RRQ, BODY("a\0mail\0"), 0, TFTP_EBADOP },
		{ "WRQ parses", TFTP_WRQ, BODY("a\0octet\0"), 1, 0 },
		{ "DATA is no request", TFTP_DATA, BODY("a\0octet\0"), 0, TFTP_EBADOP },
		{ "OACK is no request", TFTP_OACK, BODY("a\0octet\0"), 0, TFTP_EBADOP },
		{ "name not terminated", TFTP_RRQ, BODY("abc"), 0, TFTP_EBADOP },
		{ "mode not terminated", TFTP_RRQ, BODY("abc\0octet"), 0, TFTP_EBADOP },
		{ "mode missing", TFTP_RRQ, BODY("abc\0"), 0, TFTP_EBADOP },
		{ "empty name", TFTP_RRQ, BODY("\0octet\0"), 0, TFTP_EBADOP },
		{ "too short", TFTP_RRQ, BODY("a"), 0, TFTP_EBADOP },
		{ "truncated option dropped", TFTP_RRQ, BODY("a\0octet\0blksize\0"), 1, 0 },
		{ "option name unterminated", TFTP_RRQ, BODY("a\0octet\0blks"), 1, 0 },
	};
	uint8_t buf[2048];
	struct tftp_request req;

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const struct parse_case *c = &cases[i];
		size_t len = pkt(buf, c->opcode, c->body, c->body_len);
		int rc = tftp_parse_request(buf, len, &req);

		if (c->ok != (rc == 0))
			fail_msg("case '%s': rc %d (%s)", c->name, rc, req.error ? req.error : "");
		if (!c->ok && req.error_code != c->error_code)
			fail_msg("case '%s': error code %d, want %d", c->name, req.error_code,
				 c->error_code);
	}
}

static void test_parse_limits(void **state)
{
	uint8_t buf[TFTP_REQUEST_MAX + 64];
	struct tftp_request req;
	size_t len;

	/* A 255-character name is the longest taken. */
	buf[0] = 0;
	buf[1] = TFTP_RRQ;
	memset(buf + 2, 'n', TFTP_NAME_MAX);
	memcpy(buf + 2 + TFTP_NAME_MAX, "\0octet", 7);
	len = 2 + TFTP_NAME_MAX + 7;
	assert_int_equal(tftp_parse_request(buf, len, &req), 0);
	assert_int_equal(strlen(req.filename), TFTP_NAME_MAX);
	memset(buf + 2, 'n', TFTP_NAME_MAX + 1);
	memcpy(buf + 2 + TFTP_NAME_MAX + 1, "\0octet", 7);
	assert_true(tftp_parse_request(buf, len + 1, &req) < 0);
	/* A request over the maximum size. */
	memset(buf, 0, sizeof buf);
	buf[1] = TFTP_RRQ;
	buf[2] = 'a';
	assert_true(tftp_parse_request(buf, TFTP_REQUEST_MAX + 1, &req) < 0);
}

struct option_case {
	const char *name;
	const char *opts;	/* "name\0value\0..." */
	size_t opts_len;
	int blksize, tsize, timeout, windowsize;	/* expected value, -1: absent */
};

static void test_options_table(void **state)
{
	static const struct option_case cases[] = {
		{ "none", BODY(""), -1, -1, -1, -1 },
		{ "blksize 1468", BODY("blksize\0" "1468\0"), 1468, -1, -1, -1 },
		{ "blksize minimum", BODY("blksize\0" "8\0"), 8, -1, -1, -1 },
		{ "blksize below minimum", BODY("blksize\0" "7\0"), -1, -1, -1, -1 },
		{ "blksize maximum", BODY("blksize\0" "65464\0"), 65464, -1, -1, -1 },
		{ "blksize above maximum", BODY("blksize\0" "70000\0"), 65464, -1, -1, -1 },
		{ "blksize huge", BODY("blksize\0" "99999999999999999999\0"), -1, -1, -1, -1 },
		{ "blksize signed", BODY("blksize\0" "-512\0"), -1, -1, -1, -1 },
		{ "blksize empty", BODY("blksize\0\0"), -1, -1, -1, -1 },
		{ "name case", BODY("BlkSize\0" "1024\0"), 1024, -1, -1, -1 },
		{ "first wins", BODY("blksize\0" "1024\0blksize\0" "2048\0"), 1024, -1, -1, -1 },
		{ "tsize", BODY("tsize\0" "0\0"), -1, 0, -1, -1 },
		{ "timeout 1", BODY("timeout\0" "1\0"), -1, -1, 1, -1 },
		{ "timeout 255", BODY("timeout\0" "255\0"), -1, -1, 255, -1 },
		{ "timeout 0", BODY("timeout\0" "0\0"), -1, -1, -1, -1 },
		{ "timeout 256", BODY("timeout\0" "256\0"), -1, -1, -1, -1 },
		{ "windowsize 16", BODY("windowsize\0" "16\0"), -1, -1, -1, 16 },
		{ "windowsize 0", BODY("windowsize\0" "0\0"), -1, -1, -1, -1 },
		{ "windowsize 65536", BODY("windowsize\0" "65536\0"), -1, -1, -1, -1 },
		{ "unknown ignored", BODY("multicast\0\0blksize\0" "1024\0"), 1024, -1, -1, -1 },
		{ "all", BODY("blksize\0" "1432\0tsize\0" "0\0timeout\0" "3\0windowsize\0" "4\0"),
		  1432, 0, 3, 4 },
	};
	uint8_t buf[1024];
	struct tftp_request req;

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const struct option_case *c = &cases[i];
		size_t len = pkt(buf, TFTP_RRQ, "f\0octet", 8);

		memcpy(buf + len, c->opts, c->opts_len);
		len += c->opts_len;
		assert_int_equal(tftp_parse_request(buf, len, &req), 0);
		if ((c->blksize < 0 ? !req.has_blksize : req.has_blksize &&
		     (int)req.blksize == c->blksize) &&
		    (c->tsize < 0 ? !req.has_tsize : req.has_tsize && (int)req.tsize == c->tsize) &&
		    (c->timeout < 0 ? !req.has_timeout : req.has_timeout &&
		     (int)req.timeout == c->timeout) &&
		    (c->windowsize < 0 ? !req.has_windowsize : req.has_windowsize &&
		     (int)req.windowsize == c->windowsize))
			continue;
		fail_msg("case '%s': blksize %d/%u tsize %d timeout %d/%u window %d/%u", c->name,
			 req.has_blksize, req.blksize, req.has_tsize, req.has_timeout, req.timeout,
			 req.has_windowsize, req.windowsize);
	}
}

/* Finds "name\0value\0" in an OACK; the value or NULL. */
static const char *oack_get(const uint8_t *oack, size_t len, const char *name)
{
	const char *p = (const char *)oack + 2, *end = (const char *)oack + len;

	while (p < end) {
		const char *val = p + strlen(p) + 1;

		if (strcmp(p, name) == 0)
			return val;
		p = val + strlen(val) + 1;
	}
	return NULL;
}

static void test_negotiate(void **state)
{
	uint8_t buf[256], oack[512];
	struct tftp_request req;
	struct tftp_params p;
	size_t len, n;

	/* No options: no OACK, RFC 1350 defaults. */
	len = pkt(buf, TFTP_RRQ, "f\0octet", 8);
	assert_int_equal(tftp_parse_request(buf, len, &req), 0);
	assert_int_equal(tftp_negotiate(&req, 1000, &p, oack, sizeof oack), 0);
	assert_int_equal(p.blksize, 512);
	assert_int_equal(p.windowsize, 1);
	assert_int_equal(p.timeout_ms, TFTP_TIMEOUT_DEFAULT_MS);
	assert_false(p.oack);
	/* Everything: tsize answers with the file's size, windowsize capped. */
	static const char all[] = "f\0octet\0tsize\0" "0\0blksize\0" "1432\0timeout\0" "2\0"
				  "windowsize\0" "1000\0";
	len = pkt(buf, TFTP_RRQ, all, sizeof all - 1);
	assert_int_equal(tftp_parse_request(buf, len, &req), 0);
	n = tftp_negotiate(&req, 74213, &p, oack, sizeof oack);
	assert_true(n > 2);
	assert_int_equal(oack[0], 0);
	assert_int_equal(oack[1], TFTP_OACK);
	assert_string_equal(oack_get(oack, n, "tsize"), "74213");
	assert_string_equal(oack_get(oack, n, "blksize"), "1432");
	assert_string_equal(oack_get(oack, n, "timeout"), "2");
	assert_string_equal(oack_get(oack, n, "windowsize"), "64");
	assert_true(p.oack);
	assert_int_equal(p.blksize, 1432);
	assert_int_equal(p.windowsize, TFTP_WINDOW_MAX);
	assert_int_equal(p.timeout_ms, 2000);
	/* An empty file: tsize is left out (curl refuses "tsize 0"), so no OACK at all. */
	static const char tsize_only[] = "f\0octet\0tsize\0" "0\0";
	len = pkt(buf, TFTP_RRQ, tsize_only, sizeof tsize_only - 1);
	assert_int_equal(tftp_parse_request(buf, len, &req), 0);
	assert_int_equal(tftp_negotiate(&req, 0, &p, oack, sizeof oack), 0);
	assert_true(tftp_negotiate(&req, 1, &p, oack, sizeof oack) > 0);
	/* Only unknown options: no OACK (RFC 2347: the client then uses the defaults). */
	static const char unknown[] = "f\0octet\0foo\0" "1\0";
	len = pkt(buf, TFTP_RRQ, unknown, sizeof unknown - 1);
	assert_int_equal(tftp_parse_request(buf, len, &req), 0);
	assert_int_equal(tftp_negotiate(&req, 1, &p, oack, sizeof oack), 0);
	/* A too small OACK buffer drops the options that do not fit. */
	len = pkt(buf, TFTP_RRQ, all, sizeof all - 1);
	assert_int_equal(tftp_parse_request(buf, len, &req), 0);
	n = tftp_negotiate(&req, 74213, &p, oack, 16);
	assert_int_equal(n, 15);		/* "\0\6blksize\0" "1432\0" and no more */
	assert_int_equal(p.blksize, 1432);
	assert_null(oack_get(oack, n, "tsize"));
	assert_int_equal(tftp_negotiate(&req, 74213, &p, oack, 10), 0);
	assert_int_equal(p.blksize, 512);
}

static void test_error_packet(void **state)
{
	uint8_t buf[16];
	size_t n = tftp_build_error(buf, sizeof buf, TFTP_EACCESS, "access violation, long");

	assert_int_equal(n, sizeof buf);
	assert_int_equal(buf[1], TFTP_ERROR);
	assert_int_equal(buf[3], TFTP_EACCESS);
	assert_int_equal(buf[n - 1], '\0');
	assert_int_equal(tftp_build_error(buf, 4, 0, "x"), 0);
}

/* Block numbers wrap from 65535 to 0; a file over 32 MiB at 512 bytes needs it. */
static void test_blocks_and_rollover(void **state)
{
	static const struct {
		uint64_t size;
		unsigned blksize;
		uint64_t blocks;
	} counts[] = {
		{ 0, 512, 1 }, { 1, 512, 1 }, { 511, 512, 1 }, { 512, 512, 2 }, { 513, 512, 2 },
		{ 74213, 1432, 52 }, { 33554432, 512, 65537 }, { 40000000, 512, 78126 },
		{ 65464, 65464, 2 },
	};
	uint64_t b;

	for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++)
		assert_int_equal(tftp_block_count(counts[i].size, counts[i].blksize),
				 counts[i].blocks);
	assert_int_equal(tftp_wire_block(1), 1);
	assert_int_equal(tftp_wire_block(65535), 65535);
	assert_int_equal(tftp_wire_block(65536), 0);
	assert_int_equal(tftp_wire_block(65537), 1);
	assert_int_equal(tftp_wire_block(131072), 0);
	/* Lock-step across the wrap. */
	assert_int_equal(tftp_ack_block(65535, 65536, 0, &b), 0);
	assert_int_equal(b, 65536);
	assert_int_equal(tftp_ack_block(65536, 65537, 1, &b), 0);
	assert_int_equal(b, 65537);
	/* A window straddling the wrap: an ACK in its middle. */
	assert_int_equal(tftp_ack_block(65530, 65540, 2, &b), 0);
	assert_int_equal(b, 65538);
	assert_int_equal(tftp_ack_block(65530, 65540, 65533, &b), 0);
	assert_int_equal(b, 65533);
	/* Duplicates and strays acknowledge nothing. */
	assert_int_equal(tftp_ack_block(65530, 65540, 65530, &b), -1);
	assert_int_equal(tftp_ack_block(65530, 65540, 5, &b), -1);
	assert_int_equal(tftp_ack_block(10, 10, 10, &b), -1);
	assert_int_equal(tftp_ack_block(0, 1, 0, &b), -1);	/* ACK 0 is the OACK's */
}

/* --- confinement ------------------------------------------------------------------------ */

static char root[128], outside[160];

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static int setup_root(void **state)
{
	char path[PATH_MAX + 64];

	snprintf(root, sizeof root, "/tmp/virtman-test-tftp-%d", (int)getpid());
	snprintf(outside, sizeof outside, "%s-outside", root);
	mkdir(root, 0755);
	snprintf(path, sizeof path, "%s/sub", root);
	mkdir(path, 0755);
	snprintf(path, sizeof path, "%s/file", root);
	write_file(path, "file");
	snprintf(path, sizeof path, "%s/sub/inner", root);
	write_file(path, "inner");
	write_file(outside, "secret");
	snprintf(path, sizeof path, "%s/link-in", root);
	if (symlink("sub/inner", path) < 0)
		return -1;
	snprintf(path, sizeof path, "%s/link-out", root);
	if (symlink(outside, path) < 0)
		return -1;
	snprintf(path, sizeof path, "%s/link-up", root);
	if (symlink("../", path) < 0)
		return -1;
	snprintf(path, sizeof path, "%s/fifo", root);
	return mkfifo(path, 0600);
}

static int teardown_root(void **state)
{
	char cmd[2 * PATH_MAX + 32];

	snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s'", root, outside);
	return system(cmd) == 0 ? 0 : -1;
}

struct open_case {
	const char *path;
	const char *content;	/* expected, or NULL for a refusal */
	int err;		/* the refusal's errno (0: any) */
};

static void test_open_beneath(void **state)
{
	static const struct open_case cases[] = {
		{ "file", "file", 0 },
		{ "/file", "file", 0 },			/* absolute: under the root */
		{ "//file", "file", 0 },
		{ "sub/inner", "inner", 0 },
		{ "sub//inner", "inner", 0 },
		{ "./file", "file", 0 },
		{ "sub/./inner", "inner", 0 },
		{ "link-in", "inner", 0 },		/* a symlink that stays inside */
		{ "../file", NULL, EACCES },
		{ "sub/../file", NULL, EACCES },
		{ "sub/..", NULL, EACCES },
		{ "..", NULL, EACCES },
		{ "/../../etc/passwd", NULL, EACCES },
		{ "link-out", NULL, EACCES },		/* a symlink out of the root */
		{ "link-up/file", NULL, EACCES },
		{ "sub", NULL, EISDIR },
		{ "/", NULL, ENOENT },
		{ "", NULL, ENOENT },
		{ "missing", NULL, ENOENT },
		{ "fifo", NULL, EACCES },		/* not a regular file: never opened for read */
		{ "...", NULL, ENOENT },		/* a legal, absent name */
	};
	char buf[16];
	int rootfd = open(root, O_PATH | O_DIRECTORY);

	assert_true(rootfd >= 0);
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const struct open_case *c = &cases[i];
		int fd = fs_open_beneath(rootfd, c->path);

		if (c->content) {
			if (fd < 0)
				fail_msg("'%s': refused with %d", c->path, fd);
			ssize_t n = read(fd, buf, sizeof buf - 1);

			assert_true(n >= 0);
			buf[n] = '\0';
			assert_string_equal(buf, c->content);
			close(fd);
		} else {
			if (fd >= 0)
				fail_msg("'%s': opened, expected a refusal", c->path);
			if (c->err && fd != -c->err)
				fail_msg("'%s': error %d, want %d", c->path, -fd, c->err);
		}
	}
	close(rootfd);
}

static void test_path_check(void **state)
{
	static const struct {
		const char *path;
		int rc;
	} cases[] = {
		{ "a", 0 }, { "/a/b", 0 }, { "a..b", 0 }, { "..a", 0 }, { "a/..b/c", 0 },
		{ "..", -EACCES }, { "a/..", -EACCES }, { "a/../b", -EACCES }, { "/..", -EACCES },
		{ "", -ENOENT }, { "///", -ENOENT },
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		if (fs_path_check(cases[i].path) != cases[i].rc)
			fail_msg("'%s': %d, want %d", cases[i].path, fs_path_check(cases[i].path),
				 cases[i].rc);
}

static void test_write_atomic(void **state)
{
	char path[256], buf[16];
	int fd;
	ssize_t n;

	snprintf(path, sizeof path, "%s/state", root);
	assert_int_equal(fs_write_atomic(path, "one", 3, 0600), 0);
	assert_int_equal(fs_write_atomic(path, "two!", 4, 0600), 0);
	fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	n = read(fd, buf, sizeof buf);
	close(fd);
	assert_int_equal(n, 4);
	assert_memory_equal(buf, "two!", 4);
	snprintf(path, sizeof path, "%s/no/such/dir/state", root);
	assert_true(fs_write_atomic(path, "x", 1, 0600) < 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_table),
		cmocka_unit_test(test_parse_limits),
		cmocka_unit_test(test_options_table),
		cmocka_unit_test(test_negotiate),
		cmocka_unit_test(test_error_packet),
		cmocka_unit_test(test_blocks_and_rollover),
		cmocka_unit_test_setup_teardown(test_open_beneath, setup_root, teardown_root),
		cmocka_unit_test(test_path_check),
		cmocka_unit_test_setup_teardown(test_write_atomic, setup_root, teardown_root),
	};
	return cmocka_run_group_tests_name("tftp", tests, NULL, NULL);
}
