/* Unit tests for lib/client_handshake.h: the client side of the RFC 6455 opening
 * handshake (sections 4.1 and 4.2.2). The request's exact bytes for a fixed key;
 * option validation; the response verified fed whole, at every split point and byte
 * by byte, with the first frame right behind it; every reason for refusing it; the
 * header-size limit; and a round trip through the server side (lib/handshake.h).
 *
 * The expected Sec-WebSocket-Accept is RFC 6455 section 1.3's example, not computed
 * by the code under test. */
#include <stdlib.h>

#include "alloc.h"
#include "client_handshake.h"
#include "handshake.h"
#include "test.h"
#include "url.h"
#include <wsev.h>

/* RFC 6455 section 1.3: the key "dGhlIHNhbXBsZSBub25jZQ==" is base64 of these 16
 * bytes and gives the accept value below. */
static const uint8_t SAMPLE_KEY16[16] = "the sample nonce";
#define SAMPLE_KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define SAMPLE_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

#define MAX_HDR 8192

/* A server's unmasked text frame "Hello" (RFC 6455 section 5.7), after the 101. */
static const char FRAME[] = "\x81\x05Hello";
#define FRAME_LEN 7

#define FIELDS_101                                                                                 \
  "Upgrade: websocket\r\n"                                                                         \
  "Connection: Upgrade\r\n"                                                                        \
  "Sec-WebSocket-Accept: " SAMPLE_ACCEPT "\r\n"
#define HEAD_101 "HTTP/1.1 101 Switching Protocols\r\n" FIELDS_101

static const char *const CHAT[] = {"chat", "superchat", NULL};

/* ---- the request ------------------------------------------------------------------ */

static wsev_url parse(const char *s) {
  wsev_url u;
  if (wsev__url_parse(s, &u) != 0) {
    fprintf(stderr, "test bug: bad URL %s\n", s);
    exit(2);
  }
  return u;
}

static void test_request(void) {
  char *req = NULL, accept[29];
  size_t len = 0;

  TEST_CASE("request with every option");
  wsev_url u = parse("ws://Server.Example.com/chat?x=1");
  CHECK_EQ_INT(wsev__client_request(&u, SAMPLE_KEY16, "http://example.com", CHAT,
                                    "X-Custom: a b\r\nCookie: c=d\r\n", NULL, &req, &len, accept),
               0);
  static const char want[] = "GET /chat?x=1 HTTP/1.1\r\n"
                             "Host: server.example.com\r\n"
                             "Upgrade: websocket\r\n"
                             "Connection: Upgrade\r\n"
                             "Sec-WebSocket-Key: " SAMPLE_KEY "\r\n"
                             "Sec-WebSocket-Version: 13\r\n"
                             "Origin: http://example.com\r\n"
                             "Sec-WebSocket-Protocol: chat, superchat\r\n"
                             "X-Custom: a b\r\n"
                             "Cookie: c=d\r\n"
                             "\r\n";
  CHECK_EQ_UINT(len, sizeof want - 1);
  CHECK_EQ_STR(req, want);
  CHECK_EQ_STR(accept, SAMPLE_ACCEPT);
  wsev__free(req);
  wsev__url_free(&u);

  TEST_CASE("minimal request");
  u = parse("wss://h:8443?q");
  const char *const none[] = {NULL};
  CHECK_EQ_INT(wsev__client_request(&u, SAMPLE_KEY16, NULL, none, "", NULL, &req, &len, accept), 0);
  static const char want2[] = "GET /?q HTTP/1.1\r\n"
                              "Host: h:8443\r\n"
                              "Upgrade: websocket\r\n"
                              "Connection: Upgrade\r\n"
                              "Sec-WebSocket-Key: " SAMPLE_KEY "\r\n"
                              "Sec-WebSocket-Version: 13\r\n"
                              "\r\n";
  CHECK_EQ_STR(req, want2);
  CHECK_EQ_UINT(len, sizeof want2 - 1);
  CHECK_EQ_STR(accept, SAMPLE_ACCEPT);
  wsev__free(req);
  wsev__url_free(&u);

  TEST_CASE("IPv6 host, default port, one protocol");
  u = parse("ws://[2001:db8::1]:80/");
  const char *const one[] = {"v1.json", NULL};
  CHECK_EQ_INT(wsev__client_request(&u, SAMPLE_KEY16, NULL, one, NULL, NULL, &req, &len, accept), 0);
  static const char start[] = "GET / HTTP/1.1\r\nHost: [2001:db8::1]\r\n";
  CHECK(strncmp(req, start, sizeof start - 1) == 0);
  CHECK(strstr(req, "\r\nSec-WebSocket-Protocol: v1.json\r\n\r\n") != NULL);
  wsev__free(req);
  wsev__url_free(&u);

  TEST_CASE("another key");
  /* 16 zero bytes: key "AAAAAAAAAAAAAAAAAAAAAA==", accept computed with Python's
   * hashlib and base64. */
  static const uint8_t zero[16] = {0};
  u = parse("ws://h");
  CHECK_EQ_INT(wsev__client_request(&u, zero, NULL, NULL, NULL, NULL, &req, &len, accept), 0);
  CHECK(strstr(req, "\r\nSec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n") != NULL);
  CHECK_EQ_STR(accept, "ICX+Yqv66kxgM0FcWaLWlFLwTAI=");
  wsev__free(req);
  wsev__url_free(&u);
}

