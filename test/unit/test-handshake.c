/* Unit tests for lib/handshake.h: the server side of the RFC 6455 opening handshake
 * (section 4.2): request validation fed in any split, the 101 response with the right
 * Sec-WebSocket-Accept, error statuses 400/426/431, and the request target.
 *
 * Accept values were computed independently with Python's hashlib/base64 (and checked
 * against RFC 6455 section 1.3's example), never with the code under test. */
#include <ctype.h>
#include <stdlib.h>

#include "handshake.h"
#include "test.h"

#define MAX_HDR 8192

/* RFC 6455 section 1.3 / 4.2.2: key "dGhlIHNhbXBsZSBub25jZQ==" gives
 * "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=". */
#define SAMPLE_KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define SAMPLE_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

static const char REQ[] = "GET /chat?x=1&y=%20z HTTP/1.1\r\n"
                          "Host: server.example.com\r\n"
                          "Upgrade: websocket\r\n"
                          "Connection: Upgrade\r\n"
                          "Sec-WebSocket-Key: " SAMPLE_KEY "\r\n"
                          "Origin: http://example.com\r\n"
                          "Sec-WebSocket-Protocol: chat, superchat\r\n"
                          "Sec-WebSocket-Version: 13\r\n"
                          "\r\n";
#define REQ_PATH "/chat?x=1&y=%20z"

/* A masked text frame "Hello" (RFC 6455 section 5.7), to follow the request. */
static const char FRAME[] = "\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58";
#define FRAME_LEN 11

/* ---------------------------------------------------------------- helpers ---- */

static int ci_eq(const char *a, size_t an, const char *b) {
  size_t bn = strlen(b);
  if (an != bn) return 0;
  for (size_t i = 0; i < an; i++)
    if (tolower((unsigned char)a[i]) != tolower((unsigned char)b[i])) return 0;
  return 1;
}

/* Find the header `name` (case-insensitive) in an HTTP response head r[0..n); copy its
 * trimmed value to out. Returns the number of such headers. */
static int find_header(const char *r, size_t n, const char *name, char *out, size_t cap) {
  int count = 0;
  const char *end = r + n;
  const char *line = memchr(r, '\n', n); /* skip the status line */
  if (!line) return 0;
  line++;
  while (line < end) {
    const char *eol = line;
    while (eol < end && *eol != '\r' && *eol != '\n')
      eol++;
    if (eol == line) break; /* blank line: end of head */
    const char *colon = memchr(line, ':', (size_t)(eol - line));
    if (colon && ci_eq(line, (size_t)(colon - line), name)) {
      const char *v = colon + 1, *ve = eol;
      while (v < ve && (*v == ' ' || *v == '\t'))
        v++;
      while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
        ve--;
      if (count == 0 && out) {
        size_t l = (size_t)(ve - v) < cap - 1 ? (size_t)(ve - v) : cap - 1;
        memcpy(out, v, l);
        out[l] = 0;
      }
      count++;
    }
    line = eol;
    if (line < end && *line == '\r') line++;
    if (line < end && *line == '\n') line++;
  }
  return count;
}

/* 1 if the comma-separated list s contains token tok (case-insensitive). */
static int has_token(const char *s, const char *tok) {
  while (*s) {
    while (*s == ' ' || *s == '\t' || *s == ',')
      s++;
    const char *b = s;
    while (*s && *s != ',')
      s++;
    const char *e = s;
    while (e > b && (e[-1] == ' ' || e[-1] == '\t'))
      e--;
    if (e > b && ci_eq(b, (size_t)(e - b), tok)) return 1;
  }
  return 0;
}

static const char *find_mem(const char *h, size_t hn, const char *needle) {
  size_t nn = strlen(needle);
  for (size_t i = 0; i + nn <= hn; i++)
    if (memcmp(h + i, needle, nn) == 0) return h + i;
  return NULL;
}

