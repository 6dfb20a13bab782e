/* The iSCSI target (RFC 7143, ErrorRecoveryLevel 0) serving one read-only LUN. */
#ifndef VIRTMAN_ISCSI_TARGET_H
#define VIRTMAN_ISCSI_TARGET_H

#include <stdint.h>
#include <sys/socket.h>

#include "iscsi/scsi.h"

struct target_config {
	const char *iqn;
	int image_fd;		/* where LUN 0's bytes are read from (pread / sendfile) */
	uint64_t image_size;	/* bytes; a partial last block reads as zeros */
	struct scsi_disk disk;
	struct sockaddr_storage listen;
	socklen_t listen_len;
};

/* Fills disk identity (block size 512, NAA, serial) from the image's name and size. */
void target_disk_init(struct scsi_disk *disk, const char *name, uint64_t image_size);

/* Starts listening and serving on the event loop; 0 or negative errno. */
int target_start(const struct target_config *cfg);

#endif
