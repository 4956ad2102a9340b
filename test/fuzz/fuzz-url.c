/* fuzz-url: WebSocket URLs (lib/url.h) and the client's upgrade request
 * (lib/client_handshake.h), checked against the server side (lib/handshake.h).
 *
 * Input: fields separated by NUL bytes: the URL, then (optional) the extra header
 * lines, then (optional) up to 8 subprotocols to offer.
 *
 * Invariants (abort() when broken):
 * - wsev__url_parse returns 0 or WSEV_EBADURL (never UV_ENOMEM here); on failure
 *   nothing is allocated; on success:
 *   - the scheme matches tls, the URL is at most WSEV_URL_MAX bytes and holds no
 *     '#', and no '@' before the resource;
 *   - the host is non-empty, lowercase, and either a valid IPv6 literal (ipv6) or
 *     a name / dotted-quad of [a-z0-9._~-] that looks like neither an IPv6 literal
 *     nor a numeric shorthand;
 *   - the port is nonzero; the resource starts with '/' and is printable ASCII;
 *   - host_header is the host (bracketed when ipv6), with ":port" exactly when the
 *     port is not the scheme's default;
 *   - the URL rebuilt from these parts, with the port written out or not, parses
 *     to the same parts;
 * - wsev__client_options_check and wsev__client_request agree on the options;
 *   with a valid URL and options, the request is built, starts with the request
 *   line and Host header, and lib/handshake.c accepts it whole (WSEV_HS_DONE, all
 *   bytes consumed) with the same path, Host, and offered subprotocols; its 101
 *   response, selecting the last offered subprotocol, is accepted by
 *   wsev__client_hs_feed with that subprotocol, whatever the split;
 * - a "ws+unix:" / "wss+unix:" URL: a socket path of 1..107 printable bytes without
 *   ':', '?' or '#' that the URL holds right after the scheme (and an optional
 *   "//"), host "localhost", port 0, Host header "localhost", a resource as above;
 *   rebuilt as "ws+unix:PATH:RESOURCE" it parses the same, and its request passes
 *   the same checks;
 * - the URL field read as a proxy URL (wsev__proxy_url_parse): 0 or WSEV_EBADURL,
 *   nothing allocated on failure; on success an "http://" URL with a host as above
 *   and a nonzero port, which "http://host:port" gives back, and credentials only
 *   when it has an '@', as "Basic " and base64 of "user:password" with no control
 *   byte and the first ':' after a non-empty or empty user. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "alloc.h"
#include "base64.h"
#include "client_handshake.h"
#include "fuzz-common.h"
#include "handshake.h"
#include "url.h"
#include <wsev.h>

#define MAX_PROTOCOLS 8

static const uint8_t KEY16[16] = "the sample nonce";

static void check_unix_parts(const char *url, const wsev_url *u) {
  size_t scheme = u->tls ? 9 : 8;
  FUZZ_CHECK(strncasecmp(url, u->tls ? "wss+unix:" : "ws+unix:", scheme) == 0);
  const char *path = url + scheme;
  if (path[0] == '/' && path[1] == '/') path += 2;
  size_t n = strlen(u->unix_path);
  FUZZ_CHECK(n >= 1 && n <= 107 && strncmp(path, u->unix_path, n) == 0);
  FUZZ_CHECK(path[n] == 0 || path[n] == ':');
  for (size_t i = 0; i < n; i++)
    FUZZ_CHECK(u->unix_path[i] > 0x20 && u->unix_path[i] < 0x7F && !strchr(":?#", u->unix_path[i]));
  FUZZ_CHECK(strcmp(u->host, "localhost") == 0 && !u->ipv6 && u->port == 0);
  FUZZ_CHECK(u->host_header && strcmp(u->host_header, "localhost") == 0);
  FUZZ_CHECK(u->resource && u->resource[0] == '/');
  for (const char *c = u->resource; *c; c++)
    FUZZ_CHECK(*c > 0x20 && *c < 0x7F && *c != '#');
}

static void check_parts(const char *url, const wsev_url *u) {
  FUZZ_CHECK(strlen(url) <= WSEV_URL_MAX);
  if (u->unix_path) {
    check_unix_parts(url, u);
    return;
  }
  FUZZ_CHECK(strncasecmp(url, u->tls ? "wss://" : "ws://", u->tls ? 6 : 5) == 0);
  FUZZ_CHECK(strchr(url, '#') == NULL);
  const char *authority = url + (u->tls ? 6 : 5);
  FUZZ_CHECK(memchr(authority, '@', strcspn(authority, "/?")) == NULL);

  size_t n = strlen(u->host);
  FUZZ_CHECK(n > 0 && n < sizeof u->host);
  for (size_t i = 0; i < n; i++)
    FUZZ_CHECK(!(u->host[i] >= 'A' && u->host[i] <= 'Z'));
  if (u->ipv6) {
    struct in6_addr a6;
    FUZZ_CHECK(inet_pton(AF_INET6, u->host, &a6) == 1);
  } else {
    int numeric = 1;
    FUZZ_CHECK(n <= 253 && u->host[0] != '.' && u->host[n - 1] != '.');
    FUZZ_CHECK(strstr(u->host, "..") == NULL);
    for (size_t i = 0; i < n; i++) {
      char c = u->host[i];
      FUZZ_CHECK((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || strchr(".-_~", c));
      if (!((c >= '0' && c <= '9') || c == '.')) numeric = 0;
    }
    struct in_addr a4;
    if (numeric) FUZZ_CHECK(inet_pton(AF_INET, u->host, &a4) == 1);
  }

  FUZZ_CHECK(u->port != 0);
  FUZZ_CHECK(u->resource && u->resource[0] == '/');
  for (const char *c = u->resource; *c; c++)
    FUZZ_CHECK(*c > 0x20 && *c < 0x7F && *c != '#');

  char want[300];
  unsigned def = u->tls ? 443 : 80;
  int k = snprintf(want, sizeof want, u->ipv6 ? "[%s]" : "%s", u->host);
  if (u->port != def) snprintf(want + k, sizeof want - (size_t)k, ":%u", (unsigned)u->port);
  FUZZ_CHECK(u->host_header && strcmp(u->host_header, want) == 0);
}

static void same_parts(const wsev_url *a, const wsev_url *b) {
  FUZZ_CHECK(a->tls == b->tls && a->ipv6 == b->ipv6 && a->port == b->port);
  FUZZ_CHECK(!a->unix_path == !b->unix_path);
  if (a->unix_path) FUZZ_CHECK(strcmp(a->unix_path, b->unix_path) == 0);
  FUZZ_CHECK(strcmp(a->host, b->host) == 0);
  FUZZ_CHECK(strcmp(a->resource, b->resource) == 0);
  FUZZ_CHECK(strcmp(a->host_header, b->host_header) == 0);
}

/* The URL written back from its parts parses to the same parts. */
static void check_rebuilt(const wsev_url *u) {
  size_t cap = strlen(u->host) + strlen(u->resource) + 32 + (u->unix_path ? 120 : 0);
  char *s = malloc(cap);
  if (!s) abort();
  for (int explicit_port = 0; explicit_port < 2; explicit_port++) {
    if (u->unix_path) /* with the ':' or (when the resource is "/") without */
      snprintf(s, cap, "%s:%s%s%s", u->tls ? "wss+unix" : "ws+unix", u->unix_path,
               explicit_port || strcmp(u->resource, "/") ? ":" : "",
               explicit_port || strcmp(u->resource, "/") ? u->resource : "");
    else if (explicit_port)
      snprintf(s, cap, "%s://%s%s%s:%u%s", u->tls ? "wss" : "ws", u->ipv6 ? "[" : "", u->host,
               u->ipv6 ? "]" : "", (unsigned)u->port, u->resource);
    else
      snprintf(s, cap, "%s://%s%s", u->tls ? "wss" : "ws", u->host_header, u->resource);
    wsev_url again;
    int rc = wsev__url_parse(s, &again);
    /* Only the length limit can refuse the rebuilt URL (":port" adds bytes). */
    if (rc != 0) {
      FUZZ_CHECK(rc == WSEV_EBADURL && strlen(s) > WSEV_URL_MAX);
      continue;
    }
    same_parts(u, &again);
    wsev__url_free(&again);
  }
  free(s);
}

