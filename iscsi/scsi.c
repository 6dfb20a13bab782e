/* SCSI emulation of a read-only direct-access disk: CDB decoding, data-in pages, sense data. */
#include "iscsi/scsi.h"

#include <stdbool.h>
#include <string.h>

/* Operation codes (SPC-4, SBC-3) */
enum {
	OP_TEST_UNIT_READY = 0x00,
	OP_REQUEST_SENSE = 0x03,
	OP_FORMAT_UNIT = 0x04,
	OP_REASSIGN_BLOCKS = 0x07,
	OP_READ_6 = 0x08,
	OP_WRITE_6 = 0x0a,
	OP_INQUIRY = 0x12,
	OP_MODE_SENSE_6 = 0x1a,
	OP_START_STOP_UNIT = 0x1b,
	OP_PREVENT_ALLOW = 0x1e,
	OP_READ_CAPACITY_10 = 0x25,
	OP_READ_10 = 0x28,
	OP_WRITE_10 = 0x2a,
	OP_WRITE_VERIFY_10 = 0x2e,
	OP_VERIFY_10 = 0x2f,
	OP_PRE_FETCH_10 = 0x34,
	OP_SYNC_CACHE_10 = 0x35,
	OP_WRITE_LONG_10 = 0x3f,
	OP_WRITE_SAME_10 = 0x41,
	OP_UNMAP = 0x42,
	OP_XDWRITE_10 = 0x50,
	OP_XPWRITE_10 = 0x51,
	OP_XDWRITEREAD_10 = 0x53,
	OP_MODE_SENSE_10 = 0x5a,
	OP_READ_16 = 0x88,
	OP_COMPARE_AND_WRITE = 0x89,
	OP_WRITE_16 = 0x8a,
	OP_ORWRITE_16 = 0x8b,
	OP_WRITE_VERIFY_16 = 0x8e,
	OP_VERIFY_16 = 0x8f,
	OP_PRE_FETCH_16 = 0x90,
	OP_SYNC_CACHE_16 = 0x91,
	OP_WRITE_SAME_16 = 0x93,
	OP_WRITE_ATOMIC_16 = 0x9c,
	OP_SERVICE_ACTION_IN_16 = 0x9e,
	OP_SERVICE_ACTION_OUT_16 = 0x9f,
	OP_REPORT_LUNS = 0xa0,
	OP_MAINTENANCE_IN = 0xa3,
	OP_READ_12 = 0xa8,
	OP_WRITE_12 = 0xaa,
	OP_WRITE_VERIFY_12 = 0xae,
	OP_VERIFY_12 = 0xaf,
};

/* Service actions (byte 1, bits 4..0) */
#define SA_READ_CAPACITY_16 0x10
#define SA_WRITE_LONG_16 0x11
#define SA_REPORT_SUPPORTED_OPCODES 0x0c

/* Additional sense codes (ASCQ is 0 for all of them) */
#define ASC_NONE 0x00
#define ASC_MISCOMPARE_DURING_VERIFY 0x1d
#define ASC_INVALID_OPCODE 0x20
#define ASC_LBA_OUT_OF_RANGE 0x21
#define ASC_INVALID_FIELD_IN_CDB 0x24
#define ASC_LU_NOT_SUPPORTED 0x25
#define ASC_WRITE_PROTECTED 0x27
#define ASC_SAVING_NOT_SUPPORTED 0x39

#define CDB_MAX 16
#define CONTROL_NACA 0x04		/* NormACA is not supported */
#define NO_BIT (-1)			/* field pointer without a bit pointer */

/* Largest READ or compared VERIFY, in bytes; VPD 0xB0 advertises it in blocks. */
#define SCSI_MAX_TRANSFER (32u << 20)
#define SCSI_OPT_GRANULARITY 4096u	/* bytes; the cache works in 4 KiB multiples */

#define INQUIRY_VENDOR "VIRTMAN "
#define INQUIRY_REVISION "0001"
#define INQUIRY_STD_LEN 96
#define VPD_SBC_PAGE_LEN 0x3c		/* block limits and characteristics, SBC-3 */
#define MODE_DSP_WP 0x80		/* device-specific parameter: write protected */
#define MODE_DSP_DPOFUA 0x10		/* DPO and FUA accepted (and ignored) */
#define RSOC_DESC_LEN 8
#define RSOC_TIMEOUT_LEN 12
#define RSOC_SUPPORTED 0x03
#define RSOC_NOT_SUPPORTED 0x01
#define RSOC_RECOMMENDED_TIMEOUT 30	/* seconds; relay cache misses can be slow */

static const uint8_t scsi_vpd_pages[] = { 0x00, 0x80, 0x83, 0xb0, 0xb1, 0xb2 };
static const uint16_t scsi_version_descriptors[] = {
	0x00a0,		/* SAM-5 */
	0x0960,		/* iSCSI */
	0x0460,		/* SPC-4 */
	0x04c0,		/* SBC-3 */
};

struct scsi_command;

/* One CDB being executed; cdb holds at least cmd->cdb_len bytes. */
struct scsi_request {
	const struct scsi_disk *disk;
	const uint8_t *cdb;
	uint64_t lun;
	const struct scsi_command *commands;	/* the dispatch table, for REPORT SUPPORTED OPCODES */
	size_t ncommands;
};

