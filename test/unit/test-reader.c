/* The frame reader on scripted bytes, no socket: events, every RFC 6455 rule it
 * enforces, and the same events for the same bytes however they are split. */
#include <stdlib.h>

#include "frame.h"
#include "reader.h"
#include "test.h"

#define MAX_MESSAGE 1000

static wsev_pool pool;

/* Frame a payload as a peer would: masked (a client's) or not (a server's). */
static size_t frame(uint8_t *out, int fin, int opcode, const void *payload, size_t len,
                    int masked) {
  static const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
  size_t h = wsev__frame_encode_header(out, fin, opcode, len, masked ? key : NULL);
  memcpy(out + h, payload, len);
  if (masked) wsev__frame_unmask(out + h, len, key, 0);
  return h + len;
}

/* An event as recorded by a test: its kind, and a copy of its bytes. */
typedef struct {
  wsev_read_kind kind;
  unsigned code, fail;
  int text;
  size_t len;
  uint8_t data[MAX_MESSAGE];
} event;

/* Feed `in` in chunks of the given sizes (0 ends the list: the rest in one chunk) and
 * record every event, up to `max`. The input is copied: the reader unmasks in place. */
static size_t feed(wsev_reader *r, const uint8_t *in, size_t n, const size_t *chunks, event *out,
                   size_t max) {
  uint8_t *copy = malloc(n ? n : 1);
  memcpy(copy, in, n);
  size_t count = 0, at = 0;
  for (size_t c = 0; at < n; c++) {
    size_t len = chunks && chunks[c] ? chunks[c] : n - at;
    if (len > n - at) len = n - at;
    uint8_t *p = copy + at;
    size_t left = len;
    for (;;) {
      wsev_read_event ev = {0};
      wsev_read_kind k = wsev__reader_next(r, &pool, MAX_MESSAGE, &p, &left, &ev);
      if (k == WSEV_READ_MORE) break;
      if (count < max) {
        event *e = &out[count];
        e->kind = k;
        e->code = ev.code;
        e->fail = ev.fail;
        e->text = ev.text;
        e->len = ev.len;
        if (ev.len) memcpy(e->data, ev.data, ev.len);
      }
      count++;
      if (k == WSEV_READ_FAIL) {
        free(copy);
        return count;
      }
    }
    CHECK_EQ_UINT(left, 0); /* MORE means everything was used */
    at += len;
  }
  free(copy);
  return count;
}

static size_t feed_whole(int from_server, const uint8_t *in, size_t n, event *out, size_t max) {
  wsev_reader r;
  wsev__reader_init(&r, from_server);
  size_t count = feed(&r, in, n, NULL, out, max);
  wsev__reader_free(&r, &pool);
  return count;
}

static event events[16], again[16];

static void test_single_messages(void) {
  uint8_t in[2000];
  size_t n;
  TEST_CASE("a masked text message, whole: delivered without a copy");
  {
    n = frame(in, 1, WSEV_OP_TEXT, "hello", 5, 1);
    wsev_reader r;
    wsev__reader_init(&r, 0);
    uint8_t *p = in;
    size_t left = n;
    wsev_read_event ev;
    CHECK_EQ_INT(wsev__reader_next(&r, &pool, MAX_MESSAGE, &p, &left, &ev), WSEV_READ_MESSAGE);
    CHECK(ev.data == in + 6); /* points into the input, unmasked in place */
    CHECK_EQ_UINT(ev.len, 5);
    CHECK_EQ_MEM(ev.data, "hello", 5);
    CHECK_EQ_INT(ev.text, 1);
    CHECK_EQ_UINT(left, 0);
    CHECK_EQ_INT(wsev__reader_next(&r, &pool, MAX_MESSAGE, &p, &left, &ev), WSEV_READ_MORE);
    wsev__reader_free(&r, &pool);
  }

  TEST_CASE("a binary message from a server (unmasked) to a client's reader");
  n = frame(in, 1, WSEV_OP_BINARY, "\x00\xff", 2, 0);
  CHECK_EQ_UINT(feed_whole(1, in, n, events, 16), 1);
  CHECK_EQ_INT(events[0].kind, WSEV_READ_MESSAGE);
  CHECK_EQ_INT(events[0].text, 0);
  CHECK_EQ_MEM(events[0].data, "\x00\xff", 2);

  TEST_CASE("an empty text message");
  n = frame(in, 1, WSEV_OP_TEXT, "", 0, 1);
  CHECK_EQ_UINT(feed_whole(0, in, n, events, 16), 1);
  CHECK_EQ_INT(events[0].kind, WSEV_READ_MESSAGE);
  CHECK_EQ_UINT(events[0].len, 0);

  TEST_CASE("a message of exactly the maximum, in a 16-bit length header");
  {
    static uint8_t big[MAX_MESSAGE];
    for (size_t i = 0; i < sizeof big; i++)
      big[i] = (uint8_t)(i * 7);
    n = frame(in, 1, WSEV_OP_BINARY, big, sizeof big, 1);
    CHECK_EQ_UINT(feed_whole(0, in, n, events, 16), 1);
    CHECK_EQ_UINT(events[0].len, MAX_MESSAGE);
    CHECK_EQ_MEM(events[0].data, big, MAX_MESSAGE);
  }
}

