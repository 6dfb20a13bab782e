/* The coordinator: the rack's host registry, the distribution tree, stages and timings.
 * Pure state and decisions; appliance/api.c puts it on HTTP. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "appliance/coord.h"
#include "lib/json.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "lib/net.h"

#define COORD_STATE_MAGIC "virtman-rack 1"
#define COORD_STATE_MAX (8u << 20)

/* Stages an agent may report, in the order a host goes through them. */
static const char *const coord_host_stages[] = {
	"pxe", "registered", "relay-ready", "attached", "ready", "vm-booting", "vm-up",
	"failed", "reimaging", "rebooting",
};
static const char *const coord_vm_stages[] = {
	"defined", "vm-booting", "vm-up", "failed", "stopped",
};

static bool coord_stage_known(const char *s, const char *const *list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(s, list[i]) == 0)
			return true;
	return false;
}

struct coord_host *coord_host(struct coord *c, int id)
{
	if (id < 1 || id > c->nhosts)
		return NULL;
	return &c->hosts[id - 1];
}

static const struct coord_host *coord_host_const(const struct coord *c, int id)
{
	if (id < 1 || id > c->nhosts)
		return NULL;
	return &c->hosts[id - 1];
}

int coord_depth(const struct coord *c, int id)
{
	int depth = 0;

	/* Capped walk: a corrupt state file must not loop forever. */
	while (id != COORD_ROOT && depth <= c->nhosts) {
		const struct coord_host *h = coord_host_const(c, id);

		if (!h)
			return -1;
		id = h->parent;
		depth++;
	}
	return id == COORD_ROOT ? depth : -1;
}

/* True when id sits in the subtree below (or at) top. */
static bool coord_in_subtree(const struct coord *c, int id, int top)
{
	for (int hops = 0; hops <= c->nhosts && id != COORD_ROOT; hops++) {
		const struct coord_host *h = coord_host_const(c, id);

		if (id == top)
			return true;
		if (!h)
			return false;
		id = h->parent;
	}
	return false;
}

static uint32_t coord_children(const struct coord *c, int id)
{
	uint32_t n = 0;

	for (int i = 0; i < c->nhosts; i++)
		if (c->hosts[i].live && c->hosts[i].parent == id && c->hosts[i].id != id)
			n++;
	return n;
}

static bool coord_same_subnet(const struct coord *c, struct in_addr a, struct in_addr b)
{
	uint32_t mask = c->cfg.prefix_len ? htonl(~0u << (32 - c->cfg.prefix_len)) : 0;

	return (a.s_addr & mask) == (b.s_addr & mask);
}

/* Breadth-first placement: the shallowest node with room, then one in the host's own
 * subnet, then the oldest. Never a node inside the host's own subtree. */
static int coord_pick_parent(const struct coord *c, const struct coord_host *h)
{
	int best = -1, best_depth = 0;
	bool best_local = false;

	if (coord_children(c, COORD_ROOT) < c->cfg.fanout) {
		best = COORD_ROOT;
		best_local = coord_same_subnet(c, h->addr, c->cfg.seed_addr);
	}
	for (int i = 0; i < c->nhosts; i++) {
		const struct coord_host *p = &c->hosts[i];
		int depth;
		bool local;

		if (!p->live || p->id == h->id || strcmp(p->stage, "failed") == 0 ||
		    coord_in_subtree(c, p->id, h->id) || coord_children(c, p->id) >= c->cfg.fanout)
			continue;
		depth = coord_depth(c, p->id);
		if (depth < 0)
			continue;
		local = coord_same_subnet(c, h->addr, p->addr);
		if (best < 0 || depth < best_depth || (depth == best_depth && local && !best_local)) {
			best = p->id;
			best_depth = depth;
			best_local = local;
		}
	}
	return best < 0 ? COORD_ROOT : best;	/* every node full of failed hosts: the seed */
}

/* Puts h under a new parent; while it is placed it counts as nobody's child. */
static void coord_place(struct coord *c, struct coord_host *h)
{
	h->live = false;
	h->parent = COORD_ROOT;
	h->parent = coord_pick_parent(c, h);
	h->live = true;
}

static void coord_url(const char *iqn, struct in_addr addr, uint16_t port, char *out, size_t len)
{
	char ip[INET_ADDRSTRLEN];

	inet_ntop(AF_INET, &addr, ip, sizeof ip);
	snprintf(out, len, "iscsi://%s:%u/%s/0", ip, port, iqn);
}

