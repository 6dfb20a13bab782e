/* Logging: one line per event on stderr, prefixed with the program's role. */
#ifndef VIRTMAN_LOG_H
#define VIRTMAN_LOG_H

#include <stdint.h>

#define EXIT_USAGE 2	/* bad command line */
#define EXIT_START 1	/* could not start: image, socket, ... */

/* Sets the prefix of every line, e.g. "virtman export". */
void log_set_prefix(const char *prefix);

/* Silences log_msg (fuzzers); die() still prints. */
void log_set_quiet(int quiet);

/* Prints "prefix: message" on stderr. */
void log_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A budget of lines per second for messages a peer can trigger at will (bad packets). */
struct log_limit {
	uint64_t window_ms;	/* start of the current one-second window */
	unsigned lines;		/* printed in this window */
	unsigned dropped;	/* suppressed since the last printed line */
};

#define LOG_LIMIT_PER_SECOND 10

/* Like log_msg, but at most LOG_LIMIT_PER_SECOND lines a second per limit; later says how
 * many it suppressed. */
void log_limited(struct log_limit *limit, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Prints "prefix: message" and exits with `code`; for start-up errors only. */
_Noreturn void die(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
