/* `virtman seed`: the boot appliance of a rack. */
#ifndef VIRTMAN_APPLIANCE_SEED_H
#define VIRTMAN_APPLIANCE_SEED_H

/* Runs the seed with its command-line flags; the process exit status. */
int cmd_seed(int argc, char **argv);

#endif
