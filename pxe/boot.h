/* HTTP boot: the per-host iPXE script, the kernel and initramfs it loads, and the iPXE
 * binaries for UEFI HTTP boot; plus the boot token the script hands to every host. */
#ifndef VIRTMAN_PXE_BOOT_H
#define VIRTMAN_PXE_BOOT_H

#include "lib/http.h"
#include "lib/strbuf.h"

#define BOOT_TOKEN_LEN 32	/* hex characters */
#define BOOT_BASE_MAX 64
#define BOOT_APPEND_MAX 1024	/* extra kernel command line */

struct boot_config {
	char http_base[BOOT_BASE_MAX];	/* "http://ADDR:PORT" the hosts reach us at */
	const char *kernel;		/* served as /boot/vmlinuz; NULL: none */
	const char *initrd;		/* served as /boot/initrd.img */
	const char *append;		/* extra kernel arguments, or NULL */
	const char *ipxe_dir;		/* its entries are served as /ipxe/NAME */
	char token[BOOT_TOKEN_LEN + 1];
};

/* Reads the boot token from dir/boot-token, or makes a random one and saves it there;
 * 0 or negative errno. */
int boot_token_load(const char *dir, char token[BOOT_TOKEN_LEN + 1]);

/* The same for another secret of the seed in dir/file (the admin token). */
int boot_secret_load(const char *dir, const char *file, char token[BOOT_TOKEN_LEN + 1]);

/* Writes the iPXE script for the query string of GET /boot.ipxe ("mac=aa:bb:..." or
 * empty); 0, or -EINVAL for a malformed MAC. */
int boot_script(const struct boot_config *cfg, const char *query, struct strbuf *out);

/* Serves the routes above for the configuration given to boot_http_init, and /metrics. */
void boot_http_handler(const struct http_request *req, struct http_reply *reply);

/* Sets the configuration boot_http_handler serves; cfg must outlive the loop. */
void boot_http_init(const struct boot_config *cfg);

#endif
