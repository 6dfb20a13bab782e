/* libFuzzer harness: SCSI CDB emulation (iscsi/scsi.c). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "iscsi/scsi.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct scsi_result res;
	struct scsi_disk disk = {
		.nblocks = 131072 + 3, .block_size = 512, .naa = 0x6001405123456789ull,
		.serial = "0123456789abcdef", .product = "virtman disk",
	};
	uint8_t *cdb;

	if (size < 1 || size > 32)
		return 0;
	/* The first byte picks the LUN; the rest is the CDB, in its own allocation so
	 * that any read past its end is caught. */
	cdb = malloc(size - 1 ? size - 1 : 1);
	if (!cdb)
		return 0;
	memcpy(cdb, data + 1, size - 1);
	scsi_dataout_len(&disk, cdb, size - 1);
	scsi_execute(&disk, data[0] & 3, cdb, size - 1, &res);
	if (res.data_len > SCSI_BUF_MAX && res.action == SCSI_ACT_STATUS)
		abort();
	if (res.action == SCSI_ACT_READ &&
	    (res.read_offset + res.data_len > disk.nblocks * disk.block_size))
		abort();
	if (res.sense_len > SCSI_SENSE_LEN)
		abort();
	free(cdb);
	return 0;
}
