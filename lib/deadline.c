/* One timer serves every deadline: a list per kind, sorted by expiry. Durations of a
 * kind are mostly equal, so a new entry goes at the tail in O(1). One more timer
 * sweeps all connections for keepalive (instead of a timer per connection). */
#include "deadline.h"

static void on_deadline_timer(uv_timer_t *t);

void wsev__deadline_schedule(wsev_ctx *ctx) {
  uint64_t next = ctx->shutting_down ? ctx->shutdown_deadline : UINT64_MAX;
  for (int k = 0; k < WSEV_DEADLINE_KINDS; k++)
    if (ctx->dl_head[k] && ctx->dl_head[k]->deadline.at < next) next = ctx->dl_head[k]->deadline.at;
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
    /* Aborting raises conn_closed, whose callback may change the lists: always look
     * at the current head. */
    while (ctx->dl_head[k] && ctx->dl_head[k]->deadline.at <= now) {
      wsev_conn *c = ctx->dl_head[k];
      wsev__deadline_clear(c);
      wsev__conn_on_deadline(c);
    }
  }
  if (ctx->shutting_down == 1 && now >= ctx->shutdown_deadline) {
    /* The bounded wait of wsev_shutdown is over. */
    for (wsev_conn *c = ctx->all_head; c; c = c->all_next)
      wsev__conn_abort(c);
    ctx->shutting_down = 2;
    ctx->shutdown_deadline = UINT64_MAX;
  }
  wsev__deadline_schedule(ctx);
}

void wsev__deadline_clear(wsev_conn *c) {
  wsev_ctx *ctx = c->ctx;
  wsev_conn_deadline *d = &c->deadline;
  if (!d->armed) return;
  int k = d->kind;
  if (d->prev)
    d->prev->deadline.next = d->next;
  else
    ctx->dl_head[k] = d->next;
  if (d->next)
    d->next->deadline.prev = d->prev;
  else
    ctx->dl_tail[k] = d->prev;
  d->prev = d->next = NULL;
  d->armed = 0;
}

void wsev__deadline_set(wsev_conn *c, int kind, uint64_t ms) {
  wsev_ctx *ctx = c->ctx;
  wsev_conn_deadline *d = &c->deadline;
  wsev__deadline_clear(c);
  d->at = ms ? uv_now(ctx->loop) + ms : UINT64_MAX;
  d->kind = (uint8_t)kind;
  d->armed = 1;
  wsev_conn *prev = ctx->dl_tail[kind];
  while (prev && prev->deadline.at > d->at)
    prev = prev->deadline.prev;
  d->prev = prev;
  d->next = prev ? prev->deadline.next : ctx->dl_head[kind];
  if (prev)
    prev->deadline.next = c;
  else
    ctx->dl_head[kind] = c;
  if (d->next)
    d->next->deadline.prev = c;
  else
    ctx->dl_tail[kind] = c;
  if (ms && (!uv_is_active((uv_handle_t *)&ctx->deadline_timer) ||
             uv_timer_get_due_in(&ctx->deadline_timer) > ms))
    wsev__deadline_schedule(ctx);
}

/* ---- keepalive ------------------------------------------------------------------- */

/* A silent peer is pinged between one interval and one interval plus a sweep period
 * after its last bytes. */
static uint64_t keepalive_period(const wsev_ctx *ctx) {
  uint64_t period = ctx->set.ping_interval_ms / 4;
  return period < 10 ? 10 : period;
}

static void on_keepalive_timer(uv_timer_t *t) {
  wsev_ctx *ctx = t->data;
  uint64_t now = uv_now(ctx->loop);
  for (wsev_conn *c = ctx->all_head; c; c = c->all_next)
    wsev__conn_on_keepalive(c, now);
}

void wsev__keepalive_restart(wsev_ctx *ctx) {
  if (ctx->set.ping_interval_ms && !ctx->shutting_down)
    uv_timer_start(&ctx->keepalive_timer, on_keepalive_timer, keepalive_period(ctx),
                   keepalive_period(ctx));
  else
    uv_timer_stop(&ctx->keepalive_timer);
}

int wsev_set_keepalive(wsev_ctx *ctx, uint64_t interval_ms, uint64_t timeout_ms) {
  WSEV_CHECK_CTX(ctx, WSEV_EWRONGTHREAD);
  ctx->set.ping_interval_ms = interval_ms;
  ctx->set.ping_timeout_ms = timeout_ms;
  wsev__keepalive_restart(ctx);
  if (ctx->io) wsev__io_settings(ctx);
  return 0;
}

int wsev_get_keepalive(const wsev_ctx *ctx, uint64_t *interval_ms, uint64_t *timeout_ms) {
  WSEV_CHECK_CTX(ctx, WSEV_EWRONGTHREAD);
  if (!interval_ms || !timeout_ms) return UV_EINVAL;
  *interval_ms = ctx->set.ping_interval_ms;
  *timeout_ms = ctx->set.ping_timeout_ms;
  return 0;
}
