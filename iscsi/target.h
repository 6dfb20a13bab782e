/* The iSCSI target (RFC 7143, ErrorRecoveryLevel 0) serving one read-only LUN. */
#ifndef VIRTMAN_ISCSI_TARGET_H
#define VIRTMAN_ISCSI_TARGET_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "iscsi/scsi.h"

/* A read of [off, off + len) waiting until the backend holds those bytes. */
struct target_io {
	uint64_t off;
	uint32_t len;
	/* Called by the backend exactly once, unless cancelled: err 0 when the bytes can now
	 * be read from image_fd, or a negative errno. Never from inside prepare(). */
	void (*done)(struct target_io *io, int err);
	uint32_t waiting;	/* backend's own: chunks still missing */
};

/* Where image bytes come from when they are not simply in a file (the relay's cache). */
struct target_backend {
	/* 0 when [io->off, +len) is readable now, 1 when io->done follows, or -errno. */
	int (*prepare)(void *ctx, struct target_io *io);
	/* Forgets io: its done will not be called. */
	void (*cancel)(void *ctx, struct target_io *io);
	void *ctx;
};

struct target_config {
	const char *iqn;
	int image_fd;		/* where LUN 0's bytes are read from (pread / sendfile) */
	uint64_t image_size;	/* bytes; a partial last block reads as zeros */
	struct scsi_disk disk;
	const struct target_backend *backend;	/* NULL: every byte of image_fd is there */
	bool no_metrics;	/* a second target of the process: its counters are not exported */
	struct sockaddr_storage listen;
	socklen_t listen_len;
};

/* Fills disk identity (block size 512, NAA, serial) from the image's name and size. */
void target_disk_init(struct scsi_disk *disk, const char *name, uint64_t image_size);

/* Starts listening and serving on the event loop; 0 or negative errno. */
int target_start(const struct target_config *cfg);

/* Serves next instead of the started cfg, on the same listener: every connection to cfg is
 * closed first (its initiators log in again and find next's name), so nothing in flight
 * still reads cfg's image_fd once this returns. 0, or -ENOENT when cfg was never started. */
int target_swap(const struct target_config *cfg, const struct target_config *next);

#endif
