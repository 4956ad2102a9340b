/* Unit tests for lib/http_proxy.h: the CONNECT request, and the proxy's answer read
 * in one piece and byte by byte (same verdict, same end of the head, same reason),
 * every malformed form, the limit, interim answers, and results kept after the end. */
#include <stdlib.h>

#include "http_proxy.h"
#include "test.h"
#include <wsev.h>

static void test_request(void) {
  TEST_CASE("CONNECT request");
  char *req;
  size_t len;
  CHECK_EQ_INT(wsev__proxy_request("example.com", 0, 443, NULL, &req, &len), 0);
  CHECK_EQ_STR(req, "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n");
  CHECK_EQ_UINT(len, strlen(req));
  free(req);
  CHECK_EQ_INT(wsev__proxy_request("2001:db8::1", 1, 80, "Basic dTpw", &req, &len), 0);
  CHECK_EQ_STR(req, "CONNECT [2001:db8::1]:80 HTTP/1.1\r\nHost: [2001:db8::1]:80\r\n"
                    "Proxy-Authorization: Basic dTpw\r\n\r\n");
  CHECK_EQ_UINT(len, strlen(req));
  free(req);
  /* The longest host name. */
  char host[254];
  memset(host, 'a', 253);
  host[253] = 0;
  CHECK_EQ_INT(wsev__proxy_request(host, 0, 65535, "Basic xxxx", &req, &len), 0);
  CHECK_EQ_UINT(len, strlen(req));
  CHECK(len == 2 * (253 + 6) + strlen("CONNECT  HTTP/1.1\r\nHost: \r\n"
                                      "Proxy-Authorization: Basic xxxx\r\n\r\n"));
  free(req);
}

typedef struct {
  const char *answer;
  int result;         /* WSEV_PROXY_OPEN, WSEV_EPROXY, WSEV_EPROXYAUTH, WSEV_PROXY_MORE */
  const char *rest;   /* OPEN: what follows the head (NULL: nothing) */
  const char *reason; /* a failure's reason */
} answer_case;