/* Check the 101 response of a parser that returned DONE. */
static void check_101(const wsev_hs *hs, const char *accept, const char *what) {
  char buf[2048];
  memset(buf, 0, sizeof buf);
  size_t n = wsev__hs_response_101(hs, NULL, NULL, buf, sizeof buf);
  CHECKF(n > 0 && n < sizeof buf, "%s: response_101 returned %zu", what, n);
  if (n == 0 || n >= sizeof buf) return;
  CHECKF(n >= 12 && memcmp(buf, "HTTP/1.1 101", 12) == 0, "%s: status line [%.*s]", what,
         (int)(n < 40 ? n : 40), buf);
  CHECKF(n >= 13 && buf[12] == ' ', "%s: status line [%.*s]", what, (int)(n < 40 ? n : 40), buf);
  CHECKF(n >= 4 && memcmp(buf + n - 4, "\r\n\r\n", 4) == 0, "%s: ends with CRLFCRLF", what);
  const char *first_end = find_mem(buf, n, "\r\n\r\n");
  CHECKF(first_end == buf + n - 4, "%s: exactly one header block", what);
  CHECKF(memchr(buf, '\0', n) == NULL, "%s: NUL inside the response", what);
  char v[256];
  CHECKF(find_header(buf, n, "Upgrade", v, sizeof v) == 1 && ci_eq(v, strlen(v), "websocket"),
         "%s: Upgrade: websocket [%.*s]", what, (int)n, buf);
  CHECKF(find_header(buf, n, "Connection", v, sizeof v) == 1 && has_token(v, "upgrade"),
         "%s: Connection: Upgrade [%.*s]", what, (int)n, buf);
  int na = find_header(buf, n, "Sec-WebSocket-Accept", v, sizeof v);
  CHECKF(na == 1 && strcmp(v, accept) == 0, "%s: Sec-WebSocket-Accept [%s] expected [%s]", what,
         na ? v : "(missing)", accept);
  /* we support no extensions, so none may be accepted */
  CHECKF(find_header(buf, n, "Sec-WebSocket-Extensions", NULL, 0) == 0,
         "%s: no Sec-WebSocket-Extensions in the response", what);
  /* a 256-byte buffer is documented to be enough */
  char small[256];
  size_t n2 = wsev__hs_response_101(hs, NULL, NULL, small, sizeof small);
  CHECKF(n2 == n && memcmp(small, buf, n) == 0, "%s: response in 256 bytes: %zu vs %zu", what, n2,
         n);
}

/* A valid request: fed whole, whole + frame bytes, in every two-way split (optionally),
 * and one byte at a time. */
static void expect_ok(const char *name, const char *req, const char *accept, const char *path,
                      int all_splits) {
  TEST_CASE(name);
  size_t len = strlen(req);
  char *buf = malloc(len + FRAME_LEN);
  memcpy(buf, req, len);
  memcpy(buf + len, FRAME, FRAME_LEN);

  /* whole */
  {
    wsev_hs *hs = wsev__hs_new(MAX_HDR);
    CHECK(hs != NULL);
    if (!hs) return;
    size_t consumed = 9999999;
    int r = wsev__hs_feed(hs, buf, len, &consumed);
    CHECK_EQ_INTF(r, WSEV_HS_DONE, "%s: whole request", name);
    CHECK_EQ_INTF(consumed, len, "%s: consumed, whole request", name);
    if (r == WSEV_HS_DONE) {
      CHECK_EQ_STR(wsev__hs_path(hs), path);
      check_101(hs, accept, name);
    }
    /* sticky */
    consumed = 9999999;
    r = wsev__hs_feed(hs, FRAME, FRAME_LEN, &consumed);
    CHECK_EQ_INTF(r, WSEV_HS_DONE, "%s: feed after DONE", name);
    wsev__hs_free(hs);
  }
  /* whole + the first frame in the same buffer */
  {
    wsev_hs *hs = wsev__hs_new(MAX_HDR);
    size_t consumed = 9999999;
    int r = wsev__hs_feed(hs, buf, len + FRAME_LEN, &consumed);
    CHECK_EQ_INTF(r, WSEV_HS_DONE, "%s: request + frame", name);
    CHECK_EQ_INTF(consumed, len, "%s: consumed must stop at the end of the head", name);
    if (r == WSEV_HS_DONE) CHECK_EQ_STR(wsev__hs_path(hs), path);
    wsev__hs_free(hs);
  }
  /* every two-way split; the second part carries the frame too */
  for (size_t k = 1; all_splits && k < len; k++) {
    wsev_hs *hs = wsev__hs_new(MAX_HDR);
    size_t consumed = 9999999;
    int r1 = wsev__hs_feed(hs, buf, k, &consumed);
    consumed = 9999999;
    int r2 = wsev__hs_feed(hs, buf + k, len - k + FRAME_LEN, &consumed);
    CHECKF(r1 == WSEV_HS_MORE && r2 == WSEV_HS_DONE && consumed == len - k,
           "%s: split at %zu: results %d, %d, consumed %zu (expected MORE, DONE, %zu)", name, k, r1,
           r2, consumed, len - k);
    if (r2 == WSEV_HS_DONE) {
      CHECKF(strcmp(wsev__hs_path(hs), path) == 0, "%s: split at %zu: path [%s]", name, k,
             wsev__hs_path(hs));
      if (k % 17 == 0 || k + 1 == len) check_101(hs, accept, name);
    }
    wsev__hs_free(hs);
  }
  /* one byte at a time, then the frame */
  {
    wsev_hs *hs = wsev__hs_new(MAX_HDR);
    int bad = 0;
    for (size_t i = 0; i + 1 < len; i++) {
      size_t consumed = 9999999;
      int r = wsev__hs_feed(hs, buf + i, 1, &consumed);
      if (r != WSEV_HS_MORE && bad++ == 0)
        CHECKF(0, "%s: byte %zu of %zu gave %d, expected MORE", name, i, len, r);
    }
    CHECKF(bad == 0, "%s: %d early results byte-at-a-time", name, bad);
    size_t consumed = 9999999;
    int r = wsev__hs_feed(hs, buf + len - 1, 1, &consumed);
    CHECK_EQ_INTF(r, WSEV_HS_DONE, "%s: last byte", name);
    CHECK_EQ_INTF(consumed, 1, "%s: consumed at the last byte", name);
    if (r == WSEV_HS_DONE) {
      CHECK_EQ_STR(wsev__hs_path(hs), path);
      check_101(hs, accept, name);
    }
    wsev__hs_free(hs);
  }
  /* one byte at a time, the last byte together with the frame */
  {
    wsev_hs *hs = wsev__hs_new(MAX_HDR);
    for (size_t i = 0; i + 1 < len; i++) {
      size_t consumed;
      wsev__hs_feed(hs, buf + i, 1, &consumed);
    }
    size_t consumed = 9999999;
    int r = wsev__hs_feed(hs, buf + len - 1, 1 + FRAME_LEN, &consumed);
    CHECK_EQ_INTF(r, WSEV_HS_DONE, "%s: last byte + frame", name);
    CHECK_EQ_INTF(consumed, 1, "%s: consumed at the last byte + frame", name);
    wsev__hs_free(hs);
  }
  free(buf);
}

