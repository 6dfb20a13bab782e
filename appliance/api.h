/* The seed's HTTP API, dashboard and boot routes, behind one handler. */
#ifndef VIRTMAN_APPLIANCE_API_H
#define VIRTMAN_APPLIANCE_API_H

#include <stdbool.h>
#include <stddef.h>

#include "appliance/coord.h"
#include "lib/http.h"

/* Serves the API for c (NULL: a seed without an image: PXE only) and the manifest files
 * (the userland's may be NULL);
 * starts the once-a-second expiry and persistence of the rack. */
void api_init(struct coord *c, const char *manifest_path, const char *userland_manifest_path);

/* Reimaging, done by the seed: start returns the new generation, or a negative errno with
 * a one-line reason (-EACCES: bad admin token, -EBUSY: one is being prepared); vm_marker,
 * when not NULL, is the new generation's VM marker; status writes the progress as
 * key=value lines. */
void api_set_reimage(int (*start)(const char *token, const char *image, bool reboot,
				  const char *vm_marker, char *err, size_t errlen),
		     void (*status)(struct strbuf *out));

/* Serves per-VM cloud-init NoCloud data from dir (GET /api/v1/vm-data/VM/FILE): dir/VM/FILE,
 * else dir/FILE; meta-data is made up (instance-id, local-hostname) when neither exists. */
void api_set_vm_data(const char *dir);

/* The seed's one HTTP handler. */
void api_http_handler(const struct http_request *req, struct http_reply *reply);

#endif