static const answer_case cases[] = {
    {"HTTP/1.1 200 Connection established\r\n\r\n", WSEV_PROXY_OPEN, NULL, NULL},
    {"HTTP/1.0 200 Connection established\r\nProxy-agent: tinyproxy/1.11.1\r\n\r\n",
     WSEV_PROXY_OPEN, NULL, NULL},
    {"HTTP/1.1 200\r\n\r\n", WSEV_PROXY_OPEN, NULL, NULL},
    {"HTTP/1.1 200 \r\n\r\n", WSEV_PROXY_OPEN, NULL, NULL},
    {"HTTP/1.1 204 No Content\r\nX: y\r\n\r\n", WSEV_PROXY_OPEN, NULL, NULL},
    /* Bare LFs; empty values; odd but legal names; obs-text in values. */
    {"HTTP/1.1 200 OK\nA:\nB: \t x \xff\n!#$%&'*+-.^_`|~09az: v\n\n", WSEV_PROXY_OPEN, NULL, NULL},
    /* A 2xx's Content-Length is ignored: what follows is the server's. */
    {"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nHTTP/1.1 101 Switching", WSEV_PROXY_OPEN,
     "HTTP/1.1 101 Switching", NULL},
    {"HTTP/1.1 200 OK\r\n\r\n\x16\x03\x03", WSEV_PROXY_OPEN, "\x16\x03\x03", NULL},
    /* Interim answers are skipped. */
    {"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\nrest", WSEV_PROXY_OPEN, "rest", NULL},
    {"HTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\nHTTP/1.1 407 Auth\r\n\r\n", WSEV_EPROXYAUTH, NULL,
     "proxy authentication required (407 Auth)"},
    /* Final statuses other than 2xx: decided at the status line. */
    {"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\n\r\n",
     WSEV_EPROXYAUTH, NULL, "proxy authentication required (407 Proxy Authentication Required)"},
    {"HTTP/1.0 401 Unauthorized\r\n\r\n", WSEV_EPROXYAUTH, NULL,
     "proxy authentication required (401 Unauthorized)"},
    {"HTTP/1.0 403 Access violation\r\n", WSEV_EPROXY, NULL,
     "proxy refused the tunnel: 403 Access violation"},
    {"HTTP/1.1 502 Bad Gateway\r\n\x01garbage", WSEV_EPROXY, NULL,
     "proxy refused the tunnel: 502 Bad Gateway"},
    {"HTTP/1.1 101 Switching Protocols\r\n\r\n", WSEV_EPROXY, NULL,
     "proxy refused the tunnel: 101 Switching Protocols"},
    {"HTTP/1.1 301 Moved\r\n", WSEV_EPROXY, NULL, "proxy refused the tunnel: 301 Moved"},
    {"HTTP/1.1 999\r\n", WSEV_EPROXY, NULL, "proxy refused the tunnel: 999"},
    {"HTTP/1.1 403 Caf\xc3\xa9\tx\r\n", WSEV_EPROXY, NULL,
     "proxy refused the tunnel: 403 Caf??\?x"},
    /* Not HTTP. */
    {"SSH-2.0-OpenSSH_9.2\r\n", WSEV_EPROXY, NULL,
     "malformed answer from the proxy: not an HTTP/1.x status line"},
    {"\r\n", WSEV_EPROXY, NULL, "malformed answer from the proxy: not an HTTP/1.x status line"},
    {"HTTP/2 200\r\n", WSEV_EPROXY, NULL, NULL},
    {"HTTP/1.1 20 OK\r\n", WSEV_EPROXY, NULL, NULL},
    {"HTTP/1.1 2000 OK\r\n", WSEV_EPROXY, NULL, NULL},
    {"HTTP/1.1 099 OK\r\n", WSEV_EPROXY, NULL, NULL},
    {"HTTP/1.1  200 OK\r\n", WSEV_EPROXY, NULL, NULL},
    {"HTTP/1.1 200OK\r\n", WSEV_EPROXY, NULL, NULL},
    {"http/1.1 200 OK\r\n", WSEV_EPROXY, NULL, NULL},
    {"HTTP/1.x 200 OK\r\n", WSEV_EPROXY, NULL, NULL},
    {"HTTP/1.1 200 O\x01K\r\n", WSEV_EPROXY, NULL,
     "malformed answer from the proxy: control byte in the status line"},
    {"HTTP/1.1 200 OK\rX\n", WSEV_EPROXY, NULL,
     "malformed answer from the proxy: CR not followed by LF"},
    {"HTTP/1.1 200 OK\r\nA: b\r\r\n", WSEV_EPROXY, NULL,
     "malformed answer from the proxy: CR not followed by LF"},
    {"HTTP/1.1 200 OK\r\n folded\r\n\r\n", WSEV_EPROXY, NULL,
     "malformed answer from the proxy: folded header line"},
    {"HTTP/1.1 200 OK\r\nA: b\r\n\tc\r\n\r\n", WSEV_EPROXY, NULL,
     "malformed answer from the proxy: folded header line"},
    {"HTTP/1.1 200 OK\r\nNo colon\r\n\r\n", WSEV_EPROXY, NULL,
     "malformed answer from the proxy: bad header name"},
    {"HTTP/1.1 200 OK\r\nNocolon\r\n\r\n", WSEV_EPROXY, NULL,
     "malformed answer from the proxy: header line without a colon"},
    {"HTTP/1.1 200 OK\r\n: v\r\n\r\n", WSEV_EPROXY, NULL,
     "malformed answer from the proxy: bad header name"},
    {"HTTP/1.1 200 OK\r\nA : v\r\n\r\n", WSEV_EPROXY, NULL,
     "malformed answer from the proxy: bad header name"},
    {"HTTP/1.1 200 OK\r\nA: v\x7f\r\n\r\n", WSEV_EPROXY, NULL,
     "malformed answer from the proxy: control byte in a header value"},
    /* Not complete yet. */
    {"", WSEV_PROXY_MORE, NULL, NULL},
    {"HTTP/1.1 200 OK", WSEV_PROXY_MORE, NULL, NULL},
    {"HTTP/1.1 200 OK\r\nA: b\r\n", WSEV_PROXY_MORE, NULL, NULL},
    {"HTTP/1.1 200 OK\r\n\r", WSEV_PROXY_MORE, NULL, NULL},
    {"HTTP/1.1 100 Continue\r\n\r\n", WSEV_PROXY_MORE, NULL, NULL},
};

/* Feed in pieces of `step` bytes (0: one shot); the result, where the head ended
 * (bytes consumed in all), and the reason. */
static int feed(const char *text, size_t len, size_t step, size_t limit, size_t *end,
                char reason[128]) {
  wsev_proxy_answer a;
  wsev__proxy_answer_init(&a, limit);
  size_t off = 0;
  int r = WSEV_PROXY_MORE;
  *end = 0;
  while (off < len) {
    size_t n = step && len - off > step ? step : len - off, used = 0;
    r = wsev__proxy_answer_feed(&a, (const uint8_t *)text + off, n, &used);
    CHECK(used <= n);
    off += used;
    if (r != WSEV_PROXY_MORE) break;
    CHECK_EQ_UINT(used, n);
  }
  *end = off;
  snprintf(reason, 128, "%s", wsev__proxy_answer_reason(&a));
  if (r != WSEV_PROXY_MORE) {
    /* A result is kept: feeding more returns it again and consumes nothing. */
    size_t used = 99;
    CHECK_EQ_INT(wsev__proxy_answer_feed(&a, (const uint8_t *)"x", 1, &used), r);
    CHECK_EQ_UINT(used, 0);
  }
  return r;
}

