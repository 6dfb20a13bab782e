/* `virtman seed`: the boot appliance of a rack: DHCP or proxyDHCP, TFTP for the iPXE
 * binaries, and HTTP for the iPXE script, kernel and initramfs, on one interface. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <ifaddrs.h>
#include <limits.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "appliance/api.h"
#include "appliance/coord.h"
#include "appliance/seed.h"
#include "iscsi/keys.h"
#include "iscsi/manifest.h"
#include "iscsi/target.h"
#include "lib/evloop.h"
#include "lib/fs.h"
#include "lib/http.h"
#include "lib/log.h"
#include "lib/net.h"
#include "lib/sha256.h"
#include "pxe/boot.h"
#include "pxe/dhcp.h"
#include "pxe/tftp.h"

#define SEED_HTTP_PORT 8080
#define SEED_USERLAND_PORT 3261	/* the userland image's exports, the seed's and every host's */
#define SEED_STATE_DIR "/var/lib/virtman"
#define SEED_IPXE_DIR "/usr/lib/ipxe"
#define SEED_LEASE_DEFAULT 3600
#define SEED_NOFILE_WANT 65536	/* HTTP clients and TFTP transfers each hold descriptors */
#define SEED_ADMIN_TOKEN_FILE "admin-token"	/* what `virtman reimage` presents */
#define SEED_URL_FILE "seed-url"	/* where the seed's HTTP API is, for the CLI */

static const char seed_usage[] =
	"usage: virtman seed --iface IF [--dhcp full|proxy|off] [--pool FIRST-LAST]\n"
	"                    [--router ADDR] [--dns ADDR[,ADDR...]] [--lease-time SECONDS]\n"
	"                    [--kernel FILE --initrd FILE] [--append ARGS]\n"
	"                    [--http ADDR:PORT] [--tftp-root DIR] [--state-dir DIR]\n"
	"                    [--image FILE [--iqn IQN] [--iscsi ADDR:PORT] [--chunk-size BYTES]\n"
	"                     [--vms-per-host N] [--vcpus N] [--memory MIB] [--fanout K]\n"
	"                     [--heartbeat SECONDS] [--userland FILE] [--vm-marker TEXT]\n"
	"                     [--vm-timeout SECONDS] [--vm-data DIR] [--vm-network bridge|user]]\n"
	"\n"
	"Network-boots the hosts on the network of interface IF: PXE ROMs get iPXE over TFTP\n"
	"(BIOS: undionly.kpxe, x86-64 UEFI: snponly.efi), UEFI HTTP boot gets ipxe.efi over\n"
	"HTTP, and iPXE gets an HTTP script that loads --kernel and --initrd.\n"
	"\n"
	"  --iface IF           the interface to serve; its first IPv4 address is the seed's\n"
	"  --dhcp MODE          full: hand out addresses from --pool (leases kept in the\n"
	"                       state directory); proxy (default): another DHCP server hands\n"
	"                       out addresses, the seed answers PXE clients only (ports 67\n"
	"                       and 4011); off: no DHCP (clients configured elsewhere)\n"
	"  --pool FIRST-LAST    addresses to lease in full mode, inside IF's subnet; the\n"
	"                       seed's, router's and DNS servers' addresses are skipped\n"
	"  --router ADDR        default gateway sent to clients (full mode; none if omitted)\n"
	"  --dns ADDR[,...]     up to 4 DNS servers sent to clients (full mode; none if omitted)\n"
	"  --lease-time SECONDS lease duration in full mode (60..31536000, default 3600)\n"
	"  --kernel FILE        Linux kernel served as /boot/vmlinuz\n"
	"  --initrd FILE        initramfs served as /boot/initrd.img (with --kernel)\n"
	"  --append ARGS        extra kernel command line for every host\n"
	"  --http ADDR:PORT     HTTP listen address (default: IF's address, port 8080); the\n"
	"                       URLs handed to hosts use IF's address when ADDR is 0.0.0.0\n"
	"  --tftp-root DIR      directory served over TFTP (port 69 on IF's address) and as\n"
	"                       /ipxe/NAME over HTTP (default " SEED_IPXE_DIR ")\n"
	"  --state-dir DIR      leases, the boot token, the rack and the image's manifest\n"
	"                       (default " SEED_STATE_DIR ")\n"
	"  --image FILE         the raw VM image every host attaches: the seed digests it\n"
	"                       (manifest kept in the state directory until the file changes),\n"
	"                       exports it over iSCSI as the root of the tree, and coordinates\n"
	"                       the hosts (registration, tree, heartbeats) over its HTTP API\n"
	"  --iqn IQN            the image's target name (default iqn.2026-11.org.virtman:\n"
	"                       <basename of FILE>)\n"
	"  --iscsi ADDR:PORT    where the root export listens (default: IF's address, 3260)\n"
	"  --chunk-size BYTES   manifest chunk size (default 262144)\n"
	"  --vms-per-host N     VMs each host starts (0..32, default 2)\n"
	"  --vcpus N            vCPUs per VM (1..64, default 1)\n"
	"  --memory MIB         memory per VM (16..1048576, default 256)\n"
	"  --fanout K           children per node of the tree, the seed included (1..64,\n"
	"                       default 2; 1 makes a chain)\n"
	"  --heartbeat SECONDS  agents report this often; a host silent for 3 is lost and its\n"
	"                       children are re-parented (1..300, default 5)\n"
	"  --userland FILE      the hypervisor userland (make userland: libvirt + QEMU as a\n"
	"                       squashfs), sent down the same tree as a second image on port\n"
	"                       3261; hosts need it to run VMs\n"
	"  --vm-marker TEXT     a VM is up when its console prints a line starting with TEXT\n"
	"                       (default virtman-vm-up, or the one `virtman reimage\n"
	"                       --vm-marker` gave the rack's generation)\n"
	"  --vm-timeout SECONDS a VM not up by then is reported failed (default 300)\n"
	"  --vm-network MODE    bridge (default): each VM's NIC is on a bridge over its host's\n"
	"                       boot NIC, a machine of the rack's LAN (DHCP from this seed in\n"
	"                       full mode, else the lab's); user: QEMU's user networking (NAT\n"
	"                       through the host, nothing of the VMs on the LAN)\n"
	"  --vm-data DIR        cloud-init seed data for the VMs (NoCloud): each VM's SMBIOS\n"
	"                       serial points cloud-init at /api/v1/vm-data/VM/, which serves\n"
	"                       DIR/VM/FILE, else DIR/FILE (user-data, meta-data, vendor-data,\n"
	"                       network-config); meta-data defaults to the VM's name\n"
	"  -h, --help           this text\n"
	"\n"
	"HTTP routes: / (dashboard), /api/v1/hosts (GET: JSON; POST: register), /api/v1/tree,\n"
	"/api/v1/status, /api/v1/hosts/ID/heartbeat, /api/v1/hosts/ID/log, /api/v1/manifest,\n"
	"/api/v1/reimage (GET: progress; POST: `virtman reimage`, with the admin token),\n"
	"/api/v1/vm-data/VM/FILE (with --vm-data),\n"
	"/boot.ipxe?mac=MAC (the iPXE script), /boot/vmlinuz, /boot/initrd.img,\n"
	"/ipxe/NAME, /metrics. Hosts get virtman.seed=URL and virtman.token=TOKEN on their\n"
	"kernel command line; the token is made once and kept in the state directory, as is\n"
	"the admin token (admin-token, mode 0600) that `virtman reimage` presents.\n"
	"\n"
	"Exit status: 0 after SIGTERM/SIGINT, 1 when it cannot start (no such interface, port\n"
	"in use, missing file), 2 for bad usage.\n";

