/* `virtman agent`: the host's supervisor, started by the boot image's init. */
#ifndef VIRTMAN_HOSTAGENT_AGENT_H
#define VIRTMAN_HOSTAGENT_AGENT_H

/* Runs the agent; returns the process exit status. */
int cmd_agent(int argc, char **argv);

#endif
