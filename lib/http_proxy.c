/* The CONNECT request and the proxy's answer. The answer is read byte by byte by a
 * small state machine rather than llhttp: all that matters is the status line and
 * where the head ends (a 2xx's bytes after it are the server's), and HTTP/1.1's
 * grammar for that is short enough to be checked strictly here (RFC 9112 sections 2.2,
 * 4 and 5: CRLF or a bare LF ends a line, no obsolete line folding, no control bytes). */
#include "http_proxy.h"

#include <stdio.h>
#include <string.h>
#include <wsev.h>

#include "alloc.h"

int wsev__proxy_request(const char *host, int ipv6, unsigned port, const char *auth, char **out,
                        size_t *len) {
  /* Twice "[host]:port", the fixed text and the credentials. */
  size_t cap = 2 * (strlen(host) + 8) + (auth ? strlen(auth) : 0) + 80;
  char *buf = wsev__malloc(cap);
  *out = NULL;
  *len = 0;
  if (!buf) return UV_ENOMEM;
  const char *open = ipv6 ? "[" : "", *close = ipv6 ? "]" : "";
  int n = snprintf(buf, cap, "CONNECT %s%s%s:%u HTTP/1.1\r\nHost: %s%s%s:%u\r\n%s%s%s\r\n", open,
                   host, close, port, open, host, close, port, auth ? "Proxy-Authorization: " : "",
                   auth ? auth : "", auth ? "\r\n" : "");
  *out = buf;
  *len = (size_t)n;
  return 0;
}

enum {
  ST_STATUS,     /* in the status line */
  ST_LINE_START, /* at the start of a header line (or of the empty line) */
  ST_NAME,
  ST_VALUE,
  ST_OPEN, /* results: kept for a later call */
  ST_AUTH,
  ST_REFUSED,
};

void wsev__proxy_answer_init(wsev_proxy_answer *a, size_t limit) {
  memset(a, 0, sizeof *a);
  a->limit = limit ? limit : WSEV_PROXY_ANSWER_MAX;
}

const char *wsev__proxy_answer_reason(const wsev_proxy_answer *a) { return a->reason; }

static int result(const wsev_proxy_answer *a) {
  switch (a->state) {
  case ST_OPEN: return WSEV_PROXY_OPEN;
  case ST_AUTH: return WSEV_EPROXYAUTH;
  case ST_REFUSED: return WSEV_EPROXY;
  default: return WSEV_PROXY_MORE;
  }
}

static void malformed(wsev_proxy_answer *a, const char *what) {
  a->state = ST_REFUSED;
  snprintf(a->reason, sizeof a->reason, "malformed answer from the proxy: %s", what);
}

/* RFC 9110 token characters (header names). */
static int is_tchar(int c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* Control bytes other than HTAB may not appear in a line. */
static int is_ctl(int c) { return (c < 0x20 && c != '\t') || c == 0x7F; }

/* The status line is complete: a final status decides now, an interim one (1xx but
 * 101, which cannot answer CONNECT) is skipped with its headers. */
static void status_line(wsev_proxy_answer *a) {
  const char *l = a->line;
  size_t n = a->line_len;
  if (n < 12 || memcmp(l, "HTTP/1.", 7) != 0 || l[7] < '0' || l[7] > '9' || l[8] != ' ' ||
      l[9] < '1' || l[9] > '9' || l[10] < '0' || l[10] > '9' || l[11] < '0' || l[11] > '9' ||
      (n > 12 && l[12] != ' ')) {
    malformed(a, "not an HTTP/1.x status line");
    return;
  }
  a->status = (l[9] - '0') * 100 + (l[10] - '0') * 10 + (l[11] - '0');
  if (a->status / 100 == 2 || (a->status / 100 == 1 && a->status != 101)) {
    a->state = ST_LINE_START; /* its headers, then the tunnel or the next answer */
    return;
  }
  /* "403 Forbidden", printable (the reason phrase may hold HTAB or obs-text). */
  char shown[sizeof a->line];
  size_t k = 0;
  for (size_t i = 9; i < n && k + 1 < sizeof shown; i++)
    shown[k++] = l[i] >= 0x20 && l[i] < 0x7F ? l[i] : '?';
  shown[k] = 0;
  /* 401 too: tinyproxy, for one, answers wrong credentials with it (none get 407). */
  if (a->status == 407 || a->status == 401) {
    a->state = ST_AUTH;
    snprintf(a->reason, sizeof a->reason, "proxy authentication required (%.80s)", shown);
  } else {
    a->state = ST_REFUSED;
    snprintf(a->reason, sizeof a->reason, "proxy refused the tunnel: %.80s", shown);
  }
}

/* A line ended (LF, after an optional CR). */
static void line_end(wsev_proxy_answer *a) {
  switch (a->state) {
  case ST_STATUS: status_line(a); break;
  case ST_LINE_START: /* the empty line: the head is over */
    if (a->status / 100 == 2) {
      a->state = ST_OPEN;
    } else {
      a->state = ST_STATUS; /* an interim answer: the real one follows */
      a->line_len = 0;
    }
    break;
  case ST_NAME: malformed(a, "header line without a colon"); break;
  default: a->state = ST_LINE_START; break; /* ST_VALUE */
  }
}

static void byte(wsev_proxy_answer *a, int c) {
  if (a->cr) {
    a->cr = 0;
    if (c == '\n')
      line_end(a);
    else
      malformed(a, "CR not followed by LF");
    return;
  }
  if (c == '\n') {
    line_end(a);
    return;
  }
  if (c == '\r') {
    a->cr = 1;
    return;
  }
  switch (a->state) {
  case ST_STATUS:
    if (is_ctl(c)) {
      malformed(a, "control byte in the status line");
      return;
    }
    if (a->line_len < sizeof a->line - 1) a->line[a->line_len++] = (char)c;
    break;
  case ST_LINE_START:
    if (c == ' ' || c == '\t')
      malformed(a, "folded header line");
    else if (!is_tchar(c))
      malformed(a, "bad header name");
    else
      a->state = ST_NAME;
    break;
  case ST_NAME:
    if (c == ':')
      a->state = ST_VALUE;
    else if (!is_tchar(c))
      malformed(a, "bad header name");
    break;
  default: /* ST_VALUE */
    if (is_ctl(c)) malformed(a, "control byte in a header value");
    break;
  }
}

int wsev__proxy_answer_feed(wsev_proxy_answer *a, const uint8_t *p, size_t n, size_t *used) {
  size_t i = 0;
  int r = result(a);
  while (r == WSEV_PROXY_MORE && i < n) {
    if (++a->seen > a->limit) {
      snprintf(a->reason, sizeof a->reason,
               "malformed answer from the proxy: its head is over %zu bytes", a->limit);
      a->state = ST_REFUSED;
      break;
    }
    byte(a, p[i++]);
    r = result(a);
  }
  if (a->state == ST_REFUSED) r = WSEV_EPROXY;
  *used = i;
  return r;
}