/* Feed the request whole; expect `status`. Then fed one byte at a time: MORE until
 * some byte, then `status` on that and every later feed. */
static void expect_status_n(const char *name, const char *req, size_t len, int status,
                            size_t max_hdr) {
  TEST_CASE(name);
  {
    wsev_hs *hs = wsev__hs_new(max_hdr);
    CHECK(hs != NULL);
    if (!hs) return;
    size_t consumed = 0;
    int r = wsev__hs_feed(hs, req, len, &consumed);
    CHECK_EQ_INTF(r, status, "%s: whole request", name);
    /* sticky, even when fed a valid request afterwards */
    r = wsev__hs_feed(hs, REQ, sizeof REQ - 1, &consumed);
    CHECK_EQ_INTF(r, status, "%s: feed after the result", name);
    r = wsev__hs_feed(hs, "\r\n\r\n", 4, &consumed);
    CHECK_EQ_INTF(r, status, "%s: second feed after the result", name);
    wsev__hs_free(hs);
  }
  {
    wsev_hs *hs = wsev__hs_new(max_hdr);
    int r = WSEV_HS_MORE, seen = 0;
    size_t at = 0;
    for (size_t i = 0; i < len; i++) {
      size_t consumed;
      int x = wsev__hs_feed(hs, req + i, 1, &consumed);
      if (!seen && x != WSEV_HS_MORE) {
        seen = 1, r = x, at = i;
      } else if (seen && x != r) {
        CHECKF(0, "%s: byte at a time: result changed from %d to %d at byte %zu", name, r, x, i);
        break;
      }
    }
    CHECKF(seen && r == status, "%s: byte at a time gave %d at byte %zu (expected %d)", name,
           seen ? r : WSEV_HS_MORE, at, status);
    wsev__hs_free(hs);
  }
}

static void expect_status(const char *name, const char *req, int status) {
  expect_status_n(name, req, strlen(req), status, MAX_HDR);
}

/* Build a request from the sample by replacing (or deleting, with repl "") the header
 * line that starts with `prefix`. */
static char *req_edit(const char *prefix, const char *repl) {
  static char out[4096];
  const char *p = strstr(REQ, prefix);
  if (!p) {
    fprintf(stderr, "test bug: %s not in REQ\n", prefix);
    exit(2);
  }
  const char *eol = strstr(p, "\r\n") + 2;
  size_t a = (size_t)(p - REQ);
  memcpy(out, REQ, a);
  size_t rl = strlen(repl);
  memcpy(out + a, repl, rl);
  strcpy(out + a + rl, eol);
  return out;
}

/* ------------------------------------------------------------------ tests ---- */

static void test_accept_key(void) {
  TEST_CASE("accept key");
  static const struct {
    const char *key, *accept;
  } v[] = {
      {"dGhlIHNhbXBsZSBub25jZQ==", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="},
      {"AQIDBAUGBwgJCgsMDQ4PEA==", "C/0nmHhBztSRGR1CwL6Tf4ZjwpY="},
      {"x3JJHMbDL1EzLkh9GBhXDw==", "HSmrc0sMlYUkAGmm5OPpG2HaGWk="},
      {"AAAAAAAAAAAAAAAAAAAAAA==", "ICX+Yqv66kxgM0FcWaLWlFLwTAI="},
      {"/////////////////////w==", "XXpj4jYzLM2yUE0C7TIgMwTQh2g="},
  };
  for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
    char out[29];
    memset(out, 'Z', sizeof out);
    CHECK_EQ_INT(wsev__hs_accept_key(v[i].key, strlen(v[i].key), out), 0);
    CHECK(out[28] == '\0');
    out[28] = '\0';
    CHECK_EQ_STR(out, v[i].accept);
  }
  /* key_len is honoured: the key need not be NUL-terminated */
  char out[29];
  const char k[] = SAMPLE_KEY "trailing junk";
  CHECK_EQ_INT(wsev__hs_accept_key(k, 24, out), 0);
  out[28] = '\0';
  CHECK_EQ_STR(out, SAMPLE_ACCEPT);
}

