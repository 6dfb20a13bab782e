/* The host's set of identical VMs, through libvirt in the hypervisor userland's chroot. */
#ifndef VIRTMAN_HOSTAGENT_VMS_H
#define VIRTMAN_HOSTAGENT_VMS_H

#include <stdbool.h>
#include <stdint.h>

#define VMS_MAX 32

struct vm {
	char name[32];
	char uuid[40];
	char overlay[128];
	char console[128];
	char mac[18];
	char stage[16];
	uint64_t started_ms;
	bool seen_running;		/* its QEMU's pid file was seen */
};

struct vm_set {
	unsigned count;
	unsigned vcpus;
	unsigned memory_mib;
	unsigned timeout_s;
	char marker[160];
	char data_url[300];	/* cloud-init NoCloud seed base URL (VM name appended), or "" */
	char bridge[16];	/* host bridge for the VMs' NICs; "" for user networking */
	const char *pid_dir;	/* where libvirt keeps NAME.pid (NULL: /run/libvirt/qemu) */
	/* Runs a command with a timeout; its exit status (the agent's runner). */
	int (*run)(int timeout_ms, char *const argv[]);
	/* Reports a VM's stage to the seed. */
	void (*report)(const char *vm, const char *stage, const char *reason);
	struct vm vm[VMS_MAX];
};

/* Creates each VM's overlay on base_disk, defines and starts it; reports every stage. */
int vms_start(struct vm_set *set, const char *base_disk, int host_id);

/* Watches the VMs: vm-up on the marker; failed, with the reason and the console's tail, on
 * a console line that means the boot cannot succeed, when its QEMU exits, or on timeout. */
void vms_poll(struct vm_set *set);

/* Destroys and undefines every VM and deletes its overlay. */
void vms_stop(struct vm_set *set);

#endif
