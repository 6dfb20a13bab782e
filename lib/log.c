/* Logging: one line per event on stderr, prefixed with the program's role. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

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

void log_limited(struct log_limit *limit, const char *fmt, ...)
{
	struct timespec ts;
	uint64_t now;
	va_list ap;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	now = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
	if (now - limit->window_ms >= 1000) {
		limit->window_ms = now;
		limit->lines = 0;
	}
	if (limit->lines >= LOG_LIMIT_PER_SECOND) {
		limit->dropped++;
		return;
	}
	limit->lines++;
	if (limit->dropped) {
		log_msg("(%u similar lines suppressed)", limit->dropped);
		limit->dropped = 0;
	}
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