struct seed_options {
	const char *iface, *dhcp, *pool, *router, *dns, *lease_time;
	const char *kernel, *initrd, *append, *http, *tftp_root, *state_dir;
	const char *image, *iqn, *iscsi, *chunk_size, *vms, *vcpus, *memory, *fanout, *heartbeat;
	const char *userland, *vm_marker, *vm_timeout, *vm_data, *vm_network;
};

/* The configuration the servers keep pointers into for the life of the process. */
static struct dhcp_server_config seed_dhcp;
static struct tftp_config seed_tftp;
static struct boot_config seed_boot;
static char seed_lease_path[PATH_MAX];
static char seed_ipxe_dir[PATH_MAX];
static char seed_manifest_path[PATH_MAX];
static char seed_userland_manifest_path[PATH_MAX];
static char seed_userland_iqn[ISCSI_NAME_MAX + 1];
static char seed_userland_manifest_url[BOOT_BASE_MAX + 40];
static struct target_config seed_userland_target;
static char seed_rack_path[PATH_MAX];
static char seed_base_iqn[ISCSI_NAME_MAX + 1];	/* generation 1's; later ones add -gN */
static char seed_manifest_url[BOOT_BASE_MAX + 32];
/* The image's root export: two configurations, the served one and the next generation's. */
static struct target_config seed_targets[2];
static char seed_iqns[2][ISCSI_NAME_MAX + 1];
static int seed_cur;
static struct coord seed_coord;
static char seed_admin_token[BOOT_TOKEN_LEN + 1];
static const char *seed_state_dir;
static uint32_t seed_chunk;

/* A reimage: the new image is digested by a child process (the event loop goes on serving);
 * when the child is done the export switches over and the generation goes up. */
static struct {
	pid_t pid;			/* the digesting child, or 0 */
	struct ev_watch watch;		/* its pipe: an error text, then EOF */
	struct strbuf err;
	char image[PATH_MAX];
	char manifest[PATH_MAX];
	bool reboot;
	char vm_marker[COORD_MARKER_MAX + 1];	/* the new generation's; "": the same as before */
	const char *state;		/* idle, digesting, done, failed */
	char reason[400];
	uint32_t generation;		/* the generation being made, or the last one made */
} seed_re = { .state = "idle" };

static struct in_addr seed_parse_addr(const char *flag, const char *s)
{
	struct in_addr a;

	if (inet_pton(AF_INET, s, &a) != 1)
		die(EXIT_USAGE, "%s %s: expected an IPv4 address", flag, s);
	return a;
}

/* Finds the first IPv4 address and netmask of iface. */
static void seed_iface_addr(const char *iface, struct in_addr *addr, struct in_addr *mask)
{
	struct ifaddrs *ifs, *i;

	if (if_nametoindex(iface) == 0)
		die(EXIT_START, "--iface %s: no such interface", iface);
	if (getifaddrs(&ifs) < 0)
		die(EXIT_START, "cannot list interface addresses: %s", strerror(errno));
	for (i = ifs; i; i = i->ifa_next)
		if (i->ifa_addr && i->ifa_netmask && i->ifa_addr->sa_family == AF_INET &&
		    strcmp(i->ifa_name, iface) == 0)
			break;
	if (!i) {
		freeifaddrs(ifs);
		die(EXIT_START, "--iface %s: the interface has no IPv4 address", iface);
	}
	*addr = ((struct sockaddr_in *)(void *)i->ifa_addr)->sin_addr;
	*mask = ((struct sockaddr_in *)(void *)i->ifa_netmask)->sin_addr;
	freeifaddrs(ifs);
}

static int seed_same_subnet(struct in_addr a, struct in_addr b, struct in_addr mask)
{
	return (a.s_addr & mask.s_addr) == (b.s_addr & mask.s_addr);
}

