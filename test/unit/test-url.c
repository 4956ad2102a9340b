/* Unit tests for lib/url.h: WebSocket URLs (RFC 6455 section 3). Every accepted
 * form with the parts it yields (host, port, resource, Host header), every rejected
 * form, the length limit, and allocation failure; the Unix socket forms
 * (ws+unix:, wss+unix:) and HTTP proxy URLs the same way. */
#include <stdlib.h>

#include "base64.h"
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

/* ---- Unix sockets ---------------------------------------------------------------- */

typedef struct {
  const char *url;
  int tls;
  const char *path;
  const char *resource;
} unix_case;

static const unix_case unix_good[] = {
    {"ws+unix:/run/app.sock", 0, "/run/app.sock", "/"},
    {"ws+unix:/run/app.sock:", 0, "/run/app.sock", "/"},
    {"ws+unix:/run/app.sock:/", 0, "/run/app.sock", "/"},
    {"ws+unix:/run/app.sock:/chat?room=1", 0, "/run/app.sock", "/chat?room=1"},
    {"ws+unix:/run/app.sock:?q", 0, "/run/app.sock", "/?q"},
    {"wss+unix:/tmp/x.sock:/a/b", 1, "/tmp/x.sock", "/a/b"},
    {"WS+UNIX:/tmp/X.sock:/P", 0, "/tmp/X.sock", "/P"}, /* the path keeps its case */
    {"WsS+UnIx:/s", 1, "/s", "/"},
    /* Node's URL parser reads "ws+unix:///p" as an empty host and path /p. */
    {"ws+unix:///tmp/x.sock:/r", 0, "/tmp/x.sock", "/r"},
    /* Relative to the working directory; bytes taken as they are. */
    {"ws+unix:app.sock:/r", 0, "app.sock", "/r"},
    {"ws+unix:./d/app.sock", 0, "./d/app.sock", "/"},
    {"ws+unix:/a%20b@c!$&=.sock:/r", 0, "/a%20b@c!$&=.sock", "/r"},
    /* Only the first ':' ends the path; the resource may hold more. */
    {"ws+unix:/s:/a:b:c", 0, "/s", "/a:b:c"},
};

static const char *const unix_bad[] = {
    "ws+unix:",
    "ws+unix::/r",
    "ws+unix://host/tmp/x.sock",
    "ws+unix:////tmp/x.sock", /* "//tmp/x.sock", or "/tmp/x.sock" written back? */
    "ws+unix://",
    "ws+unix:/a b.sock",
    "ws+unix:/a\tb",
    "ws+unix:/a?b.sock",
    "ws+unix:/a#b.sock",
    "ws+unix:/a\x7f",
    "ws+unix:/caf\xc3\xa9",
    "ws+unix:/s:r", /* the resource must start with '/' or '?' */
    "ws+unix:/s:/a b",
    "ws+unix:/s:/a#f",
    "ws+unix:/s:/%zz",
    "ws+unix/s",
    "wsx+unix:/s",
    "ws+unx:/s",
    "ws+unix",
};

