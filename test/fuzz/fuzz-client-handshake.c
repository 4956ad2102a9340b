/* fuzz-client-handshake: the client's check of the server's response
 * (lib/client_handshake.h), expecting the Sec-WebSocket-Accept of RFC 6455's
 * example key.
 *
 * Input: 1 byte of flags (bits 0-1: the subprotocols offered: none, {"chat"},
 * {"chat", "superchat"}, an empty list; bits 2-7: the header limit, 64 * n bytes,
 * 0 meaning 8192), 1 byte split seed, then the response bytes.
 *
 * Invariants (abort() when broken):
 * - the verdict (MORE, DONE, or WSEV_EHANDSHAKE with its reason), for DONE the
 *   position where the frames start and the subprotocol, and the status (unless the
 *   head was too large, when it may or may not have been read yet) do not depend
 *   on how the bytes are split: one shot, pieces from the seed, byte by byte;
 * - used <= bytes fed; == bytes fed while MORE; 0 on failure; a verdict is sticky
 *   and consumes nothing more;
 * - DONE: the head ends there with LF (or llhttp's lenient CR + any byte), is
 *   within the limit, holds the expected accept value; the status is 101; the
 *   subprotocol is NULL or one of those offered; no reason is set;
 * - WSEV_EHANDSHAKE: a non-empty, printable reason shorter than
 *   WSEV_CHS_ERROR_MAX; "HTTP <status>..." exactly when the status is not 101;
 * - every parser is freed (LeakSanitizer checks the rest). */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "client_handshake.h"
#include "fuzz-common.h"
#include <wsev.h>

#define ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

static const char *const CHAT[] = {"chat", NULL};
static const char *const CHAT2[] = {"chat", "superchat", NULL};
static const char *const NONE[] = {NULL};

typedef struct {
  int result;
  size_t end;
  int status;
  char error[WSEV_CHS_ERROR_MAX];
  char protocol[16];
} outcome;

static void run(const char *resp, size_t len, const char *const *offered, size_t max_header,
                fuzz_rng *rng, int bytewise, outcome *o) {
  memset(o, 0, sizeof *o);
  wsev_client_hs *hs = wsev__client_hs_new(ACCEPT, offered, NULL, max_header);
  if (!hs) abort();
  FUZZ_CHECK(wsev__client_hs_status(hs) == 0 && wsev__client_hs_error(hs)[0] == 0);
  size_t off = 0;
  int result = WSEV_CHS_MORE;
  while (result == WSEV_CHS_MORE && off < len) {
    size_t k = bytewise ? 1 : rng ? fuzz_chunk(rng, len - off) : len - off;
    char *piece = malloc(k);
    if (!piece) abort();
    memcpy(piece, resp + off, k);
    size_t used = (size_t)-1;
    result = wsev__client_hs_feed(hs, piece, k, &used);
    free(piece);
    FUZZ_CHECK(used <= k);
    if (result == WSEV_CHS_MORE)
      FUZZ_CHECK(used == k);
    else if (result == WSEV_CHS_DONE)
      o->end = off + used;
    else
      FUZZ_CHECK(result == WSEV_EHANDSHAKE && used == 0);
    off += k;
  }
  o->result = result;
  o->status = wsev__client_hs_status(hs);
  const char *err = wsev__client_hs_error(hs);
  FUZZ_CHECK(strlen(err) < sizeof o->error);
  strcpy(o->error, err);
  const char *proto = wsev__client_hs_protocol(hs);

  if (result != WSEV_CHS_MORE) {
    size_t used = 1;
    FUZZ_CHECK(wsev__client_hs_feed(hs, "HTTP/1.1 101 OK\r\n\r\n", 19, &used) == result);
    FUZZ_CHECK(used == 0);
  }
  if (result == WSEV_CHS_DONE) {
    FUZZ_CHECK(o->end > 0 && o->end <= len && o->end <= max_header);
    FUZZ_CHECK(resp[o->end - 1] == '\n' || (o->end >= 2 && resp[o->end - 2] == '\r'));
    FUZZ_CHECK(memmem(resp, o->end, ACCEPT, 28) != NULL);
    FUZZ_CHECK(o->status == 101 && err[0] == 0);
    if (proto) {
      int found = 0;
      for (size_t i = 0; offered && offered[i]; i++)
        found |= strcmp(offered[i], proto) == 0;
      FUZZ_CHECK(found);
      FUZZ_CHECK(memmem(resp, o->end, proto, strlen(proto)) != NULL);
      strcpy(o->protocol, proto);
    }
  } else {
    FUZZ_CHECK(proto == NULL);
  }
  if (result == WSEV_EHANDSHAKE) {
    FUZZ_CHECK(err[0] != 0);
    for (const char *c = err; *c; c++)
      FUZZ_CHECK(*c >= 0x20 && *c < 0x7F);
    int http = strncmp(err, "HTTP ", 5) == 0;
    FUZZ_CHECK(http == (o->status != 101 && o->status != 0 &&
                        strcmp(err, "response header too large") != 0 &&
                        strcmp(err, "malformed HTTP response") != 0));
  }
  if (result == WSEV_CHS_MORE) FUZZ_CHECK(err[0] == 0);
  wsev__client_hs_free(hs);
}

static void same(const outcome *a, const outcome *b) {
  FUZZ_CHECK(a->result == b->result);
  FUZZ_CHECK(a->end == b->end);
  FUZZ_CHECK(strcmp(a->error, b->error) == 0);
  FUZZ_CHECK(strcmp(a->protocol, b->protocol) == 0);
  if (strcmp(a->error, "response header too large") != 0) FUZZ_CHECK(a->status == b->status);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  uint8_t flags = 0, seed = 0;
  if (size >= 2) {
    flags = data[0];
    seed = data[1];
    data += 2;
    size -= 2;
  }
  static const char *const *const sets[] = {NULL, CHAT, CHAT2, NONE};
  const char *const *offered = sets[flags & 3];
  size_t max_header = (flags >> 2) ? (size_t)(flags >> 2) * 64 : 8192;
  const char *resp = (const char *)data;

  static outcome whole, split, bytewise;
  run(resp, size, offered, max_header, NULL, 0, &whole);
  fuzz_rng rng = {seed};
  run(resp, size, offered, max_header, &rng, 0, &split);
  same(&whole, &split);
  if (size <= 1024) {
    run(resp, size, offered, max_header, NULL, 1, &bytewise);
    same(&whole, &bytewise);
  }
  return 0;
}
