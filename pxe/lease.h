/* The DHCP address pool: one slot per address, who holds it and until when, and its text
 * form in the state directory. Pure: time comes in as an argument. */
#ifndef VIRTMAN_PXE_LEASE_H
#define VIRTMAN_PXE_LEASE_H

#include <netinet/in.h>
#include <stdint.h>

#include "lib/strbuf.h"

#define LEASE_POOL_MAX 65536	/* addresses in one pool */
#define LEASE_OFFER_HOLD 60	/* seconds an offered address waits for its REQUEST */
#define LEASE_DECLINE_HOLD 600	/* seconds a declined (in use elsewhere) address rests */
#define LEASE_LINE_MAX 128	/* one line of the lease file */

enum lease_state {
	LEASE_FREE,		/* may still remember its last client, who gets it back first */
	LEASE_OFFERED,
	LEASE_BOUND,
	LEASE_DECLINED,		/* a client found it in use: nobody gets it until expires */
	LEASE_RESERVED,		/* our own, the router's or a DNS server's address */
};

struct lease {
	uint8_t mac[6];
	uint8_t has_mac;
	uint8_t state;		/* enum lease_state */
	int64_t expires;	/* Unix seconds: end of the offer, binding or quarantine */
};

struct lease_table {
	uint32_t first;		/* host byte order */
	uint32_t count;
	struct lease *slot;	/* slot[i] is address first + i */
};

/* Allocates a pool of every address from first to last; 0, -EINVAL or -ENOMEM. */
int lease_table_init(struct lease_table *t, struct in_addr first, struct in_addr last);

void lease_table_free(struct lease_table *t);

/* The slot of addr, or -1 when it is outside the pool. */
int lease_index(const struct lease_table *t, struct in_addr addr);

struct in_addr lease_addr(const struct lease_table *t, int i);

/* Takes addr out of the pool for good (no-op outside the pool). */
void lease_reserve(struct lease_table *t, struct in_addr addr);

/* The slot remembered for mac, or -1. */
int lease_find_mac(const struct lease_table *t, const uint8_t mac[6]);

/* Whether slot i may be given to mac at now. */
int lease_usable(const struct lease_table *t, int i, const uint8_t mac[6], int64_t now);

/* Chooses an address for mac: its own, else the one requested, else a never-used one, else
 * the one expired longest ago. A slot, or -1 when the pool is exhausted. */
int lease_pick(const struct lease_table *t, const uint8_t mac[6], const struct in_addr *requested,
	       int64_t now);

/* Holds slot i for mac while its REQUEST comes (a current binding of mac stays as it is). */
void lease_offer(struct lease_table *t, int i, const uint8_t mac[6], int64_t now);

/* Binds slot i to mac for secs; mac's other slots are forgotten. */
void lease_bind(struct lease_table *t, int i, const uint8_t mac[6], int64_t now, uint32_t secs);

/* Frees slot i, remembering its client. */
void lease_release(struct lease_table *t, int i, int64_t now);

/* Quarantines slot i for LEASE_DECLINE_HOLD seconds. */
void lease_decline(struct lease_table *t, int i, int64_t now);

/* Writes the table as text lines "MAC ADDRESS EXPIRES STATE" (bound, free, declined). */
void lease_format(const struct lease_table *t, struct strbuf *out);

/* Reads one line of that text into the table; 0, 1 for a comment or blank line, -EINVAL for
 * a malformed line or an address outside the pool. */
int lease_parse_line(struct lease_table *t, const char *line);

#endif
