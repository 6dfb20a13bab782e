/* `virtman status`: the rack as the seed sees it, as a table or as JSON. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "appliance/status.h"
#include "lib/httpc.h"
#include "lib/log.h"

#define STATUS_URL_FILE "/var/lib/virtman/seed-url"	/* the seed's default state dir */

static const char status_usage[] =
	"usage: virtman status [--seed URL] [--json]\n"
	"\n"
	"Prints every host the seed knows: id, MAC, address, parent in the tree, depth, stage,\n"
	"image generation, VMs up, and the time since it registered.\n"
	"\n"
	"  --seed URL   the seed's HTTP address (default $VIRTMAN_SEED, else the one a seed\n"
	"               on this machine wrote to " STATUS_URL_FILE ", else\n"
	"               http://127.0.0.1:8080)\n"
	"  --json       the full JSON of GET /api/v1/hosts, for scripts\n";

int cmd_status(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "seed", required_argument, NULL, 's' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *seed = getenv("VIRTMAN_SEED");
	struct httpc_response resp;
	char url[512];
	int opt, json = 0, rc;

	log_set_prefix("virtman status");
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (opt) {
		case 's': seed = optarg; break;
		case 'j': json = 1; break;
		case 'h': fputs(status_usage, stdout); return 0;
		default: fputs(status_usage, stderr); return EXIT_USAGE;
		}
	}
	if (optind != argc)
		die(EXIT_USAGE, "unexpected argument %s", argv[optind]);
	if (!seed || !*seed) {
		static char line[300];
		FILE *f = fopen(STATUS_URL_FILE, "re");

		seed = "http://127.0.0.1:8080";
		if (f && fgets(line, sizeof line, f) && (line[strcspn(line, "\r\n")] = '\0', line[0]))
			seed = line;
		if (f)
			fclose(f);
	}
	if (snprintf(url, sizeof url, "%s%s", seed, json ? "/api/v1/hosts" : "/api/v1/status") >=
	    (int)sizeof url)
		die(EXIT_USAGE, "--seed %s: too long", seed);
	rc = httpc_request("GET", url, NULL, 0, 16u << 20, 10000, &resp);
	if (rc == -EINVAL)
		die(EXIT_USAGE, "--seed %s: expected http://HOST:PORT", seed);
	if (rc < 0)
		die(EXIT_START, "cannot reach the seed at %s: %s", seed, strerror(-rc));
	if (resp.status != 200) {
		fprintf(stderr, "virtman status: %s answered HTTP %d: %.*s", seed, resp.status,
			(int)resp.body.len, resp.body.data ? resp.body.data : "");
		sb_free(&resp.body);
		return EXIT_START;
	}
	fwrite(resp.body.data ? resp.body.data : "", 1, resp.body.len, stdout);
	sb_free(&resp.body);
	return 0;
}