static void test_options(void) {
  static const char *const good_headers[] = {
      "",
      "X-A: 1\r\n",
      "X-A:1\r\n",
      "X-A:\r\n",
      "X-A: \r\n",
      "X-A: a\tb\r\nX-B: c\r\n",
      "Cookie: a=b; c=d\r\n",
      "Authorization: Bearer abc.def/ghi+==\r\n",
      "Hostx: y\r\n",
      "X-Host: y\r\n",
      "Sec-WebSocket-Accept-X: y\r\n",
      "Origin: http://x\r\n",
      "User-Agent: wsev/0.1 (test; \"quoted\")\r\n",
      "X-Utf8: caf\xc3\xa9\r\n",
      "!#$%&'*+-.^_`|~09AZaz: v\r\n",
  };
  static const char *const bad_headers[] = {
      "X-A: 1",
      "X-A: 1\n",
      "X-A: 1\r",
      "X-A: 1\n\r",
      "X-A 1\r\n",
      "X-A\r\n",
      ": v\r\n",
      " X-A: v\r\n",
      "X-A : v\r\n",
      "X A: v\r\n",
      "X(A): v\r\n",
      "X-\xc3\xa4: v\r\n",
      "X-A: a\rb\r\n",
      "X-A: a\nb\r\n",
      "X-A: \x01\r\n",
      "X-A: \x7f\r\n",
      "X-A: 1\r\n\r\n",
      "X-A: 1\r\n\r\nGET / HTTP/1.1\r\n",
      "\r\n",
      "Host: x\r\n",
      "host: x\r\n",
      "X-A: 1\r\nHOST: x\r\n",
      "Upgrade: x\r\n",
      "Connection: close\r\n",
      "Sec-WebSocket-Key: " SAMPLE_KEY "\r\n",
      "Sec-WebSocket-Version: 8\r\n",
      "sec-websocket-protocol: chat\r\n",
      "Sec-WebSocket-Extensions: permessage-deflate\r\n",
      "Content-Length: 5\r\n",
      "Transfer-Encoding: chunked\r\n",
  };
  static const char *const good_protocols[][4] = {
      {NULL},
      {"chat", NULL},
      {"chat", "superchat", "v2.chat", NULL},
      {"!#$%&'*+-.^_`|~", NULL},
      {"Chat", "chat", NULL}, /* distinct: subprotocol names are case-sensitive */
  };
  static const char *const bad_protocols[][4] = {
      {"", NULL},
      {"a b", NULL},
      {"a,b", NULL},
      {"a/b", NULL},
      {"a:b", NULL},
      {"a;b", NULL},
      {"(a)", NULL},
      {"a\tb", NULL},
      {"a\r\nX: y", NULL},
      {"caf\xc3\xa9", NULL},
      {"chat", "", NULL},
      {"chat", "chat", NULL},
      {"a", "b", "a", NULL},
  };
  wsev_url u = parse("ws://h/");
  char *req, accept[29];
  size_t len;

  TEST_CASE("good options");
  for (size_t i = 0; i < sizeof good_headers / sizeof *good_headers; i++) {
    CHECK_EQ_INTF(wsev__client_options_check(NULL, good_headers[i]), 0, "%s", good_headers[i]);
    req = NULL;
    CHECK_EQ_INTF(
        wsev__client_request(&u, SAMPLE_KEY16, NULL, NULL, good_headers[i], NULL, &req, &len, accept), 0,
        "%s", good_headers[i]);
    /* The lines go in as they are, right before the blank line. */
    char tail[256];
    snprintf(tail, sizeof tail, "\r\n%s\r\n", good_headers[i]);
    CHECK(req && len > strlen(tail) && strcmp(req + len - strlen(tail), tail) == 0);
    wsev__free(req);
  }
  for (size_t i = 0; i < sizeof good_protocols / sizeof *good_protocols; i++) {
    CHECK_EQ_INTF(wsev__client_options_check(good_protocols[i], NULL), 0, "protocols #%zu", i);
    CHECK_EQ_INTF(wsev__client_options_check(good_protocols[i], "X-A: b\r\n"), 0, "#%zu", i);
  }
  CHECK_EQ_INT(wsev__client_options_check(NULL, NULL), 0);
  CHECK_EQ_INT(wsev__client_origin_check(NULL), 0);
  CHECK_EQ_INT(wsev__client_origin_check(""), 0);
  CHECK_EQ_INT(wsev__client_origin_check("https://example.com:8443"), 0);

  TEST_CASE("bad options");
  for (size_t i = 0; i < sizeof bad_headers / sizeof *bad_headers; i++) {
    CHECK_EQ_INTF(wsev__client_options_check(NULL, bad_headers[i]), UV_EINVAL, "\"%s\"",
                  bad_headers[i]);
    req = (char *)1;
    len = 1;
    CHECK_EQ_INTF(
        wsev__client_request(&u, SAMPLE_KEY16, NULL, NULL, bad_headers[i], NULL, &req, &len, accept),
        UV_EINVAL, "\"%s\"", bad_headers[i]);
    CHECK(req == NULL && len == 0);
  }
  for (size_t i = 0; i < sizeof bad_protocols / sizeof *bad_protocols; i++) {
    CHECK_EQ_INTF(wsev__client_options_check(bad_protocols[i], NULL), UV_EINVAL, "#%zu", i);
    req = (char *)1;
    CHECK_EQ_INTF(
        wsev__client_request(&u, SAMPLE_KEY16, NULL, bad_protocols[i], NULL, NULL, &req, &len, accept),
        UV_EINVAL, "#%zu", i);
    CHECK(req == NULL);
  }
  static const char *const bad_origins[] = {"a\r\nX: y", "a\rb", "a\nb", "\x01", "x\x7f"};
  for (size_t i = 0; i < sizeof bad_origins / sizeof *bad_origins; i++) {
    CHECK_EQ_INTF(wsev__client_origin_check(bad_origins[i]), UV_EINVAL, "#%zu", i);
    req = (char *)1;
    CHECK_EQ_INTF(
        wsev__client_request(&u, SAMPLE_KEY16, bad_origins[i], NULL, NULL, NULL, &req, &len, accept),
        UV_EINVAL, "#%zu", i);
    CHECK(req == NULL);
  }
  wsev__url_free(&u);
}

