/* iSCSI initiator (client side of RFC 7143, ErrorRecoveryLevel 0) on the event loop:
 * one session to one upstream target, pipelined READ(16), keepalive, reconnect. */
#ifndef VIRTMAN_ISCSI_INITIATOR_H
#define VIRTMAN_ISCSI_INITIATOR_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#define ISCSI_URL_MAX 512

/* iscsi://HOST[:PORT]/IQN/LUN, HOST an IPv4 address, [IPv6] or a name in /etc/hosts. */
struct iscsi_url {
	char host[256];
	uint16_t port;		/* 3260 when absent */
	char iqn[224];
	uint64_t lun;
};

/* Parses an iscsi:// URL; 0 or -EINVAL. */
int iscsi_url_parse(const char *s, struct iscsi_url *url);

enum iscsi_client_state {
	ICLIENT_DOWN,		/* not connected; reconnects after a backoff */
	ICLIENT_CONNECTING,	/* TCP connect and login under way */
	ICLIENT_UP,		/* logged in, capacity known: reads are accepted */
};

struct iscsi_client;

/* Called when the client comes up (capacity known) or goes down (reason for logs).
 * Every callback (these and read completions) runs from the event loop's deferred work,
 * never from inside a call into the client; callbacks may call any function here. */
struct iscsi_client_events {
	void (*up)(void *ctx, struct iscsi_client *cl);
	void (*down)(void *ctx, struct iscsi_client *cl, const char *reason);
	void *ctx;
};

struct iscsi_client_config {
	struct iscsi_url url;
	const char *initiator_name;	/* our IQN */
	bool header_digest;		/* ask for CRC32C header digests */
	bool data_digest;		/* ask for CRC32C data digests */
	uint32_t read_timeout_ms;	/* a read not finished by then takes the session down
					 * (0: 30 s); also the NOP-Out keepalive's deadline */
	uint32_t max_inflight;		/* reads outstanding at once (also bounded by MaxCmdSN;
					 * 0: 16, at most 1024) */
};

/* Read completion: err 0 and buf filled, or a negative errno (-EIO: SCSI error,
 * -ECONNRESET: the session went down, -ETIMEDOUT, -ECANCELED). Called exactly once. */
typedef void iscsi_read_done(void *arg, int err);

/* Creates a client and starts connecting at once; reconnects by itself with exponential
 * backoff (1 s doubling to 30 s) whenever the session goes down. NULL on allocation failure. */
struct iscsi_client *iscsi_client_new(const struct iscsi_client_config *cfg,
				      const struct iscsi_client_events *ev);

/* Reads len bytes at byte offset off (both multiples of the block size) into buf.
 * 0 when queued (done is called later, never from inside this call), or -ENOTCONN when
 * the client is not up, -EINVAL for a range outside the LUN. */
int iscsi_client_read(struct iscsi_client *cl, uint64_t off, uint32_t len, uint8_t *buf,
		      iscsi_read_done *done, void *arg);

/* Cancels every read whose arg matches: its done is not called and its buf is never
 * written again (data still arriving for it is discarded). */
void iscsi_client_cancel(struct iscsi_client *cl, void *arg);

/* Takes the session down now (e.g. the data it sent failed verification); it reconnects
 * after the next backoff. Pending reads complete with -ECONNRESET. */
void iscsi_client_drop(struct iscsi_client *cl, const char *reason);

/* Frees the client without logging out; reads still pending complete with -ECANCELED
 * (from inside this call). From inside its own callbacks it takes effect after them. */
void iscsi_client_free(struct iscsi_client *cl);

enum iscsi_client_state iscsi_client_state(const struct iscsi_client *cl);
uint64_t iscsi_client_capacity(const struct iscsi_client *cl);	/* bytes, once up */
uint32_t iscsi_client_block_size(const struct iscsi_client *cl);
uint32_t iscsi_client_inflight(const struct iscsi_client *cl);	/* reads accepted, not done */
uint64_t iscsi_client_bytes_read(const struct iscsi_client *cl);	/* payload received */
const char *iscsi_client_name(const struct iscsi_client *cl);	/* the URL, for logs/metrics */

#endif
