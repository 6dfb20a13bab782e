/* `virtman agent`: the host's supervisor. Brings the boot NIC up, registers with the seed,
 * runs the host's relay, attaches the image through it with open-iscsi, reports every
 * stage, heartbeats, and applies the new upstream lists the seed hands out. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysinfo.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "hostagent/agent.h"
#include "hostagent/vms.h"
#include "iscsi/initiator.h"
#include "iscsi/manifest.h"
#include "lib/httpc.h"
#include "lib/kv.h"
#include "lib/log.h"
#include "lib/net.h"
#include "lib/sha256.h"

#define AGENT_RUN_DIR "/run/virtman"	/* default --run-dir */
#define AGENT_ISCSI_PORT 3260
#define AGENT_METRICS_PORT 9100
#define AGENT_HTTP_TIMEOUT_MS 10000
#define AGENT_BACKOFF_MAX_S 30
#define AGENT_LOG_LINES 256		/* ring kept for the seed */
#define AGENT_LOG_PER_BEAT 32		/* lines sent with one heartbeat */
#define AGENT_UPSTREAMS_MAX 8
#define AGENT_STEP_TIMEOUT_MS 60000

/* The bridge ioctls of the kernel's <linux/sockios.h> (a stable ABI): musl's headers do not
 * carry the kernel's. */
#define AGENT_SIOCBRADDBR 0x89a0
#define AGENT_SIOCBRADDIF 0x89a2

enum agent_step {
	STEP_NET,
	STEP_REGISTER,
	STEP_MANIFEST,
	STEP_CACHE,
	STEP_RELAY,
	STEP_ATTACH,
	STEP_USERLAND,
	STEP_READY,
};

enum { IMG_VM, IMG_USERLAND, IMG_COUNT };

/* One image the host attaches through its own relay: the VM image, the hypervisor userland. */
struct agent_image {
	const char *name;
	int port;			/* the relay's iSCSI port */
	int metrics_port;
	char iqn[224];
	char upstreams[AGENT_UPSTREAMS_MAX][ISCSI_URL_MAX];
	int nupstreams;
	char manifest_url[512];
	char upstreams_path[256];
	char manifest_path[256];
	char cache_dir[300];
	pid_t relay_pid;
	char disk[64];
};

struct agent {
	/* configuration */
	char seed[256];
	char token[128];
	char cache[256];		/* "tmpfs", a block device, or a directory */
	char iface[IF_NAMESIZE];
	char bridge[IF_NAMESIZE];	/* made over iface for the VMs' NICs; "" for none */
	char attach[16];		/* "open-iscsi" or "none" */
	char run_dir[200];		/* upstreams files, manifests */
	bool debug;
	bool verify;			/* read the attached disk whole and report its SHA-256 */
	/* learnt */
	char net_iface[IF_NAMESIZE];	/* the one with the host's address: bridge or iface */
	bool vm_bridge;			/* the seed wants the VMs on the bridge */
	char mac[18];
	char addr[INET_ADDRSTRLEN];
	int host_id;
	unsigned generation;		/* of the image the agent attaches */
	unsigned next_generation;	/* the seed serves another one: switch to it (0: none) */
	bool next_reboot;		/* ... by rebooting the host */
	bool allow_reboot;		/* this agent may reboot its host (the boot image's init) */
	bool have_image;		/* the image's manifest is fetched: switching needs undoing */
	unsigned heartbeat_s;
	struct agent_image img[IMG_COUNT];	/* the userland's iqn is empty without one */
	char cache_dir[256];
	char disk_sha256[2 * SHA256_LEN + 1];
	/* the VM set */
	unsigned vms;
	unsigned vcpus;
	unsigned memory_mib;
	char vm_marker[160];
	char vm_data_url[300];		/* the VMs' cloud-init seed, or "" */
	unsigned vm_timeout_s;
	bool hv_up;
	/* children */
	pid_t iscsid_pid;
	/* reporting */
	char stage[32];
	char reason[256];
	char log[AGENT_LOG_LINES][200];
	unsigned log_next;		/* lines ever logged */
	unsigned log_sent;		/* lines already sent to the seed */
};

static struct agent agent;
static struct vm_set agent_vms;
static bool agent_vms_started;
static volatile sig_atomic_t agent_stopping;

static const char agent_usage[] =
	"usage: virtman agent [--seed URL] [--token T] [--iface IF] [--bridge NAME|none]\n"
	"                     [--cache tmpfs|DEV|DIR]\n"
	"                     [--attach open-iscsi|none] [--run-dir DIR] [--verify] [--debug]\n"
	"                     [--allow-reboot]\n"
	"\n"
	"The host agent, started by the boot image's init. Brings the boot NIC up (DHCP with\n"
	"busybox udhcpc unless it already has an address), registers with the seed, runs the\n"
	"host's relay (virtman export) with the upstreams the seed assigns, attaches the image\n"
	"from that relay with open-iscsi, reports every stage, and heartbeats. Defaults come\n"
	"from the kernel command line: virtman.seed=, virtman.token=, virtman.cache=,\n"
	"virtman.bridge=, virtman.debug, virtman.verify, BOOTIF= (iPXE).\n"
	"\n"
	"  --seed URL        the seed's HTTP address, e.g. http://10.0.0.1:8080\n"
	"  --token T         the boot token the seed handed out\n"
	"  --iface IF        the boot NIC (default: BOOTIF's, else the first with a link)\n"
	"  --bridge NAME     put the boot NIC under bridge NAME (its MAC, the host's address)\n"
	"                    and the VMs' NICs on it, when the NIC has no address yet\n"
	"                    (default none; the boot image's init gives vmbr0)\n"
	"  --cache SPEC      tmpfs (default), a block device (formatted once, label\n"
	"                    virtman-cache, kept across reboots) or a directory\n"
	"  --attach MODE     open-iscsi (default): attach the image locally; none: relay only\n"
	"  --run-dir DIR     where the relay's upstream list and manifest go\n"
	"                    (default " AGENT_RUN_DIR ")\n"
	"  --verify          read the attached disk whole and report its SHA-256\n"
	"  --allow-reboot    reboot the host when the seed reimages with --reboot (the boot\n"
	"                    image's init gives it); without it the agent reimages in place\n"
	"  --debug           more output on the console\n";

/* Logs to the console and keeps the line for the seed. */
static void agent_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void agent_log(const char *fmt, ...)
{
	char *slot = agent.log[agent.log_next % AGENT_LOG_LINES];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(slot, sizeof agent.log[0], fmt, ap);
	va_end(ap);
	for (char *p = slot; *p; p++)	/* the seed takes printable ASCII only */
		if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
			*p = '?';
	agent.log_next++;
	log_msg("%s", slot);
}

/* Reads a whole small file into buf; length or -errno. */
static ssize_t agent_read_file(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n < 0)
		return -errno;
	buf[n] = '\0';
	return n;
}

