/* The context: settings, the master event queue and its dispatcher, the loop
 * timeout, corked output flushing, deadlines and the output buffer pool. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "frame.h"
#include "internal.h"
#include "utf8.h"

#define DEFAULT_TIMEOUT_MS 60000
#define DEFAULT_MAX_MESSAGE (16u * 1024 * 1024)
#define DEFAULT_MAX_HEADER (8u * 1024)
#define DEFAULT_HANDSHAKE_TIMEOUT_MS 10000
#define DEFAULT_CLOSE_TIMEOUT_MS 5000
#define DEFAULT_MAX_BUFFERED (16u * 1024 * 1024)
#define DEFAULT_LOW_WATER (64u * 1024)
#define DEFAULT_PING_INTERVAL_MS 30000
#define DEFAULT_PING_TIMEOUT_MS 30000
#define DEFAULT_DEFER_TIMEOUT_MS 10000

static void maybe_release(wsev_ctx *ctx);

void wsev__handle_opened(wsev_ctx *ctx) { ctx->open_handles++; }

void wsev__handle_closed(wsev_ctx *ctx) {
  ctx->open_handles--;
  maybe_release(ctx);
}

static void on_ctx_handle_closed(uv_handle_t *h) { wsev__handle_closed(h->data); }

/* ---- dispatch ---------------------------------------------------------------- */

static void call_handler(wsev_ctx *ctx, const wsev_event *ev) {
  const wsev_handler *h = &ctx->handler;
  switch (ev->kind) {
  case WSEV_EV_ACCEPTED:
    if (h->conn_accepted) h->conn_accepted(ctx, ev->id);
    break;
  case WSEV_EV_MESSAGE:
    if (h->message_received) h->message_received(ctx, ev->id, ev->data, ev->len, ev->msg_type);
    break;
  case WSEV_EV_CLOSED:
    ctx->closing = ev; /* for wsev_get_close_info and wsev_conn_data */
    if (h->conn_closed) h->conn_closed(ctx, ev->id);
    ctx->closing = NULL;
    break;
  case WSEV_EV_TIMEOUT:
    if (h->event_loop_timeout) h->event_loop_timeout(ctx);
    break;
  case WSEV_EV_DRAINED:
    if (h->conn_drained) h->conn_drained(ctx, ev->id);
    break;
  }
}

/* Run the queued events' callbacks in order. */
static void drain(wsev_ctx *ctx) {
  while (ctx->queue_len && !ctx->freeing) {
    wsev_event ev = ctx->queue[ctx->queue_head];
    ctx->queue_head = (ctx->queue_head + 1) % ctx->queue_cap;
    ctx->queue_len--;
    call_handler(ctx, &ev);
    wsev__free(ev.data);
  }
}

/* Run one event's callback (if any) after what was queued before it, then what its
 * callback queued. */
static void dispatch(wsev_ctx *ctx, const wsev_event *first) {
  ctx->dispatching = 1;
  ctx->last_dispatch = uv_now(ctx->loop);
  drain(ctx);
  if (first && !ctx->freeing) call_handler(ctx, first);
  drain(ctx);
  ctx->dispatching = 0;
}

int wsev__call_upgrade(wsev_ctx *ctx, wsev_conn *c) {
  ctx->dispatching = 1;
  ctx->last_dispatch = uv_now(ctx->loop);
  drain(ctx);
  int verdict = ctx->handler.upgrade_requested(ctx, (wsev_request *)c);
  drain(ctx);
  ctx->dispatching = 0;
  return verdict;
}

void wsev__call_http(wsev_ctx *ctx, wsev_conn *c) {
  ctx->dispatching = 1;
  ctx->last_dispatch = uv_now(ctx->loop);
  drain(ctx);
  c->in_http = 1;
  ctx->handler.http_request(ctx, (wsev_request *)c);
  c->in_http = 0;
  drain(ctx);
  ctx->dispatching = 0;
}

int wsev__reserve_events(wsev_ctx *ctx, size_t n) {
  if (ctx->queue_cap - ctx->queue_len < n) {
    size_t cap = ctx->queue_cap ? ctx->queue_cap : 16;
    while (cap - ctx->queue_len < n)
      cap *= 2;
    wsev_event *q = wsev__malloc(cap * sizeof *q);
    if (!q) return UV_ENOMEM;
    for (size_t i = 0; i < ctx->queue_len; i++)
      q[i] = ctx->queue[(ctx->queue_head + i) % ctx->queue_cap];
    wsev__free(ctx->queue);
    ctx->queue = q;
    ctx->queue_head = 0;
    ctx->queue_cap = cap;
  }
  return 0;
}

