/* WebSocket URLs (RFC 6455 section 3): "ws://" or "wss://", a host, an optional
 * port, an optional path and query; or a Unix socket in Node ws's form
 * ("ws+unix:/path/to.sock:/request"). And the URL of an HTTP proxy. Pure code, no
 * I/O; the host is checked here so that what reaches the resolver, SNI and the Host
 * header is known to be sane. */
#ifndef WSEV_URL_H
#define WSEV_URL_H

#include <stdint.h>

/* The longest URL accepted, in bytes. */
#define WSEV_URL_MAX 8192

typedef struct {
  int tls;           /* 1 for wss:// (and wss+unix:) */
  char host[256];    /* host name, IPv4 literal, or IPv6 literal without brackets;
                      * lowercase, NUL-terminated */
  int ipv6;          /* the host was a bracketed IPv6 literal */
  uint16_t port;     /* explicit, or the default 80 (ws) / 443 (wss) */
  char *resource;    /* path and query, allocated; "/" when the URL has none */
  char *host_header; /* allocated value for the Host header: host (bracketed if ipv6),
                      * plus ":port" only when the port is not the scheme's default */
  char *unix_path;   /* ws+unix: / wss+unix: the socket's path (allocated; host is then
                      * "localhost" and port 0), else NULL */
} wsev_url;

/* Parse url. Accepted, and nothing else (strict on purpose):
 * - scheme "ws" or "wss" in any case, then "://"; no userinfo ("user@");
 * - host: a name of letters, digits, '-', '_', '~' in dot-separated labels (none
 *   empty, at most 63 bytes each, 253 in all; no trailing dot, no percent-encoding),
 *   or a dotted-quad IPv4 literal (a host of only digits and dots must be one:
 *   "127.1" or "256.0.0.1" is rejected rather than guessed at), or "[IPv6]"
 *   as inet_pton reads it (no zone id);
 * - ":port": 1 to 5 digits, 1..65535; a ':' without digits means the default;
 * - then nothing, a path starting with '/', or a query starting with '?' (the
 *   resource then is "/?query"); path and query are printable ASCII other than
 *   '"<>\^`{|}', with '%' only as "%XX" (hex); no fragment ('#') anywhere;
 * - at most WSEV_URL_MAX bytes.
 * Or "ws+unix:" / "wss+unix:" (any case), an optional "//" (an empty authority, as
 * Node's URL parser reads "ws+unix:///p"), the socket path (1..107 printable ASCII
 * bytes other than ':', '?', '#', taken literally: no percent-decoding; relative to
 * the working directory unless it starts with '/'), then optionally ':' and the
 * resource as above ("/" when empty).
 * The host is lowercased. Returns 0 (free with wsev__url_free), WSEV_EBADURL or
 * UV_ENOMEM; on error *out holds nothing to free. */
int wsev__url_parse(const char *url, wsev_url *out);

/* Frees what wsev__url_parse allocated; a zeroed or already freed url is fine. */
void wsev__url_free(wsev_url *url);

/* An HTTP proxy for CONNECT tunnels. */
typedef struct {
  char host[256]; /* as in wsev_url: a name, IPv4, or IPv6 without brackets */
  int ipv6;
  uint16_t port; /* explicit, or 80 (the http scheme's) */
  char *auth;    /* allocated "Basic base64(user:password)" (RFC 7617), or NULL */
} wsev_proxy_url;

/* Parse "http://[user[:password]@]host[:port][/]": the scheme in any case, the host
 * as wsev__url_parse takes it, userinfo of RFC 3986's characters with "%XX"
 * decoded (a user with ':' once decoded, or a control byte, is refused, as RFC 7617
 * says), nothing after the host but an optional '/'. Returns 0 (free with
 * wsev__proxy_url_free), WSEV_EBADURL or UV_ENOMEM; on error nothing to free. */
int wsev__proxy_url_parse(const char *url, wsev_proxy_url *out);
void wsev__proxy_url_free(wsev_proxy_url *p);

#endif
