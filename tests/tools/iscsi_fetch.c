/* iscsi_fetch: reads a byte range of an iSCSI LUN with virtman's initiator (iscsi/initiator.c)
 * on the event loop and writes it to a file; for tests of the client against real and hostile
 * targets. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "iscsi/initiator.h"
#include "lib/evloop.h"
#include "lib/log.h"
#include "lib/net.h"

#define FETCH_CHUNK_MAX (64u << 20)
#define FETCH_LEN_MAX (1ull << 32)	/* the whole range is held in memory */

enum chunk_state { CHUNK_TODO, CHUNK_SENT, CHUNK_DONE };

struct chunk {
	struct fetch *f;
	uint64_t off;		/* within the range */
	uint32_t len;
	enum chunk_state state;
};

struct fetch {
	struct iscsi_client *cl;
	uint64_t off, len;
	uint32_t chunk_len;
	uint8_t *buf;
	struct chunk *chunks;
	uint32_t nchunks, ndone;
	unsigned repeat, round;
	unsigned retries, downs;
	bool finished;
	int rc;
	char last_down[256];
	struct ev_timer deadline;
};

static const char usage[] =
	"usage: iscsi_fetch URL OFFSET LEN OUTFILE [--header-digest] [--data-digest]\n"
	"                   [--timeout S] [--read-timeout MS] [--chunk BYTES] [--inflight N]\n"
	"                   [--repeat N] [--retries N]\n"
	"\n"
	"Reads LEN bytes at OFFSET (LEN 0: to the end of the LUN) from URL\n"
	"(iscsi://HOST[:PORT]/IQN/LUN) in pipelined chunks and writes them to OUTFILE.\n"
	"--repeat N reads the range N times; --retries N tolerates N session losses (reads\n"
	"are reissued after the reconnect). Exit 0 on success; 1 with the reason on stderr.\n";