static void test_valid_requests(void) {
  expect_ok("sample request", REQ, SAMPLE_ACCEPT, REQ_PATH, 1);

  expect_ok("minimal request",
            "GET / HTTP/1.1\r\n"
            "Host: h\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            "Sec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\n"
            "Sec-WebSocket-Version: 13\r\n"
            "\r\n",
            "HSmrc0sMlYUkAGmm5OPpG2HaGWk=", "/", 1);

  expect_ok("lower-case names, mixed-case values",
            "GET /ws HTTP/1.1\r\n"
            "host: localhost:8080\r\n"
            "upgrade: WebSocket\r\n"
            "connection: keep-alive, Upgrade\r\n"
            "sec-websocket-key: AQIDBAUGBwgJCgsMDQ4PEA==\r\n"
            "sec-websocket-version: 13\r\n"
            "\r\n",
            "C/0nmHhBztSRGR1CwL6Tf4ZjwpY=", "/ws", 0);

  expect_ok("upper-case names and values",
            "GET /ws HTTP/1.1\r\n"
            "HOST: localhost\r\n"
            "UPGRADE: WEBSOCKET\r\n"
            "CONNECTION: UPGRADE\r\n"
            "SEC-WEBSOCKET-KEY: AQIDBAUGBwgJCgsMDQ4PEA==\r\n"
            "SEC-WEBSOCKET-VERSION: 13\r\n"
            "\r\n",
            "C/0nmHhBztSRGR1CwL6Tf4ZjwpY=", "/ws", 0);

  expect_ok("Connection token lists and whitespace (Firefox style)",
            "GET /a/b/c?q=1 HTTP/1.1\r\n"
            "Host: example.org\r\n"
            "User-Agent: Mozilla/5.0\r\n"
            "Accept: */*\r\n"
            "Sec-WebSocket-Version: 13\r\n"
            "Origin: http://example.org\r\n"
            "Sec-WebSocket-Extensions: permessage-deflate\r\n"
            "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n"
            "Connection: keep-alive,Upgrade\r\n"
            "Cookie: a=b; c=d\r\n"
            "Pragma: no-cache\r\n"
            "Cache-Control: no-cache\r\n"
            "Upgrade: websocket\r\n"
            "\r\n",
            "ICX+Yqv66kxgM0FcWaLWlFLwTAI=", "/a/b/c?q=1", 0);

  expect_ok("Connection: Upgrade first in a list with odd spacing",
            "GET / HTTP/1.1\r\n"
            "Host: h\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade ,  keep-alive , foo\r\n"
            "Sec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\n"
            "Sec-WebSocket-Version: 13\r\n"
            "\r\n",
            "HSmrc0sMlYUkAGmm5OPpG2HaGWk=", "/", 0);

  expect_ok("optional whitespace around values",
            "GET / HTTP/1.1\r\n"
            "Host:h\r\n"
            "Upgrade:websocket\r\n"
            "Connection: \t Upgrade \t \r\n"
            "Sec-WebSocket-Key:    x3JJHMbDL1EzLkh9GBhXDw==   \r\n"
            "Sec-WebSocket-Version:  13  \r\n"
            "\r\n",
            "HSmrc0sMlYUkAGmm5OPpG2HaGWk=", "/", 0);

  expect_ok("Connection split over two header lines",
            "GET / HTTP/1.1\r\n"
            "Host: h\r\n"
            "Upgrade: websocket\r\n"
            "Connection: keep-alive\r\n"
            "Connection: Upgrade\r\n"
            "Sec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\n"
            "Sec-WebSocket-Version: 13\r\n"
            "\r\n",
            "HSmrc0sMlYUkAGmm5OPpG2HaGWk=", "/", 0);

  {
    /* a long request target */
    static char req[4096], path[2100];
    strcpy(path, "/long/");
    for (size_t i = strlen(path); i < 2000; i++)
      path[i] = (char)('a' + i % 26);
    path[2000] = 0;
    strcat(path, "?k=v&k2=v2");
    snprintf(req, sizeof req,
             "GET %s HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             "Sec-WebSocket-Key: " SAMPLE_KEY "\r\nSec-WebSocket-Version: 13\r\n\r\n",
             path);
    expect_ok("long request target", req, SAMPLE_ACCEPT, path, 1);
  }

  {
    /* long values of the headers we read: nothing limits a single header's length
     * but the header block as a whole (RFC 7230) */
    static char req[4096], host[300], conn[400];
    size_t o = 0;
    for (int label = 0; label < 4; label++) { /* a 253-character DNS name */
      if (label) host[o++] = '.';
      for (int i = 0; i < 62; i++)
        host[o++] = (char)('a' + (label * 7 + i) % 26);
    }
    host[o] = 0;
    strcat(host, ":65535");
    o = 0;
    for (int i = 0; o < 300; i++)
      o += (size_t)sprintf(conn + o, "x-token-%d, ", i);
    strcpy(conn + o, "Upgrade");
    snprintf(req, sizeof req,
             "GET / HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
             "Connection: Upgrade\r\nSec-WebSocket-Key: " SAMPLE_KEY
             "\r\nSec-WebSocket-Version: 13\r\n\r\n",
             host);
    expect_ok("Host: a 253-character name with a port", req, SAMPLE_ACCEPT, "/", 0);
    snprintf(req, sizeof req,
             "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n"
             "Connection: %s\r\nSec-WebSocket-Key: " SAMPLE_KEY
             "\r\nSec-WebSocket-Version: 13\r\n\r\n",
             conn);
    expect_ok("Connection: a 300-character token list", req, SAMPLE_ACCEPT, "/", 0);
  }

  TEST_CASE("random multi-way splits");
  {
    size_t len = sizeof REQ - 1;
    char buf[sizeof REQ + FRAME_LEN];
    memcpy(buf, REQ, len);
    memcpy(buf + len, FRAME, FRAME_LEN);
    for (int iter = 0; iter < 2000; iter++) {
      wsev_hs *hs = wsev__hs_new(MAX_HDR);
      size_t pos = 0, consumed = 0;
      int r = WSEV_HS_MORE;
      size_t last_start = 0;
      while (pos < len + FRAME_LEN && r == WSEV_HS_MORE) {
        size_t k = 1 + test_rand_below(40);
        if (k > len + FRAME_LEN - pos) k = len + FRAME_LEN - pos;
        last_start = pos;
        r = wsev__hs_feed(hs, buf + pos, k, &consumed);
        pos += k;
      }
      CHECKF(r == WSEV_HS_DONE && last_start + consumed == len,
             "iteration %d: result %d, request ended at %zu, expected %zu", iter, r,
             last_start + consumed, len);
      if (r == WSEV_HS_DONE) CHECK_EQ_STR(wsev__hs_path(hs), REQ_PATH);
      wsev__hs_free(hs);
    }
  }
}