static void test_unix(void) {
  TEST_CASE("ws+unix URLs");
  for (size_t i = 0; i < sizeof unix_good / sizeof *unix_good; i++) {
    const unix_case *g = &unix_good[i];
    wsev_url u;
    int rc = wsev__url_parse(g->url, &u);
    CHECK_EQ_INTF(rc, 0, "%s", g->url);
    if (rc) continue;
    CHECK_EQ_INTF(u.tls, g->tls, "%s", g->url);
    CHECK_EQ_STR(u.unix_path, g->path);
    CHECK_EQ_STR(u.resource, g->resource);
    CHECK_EQ_STR(u.host, "localhost");
    CHECK_EQ_STR(u.host_header, "localhost");
    CHECK_EQ_INTF(u.ipv6, 0, "%s", g->url);
    wsev__url_free(&u);
    CHECK(u.unix_path == NULL && u.resource == NULL && u.host_header == NULL);
  }
  /* A ws:// URL has no socket path. */
  wsev_url u;
  CHECK_EQ_INT(wsev__url_parse("ws://h/", &u), 0);
  CHECK(u.unix_path == NULL);
  wsev__url_free(&u);

  TEST_CASE("invalid ws+unix URLs");
  for (size_t i = 0; i < sizeof unix_bad / sizeof *unix_bad; i++) {
    memset(&u, 0x5a, sizeof u);
    CHECK_EQ_INTF(wsev__url_parse(unix_bad[i], &u), WSEV_EBADURL, "\"%s\"", unix_bad[i]);
    CHECK(u.unix_path == NULL && u.resource == NULL && u.host_header == NULL && !u.host[0]);
  }

  TEST_CASE("socket path length");
  /* 107 bytes fit a sockaddr_un with its NUL; 108 do not. */
  char url[256];
  int o = snprintf(url, sizeof url, "ws+unix:/");
  memset(url + o, 'p', 106);
  snprintf(url + o + 106, sizeof url - (size_t)o - 106, ":/r");
  CHECK_EQ_INT(wsev__url_parse(url, &u), 0);
  CHECK_EQ_UINT(u.unix_path ? strlen(u.unix_path) : 0, 107);
  wsev__url_free(&u);
  memset(url + o, 'p', 107);
  snprintf(url + o + 107, sizeof url - (size_t)o - 107, ":/r");
  CHECK_EQ_INT(wsev__url_parse(url, &u), WSEV_EBADURL);
}

/* ---- proxy URLs --------------------------------------------------------------------- */

typedef struct {
  const char *url;
  const char *host;
  int ipv6;
  unsigned port;
  const char *credentials; /* what Basic encodes, or NULL for no auth */
} proxy_case;

static const proxy_case proxy_good[] = {
    {"http://proxy.example:3128", "proxy.example", 0, 3128, NULL},
    {"http://proxy.example:3128/", "proxy.example", 0, 3128, NULL},
    {"http://proxy.example", "proxy.example", 0, 80, NULL},
    {"HTTP://Proxy.Example:", "proxy.example", 0, 80, NULL},
    {"http://127.0.0.1:8888", "127.0.0.1", 0, 8888, NULL},
    {"http://[::1]:8888", "::1", 1, 8888, NULL},
    {"http://[2001:DB8::1]/", "2001:db8::1", 1, 80, NULL},
    {"http://user:pass@proxy:3128", "proxy", 0, 3128, "user:pass"},
    {"http://user@proxy:3128", "proxy", 0, 3128, "user:"},
    {"http://user:@proxy", "proxy", 0, 80, "user:"},
    {"http://:pass@proxy", "proxy", 0, 80, ":pass"},
    /* Percent-decoding, and ':' in the password (only the user's first ends it). */
    {"http://us%65r:p%40ss:w%3Ard@proxy", "proxy", 0, 80, "user:p@ss:w:rd"},
    {"http://Aladdin:open%20sesame@[::1]:1", "::1", 1, 1, "Aladdin:open sesame"},
    {"http://u:%C3%A9!$&'()*+,;=-._~@p", "p", 0, 80, "u:\xc3\xa9!$&'()*+,;=-._~"},
};

static const char *const proxy_bad[] = {
    "",
    "proxy:3128",
    "https://proxy:3128",
    "socks5://proxy:1080",
    "ws://proxy",
    "http:/proxy",
    "http://",
    "http://:3128",
    "http://proxy:0",
    "http://proxy:65536",
    "http://proxy:3128/path",
    "http://proxy:3128//",
    "http://proxy:3128?x",
    "http://proxy:3128#f",
    "http://proxy:3128 ",
    "http://pro xy",
    "http://[::1",
    "http://127.1",
    "http://a@b@proxy",       /* a second '@' must be %40 */
    "http://us%3Aer:p@proxy", /* ':' in the user, once decoded */
    "http://u:p%0Aq@proxy",   /* a control byte */
    "http://u:p%00@proxy",
    "http://u:p%7f@proxy",
    "http://u:p%@proxy",
    "http://u:p%4@proxy",
    "http://u:p%zz@proxy",
    "http://u:p\"@proxy",
    "http://u:p q@proxy",
    "http://u:p/q@proxy", /* '/' ends the authority: "q@proxy" is a path */
};

