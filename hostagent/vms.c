/* The host's set of identical VMs: one qcow2 overlay each over the shared read-only base,
 * defined and started through libvirt (in the hypervisor userland's chroot), watched on
 * their serial consoles for the boot marker. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
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
	char serial[400], nic[200];
	FILE *f;

	/* On the host's bridge the VM is a machine of the rack's LAN, with a MAC that stays the
	 * same across reimages (so do its DHCP leases); without one, QEMU's user networking. */
	if (set->bridge[0])
		snprintf(nic, sizeof nic, "    <interface type='bridge'><source bridge='%s'/>"
			 "<mac address='%s'/><model type='virtio'/></interface>\n", set->bridge, vm->mac);
	else
		snprintf(nic, sizeof nic, "    <interface type='user'><model type='virtio'/></interface>\n");
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
		"<bios useserial='yes'/><smbios mode='sysinfo'/></os>\n"
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
		vm->overlay, nic, vm->console, vm->console);
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
		/* Locally administered, QEMU's 52:54 prefix, then 'v', the host id and the index. */
		snprintf(vm->mac, sizeof vm->mac, "52:54:76:%02x:%02x:%02x",
			 ((unsigned)host_id >> 8) & 0xff, (unsigned)host_id & 0xff, (i + 1) & 0xff);
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

/* The length of the terminal escape sequence at p, 0 when there is none: CSI (ESC [,
 * parameters, one final byte) or a two-byte escape (ESC c: reset). */
static size_t vms_escape_len(const char *p)
{
	size_t n = 2;

	if (p[0] != 0x1b || !p[1] || p[1] == '\n')
		return 0;
	if (p[1] != '[')
		return 2;
	while (p[n] && (p[n] < 0x40 || p[n] > 0x7e))
		n++;
	return p[n] ? n + 1 : n;
}

/* Reads the last size - 1 bytes of a console into buf as a string (NUL bytes, a console's
 * garbage, made spaces so they do not end it early); their count, 0 when there are none. */
static size_t vms_console_read(const struct vm *vm, char *buf, size_t size)
{
	int fd = open(vm->console, O_RDONLY | O_CLOEXEC);
	struct stat st;
	ssize_t n;

	buf[0] = '\0';
	if (fd < 0)
		return 0;
	if (fstat(fd, &st) == 0 && st.st_size > (off_t)size - 1)
		lseek(fd, st.st_size - (off_t)size + 1, SEEK_SET);
	n = read(fd, buf, size - 1);
	close(fd);
	if (n <= 0)
		return 0;
	for (ssize_t i = 0; i < n; i++)
		if (buf[i] == '\0')
			buf[i] = ' ';
	buf[n] = '\0';
	return (size_t)n;
}

/* The last len - 1 characters of console text as one line for a failure report: escape
 * sequences dropped, other control bytes and runs of blanks made one space (iPXE's banner
 * alone pads a line with 60 of them). */
static void vms_text_tail(const char *console, char *out, size_t len)
{
	size_t t = 0, size = strlen(console) + 1;
	char *text = malloc(size);

	out[0] = '\0';
	if (!text)
		return;
	for (const char *p = console; *p;) {
		size_t esc = vms_escape_len(p);
		char c = *p;

		if (esc) {
			p += esc;
			continue;
		}
		p++;
		if ((unsigned char)c < 0x20 || (unsigned char)c > 0x7e)
			c = ' ';
		if (c == ' ' && (t == 0 || text[t - 1] == ' '))
			continue;
		text[t++] = c;
	}
	while (t > 0 && text[t - 1] == ' ')
		t--;
	text[t] = '\0';
	if (t >= len) {
		size_t start = t - (len - 1);

		start += text[start] == ' ';	/* no blank where the cut falls */
		memmove(text, text + start, t - start + 1);	/* its end, NUL included */
		t -= start;
	}
	memcpy(out, text, t + 1);
	free(text);
}

/* Console lines after which a boot cannot succeed, and what they mean: the VM is failed at
 * once instead of at the timeout. SeaBIOS prints its line with <bios useserial='yes'/>. */
static const struct {
	const char *text;
	const char *why;
} vms_fatal[] = {
	{ "No bootable device", "the BIOS found no bootable disk" },
	{ "Kernel panic - not syncing", "the kernel panicked" },
	{ "grub rescue>", "GRUB cannot find its files" },
	{ "You are in emergency mode", "systemd stopped in emergency mode" },
};

