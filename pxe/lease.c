/* The DHCP address pool: one slot per address, who holds it and until when, and its text
 * form in the state directory. Pure: time comes in as an argument. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/net.h"
#include "pxe/lease.h"

static const char *const lease_state_names[] = {
	[LEASE_FREE] = "free",
	[LEASE_OFFERED] = "free",	/* an offer does not survive a restart; its client does */
	[LEASE_BOUND] = "bound",
	[LEASE_DECLINED] = "declined",
	[LEASE_RESERVED] = "reserved",
};

int lease_table_init(struct lease_table *t, struct in_addr first, struct in_addr last)
{
	uint32_t a = ntohl(first.s_addr), b = ntohl(last.s_addr);

	if (b < a || b - a >= LEASE_POOL_MAX)
		return -EINVAL;
	t->first = a;
	t->count = b - a + 1;
	t->slot = calloc(t->count, sizeof *t->slot);
	return t->slot ? 0 : -ENOMEM;
}

void lease_table_free(struct lease_table *t)
{
	free(t->slot);
	t->slot = NULL;
	t->count = 0;
}

int lease_index(const struct lease_table *t, struct in_addr addr)
{
	uint32_t a = ntohl(addr.s_addr);

	if (a < t->first || a - t->first >= t->count)
		return -1;
	return (int)(a - t->first);
}

struct in_addr lease_addr(const struct lease_table *t, int i)
{
	struct in_addr addr = { .s_addr = htonl(t->first + (uint32_t)i) };

	return addr;
}

void lease_reserve(struct lease_table *t, struct in_addr addr)
{
	int i = lease_index(t, addr);

	if (i >= 0)
		t->slot[i] = (struct lease){ .state = LEASE_RESERVED };
}

int lease_find_mac(const struct lease_table *t, const uint8_t mac[6])
{
	for (uint32_t i = 0; i < t->count; i++)
		if (t->slot[i].has_mac && memcmp(t->slot[i].mac, mac, 6) == 0)
			return (int)i;
	return -1;
}

int lease_usable(const struct lease_table *t, int i, const uint8_t mac[6], int64_t now)
{
	const struct lease *l = &t->slot[i];

	switch ((enum lease_state)l->state) {
	case LEASE_RESERVED:
		return 0;
	case LEASE_DECLINED:
		return l->expires <= now;
	case LEASE_FREE:
		return 1;
	case LEASE_OFFERED:
	case LEASE_BOUND:
		return (l->has_mac && memcmp(l->mac, mac, 6) == 0) || l->expires <= now;
	}
	return 0;
}

int lease_pick(const struct lease_table *t, const uint8_t mac[6], const struct in_addr *requested,
	       int64_t now)
{
	int i = lease_find_mac(t, mac), oldest = -1;

	if (i >= 0 && lease_usable(t, i, mac, now))
		return i;
	if (requested && (i = lease_index(t, *requested)) >= 0 && lease_usable(t, i, mac, now) &&
	    !(t->slot[i].has_mac && t->slot[i].state == LEASE_FREE))
		return i;
	for (uint32_t j = 0; j < t->count; j++) {
		const struct lease *l = &t->slot[j];

		if (l->state == LEASE_FREE && !l->has_mac)
			return (int)j;
		if (lease_usable(t, (int)j, mac, now) &&
		    (oldest < 0 || l->expires < t->slot[oldest].expires))
			oldest = (int)j;
	}
	return oldest;
}

void lease_offer(struct lease_table *t, int i, const uint8_t mac[6], int64_t now)
{
	struct lease *l = &t->slot[i];

	if (l->state == LEASE_BOUND && l->has_mac && memcmp(l->mac, mac, 6) == 0 &&
	    l->expires > now)
		return;
	for (uint32_t j = 0; j < t->count; j++)
		if ((int)j != i && t->slot[j].has_mac && memcmp(t->slot[j].mac, mac, 6) == 0)
			t->slot[j].has_mac = 0;
	memcpy(l->mac, mac, 6);
	l->has_mac = 1;
	l->state = LEASE_OFFERED;
	l->expires = now + LEASE_OFFER_HOLD;
}