static int agent_write_file(const char *path, const char *text)
{
	char tmp[512];
	int fd, rc = 0;

	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	if (write(fd, text, strlen(text)) != (ssize_t)strlen(text))
		rc = -EIO;
	close(fd);
	if (rc == 0 && rename(tmp, path) < 0)
		rc = -errno;
	return rc;
}

/* An interface name we make: letters, digits, '.', '_', '-', shorter than IF_NAMESIZE (it
 * also goes into the VMs' libvirt XML). */
static bool agent_ifname_ok(const char *name)
{
	size_t len = strlen(name);

	return len > 0 && len < IF_NAMESIZE &&
	       strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == len;
}

/* Takes defaults from the kernel command line: virtman.key=value and BOOTIF. */
static void agent_cmdline(void)
{
	char buf[4096], *tok, *save = NULL;

	if (agent_read_file("/proc/cmdline", buf, sizeof buf) < 0)
		return;
	for (tok = strtok_r(buf, " \n", &save); tok; tok = strtok_r(NULL, " \n", &save)) {
		if (strncmp(tok, "virtman.seed=", 13) == 0)
			snprintf(agent.seed, sizeof agent.seed, "%s", tok + 13);
		else if (strncmp(tok, "virtman.token=", 14) == 0)
			snprintf(agent.token, sizeof agent.token, "%s", tok + 14);
		else if (strncmp(tok, "virtman.cache=", 14) == 0)
			snprintf(agent.cache, sizeof agent.cache, "%s", tok + 14);
		else if (strcmp(tok, "virtman.debug") == 0)
			agent.debug = true;
		else if (strcmp(tok, "virtman.verify") == 0)
			agent.verify = true;
		else if (strncmp(tok, "virtman.bridge=", 15) == 0 && agent_ifname_ok(tok + 15))
			snprintf(agent.bridge, sizeof agent.bridge, "%s",
				 strcmp(tok + 15, "none") ? tok + 15 : "");
		else if (strncmp(tok, "virtman.mac=", 12) == 0 && strlen(tok + 12) == 17)
			snprintf(agent.mac, sizeof agent.mac, "%s", tok + 12);	/* the seed's script */
		else if (strncmp(tok, "BOOTIF=01-", 10) == 0 && strlen(tok + 10) == 17) {
			/* iPXE's ${netX/mac:hexhyp}: find the interface with that MAC. */
			for (int i = 0; i < 17; i++)
				agent.mac[i] = tok[10 + i] == '-' ? ':' : tok[10 + i];
			agent.mac[17] = '\0';
		}
	}
}

/* ---- children ---- */

static pid_t agent_spawn(char *const argv[])
{
	pid_t pid = fork();

	if (pid == 0) {
		sigset_t all;

		sigemptyset(&all);
		sigprocmask(SIG_SETMASK, &all, NULL);
		execvp(argv[0], argv);
		fprintf(stderr, "virtman agent: cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	return pid;
}

static void agent_keepalive(void);

/* Runs a command to completion within timeout_ms; its exit status, or -errno. The seed
 * keeps hearing from us meanwhile: iscsiadm and hv-start can take a while. */
static int agent_run(int timeout_ms, char *const argv[])
{
	pid_t pid = agent_spawn(argv);
	struct timespec start, now;
	int status;

	if (pid < 0)
		return -errno;
	clock_gettime(CLOCK_MONOTONIC, &start);
	for (;;) {
		pid_t r = waitpid(pid, &status, WNOHANG);

		if (r == pid)
			return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
		clock_gettime(CLOCK_MONOTONIC, &now);
		if ((now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000 >
		    timeout_ms) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			return -ETIMEDOUT;
		}
		agent_keepalive();
		usleep(20000);	/* a child's exit, polled: no signal plumbing for one command */
	}
}

/* Reaps exited children; forgets the relay or iscsid when they die so they restart. */
static void agent_reap(void)
{
	int status;
	pid_t pid;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);

		for (int i = 0; i < IMG_COUNT; i++) {
			if (pid != agent.img[i].relay_pid)
				continue;
			agent_log("%s relay (pid %d) exited with status %d", agent.img[i].name,
				  (int)pid, code);
			agent.img[i].relay_pid = 0;
		}
		if (pid == agent.iscsid_pid) {
			agent_log("iscsid (pid %d) exited with status %d", (int)pid, code);
			agent.iscsid_pid = 0;
		}
	}
}

/* ---- talking to the seed ---- */

/* Sends the stage (and new log lines) with a heartbeat; applies the reply. */
static int agent_apply_reply(const struct httpc_response *resp);

static int agent_post(const char *path, struct strbuf *body, struct httpc_response *resp)
{
	char url[512];

	snprintf(url, sizeof url, "%s%s", agent.seed, path);
	return httpc_request("POST", url, body->data ? body->data : "", body->len, 1 << 20,
			     AGENT_HTTP_TIMEOUT_MS, resp);
}

static void agent_add_log_lines(struct strbuf *body)
{
	unsigned first = agent.log_next > AGENT_LOG_LINES ? agent.log_next - AGENT_LOG_LINES : 0;

	if (agent.log_sent < first)
		agent.log_sent = first;	/* lines lost to the ring while the seed was away */
	for (unsigned n = 0; agent.log_sent < agent.log_next && n < AGENT_LOG_PER_BEAT; n++)
		kv_add(body, "log", "%s", agent.log[agent.log_sent++ % AGENT_LOG_LINES]);
}

