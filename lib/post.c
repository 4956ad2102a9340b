/* The way in from other threads: wsev_post, wsev_post_write and wsev_post_broadcast
 * append to a queue under a mutex and wake the context's loop; there the whole batch
 * runs inside the serialized stream, in the order it was posted. A wakeup is sent only
 * when the queue was empty, so a burst of posts costs one. */
#include <string.h>

#include "alloc.h"
#include "context.h"
#include "dispatch.h"

static void run_batch(wsev_ctx *ctx, wsev_post_item *item) {
  wsev__dispatch_begin(ctx);
  wsev_io *io = ctx->io; /* threaded: the batch's writes go to each thread together */
  if (io) wsev__io_cork(ctx);
  while (item) {
    wsev_post_item *next = item->next;
    if (item->kind == POST_OWNED) { /* the item is fn's to free */
      item->fn(ctx->freeing ? NULL : ctx, item);
      item = next;
      continue;
    }
    if (ctx->freeing) {
      if (item->internal) item->fn(NULL, item->arg);
    } else {
      switch (item->kind) {
      case POST_OWNED: break; /* above */
      case POST_CALL: item->fn(ctx, item->arg); break;
      case POST_WRITE:
        if (item->type == WSEV_TEXT)
          wsev_write_text(ctx, item->id, (const char *)item->data, item->len);
        else
          wsev_write(ctx, item->id, item->data, item->len);
        break;
      case POST_BROADCAST:
        wsev_broadcast(ctx, item->ids, item->count, item->data, item->len, item->type);
        break;
      }
    }
    wsev__free(item);
    item = next;
  }
  if (io) wsev__io_uncork(ctx);
  wsev__dispatch_end(ctx);
}

static void on_posted(wsev_wakeup *w) {
  wsev_ctx *ctx = w->poll.data;
  for (;;) {
    uv_mutex_lock(&ctx->post_lock);
    wsev_post_item *batch = ctx->post_head;
    ctx->post_head = ctx->post_tail = NULL;
    uv_mutex_unlock(&ctx->post_lock);
    if (!batch) break;
    run_batch(ctx, batch);
  }
  if (ctx->posts_done && !ctx->freeing) {
    wsev__dispatch_begin(ctx);
    ctx->posts_done(ctx);
    wsev__dispatch_end(ctx);
  }
}

int wsev__post_waiting(wsev_ctx *ctx) {
  uv_mutex_lock(&ctx->post_lock);
  int waiting = ctx->post_head != NULL;
  uv_mutex_unlock(&ctx->post_lock);
  return waiting;
}

int wsev__post_init(wsev_ctx *ctx) {
  int rc = uv_mutex_init(&ctx->post_lock);
  if (rc) return rc;
  rc = wsev__wakeup_init(ctx->loop, &ctx->post_wakeup, on_posted);
  if (rc) {
    uv_mutex_destroy(&ctx->post_lock);
    return rc;
  }
  ctx->post_wakeup.poll.data = ctx;
  /* Posts do not keep the loop alive: the loop ends when wsev has nothing else to do,
   * as it does without them. */
  uv_unref((uv_handle_t *)&ctx->post_wakeup);
  return 0;
}

/* Release posts that will never run: internal ones with fn(NULL, arg). */
static void drop(wsev_post_item *item) {
  while (item) {
    wsev_post_item *next = item->next;
    if (item->kind == POST_OWNED) {
      item->fn(NULL, item);
    } else {
      if (item->internal) item->fn(NULL, item->arg);
      wsev__free(item);
    }
    item = next;
  }
}

void wsev__post_free(wsev_ctx *ctx) {
  drop(ctx->post_head);
  ctx->post_head = ctx->post_tail = NULL;
  uv_mutex_destroy(&ctx->post_lock);
}

/* Append the list head..tail; wake the loop if the queue was empty. */
static void push_list(wsev_ctx *ctx, wsev_post_item *head, wsev_post_item *tail) {
  tail->next = NULL;
  uv_mutex_lock(&ctx->post_lock);
  int was_empty = ctx->post_head == NULL;
  if (ctx->post_tail)
    ctx->post_tail->next = head;
  else
    ctx->post_head = head;
  ctx->post_tail = tail;
  uv_mutex_unlock(&ctx->post_lock);
  if (was_empty) wsev__wakeup_send(&ctx->post_wakeup);
}