static int enqueue(wsev_ctx *ctx, const wsev_event *ev) {
  if (wsev__reserve_events(ctx, 1) != 0) return UV_ENOMEM;
  ctx->queue[(ctx->queue_head + ctx->queue_len) % ctx->queue_cap] = *ev;
  ctx->queue_len++;
  return 0;
}

static void on_flush_idle(uv_idle_t *h);

/* An event raised while a callback runs, or inside an API call, must wait: callbacks
 * never nest, and no API call runs one before it returns. Outside callbacks the
 * queue goes out from the next flush. Closed events cannot be lost here: room for
 * one per id was reserved when the id was handed out. */
static int must_wait(const wsev_ctx *ctx) { return ctx->dispatching || ctx->in_api; }

static void wait_in_queue(wsev_ctx *ctx, wsev_event *ev) {
  if (enqueue(ctx, ev) != 0) {
    wsev__free(ev->data);
    return;
  }
  if (!ctx->dispatching) uv_idle_start(&ctx->flush_idle, on_flush_idle);
}

void wsev__emit(wsev_ctx *ctx, wsev_event_kind kind, uint64_t id) {
  wsev_event ev = {.kind = (uint8_t)kind, .id = id};
  if (ctx->freeing) return;
  if (must_wait(ctx))
    wait_in_queue(ctx, &ev);
  else
    dispatch(ctx, &ev);
}

void wsev__emit_closed(wsev_ctx *ctx, uint64_t id, unsigned code, int by_peer, int error,
                       const char *reason, void *user_data) {
  wsev_event ev = {.kind = WSEV_EV_CLOSED,
                   .id = id,
                   .close_code = (uint16_t)code,
                   .by_peer = (uint8_t)by_peer,
                   .error = error,
                   .user_data = user_data};
  if (ctx->freeing) return;
  if (reason && *reason) {
    /* Without memory for the reason, conn_closed still fires, with an empty one. */
    ev.len = strlen(reason);
    ev.data = wsev__malloc(ev.len + 1);
    if (ev.data)
      memcpy(ev.data, reason, ev.len + 1);
    else
      ev.len = 0;
  }
  if (must_wait(ctx)) {
    wait_in_queue(ctx, &ev);
    return;
  }
  dispatch(ctx, &ev);
  wsev__free(ev.data);
}

void wsev__emit_message(wsev_ctx *ctx, uint64_t id, const uint8_t *data, size_t len,
                        wsev_msg_type type) {
  wsev_event ev = {.kind = WSEV_EV_MESSAGE,
                   .msg_type = (uint8_t)type,
                   .id = id,
                   .data = (uint8_t *)data,
                   .len = len};
  if (ctx->freeing) return;
  if (!must_wait(ctx)) {
    dispatch(ctx, &ev); /* zero-copy: the bytes live until we return */
    return;
  }
  /* Frames that waited behind a deferred upgrade, processed inside wsev_accept. */
  ev.data = wsev__malloc(len ? len : 1);
  if (!ev.data) return;
  if (len) memcpy(ev.data, data, len);
  wait_in_queue(ctx, &ev);
}

/* ---- loop timeout -------------------------------------------------------------- */

/* The timer is not restarted per event (that would cost on every message): when it
 * fires it checks how long ago the last dispatch was, and sleeps the rest. */
static void on_timeout_timer(uv_timer_t *t) {
  wsev_ctx *ctx = t->data;
  uint64_t now = uv_now(ctx->loop);
  uint64_t idle = now - ctx->last_dispatch;
  if (ctx->timeout_ms == 0) return;
  if (idle >= ctx->timeout_ms) {
    wsev__emit(ctx, WSEV_EV_TIMEOUT, 0);
    ctx->last_dispatch = now;
    uv_timer_start(t, on_timeout_timer, ctx->timeout_ms, 0);
  } else {
    uv_timer_start(t, on_timeout_timer, ctx->timeout_ms - idle, 0);
  }
}

uint64_t wsev_get_timeout(const wsev_ctx *ctx) { return ctx->timeout_ms; }

