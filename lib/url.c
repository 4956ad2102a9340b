/* WebSocket URL parsing (RFC 6455 section 3, with RFC 3986's grammar cut down to
 * what a WebSocket client needs). The input is walked once, left to right: scheme,
 * authority (host, port), then the resource, which is copied as it is. */
#include "url.h"
#include "alloc.h"
#include "base64.h"

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

/* The host at *pp, up to the first of ':', '/', '?' or the end (anything else that
 * is not a host byte, such as '@' or '#', fails here or in the caller's checks):
 * lowercased into host[256], *ipv6 set for a bracketed literal, *pp moved past it. */
static int parse_host(const char **pp, char host_out[256], int *ipv6) {
  const char *p = *pp, *host = p;
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
    *ipv6 = 1;
    p = close + 1;
  } else {
    while (*p && *p != ':' && *p != '/' && *p != '?')
      p++;
    host_len = (size_t)(p - host);
    if (!valid_name(host, host_len)) return WSEV_EBADURL;
  }
  for (size_t i = 0; i < host_len; i++)
    host_out[i] = (char)to_lower((unsigned char)host[i]);
  host_out[host_len] = 0;
  struct in_addr a4;
  if (!*ipv6 && looks_numeric(host_out, host_len) && inet_pton(AF_INET, host_out, &a4) != 1)
    return WSEV_EBADURL;
  *pp = p;
  return 0;
}

/* ":port" at *pp, if any (':' without digits: `def`). */
static int parse_port(const char **pp, uint16_t def, uint16_t *port_out) {
  const char *p = *pp;
  *port_out = def;
  if (*p == ':') {
    unsigned long port = 0;
    size_t digits = 0;
    for (p++; is_digit((unsigned char)*p); p++) {
      if (++digits > 5) return WSEV_EBADURL;
      port = port * 10 + (unsigned long)(*p - '0');
    }
    if (digits && (port == 0 || port > 65535)) return WSEV_EBADURL;
    if (digits) *port_out = (uint16_t)port;
  }
  *pp = p;
  return 0;
}

/* The resource from p on (empty, "/...", or "?..."), into out->resource. */
static int take_resource(const char *p, wsev_url *out) {
  if (*p && *p != '/' && *p != '?') return WSEV_EBADURL;
  size_t rlen = strlen(p);
  if (!valid_resource(p, rlen)) return WSEV_EBADURL;
  /* "ws://h" and "ws://h?q" have an empty path, which is "/" on the wire. */
  int slash = *p != '/';
  if (!(out->resource = wsev__malloc(rlen + (size_t)slash + 1))) return UV_ENOMEM;
  out->resource[0] = '/';
  memcpy(out->resource + slash, p, rlen + 1);
  return 0;
}

/* The longest socket path a sockaddr_un holds with its NUL. */
#define UNIX_PATH_MAX 107

/* "ws+unix:" / "wss+unix:" after the scheme: PATH[:RESOURCE]. The path cannot hold
 * ':' (Node ws's rule: it ends there), nor '?' or '#', which a URL parser would take
 * for a query or a fragment. */
static int parse_unix(const char *p, wsev_url *out) {
  if (p[0] == '/' && p[1] == '/') {
    if (p[2] != '/') return WSEV_EBADURL; /* "ws+unix://host/..." names no socket */
    p += 2;
    /* "ws+unix:////x" would be "//x" here and "x" when written back: one way only. */
    if (p[1] == '/') return WSEV_EBADURL;
  }
  const char *path = p;
  while (*p && *p != ':') {
    unsigned char c = (unsigned char)*p;
    if (c <= 0x20 || c >= 0x7F || c == '?' || c == '#') return WSEV_EBADURL;
    p++;
  }
  size_t path_len = (size_t)(p - path);
  if (path_len == 0 || path_len > UNIX_PATH_MAX) return WSEV_EBADURL;
  if (*p == ':') p++;
  int rc = take_resource(p, out);
  if (rc) return rc;
  memcpy(out->host, "localhost", sizeof "localhost");
  out->unix_path = wsev__malloc(path_len + 1);
  out->host_header = wsev__malloc(sizeof "localhost");
  if (!out->unix_path || !out->host_header) return UV_ENOMEM;
  memcpy(out->unix_path, path, path_len);
  out->unix_path[path_len] = 0;
  memcpy(out->host_header, "localhost", sizeof "localhost");
  return 0;
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
  } else if (strncasecmp(p, "wss+unix:", 9) == 0) {
    out->tls = 1;
    return parse_unix(p + 9, out);
  } else if (strncasecmp(p, "ws+unix:", 8) == 0) {
    return parse_unix(p + 8, out);
  } else {
    return WSEV_EBADURL;
  }

  int rc = parse_host(&p, out->host, &out->ipv6);
  if (rc) return rc;
  uint16_t def = out->tls ? 443 : 80;
  if ((rc = parse_port(&p, def, &out->port)) != 0 || (rc = take_resource(p, out)) != 0) return rc;
  /* "[" host "]" ":" 5 digits and the NUL. */
  size_t host_len = strlen(out->host);
  if (!(out->host_header = wsev__malloc(host_len + 9))) return UV_ENOMEM;
  snprintf(out->host_header, host_len + 9, out->ipv6 ? "[%s]" : "%s", out->host);
  if (out->port != def)
    snprintf(out->host_header + strlen(out->host_header), 7, ":%u", (unsigned)out->port);
  return 0;
}

