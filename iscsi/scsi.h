/* SCSI emulation of a read-only direct-access disk (SPC-4 / SBC-3 subset). */
#ifndef VIRTMAN_SCSI_H
#define VIRTMAN_SCSI_H

#include <stddef.h>
#include <stdint.h>

/* SAM status codes */
#define SCSI_STATUS_GOOD 0x00
#define SCSI_STATUS_CHECK_CONDITION 0x02

/* Sense keys */
#define SENSE_NO_SENSE 0x00
#define SENSE_NOT_READY 0x02
#define SENSE_MEDIUM_ERROR 0x03
#define SENSE_ILLEGAL_REQUEST 0x05
#define SENSE_UNIT_ATTENTION 0x06
#define SENSE_DATA_PROTECT 0x07
#define SENSE_ABORTED_COMMAND 0x0b
#define SENSE_MISCOMPARE 0x0e

#define SCSI_SENSE_LEN 18	/* fixed-format sense, response code 0x70 */
#define SCSI_BUF_MAX 4096	/* largest non-READ payload the emulation builds */

/* What the disk looks like to initiators. Filled once at start-up. */
struct scsi_disk {
	uint64_t nblocks;	/* number of logical blocks */
	uint32_t block_size;	/* bytes per logical block (512) */
	uint64_t naa;		/* NAA IEEE registered identifier (type 6 high half, 0x6...) */
	char serial[33];	/* unit serial number, VPD 0x80, NUL-terminated */
	char product[17];	/* INQUIRY product identification, NUL-terminated */
};

enum scsi_action {
	SCSI_ACT_STATUS,	/* send status (and buf[0..data_len) as Data-In if data_len) */
	SCSI_ACT_READ,		/* send image bytes [read_offset, +data_len) as Data-In, status GOOD */
	SCSI_ACT_COMPARE,	/* read image [read_offset, +data_len), compare with Data-Out */
};

/* The outcome of one command, filled by scsi_execute. */
struct scsi_result {
	enum scsi_action action;
	uint8_t status;			/* SCSI_STATUS_* (meaningful for SCSI_ACT_STATUS) */
	uint8_t sense_len;		/* 0 or SCSI_SENSE_LEN */
	uint8_t sense[SCSI_SENSE_LEN];
	uint32_t data_len;		/* bytes the command transfers to the initiator */
	uint64_t read_offset;		/* byte offset in the image for READ/COMPARE */
	uint8_t buf[SCSI_BUF_MAX];	/* payload for SCSI_ACT_STATUS with data */
};

/* Bytes of Data-Out the command needs before it can execute (VERIFY with BYTCHK);
 * 0 for every other command, including writes, which are refused without data. */
uint32_t scsi_dataout_len(const struct scsi_disk *disk, const uint8_t *cdb, size_t cdb_len);

/* Executes one CDB addressed to `lun`. Never fails: errors become CHECK CONDITION. */
void scsi_execute(const struct scsi_disk *disk, uint64_t lun, const uint8_t *cdb,
		  size_t cdb_len, struct scsi_result *res);

/* Finishes SCSI_ACT_COMPARE: image bytes against Data-Out; GOOD or MISCOMPARE. */
void scsi_compare_finish(const uint8_t *image, const uint8_t *dataout, uint32_t len,
			 struct scsi_result *res);

/* Fills fixed-format sense data into res and sets CHECK CONDITION. */
void scsi_set_sense(struct scsi_result *res, uint8_t key, uint8_t asc, uint8_t ascq);

#endif
