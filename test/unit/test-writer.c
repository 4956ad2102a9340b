/* The corked writer on scripted writes, no socket: framing and masking, the order of
 * copied and shared frames, what one writev would carry, partial writes at every
 * offset, backpressure accounting, and buffers given back. */
#include <stdlib.h>

#include "frame.h"
#include "test.h"
#include "writer.h"
#include "wsev.h"

static wsev_pool pool;

/* The bytes one writev of the whole queue would send. */
static size_t queued(const wsev_writer *w, uint8_t *out, size_t cap) {
  uv_buf_t bufs[64];
  unsigned n = wsev__writer_gather(w, bufs, 64);
  size_t len = 0;
  for (unsigned i = 0; i < n; i++) {
    if (len + bufs[i].len > cap) return SIZE_MAX;
    memcpy(out + len, bufs[i].base, bufs[i].len);
    len += bufs[i].len;
  }
  return len;
}

static void test_framing(void) {
  wsev_writer w = {0};
  uint8_t got[80000];
  size_t n;

  TEST_CASE("a server's text frame: unmasked, 7-bit length");
  CHECK_EQ_INT(wsev__writer_frame(&w, &pool, WSEV_OP_TEXT, "hello", 5, NULL), 0);
  n = queued(&w, got, sizeof got);
  CHECK_EQ_UINT(n, 7);
  CHECK_EQ_MEM(got, "\x81\x05hello", 7);
  CHECK_EQ_UINT(wsev__writer_buffered(&w), 7);

  TEST_CASE("a client's frame: masked with the key given, payload XORed");
  const uint8_t key[4] = {1, 2, 3, 4};
  CHECK_EQ_INT(wsev__writer_frame(&w, &pool, WSEV_OP_BINARY, "\0\0\0\0\0", 5, key), 0);
  n = queued(&w, got, sizeof got);
  CHECK_EQ_UINT(n, 7 + 11);
  CHECK_EQ_MEM(got + 7, "\x82\x85\x01\x02\x03\x04\x01\x02\x03\x04\x01", 11);

  TEST_CASE("a 70000-byte frame: 64-bit length, beyond a pool buffer");
  static uint8_t big[70000];
  for (size_t i = 0; i < sizeof big; i++)
    big[i] = (uint8_t)i;
  wsev__writer_consume(&w, &pool, 18);
  CHECK_EQ_UINT(wsev__writer_buffered(&w), 0);
  CHECK_EQ_INT(wsev__writer_frame(&w, &pool, WSEV_OP_BINARY, big, sizeof big, NULL), 0);
  n = queued(&w, got, sizeof got);
  CHECK_EQ_UINT(n, 10 + sizeof big);
  CHECK_EQ_MEM(got, "\x82\x7f\x00\x00\x00\x00\x00\x01\x11\x70", 10);
  CHECK(memcmp(got + 10, big, sizeof big) == 0);

  TEST_CASE("a message too large to frame");
  CHECK_EQ_INT(wsev__writer_frame(&w, &pool, WSEV_OP_BINARY, big, SIZE_MAX / 2, NULL),
               WSEV_EMSGSIZE);
  CHECK_EQ_UINT(wsev__writer_buffered(&w), 10 + sizeof big); /* nothing queued */
  wsev__writer_free(&w, &pool);
  CHECK_EQ_UINT(wsev__writer_buffered(&w), 0);
}

/* Copied bytes, a shared frame, more bytes: one writev in order; then the kernel
 * takes every possible prefix, and what is left is always the rest. */
static void test_order_and_partial_writes(void) {
  uint8_t expect[4000], got[4000];
  wsev_shared *shared = wsev__shared_new(2000);
  memset(shared->data, 'S', 2000);
  shared->len = 2000;
  memcpy(expect, "first", 5);
  memset(expect + 5, 'S', 2000);
  memcpy(expect + 2005, "last", 4);
  const size_t total = 2009;

  TEST_CASE("bytes, a shared frame, bytes: in order");
  for (size_t taken = 0; taken <= total; taken++) {
    wsev_writer w = {0};
    CHECK_EQ_INT(wsev__writer_bytes(&w, &pool, "first", 5), 0);
    CHECK_EQ_INT(wsev__writer_shared(&w, &pool, shared), 0);
    CHECK_EQ_INT(wsev__writer_bytes(&w, &pool, "last", 4), 0);
    CHECK_EQ_UINT(shared->refs, 2);
    size_t n = queued(&w, got, sizeof got);
    CHECK_EQ_UINT(n, total);
    CHECK(memcmp(got, expect, total) == 0);
    wsev__writer_consume(&w, &pool, taken);
    n = queued(&w, got, sizeof got);
    CHECK_EQ_INTF(n, total - taken, "after %zu taken", taken);
    CHECKF(memcmp(got, expect + taken, n) == 0, "after %zu taken", taken);
    CHECK_EQ_UINT(wsev__writer_buffered(&w), total - taken);
    CHECK_EQ_INT(wsev__writer_has_output(&w), taken < total);
    wsev__writer_free(&w, &pool);
    CHECK_EQ_UINT(shared->refs, 1); /* every reference of the queue given back */
  }
  wsev__shared_unref(shared);
}

