/* The relay's chunk cache: a sparse data file plus a present-bitmap that is written only
 * after the chunk's data is durable, so a restarted relay trusts what it finds. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "iscsi/cache.h"
#include "lib/log.h"

#define CACHE_META_MAGIC "virtman-cache 1"

/* Opens dir/name. */
static int cache_openat(int dirfd, const char *name, int flags)
{
	return openat(dirfd, name, flags | O_CLOEXEC | O_NOFOLLOW, 0644);
}

/* The identity line: which image this cache holds. */
static void cache_meta_text(const struct manifest *m, char *buf, size_t len)
{
	char hex[2 * SHA256_LEN + 1];

	for (int i = 0; i < SHA256_LEN; i++)
		snprintf(hex + 2 * i, 3, "%02x", m->id[i]);
	snprintf(buf, len, "%s\nmanifest %s\nsize %llu\nchunk-size %u\n", CACHE_META_MAGIC, hex,
		 (unsigned long long)m->size, m->chunk_size);
}

/* True when dir/meta names exactly this image. */
static bool cache_meta_matches(int dirfd, const char *want)
{
	char buf[256];
	int fd = cache_openat(dirfd, "meta", O_RDONLY);
	ssize_t n;

	if (fd < 0)
		return false;
	n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n < 0)
		return false;
	buf[n] = '\0';
	return strcmp(buf, want) == 0;
}

/* Empties the cache for a new image; meta is written last, so a crash midway leaves a
 * cache that is reset again at the next start. */
static int cache_reset(struct cache *c, int dirfd, const char *meta)
{
	size_t bytes = (c->nchunks + 7) / 8;
	char *zero = calloc(1, bytes);
	int fd, rc = 0;

	if (!zero)
		return -ENOMEM;
	unlinkat(dirfd, "meta", 0);
	if (ftruncate(c->data_fd, 0) < 0 || ftruncate(c->data_fd, (off_t)c->size) < 0 ||
	    ftruncate(c->bitmap_fd, 0) < 0 ||
	    pwrite(c->bitmap_fd, zero, bytes, 0) != (ssize_t)bytes ||
	    fdatasync(c->bitmap_fd) < 0 || fdatasync(c->data_fd) < 0)
		rc = -errno;
	free(zero);
	if (rc)
		return rc;
	fd = cache_openat(dirfd, "meta.tmp", O_WRONLY | O_CREAT | O_TRUNC);
	if (fd < 0)
		return -errno;
	if (write(fd, meta, strlen(meta)) != (ssize_t)strlen(meta) || fsync(fd) < 0)
		rc = -errno;
	close(fd);
	if (rc == 0 && renameat(dirfd, "meta.tmp", dirfd, "meta") < 0)
		rc = -errno;
	return rc;
}

