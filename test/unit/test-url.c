/* Unit tests for lib/url.h: WebSocket URLs (RFC 6455 section 3). Every accepted
 * form with the parts it yields (host, port, resource, Host header), every rejected
 * form, the length limit, and allocation failure. */
#include <stdlib.h>

#include "test.h"
#include "url.h"
#include <wsev.h>

typedef struct {
  const char *url;
  int tls;
  const char *host;
  int ipv6;
  unsigned port;
  const char *resource;
  const char *host_header;
} good_case;

static const good_case good[] = {
    {"ws://example.com", 0, "example.com", 0, 80, "/", "example.com"},
    {"wss://example.com", 1, "example.com", 0, 443, "/", "example.com"},
    {"ws://example.com/", 0, "example.com", 0, 80, "/", "example.com"},
    {"ws://example.com/chat", 0, "example.com", 0, 80, "/chat", "example.com"},
    {"ws://example.com:8080/chat?room=1&x=%20y", 0, "example.com", 0, 8080, "/chat?room=1&x=%20y",
     "example.com:8080"},
    {"wss://example.com:8443", 1, "example.com", 0, 8443, "/", "example.com:8443"},
    /* An explicit default port is not repeated in Host. */
    {"ws://example.com:80/", 0, "example.com", 0, 80, "/", "example.com"},
    {"wss://example.com:443/x", 1, "example.com", 0, 443, "/x", "example.com"},
    /* ...but the other scheme's default is. */
    {"ws://example.com:443/", 0, "example.com", 0, 443, "/", "example.com:443"},
    {"wss://example.com:80/", 1, "example.com", 0, 80, "/", "example.com:80"},
    /* ':' without digits: the default port. */
    {"ws://example.com:/p", 0, "example.com", 0, 80, "/p", "example.com"},
    {"wss://example.com:", 1, "example.com", 0, 443, "/", "example.com"},
    /* Leading zeros within 5 digits. */
    {"ws://h:00081", 0, "h", 0, 81, "/", "h:81"},
    {"ws://h:65535", 0, "h", 0, 65535, "/", "h:65535"},
    {"ws://h:1", 0, "h", 0, 1, "/", "h:1"},
    /* Query without a path. */
    {"ws://example.com?a=b", 0, "example.com", 0, 80, "/?a=b", "example.com"},
    {"ws://example.com:9000?a=b/c?d", 0, "example.com", 0, 9000, "/?a=b/c?d", "example.com:9000"},
    {"ws://example.com/?", 0, "example.com", 0, 80, "/?", "example.com"},
    /* Case: scheme and host are case-insensitive; the host is lowercased; the path
     * is kept as it is. */
    {"WS://EXAMPLE.COM/Chat", 0, "example.com", 0, 80, "/Chat", "example.com"},
    {"WsS://ExAmple.Com:444/A?B", 1, "example.com", 0, 444, "/A?B", "example.com:444"},
    /* Host name characters. */
    {"ws://localhost", 0, "localhost", 0, 80, "/", "localhost"},
    {"ws://my-host_1~x.sub-domain.example/", 0, "my-host_1~x.sub-domain.example", 0, 80, "/",
     "my-host_1~x.sub-domain.example"},
    {"ws://a", 0, "a", 0, 80, "/", "a"},
    {"ws://1a.2b", 0, "1a.2b", 0, 80, "/", "1a.2b"},
    {"ws://123.example", 0, "123.example", 0, 80, "/", "123.example"},
    /* IPv4. */
    {"ws://127.0.0.1:9001/", 0, "127.0.0.1", 0, 9001, "/", "127.0.0.1:9001"},
    {"wss://10.1.2.3", 1, "10.1.2.3", 0, 443, "/", "10.1.2.3"},
    {"ws://255.255.255.255", 0, "255.255.255.255", 0, 80, "/", "255.255.255.255"},
    {"ws://0.0.0.0", 0, "0.0.0.0", 0, 80, "/", "0.0.0.0"},
    /* IPv6. */
    {"ws://[::1]", 0, "::1", 1, 80, "/", "[::1]"},
    {"ws://[::1]/", 0, "::1", 1, 80, "/", "[::1]"},
    {"ws://[2001:db8::1]:8080", 0, "2001:db8::1", 1, 8080, "/", "[2001:db8::1]:8080"},
    {"wss://[2001:DB8::A]:443/x?y", 1, "2001:db8::a", 1, 443, "/x?y", "[2001:db8::a]"},
    {"ws://[::ffff:192.0.2.1]?q", 0, "::ffff:192.0.2.1", 1, 80, "/?q", "[::ffff:192.0.2.1]"},
    {"ws://[::]:", 0, "::", 1, 80, "/", "[::]"},
    {"ws://[1:2:3:4:5:6:7:8]", 0, "1:2:3:4:5:6:7:8", 1, 80, "/", "[1:2:3:4:5:6:7:8]"},
    /* Path and query bytes: everything printable but the excluded ones. */
    {"ws://h/a-b_c.d~e!$&'()*+,;=:@/%41%4f%aF?x=[1]&y=/?", 0, "h", 0, 80,
     "/a-b_c.d~e!$&'()*+,;=:@/%41%4f%aF?x=[1]&y=/?", "h"},
    {"ws://h//double//slash", 0, "h", 0, 80, "//double//slash", "h"},
};