/* Upstreams of host id for one image: parent, uncle, root, at the image's ports. */
static int coord_upstreams_of(const struct coord *c, int id, const char *iqn, uint16_t port,
			      uint16_t root_port, char urls[][128], int max)
{
	const struct coord_host *h = coord_host_const(c, id), *p;
	int n = 0;

	if (!h || max < 3)
		return 0;
	p = coord_host_const(c, h->parent);
	if (p) {
		coord_url(iqn, p->addr, port, urls[n++], 128);
		/* The uncle: another live child of the grandparent, for spreading and failover. */
		for (int i = 0; i < c->nhosts; i++) {
			const struct coord_host *u = &c->hosts[i];

			if (u->live && u->id != p->id && u->id != h->id && u->parent == p->parent &&
			    !coord_in_subtree(c, u->id, h->id)) {
				coord_url(iqn, u->addr, port, urls[n++], 128);
				break;
			}
		}
	}
	coord_url(iqn, c->cfg.seed_addr, root_port, urls[n++], 128);
	return n;
}

int coord_upstreams(const struct coord *c, int id, char urls[][128], int max)
{
	return coord_upstreams_of(c, id, c->cfg.iqn, c->cfg.iscsi_port,
				  c->cfg.root_port ? c->cfg.root_port : c->cfg.iscsi_port, urls, max);
}

static void coord_set_stage(struct coord_host *h, const char *stage, const char *reason,
			    int64_t now_ms)
{
	snprintf(h->stage, sizeof h->stage, "%s", stage);
	snprintf(h->reason, sizeof h->reason, "%s", reason ? reason : "");
	for (int i = 0; i < h->nstages; i++)
		if (strcmp(h->stages[i].name, stage) == 0)
			return;	/* the first time a stage was reached is its timing */
	if (h->nstages < COORD_STAGES_MAX) {
		snprintf(h->stages[h->nstages].name, sizeof h->stages[0].name, "%s", stage);
		h->stages[h->nstages].at_ms = now_ms;
		h->nstages++;
	}
}

/* The reply to a registration or heartbeat: where to fetch from, what to run. */
static void coord_reply(const struct coord *c, const struct coord_host *h, struct strbuf *out)
{
	char urls[3][128];
	int n = coord_upstreams(c, h->id, urls, 3);

	kv_add(out, "host-id", "%d", h->id);
	kv_add(out, "generation", "%u", c->generation);
	if (c->reboot)
		kv_add(out, "reboot", "1");
	kv_add(out, "iqn", "%s", c->cfg.iqn);
	kv_add(out, "iscsi-port", "%u", c->cfg.iscsi_port);
	for (int i = 0; i < n; i++)
		kv_add(out, "upstream", "%s", urls[i]);
	kv_add(out, "manifest-url", "%s", c->cfg.manifest_url);
	if (c->cfg.userland_iqn) {
		n = coord_upstreams_of(c, h->id, c->cfg.userland_iqn, c->cfg.userland_port,
				       c->cfg.userland_port, urls, 3);
		kv_add(out, "userland-iqn", "%s", c->cfg.userland_iqn);
		kv_add(out, "userland-port", "%u", c->cfg.userland_port);
		kv_add(out, "userland-manifest-url", "%s", c->cfg.userland_manifest_url);
		for (int i = 0; i < n; i++)
			kv_add(out, "userland-upstream", "%s", urls[i]);
	}
	kv_add(out, "vm-marker", "%s", c->vm_marker[0] ? c->vm_marker : COORD_MARKER_DEFAULT);
	kv_add(out, "vm-timeout", "%u", c->cfg.vm_timeout_s);
	kv_add(out, "vm-network", "%s", c->cfg.vm_network ? c->cfg.vm_network : "user");
	if (c->cfg.vm_data_url)
		kv_add(out, "vm-data-url", "%s", c->cfg.vm_data_url);
	kv_add(out, "vms", "%u", c->cfg.vms_per_host);
	kv_add(out, "vcpus", "%u", c->cfg.vcpus);
	kv_add(out, "memory", "%u", c->cfg.memory_mib);
	kv_add(out, "heartbeat", "%u", c->cfg.heartbeat_s);
}

