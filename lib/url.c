/* WebSocket URL parsing (RFC 6455 section 3, with RFC 3986's grammar cut down to
 * what a WebSocket client needs). The input is walked once, left to right: scheme,
 * authority (host, port), then the resource, which is copied as it is. */
#include "url.h"
#include "alloc.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <wsev.h>

static int is_alpha(int c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static int is_digit(int c) { return c >= '0' && c <= '9'; }
static int is_hex(int c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }
static int to_lower(int c) { return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c; }

/* A host name: dot-separated labels of [A-Za-z0-9_~-], none empty, each at most 63
 * bytes (the DNS limits). Percent-encoded names are not accepted: no resolver or
 * certificate would match them anyway. */
static int valid_name(const char *h, size_t n) {
  size_t label = 0;
  if (n == 0 || n > 253) return 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)h[i];
    if (c == '.') {
      if (label == 0) return 0;
      label = 0;
    } else if (is_alpha(c) || is_digit(c) || c == '-' || c == '_' || c == '~') {
      if (++label > 63) return 0;
    } else {
      return 0;
    }
  }
  return label > 0;
}

/* Only digits and dots: the resolver would take it for an IPv4 address in one of
 * inet_aton's forms ("127.1", "0x7f.1", octal), so it must be a plain dotted quad. */
static int looks_numeric(const char *h, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!is_digit((unsigned char)h[i]) && h[i] != '.') return 0;
  return 1;
}

/* The bytes allowed in the resource (path and query). */
static int valid_resource(const char *r, size_t n) {
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)r[i];
    if (c <= 0x20 || c >= 0x7F || strchr("\"<>\\^`{|}#", c)) return 0;
    if (c == '%' &&
        (i + 2 >= n || !is_hex((unsigned char)r[i + 1]) || !is_hex((unsigned char)r[i + 2])))
      return 0;
  }
  return 1;
}

static int parse(const char *url, wsev_url *out) {
  size_t len = strnlen(url, WSEV_URL_MAX + 1);
  if (len > WSEV_URL_MAX) return WSEV_EBADURL;

  const char *p = url;
  if (strncasecmp(p, "wss://", 6) == 0) {
    out->tls = 1;
    p += 6;
  } else if (strncasecmp(p, "ws://", 5) == 0) {
    p += 5;
  } else {
    return WSEV_EBADURL;
  }

  /* The host ends at the first of ':', '/', '?' or the end; anything else that is
   * not a host byte ('@' of userinfo, '#', ...) fails in the checks below. */
  const char *host = p;
  size_t host_len;
  if (*p == '[') {
    const char *close = strchr(p, ']');
    if (!close) return WSEV_EBADURL;
    host = p + 1;
    host_len = (size_t)(close - host);
    char lit[INET6_ADDRSTRLEN];
    struct in6_addr a6;
    if (host_len == 0 || host_len >= sizeof lit) return WSEV_EBADURL;
    memcpy(lit, host, host_len);
    lit[host_len] = 0;
    if (inet_pton(AF_INET6, lit, &a6) != 1) return WSEV_EBADURL;
    out->ipv6 = 1;
    p = close + 1;
  } else {
    while (*p && *p != ':' && *p != '/' && *p != '?')
      p++;
    host_len = (size_t)(p - host);
    if (!valid_name(host, host_len)) return WSEV_EBADURL;
  }
  for (size_t i = 0; i < host_len; i++)
    out->host[i] = (char)to_lower((unsigned char)host[i]);
  out->host[host_len] = 0;
  struct in_addr a4;
  if (!out->ipv6 && looks_numeric(out->host, host_len) && inet_pton(AF_INET, out->host, &a4) != 1)
    return WSEV_EBADURL;

  uint16_t def = out->tls ? 443 : 80;
  out->port = def;
  if (*p == ':') {
    unsigned long port = 0;
    size_t digits = 0;
    for (p++; is_digit((unsigned char)*p); p++) {
      if (++digits > 5) return WSEV_EBADURL;
      port = port * 10 + (unsigned long)(*p - '0');
    }
    if (digits && (port == 0 || port > 65535)) return WSEV_EBADURL;
    if (digits) out->port = (uint16_t)port;
  }
  if (*p && *p != '/' && *p != '?') return WSEV_EBADURL;

  size_t rlen = strlen(p);
  if (!valid_resource(p, rlen)) return WSEV_EBADURL;

  /* "ws://h" and "ws://h?q" have an empty path, which is "/" on the wire. */
  int slash = *p != '/';
  out->resource = wsev__malloc(rlen + (size_t)slash + 1);
  /* "[" host "]" ":" 5 digits and the NUL. */
  out->host_header = wsev__malloc(host_len + 9);
  if (!out->resource || !out->host_header) {
    wsev__url_free(out);
    return UV_ENOMEM;
  }
  out->resource[0] = '/';
  memcpy(out->resource + slash, p, rlen + 1);
  snprintf(out->host_header, host_len + 9, out->ipv6 ? "[%s]" : "%s", out->host);
  if (out->port != def)
    snprintf(out->host_header + strlen(out->host_header), 7, ":%u", (unsigned)out->port);
  return 0;
}

int wsev__url_parse(const char *url, wsev_url *out) {
  memset(out, 0, sizeof *out);
  int rc = parse(url, out);
  if (rc) memset(out, 0, sizeof *out); /* no half-parsed host left behind */
  return rc;
}

void wsev__url_free(wsev_url *url) {
  wsev__free(url->resource);
  wsev__free(url->host_header);
  url->resource = NULL;
  url->host_header = NULL;
}