/* A row of the command table: dispatch and REPORT SUPPORTED OPERATION CODES both read it. */
struct scsi_command {
	uint8_t opcode;
	uint8_t service_action;		/* meaningful when has_sa */
	bool has_sa;
	bool any_lun;			/* also answered for LUNs that do not exist */
	uint8_t cdb_len;
	uint8_t usage[CDB_MAX];		/* CDB usage data exactly as reported */
	void (*run)(const struct scsi_request *req, struct scsi_result *res);
	uint32_t (*dataout)(const struct scsi_disk *disk, const uint8_t *cdb);
};

/* Blocks addressed by a READ, VERIFY, PRE-FETCH or SYNCHRONIZE CACHE CDB. */
struct scsi_extent {
	uint64_t lba;
	uint32_t nblocks;
	unsigned len_byte;		/* CDB byte of the transfer length, for field pointers */
};

static uint16_t scsi_get_be16(const uint8_t *p)
{
	return (uint16_t)((uint32_t)p[0] << 8 | p[1]);
}

static uint32_t scsi_get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t scsi_get_be64(const uint8_t *p)
{
	return (uint64_t)scsi_get_be32(p) << 32 | scsi_get_be32(p + 4);
}

static void scsi_put_be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void scsi_put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static void scsi_put_be64(uint8_t *p, uint64_t v)
{
	scsi_put_be32(p, (uint32_t)(v >> 32));
	scsi_put_be32(p + 4, (uint32_t)v);
}

/* Copies at most n bytes of a C string as SCSI ASCII (0x20..0x7e), padding with spaces.
 * Returns the length of the string part; the libiscsi INQUIRY tests reject other bytes. */
static size_t scsi_put_ascii(uint8_t *dst, const char *src, size_t n, bool pad)
{
	size_t i;

	for (i = 0; i < n && src[i] != '\0'; i++)
		dst[i] = (src[i] >= 0x20 && src[i] <= 0x7e) ? (uint8_t)src[i] : ' ';
	if (pad)
		memset(dst + i, ' ', n - i);
	return i;
}

/* Resets the outcome to GOOD with no data; handlers change only what they need. */
static void scsi_result_reset(struct scsi_result *res)
{
	res->action = SCSI_ACT_STATUS;
	res->status = SCSI_STATUS_GOOD;
	res->sense_len = 0;
	res->data_len = 0;
	res->read_offset = 0;
}

/* Ends the command with sense data; res may be NULL when only validating (Data-Out sizing). */
static void scsi_fail(struct scsi_result *res, uint8_t key, uint8_t asc)
{
	if (res)
		scsi_set_sense(res, key, asc, 0);
}

/* ILLEGAL REQUEST with a sense-key-specific field pointer into the CDB (SPC-4 4.5.2.4.2).
 * libiscsi treats 24/00 on 0x9E/0xA3 without a pointer past byte 1 as "not implemented". */
static void scsi_fail_field(struct scsi_result *res, uint8_t asc, unsigned byte, int bit)
{
	if (!res)
		return;
	scsi_set_sense(res, SENSE_ILLEGAL_REQUEST, asc, 0);
	res->sense[15] = 0x80 | 0x40;	/* SKSV, C/D: the error is in the CDB */
	if (bit != NO_BIT)
		res->sense[15] |= (uint8_t)(0x08 | (bit & 7));
	scsi_put_be16(&res->sense[16], (uint16_t)byte);
}

static void scsi_fail_cdb(struct scsi_result *res, unsigned byte, int bit)
{
	scsi_fail_field(res, ASC_INVALID_FIELD_IN_CDB, byte, bit);
}

/* Returns `built` bytes of res->buf to the initiator, cut to the allocation length. */
static void scsi_reply(struct scsi_result *res, uint32_t built, uint32_t alloc)
{
	res->data_len = built < alloc ? built : alloc;
}

static uint64_t scsi_last_lba(const struct scsi_disk *disk)
{
	return disk->nblocks ? disk->nblocks - 1 : 0;
}

/* Decodes LBA and block count by CDB group; READ(6) counts 0 as 256 blocks. */
static void scsi_extent_decode(const uint8_t *cdb, struct scsi_extent *ext)
{
	switch (cdb[0] >> 5) {
	case 0:
		ext->lba = (uint64_t)(cdb[1] & 0x1f) << 16 | (uint32_t)cdb[2] << 8 | cdb[3];
		ext->nblocks = cdb[4] ? cdb[4] : 256;
		ext->len_byte = 4;
		break;
	case 4:
		ext->lba = scsi_get_be64(cdb + 2);
		ext->nblocks = scsi_get_be32(cdb + 10);
		ext->len_byte = 10;
		break;
	case 5:
		ext->lba = scsi_get_be32(cdb + 2);
		ext->nblocks = scsi_get_be32(cdb + 6);
		ext->len_byte = 6;
		break;
	default:
		ext->lba = scsi_get_be32(cdb + 2);
		ext->nblocks = scsi_get_be16(cdb + 7);
		ext->len_byte = 7;
		break;
	}
}

/* LBA OUT OF RANGE unless [lba, lba + nblocks) lies on the disk; written so nothing overflows. */
static int scsi_extent_check(const struct scsi_disk *disk, const struct scsi_extent *ext,
			     struct scsi_result *res)
{
	if (ext->lba > disk->nblocks || ext->nblocks > disk->nblocks - ext->lba ||
	    (disk->block_size && ext->lba > UINT64_MAX / disk->block_size)) {
		scsi_fail(res, SENSE_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
		return -1;
	}
	return 0;
}

/* Byte count of a data transfer, refused above SCSI_MAX_TRANSFER (which fits data_len). */
static int scsi_extent_bytes(const struct scsi_disk *disk, const struct scsi_extent *ext,
			     struct scsi_result *res, uint32_t *bytes)
{
	uint64_t n = (uint64_t)ext->nblocks * disk->block_size;

