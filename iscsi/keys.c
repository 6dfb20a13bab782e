/* iSCSI text keys (RFC 7143 §6): parsing key=value data segments and negotiating them. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "iscsi/keys.h"
#include "iscsi/pdu.h"
#include "lib/net.h"

enum key_kind {
	KEY_DIGEST,	/* list: CRC32C, None */
	KEY_BOOL_OR,	/* result Yes if either says Yes */
	KEY_BOOL_AND,	/* result Yes only if both say Yes */
	KEY_NUM_MIN,	/* result is the smaller of offer and ours */
	KEY_NUM_MAX,	/* result is the larger */
	KEY_DECLARE,	/* the initiator declares a value; we answer ours */
	KEY_NAME,	/* InitiatorName, TargetName, SessionType, AuthMethod, ... */
	KEY_IRRELEVANT,	/* obsolete markers: answered Irrelevant / No */
};

struct key_rule {
	const char *name;
	enum key_kind kind;
	uint64_t min, max;	/* valid range of numeric offers */
	uint64_t ours;		/* our value for numbers, 1/0 for booleans */
};

/* Every key we understand; anything else is answered NotUnderstood. */
static const struct key_rule key_rules[] = {
	{ "HeaderDigest", KEY_DIGEST, 0, 0, 0 },
	{ "DataDigest", KEY_DIGEST, 0, 0, 0 },
	{ "MaxConnections", KEY_NUM_MIN, 1, 65535, 1 },
	{ "InitialR2T", KEY_BOOL_OR, 0, 0, 1 },
	{ "ImmediateData", KEY_BOOL_AND, 0, 0, 1 },
	{ "MaxRecvDataSegmentLength", KEY_DECLARE, 512, 16777215, ISCSI_TARGET_MRDSL },
	{ "MaxBurstLength", KEY_NUM_MIN, 512, 16777215, ISCSI_MAX_BURST },
	{ "FirstBurstLength", KEY_NUM_MIN, 512, 16777215, ISCSI_MAX_BURST },
	{ "DefaultTime2Wait", KEY_NUM_MAX, 0, 3600, 2 },
	{ "DefaultTime2Retain", KEY_NUM_MIN, 0, 3600, 0 },
	{ "MaxOutstandingR2T", KEY_NUM_MIN, 1, 65535, 1 },
	{ "DataPDUInOrder", KEY_BOOL_OR, 0, 0, 1 },
	{ "DataSequenceInOrder", KEY_BOOL_OR, 0, 0, 1 },
	{ "ErrorRecoveryLevel", KEY_NUM_MIN, 0, 2, 0 },
	{ "InitiatorName", KEY_NAME, 0, 0, 0 },
	{ "InitiatorAlias", KEY_NAME, 0, 0, 0 },
	{ "TargetName", KEY_NAME, 0, 0, 0 },
	{ "SessionType", KEY_NAME, 0, 0, 0 },
	{ "AuthMethod", KEY_NAME, 0, 0, 0 },
	{ "IFMarker", KEY_IRRELEVANT, 0, 0, 0 },
	{ "OFMarker", KEY_IRRELEVANT, 0, 0, 0 },
	{ "IFMarkInt", KEY_IRRELEVANT, 0, 0, 0 },
	{ "OFMarkInt", KEY_IRRELEVANT, 0, 0, 0 },
};

static bool key_char_valid(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '.' || c == '-' || c == '+' || c == '@' || c == '_';
}

/* True when s[0..len) is well-formed UTF-8 (RFC 7143 §6.1: text is UTF-8). */
static bool key_utf8_valid(const unsigned char *s, size_t len)
{
	size_t i = 0;

	while (i < len) {
		unsigned char c = s[i];
		size_t n;
		uint32_t cp;

		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf)
			n = 1, cp = c & 0x1f;
		else if (c >= 0xe0 && c <= 0xef)
			n = 2, cp = c & 0x0f;
		else if (c >= 0xf0 && c <= 0xf4)
			n = 3, cp = c & 0x07;
		else
			return false;
		if (n > len - i - 1)
			return false;
		for (size_t k = 1; k <= n; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (s[i + k] & 0x3f);
		}
		/* Overlong forms, surrogates and values past U+10FFFF. */
		if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += n + 1;
	}
	return true;
}