static void test_rules(void) {
  uint8_t in[2000];
  size_t n;
  struct {
    const char *name;
    int from_server;
    uint8_t bytes[16];
    size_t len;
    unsigned fail;
  } cases[] = {
      {"unmasked frame from a client", 0, {0x81, 0x01, 'x'}, 3, 1002},
      {"masked frame from a server", 1, {0x81, 0x81, 1, 2, 3, 4, 'x'}, 7, 1002},
      {"RSV1 without an extension", 0, {0xC1, 0x80, 0, 0, 0, 0}, 6, 1002},
      {"reserved opcode 3", 0, {0x83, 0x80, 0, 0, 0, 0}, 6, 1002},
      {"continuation without a message", 0, {0x80, 0x80, 0, 0, 0, 0}, 6, 1002},
      {"fragmented ping", 0, {0x09, 0x80, 0, 0, 0, 0}, 6, 1002},
      {"ping over 125 bytes", 0, {0x89, 0xFE, 0, 126, 0, 0, 0, 0}, 8, 1002},
      {"64-bit length with its top bit set", 0, {0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 5}, 10, 1002},
      {"header over the maximum, before any payload",
       0,
       {0x82, 0xFE, 0x03, 0xE9, 1, 2, 3, 4},
       8,
       1009},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    TEST_CASE(cases[i].name);
    CHECK_EQ_UINT(feed_whole(cases[i].from_server, cases[i].bytes, cases[i].len, events, 16), 1);
    CHECK_EQ_INT(events[0].kind, WSEV_READ_FAIL);
    CHECK_EQ_UINT(events[0].fail, cases[i].fail);
  }

  TEST_CASE("a new message inside a fragmented one");
  n = frame(in, 0, WSEV_OP_TEXT, "a", 1, 1);
  n += frame(in + n, 1, WSEV_OP_TEXT, "b", 1, 1);
  CHECK_EQ_UINT(feed_whole(0, in, n, events, 16), 1);
  CHECK_EQ_UINT(events[0].fail, 1002);

  TEST_CASE("fragments over the maximum together: 1009 at the second header");
  {
    static uint8_t half[600];
    n = frame(in, 0, WSEV_OP_BINARY, half, sizeof half, 1);
    n += frame(in + n, 1, WSEV_OP_CONT, half, sizeof half, 1);
    CHECK_EQ_UINT(feed_whole(0, in, n, events, 16), 1);
    CHECK_EQ_UINT(events[0].fail, 1009);
  }

  TEST_CASE("invalid UTF-8 fails at the first bad byte, across fragments");
  n = frame(in, 0, WSEV_OP_TEXT, "ok \xE2\x82", 5, 1);
  n += frame(in + n, 0, WSEV_OP_CONT, "\x41", 1, 1); /* not a continuation byte */
  n += frame(in + n, 1, WSEV_OP_CONT, "never read", 10, 1);
  {
    wsev_reader r;
    wsev__reader_init(&r, 0);
    const size_t chunks[] = {11, 7, 0}; /* the first frame, then the bad one */
    CHECK_EQ_UINT(feed(&r, in, n, chunks, events, 16), 1);
    CHECK_EQ_UINT(events[0].fail, 1007);
    wsev__reader_free(&r, &pool);
  }

  TEST_CASE("text ending inside a code point");
  n = frame(in, 1, WSEV_OP_TEXT, "\xE2\x82", 2, 1);
  CHECK_EQ_UINT(feed_whole(0, in, n, events, 16), 1);
  CHECK_EQ_UINT(events[0].fail, 1007);

  TEST_CASE("binary is not checked as UTF-8");
  n = frame(in, 1, WSEV_OP_BINARY, "\xE2\x82", 2, 1);
  CHECK_EQ_UINT(feed_whole(0, in, n, events, 16), 1);
  CHECK_EQ_INT(events[0].kind, WSEV_READ_MESSAGE);
}

