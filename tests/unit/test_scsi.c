/* Table-driven tests of the SCSI emulation (iscsi/scsi.c): dispatch, pages, sense, limits. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "iscsi/scsi.h"

#define BS 512u
#define SMALL_BLOCKS 1000u
#define BIG_BLOCKS 0x100000010ull	/* more than 2^32 blocks */
#define MAX_XFER_BLOCKS 65536u		/* 32 MiB of 512-byte blocks */

static const struct scsi_disk small_disk = {
	.nblocks = SMALL_BLOCKS,
	.block_size = BS,
	.naa = 0x6001405deadbeef1ull,
	.serial = "VM-SERIAL-0001",
	.product = "virtman disk",
};

static const struct scsi_disk big_disk = {
	.nblocks = BIG_BLOCKS,
	.block_size = BS,
	.naa = 0x5001405deadbeef2ull,
	.serial = "BIG",
	.product = "tab\there\x7f" "z",	/* not printable: sent as spaces */
};

/* Degenerate geometries that only a bug elsewhere could produce; the checks must hold. */
static const struct scsi_disk byte_disk = { .nblocks = UINT64_MAX, .block_size = 1 };
static const struct scsi_disk huge_disk = { .nblocks = 1ull << 62, .block_size = BS };

static const struct scsi_disk *const disks[] = { &small_disk, &big_disk, &byte_disk, &huge_disk };

enum expect { GOOD, READ, COMPARE, CHECK };

/* One CDB and what scsi_execute must answer. */
struct exec_case {
	const char *name;
	int disk;			/* index in disks[] */
	uint64_t lun;
	uint8_t cdb[16];
	uint8_t cdb_len;
	enum expect expect;
	uint8_t key, asc;		/* for CHECK */
	uint32_t data_len;		/* GOOD: bytes of Data-In; READ/COMPARE: bytes */
	uint64_t offset;		/* READ/COMPARE: image offset */
};

#define LBA32(x) (uint8_t)((x) >> 24), (uint8_t)((x) >> 16), (uint8_t)((x) >> 8), (uint8_t)(x)
#define LEN16(x) (uint8_t)((x) >> 8), (uint8_t)(x)
#define LBA64(x) LBA32((uint64_t)(x) >> 32), LBA32((uint64_t)(x) & 0xffffffffu)
#define IR SENSE_ILLEGAL_REQUEST