static int push(wsev_ctx *ctx, wsev_post_item *item) {
  push_list(ctx, item, item);
  return 0;
}

/* An item with room for `extra` bytes behind it. */
static wsev_post_item *new_item(wsev_post_kind kind, size_t extra) {
  if (extra > SIZE_MAX - sizeof(wsev_post_item)) return NULL;
  wsev_post_item *item = wsev__malloc(sizeof *item + extra);
  if (item) memset(item, 0, sizeof *item);
  if (item) item->kind = kind;
  return item;
}

int wsev_post(wsev_ctx *ctx, wsev_post_fn fn, void *arg) {
  if (!ctx || !fn) return UV_EINVAL;
  wsev_post_item *item = new_item(POST_CALL, 0);
  if (!item) return UV_ENOMEM;
  item->fn = fn;
  item->arg = arg;
  return push(ctx, item);
}

static wsev_post_item *new_internal(wsev_post_fn fn, void *arg) {
  wsev_post_item *item = new_item(POST_CALL, 0);
  if (item) {
    item->fn = fn;
    item->arg = arg;
    item->internal = 1;
  }
  return item;
}

int wsev__post_internal(wsev_ctx *ctx, wsev_post_fn fn, void *arg) {
  wsev_post_item *item = new_internal(fn, arg);
  return item ? push(ctx, item) : UV_ENOMEM;
}

void wsev__post_owned_init(wsev_post_item *item, wsev_post_fn fn) {
  memset(item, 0, sizeof *item);
  item->kind = POST_OWNED;
  item->fn = fn;
}

void wsev__post_owned(wsev_ctx *ctx, wsev_post_item *item) { push(ctx, item); }

void wsev__post_batch_add_owned(wsev_post_batch *batch, wsev_post_item *item) {
  item->next = NULL;
  if (batch->tail)
    batch->tail->next = item;
  else
    batch->head = item;
  batch->tail = item;
}

int wsev__post_batch_add(wsev_post_batch *batch, wsev_post_fn fn, void *arg) {
  wsev_post_item *item = new_internal(fn, arg);
  if (!item) return UV_ENOMEM;
  wsev__post_batch_add_owned(batch, item);
  return 0;
}

void wsev__post_batch_send(wsev_ctx *ctx, wsev_post_batch *batch) {
  if (!batch->head) return;
  push_list(ctx, batch->head, batch->tail);
  batch->head = batch->tail = NULL;
}

void wsev__post_batch_drop(wsev_post_batch *batch) {
  drop(batch->head);
  batch->head = batch->tail = NULL;
}

int wsev_post_write(wsev_ctx *ctx, uint64_t id, const void *data, size_t len, wsev_msg_type type) {
  if (!ctx || (!data && len)) return UV_EINVAL;
  wsev_post_item *item = new_item(POST_WRITE, len);
  if (!item) return UV_ENOMEM;
  item->id = id;
  item->type = type;
  item->data = (uint8_t *)(item + 1);
  item->len = len;
  if (len) memcpy(item->data, data, len);
  return push(ctx, item);
}

int wsev_post_broadcast(wsev_ctx *ctx, const uint64_t *ids, size_t count, const void *data,
                        size_t len, wsev_msg_type type) {
  if (!ctx || (!ids && count) || (!data && len) || count > SIZE_MAX / 16) return UV_EINVAL;
  size_t ids_size = count * sizeof *ids;
  if (len > SIZE_MAX - ids_size) return UV_EINVAL;
  wsev_post_item *item = new_item(POST_BROADCAST, ids_size + len);
  if (!item) return UV_ENOMEM;
  item->ids = (uint64_t *)(item + 1);
  item->count = count;
  if (count) memcpy(item->ids, ids, ids_size);
  item->data = (uint8_t *)item->ids + ids_size;
  item->len = len;
  if (len) memcpy(item->data, data, len);
  item->type = type;
  return push(ctx, item);
}