static const char *const bad[] = {
    /* Scheme. */
    "",
    "ws",
    "ws:",
    "ws:/",
    "ws:/host",
    "ws:host",
    "http://example.com",
    "https://example.com",
    "wss:/example.com",
    "wsx://example.com",
    "w://example.com",
    " ws://example.com",
    "ws ://example.com",
    "ws//example.com",
    "example.com",
    /* Host. */
    "ws://",
    "wss://",
    "ws:///path",
    "ws://:80",
    "ws://:80/",
    "ws://?q",
    "ws://user@example.com",
    "ws://user:pw@example.com/",
    "ws://@example.com",
    "ws://example.com:80@evil.com",
    "ws://exa mple.com",
    "ws://example.com /",
    "ws://exa%6dple.com",
    "ws://ex!ample.com",
    "ws://example.com\\x",
    "ws://.example.com",
    "ws://example..com",
    "ws://example.com.",
    "ws://.",
    "ws://-\x80",
    "ws://caf\xc3\xa9.example",
    "ws://example.com\t/",
    "ws://example.com\r\n/",
    /* Numeric hosts that are not dotted quads. */
    "ws://127.1",
    "ws://256.0.0.1",
    "ws://1.2.3.4.5",
    "ws://01.2.3.4",
    "ws://1.2.3",
    "ws://123",
    "ws://1.2.3.4.",
    /* IPv6. */
    "ws://[]",
    "ws://[",
    "ws://[::1",
    "ws://::1",
    "ws://[::1]x",
    "ws://[::1]]",
    "ws://[:::1]",
    "ws://[1:2:3:4:5:6:7:8:9]",
    "ws://[g::1]",
    "ws://[fe80::1%eth0]",
    "ws://[fe80::1%25eth0]",
    "ws://[127.0.0.1]",
    "ws://[ ::1]",
    "ws://[::1]:0",
    "ws://[[::1]]",
    /* Port. */
    "ws://example.com:0",
    "ws://example.com:00000",
    "ws://example.com:65536",
    "ws://example.com:99999",
    "ws://example.com:123456",
    "ws://example.com:000080",
    "ws://example.com:-1",
    "ws://example.com:+80",
    "ws://example.com:8o",
    "ws://example.com:80:81",
    "ws://example.com: 80",
    "ws://example.com:80 ",
    /* What follows the authority. */
    "ws://example.com#frag",
    "ws://example.com/#",
    "ws://example.com/chat#frag",
    "ws://example.com/chat?x#frag",
    "ws://example.com?x#",
    "ws://[::1]#f",
    "ws://example.com:80#f",
    "ws://example.com;x",
    /* Resource bytes. */
    "ws://h/a b",
    "ws://h/a\tb",
    "ws://h/a\x7f",
    "ws://h/a\x80",
    "ws://h/caf\xc3\xa9",
    "ws://h/\x01",
    "ws://h/\"",
    "ws://h/<",
    "ws://h/>",
    "ws://h/\\",
    "ws://h/^",
    "ws://h/`",
    "ws://h/{",
    "ws://h/|",
    "ws://h/}",
    "ws://h?a b",
    "ws://h?a<b",
    "ws://h/%",
    "ws://h/%4",
    "ws://h/%4g",
    "ws://h/%g4",
    "ws://h/x%",
    "ws://h?%",
    "ws://h/\r\nX-Injected: 1",
};

