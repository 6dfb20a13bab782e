/* `virtman export`: serve a raw image or block device read-only over iSCSI. */
#ifndef VIRTMAN_ISCSI_EXPORT_H
#define VIRTMAN_ISCSI_EXPORT_H

/* Runs the command; returns the process exit status. */
int cmd_export(int argc, char **argv);

#endif
