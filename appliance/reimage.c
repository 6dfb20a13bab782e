/* `virtman reimage`: switches the rack to a new image and follows every host through it. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "appliance/coord.h"
#include "appliance/reimage.h"
#include "lib/httpc.h"
#include "lib/kv.h"
#include "lib/log.h"
#include "lib/net.h"

#define REIMAGE_STATE_DIR "/var/lib/virtman"
#define REIMAGE_HOSTS_MAX 1024
#define REIMAGE_POLL_US 500000
#define REIMAGE_LOST_GRACE_S 60.0	/* a host lost meanwhile may come back: a busy host that
					 * missed heartbeats registers again */

static const char reimage_usage[] =
	"usage: virtman reimage --image FILE [--reboot] [--vm-marker TEXT] [--seed URL]\n"
	"                       [--state-dir DIR] [--timeout SECONDS] [--no-wait]\n"
	"\n"
	"Switches the rack to another image: the seed digests FILE (a raw image, a path on the\n"
	"seed's machine) and exports it as the next generation under a new target name; every\n"
	"host stops its VMs (their overlays are discarded), detaches the old image, attaches the\n"
	"new one through the tree and starts its VMs again. With --reboot the hosts reboot and\n"
	"PXE-boot instead, so a new boot image (--kernel/--initrd files replaced) is taken too.\n"
	"Prints each host's progress and a summary.\n"
	"\n"
	"  --image FILE       the new image\n"
	"  --reboot           the hosts reboot to take it\n"
	"  --vm-marker TEXT   the new image's VMs are up when their console prints a line\n"
	"                     starting with TEXT (default: the marker the rack has now)\n"
	"  --seed URL         the seed's HTTP address (default $VIRTMAN_SEED, else the one the\n"
	"                     seed wrote to DIR/seed-url, else http://127.0.0.1:8080)\n"
	"  --state-dir DIR    the seed's state directory, for seed-url and admin-token\n"
	"                     (default " REIMAGE_STATE_DIR ")\n"
	"  --timeout SECONDS  give up waiting for the hosts after this long (default 1800)\n"
	"  --no-wait          return once the seed serves the new generation\n"
	"\n"
	"The admin token comes from $VIRTMAN_ADMIN_TOKEN, else DIR/admin-token.\n"
	"Exit status: 0 when every live host runs the new generation (with its VMs up), 1 when\n"
	"the seed refused, a host or VM failed, or the time ran out; 2 for bad usage.\n";

struct reimage_host {
	int id;
	char addr[48];
	int live;
	unsigned gen;
	char stage[24];
	int up, failed, nvms;
	char stages[400];		/* the generation's stages so far, comma-separated */
};

struct reimage_seen {
	int id;
	unsigned gen;
	char stage[24];
	int up, failed;
	int nstages;			/* of the host's stage list already printed */
	char first[24];			/* that list's first stage: a new list starts over */
	int live;
	bool done;
	bool counted;			/* live when the switch happened: waited for */
	double lost_at;			/* when it was seen lost, 0 while live */
};

static double reimage_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Reads the first line of dir/name into out; false when there is none. */
static bool reimage_read_line(const char *dir, const char *name, char *out, size_t len)
{
	char path[PATH_MAX];
	FILE *f;
	bool ok;

	if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path ||
	    !(f = fopen(path, "re")))
		return false;
	ok = fgets(out, (int)len, f) != NULL;
	fclose(f);
	if (ok)
		out[strcspn(out, "\r\n")] = '\0';
	return ok && out[0];
}

/* GET /api/v1/reimage into its key=value pairs and host lines. */
static int reimage_poll(const char *seed, char *state, size_t state_len, unsigned *generation,
			char *reason, size_t reason_len, unsigned *vms_per_host,
			struct reimage_host *hosts, int *nhosts)
{
	struct httpc_response resp;
	char url[600];
	int rc;

