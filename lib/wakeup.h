/* A loop's doorbell, rung from any thread: an eventfd the loop watches. It does what
 * uv_async_t does (sends coalesce into one callback) without its spin: libuv's
 * receiver busy-waits, about 1,000 pauses and then sched_yield, for a sender that was
 * preempted between marking the handle and writing to the eventfd. With an I/O thread
 * and the dispatcher sharing a core, that happened at most wakeups and cost ~6 % of
 * the CPU per message. */
#ifndef WSEV_WAKEUP_H
#define WSEV_WAKEUP_H

#include <uv.h>

typedef struct wsev_wakeup wsev_wakeup;
typedef void (*wsev_wakeup_cb)(wsev_wakeup *w);

struct wsev_wakeup {
  uv_poll_t poll; /* first: (uv_handle_t *)w for uv_ref and uv_unref; its data is the owner's */
  int fd;
  wsev_wakeup_cb cb;
  uv_close_cb closed; /* given (uv_handle_t *)w once closed */
};

/* 0, or a libuv error (no descriptor left). */
int wsev__wakeup_init(uv_loop_t *loop, wsev_wakeup *w, wsev_wakeup_cb cb);
/* Any thread, until closed: cb runs on the loop's thread once for any number of sends
 * made before it starts. */
void wsev__wakeup_send(wsev_wakeup *w);
/* The loop's thread. */
void wsev__wakeup_close(wsev_wakeup *w, uv_close_cb closed);

#endif
