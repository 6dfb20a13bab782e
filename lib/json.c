/* Writing JSON for the API and the dashboard. */
#include "lib/json.h"

void json_str(struct strbuf *out, const char *s)
{
	sb_add(out, "\"", 1);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			sb_printf(out, "\\%c", c);
		else if (c < 0x20 || c == 0x7f)
			sb_printf(out, "\\u%04x", c);
		else
			sb_add(out, s, 1);
	}
	sb_add(out, "\"", 1);
}
