/* fuzz-handshake: the server side of the opening handshake (lib/handshake.h).
 *
 * Input: 2 bytes max_header (big endian), 1 byte split seed, then the request bytes.
 *
 * Invariants (abort() when broken):
 * - the result (MORE, DONE, or an HTTP status) and, for DONE, the position where the
 *   request ends do not depend on how the bytes are split: one shot, pieces at
 *   positions derived from the seed byte, and (for short inputs) byte by byte
 *   (except 400 vs 431 for requests longer than max_header: see limit_vs_error);
 * - consumed <= bytes fed, and == bytes fed while the result is MORE;
 * - after a verdict, further calls return it again and consume nothing;
 * - after DONE or HTTP: the request ends with its header block; path (non-empty, in
 *   the request bytes), method, headers (lowercase names, wsev__hs_header finding
 *   the first value), keep-alive, body and subprotocols are the same for every split;
 * - after DONE, wsev__hs_response_101 is a well-formed 101 response, identical for
 *   every split, reports "did not fit" without writing past a too small buffer, and
 *   names a selected subprotocol;
 * - a rejection is 400, 426 or 431, and wsev__hs_response_error writes a well-formed
 *   response for it; wsev__hs_response_101 refuses a rejected request;
 * - every parser is freed (LeakSanitizer checks the rest). */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz-common.h"
#include "handshake.h"

typedef struct {
  int result;
  size_t end;     /* DONE, HTTP: offset just past the request in the input */
  char resp[512]; /* DONE: the 101 response */
  size_t resp_len;
  char path[4096]; /* DONE, HTTP: first bytes of the path */
  char method[32];
  int keep_alive, has_body;
  size_t n_headers, n_protocols;
  uint64_t headers_hash, protocols_hash;
} outcome;

static int ends_with(const char *s, size_t n, const char *suffix) {
  size_t k = strlen(suffix);
  return n >= k && memcmp(s + n - k, suffix, k) == 0;
}

static int is_b64(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
         c == '/';
}

static uint64_t mix(uint64_t h, const char *s) {
  return (fuzz_hash((const uint8_t *)s, strlen(s) + 1) ^ h) * UINT64_C(0x100000001b3);
}

/* What a request with a verdict tells about itself (DONE and HTTP). */
static void check_request(const wsev_hs *hs, const char *req, outcome *o) {
  const char *path = wsev__hs_path(hs);
  FUZZ_CHECK(path != NULL && path[0] != 0);
  FUZZ_CHECK(memmem(req, o->end, path, strlen(path)) != NULL);
  size_t n = strlen(path);
  if (n >= sizeof o->path) n = sizeof o->path - 1;
  memcpy(o->path, path, n);
  o->path[n] = 0;

  const char *method = wsev__hs_method(hs);
  FUZZ_CHECK(method != NULL && method[0] != 0 && strlen(method) < sizeof o->method);
  strcpy(o->method, method);
  o->keep_alive = wsev__hs_keep_alive(hs);
  o->has_body = wsev__hs_has_body(hs);

  /* Every header in turn: names lowercase; wsev__hs_header finds the
   * first value of each name. */
  size_t pos = 0, last = 0;
  const char *name, *value = NULL;
  while ((name = wsev__hs_header_at(hs, &pos, &value))) {
    FUZZ_CHECK(pos > last); /* it moves on */
    last = pos;
    FUZZ_CHECK(value != NULL);
    /* (llhttp 8.1, lenient, lets a line ": value" through: the name may be empty.) */
    for (const char *c = name; *c; c++)
      FUZZ_CHECK(!(*c >= 'A' && *c <= 'Z'));
    const char *first = wsev__hs_header(hs, name);
    size_t p2 = 0;
    const char *n2, *v2 = NULL;
    while ((n2 = wsev__hs_header_at(hs, &p2, &v2)) && strcmp(n2, name) != 0) {
    }
    FUZZ_CHECK(n2 != NULL && first == v2);
    o->headers_hash = mix(mix(o->headers_hash, name), value);
    o->n_headers++;
  }

  o->n_protocols = wsev__hs_protocol_count(hs);
  for (size_t i = 0; i < o->n_protocols; i++) {
    const char *proto = wsev__hs_protocol(hs, i);
    FUZZ_CHECK(proto != NULL && proto[0] != 0);
    /* A token (RFC 7230): the 101 response echoes it. */
    for (const char *c = proto; *c; c++)
      FUZZ_CHECK(*c > 0x20 && *c < 0x7F && !strchr("\"(),/:;<=>?@[\\]{}", *c));
    o->protocols_hash = mix(o->protocols_hash, proto);
  }
  FUZZ_CHECK(wsev__hs_protocol(hs, o->n_protocols) == NULL);
}

