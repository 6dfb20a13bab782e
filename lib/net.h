/* Number and address parsing with explicit ranges, and socket helpers. */
#ifndef VIRTMAN_NET_H
#define VIRTMAN_NET_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define ADDR_STRLEN 64	/* "[ffff:...:ffff]:65535" fits */

/* Parses a decimal number in [min, max]; 0 or -EINVAL / -ERANGE. */
int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out);

/* Parses "IPv4:PORT", "[IPv6]:PORT" or ":PORT" (any address); 0 or -EINVAL. */
int parse_hostport(const char *s, struct sockaddr_storage *ss, socklen_t *len);

/* The value of one hex digit (either case), or -1. */
int hex_value(char ch);

/* Parses a MAC address "aa:bb:cc:dd:ee:ff" (either case, ':' or '-'); 0 or -EINVAL. */
int mac_parse(const char *s, uint8_t mac[6]);

/* Formats a MAC address as "aa:bb:cc:dd:ee:ff" (lower case). */
void mac_format(const uint8_t mac[6], char out[18]);

/* Formats an address as "1.2.3.4:5" or "[::1]:5". */
void sockaddr_format(const struct sockaddr *sa, char *buf, size_t len);

/* Opens a non-blocking listening TCP socket; fd or negative errno. */
int net_listen_tcp(const struct sockaddr_storage *ss, socklen_t len);

/* Makes fd non-blocking and close-on-exec; 0 or negative errno. */
int net_set_nonblock(int fd);

#endif