static const struct exec_case exec_cases[] = {
	{ "tur", 0, 0, { 0x00 }, 6, GOOD, 0, 0, 0, 0 },
	{ "tur naca", 0, 0, { 0x00, 0, 0, 0, 0, 0x04 }, 6, CHECK, IR, 0x24, 0, 0 },
	{ "tur lun1", 0, 1, { 0x00 }, 6, CHECK, IR, 0x25, 0, 0 },
	{ "unknown opcode", 0, 0, { 0xc0 }, 16, CHECK, IR, 0x20, 0, 0 },
	{ "mode select6 unsupported", 0, 0, { 0x15 }, 6, CHECK, IR, 0x20, 0, 0 },
	{ "unknown opcode lun1", 0, 7, { 0xc0 }, 16, CHECK, IR, 0x25, 0, 0 },
	{ "empty cdb", 0, 0, { 0 }, 0, CHECK, IR, 0x24, 0, 0 },
	{ "short read10", 0, 0, { 0x28, 0, LBA32(0), 0, LEN16(1) }, 9, CHECK, IR, 0x24, 0, 0 },
	{ "short read16", 0, 0, { 0x88 }, 10, CHECK, IR, 0x24, 0, 0 },
	{ "short inquiry", 0, 0, { 0x12, 0, 0, 0, 96 }, 5, CHECK, IR, 0x24, 0, 0 },
	{ "short sai16", 0, 0, { 0x9e, 0x10 }, 15, CHECK, IR, 0x24, 0, 0 },

	/* READ(6/10/12/16) */
	{ "read6", 0, 0, { 0x08, 0, 0, 10, 4 }, 6, READ, 0, 0, 4 * BS, 10 * BS },
	{ "read6 0 means 256", 0, 0, { 0x08, 0, 0, 0, 0 }, 6, READ, 0, 0, 256 * BS, 0 },
	{ "read6 last", 0, 0, { 0x08, 0, 0x03, 0xe7, 1 }, 6, READ, 0, 0, BS, 999 * BS },
	{ "read6 eol", 0, 0, { 0x08, 0, 0x03, 0xe7, 2 }, 6, CHECK, IR, 0x21, 0, 0 },
	{ "read6 max lba", 0, 0, { 0x08, 0x1f, 0xff, 0xff, 1 }, 6, CHECK, IR, 0x21, 0, 0 },
	{ "read10", 0, 0, { 0x28, 0, LBA32(10), 0, LEN16(8) }, 10, READ, 0, 0, 8 * BS, 10 * BS },
	{ "read10 dpo fua", 0, 0, { 0x28, 0x18, LBA32(0), 0, LEN16(1) }, 10, READ, 0, 0, BS, 0 },
	{ "read10 0 blocks", 0, 0, { 0x28, 0, LBA32(0), 0, LEN16(0) }, 10, GOOD, 0, 0, 0, 0 },
	{ "read10 0 blocks at end", 0, 0, { 0x28, 0, LBA32(1000), 0, LEN16(0) }, 10, GOOD, 0, 0, 0,
	  0 },
	{ "read10 0 blocks past end", 0, 0, { 0x28, 0, LBA32(1001), 0, LEN16(0) }, 10, CHECK, IR,
	  0x21, 0, 0 },
	{ "read10 last block", 0, 0, { 0x28, 0, LBA32(999), 0, LEN16(1) }, 10, READ, 0, 0, BS,
	  999 * BS },
	{ "read10 eol", 0, 0, { 0x28, 0, LBA32(999), 0, LEN16(2) }, 10, CHECK, IR, 0x21, 0, 0 },
	{ "read10 lba -1", 0, 0, { 0x28, 0, LBA32(0xffffffffu), 0, LEN16(1) }, 10, CHECK, IR, 0x21,
	  0, 0 },
	{ "read10 lba 2^31", 0, 0, { 0x28, 0, LBA32(0x80000000u), 0, LEN16(256) }, 10, CHECK, IR,
	  0x21, 0, 0 },
	{ "read10 rdprotect", 0, 0, { 0x28, 0x20, LBA32(0), 0, LEN16(1) }, 10, CHECK, IR, 0x24, 0,
	  0 },
	{ "read10 lun1", 0, 1, { 0x28, 0, LBA32(0), 0, LEN16(1) }, 10, CHECK, IR, 0x25, 0, 0 },
	{ "read12", 0, 0, { 0xa8, 0, LBA32(5), LBA32(3) }, 12, READ, 0, 0, 3 * BS, 5 * BS },
	{ "read12 eol", 0, 0, { 0xa8, 0, LBA32(998), LBA32(3) }, 12, CHECK, IR, 0x21, 0, 0 },
	{ "read12 rdprotect", 0, 0, { 0xa8, 0xe0, LBA32(0), LBA32(1) }, 12, CHECK, IR, 0x24, 0, 0 },
	{ "read12 0 blocks", 0, 0, { 0xa8, 0, LBA32(0), LBA32(0) }, 12, GOOD, 0, 0, 0, 0 },
	{ "read16", 0, 0, { 0x88, 0, LBA64(7), LBA32(2) }, 16, READ, 0, 0, 2 * BS, 7 * BS },
	{ "read16 0 blocks", 0, 0, { 0x88, 0, LBA64(0), LBA32(0) }, 16, GOOD, 0, 0, 0, 0 },
	{ "read16 lba max n 2", 0, 0, { 0x88, 0, LBA64(UINT64_MAX), LBA32(2) }, 16, CHECK, IR, 0x21,
	  0, 0 },
	{ "read16 lba max-1 n max", 0, 0, { 0x88, 0, LBA64(UINT64_MAX - 1), LBA32(0xffffffffu) },
	  16, CHECK, IR, 0x21, 0, 0 },
	{ "read16 lba 2^63", 0, 0, { 0x88, 0, LBA64(1ull << 63), LBA32(1) }, 16, CHECK, IR, 0x21, 0,
	  0 },
	{ "read16 rdprotect", 0, 0, { 0x88, 0x40, LBA64(0), LBA32(1) }, 16, CHECK, IR, 0x24, 0, 0 },
	{ "read16 big lba", 1, 0, { 0x88, 0, LBA64(BIG_BLOCKS - 1), LBA32(1) }, 16, READ, 0, 0, BS,
	  (BIG_BLOCKS - 1) * BS },
	{ "read16 max transfer", 1, 0, { 0x88, 0, LBA64(0), LBA32(MAX_XFER_BLOCKS) }, 16, READ, 0,
	  0, MAX_XFER_BLOCKS * BS, 0 },
	{ "read16 over max transfer", 1, 0, { 0x88, 0, LBA64(0), LBA32(MAX_XFER_BLOCKS + 1) }, 16,
	  CHECK, IR, 0x24, 0, 0 },
	{ "read16 2^32-1 blocks", 1, 0, { 0x88, 0, LBA64(0), LBA32(0xffffffffu) }, 16, CHECK, IR,
	  0x24, 0, 0 },
	{ "read16 lba+n wraps", 2, 0, { 0x88, 0, LBA64(UINT64_MAX), LBA32(2) }, 16, CHECK, IR,
	  0x21, 0, 0 },
	{ "read16 byte disk", 2, 0, { 0x88, 0, LBA64(UINT64_MAX - 2), LBA32(2) }, 16, READ, 0, 0,
	  2, UINT64_MAX - 2 },
	{ "read16 offset overflows", 3, 0, { 0x88, 0, LBA64(1ull << 61), LBA32(1) }, 16, CHECK, IR,
	  0x21, 0, 0 },
	{ "read12 over max transfer", 1, 0, { 0xa8, 0, LBA32(0), LBA32(MAX_XFER_BLOCKS + 1) }, 12,
	  CHECK, IR, 0x24, 0, 0 },

	/* VERIFY(10/12/16) */
	{ "verify10 bytchk0", 0, 0, { 0x2f, 0x00, LBA32(0), 0, LEN16(8) }, 10, GOOD, 0, 0, 0, 0 },
	{ "verify10 bytchk1", 0, 0, { 0x2f, 0x02, LBA32(4), 0, LEN16(3) }, 10, COMPARE, 0, 0, 3 * BS,
	  4 * BS },
	{ "verify10 dpo bytchk1", 0, 0, { 0x2f, 0x12, LBA32(4), 0, LEN16(1) }, 10, COMPARE, 0, 0, BS,
	  4 * BS },
	{ "verify10 bytchk1 0 blocks", 0, 0, { 0x2f, 0x02, LBA32(0), 0, LEN16(0) }, 10, GOOD, 0, 0,
	  0, 0 },
	{ "verify10 bytchk 10b", 0, 0, { 0x2f, 0x04, LBA32(0), 0, LEN16(1) }, 10, CHECK, IR, 0x24, 0,
	  0 },
	{ "verify10 bytchk 11b", 0, 0, { 0x2f, 0x06, LBA32(0), 0, LEN16(1) }, 10, CHECK, IR, 0x24, 0,
	  0 },
	{ "verify10 vrprotect", 0, 0, { 0x2f, 0x22, LBA32(0), 0, LEN16(1) }, 10, CHECK, IR, 0x24, 0,
	  0 },
	{ "verify10 eol", 0, 0, { 0x2f, 0x02, LBA32(1000), 0, LEN16(1) }, 10, CHECK, IR, 0x21, 0, 0 },
	{ "verify10 eol bytchk0", 0, 0, { 0x2f, 0, LBA32(999), 0, LEN16(2) }, 10, CHECK, IR, 0x21, 0,
	  0 },
	{ "verify10 0 blocks past end", 0, 0, { 0x2f, 0x02, LBA32(1001), 0, LEN16(0) }, 10, CHECK,
	  IR, 0x21, 0, 0 },
	{ "verify12 bytchk1", 0, 0, { 0xaf, 0x02, LBA32(1), LBA32(2) }, 12, COMPARE, 0, 0, 2 * BS,
	  BS },
	{ "verify12 eol", 0, 0, { 0xaf, 0x02, LBA32(999), LBA32(2) }, 12, CHECK, IR, 0x21, 0, 0 },
	{ "verify12 vrprotect", 0, 0, { 0xaf, 0xe2, LBA32(0), LBA32(1) }, 12, CHECK, IR, 0x24, 0, 0 },
	{ "verify16 bytchk1", 0, 0, { 0x8f, 0x02, LBA64(999), LBA32(1) }, 16, COMPARE, 0, 0, BS,
	  999 * BS },
	{ "verify16 bytchk0", 0, 0, { 0x8f, 0x00, LBA64(0), LBA32(1000) }, 16, GOOD, 0, 0, 0, 0 },
	{ "verify16 lba max", 0, 0, { 0x8f, 0x02, LBA64(UINT64_MAX), LBA32(2) }, 16, CHECK, IR, 0x21,
	  0, 0 },
	{ "verify16 over max transfer", 1, 0, { 0x8f, 0x02, LBA64(0), LBA32(MAX_XFER_BLOCKS + 1) },
	  16, CHECK, IR, 0x24, 0, 0 },
	{ "verify16 no-compare huge", 1, 0, { 0x8f, 0x00, LBA64(0), LBA32(0xffffffffu) }, 16, GOOD,
	  0, 0, 0, 0 },

	/* every medium-modifying command is refused, whatever its fields */
	{ "format unit", 0, 0, { 0x04 }, 6, CHECK, SENSE_DATA_PROTECT, 0x27, 0, 0 },
	{ "reassign blocks", 0, 0, { 0x07 }, 6, CHECK, SENSE_DATA_PROTECT, 0x27, 0, 0 },
	{ "write6", 0, 0, { 0x0a, 0, 0, 0, 1 }, 6, CHECK, SENSE_DATA_PROTECT, 0x27, 0, 0 },
	{ "write10", 0, 0, { 0x2a, 0, LBA32(0), 0, LEN16(1) }, 10, CHECK, SENSE_DATA_PROTECT, 0x27,
	  0, 0 },
	{ "write10 beyond eol", 0, 0, { 0x2a, 0, LBA32(5000), 0, LEN16(1) }, 10, CHECK,
	  SENSE_DATA_PROTECT, 0x27, 0, 0 },
	{ "write and verify10", 0, 0, { 0x2e, 0x02, LBA32(0), 0, LEN16(1) }, 10, CHECK,
	  SENSE_DATA_PROTECT, 0x27, 0, 0 },
	{ "write long10", 0, 0, { 0x3f }, 10, CHECK, SENSE_DATA_PROTECT, 0x27, 0, 0 },
	{ "write same10", 0, 0, { 0x41, 0, LBA32(0), 0, LEN16(1) }, 10, CHECK, SENSE_DATA_PROTECT,
	  0x27, 0, 0 },
	{ "write same10 unmap", 0, 0, { 0x41, 0x08, LBA32(0), 0, LEN16(1) }, 10, CHECK,
	  SENSE_DATA_PROTECT, 0x27, 0, 0 },
	{ "unmap", 0, 0, { 0x42, 0, 0, 0, 0, 0, 0, LEN16(24) }, 10, CHECK, SENSE_DATA_PROTECT, 0x27,
	  0, 0 },
	{ "xdwrite10", 0, 0, { 0x50 }, 10, CHECK, SENSE_DATA_PROTECT, 0x27, 0, 0 },
	{ "xpwrite10", 0, 0, { 0x51 }, 10, CHECK, SENSE_DATA_PROTECT, 0x27, 0, 0 },
	{ "xdwriteread10", 0, 0, { 0x53 }, 10, CHECK, SENSE_DATA_PROTECT, 0x27, 0, 0 },
	{ "compare and write", 0, 0, { 0x89, 0, LBA64(0), 0, 0, 0, 1 }, 16, CHECK,
	  SENSE_DATA_PROTECT, 0x27, 0, 0 },
	{ "write16", 0, 0, { 0x8a, 0, LBA64(0), LBA32(1) }, 16, CHECK, SENSE_DATA_PROTECT, 0x27, 0,
	  0 },
	{ "orwrite16", 0, 0, { 0x8b, 0, LBA64(0), LBA32(1) }, 16, CHECK, SENSE_DATA_PROTECT, 0x27,
	  0, 0 },
	{ "write and verify16", 0, 0, { 0x8e, 0, LBA64(0), LBA32(1) }, 16, CHECK,
	  SENSE_DATA_PROTECT, 0x27, 0, 0 },
	{ "write same16", 0, 0, { 0x93, 0, LBA64(0), LBA32(1) }, 16, CHECK, SENSE_DATA_PROTECT,
	  0x27, 0, 0 },
	{ "write atomic16", 0, 0, { 0x9c, 0, LBA64(0), 0, 0, LEN16(1) }, 16, CHECK,
	  SENSE_DATA_PROTECT, 0x27, 0, 0 },
	{ "write long16", 0, 0, { 0x9f, 0x11 }, 16, CHECK, SENSE_DATA_PROTECT, 0x27, 0, 0 },
	{ "sa out16 unknown sa", 0, 0, { 0x9f, 0x12 }, 16, CHECK, IR, 0x24, 0, 0 },
	{ "write12", 0, 0, { 0xaa, 0, LBA32(0), LBA32(1) }, 12, CHECK, SENSE_DATA_PROTECT, 0x27, 0,
	  0 },
	{ "write and verify12", 0, 0, { 0xae, 0, LBA32(0), LBA32(1) }, 12, CHECK,
	  SENSE_DATA_PROTECT, 0x27, 0, 0 },
	{ "write10 lun1", 0, 1, { 0x2a, 0, LBA32(0), 0, LEN16(1) }, 10, CHECK, IR, 0x25, 0, 0 },

	/* cache, power, medium removal */
	{ "sync cache10", 0, 0, { 0x35, 0, LBA32(0), 0, LEN16(0) }, 10, GOOD, 0, 0, 0, 0 },
	{ "sync cache10 eol", 0, 0, { 0x35, 0, LBA32(999), 0, LEN16(2) }, 10, CHECK, IR, 0x21, 0,
	  0 },
	{ "sync cache16", 0, 0, { 0x91, 0, LBA64(10), LBA32(10) }, 16, GOOD, 0, 0, 0, 0 },
	{ "sync cache16 lba max", 0, 0, { 0x91, 0, LBA64(UINT64_MAX), LBA32(1) }, 16, CHECK, IR,
	  0x21, 0, 0 },
	{ "prefetch10", 0, 0, { 0x34, 0, LBA32(0), 0, LEN16(10) }, 10, GOOD, 0, 0, 0, 0 },
	{ "prefetch16 eol", 0, 0, { 0x90, 0, LBA64(1000), LBA32(1) }, 16, CHECK, IR, 0x21, 0, 0 },
	{ "start stop unit", 0, 0, { 0x1b, 0, 0, 0, 0x01 }, 6, GOOD, 0, 0, 0, 0 },
	{ "prevent allow", 0, 0, { 0x1e, 0, 0, 0, 0x01 }, 6, GOOD, 0, 0, 0, 0 },

	/* READ CAPACITY */
	{ "read capacity10", 0, 0, { 0x25 }, 10, GOOD, 0, 0, 8, 0 },
	{ "read capacity10 lba without pmi", 0, 0, { 0x25, 0, LBA32(1) }, 10, CHECK, IR, 0x24, 0, 0 },
	{ "read capacity10 pmi", 0, 0, { 0x25, 0, LBA32(1), 0, 0, 1 }, 10, GOOD, 0, 0, 8, 0 },
	{ "read capacity16", 0, 0, { 0x9e, 0x10, LBA64(0), LBA32(32) }, 16, GOOD, 0, 0, 32, 0 },
	{ "read capacity16 alloc 96", 0, 0, { 0x9e, 0x10, LBA64(0), LBA32(96) }, 16, GOOD, 0, 0, 32,
	  0 },
	{ "read capacity16 alloc 12", 0, 0, { 0x9e, 0x10, LBA64(0), LBA32(12) }, 16, GOOD, 0, 0, 12,
	  0 },
	{ "read capacity16 alloc 0", 0, 0, { 0x9e, 0x10, LBA64(0), LBA32(0) }, 16, GOOD, 0, 0, 0, 0 },
	{ "sa in16 unknown sa", 0, 0, { 0x9e, 0x12, LBA64(0), LBA32(32) }, 16, CHECK, IR, 0x24, 0,
	  0 },

	/* INQUIRY */
	{ "inquiry 36", 0, 0, { 0x12, 0, 0, 0, 36 }, 6, GOOD, 0, 0, 36, 0 },
	{ "inquiry 255", 0, 0, { 0x12, 0, 0, 0, 255 }, 6, GOOD, 0, 0, 96, 0 },
	{ "inquiry 260", 0, 0, { 0x12, 0, 0, LEN16(260) }, 6, GOOD, 0, 0, 96, 0 },
	{ "inquiry 5", 0, 0, { 0x12, 0, 0, 0, 5 }, 6, GOOD, 0, 0, 5, 0 },
	{ "inquiry 0", 0, 0, { 0x12, 0, 0, 0, 0 }, 6, GOOD, 0, 0, 0, 0 },
	{ "inquiry lun1", 0, 1, { 0x12, 0, 0, 0, 255 }, 6, GOOD, 0, 0, 96, 0 },
	{ "inquiry page without evpd", 0, 0, { 0x12, 0, 1, 1, 0 }, 6, CHECK, IR, 0x24, 0, 0 },
	{ "inquiry cmddt", 0, 0, { 0x12, 0x02, 0, 0, 255 }, 6, CHECK, IR, 0x24, 0, 0 },
	{ "inquiry vpd 00", 0, 0, { 0x12, 1, 0x00, 0, 255 }, 6, GOOD, 0, 0, 10, 0 },
	{ "inquiry vpd 80", 0, 0, { 0x12, 1, 0x80, 0, 255 }, 6, GOOD, 0, 0, 4 + 14, 0 },
	{ "inquiry vpd 83", 0, 0, { 0x12, 1, 0x83, 0, 255 }, 6, GOOD, 0, 0, 4 + 20 + 12 + 14, 0 },
	{ "inquiry vpd b0", 0, 0, { 0x12, 1, 0xb0, 0, 255 }, 6, GOOD, 0, 0, 64, 0 },
	{ "inquiry vpd b1", 0, 0, { 0x12, 1, 0xb1, 0, 255 }, 6, GOOD, 0, 0, 64, 0 },
	{ "inquiry vpd b2", 0, 0, { 0x12, 1, 0xb2, 0, 255 }, 6, GOOD, 0, 0, 8, 0 },
	{ "inquiry vpd b0 alloc 16", 0, 0, { 0x12, 1, 0xb0, 0, 16 }, 6, GOOD, 0, 0, 16, 0 },
	{ "inquiry vpd 81", 0, 0, { 0x12, 1, 0x81, 0, 255 }, 6, CHECK, IR, 0x24, 0, 0 },
	{ "inquiry vpd lun1", 0, 1, { 0x12, 1, 0x00, 0, 255 }, 6, CHECK, IR, 0x25, 0, 0 },

	/* MODE SENSE: 4/8 header + 8/16 block descriptor + caching 20 + control 12 */
	{ "mode sense6 all", 0, 0, { 0x1a, 0, 0x3f, 0, 255 }, 6, GOOD, 0, 0, 44, 0 },
	{ "mode sense6 all subpages", 0, 0, { 0x1a, 0, 0x3f, 0xff, 255 }, 6, GOOD, 0, 0, 44, 0 },
	{ "mode sense6 all dbd", 0, 0, { 0x1a, 0x08, 0x3f, 0, 255 }, 6, GOOD, 0, 0, 36, 0 },
	{ "mode sense6 alloc 4", 0, 0, { 0x1a, 0, 0x3f, 0, 4 }, 6, GOOD, 0, 0, 4, 0 },
	{ "mode sense6 caching", 0, 0, { 0x1a, 0, 0x08, 0, 255 }, 6, GOOD, 0, 0, 32, 0 },
	{ "mode sense6 control", 0, 0, { 0x1a, 0, 0x0a, 0, 255 }, 6, GOOD, 0, 0, 24, 0 },
	{ "mode sense6 control changeable", 0, 0, { 0x1a, 0x08, 0x4a, 0, 255 }, 6, GOOD, 0, 0, 16,
	  0 },
	{ "mode sense6 control default", 0, 0, { 0x1a, 0x08, 0x8a, 0, 255 }, 6, GOOD, 0, 0, 16, 0 },
	{ "mode sense6 page 0", 0, 0, { 0x1a, 0, 0x00, 0, 255 }, 6, GOOD, 0, 0, 12, 0 },
	{ "mode sense6 saved", 0, 0, { 0x1a, 0, 0xff, 0, 255 }, 6, CHECK, IR, 0x39, 0, 0 },
	{ "mode sense6 unknown page", 0, 0, { 0x1a, 0, 0x19, 0, 255 }, 6, CHECK, IR, 0x24, 0, 0 },
	{ "mode sense6 caching subpage", 0, 0, { 0x1a, 0, 0x08, 1, 255 }, 6, CHECK, IR, 0x24, 0, 0 },
	{ "mode sense6 all subpage 5", 0, 0, { 0x1a, 0, 0x3f, 5, 255 }, 6, CHECK, IR, 0x24, 0, 0 },
	{ "mode sense10 all", 0, 0, { 0x5a, 0, 0x3f, 0, 0, 0, 0, LEN16(512) }, 10, GOOD, 0, 0, 48,
	  0 },
	{ "mode sense10 llbaa", 0, 0, { 0x5a, 0x10, 0x3f, 0, 0, 0, 0, LEN16(512) }, 10, GOOD, 0, 0,
	  56, 0 },
	{ "mode sense10 alloc 8", 0, 0, { 0x5a, 0, 0x3f, 0, 0, 0, 0, LEN16(8) }, 10, GOOD, 0, 0, 8,
	  0 },
	{ "mode sense lun1", 0, 1, { 0x1a, 0, 0x3f, 0, 255 }, 6, CHECK, IR, 0x25, 0, 0 },

	/* REPORT LUNS, REQUEST SENSE */
	{ "report luns", 0, 0, { 0xa0, 0, 0, 0, 0, 0, LBA32(16) }, 12, GOOD, 0, 0, 16, 0 },
	{ "report luns 4096", 0, 0, { 0xa0, 0, 2, 0, 0, 0, LBA32(4096) }, 12, GOOD, 0, 0, 16, 0 },
	{ "report luns well-known", 0, 0, { 0xa0, 0, 1, 0, 0, 0, LBA32(16) }, 12, GOOD, 0, 0, 8, 0 },
	{ "report luns lun5", 0, 5, { 0xa0, 0, 0, 0, 0, 0, LBA32(16) }, 12, GOOD, 0, 0, 16, 0 },
	{ "report luns alloc 8", 0, 0, { 0xa0, 0, 0, 0, 0, 0, LBA32(8) }, 12, CHECK, IR, 0x24, 0, 0 },
	{ "report luns select 3", 0, 0, { 0xa0, 0, 3, 0, 0, 0, LBA32(16) }, 12, CHECK, IR, 0x24, 0,
	  0 },
	{ "request sense", 0, 0, { 0x03, 0, 0, 0, 252 }, 6, GOOD, 0, 0, 18, 0 },
	{ "request sense alloc 8", 0, 0, { 0x03, 0, 0, 0, 8 }, 6, GOOD, 0, 0, 8, 0 },
	{ "request sense desc", 0, 0, { 0x03, 1, 0, 0, 252 }, 6, GOOD, 0, 0, 8, 0 },
	{ "request sense lun1", 0, 1, { 0x03, 0, 0, 0, 252 }, 6, GOOD, 0, 0, 18, 0 },

	/* REPORT SUPPORTED OPERATION CODES framing (contents are checked separately) */
	{ "rsoc one command", 0, 0, { 0xa3, 0x0c, 1, 0x28, 0, 0, LBA32(512) }, 12, GOOD, 0, 0,
	  4 + 10, 0 },
	{ "rsoc one command rctd", 0, 0, { 0xa3, 0x0c, 0x81, 0x28, 0, 0, LBA32(512) }, 12, GOOD, 0,
	  0, 4 + 10 + 12, 0 },
	{ "rsoc unsupported opcode", 0, 0, { 0xa3, 0x0c, 1, 0x15, 0, 0, LBA32(512) }, 12, GOOD, 0, 0,
	  4, 0 },
	{ "rsoc all alloc 4", 0, 0, { 0xa3, 0x0c, 0, 0, 0, 0, LBA32(4) }, 12, GOOD, 0, 0, 4, 0 },
	{ "rsoc bad options", 0, 0, { 0xa3, 0x0c, 4, 0, 0, 0, LBA32(512) }, 12, CHECK, IR, 0x24, 0,
	  0 },
	{ "rsoc opcode-only on sa command", 0, 0, { 0xa3, 0x0c, 1, 0x9e, 0, 0x10, LBA32(512) }, 12,
	  CHECK, IR, 0x24, 0, 0 },
	{ "rsoc sa on plain command", 0, 0, { 0xa3, 0x0c, 2, 0x28, 0, 0, LBA32(512) }, 12, CHECK, IR,
	  0x24, 0, 0 },
	{ "rsoc sa", 0, 0, { 0xa3, 0x0c, 2, 0x9e, 0, 0x10, LBA32(512) }, 12, GOOD, 0, 0, 4 + 16, 0 },
	{ "rsoc option 3 plain", 0, 0, { 0xa3, 0x0c, 3, 0x28, 0, 7, LBA32(512) }, 12, GOOD, 0, 0,
	  4 + 10, 0 },
	{ "rsoc sa unsupported", 0, 0, { 0xa3, 0x0c, 2, 0x9e, 0, 0x13, LBA32(512) }, 12, GOOD, 0, 0,
	  4, 0 },
	{ "maintenance in unknown sa", 0, 0, { 0xa3, 0x0d, 0, 0, 0, 0, LBA32(512) }, 12, CHECK, IR,
	  0x24, 0, 0 },
	{ "rsoc lun1", 0, 1, { 0xa3, 0x0c, 0, 0, 0, 0, LBA32(512) }, 12, CHECK, IR, 0x25, 0, 0 },
};

