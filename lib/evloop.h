/* The one event loop of a process: epoll for sockets, a 1 s tick for timeouts, signals. */
#ifndef VIRTMAN_EVLOOP_H
#define VIRTMAN_EVLOOP_H

#include <stdint.h>
#include <sys/epoll.h>

typedef void ev_fn(void *ctx, uint32_t events);

struct ev_watch {
	int fd;
	uint32_t events;	/* EPOLLIN / EPOLLOUT currently asked for */
	ev_fn *fn;
	void *ctx;
};

struct ev_tick {
	void (*fn)(void *ctx, uint64_t now_ms);
	void *ctx;
	struct ev_tick *next;
};

/* Creates the loop and routes SIGINT/SIGTERM to ev_stop; ignores SIGPIPE. */
int ev_init(void);

/* Watches w->fd for events (level-triggered). */
int ev_add(struct ev_watch *w, uint32_t events);

/* Changes the events watched, with no syscall when they are unchanged. */
int ev_set(struct ev_watch *w, uint32_t events);

/* Stops watching; safe to free w afterwards, even inside a callback. */
void ev_del(struct ev_watch *w);

/* Calls t->fn about once a second with the monotonic time. */
void ev_tick_add(struct ev_tick *t);

/* Runs until ev_stop() or a termination signal; returns the signal number or 0. */
int ev_run(void);

void ev_stop(void);

/* Monotonic milliseconds. */
uint64_t ev_now_ms(void);

#endif
