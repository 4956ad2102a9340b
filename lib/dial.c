/* Happy Eyeballs: racing connection attempts over a name's addresses.
 *
 * Every attempt owns a uv_tcp_t here rather than the connection's embedded handle,
 * since several are in flight at once and the losers' sockets must close while the
 * winner's goes on: the winner's descriptor is duplicated for the caller (one dup and
 * one close more than a direct connect, paid only by names with several addresses),
 * and all the race's handles are closed. The race's memory stays until the last of
 * them has closed; each is counted as one of the context's handles, so the context
 * outlives them (wsev_ctx_free waits for it). */
#include "dial.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>

#include "alloc.h"
#include "context.h"

enum { A_IDLE, A_CONNECTING, A_CLOSING };

typedef struct {
  uv_tcp_t tcp;
  uv_connect_t req;
  wsev_race *race;
  struct sockaddr_storage addr;
  uint8_t state;
} attempt;

struct wsev_race {
  wsev_ctx *ctx;
  uv_timer_t timer;
  wsev_race_done done;
  void *arg;
  uint64_t delay_ms;
  size_t count, next; /* attempts, and the next one to start */
  unsigned handles;   /* not closed yet (the timer's included) */
  unsigned connecting;
  int last_error;
  uint8_t over; /* done was called, or the race was cancelled */
  attempt attempts[];
};

static int same_addr(const struct addrinfo *a, const struct addrinfo *b) {
  return a->ai_family == b->ai_family && a->ai_addrlen == b->ai_addrlen &&
         memcmp(a->ai_addr, b->ai_addr, a->ai_addrlen) == 0;
}

size_t wsev__race_order(const struct addrinfo *addrs, const struct addrinfo **out, size_t max) {
  /* The families in the resolver's order, each kept in its own order. */
  const struct addrinfo *fam[2][WSEV_RACE_MAX];
  size_t n[2] = {0, 0};
  int first = -1;
  for (const struct addrinfo *ai = addrs; ai; ai = ai->ai_next) {
    if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) continue;
    if (first < 0) first = ai->ai_family;
    int f = ai->ai_family != first;
    int dup = 0;
    for (size_t i = 0; i < n[f] && !dup; i++)
      dup = same_addr(fam[f][i], ai);
    if (!dup && n[f] < WSEV_RACE_MAX) fam[f][n[f]++] = ai;
  }
  size_t k = 0;
  for (size_t i = 0; k < max && (i < n[0] || i < n[1]); i++) {
    if (i < n[0] && k < max) out[k++] = fam[0][i];
    if (i < n[1] && k < max) out[k++] = fam[1][i];
  }
  return k;
}

static void on_timer_closed(uv_handle_t *h) {
  wsev_race *r = h->data;
  wsev_ctx *ctx = r->ctx;
  if (--r->handles == 0) wsev__free(r);
  wsev__handle_closed(ctx); /* last: it may release the context */
}

static void on_attempt_closed(uv_handle_t *h) {
  attempt *a = h->data;
  on_timer_closed((uv_handle_t *)&a->race->timer); /* the same bookkeeping */
}

static void close_attempt(attempt *a) {
  if (a->state == A_CLOSING) return;
  a->state = A_CLOSING;
  uv_close((uv_handle_t *)&a->tcp, on_attempt_closed);
}

/* No callback after this; the memory goes with the last handle. */
static void end(wsev_race *r) {
  r->over = 1;
  uv_close((uv_handle_t *)&r->timer, on_timer_closed);
  for (size_t i = 0; i < r->next; i++)
    close_attempt(&r->attempts[i]);
}

static void on_connect(uv_connect_t *req, int status);
static void on_timer(uv_timer_t *t);

/* Start the next attempt that can be started; 0, or the last error when none could. */
static int start_next(wsev_race *r) {
  while (r->next < r->count) {
    attempt *a = &r->attempts[r->next++];
    uv_tcp_init(r->ctx->loop, &a->tcp); /* cannot fail without a socket to make */
    a->tcp.data = a;
    a->req.data = a;
    r->handles++;
    wsev__handle_opened(r->ctx);
    int rc = uv_tcp_connect(&a->req, &a->tcp, (const struct sockaddr *)&a->addr, on_connect);
    if (rc == 0) {
      a->state = A_CONNECTING;
      r->connecting++;
      /* RFC 8305 section 5: the next one after the delay, unless this one ends first. */
      if (r->next < r->count && r->delay_ms != UINT64_MAX)
        uv_timer_start(&r->timer, on_timer, r->delay_ms, 0);
      return 0;
    }
    r->last_error = rc; /* e.g. no IPv6 here: the next at once */
    close_attempt(a);
  }
  return r->last_error;
}

static void finish(wsev_race *r, int status, uv_os_sock_t sock) {
  end(r);
  r->done(r->arg, status, sock);
}

static void on_timer(uv_timer_t *t) {
  wsev_race *r = t->data;
  if (start_next(r) != 0 && r->connecting == 0) finish(r, r->last_error, -1);
}

static void on_connect(uv_connect_t *req, int status) {
  attempt *a = req->data;
  wsev_race *r = a->race;
  r->connecting--;
  if (a->state == A_CLOSING || r->over) return; /* cancelled: UV_ECANCELED */
  if (status == 0) {
    /* The winner: its descriptor outlives its handle as a duplicate. */
    uv_os_fd_t fd;
    status = uv_fileno((uv_handle_t *)&a->tcp, &fd);
    if (status == 0) {
      int dup = fcntl(fd, F_DUPFD_CLOEXEC, 0);
      if (dup >= 0) {
        finish(r, 0, dup);
        return;
      }
      status = -errno; /* EMFILE: as if this attempt had failed */
    }
  }
  r->last_error = status;
  close_attempt(a);
  if (start_next(r) != 0 && r->connecting == 0) finish(r, r->last_error, -1);
}

int wsev__race_start(wsev_ctx *ctx, const struct addrinfo *addrs, uint64_t delay_ms,
                     wsev_race_done done, void *arg, wsev_race **out) {
  const struct addrinfo *order[WSEV_RACE_MAX];
  size_t count = wsev__race_order(addrs, order, WSEV_RACE_MAX);
  if (count == 0) return UV_EINVAL;
  wsev_race *r = wsev__calloc(1, sizeof *r + count * sizeof(attempt));
  if (!r) return UV_ENOMEM;
  r->ctx = ctx;
  r->done = done;
  r->arg = arg;
  r->delay_ms = delay_ms ? delay_ms : WSEV_RACE_DEFAULT_DELAY_MS;
  r->count = count;
  r->last_error = UV_ECONNREFUSED;
  for (size_t i = 0; i < count; i++) {
    r->attempts[i].race = r;
    memcpy(&r->attempts[i].addr, order[i]->ai_addr, order[i]->ai_addrlen);
  }
  uv_timer_init(ctx->loop, &r->timer);
  r->timer.data = r;
  r->handles = 1;
  wsev__handle_opened(ctx);
  int rc = start_next(r);
  if (rc != 0) {
    end(r); /* every address failed at once */
    return rc;
  }
  *out = r;
  return 0;
}

void wsev__race_cancel(wsev_race *r) {
  if (r && !r->over) end(r);
}
