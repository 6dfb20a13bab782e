/* Logging: one line per event on stderr, prefixed with the program's role. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "lib/log.h"

static const char *log_prefix = "virtman";
static int log_quiet;

static void log_vline(const char *fmt, va_list ap)
{
	char line[1024];

	if (log_quiet)
		return;
	vsnprintf(line, sizeof line, fmt, ap);
	fprintf(stderr, "%s: %s\n", log_prefix, line);
}

void log_set_prefix(const char *prefix)
{
	log_prefix = prefix;
}

void log_set_quiet(int quiet)
{
	log_quiet = quiet;
}

void log_msg(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vline(fmt, ap);
	va_end(ap);
}

_Noreturn void die(int code, const char *fmt, ...)
{
	va_list ap;

	log_quiet = 0;
	va_start(ap, fmt);
	log_vline(fmt, ap);
	va_end(ap);
	exit(code);
}
