/* iSCSI text keys (RFC 7143 §6): parsing key=value data segments and negotiating them. */
#ifndef VIRTMAN_ISCSI_KEYS_H
#define VIRTMAN_ISCSI_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/strbuf.h"

#define ISCSI_KEY_NAME_MAX 63		/* RFC 7143 §6.1 */
#define ISCSI_KEY_VALUE_MAX 8192	/* longest value we accept (CHAP-sized) */
#define ISCSI_KEYS_MAX 64		/* pairs in one request */
#define ISCSI_NAME_MAX 223		/* iSCSI names, RFC 3722 */
#define ISCSI_TEXT_MAX 65536		/* a text or login request spanning PDUs (C bit) */

#define ISCSI_TARGET_MRDSL 262144	/* what we accept per data segment */
#define ISCSI_MAX_BURST 16776192	/* 2^24 - 512, the key's maximum */

struct iscsi_kv {
	const char *key;
	const char *value;
};

/* Operational parameters of a session, after negotiation (RFC 7143 §13). */
struct iscsi_params {
	bool header_digest;
	bool data_digest;
	uint32_t initiator_mrdsl;	/* largest data segment we may send */
	uint32_t max_burst;
	uint32_t first_burst;
	bool immediate_data;
	bool initial_r2t;
};

/* Login-phase state of one connection. */
struct iscsi_negotiation {
	bool discovery;
	bool have_initiator_name;
	bool have_target_name;
	bool tpgt_sent;
	bool mrdsl_declared;	/* our MaxRecvDataSegmentLength was sent */
	char initiator_name[ISCSI_NAME_MAX + 1];
	char target_name[ISCSI_NAME_MAX + 1];
	struct iscsi_params params;
};

/* Splits text[0..len) into key=value pairs in place; text must have room for
 * text[len] = NUL. Returns the number of pairs or -EBADMSG. */
int iscsi_keys_parse(char *text, size_t len, struct iscsi_kv *kv, int max);

/* Appends "key=value\0". */
void iscsi_keys_add(struct strbuf *out, const char *key, const char *value);

/* Default parameters before any negotiation (RFC 7143 §13). */
void iscsi_params_default(struct iscsi_params *p);

/* Answers the keys of one login request into out; returns ISCSI_LOGIN_OK or a login status. */
int iscsi_negotiate(struct iscsi_negotiation *neg, const struct iscsi_kv *kv, int n,
		    struct strbuf *out);

#endif