	if (n > SCSI_MAX_TRANSFER) {
		scsi_fail_cdb(res, ext->len_byte, NO_BIT);
		return -1;
	}
	*bytes = (uint32_t)n;
	return 0;
}

static void scsi_run_good(const struct scsi_request *req, struct scsi_result *res)
{
	(void)req;
	(void)res;
}

/* Every medium-modifying command; refused before any Data-Out is requested. */
static void scsi_run_write(const struct scsi_request *req, struct scsi_result *res)
{
	(void)req;
	scsi_fail(res, SENSE_DATA_PROTECT, ASC_WRITE_PROTECTED);
}

/* PRE-FETCH and SYNCHRONIZE CACHE: nothing is cached for writing, so only the range matters. */
static void scsi_run_range(const struct scsi_request *req, struct scsi_result *res)
{
	struct scsi_extent ext;

	scsi_extent_decode(req->cdb, &ext);
	scsi_extent_check(req->disk, &ext, res);
}

static void scsi_run_read(const struct scsi_request *req, struct scsi_result *res)
{
	struct scsi_extent ext;
	uint32_t bytes;

	/* RDPROTECT: the disk has no protection information. READ(6) has no such field. */
	if (req->cdb[0] != OP_READ_6 && (req->cdb[1] & 0xe0)) {
		scsi_fail_cdb(res, 1, 7);
		return;
	}
	scsi_extent_decode(req->cdb, &ext);
	if (scsi_extent_check(req->disk, &ext, res) < 0 ||
	    scsi_extent_bytes(req->disk, &ext, res, &bytes) < 0 || bytes == 0)
		return;
	res->action = SCSI_ACT_READ;
	res->read_offset = ext.lba * req->disk->block_size;
	res->data_len = bytes;
}

/* Validates a VERIFY CDB. BYTCHK 00b checks the range only, 01b compares Data-Out;
 * 10b is reserved and 11b (one block against all) is not supported: both INVALID FIELD. */
static int scsi_verify_decode(const struct scsi_disk *disk, const uint8_t *cdb,
			      struct scsi_result *res, struct scsi_extent *ext, uint32_t *bytes)
{
	unsigned bytchk = (cdb[1] >> 1) & 3;