static void test_take(void) {
  TEST_CASE("take: the whole queue as segments for a write request");
  wsev_writer w = {0};
  wsev__writer_bytes(&w, &pool, "abc", 3);
  wsev_seg *head;
  size_t bytes;
  CHECK_EQ_INT(wsev__writer_take(&w, &pool, &head, &bytes), 0);
  CHECK_EQ_UINT(bytes, 3);
  CHECK(head && !head->next && head->len == 3 && memcmp(head->data, "abc", 3) == 0);
  CHECK_EQ_UINT(wsev__writer_buffered(&w), 0);
  CHECK(!wsev__writer_has_output(&w));
  w.inflight = bytes; /* as flush.c counts it until the request completes */
  CHECK_EQ_UINT(wsev__writer_buffered(&w), 3);
  wsev__seg_release(&pool, head);
  wsev__writer_free(&w, &pool);
}

static void test_backpressure(void) {
  TEST_CASE("over the limit only while bytes wait");
  wsev_writer w = {0};
  CHECK(!wsev__writer_over_limit(&w, 5000, 100)); /* one large message into an empty queue */
  wsev__writer_bytes(&w, &pool, "0123456789", 10);
  CHECK(!wsev__writer_over_limit(&w, 90, 100));
  CHECK(wsev__writer_over_limit(&w, 91, 100));
  CHECK(wsev__writer_over_limit(&w, SIZE_MAX, 100));

  TEST_CASE("dropping frames not yet begun keeps the one on its way");
  wsev_shared *shared = wsev__shared_new(10);
  memcpy(shared->data, "SSSSSSSSSS", 10);
  shared->len = 10;
  wsev__writer_shared(&w, &pool, shared); /* seals "0123456789" into a segment */
  wsev__writer_bytes(&w, &pool, "tail", 4);
  wsev__writer_consume(&w, &pool, 3); /* the first segment is begun */
  wsev__writer_drop_unsent(&w, &pool);
  uint8_t got[64];
  size_t n = queued(&w, got, sizeof got);
  CHECK_EQ_UINT(n, 7);
  CHECK_EQ_MEM(got, "3456789", 7);
  CHECK_EQ_UINT(shared->refs, 1); /* the dropped reference was given back */
  CHECK_EQ_INT(wsev__writer_frame(&w, &pool, WSEV_OP_CLOSE, "\x03\xf0", 2, NULL), 0);
  n = queued(&w, got, sizeof got);
  CHECK_EQ_UINT(n, 11);
  CHECK_EQ_MEM(got + 7, "\x88\x02\x03\xf0", 4); /* the close right behind */
  wsev__writer_free(&w, &pool);
  wsev__shared_unref(shared);

  TEST_CASE("kept head bytes count down as they are written");
  wsev_writer h = {0};
  wsev__writer_bytes(&h, &pool, "HTTP/1.1 101", 12);
  h.head_kept = 12;
  wsev__writer_consume(&h, &pool, 5);
  CHECK_EQ_UINT(h.head_kept, 7);
  wsev__writer_consume(&h, &pool, 7);
  CHECK_EQ_UINT(h.head_kept, 0);
  wsev__writer_free(&h, &pool);
}

static void test_pool(void) {
  TEST_CASE("buffers go back to the pool and are reused");
  size_t before = pool.small_count;
  wsev_writer w = {0};
  wsev__writer_bytes(&w, &pool, "x", 1);
  CHECK_EQ_UINT(pool.small_count, before ? before - 1 : 0);
  wsev__writer_consume(&w, &pool, 1); /* all written: the buffer goes back */
  CHECK_EQ_UINT(pool.small_count, before ? before : 1);
  CHECK(w.out.data == NULL && w.out.cap == 0); /* an idle writer holds nothing */
}

int main(void) {
  wsev__pool_init(&pool);
  test_framing();
  test_order_and_partial_writes();
  test_take();
  test_backpressure();
  test_pool();
  wsev__pool_free(&pool);
  return TEST_REPORT();
}