int wsev__url_parse(const char *url, wsev_url *out) {
  memset(out, 0, sizeof *out);
  int rc = parse(url, out);
  if (rc) {
    wsev__url_free(out);
    memset(out, 0, sizeof *out); /* no half-parsed host left behind */
  }
  return rc;
}

void wsev__url_free(wsev_url *url) {
  wsev__free(url->resource);
  wsev__free(url->host_header);
  wsev__free(url->unix_path);
  url->resource = NULL;
  url->host_header = NULL;
  url->unix_path = NULL;
}

/* ---- proxy URLs ------------------------------------------------------------------ */

static int hex_value(int c) { return is_digit(c) ? c - '0' : to_lower(c) - 'a' + 10; }

/* RFC 3986 userinfo: unreserved, sub-delims, ':' and "%XX"; decoded into out (cap
 * bytes with the NUL) up to the first ':' when `user`, else the whole of it. Control
 * bytes once decoded are refused (RFC 7617 section 2), and so is a decoded ':' in the
 * user, which Basic could not tell from the separator. */
static int decode_userinfo(const char *p, size_t n, int user, char *out, size_t cap, size_t *used,
                           size_t *out_len) {
  size_t o = 0, i = 0;
  for (; i < n; i++) {
    int c = (unsigned char)p[i];
    if (c == ':' && user) break;
    if (c == '%') {
      if (i + 2 >= n || !is_hex((unsigned char)p[i + 1]) || !is_hex((unsigned char)p[i + 2]))
        return WSEV_EBADURL;
      c = hex_value((unsigned char)p[i + 1]) * 16 + hex_value((unsigned char)p[i + 2]);
      i += 2;
      if (c < 0x20 || c == 0x7F || (c == ':' && user)) return WSEV_EBADURL;
    } else if (!(is_alpha(c) || is_digit(c) || strchr("-._~!$&'()*+,;=:", c))) {
      return WSEV_EBADURL;
    }
    if (o + 1 >= cap) return WSEV_EBADURL;
    out[o++] = (char)c;
  }
  out[o] = 0;
  *used = i;
  *out_len = o;
  return 0;
}

static int proxy_parse(const char *url, wsev_proxy_url *out) {
  size_t len = strnlen(url, WSEV_URL_MAX + 1);
  if (len > WSEV_URL_MAX || strncasecmp(url, "http://", 7) != 0) return WSEV_EBADURL;
  const char *p = url + 7;
  const char *at = NULL;
  for (const char *q = p; *q && *q != '/' && *q != '?' && *q != '#'; q++)
    if (*q == '@') {
      if (at) return WSEV_EBADURL; /* a second '@' must be written %40 */
      at = q;
    }
  if (at) {
    /* user:password decoded, then "Basic " base64(user ":" password). */
    char cred[1024];
    size_t used, user_len, pass_len = 0, n = (size_t)(at - p);
    int rc = decode_userinfo(p, n, 1, cred, sizeof cred, &used, &user_len);
    if (rc) return rc;
    if (used < n) {
      cred[user_len] = ':';
      rc = decode_userinfo(p + used + 1, n - used - 1, 0, cred + user_len + 1,
                           sizeof cred - user_len - 1, &used, &pass_len);
      if (rc) return rc;
      pass_len++; /* with the ':' */
    } else {
      cred[user_len] = ':'; /* no password: an empty one */
      pass_len = 1;
    }
    size_t cred_len = user_len + pass_len, b64 = 4 * ((cred_len + 2) / 3) + 1;
    if (!(out->auth = wsev__malloc(sizeof "Basic " - 1 + b64))) return UV_ENOMEM;
    memcpy(out->auth, "Basic ", 6);
    wsev__base64_encode((const uint8_t *)cred, cred_len, out->auth + 6, b64);
    memset(cred, 0, sizeof cred); /* the password does not linger on the stack */
    p = at + 1;
  }
  int rc = parse_host(&p, out->host, &out->ipv6);
  if (rc || (rc = parse_port(&p, 80, &out->port)) != 0) return rc;
  if (*p == '/') p++;
  return *p ? WSEV_EBADURL : 0;
}

int wsev__proxy_url_parse(const char *url, wsev_proxy_url *out) {
  memset(out, 0, sizeof *out);
  int rc = url ? proxy_parse(url, out) : WSEV_EBADURL;
  if (rc) {
    wsev__proxy_url_free(out);
    memset(out, 0, sizeof *out);
  }
  return rc;
}

void wsev__proxy_url_free(wsev_proxy_url *p) {
  wsev__free(p->auth);
  p->auth = NULL;
}
