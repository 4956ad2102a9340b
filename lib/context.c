/* The context's life (create, run, shut down, free), its settings, and the check
 * phase that runs queued events and flushes corked output once per iteration. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "deadline.h"
#include "dispatch.h"
#include "topic.h"

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

/* Nothing to do: an active idle handle only makes the poll phase not block, so the
 * check phase after it runs soon (for writes made outside I/O callbacks, from timers
 * or before the loop runs, and for events that wait in the queue). */
static void on_idle(uv_idle_t *h) { (void)h; }

void wsev__wake(wsev_ctx *ctx) { uv_idle_start(&ctx->flush_idle, on_idle); }

static void on_check(uv_check_t *h) {
  wsev_ctx *ctx = h->data;
  wsev__dispatch_queued(ctx);
  wsev__flush_all(ctx);
  uv_idle_stop(&ctx->flush_idle);
}

/* libuv writes with write(2): a peer that resets the connection would otherwise kill
 * the process with SIGPIPE. Only the default disposition is changed, so an
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
  ctx->owner = pthread_self();
  int rc = wsev__post_init(ctx);
  if (rc) {
    if (ctx->owns_loop) uv_loop_close(&ctx->own_loop);
    wsev__free(ctx->read_buf);
    wsev__free(ctx);
    return rc;
  }
  ctx->handler = *handler;
  ctx->data = data;
  ctx->set = (wsev_settings){
      .timeout_ms = DEFAULT_TIMEOUT_MS,
      .max_message_size = DEFAULT_MAX_MESSAGE,
      .max_header_size = DEFAULT_MAX_HEADER,
      .handshake_timeout_ms = DEFAULT_HANDSHAKE_TIMEOUT_MS,
      .close_timeout_ms = DEFAULT_CLOSE_TIMEOUT_MS,
      .max_buffered = DEFAULT_MAX_BUFFERED,
      .low_water = DEFAULT_LOW_WATER,
      .ping_interval_ms = DEFAULT_PING_INTERVAL_MS,
      .ping_timeout_ms = DEFAULT_PING_TIMEOUT_MS,
      .defer_timeout_ms = DEFAULT_DEFER_TIMEOUT_MS,
  };
  ctx->next_id = 1;
  ctx->id_stride = 1;
  wsev__idmap_init(&ctx->ids);
  wsev__pool_init(&ctx->pool);

  /* These cannot fail on a valid loop. */
  uv_timer_init(loop, &ctx->timeout_timer);
  uv_timer_init(loop, &ctx->deadline_timer);
  uv_check_init(loop, &ctx->flush_check);
  uv_idle_init(loop, &ctx->flush_idle);
  uv_timer_init(loop, &ctx->keepalive_timer);
  ctx->timeout_timer.data = ctx->deadline_timer.data = ctx->keepalive_timer.data = ctx;
  ctx->flush_check.data = ctx->flush_idle.data = ctx;
  ctx->open_handles = 6; /* with post_wakeup */
  uv_check_start(&ctx->flush_check, on_check);
  uv_unref((uv_handle_t *)&ctx->flush_check);
  uv_unref((uv_handle_t *)&ctx->deadline_timer);
  uv_unref((uv_handle_t *)&ctx->keepalive_timer);
  wsev_set_timeout(ctx, ctx->set.timeout_ms);
  wsev__keepalive_restart(ctx);
  *ctxp = ctx;
  return 0;
}

static void release(wsev_ctx *ctx) {
  wsev__post_free(ctx);
  wsev__queue_free(ctx);
  wsev__pool_free(&ctx->pool);
  wsev__idmap_free(&ctx->ids);
  for (size_t i = 0; i < ctx->n_origins; i++)
    wsev__free(ctx->origins[i]);
  wsev__free(ctx->origins);
  wsev__free(ctx->read_buf);
  wsev__free(ctx->tls_plain);
  wsev__deflate_streams_free(ctx->deflate_streams);
  while (ctx->n_client_tls)
    wsev__tls_config_unref(ctx->client_tls[--ctx->n_client_tls]);
  wsev__rng_free(ctx->rng);
  wsev__free(ctx);
}

wsev_rng *wsev__ctx_rng(wsev_ctx *ctx) {
  if (!ctx->rng) ctx->rng = wsev__rng_new();
  return ctx->rng;
}

wsev_deflate_streams *wsev__ctx_deflate_streams(wsev_ctx *ctx) {
  if (!ctx->deflate_streams) ctx->deflate_streams = wsev__deflate_streams_new();
  return ctx->deflate_streams;
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
  WSEV_CHECK_CTX_OR(ctx, );
  if (ctx->freeing) return;
  ctx->freeing = 1;
  ctx->pool.closing = 1;
  wsev__topics_free(ctx); /* topics, and the federation's links on this loop */
  if (ctx->io) wsev__io_free(ctx); /* joins the threads: their connections are dropped */
  wsev__listeners_close(ctx);
  for (wsev_conn *c = ctx->all_head; c; c = c->all_next)
    wsev__conn_abort(c);
  uv_close((uv_handle_t *)&ctx->timeout_timer, on_ctx_handle_closed);
  uv_close((uv_handle_t *)&ctx->deadline_timer, on_ctx_handle_closed);
  uv_close((uv_handle_t *)&ctx->flush_check, on_ctx_handle_closed);
  uv_close((uv_handle_t *)&ctx->flush_idle, on_ctx_handle_closed);
  uv_close((uv_handle_t *)&ctx->keepalive_timer, on_ctx_handle_closed);
  wsev__wakeup_close(&ctx->post_wakeup, on_ctx_handle_closed);
  if (ctx->owns_loop) {
    /* Let every close callback (and cancelled write) run, then the loop is empty. */
    uv_run(&ctx->own_loop, UV_RUN_DEFAULT);
    uv_loop_close(&ctx->own_loop);
    release(ctx);
  }
}

