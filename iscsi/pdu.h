/* iSCSI PDU wire formats (RFC 7143 §11), shared by the target and the initiator. */
#ifndef VIRTMAN_ISCSI_PDU_H
#define VIRTMAN_ISCSI_PDU_H

#include <stdint.h>

#define ISCSI_BHS_LEN 48
#define ISCSI_DIGEST_LEN 4
#define ISCSI_RSVD_TAG 0xffffffffu

/* Opcodes, initiator to target */
#define ISCSI_OP_NOP_OUT 0x00
#define ISCSI_OP_SCSI_CMD 0x01
#define ISCSI_OP_TMF_REQ 0x02
#define ISCSI_OP_LOGIN_REQ 0x03
#define ISCSI_OP_TEXT_REQ 0x04
#define ISCSI_OP_DATA_OUT 0x05
#define ISCSI_OP_LOGOUT_REQ 0x06
#define ISCSI_OP_SNACK 0x10
/* Opcodes, target to initiator */
#define ISCSI_OP_NOP_IN 0x20
#define ISCSI_OP_SCSI_RSP 0x21
#define ISCSI_OP_TMF_RSP 0x22
#define ISCSI_OP_LOGIN_RSP 0x23
#define ISCSI_OP_TEXT_RSP 0x24
#define ISCSI_OP_DATA_IN 0x25
#define ISCSI_OP_LOGOUT_RSP 0x26
#define ISCSI_OP_R2T 0x31
#define ISCSI_OP_ASYNC 0x32
#define ISCSI_OP_REJECT 0x3f

#define ISCSI_OP_MASK 0x3f
#define ISCSI_OP_IMMEDIATE 0x40

/* Flags byte */
#define ISCSI_FLAG_FINAL 0x80
#define ISCSI_FLAG_CMD_READ 0x40
#define ISCSI_FLAG_CMD_WRITE 0x20
#define ISCSI_FLAG_DATA_ACK 0x40
#define ISCSI_FLAG_DATA_OVERFLOW 0x04
#define ISCSI_FLAG_DATA_UNDERFLOW 0x02
#define ISCSI_FLAG_DATA_STATUS 0x01
#define ISCSI_FLAG_RSP_OVERFLOW 0x04
#define ISCSI_FLAG_RSP_UNDERFLOW 0x02
#define ISCSI_FLAG_LOGIN_TRANSIT 0x80
#define ISCSI_FLAG_CONTINUE 0x40
#define ISCSI_LOGIN_CSG(f) (((f) >> 2) & 3)
#define ISCSI_LOGIN_NSG(f) ((f) & 3)

/* Login stages */
#define ISCSI_STAGE_SECURITY 0
#define ISCSI_STAGE_OPERATIONAL 1
#define ISCSI_STAGE_FULL_FEATURE 3

/* Login status: class << 8 | detail */
#define ISCSI_LOGIN_OK 0x0000
#define ISCSI_LOGIN_INITIATOR_ERROR 0x0200
#define ISCSI_LOGIN_AUTH_FAILED 0x0201
#define ISCSI_LOGIN_NOT_FOUND 0x0203
#define ISCSI_LOGIN_UNSUPPORTED_VERSION 0x0205
#define ISCSI_LOGIN_TOO_MANY_CONNECTIONS 0x0206
#define ISCSI_LOGIN_MISSING_PARAMETER 0x0207
#define ISCSI_LOGIN_NO_SESSION 0x020a
#define ISCSI_LOGIN_INVALID_REQUEST 0x020b
#define ISCSI_LOGIN_TARGET_ERROR 0x0300

/* Reject reasons */
#define ISCSI_REJECT_DIGEST_ERROR 0x02
#define ISCSI_REJECT_SNACK 0x03
#define ISCSI_REJECT_PROTOCOL_ERROR 0x04
#define ISCSI_REJECT_NOT_SUPPORTED 0x05
#define ISCSI_REJECT_INVALID_FIELD 0x09

/* Task management functions and responses */
#define ISCSI_TMF_ABORT_TASK 1
#define ISCSI_TMF_ABORT_TASK_SET 2
#define ISCSI_TMF_CLEAR_ACA 3
#define ISCSI_TMF_CLEAR_TASK_SET 4
#define ISCSI_TMF_LUN_RESET 5
#define ISCSI_TMF_RSP_COMPLETE 0
#define ISCSI_TMF_RSP_NO_TASK 1
#define ISCSI_TMF_RSP_NOT_SUPPORTED 5