static void test_rejections(void) {
  expect_status("POST", req_edit("GET ", "POST /chat HTTP/1.1\r\n"), 400);
  expect_status("PUT", req_edit("GET ", "PUT /chat HTTP/1.1\r\n"), 400);
  expect_status("HTTP/1.0", req_edit("GET ", "GET /chat HTTP/1.0\r\n"), 400);
  /* No Upgrade header at all: a plain HTTP request, for the caller to answer. */
  expect_status("missing Upgrade", req_edit("Upgrade:", ""), WSEV_HS_HTTP);
  expect_status("Upgrade: h2c", req_edit("Upgrade:", "Upgrade: h2c\r\n"), 400);
  expect_status("Upgrade: websocketx", req_edit("Upgrade:", "Upgrade: websocketx\r\n"), 400);
  expect_status("Upgrade: web socket", req_edit("Upgrade:", "Upgrade: web socket\r\n"), 400);
  expect_status("empty Upgrade", req_edit("Upgrade:", "Upgrade:\r\n"), 400);
  expect_status("missing Connection", req_edit("Connection:", ""), 400);
  expect_status("Connection: keep-alive", req_edit("Connection:", "Connection: keep-alive\r\n"),
                400);
  expect_status("Connection: close", req_edit("Connection:", "Connection: close\r\n"), 400);
  expect_status("Connection: upgraded", req_edit("Connection:", "Connection: upgraded\r\n"), 400);
  expect_status("Connection: keep-alive, notupgrade",
                req_edit("Connection:", "Connection: keep-alive, notupgrade\r\n"), 400);
  expect_status("missing Host", req_edit("Host:", ""), 400);
  expect_status("missing key", req_edit("Sec-WebSocket-Key:", ""), 400);
  expect_status("empty key", req_edit("Sec-WebSocket-Key:", "Sec-WebSocket-Key:\r\n"), 400);
  expect_status("key of 10 bytes",
                req_edit("Sec-WebSocket-Key:", "Sec-WebSocket-Key: dGhlIHNhbXBsZQ==\r\n"), 400);
  expect_status("key of 17 bytes (24 characters)",
                req_edit("Sec-WebSocket-Key:", "Sec-WebSocket-Key: AQIDBAUGBwgJCgsMDQ4PEBE=\r\n"),
                400);
  expect_status("key of 15 bytes",
                req_edit("Sec-WebSocket-Key:", "Sec-WebSocket-Key: AQIDBAUGBwgJCgsMDQ4P\r\n"), 400);
  expect_status("key of 18 bytes",
                req_edit("Sec-WebSocket-Key:", "Sec-WebSocket-Key: AQIDBAUGBwgJCgsMDQ4PEBES\r\n"),
                400);
  expect_status("key with non-base64 characters",
                req_edit("Sec-WebSocket-Key:", "Sec-WebSocket-Key: !!!!!!!!!!!!!!!!!!!!!!==\r\n"),
                400);
  expect_status("key with a character outside base64 in the middle",
                req_edit("Sec-WebSocket-Key:", "Sec-WebSocket-Key: dGhlIHNhbXB*ZSBub25jZQ==\r\n"),
                400);
  expect_status("two keys",
                req_edit("Sec-WebSocket-Key:", "Sec-WebSocket-Key: " SAMPLE_KEY "\r\n"
                                               "Sec-WebSocket-Key: " SAMPLE_KEY "\r\n"),
                400);
  expect_status("two different keys",
                req_edit("Sec-WebSocket-Key:", "Sec-WebSocket-Key: " SAMPLE_KEY "\r\n"
                                               "Sec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\n"),
                400);
  expect_status("version 8", req_edit("Sec-WebSocket-Version:", "Sec-WebSocket-Version: 8\r\n"),
                426);
  expect_status("version 14", req_edit("Sec-WebSocket-Version:", "Sec-WebSocket-Version: 14\r\n"),
                426);
  expect_status("version 130", req_edit("Sec-WebSocket-Version:", "Sec-WebSocket-Version: 130\r\n"),
                426);
  expect_status("version 1", req_edit("Sec-WebSocket-Version:", "Sec-WebSocket-Version: 1\r\n"),
                426);
  expect_status("missing version", req_edit("Sec-WebSocket-Version:", ""), 426);

  /* garbage */
  expect_status("garbage text", "hello there\r\n\r\n", 400);
  expect_status("garbage request line", "GET\r\n\r\n", 400);
  expect_status("bad header line", "GET / HTTP/1.1\r\nHost h\r\nUpgrade: websocket\r\n\r\n", 400);
  {
    static const char tls[] = "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\xd5\x8a\x11\x4c"
                              "\x9e\x00\x00\x00\x00\r\n\r\n";
    expect_status_n("TLS ClientHello on a plain port", tls, sizeof tls - 1, 400, MAX_HDR);
  }
  {
    static char bin[600];
    for (size_t i = 0; i < sizeof bin; i++)
      bin[i] = (char)(test_rand64() | 0x80);
    expect_status_n("random high bytes", bin, sizeof bin, 400, MAX_HDR);
  }
  {
    static const char nul[] = "GET / HTTP/1.1\r\nHost: h\0x\r\n\r\n";
    expect_status_n("NUL in a header", nul, sizeof nul - 1, 400, MAX_HDR);
  }
}

