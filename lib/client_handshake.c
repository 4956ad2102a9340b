/* Client side of the opening handshake (RFC 6455 sections 4.1 and 4.2.2). The
 * request is built in one allocation. The response is parsed by llhttp; only the
 * few headers the client must check are kept (their values in one buffer, reused
 * per header), and the response is judged once its head is complete: llhttp stops
 * there (on_headers_complete returns 2), so neither the frames after a 101 nor the
 * body of a refusal are ever parsed as HTTP. */
#include "client_handshake.h"
#include "alloc.h"
#include "base64.h"
#include "handshake.h"
#include "http_tokens.h"

#include <llhttp.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <wsev.h>

/* ---- options and the request ---------------------------------------------------- */

/* A header value: no control characters but tab. (obs-text, bytes >= 0x80, is
 * allowed by RFC 7230 and left to the application.) */
static int is_value_byte(unsigned char c) { return c == '\t' || (c >= 0x20 && c != 0x7F); }

/* Headers the request sets itself, and those that would make the server expect a
 * body and read our first frames as one. */
static const char *const reserved[] = {
    "host",
    "upgrade",
    "connection",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
    "content-length",
    "transfer-encoding",
};

static int is_reserved(const char *name, size_t len) {
  for (size_t i = 0; i < sizeof reserved / sizeof *reserved; i++)
    if (strlen(reserved[i]) == len && strncasecmp(name, reserved[i], len) == 0) return 1;
  return 0;
}

static int check_extra_headers(const char *p) {
  while (*p) {
    const char *name = p;
    while (wsev__http_is_tchar((unsigned char)*p))
      p++;
    if (p == name || *p != ':' || is_reserved(name, (size_t)(p - name))) return UV_EINVAL;
    for (p++; *p && *p != '\r' && *p != '\n'; p++)
      if (!is_value_byte((unsigned char)*p)) return UV_EINVAL;
    if (p[0] != '\r' || p[1] != '\n') return UV_EINVAL;
    p += 2;
  }
  return 0;
}

int wsev__client_options_check(const char *const *protocols, const char *extra_headers) {
  for (size_t i = 0; protocols && protocols[i]; i++) {
    if (!wsev__http_is_token(protocols[i], strlen(protocols[i]))) return UV_EINVAL;
    /* RFC 6455 section 4.1: the offered subprotocols "MUST all be unique". */
    for (size_t j = 0; j < i; j++)
      if (strcmp(protocols[i], protocols[j]) == 0) return UV_EINVAL;
  }
  return extra_headers ? check_extra_headers(extra_headers) : 0;
}

int wsev__client_origin_check(const char *origin) {
  for (; origin && *origin; origin++)
    if (!is_value_byte((unsigned char)*origin)) return UV_EINVAL;
  return 0;
}

typedef struct {
  char *buf; /* NULL: only count */
  size_t len;
} builder;

static void put(builder *b, const char *s) {
  size_t n = strlen(s);
  if (b->buf) memcpy(b->buf + b->len, s, n);
  b->len += n;
}

static void write_request(builder *b, const wsev_url *url, const char *key, const char *origin,
                          const char *const *protocols, const char *extra_headers,
                          const char *extensions) {
  put(b, "GET ");
  put(b, url->resource);
  put(b, " HTTP/1.1\r\nHost: ");
  put(b, url->host_header);
  put(b, "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ");
  put(b, key);
  put(b, "\r\nSec-WebSocket-Version: 13\r\n");
  if (origin) {
    put(b, "Origin: ");
    put(b, origin);
    put(b, "\r\n");
  }
  if (protocols && protocols[0]) {
    put(b, "Sec-WebSocket-Protocol: ");
    for (size_t i = 0; protocols[i]; i++) {
      if (i) put(b, ", ");
      put(b, protocols[i]);
    }
    put(b, "\r\n");
  }
  if (extensions) {
    put(b, "Sec-WebSocket-Extensions: ");
    put(b, extensions);
    put(b, "\r\n");
  }
  if (extra_headers) put(b, extra_headers);
  put(b, "\r\n");
}