	snprintf(url, sizeof url, "%s/api/v1/reimage", seed);
	rc = httpc_request("GET", url, NULL, 0, 4u << 20, 10000, &resp);
	if (rc < 0)
		return rc;
	if (resp.status != 200) {
		sb_free(&resp.body);
		return -EPROTO;
	}
	sb_add(&resp.body, "", 1);
	*nhosts = 0;
	reason[0] = '\0';
	for (char *save = NULL, *line = strtok_r(resp.body.data, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		struct reimage_host *h = &hosts[*nhosts];

		if (strncmp(line, "state=", 6) == 0)
			snprintf(state, state_len, "%s", line + 6);
		else if (strncmp(line, "generation=", 11) == 0)
			*generation = (unsigned)strtoul(line + 11, NULL, 10);
		else if (strncmp(line, "reason=", 7) == 0)
			snprintf(reason, reason_len, "%s", line + 7);
		else if (strncmp(line, "vms-per-host=", 13) == 0)
			*vms_per_host = (unsigned)strtoul(line + 13, NULL, 10);
		else if (strncmp(line, "host=", 5) == 0 && *nhosts < REIMAGE_HOSTS_MAX &&
			 sscanf(line + 5, "%d %47s %d %u %23s %d %d %d %399s", &h->id, h->addr,
				&h->live, &h->gen, h->stage, &h->up, &h->failed, &h->nvms,
				h->stages) == 9)
			(*nhosts)++;
	}
	sb_free(&resp.body);
	return 0;
}

static void reimage_line(double t0, const struct reimage_host *h, const char *stage)
{
	printf("%6.1f s  host %-3d %-15s generation %u  %-11s", reimage_now() - t0, h->id,
	       h->addr, h->gen, stage);
	if (h->nvms && strcmp(stage, h->stage) == 0)
		printf("  VMs %d/%d up%s", h->up, h->nvms, h->failed ? ", some failed" : "");
	printf("\n");
	fflush(stdout);
}

static bool reimage_running(const char *stage)
{
	return strcmp(stage, "ready") == 0 || strcmp(stage, "vm-booting") == 0 ||
	       strcmp(stage, "vm-up") == 0;
}

/* Follows the hosts until each runs generation gen (or failed, or was lost); exit status. */
static int reimage_follow(const char *seed, unsigned gen, bool reboot, double t0, double limit)
{
	static struct reimage_host hosts[REIMAGE_HOSTS_MAX];
	static struct reimage_seen seen[REIMAGE_HOSTS_MAX];
	char state[32], reason[512];
	unsigned cur = 0, vms = 0;
	int nhosts = 0, nseen = 0, errors = 0;
	bool first = true;

	for (;;) {
		int waiting = 0, rc;

		rc = reimage_poll(seed, state, sizeof state, &cur, reason, sizeof reason, &vms, hosts,
				  &nhosts);
		if (rc < 0) {
			if (++errors == 10) {
				fprintf(stderr, "virtman reimage: lost the seed at %s: %s\n", seed,
					strerror(-rc));
				return 1;
			}
		} else {
			errors = 0;
		}
		if (rc == 0 && cur != gen) {
			printf("the seed moved on to generation %u: stopped following %u\n", cur, gen);
			return 1;
		}
		for (int i = 0; rc == 0 && i < nhosts; i++) {
			struct reimage_host *h = &hosts[i];
			struct reimage_seen *s = NULL;

			for (int k = 0; k < nseen && !s; k++)
				if (seen[k].id == h->id)
					s = &seen[k];
			if (!s) {
				s = &seen[nseen++];
				memset(s, 0, sizeof *s);
				s->id = h->id;
				/* Hosts lost before the switch are not waited for; with --reboot a
				 * host goes silent while it boots and is still waited for. */
				s->counted = h->live || (reboot && !first);
			}
			if (!s->counted && h->live)
				s->counted = true;	/* a host that joined meanwhile */
			if (!s->counted || s->done)
				continue;
			if (h->gen != s->gen) {
				s->gen = h->gen;
				s->nstages = 0;
				s->stage[0] = '\0';
			}
			/* Every stage the host reached since the last look, even those it
			 * passed between two looks. */
			if (h->gen == gen) {
				char *save = NULL, *name;
				int k = 0;

				if (strncmp(h->stages, s->first, strcspn(h->stages, ",")) != 0 ||
				    strlen(s->first) != strcspn(h->stages, ",")) {
					s->nstages = 0;	/* a new history: the host booted again */
					snprintf(s->first, sizeof s->first, "%.*s",
						 (int)strcspn(h->stages, ","), h->stages);
				}

				for (name = strtok_r(h->stages, ",", &save); name;
				     name = strtok_r(NULL, ",", &save), k++) {
					if (k < s->nstages || strcmp(name, "-") == 0)
						continue;
					if (strcmp(name, h->stage) != 0)
						reimage_line(t0, h, name);
					s->nstages = k + 1;
				}
			}
			if (strcmp(h->stage, s->stage) != 0 || h->up != s->up ||
			    h->failed != s->failed || h->live != s->live) {
				reimage_line(t0, h, h->live ? h->stage : "lost");
				snprintf(s->stage, sizeof s->stage, "%s", h->stage);
				s->up = h->up;
				s->failed = h->failed;
				s->live = h->live;
			}
			if (h->gen == gen && (strcmp(h->stage, "failed") == 0 ||
					      (reimage_running(h->stage) &&
					       h->up + h->failed >= (int)vms)))
				s->done = true;
			else if (!h->live && !reboot && s->lost_at &&
				 reimage_now() - s->lost_at > REIMAGE_LOST_GRACE_S)
				s->done = true;	/* lost: counted in the summary */
			else
				waiting++;
			s->lost_at = h->live ? 0 : s->lost_at ? s->lost_at : reimage_now();
		}
		first = false;
		if (rc == 0 && waiting == 0 && nseen > 0)
			break;
		if (rc == 0 && nhosts == 0) {
			printf("no hosts yet: they take generation %u when they register\n", gen);
			return 0;
		}
		if (reimage_now() - t0 > limit) {
			printf("timed out after %.0f s with %d hosts still moving\n", limit, waiting);
			break;
		}
		usleep(REIMAGE_POLL_US);
	}
	/* The summary. */
	int ready = 0, failed = 0, lost = 0, other = 0, up = 0, vm_failed = 0, nvms = 0;

	for (int i = 0; i < nhosts; i++) {
		struct reimage_host *h = &hosts[i];
		bool counted = false;

		for (int k = 0; k < nseen; k++)
			if (seen[k].id == h->id)
				counted = seen[k].counted;
		if (!counted)
			continue;
		if (!h->live)
			lost++;
		else if (h->gen == gen && strcmp(h->stage, "failed") == 0)
			failed++;
		else if (h->gen == gen && reimage_running(h->stage))
			ready++;
		else
			other++;
		if (h->gen == gen) {
			up += h->up;
			vm_failed += h->failed;
			nvms += h->nvms;
		}
	}
	printf("generation %u after %.1f s: %d hosts ready, %d failed, %d lost, %d not done",
	       gen, reimage_now() - t0, ready, failed, lost, other);
	if (vms)
		printf("; VMs %d of %d up, %d failed", up, nvms, vm_failed);
	printf("\n");
	return failed || lost || other || vm_failed || (vms && up < nvms) ? 1 : 0;
}

int cmd_reimage(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "image", required_argument, NULL, 'i' },
		{ "reboot", no_argument, NULL, 'r' },
		{ "vm-marker", required_argument, NULL, 'm' },
		{ "seed", required_argument, NULL, 's' },
		{ "state-dir", required_argument, NULL, 'd' },
		{ "timeout", required_argument, NULL, 't' },
		{ "no-wait", no_argument, NULL, 'n' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *image = NULL, *state_dir = REIMAGE_STATE_DIR, *seed = NULL, *timeout = NULL;
	const char *marker = NULL;
	char seed_buf[300], token[128], path[PATH_MAX], state[32], reason[512];
	static struct reimage_host hosts[REIMAGE_HOSTS_MAX];
	struct httpc_response resp;
	struct strbuf body = { 0 };
	char url[600];
	bool reboot = false, wait = true;
	unsigned gen = 0, cur = 0, vms = 0;
	uint64_t limit = 1800;
	int opt, rc, nhosts;
	double t0 = reimage_now();

	log_set_prefix("virtman reimage");
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (opt) {
		case 'i': image = optarg; break;
		case 'r': reboot = true; break;
		case 'm': marker = optarg; break;
		case 's': seed = optarg; break;
		case 'd': state_dir = optarg; break;
		case 't': timeout = optarg; break;
		case 'n': wait = false; break;
		case 'h': fputs(reimage_usage, stdout); return 0;
		default: fputs(reimage_usage, stderr); return EXIT_USAGE;
		}
	}
	if (optind != argc)
		die(EXIT_USAGE, "unexpected argument %s", argv[optind]);
	if (!image)
		die(EXIT_USAGE, "--image FILE is required (see --help)");
	if (marker && !coord_marker_valid(marker))
		die(EXIT_USAGE, "--vm-marker: 1 to %d printable characters expected",
		    COORD_MARKER_MAX);
	if (timeout && parse_u64(timeout, 1, 86400, &limit) < 0)
		die(EXIT_USAGE, "--timeout %s: expected 1..86400 seconds", timeout);
	/* A file here is sent by its full path; otherwise the path is the seed machine's. */
	if (realpath(image, path))
		image = path;
	else if (image[0] != '/')
		die(EXIT_USAGE, "--image %s: %s (a path on the seed's machine must be absolute)",
		    image, strerror(errno));
	if (!seed && (seed = getenv("VIRTMAN_SEED")) && !*seed)
		seed = NULL;
	if (!seed && reimage_read_line(state_dir, "seed-url", seed_buf, sizeof seed_buf))
		seed = seed_buf;
	if (!seed)
		seed = "http://127.0.0.1:8080";
	if (getenv("VIRTMAN_ADMIN_TOKEN") && *getenv("VIRTMAN_ADMIN_TOKEN"))
		snprintf(token, sizeof token, "%s", getenv("VIRTMAN_ADMIN_TOKEN"));
	else if (!reimage_read_line(state_dir, "admin-token", token, sizeof token))
		die(EXIT_START, "no admin token: cannot read %s/admin-token (run as the seed's "
				"user, or set VIRTMAN_ADMIN_TOKEN)", state_dir);