void wsev_set_timeout(wsev_ctx *ctx, uint64_t timeout_ms) {
  ctx->timeout_ms = timeout_ms;
  uv_update_time(ctx->loop); /* "from now": the loop's cached time may be old */
  ctx->last_dispatch = uv_now(ctx->loop);
  if (timeout_ms)
    uv_timer_start(&ctx->timeout_timer, on_timeout_timer, timeout_ms, 0);
  else
    uv_timer_stop(&ctx->timeout_timer);
}

/* ---- corked output ------------------------------------------------------------ */

/* Nothing to do: an active idle handle only makes the poll phase not block, so the
 * check phase after it flushes writes made outside I/O callbacks (timers, or the
 * application before the loop runs). */
static void on_flush_idle(uv_idle_t *h) { (void)h; }

void wsev__mark_dirty(wsev_conn *c) {
  wsev_ctx *ctx = c->ctx;
  if (c->dirty) return;
  c->dirty = 1;
  if (!ctx->dirty_head) uv_idle_start(&ctx->flush_idle, on_flush_idle);
  c->dirty_next = ctx->dirty_head;
  ctx->dirty_head = c;
}

static void on_flush_check(uv_check_t *h) {
  wsev_ctx *ctx = h->data;
  if (ctx->queue_len && !ctx->dispatching) dispatch(ctx, NULL);
  /* Flushing may fail a connection, whose conn_closed callback may write to
   * others: keep taking the list until it stays empty. */
  while (ctx->dirty_head) {
    wsev_conn *c = ctx->dirty_head;
    ctx->dirty_head = NULL;
    while (c) {
      wsev_conn *next = c->dirty_next;
      c->dirty = 0;
      c->dirty_next = NULL;
      wsev__conn_flush(c);
      c = next;
    }
  }
  uv_idle_stop(&ctx->flush_idle);
}

/* ---- deadlines ---------------------------------------------------------------- */

static void on_deadline_timer(uv_timer_t *t);

static void schedule_deadlines(wsev_ctx *ctx) {
  uint64_t next = ctx->shutting_down ? ctx->shutdown_deadline : UINT64_MAX;
  for (int k = 0; k < WSEV_DEADLINE_KINDS; k++)
    if (ctx->dl_head[k] && ctx->dl_head[k]->deadline < next) next = ctx->dl_head[k]->deadline;
  if (next == UINT64_MAX) {
    uv_timer_stop(&ctx->deadline_timer);
    return;
  }
  uint64_t now = uv_now(ctx->loop);
  uv_timer_start(&ctx->deadline_timer, on_deadline_timer, next > now ? next - now : 0, 0);
}

static void on_deadline_timer(uv_timer_t *t) {
  wsev_ctx *ctx = t->data;
  uint64_t now = uv_now(ctx->loop);
  for (int k = 0; k < WSEV_DEADLINE_KINDS; k++) {
    /* Aborting raises conn_closed, whose callback may change the lists: always
     * look at the current head. */
    while (ctx->dl_head[k] && ctx->dl_head[k]->deadline <= now) {
      wsev_conn *c = ctx->dl_head[k];
      wsev__deadline_clear(c);
      wsev__conn_deadline(c);
    }
  }
  if (ctx->shutting_down && now >= ctx->shutdown_deadline) {
    /* The bounded wait of wsev_shutdown is over. */
    for (wsev_conn *c = ctx->all_head; c; c = c->all_next)
      wsev__conn_abort(c);
    ctx->shutting_down = 2; /* done: no more deadline for it */
    ctx->shutdown_deadline = UINT64_MAX;
  }
  schedule_deadlines(ctx);
}

void wsev__deadline_clear(wsev_conn *c) {
  wsev_ctx *ctx = c->ctx;
  if (!c->in_deadline) return;
  int k = c->deadline_kind;
  if (c->dl_prev)
    c->dl_prev->dl_next = c->dl_next;
  else
    ctx->dl_head[k] = c->dl_next;
  if (c->dl_next)
    c->dl_next->dl_prev = c->dl_prev;
  else
    ctx->dl_tail[k] = c->dl_prev;
  c->dl_prev = c->dl_next = NULL;
  c->in_deadline = 0;
}