/* Reports a stage: kept for the next heartbeat, sent now when registered. */
static void agent_stage(const char *stage, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void agent_stage(const char *stage, const char *fmt, ...)
{
	va_list ap;

	snprintf(agent.stage, sizeof agent.stage, "%s", stage);
	agent.reason[0] = '\0';
	if (fmt) {
		va_start(ap, fmt);
		vsnprintf(agent.reason, sizeof agent.reason, fmt, ap);
		va_end(ap);
	}
	agent_log("stage %s%s%s", stage, agent.reason[0] ? ": " : "", agent.reason);
}

static uint64_t agent_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t agent_last_beat_ms;
static bool agent_in_beat;

static int agent_heartbeat(void)
{
	struct strbuf body = { 0 };
	struct httpc_response resp;
	char path[64];
	int rc;

	if (agent.host_id <= 0)
		return -ENOENT;
	kv_add(&body, "token", "%s", agent.token);
	kv_add(&body, "stage", "%s", agent.stage);
	if (agent.generation)
		kv_add(&body, "generation", "%u", agent.generation);
	if (agent.reason[0])
		kv_add(&body, "reason", "%s", agent.reason);
	if (agent.disk_sha256[0])
		kv_add(&body, "disk-sha256", "%s", agent.disk_sha256);
	agent_add_log_lines(&body);
	snprintf(path, sizeof path, "/api/v1/hosts/%d/heartbeat", agent.host_id);
	agent_in_beat = true;
	rc = agent_post(path, &body, &resp);
	agent_in_beat = false;
	agent_last_beat_ms = agent_mono_ms();
	sb_free(&body);
	if (rc < 0)
		return rc;
	if (resp.status == 404) {	/* the seed forgot us (lost, or a new seed): register */
		agent.host_id = 0;
		rc = -ENOENT;
	} else if (resp.status != 200) {
		agent_log("heartbeat refused: HTTP %d: %.120s", resp.status,
			  resp.body.data ? resp.body.data : "");
		rc = -EPROTO;
	} else {
		rc = agent_apply_reply(&resp);
	}
	sb_free(&resp.body);
	return rc;
}

/* A heartbeat when one is due, from inside long steps. */
static void agent_keepalive(void)
{
	if (agent.host_id > 0 && !agent_in_beat &&
	    agent_mono_ms() - agent_last_beat_ms >= (uint64_t)agent.heartbeat_s * 1000)
		agent_heartbeat();
}

/* Writes a relay's upstream file and tells the running relay to re-read it. */
static void agent_write_upstreams(struct agent_image *im)
{
	struct strbuf sb = { 0 };

	for (int i = 0; i < im->nupstreams; i++)
		sb_printf(&sb, "%s\n", im->upstreams[i]);
	if (agent_write_file(im->upstreams_path, sb.data ? sb.data : "") < 0)
		agent_log("cannot write %s: %s", im->upstreams_path, strerror(errno));
	sb_free(&sb);
	if (im->relay_pid > 0)
		kill(im->relay_pid, SIGHUP);
}

/* Takes the upstream URLs under key from a reply; a changed list reaches the relay. */
static void agent_take_upstreams(struct agent_image *im, const struct kv *kv, int n,
				 const char *key)
{
	char ups[AGENT_UPSTREAMS_MAX][ISCSI_URL_MAX];
	int nups = 0;
	bool changed;

	for (int i = 0; i < n; i++) {
		struct iscsi_url url;

		if (strcmp(kv[i].key, key) != 0)
			continue;
		if (nups == AGENT_UPSTREAMS_MAX || iscsi_url_parse(kv[i].value, &url) < 0) {
			agent_log("ignoring bad %s '%.100s'", key, kv[i].value);
			continue;
		}
		snprintf(ups[nups++], ISCSI_URL_MAX, "%s", kv[i].value);
	}
	if (nups == 0)
		return;
	changed = nups != im->nupstreams;
	for (int i = 0; i < nups && !changed; i++)
		changed = strcmp(ups[i], im->upstreams[i]) != 0;
	if (!changed)
		return;
	memcpy(im->upstreams, ups, sizeof ups);
	im->nupstreams = nups;
	agent_log("%s upstreams: %s%s%s%s%s", im->name, ups[0], nups > 1 ? ", " : "",
		  nups > 1 ? ups[1] : "", nups > 2 ? ", " : "", nups > 2 ? ups[2] : "");
	if (im->relay_pid > 0)
		agent_write_upstreams(im);
}

static int agent_apply_reply(const struct httpc_response *resp)
{
	char *text = malloc(resp->body.len + 1);
	struct kv kv[KV_MAX];
	uint64_t v;
	int n;

	if (!text)
		return -ENOMEM;
	memcpy(text, resp->body.data ? resp->body.data : "", resp->body.len);
	n = kv_parse(text, resp->body.len, kv, KV_MAX);
	if (n < 0) {
		free(text);
		agent_log("the seed's reply is not key=value lines");
		return -EPROTO;
	}
	/* Another generation while this one's image is in use: the switch is the main loop's
	 * (agent_reimage); until then nothing of the new image reaches the old relay. */
	bool image_keys = true;

	if (kv_get_u64(kv, n, "generation", 1, UINT32_MAX, &v) == 0 && v != agent.generation) {
		if (agent.have_image) {
			if (agent.next_generation != v)
				agent_log("the seed serves generation %llu (this host: %u)%s",
					  (unsigned long long)v, agent.generation,
					  kv_get(kv, n, "reboot") ? ", by rebooting" : "");
			agent.next_generation = (unsigned)v;
			agent.next_reboot = kv_get(kv, n, "reboot") != NULL;
			image_keys = false;
		} else {
			agent.generation = (unsigned)v;
		}
	}
	if (image_keys)
		agent_take_upstreams(&agent.img[IMG_VM], kv, n, "upstream");
	agent_take_upstreams(&agent.img[IMG_USERLAND], kv, n, "userland-upstream");
	if (kv_get_u64(kv, n, "host-id", 1, 1u << 20, &v) == 0)
		agent.host_id = (int)v;
	if (kv_get_u64(kv, n, "heartbeat", 1, 3600, &v) == 0)
		agent.heartbeat_s = (unsigned)v;
	if (kv_get_u64(kv, n, "vms", 0, 64, &v) == 0)
		agent.vms = (unsigned)v;
	if (kv_get_u64(kv, n, "vcpus", 1, 64, &v) == 0)
		agent.vcpus = (unsigned)v;
	if (kv_get_u64(kv, n, "memory", 16, 1 << 20, &v) == 0)
		agent.memory_mib = (unsigned)v;
	if (kv_get_u64(kv, n, "vm-timeout", 1, 86400, &v) == 0)
		agent.vm_timeout_s = (unsigned)v;
	if (kv_get(kv, n, "vm-data-url") && strncmp(kv_get(kv, n, "vm-data-url"), "http://", 7) == 0)
		snprintf(agent.vm_data_url, sizeof agent.vm_data_url, "%s",
			 kv_get(kv, n, "vm-data-url"));
	if (kv_get(kv, n, "vm-network"))
		agent.vm_bridge = strcmp(kv_get(kv, n, "vm-network"), "bridge") == 0;
	if (kv_get(kv, n, "vm-marker"))
		snprintf(agent.vm_marker, sizeof agent.vm_marker, "%s", kv_get(kv, n, "vm-marker"));
	if (image_keys && kv_get(kv, n, "iqn"))
		snprintf(agent.img[IMG_VM].iqn, sizeof agent.img[0].iqn, "%s", kv_get(kv, n, "iqn"));
	if (image_keys && kv_get(kv, n, "manifest-url"))
		snprintf(agent.img[IMG_VM].manifest_url, sizeof agent.img[0].manifest_url, "%s",
			 kv_get(kv, n, "manifest-url"));
	if (kv_get(kv, n, "userland-iqn"))
		snprintf(agent.img[IMG_USERLAND].iqn, sizeof agent.img[0].iqn, "%s",
			 kv_get(kv, n, "userland-iqn"));
	if (kv_get(kv, n, "userland-manifest-url"))
		snprintf(agent.img[IMG_USERLAND].manifest_url, sizeof agent.img[0].manifest_url, "%s",
			 kv_get(kv, n, "userland-manifest-url"));
	free(text);
	return 0;
}

/* ---- steps ---- */

static bool agent_iface_addr(const char *iface, char *addr, size_t len)
{
	struct ifaddrs *ifa, *p;
	bool found = false;

	if (getifaddrs(&ifa) < 0)
		return false;
	for (p = ifa; p && !found; p = p->ifa_next) {
		if (p->ifa_addr && p->ifa_addr->sa_family == AF_INET && strcmp(p->ifa_name, iface) == 0) {
			inet_ntop(AF_INET, &((struct sockaddr_in *)p->ifa_addr)->sin_addr, addr, len);
			found = true;
		}
	}
	freeifaddrs(ifa);
	return found;
}

/* Picks the boot NIC: the one with BOOTIF's MAC, else the first non-loopback one. */
static int agent_pick_iface(void)
{
	DIR *d;
	struct dirent *e;
	char path[300], mac[32];

	if (agent.iface[0])
		goto mac;
	d = opendir("/sys/class/net");
	if (!d)
		return -errno;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.' || strcmp(e->d_name, "lo") == 0 ||
		    strlen(e->d_name) >= sizeof agent.iface)
			continue;
		snprintf(path, sizeof path, "/sys/class/net/%s/address", e->d_name);
		if (agent_read_file(path, mac, sizeof mac) < 17)
			continue;
		mac[17] = '\0';
		if (agent.mac[0] ? strcasecmp(mac, agent.mac) == 0 : !agent.iface[0])
			snprintf(agent.iface, sizeof agent.iface, "%.15s", e->d_name);
	}
	closedir(d);
	if (!agent.iface[0])
		return -ENODEV;
