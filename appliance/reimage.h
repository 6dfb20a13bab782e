/* `virtman reimage`: switches the rack to a new image generation. */
#ifndef VIRTMAN_APPLIANCE_REIMAGE_H
#define VIRTMAN_APPLIANCE_REIMAGE_H

int cmd_reimage(int argc, char **argv);

#endif