/* Accepts "aa:bb:cc:dd:ee:ff" (any case), stored lower-case; not all zeros or all ones. */
static int coord_parse_mac(const char *s, char out[18])
{
	static const uint8_t zeros[6], ones[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	uint8_t mac[6];

	if (strlen(s) != 17 || mac_parse(s, mac) < 0 || memcmp(mac, zeros, 6) == 0 ||
	    memcmp(mac, ones, 6) == 0)
		return -EINVAL;
	mac_format(mac, out);
	return 0;
}

/* The boot token every host presents, on registration and on every heartbeat, so nobody
 * else on the boot LAN speaks for a host. */
static bool coord_token_ok(const struct coord *c, const struct kv *kv, int n)
{
	const char *token = kv_get(kv, n, "token");

	return !c->cfg.token || (token && strcmp(token, c->cfg.token) == 0);
}

int coord_register(struct coord *c, const struct kv *kv, int n, uint64_t now_mono,
		   int64_t now_ms, struct strbuf *reply, char *err, size_t errlen)
{
	const char *mac_s = kv_get(kv, n, "mac"), *addr_s = kv_get(kv, n, "addr");
	const char *disks = kv_get(kv, n, "disks");
	uint64_t cores, memory;
	struct coord_host *h = NULL;
	struct in_addr addr;
	char mac[18];

	if (!coord_token_ok(c, kv, n)) {
		snprintf(err, errlen, "wrong or missing boot token");
		return -EACCES;
	}
	if (!mac_s || coord_parse_mac(mac_s, mac) < 0) {
		snprintf(err, errlen, "mac: missing or not aa:bb:cc:dd:ee:ff");
		return -EINVAL;
	}
	if (!addr_s || inet_pton(AF_INET, addr_s, &addr) != 1 || addr.s_addr == 0 ||
	    addr.s_addr == INADDR_BROADCAST) {
		snprintf(err, errlen, "addr: missing or not a usable IPv4 address");
		return -EINVAL;
	}
	if (kv_get_u64(kv, n, "cores", 1, 4096, &cores) < 0) {
		snprintf(err, errlen, "cores: missing or outside 1..4096");
		return -EINVAL;
	}
	if (kv_get_u64(kv, n, "memory", 16, 1u << 26, &memory) < 0) {
		snprintf(err, errlen, "memory: missing or outside 16..67108864 MiB");
		return -EINVAL;
	}
	for (int i = 0; i < c->nhosts; i++)
		if (strcmp(c->hosts[i].mac, mac) == 0)
			h = &c->hosts[i];
	if (!h) {
		if (c->nhosts == COORD_HOSTS_MAX) {
			snprintf(err, errlen, "the rack is full (%d hosts)", COORD_HOSTS_MAX);
			return -ENOSPC;
		}
		h = &c->hosts[c->nhosts];
		memset(h, 0, sizeof *h);
		h->id = ++c->nhosts;
		memcpy(h->mac, mac, sizeof h->mac);
		h->registered_ms = now_ms;
	} else if (!h->live) {
		h->nstages = 0;	/* a lost host booting again starts a new history */
		h->nvms = 0;
	}
	/* Another live host claiming this address is stale: one address, one host. */
	for (int i = 0; i < c->nhosts; i++) {
		struct coord_host *o = &c->hosts[i];

		if (o != h && o->live && o->addr.s_addr == addr.s_addr) {
			log_msg("coordinator: host %d (%s) gave up %s to host %d", o->id, o->mac,
				addr_s, h->id);
			o->live = false;
			coord_set_stage(o, "lost", "address taken by another host", now_ms);
		}
	}
	h->addr = addr;
	h->cores = (uint32_t)cores;
	h->memory_mib = (uint32_t)memory;
	snprintf(h->disks, sizeof h->disks, "%s", disks ? disks : "");
	struct coord_host *parent = coord_host(c, h->parent);

	if (!h->live || (h->parent != COORD_ROOT && !(parent && parent->live)))
		coord_place(c, h);
	h->live = true;
	if (h->generation != c->generation) {
		h->nstages = 0;	/* the new generation's stages, timed from now */
		h->nvms = 0;
		h->disk_sha256[0] = '\0';
		h->generation = c->generation;
	}
	h->seen_ms = now_ms;
	h->seen_mono = now_mono;
	coord_set_stage(h, "registered", NULL, now_ms);
	c->dirty = true;
	if (h->parent == COORD_ROOT)
		log_msg("coordinator: host %d (%s, %s) registered under the seed", h->id, h->mac,
			addr_s);
	else
		log_msg("coordinator: host %d (%s, %s) registered under host %d (depth %d)", h->id,
			h->mac, addr_s, h->parent, coord_depth(c, h->id));
	coord_reply(c, h, reply);
	return h->id;
}

static struct coord_vm *coord_vm_get(struct coord_host *h, const char *name)
{
	for (int i = 0; i < h->nvms; i++)
		if (strcmp(h->vms[i].name, name) == 0)
			return &h->vms[i];
	if (h->nvms == COORD_VMS_MAX)
		return NULL;
	struct coord_vm *vm = &h->vms[h->nvms++];

	memset(vm, 0, sizeof *vm);
	snprintf(vm->name, sizeof vm->name, "%s", name);
	vm->boot_ms = -1;
	return vm;
}

/* Applies "stage=", "reason=", "vm=NAME vm-stage=..." style updates of one body. */
static int coord_apply_updates(struct coord_host *h, const struct kv *kv, int n, int64_t now_ms,
			       char *err, size_t errlen)
{
	const char *stage = kv_get(kv, n, "stage"), *reason = kv_get(kv, n, "reason");
	const char *vm_name = kv_get(kv, n, "vm"), *vm_stage = kv_get(kv, n, "vm-stage");
	const char *disk = kv_get(kv, n, "disk-sha256");
	uint64_t gen;

	if (kv_get(kv, n, "generation")) {
		if (kv_get_u64(kv, n, "generation", 1, UINT32_MAX, &gen) < 0) {
			snprintf(err, errlen, "generation: a number from 1 expected");
			return -EINVAL;
		}
		/* The host moved to another image: its history starts again, old VMs gone. */
		if (gen != h->generation) {
			h->generation = (uint32_t)gen;
			h->nstages = 0;
			h->nvms = 0;
			h->disk_sha256[0] = '\0';
		}
	}
	if (disk) {
		if (strlen(disk) != 64 || strspn(disk, "0123456789abcdef") != 64) {
			snprintf(err, errlen, "disk-sha256: 64 lower-case hex digits expected");
			return -EINVAL;
		}
		memcpy(h->disk_sha256, disk, 65);
	}
	for (int i = 0; i < n; i++) {
		if (strcmp(kv[i].key, "log") != 0)
			continue;
		if (!h->log && !(h->log = calloc(COORD_LOG_LINES, sizeof *h->log)))
			break;
		snprintf(h->log[h->log_next++ % COORD_LOG_LINES], COORD_LOG_LEN, "%s", kv[i].value);
	}

	if (stage) {
		if (!coord_stage_known(stage, coord_host_stages,
				       sizeof coord_host_stages / sizeof coord_host_stages[0])) {
			snprintf(err, errlen, "stage: unknown stage '%.32s'", stage);
			return -EINVAL;
		}
		coord_set_stage(h, stage, reason, now_ms);
	}
	if (vm_name || vm_stage) {
		struct coord_vm *vm;

		if (!vm_name || !vm_stage || !*vm_name || strlen(vm_name) >= sizeof vm->name ||
		    !coord_stage_known(vm_stage, coord_vm_stages,
				       sizeof coord_vm_stages / sizeof coord_vm_stages[0])) {
			snprintf(err, errlen, "vm/vm-stage: both needed, a known stage, name < 32");
			return -EINVAL;
		}
		vm = coord_vm_get(h, vm_name);
		if (!vm) {
			snprintf(err, errlen, "more than %d VMs on one host", COORD_VMS_MAX);
			return -ENOSPC;
		}
		if (strcmp(vm_stage, "vm-booting") == 0)
			vm->booting_at_ms = now_ms;
		if (strcmp(vm_stage, "vm-up") == 0 && vm->booting_at_ms && vm->boot_ms < 0)
			vm->boot_ms = now_ms - vm->booting_at_ms;
		snprintf(vm->stage, sizeof vm->stage, "%s", vm_stage);
		snprintf(vm->reason, sizeof vm->reason, "%s", reason ? reason : "");
		vm->stage_at_ms = now_ms;
	}
	return 0;
}

int coord_heartbeat(struct coord *c, int id, const struct kv *kv, int n, uint64_t now_mono,
		    int64_t now_ms, struct strbuf *reply, char *err, size_t errlen)
{
	struct coord_host *h = coord_host(c, id);
	int rc;

	if (!coord_token_ok(c, kv, n)) {
		snprintf(err, errlen, "wrong or missing boot token");
		return -EACCES;
	}
	if (!h || !h->live) {
		snprintf(err, errlen, "host %d is not registered (or was lost): register again", id);
		return -ENOENT;
	}
	rc = coord_apply_updates(h, kv, n, now_ms, err, errlen);
	if (rc < 0)
		return rc;
	h->seen_ms = now_ms;
	h->seen_mono = now_mono;
	c->dirty = true;
	coord_reply(c, h, reply);
	return 0;
}

bool coord_marker_valid(const char *marker)
{
	size_t len = marker ? strlen(marker) : 0;

	if (len == 0 || len > COORD_MARKER_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)marker[i] < 0x20 || (unsigned char)marker[i] > 0x7e)
			return false;
	return true;
}