static void test_too_large(void) {
  /* a 10 KB header block, max 8192 */
  static char big[12000];
  {
    size_t o = (size_t)snprintf(big, sizeof big,
                                "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n"
                                "Connection: Upgrade\r\nSec-WebSocket-Key: " SAMPLE_KEY
                                "\r\nSec-WebSocket-Version: 13\r\nX-Pad: ");
    while (o < 10240)
      big[o++] = 'p';
    memcpy(big + o, "\r\n\r\n", 5);
  }
  expect_status_n("10 KB header block", big, strlen(big), 431, MAX_HDR);

  TEST_CASE("10 KB in 100-byte pieces");
  {
    wsev_hs *hs = wsev__hs_new(MAX_HDR);
    size_t len = strlen(big), pos = 0;
    int r = WSEV_HS_MORE;
    while (pos < len) {
      size_t k = len - pos < 100 ? len - pos : 100;
      size_t consumed;
      int x = wsev__hs_feed(hs, big + pos, k, &consumed);
      pos += k;
      if (r == WSEV_HS_MORE) {
        r = x;
        if (x != WSEV_HS_MORE) CHECKF(x == 431, "result %d after %zu bytes", x, pos);
        if (x == WSEV_HS_MORE)
          CHECKF(pos <= MAX_HDR + 100, "still MORE after %zu bytes (max %d)", pos, MAX_HDR);
      } else {
        CHECKF(x == r, "result changed to %d after %zu bytes", x, pos);
      }
    }
    CHECK_EQ_INT(r, 431);
    wsev__hs_free(hs);
  }

  TEST_CASE("unterminated large head");
  {
    /* the same without its end: must not wait forever for more */
    size_t len = strlen(big) - 4;
    wsev_hs *hs = wsev__hs_new(MAX_HDR);
    size_t consumed;
    CHECK_EQ_INT(wsev__hs_feed(hs, big, len, &consumed), 431);
    wsev__hs_free(hs);
    hs = wsev__hs_new(MAX_HDR);
    int r = WSEV_HS_MORE;
    for (size_t pos = 0; pos < len && r == WSEV_HS_MORE; pos += 7)
      r = wsev__hs_feed(hs, big + pos, len - pos < 7 ? len - pos : 7, &consumed);
    CHECK_EQ_INT(r, 431);
    wsev__hs_free(hs);
  }

  TEST_CASE("many small headers");
  {
    static char many[20000];
    size_t o = (size_t)snprintf(many, sizeof many,
                                "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n"
                                "Connection: Upgrade\r\nSec-WebSocket-Key: " SAMPLE_KEY
                                "\r\nSec-WebSocket-Version: 13\r\n");
    for (int i = 0; o < 12000; i++)
      o += (size_t)sprintf(many + o, "X-H%d: v\r\n", i);
    strcpy(many + o, "\r\n");
    expect_status_n("many small headers", many, strlen(many), 431, MAX_HDR);
  }

  /* exactly at the limit is fine, one byte more is not */
  TEST_CASE("limit boundary");
  {
    static char req[MAX_HDR + 64];
    for (int extra = 0; extra <= 1; extra++) {
      size_t target = MAX_HDR + (size_t)extra;
      size_t o = (size_t)snprintf(req, sizeof req,
                                  "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n"
                                  "Connection: Upgrade\r\nSec-WebSocket-Key: " SAMPLE_KEY
                                  "\r\nSec-WebSocket-Version: 13\r\nX-Pad: ");
      while (o < target - 4)
        req[o++] = 'p';
      memcpy(req + o, "\r\n\r\n", 5);
      CHECK_EQ_UINT(strlen(req), target);
      wsev_hs *hs = wsev__hs_new(MAX_HDR);
      size_t consumed = 0;
      int r = wsev__hs_feed(hs, req, target, &consumed);
      CHECK_EQ_INTF(r, extra ? 431 : WSEV_HS_DONE, "header block of %zu bytes, max %d", target,
                    MAX_HDR);
      if (!extra) CHECK_EQ_UINT(consumed, target);
      wsev__hs_free(hs);
      /* and a request well under the limit passes */
      hs = wsev__hs_new(MAX_HDR);
      req[8000] = '\r', req[8001] = '\n', req[8002] = '\r', req[8003] = '\n';
      r = wsev__hs_feed(hs, req, 8004, &consumed);
      CHECK_EQ_INT(r, WSEV_HS_DONE);
      wsev__hs_free(hs);
    }
  }

  /* a small max applies too */
  {
    wsev_hs *hs = wsev__hs_new(64);
    size_t consumed;
    int r = wsev__hs_feed(hs, REQ, sizeof REQ - 1, &consumed);
    TEST_CASE("max 64");
    CHECK_EQ_INT(r, 431);
    wsev__hs_free(hs);
  }
}