int iscsi_keys_parse(char *text, size_t len, struct iscsi_kv *kv, int max)
{
	char *p = text, *end = text + len;
	int n = 0;

	/* Every pair ends in a NUL (RFC 7143 §6.1); trailing NULs are padding. */
	if (len && text[len - 1] != '\0')
		return -EBADMSG;
	*end = '\0';
	while (p < end) {
		size_t plen = strlen(p);	/* bounded: *end is NUL */
		char *eq;

		if (plen == 0) {	/* trailing NULs (padding some initiators add) */
			p++;
			continue;
		}
		eq = memchr(p, '=', plen);
		if (!eq || eq == p || eq - p > ISCSI_KEY_NAME_MAX ||
		    plen - (size_t)(eq - p) - 1 > ISCSI_KEY_VALUE_MAX || n == max)
			return -EBADMSG;
		for (char *k = p; k < eq; k++)
			if (!key_char_valid(*k))
				return -EBADMSG;
		if (!key_utf8_valid((const unsigned char *)eq + 1, plen - (size_t)(eq - p) - 1))
			return -EBADMSG;
		*eq = '\0';
		kv[n].key = p;
		kv[n].value = eq + 1;
		n++;
		p += plen + 1;
	}
	return n;
}

void iscsi_keys_add(struct strbuf *out, const char *key, const char *value)
{
	sb_printf(out, "%s=%s", key, value);
	sb_add(out, "", 1);
}

void iscsi_params_default(struct iscsi_params *p)
{
	*p = (struct iscsi_params){
		.header_digest = false,
		.data_digest = false,
		.initiator_mrdsl = 8192,
		.max_burst = 262144,
		.first_burst = 65536,
		.immediate_data = true,
		.initial_r2t = true,
	};
}

static const struct key_rule *key_rule_find(const char *name)
{
	for (size_t i = 0; i < sizeof key_rules / sizeof key_rules[0]; i++)
		if (strcmp(key_rules[i].name, name) == 0)
			return &key_rules[i];
	return NULL;
}

/* Picks the first digest of the offered list we support; NULL when none. */
static const char *key_pick_digest(const char *list)
{
	char item[16];

	while (*list) {
		size_t n = strcspn(list, ",");

		if (n < sizeof item) {
			memcpy(item, list, n);
			item[n] = '\0';
			if (strcmp(item, "CRC32C") == 0 || strcmp(item, "None") == 0)
				return strcmp(item, "None") == 0 ? "None" : "CRC32C";
		}
		list += n;
		if (*list == ',')
			list++;
	}
	return NULL;
}

static int key_parse_bool(const char *v)
{
	if (strcmp(v, "Yes") == 0)
		return 1;
	if (strcmp(v, "No") == 0)
		return 0;
	return -1;
}

/* Records a negotiated result in the session parameters. */
static void key_apply(struct iscsi_params *p, const char *name, uint64_t v)
{
	if (strcmp(name, "HeaderDigest") == 0)
		p->header_digest = v;
	else if (strcmp(name, "DataDigest") == 0)
		p->data_digest = v;
	else if (strcmp(name, "InitialR2T") == 0)
		p->initial_r2t = v;
	else if (strcmp(name, "ImmediateData") == 0)
		p->immediate_data = v;
	else if (strcmp(name, "MaxRecvDataSegmentLength") == 0)
		p->initiator_mrdsl = (uint32_t)v;
	else if (strcmp(name, "MaxBurstLength") == 0)
		p->max_burst = (uint32_t)v;
	else if (strcmp(name, "FirstBurstLength") == 0)
		p->first_burst = (uint32_t)v;
}

/* iSCSI names as initiators really send them: printable ASCII, no spaces (we log them). */
static bool key_name_valid(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f)
			return false;
	return true;
}