void coord_new_generation(struct coord *c, const char *iqn, const char *image_id, bool reboot,
			  const char *vm_marker)
{
	c->generation++;
	c->cfg.iqn = iqn;
	snprintf(c->image_id, sizeof c->image_id, "%s", image_id ? image_id : "");
	c->reboot = reboot;
	if (vm_marker)
		snprintf(c->vm_marker, sizeof c->vm_marker, "%s", vm_marker);
	c->dirty = true;
	log_msg("coordinator: generation %u: %s%s, VMs up on '%s'", c->generation, iqn,
		reboot ? " (hosts reboot to take it)" : "",
		c->vm_marker[0] ? c->vm_marker : COORD_MARKER_DEFAULT);
}

void coord_expire(struct coord *c, uint64_t now_mono, int64_t now_ms)
{
	uint64_t limit = (uint64_t)c->cfg.heartbeat_s * 1000 * COORD_LOST_BEATS;

	for (int i = 0; i < c->nhosts; i++) {
		struct coord_host *h = &c->hosts[i];

		if (!h->live || now_mono - h->seen_mono <= limit)
			continue;
		h->live = false;
		coord_set_stage(h, "lost", "no heartbeat", now_ms);
		c->dirty = true;
		log_msg("coordinator: host %d (%s) lost: silent for %llu s", h->id, h->mac,
			(unsigned long long)(now_mono - h->seen_mono) / 1000);
		/* Its children move to new parents; they learn it at their next heartbeat. */
		for (int k = 0; k < c->nhosts; k++) {
			struct coord_host *child = &c->hosts[k];

			if (!child->live || child->parent != h->id)
				continue;
			coord_place(c, child);
			log_msg("coordinator: host %d re-parented under %d", child->id, child->parent);
		}
	}
}