/* ---- the response ----------------------------------------------------------------- */

typedef struct {
  int result;
  size_t end; /* DONE: offset in the input where the frames start */
  int status;
  char error[WSEV_CHS_ERROR_MAX];
  char protocol[64];
} outcome;

/* Feed resp[0..n) in pieces whose sizes are given by cuts (0-terminated; the rest
 * in one piece); each piece is an exact-size copy so ASan sees overreads. */
static outcome feed_cuts(const char *resp, size_t n, const char *const *protocols, size_t max,
                         const size_t *cuts) {
  outcome o;
  memset(&o, 0, sizeof o);
  wsev_client_hs *hs = wsev__client_hs_new(SAMPLE_ACCEPT, protocols, NULL, max);
  if (!hs) exit(2);
  CHECK_EQ_INT(wsev__client_hs_status(hs), 0);
  CHECK_EQ_STR(wsev__client_hs_error(hs), "");
  size_t off = 0;
  int r = WSEV_CHS_MORE;
  for (size_t i = 0; r == WSEV_CHS_MORE && off < n; i++) {
    size_t k = cuts && cuts[i] ? cuts[i] : n - off;
    if (k > n - off) k = n - off;
    char *piece = malloc(k);
    if (!piece) exit(2);
    memcpy(piece, resp + off, k);
    size_t used = (size_t)-1;
    r = wsev__client_hs_feed(hs, piece, k, &used);
    free(piece);
    if (r == WSEV_CHS_MORE) {
      CHECK_EQ_UINT(used, k);
    } else if (r == WSEV_CHS_DONE) {
      CHECK(used <= k);
      o.end = off + used;
    } else {
      CHECK_EQ_UINT(used, 0);
    }
    off += k;
  }
  o.result = r;
  o.status = wsev__client_hs_status(hs);
  snprintf(o.error, sizeof o.error, "%s", wsev__client_hs_error(hs));
  CHECK(strlen(wsev__client_hs_error(hs)) < WSEV_CHS_ERROR_MAX);
  const char *p = wsev__client_hs_protocol(hs);
  snprintf(o.protocol, sizeof o.protocol, "%s", p ? p : "(none)");
  if (r == WSEV_CHS_DONE) CHECK(o.error[0] == 0);
  if (r != WSEV_CHS_MORE) {
    /* A verdict is sticky and consumes nothing more. */
    size_t used = 99;
    CHECK_EQ_INT(wsev__client_hs_feed(hs, "HTTP/1.1 101 \r\n", 15, &used), r);
    CHECK_EQ_UINT(used, 0);
    CHECK_EQ_INT(wsev__client_hs_feed(hs, "", 0, &used), r);
  }
  wsev__client_hs_free(hs);
  return o;
}