/* The common part every PDU starts with. */
struct iscsi_bhs {
	uint8_t opcode;
	uint8_t flags;
	uint8_t specific1[2];
	uint8_t ahs_len;	/* in 4-byte words */
	uint8_t data_len[3];	/* 24-bit, big-endian */
	uint8_t lun[8];
	uint32_t itt;
	uint8_t specific2[28];
};

struct iscsi_scsi_cmd {
	uint8_t opcode, flags, rsvd2[2];
	uint8_t ahs_len, data_len[3];
	uint8_t lun[8];
	uint32_t itt;
	uint32_t edtl;		/* expected data transfer length */
	uint32_t cmdsn;
	uint32_t exp_statsn;
	uint8_t cdb[16];
};

struct iscsi_scsi_rsp {
	uint8_t opcode, flags, response, status;
	uint8_t ahs_len, data_len[3];
	uint8_t rsvd8[8];
	uint32_t itt;
	uint32_t snack_tag;
	uint32_t statsn;
	uint32_t exp_cmdsn;
	uint32_t max_cmdsn;
	uint32_t exp_datasn;
	uint32_t bidi_residual;
	uint32_t residual;
};

struct iscsi_data {	/* Data-In and Data-Out */
	uint8_t opcode, flags, rsvd2, status;
	uint8_t ahs_len, data_len[3];
	uint8_t lun[8];
	uint32_t itt;
	uint32_t ttt;
	uint32_t statsn;	/* Data-Out: ExpStatSN */
	uint32_t exp_cmdsn;	/* Data-Out: reserved */
	uint32_t max_cmdsn;	/* Data-Out: reserved */
	uint32_t datasn;
	uint32_t offset;
	uint32_t residual;
};

struct iscsi_r2t {
	uint8_t opcode, flags, rsvd2[2];
	uint8_t ahs_len, data_len[3];
	uint8_t lun[8];
	uint32_t itt;
	uint32_t ttt;
	uint32_t statsn;
	uint32_t exp_cmdsn;
	uint32_t max_cmdsn;
	uint32_t r2tsn;
	uint32_t offset;
	uint32_t length;
};

struct iscsi_nop {	/* NOP-Out and NOP-In */
	uint8_t opcode, flags, rsvd2[2];
	uint8_t ahs_len, data_len[3];
	uint8_t lun[8];
	uint32_t itt;
	uint32_t ttt;
	uint32_t sn1;		/* Out: CmdSN; In: StatSN */
	uint32_t sn2;		/* Out: ExpStatSN; In: ExpCmdSN */
	uint32_t max_cmdsn;	/* In only */
	uint8_t rsvd36[12];
};

struct iscsi_login {	/* Login request and response */
	uint8_t opcode, flags, version_max, version_min;	/* rsp: max, active */
	uint8_t ahs_len, data_len[3];
	uint8_t isid[6];
	uint16_t tsih;
	uint32_t itt;
	uint16_t cid;		/* rsp: reserved */
	uint8_t rsvd22[2];
	uint32_t sn1;		/* req: CmdSN; rsp: StatSN */
	uint32_t sn2;		/* req: ExpStatSN; rsp: ExpCmdSN */
	uint32_t max_cmdsn;	/* rsp only */
	uint8_t status_class, status_detail, rsvd38[10];
};

struct iscsi_text {	/* Text request and response */
	uint8_t opcode, flags, rsvd2[2];
	uint8_t ahs_len, data_len[3];
	uint8_t lun[8];
	uint32_t itt;
	uint32_t ttt;
	uint32_t sn1;		/* req: CmdSN; rsp: StatSN */
	uint32_t sn2;		/* req: ExpStatSN; rsp: ExpCmdSN */
	uint32_t max_cmdsn;
	uint8_t rsvd36[12];
};

struct iscsi_tmf {	/* Task management request and response */
	uint8_t opcode, flags, response, rsvd3;	/* flags & 0x7f: function */
	uint8_t ahs_len, data_len[3];
	uint8_t lun[8];
	uint32_t itt;
	uint32_t rtt;		/* referenced task tag; rsp: reserved */
	uint32_t sn1;		/* req: CmdSN; rsp: StatSN */
	uint32_t sn2;		/* req: ExpStatSN; rsp: ExpCmdSN */
	uint32_t ref_cmdsn;	/* rsp: MaxCmdSN */
	uint32_t exp_datasn;
	uint8_t rsvd40[8];
};