/* Identity keys: who logs in, to what, how. Returns a login status. */
static int key_name(struct iscsi_negotiation *neg, const struct iscsi_kv *kv, struct strbuf *out)
{
	size_t vlen = strlen(kv->value);

	if (strcmp(kv->key, "InitiatorName") == 0) {
		if (vlen == 0 || vlen > ISCSI_NAME_MAX || !key_name_valid(kv->value))
			return ISCSI_LOGIN_INITIATOR_ERROR;
		memcpy(neg->initiator_name, kv->value, vlen + 1);
		neg->have_initiator_name = true;
	} else if (strcmp(kv->key, "TargetName") == 0) {
		if (vlen == 0 || vlen > ISCSI_NAME_MAX || !key_name_valid(kv->value))
			return ISCSI_LOGIN_NOT_FOUND;
		memcpy(neg->target_name, kv->value, vlen + 1);
		neg->have_target_name = true;
	} else if (strcmp(kv->key, "SessionType") == 0) {
		if (strcmp(kv->value, "Discovery") == 0)
			neg->discovery = true;
		else if (strcmp(kv->value, "Normal") == 0)
			neg->discovery = false;
		else
			return ISCSI_LOGIN_INITIATOR_ERROR;
	} else if (strcmp(kv->key, "AuthMethod") == 0) {
		/* We authenticate nobody: None must be among the offered methods. */
		const char *p = kv->value;
		bool none = false;

		while (*p) {
			size_t n = strcspn(p, ",");

			if (n == 4 && strncmp(p, "None", 4) == 0)
				none = true;
			p += n;
			if (*p == ',')
				p++;
		}
		iscsi_keys_add(out, "AuthMethod", none ? "None" : "Reject");
		if (!none)
			return ISCSI_LOGIN_AUTH_FAILED;
	}
	return ISCSI_LOGIN_OK;
}

int iscsi_negotiate(struct iscsi_negotiation *neg, const struct iscsi_kv *kv, int n,
		    struct strbuf *out)
{
	char num[24];

	for (int i = 0; i < n; i++) {
		const struct key_rule *r = key_rule_find(kv[i].key);
		const char *v = kv[i].value;
		uint64_t offer;
		int b, status;

		if (!r) {
			iscsi_keys_add(out, kv[i].key, "NotUnderstood");
			continue;
		}
		if (r->kind == KEY_NAME) {
			status = key_name(neg, &kv[i], out);
			if (status != ISCSI_LOGIN_OK)
				return status;
			continue;
		}
		/* Operational keys belong to the operational stage (RFC 7143 §6.3), but
		 * answering them in the security stage too costs nothing and keeps
		 * initiators that send them early working. */
		switch (r->kind) {
		case KEY_DIGEST: {
			const char *pick = key_pick_digest(v);

			iscsi_keys_add(out, r->name, pick ? pick : "Reject");
			if (pick)
				key_apply(&neg->params, r->name, strcmp(pick, "CRC32C") == 0);
			break;
		}
		case KEY_BOOL_OR:
		case KEY_BOOL_AND:
			b = key_parse_bool(v);
			if (b < 0) {
				iscsi_keys_add(out, r->name, "Reject");
				break;
			}
			b = r->kind == KEY_BOOL_OR ? (b || r->ours) : (b && r->ours);
			iscsi_keys_add(out, r->name, b ? "Yes" : "No");
			key_apply(&neg->params, r->name, (uint64_t)b);
			break;
		case KEY_NUM_MIN:
		case KEY_NUM_MAX:
			if (parse_u64(v, r->min, r->max, &offer) < 0) {
				iscsi_keys_add(out, r->name, "Reject");
				break;
			}
			if (r->kind == KEY_NUM_MIN ? r->ours < offer : r->ours > offer)
				offer = r->ours;
			snprintf(num, sizeof num, "%llu", (unsigned long long)offer);
			iscsi_keys_add(out, r->name, num);
			key_apply(&neg->params, r->name, offer);
			break;
		case KEY_DECLARE:
			if (parse_u64(v, r->min, r->max, &offer) < 0) {
				iscsi_keys_add(out, r->name, "Reject");
				break;
			}
			key_apply(&neg->params, r->name, offer);
			neg->mrdsl_declared = true;
			snprintf(num, sizeof num, "%llu", (unsigned long long)r->ours);
			iscsi_keys_add(out, r->name, num);
			break;
		case KEY_IRRELEVANT:
			iscsi_keys_add(out, r->name,
				       strstr(r->name, "MarkInt") ? "Irrelevant" : "No");
			break;
		case KEY_NAME:
			break;
		}
	}
	/* FirstBurstLength may not exceed MaxBurstLength (RFC 7143 §13.14). */
	if (neg->params.first_burst > neg->params.max_burst)
		neg->params.first_burst = neg->params.max_burst;
	return ISCSI_LOGIN_OK;
}