/* Skips carriage returns and terminal escape sequences at the start of a line: SeaBIOS's
 * serial console (useserial) answers the kernel's video mode switch with "ESC c ESC [?7l
 * ESC [2J" just before whatever the guest prints next, with no line break between. */
static char *vms_skip_controls(char *p)
{
	for (;;) {
		size_t esc = vms_escape_len(p);

		if (*p == '\r')
			p++;
		else if (esc)
			p += esc;
		else
			return p;
	}
}

enum vms_console {
	VMS_CONSOLE_BOOTING,
	VMS_CONSOLE_UP,			/* a line starts with the marker */
	VMS_CONSOLE_FATAL,		/* a line holds one of vms_fatal */
};

/* What console text shows; *fatal is the vms_fatal entry of a FATAL line. The text is
 * changed while it is scanned and restored. */
static enum vms_console vms_console_judge(char *buf, const char *marker, int *fatal)
{
	size_t mlen = strlen(marker);

	for (char *p = buf; p; p = strchr(p, '\n')) {
		char *eol;

		if (*p == '\n')
			p++;
		p = vms_skip_controls(p);
		/* The marker as a word: "virtman-vm-up" is not "virtman-vm-up-v2". */
		if (strncmp(p, marker, mlen) == 0 &&
		    (p[mlen] == ' ' || p[mlen] == '\r' || p[mlen] == '\n' || p[mlen] == '\0'))
			return VMS_CONSOLE_UP;
		eol = strchr(p, '\n');
		if (eol)
			*eol = '\0';
		for (size_t k = 0; k < sizeof vms_fatal / sizeof vms_fatal[0]; k++)
			if (strstr(p, vms_fatal[k].text))
				*fatal = (int)k;
		if (eol)
			*eol = '\n';
	}
	/* A fatal line counts only when no marker came after it (a VM that rebooted and then
	 * came up is up): the scan above returns at the first marker line. */
	return *fatal >= 0 ? VMS_CONSOLE_FATAL : VMS_CONSOLE_BOOTING;
}

/* True while the VM's QEMU runs, by libvirt's pid file (in /run, which hv-start binds into
 * the chroot); also true before the file first appears. */
static bool vms_qemu_running(const struct vm_set *set, struct vm *vm)
{
	char path[256], text[32];
	ssize_t n;
	long pid;
	int fd;

	snprintf(path, sizeof path, "%s/%s.pid", set->pid_dir ? set->pid_dir : "/run/libvirt/qemu",
		 vm->name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return !vm->seen_running;	/* gone after it was there: libvirt removed it */
	n = read(fd, text, sizeof text - 1);
	close(fd);
	if (n <= 0)
		return true;
	text[n] = '\0';
	pid = strtol(text, NULL, 10);
	if (pid <= 1)
		return true;
	vm->seen_running = true;
	return kill((pid_t)pid, 0) == 0 || errno == EPERM;
}

/* Reports the VM failed: why, then the console's last bytes (the seed keeps 400). */
static void vms_fail(struct vm_set *set, struct vm *vm, const char *why)
{
	char console[VMS_TAIL + 1], tail[251], reason[VMS_TAIL + 200];

	vms_console_read(vm, console, sizeof console);
	vms_text_tail(console, tail, sizeof tail);
	snprintf(reason, sizeof reason, "%.140s; console ends: %s", why, tail[0] ? tail : "(empty)");
	vms_set_stage(set, vm, "failed", reason);
}

void vms_poll(struct vm_set *set)
{
	static char console[1 << 16];
	uint64_t now = vms_now_ms();

	for (unsigned i = 0; i < set->count; i++) {
		struct vm *vm = &set->vm[i];
		enum vms_console seen;
		char why[200];
		int fatal = -1;

		if (strcmp(vm->stage, "vm-booting") != 0)
			continue;
		/* Boot consoles are small: the marker is in the last 64 KiB once it is there. */
		vms_console_read(vm, console, sizeof console);
		seen = vms_console_judge(console, set->marker, &fatal);
		if (seen == VMS_CONSOLE_UP)
			vms_set_stage(set, vm, "vm-up", NULL);
		else if (seen == VMS_CONSOLE_FATAL)
			vms_fail(set, vm, vms_fatal[fatal].why);
		else if (!vms_qemu_running(set, vm))
			vms_fail(set, vm, "its QEMU exited before the marker");
		else if (now - vm->started_ms > (uint64_t)set->timeout_s * 1000) {
			snprintf(why, sizeof why, "no '%.100s' on the console within %u s",
				 set->marker, set->timeout_s);
			vms_fail(set, vm, why);
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