static void test_good(void) {
  TEST_CASE("valid URLs");
  for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
    const good_case *g = &good[i];
    wsev_url u;
    int rc = wsev__url_parse(g->url, &u);
    CHECK_EQ_INTF(rc, 0, "%s", g->url);
    if (rc) continue;
    CHECK_EQ_INTF(u.tls, g->tls, "%s", g->url);
    CHECK_EQ_STR(u.host, g->host);
    CHECK_EQ_INTF(u.ipv6, g->ipv6, "%s", g->url);
    CHECK_EQ_INTF(u.port, g->port, "%s", g->url);
    CHECK_EQ_STR(u.resource, g->resource);
    CHECK_EQ_STR(u.host_header, g->host_header);
    wsev__url_free(&u);
    CHECK(u.resource == NULL && u.host_header == NULL);
    wsev__url_free(&u); /* twice is harmless */
  }
}

static void test_bad(void) {
  TEST_CASE("invalid URLs");
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    wsev_url u;
    memset(&u, 0x5a, sizeof u);
    int rc = wsev__url_parse(bad[i], &u);
    CHECK_EQ_INTF(rc, WSEV_EBADURL, "\"%s\"", bad[i]);
    if (rc == 0) {
      wsev__url_free(&u);
    } else {
      /* Nothing to free, and freeing is still safe. */
      CHECK(u.resource == NULL && u.host_header == NULL && u.host[0] == 0 && u.port == 0);
      wsev__url_free(&u);
    }
  }
}

/* Builds "ws://" + host + rest into buf. */
static const char *with_host(char *buf, size_t cap, const char *scheme, size_t host_len,
                             size_t label_max, const char *rest) {
  size_t o = (size_t)snprintf(buf, cap, "%s", scheme);
  size_t label = 0;
  for (size_t i = 0; i < host_len; i++) {
    /* A dot after label_max letters, never first or last. */
    if (label == label_max && i + 1 < host_len) {
      buf[o++] = '.';
      label = 0;
    } else {
      buf[o++] = (char)('a' + i % 26);
      label++;
    }
  }
  snprintf(buf + o, cap - o, "%s", rest);
  return buf;
}