	if (cdb[1] & 0xe0) {		/* VRPROTECT */
		scsi_fail_cdb(res, 1, 7);
		return -1;
	}
	if (bytchk > 1) {
		scsi_fail_cdb(res, 1, 2);
		return -1;
	}
	scsi_extent_decode(cdb, ext);
	if (scsi_extent_check(disk, ext, res) < 0)
		return -1;
	*bytes = 0;
	if (bytchk == 1 && scsi_extent_bytes(disk, ext, res, bytes) < 0)
		return -1;
	return 0;
}

static uint32_t scsi_verify_dataout(const struct scsi_disk *disk, const uint8_t *cdb)
{
	struct scsi_extent ext;
	uint32_t bytes;

	if (scsi_verify_decode(disk, cdb, NULL, &ext, &bytes) < 0)
		return 0;
	return bytes;
}

static void scsi_run_verify(const struct scsi_request *req, struct scsi_result *res)
{
	struct scsi_extent ext;
	uint32_t bytes;

	if (scsi_verify_decode(req->disk, req->cdb, res, &ext, &bytes) < 0 || bytes == 0)
		return;
	res->action = SCSI_ACT_COMPARE;
	res->read_offset = ext.lba * req->disk->block_size;
	res->data_len = bytes;
}

/* We keep no deferred errors, so the answer is NO SENSE (or LU NOT SUPPORTED off LUN 0). */
static void scsi_run_request_sense(const struct scsi_request *req, struct scsi_result *res)
{
	uint8_t *b = res->buf;
	uint8_t key = SENSE_NO_SENSE, asc = ASC_NONE;
	uint32_t len;

	if (req->lun != 0) {
		key = SENSE_ILLEGAL_REQUEST;
		asc = ASC_LU_NOT_SUPPORTED;
	}
	memset(b, 0, SCSI_SENSE_LEN);
	if (req->cdb[1] & 0x01) {	/* DESC: descriptor format, no descriptors */
		b[0] = 0x72;
		b[1] = key;
		b[2] = asc;
		len = 8;
	} else {
		b[0] = 0x70;
		b[2] = key;
		b[7] = SCSI_SENSE_LEN - 8;
		b[12] = asc;
		len = SCSI_SENSE_LEN;
	}
	scsi_reply(res, len, req->cdb[4]);
}

static uint32_t scsi_build_inquiry_std(const struct scsi_disk *disk, uint8_t *b)
{
	size_t i;

	memset(b, 0, INQUIRY_STD_LEN);
	b[2] = 0x06;			/* SPC-4 */
	b[3] = 0x10 | 0x02;		/* HiSup, response data format 2 */
	b[4] = INQUIRY_STD_LEN - 5;
	b[7] = 0x02;			/* CmdQue */
	memcpy(b + 8, INQUIRY_VENDOR, 8);
	scsi_put_ascii(b + 16, disk->product, 16, true);
	memcpy(b + 32, INQUIRY_REVISION, 4);
	for (i = 0; i < sizeof scsi_version_descriptors / sizeof scsi_version_descriptors[0]; i++)
		scsi_put_be16(b + 58 + 2 * i, scsi_version_descriptors[i]);
	return INQUIRY_STD_LEN;
}

static uint32_t scsi_build_vpd_serial(const struct scsi_disk *disk, uint8_t *b)
{
	size_t n;

	memset(b, 0, 4);
	b[1] = 0x80;
	n = scsi_put_ascii(b + 4, disk->serial, sizeof disk->serial - 1, false);
	b[3] = (uint8_t)n;
	return 4 + (uint32_t)n;
}

/* Device identification: an NAA designator (Windows requires one) and a T10 vendor ID.
 * An NAA 6 value is the high half of a 16-byte Registered Extended designator. */
static uint32_t scsi_build_vpd_identification(const struct scsi_disk *disk, uint8_t *b)
{
	uint8_t *p = b + 4;
	unsigned naa_len = (disk->naa >> 60) == 6 ? 16 : 8;
	size_t n;

	memset(b, 0, 4 + 4 + 16 + 4 + 8 + sizeof disk->serial);
	b[1] = 0x83;
	p[0] = 0x01;			/* protocol 0, code set binary */
	p[1] = 0x03;			/* association: logical unit, type NAA */
	p[3] = (uint8_t)naa_len;
	scsi_put_be64(p + 4, disk->naa);
	p += 4 + naa_len;

	p[0] = 0x02;			/* code set ASCII */
	p[1] = 0x01;			/* association: logical unit, type T10 vendor ID */
	memcpy(p + 4, INQUIRY_VENDOR, 8);
	n = scsi_put_ascii(p + 12, disk->serial, sizeof disk->serial - 1, false);
	p[3] = (uint8_t)(8 + n);
	p += 12 + n;

	scsi_put_be16(b + 2, (uint16_t)(p - b - 4));
	return (uint32_t)(p - b);
}

static uint32_t scsi_build_vpd_block_limits(const struct scsi_disk *disk, uint8_t *b)
{
	uint32_t bs = disk->block_size ? disk->block_size : 1;
	uint32_t granularity = SCSI_OPT_GRANULARITY / bs;

	memset(b, 0, 4 + VPD_SBC_PAGE_LEN);
	b[1] = 0xb0;
	scsi_put_be16(b + 2, VPD_SBC_PAGE_LEN);
	scsi_put_be16(b + 6, (uint16_t)(granularity ? granularity : 1));
	scsi_put_be32(b + 8, SCSI_MAX_TRANSFER / bs);
	/* maximum unmap LBA count and descriptor count stay 0: no UNMAP */
	return 4 + VPD_SBC_PAGE_LEN;
}

static uint32_t scsi_build_vpd_characteristics(uint8_t *b)
{
	memset(b, 0, 4 + VPD_SBC_PAGE_LEN);
	b[1] = 0xb1;
	scsi_put_be16(b + 2, VPD_SBC_PAGE_LEN);
	scsi_put_be16(b + 4, 1);	/* medium rotation rate: non-rotating */
	return 4 + VPD_SBC_PAGE_LEN;
}

static uint32_t scsi_build_vpd_provisioning(uint8_t *b)
{
	memset(b, 0, 8);
	b[1] = 0xb2;
	scsi_put_be16(b + 2, 4);	/* no LBPU/LBPWS, provisioning type 0: full */
	return 8;
}

/* Builds one VPD page into b; returns its length, or 0 for a page we do not have. */
static uint32_t scsi_build_vpd(const struct scsi_disk *disk, uint8_t page, uint8_t *b)
{
	switch (page) {
	case 0x00:
		memset(b, 0, 4);
		b[3] = sizeof scsi_vpd_pages;
		memcpy(b + 4, scsi_vpd_pages, sizeof scsi_vpd_pages);
		return 4 + sizeof scsi_vpd_pages;
	case 0x80:
		return scsi_build_vpd_serial(disk, b);
	case 0x83:
		return scsi_build_vpd_identification(disk, b);
	case 0xb0:
		return scsi_build_vpd_block_limits(disk, b);
	case 0xb1:
		return scsi_build_vpd_characteristics(b);
	case 0xb2:
		return scsi_build_vpd_provisioning(b);
	default:
		return 0;
	}
}

/* INQUIRY. Off LUN 0 the standard data says "no device here" (qualifier 011b, type 1Fh);
 * VPD pages of a missing LUN are refused with LOGICAL UNIT NOT SUPPORTED. */
static void scsi_run_inquiry(const struct scsi_request *req, struct scsi_result *res)
{
	const uint8_t *cdb = req->cdb;
	uint32_t len;

	if (cdb[1] & 0x02) {		/* CmdDt, obsolete */
		scsi_fail_cdb(res, 1, 1);
		return;
	}
	if (!(cdb[1] & 0x01)) {
		if (cdb[2] != 0) {
			scsi_fail_cdb(res, 2, NO_BIT);
			return;
		}
		len = scsi_build_inquiry_std(req->disk, res->buf);
		if (req->lun != 0)
			res->buf[0] = 0x7f;
	} else {
		if (req->lun != 0) {
			scsi_fail(res, SENSE_ILLEGAL_REQUEST, ASC_LU_NOT_SUPPORTED);
			return;
		}
		len = scsi_build_vpd(req->disk, cdb[2], res->buf);
		if (len == 0) {
			scsi_fail_cdb(res, 2, NO_BIT);
			return;
		}
	}
	scsi_reply(res, len, scsi_get_be16(cdb + 3));
}

/* Caching mode page: WCE 0 (nothing is written), RCD 0. Changeable values are all zero. */
static uint32_t scsi_build_mode_caching(uint8_t *p)
{
	memset(p, 0, 20);
	p[0] = 0x08;
	p[1] = 20 - 2;
	return 20;
}

/* Control mode page: fixed-format sense (D_SENSE 0), SWP 0 (WP in the header says
 * write-protected already), QErr 0, unlimited busy timeout. */
static uint32_t scsi_build_mode_control(uint8_t *p, bool changeable)
{
	memset(p, 0, 12);
	p[0] = 0x0a;
	p[1] = 12 - 2;
	if (!changeable)
		scsi_put_be16(p + 8, 0xffff);
	return 12;
}

/* MODE SENSE(6) and (10). Page 0x00 returns the header and block descriptor only: Linux sd
 * falls back to it to read the WP bit when 0x3F fails. Saved values are not supported. */
static void scsi_run_mode_sense(const struct scsi_request *req, struct scsi_result *res)
{
	const uint8_t *cdb = req->cdb;
	const struct scsi_disk *disk = req->disk;
	bool ten = cdb[0] == OP_MODE_SENSE_10;
	bool dbd = cdb[1] & 0x08;
	bool llbaa = ten && (cdb[1] & 0x10);
	unsigned pc = cdb[2] >> 6, page = cdb[2] & 0x3f, subpage = cdb[3];
	uint32_t hdr = ten ? 8 : 4, bdlen = 0, len;
	uint8_t *b = res->buf, *p;

	if (pc == 3) {
		scsi_fail_field(res, ASC_SAVING_NOT_SUPPORTED, 2, 7);
		return;
	}
	if (page != 0x00 && page != 0x08 && page != 0x0a && page != 0x3f) {
		scsi_fail_cdb(res, 2, 5);
		return;
	}
	if (subpage != 0 && !(page == 0x3f && subpage == 0xff)) {
		scsi_fail_cdb(res, 3, NO_BIT);
		return;
	}
	memset(b, 0, hdr + 16);
	p = b + hdr;
	if (!dbd && llbaa) {
		b[4] = 0x01;		/* LONGLBA */
		scsi_put_be64(p, disk->nblocks);
		scsi_put_be32(p + 12, disk->block_size);
		bdlen = 16;
	} else if (!dbd) {
		scsi_put_be32(p, disk->nblocks > 0xffffffffu ? 0xffffffffu
							    : (uint32_t)disk->nblocks);
		scsi_put_be32(p + 4, disk->block_size & 0xffffff);	/* byte 4: density 0 */
		bdlen = 8;
	}
	p += bdlen;
	if (page == 0x08 || page == 0x3f)
		p += scsi_build_mode_caching(p);
	if (page == 0x0a || page == 0x3f)
		p += scsi_build_mode_control(p, pc == 1);
	len = (uint32_t)(p - b);
	if (ten) {
		scsi_put_be16(b, (uint16_t)(len - 2));
		b[3] = MODE_DSP_WP | MODE_DSP_DPOFUA;
		scsi_put_be16(b + 6, (uint16_t)bdlen);
		scsi_reply(res, len, scsi_get_be16(cdb + 7));
	} else {
		b[0] = (uint8_t)(len - 1);
		b[2] = MODE_DSP_WP | MODE_DSP_DPOFUA;
		b[3] = (uint8_t)bdlen;
		scsi_reply(res, len, cdb[4]);
	}
}

/* READ CAPACITY(10). PMI 0 with a nonzero LBA is INVALID FIELD IN CDB (SBC-3 5.15). */
static void scsi_run_read_capacity10(const struct scsi_request *req, struct scsi_result *res)
{
	uint64_t last = scsi_last_lba(req->disk);

	if (!(req->cdb[8] & 0x01) && scsi_get_be32(req->cdb + 2) != 0) {
		scsi_fail_cdb(res, 2, NO_BIT);
		return;
	}
	scsi_put_be32(res->buf, last > 0xffffffffu ? 0xffffffffu : (uint32_t)last);
	scsi_put_be32(res->buf + 4, req->disk->block_size);
	scsi_reply(res, 8, 8);
}

/* READ CAPACITY(16): no protection, LBPME 0, one logical block per physical block. */
static void scsi_run_read_capacity16(const struct scsi_request *req, struct scsi_result *res)
{
	memset(res->buf, 0, 32);
	scsi_put_be64(res->buf, scsi_last_lba(req->disk));
	scsi_put_be32(res->buf + 8, req->disk->block_size);
	scsi_reply(res, 32, scsi_get_be32(req->cdb + 10));
}

/* REPORT LUNS: LUN 0 only. SELECT REPORT 01h asks for well-known LUs, of which we have
 * none; allocation lengths under 16 are refused as SPC-3 allows (and tgt does). */
static void scsi_run_report_luns(const struct scsi_request *req, struct scsi_result *res)
{
	uint8_t select = req->cdb[2];
	uint32_t alloc = scsi_get_be32(req->cdb + 6);
	uint32_t nluns = select == 0x01 ? 0 : 1;

	if (select > 0x02) {
		scsi_fail_cdb(res, 2, NO_BIT);
		return;
	}
	if (alloc < 16) {
		scsi_fail_cdb(res, 6, NO_BIT);
		return;
	}
	memset(res->buf, 0, 16);
	scsi_put_be32(res->buf, nluns * 8);
	scsi_reply(res, 8 + nluns * 8, alloc);
}

/* Command timeouts descriptor: nominal time unspecified, recommended timeout. */
static void scsi_build_rsoc_timeouts(uint8_t *p)
{
	memset(p, 0, RSOC_TIMEOUT_LEN);
	scsi_put_be16(p, RSOC_TIMEOUT_LEN - 2);
	scsi_put_be32(p + 8, RSOC_RECOMMENDED_TIMEOUT);
}

/* Finds the row for opcode (and service action when match_sa); NULL if absent. */
static const struct scsi_command *scsi_command_lookup(const struct scsi_command *table, size_t n,
						      uint8_t opcode, bool match_sa, uint16_t sa)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (table[i].opcode == opcode && (!match_sa || table[i].service_action == sa))
			return &table[i];
	return NULL;
}

