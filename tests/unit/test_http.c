/* Unit tests: HTTP request heads and byte ranges (lib/http.c), the iPXE boot script and its
 * token (pxe/boot.c). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/http.h"
#include "pxe/boot.h"

struct head_case {
	const char *head;
	int status;		/* 0: parsed */
	const char *method, *path, *query, *range;
};

static void test_request_table(void **state)
{
	static const struct head_case cases[] = {
		{ "GET / HTTP/1.1\r\n\r\n", 0, "GET", "/", "", NULL },
		{ "GET /boot.ipxe?mac=52:54:00:00:00:01 HTTP/1.1\r\nHost: x\r\n\r\n", 0, "GET",
		  "/boot.ipxe", "mac=52:54:00:00:00:01", NULL },
		{ "HEAD /boot/vmlinuz HTTP/1.0\r\nRange: bytes=0-99\r\n\r\n", 0, "HEAD",
		  "/boot/vmlinuz", "", "bytes=0-99" },
		{ "GET /a HTTP/1.1\r\nrAnGe:   bytes=5-  \r\n\r\n", 0, "GET", "/a", "", "bytes=5-" },
		{ "GET /a HTTP/1.1\r\nX-Empty:\r\n\r\n", 0, "GET", "/a", "", NULL },
		{ "GET /a HTTP/2.0\r\n\r\n", 505, NULL, NULL, NULL, NULL },
		{ "GET /a HTTP/1.1 extra\r\n\r\n", 505, NULL, NULL, NULL, NULL },
		{ "GET /a FTP/1.0\r\n\r\n", 400, NULL, NULL, NULL, NULL },
		{ "GET /a\r\n\r\n", 400, NULL, NULL, NULL, NULL },
		{ " GET /a HTTP/1.1\r\n\r\n", 400, NULL, NULL, NULL, NULL },
		{ "GET  /a HTTP/1.1\r\n\r\n", 400, NULL, NULL, NULL, NULL },
		{ "G(T /a HTTP/1.1\r\n\r\n", 400, NULL, NULL, NULL, NULL },
		{ "GET a HTTP/1.1\r\n\r\n", 400, NULL, NULL, NULL, NULL },
		{ "GET http://x/a HTTP/1.1\r\n\r\n", 400, NULL, NULL, NULL, NULL },
		{ "GET /../etc/passwd HTTP/1.1\r\n\r\n", 400, NULL, NULL, NULL, NULL },
		{ "GET /a/.. HTTP/1.1\r\n\r\n", 400, NULL, NULL, NULL, NULL },
		{ "GET /a\x7f HTTP/1.1\r\n\r\n", 400, NULL, NULL, NULL, NULL },
		{ "GET /a HTTP/1.1\r\nNoColon\r\n\r\n", 400, NULL, NULL, NULL, NULL },
		{ "GET /a HTTP/1.1\r\n: novalue\r\n\r\n", 400, NULL, NULL, NULL, NULL },
		{ "GET /a HTTP/1.1\r\nBad Name: x\r\n\r\n", 400, NULL, NULL, NULL, NULL },
		{ "GET /a HTTP/1.1\r\nA: b\r\n folded\r\n\r\n", 400, NULL, NULL, NULL, NULL },
		{ "GET /a HTTP/1.1\r\nA: b\rc\r\n\r\n", 400, NULL, NULL, NULL, NULL },
		{ "GET /a HTTP/1.1\r\nA: b\nc: d\r\n\r\n", 400, NULL, NULL, NULL, NULL },
		{ "GET /a HTTP/1.1\r\nRange: bytes=0-1\r\nRange: bytes=2-3\r\n\r\n", 400, NULL,
		  NULL, NULL, NULL },
		{ "GET /a HTTP/1.1\r\n", 400, NULL, NULL, NULL, NULL },	/* incomplete */
		{ "\r\n\r\n", 400, NULL, NULL, NULL, NULL },
		{ "", 400, NULL, NULL, NULL, NULL },
	};
	struct http_request req;
	char buf[512];

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const struct head_case *c = &cases[i];
		size_t len = strlen(c->head);

		memcpy(buf, c->head, len + 1);
		memset(&req, 0, sizeof req);
		int status = http_request_parse(buf, len, &req);

		if (status != c->status)
			fail_msg("case %zu '%s': status %d, want %d", i, c->head, status, c->status);
		if (status)
			continue;
		assert_string_equal(req.method, c->method);
		assert_string_equal(req.path, c->path);
		assert_string_equal(req.query, c->query);
		if (c->range)
			assert_string_equal(req.range, c->range);
		else
			assert_null(req.range);
	}
}