void wsev__deadline_set(wsev_conn *c, int kind, uint64_t ms) {
  wsev_ctx *ctx = c->ctx;
  wsev__deadline_clear(c);
  c->deadline = uv_now(ctx->loop) + ms;
  c->deadline_kind = (uint8_t)kind;
  c->in_deadline = 1;
  /* Usually the tail: durations of a kind are mostly equal (connect timeouts of
   * our own connections may differ). */
  wsev_conn *prev = ctx->dl_tail[kind];
  while (prev && prev->deadline > c->deadline)
    prev = prev->dl_prev;
  c->dl_prev = prev;
  c->dl_next = prev ? prev->dl_next : ctx->dl_head[kind];
  if (prev)
    prev->dl_next = c;
  else
    ctx->dl_head[kind] = c;
  if (c->dl_next)
    c->dl_next->dl_prev = c;
  else
    ctx->dl_tail[kind] = c;
  if (!uv_is_active((uv_handle_t *)&ctx->deadline_timer) ||
      uv_timer_get_due_in(&ctx->deadline_timer) > ms)
    schedule_deadlines(ctx);
}

/* ---- keepalive ----------------------------------------------------------------- */

/* One timer sweeps all connections (instead of a timer per connection); a silent
 * peer is pinged between one interval and one interval plus a sweep period after
 * its last bytes. */
static uint64_t keepalive_period(const wsev_ctx *ctx) {
  uint64_t period = ctx->ping_interval_ms / 4;
  return period < 10 ? 10 : period;
}

static void on_keepalive_timer(uv_timer_t *t) {
  wsev_ctx *ctx = t->data;
  uint64_t now = uv_now(ctx->loop);
  for (wsev_conn *c = ctx->all_head; c; c = c->all_next)
    wsev__conn_keepalive(c, now);
}

void wsev_set_keepalive(wsev_ctx *ctx, uint64_t interval_ms, uint64_t timeout_ms) {
  ctx->ping_interval_ms = interval_ms;
  if (timeout_ms) ctx->ping_timeout_ms = timeout_ms;
  if (interval_ms && !ctx->shutting_down)
    uv_timer_start(&ctx->keepalive_timer, on_keepalive_timer, keepalive_period(ctx),
                   keepalive_period(ctx));
  else
    uv_timer_stop(&ctx->keepalive_timer);
}

/* ---- buffers ------------------------------------------------------------------ */

/* Small buffers (output while corking) come from a stack of fixed-size ones; larger
 * ones (big messages in or out) are kept in a few spare slots, so that a stream of
 * large messages does not allocate, fault in and free fresh pages every time. */

static uint8_t *pool_get(wsev_ctx *ctx) {
  if (ctx->pool) {
    uint8_t *buf = ctx->pool;
    memcpy(&ctx->pool, buf, sizeof(void *));
    ctx->pool_count--;
    return buf;
  }
  return wsev__malloc(WSEV_POOL_BUFFER_SIZE);
}

uint8_t *wsev__buf_get(wsev_ctx *ctx, size_t need, size_t *cap) {
  if (need <= WSEV_POOL_BUFFER_SIZE) {
    *cap = WSEV_POOL_BUFFER_SIZE;
    return pool_get(ctx);
  }
  int best = -1;
  for (int i = 0; i < ctx->n_spares; i++)
    if (ctx->spares[i].cap >= need && (best < 0 || ctx->spares[i].cap < ctx->spares[best].cap))
      best = i;
  if (best >= 0) {
    uint8_t *buf = ctx->spares[best].data;
    *cap = ctx->spares[best].cap;
    ctx->spare_bytes -= *cap;
    ctx->spares[best] = ctx->spares[--ctx->n_spares];
    return buf;
  }
  *cap = (need + 4095) & ~(size_t)4095;
  return wsev__malloc(*cap);
}

void wsev__buf_put(wsev_ctx *ctx, uint8_t *buf, size_t cap) {
  if (!buf) return;
  if (ctx->freeing) {
    wsev__free(buf);
  } else if (cap == WSEV_POOL_BUFFER_SIZE) {
    if (ctx->pool_count >= WSEV_POOL_MAX) {
      wsev__free(buf);
      return;
    }
    memcpy(buf, &ctx->pool, sizeof(void *));
    ctx->pool = buf;
    ctx->pool_count++;
  } else if (ctx->n_spares < WSEV_SPARES && ctx->spare_bytes + cap <= WSEV_SPARE_BYTES) {
    ctx->spares[ctx->n_spares].data = buf;
    ctx->spares[ctx->n_spares++].cap = cap;
    ctx->spare_bytes += cap;
  } else {
    wsev__free(buf);
  }
}

