/* fuzz-http-proxy: the parser of an HTTP proxy's answer to CONNECT (lib/http_proxy.h).
 *
 * Input: 1 byte of flags (bits 0-6: the head limit, 16 * n bytes, 0 meaning
 * WSEV_PROXY_ANSWER_MAX; bit 7 unused), 1 byte split seed, then the answer bytes.
 *
 * Invariants (abort() when broken):
 * - the verdict (MORE, OPEN, WSEV_EPROXY or WSEV_EPROXYAUTH), the bytes consumed and
 *   the reason do not depend on how the bytes are split: one shot, pieces from the
 *   seed, byte by byte; the copies of each piece are exact-size heap buffers, so
 *   ASan sees any read past them;
 * - used <= bytes fed, == bytes fed while MORE; a verdict is sticky and consumes
 *   nothing more;
 * - OPEN: within the limit; the head starts with "HTTP/1.", its last status line
 *   has a 2xx status, and it ends with an empty line (LF, or CR LF);
 * - WSEV_EPROXYAUTH: the status line that decided says 407 or 401;
 * - a failure has a reason: non-empty, printable ASCII, under 120 bytes; "proxy
 *   refused the tunnel: NNN" names a status that is neither 2xx, 401, 407, nor an
 *   interim one; MORE has none. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz-common.h"
#include "http_proxy.h"
#include <wsev.h>

typedef struct {
  int result;
  size_t consumed;
  char reason[128];
} outcome;

static void run(const uint8_t *p, size_t len, size_t limit, fuzz_rng *rng, int bytewise,
                outcome *o) {
  wsev_proxy_answer a;
  wsev__proxy_answer_init(&a, limit);
  FUZZ_CHECK(wsev__proxy_answer_reason(&a)[0] == 0);
  size_t off = 0;
  int result = WSEV_PROXY_MORE;
  while (result == WSEV_PROXY_MORE && off < len) {
    size_t k = bytewise ? 1 : rng ? fuzz_chunk(rng, len - off) : len - off;
    uint8_t *piece = malloc(k);
    if (!piece) abort();
    memcpy(piece, p + off, k);
    size_t used = (size_t)-1;
    result = wsev__proxy_answer_feed(&a, piece, k, &used);
    free(piece);
    FUZZ_CHECK(used <= k);
    if (result == WSEV_PROXY_MORE) FUZZ_CHECK(used == k);
    off += used;
  }
  o->result = result;
  o->consumed = off;
  const char *reason = wsev__proxy_answer_reason(&a);
  FUZZ_CHECK(strlen(reason) < 120);
  strcpy(o->reason, reason);
  if (result != WSEV_PROXY_MORE) {
    size_t used = 1;
    FUZZ_CHECK(wsev__proxy_answer_feed(&a, (const uint8_t *)"HTTP/1.1 200 OK\r\n\r\n", 19, &used) ==
               result);
    FUZZ_CHECK(used == 0);
  }
}

/* The status code of the last status line in head[0..n) (a line starting "HTTP/1."). */
static int last_status(const uint8_t *head, size_t n) {
  int status = -1;
  for (size_t i = 0; i + 12 <= n; i++)
    if ((i == 0 || head[i - 1] == '\n') && memcmp(head + i, "HTTP/1.", 7) == 0)
      status = (head[i + 9] - '0') * 100 + (head[i + 10] - '0') * 10 + (head[i + 11] - '0');
  return status;
}

static void check(const uint8_t *p, size_t len, size_t limit, const outcome *o) {
  FUZZ_CHECK(o->result == WSEV_PROXY_MORE || o->result == WSEV_PROXY_OPEN ||
             o->result == WSEV_EPROXY || o->result == WSEV_EPROXYAUTH);
  if (o->result == WSEV_PROXY_MORE) {
    FUZZ_CHECK(o->consumed == len && o->reason[0] == 0 && len <= limit);
    return;
  }
  if (o->result == WSEV_PROXY_OPEN) {
    size_t n = o->consumed;
    FUZZ_CHECK(n >= 14 && n <= limit && o->reason[0] == 0);
    FUZZ_CHECK(memcmp(p, "HTTP/1.", 7) == 0);
    FUZZ_CHECK(p[n - 1] == '\n' && (p[n - 2] == '\n' || (p[n - 2] == '\r' && p[n - 3] == '\n')));
    FUZZ_CHECK(last_status(p, n) / 100 == 2);
    return;
  }
  FUZZ_CHECK(o->reason[0] != 0);
  for (const char *c = o->reason; *c; c++)
    FUZZ_CHECK(*c >= 0x20 && *c < 0x7F);
  int status = last_status(p, o->consumed);
  if (o->result == WSEV_EPROXYAUTH) {
    FUZZ_CHECK(status == 407 || status == 401);
    FUZZ_CHECK(strncmp(o->reason, "proxy authentication required (40", 33) == 0);
  }
  if (strncmp(o->reason, "proxy refused the tunnel: ", 26) == 0) {
    int named = atoi(o->reason + 26);
    FUZZ_CHECK(named == status && status / 100 != 2 && status != 407 && status != 401 &&
               (status / 100 != 1 || status == 101));
  }
}

static void same(const outcome *a, const outcome *b) {
  FUZZ_CHECK(a->result == b->result);
  FUZZ_CHECK(a->consumed == b->consumed);
  FUZZ_CHECK(strcmp(a->reason, b->reason) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  uint8_t flags = 0, seed = 0;
  if (size >= 2) {
    flags = data[0];
    seed = data[1];
    data += 2;
    size -= 2;
  }
  size_t limit = (flags & 0x7f) ? (size_t)(flags & 0x7f) * 16 : WSEV_PROXY_ANSWER_MAX;
  static outcome whole, split, bytewise;
  run(data, size, limit, NULL, 0, &whole);
  check(data, size, limit, &whole);
  fuzz_rng rng = {seed};
  run(data, size, limit, &rng, 0, &split);
  same(&whole, &split);
  if (size <= 4096) {
    run(data, size, limit, NULL, 1, &bytewise);
    same(&whole, &bytewise);
  }
  return 0;
}