static void check_error_response(int status) {
  char buf[2048];
  size_t n = wsev__hs_response_error(status, buf, sizeof buf);
  CHECKF(n > 0 && n < sizeof buf, "status %d: length %zu", status, n);
  if (n == 0 || n >= sizeof buf) return;
  char want[32];
  snprintf(want, sizeof want, "HTTP/1.1 %d ", status);
  CHECKF(memcmp(buf, want, strlen(want)) == 0, "status %d: status line [%.*s]", status,
         (int)(n < 40 ? n : 40), buf);
  const char *end = find_mem(buf, n, "\r\n\r\n");
  CHECKF(end != NULL, "status %d: no end of head", status);
  if (!end) return;
  size_t head = (size_t)(end - buf) + 4;
  char v[256];
  if (find_header(buf, head, "Content-Length", v, sizeof v))
    CHECKF((size_t)atol(v) == n - head, "status %d: Content-Length %s but body %zu", status, v,
           n - head);
  else
    CHECKF(n == head, "status %d: a body without Content-Length", status);
  CHECKF(find_header(buf, head, "Connection", v, sizeof v) == 1 && has_token(v, "close"),
         "status %d: Connection: close", status);
  if (status == 426)
    CHECKF(find_header(buf, head, "Sec-WebSocket-Version", v, sizeof v) == 1 &&
               strcmp(v, "13") == 0,
           "426 must carry Sec-WebSocket-Version: 13 [%.*s]", (int)n, buf);
  if (status == 426)
    CHECKF(find_mem(buf, n, "Sec-WebSocket-Version: 13\r\n") != NULL,
           "426 literal Sec-WebSocket-Version: 13");
  /* too small a buffer */
  CHECKF(wsev__hs_response_error(status, buf, 8) == 0, "status %d: cap 8", status);
}

