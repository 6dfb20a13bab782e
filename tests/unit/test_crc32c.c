/* Unit tests: CRC32C against the iSCSI test vectors (RFC 3720 appendix B.4). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <string.h>

#include "lib/crc32c.h"

/* The bit-at-a-time definition, to check the fast paths against. */
static uint32_t crc32c_reference(const uint8_t *p, size_t len)
{
	uint32_t c = 0xffffffffu;

	while (len--) {
		c ^= *p++;
		for (int i = 0; i < 8; i++)
			c = (c >> 1) ^ (0x82f63b78u & (0u - (c & 1)));
	}
	return ~c;
}

static void test_vectors(void **state)
{
	uint8_t buf[48];

	memset(buf, 0, 32);
	assert_int_equal(crc32c(0, buf, 32), 0x8a9136aa);
	memset(buf, 0xff, 32);
	assert_int_equal(crc32c(0, buf, 32), 0x62a8ab43);
	for (int i = 0; i < 32; i++)
		buf[i] = (uint8_t)i;
	assert_int_equal(crc32c(0, buf, 32), 0x46dd794e);
	for (int i = 0; i < 32; i++)
		buf[i] = (uint8_t)(31 - i);
	assert_int_equal(crc32c(0, buf, 32), 0x113fdb5c);
	assert_int_equal(crc32c(0, "123456789", 9), 0xe3069283);
}

static void test_against_reference(void **state)
{
	static uint8_t buf[4099];
	uint32_t x = 12345;

	for (size_t i = 0; i < sizeof buf; i++) {
		x = x * 1103515245u + 12345u;
		buf[i] = (uint8_t)(x >> 16);
	}
	for (size_t len = 0; len < sizeof buf; len += 37) {
		for (size_t off = 0; off < 8 && off + len <= sizeof buf; off++)
			assert_int_equal(crc32c(0, buf + off, len), crc32c_reference(buf + off, len));
	}
}

static void test_continuation(void **state)
{
	static const char msg[] = "header and then the additional header segment";
	size_t n = sizeof msg - 1;

	for (size_t split = 0; split <= n; split++)
		assert_int_equal(crc32c(crc32c(0, msg, split), msg + split, n - split),
				 crc32c(0, msg, n));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vectors),
		cmocka_unit_test(test_against_reference),
		cmocka_unit_test(test_continuation),
	};
	return cmocka_run_group_tests_name("crc32c", tests, NULL, NULL);
}