mac:
	snprintf(path, sizeof path, "/sys/class/net/%s/address", agent.iface);
	if (agent_read_file(path, mac, sizeof mac) < 17)
		return -ENODEV;
	mac[17] = '\0';
	snprintf(agent.mac, sizeof agent.mac, "%.17s", mac);
	return 0;
}

/* Sets IFF_UP on an interface through the socket fd. */
static int agent_link_up(int fd, const char *name)
{
	struct ifreq ifr = { 0 };

	snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", name);
	if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0)
		return -errno;
	ifr.ifr_flags |= IFF_UP;
	return ioctl(fd, SIOCSIFFLAGS, &ifr) < 0 ? -errno : 0;
}

static int agent_write_sys(const char *path, const char *value)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = write(fd, value, strlen(value));
	close(fd);
	return n == (ssize_t)strlen(value) ? 0 : -EIO;
}

/* Puts the boot NIC under a bridge that carries the host's address and the VMs' NICs: the
 * bridge takes the NIC's MAC, so DHCP and the seed know the host as before. Nothing to do
 * when the NIC is already its port (a restarted agent). */
static int agent_bridge_make(void)
{
	char path[300], master[300];
	struct ifreq ifr = { 0 };
	uint8_t mac[6];
	ssize_t n;
	int fd, rc = 0;

	snprintf(path, sizeof path, "/sys/class/net/%s/master", agent.iface);
	n = readlink(path, master, sizeof master - 1);
	if (n > 0) {
		master[n] = '\0';
		if (strcmp(strrchr(master, '/') ? strrchr(master, '/') + 1 : master, agent.bridge) == 0)
			return 0;
		return -EBUSY;			/* a port of something else */
	}
	if (mac_parse(agent.mac, mac) < 0)
		return -EINVAL;
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (ioctl(fd, AGENT_SIOCBRADDBR, agent.bridge) < 0 && errno != EEXIST) {
		rc = -errno;
		goto out;
	}
	snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", agent.bridge);
	ifr.ifr_hwaddr.sa_family = 1;	/* ARPHRD_ETHER */
	memcpy(ifr.ifr_hwaddr.sa_data, mac, sizeof mac);
	if (ioctl(fd, SIOCSIFHWADDR, &ifr) < 0) {
		rc = -errno;
		goto out;
	}
	/* One port, so no loop: forward at once instead of after STP's 30 s of listening. */
	snprintf(path, sizeof path, "/sys/class/net/%s/bridge/stp_state", agent.bridge);
	agent_write_sys(path, "0");
	snprintf(path, sizeof path, "/sys/class/net/%s/bridge/forward_delay", agent.bridge);
	agent_write_sys(path, "0");
	memset(&ifr, 0, sizeof ifr);
	snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", agent.bridge);
	ifr.ifr_ifindex = (int)if_nametoindex(agent.iface);
	if (ifr.ifr_ifindex == 0 || ioctl(fd, AGENT_SIOCBRADDIF, &ifr) < 0) {
		rc = -errno;
		goto out;
	}
	if ((rc = agent_link_up(fd, agent.iface)) == 0)
		rc = agent_link_up(fd, agent.bridge);
out:
	close(fd);
	return rc;
}

static int agent_step_net(void)
{
	char *argv[] = { "udhcpc", "-i", agent.net_iface, "-f", "-q", "-n", "-t", "5", "-T", "2",
			 "-s", "/etc/udhcpc.script", NULL };
	int rc = agent_pick_iface();

	if (rc < 0) {
		agent_stage("failed", "no network interface found");
		return rc;
	}
	snprintf(agent.net_iface, sizeof agent.net_iface, "%s", agent.iface);
	/* A NIC that has its address already (configured by someone else) stays as it is. */
	if (agent.bridge[0] && !agent_iface_addr(agent.iface, agent.addr, sizeof agent.addr)) {
		rc = agent_bridge_make();
		if (rc == 0)
			snprintf(agent.net_iface, sizeof agent.net_iface, "%s", agent.bridge);
		else
			agent_log("bridge %s over %s: %s: VMs get user networking", agent.bridge,
				  agent.iface, strerror(-rc));
	}
	if (!agent_iface_addr(agent.net_iface, agent.addr, sizeof agent.addr)) {
		rc = agent_run(AGENT_STEP_TIMEOUT_MS, argv);
		if (rc != 0 || !agent_iface_addr(agent.net_iface, agent.addr, sizeof agent.addr)) {
			agent_stage("failed", "DHCP on %s got no address (udhcpc status %d)",
				    agent.net_iface, rc);
			return -EAGAIN;
		}
	}
	agent_log("network: %s %s (mac %s)%s%s", agent.net_iface, agent.addr, agent.mac,
		  strcmp(agent.net_iface, agent.iface) ? ", bridge over " : "",
		  strcmp(agent.net_iface, agent.iface) ? agent.iface : "");
	if (!agent.seed[0]) {
		agent_stage("failed", "no seed: virtman.seed= missing on the kernel command line");
		return -EINVAL;
	}
	return 0;
}