struct iscsi_logout {	/* Logout request and response */
	uint8_t opcode, flags, response, rsvd3;	/* req flags & 0x7f: reason */
	uint8_t ahs_len, data_len[3];
	uint8_t rsvd8[8];
	uint32_t itt;
	uint16_t cid;
	uint8_t rsvd22[2];
	uint32_t sn1;		/* req: CmdSN; rsp: StatSN */
	uint32_t sn2;		/* req: ExpStatSN; rsp: ExpCmdSN */
	uint32_t max_cmdsn;
	uint8_t rsvd36[4];
	uint16_t time2wait, time2retain;
	uint8_t rsvd44[4];
};

struct iscsi_reject {
	uint8_t opcode, flags, reason, rsvd3;
	uint8_t ahs_len, data_len[3];
	uint8_t rsvd8[8];
	uint32_t tag;		/* 0xffffffff */
	uint8_t rsvd20[4];
	uint32_t statsn;
	uint32_t exp_cmdsn;
	uint32_t max_cmdsn;
	uint32_t datasn;
	uint8_t rsvd40[8];
};

_Static_assert(sizeof(struct iscsi_bhs) == ISCSI_BHS_LEN, "BHS size");
_Static_assert(sizeof(struct iscsi_scsi_cmd) == ISCSI_BHS_LEN, "SCSI command size");
_Static_assert(sizeof(struct iscsi_scsi_rsp) == ISCSI_BHS_LEN, "SCSI response size");
_Static_assert(sizeof(struct iscsi_data) == ISCSI_BHS_LEN, "Data-In/Out size");
_Static_assert(sizeof(struct iscsi_r2t) == ISCSI_BHS_LEN, "R2T size");
_Static_assert(sizeof(struct iscsi_nop) == ISCSI_BHS_LEN, "NOP size");
_Static_assert(sizeof(struct iscsi_login) == ISCSI_BHS_LEN, "login size");
_Static_assert(sizeof(struct iscsi_text) == ISCSI_BHS_LEN, "text size");
_Static_assert(sizeof(struct iscsi_tmf) == ISCSI_BHS_LEN, "TMF size");
_Static_assert(sizeof(struct iscsi_logout) == ISCSI_BHS_LEN, "logout size");
_Static_assert(sizeof(struct iscsi_reject) == ISCSI_BHS_LEN, "reject size");

/* One PDU's header area, viewable as any BHS type. */
union iscsi_hdr {
	struct iscsi_bhs bhs;
	struct iscsi_scsi_cmd cmd;
	struct iscsi_scsi_rsp rsp;
	struct iscsi_data data;
	struct iscsi_r2t r2t;
	struct iscsi_nop nop;
	struct iscsi_login login;
	struct iscsi_text text;
	struct iscsi_tmf tmf;
	struct iscsi_logout logout;
	struct iscsi_reject reject;
	uint8_t bytes[ISCSI_BHS_LEN];
};

static inline uint32_t iscsi_get_dlen(const struct iscsi_bhs *h)
{
	return (uint32_t)h->data_len[0] << 16 | (uint32_t)h->data_len[1] << 8 | h->data_len[2];
}

static inline void iscsi_set_dlen(struct iscsi_bhs *h, uint32_t len)
{
	h->data_len[0] = (uint8_t)(len >> 16);
	h->data_len[1] = (uint8_t)(len >> 8);
	h->data_len[2] = (uint8_t)len;
}

/* Bytes of padding after a data segment of len bytes. */
static inline uint32_t iscsi_pad(uint32_t len)
{
	return (4 - (len & 3)) & 3;
}

/* Serial number arithmetic (RFC 1982, 32 bits): a < b. */
static inline int sn_lt(uint32_t a, uint32_t b)
{
	return a != b && (uint32_t)(b - a) < 0x80000000u;
}

/* Decodes an 8-byte SAM LUN (peripheral or flat addressing) to a number; ~0 when unusable. */
uint64_t iscsi_lun_decode(const uint8_t lun[8]);

/* Encodes LUN n (< 16384) in the same form. */
void iscsi_lun_encode(uint64_t n, uint8_t lun[8]);

/* The name of an opcode, for logs. */
const char *iscsi_opcode_name(uint8_t opcode);

#endif
