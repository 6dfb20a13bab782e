/* HTTP boot: the per-host iPXE script, the kernel and initramfs it loads, and the iPXE
 * binaries for UEFI HTTP boot; plus the boot token the script hands to every host. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "lib/fs.h"
#include "lib/net.h"
#include "lib/log.h"
#include "pxe/boot.h"
#include "pxe/lease.h"

#define BOOT_TOKEN_FILE "boot-token"
#define BOOT_BINARY_TYPE "application/octet-stream"

static const struct boot_config *boot_cfg;

static int boot_token_valid(const char *s, size_t len)
{
	if (len != BOOT_TOKEN_LEN)
		return 0;
	for (size_t i = 0; i < len; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return 1;
}

int boot_token_load(const char *dir, char token[BOOT_TOKEN_LEN + 1])
{
	return boot_secret_load(dir, BOOT_TOKEN_FILE, token);
}

int boot_secret_load(const char *dir, const char *file, char token[BOOT_TOKEN_LEN + 1])
{
	char path[PATH_MAX], buf[BOOT_TOKEN_LEN + 2];
	uint8_t raw[BOOT_TOKEN_LEN / 2];
	ssize_t n;
	int fd, err;

	if (snprintf(path, sizeof path, "%s/%s", dir, file) >= (int)sizeof path)
		return -ENAMETOOLONG;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		n = read(fd, buf, sizeof buf);
		close(fd);
		while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
			n--;
		if (n > 0 && boot_token_valid(buf, (size_t)n)) {
			memcpy(token, buf, BOOT_TOKEN_LEN);
			token[BOOT_TOKEN_LEN] = '\0';
			return 0;
		}
		log_msg("%s is not a %d-digit hex token: making a new one", path, BOOT_TOKEN_LEN);
	} else if (errno != ENOENT) {
		return -errno;
	}
	if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw)
		return -EIO;
	for (size_t i = 0; i < sizeof raw; i++)
		snprintf(token + 2 * i, 3, "%02x", raw[i]);
	memcpy(buf, token, BOOT_TOKEN_LEN);
	buf[BOOT_TOKEN_LEN] = '\n';
	if ((err = fs_write_atomic(path, buf, BOOT_TOKEN_LEN + 1, 0600)) < 0)
		return err;
	return 0;
}

/* Copies the percent-decoded value of key from a query string; 1 found, 0 absent, -1 when
 * malformed or too long. */
static int boot_query_get(const char *query, const char *key, char *out, size_t len)
{
	size_t klen = strlen(key);

	for (const char *p = query; *p; ) {
		const char *amp = strchr(p, '&');
		const char *end = amp ? amp : p + strlen(p);

		if ((size_t)(end - p) > klen && strncmp(p, key, klen) == 0 && p[klen] == '=') {
			size_t n = 0;

			for (const char *s = p + klen + 1; s < end; s++) {
				char ch = *s;

				if (ch == '%') {
					int hi = end - s > 2 ? hex_value(s[1]) : -1;
					int lo = hi < 0 ? -1 : hex_value(s[2]);

					if (lo < 0)
						return -1;
					ch = (char)(hi << 4 | lo);
					s += 2;
				}
				if (n + 1 >= len)
					return -1;
				out[n++] = ch;
			}
			out[n] = '\0';
			return 1;
		}
		p = amp ? amp + 1 : end;
	}
	return 0;
}

int boot_script(const struct boot_config *cfg, const char *query, struct strbuf *out)
{
	char value[64], mac_s[18];
	uint8_t mac[6];
	int r = boot_query_get(query, "mac", value, sizeof value);

	if (r < 0 || (r > 0 && mac_parse(value, mac) < 0))
		return -EINVAL;
	if (r > 0)
		mac_format(mac, mac_s);
	/* Without ?mac=, iPXE fills in the booting interface's address itself. */
	sb_printf(out, "#!ipxe\n"
		  "echo virtman: booting ${netX/mac} from %s\n"
		  "kernel %s/boot/vmlinuz initrd=initrd.img virtman.seed=%s virtman.token=%s "
		  "virtman.mac=%s console=ttyS0%s%s\n"
		  "initrd %s/boot/initrd.img\n"
		  "boot\n",
		  cfg->http_base, cfg->http_base, cfg->http_base, cfg->token,
		  r > 0 ? mac_s : "${netX/mac}", cfg->append ? " " : "",
		  cfg->append ? cfg->append : "", cfg->http_base);
	return 0;
}

/* Names served under /ipxe/: one directory entry, no path, no hidden files. */
static int boot_ipxe_name_ok(const char *name)
{
	if (!*name || *name == '.' || strlen(name) > NAME_MAX)
		return 0;
	for (const char *p = name; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '.' || *p == '-' || *p == '_'))
			return 0;
	return 1;
}

static void boot_not_found(struct http_reply *reply)
{
	reply->status = 404;
	sb_printf(&reply->body, "not found\n");
}

void boot_http_init(const struct boot_config *cfg)
{
	boot_cfg = cfg;
}

void boot_http_handler(const struct http_request *req, struct http_reply *reply)
{
	const struct boot_config *cfg = boot_cfg;
	int get = strcmp(req->method, "GET") == 0 || strcmp(req->method, "HEAD") == 0;
	char path[PATH_MAX];

	if (strcmp(req->path, "/metrics") == 0)
		return http_metrics_handler(req, reply);
	if (strcmp(req->path, "/boot.ipxe") != 0 && strcmp(req->path, "/boot/vmlinuz") != 0 &&
	    strcmp(req->path, "/boot/initrd.img") != 0 && strncmp(req->path, "/ipxe/", 6) != 0)
		return boot_not_found(reply);
	if (!get) {
		reply->status = 405;
		reply->allow = "GET, HEAD";
		sb_printf(&reply->body, "only GET and HEAD\n");
		return;
	}
	if (strcmp(req->path, "/boot.ipxe") == 0) {
		if (!cfg->kernel) {
			reply->status = 503;
			sb_printf(&reply->body, "no kernel configured (virtman seed --kernel)\n");
			return;
		}
		if (boot_script(cfg, req->query, &reply->body) < 0) {
			reply->status = 400;
			sb_free(&reply->body);
			sb_printf(&reply->body, "malformed mac= parameter\n");
			return;
		}
		log_msg("http %s: boot script%s%s", req->peer, *req->query ? " for " : "",
			req->query);
		reply->content_type = "text/plain; charset=utf-8";
		return;
	}
	if (strcmp(req->path, "/boot/vmlinuz") == 0) {
		if (!cfg->kernel)
			return boot_not_found(reply);
		http_reply_file(reply, cfg->kernel, BOOT_BINARY_TYPE);
		return;
	}
	if (strcmp(req->path, "/boot/initrd.img") == 0) {
		if (!cfg->initrd)
			return boot_not_found(reply);
		http_reply_file(reply, cfg->initrd, BOOT_BINARY_TYPE);
		return;
	}
	if (!cfg->ipxe_dir || !boot_ipxe_name_ok(req->path + 6) ||
	    snprintf(path, sizeof path, "%s/%s", cfg->ipxe_dir, req->path + 6) >= (int)sizeof path)
		return boot_not_found(reply);
	http_reply_file(reply, path, BOOT_BINARY_TYPE);
}