/* Runs a CDB from an exactly-sized heap copy, so ASan catches any read past cdb_len. */
static void run_cdb(const struct scsi_disk *disk, uint64_t lun, const uint8_t *cdb, size_t len,
		    struct scsi_result *res)
{
	uint8_t *copy = malloc(len ? len : 1);

	assert_non_null(copy);
	if (len)
		memcpy(copy, cdb, len);
	memset(res, 0xa5, sizeof *res);	/* stale garbage must not leak into the answer */
	scsi_execute(disk, lun, len ? copy : NULL, len, res);
	free(copy);
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint16_t be16(const uint8_t *p)
{
	return (uint16_t)((uint32_t)p[0] << 8 | p[1]);
}

static uint64_t be64(const uint8_t *p)
{
	return (uint64_t)be32(p) << 32 | be32(p + 4);
}

static void assert_check(const struct scsi_result *res, uint8_t key, uint8_t asc)
{
	assert_int_equal(res->action, SCSI_ACT_STATUS);
	assert_int_equal(res->status, SCSI_STATUS_CHECK_CONDITION);
	assert_int_equal(res->sense_len, SCSI_SENSE_LEN);
	assert_int_equal(res->sense[0] & 0x7f, 0x70);
	assert_int_equal(res->sense[2] & 0x0f, key);
	assert_int_equal(res->sense[7], 10);
	assert_int_equal(res->sense[12], asc);
	assert_int_equal(res->sense[13], 0);
	assert_int_equal(res->data_len, 0);
}

static void test_exec_table(void **state)
{
	struct scsi_result *res = malloc(sizeof *res);
	size_t i;

	(void)state;
	assert_non_null(res);
	for (i = 0; i < sizeof exec_cases / sizeof exec_cases[0]; i++) {
		const struct exec_case *c = &exec_cases[i];

		print_message("  %s\n", c->name);
		run_cdb(disks[c->disk], c->lun, c->cdb, c->cdb_len, res);
		switch (c->expect) {
		case CHECK:
			assert_check(res, c->key, c->asc);
			break;
		case GOOD:
			assert_int_equal(res->action, SCSI_ACT_STATUS);
			assert_int_equal(res->status, SCSI_STATUS_GOOD);
			assert_int_equal(res->sense_len, 0);
			assert_int_equal(res->data_len, c->data_len);
			break;
		case READ:
		case COMPARE:
			assert_int_equal(res->action, c->expect == READ ? SCSI_ACT_READ
									 : SCSI_ACT_COMPARE);
			assert_int_equal(res->sense_len, 0);
			assert_int_equal(res->data_len, c->data_len);
			assert_true(res->read_offset == c->offset);
			break;
		}
	}
	free(res);
}

/* The sense-key-specific field pointer names the offending CDB byte (and bit). */
struct field_case {
	uint8_t cdb[16];
	uint8_t cdb_len;
	uint8_t asc;
	uint16_t byte;
	int bit;			/* -1: no bit pointer */
};

static const struct field_case field_cases[] = {
	{ { 0x12, 0, 1, 1, 0 }, 6, 0x24, 2, -1 },		/* page code without EVPD */
	{ { 0x12, 0x02, 0, 0, 255 }, 6, 0x24, 1, 1 },		/* CmdDt */
	{ { 0x28, 0x20, LBA32(0), 0, LEN16(1) }, 10, 0x24, 1, 7 },	/* RDPROTECT */
	{ { 0x9e, 0x12 }, 16, 0x24, 1, 4 },			/* service action */
	{ { 0xa3, 0x0c, 1, 0x9e, 0, 0, LBA32(64) }, 12, 0x24, 2, 2 },	/* reporting options */
	{ { 0x1a, 0, 0xca, 0, 255 }, 6, 0x39, 2, 7 },		/* saved values */
	{ { 0x1a, 0, 0x19, 0, 255 }, 6, 0x24, 2, 5 },		/* page code */
	{ { 0x00, 0, 0, 0, 0, 0x04 }, 6, 0x24, 5, 2 },		/* NACA */
	{ { 0x88, 0, LBA64(0), LBA32(MAX_XFER_BLOCKS + 1) }, 16, 0x24, 10, -1 },
};

static void test_sense_field_pointer(void **state)
{
	struct scsi_result *res = malloc(sizeof *res);
	size_t i;

	(void)state;
	assert_non_null(res);
	for (i = 0; i < sizeof field_cases / sizeof field_cases[0]; i++) {
		const struct field_case *c = &field_cases[i];

		run_cdb(&big_disk, 0, c->cdb, c->cdb_len, res);
		assert_check(res, SENSE_ILLEGAL_REQUEST, c->asc);
		assert_int_equal(res->sense[15] & 0xc0, 0xc0);	/* SKSV, C/D */
		assert_int_equal(be16(&res->sense[16]), c->byte);
		if (c->bit < 0) {
			assert_int_equal(res->sense[15] & 0x08, 0);
		} else {
			assert_int_equal(res->sense[15] & 0x08, 0x08);
			assert_int_equal(res->sense[15] & 0x07, c->bit);
		}
	}
	free(res);
}

static void test_inquiry_standard(void **state)
{
	static const uint8_t cdb[6] = { 0x12, 0, 0, 0, 255 };
	static const uint16_t want[] = { 0x00a0, 0x0960, 0x0460, 0x04c0 };
	struct scsi_result *res = malloc(sizeof *res);
	uint8_t *b;
	size_t i;

	(void)state;
	assert_non_null(res);
	b = res->buf;
	run_cdb(&small_disk, 0, cdb, sizeof cdb, res);
	assert_int_equal(res->data_len, 96);
	assert_int_equal(b[0], 0x00);
	assert_int_equal(b[2], 0x06);
	assert_int_equal(b[3], 0x12);			/* HiSup, format 2 */
	assert_int_equal(b[4], res->data_len - 5);
	assert_int_equal(b[5] & 0x01, 0);		/* no protection information */
	assert_int_equal(b[7] & 0x02, 0x02);		/* CmdQue */
	assert_memory_equal(b + 8, "VIRTMAN ", 8);
	assert_memory_equal(b + 16, "virtman disk    ", 16);
	assert_memory_equal(b + 32, "0001", 4);
	for (i = 0; i < 4; i++)
		assert_int_equal(be16(b + 58 + 2 * i), want[i]);
	for (i = 8; i < 36; i++)
		assert_true(b[i] >= 0x20 && b[i] <= 0x7e);

	run_cdb(&big_disk, 0, cdb, sizeof cdb, res);
	assert_memory_equal(b + 16, "tab here z      ", 16);
	assert_memory_equal(b + 32, "0001", 4);

	run_cdb(&small_disk, 3, cdb, sizeof cdb, res);
	assert_int_equal(res->status, SCSI_STATUS_GOOD);
	assert_int_equal(b[0], 0x7f);			/* qualifier 011b, type 1Fh */
	free(res);
}

/* Every page listed in VPD 0x00 is served, names itself, and has a consistent length. */
static void test_inquiry_vpd_pages(void **state)
{
	static const uint8_t want[] = { 0x00, 0x80, 0x83, 0xb0, 0xb1, 0xb2 };
	uint8_t cdb[6] = { 0x12, 1, 0x00, 0, 255 };
	uint8_t pages[16];
	struct scsi_result *res = malloc(sizeof *res);
	size_t i, n;

	(void)state;
	assert_non_null(res);
	run_cdb(&small_disk, 0, cdb, sizeof cdb, res);
	n = res->buf[3];
	assert_int_equal(n, sizeof want);
	assert_int_equal(res->data_len, 4 + n);
	memcpy(pages, res->buf + 4, n);
	assert_memory_equal(pages, want, sizeof want);
	for (i = 0; i < n; i++) {
		cdb[2] = pages[i];
		run_cdb(&small_disk, 0, cdb, sizeof cdb, res);
		assert_int_equal(res->status, SCSI_STATUS_GOOD);
		assert_int_equal(res->buf[0], 0x00);
		assert_int_equal(res->buf[1], pages[i]);
		assert_int_equal(be16(res->buf + 2) + 4u, res->data_len);
	}
	free(res);
}

/* Finds a designator of the given type in a VPD 0x83 page; returns its header or NULL. */
static const uint8_t *find_designator(const uint8_t *page, uint32_t len, unsigned type)
{
	const uint8_t *p = page + 4, *end = page + len;

	while (end - p >= 4 && p[3] <= end - p - 4) {
		if ((p[1] & 0x0f) == type)
			return p;
		p += 4 + p[3];
	}
	return NULL;
}

static void test_inquiry_device_identification(void **state)
{
	static const uint8_t cdb[6] = { 0x12, 1, 0x83, 0, 255 };
	struct scsi_result *res = malloc(sizeof *res);
	const uint8_t *naa, *t10;
	static const uint8_t zero[8];

	(void)state;
	assert_non_null(res);
	run_cdb(&small_disk, 0, cdb, sizeof cdb, res);
	assert_int_equal(res->status, SCSI_STATUS_GOOD);
	naa = find_designator(res->buf, res->data_len, 3);
	assert_non_null(naa);
	assert_int_equal(naa[0] & 0x0f, 1);		/* binary */
	assert_int_equal(naa[1] & 0x30, 0);		/* associated with the LU */
	assert_int_equal(naa[3], 16);			/* NAA 6: registered extended */
	assert_true(be64(naa + 4) == small_disk.naa);
	assert_memory_equal(naa + 12, zero, 8);
	t10 = find_designator(res->buf, res->data_len, 1);
	assert_non_null(t10);
	assert_int_equal(t10[0] & 0x0f, 2);		/* ASCII */
	assert_int_equal(t10[3], 8 + strlen(small_disk.serial));
	assert_memory_equal(t10 + 4, "VIRTMAN VM-SERIAL-0001", t10[3]);

	run_cdb(&big_disk, 0, cdb, sizeof cdb, res);
	naa = find_designator(res->buf, res->data_len, 3);
	assert_non_null(naa);
	assert_int_equal(naa[3], 8);			/* NAA 5: 8 bytes */
	assert_true(be64(naa + 4) == big_disk.naa);
	free(res);
}

static void test_inquiry_vpd_contents(void **state)
{
	uint8_t cdb[6] = { 0x12, 1, 0x80, 0, 255 };
	struct scsi_result *res = malloc(sizeof *res);

	(void)state;
	assert_non_null(res);
	run_cdb(&small_disk, 0, cdb, sizeof cdb, res);
	assert_int_equal(res->buf[3], strlen(small_disk.serial));
	assert_memory_equal(res->buf + 4, small_disk.serial, strlen(small_disk.serial));

	cdb[2] = 0xb0;
	run_cdb(&small_disk, 0, cdb, sizeof cdb, res);
	assert_int_equal(be16(res->buf + 2), 0x3c);	/* SBC-3 length, as libiscsi requires */
	assert_int_equal(be16(res->buf + 6), 8);	/* 4 KiB granularity */
	assert_int_equal(be32(res->buf + 8), MAX_XFER_BLOCKS);
	assert_int_equal(be32(res->buf + 20), 0);	/* max unmap LBA count */
	assert_int_equal(be32(res->buf + 24), 0);	/* max unmap descriptors */

	cdb[2] = 0xb1;
	run_cdb(&small_disk, 0, cdb, sizeof cdb, res);
	assert_int_equal(be16(res->buf + 4), 1);	/* non-rotating */

	cdb[2] = 0xb2;
	run_cdb(&small_disk, 0, cdb, sizeof cdb, res);
	assert_int_equal(res->buf[5] & 0xe0, 0);	/* no LBPU, LBPWS, LBPWS10 */
	assert_int_equal(res->buf[6] & 0x07, 0);	/* fully provisioned */
	free(res);
}

static void test_read_capacity(void **state)
{
	static const uint8_t rc10[10] = { 0x25 };
	static const uint8_t rc16[16] = { 0x9e, 0x10, [13] = 32 };
	struct scsi_result *res = malloc(sizeof *res);

	(void)state;
	assert_non_null(res);
	run_cdb(&small_disk, 0, rc10, sizeof rc10, res);
	assert_int_equal(be32(res->buf), SMALL_BLOCKS - 1);
	assert_int_equal(be32(res->buf + 4), BS);
	run_cdb(&big_disk, 0, rc10, sizeof rc10, res);
	assert_int_equal(be32(res->buf), 0xffffffffu);	/* too large: use READ CAPACITY(16) */

	run_cdb(&big_disk, 0, rc16, sizeof rc16, res);
	assert_int_equal(res->data_len, 32);
	assert_true(be64(res->buf) == BIG_BLOCKS - 1);
	assert_int_equal(be32(res->buf + 8), BS);
	assert_int_equal(res->buf[12], 0);		/* PROT_EN, P_TYPE */
	assert_int_equal(res->buf[13], 0);		/* LBPPBE */
	assert_int_equal(res->buf[14] & 0x80, 0);	/* LBPME */
	free(res);
}

static void test_mode_sense(void **state)
{
	static const uint8_t all6[6] = { 0x1a, 0, 0x3f, 0, 255 };
	static const uint8_t short6[6] = { 0x1a, 0, 0x3f, 0, 4 };
	static const uint8_t page0[6] = { 0x1a, 0, 0x00, 0, 255 };
	static const uint8_t changeable[6] = { 0x1a, 0x08, 0x4a, 0, 255 };
	static const uint8_t all10[10] = { 0x5a, 0x10, 0x3f, 0, 0, 0, 0, 0x02, 0x00 };
	static const uint8_t zero[10];
	struct scsi_result *res = malloc(sizeof *res);
	const uint8_t *b, *caching, *control;

	(void)state;
	assert_non_null(res);
	b = res->buf;
	run_cdb(&small_disk, 0, all6, sizeof all6, res);
	assert_int_equal(b[0], res->data_len - 1);
	assert_int_equal(b[1], 0);			/* medium type */
	assert_int_equal(b[2] & 0x80, 0x80);		/* WP */
	assert_int_equal(b[2] & 0x10, 0x10);		/* DPOFUA */
	assert_int_equal(b[3], 8);
	assert_int_equal(be32(b + 4), SMALL_BLOCKS);
	assert_int_equal(be32(b + 8) & 0xffffff, BS);
	caching = b + 12;
	control = caching + 2 + caching[1];
	assert_int_equal(caching[0] & 0x3f, 0x08);
	assert_int_equal(caching[2] & 0x05, 0);		/* WCE 0, RCD 0 */
	assert_int_equal(control[0] & 0x3f, 0x0a);
	assert_int_equal(control[1], 10);
	assert_int_equal(control[2] & 0x04, 0);		/* D_SENSE: fixed format */
	assert_ptr_equal(control + 2 + control[1], b + res->data_len);

	/* the mode data length counts the whole data even when cut to 4 bytes */
	run_cdb(&small_disk, 0, short6, sizeof short6, res);
	assert_int_equal(res->data_len, 4);
	assert_int_equal(b[0], 43);
	assert_int_equal(b[2] & 0x80, 0x80);

	run_cdb(&small_disk, 0, page0, sizeof page0, res);
	assert_int_equal(res->data_len, 12);
	assert_int_equal(b[0], 11);
	assert_int_equal(b[2] & 0x80, 0x80);

	/* changeable values: the control page is there (libiscsi reads it), all masks zero */
	run_cdb(&small_disk, 0, changeable, sizeof changeable, res);
	assert_int_equal(res->data_len, 16);
	assert_int_equal(b[3], 0);
	assert_int_equal(b[4] & 0x3f, 0x0a);
	assert_int_equal(b[5], 10);
	assert_memory_equal(b + 6, zero, 10);

	run_cdb(&big_disk, 0, all6, sizeof all6, res);
	assert_int_equal(be32(b + 4), 0xffffffffu);	/* capped block count */

	run_cdb(&big_disk, 0, all10, sizeof all10, res);
	assert_int_equal(be16(b), res->data_len - 2);
	assert_int_equal(b[3] & 0x80, 0x80);		/* WP */
	assert_int_equal(b[4] & 0x01, 0x01);		/* LONGLBA */
	assert_int_equal(be16(b + 6), 16);
	assert_true(be64(b + 8) == BIG_BLOCKS);
	assert_int_equal(be32(b + 20), BS);
	free(res);
}

static void test_report_luns(void **state)
{
	static const uint8_t cdb[12] = { 0xa0, 0, 0, 0, 0, 0, 0, 0, 1, 0 };
	static const uint8_t want[16] = { 0, 0, 0, 8 };
	struct scsi_result *res = malloc(sizeof *res);

	(void)state;
	assert_non_null(res);
	run_cdb(&small_disk, 0, cdb, sizeof cdb, res);
	assert_int_equal(res->data_len, 16);
	assert_memory_equal(res->buf, want, 16);
	free(res);
}

static void test_request_sense(void **state)
{
	static const uint8_t fixed[6] = { 0x03, 0, 0, 0, 252 };
	static const uint8_t desc[6] = { 0x03, 1, 0, 0, 252 };
	struct scsi_result *res = malloc(sizeof *res);

	(void)state;
	assert_non_null(res);
	run_cdb(&small_disk, 0, fixed, sizeof fixed, res);
	assert_int_equal(res->buf[0], 0x70);
	assert_int_equal(res->buf[2], SENSE_NO_SENSE);
	assert_int_equal(res->buf[7], 10);
	assert_int_equal(res->buf[12], 0);
	run_cdb(&small_disk, 0, desc, sizeof desc, res);
	assert_int_equal(res->buf[0], 0x72);
	assert_int_equal(res->buf[1], SENSE_NO_SENSE);
	assert_int_equal(res->buf[7], 0);
	run_cdb(&small_disk, 9, fixed, sizeof fixed, res);
	assert_int_equal(res->status, SCSI_STATUS_GOOD);
	assert_int_equal(res->buf[2], SENSE_ILLEGAL_REQUEST);
	assert_int_equal(res->buf[12], 0x25);
	free(res);
}

static unsigned cdb_group_len(uint8_t opcode)
{
	switch (opcode >> 5) {
	case 0:
		return 6;
	case 1:
	case 2:
		return 10;
	case 4:
		return 16;
	case 5:
		return 12;
	default:
		return 0;
	}
}

/* The report is the dispatch table: every reported command dispatches, its one-command
 * data agrees, and every opcode not reported is INVALID COMMAND OPERATION CODE. */
static void test_report_opcodes_consistency(void **state)
{
	uint8_t all[SCSI_BUF_MAX];
	uint8_t cdb[16];
	uint8_t reported[256] = { 0 };
	struct scsi_result *res = malloc(sizeof *res);
	uint32_t len, off;
	unsigned ncmds = 0, op;

	(void)state;
	assert_non_null(res);
	memset(cdb, 0, sizeof cdb);
	cdb[0] = 0xa3;
	cdb[1] = 0x0c;
	cdb[8] = 0x10;				/* allocation length 4096 */
	run_cdb(&small_disk, 0, cdb, 12, res);
	assert_int_equal(res->status, SCSI_STATUS_GOOD);
	len = res->data_len;
	assert_int_equal(be32(res->buf) + 4, len);
	memcpy(all, res->buf, len);

	for (off = 4; off + 8 <= len; off += 8, ncmds++) {
		const uint8_t *d = all + off;
		unsigned cdb_len = be16(d + 6);
		int servactv = d[5] & 0x01;
		uint16_t sa = be16(d + 2);

		print_message("  opcode %02x sa %02x\n", d[0], sa);
		assert_int_equal(d[5] & 0x02, 0);	/* no CTDP without RCTD */
		assert_true(servactv || sa == 0);
		assert_int_equal(cdb_len, cdb_group_len(d[0]));
		reported[d[0]] = 1;

		/* one-command data: supported, same length, usage starts with the opcode */
		memset(cdb, 0, sizeof cdb);
		cdb[0] = 0xa3;
		cdb[1] = 0x0c;
		cdb[2] = servactv ? 2 : 1;
		cdb[3] = d[0];
		cdb[4] = (uint8_t)(sa >> 8);
		cdb[5] = (uint8_t)sa;
		cdb[9] = 255;
		run_cdb(&small_disk, 0, cdb, 12, res);
		assert_int_equal(res->status, SCSI_STATUS_GOOD);
		assert_int_equal(res->buf[1] & 0x07, 3);
		assert_int_equal(be16(res->buf + 2), cdb_len);
		assert_int_equal(res->data_len, 4 + cdb_len);
		assert_int_equal(res->buf[4], d[0]);
		if (servactv)
			assert_int_equal(res->buf[5] & 0x1f, sa);
		assert_int_equal(res->buf[4 + cdb_len - 1] & 0x04, 0);	/* NACA unsupported */

		/* the CDB length in the report is what dispatch demands */
		memset(cdb, 0, sizeof cdb);
		cdb[0] = d[0];
		cdb[1] = (uint8_t)sa;
		run_cdb(&small_disk, 0, cdb, cdb_len - 1, res);
		assert_check(res, SENSE_ILLEGAL_REQUEST, 0x24);
		run_cdb(&small_disk, 0, cdb, cdb_len, res);
		assert_false(res->status == SCSI_STATUS_CHECK_CONDITION &&
			     (res->sense[12] == 0x20 ||
			      (res->sense[12] == 0x24 && be16(&res->sense[16]) == 1)));
	}
	assert_int_equal(off, len);
	assert_true(ncmds >= 30);

	for (op = 0; op < 256; op++) {
		if (reported[op])
			continue;
		memset(cdb, 0, sizeof cdb);
		cdb[0] = (uint8_t)op;
		run_cdb(&small_disk, 0, cdb, sizeof cdb, res);
		assert_check(res, SENSE_ILLEGAL_REQUEST, 0x20);
	}

	/* libiscsi: DPO/FUA usage bits must agree with DPOFUA in MODE SENSE */
	memset(cdb, 0, sizeof cdb);
	cdb[0] = 0xa3;
	cdb[1] = 0x0c;
	cdb[2] = 1;
	cdb[9] = 255;
	cdb[3] = 0x28;
	run_cdb(&small_disk, 0, cdb, 12, res);
	assert_int_equal(res->buf[5] & 0x18, 0x18);
	cdb[3] = 0x2f;
	run_cdb(&small_disk, 0, cdb, 12, res);
	assert_int_equal(res->buf[5] & 0x10, 0x10);
	free(res);
}

static void test_report_opcodes_timeouts(void **state)
{
	static const uint8_t cdb[12] = { 0xa3, 0x0c, 0x80, 0, 0, 0, 0, 0, 0x10, 0 };
	struct scsi_result *res = malloc(sizeof *res);
	uint32_t off, n = 0;

	(void)state;
	assert_non_null(res);
	run_cdb(&small_disk, 0, cdb, sizeof cdb, res);
	assert_int_equal(res->status, SCSI_STATUS_GOOD);
	assert_int_equal(be32(res->buf) + 4, res->data_len);
	for (off = 4; off + 20 <= res->data_len; off += 20, n++) {
		assert_int_equal(res->buf[off + 5] & 0x02, 0x02);	/* CTDP */
		assert_int_equal(be16(res->buf + off + 8), 0x0a);
	}
	assert_int_equal(off, res->data_len);
	assert_true(n >= 30);
	free(res);
}

struct dataout_case {
	uint8_t cdb[16];
	uint8_t cdb_len;
	uint32_t want;
};

static const struct dataout_case dataout_cases[] = {
	{ { 0x2f, 0x02, LBA32(0), 0, LEN16(4) }, 10, 4 * BS },
	{ { 0xaf, 0x02, LBA32(0), LBA32(2) }, 12, 2 * BS },
	{ { 0x8f, 0x02, LBA64(0), LBA32(1) }, 16, BS },
	{ { 0x2f, 0x00, LBA32(0), 0, LEN16(4) }, 10, 0 },		/* no byte check */
	{ { 0x2f, 0x02, LBA32(999), 0, LEN16(4) }, 10, 0 },		/* refused: range */
	{ { 0x2f, 0x22, LBA32(0), 0, LEN16(4) }, 10, 0 },		/* refused: VRPROTECT */
	{ { 0x2f, 0x06, LBA32(0), 0, LEN16(4) }, 10, 0 },		/* refused: BYTCHK 11b */
	{ { 0x2f, 0x02, LBA32(0), 0, LEN16(4) }, 9, 0 },		/* short CDB */
	{ { 0x2f, 0x02, LBA32(0), 0, LEN16(4), 0x04 }, 10, 0 },	/* NACA */
	{ { 0x2a, 0, LBA32(0), 0, LEN16(4) }, 10, 0 },		/* writes take no data */
	{ { 0x8a, 0, LBA64(0), LBA32(4) }, 16, 0 },
	{ { 0x89, 0, LBA64(0), 0, 0, 0, 1 }, 16, 0 },
	{ { 0x28, 0, LBA32(0), 0, LEN16(4) }, 10, 0 },
	{ { 0 }, 0, 0 },
};

static void test_dataout_len(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof dataout_cases / sizeof dataout_cases[0]; i++) {
		const struct dataout_case *c = &dataout_cases[i];
		uint8_t *copy = malloc(c->cdb_len ? c->cdb_len : 1);

		assert_non_null(copy);
		memcpy(copy, c->cdb, c->cdb_len);
		assert_int_equal(scsi_dataout_len(&small_disk, c->cdb_len ? copy : NULL,
						  c->cdb_len), c->want);
		free(copy);
	}
}