static void seed_parse_pool(const char *pool, struct in_addr *first, struct in_addr *last)
{
	char buf[2 * INET_ADDRSTRLEN];
	char *dash;

	if (strlen(pool) >= sizeof buf || !(dash = strchr(strcpy(buf, pool), '-')))
		die(EXIT_USAGE, "--pool %s: expected FIRST-LAST", pool);
	*dash = '\0';
	*first = seed_parse_addr("--pool", buf);
	*last = seed_parse_addr("--pool", dash + 1);
	if (ntohl(last->s_addr) < ntohl(first->s_addr))
		die(EXIT_USAGE, "--pool %s: LAST is below FIRST", pool);
	if (ntohl(last->s_addr) - ntohl(first->s_addr) >= LEASE_POOL_MAX)
		die(EXIT_USAGE, "--pool %s: more than %d addresses", pool, LEASE_POOL_MAX);
}

static void seed_parse_dns(const char *list, struct dhcp_config *cfg)
{
	char buf[256], *save = NULL;

	if (strlen(list) >= sizeof buf)
		die(EXIT_USAGE, "--dns: list too long");
	strcpy(buf, list);
	for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (cfg->ndns == DHCP_DNS_MAX)
			die(EXIT_USAGE, "--dns: at most %d servers", DHCP_DNS_MAX);
		cfg->dns[cfg->ndns++] = seed_parse_addr("--dns", tok);
	}
	if (cfg->ndns == 0)
		die(EXIT_USAGE, "--dns: no address given");
}

static void seed_check_readable(const char *flag, const char *path)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		die(EXIT_START, "%s %s: %s", flag, path, strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
		die(EXIT_START, "%s %s: not a regular file", flag, path);
	close(fd);
}

/* The first of names that TFTP can serve from root (confined: no symlink out of it). */
static const char *seed_pick_tftp(int rootfd, const char *const *names)
{
	for (; *names; names++) {
		int fd = fs_open_beneath(rootfd, *names);

		if (fd >= 0) {
			close(fd);
			return *names;
		}
	}
	return NULL;
}

/* The first of names that HTTP can serve from dir (the operator's directory: symlinks in it
 * are followed, as Debian's ipxe.efi is one). */
static const char *seed_pick_http(const char *dir, const char *const *names)
{
	char path[PATH_MAX];

	for (; *names; names++) {
		if (snprintf(path, sizeof path, "%s/%s", dir, *names) < (int)sizeof path &&
		    access(path, R_OK) == 0)
			return *names;
	}
	return NULL;
}

static void seed_boot_files(const char *root)
{
	static const char *const bios[] = { "undionly.kpxe", NULL };
	static const char *const efi[] = { "snponly.efi", "ipxe.efi", NULL };
	static const char *const http_efi[] = { "ipxe.efi", "snponly.efi", NULL };
	static char http_path[NAME_MAX + 8];
	const char *name;
	int rootfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);

	if (rootfd < 0)
		die(EXIT_START, "--tftp-root %s: %s", root, strerror(errno));
	seed_dhcp.dhcp.bios_file = seed_pick_tftp(rootfd, bios);
	seed_dhcp.dhcp.efi_file = seed_pick_tftp(rootfd, efi);
	close(rootfd);
	if ((name = seed_pick_http(root, http_efi))) {
		snprintf(http_path, sizeof http_path, "/ipxe/%s", name);
		seed_dhcp.dhcp.http_boot_path = http_path;
	}
	if (!seed_dhcp.dhcp.bios_file)
		log_msg("%s has no undionly.kpxe: BIOS PXE clients get no boot file", root);
	if (!seed_dhcp.dhcp.efi_file)
		log_msg("%s has no snponly.efi or ipxe.efi: UEFI PXE clients get no boot file",
			root);
}

static void seed_raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= SEED_NOFILE_WANT)
		return;
	rl.rlim_cur = rl.rlim_max < SEED_NOFILE_WANT ? rl.rlim_max : SEED_NOFILE_WANT;
	setrlimit(RLIMIT_NOFILE, &rl);
}

