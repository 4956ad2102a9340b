/* Recycled memory for the data path: output and reassembly buffers, output segments
 * and frames shared between many output queues. One pool per context; no I/O, so the
 * reader and writer can be tested with a pool of their own. */
#ifndef WSEV_BUFPOOL_H
#define WSEV_BUFPOOL_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* Output buffers of this capacity are recycled, so a connection holds no output
 * buffer while idle and steady traffic allocates none. The pool keeps as many as were
 * in use at once (up to the maximum): with many connections written per iteration,
 * freeing them would make malloc trim and grow the heap every iteration. */
#define WSEV_POOL_BUFFER_SIZE (4 * 1024)
#define WSEV_POOL_MAX 4096
/* Larger buffers kept for reuse: at most this many, and this many bytes in all. */
#define WSEV_SPARES 64
#define WSEV_SPARE_BYTES (16u * 1024 * 1024)

/* A growable byte buffer whose memory comes from the pool. */
typedef struct {
  uint8_t *data;
  size_t len;
  size_t cap;
} wsev_buf;

/* A frame framed once and shared by the output queues of its recipients, on any
 * threads (I/O threads): the count is atomic. */
typedef struct {
  _Atomic size_t refs;
  size_t len;
  uint8_t data[];
} wsev_shared;

/* A piece of output: a buffer of its own (from the pool) or a reference to a shared
 * frame. */
typedef struct wsev_seg {
  struct wsev_seg *next;
  wsev_shared *shared; /* NULL: data/cap is a buffer of this segment's own */
  uint8_t *data;
  size_t len;
  size_t cap;
  size_t off; /* bytes already written */
} wsev_seg;

typedef struct {
  void *small; /* a stack of WSEV_POOL_BUFFER_SIZE buffers linked through their first bytes */
  size_t small_count;
  struct {
    uint8_t *data;
    size_t cap;
  } spares[WSEV_SPARES];
  int n_spares;
  size_t spare_bytes;
  wsev_seg *free_segs;
  int closing; /* the owner is going away: give everything back at once */
} wsev_pool;

void wsev__pool_init(wsev_pool *pool);
/* Free everything the pool keeps (buffers still out are their holders'). */
void wsev__pool_free(wsev_pool *pool);

/* A buffer of at least `need` bytes (*cap gets its size), recycled when possible;
 * NULL without memory. */
uint8_t *wsev__buf_get(wsev_pool *pool, size_t need, size_t *cap);
/* Give a buffer back (NULL is fine): kept for reuse within limits, else freed. */
void wsev__buf_put(wsev_pool *pool, uint8_t *buf, size_t cap);
/* Grow b to hold `need` bytes, keeping its content: 0 or UV_ENOMEM. */
int wsev__buf_grow(wsev_pool *pool, wsev_buf *b, size_t need);
/* Give b's memory back and empty it. */
void wsev__buf_release(wsev_pool *pool, wsev_buf *b);

/* A zeroed segment node, recycled; NULL without memory. */
wsev_seg *wsev__seg_get(wsev_pool *pool);
/* Release a segment's bytes (drop the shared reference, or give back the buffer)
 * and the node. */
void wsev__seg_release(wsev_pool *pool, wsev_seg *seg);

/* A shared frame with room for `len` bytes and one reference (the caller's). */
wsev_shared *wsev__shared_new(size_t len);
void wsev__shared_unref(wsev_shared *shared);

#endif