wsev_seg *wsev__seg_get(wsev_ctx *ctx) {
  wsev_seg *seg = ctx->free_segs;
  if (seg) {
    ctx->free_segs = seg->next;
  } else {
    seg = wsev__malloc(sizeof *seg);
    if (!seg) return NULL;
  }
  memset(seg, 0, sizeof *seg);
  return seg;
}

void wsev__seg_release(wsev_ctx *ctx, wsev_seg *seg) {
  if (seg->shared) {
    if (--seg->shared->refs == 0) wsev__free(seg->shared);
  } else {
    wsev__buf_put(ctx, seg->data, seg->cap);
  }
  if (ctx->freeing) {
    wsev__free(seg);
    return;
  }
  seg->next = ctx->free_segs;
  ctx->free_segs = seg;
}

int wsev__buf_grow(wsev_ctx *ctx, wsev_buf *b, size_t need) {
  if (need <= b->cap) return 0;
  size_t cap;
  if (need < b->cap + b->cap / 2) need = b->cap + b->cap / 2; /* geometric growth */
  uint8_t *grown = wsev__buf_get(ctx, need, &cap);
  if (!grown) return UV_ENOMEM;
  if (b->len) memcpy(grown, b->data, b->len);
  wsev__buf_put(ctx, b->data, b->cap);
  b->data = grown;
  b->cap = cap;
  return 0;
}

/* ---- lifetime ----------------------------------------------------------------- */

/* libuv writes with write(2): a peer that resets the connection would otherwise
 * kill the process with SIGPIPE. Only the default disposition is changed, so an
 * application's own handler stays. */
static void ignore_sigpipe(void) {
  struct sigaction old;
  if (sigaction(SIGPIPE, NULL, &old) == 0 && old.sa_handler == SIG_DFL) signal(SIGPIPE, SIG_IGN);
}

int wsev_ctx_new(wsev_ctx **ctxp, uv_loop_t *loop, const wsev_handler *handler, void *data) {
  if (!ctxp) return UV_EINVAL;
  *ctxp = NULL;
  if (!handler) return UV_EINVAL;
  ignore_sigpipe();
  wsev_ctx *ctx = wsev__calloc(1, sizeof *ctx);
  if (!ctx) return UV_ENOMEM;
  ctx->read_buf = wsev__malloc(WSEV_READ_BUFFER_SIZE);
  if (!ctx->read_buf) {
    wsev__free(ctx);
    return UV_ENOMEM;
  }
  if (!loop) {
    int rc = uv_loop_init(&ctx->own_loop);
    if (rc) {
      wsev__free(ctx->read_buf);
      wsev__free(ctx);
      return rc;
    }
    loop = &ctx->own_loop;
    ctx->owns_loop = 1;
  }
  ctx->loop = loop;
  ctx->handler = *handler;
  ctx->data = data;
  ctx->timeout_ms = DEFAULT_TIMEOUT_MS;
  ctx->max_message_size = DEFAULT_MAX_MESSAGE;
  ctx->max_header_size = DEFAULT_MAX_HEADER;
  ctx->handshake_timeout_ms = DEFAULT_HANDSHAKE_TIMEOUT_MS;
  ctx->close_timeout_ms = DEFAULT_CLOSE_TIMEOUT_MS;
  ctx->max_buffered = DEFAULT_MAX_BUFFERED;
  ctx->low_water = DEFAULT_LOW_WATER;
  ctx->ping_timeout_ms = DEFAULT_PING_TIMEOUT_MS;
  ctx->defer_timeout_ms = DEFAULT_DEFER_TIMEOUT_MS;
  ctx->next_id = 1;
  wsev__idmap_init(&ctx->ids);

  /* These cannot fail on a valid loop. */
  uv_timer_init(loop, &ctx->timeout_timer);
  uv_timer_init(loop, &ctx->deadline_timer);
  uv_check_init(loop, &ctx->flush_check);
  uv_idle_init(loop, &ctx->flush_idle);
  uv_timer_init(loop, &ctx->keepalive_timer);
  ctx->timeout_timer.data = ctx->deadline_timer.data = ctx->keepalive_timer.data = ctx;
  ctx->flush_check.data = ctx->flush_idle.data = ctx;
  ctx->open_handles = 5;
  uv_check_start(&ctx->flush_check, on_flush_check);
  uv_unref((uv_handle_t *)&ctx->flush_check);
  uv_unref((uv_handle_t *)&ctx->deadline_timer);
  uv_unref((uv_handle_t *)&ctx->keepalive_timer);
  wsev_set_timeout(ctx, ctx->timeout_ms);
  wsev_set_keepalive(ctx, DEFAULT_PING_INTERVAL_MS, DEFAULT_PING_TIMEOUT_MS);
  *ctxp = ctx;
  return 0;
}