int wsev__client_request(const wsev_url *url, const uint8_t key16[16], const char *origin,
                         const char *const *protocols, const char *extra_headers,
                         const char *extensions, char **out, size_t *len,
                         char expected_accept[29]) {
  char key[25];
  *out = NULL;
  *len = 0;
  if (wsev__client_options_check(protocols, extra_headers) || wsev__client_origin_check(origin))
    return UV_EINVAL;
  /* Only fails for a too small buffer or a broken crypto backend. */
  if (wsev__base64_encode(key16, 16, key, sizeof key) != 24 ||
      wsev__hs_accept_key(key, 24, expected_accept) != 0)
    return UV_EINVAL;

  builder b = {NULL, 0};
  write_request(&b, url, key, origin, protocols, extra_headers, extensions);
  b.buf = wsev__malloc(b.len + 1);
  if (!b.buf) return UV_ENOMEM;
  size_t want = b.len;
  b.len = 0;
  write_request(&b, url, key, origin, protocols, extra_headers, extensions);
  b.buf[want] = 0;
  *out = b.buf;
  *len = want;
  return 0;
}

/* ---- the response ---------------------------------------------------------------- */

/* The headers the client checks; all others are skipped. */
enum { H_OTHER, H_UPGRADE, H_CONNECTION, H_ACCEPT, H_PROTOCOL, H_EXTENSIONS };

struct wsev_client_hs {
  llhttp_t parser;
  size_t max_header;
  size_t seen; /* bytes of the head consumed before this call */
  int result;  /* sticky once not WSEV_CHS_MORE */
  int nomem;
  int status;
  char accept[29];
  char *offered; /* the offered subprotocols, each NUL-terminated */
  size_t offered_len;
  const char *selected;    /* into offered */
  wsev_pmd_config deflate; /* what we offered (mode off: nothing) */
  wsev_pmd_agreed agreed;  /* what the server answered */
  char *extensions;        /* every Sec-WebSocket-Extensions line, joined with "," */

  /* The header being read. Its name is kept lowercase up to 31 bytes, which is
   * more than any name of interest; longer ones are marked with name_len 32. */
  char name[32];
  size_t name_len;
  int kind;
  char *value;
  size_t value_len, value_cap;

  /* What the head said. */
  unsigned upgrades, accepts, protocols;
  int upgrade_bad, connection_upgrade, accept_ok, protocol_bad;
  char reason[81]; /* the reason phrase, shortened, unprintable bytes as '?' */
  size_t reason_len;
  char error[WSEV_CHS_ERROR_MAX];
};

static int on_status(llhttp_t *p, const char *at, size_t len) {
  wsev_client_hs *hs = p->data;
  for (size_t i = 0; i < len && hs->reason_len < sizeof hs->reason - 1; i++) {
    unsigned char c = (unsigned char)at[i];
    hs->reason[hs->reason_len++] = c >= 0x20 && c < 0x7F ? (char)c : '?';
  }
  hs->reason[hs->reason_len] = 0;
  return 0;
}