static void test_proxy(void) {
  TEST_CASE("proxy URLs");
  for (size_t i = 0; i < sizeof proxy_good / sizeof *proxy_good; i++) {
    const proxy_case *g = &proxy_good[i];
    wsev_proxy_url p;
    int rc = wsev__proxy_url_parse(g->url, &p);
    CHECK_EQ_INTF(rc, 0, "%s", g->url);
    if (rc) continue;
    CHECK_EQ_STR(p.host, g->host);
    CHECK_EQ_INTF(p.ipv6, g->ipv6, "%s", g->url);
    CHECK_EQ_INTF(p.port, g->port, "%s", g->url);
    if (!g->credentials) {
      CHECKF(p.auth == NULL, "%s", g->url);
    } else {
      char want[256] = "Basic ";
      wsev__base64_encode((const uint8_t *)g->credentials, strlen(g->credentials), want + 6,
                          sizeof want - 6);
      CHECK_EQ_STR(p.auth, want);
    }
    wsev__proxy_url_free(&p);
    CHECK(p.auth == NULL);
    wsev__proxy_url_free(&p);
  }
  /* RFC 7617 section 2's example. */
  wsev_proxy_url p;
  CHECK_EQ_INT(wsev__proxy_url_parse("http://Aladdin:open%20sesame@h", &p), 0);
  CHECK_EQ_STR(p.auth, "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
  wsev__proxy_url_free(&p);

  TEST_CASE("invalid proxy URLs");
  for (size_t i = 0; i < sizeof proxy_bad / sizeof *proxy_bad; i++) {
    memset(&p, 0x5a, sizeof p);
    CHECK_EQ_INTF(wsev__proxy_url_parse(proxy_bad[i], &p), WSEV_EBADURL, "\"%s\"", proxy_bad[i]);
    CHECK(p.auth == NULL && p.host[0] == 0);
  }
  CHECK_EQ_INT(wsev__proxy_url_parse(NULL, &p), WSEV_EBADURL);

  TEST_CASE("proxy credentials length");
  /* Decoded, user:password fit 1023 bytes. */
  char url[4096];
  int o = snprintf(url, sizeof url, "http://u:");
  memset(url + o, 'x', 1021);
  snprintf(url + o + 1021, sizeof url - (size_t)o - 1021, "@h");
  CHECK_EQ_INT(wsev__proxy_url_parse(url, &p), 0);
  wsev__proxy_url_free(&p);
  memset(url + o, 'x', 1022);
  snprintf(url + o + 1022, sizeof url - (size_t)o - 1022, "@h");
  CHECK_EQ_INT(wsev__proxy_url_parse(url, &p), WSEV_EBADURL);
}

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
  succeeded = 0;
  for (fail_at = 1; fail_at < 10 && !succeeded; fail_at++) {
    wsev_url u;
    calls = 0;
    int rc = wsev__url_parse("wss+unix:/run/s.sock:/p", &u);
    if (rc == 0) {
      succeeded = 1;
      CHECK_EQ_STR(u.unix_path, "/run/s.sock");
      wsev__url_free(&u);
    } else {
      CHECK_EQ_INTF(rc, UV_ENOMEM, "allocation %ld fails", fail_at);
      CHECK(u.resource == NULL && u.host_header == NULL && u.unix_path == NULL);
    }
  }
  CHECK(succeeded);
  succeeded = 0;
  for (fail_at = 1; fail_at < 10 && !succeeded; fail_at++) {
    wsev_proxy_url p;
    calls = 0;
    int rc = wsev__proxy_url_parse("http://u:p@proxy:3128", &p);
    if (rc == 0) {
      succeeded = 1;
      CHECK_EQ_STR(p.auth, "Basic dTpw");
      wsev__proxy_url_free(&p);
    } else {
      CHECK_EQ_INTF(rc, UV_ENOMEM, "allocation %ld fails", fail_at);
      CHECK(p.auth == NULL);
    }
  }
  CHECK(succeeded);
  CHECK_EQ_INT(wsev_replace_allocator(malloc, realloc, calloc, free), 0);
}

int main(void) {
  test_good();
  test_bad();
  test_limits();
  test_unix();
  test_proxy();
  test_nomem();
  return TEST_REPORT();
}
