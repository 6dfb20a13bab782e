/* `virtman export`: serve a raw image or block device read-only over iSCSI. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>	/* BLKGETSIZE64, in musl and glibc alike */
#include <sys/stat.h>
#include <unistd.h>

#include "iscsi/export.h"
#include "iscsi/initiator.h"
#include "iscsi/keys.h"
#include "iscsi/relay.h"
#include "iscsi/target.h"
#include "lib/evloop.h"
#include "lib/http.h"
#include "lib/log.h"
#include "lib/net.h"

#define IQN_PREFIX "iqn.2026-11.org.virtman:"

static const char export_usage[] =
	"usage: virtman export IMAGE [--listen ADDR:PORT] [--iqn IQN] [--metrics ADDR:PORT]\n"
	"       virtman export iscsi://HOST[:PORT]/IQN/LUN [iscsi://...]... --cache DIR\n"
	"                      --manifest FILE [--listen ADDR:PORT] [--iqn IQN]\n"
	"                      [--initiator-name IQN] [--metrics ADDR:PORT]\n"
	"\n"
	"Serves a disk read-only as LUN 0 of an iSCSI target (RFC 7143); writes are refused\n"
	"with DATA PROTECT. The disk is either the raw image file or block device IMAGE (a\n"
	"root), or the image behind one or more upstream targets (a relay): every chunk read\n"
	"is fetched once, checked against the manifest's SHA-256 and kept in the cache, so\n"
	"a relay's children never make it fetch a chunk twice. Upstreams are listed in order\n"
	"of preference (parent, uncle, ..., root): reads are spread over the live ones but\n"
	"the last, which is used only while none of the others lives.\n"
	"\n"
	"  --listen ADDR:PORT       where initiators connect (default 0.0.0.0:3260;\n"
	"                           IPv6 as [ADDR]:PORT)\n"
	"  --iqn IQN                target name (default " IQN_PREFIX "<basename of IMAGE>,\n"
	"                           or the first upstream's IQN for a relay)\n"
	"  --metrics ADDR:PORT      serve Prometheus metrics at http://ADDR:PORT/metrics\n"
	"  --cache DIR              relay: the chunk cache (created; kept across restarts)\n"
	"  --manifest FILE          relay: the image's manifest (virtman manifest)\n"
	"  --upstreams-file FILE    relay: upstream URLs, one a line, instead of arguments;\n"
	"                           re-read on SIGHUP without disturbing initiators\n"
	"  --initiator-name IQN     relay: our name towards upstreams\n"
	"                           (default " IQN_PREFIX "relay)\n"
	"  -h, --help               this text\n"
	"\n"
	"Exit status: 0 after SIGTERM/SIGINT, 1 when it cannot start, 2 for bad usage.\n";

/* iSCSI names: lower-case letters, digits, '.', '-', ':' (RFC 3722 after stringprep). */
static int export_iqn_valid(const char *iqn)
{
	size_t len = strlen(iqn);

	if (len < 5 || len > ISCSI_NAME_MAX)
		return 0;
	if (strncmp(iqn, "iqn.", 4) != 0 && strncmp(iqn, "eui.", 4) != 0 &&
	    strncmp(iqn, "naa.", 4) != 0)
		return 0;
	for (const char *p = iqn; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '.' ||
		      *p == '-' || *p == ':'))
			return 0;
	return 1;
}

/* Builds the default IQN from the image's file name, keeping only valid characters. */
static void export_default_iqn(const char *image, char *out, size_t len)
{
	const char *base = strrchr(image, '/');
	size_t n = strlen(IQN_PREFIX);

	base = base ? base + 1 : image;
	snprintf(out, len, "%s", IQN_PREFIX);
	for (; *base && n + 1 < len && n < ISCSI_NAME_MAX; base++) {
		char ch = *base;

		if (ch >= 'A' && ch <= 'Z')
			ch = (char)(ch - 'A' + 'a');
		if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '.' ||
		      ch == '-'))
			ch = '-';
		out[n++] = ch;
	}
	out[n] = '\0';
}

/* Opens the image read-only and finds its size (files and block devices). */
static int export_open_image(const char *path, uint64_t *size)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		die(EXIT_START, "cannot open %s: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0)
		die(EXIT_START, "cannot stat %s: %s", path, strerror(errno));
	if (S_ISBLK(st.st_mode)) {
		if (ioctl(fd, BLKGETSIZE64, size) < 0)
			die(EXIT_START, "cannot size %s: %s", path, strerror(errno));
	} else if (S_ISREG(st.st_mode)) {
		*size = (uint64_t)st.st_size;
	} else {
		die(EXIT_START, "%s is neither a regular file nor a block device", path);
	}
	if (*size == 0)
		die(EXIT_START, "%s is empty", path);
	/* A read that fails here fails now, not at the first initiator. */
	char probe[512];

	if (pread(fd, probe, sizeof probe, 0) < 0)
		die(EXIT_START, "cannot read %s: %s", path, strerror(errno));
	return fd;
}

