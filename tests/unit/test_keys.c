/* Unit tests: iSCSI text key parsing and login negotiation (iscsi/keys.c). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <string.h>

#include "iscsi/keys.h"
#include "iscsi/pdu.h"

/* Looks up key in a NUL-separated answer; NULL when absent. */
static const char *answer_get(const struct strbuf *out, const char *key)
{
	size_t klen = strlen(key);

	for (size_t i = 0; i < out->len; i += strlen(out->data + i) + 1)
		if (strncmp(out->data + i, key, klen) == 0 && out->data[i + klen] == '=')
			return out->data + i + klen + 1;
	return NULL;
}

struct parse_case {
	const char *text;
	size_t len;
	int pairs;	/* expected count, or -1 for malformed */
};

static void test_parse_table(void **state)
{
	static const struct parse_case cases[] = {
		{ "A=1", 4, 1 },
		{ "A=1\0B=two", 10, 2 },
		{ "A=1\0\0\0", 6, 1 },			/* trailing NUL padding */
		{ "A=", 3, 1 },				/* empty value is allowed */
		{ "=1", 3, -1 },			/* empty key */
		{ "novalue", 8, -1 },			/* no '=' */
		{ "bad key=1", 10, -1 },		/* space in key */
		{ "", 0, 0 },
		{ "A=1", 3, -1 },			/* last pair without its NUL */
		{ "A=\xff\xfe", 5, -1 },		/* not UTF-8 */
		{ "A=\xc0\x80", 5, -1 },		/* overlong NUL */
		{ "A=\xc3\xa9", 5, 1 },		/* e acute: fine */
	};
	struct iscsi_kv kv[8];
	char buf[64];

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		memcpy(buf, cases[i].text, cases[i].len);
		int n = iscsi_keys_parse(buf, cases[i].len, kv, 8);

		if (cases[i].pairs < 0)
			assert_true(n < 0);
		else
			assert_int_equal(n, cases[i].pairs);
	}
}

static void test_parse_limits(void **state)
{
	static char buf[ISCSI_KEY_VALUE_MAX + 200];
	struct iscsi_kv kv[4];
	size_t n;

	/* A 64-character key is one too long. */
	memset(buf, 'K', 64);
	buf[64] = '=';
	buf[65] = '1';
	buf[66] = '\0';
	assert_true(iscsi_keys_parse(buf, 67, kv, 4) < 0);
	/* A 63-character key is fine. */
	memset(buf, 'K', 63);
	buf[63] = '=';
	buf[64] = '1';
	buf[65] = '\0';
	assert_int_equal(iscsi_keys_parse(buf, 66, kv, 4), 1);
	/* A value over the maximum, and one at it. */
	buf[0] = 'V';
	buf[1] = '=';
	memset(buf + 2, 'x', ISCSI_KEY_VALUE_MAX + 1);
	buf[2 + ISCSI_KEY_VALUE_MAX + 1] = '\0';
	n = 2 + ISCSI_KEY_VALUE_MAX + 2;
	assert_true(iscsi_keys_parse(buf, n, kv, 4) < 0);
	buf[2 + ISCSI_KEY_VALUE_MAX] = '\0';
	assert_int_equal(iscsi_keys_parse(buf, n - 1, kv, 4), 1);
	/* More pairs than room. */
	memcpy(buf, "A=1\0B=2\0C=3", 12);
	assert_true(iscsi_keys_parse(buf, 12, kv, 2) < 0);
}

static int negotiate(const char *text, size_t len, struct iscsi_negotiation *neg, struct strbuf *out)
{
	struct iscsi_kv kv[ISCSI_KEYS_MAX];
	char buf[1024];
	int n;

	memcpy(buf, text, len);
	n = iscsi_keys_parse(buf, len, kv, ISCSI_KEYS_MAX);
	assert_true(n >= 0);
	return iscsi_negotiate(neg, kv, n, out);
}

struct nego_case {
	const char *key_value;	/* one pair */
	const char *answer;	/* expected answer value */
};

static void test_negotiate_table(void **state)
{
	static const struct nego_case cases[] = {
		{ "HeaderDigest=CRC32C,None", "CRC32C" },
		{ "HeaderDigest=None,CRC32C", "None" },
		{ "DataDigest=MD5", "Reject" },
		{ "DataDigest=MD5,CRC32C", "CRC32C" },
		{ "InitialR2T=No", "Yes" },		/* OR with our Yes */
		{ "ImmediateData=Yes", "Yes" },		/* AND with our Yes */
		{ "ImmediateData=No", "No" },
		{ "ImmediateData=Maybe", "Reject" },
		{ "MaxConnections=8", "1" },
		{ "MaxBurstLength=262144", "262144" },
		{ "MaxBurstLength=99999999", "Reject" },	/* above 2^24-1 */
		{ "MaxBurstLength=abc", "Reject" },
		{ "FirstBurstLength=65536", "65536" },
		{ "DefaultTime2Wait=0", "2" },		/* maximum of both */
		{ "DefaultTime2Retain=20", "0" },	/* minimum of both */
		{ "MaxOutstandingR2T=16", "1" },
		{ "ErrorRecoveryLevel=2", "0" },
		{ "MaxRecvDataSegmentLength=65536", "262144" },	/* we declare ours */
		{ "IFMarker=Yes", "No" },
		{ "X-com.example.Foo=1", "NotUnderstood" },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct iscsi_negotiation neg = { 0 };
		struct strbuf out = { 0 };
		char key[64];
		const char *eq = strchr(cases[i].key_value, '=');

		iscsi_params_default(&neg.params);
		assert_int_equal(negotiate(cases[i].key_value, strlen(cases[i].key_value) + 1,
					   &neg, &out), ISCSI_LOGIN_OK);
		memcpy(key, cases[i].key_value, (size_t)(eq - cases[i].key_value));
		key[eq - cases[i].key_value] = '\0';
		const char *got = answer_get(&out, key);

		assert_non_null(got);
		assert_string_equal(got, cases[i].answer);
		sb_free(&out);
	}
}