/* ---- JSON ---- */

static void coord_json_host(const struct coord *c, const struct coord_host *h, struct strbuf *out)
{
	char ip[INET_ADDRSTRLEN], urls[3][128];
	int n = coord_upstreams(c, h->id, urls, 3);

	inet_ntop(AF_INET, &h->addr, ip, sizeof ip);
	sb_printf(out, "{\"id\":%d,\"mac\":", h->id);
	json_str(out, h->mac);
	sb_printf(out, ",\"addr\":");
	json_str(out, ip);
	sb_printf(out, ",\"live\":%s,\"parent\":%d,\"depth\":%d,\"cores\":%u,\"memory\":%u,"
		       "\"generation\":%u,\"stage\":", h->live ? "true" : "false", h->parent,
		  coord_depth(c, h->id), h->cores, h->memory_mib, h->generation);
	json_str(out, h->stage);
	sb_printf(out, ",\"reason\":");
	json_str(out, h->reason);
	sb_printf(out, ",\"disk_sha256\":");
	json_str(out, h->disk_sha256);
	sb_printf(out, ",\"registered_ms\":%lld,\"seen_ms\":%lld,\"stages\":[",
		  (long long)h->registered_ms, (long long)h->seen_ms);
	for (int i = 0; i < h->nstages; i++) {
		sb_printf(out, "%s{\"name\":", i ? "," : "");
		json_str(out, h->stages[i].name);
		sb_printf(out, ",\"at_ms\":%lld}", (long long)h->stages[i].at_ms);
	}
	sb_printf(out, "],\"upstreams\":[");
	for (int i = 0; i < n; i++) {
		if (i)
			sb_add(out, ",", 1);
		json_str(out, urls[i]);
	}
	sb_printf(out, "],\"vms\":[");
	for (int i = 0; i < h->nvms; i++) {
		const struct coord_vm *vm = &h->vms[i];

		sb_printf(out, "%s{\"name\":", i ? "," : "");
		json_str(out, vm->name);
		sb_printf(out, ",\"stage\":");
		json_str(out, vm->stage);
		sb_printf(out, ",\"reason\":");
		json_str(out, vm->reason);
		sb_printf(out, ",\"boot_ms\":%lld}", (long long)vm->boot_ms);
	}
	sb_printf(out, "]}");
}