/* Checks the flags against each other and the interface, and fills the configurations. */
static void seed_configure(const struct seed_options *o, struct sockaddr_storage *http_ss,
			   socklen_t *http_len)
{
	struct dhcp_config *dc = &seed_dhcp.dhcp;
	struct sockaddr_in *hs = (struct sockaddr_in *)http_ss;
	struct in_addr addr, mask, url_addr;
	char http_default[INET_ADDRSTRLEN + 8], addr_s[INET_ADDRSTRLEN];
	uint64_t secs = SEED_LEASE_DEFAULT;

	if (strcmp(o->dhcp, "full") == 0)
		dc->mode = DHCP_FULL;
	else if (strcmp(o->dhcp, "proxy") == 0)
		dc->mode = DHCP_PROXY;
	else if (strcmp(o->dhcp, "off") == 0)
		dc->mode = DHCP_OFF;
	else
		die(EXIT_USAGE, "--dhcp %s: expected full, proxy or off", o->dhcp);
	if (dc->mode == DHCP_FULL && !o->pool)
		die(EXIT_USAGE, "--dhcp full needs --pool FIRST-LAST");
	if (dc->mode != DHCP_FULL && (o->pool || o->router || o->dns || o->lease_time))
		die(EXIT_USAGE, "--pool, --router, --dns and --lease-time need --dhcp full");
	if (o->pool)
		seed_parse_pool(o->pool, &seed_dhcp.pool_first, &seed_dhcp.pool_last);
	if (o->router)
		dc->router = seed_parse_addr("--router", o->router);
	if (o->dns)
		seed_parse_dns(o->dns, dc);
	if (o->lease_time && parse_u64(o->lease_time, 60, 31536000, &secs) < 0)
		die(EXIT_USAGE, "--lease-time %s: expected 60..31536000 seconds", o->lease_time);
	dc->lease_secs = (uint32_t)secs;
	if (!o->kernel != !o->initrd)
		die(EXIT_USAGE, "--kernel and --initrd go together");
	if (o->append && strlen(o->append) > BOOT_APPEND_MAX)
		die(EXIT_USAGE, "--append: longer than %d characters", BOOT_APPEND_MAX);
	if (o->append && strpbrk(o->append, "\n\r"))
		die(EXIT_USAGE, "--append: must be one line");

	seed_iface_addr(o->iface, &addr, &mask);
	inet_ntop(AF_INET, &addr, addr_s, sizeof addr_s);
	snprintf(http_default, sizeof http_default, "%s:%d", addr_s, SEED_HTTP_PORT);
	if (parse_hostport(o->http ? o->http : http_default, http_ss, http_len) < 0 ||
	    http_ss->ss_family != AF_INET)
		die(EXIT_USAGE, "--http %s: expected IPv4ADDR:PORT", o->http);
	url_addr = hs->sin_addr.s_addr == htonl(INADDR_ANY) ? addr : hs->sin_addr;
	inet_ntop(AF_INET, &url_addr, addr_s, sizeof addr_s);
	snprintf(dc->http_base, sizeof dc->http_base, "http://%s:%u", addr_s,
		 ntohs(hs->sin_port));
	memcpy(seed_boot.http_base, dc->http_base, sizeof seed_boot.http_base);
	dc->server = addr;
	dc->netmask = mask;
	if (o->pool && (!seed_same_subnet(seed_dhcp.pool_first, addr, mask) ||
			!seed_same_subnet(seed_dhcp.pool_last, addr, mask)))
		die(EXIT_START, "--pool %s is not inside %s's subnet", o->pool, o->iface);
	seed_dhcp.iface = o->iface;

	if (o->kernel) {
		seed_check_readable("--kernel", o->kernel);
		seed_check_readable("--initrd", o->initrd);
	}
	seed_boot.kernel = o->kernel;
	seed_boot.initrd = o->initrd;
	seed_boot.append = o->append;
	if (!realpath(o->tftp_root, seed_ipxe_dir))
		die(EXIT_START, "--tftp-root %s: %s", o->tftp_root, strerror(errno));
	seed_boot.ipxe_dir = seed_ipxe_dir;
	seed_boot_files(seed_ipxe_dir);
	seed_tftp = (struct tftp_config){ .addr = addr, .port = TFTP_PORT, .iface = o->iface,
					  .root = seed_ipxe_dir };
}

static void seed_state(const char *dir)
{
	int err = fs_mkdir_p(dir, 0755);

	if (err < 0)
		die(EXIT_START, "--state-dir %s: %s", dir, strerror(-err));
	if (snprintf(seed_lease_path, sizeof seed_lease_path, "%s/dhcp-leases", dir) >=
	    (int)sizeof seed_lease_path)
		die(EXIT_USAGE, "--state-dir %s: path too long", dir);
	seed_dhcp.lease_file = seed_lease_path;
	if ((err = boot_token_load(dir, seed_boot.token)) < 0)
		die(EXIT_START, "boot token in %s: %s", dir, strerror(-err));
	if ((err = boot_secret_load(dir, SEED_ADMIN_TOKEN_FILE, seed_admin_token)) < 0)
		die(EXIT_START, "admin token in %s: %s", dir, strerror(-err));
}

/* Where this seed's API is, for `virtman reimage` and `virtman status` on this machine. */
static void seed_write_url(const char *dir)
{
	char path[PATH_MAX], line[BOOT_BASE_MAX + 2];
	int n = snprintf(line, sizeof line, "%s\n", seed_boot.http_base);

	if (snprintf(path, sizeof path, "%s/%s", dir, SEED_URL_FILE) < (int)sizeof path)
		fs_write_atomic(path, line, (size_t)n, 0644);
}

static uint32_t seed_number(const char *flag, const char *s, uint64_t min, uint64_t max,
			    uint64_t dflt)
{
	uint64_t v = dflt;

	if (s && parse_u64(s, min, max, &v) < 0)
		die(EXIT_USAGE, "%s %s: expected a number from %llu to %llu", flag, s,
		    (unsigned long long)min, (unsigned long long)max);
	return (uint32_t)v;
}

/* Reuses the manifest in the state directory while the image file is unchanged (same
 * device, inode, size, mtime and chunk size): digesting a big image takes a while. */
static void seed_manifest(const char *image, const char *state_dir, const char *name,
			  uint32_t chunk, char *path, size_t path_len)
{
	char stamp_path[PATH_MAX], want[256], have[256], err[512];
	struct stat st;

	if (stat(image, &st) < 0)
		die(EXIT_START, "%s: %s", image, strerror(errno));
	snprintf(path, path_len, "%s/%s.manifest", state_dir, name);
	snprintf(stamp_path, sizeof stamp_path, "%s/%s.manifest.source", state_dir, name);
	snprintf(want, sizeof want, "%llu %llu %llu %lld.%09ld %u\n",
		 (unsigned long long)st.st_dev, (unsigned long long)st.st_ino,
		 (unsigned long long)st.st_size, (long long)st.st_mtim.tv_sec,
		 st.st_mtim.tv_nsec, chunk);
	FILE *f = fopen(stamp_path, "re");

	if (f && fgets(have, sizeof have, f) && strcmp(have, want) == 0 &&
	    access(path, R_OK) == 0) {
		fclose(f);
		return;
	}
	if (f)
		fclose(f);
	log_msg("digesting %s into %s", image, path);
	if (manifest_create(image, path, chunk, err, sizeof err) < 0)
		die(EXIT_START, "%s", err);
	f = fopen(stamp_path, "we");
	if (!f || fputs(want, f) < 0 || fclose(f) != 0)
		die(EXIT_START, "cannot write %s", stamp_path);
}