static void check_101(const wsev_hs *hs, outcome *o) {
  o->resp_len = wsev__hs_response_101(hs, NULL, NULL, o->resp, sizeof o->resp);
  FUZZ_CHECK(o->resp_len > 0 && o->resp_len < sizeof o->resp);
  FUZZ_CHECK(strlen(o->resp) == o->resp_len);
  static const char head[] = "HTTP/1.1 101 Switching Protocols\r\n";
  FUZZ_CHECK(strncmp(o->resp, head, sizeof head - 1) == 0);
  FUZZ_CHECK(ends_with(o->resp, o->resp_len, "\r\n\r\n"));
  FUZZ_CHECK(strstr(o->resp, "\r\nUpgrade: websocket\r\n") != NULL);
  FUZZ_CHECK(strstr(o->resp, "\r\nConnection: Upgrade\r\n") != NULL);
  const char *acc = strstr(o->resp, "\r\nSec-WebSocket-Accept: ");
  FUZZ_CHECK(acc != NULL);
  acc += strlen("\r\nSec-WebSocket-Accept: ");
  for (int i = 0; i < 27; i++)
    FUZZ_CHECK(is_b64(acc[i]));
  FUZZ_CHECK(acc[27] == '=' && acc[28] == '\r' && acc[29] == '\n');

  /* Exactly the right size fits; one byte less is refused without overflow. */
  char *exact = malloc(o->resp_len + 1);
  if (!exact) abort();
  FUZZ_CHECK(wsev__hs_response_101(hs, NULL, NULL, exact, o->resp_len + 1) == o->resp_len);
  FUZZ_CHECK(memcmp(exact, o->resp, o->resp_len + 1) == 0);
  FUZZ_CHECK(wsev__hs_response_101(hs, NULL, NULL, exact, o->resp_len) == 0);
  free(exact);

  /* Selecting the first offered subprotocol adds it as a header. */
  const char *proto = wsev__hs_protocol(hs, 0);
  if (proto && strlen(proto) < 200) {
    char with[512], line[256];
    size_t n = wsev__hs_response_101(hs, proto, NULL, with, sizeof with);
    FUZZ_CHECK(n > o->resp_len && ends_with(with, n, "\r\n\r\n"));
    snprintf(line, sizeof line, "\r\nSec-WebSocket-Protocol: %s\r\n", proto);
    FUZZ_CHECK(strstr(with, line) != NULL);
  }
}

static void check_error_response(int status) {
  char buf[256];
  size_t n = wsev__hs_response_error(status, buf, sizeof buf);
  FUZZ_CHECK(n > 0 && n < sizeof buf && strlen(buf) == n);
  FUZZ_CHECK(wsev__hs_status_text(status) != NULL);
  char head[32];
  snprintf(head, sizeof head, "HTTP/1.1 %d ", status);
  FUZZ_CHECK(strncmp(buf, head, strlen(head)) == 0);
  FUZZ_CHECK(ends_with(buf, n, "\r\n\r\n"));
  FUZZ_CHECK(strstr(buf, "\r\nConnection: close\r\n") != NULL);
  if (status == 426) FUZZ_CHECK(strstr(buf, "\r\nSec-WebSocket-Version: 13\r\n") != NULL);
}