static void test_control(void) {
  uint8_t in[256];
  size_t n;
  TEST_CASE("close with a code and a reason");
  n = frame(in, 1, WSEV_OP_CLOSE,
            "\x03\xe8"
            "bye",
            5, 1);
  CHECK_EQ_UINT(feed_whole(0, in, n, events, 16), 1);
  CHECK_EQ_INT(events[0].kind, WSEV_READ_CLOSE);
  CHECK_EQ_UINT(events[0].code, 1000);
  CHECK_EQ_UINT(events[0].fail, 0);
  CHECK_EQ_UINT(events[0].len, 3);
  CHECK_EQ_MEM(events[0].data, "bye", 3);

  TEST_CASE("close without a payload: 1005");
  n = frame(in, 1, WSEV_OP_CLOSE, "", 0, 1);
  CHECK_EQ_UINT(feed_whole(0, in, n, events, 16), 1);
  CHECK_EQ_UINT(events[0].code, 1005);
  CHECK_EQ_UINT(events[0].fail, 0);

  TEST_CASE("close with one byte, a bad code, or a reason that is not UTF-8");
  n = frame(in, 1, WSEV_OP_CLOSE, "\x03", 1, 1);
  CHECK_EQ_UINT(feed_whole(0, in, n, events, 16), 1);
  CHECK_EQ_UINT(events[0].fail, 1002);
  n = frame(in, 1, WSEV_OP_CLOSE, "\x03\xed", 2, 1); /* 1005 may not be sent */
  CHECK_EQ_UINT(feed_whole(0, in, n, events, 16), 1);
  CHECK_EQ_UINT(events[0].fail, 1002);
  n = frame(in, 1, WSEV_OP_CLOSE, "\x03\xe8\xff", 3, 1);
  CHECK_EQ_UINT(feed_whole(0, in, n, events, 16), 1);
  CHECK_EQ_UINT(events[0].fail, 1007);

  TEST_CASE("ping and pong payloads");
  n = frame(in, 1, WSEV_OP_PING, "are you there", 13, 1);
  n += frame(in + n, 1, WSEV_OP_PONG, "yes", 3, 1);
  CHECK_EQ_UINT(feed_whole(0, in, n, events, 16), 2);
  CHECK_EQ_INT(events[0].kind, WSEV_READ_PING);
  CHECK_EQ_MEM(events[0].data, "are you there", 13);
  CHECK_EQ_INT(events[1].kind, WSEV_READ_PONG);

  TEST_CASE("discarding after our close: data dropped, even invalid text; close still read");
  {
    wsev_reader r;
    wsev__reader_init(&r, 0);
    wsev__reader_discard(&r);
    n = frame(in, 1, WSEV_OP_TEXT, "\xff", 1, 1);
    n += frame(in + n, 1, WSEV_OP_CLOSE, "\x03\xe8", 2, 1);
    CHECK_EQ_UINT(feed(&r, in, n, NULL, events, 16), 1);
    CHECK_EQ_INT(events[0].kind, WSEV_READ_CLOSE);
    wsev__reader_free(&r, &pool);
  }
}

/* Every split of a stream of frames gives the same events as the whole stream: the
 * stream holds a fragmented text message with a ping inside it (split across the
 * header, the mask and the payload), a binary message and a close. */
static void test_every_split(void) {
  uint8_t in[512];
  size_t n = 0;
  n += frame(in + n, 0, WSEV_OP_TEXT, "caf\xC3", 4, 1); /* é split across fragments */
  n += frame(in + n, 1, WSEV_OP_PING, "p", 1, 1);
  n += frame(in + n, 1, WSEV_OP_CONT, "\xA9 au lait", 9, 1);
  n += frame(in + n, 1, WSEV_OP_BINARY, "0123456789", 10, 1);
  n += frame(in + n, 1, WSEV_OP_CLOSE, "\x03\xe9", 2, 1);
  TEST_CASE("the whole stream");
  size_t count = feed_whole(0, in, n, events, 16);
  CHECK_EQ_UINT(count, 4);
  CHECK_EQ_INT(events[0].kind, WSEV_READ_PING);
  CHECK_EQ_INT(events[1].kind, WSEV_READ_MESSAGE);
  CHECK_EQ_UINT(events[1].len, 13);
  CHECK_EQ_MEM(events[1].data, "caf\xC3\xA9 au lait", 13);
  CHECK_EQ_INT(events[2].kind, WSEV_READ_MESSAGE);
  CHECK_EQ_INT(events[3].kind, WSEV_READ_CLOSE);
  CHECK_EQ_UINT(events[3].code, 1001);

  TEST_CASE("split at every point, and one byte at a time");
  for (size_t split = 0; split <= n + 1; split++) {
    size_t ones[600];
    const size_t *chunks = ones;
    size_t two[3] = {split, 0, 0};
    if (split <= n) {
      chunks = split ? two : NULL;
    } else {
      for (size_t i = 0; i < n; i++)
        ones[i] = 1;
    }
    wsev_reader r;
    wsev__reader_init(&r, 0);
    size_t got = feed(&r, in, n, chunks, again, 16);
    wsev__reader_free(&r, &pool);
    CHECK_EQ_INTF(got, count, "split at %zu", split);
    for (size_t i = 0; i < got && i < count; i++) {
      CHECK_EQ_INTF(again[i].kind, events[i].kind, "split at %zu, event %zu", split, i);
      CHECKF(again[i].len == events[i].len &&
                 memcmp(again[i].data, events[i].data, again[i].len) == 0,
             "split at %zu, event %zu", split, i);
    }
  }
}

int main(void) {
  wsev__pool_init(&pool);
  test_single_messages();
  test_rules();
  test_control();
  test_every_split();
  wsev__pool_free(&pool);
  return TEST_REPORT();
}