static int agent_step_register(void)
{
	struct strbuf body = { 0 };
	struct httpc_response resp;
	struct sysinfo si;
	int rc;

	sysinfo(&si);
	kv_add(&body, "mac", "%s", agent.mac);
	kv_add(&body, "addr", "%s", agent.addr);
	kv_add(&body, "cores", "%ld", sysconf(_SC_NPROCESSORS_ONLN));
	kv_add(&body, "memory", "%llu",
	       (unsigned long long)si.totalram * si.mem_unit / (1024 * 1024));
	if (agent.token[0])
		kv_add(&body, "token", "%s", agent.token);
	rc = agent_post("/api/v1/hosts", &body, &resp);
	sb_free(&body);
	if (rc < 0) {
		agent_log("cannot reach the seed at %s: %s", agent.seed, strerror(-rc));
		return rc;
	}
	if (resp.status != 200) {
		agent_stage("failed", "registration refused: HTTP %d: %.150s", resp.status,
			    resp.body.data ? resp.body.data : "");
		sb_free(&resp.body);
		return -EACCES;
	}
	rc = agent_apply_reply(&resp);
	sb_free(&resp.body);
	if (rc < 0 || agent.host_id <= 0 || !agent.img[IMG_VM].iqn[0] ||
	    !agent.img[IMG_VM].nupstreams || !agent.img[IMG_VM].manifest_url[0]) {
		agent_stage("failed", "the seed's registration reply lacks host-id, iqn, upstream "
			    "or manifest-url");
		return -EPROTO;
	}
	agent_stage("registered", "host %d", agent.host_id);
	return 0;
}

static int agent_fetch_manifest(struct agent_image *im)
{
	struct httpc_response resp;
	struct manifest m;
	char err[200];
	int rc;

	rc = httpc_request("GET", im->manifest_url, NULL, 0, 64u << 20, 60000, &resp);
	if (rc < 0 || resp.status != 200) {
		agent_stage("failed", "fetching the manifest %s: %s", im->manifest_url,
			    rc < 0 ? strerror(-rc) : "HTTP error");
		if (rc == 0)
			sb_free(&resp.body);
		return rc < 0 ? rc : -EPROTO;
	}
	rc = manifest_parse(resp.body.data ? resp.body.data : "", resp.body.len, &m, err, sizeof err);
	if (rc == 0) {
		manifest_free(&m);
		sb_add(&resp.body, "", 1);
		rc = agent_write_file(im->manifest_path, resp.body.data);
	} else {
		agent_stage("failed", "the seed's %s manifest is bad: %s", im->name, err);
	}
	sb_free(&resp.body);
	return rc;
}

static int agent_step_manifest(void)
{
	for (int i = 0; i < IMG_COUNT; i++) {
		int rc = agent.img[i].iqn[0] ? agent_fetch_manifest(&agent.img[i]) : 0;

		if (rc < 0)
			return rc;
	}
	agent.have_image = true;
	return 0;
}

/* The cache lives on tmpfs, on a local disk (formatted once), or in a given directory. */
static int agent_step_cache(void)
{
	const char *spec = agent.cache[0] ? agent.cache : "tmpfs";
	struct stat st;

	if (agent.cache_dir[0])
		return 0;	/* ready since an earlier generation */

	if (strcmp(spec, "tmpfs") == 0) {
		snprintf(agent.cache_dir, sizeof agent.cache_dir, "/var/cache/virtman");
		mkdir("/var/cache", 0755);
		mkdir(agent.cache_dir, 0755);
		if (mount("virtman-cache", agent.cache_dir, "tmpfs", 0, "mode=0755") < 0 &&
		    errno != EBUSY) {
			int err = errno;

			agent.cache_dir[0] = '\0';
			agent_stage("failed", "cannot mount tmpfs for the cache: %s", strerror(err));
			return -err;
		}
		return 0;
	}
	if (stat(spec, &st) == 0 && S_ISDIR(st.st_mode)) {
		snprintf(agent.cache_dir, sizeof agent.cache_dir, "%s", spec);
		return 0;
	}
	if (stat(spec, &st) == 0 && S_ISBLK(st.st_mode)) {
		char *mkfs[] = { "mke2fs", "-q", "-L", "virtman-cache", (char *)spec, NULL };

		snprintf(agent.cache_dir, sizeof agent.cache_dir, "/var/cache/virtman");
		mkdir("/var/cache", 0755);
		mkdir(agent.cache_dir, 0755);
		/* A disk that already holds a cache keeps it: nothing is fetched twice. */
		if (mount(spec, agent.cache_dir, "ext2", 0, NULL) == 0)
			return 0;
		if (agent_run(AGENT_STEP_TIMEOUT_MS, mkfs) != 0 ||
		    mount(spec, agent.cache_dir, "ext2", 0, NULL) < 0) {
			agent.cache_dir[0] = '\0';
			agent_stage("failed", "cannot prepare %s for the cache", spec);
			return -EIO;
		}
		return 0;
	}
	agent_stage("failed", "virtman.cache=%s is neither tmpfs, a directory nor a block device",
		    spec);
	return -EINVAL;
}

/* True once something accepts connections on 127.0.0.1:port. */
static bool agent_port_open(int port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool ok;

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ok = fd >= 0 && connect(fd, (struct sockaddr *)&sin, sizeof sin) == 0;
	if (fd >= 0)
		close(fd);
	return ok;
}

/* Starts one image's relay (if not running) and waits until it listens. */
static int agent_start_relay(struct agent_image *im)
{
	char self[4096], listen[32], metrics[32], name[128];
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);

	if (n < 0)
		return -errno;
	self[n] = '\0';
	snprintf(im->cache_dir, sizeof im->cache_dir, "%s/%s", agent.cache_dir, im->name);
	mkdir(im->cache_dir, 0755);
	agent_write_upstreams(im);
	snprintf(listen, sizeof listen, "0.0.0.0:%d", im->port);
	snprintf(metrics, sizeof metrics, "0.0.0.0:%d", im->metrics_port);
	snprintf(name, sizeof name, "iqn.2026-11.org.virtman:host-%d", agent.host_id);
	char *argv[] = { self, "export", "--upstreams-file", im->upstreams_path,
			 "--cache", im->cache_dir, "--manifest", im->manifest_path,
			 "--listen", listen, "--iqn", im->iqn, "--metrics", metrics,
			 "--initiator-name", name, NULL };

	if (im->relay_pid <= 0) {
		im->relay_pid = agent_spawn(argv);
		if (im->relay_pid < 0) {
			im->relay_pid = 0;
			return -errno;
		}
	}
	for (int i = 0; i < 500; i++) {	/* 10 s in 20 ms polls */
		if (agent_port_open(im->port))
			return 0;
		agent_reap();
		if (im->relay_pid == 0)
			break;
		usleep(20000);
	}
	agent_stage("failed", "the %s relay did not start listening on port %d", im->name, im->port);
	return -EIO;
}

static int agent_step_relay(void)
{
	for (int i = 0; i < IMG_COUNT; i++) {
		int rc = agent.img[i].iqn[0] ? agent_start_relay(&agent.img[i]) : 0;

		if (rc < 0)
			return rc;
	}
	agent_stage("relay-ready", "relay pid %d", (int)agent.img[IMG_VM].relay_pid);
	return 0;
}