/* Feed req[0..len) in pieces: sizes from rng, or all at once (rng NULL), or one
 * byte at a time (bytewise). Each piece is in an exact-size buffer. */
static void run(size_t max_header, const char *req, size_t len, fuzz_rng *rng, int bytewise,
                outcome *o) {
  memset(o, 0, sizeof *o);
  wsev_hs *hs = wsev__hs_new(max_header);
  if (!hs) abort();
  size_t off = 0;
  int result = WSEV_HS_MORE;
  do {
    size_t k = bytewise ? (len - off ? 1 : 0) : rng ? fuzz_chunk(rng, len - off) : len - off;
    if (off == len) k = 0;
    char *piece = malloc(k ? k : 1);
    if (!piece) abort();
    memcpy(piece, req + off, k);
    size_t used = (size_t)-1;
    result = wsev__hs_feed(hs, piece, k, &used);
    free(piece);
    FUZZ_CHECK(used <= k);
    if (result == WSEV_HS_MORE) {
      FUZZ_CHECK(used == k);
    } else if (result == WSEV_HS_DONE || result == WSEV_HS_HTTP) {
      o->end = off + used;
    } else {
      FUZZ_CHECK(result == 400 || result == 426 || result == 431);
    }
    off += k;
  } while (result == WSEV_HS_MORE && off < len);
  o->result = result;

  /* A verdict is sticky and consumes nothing more. */
  if (result != WSEV_HS_MORE) {
    size_t used = 1;
    FUZZ_CHECK(wsev__hs_feed(hs, "GET", 3, &used) == result && used == 0);
  }

  if (result == WSEV_HS_DONE || result == WSEV_HS_HTTP) {
    FUZZ_CHECK(o->end > 0 && o->end <= len);
    /* The header block ends with LF; llhttp 8.1 (not strict) also takes any byte
     * after the final CR for the LF. */
    FUZZ_CHECK(req[o->end - 1] == '\n' || (o->end >= 2 && req[o->end - 2] == '\r'));
    check_request(hs, req, o);
  }
  if (result == WSEV_HS_DONE) {
    check_101(hs, o);
  } else {
    char buf[512];
    FUZZ_CHECK(wsev__hs_response_101(hs, NULL, NULL, buf, sizeof buf) == 0);
    if (result != WSEV_HS_MORE && result != WSEV_HS_HTTP) check_error_response(result);
  }
  wsev__hs_free(hs);
}

static void same(const outcome *a, const outcome *b) {
  FUZZ_CHECK(a->result == b->result);
  if (a->result == WSEV_HS_DONE || a->result == WSEV_HS_HTTP) {
    FUZZ_CHECK(a->end == b->end);
    FUZZ_CHECK(a->resp_len == b->resp_len && memcmp(a->resp, b->resp, a->resp_len) == 0);
    FUZZ_CHECK(strcmp(a->path, b->path) == 0 && strcmp(a->method, b->method) == 0);
    FUZZ_CHECK(a->keep_alive == b->keep_alive && a->has_body == b->has_body);
    FUZZ_CHECK(a->n_headers == b->n_headers && a->headers_hash == b->headers_hash);
    FUZZ_CHECK(a->n_protocols == b->n_protocols && a->protocols_hash == b->protocols_hash);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  size_t max_header = 8192;
  uint8_t seed = 0;
  if (size >= 3) {
    max_header = (size_t)data[0] << 8 | data[1];
    seed = data[2];
    data += 3;
    size -= 3;
  }
  const char *req = (const char *)data;

  static outcome whole, split, bytewise;
  run(max_header, req, size, NULL, 0, &whole);

  fuzz_rng rng = {seed};
  run(max_header, req, size, &rng, 0, &split);
  same(&whole, &split);

  if (size <= 1024) {
    run(max_header, req, size, NULL, 1, &bytewise);
    same(&whole, &bytewise);
  }
  return 0;
}
