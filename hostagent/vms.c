/* The host's set of identical VMs: one qcow2 overlay each over the shared read-only base,
 * defined and started through libvirt (in the hypervisor userland's chroot), watched on
 * their serial consoles for the boot marker. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "hostagent/vms.h"

#define VMS_DIR "/var/lib/virtman/vms"	/* bound into the chroot at the same path */
#define VMS_CHROOT "/hv-root"
#define VMS_TAIL 600			/* console bytes sent with a failure */

static uint64_t vms_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Runs virsh or qemu-img inside the hypervisor chroot; its exit status. */
static int vms_chroot(const struct vm_set *set, char *const args[])
{
	char *argv[16];
	int n = 0;

	argv[n++] = "chroot";
	argv[n++] = VMS_CHROOT;
	for (int i = 0; args[i] && n < 15; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	return set->run(120000, argv);
}

static int vms_virsh(const struct vm_set *set, const char *verb, const char *arg)
{
	char *args[] = { "virsh", "-q", "-c", "qemu:///system", (char *)verb, (char *)arg, NULL };

	return vms_chroot(set, args);
}

/* The domain: identical for every VM but its name, UUID, overlay and console. */
static int vms_write_xml(const struct vm_set *set, const struct vm *vm, const char *path)
{
	bool kvm = access("/dev/kvm", R_OK | W_OK) == 0;
	char serial[400];
	FILE *f;

	/* The SMBIOS serial names the VM; with seed data it points cloud-init's NoCloud source
	 * at the seed instead (cloud-init reads "ds=nocloud;s=URL" there), the name being in
	 * its meta-data. Only URL-safe characters reach the XML. */
	snprintf(serial, sizeof serial, "%s", vm->name);
	if (set->data_url[0] && strspn(set->data_url, "abcdefghijklmnopqrstuvwxyz"
			"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:/._-") == strlen(set->data_url))
		snprintf(serial, sizeof serial, "ds=nocloud;s=%s%s/", set->data_url, vm->name);
	f = fopen(path, "we");
	if (!f)
		return -errno;
	fprintf(f,
		"<domain type='%s'>\n"
		"  <name>%s</name>\n"
		"  <uuid>%s</uuid>\n"
		"  <memory unit='MiB'>%u</memory>\n"
		"  <vcpu>%u</vcpu>\n"
		"  <sysinfo type='smbios'><system><entry name='serial'>%s</entry></system></sysinfo>\n"
		"  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/>"
		"<smbios mode='sysinfo'/></os>\n"
		"  <features><acpi/></features>\n"
		"  <on_poweroff>destroy</on_poweroff><on_reboot>restart</on_reboot>\n"
		"  <devices>\n"
		"    <disk type='file' device='disk'>\n"
		"      <driver name='qemu' type='qcow2'/>\n"
		"      <source file='%s'/>\n"
		"      <target dev='vda' bus='virtio'/>\n"
		"    </disk>\n"
		"%s"
		"    <serial type='file'><source path='%s'/><target port='0'/></serial>\n"
		"    <console type='file'><source path='%s'/><target type='serial' port='0'/></console>\n"
		"    <video><model type='none'/></video>\n"
		"    <memballoon model='none'/>\n"
		"  </devices>\n"
		"</domain>\n",
		kvm ? "kvm" : "qemu", vm->name, vm->uuid, set->memory_mib, set->vcpus, serial,
		vm->overlay,
		set->bridge[0] ? set->bridge_xml : "    <interface type='user'><model type='virtio'/></interface>\n",
		vm->console, vm->console);
	return fclose(f) == 0 ? 0 : -EIO;
}

static void vms_set_stage(struct vm_set *set, struct vm *vm, const char *stage, const char *reason)
{
	snprintf(vm->stage, sizeof vm->stage, "%s", stage);
	set->report(vm->name, stage, reason);
}

int vms_start(struct vm_set *set, const char *base_disk, int host_id)
{
	char xml[300];

	mkdir("/var/lib/virtman", 0755);
	mkdir(VMS_DIR, 0755);
	if (set->count > VMS_MAX)
		set->count = VMS_MAX;
	for (unsigned i = 0; i < set->count; i++) {
		struct vm *vm = &set->vm[i];
		char *create[] = { "qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b",
				   (char *)base_disk, vm->overlay, NULL };
		int rc;

		memset(vm, 0, sizeof *vm);
		snprintf(vm->name, sizeof vm->name, "host%d-vm%u", host_id, i + 1);
		/* Stable across reboots of the host: derived from host id and index. */
		snprintf(vm->uuid, sizeof vm->uuid, "5a3e0000-0000-4000-8000-%04x%08x",
			 (unsigned)host_id & 0xffff, i + 1);
		snprintf(vm->overlay, sizeof vm->overlay, VMS_DIR "/host%d-vm%u.qcow2", host_id, i + 1);
		snprintf(vm->console, sizeof vm->console, VMS_DIR "/host%d-vm%u.console", host_id, i + 1);
		snprintf(xml, sizeof xml, VMS_DIR "/host%d-vm%u.xml", host_id, i + 1);
		vms_virsh(set, "destroy", vm->name);	/* leftovers of an earlier agent */
		vms_virsh(set, "undefine", vm->name);
		unlink(vm->overlay);
		unlink(vm->console);
		if ((rc = vms_chroot(set, create)) != 0) {
			vms_set_stage(set, vm, "failed", "qemu-img create of the overlay failed");
			continue;
		}
		if (vms_write_xml(set, vm, xml) < 0 || vms_virsh(set, "define", xml) != 0) {
			vms_set_stage(set, vm, "failed", "libvirt refused the domain definition");
			continue;
		}
		vms_set_stage(set, vm, "defined", NULL);
		vm->started_ms = vms_now_ms();
		if (vms_virsh(set, "start", vm->name) != 0) {
			vms_set_stage(set, vm, "failed", "virsh start failed");
			continue;
		}
		vms_set_stage(set, vm, "vm-booting", NULL);
	}
	return 0;
}

/* The last bytes of a console, printable, for a failure report. */
static void vms_console_tail(const struct vm *vm, char *out, size_t len)
{
	int fd = open(vm->console, O_RDONLY | O_CLOEXEC);
	char buf[VMS_TAIL + 1];
	struct stat st;
	ssize_t n = 0;

	out[0] = '\0';
	if (fd < 0)
		return;
	if (fstat(fd, &st) == 0 && st.st_size > VMS_TAIL)
		lseek(fd, st.st_size - VMS_TAIL, SEEK_SET);
	n = read(fd, buf, VMS_TAIL);
	close(fd);
	if (n <= 0)
		return;
	for (ssize_t i = 0; i < n; i++)
		if ((unsigned char)buf[i] < 0x20 || (unsigned char)buf[i] > 0x7e)
			buf[i] = ' ';
	buf[n] = '\0';
	snprintf(out, len, "%s", buf);
}

/* True when the console holds a line starting with the marker. */
static bool vms_console_has_marker(const struct vm *vm, const char *marker)
{
	int fd = open(vm->console, O_RDONLY | O_CLOEXEC);
	static char buf[1 << 16];
	size_t mlen = strlen(marker);
	bool found = false;
	ssize_t n;
	struct stat st;

	if (fd < 0)
		return false;
	/* Boot consoles are small; the marker is near the end once it is there. */
	if (fstat(fd, &st) == 0 && st.st_size > (off_t)sizeof buf - 1)
		lseek(fd, st.st_size - (off_t)sizeof buf + 1, SEEK_SET);
	n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	for (char *p = buf; p && !found; p = strchr(p, '\n')) {
		if (*p == '\n')
			p++;
		while (*p == '\r')
			p++;
		/* The marker as a word: "virtman-vm-up" is not "virtman-vm-up-v2". */
		found = strncmp(p, marker, mlen) == 0 &&
			(p[mlen] == ' ' || p[mlen] == '\r' || p[mlen] == '\n' || p[mlen] == '\0');
	}
	return found;
}

void vms_poll(struct vm_set *set)
{
	uint64_t now = vms_now_ms();

	for (unsigned i = 0; i < set->count; i++) {
		struct vm *vm = &set->vm[i];
		char tail[VMS_TAIL + 1], reason[VMS_TAIL + 64];

		if (strcmp(vm->stage, "vm-booting") != 0)
			continue;
		if (vms_console_has_marker(vm, set->marker)) {
			vms_set_stage(set, vm, "vm-up", NULL);
			continue;
		}
		if (now - vm->started_ms > (uint64_t)set->timeout_s * 1000) {
			vms_console_tail(vm, tail, sizeof tail);
			snprintf(reason, sizeof reason, "no '%s' on the console within %u s; console "
				 "ends: %.400s", set->marker, set->timeout_s, tail);
			vms_set_stage(set, vm, "failed", reason);
		}
	}
}

void vms_stop(struct vm_set *set)
{
	for (unsigned i = 0; i < set->count; i++) {
		struct vm *vm = &set->vm[i];

		if (!vm->name[0])
			continue;
		vms_virsh(set, "destroy", vm->name);
		vms_virsh(set, "undefine", vm->name);
		unlink(vm->overlay);	/* a generation's writes go with it */
		vms_set_stage(set, vm, "stopped", NULL);
	}
	set->count = 0;
}
