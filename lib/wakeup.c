/* See wakeup.h. */
#include "wakeup.h"

#include <errno.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>

static void on_readable(uv_poll_t *p, int status, int events) {
  (void)status;
  (void)events;
  wsev_wakeup *w = (wsev_wakeup *)p;
  uint64_t count;
  /* Reset before the callback looks at its queue: a send after this rings again. */
  while (read(w->fd, &count, sizeof count) < 0 && errno == EINTR)
    ;
  w->cb(w);
}

int wsev__wakeup_init(uv_loop_t *loop, wsev_wakeup *w, wsev_wakeup_cb cb) {
  w->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (w->fd < 0) return uv_translate_sys_error(errno);
  int rc = uv_poll_init(loop, &w->poll, w->fd);
  if (rc) {
    close(w->fd);
    return rc;
  }
  w->cb = cb;
  w->closed = NULL;
  return uv_poll_start(&w->poll, UV_READABLE, on_readable); /* 0 for a valid descriptor */
}

void wsev__wakeup_send(wsev_wakeup *w) {
  uint64_t one = 1;
  /* EAGAIN (the counter is full) means it rings already. */
  while (write(w->fd, &one, sizeof one) < 0 && errno == EINTR)
    ;
}

static void on_closed(uv_handle_t *h) {
  wsev_wakeup *w = (wsev_wakeup *)h;
  close(w->fd);
  if (w->closed) w->closed(h);
}

void wsev__wakeup_close(wsev_wakeup *w, uv_close_cb closed) {
  w->closed = closed;
  uv_close((uv_handle_t *)&w->poll, on_closed);
}
