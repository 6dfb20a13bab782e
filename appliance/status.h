/* `virtman status`: the rack as the seed sees it. */
#ifndef VIRTMAN_APPLIANCE_STATUS_H
#define VIRTMAN_APPLIANCE_STATUS_H

int cmd_status(int argc, char **argv);

#endif
