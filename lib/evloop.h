/* The one event loop of a process: epoll for sockets, a 1 s tick, millisecond timers, signals. */
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

/* A one-shot timer; zero-initialised it is disarmed. The loop never touches it once fired. */
struct ev_timer {
	uint64_t deadline;	/* ev_now_ms() time it fires at */
	void (*fn)(void *ctx);
	void *ctx;
	struct ev_timer *next, **pprev;	/* pprev is NULL while disarmed */
};

/* Work run after the current batch of events, outside every callback's stack. */
struct ev_deferred {
	void (*fn)(void *ctx);
	void *ctx;
	struct ev_deferred *next;
	int queued;
};

/* Creates the loop and routes SIGINT/SIGTERM to ev_stop; ignores SIGPIPE; SIGHUP goes to
 * the function given to ev_on_hup (ignored without one). */
int ev_init(void);

/* Watches w->fd for events (level-triggered). */
int ev_add(struct ev_watch *w, uint32_t events);

/* Changes the events watched, with no syscall when they are unchanged. */
int ev_set(struct ev_watch *w, uint32_t events);

/* Stops watching; safe to free w afterwards, even inside a callback. */
void ev_del(struct ev_watch *w);

/* Calls t->fn about once a second with the monotonic time. */
void ev_tick_add(struct ev_tick *t);

/* Arms (or re-arms) t to call t->fn(t->ctx) once at deadline_ms (monotonic milliseconds). */
void ev_timer_set(struct ev_timer *t, uint64_t deadline_ms);

/* Disarms t; safe on a disarmed timer and inside any callback. */
void ev_timer_cancel(struct ev_timer *t);

/* Runs d->fn once after the current batch; a second call before then does nothing. */
void ev_defer(struct ev_deferred *d);

/* Takes d back if it is still queued (before freeing its owner). */
void ev_undefer(struct ev_deferred *d);

/* Calls fn(ctx) on SIGHUP, from the loop. */
void ev_on_hup(void (*fn)(void *ctx), void *ctx);

/* Runs until ev_stop() or a termination signal; returns the signal number or 0.
 * It may be called again afterwards. */
int ev_run(void);

void ev_stop(void);

/* Monotonic milliseconds. */
uint64_t ev_now_ms(void);

#endif