void lease_bind(struct lease_table *t, int i, const uint8_t mac[6], int64_t now, uint32_t secs)
{
	struct lease *l = &t->slot[i];

	for (uint32_t j = 0; j < t->count; j++)
		if ((int)j != i && t->slot[j].has_mac && memcmp(t->slot[j].mac, mac, 6) == 0) {
			t->slot[j].has_mac = 0;
			if (t->slot[j].state != LEASE_DECLINED)
				t->slot[j].state = LEASE_FREE;
		}
	memcpy(l->mac, mac, 6);
	l->has_mac = 1;
	l->state = LEASE_BOUND;
	l->expires = now + (int64_t)secs;
}

void lease_release(struct lease_table *t, int i, int64_t now)
{
	t->slot[i].state = LEASE_FREE;
	t->slot[i].expires = now;
}

void lease_decline(struct lease_table *t, int i, int64_t now)
{
	t->slot[i] = (struct lease){ .state = LEASE_DECLINED, .expires = now + LEASE_DECLINE_HOLD };
}

void lease_format(const struct lease_table *t, struct strbuf *out)
{
	char mac[18], addr[INET_ADDRSTRLEN];

	sb_printf(out, "# virtman DHCP leases: MAC ADDRESS EXPIRES(unix seconds) STATE\n");
	for (uint32_t i = 0; i < t->count; i++) {
		const struct lease *l = &t->slot[i];
		struct in_addr a = lease_addr(t, (int)i);

		if (l->state == LEASE_RESERVED || (!l->has_mac && l->state != LEASE_DECLINED))
			continue;
		if (l->has_mac)
			mac_format(l->mac, mac);
		else
			snprintf(mac, sizeof mac, "-");
		inet_ntop(AF_INET, &a, addr, sizeof addr);
		sb_printf(out, "%s %s %lld %s\n", mac, addr, (long long)l->expires,
			  lease_state_names[l->state]);
	}
}

int lease_parse_line(struct lease_table *t, const char *line)
{
	char mac_s[LEASE_LINE_MAX], addr_s[LEASE_LINE_MAX], state_s[LEASE_LINE_MAX], extra;
	long long expires;
	struct lease l = { 0 };
	struct in_addr addr;
	int i;

	while (*line == ' ' || *line == '\t')
		line++;
	if (*line == '\0' || *line == '\n' || *line == '#')
		return 1;
	if (strlen(line) >= LEASE_LINE_MAX)
		return -EINVAL;
	if (sscanf(line, "%127s %127s %lld %127s %c", mac_s, addr_s, &expires, state_s,
		   &extra) != 4)
		return -EINVAL;
	if (inet_pton(AF_INET, addr_s, &addr) != 1 || (i = lease_index(t, addr)) < 0 ||
	    t->slot[i].state == LEASE_RESERVED)
		return -EINVAL;
	if (strcmp(mac_s, "-") != 0) {
		if (mac_parse(mac_s, l.mac) < 0)
			return -EINVAL;
		l.has_mac = 1;
	}
	if (strcmp(state_s, "bound") == 0 && l.has_mac)
		l.state = LEASE_BOUND;
	else if (strcmp(state_s, "free") == 0 && l.has_mac)
		l.state = LEASE_FREE;
	else if (strcmp(state_s, "declined") == 0 && !l.has_mac)
		l.state = LEASE_DECLINED;
	else
		return -EINVAL;
	l.expires = expires;
	/* A MAC listed twice keeps its later line, like a rebinding would. */
	if (l.has_mac && lease_find_mac(t, l.mac) >= 0)
		t->slot[lease_find_mac(t, l.mac)].has_mac = 0;
	t->slot[i] = l;
	return 0;
}