int cmd_export(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "iqn", required_argument, NULL, 'q' },
		{ "metrics", required_argument, NULL, 'm' },
		{ "cache", required_argument, NULL, 'c' },
		{ "manifest", required_argument, NULL, 'f' },
		{ "initiator-name", required_argument, NULL, 'i' },
		{ "upstreams-file", required_argument, NULL, 'u' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static struct target_config cfg;
	const char *listen = "0.0.0.0:3260", *metrics = NULL, *iqn = NULL;
	struct relay_config rc = { .initiator_name = IQN_PREFIX "relay" };
	char err_buf[512];
	struct sockaddr_storage mss;
	socklen_t mlen = 0;
	char iqn_buf[ISCSI_NAME_MAX + 1];
	int opt, err;

	log_set_prefix("virtman export");
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (opt) {
		case 'l': listen = optarg; break;
		case 'q': iqn = optarg; break;
		case 'm': metrics = optarg; break;
		case 'c': rc.cache_dir = optarg; break;
		case 'f': rc.manifest_path = optarg; break;
		case 'i': rc.initiator_name = optarg; break;
		case 'u': rc.upstreams_file = optarg; break;
		case 'h': fputs(export_usage, stdout); return 0;
		default: fputs(export_usage, stderr); return EXIT_USAGE;
		}
	}
	if (optind == argc && !rc.upstreams_file) {
		log_msg("missing IMAGE or upstream URL");
		fputs(export_usage, stderr);
		return EXIT_USAGE;
	}
	if (optind == argc || strncmp(argv[optind], "iscsi://", 8) == 0) {
		rc.urls = (const char *const *)argv + optind;
		rc.nurls = argc - optind;
		for (int i = 0; i < rc.nurls; i++)
			if (strncmp(rc.urls[i], "iscsi://", 8) != 0)
				die(EXIT_USAGE, "%s: a relay takes only iscsi:// upstreams", rc.urls[i]);
		if (rc.nurls && rc.upstreams_file)
			die(EXIT_USAGE, "upstreams come either as arguments or from --upstreams-file");
		if (rc.nurls > RELAY_UPSTREAMS_MAX)
			die(EXIT_USAGE, "at most %d upstreams", RELAY_UPSTREAMS_MAX);
		if (!rc.cache_dir || !rc.manifest_path)
			die(EXIT_USAGE, "a relay needs --cache DIR and --manifest FILE");
		if (!export_iqn_valid(rc.initiator_name))
			die(EXIT_USAGE, "--initiator-name %s: not a valid iSCSI name",
			    rc.initiator_name);
	} else if (optind + 1 != argc) {
		die(EXIT_USAGE, "exactly one IMAGE expected");
	} else if (rc.cache_dir || rc.manifest_path) {
		die(EXIT_USAGE, "--cache and --manifest are for a relay (iscsi:// upstreams)");
	}
	if (parse_hostport(listen, &cfg.listen, &cfg.listen_len) < 0)
		die(EXIT_USAGE, "--listen %s: expected ADDR:PORT", listen);
	if (metrics && parse_hostport(metrics, &mss, &mlen) < 0)
		die(EXIT_USAGE, "--metrics %s: expected ADDR:PORT", metrics);
	if (!iqn && rc.upstreams_file)
		die(EXIT_USAGE, "--upstreams-file needs --iqn");
	if (!iqn && rc.nurls) {
		struct iscsi_url url;

		if (iscsi_url_parse(rc.urls[0], &url) < 0)
			die(EXIT_USAGE, "%s: expected iscsi://HOST[:PORT]/IQN/LUN", rc.urls[0]);
		snprintf(iqn_buf, sizeof iqn_buf, "%s", url.iqn);
		iqn = iqn_buf;
	} else if (!iqn) {
		export_default_iqn(argv[optind], iqn_buf, sizeof iqn_buf);
		iqn = iqn_buf;
	}
	if (!export_iqn_valid(iqn))
		die(EXIT_USAGE, "--iqn %s: not a valid iSCSI name (iqn.YYYY-MM.reverse.domain:name)",
		    iqn);
	cfg.iqn = iqn;
	if ((err = ev_init()) < 0)
		die(EXIT_START, "event loop: %s", strerror(-err));
	if (rc.nurls || rc.upstreams_file) {
		if (relay_start(&rc, &cfg, err_buf, sizeof err_buf) < 0)
			die(EXIT_START, "%s", err_buf);
	} else {
		cfg.image_fd = export_open_image(argv[optind], &cfg.image_size);
		if (cfg.image_size % 512)
			log_msg("%s: size %llu is not a multiple of 512; the last block reads "
				"padded with zeros", argv[optind],
				(unsigned long long)cfg.image_size);
	}
	/* The disk's identity (NAA, serial) follows the target name, so every relay of
	 * one image presents the same disk as the root. */
	target_disk_init(&cfg.disk, iqn, cfg.image_size);
	if ((err = target_start(&cfg)) < 0)
		die(EXIT_START, "cannot listen on %s: %s", listen, strerror(-err));
	if (metrics && (err = http_serve(&mss, mlen, http_metrics_handler)) < 0)
		die(EXIT_START, "cannot listen on %s for metrics: %s", metrics, strerror(-err));
	log_msg("serving %s (%llu bytes) as %s on %s", optind < argc ? argv[optind] : rc.upstreams_file,
		(unsigned long long)cfg.image_size, iqn, listen);
	err = ev_run();
	if (err < 0)
		die(EXIT_START, "event loop: %s", strerror(-err));
	log_msg("stopping on signal %d", err);
	relay_stop();
	return 0;
}