static outcome feed_all(const char *resp, size_t n, const char *const *protocols, size_t max) {
  return feed_cuts(resp, n, protocols, max, NULL);
}

static void same(const outcome *a, const outcome *b, const char *what, size_t at) {
  CHECK_EQ_INTF(a->result, b->result, "%s %zu", what, at);
  CHECK_EQ_INTF(a->end, b->end, "%s %zu", what, at);
  /* Past the size limit the status line may not have been read yet: when it is
   * judged depends on the split. */
  if (strcmp(a->error, "response header too large") != 0)
    CHECK_EQ_INTF(a->status, b->status, "%s %zu", what, at);
  CHECKF(strcmp(a->error, b->error) == 0, "%s %zu: %s vs %s", what, at, a->error, b->error);
  CHECKF(strcmp(a->protocol, b->protocol) == 0, "%s %zu", what, at);
}

/* The outcome of resp fed whole, which must be the same at every split point
 * (two pieces), in three random pieces, and byte by byte. */
static outcome feed_every_way(const char *resp, size_t n, const char *const *protocols,
                              size_t max) {
  outcome whole = feed_all(resp, n, protocols, max);
  for (size_t i = 1; i < n; i++) {
    size_t cuts[] = {i, 0};
    outcome o = feed_cuts(resp, n, protocols, max, cuts);
    same(&whole, &o, "split at", i);
  }
  for (int t = 0; t < 20 && n > 2; t++) {
    size_t a = 1 + test_rand_below((uint32_t)(n - 1)), b = 1 + test_rand_below((uint32_t)n);
    size_t cuts[] = {a, b, 0};
    outcome o = feed_cuts(resp, n, protocols, max, cuts);
    same(&whole, &o, "three pieces", a);
  }
  size_t *ones = malloc((n + 1) * sizeof *ones);
  if (!ones) exit(2);
  for (size_t i = 0; i < n; i++)
    ones[i] = 1;
  ones[n] = 0;
  outcome o = feed_cuts(resp, n, protocols, max, ones);
  same(&whole, &o, "byte by byte", 0);
  free(ones);
  return whole;
}

/* A response head + "\r\n" + FRAME, into buf; returns its length. */
static size_t with_frame(char *buf, size_t cap, const char *head) {
  size_t n = (size_t)snprintf(buf, cap, "%s\r\n", head);
  memcpy(buf + n, FRAME, FRAME_LEN);
  return n + FRAME_LEN;
}

static void accepted(const char *head, const char *const *protocols, const char *protocol) {
  char buf[4096];
  size_t n = with_frame(buf, sizeof buf, head);
  outcome o = feed_every_way(buf, n, protocols, MAX_HDR);
  CHECK_EQ_INTF(o.result, WSEV_CHS_DONE, "%s: %s", head, o.error);
  CHECK_EQ_INTF(o.end, n - FRAME_LEN, "%s", head);
  CHECK_EQ_INT(o.status, 101);
  CHECK_EQ_STR(o.protocol, protocol ? protocol : "(none)");
}

static void refused(const char *resp, const char *const *protocols, const char *why, int status) {
  outcome o = feed_every_way(resp, strlen(resp), protocols, MAX_HDR);
  CHECK_EQ_INTF(o.result, WSEV_EHANDSHAKE, "%s", resp);
  CHECKF(strcmp(o.error, why) == 0, "got \"%s\", expected \"%s\" for %s", o.error, why, resp);
  CHECK_EQ_INTF(o.status, status, "%s", resp);
  CHECK_EQ_STR(o.protocol, "(none)");
  CHECK_EQ_UINT(o.end, 0);
}

