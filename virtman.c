/* virtman: one multi-call binary for every job (seed, export, agent, operator commands). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "appliance/reimage.h"
#include "appliance/seed.h"
#include "appliance/status.h"
#include "hostagent/agent.h"
#include "iscsi/export.h"
#include "iscsi/manifest.h"
#include "lib/log.h"

struct command {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *summary;
};

static const struct command commands[] = {
	{ "agent", cmd_agent, "the host agent, started by the boot image's init" },
	{ "export", cmd_export, "serve a disk image read-only over iSCSI" },
	{ "seed", cmd_seed, "the rack's boot appliance: DHCP, TFTP, HTTP, coordinator, root export" },
	{ "status", cmd_status, "print the rack as the seed sees it" },
	{ "reimage", cmd_reimage, "switch the rack to a new image, following every host" },
	{ "manifest", cmd_manifest, "write the per-chunk SHA-256 manifest of an image" },
};

static void usage(FILE *out)
{
	fprintf(out, "usage: virtman COMMAND [ARGS...]\n\n"
		     "virtman boots a rack of hosts and their identical VMs from one image.\n\n"
		     "Commands:\n");
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
		fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
	fprintf(out, "\n'virtman COMMAND --help' documents each command's flags.\n");
}

int main(int argc, char **argv)
{
	const char *name = strrchr(argv[0], '/');

	name = name ? name + 1 : argv[0];
	/* Called through a link named after a command, as busybox does. */
	if (strncmp(name, "virtman-", 8) == 0)
		name += 8;
	else if (argc >= 2)
		name = argv[1], argc--, argv++;
	else
		name = "";
	if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0 || strcmp(name, "help") == 0) {
		usage(stdout);
		return 0;
	}
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
		if (strcmp(name, commands[i].name) == 0)
			return commands[i].run(argc, argv);
	if (*name)
		fprintf(stderr, "virtman: unknown command '%s'\n", name);
	usage(stderr);
	return EXIT_USAGE;
}