static void test_answers(void) {
  TEST_CASE("answers");
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    const answer_case *t = &cases[i];
    size_t len = strlen(t->answer), end, end1;
    char reason[128], reason1[128];
    int r = feed(t->answer, len, 0, 0, &end, reason);
    CHECK_EQ_INTF(r, t->result, "case %zu: %s", i, t->answer);
    if (r == WSEV_PROXY_OPEN) {
      size_t rest = t->rest ? strlen(t->rest) : 0;
      CHECK_EQ_INTF(end, len - rest, "case %zu", i);
      if (t->rest) CHECK_EQ_STR(t->answer + end, t->rest);
    } else if (r == WSEV_PROXY_MORE) {
      CHECK_EQ_INTF(end, len, "case %zu", i);
    } else {
      CHECKF(reason[0], "case %zu has no reason", i);
      if (t->reason) CHECK_EQ_STR(reason, t->reason);
      for (const char *p = reason; *p; p++)
        CHECKF(*p >= 0x20 && *p < 0x7f, "case %zu: reason byte 0x%02x", i, (unsigned)*p);
    }
    /* Byte by byte, and in 3-byte pieces: the same. */
    for (size_t step = 1; step <= 3; step += 2) {
      int r1 = feed(t->answer, len, step, 0, &end1, reason1);
      CHECK_EQ_INTF(r1, r, "case %zu step %zu", i, step);
      CHECK_EQ_INTF(end1, end, "case %zu step %zu", i, step);
      CHECK_EQ_STR(reason1, reason);
    }
  }
}

static void test_limit(void) {
  TEST_CASE("head limit");
  const char *ok = "HTTP/1.1 200 OK\r\nA: b\r\n\r\n";
  size_t len = strlen(ok), end;
  char reason[128];
  /* Exactly the limit passes; one byte less fails, wherever the pieces end. */
  CHECK_EQ_INT(feed(ok, len, 0, len, &end, reason), WSEV_PROXY_OPEN);
  CHECK_EQ_INT(feed(ok, len, 1, len, &end, reason), WSEV_PROXY_OPEN);
  CHECK_EQ_INT(feed(ok, len, 0, len - 1, &end, reason), WSEV_EPROXY);
  CHECK_EQ_STR(reason, "malformed answer from the proxy: its head is over 24 bytes");
  CHECK_EQ_UINT(end, len - 1);
  CHECK_EQ_INT(feed(ok, len, 1, len - 1, &end, reason), WSEV_EPROXY);
  /* Interim answers count too. */
  const char *two = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\n";
  CHECK_EQ_INT(feed(two, strlen(two), 0, 30, &end, reason), WSEV_EPROXY);
  CHECK_EQ_INT(feed(two, strlen(two), 0, strlen(two), &end, reason), WSEV_PROXY_OPEN);
  /* An endless header stays bounded (0: the default limit). */
  size_t big = WSEV_PROXY_ANSWER_MAX * 2;
  char *flood = malloc(big + 1);
  if (flood) {
    memcpy(flood, "HTTP/1.1 200 OK\r\nX: ", 20);
    memset(flood + 20, 'a', big - 20);
    flood[big] = 0;
    CHECK_EQ_INT(feed(flood, big, 0, 0, &end, reason), WSEV_EPROXY);
    CHECK_EQ_UINT(end, WSEV_PROXY_ANSWER_MAX);
    free(flood);
  }
  /* A long reason phrase is cut, not overflowed. */
  char longer[400];
  int o = snprintf(longer, sizeof longer, "HTTP/1.1 403 ");
  memset(longer + o, 'r', 300);
  snprintf(longer + o + 300, sizeof longer - (size_t)o - 300, "\r\n");
  CHECK_EQ_INT(feed(longer, strlen(longer), 0, 0, &end, reason), WSEV_EPROXY);
  CHECK(strlen(reason) < 120);
  CHECK(strncmp(reason, "proxy refused the tunnel: 403 rrr", 33) == 0);
}

int main(void) {
  test_request();
  test_answers();
  test_limit();
  return TEST_REPORT();
}