/* The request, as lib/handshake.c reads it, and the 101 it answers with, as we
 * read that. */
static void check_request(const wsev_url *u, const char *req, size_t len, const char *accept,
                          const char *const *protocols, size_t n_protocols) {
  char line[300];
  snprintf(line, sizeof line, "\r\nHost: %s\r\n", u->host_header);
  FUZZ_CHECK(len == strlen(req));
  FUZZ_CHECK(strncmp(req, "GET ", 4) == 0);
  FUZZ_CHECK(strncmp(req + 4, u->resource, strlen(u->resource)) == 0);
  FUZZ_CHECK(strncmp(req + 4 + strlen(u->resource), " HTTP/1.1", 9) == 0);
  FUZZ_CHECK(strstr(req, line) == req + 13 + strlen(u->resource));
  FUZZ_CHECK(len >= 4 && memcmp(req + len - 4, "\r\n\r\n", 4) == 0);

  wsev_hs *server = wsev__hs_new(len + 1);
  if (!server) abort();
  size_t used = 0;
  FUZZ_CHECK(wsev__hs_feed(server, req, len, &used) == WSEV_HS_DONE);
  FUZZ_CHECK(used == len);
  FUZZ_CHECK(strcmp(wsev__hs_path(server), u->resource) == 0);
  const char *host = wsev__hs_header(server, "host");
  FUZZ_CHECK(host && strcmp(host, u->host_header) == 0);
  FUZZ_CHECK(wsev__hs_protocol_count(server) == n_protocols);
  for (size_t i = 0; i < n_protocols; i++)
    FUZZ_CHECK(strcmp(wsev__hs_protocol(server, i), protocols[i]) == 0);

  const char *selected = n_protocols ? protocols[n_protocols - 1] : NULL;
  size_t cap = 256 + (selected ? strlen(selected) : 0);
  char *resp = malloc(cap);
  if (!resp) abort();
  size_t n = wsev__hs_response_101(server, selected, NULL, resp, cap);
  FUZZ_CHECK(n > 0);
  wsev__hs_free(server);

  for (int split = 0; split < 2; split++) {
    wsev_client_hs *hs = wsev__client_hs_new(accept, protocols, NULL, 8192);
    if (!hs) abort();
    size_t k = split ? n / 2 : n;
    FUZZ_CHECK(wsev__client_hs_feed(hs, resp, k, &used) ==
               (k == n ? WSEV_CHS_DONE : WSEV_CHS_MORE));
    if (k < n) FUZZ_CHECK(wsev__client_hs_feed(hs, resp + k, n - k, &used) == WSEV_CHS_DONE);
    FUZZ_CHECK(used == n - k || (k == n && used == n));
    const char *p = wsev__client_hs_protocol(hs);
    FUZZ_CHECK(selected ? p && strcmp(p, selected) == 0 : p == NULL);
    wsev__client_hs_free(hs);
  }
  free(resp);
}

