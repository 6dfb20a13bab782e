/* Unit tests: how the host agent judges its VMs from their consoles and QEMU processes. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "hostagent/vms.h"

static struct vm_set set;
static char dir[64];
static char reported[VMS_MAX][400];	/* each VM's last report: "stage" or "stage: reason" */

static void record(const char *vm, const char *stage, const char *reason)
{
	for (unsigned i = 0; i < set.count; i++)
		if (strcmp(set.vm[i].name, vm) == 0)
			snprintf(reported[i], sizeof reported[i], "%s%s%s", stage, reason ? ": " : "",
				 reason ? reason : "");
}

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
}

/* A VM i booting since now, its console holding text (NULL: no console file yet). */
static void vm_booting(unsigned i, const char *text)
{
	struct vm *vm = &set.vm[i];

	memset(vm, 0, sizeof *vm);
	snprintf(vm->name, sizeof vm->name, "host1-vm%u", i + 1);
	snprintf(vm->console, sizeof vm->console, "%s/vm%u.console", dir, i + 1);
	snprintf(vm->stage, sizeof vm->stage, "vm-booting");
	vm->started_ms = mono_ms();
	reported[i][0] = '\0';
	if (text)
		write_file(vm->console, text);
	else
		unlink(vm->console);
	if (i >= set.count)
		set.count = i + 1;
}

static int setup(void **state)
{
	snprintf(dir, sizeof dir, "/tmp/virtman-test-vms.XXXXXX");
	assert_non_null(mkdtemp(dir));
	memset(&set, 0, sizeof set);
	set.timeout_s = 300;
	snprintf(set.marker, sizeof set.marker, "virtman-vm-up");
	set.report = record;
	set.pid_dir = dir;
	return 0;
}

static int teardown(void **state)
{
	char cmd[128];

	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : -1;
}

/* What each console shows, and what the VM becomes. */
static const struct {
	const char *console;
	const char *stage;		/* stage after one poll */
	const char *reason;		/* a part of the reason, or NULL */
	size_t len;			/* the console's bytes; 0: strlen */
} console_cases[] = {
	{ "SeaBIOS (version 1.16)\r\nBooting from Hard Disk...\r\nvirtman-vm-up host1-vm1\r\n",
	  "vm-up", NULL, 0 },
	{ "virtman-vm-up\n", "vm-up", NULL, 0 },
	{ "\r\r\nvirtman-vm-up host1-vm1", "vm-up", NULL, 0 },
	/* What a VM with <bios useserial='yes'/> prints: SeaBIOS answers the kernel's video
	 * mode switch with a terminal reset, with no line break before the guest's line. */
	{ "Boot\r\nSYSLINUX 6.04\r\n\x1b" "c\x1b[?7l\x1b[2Jvirtman-vm-up host1-vm1\r\n", "vm-up", NULL, 0 },
	{ "\x1b[0mvirtman-vm-up host1-vm1\r\n", "vm-up", NULL, 0 },
	{ "\x1b[2", "vm-booting", NULL, 0 },
	{ "\x1b", "vm-booting", NULL, 0 },
	/* Not the marker as a word, or not at the start of a line. */
	{ "virtman-vm-up-v2 host1-vm1\r\n", "vm-booting", NULL, 0 },
	{ "say virtman-vm-up\r\n", "vm-booting", NULL, 0 },
	{ "", "vm-booting", NULL, 0 },
	/* images/tiny-broken.img under SeaBIOS with useserial. */
	{ "Booting from Hard Disk...\r\nMissing operating system.\r\n\r\nNo bootable device.\r\n",
	  "failed", "the BIOS found no bootable disk; console ends: Booting from Hard Disk...", 0 },
	{ "[    1.2] Kernel panic - not syncing: VFS: Unable to mount root fs\r\n", "failed",
	  "the kernel panicked; console ends: ", 0 },
	{ "error: no such partition.\r\ngrub rescue> ", "failed", "GRUB cannot find", 0 },
	{ "You are in emergency mode. After logging in, type \"journalctl -xb\"\r\n", "failed",
	  "emergency mode", 0 },
	/* A panic, a reboot, then the marker: the VM is up. */
	{ "Kernel panic - not syncing: oops\r\nSeaBIOS\r\nvirtman-vm-up host1-vm1\r\n", "vm-up", NULL, 0 },
	/* Bytes a console may hold that are not text do not hide the marker. */
#define GARBAGE "\x1b[2J\x00\x01garbage\r\nvirtman-vm-up host1-vm1\r\n"
	{ GARBAGE, "vm-up", NULL, sizeof GARBAGE - 1 },
};

static void test_console_cases(void **state)
{
	for (size_t k = 0; k < sizeof console_cases / sizeof console_cases[0]; k++) {
		const char *text = console_cases[k].console;
		size_t len = console_cases[k].len ? console_cases[k].len : strlen(text);
		FILE *f;

		set.count = 0;
		vm_booting(0, NULL);
		f = fopen(set.vm[0].console, "w");
		assert_non_null(f);
		assert_int_equal(fwrite(text, 1, len, f), len);
		fclose(f);
		vms_poll(&set);
		if (strcmp(set.vm[0].stage, console_cases[k].stage) != 0)
			fail_msg("case %zu: stage %s, expected %s", k, set.vm[0].stage,
				 console_cases[k].stage);
		if (console_cases[k].reason && !strstr(reported[0], console_cases[k].reason))
			fail_msg("case %zu: reported '%s', expected '%s' in it", k, reported[0],
				 console_cases[k].reason);
		if (strcmp(console_cases[k].stage, "vm-booting") == 0)
			assert_string_equal(reported[0], "");
	}
}