struct compare_case {
	uint32_t len;
	int64_t flip;			/* byte to change in the Data-Out, -1 for none */
};

static const struct compare_case compare_cases[] = {
	{ 512, -1 }, { 4096, -1 }, { 0, -1 }, { 512, 0 }, { 512, 511 }, { 4096, 1234 },
	{ 65536, 65535 },
};

static void test_compare_finish(void **state)
{
	struct scsi_result *res = malloc(sizeof *res);
	uint8_t *image = malloc(65536), *out = malloc(65536);
	size_t i, j;

	(void)state;
	assert_non_null(res);
	assert_non_null(image);
	assert_non_null(out);
	for (j = 0; j < 65536; j++)
		image[j] = (uint8_t)(j * 7 + 3);
	for (i = 0; i < sizeof compare_cases / sizeof compare_cases[0]; i++) {
		const struct compare_case *c = &compare_cases[i];

		memcpy(out, image, c->len);
		if (c->flip >= 0)
			out[c->flip] ^= 'X';
		memset(res, 0xa5, sizeof *res);
		scsi_compare_finish(image, out, c->len, res);
		assert_int_equal(res->action, SCSI_ACT_STATUS);
		assert_int_equal(res->data_len, 0);
		if (c->flip < 0) {
			assert_int_equal(res->status, SCSI_STATUS_GOOD);
			assert_int_equal(res->sense_len, 0);
			continue;
		}
		assert_check(res, SENSE_MISCOMPARE, 0x1d);
		assert_int_equal(res->sense[0] & 0x80, 0x80);	/* INFORMATION valid */
		assert_int_equal(be32(res->sense + 3), c->flip);
	}
	free(image);
	free(out);
	free(res);
}