/* Fills t to export image read-only (the manifest gives its size); 0 or -1 with err. */
static int seed_export_config(struct target_config *t, const char *image,
			      const char *manifest_path, const char *iqn, char *err, size_t errlen)
{
	struct manifest m;
	int fd;

	if (manifest_load(manifest_path, &m, err, errlen) < 0)
		return -1;
	fd = open(image, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", image, strerror(errno));
		manifest_free(&m);
		return -1;
	}
	t->iqn = iqn;
	t->image_fd = fd;
	t->image_size = m.size;
	target_disk_init(&t->disk, iqn, m.size);
	manifest_free(&m);
	return 0;
}

/* Exports one image read-only as a root of the tree, at listen. */
static void seed_export(struct target_config *t, const char *image, const char *manifest_path,
			const char *iqn, const char *listen)
{
	char err[512];
	int rc;

	if (seed_export_config(t, image, manifest_path, iqn, err, sizeof err) < 0)
		die(EXIT_START, "%s", err);
	if (parse_hostport(listen, &t->listen, &t->listen_len) < 0 || t->listen.ss_family != AF_INET)
		die(EXIT_USAGE, "--iscsi %s: expected IPv4ADDR:PORT", listen);
	if ((rc = target_start(t)) < 0)
		die(EXIT_START, "cannot listen on %s for iSCSI: %s", listen, strerror(-rc));
}

/* The image's identity: the SHA-256 of its manifest (size, chunk size, every chunk's digest),
 * in hex; false when the manifest cannot be read. */
