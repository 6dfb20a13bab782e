/* The relay: serves an image it fetches chunk by chunk from upstream targets, verifying
 * each chunk against the manifest and keeping it in the cache. */
#ifndef VIRTMAN_ISCSI_RELAY_H
#define VIRTMAN_ISCSI_RELAY_H

#include <stddef.h>

#include "iscsi/target.h"

#define RELAY_UPSTREAMS_MAX 8

struct relay_config {
	const char *const *urls;	/* iscsi:// upstreams, in order of preference */
	int nurls;
	const char *cache_dir;
	const char *manifest_path;
	const char *initiator_name;
	const char *upstreams_file;	/* one URL a line; re-read on SIGHUP */
};

/* Loads the manifest, opens the cache, starts the upstream sessions and points tc's
 * image at the cache. 0, or a negative errno with a reason in err. */
int relay_start(const struct relay_config *rc, struct target_config *tc, char *err,
		size_t errlen);

/* Makes everything cached so far durable (at exit). */
void relay_stop(void);

#endif