static void test_accepted(void) {
  TEST_CASE("valid 101 with a frame behind it");
  accepted(HEAD_101, NULL, NULL);
  accepted(HEAD_101, CHAT, NULL);

  TEST_CASE("101 and a frame in one buffer, used points at the frame");
  {
    char buf[512];
    size_t n = with_frame(buf, sizeof buf, HEAD_101);
    wsev_client_hs *hs = wsev__client_hs_new(SAMPLE_ACCEPT, NULL, NULL, MAX_HDR);
    size_t used = 0;
    CHECK_EQ_INT(wsev__client_hs_feed(hs, buf, n, &used), WSEV_CHS_DONE);
    CHECK_EQ_UINT(used, n - FRAME_LEN);
    CHECK_EQ_MEM(buf + used, FRAME, FRAME_LEN);
    CHECK_EQ_INT(wsev__client_hs_status(hs), 101);
    CHECK(wsev__client_hs_protocol(hs) == NULL);
    wsev__client_hs_free(hs);
  }

  TEST_CASE("101 without frames: the head ends the last piece");
  {
    static const char resp[] = HEAD_101 "\r\n";
    outcome o = feed_every_way(resp, sizeof resp - 1, NULL, MAX_HDR);
    CHECK_EQ_INT(o.result, WSEV_CHS_DONE);
    CHECK_EQ_UINT(o.end, sizeof resp - 1);
  }

  TEST_CASE("101 variants");
  accepted("HTTP/1.1 101 Switching Protocols\r\n"
           "upgrade: WebSocket\r\n"
           "CONNECTION: keep-alive, UPGRADE\r\n"
           "sec-websocket-accept: " SAMPLE_ACCEPT "  \r\n"
           "Server: test\r\n"
           "Date: Thu, 01 Jan 1970 00:00:00 GMT\r\n",
           NULL, NULL);
  accepted("HTTP/1.1 101 OK\r\n"
           "Sec-WebSocket-Accept:" SAMPLE_ACCEPT "\r\n"
           "Connection:upgrade\r\n"
           "Upgrade:\twebsocket\t\r\n",
           NULL, NULL);
  accepted("HTTP/1.1 101 \r\n" FIELDS_101, NULL, NULL);
  accepted("HTTP/1.1 101\r\n" FIELDS_101, NULL, NULL);
  accepted(HEAD_101 "Connection: close, ,upgrade ,\r\n", NULL, NULL);
  accepted(HEAD_101 "X-Very-Long-Header-Name-Over-Thirty-Two-Bytes-Long: websocket\r\n", NULL,
           NULL);
  /* A 101 with Content-Length: nothing after the head is a body. */
  accepted(HEAD_101 "Content-Length: 7\r\n", NULL, NULL);

  TEST_CASE("subprotocol selected");
  accepted(HEAD_101 "Sec-WebSocket-Protocol: chat\r\n", CHAT, "chat");
  accepted(HEAD_101 "Sec-WebSocket-Protocol: superchat\r\n", CHAT, "superchat");
  accepted(HEAD_101 "Sec-WebSocket-Protocol:  superchat \r\n", CHAT, "superchat");
  accepted("HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Protocol: chat\r\n" FIELDS_101, CHAT,
           "chat");
}

