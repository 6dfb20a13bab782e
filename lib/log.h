/* Logging: one line per event on stderr, prefixed with the program's role. */
#ifndef VIRTMAN_LOG_H
#define VIRTMAN_LOG_H

#define EXIT_USAGE 2	/* bad command line */
#define EXIT_START 1	/* could not start: image, socket, ... */

/* Sets the prefix of every line, e.g. "virtman export". */
void log_set_prefix(const char *prefix);

/* Silences log_msg (fuzzers); die() still prints. */
void log_set_quiet(int quiet);

/* Prints "prefix: message" on stderr. */
void log_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Prints "prefix: message" and exits with `code`; for start-up errors only. */
_Noreturn void die(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
