/* The coordinator: the rack's host registry, the distribution tree, stages and timings.
 * Pure state and decisions; appliance/api.c puts it on HTTP. */
#ifndef VIRTMAN_APPLIANCE_COORD_H
#define VIRTMAN_APPLIANCE_COORD_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>

#include "lib/kv.h"
#include "lib/strbuf.h"

#define COORD_HOSTS_MAX 1024
#define COORD_VMS_MAX 32
#define COORD_STAGES_MAX 16
#define COORD_ROOT 0		/* the seed: parent of the first hosts */
#define COORD_LOST_BEATS 3	/* heartbeats missed before a host is lost */
#define COORD_LOG_LINES 200	/* agent log lines kept per host */
#define COORD_LOG_LEN 200
#define COORD_MARKER_MAX 128	/* a VM marker's length */
#define COORD_MARKER_DEFAULT "virtman-vm-up"

struct coord_config {
	uint32_t fanout;		/* children per node, the seed included */
	uint32_t heartbeat_s;
	uint32_t vms_per_host;
	uint32_t vcpus;
	uint32_t memory_mib;
	uint32_t prefix_len;		/* hosts of one subnet of this length are grouped */
	struct in_addr seed_addr;
	uint16_t iscsi_port;		/* where every host's relay listens */
	uint16_t root_port;		/* where the seed's root export listens (0: iscsi_port) */
	const char *iqn;		/* the image's target name */
	const char *manifest_url;
	const char *userland_iqn;	/* the hypervisor userland image, or NULL */
	uint16_t userland_port;		/* where hosts' userland relays and the seed's export listen */
	const char *userland_manifest_url;
	const char *vm_marker;		/* console line that means a VM is up (NULL: the one the
					 * rack's generation has, else virtman-vm-up) */
	const char *vm_data_url;	/* where VMs' cloud-init NoCloud data is, or NULL */
	const char *vm_network;		/* "bridge" (on the host's bridge) or "user"; NULL: user */
	uint32_t vm_timeout_s;		/* a VM not up by then is failed */
	const char *image_id;		/* what the image is (its manifest's SHA-256): a different
					 * one at start is a new generation */
	const char *token;		/* boot token hosts must present */
	const char *state_path;		/* NULL: nothing persisted */
};

struct coord_stage {
	char name[24];
	int64_t at_ms;			/* wall clock */
};

struct coord_vm {
	char name[32];
	char stage[24];
	char reason[400];		/* a failure's cause and the console's last lines */
	int64_t stage_at_ms;
	int64_t boot_ms;		/* vm-booting to vm-up, or -1 */
	int64_t booting_at_ms;
};

struct coord_host {
	int id;				/* 1.. */
	bool live;
	char mac[18];
	struct in_addr addr;
	uint32_t cores;
	uint32_t memory_mib;
	char disks[128];
	int parent;			/* host id, or COORD_ROOT */
	char stage[24];
	char reason[160];
	struct coord_stage stages[COORD_STAGES_MAX];
	int nstages;
	int64_t registered_ms;
	int64_t seen_ms;		/* wall clock of the last word from it */
	uint64_t seen_mono;		/* monotonic, for expiry */
	uint32_t generation;
	struct coord_vm vms[COORD_VMS_MAX];
	int nvms;
	char disk_sha256[65];		/* what the agent read from its attached disk */
	char (*log)[COORD_LOG_LEN];	/* ring of agent log lines, allocated on first line */
	unsigned log_next;
};

struct coord {
	struct coord_config cfg;
	struct coord_host hosts[COORD_HOSTS_MAX];
	int nhosts;
	uint32_t generation;		/* image generation (reimaging bumps it) */
	char image_id[65];		/* the generation's image, persisted */
	bool reboot;			/* hosts reboot to take this generation (reimage --reboot) */
	char vm_marker[COORD_MARKER_MAX + 1];	/* this generation's, persisted; "": the default */
	bool dirty;			/* state to persist */
};

/* Sets up an empty rack and loads the persisted one, if any; 0 or a negative errno. */
int coord_init(struct coord *c, const struct coord_config *cfg);

/* Registers (or re-registers, by MAC) a host from its key=value body. Returns its id and
 * fills reply, or a negative errno with a one-line reason in err (-EACCES: bad token). */
int coord_register(struct coord *c, const struct kv *kv, int n, uint64_t now_mono,
		   int64_t now_ms, struct strbuf *reply, char *err, size_t errlen);

/* A heartbeat with the boot token, optionally carrying stage/vm updates; fills reply with
 * the current upstream list. 0, -EACCES (bad token), -ENOENT (unknown or lost host:
 * register again), -EINVAL. */
int coord_heartbeat(struct coord *c, int id, const struct kv *kv, int n, uint64_t now_mono,
		    int64_t now_ms, struct strbuf *reply, char *err, size_t errlen);

/* Starts the next generation: hosts see it in their next reply and switch to iqn (the
 * manifest URL stays the same), rebooting first when reboot is set; its VMs are up on
 * vm_marker (NULL: the same marker as before). */
void coord_new_generation(struct coord *c, const char *iqn, const char *image_id, bool reboot,
			  const char *vm_marker);

/* A VM marker is one line of 1 to COORD_MARKER_MAX printable characters. */
bool coord_marker_valid(const char *marker);

/* Marks hosts silent for COORD_LOST_BEATS intervals lost and re-parents their children. */
void coord_expire(struct coord *c, uint64_t now_mono, int64_t now_ms);

/* The upstream URLs of a host: parent, uncle, root. */
int coord_upstreams(const struct coord *c, int id, char urls[][128], int max);

/* Depth of a host in the tree (the seed is 0); -1 for a loop or a lost chain. */
int coord_depth(const struct coord *c, int id);

struct coord_host *coord_host(struct coord *c, int id);

void coord_json_hosts(const struct coord *c, struct strbuf *out);

/* The agent log lines a host sent, oldest first; -ENOENT for an unknown host. */
int coord_host_log(const struct coord *c, int id, struct strbuf *out);
void coord_json_tree(const struct coord *c, struct strbuf *out);
void coord_metrics(struct strbuf *out, void *ctx);

/* Writes the rack to cfg.state_path atomically when it changed; 0 or a negative errno. */
int coord_save(struct coord *c);

#endif
