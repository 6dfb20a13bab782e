/* The relay: serves an image it fetches chunk by chunk from upstream targets, verifying
 * each chunk against the manifest and keeping it in the cache, so a chunk crosses each
 * link of the tree at most once. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "iscsi/cache.h"
#include "iscsi/initiator.h"
#include "iscsi/keys.h"
#include "iscsi/manifest.h"
#include "iscsi/relay.h"
#include "lib/evloop.h"
#include "lib/log.h"
#include "lib/metrics.h"

#define RELAY_READ_TIMEOUT_MS 8000	/* well under initiators' 15 s abort */
#define RELAY_STALL_MAX_MS 10000	/* with no usable upstream this long, reads fail */
#define RELAY_DEMOTE_MS 30000		/* an upstream that sent a bad chunk waits this long */
#define RELAY_CLIENT_INFLIGHT 16	/* chunk reads outstanding per upstream */

struct relay;

struct upstream {
	struct relay *r;
	struct iscsi_client *cl;	/* NULL: a free slot */
	char url[ISCSI_URL_MAX];
	int index;			/* slot number, stable while the upstream lives */
	bool up;
	bool mismatch;		/* its capacity is not the manifest's size: never used */
	uint64_t demoted_until;
	uint64_t verify_failures;
	uint64_t chunk_bytes;	/* chunk payload received, good or bad */
};

/* One chunk being fetched, shared by every read that needs it (single flight). */
struct fetch {
	struct relay *r;
	uint32_t chunk;
	uint8_t *buf;
	struct upstream *up;		/* reading from, or NULL while stalled */
	uint32_t tried;			/* upstreams that failed this chunk (bit per index) */
	uint64_t stalled_since;		/* first time it found no usable upstream; 0: never */
	bool on_stall_list;
	struct fetch *next_stalled;
	struct target_io **waiters;
	uint32_t nwaiters, cap;
};

struct relay {
	struct manifest m;
	struct cache cache;
	struct upstream ups[RELAY_UPSTREAMS_MAX];	/* slots */
	int order[RELAY_UPSTREAMS_MAX];			/* live slots, in order of preference */
	int nups;
	char initiator_name[ISCSI_NAME_MAX + 1];
	const char *upstreams_file;
	struct fetch **fetches;		/* per chunk, NULL when none is under way */
	struct fetch *stalled;
	uint32_t nfetches;
	struct target_backend backend;
	struct ev_tick tick;
	bool upstream_checked;
	uint64_t hits, misses, verify_failures, fetched_chunks;
};

static struct relay relay;

/* Picks the upstream for a chunk: the least busy live one of the list but its last entry
 * (parent, uncle: spreading over them adds no load above), the last (the root) only when
 * none of them lives. An upstream that just sent a bad chunk comes after the others. */
static struct upstream *relay_pick(struct relay *r, uint32_t tried)
{
	uint64_t now = ev_now_ms();
	int npeers = r->nups > 1 ? r->nups - 1 : 1;

	for (int pass = 0; pass < 2; pass++) {
		struct upstream *best = NULL;

		for (int k = 0; k < r->nups; k++) {
			struct upstream *u = &r->ups[r->order[k]];

			if (k == npeers && best)
				break;	/* the fallback only when no peer is usable */
			if (!u->up || u->mismatch || (tried & (1u << u->index)) ||
			    (pass == 0 && now < u->demoted_until))
				continue;
			if (!best || iscsi_client_inflight(u->cl) < iscsi_client_inflight(best->cl))
				best = u;
		}
		if (best)
			return best;
	}
	return NULL;
}

static void fetch_stall(struct fetch *f)
{
	if (!f->stalled_since)
		f->stalled_since = ev_now_ms();
	if (f->on_stall_list)
		return;
	f->on_stall_list = true;
	f->next_stalled = f->r->stalled;
	f->r->stalled = f;
}

static void fetch_unstall(struct fetch *f)
{
	if (!f->on_stall_list)
		return;
	for (struct fetch **pp = &f->r->stalled; *pp; pp = &(*pp)->next_stalled) {
		if (*pp == f) {
			*pp = f->next_stalled;
			break;
		}
	}
	f->on_stall_list = false;
}

static void fetch_read_done(void *arg, int err);