int cache_open(struct cache *c, const char *dir, const struct manifest *m, char *err,
	       size_t errlen)
{
	size_t bytes = (m->nchunks + 7) / 8;
	char meta[256];
	int dirfd, rc;
	ssize_t n;

	memset(c, 0, sizeof *c);
	c->data_fd = c->bitmap_fd = c->lock_fd = -1;
	c->size = m->size;
	c->chunk_size = m->chunk_size;
	c->nchunks = m->nchunks;
	if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
		snprintf(err, errlen, "cannot create %s: %s", dir, strerror(errno));
		return -errno;
	}
	dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0) {
		snprintf(err, errlen, "cannot open %s: %s", dir, strerror(errno));
		return -errno;
	}
	/* Two relays on one cache would corrupt each other's bitmap. */
	c->lock_fd = cache_openat(dirfd, "lock", O_RDWR | O_CREAT);
	if (c->lock_fd < 0 || flock(c->lock_fd, LOCK_EX | LOCK_NB) < 0) {
		rc = -errno;
		snprintf(err, errlen, "%s is in use by another relay (%s)", dir, strerror(errno));
		goto fail;
	}
	c->data_fd = cache_openat(dirfd, "data", O_RDWR | O_CREAT);
	c->bitmap_fd = cache_openat(dirfd, "bitmap", O_RDWR | O_CREAT);
	c->valid = calloc(1, bytes);
	c->durable = calloc(1, bytes);
	c->unsynced = calloc(CACHE_SYNC_BATCH, sizeof *c->unsynced);
	if (c->data_fd < 0 || c->bitmap_fd < 0 || !c->valid || !c->durable || !c->unsynced) {
		rc = -errno ? -errno : -ENOMEM;
		snprintf(err, errlen, "cannot open the cache files in %s: %s", dir, strerror(-rc));
		goto fail;
	}
	cache_meta_text(m, meta, sizeof meta);
	if (cache_meta_matches(dirfd, meta)) {
		struct stat st;

		n = pread(c->bitmap_fd, c->durable, bytes, 0);
		if (n != (ssize_t)bytes || fstat(c->data_fd, &st) < 0 ||
		    (uint64_t)st.st_size != c->size) {
			log_msg("cache %s: bitmap or data file damaged; starting empty", dir);
			memset(c->durable, 0, bytes);
			rc = cache_reset(c, dirfd, meta);
		} else {
			rc = 0;
		}
	} else {
		rc = cache_reset(c, dirfd, meta);
	}
	if (rc < 0) {
		snprintf(err, errlen, "cannot initialise the cache in %s: %s", dir, strerror(-rc));
		goto fail;
	}
	/* Bits past the last chunk are noise in a damaged file: ignore them. */
	if (m->nchunks % 8)
		c->durable[bytes - 1] &= (uint8_t)((1u << (m->nchunks % 8)) - 1);
	memcpy(c->valid, c->durable, bytes);
	for (uint32_t i = 0; i < m->nchunks; i++)
		c->nvalid += cache_has(c, i);
	c->ndurable = c->nvalid;
	close(dirfd);
	return 0;
fail:
	close(dirfd);
	cache_close(c);
	return rc;
}

int cache_store(struct cache *c, uint32_t i, const uint8_t *buf, uint32_t len)
{
	uint64_t off = (uint64_t)i * c->chunk_size;
	uint32_t done = 0;

	if (cache_has(c, i))
		return 0;
	while (done < len) {
		ssize_t n = pwrite(c->data_fd, buf + done, len - done, (off_t)(off + done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		done += (uint32_t)n;
	}
	c->valid[i >> 3] |= (uint8_t)(1u << (i & 7));
	c->nvalid++;
	c->unsynced[c->nunsynced++] = i;
	if (c->nunsynced == CACHE_SYNC_BATCH)
		cache_sync(c);
	return 0;
}

void cache_sync(struct cache *c)
{
	if (!c->nunsynced)
		return;
	if (fdatasync(c->data_fd) < 0) {
		log_msg("cache: fdatasync: %s; chunks stay unmarked until it works", strerror(errno));
		return;
	}
	for (uint32_t k = 0; k < c->nunsynced; k++) {
		uint32_t i = c->unsynced[k];

		c->durable[i >> 3] |= (uint8_t)(1u << (i & 7));
		c->ndurable++;
		if (pwrite(c->bitmap_fd, &c->durable[i >> 3], 1, (off_t)(i >> 3)) != 1)
			log_msg("cache: writing the bitmap: %s", strerror(errno));
	}
	c->nunsynced = 0;
}

void cache_close(struct cache *c)
{
	if (c->data_fd >= 0) {
		cache_sync(c);
		fdatasync(c->bitmap_fd);
	}
	if (c->data_fd >= 0)
		close(c->data_fd);
	if (c->bitmap_fd >= 0)
		close(c->bitmap_fd);
	if (c->lock_fd >= 0)
		close(c->lock_fd);
	free(c->valid);
	free(c->durable);
	free(c->unsynced);
	c->valid = c->durable = NULL;
	c->unsynced = NULL;
	c->data_fd = c->bitmap_fd = c->lock_fd = -1;
}
