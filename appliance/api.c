/* The seed's HTTP API: host registration and heartbeats (key=value bodies), the rack as
 * JSON and as a table, agent logs, the image manifest, and the dashboard. Everything else
 * goes to the boot routes (pxe/boot.c). */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "appliance/api.h"
#include "appliance/coord.h"
#include "appliance/dashboard.h"
#include "lib/evloop.h"
#include "lib/kv.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "lib/net.h"
#include "pxe/boot.h"

#define API_PREFIX "/api/v1/hosts"

static struct coord *api_coord;
static const char *api_manifest_path;
static const char *api_userland_manifest_path;
static struct ev_tick api_tick;
static int (*api_reimage_start)(const char *token, const char *image, bool reboot,
				const char *vm_marker, char *err, size_t errlen);
static void (*api_reimage_status)(struct strbuf *out);
static const char *api_vm_data_dir;
static struct log_limit api_log_limit;

static int64_t api_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void api_text(struct http_reply *reply, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void api_text(struct http_reply *reply, int status, const char *fmt, ...)
{
	char line[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	reply->status = status;
	reply->content_type = "text/plain; charset=utf-8";
	sb_printf(&reply->body, "%s\n", line);
}

/* Parses a request body of key=value lines into kv (text is a copy kept by the caller). */
static int api_body(const struct http_request *req, char **text, struct kv *kv)
{
	*text = malloc(req->body_len + 1);
	if (!*text)
		return -ENOMEM;
	memcpy(*text, req->body ? req->body : "", req->body_len);
	return kv_parse(*text, req->body_len, kv, KV_MAX);
}

static int api_status_of(int err)
{
	switch (err) {
	case -EACCES: return 403;
	case -ENOENT: return 404;
	case -ENOSPC: return 507;
	case -EBUSY: return 409;
	case -EIO: return 500;
	default: return 400;
	}
}

static void api_register(const struct http_request *req, struct http_reply *reply)
{
	struct kv kv[KV_MAX];
	char *text, err[200];
	int n = api_body(req, &text, kv), id;

	if (n < 0) {
		free(text);
		log_limited(&api_log_limit, "api %s: registration body is not key=value lines", req->peer);
		return api_text(reply, 400, "body: key=value lines expected");
	}
	id = coord_register(api_coord, kv, n, ev_now_ms(), api_wall_ms(), &reply->body, err,
			    sizeof err);
	free(text);
	if (id < 0) {
		sb_free(&reply->body);
		log_limited(&api_log_limit, "api %s: registration refused: %s", req->peer, err);
		return api_text(reply, api_status_of(id), "%s", err);
	}
	reply->content_type = "text/plain; charset=utf-8";
	coord_save(api_coord);
}

static void api_heartbeat(const struct http_request *req, struct http_reply *reply, int id)
{
	struct kv kv[KV_MAX];
	char *text, err[200];
	int n = api_body(req, &text, kv), rc;

	if (n < 0) {
		free(text);
		return api_text(reply, 400, "body: key=value lines expected");
	}
	rc = coord_heartbeat(api_coord, id, kv, n, ev_now_ms(), api_wall_ms(), &reply->body, err,
			     sizeof err);
	free(text);
	if (rc < 0) {
		sb_free(&reply->body);
		return api_text(reply, api_status_of(rc), "%s", err);
	}
	reply->content_type = "text/plain; charset=utf-8";
}

/* POST /api/v1/reimage: token=, image=, reboot=0|1, vm-marker= (optional). */
static void api_reimage(const struct http_request *req, struct http_reply *reply)
{
	struct kv kv[KV_MAX];
	char *text, err[600];
	uint64_t reboot = 0;
	int n = api_body(req, &text, kv), rc;

	if (n < 0) {
		free(text);
		return api_text(reply, 400, "body: key=value lines expected");
	}
	if (kv_get(kv, n, "reboot") && kv_get_u64(kv, n, "reboot", 0, 1, &reboot) < 0) {
		free(text);
		return api_text(reply, 400, "reboot: 0 or 1 expected");
	}
	rc = api_reimage_start(kv_get(kv, n, "token"), kv_get(kv, n, "image"), reboot != 0,
			       kv_get(kv, n, "vm-marker"), err, sizeof err);
	free(text);
	if (rc < 0) {
		log_limited(&api_log_limit, "api %s: reimage refused: %s", req->peer, err);
		return api_text(reply, api_status_of(rc), "%s", err);
	}
	reply->status = 202;
	reply->content_type = "text/plain; charset=utf-8";
	kv_add(&reply->body, "generation", "%d", rc);
	kv_add(&reply->body, "state", "digesting");
}

/* The hosts' progress for `virtman reimage`: a "host=" line each (ID ADDR LIVE GEN STAGE
 * VMS-UP VMS-FAILED VMS STAGES, the last the generation's stages so far, comma-separated), after "vms-per-host=" (VMs every host should come back with). */
static void api_reimage_hosts(struct strbuf *out)
{
	const struct coord *c = api_coord;

	kv_add(out, "vms-per-host", "%u", c->cfg.userland_iqn ? c->cfg.vms_per_host : 0);
	for (int i = 0; i < c->nhosts; i++) {
		const struct coord_host *h = &c->hosts[i];
		char ip[INET_ADDRSTRLEN];
		int up = 0, failed = 0;

		inet_ntop(AF_INET, &h->addr, ip, sizeof ip);
		for (int v = 0; v < h->nvms; v++) {
			up += strcmp(h->vms[v].stage, "vm-up") == 0;
			failed += strcmp(h->vms[v].stage, "failed") == 0;
		}
		char stages[COORD_STAGES_MAX * 25] = "-";
		size_t len = 0;

		for (int k = 0; k < h->nstages; k++)
			len += (size_t)snprintf(stages + len, sizeof stages - len, "%s%s",
						k ? "," : "", h->stages[k].name);
		kv_add(out, "host", "%d %s %d %u %s %d %d %d %s", h->id, ip, h->live, h->generation,
		       h->stage[0] ? h->stage : "-", up, failed, h->nvms, stages);
	}
}

/* GET /api/v1/vm-data/VM/FILE: a VM's NoCloud seed (its SMBIOS serial points cloud-init
 * here). VM is a name the agents give (hostN-vmM): letters, digits, '-' only. */
static void api_vm_data(const struct http_request *req, struct http_reply *reply)
{
	static const char *const files[] = { "meta-data", "user-data", "vendor-data",
					     "network-config" };
	const char *rest = req->path + strlen("/api/v1/vm-data/"), *slash = strchr(rest, '/');
	char vm[32], path[PATH_MAX];
	size_t vlen = slash ? (size_t)(slash - rest) : 0;
	const char *file = NULL;

	if (vlen == 0 || vlen >= sizeof vm || strspn(rest, "abcdefghijklmnopqrstuvwxyz"
			"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-") != vlen)
		return api_text(reply, 404, "expected /api/v1/vm-data/VM/FILE");
	for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
		if (strcmp(slash + 1, files[i]) == 0)
			file = files[i];
	if (!file)
		return api_text(reply, 404, "FILE: meta-data, user-data, vendor-data or network-config");
	memcpy(vm, rest, vlen);
	vm[vlen] = '\0';
	snprintf(path, sizeof path, "%s/%s/%s", api_vm_data_dir, vm, file);
	if (access(path, F_OK) != 0)
		snprintf(path, sizeof path, "%s/%s", api_vm_data_dir, file);
	if (access(path, F_OK) == 0) {
		http_reply_file(reply, path, "text/plain; charset=utf-8");
		return;
	}
	reply->content_type = "text/plain; charset=utf-8";
	if (strcmp(file, "meta-data") == 0)
		sb_printf(&reply->body, "instance-id: %s-g%u\nlocal-hostname: %s\n", vm,
			  api_coord->generation, vm);
	else if (strcmp(file, "user-data") == 0)
		sb_printf(&reply->body, "#cloud-config\n");
	else
		api_text(reply, 404, "no %s for %s", file, vm);
}

/* A table for `virtman status`: one host a line. */
static void api_status_table(struct strbuf *out)
{
	const struct coord *c = api_coord;

	sb_printf(out, "%-4s %-17s %-15s %-6s %-5s %-12s %-4s %-9s %s\n", "ID", "MAC", "ADDRESS",
		  "PARENT", "DEPTH", "STAGE", "GEN", "VMS UP", "SINCE REGISTERED");
	for (int i = 0; i < c->nhosts; i++) {
		const struct coord_host *h = &c->hosts[i];
		char ip[INET_ADDRSTRLEN], parent[16], vms[16];
		int up = 0;

		inet_ntop(AF_INET, &h->addr, ip, sizeof ip);
		snprintf(parent, sizeof parent, h->parent ? "%d" : "seed", h->parent);
		for (int v = 0; v < h->nvms; v++)
			up += strcmp(h->vms[v].stage, "vm-up") == 0;
		snprintf(vms, sizeof vms, "%d/%d", up, h->nvms);
		sb_printf(out, "%-4d %-17s %-15s %-6s %-5d %-12s %-4u %-9s %.1f s%s%s\n", h->id, h->mac,
			  ip, parent, coord_depth(c, h->id), h->live ? h->stage : "lost",
			  h->generation, vms,
			  h->nstages ? (double)(h->stages[h->nstages - 1].at_ms - h->registered_ms) / 1000 : 0.0,
			  h->reason[0] ? "  " : "", h->reason);
	}
}

/* Routes /api/v1/hosts/ID/ACTION; false when the path is not of that form. */
static bool api_host_route(const struct http_request *req, struct http_reply *reply)
{
	const char *rest = req->path + strlen(API_PREFIX);
	char idbuf[16], action[32];
	const char *slash;
	uint64_t id;

	if (rest[0] != '/')
		return false;
	rest++;
	slash = strchr(rest, '/');
	if (!slash || (size_t)(slash - rest) >= sizeof idbuf || strlen(slash + 1) >= sizeof action)
		return false;
	memcpy(idbuf, rest, (size_t)(slash - rest));
	idbuf[slash - rest] = '\0';
	snprintf(action, sizeof action, "%s", slash + 1);
	if (parse_u64(idbuf, 1, COORD_HOSTS_MAX, &id) < 0) {
		api_text(reply, 404, "no host %s", idbuf);
		return true;
	}
	if (strcmp(action, "heartbeat") == 0) {
		if (strcmp(req->method, "POST") != 0) {
			reply->allow = "POST";
			api_text(reply, 405, "POST a key=value body");
		} else {
			api_heartbeat(req, reply, (int)id);
		}
		return true;
	}
	if (strcmp(action, "log") == 0 && strcmp(req->method, "GET") == 0) {
		if (coord_host_log(api_coord, (int)id, &reply->body) < 0)
			api_text(reply, 404, "no host %d", (int)id);
		else
			reply->content_type = "text/plain; charset=utf-8";
		return true;
	}
	api_text(reply, 404, "unknown host action '%s'", action);
	return true;
}

void api_http_handler(const struct http_request *req, struct http_reply *reply)
{
	bool get = strcmp(req->method, "GET") == 0 || strcmp(req->method, "HEAD") == 0;

	if (strcmp(req->path, "/") == 0 && get) {
		reply->content_type = "text/html; charset=utf-8";
		sb_printf(&reply->body, "%s", dashboard_html);
		return;
	}
	if (strcmp(req->path, API_PREFIX) == 0) {
		if (!api_coord)
			return api_text(reply, 503, "this seed serves no image (start it with --image)");
		if (strcmp(req->method, "POST") == 0)
			return api_register(req, reply);
		if (!get) {
			reply->allow = "GET, POST";
			return api_text(reply, 405, "GET or POST");
		}
		reply->content_type = "application/json";
		return coord_json_hosts(api_coord, &reply->body);
	}
	if (strncmp(req->path, API_PREFIX "/", strlen(API_PREFIX) + 1) == 0 && api_coord &&
	    api_host_route(req, reply))
		return;
	if (strcmp(req->path, "/api/v1/tree") == 0 && get && api_coord) {
		reply->content_type = "application/json";
		return coord_json_tree(api_coord, &reply->body);
	}
	if (strcmp(req->path, "/api/v1/status") == 0 && get && api_coord) {
		reply->content_type = "text/plain; charset=utf-8";
		return api_status_table(&reply->body);
	}
	if (strcmp(req->path, "/api/v1/reimage") == 0 && api_coord && api_reimage_start) {
		if (strcmp(req->method, "POST") == 0)
			return api_reimage(req, reply);
		if (!get) {
			reply->allow = "GET, POST";
			return api_text(reply, 405, "GET or POST");
		}
		reply->content_type = "text/plain; charset=utf-8";
		api_reimage_status(&reply->body);
		return api_reimage_hosts(&reply->body);
	}
	if (strncmp(req->path, "/api/v1/vm-data/", 16) == 0 && get && api_coord &&
	    api_vm_data_dir)
		return api_vm_data(req, reply);
	if (strcmp(req->path, "/api/v1/manifest") == 0 && get && api_manifest_path) {
		http_reply_file(reply, api_manifest_path, "text/plain; charset=utf-8");
		return;
	}
	if (strcmp(req->path, "/api/v1/userland-manifest") == 0 && get && api_userland_manifest_path) {
		http_reply_file(reply, api_userland_manifest_path, "text/plain; charset=utf-8");
		return;
	}
	if (strncmp(req->path, "/api/", 5) == 0)
		return api_text(reply, api_coord ? 404 : 503, api_coord ? "no such API route" :
				"this seed serves no image (start it with --image)");
	boot_http_handler(req, reply);
}

static void api_on_tick(void *ctx, uint64_t now)
{
	coord_expire(api_coord, now, api_wall_ms());
	coord_save(api_coord);
}

void api_set_reimage(int (*start)(const char *token, const char *image, bool reboot,
				  const char *vm_marker, char *err, size_t errlen),
		     void (*status)(struct strbuf *out))
{
	api_reimage_start = start;
	api_reimage_status = status;
}

void api_set_vm_data(const char *dir)
{
	api_vm_data_dir = dir;
}

void api_init(struct coord *c, const char *manifest_path, const char *userland_manifest_path)
{
	api_coord = c;
	api_manifest_path = manifest_path;
	api_userland_manifest_path = userland_manifest_path;
	if (!c)
		return;
	api_tick = (struct ev_tick){ .fn = api_on_tick };
	ev_tick_add(&api_tick);
	metrics_register(coord_metrics, c);
}