/* Sends the chunk read to the best upstream, or parks the fetch until one is usable. */
static void fetch_dispatch(struct fetch *f)
{
	struct relay *r = f->r;
	uint64_t off = (uint64_t)f->chunk * r->m.chunk_size;
	uint32_t len = manifest_chunk_len(&r->m, f->chunk);

	for (;;) {
		struct upstream *u = relay_pick(r, f->tried);

		if (!u) {
			fetch_stall(f);
			return;
		}
		if (iscsi_client_read(u->cl, off, len, f->buf, fetch_read_done, f) == 0) {
			fetch_unstall(f);
			f->up = u;
			return;
		}
		f->tried |= 1u << u->index;	/* went down meanwhile: try the next */
	}
}

/* Removes io from the waiters of every chunk it waits for. */
static void relay_cancel(void *ctx, struct target_io *io)
{
	struct relay *r = ctx;
	uint32_t first = (uint32_t)(io->off / r->m.chunk_size);
	uint32_t last = (uint32_t)((io->off + io->len - 1) / r->m.chunk_size);

	for (uint32_t i = first; i <= last; i++) {
		struct fetch *f = r->fetches[i];

		if (!f)
			continue;
		for (uint32_t k = 0; k < f->nwaiters; k++) {
			if (f->waiters[k] == io) {
				f->waiters[k] = f->waiters[--f->nwaiters];
				break;
			}
		}
	}
}

/* Ends a fetch: its waiters get the chunk (err 0) or the error. */
static void fetch_finish(struct fetch *f, int err)
{
	struct relay *r = f->r;
	struct target_io **waiters = f->waiters;
	uint32_t n = f->nwaiters;

	r->fetches[f->chunk] = NULL;
	r->nfetches--;
	fetch_unstall(f);
	free(f->buf);
	free(f);
	for (uint32_t k = 0; k < n; k++) {
		struct target_io *io = waiters[k];

		if (err) {
			relay_cancel(r, io);	/* stop waiting for its other chunks */
			io->done(io, err);
		} else if (--io->waiting == 0) {
			io->done(io, 0);
		}
	}
	free(waiters);
}

static void fetch_read_done(void *arg, int err)
{
	struct fetch *f = arg;
	struct relay *r = f->r;
	struct upstream *u = f->up;
	uint32_t len = manifest_chunk_len(&r->m, f->chunk);
	uint8_t digest[SHA256_LEN];
	int rc;

	f->up = NULL;
	if (err) {
		if (err == -EIO)	/* the upstream answered with an error: ask another */
			f->tried |= 1u << u->index;
		fetch_dispatch(f);
		return;
	}
	u->chunk_bytes += len;
	sha256(f->buf, len, digest);
	if (memcmp(digest, r->m.digests[f->chunk], SHA256_LEN) != 0) {
		r->verify_failures++;
		u->verify_failures++;
		u->demoted_until = ev_now_ms() + RELAY_DEMOTE_MS;
		f->tried |= 1u << u->index;
		log_msg("chunk %u from %s failed verification: discarded, upstream demoted for %d s",
			f->chunk, iscsi_client_name(u->cl), RELAY_DEMOTE_MS / 1000);
		if (!relay_pick(r, f->tried)) {
			/* Every live upstream sent this chunk wrong: no waiting makes it right.
			 * Its readers get an error now; a later read tries again. */
			log_msg("chunk %u: every live upstream sent it corrupted: failing its reads",
				f->chunk);
			fetch_finish(f, -EIO);
			return;
		}
		fetch_dispatch(f);
		return;
	}
	rc = cache_store(&r->cache, f->chunk, f->buf, len);
	if (rc < 0) {
		log_msg("chunk %u: cannot store it in the cache: %s", f->chunk, strerror(-rc));
		fetch_finish(f, -EIO);
		return;
	}
	r->fetched_chunks++;
	fetch_finish(f, 0);
}

static struct fetch *fetch_start(struct relay *r, uint32_t chunk)
{
	struct fetch *f = calloc(1, sizeof *f);

	if (!f || !(f->buf = malloc(r->m.chunk_size))) {
		free(f);
		return NULL;
	}
	f->r = r;
	f->chunk = chunk;
	r->fetches[chunk] = f;
	r->nfetches++;
	fetch_dispatch(f);
	return f;
}

static int fetch_add_waiter(struct fetch *f, struct target_io *io)
{
	if (f->nwaiters == f->cap) {
		uint32_t cap = f->cap ? 2 * f->cap : 4;
		struct target_io **w = realloc(f->waiters, cap * sizeof *w);

		if (!w)
			return -ENOMEM;
		f->waiters = w;
		f->cap = cap;
	}
	f->waiters[f->nwaiters++] = io;
	return 0;
}

