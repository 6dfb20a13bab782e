/* CRC32C (Castagnoli), the iSCSI header and data digest (RFC 7143 §13.1). */
#ifndef VIRTMAN_CRC32C_H
#define VIRTMAN_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Continues a CRC32C over len bytes; start with crc = 0. Returns the final value. */
uint32_t crc32c(uint32_t crc, const void *buf, size_t len);

#endif