/* Finds the block device of the iSCSI session to target iqn: /dev/sdX, through sysfs. */
static bool agent_find_disk(const char *iqn, char *out, size_t len)
{
	DIR *sessions = opendir("/sys/class/iscsi_session");
	struct dirent *s;
	bool found = false;

	if (!sessions)
		return false;
	while (!found && (s = readdir(sessions))) {
		char path[512], name[256];
		DIR *blocks;
		struct dirent *b;

		if (strncmp(s->d_name, "session", 7) != 0)
			continue;
		snprintf(path, sizeof path, "/sys/class/iscsi_session/%s/targetname", s->d_name);
		if (agent_read_file(path, name, sizeof name) < 0)
			continue;
		name[strcspn(name, "\n")] = '\0';
		if (strcmp(name, iqn) != 0)
			continue;
		/* session -> device/targetH:C:T -> H:C:T:L/block/sdX */
		snprintf(path, sizeof path, "/sys/class/iscsi_session/%s/device", s->d_name);
		DIR *dev = opendir(path);
		struct dirent *t;

		while (dev && !found && (t = readdir(dev))) {
			char tpath[800];
			DIR *luns;
			struct dirent *l;

			if (strncmp(t->d_name, "target", 6) != 0)
				continue;
			snprintf(tpath, sizeof tpath, "%s/%s", path, t->d_name);
			luns = opendir(tpath);
			while (luns && !found && (l = readdir(luns))) {
				char bpath[1100];

				if (!strchr(l->d_name, ':'))
					continue;
				snprintf(bpath, sizeof bpath, "%s/%s/block", tpath, l->d_name);
				blocks = opendir(bpath);
				while (blocks && !found && (b = readdir(blocks)))
					if (b->d_name[0] != '.') {
						snprintf(out, len, "/dev/%.56s", b->d_name);
						found = true;
					}
				if (blocks)
					closedir(blocks);
			}
			if (luns)
				closedir(luns);
		}
		if (dev)
			closedir(dev);
	}
	closedir(sessions);
	return found;
}

/* Chunks the local relay threw away for failing verification, from its metrics. */
static long agent_relay_verify_failures(void)
{
	struct httpc_response resp;
	char url[64];
	long n = -1;

	snprintf(url, sizeof url, "http://127.0.0.1:%d/metrics", AGENT_METRICS_PORT);
	if (httpc_request("GET", url, NULL, 0, 1 << 20, 2000, &resp) < 0)
		return -1;
	if (resp.status == 200 && resp.body.data) {
		const char *p = strstr(resp.body.data, "\nvirtman_verify_failures_total ");

		if (p)
			n = strtol(p + strlen("\nvirtman_verify_failures_total "), NULL, 10);
	}
	sb_free(&resp.body);
	return n;
}

/* Reads the attached disk whole and keeps its SHA-256 for the seed (virtman.verify);
 * a disk that cannot be read fails the step, with the reason the relay knows. */
static int agent_verify_disk(void)
{
	const char *disk = agent.img[IMG_VM].disk;
	int fd = open(disk, O_RDONLY | O_CLOEXEC);
	static uint8_t buf[1 << 20];
	uint8_t d[SHA256_LEN];
	struct sha256 s;
	ssize_t n;

	if (fd < 0)
		return -errno;
	sha256_init(&s);
	while ((n = read(fd, buf, sizeof buf)) > 0)
		sha256_update(&s, buf, (size_t)n);
	if (n < 0) {
		int err = errno;
		long bad = agent_relay_verify_failures();

		close(fd);
		if (bad > 0)
			agent_stage("failed", "the image failed verification: %ld chunks from the "
				    "upstreams did not match the manifest", bad);
		else
			agent_stage("failed", "reading %s: %s", disk, strerror(err));
		return -err;
	}
	close(fd);
	sha256_final(&s, d);
	for (int i = 0; i < SHA256_LEN; i++)
		snprintf(agent.disk_sha256 + 2 * i, 3, "%02x", d[i]);
	agent_log("disk %s sha256 %s", disk, agent.disk_sha256);
	return 0;
}

/* Logs in to one image's local relay with open-iscsi and finds its disk, read-only. */
static int agent_attach_image(struct agent_image *im)
{
	char portal[32], line[300];
	char *disc[] = { "iscsiadm", "-m", "discovery", "-t", "st", "-p", portal, NULL };
	char *login[] = { "iscsiadm", "-m", "node", "-T", im->iqn, "-p", portal, "--login", NULL };
	char *iscsid[] = { "iscsid", "-f", NULL };
	int rc;

	snprintf(portal, sizeof portal, "127.0.0.1:%d", im->port);
	mkdir("/etc/iscsi", 0755);
	snprintf(line, sizeof line, "InitiatorName=iqn.2026-11.org.virtman:host-%d-local\n",
		 agent.host_id);
	agent_write_file("/etc/iscsi/initiatorname.iscsi", line);
	if (agent.iscsid_pid <= 0) {
		agent.iscsid_pid = agent_spawn(iscsid);
		if (agent.iscsid_pid < 0)
			agent.iscsid_pid = 0;
	}
	/* iscsiadm fails until iscsid listens: retry within the step's deadline. */
	for (int i = 0; i < 50 && (rc = agent_run(AGENT_STEP_TIMEOUT_MS, disc)) != 0; i++)
		usleep(200000);
	if (rc != 0) {
		agent_stage("failed", "iscsiadm discovery on %s failed (status %d)", portal, rc);
		return -EIO;
	}
	if (!agent_find_disk(im->iqn, im->disk, sizeof im->disk) &&
	    (rc = agent_run(AGENT_STEP_TIMEOUT_MS, login)) != 0) {
		agent_stage("failed", "iscsiadm login to %s failed (status %d)", im->iqn, rc);
		return -EIO;
	}
	for (int i = 0; i < 500 && !agent_find_disk(im->iqn, im->disk, sizeof im->disk); i++)
		usleep(20000);
	if (!im->disk[0]) {
		agent_stage("failed", "logged in, but no disk appeared for %s", im->iqn);
		return -EIO;
	}
	int fd = open(im->disk, O_RDONLY | O_CLOEXEC), ro = 1;

	if (fd >= 0) {
		ioctl(fd, BLKROSET, &ro);	/* the shared base is never written */
		close(fd);
	}
	return 0;
}

static int agent_step_attach(void)
{
	if (strcmp(agent.attach, "none") == 0) {
		agent_stage("attached", "relay only (--attach none)");
		return 0;
	}
	if (agent_attach_image(&agent.img[IMG_VM]) < 0)
		return -EIO;
	if (agent.verify && agent_verify_disk() < 0)
		return -EIO;
	agent_stage("attached", "%s", agent.img[IMG_VM].disk);
	return 0;
}

/* Attaches the hypervisor userland and starts libvirtd from it (hv-start). */
static int agent_step_userland(void)
{
	struct agent_image *im = &agent.img[IMG_USERLAND];
	char *hv[] = { "hv-start", im->disk, "/var/lib/virtman", NULL };
	int rc;

	if (!im->iqn[0] || strcmp(agent.attach, "none") == 0 || agent.hv_up)
		return 0;	/* a seed without --userland: this host runs no VMs */
	if (agent_attach_image(im) < 0)
		return -EIO;
	mkdir("/var/lib/virtman", 0755);
	rc = agent_run(120000, hv);
	if (rc != 0) {
		agent_stage("failed", "hv-start %s failed (status %d): no hypervisor", im->disk, rc);
		return -EIO;
	}
	agent.hv_up = true;
	agent_log("hypervisor userland up from %s", im->disk);
	return 0;
}