/* Hostile CDBs: random bytes and lengths for every opcode. ASan guards the CDB bounds;
 * the answers must stay self-consistent and inside the disk. */
static void test_random_cdbs(void **state)
{
	struct scsi_result *res = malloc(sizeof *res);
	uint8_t cdb[16];
	uint64_t x = 0x9e3779b97f4a7c15ull;
	unsigned iter, i;

	(void)state;
	assert_non_null(res);
	for (iter = 0; iter < 200000; iter++) {
		size_t len;
		const struct scsi_disk *disk = (iter & 1) ? &big_disk : &small_disk;

		for (i = 0; i < sizeof cdb; i++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			cdb[i] = (uint8_t)x;
		}
		cdb[0] = (uint8_t)iter;			/* cover every opcode */
		if (x & 0x100)
			cdb[1] &= 0x1f;			/* reach past the protect checks */
		len = (x >> 20) % 17;
		run_cdb(disk, (x >> 40) % 4 == 0 ? 1 : 0, cdb, len, res);
		switch (res->action) {
		case SCSI_ACT_STATUS:
			if (res->status == SCSI_STATUS_GOOD) {
				assert_int_equal(res->sense_len, 0);
				assert_true(res->data_len <= SCSI_BUF_MAX);
			} else {
				assert_int_equal(res->status, SCSI_STATUS_CHECK_CONDITION);
				assert_int_equal(res->sense_len, SCSI_SENSE_LEN);
				assert_int_equal(res->data_len, 0);
			}
			break;
		case SCSI_ACT_READ:
		case SCSI_ACT_COMPARE:
			assert_true(res->data_len > 0);
			assert_true(res->data_len <= 32u << 20);
			assert_true(res->read_offset % BS == 0);
			assert_true(res->read_offset + res->data_len <= disk->nblocks * BS);
			break;
		default:
			fail();
		}
		if (res->action == SCSI_ACT_COMPARE)
			assert_int_equal(scsi_dataout_len(disk, cdb, len), res->data_len);
	}
	free(res);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_exec_table),
		cmocka_unit_test(test_sense_field_pointer),
		cmocka_unit_test(test_inquiry_standard),
		cmocka_unit_test(test_inquiry_vpd_pages),
		cmocka_unit_test(test_inquiry_device_identification),
		cmocka_unit_test(test_inquiry_vpd_contents),
		cmocka_unit_test(test_read_capacity),
		cmocka_unit_test(test_mode_sense),
		cmocka_unit_test(test_report_luns),
		cmocka_unit_test(test_request_sense),
		cmocka_unit_test(test_report_opcodes_consistency),
		cmocka_unit_test(test_report_opcodes_timeouts),
		cmocka_unit_test(test_dataout_len),
		cmocka_unit_test(test_compare_finish),
		cmocka_unit_test(test_random_cdbs),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
