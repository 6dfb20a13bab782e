/* The one event loop of a process: epoll for sockets, a 1 s tick, millisecond timers, signals. */
#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "lib/evloop.h"

#define EV_BATCH 256

static int ev_epfd = -1;
static int ev_sigfd = -1;
static int ev_stopping;
static int ev_signal;
static struct ev_tick *ev_ticks;
static struct ev_timer *ev_timers;	/* armed timers, earliest deadline first */
static struct epoll_event ev_batch[EV_BATCH];
static int ev_batch_pos, ev_batch_len;
static struct ev_deferred *ev_deferred_head;
static void (*ev_hup_fn)(void *ctx);
static void *ev_hup_ctx;

uint64_t ev_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int ev_init(void)
{
	sigset_t set;

	signal(SIGPIPE, SIG_IGN);
	ev_epfd = epoll_create1(EPOLL_CLOEXEC);
	if (ev_epfd < 0)
		return -errno;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	sigprocmask(SIG_BLOCK, &set, NULL);
	ev_sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (ev_sigfd < 0)
		return -errno;
	struct epoll_event ee = { .events = EPOLLIN, .data.ptr = NULL };

	if (epoll_ctl(ev_epfd, EPOLL_CTL_ADD, ev_sigfd, &ee) < 0)
		return -errno;
	return 0;
}

int ev_add(struct ev_watch *w, uint32_t events)
{
	struct epoll_event ee = { .events = events, .data.ptr = w };

	w->events = events;
	return epoll_ctl(ev_epfd, EPOLL_CTL_ADD, w->fd, &ee) < 0 ? -errno : 0;
}

int ev_set(struct ev_watch *w, uint32_t events)
{
	struct epoll_event ee = { .events = events, .data.ptr = w };

	if (w->events == events)
		return 0;
	w->events = events;
	return epoll_ctl(ev_epfd, EPOLL_CTL_MOD, w->fd, &ee) < 0 ? -errno : 0;
}

void ev_del(struct ev_watch *w)
{
	epoll_ctl(ev_epfd, EPOLL_CTL_DEL, w->fd, NULL);
	/* Events already fetched for w must not reach it after it is freed. */
	for (int i = ev_batch_pos; i < ev_batch_len; i++)
		if (ev_batch[i].data.ptr == w)
			ev_batch[i].events = 0;
}

void ev_tick_add(struct ev_tick *t)
{
	t->next = ev_ticks;
	ev_ticks = t;
}

void ev_timer_cancel(struct ev_timer *t)
{
	if (!t->pprev)
		return;
	*t->pprev = t->next;
	if (t->next)
		t->next->pprev = t->pprev;
	t->next = NULL;
	t->pprev = NULL;
}

/* A sorted list: transfers re-arm near the end, so the walk is short in practice. */
void ev_timer_set(struct ev_timer *t, uint64_t deadline_ms)
{
	struct ev_timer **pp = &ev_timers;

	ev_timer_cancel(t);
	t->deadline = deadline_ms;
	while (*pp && (*pp)->deadline <= deadline_ms)
		pp = &(*pp)->next;
	t->next = *pp;
	if (t->next)
		t->next->pprev = &t->next;
	t->pprev = pp;
	*pp = t;
}

/* Fires every timer due by now; each is disarmed before its callback, which may re-arm it. */
static void ev_timers_fire(uint64_t now)
{
	struct ev_timer *t;

	while ((t = ev_timers) && t->deadline <= now) {
		ev_timer_cancel(t);
		t->fn(t->ctx);
	}
}

void ev_defer(struct ev_deferred *d)
{
	if (d->queued)
		return;
	d->queued = 1;
	d->next = ev_deferred_head;
	ev_deferred_head = d;
}

void ev_undefer(struct ev_deferred *d)
{
	if (!d->queued)
		return;
	for (struct ev_deferred **pp = &ev_deferred_head; *pp; pp = &(*pp)->next) {
		if (*pp == d) {
			*pp = d->next;
			break;
		}
	}
	d->queued = 0;
}

/* Runs deferred work until none is left, including work queued meanwhile. */
static void ev_run_deferred(void)
{
	while (ev_deferred_head) {
		struct ev_deferred *d = ev_deferred_head;

		ev_deferred_head = d->next;
		d->queued = 0;
		d->fn(d->ctx);
	}
}

void ev_on_hup(void (*fn)(void *ctx), void *ctx)
{
	ev_hup_fn = fn;
	ev_hup_ctx = ctx;
}

void ev_stop(void)
{
	ev_stopping = 1;
}

static void ev_read_signal(void)
{
	struct signalfd_siginfo si;

	while (read(ev_sigfd, &si, sizeof si) == (ssize_t)sizeof si) {
		if (si.ssi_signo == SIGHUP) {
			if (ev_hup_fn)
				ev_hup_fn(ev_hup_ctx);
			continue;
		}
		ev_signal = (int)si.ssi_signo;
		ev_stopping = 1;
	}
}

int ev_run(void)
{
	uint64_t next_tick = ev_now_ms() + 1000;

	while (!ev_stopping) {
		uint64_t now = ev_now_ms();
		uint64_t wake = next_tick;

		if (ev_timers && ev_timers->deadline < wake)
			wake = ev_timers->deadline;
		int timeout = now >= wake || ev_deferred_head ? 0 : (int)(wake - now);
		int n = epoll_wait(ev_epfd, ev_batch, EV_BATCH, timeout);

		if (n < 0 && errno != EINTR)
			return -errno;
		ev_batch_len = n < 0 ? 0 : n;
		for (ev_batch_pos = 0; ev_batch_pos < ev_batch_len; ev_batch_pos++) {
			struct epoll_event *e = &ev_batch[ev_batch_pos];
			struct ev_watch *w = e->data.ptr;

			if (!w) {
				ev_read_signal();
				continue;
			}
			if (e->events)
				w->fn(w->ctx, e->events);
		}
		ev_batch_len = 0;
		ev_run_deferred();
		now = ev_now_ms();
		ev_timers_fire(now);
		if (now >= next_tick) {
			for (struct ev_tick *t = ev_ticks; t; t = t->next)
				t->fn(t->ctx, now);
			next_tick = now + 1000;
		}
	}
	/* Ready to run again: tests and tools drive the loop until a condition, repeatedly. */
	int sig = ev_signal;

	ev_stopping = 0;
	ev_signal = 0;
	return sig;
}