/* REPORT SUPPORTED OPERATION CODES, options 000b (all), 001b (opcode), 010b (opcode and
 * service action), 011b (service action only if the opcode has them). */
static void scsi_run_report_opcodes(const struct scsi_request *req, struct scsi_result *res)
{
	const uint8_t *cdb = req->cdb;
	bool rctd = cdb[2] & 0x80;
	unsigned options = cdb[2] & 0x07;
	const struct scsi_command *cmd, *first;
	uint8_t *b = res->buf, *p = b + 4;
	size_t i;

	if (options == 0) {
		for (i = 0; i < req->ncommands; i++) {
			cmd = &req->commands[i];
			memset(p, 0, RSOC_DESC_LEN);
			p[0] = cmd->opcode;
			scsi_put_be16(p + 2, cmd->has_sa ? cmd->service_action : 0);
			p[5] = (uint8_t)((rctd ? 0x02 : 0) | (cmd->has_sa ? 0x01 : 0));
			scsi_put_be16(p + 6, cmd->cdb_len);
			p += RSOC_DESC_LEN;
			if (rctd) {
				scsi_build_rsoc_timeouts(p);
				p += RSOC_TIMEOUT_LEN;
			}
		}
		scsi_put_be32(b, (uint32_t)(p - b - 4));
		scsi_reply(res, (uint32_t)(p - b), scsi_get_be32(cdb + 6));
		return;
	}
	if (options > 3) {
		scsi_fail_cdb(res, 2, 2);
		return;
	}
	first = scsi_command_lookup(req->commands, req->ncommands, cdb[3], false, 0);
	if (first && ((options == 1 && first->has_sa) || (options == 2 && !first->has_sa))) {
		scsi_fail_cdb(res, 2, 2);
		return;
	}
	cmd = first;
	if (first && first->has_sa)
		cmd = scsi_command_lookup(req->commands, req->ncommands, cdb[3], true,
					  scsi_get_be16(cdb + 4));
	memset(b, 0, 4);
	if (!cmd) {
		b[1] = RSOC_NOT_SUPPORTED;
		scsi_reply(res, 4, scsi_get_be32(cdb + 6));
		return;
	}
	b[1] = (uint8_t)((rctd ? 0x80 : 0) | RSOC_SUPPORTED);
	scsi_put_be16(b + 2, cmd->cdb_len);
	memcpy(p, cmd->usage, cmd->cdb_len);
	p += cmd->cdb_len;
	if (rctd) {
		scsi_build_rsoc_timeouts(p);
		p += RSOC_TIMEOUT_LEN;
	}
	scsi_reply(res, (uint32_t)(p - b), scsi_get_be32(cdb + 6));
}