static int agent_run_step(enum agent_step step)
{
	switch (step) {
	case STEP_NET: return agent_step_net();
	case STEP_REGISTER: return agent_step_register();
	case STEP_MANIFEST: return agent_step_manifest();
	case STEP_CACHE: return agent_step_cache();
	case STEP_RELAY: return agent_step_relay();
	case STEP_ATTACH: return agent_step_attach();
	case STEP_USERLAND: return agent_step_userland();
	case STEP_READY:
		agent_stage("ready", "generation %u", agent.generation);
		return 0;
	}
	return -EINVAL;
}

static void agent_on_signal(int sig)
{
	(void)sig;
	agent_stopping = 1;
}

/* Stops what the agent started, newest first. */
static void agent_shutdown(void)
{
	char *hv_stop[] = { "hv-stop", NULL };

	agent_log("stopping");
	if (agent_vms_started)
		vms_stop(&agent_vms);
	if (agent.hv_up)
		agent_run(60000, hv_stop);
	for (int k = 0; k < IMG_COUNT; k++) {
		struct agent_image *im = &agent.img[k];
		char portal[32];
		char *logout[] = { "iscsiadm", "-m", "node", "-T", im->iqn, "-p", portal,
				   "--logout", NULL };

		snprintf(portal, sizeof portal, "127.0.0.1:%d", im->port);
		if (im->disk[0])
			agent_run(10000, logout);
	}
	if (agent.iscsid_pid > 0)
		kill(agent.iscsid_pid, SIGTERM);
	for (int k = 0; k < IMG_COUNT; k++)
		if (agent.img[k].relay_pid > 0)
			kill(agent.img[k].relay_pid, SIGTERM);
	for (int i = 0; i < 250; i++) {
		bool left = agent.iscsid_pid > 0;

		for (int k = 0; k < IMG_COUNT; k++)
			left |= agent.img[k].relay_pid > 0;
		if (!left)
			break;
		agent_reap();
		usleep(20000);
	}
}

/* Stops one image's relay and waits for it to go (SIGKILL after 10 s). */
static void agent_stop_relay(struct agent_image *im)
{
	if (im->relay_pid <= 0)
		return;
	kill(im->relay_pid, SIGTERM);
	for (int i = 0; i < 500 && im->relay_pid > 0; i++) {
		agent_reap();
		if (im->relay_pid > 0)
			usleep(20000);
	}
	if (im->relay_pid > 0) {
		kill(im->relay_pid, SIGKILL);
		while (im->relay_pid > 0) {
			agent_reap();
			usleep(20000);
		}
	}
}

/* Deletes the files of a cache directory (the relay keeps no subdirectories). */
static void agent_clear_dir(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;

	if (!d)
		return;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			unlinkat(dirfd(d), e->d_name, 0);
	closedir(d);
}

/* The seed serves a new generation: stop the VMs (their overlays go), detach the old image,
 * stop its relay and drop its cache, then take the new generation's image from the seed's
 * reply; bring-up goes on from the manifest. With reboot, the host reboots instead and
 * PXE-boots the new generation (new boot image too). */
static void agent_reimage(void)
{
	struct agent_image *im = &agent.img[IMG_VM];
	unsigned gen = agent.next_generation;
	char portal[32];
	char *logout[] = { "iscsiadm", "-m", "node", "-T", im->iqn, "-p", portal, "--logout",
			   NULL };

	agent.next_generation = 0;
	if (agent.next_reboot && agent.allow_reboot) {
		agent.generation = gen;
		agent_stage("rebooting", "to boot generation %u", gen);
		agent_heartbeat();
		agent_shutdown();
		sync();
		reboot(RB_AUTOBOOT);
		agent_log("reboot: %s: reimaging in place", strerror(errno));
	} else if (agent.next_reboot) {
		agent_log("the seed asks for a reboot, but this agent may not reboot its host "
			  "(no --allow-reboot): reimaging in place");
	}
	agent_stage("reimaging", "generation %u to %u", agent.generation, gen);
	if (agent_vms_started) {
		vms_stop(&agent_vms);
		agent_vms_started = false;
	}
	snprintf(portal, sizeof portal, "127.0.0.1:%d", im->port);
	if (im->disk[0] && agent_run(10000, logout) != 0)
		agent_log("iscsiadm logout from %s failed", im->iqn);
	im->disk[0] = '\0';
	agent_stop_relay(im);
	if (im->cache_dir[0])
		agent_clear_dir(im->cache_dir);
	im->iqn[0] = '\0';
	im->manifest_url[0] = '\0';
	im->nupstreams = 0;
	agent.disk_sha256[0] = '\0';
	agent.have_image = false;
	agent.generation = gen;
	/* This beat says which generation the host now works on; its reply names the image. */
	agent_heartbeat();
}

/* Sleeps up to seconds, waking early for a stop request; reaps children and watches the
 * VMs' consoles meanwhile. */
static void agent_pause(unsigned seconds)
{
	for (unsigned i = 0; i < seconds * 10 && !agent_stopping; i++) {
		agent_reap();
		if (agent_vms_started && i % 10 == 0)
			vms_poll(&agent_vms);
		usleep(100000);
	}
}

/* Sends one VM's stage to the seed at once (VM stages are events, not state). */
static void agent_report_vm(const char *vm, const char *stage, const char *reason)
{
	struct strbuf body = { 0 };
	struct httpc_response resp;
	char path[64];

	agent_log("vm %s: %s%s%.200s", vm, stage, reason ? ": " : "", reason ? reason : "");
	if (agent.host_id <= 0)
		return;
	kv_add(&body, "token", "%s", agent.token);
	kv_add(&body, "vm", "%s", vm);
	kv_add(&body, "vm-stage", "%s", stage);
	if (reason)
		kv_add(&body, "reason", "%s", reason);
	snprintf(path, sizeof path, "/api/v1/hosts/%d/heartbeat", agent.host_id);
	if (agent_post(path, &body, &resp) == 0)
		sb_free(&resp.body);
	sb_free(&body);
}

/* Starts the host's VM set once the hypervisor is up. */
static void agent_start_vms(void)
{
	if (agent_vms_started || !agent.hv_up || agent.vms == 0)
		return;
	agent_vms.count = agent.vms;
	agent_vms.vcpus = agent.vcpus ? agent.vcpus : 1;
	agent_vms.memory_mib = agent.memory_mib ? agent.memory_mib : 256;
	agent_vms.timeout_s = agent.vm_timeout_s ? agent.vm_timeout_s : 300;
	snprintf(agent_vms.marker, sizeof agent_vms.marker, "%s",
		 agent.vm_marker[0] ? agent.vm_marker : "virtman-vm-up");
	snprintf(agent_vms.data_url, sizeof agent_vms.data_url, "%s", agent.vm_data_url);
	/* On the bridge when the seed asks for it and the boot NIC is under one. */
	agent_vms.bridge[0] = '\0';
	if (agent.vm_bridge && strcmp(agent.net_iface, agent.iface) != 0)
		snprintf(agent_vms.bridge, sizeof agent_vms.bridge, "%s", agent.net_iface);
	else if (agent.vm_bridge)
		agent_log("VMs get user networking: the boot NIC %s is under no bridge (--bridge)",
			  agent.iface);
	agent_vms.run = agent_run;
	agent_vms.report = agent_report_vm;
	agent_vms_started = true;
	vms_start(&agent_vms, agent.img[IMG_VM].disk, agent.host_id);
}