static void fetch_finish(struct fetch *f, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void fetch_finish(struct fetch *f, int rc, const char *fmt, ...)
{
	va_list ap;

	if (f->finished)
		return;
	f->finished = true;
	f->rc = rc;
	if (fmt) {
		fputs("iscsi_fetch: ", stderr);
		va_start(ap, fmt);
		vfprintf(stderr, fmt, ap);
		va_end(ap);
		fputc('\n', stderr);
	}
	ev_stop();
}

static void fetch_read_done(void *arg, int err);

/* Sends every chunk not yet sent or done. */
static void fetch_issue(struct fetch *f)
{
	for (uint32_t i = 0; i < f->nchunks && !f->finished; i++) {
		struct chunk *c = &f->chunks[i];
		int rc;

		if (c->state != CHUNK_TODO)
			continue;
		rc = iscsi_client_read(f->cl, f->off + c->off, c->len, f->buf + c->off,
				       fetch_read_done, c);
		if (rc == -ENOTCONN)
			return;		/* went down meanwhile: the next up resumes */
		if (rc < 0) {
			fetch_finish(f, 1, "read of %u bytes at %llu: %s", c->len,
				     (unsigned long long)(f->off + c->off), strerror(-rc));
			return;
		}
		c->state = CHUNK_SENT;
	}
}

static int fetch_setup_chunks(struct fetch *f)
{
	f->nchunks = (uint32_t)((f->len + f->chunk_len - 1) / f->chunk_len);
	f->chunks = calloc(f->nchunks, sizeof *f->chunks);
	f->buf = malloc(f->len);
	if (!f->chunks || !f->buf)
		return -ENOMEM;
	for (uint32_t i = 0; i < f->nchunks; i++) {
		struct chunk *c = &f->chunks[i];

		c->f = f;
		c->off = (uint64_t)i * f->chunk_len;
		c->len = f->len - c->off < f->chunk_len ? (uint32_t)(f->len - c->off) : f->chunk_len;
	}
	return 0;
}

static void fetch_read_done(void *arg, int err)
{
	struct chunk *c = arg;
	struct fetch *f = c->f;

	if (f->finished)
		return;
	if (err == -ECONNRESET && f->downs <= f->retries) {
		c->state = CHUNK_TODO;	/* reissued after the reconnect */
		return;
	}
	if (err) {
		fetch_finish(f, 1, "read of %u bytes at %llu failed: %s%s%s", c->len,
			     (unsigned long long)(f->off + c->off), strerror(-err),
			     f->last_down[0] ? "; session: " : "", f->last_down);
		return;
	}
	c->state = CHUNK_DONE;
	if (++f->ndone < f->nchunks)
		return;
	if (++f->round < f->repeat) {
		f->ndone = 0;
		for (uint32_t i = 0; i < f->nchunks; i++)
			f->chunks[i].state = CHUNK_TODO;
		if (iscsi_client_state(f->cl) == ICLIENT_UP)
			fetch_issue(f);
		return;
	}
	fetch_finish(f, 0, NULL);
}

static void fetch_up(void *ctx, struct iscsi_client *cl)
{
	struct fetch *f = ctx;
	uint64_t cap = iscsi_client_capacity(cl);

	if (!f->chunks) {
		if (f->off > cap) {
			fetch_finish(f, 1, "offset %llu beyond the LUN's %llu bytes",
				     (unsigned long long)f->off, (unsigned long long)cap);
			return;
		}
		if (f->len == 0)
			f->len = cap - f->off;
		if (f->len == 0 || f->len > FETCH_LEN_MAX) {
			fetch_finish(f, 1, "cannot fetch %llu bytes", (unsigned long long)f->len);
			return;
		}
		if (fetch_setup_chunks(f) < 0) {
			fetch_finish(f, 1, "out of memory");
			return;
		}
	}
	fetch_issue(f);
}

static void fetch_down(void *ctx, struct iscsi_client *cl, const char *reason)
{
	struct fetch *f = ctx;

	snprintf(f->last_down, sizeof f->last_down, "%s", reason);
	if (++f->downs > f->retries)
		fetch_finish(f, 1, "%s", reason);
}

static void fetch_deadline(void *ctx)
{
	struct fetch *f = ctx;

	fetch_finish(f, 1, "timed out (%u of %u chunks, round %u; last session loss: %s)",
		     f->ndone, f->nchunks, f->round + 1, f->last_down[0] ? f->last_down : "none");
}

static int fetch_write(const struct fetch *f, const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	uint64_t done = 0;

	if (fd < 0)
		return -errno;
	while (done < f->len) {
		ssize_t n = write(fd, f->buf + done, f->len - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int err = n < 0 ? -errno : -EIO;

			close(fd);
			return err;
		}
		done += (uint64_t)n;
	}
	return close(fd) < 0 ? -errno : 0;
}

static uint64_t arg_num(const char *what, const char *s, uint64_t min, uint64_t max)
{
	uint64_t v;

	if (parse_u64(s, min, max, &v) < 0)
		die(EXIT_USAGE, "%s %s: expected a number in [%llu, %llu]", what, s,
		    (unsigned long long)min, (unsigned long long)max);
	return v;
}

int main(int argc, char **argv)
{
	struct iscsi_client_config cfg = { .initiator_name = "iqn.2026-11.org.virtman:fetch" };
	struct iscsi_client_events ev = { .up = fetch_up, .down = fetch_down };
	static struct fetch f;
	uint64_t timeout_s = 30;
	int err;

	log_set_prefix("iscsi_fetch");
	if (argc < 5) {
		fputs(usage, stderr);
		return EXIT_USAGE;
	}
	if (iscsi_url_parse(argv[1], &cfg.url) < 0)
		die(EXIT_USAGE, "%s: not an iscsi://HOST[:PORT]/IQN/LUN URL", argv[1]);
	f.off = arg_num("OFFSET", argv[2], 0, UINT64_MAX);
	f.len = arg_num("LEN", argv[3], 0, FETCH_LEN_MAX);
	f.chunk_len = 1u << 20;
	f.repeat = 1;
	for (int i = 5; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(a, "--header-digest") == 0) {
			cfg.header_digest = true;
			continue;
		}
		if (strcmp(a, "--data-digest") == 0) {
			cfg.data_digest = true;
			continue;
		}
		if (!v)
			die(EXIT_USAGE, "%s: missing value\n%s", a, usage);
		i++;
		if (strcmp(a, "--timeout") == 0)
			timeout_s = arg_num(a, v, 1, 3600);
		else if (strcmp(a, "--read-timeout") == 0)
			cfg.read_timeout_ms = (uint32_t)arg_num(a, v, 1, 3600000);
		else if (strcmp(a, "--chunk") == 0)
			f.chunk_len = (uint32_t)arg_num(a, v, 512, FETCH_CHUNK_MAX);
		else if (strcmp(a, "--inflight") == 0)
			cfg.max_inflight = (uint32_t)arg_num(a, v, 1, 1024);
		else if (strcmp(a, "--repeat") == 0)
			f.repeat = (unsigned)arg_num(a, v, 1, 1000);
		else if (strcmp(a, "--retries") == 0)
			f.retries = (unsigned)arg_num(a, v, 0, 1000);
		else
			die(EXIT_USAGE, "unknown option %s\n%s", a, usage);
	}
	if ((err = ev_init()) < 0)
		die(EXIT_START, "event loop: %s", strerror(-err));
	ev.ctx = &f;
	f.deadline = (struct ev_timer){ .fn = fetch_deadline, .ctx = &f };
	ev_timer_set(&f.deadline, ev_now_ms() + timeout_s * 1000);
	f.cl = iscsi_client_new(&cfg, &ev);
	if (!f.cl)
		die(EXIT_START, "out of memory");
	err = ev_run();
	if (err < 0)
		fetch_finish(&f, 1, "event loop: %s", strerror(-err));
	else if (!f.finished)
		fetch_finish(&f, 1, "stopped by signal %d", err);
	ev_timer_cancel(&f.deadline);
	iscsi_client_free(f.cl);
	if (f.rc == 0) {
		err = fetch_write(&f, argv[4]);
		if (err < 0) {
			fprintf(stderr, "iscsi_fetch: %s: %s\n", argv[4], strerror(-err));
			f.rc = 1;
		} else {
			fprintf(stderr, "iscsi_fetch: %llu bytes at %llu, %u round(s), %u session "
				"loss(es)\n", (unsigned long long)f.len, (unsigned long long)f.off,
				f.repeat, f.downs);
		}
	}
	free(f.buf);
	free(f.chunks);
	return f.rc;
}
