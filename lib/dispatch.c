/* Every event goes through here. An event raised outside any callback is dispatched
 * at once (a message without a copy); one raised while a callback runs, or inside an
 * API call, waits in the queue: callbacks never nest, and no API call runs one before
 * it returns. Queued events go out after the running callback, or in the next check
 * phase. */
#include "dispatch.h"

#include <string.h>

#include "alloc.h"
#include "topic.h"

/* Apart from the per-message path below: what it keeps across the callback would cost
 * every message a register save (8 instructions per echo under callgrind). */
static __attribute__((noinline)) void call_closed(wsev_ctx *ctx, const wsev_event *ev) {
  ctx->closing = ev; /* for wsev_get_close_info and wsev_get_conn_data */
  if (ctx->handler.conn_closed) ctx->handler.conn_closed(ctx, ev->id);
  ctx->closing = NULL;
  if (ctx->topics) wsev__topics_conn_closed(ctx, ev->id); /* it leaves its topics */
}

static void call_handler(wsev_ctx *ctx, const wsev_event *ev) {
  const wsev_handler *h = &ctx->handler;
  switch (ev->kind) {
  case WSEV_EV_ACCEPTED:
    if (h->conn_accepted) h->conn_accepted(ctx, ev->id);
    break;
  case WSEV_EV_MESSAGE:
    if (h->message_received) h->message_received(ctx, ev->id, ev->data, ev->len, ev->msg_type);
    break;
  case WSEV_EV_CLOSED: call_closed(ctx, ev); break;
  case WSEV_EV_TIMEOUT:
    if (h->event_loop_timeout) h->event_loop_timeout(ctx);
    break;
  case WSEV_EV_DRAINED:
    if (h->conn_drained) h->conn_drained(ctx, ev->id);
    break;
  }
}

/* Run the queued events' callbacks in order. */
static void run_queued(wsev_ctx *ctx) {
  while (ctx->queue_len && !ctx->freeing) {
    wsev_event ev = ctx->queue[ctx->queue_head];
    ctx->queue_head = (ctx->queue_head + 1) % ctx->queue_cap;
    ctx->queue_len--;
    call_handler(ctx, &ev);
    wsev__free(ev.data);
  }
}

/* Mostly empty: no call on the data path. */
void wsev__dispatch_pending(wsev_ctx *ctx) {
  if (ctx->queue_len) run_queued(ctx);
}

void wsev__dispatch_begin(wsev_ctx *ctx) {
  ctx->dispatching = 1;
  ctx->last_dispatch = uv_now(ctx->loop);
  wsev__dispatch_pending(ctx);
}

void wsev__dispatch_end(wsev_ctx *ctx) {
  wsev__dispatch_pending(ctx);
  ctx->dispatching = 0;
}

/* Run one event's callback after what was queued before it, then what it queued. */
static void dispatch(wsev_ctx *ctx, const wsev_event *ev) {
  wsev__dispatch_begin(ctx);
  if (!ctx->freeing) call_handler(ctx, ev);
  wsev__dispatch_end(ctx);
}

void wsev__deliver(wsev_ctx *ctx, const wsev_event *ev) {
  wsev__dispatch_pending(ctx);
  if (!ctx->freeing) call_handler(ctx, ev);
}

void wsev__dispatch_queued(wsev_ctx *ctx) {
  if (!ctx->queue_len || ctx->dispatching) return;
  wsev__dispatch_begin(ctx);
  wsev__dispatch_end(ctx);
}

int wsev__reserve_events(wsev_ctx *ctx, size_t n) {
  if (ctx->queue_cap - ctx->queue_len >= n) return 0;
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
  return 0;
}

void wsev__queue_free(wsev_ctx *ctx) {
  while (ctx->queue_len) {
    wsev__free(ctx->queue[ctx->queue_head].data);
    ctx->queue_head = (ctx->queue_head + 1) % ctx->queue_cap;
    ctx->queue_len--;
  }
  wsev__free(ctx->queue);
  ctx->queue = NULL;
  ctx->queue_cap = 0;
}