int coord_host_log(const struct coord *c, int id, struct strbuf *out)
{
	const struct coord_host *h = coord_host_const(c, id);
	unsigned first;

	if (!h)
		return -ENOENT;
	first = h->log_next > COORD_LOG_LINES ? h->log_next - COORD_LOG_LINES : 0;
	for (unsigned i = first; h->log && i < h->log_next; i++)
		sb_printf(out, "%s\n", h->log[i % COORD_LOG_LINES]);
	return 0;
}

void coord_json_hosts(const struct coord *c, struct strbuf *out)
{
	sb_printf(out, "{\"generation\":%u,\"hosts\":[", c->generation);
	for (int i = 0; i < c->nhosts; i++) {
		if (i)
			sb_add(out, ",", 1);
		coord_json_host(c, &c->hosts[i], out);
	}
	sb_printf(out, "]}\n");
}

/* Nested children of node id, live hosts only. */
static void coord_json_children(const struct coord *c, int id, int depth, struct strbuf *out)
{
	bool first = true;

	sb_printf(out, "\"children\":[");
	for (int i = 0; i < c->nhosts && depth <= c->nhosts; i++) {
		const struct coord_host *h = &c->hosts[i];

		if (!h->live || h->parent != id || h->id == id)
			continue;
		sb_printf(out, "%s{\"id\":%d,\"host\":", first ? "" : ",", h->id);
		coord_json_host(c, h, out);
		sb_add(out, ",", 1);
		coord_json_children(c, h->id, depth + 1, out);
		sb_add(out, "}", 1);
		first = false;
	}
	sb_add(out, "]", 1);
}

void coord_json_tree(const struct coord *c, struct strbuf *out)
{
	char ip[INET_ADDRSTRLEN];

	inet_ntop(AF_INET, &c->cfg.seed_addr, ip, sizeof ip);
	sb_printf(out, "{\"id\":0,\"seed\":");
	json_str(out, ip);
	sb_printf(out, ",\"fanout\":%u,\"generation\":%u,", c->cfg.fanout, c->generation);
	coord_json_children(c, COORD_ROOT, 0, out);
	sb_printf(out, "}\n");
}

void coord_metrics(struct strbuf *out, void *ctx)
{
	const struct coord *c = ctx;
	uint32_t live = 0, ready = 0, vms_up = 0, failed = 0;

	for (int i = 0; i < c->nhosts; i++) {
		const struct coord_host *h = &c->hosts[i];

		live += h->live;
		ready += h->live && (strcmp(h->stage, "ready") == 0 || strncmp(h->stage, "vm-", 3) == 0);
		failed += h->live && strcmp(h->stage, "failed") == 0;
		for (int v = 0; v < h->nvms; v++)
			vms_up += h->live && strcmp(h->vms[v].stage, "vm-up") == 0;
	}
	metrics_family(out, "virtman_hosts", "gauge", "Hosts known to the coordinator");
	metrics_sample(out, "virtman_hosts", "", (uint64_t)c->nhosts);
	metrics_family(out, "virtman_hosts_live", "gauge", "Hosts heard from recently");
	metrics_sample(out, "virtman_hosts_live", "", live);
	metrics_family(out, "virtman_hosts_ready", "gauge", "Live hosts that reached ready");
	metrics_sample(out, "virtman_hosts_ready", "", ready);
	metrics_family(out, "virtman_hosts_failed", "gauge", "Live hosts in the failed stage");
	metrics_sample(out, "virtman_hosts_failed", "", failed);
	metrics_family(out, "virtman_vms_up", "gauge", "VMs that reported vm-up");
	metrics_sample(out, "virtman_vms_up", "", vms_up);
	metrics_family(out, "virtman_generation", "gauge", "Image generation served");
	metrics_sample(out, "virtman_generation", "", c->generation);
}