static void release(wsev_ctx *ctx) {
  while (ctx->queue_len) {
    wsev__free(ctx->queue[ctx->queue_head].data);
    ctx->queue_head = (ctx->queue_head + 1) % ctx->queue_cap;
    ctx->queue_len--;
  }
  wsev__free(ctx->queue);
  while (ctx->pool) {
    void *buf = ctx->pool;
    memcpy(&ctx->pool, buf, sizeof(void *));
    wsev__free(buf);
  }
  while (ctx->n_spares)
    wsev__free(ctx->spares[--ctx->n_spares].data);
  while (ctx->free_segs) {
    wsev_seg *seg = ctx->free_segs;
    ctx->free_segs = seg->next;
    wsev__free(seg);
  }
  wsev__idmap_free(&ctx->ids);
  for (size_t i = 0; i < ctx->n_origins; i++)
    wsev__free(ctx->origins[i]);
  wsev__free(ctx->origins);
  wsev__free(ctx->read_buf);
  wsev__free(ctx->tls_plain);
  while (ctx->n_client_tls)
    wsev__tls_config_unref(ctx->client_tls[--ctx->n_client_tls]);
  wsev__rng_free(ctx->rng);
  wsev__free(ctx);
}

wsev_rng *wsev__ctx_rng(wsev_ctx *ctx) {
  if (!ctx->rng) ctx->rng = wsev__rng_new();
  return ctx->rng;
}

uint8_t *wsev__ctx_tls_plain(wsev_ctx *ctx) {
  if (!ctx->tls_plain) ctx->tls_plain = wsev__malloc(WSEV_READ_BUFFER_SIZE);
  return ctx->tls_plain;
}

/* On a caller's loop the context is released by the last close callback. */
static void maybe_release(wsev_ctx *ctx) {
  if (ctx->freeing && ctx->open_handles == 0 && !ctx->owns_loop) release(ctx);
}

void wsev_ctx_free(wsev_ctx *ctx) {
  if (!ctx || ctx->freeing) return;
  ctx->freeing = 1;
  wsev__listeners_close(ctx);
  for (wsev_conn *c = ctx->all_head; c; c = c->all_next)
    wsev__conn_abort(c);
  uv_close((uv_handle_t *)&ctx->timeout_timer, on_ctx_handle_closed);
  uv_close((uv_handle_t *)&ctx->deadline_timer, on_ctx_handle_closed);
  uv_close((uv_handle_t *)&ctx->flush_check, on_ctx_handle_closed);
  uv_close((uv_handle_t *)&ctx->flush_idle, on_ctx_handle_closed);
  uv_close((uv_handle_t *)&ctx->keepalive_timer, on_ctx_handle_closed);
  if (ctx->owns_loop) {
    /* Let every close callback (and cancelled write) run, then the loop is empty. */
    uv_run(&ctx->own_loop, UV_RUN_DEFAULT);
    uv_loop_close(&ctx->own_loop);
    release(ctx);
  }
}

void *wsev_ctx_data(const wsev_ctx *ctx) { return ctx->data; }
void wsev_ctx_set_data(wsev_ctx *ctx, void *data) { ctx->data = data; }
uv_loop_t *wsev_ctx_loop(const wsev_ctx *ctx) { return ctx->loop; }