/* The console's end in a failure report: the last characters, as text. */
static void test_console_tail_in_reason(void **state)
{
	char console[2048];
	const char *why;

	set.count = 0;
	/* What tiny-broken.img prints under SeaBIOS with useserial and a NIC's iPXE ROM. */
	snprintf(console, sizeof console, "\x1b" "c\x1b[?7l\x1b[2J\x1b[0mSeaBIOS (version 1.16.2)\r\n"
		 "\r\niPXE (http://ipxe.org) 00:02.0 C000 PCI2.10 PnP PMM+06FCF040\r\n"
		 "Press Ctrl-B to configure iPXE (PCI 00:02.0)...\r%60s\r\n\n\n"
		 "Booting from Hard Disk...\r\nMissing operating system.\r\n\r\n"
		 "No bootable device.  Retrying in 60 seconds.\r\n", "");
	vm_booting(0, console);
	vms_poll(&set);
	assert_string_equal(set.vm[0].stage, "failed");
	why = "failed: the BIOS found no bootable disk; console ends: ";
	assert_memory_equal(reported[0], why, strlen(why));
	/* Ends with the console's last line, blanks folded, nothing of the escapes. */
	assert_non_null(strstr(reported[0], "(PCI 00:02.0)... Booting from Hard Disk... Missing "
				   "operating system. No bootable device. Retrying in 60 seconds."));
	assert_null(strstr(reported[0], "\x1b"));
	assert_null(strstr(reported[0], "[2J"));
	assert_null(strstr(reported[0], "  "));
	/* A long console keeps its end. */
	memset(console, 'x', 1500);
	snprintf(console + 1500, sizeof console - 1500, "\r\nKernel panic - not syncing: the end\r\n");
	vm_booting(0, console);
	vms_poll(&set);
	assert_non_null(strstr(reported[0], "xxx Kernel panic - not syncing: the end"));
	assert_true(strlen(reported[0]) < 400);
}

/* One VM that cannot boot among others: each is judged on its own. */
static void test_others_unaffected(void **state)
{
	set.count = 0;
	vm_booting(0, "virtman-vm-up host1-vm1\r\n");
	vm_booting(1, "No bootable device.\r\n");
	vm_booting(2, "SeaBIOS\r\nBooting from Hard Disk...\r\n");
	vms_poll(&set);
	assert_string_equal(set.vm[0].stage, "vm-up");
	assert_string_equal(set.vm[1].stage, "failed");
	assert_string_equal(set.vm[2].stage, "vm-booting");
	assert_string_equal(reported[0], "vm-up");
	assert_non_null(strstr(reported[1], "no bootable disk"));
	/* Later polls report nothing again for VMs already decided; the third comes up. */
	reported[0][0] = reported[1][0] = '\0';
	write_file(set.vm[2].console, "SeaBIOS\r\nvirtman-vm-up host1-vm3\r\n");
	vms_poll(&set);
	assert_string_equal(reported[0], "");
	assert_string_equal(reported[1], "");
	assert_string_equal(set.vm[1].stage, "failed");
	assert_string_equal(set.vm[2].stage, "vm-up");
}

static void test_qemu_exit(void **state)
{
	char path[128], pid[32];
	pid_t child;

	set.count = 0;
	vm_booting(0, "SeaBIOS\r\n");
	/* No pid file yet (libvirt has not written it): still booting. */
	vms_poll(&set);
	assert_string_equal(set.vm[0].stage, "vm-booting");
	/* A live process: booting. */
	snprintf(path, sizeof path, "%s/%s.pid", dir, set.vm[0].name);
	snprintf(pid, sizeof pid, "%d", (int)getpid());
	write_file(path, pid);
	vms_poll(&set);
	assert_string_equal(set.vm[0].stage, "vm-booting");
	/* A process that has exited: failed, with the console's end. */
	child = fork();
	assert_true(child >= 0);
	if (child == 0)
		_exit(0);
	assert_int_equal(waitpid(child, NULL, 0), child);
	snprintf(pid, sizeof pid, "%d", (int)child);
	write_file(path, pid);
	vms_poll(&set);
	assert_string_equal(set.vm[0].stage, "failed");
	assert_non_null(strstr(reported[0], "its QEMU exited before the marker; console ends: SeaBIOS"));
	/* The pid file removed after it was seen: failed too. */
	vm_booting(0, "");
	write_file(path, "1234567");	/* above any pid_max: no such process */
	vms_poll(&set);
	assert_string_equal(set.vm[0].stage, "failed");
	vm_booting(0, "");
	snprintf(pid, sizeof pid, "%d", (int)getpid());
	write_file(path, pid);
	vms_poll(&set);
	unlink(path);
	vms_poll(&set);
	assert_string_equal(set.vm[0].stage, "failed");
	assert_non_null(strstr(reported[0], "(empty)"));
}

static void test_timeout(void **state)
{
	set.count = 0;
	vm_booting(0, "Booting from Hard Disk...\r\n");
	set.timeout_s = 1;
	set.vm[0].started_ms -= 1500;
	vms_poll(&set);
	set.timeout_s = 300;
	assert_string_equal(set.vm[0].stage, "failed");
	assert_non_null(strstr(reported[0], "no 'virtman-vm-up' on the console within 1 s; "
				   "console ends: Booting from Hard Disk..."));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_console_cases, setup, teardown),
		cmocka_unit_test_setup_teardown(test_console_tail_in_reason, setup, teardown),
		cmocka_unit_test_setup_teardown(test_others_unaffected, setup, teardown),
		cmocka_unit_test_setup_teardown(test_qemu_exit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