static void test_refused(void) {
  TEST_CASE("not 101: status and reason");
  refused("HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found", NULL,
          "HTTP 404 Not Found", 404);
  refused("HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\n", NULL, "HTTP 404 Not Found", 404);
  refused("HTTP/1.1 200 OK\r\n\r\n", NULL, "HTTP 200 OK", 200);
  refused("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", NULL,
          "HTTP 200 OK", 200);
  refused("HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\n\r\n", NULL, "HTTP 302 Found", 302);
  refused("HTTP/1.0 403 Forbidden\r\n\r\nbody until close", NULL, "HTTP 403 Forbidden", 403);
  refused("HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\n\r\n", NULL,
          "HTTP 426 Upgrade Required", 426);
  refused("HTTP/1.1 503 \r\n\r\n", NULL, "HTTP 503", 503);
  /* Even with every WebSocket header right. */
  refused("HTTP/1.1 200 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
          "Sec-WebSocket-Accept: " SAMPLE_ACCEPT "\r\n\r\n",
          NULL, "HTTP 200 OK", 200);
  /* An interim 100 is not the 101 we need. */
  refused("HTTP/1.1 100 Continue\r\n\r\n" HEAD_101 "\r\n", NULL, "HTTP 100 Continue", 100);

  TEST_CASE("reason phrase shortened and made printable");
  {
    char resp[512], want[WSEV_CHS_ERROR_MAX];
    snprintf(resp, sizeof resp, "HTTP/1.1 500 %s\r\n\r\n",
             "This reason phrase is much longer than anybody would want to read in an error "
             "message, so it is cut short");
    outcome o = feed_every_way(resp, strlen(resp), NULL, MAX_HDR);
    CHECK_EQ_INT(o.result, WSEV_EHANDSHAKE);
    snprintf(want, sizeof want, "HTTP 500 %.80s",
             "This reason phrase is much longer than anybody would want to read in an error "
             "message, so it is cut short");
    CHECK_EQ_STR(o.error, want);
    CHECK(strlen(o.error) <= 120);
    static const char odd[] = "HTTP/1.1 500 Caf\xc3\xa9 \xff!\r\n\r\n";
    o = feed_every_way(odd, sizeof odd - 1, NULL, MAX_HDR);
    CHECK_EQ_INT(o.result, WSEV_EHANDSHAKE);
    CHECK_EQ_STR(o.error, "HTTP 500 Caf?? ?!");
  }

  TEST_CASE("101 not in HTTP/1.1");
  refused("HTTP/1.0 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
          "Sec-WebSocket-Accept: " SAMPLE_ACCEPT "\r\n\r\n",
          NULL, "101 response not HTTP/1.1", 101);
  refused("HTTP/2.0 101 Switching Protocols\r\n" FIELDS_101 "\r\n", NULL,
          "101 response not HTTP/1.1", 101);

  TEST_CASE("Upgrade");
  refused("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
          "Sec-WebSocket-Accept: " SAMPLE_ACCEPT "\r\n\r\n",
          NULL, "no Upgrade: websocket", 101);
  refused(HEAD_101 "Upgrade: h2c\r\n\r\n", NULL, "no Upgrade: websocket", 101);
  refused("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket2\r\nConnection: Upgrade\r\n"
          "Sec-WebSocket-Accept: " SAMPLE_ACCEPT "\r\n\r\n",
          NULL, "no Upgrade: websocket", 101);
  refused("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket, h2c\r\nConnection: Upgrade\r\n"
          "Sec-WebSocket-Accept: " SAMPLE_ACCEPT "\r\n\r\n",
          NULL, "no Upgrade: websocket", 101);
  refused("HTTP/1.1 101 Switching Protocols\r\nUpgrade:\r\nConnection: Upgrade\r\n"
          "Sec-WebSocket-Accept: " SAMPLE_ACCEPT "\r\n\r\n",
          NULL, "no Upgrade: websocket", 101);

  TEST_CASE("Connection");
  refused("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
          "Sec-WebSocket-Accept: " SAMPLE_ACCEPT "\r\n\r\n",
          NULL, "no Connection: Upgrade", 101);
  refused("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: keep-alive\r\n"
          "Sec-WebSocket-Accept: " SAMPLE_ACCEPT "\r\n\r\n",
          NULL, "no Connection: Upgrade", 101);
  refused("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrades\r\n"
          "Sec-WebSocket-Accept: " SAMPLE_ACCEPT "\r\n\r\n",
          NULL, "no Connection: Upgrade", 101);

  TEST_CASE("Sec-WebSocket-Accept");
  refused("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
          NULL, "bad Sec-WebSocket-Accept", 101);
  refused("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
          "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo\r\n\r\n",
          NULL, "bad Sec-WebSocket-Accept", 101);
  refused("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
          "Sec-WebSocket-Accept: S3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
          NULL, "bad Sec-WebSocket-Accept", 101);
  refused("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
          "Sec-WebSocket-Accept: " SAMPLE_ACCEPT "x\r\n\r\n",
          NULL, "bad Sec-WebSocket-Accept", 101);
  refused("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
          "Sec-WebSocket-Accept: " SAMPLE_KEY "\r\n\r\n",
          NULL, "bad Sec-WebSocket-Accept", 101);
  /* The right value twice is still wrong. */
  refused(HEAD_101 "Sec-WebSocket-Accept: " SAMPLE_ACCEPT "\r\n\r\n", NULL,
          "bad Sec-WebSocket-Accept", 101);

  TEST_CASE("extensions");
  refused(HEAD_101 "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n", NULL,
          "unrequested extension", 101);
  refused(HEAD_101 "Sec-WebSocket-Extensions:\r\n\r\n", NULL, "unrequested extension", 101);

  TEST_CASE("subprotocols");
  refused(HEAD_101 "Sec-WebSocket-Protocol: chat\r\n\r\n", NULL, "unrequested subprotocol", 101);
  const char *const none[] = {NULL};
  refused(HEAD_101 "Sec-WebSocket-Protocol: chat\r\n\r\n", none, "unrequested subprotocol", 101);
  refused(HEAD_101 "Sec-WebSocket-Protocol: other\r\n\r\n", CHAT, "unrequested subprotocol", 101);
  refused(HEAD_101 "Sec-WebSocket-Protocol: CHAT\r\n\r\n", CHAT, "unrequested subprotocol", 101);
  refused(HEAD_101 "Sec-WebSocket-Protocol: chat, superchat\r\n\r\n", CHAT,
          "unrequested subprotocol", 101);
  refused(HEAD_101 "Sec-WebSocket-Protocol: cha\r\n\r\n", CHAT, "unrequested subprotocol", 101);
  refused(HEAD_101 "Sec-WebSocket-Protocol: \r\n\r\n", CHAT, "unrequested subprotocol", 101);
  refused(HEAD_101 "Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Protocol: chat\r\n\r\n", CHAT,
          "more than one Sec-WebSocket-Protocol", 101);

  TEST_CASE("malformed");
  refused("\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03", NULL, "malformed HTTP response", 0);
  refused("SSH-2.0-OpenSSH_9.2\r\n", NULL, "malformed HTTP response", 0);
  refused("GET / HTTP/1.1\r\nHost: x\r\n\r\n", NULL, "malformed HTTP response", 0);
  refused("HTTP/1.1 1010 Switching\r\n\r\n", NULL, "malformed HTTP response", 0);
  refused("HTTP/1.1 abc\r\n\r\n", NULL, "malformed HTTP response", 0);
  /* llhttp 8.1 takes these for status 0 (found by fuzz-client-handshake). */
  refused("HTTP/1.1  200 OK\r\n\r\n", NULL, "malformed HTTP response", 0);
  refused("HTTP/1.1  0oF23und\r\nLocation: /x\r\n\r\n", NULL, "malformed HTTP response", 0);
  refused("HTTP/1.1 101 Switching Protocols\r\nUpgrade websocket\r\n\r\n", NULL,
          "malformed HTTP response", 101);
  refused("HTTP/1.1 101 Switching Protocols\r\n(Bad): x\r\n\r\n", NULL, "malformed HTTP response",
          101);
  refused("HTTP/1.1 101 Switching Protocols\r\nX: a\x01b\r\n\r\n", NULL, "malformed HTTP response",
          101);
}