static void test_responses(void) {
  TEST_CASE("error responses");
  check_error_response(400);
  check_error_response(426);
  check_error_response(431);
  check_error_response(503);

  TEST_CASE("101 for other keys");
  static const struct {
    const char *key, *accept;
  } v[] = {
      {"AQIDBAUGBwgJCgsMDQ4PEA==", "C/0nmHhBztSRGR1CwL6Tf4ZjwpY="},
      {"/////////////////////w==", "XXpj4jYzLM2yUE0C7TIgMwTQh2g="},
  };
  for (size_t i = 0; i < 2; i++) {
    char line[128];
    snprintf(line, sizeof line, "Sec-WebSocket-Key: %s\r\n", v[i].key);
    const char *req = req_edit("Sec-WebSocket-Key:", line);
    wsev_hs *hs = wsev__hs_new(MAX_HDR);
    size_t consumed;
    CHECK_EQ_INT(wsev__hs_feed(hs, req, strlen(req), &consumed), WSEV_HS_DONE);
    check_101(hs, v[i].accept, v[i].key);
    wsev__hs_free(hs);
  }
}

/* Headers, subprotocols, method, keep-alive and body of parsed requests. */
static void test_request_details(void) {
  TEST_CASE("request details");
  static const char req[] = "GET /chat?room=1 HTTP/1.1\r\nHost: example.com:8080\r\n"
                            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                            "Sec-WebSocket-Version: 13\r\nOrigin: https://Example.com \r\n"
                            "Sec-WebSocket-Protocol: chat.v2, chat.v1\r\n"
                            "Sec-WebSocket-Protocol: mqtt\r\nX-Empty:\r\n\r\n";
  wsev_hs *hs = wsev__hs_new(MAX_HDR);
  size_t used;
  CHECK_EQ_INT(wsev__hs_feed(hs, req, sizeof req - 1, &used), WSEV_HS_DONE);
  CHECK_EQ_STR(wsev__hs_path(hs), "/chat?room=1");
  CHECK_EQ_STR(wsev__hs_method(hs), "GET");
  CHECK_EQ_STR(wsev__hs_header(hs, "ORIGIN"), "https://Example.com");
  CHECK_EQ_STR(wsev__hs_header(hs, "x-empty"), "");
  CHECK(wsev__hs_header(hs, "x-missing") == NULL);
  CHECK_EQ_UINT(wsev__hs_protocol_count(hs), 3);
  CHECK_EQ_STR(wsev__hs_protocol(hs, 0), "chat.v2");
  CHECK_EQ_STR(wsev__hs_protocol(hs, 1), "chat.v1");
  CHECK_EQ_STR(wsev__hs_protocol(hs, 2), "mqtt");
  CHECK(wsev__hs_protocol(hs, 3) == NULL);
  CHECK(wsev__hs_keep_alive(hs));
  CHECK(!wsev__hs_has_body(hs));
  char buf[512];
  size_t n = wsev__hs_response_101(hs, "chat.v1", NULL, buf, sizeof buf);
  CHECK(n > 0 && strstr(buf, "\r\nSec-WebSocket-Protocol: chat.v1\r\n") != NULL);
  CHECK(n > 4 && memcmp(buf + n - 4, "\r\n\r\n", 4) == 0);
  n = wsev__hs_response_101(hs, NULL, NULL, buf, sizeof buf);
  CHECK(n > 0 && strstr(buf, "Sec-WebSocket-Protocol") == NULL);
  wsev__hs_free(hs);

  TEST_CASE("plain HTTP requests");
  static const char get[] = "GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /next";
  hs = wsev__hs_new(MAX_HDR);
  CHECK_EQ_INT(wsev__hs_feed(hs, get, sizeof get - 1, &used), WSEV_HS_HTTP);
  CHECK_EQ_UINT(used, sizeof get - 1 - strlen("GET /next"));
  CHECK_EQ_STR(wsev__hs_path(hs), "/health");
  CHECK(wsev__hs_keep_alive(hs));
  wsev__hs_free(hs);
  static const char post[] = "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                             "Connection: close\r\n\r\nhello";
  hs = wsev__hs_new(MAX_HDR);
  CHECK_EQ_INT(wsev__hs_feed(hs, post, sizeof post - 1, &used), WSEV_HS_HTTP);
  CHECK_EQ_STR(wsev__hs_method(hs), "POST");
  CHECK(wsev__hs_has_body(hs));
  CHECK(!wsev__hs_keep_alive(hs));
  wsev__hs_free(hs);
  static const char old[] = "GET / HTTP/1.0\r\n\r\n";
  hs = wsev__hs_new(MAX_HDR);
  CHECK_EQ_INT(wsev__hs_feed(hs, old, sizeof old - 1, &used), WSEV_HS_HTTP);
  CHECK(!wsev__hs_keep_alive(hs));
  wsev__hs_free(hs);
}

int main(void) {
  test_accept_key();
  test_valid_requests();
  test_rejections();
  test_too_large();
  test_responses();
  test_request_details();
  return TEST_REPORT();
}