int wsev_event_loop_iteration(wsev_ctx *ctx) {
  WSEV_CHECK_CTX(ctx, WSEV_EWRONGTHREAD);
  return uv_run(ctx->loop, UV_RUN_ONCE);
}

int wsev_event_loop(wsev_ctx *ctx) {
  WSEV_CHECK_CTX(ctx, WSEV_EWRONGTHREAD);
  if (ctx->dispatching) return WSEV_EINCALLBACK;
  uv_run(ctx->loop, UV_RUN_DEFAULT);
  return 0;
}

void wsev_stop(wsev_ctx *ctx) {
  WSEV_CHECK_CTX_OR(ctx, );
  uv_stop(ctx->loop);
}

int wsev_shutdown(wsev_ctx *ctx, uint64_t timeout_ms) {
  WSEV_CHECK_CTX(ctx, WSEV_EWRONGTHREAD);
  if (ctx->freeing) return UV_EINVAL;
  if (ctx->shutting_down) return 0;
  ctx->shutting_down = 1;
  ctx->shutdown_deadline = uv_now(ctx->loop) + timeout_ms;
  wsev__listeners_close(ctx);
  if (ctx->io) wsev__io_shutdown(ctx, timeout_ms);
  /* Nothing of ours but the connections may keep the loop alive now. */
  uv_timer_stop(&ctx->timeout_timer);
  uv_timer_stop(&ctx->keepalive_timer);
  for (wsev_conn *c = ctx->all_head; c; c = c->all_next)
    wsev__conn_on_shutdown(c);
  wsev__deadline_schedule(ctx);
  return 0;
}

/* ---- settings ----------------------------------------------------------------------
 * One rule (wsev.h): 0 turns a limit or timer off; a NULL context is UV_EINVAL for a
 * setter and 0 or NULL for a getter. */

void *wsev_get_ctx_data(const wsev_ctx *ctx) {
  WSEV_CHECK_CTX_OR(ctx, NULL);
  return ctx->data;
}

uv_loop_t *wsev_get_loop(const wsev_ctx *ctx) {
  WSEV_CHECK_CTX_OR(ctx, NULL);
  return ctx->loop;
}

int wsev_set_ctx_data(wsev_ctx *ctx, void *data) {
  WSEV_CHECK_CTX(ctx, WSEV_EWRONGTHREAD);
  ctx->data = data;
  return 0;
}

#define SETTING(type, name, field)                                                                 \
  type wsev_get_##name(const wsev_ctx *ctx) {                                                      \
    WSEV_CHECK_CTX_OR(ctx, 0);                                                                     \
    return ctx->set.field;                                                                         \
  }                                                                                                \
  int wsev_set_##name(wsev_ctx *ctx, type value) {                                                 \
    WSEV_CHECK_CTX(ctx, WSEV_EWRONGTHREAD);                                                        \
    ctx->set.field = value;                                                                        \
    if (ctx->io) wsev__io_settings(ctx);                                                           \
    return 0;                                                                                      \
  }
SETTING(size_t, max_message_size, max_message_size)
SETTING(size_t, max_header_size, max_header_size)
SETTING(uint64_t, handshake_timeout, handshake_timeout_ms)
SETTING(uint64_t, close_timeout, close_timeout_ms)
SETTING(size_t, max_connections, max_connections)
SETTING(uint64_t, defer_timeout, defer_timeout_ms)
#undef SETTING

int wsev_set_send_limits(wsev_ctx *ctx, size_t max_buffered, size_t low_water) {
  WSEV_CHECK_CTX(ctx, WSEV_EWRONGTHREAD);
  ctx->set.max_buffered = max_buffered;
  ctx->set.low_water = low_water;
  if (ctx->io) wsev__io_settings(ctx);
  return 0;
}

int wsev_set_deflate(wsev_ctx *ctx, const wsev_deflate_options *options) {
  WSEV_CHECK_CTX(ctx, WSEV_EWRONGTHREAD);
  wsev_deflate_options normal;
  int rc = wsev__deflate_options_normalize(options, &normal);
  if (rc) return rc;
#ifndef WSEV_HAVE_ZLIB
  if (normal.mode != WSEV_DEFLATE_OFF) return UV_ENOTSUP;
#endif
  ctx->set.deflate = normal;
  if (ctx->io) wsev__io_settings(ctx);
  return 0;
}

int wsev_get_deflate(const wsev_ctx *ctx, wsev_deflate_options *options) {
  WSEV_CHECK_CTX(ctx, WSEV_EWRONGTHREAD);
  if (!options) return UV_EINVAL;
  *options = ctx->set.deflate;
  return 0;
}

int wsev_get_send_limits(const wsev_ctx *ctx, size_t *max_buffered, size_t *low_water) {
  WSEV_CHECK_CTX(ctx, WSEV_EWRONGTHREAD);
  if (!max_buffered || !low_water) return UV_EINVAL;
  *max_buffered = ctx->set.max_buffered;
  *low_water = ctx->set.low_water;
  return 0;
}