static int on_status_complete(llhttp_t *p) {
  wsev_client_hs *hs = p->data;
  hs->status = p->status_code;
  return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len) {
  wsev_client_hs *hs = p->data;
  for (size_t i = 0; i < len && hs->name_len < sizeof hs->name; i++) {
    unsigned char c = (unsigned char)at[i];
    if (hs->name_len < sizeof hs->name - 1)
      hs->name[hs->name_len] = (char)(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
    hs->name_len++;
  }
  return 0;
}

static int on_header_field_complete(llhttp_t *p) {
  wsev_client_hs *hs = p->data;
  static const struct {
    const char *name;
    int kind;
  } known[] = {
      {"upgrade", H_UPGRADE},
      {"connection", H_CONNECTION},
      {"sec-websocket-accept", H_ACCEPT},
      {"sec-websocket-protocol", H_PROTOCOL},
      {"sec-websocket-extensions", H_EXTENSIONS},
  };
  hs->kind = H_OTHER;
  if (hs->name_len < sizeof hs->name) {
    hs->name[hs->name_len] = 0;
    for (size_t i = 0; i < sizeof known / sizeof *known; i++)
      if (strcmp(hs->name, known[i].name) == 0) hs->kind = known[i].kind;
  }
  hs->name_len = 0;
  hs->value_len = 0;
  return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len) {
  wsev_client_hs *hs = p->data;
  if (hs->kind == H_OTHER) return 0;
  /* A value longer than the whole head may be is cut short: the response is then
   * rejected as too large before the value is looked at. */
  if (hs->value_len + len > hs->max_header + 1) len = hs->max_header + 1 - hs->value_len;
  if (hs->value_len + len + 1 > hs->value_cap) {
    size_t cap = hs->value_cap ? hs->value_cap : 64;
    while (cap < hs->value_len + len + 1)
      cap *= 2;
    char *grown = wsev__realloc(hs->value, cap);
    if (!grown) {
      hs->nomem = 1;
      return -1;
    }
    hs->value = grown;
    hs->value_cap = cap;
  }
  memcpy(hs->value + hs->value_len, at, len);
  hs->value_len += len;
  return 0;
}

static int on_header_value_complete(llhttp_t *p) {
  wsev_client_hs *hs = p->data;
  /* llhttp drops leading blanks; drop trailing ones. */
  size_t n = hs->value_len;
  while (n && (hs->value[n - 1] == ' ' || hs->value[n - 1] == '\t'))
    n--;
  const char *v = n ? hs->value : "";
  switch (hs->kind) {
  case H_UPGRADE:
    hs->upgrades++;
    if (n != 9 || strncasecmp(v, "websocket", 9) != 0) hs->upgrade_bad = 1;
    break;
  case H_CONNECTION:
    if (wsev__http_list_has(v, n, "upgrade")) hs->connection_upgrade = 1;
    break;
  case H_ACCEPT:
    hs->accepts++;
    hs->accept_ok = n == 28 && memcmp(v, hs->accept, 28) == 0;
    break;
  case H_PROTOCOL: {
    /* The server selects one of the offered subprotocols, spelled exactly so. */
    const char *o = hs->offered;
    hs->protocols++;
    hs->selected = NULL;
    for (; o && o < hs->offered + hs->offered_len; o += strlen(o) + 1)
      if (strlen(o) == n && memcmp(o, v, n) == 0) hs->selected = o;
    if (!hs->selected) hs->protocol_bad = 1;
    break;
  }
  case H_EXTENSIONS:
    if (wsev__http_list_append(&hs->extensions, v, n)) {
      hs->nomem = 1;
      return -1;
    }
    break;
  }
  hs->kind = H_OTHER;
  hs->value_len = 0;
  return 0;
}

/* Returning 2 makes llhttp stop after the head with HPE_PAUSED_UPGRADE, whatever
 * the status: what follows is frames (after a 101) or a body we do not want. */
static int on_headers_complete(llhttp_t *p) {
  (void)p;
  return 2;
}

static const llhttp_settings_t settings = {
    .on_status = on_status,
    .on_status_complete = on_status_complete,
    .on_header_field = on_header_field,
    .on_header_field_complete = on_header_field_complete,
    .on_header_value = on_header_value,
    .on_header_value_complete = on_header_value_complete,
    .on_headers_complete = on_headers_complete,
};

wsev_client_hs *wsev__client_hs_new(const char *expected_accept, const char *const *protocols,
                                    const wsev_pmd_config *deflate, size_t max_header) {
  wsev_client_hs *hs = wsev__calloc(1, sizeof *hs);
  if (!hs) return NULL;
  size_t n = 0;
  for (size_t i = 0; protocols && protocols[i]; i++)
    n += strlen(protocols[i]) + 1;
  if (n) {
    hs->offered = wsev__malloc(n);
    if (!hs->offered) {
      wsev__free(hs);
      return NULL;
    }
    for (size_t i = 0; protocols[i]; i++) {
      size_t k = strlen(protocols[i]) + 1;
      memcpy(hs->offered + hs->offered_len, protocols[i], k);
      hs->offered_len += k;
    }
  }
  snprintf(hs->accept, sizeof hs->accept, "%s", expected_accept);
  hs->deflate.mode = WSEV_PMD_OFF;
  if (deflate) hs->deflate = *deflate;
  llhttp_init(&hs->parser, HTTP_RESPONSE, &settings);
  hs->parser.data = hs;
  hs->max_header = max_header;
  hs->result = WSEV_CHS_MORE;
  return hs;
}

void wsev__client_hs_free(wsev_client_hs *hs) {
  if (!hs) return;
  wsev__free(hs->offered);
  wsev__free(hs->value);
  wsev__free(hs->extensions);
  wsev__free(hs);
}

static int fail(wsev_client_hs *hs, const char *why) {
  snprintf(hs->error, sizeof hs->error, "%s", why);
  hs->selected = NULL;
  return WSEV_EHANDSHAKE;
}

/* The verdict on a complete head (RFC 6455 section 4.1, the client's checks). */
static int judge(wsev_client_hs *hs) {
  const llhttp_t *p = &hs->parser;
  hs->status = p->status_code;
  if (hs->seen > hs->max_header) return fail(hs, "response header too large");
  /* llhttp 8.1 reads "HTTP/1.1  200 OK" (two spaces) as status 0. */
  if (hs->status < 100 || hs->status > 999) return fail(hs, "malformed HTTP response");
  if (hs->status != 101) {
    snprintf(hs->error, sizeof hs->error, "HTTP %d%s%s", hs->status, hs->reason_len ? " " : "",
             hs->reason);
    hs->selected = NULL;
    return WSEV_EHANDSHAKE;
  }
  if (p->http_major != 1 || p->http_minor < 1) return fail(hs, "101 response not HTTP/1.1");
  if (!hs->upgrades || hs->upgrade_bad) return fail(hs, "no Upgrade: websocket");
  if (!hs->connection_upgrade) return fail(hs, "no Connection: Upgrade");
  if (hs->accepts != 1 || !hs->accept_ok) return fail(hs, "bad Sec-WebSocket-Accept");
  char why[WSEV_CHS_ERROR_MAX];
  if (wsev__pmd_check_response(hs->extensions, &hs->deflate, &hs->agreed, why, sizeof why) != 0)
    return fail(hs, why);
  if (hs->protocols > 1) return fail(hs, "more than one Sec-WebSocket-Protocol");
  if (hs->protocol_bad) return fail(hs, "unrequested subprotocol");
  return WSEV_CHS_DONE;
}

int wsev__client_hs_feed(wsev_client_hs *hs, const char *data, size_t len, size_t *used) {
  *used = 0;
  if (hs->result != WSEV_CHS_MORE || len == 0) return hs->result;
  llhttp_errno_t err = llhttp_execute(&hs->parser, data, len);
  if (err == HPE_PAUSED_UPGRADE) {
    size_t n = (size_t)(llhttp_get_error_pos(&hs->parser) - data);
    hs->seen += n;
    hs->result = judge(hs);
    if (hs->result == WSEV_CHS_DONE) *used = n;
  } else if (err != HPE_OK) {
    /* Over the limit before the byte where parsing failed: too large, whatever the
     * split of the response into calls; otherwise malformed. */
    const char *pos = llhttp_get_error_pos(&hs->parser);
    size_t upto = pos && pos >= data && pos <= data + len ? (size_t)(pos - data) : len;
    if (hs->nomem)
      hs->result = UV_ENOMEM;
    else if (hs->seen + upto > hs->max_header)
      hs->result = fail(hs, "response header too large");
    else
      hs->result = fail(hs, "malformed HTTP response");
  } else {
    hs->seen += len;
    *used = len;
    if (hs->seen > hs->max_header) hs->result = fail(hs, "response header too large");
  }
  if (hs->result != WSEV_CHS_MORE && hs->result != WSEV_CHS_DONE) *used = 0;
  return hs->result;
}

const char *wsev__client_hs_error(const wsev_client_hs *hs) { return hs->error; }

const char *wsev__client_hs_protocol(const wsev_client_hs *hs) {
  return hs->result == WSEV_CHS_DONE ? hs->selected : NULL;
}

int wsev__client_hs_status(const wsev_client_hs *hs) { return hs->status; }

const wsev_pmd_agreed *wsev__client_hs_deflate(const wsev_client_hs *hs) { return &hs->agreed; }