/* ---- persistence ---- */

int coord_save(struct coord *c)
{
	char tmp[4096], ip[INET_ADDRSTRLEN];
	struct strbuf sb = { 0 };
	int fd, rc = 0;

	if (!c->cfg.state_path || !c->dirty)
		return 0;
	sb_printf(&sb, "%s\ngeneration %u\n", COORD_STATE_MAGIC, c->generation);
	if (c->image_id[0])
		sb_printf(&sb, "image %s %d\n", c->image_id, c->reboot);
	if (c->vm_marker[0])
		sb_printf(&sb, "marker %s\n", c->vm_marker);
	for (int i = 0; i < c->nhosts; i++) {
		const struct coord_host *h = &c->hosts[i];

		inet_ntop(AF_INET, &h->addr, ip, sizeof ip);
		sb_printf(&sb, "host %d %s %s %u %u %d %d %u %lld %lld %s\n", h->id, h->mac, ip,
			  h->cores, h->memory_mib, h->parent, h->live, h->generation,
			  (long long)h->registered_ms, (long long)h->seen_ms,
			  h->stage[0] ? h->stage : "-");
		for (int s = 0; s < h->nstages; s++)
			sb_printf(&sb, "stage %d %s %lld\n", h->id, h->stages[s].name,
				  (long long)h->stages[s].at_ms);
		for (int v = 0; v < h->nvms; v++)
			sb_printf(&sb, "vm %d %s %s %lld\n", h->id, h->vms[v].name,
				  h->vms[v].stage[0] ? h->vms[v].stage : "-",
				  (long long)h->vms[v].boot_ms);
	}
	if (sb.failed)
		return -ENOMEM;
	snprintf(tmp, sizeof tmp, "%s.tmp", c->cfg.state_path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		rc = -errno;
	} else {
		if (write(fd, sb.data, sb.len) != (ssize_t)sb.len || fsync(fd) < 0)
			rc = -errno ? -errno : -EIO;
		close(fd);
		if (rc == 0 && rename(tmp, c->cfg.state_path) < 0)
			rc = -errno;
	}
	sb_free(&sb);
	if (rc == 0)
		c->dirty = false;
	else
		log_msg("coordinator: saving %s: %s", c->cfg.state_path, strerror(-rc));
	return rc;
}

/* Reads one "host" line; hosts come back live, with a fresh heartbeat grace. */
static int coord_load_host(struct coord *c, const char *line)
{
	char mac[32], ip[32], stage[24];
	int id, parent, live;
	unsigned cores, memory, generation;
	long long reg, seen;
	struct coord_host *h;

	if (sscanf(line, "host %d %31s %31s %u %u %d %d %u %lld %lld %23s", &id, mac, ip, &cores,
		   &memory, &parent, &live, &generation, &reg, &seen, stage) != 11 ||
	    id != c->nhosts + 1 || id > COORD_HOSTS_MAX || parent < 0 || parent > COORD_HOSTS_MAX)
		return -EINVAL;
	h = &c->hosts[c->nhosts];
	memset(h, 0, sizeof *h);
	if (coord_parse_mac(mac, h->mac) < 0 || inet_pton(AF_INET, ip, &h->addr) != 1)
		return -EINVAL;
	h->id = id;
	h->cores = cores;
	h->memory_mib = memory;
	h->parent = parent;
	h->live = live != 0;
	h->generation = generation;
	h->registered_ms = reg;
	h->seen_ms = seen;
	snprintf(h->stage, sizeof h->stage, "%s", strcmp(stage, "-") ? stage : "");
	c->nhosts++;
	return 0;
}