static void test_request_limits(void **state)
{
	static char buf[HTTP_HEAD_MAX + 1];
	struct http_request req;
	size_t len = 0;

	len += (size_t)snprintf(buf, sizeof buf, "GET / HTTP/1.1\r\n");
	for (int i = 0; i < HTTP_HEADERS_MAX; i++)
		len += (size_t)snprintf(buf + len, sizeof buf - len, "X-%d: y\r\n", i);
	memcpy(buf + len, "\r\n", 3);
	assert_int_equal(http_request_parse(buf, len + 2, &req), 0);
	len = (size_t)snprintf(buf, sizeof buf, "GET / HTTP/1.1\r\n");
	for (int i = 0; i <= HTTP_HEADERS_MAX; i++)
		len += (size_t)snprintf(buf + len, sizeof buf - len, "X-%d: y\r\n", i);
	memcpy(buf + len, "\r\n", 3);
	assert_int_equal(http_request_parse(buf, len + 2, &req), 431);
	/* A NUL inside the head. */
	memcpy(buf, "GET / HTTP/1.1\r\nA: \0\r\n\r\n", 25);
	assert_int_equal(http_request_parse(buf, 24, &req), 400);
}

static void test_request_body_fields(void **state)
{
	static const struct {
		const char *head;
		int status;
		uint64_t length;
	} cases[] = {
		{ "POST /a HTTP/1.1\r\nContent-Length: 12\r\n\r\n", 0, 12 },
		{ "POST /a HTTP/1.1\r\ncontent-length:0\r\n\r\n", 0, 0 },
		{ "POST /a HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", 0, 5 },
		{ "POST /a HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400, 0 },
		{ "POST /a HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400, 0 },
		{ "POST /a HTTP/1.1\r\nContent-Length: 1e3\r\n\r\n", 400, 0 },
		{ "POST /a HTTP/1.1\r\nContent-Length: \r\n\r\n", 400, 0 },
		{ "POST /a HTTP/1.1\r\nContent-Length: 65536\r\n\r\n", 0, 65536 },
		{ "POST /a HTTP/1.1\r\nContent-Length: 65537\r\n\r\n", 413, 0 },
		{ "POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 501, 0 },
		{ "POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
		  400, 0 },
	};
	struct http_request req;
	char buf[256];

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		size_t len = strlen(cases[i].head);

		memcpy(buf, cases[i].head, len + 1);
		int status = http_request_parse(buf, len, &req);

		if (status != cases[i].status ||
		    (!status && req.content_length != cases[i].length))
			fail_msg("case %zu: status %d length %llu", i, status,
				 (unsigned long long)req.content_length);
	}
}

struct range_case {
	const char *value;
	uint64_t size;
	int rc;
	uint64_t first, last;
};

static void test_range_table(void **state)
{
	static const struct range_case cases[] = {
		{ "bytes=0-99", 1000, 1, 0, 99 },
		{ "bytes=0-0", 1000, 1, 0, 0 },
		{ "bytes=100-", 1000, 1, 100, 999 },
		{ "bytes=999-", 1000, 1, 999, 999 },
		{ "bytes=500-5000", 1000, 1, 500, 999 },	/* clamped to the end */
		{ "bytes=-100", 1000, 1, 900, 999 },
		{ "bytes=-5000", 1000, 1, 0, 999 },
		{ "BYTES=1-2", 1000, 1, 1, 2 },
		{ "bytes= 1-2 ", 1000, 1, 1, 2 },
		{ "bytes=1000-", 1000, -1, 0, 0 },		/* starts past the end: 416 */
		{ "bytes=1000-2000", 1000, -1, 0, 0 },
		{ "bytes=-0", 1000, -1, 0, 0 },
		{ "bytes=0-", 0, -1, 0, 0 },			/* empty body: nothing to satisfy */
		{ "bytes=-1", 0, -1, 0, 0 },
		{ "bytes=5-4", 1000, 0, 0, 0 },			/* invalid: ignored, 200 */
		{ "bytes=a-b", 1000, 0, 0, 0 },
		{ "bytes=-", 1000, 0, 0, 0 },
		{ "bytes=1", 1000, 0, 0, 0 },
		{ "bytes=0-1,5-6", 1000, 0, 0, 0 },		/* multipart not offered: 200 */
		{ "items=0-1", 1000, 0, 0, 0 },
		{ "bytes=99999999999999999999-", 1000, 0, 0, 0 },
		{ "bytes=18446744073709551615-", 1000, 0, 0, 0 },	/* 20 digits: refused */
		{ "bytes=9999999999999999999-", 1000, -1, 0, 0 },
		{ "", 1000, 0, 0, 0 },
	};
	uint64_t first, last;

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const struct range_case *c = &cases[i];
		int rc = http_range_parse(c->value, c->size, &first, &last);

		if (rc != c->rc || (rc == 1 && (first != c->first || last != c->last)))
			fail_msg("'%s' size %llu: rc %d [%llu, %llu], want %d [%llu, %llu]",
				 c->value, (unsigned long long)c->size, rc,
				 (unsigned long long)first, (unsigned long long)last, c->rc,
				 (unsigned long long)c->first, (unsigned long long)c->last);
	}
	assert_int_equal(http_range_parse(NULL, 10, &first, &last), 0);
}

static const struct boot_config boot_cfg = {
	.http_base = "http://10.213.0.1:8080",
	.kernel = "/boot/vmlinuz",
	.initrd = "/boot/initrd.img",
	.append = "quiet",
	.token = "0123456789abcdef0123456789abcdef",
};

static void test_boot_script(void **state)
{
	static const struct {
		const char *query;
		int rc;
		const char *mac;	/* expected virtman.mac= value */
	} cases[] = {
		{ "mac=52:54:00:12:34:56", 0, "virtman.mac=52:54:00:12:34:56 " },
		{ "mac=52%3A54%3A00%3A12%3A34%3A56", 0, "virtman.mac=52:54:00:12:34:56 " },
		{ "x=1&mac=52-54-00-AB-CD-EF&y=2", 0, "virtman.mac=52:54:00:ab:cd:ef " },
		{ "", 0, "virtman.mac=${netX/mac} " },
		{ "other=1", 0, "virtman.mac=${netX/mac} " },
		{ "mac=", -1, NULL },
		{ "mac=52:54:00:12:34", -1, NULL },
		{ "mac=52:54:00:12:34:56:78", -1, NULL },
		{ "mac=52:54:00:12:34:5%", -1, NULL },
		{ "mac=52:54:00:12:34:5%zz", -1, NULL },
		{ "mac=%0a", -1, NULL },
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct strbuf sb = { 0 };
		int rc = boot_script(&boot_cfg, cases[i].query, &sb);

		if ((rc < 0) != (cases[i].rc < 0))
			fail_msg("query '%s': rc %d", cases[i].query, rc);
		if (rc == 0) {
			assert_non_null(strstr(sb.data, "#!ipxe\n"));
			assert_true(strncmp(sb.data, "#!ipxe\n", 7) == 0);
			assert_non_null(strstr(sb.data, "kernel http://10.213.0.1:8080/boot/vmlinuz "));
			assert_non_null(strstr(sb.data, "initrd=initrd.img "));
			assert_non_null(strstr(sb.data, "virtman.seed=http://10.213.0.1:8080 "));
			assert_non_null(strstr(sb.data,
					       "virtman.token=0123456789abcdef0123456789abcdef "));
			assert_non_null(strstr(sb.data, "console=ttyS0 quiet\n"));
			assert_non_null(strstr(sb.data, cases[i].mac));
			assert_non_null(strstr(sb.data,
					       "\ninitrd http://10.213.0.1:8080/boot/initrd.img\n"));
			assert_non_null(strstr(sb.data, "\nboot\n"));
		}
		sb_free(&sb);
	}
}

static void test_boot_token(void **state)
{
	char dir[64], path[128], a[BOOT_TOKEN_LEN + 1], b[BOOT_TOKEN_LEN + 1];
	struct stat st;
	FILE *f;

	snprintf(dir, sizeof dir, "/tmp/virtman-test-token-%d", (int)getpid());
	assert_int_equal(mkdir(dir, 0700), 0);
	assert_int_equal(boot_token_load(dir, a), 0);
	assert_int_equal(strlen(a), BOOT_TOKEN_LEN);
	assert_int_equal(strspn(a, "0123456789abcdef"), BOOT_TOKEN_LEN);
	snprintf(path, sizeof path, "%s/boot-token", dir);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(boot_token_load(dir, b), 0);	/* kept across restarts */
	assert_string_equal(a, b);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs("not a token\n", f);
	fclose(f);
	assert_int_equal(boot_token_load(dir, b), 0);	/* replaced when damaged */
	assert_string_not_equal(a, b);
	assert_int_equal(strspn(b, "0123456789abcdef"), BOOT_TOKEN_LEN);
	unlink(path);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_request_table),
		cmocka_unit_test(test_request_limits),
		cmocka_unit_test(test_request_body_fields),
		cmocka_unit_test(test_range_table),
		cmocka_unit_test(test_boot_script),
		cmocka_unit_test(test_boot_token),
	};
	return cmocka_run_group_tests_name("http", tests, NULL, NULL);
}