static bool seed_image_id(const char *manifest_path, char out[2 * SHA256_LEN + 1])
{
	uint8_t buf[65536], d[SHA256_LEN];
	struct sha256 s;
	ssize_t n;
	int fd = open(manifest_path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return false;
	sha256_init(&s);
	while ((n = read(fd, buf, sizeof buf)) > 0)
		sha256_update(&s, buf, (size_t)n);
	close(fd);
	if (n < 0)
		return false;
	sha256_final(&s, d);
	for (int i = 0; i < SHA256_LEN; i++)
		snprintf(out + 2 * i, 3, "%02x", d[i]);
	return true;
}

/* The target name of a generation: the base name, and "-gN" from generation 2 on, so that
 * no relay ever mixes two generations' blocks under one name. */
static void seed_generation_iqn(uint32_t generation, char out[ISCSI_NAME_MAX + 1])
{
	char suffix[16] = "";

	if (generation > 1)
		snprintf(suffix, sizeof suffix, "-g%u", generation);
	snprintf(out, ISCSI_NAME_MAX + 1, "%.*s%s", (int)(ISCSI_NAME_MAX - strlen(suffix)),
		 seed_base_iqn, suffix);
}

/* The digest is in seed_re.manifest: export the new image instead of the old one. */
static void seed_reimage_switch(void)
{
	int next = 1 - seed_cur;
	struct target_config *old = &seed_targets[seed_cur], *t = &seed_targets[next];
	char id[2 * SHA256_LEN + 1] = "", err[360];
	uint32_t gen = seed_coord.generation + 1;

	seed_generation_iqn(gen, seed_iqns[next]);
	t->listen = old->listen;
	t->listen_len = old->listen_len;
	if (!seed_image_id(seed_re.manifest, id))
		snprintf(err, sizeof err, "cannot read %.300s", seed_re.manifest);
	if (!id[0] || seed_export_config(t, seed_re.image, seed_re.manifest, seed_iqns[next], err,
					 sizeof err) < 0) {
		seed_re.state = "failed";
		snprintf(seed_re.reason, sizeof seed_re.reason, "%.360s", err);
		log_msg("reimage to %s failed: %s", seed_re.image, seed_re.reason);
		return;
	}
	target_swap(old, t);	/* old's initiators are cut off: nothing reads old's file */
	close(old->image_fd);
	old->image_fd = -1;
	seed_cur = next;
	/* The manifest route serves the new one from now on; a previous generation's goes. */
	if (strstr(seed_manifest_path, "/image-g"))
		unlink(seed_manifest_path);
	snprintf(seed_manifest_path, sizeof seed_manifest_path, "%s", seed_re.manifest);
	coord_new_generation(&seed_coord, seed_iqns[next], id, seed_re.reboot,
			     seed_re.vm_marker[0] ? seed_re.vm_marker : NULL);
	coord_save(&seed_coord);
	seed_re.state = "done";
	seed_re.generation = seed_coord.generation;
	log_msg("reimage: now exporting %s (%llu bytes) as %s, generation %u", seed_re.image,
		(unsigned long long)t->image_size, seed_iqns[next], seed_coord.generation);
}

/* The digesting child wrote (an error) or ended. */
static void seed_reimage_child(void *ctx, uint32_t events)
{
	char buf[512];
	ssize_t n = read(seed_re.watch.fd, buf, sizeof buf);
	int status = 0;

	(void)ctx;
	(void)events;
	if (n > 0) {
		if (seed_re.err.len < 4096)
			sb_add(&seed_re.err, buf, (size_t)n);
		return;
	}
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	ev_del(&seed_re.watch);
	close(seed_re.watch.fd);
	while (waitpid(seed_re.pid, &status, 0) < 0 && errno == EINTR)
		;
	seed_re.pid = 0;
	if (seed_re.err.len || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		seed_re.state = "failed";
		snprintf(seed_re.reason, sizeof seed_re.reason, "%.*s", (int)seed_re.err.len,
			 seed_re.err.len ? seed_re.err.data : "the digesting process died");
		log_msg("reimage to %s failed: %s", seed_re.image, seed_re.reason);
		unlink(seed_re.manifest);
	} else {
		seed_reimage_switch();
	}
	sb_free(&seed_re.err);
}

/* POST /api/v1/reimage: checks the request and starts digesting the new image. */
static int seed_reimage_start(const char *token, const char *image, bool reboot,
			      const char *vm_marker, char *err, size_t errlen)
{
	struct stat st;
	int fds[2], fd;

	if (!token || strlen(token) != strlen(seed_admin_token) ||
	    strcmp(token, seed_admin_token) != 0) {
		snprintf(err, errlen, "wrong or missing admin token (%s/%s on the seed)",
			 seed_state_dir, SEED_ADMIN_TOKEN_FILE);
		return -EACCES;
	}
	if (seed_re.pid) {
		snprintf(err, errlen, "a reimage to %s is being prepared", seed_re.image);
		return -EBUSY;
	}
	if (!image || image[0] != '/' || strlen(image) >= sizeof seed_re.image) {
		snprintf(err, errlen, "image: an absolute path on the seed expected");
		return -EINVAL;
	}
	fd = open(image, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size == 0) {
		snprintf(err, errlen, "%s: %s", image, fd < 0 ? strerror(errno) :
			 !S_ISREG(st.st_mode) ? "not a regular file" : "empty");
		if (fd >= 0)
			close(fd);
		return -EINVAL;
	}
	close(fd);
	if (vm_marker && !coord_marker_valid(vm_marker)) {
		snprintf(err, errlen, "vm-marker: 1 to %d printable characters expected",
			 COORD_MARKER_MAX);
		return -EINVAL;
	}
	if (pipe2(fds, O_CLOEXEC) < 0) {
		snprintf(err, errlen, "pipe: %s", strerror(errno));
		return -EIO;
	}
	snprintf(seed_re.image, sizeof seed_re.image, "%s", image);
	snprintf(seed_re.vm_marker, sizeof seed_re.vm_marker, "%s", vm_marker ? vm_marker : "");
	snprintf(seed_re.manifest, sizeof seed_re.manifest, "%s/image-g%u.manifest",
		 seed_state_dir, seed_coord.generation + 1);
	seed_re.pid = fork();
	if (seed_re.pid == 0) {
		char why[400];

		close(fds[0]);
		if (manifest_create(image, seed_re.manifest, seed_chunk, why, sizeof why) < 0) {
			if (write(fds[1], why, strlen(why)) < 0)
				_exit(2);
			_exit(1);
		}
		_exit(0);
	}
	close(fds[1]);
	if (seed_re.pid < 0) {
		seed_re.pid = 0;
		close(fds[0]);
		snprintf(err, errlen, "fork: %s", strerror(errno));
		return -EIO;
	}
	fcntl(fds[0], F_SETFL, O_NONBLOCK);
	seed_re.watch = (struct ev_watch){ .fd = fds[0], .fn = seed_reimage_child };
	ev_add(&seed_re.watch, EPOLLIN);
	seed_re.reboot = reboot;
	seed_re.state = "digesting";
	seed_re.reason[0] = '\0';
	seed_re.generation = seed_coord.generation + 1;
	log_msg("reimage to %s%s: digesting it for generation %u", image,
		reboot ? " with reboot" : "", seed_re.generation);
	return (int)seed_re.generation;
}

/* GET /api/v1/reimage */
static void seed_reimage_status(struct strbuf *out)
{
	kv_add(out, "generation", "%u", seed_coord.generation);
	kv_add(out, "state", "%s", seed_re.state);
	if (seed_re.generation)
		kv_add(out, "target-generation", "%u", seed_re.generation);
	if (seed_re.image[0])
		kv_add(out, "image", "%s", seed_re.image);
	kv_add(out, "reboot", "%d", seed_re.reboot);
	kv_add(out, "iqn", "%s", seed_iqns[seed_cur]);
	if (seed_re.reason[0])
		kv_add(out, "reason", "%s", seed_re.reason);
}

/* The root of the tree: exports the image and coordinates the hosts that attach it. */
static void seed_image(const struct seed_options *o, struct in_addr addr)
{
	struct coord_config cc = { 0 };
	char listen_default[INET_ADDRSTRLEN + 8], addr_s[INET_ADDRSTRLEN];
	static char image_id[2 * SHA256_LEN + 1];
	const char *base, *listen;
	struct target_config *t = &seed_targets[0];
	uint32_t chunk = seed_number("--chunk-size", o->chunk_size, MANIFEST_CHUNK_MIN,
				     MANIFEST_CHUNK_MAX, MANIFEST_CHUNK_DEFAULT);

	if (chunk & (chunk - 1))
		die(EXIT_USAGE, "--chunk-size %s: a power of two", o->chunk_size);
	seed_chunk = chunk;
	seed_state_dir = o->state_dir;
	base = strrchr(o->image, '/');
	base = base ? base + 1 : o->image;
	if (o->iqn)
		snprintf(seed_base_iqn, sizeof seed_base_iqn, "%s", o->iqn);
	else {
		int n = snprintf(seed_base_iqn, sizeof seed_base_iqn, "iqn.2026-11.org.virtman:");

		for (; *base && n < ISCSI_NAME_MAX; base++) {
			char ch = *base >= 'A' && *base <= 'Z' ? (char)(*base - 'A' + 'a') : *base;

			seed_base_iqn[n++] = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
					ch == '.' || ch == '-' ? ch : '-';
		}
		seed_base_iqn[n] = '\0';
	}
	if (strncmp(seed_base_iqn, "iqn.", 4) != 0 || strspn(seed_base_iqn,
			"abcdefghijklmnopqrstuvwxyz0123456789.-:") != strlen(seed_base_iqn))
		die(EXIT_USAGE, "--iqn %s: not a valid iSCSI name", seed_base_iqn);
	seed_manifest(o->image, o->state_dir, "image", chunk, seed_manifest_path,
		      sizeof seed_manifest_path);
	if (!seed_image_id(seed_manifest_path, image_id))
		die(EXIT_START, "cannot read %s", seed_manifest_path);
	inet_ntop(AF_INET, &addr, addr_s, sizeof addr_s);
	snprintf(listen_default, sizeof listen_default, "%s:3260", addr_s);
	listen = o->iscsi ? o->iscsi : listen_default;
	if (parse_hostport(listen, &t->listen, &t->listen_len) < 0 || t->listen.ss_family != AF_INET)
		die(EXIT_USAGE, "--iscsi %s: expected IPv4ADDR:PORT", listen);
	if (o->userland) {
		/* The hypervisor userland: a second image down the same tree, one port up. */
		struct sockaddr_in *sin = (struct sockaddr_in *)&t->listen;
		char ul_listen[INET_ADDRSTRLEN + 8], ip[INET_ADDRSTRLEN];

		if (strlen(seed_base_iqn) + strlen("-userland") > ISCSI_NAME_MAX)
			die(EXIT_USAGE, "--iqn %s: too long to name the userland after it",
			    seed_base_iqn);
		memcpy(seed_userland_iqn, seed_base_iqn, strlen(seed_base_iqn));
		memcpy(seed_userland_iqn + strlen(seed_base_iqn), "-userland", sizeof "-userland");
		seed_manifest(o->userland, o->state_dir, "userland", chunk, seed_userland_manifest_path,
			      sizeof seed_userland_manifest_path);
		inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof ip);
		snprintf(ul_listen, sizeof ul_listen, "%s:%u", ip, SEED_USERLAND_PORT);
		/* One target per process exports its counters: /metrics stays about the image. */
		seed_userland_target.no_metrics = true;
		seed_export(&seed_userland_target, o->userland, seed_userland_manifest_path,
			    seed_userland_iqn, ul_listen);
		snprintf(seed_userland_manifest_url, sizeof seed_userland_manifest_url,
			 "%s/api/v1/userland-manifest", seed_boot.http_base);
		cc.userland_iqn = seed_userland_iqn;
		cc.userland_port = SEED_USERLAND_PORT;
		cc.userland_manifest_url = seed_userland_manifest_url;
	}
	snprintf(seed_manifest_url, sizeof seed_manifest_url, "%s/api/v1/manifest",
		 seed_boot.http_base);
	snprintf(seed_rack_path, sizeof seed_rack_path, "%s/rack", o->state_dir);
	cc.fanout = seed_number("--fanout", o->fanout, 1, 64, 2);
	cc.heartbeat_s = seed_number("--heartbeat", o->heartbeat, 1, 300, 5);
	cc.vms_per_host = seed_number("--vms-per-host", o->vms, 0, COORD_VMS_MAX, 2);
	cc.vcpus = seed_number("--vcpus", o->vcpus, 1, 64, 1);
	cc.memory_mib = seed_number("--memory", o->memory, 16, 1048576, 256);
	cc.vm_marker = o->vm_marker;	/* NULL: the generation's, else the default */
	cc.vm_network = o->vm_network ? o->vm_network : "bridge";
	if (strcmp(cc.vm_network, "bridge") != 0 && strcmp(cc.vm_network, "user") != 0)
		die(EXIT_USAGE, "--vm-network %s: bridge or user", cc.vm_network);
	if (o->vm_data) {
		static char vm_data_dir[PATH_MAX], vm_data_url[BOOT_BASE_MAX + 32];
		struct stat st;

		if (!realpath(o->vm_data, vm_data_dir) || stat(vm_data_dir, &st) < 0 ||
		    !S_ISDIR(st.st_mode))
			die(EXIT_START, "--vm-data %s: not a directory", o->vm_data);
		snprintf(vm_data_url, sizeof vm_data_url, "%s/api/v1/vm-data/", seed_boot.http_base);
		cc.vm_data_url = vm_data_url;
		api_set_vm_data(vm_data_dir);
	}
	cc.vm_timeout_s = seed_number("--vm-timeout", o->vm_timeout, 10, 86400, 300);
	if (cc.vm_marker && !coord_marker_valid(cc.vm_marker))
		die(EXIT_USAGE, "--vm-marker: 1 to 128 printable characters expected");
	cc.prefix_len = (uint32_t)__builtin_popcount(seed_dhcp.dhcp.netmask.s_addr);
	cc.seed_addr = addr;
	cc.iscsi_port = 3260;
	cc.root_port = ntohs(((struct sockaddr_in *)&t->listen)->sin_port);
	cc.iqn = seed_iqns[0];
	cc.manifest_url = seed_manifest_url;
	cc.image_id = image_id;
	cc.token = seed_boot.token;
	cc.state_path = seed_rack_path;
	coord_init(&seed_coord, &cc);
	/* The generation is known now (a restarted seed keeps the rack's): so is the name. */
	seed_generation_iqn(seed_coord.generation, seed_iqns[0]);
	seed_export(t, o->image, seed_manifest_path, seed_iqns[0], listen);
	coord_save(&seed_coord);
	api_init(&seed_coord, seed_manifest_path, o->userland ? seed_userland_manifest_path : NULL);
	api_set_reimage(seed_reimage_start, seed_reimage_status);
	log_msg("image %s: %llu bytes, root export %s on port %u, generation %u, fan-out %u",
		o->image, (unsigned long long)t->image_size, seed_iqns[0], cc.root_port,
		seed_coord.generation, cc.fanout);
}