static void test_incomplete(void) {
  TEST_CASE("incomplete heads need more");
  static const char resp[] = HEAD_101 "\r\n";
  for (size_t i = 0; i < sizeof resp - 1; i++) {
    outcome o = feed_all(resp, i, NULL, MAX_HDR);
    CHECK_EQ_INTF(o.result, WSEV_CHS_MORE, "%zu bytes", i);
  }
  /* The status is known once the status line is in. */
  wsev_client_hs *hs = wsev__client_hs_new(SAMPLE_ACCEPT, NULL, NULL, MAX_HDR);
  size_t used;
  CHECK_EQ_INT(wsev__client_hs_feed(hs, "HTTP/1.1 404 Nope\r\nX:", 21, &used), WSEV_CHS_MORE);
  CHECK_EQ_INT(wsev__client_hs_status(hs), 404);
  CHECK_EQ_STR(wsev__client_hs_error(hs), "");
  CHECK_EQ_INT(wsev__client_hs_feed(hs, " y\r\n\r\n", 6, &used), WSEV_EHANDSHAKE);
  CHECK_EQ_STR(wsev__client_hs_error(hs), "HTTP 404 Nope");
  wsev__client_hs_free(hs);
  wsev__client_hs_free(NULL);
}

static void test_too_large(void) {
  TEST_CASE("header size limit");
  char resp[4096];
  /* A 101 whose head is exactly `max` bytes passes; with max - 1 it is too large. */
  size_t n = with_frame(resp, sizeof resp, HEAD_101 "X-Pad: xxxxxxxxxxxxxxxxxxxxxxxx\r\n");
  size_t head = n - FRAME_LEN;
  outcome o = feed_every_way(resp, n, NULL, head);
  CHECK_EQ_INT(o.result, WSEV_CHS_DONE);
  CHECK_EQ_UINT(o.end, head);
  o = feed_every_way(resp, n, NULL, head - 1);
  CHECK_EQ_INT(o.result, WSEV_EHANDSHAKE);
  CHECK_EQ_STR(o.error, "response header too large");

  /* A big header: too large as soon as the limit is passed, before the end. */
  size_t k = (size_t)snprintf(resp, sizeof resp, "HTTP/1.1 101 Switching Protocols\r\nX-Big: ");
  memset(resp + k, 'b', 3000);
  o = feed_every_way(resp, k + 3000, NULL, 1024);
  CHECK_EQ_INT(o.result, WSEV_EHANDSHAKE);
  CHECK_EQ_STR(o.error, "response header too large");
  /* ...also in a header we keep (its value is not stored beyond the limit). */
  k = (size_t)snprintf(resp, sizeof resp, "HTTP/1.1 101 Switching Protocols\r\nConnection: ");
  memset(resp + k, 'c', 3000);
  memcpy(resp + k + 3000, "\r\n\r\n", 4);
  o = feed_every_way(resp, k + 3004, NULL, 1024);
  CHECK_EQ_INT(o.result, WSEV_EHANDSHAKE);
  CHECK_EQ_STR(o.error, "response header too large");
  /* A refusal whose head is too large is reported as too large. */
  k = (size_t)snprintf(resp, sizeof resp, "HTTP/1.1 404 Not Found\r\nX: %0500d\r\n\r\n", 0);
  o = feed_every_way(resp, k, NULL, 256);
  CHECK_EQ_STR(o.error, "response header too large");
  /* A refusal's body does not count. */
  k = (size_t)snprintf(resp, sizeof resp, "HTTP/1.1 404 Not Found\r\nContent-Length: 600\r\n\r\n");
  memset(resp + k, 'z', 600);
  o = feed_every_way(resp, k + 600, NULL, 256);
  CHECK_EQ_STR(o.error, "HTTP 404 Not Found");
  /* Garbage longer than the limit: still judged where parsing failed. */
  o = feed_every_way("HTTP/1.1 101 Switching Protocols\r\nX: \x01", 39, NULL, 20);
  CHECK_EQ_STR(o.error, "response header too large");
  o = feed_every_way("HTTP/1.1 101 Switching Protocols\r\nX: \x01", 39, NULL, 100);
  CHECK_EQ_STR(o.error, "malformed HTTP response");
}