void wsev_set_max_message_size(wsev_ctx *ctx, size_t bytes) {
  if (bytes) ctx->max_message_size = bytes;
}
size_t wsev_get_max_message_size(const wsev_ctx *ctx) { return ctx->max_message_size; }
void wsev_set_max_header_size(wsev_ctx *ctx, size_t bytes) {
  if (bytes) ctx->max_header_size = bytes;
}
void wsev_set_handshake_timeout(wsev_ctx *ctx, uint64_t ms) {
  if (ms) ctx->handshake_timeout_ms = ms;
}
void wsev_set_close_timeout(wsev_ctx *ctx, uint64_t ms) {
  if (ms) ctx->close_timeout_ms = ms;
}
void wsev_set_send_limits(wsev_ctx *ctx, size_t max_buffered, size_t low_water) {
  if (max_buffered) ctx->max_buffered = max_buffered;
  if (low_water) ctx->low_water = low_water;
}
void wsev_set_max_connections(wsev_ctx *ctx, size_t max) { ctx->max_connections = max; }
void wsev_set_defer_timeout(wsev_ctx *ctx, uint64_t ms) {
  if (ms) ctx->defer_timeout_ms = ms;
}

int wsev_event_loop_iteration(wsev_ctx *ctx) { return uv_run(ctx->loop, UV_RUN_ONCE); }

int wsev_event_loop(wsev_ctx *ctx) {
  if (ctx->dispatching) return WSEV_EINCALLBACK;
  uv_run(ctx->loop, UV_RUN_DEFAULT);
  return 0;
}

void wsev_stop(wsev_ctx *ctx) { uv_stop(ctx->loop); }

int wsev_shutdown(wsev_ctx *ctx, uint64_t timeout_ms) {
  if (!ctx || ctx->freeing) return UV_EINVAL;
  if (ctx->shutting_down) return 0;
  ctx->shutting_down = 1;
  ctx->shutdown_deadline = uv_now(ctx->loop) + timeout_ms;
  wsev__listeners_close(ctx);
  /* Nothing of ours but the connections may keep the loop alive now. */
  uv_timer_stop(&ctx->timeout_timer);
  uv_timer_stop(&ctx->keepalive_timer);
  for (wsev_conn *c = ctx->all_head; c; c = c->all_next)
    wsev__conn_shutdown(c);
  schedule_deadlines(ctx);
  return 0;
}

/* ---- the per-connection API ------------------------------------------------------ */

static wsev_conn *find(const wsev_ctx *ctx, uint64_t id) { return wsev__idmap_get(&ctx->ids, id); }

/* A connection the application may use: accepted, not yet closed. */
static wsev_conn *find_open(const wsev_ctx *ctx, uint64_t id) {
  wsev_conn *c = find(ctx, id);
  return c && c->announced ? c : NULL;
}

static int send_message(wsev_ctx *ctx, uint64_t id, int opcode, const void *data, size_t len) {
  wsev_conn *c = find_open(ctx, id);
  if (!c) return WSEV_ENOCONN;
  /* A write can close the connection (backpressure): its closed event must wait
   * until the caller is out of this function. */
  ctx->in_api++;
  int rc = wsev__conn_send(c, opcode, data, len);
  ctx->in_api--;
  return rc;
}

/* Below this size copying a frame into each queue is cheaper than sharing it. */
#define SHARE_MIN 1024

int wsev_broadcast(wsev_ctx *ctx, const uint64_t *ids, size_t count, const void *data, size_t len,
                   wsev_msg_type type) {
  if ((!ids && count) || (!data && len) || len > SIZE_MAX - sizeof(wsev_shared) - 14)
    return UV_EINVAL;
  uint8_t small[SHARE_MIN + WSEV_FRAME_MAX_HEADER];
  wsev_shared *shared = NULL;
  uint8_t *frame = small;
  if (len > SHARE_MIN) {
    shared = wsev__malloc(sizeof *shared + len + WSEV_FRAME_MAX_HEADER);
    if (!shared) return UV_ENOMEM;
    shared->refs = 1; /* ours, dropped below */
    frame = shared->data;
  }
  size_t header = wsev__frame_encode_header(
      frame, 1, type == WSEV_TEXT ? WSEV_OP_TEXT : WSEV_OP_BINARY, len, NULL);
  if (len) memcpy(frame + header, data, len);
  if (shared) shared->len = header + len;
  int queued = 0;
  ctx->in_api++;
  for (size_t i = 0; i < count; i++) {
    wsev_conn *c = find_open(ctx, ids[i]);
    if (!c) continue;
    int rc;
    if (c->client) /* each frame of ours has its own mask */
      rc = wsev__conn_send(c, type == WSEV_TEXT ? WSEV_OP_TEXT : WSEV_OP_BINARY, data, len);
    else if (shared)
      rc = wsev__conn_send_shared(c, shared);
    else
      rc = wsev__conn_send_framed(c, frame, header + len);
    if (rc == 0) queued++;
  }
  ctx->in_api--;
  if (shared && --shared->refs == 0) wsev__free(shared);
  return queued;
}

