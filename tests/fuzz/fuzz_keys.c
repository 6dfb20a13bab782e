/* libFuzzer harness: login key text parsing and negotiation (iscsi/keys.c). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "iscsi/keys.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct iscsi_kv kv[ISCSI_KEYS_MAX];
	struct iscsi_negotiation neg = { 0 };
	struct strbuf out = { 0 };
	char *text;
	int n;

	if (size > ISCSI_TEXT_MAX)
		return 0;
	text = malloc(size + 1);	/* exactly the room the parser is promised */
	if (!text)
		return 0;
	memcpy(text, data, size);
	iscsi_params_default(&neg.params);
	n = iscsi_keys_parse(text, size, kv, ISCSI_KEYS_MAX);
	if (n >= 0) {
		iscsi_negotiate(&neg, kv, n, &out);
		/* Every answer is key=value pairs the parser itself accepts. */
		if (out.len && !out.failed && iscsi_keys_parse(out.data, out.len, kv,
							       ISCSI_KEYS_MAX) < 0 && n > 0)
			abort();
		if (neg.params.first_burst > neg.params.max_burst)
			abort();
	}
	sb_free(&out);
	free(text);
	return 0;
}
