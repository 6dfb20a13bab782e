/* Image manifests: size, chunk size and one SHA-256 per chunk, published by the seed and
 * checked by every relay before it caches or serves a chunk. */
#ifndef VIRTMAN_ISCSI_MANIFEST_H
#define VIRTMAN_ISCSI_MANIFEST_H

#include <stddef.h>
#include <stdint.h>

#include "lib/sha256.h"

#define MANIFEST_MAGIC "virtman-manifest 1"
#define MANIFEST_CHUNK_DEFAULT (256u << 10)	/* measured: BENCHMARKS.md, "Chunk size" */
#define MANIFEST_CHUNK_MIN 4096u
#define MANIFEST_CHUNK_MAX (64u << 20)
#define MANIFEST_SIZE_MAX (1ull << 50)		/* 1 PiB */

struct manifest {
	uint64_t size;		/* bytes of the disk as served: a multiple of 512 */
	uint32_t chunk_size;	/* a power of two */
	uint32_t nchunks;
	uint8_t (*digests)[SHA256_LEN];
	uint8_t id[SHA256_LEN];	/* digest of the manifest text: names this image */
};

/* Parses manifest text; 0, or -EINVAL with a reason in err. */
int manifest_parse(const char *text, size_t len, struct manifest *m, char *err, size_t errlen);

/* Reads and parses a manifest file; 0, or a negative errno with a reason in err. */
int manifest_load(const char *path, struct manifest *m, char *err, size_t errlen);

void manifest_free(struct manifest *m);

/* Bytes of chunk i (the last one may be short). */
uint32_t manifest_chunk_len(const struct manifest *m, uint32_t i);

/* Digests image and writes its manifest to output (atomically); 0, or a negative errno
 * with a reason in err. */
int manifest_create(const char *image, const char *output, uint32_t chunk, char *err,
		    size_t errlen);

/* `virtman manifest IMAGE -o FILE [--chunk-size BYTES]`; returns the exit status. */
int cmd_manifest(int argc, char **argv);

#endif
