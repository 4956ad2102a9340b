/* HTTP CONNECT tunnels through a proxy (RFC 9110 section 9.3.6) for connections we
 * open: the request we send, and a strict small parser of the proxy's answer. Pure
 * code, no I/O (client.c drives it). */
#ifndef WSEV_HTTP_PROXY_H
#define WSEV_HTTP_PROXY_H

#include <stddef.h>
#include <stdint.h>

/* The answer's head is bounded by this unless the context's max_header_size says
 * otherwise. */
#define WSEV_PROXY_ANSWER_MAX 16384

/* "CONNECT host:port HTTP/1.1", its Host header (an IPv6 host bracketed) and, with
 * `auth` ("Basic ..."), Proxy-Authorization; allocated into *out (NUL-terminated,
 * *len bytes). 0 or UV_ENOMEM. */
int wsev__proxy_request(const char *host, int ipv6, unsigned port, const char *auth, char **out,
                        size_t *len);

#define WSEV_PROXY_MORE 0 /* the answer's head is not complete yet */
#define WSEV_PROXY_OPEN 1 /* a 2xx: the tunnel is open */

typedef struct {
  size_t limit; /* bytes of answer heads (interim 1xx ones included) at most */
  size_t seen;
  int status; /* the status code of the answer being read, once known */
  uint8_t state;
  uint8_t cr; /* the last byte was a CR (only LF may follow) */
  uint16_t line_len;
  char line[96]; /* the start of the status line: the reason shows it */
  char reason[120];
} wsev_proxy_answer;

void wsev__proxy_answer_init(wsev_proxy_answer *a, size_t limit);
/* Feed bytes of the proxy's answer:
 * - WSEV_PROXY_MORE: all n consumed; more are needed;
 * - WSEV_PROXY_OPEN: a 2xx answer's head ended after *used bytes: what follows is the
 *   server's (any Content-Length of a 2xx is ignored, as RFC 9110 says);
 * - WSEV_EPROXYAUTH: a 407 (or a 401, which some proxies send for wrong credentials);
 *   WSEV_EPROXY: any other final status (decided at the end of
 *   the status line), a malformed answer or one over the limit (reason tells).
 * 1xx answers other than 101 are skipped. After a result other than MORE, feeding
 * again returns it again. */
int wsev__proxy_answer_feed(wsev_proxy_answer *a, const uint8_t *p, size_t n, size_t *used);
/* Why it failed: printable ASCII, at most 119 bytes. */
const char *wsev__proxy_answer_reason(const wsev_proxy_answer *a);

#endif