/* The target's backend hook: ready now when every chunk is cached, else wait for them. */
static int relay_prepare(void *ctx, struct target_io *io)
{
	struct relay *r = ctx;
	uint32_t first = (uint32_t)(io->off / r->m.chunk_size);
	uint32_t last = (uint32_t)((io->off + io->len - 1) / r->m.chunk_size);

	io->waiting = 0;
	for (uint32_t i = first; i <= last; i++) {
		struct fetch *f;

		if (cache_has(&r->cache, i)) {
			r->hits++;
			continue;
		}
		r->misses++;
		f = r->fetches[i] ? r->fetches[i] : fetch_start(r, i);
		if (!f || fetch_add_waiter(f, io) < 0) {
			relay_cancel(r, io);
			return -ENOMEM;
		}
		io->waiting++;
	}
	return io->waiting ? 1 : 0;
}

static void relay_upstream_up(void *ctx, struct iscsi_client *cl)
{
	struct upstream *u = ctx;
	struct relay *r = u->r;
	uint64_t cap = iscsi_client_capacity(cl);

	if (cap != r->m.size) {
		if (!u->mismatch)
			log_msg("upstream %s: capacity %llu does not match the manifest's size %llu: "
				"not used", iscsi_client_name(cl), (unsigned long long)cap,
				(unsigned long long)r->m.size);
		u->mismatch = true;
		return;
	}
	u->mismatch = false;
	u->up = true;
	/* Parked fetches get another chance at once. */
	while (r->stalled) {
		struct fetch *f = r->stalled;

		fetch_unstall(f);
		f->tried &= ~(1u << u->index);
		fetch_dispatch(f);
		if (f->on_stall_list)
			break;	/* still nobody for it: the others are no better off */
	}
}

static void relay_upstream_down(void *ctx, struct iscsi_client *cl, const char *reason)
{
	struct upstream *u = ctx;

	u->up = false;	/* the client logs why */
}

/* Once a second: retry parked fetches, fail the ones parked too long, sync the cache. */
static void relay_tick(void *ctx, uint64_t now)
{
	struct relay *r = ctx;
	struct fetch *list = r->stalled;
	int mismatched = 0;

	r->stalled = NULL;
	while (list) {
		struct fetch *f = list;

		list = f->next_stalled;
		f->on_stall_list = false;
		if (now - f->stalled_since >= RELAY_STALL_MAX_MS) {
			log_msg("chunk %u: no usable upstream for %d s: failing its reads", f->chunk,
				RELAY_STALL_MAX_MS / 1000);
			fetch_finish(f, -EIO);
			continue;
		}
		f->tried = 0;	/* every live upstream gets another try */
		fetch_dispatch(f);
	}
	cache_sync(&r->cache);
	for (int k = 0; k < r->nups; k++)
		mismatched += r->ups[r->order[k]].mismatch;
	if (!r->upstream_checked && r->nups && mismatched == r->nups)
		die(EXIT_START, "no upstream serves an image of the manifest's size %llu",
		    (unsigned long long)r->m.size);
	for (int k = 0; k < r->nups; k++)
		if (r->ups[r->order[k]].up)
			r->upstream_checked = true;
}

/* Writes a label value with Prometheus escaping. */
static void relay_label(char *out, size_t len, const char *name)
{
	size_t n = 0;

	for (; *name && n + 3 < len; name++) {
		if (*name == '"' || *name == '\\')
			out[n++] = '\\';
		out[n++] = *name;
	}
	out[n] = '\0';
}

