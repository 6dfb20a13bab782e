/* libFuzzer harness: HTTP request heads, byte ranges and the boot script's query
 * (lib/http.c, pxe/boot.c). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/http.h"
#include "pxe/boot.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const struct boot_config fuzz_boot = {
	.http_base = "http://10.213.0.1:8080",
	.kernel = "/boot/vmlinuz",
	.initrd = "/boot/initrd.img",
	.token = "0123456789abcdef0123456789abcdef",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct http_request req = { 0 };
	uint64_t first, last, fsize;
	char *head;

	if (size > HTTP_HEAD_MAX)
		return 0;
	head = malloc(size + 1);	/* the server's buffer: the head and its NUL */
	if (!head)
		return 0;
	memcpy(head, data, size);
	head[size] = '\0';
	if (http_request_parse(head, size, &req) == 0) {
		if (!req.method || !req.path || !req.query || req.path[0] != '/' ||
		    strstr(req.path, ".."))
			abort();
		fsize = size * 7919ull;
		int r = http_range_parse(req.range, fsize, &first, &last);

		if (r == 1 && (first > last || last >= fsize))
			abort();
		struct strbuf sb = { 0 };

		if (boot_script(&fuzz_boot, req.query, &sb) == 0 &&
		    strncmp(sb.data, "#!ipxe\n", 7) != 0)
			abort();
		sb_free(&sb);
	}
	free(head);
	return 0;
}