int cmd_agent(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "seed", required_argument, NULL, 's' },
		{ "token", required_argument, NULL, 't' },
		{ "iface", required_argument, NULL, 'i' },
		{ "bridge", required_argument, NULL, 'b' },
		{ "cache", required_argument, NULL, 'c' },
		{ "attach", required_argument, NULL, 'a' },
		{ "verify", no_argument, NULL, 'v' },
		{ "debug", no_argument, NULL, 'd' },
		{ "run-dir", required_argument, NULL, 'r' },
		{ "allow-reboot", no_argument, NULL, 'R' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	enum agent_step step = STEP_NET;
	unsigned backoff = 1;
	int opt;

	log_set_prefix("virtman agent");
	snprintf(agent.attach, sizeof agent.attach, "open-iscsi");
	snprintf(agent.run_dir, sizeof agent.run_dir, "%s", AGENT_RUN_DIR);
	agent.heartbeat_s = 5;
	agent_cmdline();
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (opt) {
		case 's': snprintf(agent.seed, sizeof agent.seed, "%s", optarg); break;
		case 't': snprintf(agent.token, sizeof agent.token, "%s", optarg); break;
		case 'i': snprintf(agent.iface, sizeof agent.iface, "%s", optarg); break;
		case 'b':
			if (!agent_ifname_ok(optarg))
				die(EXIT_USAGE, "--bridge %s: 1 to %d letters, digits, '.', '_' "
				    "or '-'", optarg, IF_NAMESIZE - 1);
			snprintf(agent.bridge, sizeof agent.bridge, "%s",
				 strcmp(optarg, "none") ? optarg : "");
			break;
		case 'c': snprintf(agent.cache, sizeof agent.cache, "%s", optarg); break;
		case 'a':
			if (strcmp(optarg, "open-iscsi") != 0 && strcmp(optarg, "none") != 0)
				die(EXIT_USAGE, "--attach %s: open-iscsi or none", optarg);
			snprintf(agent.attach, sizeof agent.attach, "%s", optarg);
			break;
		case 'v': agent.verify = true; break;
		case 'd': agent.debug = true; break;
		case 'r': snprintf(agent.run_dir, sizeof agent.run_dir, "%s", optarg); break;
		case 'R': agent.allow_reboot = true; break;
		case 'h': fputs(agent_usage, stdout); return 0;
		default: fputs(agent_usage, stderr); return EXIT_USAGE;
		}
	}
	if (optind != argc)
		die(EXIT_USAGE, "unexpected argument %s", argv[optind]);
	if (agent.seed[0] && strncmp(agent.seed, "http://", 7) != 0)
		die(EXIT_USAGE, "--seed %s: expected http://HOST:PORT", agent.seed);
	signal(SIGTERM, agent_on_signal);
	signal(SIGINT, agent_on_signal);
	signal(SIGPIPE, SIG_IGN);
	for (int i = 0; i < IMG_COUNT; i++) {
		struct agent_image *im = &agent.img[i];

		im->name = i == IMG_VM ? "image" : "userland";
		im->port = AGENT_ISCSI_PORT + i;
		im->metrics_port = AGENT_METRICS_PORT + i;
		snprintf(im->upstreams_path, sizeof im->upstreams_path, "%s/%s.upstreams",
			 agent.run_dir, im->name);
		snprintf(im->manifest_path, sizeof im->manifest_path, "%s/%s.manifest",
			 agent.run_dir, im->name);
	}
	mkdir("/run", 0755);
	if (mkdir(agent.run_dir, 0755) < 0 && errno != EEXIST)
		die(EXIT_START, "--run-dir %s: %s", agent.run_dir, strerror(errno));
	agent_log("starting (seed %s)", agent.seed[0] ? agent.seed : "unknown yet");
bring_up:
	/* Bring-up: each step retried with backoff until it works; never silent. */
	while (!agent_stopping && step <= STEP_READY) {
		if (agent.next_generation) {
			agent_reimage();
			step = agent.img[IMG_VM].iqn[0] ? STEP_MANIFEST : STEP_REGISTER;
			continue;
		}
		int rc = agent_run_step(step);

		agent_reap();
		if (rc == 0) {
			if (step >= STEP_REGISTER)
				agent_heartbeat();	/* the stage reaches the seed now */
			step++;
			backoff = 1;
			continue;
		}
		if (agent.host_id > 0)
			agent_heartbeat();	/* the failure and its reason reach the seed */
		agent_log("retrying in %u s", backoff);
		agent_pause(backoff);
		backoff = backoff * 2 > AGENT_BACKOFF_MAX_S ? AGENT_BACKOFF_MAX_S : backoff * 2;
		if (step == STEP_REGISTER && agent.host_id == 0 && agent.addr[0] == '\0')
			step = STEP_NET;
	}
	/* Steady state: heartbeats; a dead relay or iscsid is restarted, a forgotten host
	 * registers again; the seed being away costs nothing but its view of us. */
	while (!agent_stopping) {
		int rc;

		agent_start_vms();
		agent_pause(agent.heartbeat_s);
		if (agent_stopping)
			break;
		for (int i = 0; i < IMG_COUNT; i++)
			if (agent.img[i].iqn[0] && agent.img[i].relay_pid == 0 &&
			    agent_start_relay(&agent.img[i]) == 0)
				agent_log("%s relay restarted", agent.img[i].name);
		if (agent.iscsid_pid == 0 && strcmp(agent.attach, "none") != 0) {
			char *iscsid[] = { "iscsid", "-f", NULL };

			agent.iscsid_pid = agent_spawn(iscsid);
			if (agent.iscsid_pid < 0)
				agent.iscsid_pid = 0;
		}
		rc = agent_heartbeat();
		if (agent.next_generation) {
			agent_reimage();
			step = agent.img[IMG_VM].iqn[0] ? STEP_MANIFEST : STEP_REGISTER;
			goto bring_up;
		}
		if (rc == -ENOENT && agent_step_register() == 0) {
			agent_stage("ready", "registered again");
			for (int i = 0; i < IMG_COUNT; i++)
				if (agent.img[i].relay_pid > 0)
					agent_write_upstreams(&agent.img[i]);
			agent_heartbeat();
		} else if (rc < 0 && rc != -ENOENT) {
			agent_log("heartbeat: %s; still serving", strerror(-rc));
		}
	}
	agent_shutdown();
	return 0;
}