/* The commands we implement, by opcode. Usage bits mark the fields the device server
 * evaluates; DPO/FUA are set where accepted (libiscsi checks them against DPOFUA). */
static const struct scsi_command scsi_commands[] = {
	{ OP_TEST_UNIT_READY, 0, false, false, 6,
	  { 0x00, 0x00, 0x00, 0x00, 0x00, 0x00 }, scsi_run_good, NULL },
	{ OP_REQUEST_SENSE, 0, false, true, 6,
	  { 0x03, 0x01, 0x00, 0x00, 0xff, 0x00 }, scsi_run_request_sense, NULL },
	{ OP_FORMAT_UNIT, 0, false, false, 6,
	  { 0x04, 0xff, 0x00, 0x00, 0x00, 0x00 }, scsi_run_write, NULL },
	{ OP_REASSIGN_BLOCKS, 0, false, false, 6,
	  { 0x07, 0x03, 0x00, 0x00, 0x00, 0x00 }, scsi_run_write, NULL },
	{ OP_READ_6, 0, false, false, 6,
	  { 0x08, 0x1f, 0xff, 0xff, 0xff, 0x00 }, scsi_run_read, NULL },
	{ OP_WRITE_6, 0, false, false, 6,
	  { 0x0a, 0x1f, 0xff, 0xff, 0xff, 0x00 }, scsi_run_write, NULL },
	{ OP_INQUIRY, 0, false, true, 6,
	  { 0x12, 0x01, 0xff, 0xff, 0xff, 0x00 }, scsi_run_inquiry, NULL },
	{ OP_MODE_SENSE_6, 0, false, false, 6,
	  { 0x1a, 0x08, 0xff, 0xff, 0xff, 0x00 }, scsi_run_mode_sense, NULL },
	{ OP_START_STOP_UNIT, 0, false, false, 6,
	  { 0x1b, 0x01, 0x00, 0x0f, 0xf7, 0x00 }, scsi_run_good, NULL },
	{ OP_PREVENT_ALLOW, 0, false, false, 6,
	  { 0x1e, 0x00, 0x00, 0x00, 0x03, 0x00 }, scsi_run_good, NULL },
	{ OP_READ_CAPACITY_10, 0, false, false, 10,
	  { 0x25, 0x00, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x01, 0x00 },
	  scsi_run_read_capacity10, NULL },
	{ OP_READ_10, 0, false, false, 10,
	  { 0x28, 0x18, 0xff, 0xff, 0xff, 0xff, 0x00, 0xff, 0xff, 0x00 }, scsi_run_read, NULL },
	{ OP_WRITE_10, 0, false, false, 10,
	  { 0x2a, 0x18, 0xff, 0xff, 0xff, 0xff, 0x00, 0xff, 0xff, 0x00 }, scsi_run_write, NULL },
	{ OP_WRITE_VERIFY_10, 0, false, false, 10,
	  { 0x2e, 0x16, 0xff, 0xff, 0xff, 0xff, 0x00, 0xff, 0xff, 0x00 }, scsi_run_write, NULL },
	{ OP_VERIFY_10, 0, false, false, 10,
	  { 0x2f, 0x16, 0xff, 0xff, 0xff, 0xff, 0x00, 0xff, 0xff, 0x00 },
	  scsi_run_verify, scsi_verify_dataout },
	{ OP_PRE_FETCH_10, 0, false, false, 10,
	  { 0x34, 0x02, 0xff, 0xff, 0xff, 0xff, 0x00, 0xff, 0xff, 0x00 }, scsi_run_range, NULL },
	{ OP_SYNC_CACHE_10, 0, false, false, 10,
	  { 0x35, 0x02, 0xff, 0xff, 0xff, 0xff, 0x00, 0xff, 0xff, 0x00 }, scsi_run_range, NULL },
	{ OP_WRITE_LONG_10, 0, false, false, 10,
	  { 0x3f, 0xe0, 0xff, 0xff, 0xff, 0xff, 0x00, 0xff, 0xff, 0x00 }, scsi_run_write, NULL },
	{ OP_WRITE_SAME_10, 0, false, false, 10,
	  { 0x41, 0x08, 0xff, 0xff, 0xff, 0xff, 0x00, 0xff, 0xff, 0x00 }, scsi_run_write, NULL },
	{ OP_UNMAP, 0, false, false, 10,
	  { 0x42, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0x00 }, scsi_run_write, NULL },
	{ OP_XDWRITE_10, 0, false, false, 10,
	  { 0x50, 0x1c, 0xff, 0xff, 0xff, 0xff, 0x00, 0xff, 0xff, 0x00 }, scsi_run_write, NULL },
	{ OP_XPWRITE_10, 0, false, false, 10,
	  { 0x51, 0x18, 0xff, 0xff, 0xff, 0xff, 0x00, 0xff, 0xff, 0x00 }, scsi_run_write, NULL },
	{ OP_XDWRITEREAD_10, 0, false, false, 10,
	  { 0x53, 0x1c, 0xff, 0xff, 0xff, 0xff, 0x00, 0xff, 0xff, 0x00 }, scsi_run_write, NULL },
	{ OP_MODE_SENSE_10, 0, false, false, 10,
	  { 0x5a, 0x18, 0xff, 0xff, 0x00, 0x00, 0x00, 0xff, 0xff, 0x00 }, scsi_run_mode_sense, NULL },
	{ OP_READ_16, 0, false, false, 16,
	  { 0x88, 0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	    0x00, 0x00 }, scsi_run_read, NULL },
	{ OP_COMPARE_AND_WRITE, 0, false, false, 16,
	  { 0x89, 0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0xff,
	    0x00, 0x00 }, scsi_run_write, NULL },
	{ OP_WRITE_16, 0, false, false, 16,
	  { 0x8a, 0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	    0x00, 0x00 }, scsi_run_write, NULL },
	{ OP_ORWRITE_16, 0, false, false, 16,
	  { 0x8b, 0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	    0x00, 0x00 }, scsi_run_write, NULL },
	{ OP_WRITE_VERIFY_16, 0, false, false, 16,
	  { 0x8e, 0x16, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	    0x00, 0x00 }, scsi_run_write, NULL },
	{ OP_VERIFY_16, 0, false, false, 16,
	  { 0x8f, 0x16, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	    0x00, 0x00 }, scsi_run_verify, scsi_verify_dataout },
	{ OP_PRE_FETCH_16, 0, false, false, 16,
	  { 0x90, 0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	    0x00, 0x00 }, scsi_run_range, NULL },
	{ OP_SYNC_CACHE_16, 0, false, false, 16,
	  { 0x91, 0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	    0x00, 0x00 }, scsi_run_range, NULL },
	{ OP_WRITE_SAME_16, 0, false, false, 16,
	  { 0x93, 0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	    0x00, 0x00 }, scsi_run_write, NULL },
	{ OP_WRITE_ATOMIC_16, 0, false, false, 16,
	  { 0x9c, 0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0xff, 0xff,
	    0x00, 0x00 }, scsi_run_write, NULL },
	{ OP_SERVICE_ACTION_IN_16, SA_READ_CAPACITY_16, true, false, 16,
	  { 0x9e, SA_READ_CAPACITY_16, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff,
	    0xff, 0xff, 0x00, 0x00 }, scsi_run_read_capacity16, NULL },
	{ OP_SERVICE_ACTION_OUT_16, SA_WRITE_LONG_16, true, false, 16,
	  { 0x9f, 0xe0 | SA_WRITE_LONG_16, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00,
	    0x00, 0xff, 0xff, 0x00, 0x00 }, scsi_run_write, NULL },
	{ OP_REPORT_LUNS, 0, false, true, 12,
	  { 0xa0, 0x00, 0xff, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00 },
	  scsi_run_report_luns, NULL },
	{ OP_MAINTENANCE_IN, SA_REPORT_SUPPORTED_OPCODES, true, false, 12,
	  { 0xa3, SA_REPORT_SUPPORTED_OPCODES, 0x87, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	    0x00, 0x00 }, scsi_run_report_opcodes, NULL },
	{ OP_READ_12, 0, false, false, 12,
	  { 0xa8, 0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00 },
	  scsi_run_read, NULL },
	{ OP_WRITE_12, 0, false, false, 12,
	  { 0xaa, 0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00 },
	  scsi_run_write, NULL },
	{ OP_WRITE_VERIFY_12, 0, false, false, 12,
	  { 0xae, 0x16, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00 },
	  scsi_run_write, NULL },
	{ OP_VERIFY_12, 0, false, false, 12,
	  { 0xaf, 0x16, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00 },
	  scsi_run_verify, scsi_verify_dataout },
};