static void test_negotiate_applies(void **state)
{
	static const char text[] = "HeaderDigest=CRC32C\0DataDigest=CRC32C\0"
				   "MaxRecvDataSegmentLength=131072\0MaxBurstLength=65536\0"
				   "FirstBurstLength=262144\0ImmediateData=No";
	struct iscsi_negotiation neg = { 0 };
	struct strbuf out = { 0 };

	iscsi_params_default(&neg.params);
	assert_int_equal(negotiate(text, sizeof text, &neg, &out), ISCSI_LOGIN_OK);
	assert_true(neg.params.header_digest);
	assert_true(neg.params.data_digest);
	assert_int_equal(neg.params.initiator_mrdsl, 131072);
	assert_int_equal(neg.params.max_burst, 65536);
	assert_int_equal(neg.params.first_burst, 65536);	/* clamped to MaxBurstLength */
	assert_false(neg.params.immediate_data);
	assert_true(neg.mrdsl_declared);
	sb_free(&out);
}

static void test_negotiate_identity(void **state)
{
	static const char disc[] = "InitiatorName=iqn.2026-11.org.test:a\0SessionType=Discovery";
	static const char norm[] = "InitiatorName=iqn.x:y\0TargetName=iqn.x:t\0AuthMethod=CHAP,None";
	static const char chap[] = "InitiatorName=iqn.x:y\0AuthMethod=CHAP";
	static const char badtype[] = "SessionType=Weird";
	struct iscsi_negotiation neg = { 0 };
	struct strbuf out = { 0 };

	assert_int_equal(negotiate(disc, sizeof disc, &neg, &out), ISCSI_LOGIN_OK);
	assert_true(neg.discovery);
	assert_true(neg.have_initiator_name);
	assert_string_equal(neg.initiator_name, "iqn.2026-11.org.test:a");
	sb_free(&out);

	memset(&neg, 0, sizeof neg);
	assert_int_equal(negotiate(norm, sizeof norm, &neg, &out), ISCSI_LOGIN_OK);
	assert_false(neg.discovery);
	assert_string_equal(neg.target_name, "iqn.x:t");
	assert_string_equal(answer_get(&out, "AuthMethod"), "None");
	sb_free(&out);

	memset(&neg, 0, sizeof neg);
	assert_int_equal(negotiate(chap, sizeof chap, &neg, &out), ISCSI_LOGIN_AUTH_FAILED);
	sb_free(&out);

	memset(&neg, 0, sizeof neg);
	assert_int_equal(negotiate(badtype, sizeof badtype, &neg, &out),
			 ISCSI_LOGIN_INITIATOR_ERROR);
	sb_free(&out);
}

static void test_negotiate_long_name(void **state)
{
	char text[400] = "InitiatorName=";
	struct iscsi_negotiation neg = { 0 };
	struct strbuf out = { 0 };
	size_t n = strlen(text);

	memset(text + n, 'a', ISCSI_NAME_MAX + 1);
	n += ISCSI_NAME_MAX + 1;
	text[n++] = '\0';
	assert_int_equal(negotiate(text, n, &neg, &out), ISCSI_LOGIN_INITIATOR_ERROR);
	sb_free(&out);
}

static void test_lun_codec(void **state)
{
	static const uint64_t luns[] = { 0, 1, 255, 256, 16383 };
	uint8_t raw[8];

	for (size_t i = 0; i < sizeof luns / sizeof luns[0]; i++) {
		iscsi_lun_encode(luns[i], raw);
		assert_int_equal(iscsi_lun_decode(raw), luns[i]);
	}
	memset(raw, 0, sizeof raw);
	raw[7] = 1;	/* second-level addressing we do not use */
	assert_true(iscsi_lun_decode(raw) == ~(uint64_t)0);
	memset(raw, 0, sizeof raw);
	raw[0] = 0x80;	/* logical unit addressing */
	assert_true(iscsi_lun_decode(raw) == ~(uint64_t)0);
}

static void test_serial_numbers(void **state)
{
	assert_true(sn_lt(1, 2));
	assert_false(sn_lt(2, 1));
	assert_false(sn_lt(5, 5));
	assert_true(sn_lt(0xfffffff0u, 3));	/* wraps */
	assert_false(sn_lt(3, 0xfffffff0u));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_table),
		cmocka_unit_test(test_parse_limits),
		cmocka_unit_test(test_negotiate_table),
		cmocka_unit_test(test_negotiate_applies),
		cmocka_unit_test(test_negotiate_identity),
		cmocka_unit_test(test_negotiate_long_name),
		cmocka_unit_test(test_lun_codec),
		cmocka_unit_test(test_serial_numbers),
	};
	return cmocka_run_group_tests_name("keys", tests, NULL, NULL);
}
