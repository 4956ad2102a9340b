/* Small buffers (output while corking) come from a stack of fixed-size ones; larger
 * ones (big messages in or out) are kept in a few spare slots, so that a stream of
 * large messages does not allocate, fault in and free fresh pages every time. */
#include "bufpool.h"

#include <string.h>
#include <uv.h>

#include "alloc.h"

void wsev__pool_init(wsev_pool *pool) { memset(pool, 0, sizeof *pool); }

void wsev__pool_free(wsev_pool *pool) {
  while (pool->small) {
    void *buf = pool->small;
    memcpy(&pool->small, buf, sizeof(void *));
    wsev__free(buf);
  }
  while (pool->n_spares)
    wsev__free(pool->spares[--pool->n_spares].data);
  while (pool->free_segs) {
    wsev_seg *seg = pool->free_segs;
    pool->free_segs = seg->next;
    wsev__free(seg);
  }
  pool->small_count = 0;
  pool->spare_bytes = 0;
}

static uint8_t *small_get(wsev_pool *pool) {
  if (pool->small) {
    uint8_t *buf = pool->small;
    memcpy(&pool->small, buf, sizeof(void *));
    pool->small_count--;
    return buf;
  }
  return wsev__malloc(WSEV_POOL_BUFFER_SIZE);
}

uint8_t *wsev__buf_get(wsev_pool *pool, size_t need, size_t *cap) {
  if (need <= WSEV_POOL_BUFFER_SIZE) {
    *cap = WSEV_POOL_BUFFER_SIZE;
    return small_get(pool);
  }
  int best = -1;
  for (int i = 0; i < pool->n_spares; i++)
    if (pool->spares[i].cap >= need && (best < 0 || pool->spares[i].cap < pool->spares[best].cap))
      best = i;
  if (best >= 0) {
    uint8_t *buf = pool->spares[best].data;
    *cap = pool->spares[best].cap;
    pool->spare_bytes -= *cap;
    pool->spares[best] = pool->spares[--pool->n_spares];
    return buf;
  }
  *cap = (need + 4095) & ~(size_t)4095;
  return wsev__malloc(*cap);
}

void wsev__buf_put(wsev_pool *pool, uint8_t *buf, size_t cap) {
  if (!buf) return;
  if (pool->closing) {
    wsev__free(buf);
  } else if (cap == WSEV_POOL_BUFFER_SIZE) {
    if (pool->small_count >= WSEV_POOL_MAX) {
      wsev__free(buf);
      return;
    }
    memcpy(buf, &pool->small, sizeof(void *));
    pool->small = buf;
    pool->small_count++;
  } else if (pool->n_spares < WSEV_SPARES && pool->spare_bytes + cap <= WSEV_SPARE_BYTES) {
    pool->spares[pool->n_spares].data = buf;
    pool->spares[pool->n_spares++].cap = cap;
    pool->spare_bytes += cap;
  } else {
    wsev__free(buf);
  }
}

int wsev__buf_grow(wsev_pool *pool, wsev_buf *b, size_t need) {
  if (need <= b->cap) return 0;
  size_t cap;
  if (need < b->cap + b->cap / 2) need = b->cap + b->cap / 2; /* geometric growth */
  uint8_t *grown = wsev__buf_get(pool, need, &cap);
  if (!grown) return UV_ENOMEM;
  if (b->len) memcpy(grown, b->data, b->len);
  wsev__buf_put(pool, b->data, b->cap);
  b->data = grown;
  b->cap = cap;
  return 0;
}

void wsev__buf_release(wsev_pool *pool, wsev_buf *b) {
  wsev__buf_put(pool, b->data, b->cap);
  memset(b, 0, sizeof *b);
}

wsev_seg *wsev__seg_get(wsev_pool *pool) {
  wsev_seg *seg = pool->free_segs;
  if (seg) {
    pool->free_segs = seg->next;
  } else {
    seg = wsev__malloc(sizeof *seg);
    if (!seg) return NULL;
  }
  memset(seg, 0, sizeof *seg);
  return seg;
}

void wsev__seg_release(wsev_pool *pool, wsev_seg *seg) {
  if (seg->shared)
    wsev__shared_unref(seg->shared);
  else
    wsev__buf_put(pool, seg->data, seg->cap);
  if (pool->closing) {
    wsev__free(seg);
    return;
  }
  seg->next = pool->free_segs;
  pool->free_segs = seg;
}

wsev_shared *wsev__shared_new(size_t len) {
  if (len > SIZE_MAX - sizeof(wsev_shared)) return NULL;
  wsev_shared *shared = wsev__malloc(sizeof *shared + len);
  if (shared) {
    atomic_init(&shared->refs, 1);
    shared->len = 0;
  }
  return shared;
}

void wsev__shared_unref(wsev_shared *shared) {
  if (atomic_fetch_sub_explicit(&shared->refs, 1, memory_order_acq_rel) == 1) wsev__free(shared);
}
