/* iSCSI PDU helpers shared by the target and the initiator. */
#include "iscsi/pdu.h"

uint64_t iscsi_lun_decode(const uint8_t lun[8])
{
	for (int i = 2; i < 8; i++)
		if (lun[i])
			return ~(uint64_t)0;
	switch (lun[0] >> 6) {
	case 0:	/* peripheral device addressing: bus 0 only */
		return lun[0] == 0 ? lun[1] : ~(uint64_t)0;
	case 1:	/* flat space addressing, 14 bits */
		return (uint64_t)(lun[0] & 0x3f) << 8 | lun[1];
	default:
		return ~(uint64_t)0;
	}
}

void iscsi_lun_encode(uint64_t n, uint8_t lun[8])
{
	for (int i = 0; i < 8; i++)
		lun[i] = 0;
	if (n < 256) {
		lun[1] = (uint8_t)n;
	} else {
		lun[0] = (uint8_t)(0x40 | ((n >> 8) & 0x3f));
		lun[1] = (uint8_t)n;
	}
}

const char *iscsi_opcode_name(uint8_t opcode)
{
	switch (opcode & ISCSI_OP_MASK) {
	case ISCSI_OP_NOP_OUT: return "NOP-Out";
	case ISCSI_OP_SCSI_CMD: return "SCSI Command";
	case ISCSI_OP_TMF_REQ: return "Task Management";
	case ISCSI_OP_LOGIN_REQ: return "Login";
	case ISCSI_OP_TEXT_REQ: return "Text";
	case ISCSI_OP_DATA_OUT: return "Data-Out";
	case ISCSI_OP_LOGOUT_REQ: return "Logout";
	case ISCSI_OP_SNACK: return "SNACK";
	case ISCSI_OP_NOP_IN: return "NOP-In";
	case ISCSI_OP_SCSI_RSP: return "SCSI Response";
	case ISCSI_OP_TMF_RSP: return "Task Management Response";
	case ISCSI_OP_LOGIN_RSP: return "Login Response";
	case ISCSI_OP_TEXT_RSP: return "Text Response";
	case ISCSI_OP_DATA_IN: return "Data-In";
	case ISCSI_OP_LOGOUT_RSP: return "Logout Response";
	case ISCSI_OP_R2T: return "R2T";
	case ISCSI_OP_ASYNC: return "Async Message";
	case ISCSI_OP_REJECT: return "Reject";
	default: return "unknown opcode";
	}
}