#define SCSI_NCOMMANDS (sizeof scsi_commands / sizeof scsi_commands[0])

_Static_assert(4 + SCSI_NCOMMANDS * (RSOC_DESC_LEN + RSOC_TIMEOUT_LEN) <= SCSI_BUF_MAX,
	       "REPORT SUPPORTED OPERATION CODES must fit res->buf");
_Static_assert(INQUIRY_STD_LEN <= SCSI_BUF_MAX && SCSI_SENSE_LEN == 18,
	       "fixed-format sense is 18 bytes");

/* Finds the row a CDB dispatches to, after the checks every command shares: LUN, CDB
 * length, service action, NACA. On failure writes sense (if res) and returns NULL. */
static const struct scsi_command *scsi_command_find(const uint8_t *cdb, size_t cdb_len,
						    uint64_t lun, struct scsi_result *res)
{
	const struct scsi_command *first, *cmd;

	if (!cdb || cdb_len == 0) {
		scsi_fail(res, SENSE_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
		return NULL;
	}
	first = scsi_command_lookup(scsi_commands, SCSI_NCOMMANDS, cdb[0], false, 0);
	if (lun != 0 && !(first && first->any_lun)) {
		scsi_fail(res, SENSE_ILLEGAL_REQUEST, ASC_LU_NOT_SUPPORTED);
		return NULL;
	}
	if (!first) {
		scsi_fail(res, SENSE_ILLEGAL_REQUEST, ASC_INVALID_OPCODE);
		return NULL;
	}
	if (cdb_len < first->cdb_len) {
		scsi_fail(res, SENSE_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
		return NULL;
	}
	cmd = first;
	if (first->has_sa) {
		cmd = scsi_command_lookup(scsi_commands, SCSI_NCOMMANDS, cdb[0], true,
					  cdb[1] & 0x1f);
		if (!cmd) {
			scsi_fail_cdb(res, 1, 4);
			return NULL;
		}
	}
	if (cdb[cmd->cdb_len - 1] & CONTROL_NACA) {
		scsi_fail_cdb(res, cmd->cdb_len - 1u, 2);
		return NULL;
	}
	return cmd;
}

void scsi_set_sense(struct scsi_result *res, uint8_t key, uint8_t asc, uint8_t ascq)
{
	res->action = SCSI_ACT_STATUS;
	res->status = SCSI_STATUS_CHECK_CONDITION;
	res->data_len = 0;
	res->read_offset = 0;
	memset(res->sense, 0, sizeof res->sense);
	res->sense[0] = 0x70;		/* current error, fixed format */
	res->sense[2] = key & 0x0f;
	res->sense[7] = SCSI_SENSE_LEN - 8;
	res->sense[12] = asc;
	res->sense[13] = ascq;
	res->sense_len = SCSI_SENSE_LEN;
}

uint32_t scsi_dataout_len(const struct scsi_disk *disk, const uint8_t *cdb, size_t cdb_len)
{
	const struct scsi_command *cmd = scsi_command_find(cdb, cdb_len, 0, NULL);

	if (!cmd || !cmd->dataout)
		return 0;
	return cmd->dataout(disk, cdb);
}

void scsi_execute(const struct scsi_disk *disk, uint64_t lun, const uint8_t *cdb,
		  size_t cdb_len, struct scsi_result *res)
{
	const struct scsi_command *cmd;
	struct scsi_request req;

	scsi_result_reset(res);
	cmd = scsi_command_find(cdb, cdb_len, lun, res);
	if (!cmd)
		return;
	req.disk = disk;
	req.cdb = cdb;
	req.lun = lun;
	req.commands = scsi_commands;
	req.ncommands = SCSI_NCOMMANDS;
	cmd->run(&req, res);
}

void scsi_compare_finish(const uint8_t *image, const uint8_t *dataout, uint32_t len,
			 struct scsi_result *res)
{
	uint32_t i;

	scsi_result_reset(res);
	for (i = 0; i < len; i++)
		if (image[i] != dataout[i])
			break;
	if (i == len)
		return;
	/* SBC-3: INFORMATION holds the offset of the first differing byte in the Data-Out. */
	scsi_set_sense(res, SENSE_MISCOMPARE, ASC_MISCOMPARE_DURING_VERIFY, 0);
	res->sense[0] |= 0x80;		/* VALID */
	scsi_put_be32(&res->sense[3], i);
}