int cmd_seed(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "iface", required_argument, NULL, 'i' },
		{ "dhcp", required_argument, NULL, 'd' },
		{ "pool", required_argument, NULL, 'p' },
		{ "router", required_argument, NULL, 'r' },
		{ "dns", required_argument, NULL, 'n' },
		{ "lease-time", required_argument, NULL, 'L' },
		{ "kernel", required_argument, NULL, 'k' },
		{ "initrd", required_argument, NULL, 'I' },
		{ "append", required_argument, NULL, 'a' },
		{ "http", required_argument, NULL, 'H' },
		{ "tftp-root", required_argument, NULL, 't' },
		{ "state-dir", required_argument, NULL, 's' },
		{ "image", required_argument, NULL, 'M' },
		{ "iqn", required_argument, NULL, 'Q' },
		{ "iscsi", required_argument, NULL, 'S' },
		{ "chunk-size", required_argument, NULL, 'C' },
		{ "vms-per-host", required_argument, NULL, 'V' },
		{ "vcpus", required_argument, NULL, 'U' },
		{ "memory", required_argument, NULL, 'm' },
		{ "fanout", required_argument, NULL, 'F' },
		{ "heartbeat", required_argument, NULL, 'B' },
		{ "userland", required_argument, NULL, 'W' },
		{ "vm-marker", required_argument, NULL, 'K' },
		{ "vm-timeout", required_argument, NULL, 'T' },
		{ "vm-data", required_argument, NULL, 'D' },
		{ "vm-network", required_argument, NULL, 'N' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct seed_options o = { .dhcp = "proxy", .tftp_root = SEED_IPXE_DIR,
				  .state_dir = SEED_STATE_DIR };
	struct sockaddr_storage http_ss;
	socklen_t http_len;
	const char *what = "";
	int opt, err;

	log_set_prefix("virtman seed");
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (opt) {
		case 'i': o.iface = optarg; break;
		case 'd': o.dhcp = optarg; break;
		case 'p': o.pool = optarg; break;
		case 'r': o.router = optarg; break;
		case 'n': o.dns = optarg; break;
		case 'L': o.lease_time = optarg; break;
		case 'k': o.kernel = optarg; break;
		case 'I': o.initrd = optarg; break;
		case 'a': o.append = optarg; break;
		case 'H': o.http = optarg; break;
		case 't': o.tftp_root = optarg; break;
		case 's': o.state_dir = optarg; break;
		case 'M': o.image = optarg; break;
		case 'Q': o.iqn = optarg; break;
		case 'S': o.iscsi = optarg; break;
		case 'C': o.chunk_size = optarg; break;
		case 'V': o.vms = optarg; break;
		case 'U': o.vcpus = optarg; break;
		case 'm': o.memory = optarg; break;
		case 'F': o.fanout = optarg; break;
		case 'B': o.heartbeat = optarg; break;
		case 'W': o.userland = optarg; break;
		case 'K': o.vm_marker = optarg; break;
		case 'T': o.vm_timeout = optarg; break;
		case 'D': o.vm_data = optarg; break;
		case 'N': o.vm_network = optarg; break;
		case 'h': fputs(seed_usage, stdout); return 0;
		default: fputs(seed_usage, stderr); return EXIT_USAGE;
		}
	}
	if (optind != argc)
		die(EXIT_USAGE, "unexpected argument '%s' (see --help)", argv[optind]);
	if (!o.iface)
		die(EXIT_USAGE, "--iface IF is required (see --help)");
	seed_configure(&o, &http_ss, &http_len);
	seed_state(o.state_dir);
	seed_raise_nofile();
	boot_http_init(&seed_boot);
	if ((err = ev_init()) < 0)
		die(EXIT_START, "event loop: %s", strerror(-err));
	if (o.image)
		seed_image(&o, seed_dhcp.dhcp.server);
	else if (o.iqn || o.iscsi || o.chunk_size || o.vms || o.vcpus || o.memory || o.fanout ||
		 o.heartbeat || o.userland || o.vm_marker || o.vm_timeout || o.vm_data ||
		 o.vm_network)
		die(EXIT_USAGE, "--iqn, --iscsi, --chunk-size, --vms-per-host, --vcpus, --memory, "
			       "--fanout, --heartbeat, --userland, --vm-marker, --vm-timeout, --vm-data "
			       "and --vm-network need --image");
	else
		api_init(NULL, NULL, NULL);
	if ((err = http_serve(&http_ss, http_len, api_http_handler)) < 0)
		die(EXIT_START, "cannot listen on %s for HTTP: %s", seed_boot.http_base,
		    strerror(-err));
	if ((err = tftp_start(&seed_tftp)) < 0)
		die(EXIT_START, "cannot serve TFTP on %s port %d: %s", o.iface, TFTP_PORT,
		    strerror(-err));
	if (seed_dhcp.dhcp.mode != DHCP_OFF &&
	    (err = dhcp_server_start(&seed_dhcp, &what)) < 0)
		die(EXIT_START, "DHCP on %s: %s: %s", o.iface, what, strerror(-err));
	seed_write_url(o.state_dir);
	log_msg("serving %s: DHCP %s, TFTP %s, HTTP %s, state in %s", o.iface, o.dhcp,
		seed_ipxe_dir, seed_boot.http_base, o.state_dir);
	err = ev_run();
	if (err < 0)
		die(EXIT_START, "event loop: %s", strerror(-err));
	log_msg("stopping on signal %d", err);
	if (o.image)
		coord_save(&seed_coord);	/* the last second of heartbeats too */
	return 0;
}