static void test_limits(void) {
  char url[WSEV_URL_MAX + 64];
  wsev_url u;

  TEST_CASE("host length");
  /* 253 bytes in 63-byte labels: the longest name. */
  with_host(url, sizeof url, "ws://", 253, 63, ":1234/x");
  CHECK_EQ_INT(wsev__url_parse(url, &u), 0);
  CHECK_EQ_UINT(strlen(u.host), 253);
  CHECK_EQ_UINT(strlen(u.host_header), 253 + 5);
  CHECK_EQ_INT(u.port, 1234);
  wsev__url_free(&u);
  with_host(url, sizeof url, "ws://", 254, 63, "/x");
  CHECK_EQ_INT(wsev__url_parse(url, &u), WSEV_EBADURL);
  with_host(url, sizeof url, "ws://", 1000, 63, "/x");
  CHECK_EQ_INT(wsev__url_parse(url, &u), WSEV_EBADURL);

  TEST_CASE("label length");
  with_host(url, sizeof url, "ws://", 63, 63, "");
  CHECK_EQ_INT(wsev__url_parse(url, &u), 0);
  wsev__url_free(&u);
  with_host(url, sizeof url, "ws://", 64, 64, "");
  CHECK_EQ_INT(wsev__url_parse(url, &u), WSEV_EBADURL);
  with_host(url, sizeof url, "ws://", 130, 64, "");
  CHECK_EQ_INT(wsev__url_parse(url, &u), WSEV_EBADURL);

  TEST_CASE("whole URL length");
  /* Exactly WSEV_URL_MAX bytes, then one more. */
  size_t o = (size_t)snprintf(url, sizeof url, "wss://example.com/");
  memset(url + o, 'p', WSEV_URL_MAX - o);
  url[WSEV_URL_MAX] = 0;
  CHECK_EQ_UINT(strlen(url), WSEV_URL_MAX);
  CHECK_EQ_INT(wsev__url_parse(url, &u), 0);
  CHECK_EQ_UINT(strlen(u.resource), WSEV_URL_MAX - strlen("wss://example.com"));
  wsev__url_free(&u);
  url[WSEV_URL_MAX] = 'p';
  url[WSEV_URL_MAX + 1] = 0;
  CHECK_EQ_INT(wsev__url_parse(url, &u), WSEV_EBADURL);
  /* Not read past WSEV_URL_MAX + 1 bytes: a long URL in an exact-size buffer. */
  char *big = malloc(100000);
  if (big) {
    memcpy(big, "ws://h/", 7);
    memset(big + 7, 'q', 100000 - 8);
    big[100000 - 1] = 0;
    CHECK_EQ_INT(wsev__url_parse(big, &u), WSEV_EBADURL);
    free(big);
  }

  TEST_CASE("IPv6 literal length");
  CHECK_EQ_INT(wsev__url_parse("ws://[0000:0000:0000:0000:0000:ffff:255.255.255.255]", &u), 0);
  CHECK_EQ_STR(u.host, "0000:0000:0000:0000:0000:ffff:255.255.255.255");
  wsev__url_free(&u);
  CHECK_EQ_INT(wsev__url_parse("ws://[00000:0000:0000:0000:0000:ffff:255.255.255.255]", &u),
               WSEV_EBADURL);
}

/* ---- allocation failure ---------------------------------------------------------- */

static long fail_at, calls;
static void *t_malloc(size_t n) { return ++calls == fail_at ? NULL : malloc(n); }
static void *t_realloc(void *p, size_t n) { return ++calls == fail_at ? NULL : realloc(p, n); }
static void *t_calloc(size_t c, size_t n) { return ++calls == fail_at ? NULL : calloc(c, n); }

static void test_nomem(void) {
  TEST_CASE("allocation failure");
  CHECK_EQ_INT(wsev_replace_allocator(t_malloc, t_realloc, t_calloc, free), 0);
  int succeeded = 0;
  for (fail_at = 1; fail_at < 10 && !succeeded; fail_at++) {
    wsev_url u;
    calls = 0;
    int rc = wsev__url_parse("wss://example.com:8443/path?q", &u);
    if (rc == 0) {
      succeeded = 1;
      CHECK_EQ_STR(u.host_header, "example.com:8443");
      wsev__url_free(&u);
    } else {
      CHECK_EQ_INTF(rc, UV_ENOMEM, "allocation %ld fails", fail_at);
      CHECK(u.resource == NULL && u.host_header == NULL);
    }
  }
  CHECK(succeeded);
  CHECK_EQ_INT(wsev_replace_allocator(malloc, realloc, calloc, free), 0);
}

int main(void) {
  test_good();
  test_bad();
  test_limits();
  test_nomem();
  return TEST_REPORT();
}