/* ---- a round trip through the server side ------------------------------------------ */

static void test_round_trip(void) {
  TEST_CASE("request accepted by lib/handshake.c, its 101 by us");
  wsev_url u = parse("ws://127.0.0.1:9001/echo?x=%41");
  char *req, accept[29], resp[1024];
  size_t len, used;
  CHECK_EQ_INT(
      wsev__client_request(&u, SAMPLE_KEY16, "http://o", CHAT, "X-Y: z\r\n", NULL, &req, &len, accept),
      0);
  wsev_hs *server = wsev__hs_new(MAX_HDR);
  CHECK_EQ_INT(wsev__hs_feed(server, req, len, &used), WSEV_HS_DONE);
  CHECK_EQ_UINT(used, len);
  CHECK_EQ_STR(wsev__hs_path(server), "/echo?x=%41");
  CHECK_EQ_STR(wsev__hs_header(server, "host"), "127.0.0.1:9001");
  CHECK_EQ_STR(wsev__hs_header(server, "origin"), "http://o");
  CHECK_EQ_STR(wsev__hs_header(server, "x-y"), "z");
  CHECK_EQ_UINT(wsev__hs_protocol_count(server), 2);
  size_t n = wsev__hs_response_101(server, wsev__hs_protocol(server, 1), NULL, resp, sizeof resp);
  CHECK(n > 0);
  memcpy(resp + n, FRAME, FRAME_LEN);
  wsev_client_hs *hs = wsev__client_hs_new(accept, CHAT, NULL, MAX_HDR);
  CHECK_EQ_INT(wsev__client_hs_feed(hs, resp, n + FRAME_LEN, &used), WSEV_CHS_DONE);
  CHECK_EQ_UINT(used, n);
  CHECK_EQ_STR(wsev__client_hs_protocol(hs), "superchat");
  wsev__client_hs_free(hs);
  wsev__hs_free(server);
  wsev__free(req);
  wsev__url_free(&u);
}

/* ---- allocation failure ------------------------------------------------------------ */

static long fail_at, calls;
static void *t_malloc(size_t n) { return ++calls == fail_at ? NULL : malloc(n); }
static void *t_realloc(void *p, size_t n) { return ++calls == fail_at ? NULL : realloc(p, n); }
static void *t_calloc(size_t c, size_t n) { return ++calls == fail_at ? NULL : calloc(c, n); }

static void test_nomem(void) {
  TEST_CASE("allocation failure");
  CHECK_EQ_INT(wsev_replace_allocator(t_malloc, t_realloc, t_calloc, free), 0);
  wsev_url u = parse("ws://h/");
  int done = 0;
  static const char resp[] = HEAD_101 "Sec-WebSocket-Protocol: chat\r\n\r\n";
  for (fail_at = 1; fail_at < 20 && !done; fail_at++) {
    calls = 0;
    char *req = NULL, accept[29];
    size_t len, used;
    int rc = wsev__client_request(&u, SAMPLE_KEY16, NULL, CHAT, NULL, NULL, &req, &len, accept);
    if (rc != 0) {
      CHECK_EQ_INTF(rc, UV_ENOMEM, "allocation %ld", fail_at);
      CHECK(req == NULL);
      continue;
    }
    wsev__free(req);
    wsev_client_hs *hs = wsev__client_hs_new(accept, CHAT, NULL, MAX_HDR);
    if (!hs) continue;
    rc = wsev__client_hs_feed(hs, resp, sizeof resp - 1, &used);
    if (rc == WSEV_CHS_DONE) {
      done = 1;
      CHECK_EQ_STR(wsev__client_hs_protocol(hs), "chat");
    } else {
      CHECK_EQ_INTF(rc, UV_ENOMEM, "allocation %ld", fail_at);
      CHECK_EQ_UINT(used, 0);
      CHECK_EQ_INT(wsev__client_hs_feed(hs, resp, 1, &used), UV_ENOMEM);
    }
    wsev__client_hs_free(hs);
  }
  CHECK(done);
  CHECK(fail_at > 3); /* request, parser, its protocol copy, a header value */
  CHECK_EQ_INT(wsev_replace_allocator(malloc, realloc, calloc, free), 0);
  wsev__url_free(&u);
}

int main(void) {
  test_request();
  test_options();
  test_accepted();
  test_refused();
  test_incomplete();
  test_too_large();
  test_round_trip();
  test_nomem();
  return TEST_REPORT();
}
