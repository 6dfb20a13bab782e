/* The relay's chunk cache: a sparse data file plus a present-bitmap that is written only
 * after the chunk's data is durable, so a restarted relay trusts what it finds. */
#ifndef VIRTMAN_ISCSI_CACHE_H
#define VIRTMAN_ISCSI_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "iscsi/manifest.h"

#define CACHE_SYNC_BATCH 256	/* chunks stored before a forced sync */

struct cache {
	int data_fd;
	int bitmap_fd;
	int lock_fd;
	uint64_t size;
	uint32_t chunk_size;
	uint32_t nchunks;
	uint8_t *valid;		/* verified chunk data is in the data file */
	uint8_t *durable;	/* ... and its bit is on disk */
	uint32_t nvalid;
	uint32_t ndurable;
	uint32_t *unsynced;	/* valid chunks whose bits are not on disk yet */
	uint32_t nunsynced;
};

/* Opens (creating or resetting) the cache in dir for the image m names; a cache left by
 * another image is emptied. 0, or a negative errno with a reason in err. */
int cache_open(struct cache *c, const char *dir, const struct manifest *m, char *err,
	       size_t errlen);

static inline bool cache_has(const struct cache *c, uint32_t i)
{
	return c->valid[i >> 3] & (1u << (i & 7));
}

/* Writes a verified chunk and marks it present (durable at the next cache_sync). */
int cache_store(struct cache *c, uint32_t i, const uint8_t *buf, uint32_t len);

/* Makes stored chunks durable: data first, then their bits. */
void cache_sync(struct cache *c);

void cache_close(struct cache *c);

#endif