	kv_add(&body, "token", "%s", token);
	kv_add(&body, "image", "%s", image);
	kv_add(&body, "reboot", "%d", reboot);
	if (marker)
		kv_add(&body, "vm-marker", "%s", marker);
	if (body.failed)
		die(EXIT_START, "out of memory");
	snprintf(url, sizeof url, "%s/api/v1/reimage", seed);
	rc = httpc_request("POST", url, body.data, body.len, 1 << 20, 30000, &resp);
	sb_free(&body);
	if (rc == -EINVAL)
		die(EXIT_USAGE, "--seed %s: expected http://HOST:PORT", seed);
	if (rc < 0)
		die(EXIT_START, "cannot reach the seed at %s: %s", seed, strerror(-rc));
	if (resp.status != 202) {
		fprintf(stderr, "virtman reimage: the seed refused (HTTP %d): %.*s", resp.status,
			(int)resp.body.len, resp.body.data ? resp.body.data : "");
		sb_free(&resp.body);
		return 1;
	}
	sb_add(&resp.body, "", 1);
	{
		const char *g = strstr(resp.body.data, "generation=");

		gen = g ? (unsigned)strtoul(g + 11, NULL, 10) : 0;
	}
	sb_free(&resp.body);
	if (gen == 0)
		die(EXIT_START, "the seed's reply names no generation");
	printf("generation %u: the seed digests %s%s\n", gen, image,
	       reboot ? " (hosts will reboot)" : "");
	fflush(stdout);
	/* The seed switches once the digest is done. */
	for (;;) {
		rc = reimage_poll(seed, state, sizeof state, &cur, reason, sizeof reason, &vms, hosts,
				  &nhosts);
		if (rc == 0 && strcmp(state, "failed") == 0) {
			fprintf(stderr, "virtman reimage: the seed could not switch: %s\n", reason);
			return 1;
		}
		if (rc == 0 && cur >= gen)
			break;
		if (reimage_now() - t0 > (double)limit) {
			fprintf(stderr, "virtman reimage: the seed did not switch within %llu s\n",
				(unsigned long long)limit);
			return 1;
		}
		usleep(REIMAGE_POLL_US);
	}
	printf("%6.1f s  the seed serves generation %u\n", reimage_now() - t0, gen);
	fflush(stdout);
	if (!wait)
		return 0;
	return reimage_follow(seed, gen, reboot, t0, (double)limit);
}