static void relay_metrics(struct strbuf *out, void *ctx)
{
	struct relay *r = ctx;
	char label[600], value[520];

	metrics_family(out, "virtman_upstream_bytes_total", "counter",
		       "Chunk bytes fetched from each upstream");
	for (int k = 0; k < r->nups; k++) {
		const struct upstream *u = &r->ups[r->order[k]];

		relay_label(value, sizeof value, u->url);
		snprintf(label, sizeof label, "upstream=\"%s\"", value);
		metrics_sample(out, "virtman_upstream_bytes_total", label, u->chunk_bytes);
	}
	metrics_family(out, "virtman_upstream_up", "gauge", "1 when the upstream is logged in");
	for (int k = 0; k < r->nups; k++) {
		const struct upstream *u = &r->ups[r->order[k]];

		relay_label(value, sizeof value, u->url);
		snprintf(label, sizeof label, "upstream=\"%s\"", value);
		metrics_sample(out, "virtman_upstream_up", label, u->up);
	}
	metrics_family(out, "virtman_cache_hits_total", "counter",
		       "Chunk lookups served from the cache");
	metrics_sample(out, "virtman_cache_hits_total", "", r->hits);
	metrics_family(out, "virtman_cache_misses_total", "counter",
		       "Chunk lookups that waited for a fetch");
	metrics_sample(out, "virtman_cache_misses_total", "", r->misses);
	metrics_family(out, "virtman_cache_chunks_present", "gauge", "Chunks in the cache");
	metrics_sample(out, "virtman_cache_chunks_present", "", r->cache.nvalid);
	metrics_family(out, "virtman_cache_chunks_durable", "gauge",
		       "Chunks in the cache whose present bit is on disk (kept across a crash)");
	metrics_sample(out, "virtman_cache_chunks_durable", "", r->cache.ndurable);
	metrics_family(out, "virtman_cache_chunks", "gauge", "Chunks in the image");
	metrics_sample(out, "virtman_cache_chunks", "", r->m.nchunks);
	metrics_family(out, "virtman_chunks_fetched_total", "counter",
		       "Chunks fetched, verified and stored");
	metrics_sample(out, "virtman_chunks_fetched_total", "", r->fetched_chunks);
	metrics_family(out, "virtman_fetches_inflight", "gauge", "Chunk fetches under way");
	metrics_sample(out, "virtman_fetches_inflight", "", r->nfetches);
	metrics_family(out, "virtman_verify_failures_total", "counter",
		       "Fetched chunks discarded for a digest mismatch");
	metrics_sample(out, "virtman_verify_failures_total", "", r->verify_failures);
}

/* Replaces the upstream list: kept URLs keep their sessions, new ones connect, dropped
 * ones are closed and their chunk reads go elsewhere. The served disk never notices. */
static int relay_set_upstreams(struct relay *r, const char *const *urls, int n, char *err,
			       size_t errlen)
{
	int order[RELAY_UPSTREAMS_MAX], norder = 0, old[RELAY_UPSTREAMS_MAX], nold = r->nups;

	if (n < 1 || n > RELAY_UPSTREAMS_MAX) {
		snprintf(err, errlen, "between 1 and %d upstreams", RELAY_UPSTREAMS_MAX);
		return -EINVAL;
	}
	memcpy(old, r->order, sizeof old);
	for (int i = 0; i < n; i++) {
		struct iscsi_client_config cc = {
			.initiator_name = r->initiator_name,
			.read_timeout_ms = RELAY_READ_TIMEOUT_MS,
			.max_inflight = RELAY_CLIENT_INFLIGHT,
		};
		struct upstream *u = NULL;

		for (int k = 0; k < nold && !u; k++)
			if (strcmp(r->ups[old[k]].url, urls[i]) == 0)
				u = &r->ups[old[k]];
		for (int k = 0; k < norder && u; k++)
			if (order[k] == u->index)
				u = NULL;	/* listed twice: once is enough */
		if (!u) {
			for (int s = 0; s < RELAY_UPSTREAMS_MAX && !u; s++) {
				bool used = r->ups[s].cl != NULL;

				for (int k = 0; k < norder; k++)
					used |= order[k] == s;
				if (!used)
					u = &r->ups[s];
			}
			if (iscsi_url_parse(urls[i], &cc.url) < 0) {
				snprintf(err, errlen, "%s: expected iscsi://HOST[:PORT]/IQN/LUN", urls[i]);
				return -EINVAL;
			}
			if (!u) {	/* 8 old and 8 new at once: no slot left */
				snprintf(err, errlen, "too many upstreams replaced at once");
				return -ENOSPC;
			}
			struct iscsi_client_events ev = {
				.up = relay_upstream_up, .down = relay_upstream_down, .ctx = u,
			};

			memset(u, 0, sizeof *u);
			u->r = r;
			u->index = (int)(u - r->ups);
			snprintf(u->url, sizeof u->url, "%s", urls[i]);
			u->cl = iscsi_client_new(&cc, &ev);
			if (!u->cl) {
				snprintf(err, errlen, "out of memory");
				return -ENOMEM;
			}
		}
		order[norder++] = u->index;
	}
	memcpy(r->order, order, sizeof order);
	r->nups = norder;
	/* Dropped upstreams go last: their pending reads come back cancelled and are
	 * dispatched over the new list. */
	for (int k = 0; k < nold; k++) {
		struct upstream *u = &r->ups[old[k]];
		bool kept = false;

		for (int j = 0; j < norder; j++)
			kept |= order[j] == old[k];
		if (kept)
			continue;
		log_msg("upstream %s: removed", u->url);
		u->up = false;
		iscsi_client_free(u->cl);
		u->cl = NULL;
	}
	return 0;
}