/* The URL field as a proxy's URL. */
static void check_proxy(const char *url) {
  wsev_proxy_url p;
  int rc = wsev__proxy_url_parse(url, &p);
  FUZZ_CHECK(rc == 0 || rc == WSEV_EBADURL);
  if (rc != 0) {
    FUZZ_CHECK(p.auth == NULL && p.host[0] == 0);
    return;
  }
  FUZZ_CHECK(strncasecmp(url, "http://", 7) == 0 && p.port != 0 && p.host[0]);
  const char *authority = url + 7;
  size_t alen = strcspn(authority, "/?#");
  const char *at = memchr(authority, '@', alen);
  FUZZ_CHECK(!at == !p.auth);
  if (p.auth) {
    FUZZ_CHECK(strncmp(p.auth, "Basic ", 6) == 0);
    uint8_t cred[1024];
    long n = wsev__base64_decode(p.auth + 6, strlen(p.auth + 6), cred, sizeof cred);
    FUZZ_CHECK(n >= 1 && memchr(cred, ':', (size_t)n) != NULL);
    for (long i = 0; i < n; i++)
      FUZZ_CHECK(cred[i] >= 0x20 && cred[i] != 0x7F);
    /* The user is what precedes the first ':' of the userinfo, decoded. */
    size_t user_raw = strcspn(authority, ":@");
    FUZZ_CHECK((size_t)((const uint8_t *)memchr(cred, ':', (size_t)n) - cred) <= user_raw);
  }
  char again[300];
  snprintf(again, sizeof again, "http://%s%s%s:%u", p.ipv6 ? "[" : "", p.host, p.ipv6 ? "]" : "",
           (unsigned)p.port);
  wsev_proxy_url q;
  FUZZ_CHECK(wsev__proxy_url_parse(again, &q) == 0);
  FUZZ_CHECK(strcmp(q.host, p.host) == 0 && q.port == p.port && q.ipv6 == p.ipv6 && !q.auth);
  wsev__proxy_url_free(&p);
  wsev__proxy_url_free(&q);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* A NUL-terminated copy: the fields are the NUL-separated strings in it. */
  char *buf = malloc(size + 1);
  if (!buf) abort();
  memcpy(buf, data, size);
  buf[size] = 0;
  const char *end = buf + size;
  const char *url = buf;
  const char *p = url + strlen(url);
  const char *headers = NULL;
  const char *protocols[MAX_PROTOCOLS + 1] = {NULL};
  size_t n_protocols = 0;
  if (p < end) {
    headers = p + 1;
    p = headers + strlen(headers);
  }
  while (p < end && n_protocols < MAX_PROTOCOLS) {
    protocols[n_protocols++] = p + 1;
    p += strlen(p + 1) + 1;
  }
  const char *const *offered = n_protocols ? protocols : NULL;

  check_proxy(url);
  wsev_url u;
  int rc = wsev__url_parse(url, &u);
  FUZZ_CHECK(rc == 0 || rc == WSEV_EBADURL);
  if (rc != 0) {
    FUZZ_CHECK(u.resource == NULL && u.host_header == NULL && u.unix_path == NULL);
    free(buf);
    return 0;
  }
  check_parts(url, &u);
  check_rebuilt(&u);

  int ok = wsev__client_options_check(offered, headers);
  FUZZ_CHECK(ok == 0 || ok == UV_EINVAL);
  char *req = NULL, accept[29];
  size_t len = 0;
  rc = wsev__client_request(&u, KEY16, NULL, offered, headers, NULL, &req, &len, accept);
  FUZZ_CHECK(rc == ok);
  if (rc == 0) {
    FUZZ_CHECK(strcmp(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") == 0);
    check_request(&u, req, len, accept, protocols, n_protocols);
    wsev__free(req);
  } else {
    FUZZ_CHECK(req == NULL);
  }
  wsev__url_free(&u);
  free(buf);
  return 0;
}