static int coord_load(struct coord *c, uint64_t now_mono)
{
	char *text, *line, *save = NULL;
	ssize_t n;
	int fd, rc = 0;

	fd = open(c->cfg.state_path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	text = malloc(COORD_STATE_MAX + 1);
	if (!text) {
		close(fd);
		return -ENOMEM;
	}
	n = read(fd, text, COORD_STATE_MAX);
	close(fd);
	if (n < 0 || n == COORD_STATE_MAX) {
		free(text);
		return -EINVAL;
	}
	text[n] = '\0';
	line = strtok_r(text, "\n", &save);
	if (!line || strcmp(line, COORD_STATE_MAGIC) != 0) {
		free(text);
		return -EINVAL;
	}
	while ((line = strtok_r(NULL, "\n", &save)) && rc == 0) {
		char name[32], stage[24];
		long long at;
		int id;

		if (strncmp(line, "generation ", 11) == 0) {
			if (sscanf(line, "generation %u", &c->generation) != 1 || c->generation == 0)
				rc = -EINVAL;
		} else if (strncmp(line, "image ", 6) == 0) {
			int reboot;

			if (sscanf(line, "image %64s %d", c->image_id, &reboot) != 2)
				rc = -EINVAL;
			c->reboot = reboot != 0;
		} else if (strncmp(line, "marker ", 7) == 0) {
			if (!coord_marker_valid(line + 7))
				rc = -EINVAL;
			else
				snprintf(c->vm_marker, sizeof c->vm_marker, "%s", line + 7);
		} else if (strncmp(line, "host ", 5) == 0) {
			rc = coord_load_host(c, line);
		} else if (sscanf(line, "stage %d %23s %lld", &id, stage, &at) == 3) {
			struct coord_host *h = coord_host(c, id);

			if (!h || h->nstages == COORD_STAGES_MAX)
				rc = -EINVAL;
			else {
				snprintf(h->stages[h->nstages].name, sizeof h->stages[0].name, "%s", stage);
				h->stages[h->nstages++].at_ms = at;
			}
		} else if (sscanf(line, "vm %d %31s %23s %lld", &id, name, stage, &at) == 4) {
			struct coord_host *h = coord_host(c, id);
			struct coord_vm *vm = h ? coord_vm_get(h, name) : NULL;

			if (!vm)
				rc = -EINVAL;
			else {
				snprintf(vm->stage, sizeof vm->stage, "%s", strcmp(stage, "-") ? stage : "");
				vm->boot_ms = at;
			}
		} else {
			rc = -EINVAL;
		}
	}
	free(text);
	for (int i = 0; i < c->nhosts && rc == 0; i++) {
		c->hosts[i].seen_mono = now_mono;	/* heartbeats resume against the new seed */
		if (coord_depth(c, c->hosts[i].id) < 0)
			rc = -EINVAL;
	}
	return rc;
}

/* A seed started on another image than the rack last had: that is a new generation. */
static void coord_check_image(struct coord *c)
{
	const char *id = c->cfg.image_id;

	if (!id || strcmp(id, c->image_id) == 0)
		return;
	if (c->image_id[0]) {
		c->generation++;
		c->reboot = false;
		c->vm_marker[0] = '\0';	/* the old generation's */
		log_msg("coordinator: the image is not the one of generation %u: now generation %u",
			c->generation - 1, c->generation);
	}
	snprintf(c->image_id, sizeof c->image_id, "%s", id);
	c->dirty = true;
}

int coord_init(struct coord *c, const struct coord_config *cfg)
{
	struct timespec ts;
	int rc;

	for (int i = 0; i < c->nhosts; i++)
		free(c->hosts[i].log);	/* a second init (tests) */
	memset(c, 0, sizeof *c);
	c->cfg = *cfg;
	c->generation = 1;
	if (cfg->state_path) {
		clock_gettime(CLOCK_MONOTONIC, &ts);
		rc = coord_load(c, (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000);
		if (rc < 0) {
			log_msg("coordinator: %s is damaged (%s): starting with an empty rack",
				cfg->state_path, strerror(-rc));
			c->nhosts = 0;
			c->generation = 1;
			c->image_id[0] = '\0';
			c->reboot = false;
			c->vm_marker[0] = '\0';
		}
		if (c->nhosts)
			log_msg("coordinator: %d hosts restored from %s", c->nhosts, cfg->state_path);
	}
	coord_check_image(c);
	/* A marker given to this seed wins over the one a reimage left. */
	if (cfg->vm_marker && strcmp(cfg->vm_marker, c->vm_marker) != 0) {
		snprintf(c->vm_marker, sizeof c->vm_marker, "%s", cfg->vm_marker);
		c->dirty = true;
	}
	return 0;
}