static int must_wait(const wsev_ctx *ctx) { return ctx->dispatching || ctx->in_api; }

int wsev__dispatch_now(const wsev_ctx *ctx) {
  return !must_wait(ctx) && !ctx->queue_len && !ctx->freeing;
}

/* Closed events cannot be lost here: room for one per id was reserved when the id was
 * handed out. */
static void wait_in_queue(wsev_ctx *ctx, wsev_event *ev) {
  if (wsev__reserve_events(ctx, 1) != 0) {
    wsev__free(ev->data);
    return;
  }
  ctx->queue[(ctx->queue_head + ctx->queue_len) % ctx->queue_cap] = *ev;
  ctx->queue_len++;
  if (!ctx->dispatching) wsev__wake(ctx);
}

void wsev__emit(wsev_ctx *ctx, wsev_event_kind kind, uint64_t id) {
  wsev_event ev = {.kind = (uint8_t)kind, .id = id};
  if (ctx->freeing) return;
  if (must_wait(ctx))
    wait_in_queue(ctx, &ev);
  else
    dispatch(ctx, &ev);
}

void wsev__emit_closed(wsev_ctx *ctx, uint64_t id, const wsev_conn_ending *ending,
                       void *user_data) {
  wsev_event ev = {.kind = WSEV_EV_CLOSED,
                   .id = id,
                   .close_code = ending->code,
                   .by_peer = ending->by_peer,
                   .error = ending->error,
                   .user_data = user_data};
  if (ctx->freeing) return;
  if (ending->reason && *ending->reason) {
    /* Without memory for the reason, conn_closed still fires, with an empty one. */
    ev.len = strlen(ending->reason);
    ev.data = wsev__malloc(ev.len + 1);
    if (ev.data)
      memcpy(ev.data, ending->reason, ev.len + 1);
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

void wsev__emit_message(wsev_ctx *ctx, uint64_t id, const uint8_t *data, size_t len, int text) {
  wsev_event ev = {.kind = WSEV_EV_MESSAGE,
                   .msg_type = (uint8_t)(text ? WSEV_TEXT : WSEV_BINARY),
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

/* ---- the loop timeout ------------------------------------------------------------ */

/* The timer is not restarted per event (that would cost on every message): when it
 * fires it checks how long ago the last dispatch was, and sleeps the rest. */
static void on_timeout_timer(uv_timer_t *t) {
  wsev_ctx *ctx = t->data;
  uint64_t now = uv_now(ctx->loop);
  uint64_t idle = now - ctx->last_dispatch;
  if (ctx->set.timeout_ms == 0) return;
  if (idle >= ctx->set.timeout_ms) {
    wsev__emit(ctx, WSEV_EV_TIMEOUT, 0);
    ctx->last_dispatch = now;
    uv_timer_start(t, on_timeout_timer, ctx->set.timeout_ms, 0);
  } else {
    uv_timer_start(t, on_timeout_timer, ctx->set.timeout_ms - idle, 0);
  }
}

uint64_t wsev_get_timeout(const wsev_ctx *ctx) {
  WSEV_CHECK_CTX_OR(ctx, 0);
  return ctx->set.timeout_ms;
}

int wsev_set_timeout(wsev_ctx *ctx, uint64_t timeout_ms) {
  WSEV_CHECK_CTX(ctx, WSEV_EWRONGTHREAD);
  ctx->set.timeout_ms = timeout_ms;
  uv_update_time(ctx->loop); /* "from now": the loop's cached time may be old */
  ctx->last_dispatch = uv_now(ctx->loop);
  if (timeout_ms)
    uv_timer_start(&ctx->timeout_timer, on_timeout_timer, timeout_ms, 0);
  else
    uv_timer_stop(&ctx->timeout_timer);
  return 0;
}