/* Reads an upstreams file: one iscsi:// URL a line; returns the count or -errno. */
static int relay_read_upstreams(const char *path, char *buf, size_t len, const char **urls,
				char *err, size_t errlen)
{
	FILE *f = fopen(path, "re");
	int n = 0;

	if (!f) {
		snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
		return -errno;
	}
	while (n < RELAY_UPSTREAMS_MAX && len > 1 && fgets(buf, (int)len, f)) {
		size_t l = strcspn(buf, "\r\n");

		buf[l] = '\0';
		if (l == 0 || buf[0] == '#')
			continue;
		urls[n++] = buf;
		buf += l + 1;
		len -= l + 1;
	}
	fclose(f);
	if (n == 0) {
		snprintf(err, errlen, "%s lists no upstream", path);
		return -EINVAL;
	}
	return n;
}

/* SIGHUP: the agent rewrote the upstreams file (re-parenting). */
static void relay_reload(void *ctx)
{
	struct relay *r = ctx;
	const char *urls[RELAY_UPSTREAMS_MAX];
	char buf[RELAY_UPSTREAMS_MAX * ISCSI_URL_MAX], err[256];
	int n = relay_read_upstreams(r->upstreams_file, buf, sizeof buf, urls, err, sizeof err);

	if (n < 0 || relay_set_upstreams(r, urls, n, err, sizeof err) < 0) {
		log_msg("reloading upstreams: %s; keeping the current ones", err);
		return;
	}
	log_msg("upstreams reloaded from %s: %d", r->upstreams_file, n);
}

int relay_start(const struct relay_config *rc, struct target_config *tc, char *err,
		size_t errlen)
{
	struct relay *r = &relay;
	int ret;

	const char *file_urls[RELAY_UPSTREAMS_MAX];
	char file_buf[RELAY_UPSTREAMS_MAX * ISCSI_URL_MAX];
	struct relay_config copy = *rc;

	if (rc->upstreams_file && rc->nurls == 0) {
		ret = relay_read_upstreams(rc->upstreams_file, file_buf, sizeof file_buf, file_urls,
					   err, errlen);
		if (ret < 0)
			return ret;
		copy.urls = file_urls;
		copy.nurls = ret;
		rc = &copy;
	}
	if (rc->nurls < 1 || rc->nurls > RELAY_UPSTREAMS_MAX) {
		snprintf(err, errlen, "between 1 and %d upstreams", RELAY_UPSTREAMS_MAX);
		return -EINVAL;
	}
	ret = manifest_load(rc->manifest_path, &r->m, err, errlen);
	if (ret < 0)
		return ret;
	ret = cache_open(&r->cache, rc->cache_dir, &r->m, err, errlen);
	if (ret < 0)
		return ret;
	r->fetches = calloc(r->m.nchunks, sizeof *r->fetches);
	if (!r->fetches) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	snprintf(r->initiator_name, sizeof r->initiator_name, "%s", rc->initiator_name);
	r->upstreams_file = rc->upstreams_file;
	ret = relay_set_upstreams(r, rc->urls, rc->nurls, err, errlen);
	if (ret < 0)
		return ret;
	r->backend = (struct target_backend){
		.prepare = relay_prepare, .cancel = relay_cancel, .ctx = r,
	};
	r->tick = (struct ev_tick){ .fn = relay_tick, .ctx = r };
	ev_tick_add(&r->tick);
	if (r->upstreams_file)
		ev_on_hup(relay_reload, r);
	metrics_register(relay_metrics, r);
	tc->image_fd = r->cache.data_fd;
	tc->image_size = r->m.size;
	tc->backend = &r->backend;
	log_msg("relay: %u of %u chunks of %u KiB already cached", r->cache.nvalid, r->m.nchunks,
		r->m.chunk_size / 1024);
	return 0;
}

void relay_stop(void)
{
	if (relay.fetches)
		cache_close(&relay.cache);
}