int wsev_write(wsev_ctx *ctx, uint64_t id, const void *data, size_t len) {
  return send_message(ctx, id, 0x2, data, len);
}

int wsev_write_text(wsev_ctx *ctx, uint64_t id, const char *text, size_t len) {
  return send_message(ctx, id, 0x1, text, len);
}

int wsev_close(wsev_ctx *ctx, uint64_t id) { return wsev_close_with(ctx, id, 1000, NULL); }

int wsev_close_with(wsev_ctx *ctx, uint64_t id, unsigned code, const char *reason) {
  wsev_conn *c = find_open(ctx, id);
  if (!c) return WSEV_ENOCONN;
  size_t len = reason ? strlen(reason) : 0;
  if (!wsev__close_code_is_valid(code) || len > 123 ||
      (len && !wsev__utf8_is_valid((const uint8_t *)reason, len)))
    return UV_EINVAL;
  return wsev__conn_close(c, code, reason);
}

static int decide(wsev_ctx *ctx, uint64_t id, int status, const char *protocol) {
  wsev_conn *c = find(ctx, id);
  if (!c || c->announced || !c->deferred) return WSEV_ENOCONN;
  ctx->in_api++; /* conn_accepted and what follows go out from the next flush */
  int rc = wsev__conn_decide(c, status, protocol);
  ctx->in_api--;
  return rc;
}

int wsev_accept(wsev_ctx *ctx, uint64_t id, const char *protocol) {
  return decide(ctx, id, 0, protocol);
}

int wsev_reject(wsev_ctx *ctx, uint64_t id, int status) {
  if (status < 400 || status > 599) return UV_EINVAL;
  return decide(ctx, id, status, NULL);
}

int wsev_set_conn_data(wsev_ctx *ctx, uint64_t id, void *data) {
  wsev_conn *c = find_open(ctx, id);
  if (!c) return WSEV_ENOCONN;
  c->user_data = data;
  return 0;
}

void *wsev_conn_data(const wsev_ctx *ctx, uint64_t id) {
  if (ctx->closing && ctx->closing->id == id) return ctx->closing->user_data;
  wsev_conn *c = find_open(ctx, id);
  return c ? c->user_data : NULL;
}

int wsev_get_close_info(const wsev_ctx *ctx, uint64_t id, wsev_close_info *info) {
  const wsev_event *ev = ctx->closing;
  if (!ev || ev->id != id) return WSEV_ENOCONN;
  info->error = ev->error;
  info->code = ev->close_code;
  info->by_peer = ev->by_peer;
  size_t n = ev->len < sizeof info->reason ? ev->len : sizeof info->reason - 1;
  if (n) memcpy(info->reason, ev->data, n);
  info->reason[n] = 0;
  return 0;
}

int wsev_get_conn_info(const wsev_ctx *ctx, uint64_t id, wsev_conn_info *info) {
  wsev_conn *c = find_open(ctx, id);
  if (!c) return WSEV_ENOCONN;
  memset(info, 0, sizeof *info);
  int len = sizeof info->peer;
  int rc = uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&info->peer, &len);
  struct sockaddr_storage local;
  len = sizeof local;
  if (!rc) rc = uv_tcp_getsockname(&c->tcp, (struct sockaddr *)&local, &len);
  if (rc) return rc;
  info->local_port = ntohs(local.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&local)->sin6_port
                                                       : ((struct sockaddr_in *)&local)->sin_port);
  info->path = c->info ? c->info : "";
  info->protocol = c->has_protocol ? c->info + strlen(c->info) + 1 : NULL;
  info->client = c->client;
  if (c->tls) {
    info->tls = 1;
    info->server_name = wsev__tls_server_name(c->tls);
    info->tls_version = wsev__tls_version(c->tls);
    info->tls_cipher = wsev__tls_cipher(c->tls);
    info->tls_resumed = wsev__tls_resumed(c->tls);
  }
  return 0;
}

size_t wsev_buffered_amount(const wsev_ctx *ctx, uint64_t id) {
  const wsev_conn *c = find_open(ctx, id);
  return c ? wsev__conn_buffered(c) : 0;
}
