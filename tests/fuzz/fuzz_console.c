/* libFuzzer harness: what the host agent reads from a VM's serial console, a guest's bytes
 * (hostagent/vms.c): the marker and fatal-line judgement, and the failure report's tail. */
#include "hostagent/vms.c"	/* the statics under test; vms.o is not linked */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const fuzz_markers[] = { "virtman-vm-up", "virtman-vm-up-v2", "login:", "x" };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text, tail[251];
	size_t len;
	int fatal = -1;
	enum vms_console seen;

	if (size < 1 || size > (1 << 16))
		return 0;
	text = malloc(size);
	if (!text)
		return 0;
	/* The console as vms_console_read leaves it: NUL bytes made spaces, one NUL at the end. */
	for (size_t i = 1; i < size; i++)
		text[i - 1] = data[i] ? (char)data[i] : ' ';
	text[size - 1] = '\0';
	seen = vms_console_judge(text, fuzz_markers[data[0] % 4], &fatal);
	if (seen == VMS_CONSOLE_FATAL &&
	    (fatal < 0 || (size_t)fatal >= sizeof vms_fatal / sizeof vms_fatal[0]))
		abort();
	/* The scan puts back what it changed. */
	for (size_t i = 1; i < size; i++)
		if (text[i - 1] != (data[i] ? (char)data[i] : ' '))
			abort();
	vms_text_tail(text, tail, sizeof tail);
	len = strlen(tail);
	if (len >= sizeof tail)
		abort();
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)tail[i] < 0x20 || (unsigned char)tail[i] > 0x7e ||
		    (tail[i] == ' ' && (i == 0 || tail[i - 1] == ' ' || i + 1 == len)))
			abort();
	free(text);
	return 0;
}
