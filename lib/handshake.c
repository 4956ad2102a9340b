/* Server side of the opening handshake (RFC 6455 section 4.2.1): llhttp parses the
 * request; its callbacks copy the few headers we need into bounded buffers (field
 * names and values may arrive in pieces), and the request is judged once the header
 * block is complete. */
#include "handshake.h"
#include "alloc.h"

#include <llhttp.h>
#include <mbedtls/base64.h>
#include <mbedtls/sha1.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define NAME_MAX_LEN 32 /* longer header names are none of ours */

enum header_id { H_OTHER, H_HOST, H_UPGRADE, H_CONNECTION, H_KEY, H_VERSION };

struct wsev_hs {
  llhttp_t parser;
  size_t max_header;
  size_t seen; /* bytes of the header block consumed so far */
  int result;  /* sticky once not WSEV_HS_MORE */
  int bad;     /* a reason for 400 was seen while parsing */
  enum header_id current;
  size_t name_len;
  size_t value_len;
  int name_too_long;
  char name[NAME_MAX_LEN];
  char *value; /* a value of one of our headers; grows, bounded by max_header */
  size_t value_cap;
  unsigned host_count, key_count, version_count;
  int upgrade_websocket, connection_upgrade, version_13;
  char key[25]; /* base64 of 16 bytes: 24 characters */
  char *path;
  size_t path_len;
};

/* 1 if the comma-separated list `v` holds `token` (case-insensitive). */
static int has_token(const char *v, size_t n, const char *token) {
  size_t tlen = strlen(token), i = 0;
  while (i < n) {
    while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
      i++;
    size_t start = i;
    while (i < n && v[i] != ',')
      i++;
    size_t end = i;
    while (end > start && (v[end - 1] == ' ' || v[end - 1] == '\t'))
      end--;
    if (end - start == tlen && strncasecmp(v + start, token, tlen) == 0) return 1;
  }
  return 0;
}

static void trim(const char **v, size_t *n) {
  while (*n && (**v == ' ' || **v == '\t'))
    (*v)++, (*n)--;
  while (*n && ((*v)[*n - 1] == ' ' || (*v)[*n - 1] == '\t'))
    (*n)--;
}

static int on_url(llhttp_t *p, const char *at, size_t len) {
  wsev_hs *hs = p->data;
  char *grown = wsev__realloc(hs->path, hs->path_len + len + 1);
  if (!grown) return -1;
  memcpy(grown + hs->path_len, at, len);
  hs->path = grown;
  hs->path_len += len;
  hs->path[hs->path_len] = 0;
  return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len) {
  wsev_hs *hs = p->data;
  if (hs->name_len + len > NAME_MAX_LEN) {
    hs->name_too_long = 1;
    return 0;
  }
  memcpy(hs->name + hs->name_len, at, len);
  hs->name_len += len;
  return 0;
}

static int on_header_field_complete(llhttp_t *p) {
  wsev_hs *hs = p->data;
  static const struct {
    const char *name;
    enum header_id id;
  } known[] = {{"host", H_HOST},
               {"upgrade", H_UPGRADE},
               {"connection", H_CONNECTION},
               {"sec-websocket-key", H_KEY},
               {"sec-websocket-version", H_VERSION}};
  hs->current = H_OTHER;
  if (!hs->name_too_long) {
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
      if (strlen(known[i].name) == hs->name_len &&
          strncasecmp(hs->name, known[i].name, hs->name_len) == 0) {
        hs->current = known[i].id;
        break;
      }
    }
  }
  hs->name_len = 0;
  hs->name_too_long = 0;
  hs->value_len = 0;
  return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len) {
  wsev_hs *hs = p->data;
  /* Host is only counted; other headers are none of ours. */
  if (hs->current == H_OTHER || hs->current == H_HOST || len == 0) return 0;
  if (hs->value_len + len > hs->value_cap) {
    size_t cap = hs->value_cap ? hs->value_cap : 128;
    while (cap < hs->value_len + len)
      cap *= 2;
    char *grown = wsev__realloc(hs->value, cap);
    if (!grown) return -1;
    hs->value = grown;
    hs->value_cap = cap;
  }
  memcpy(hs->value + hs->value_len, at, len);
  hs->value_len += len;
  return 0;
}

static int on_header_value_complete(llhttp_t *p) {
  wsev_hs *hs = p->data;
  const char *v = hs->value;
  size_t n = hs->value_len;
  trim(&v, &n);
  switch (hs->current) {
  case H_OTHER: break;
  case H_HOST: hs->host_count++; break;
  case H_UPGRADE: hs->upgrade_websocket |= has_token(v, n, "websocket"); break;
  case H_CONNECTION: hs->connection_upgrade |= has_token(v, n, "upgrade"); break;
  case H_KEY: {
    unsigned char raw[32];
    size_t raw_len = 0;
    hs->key_count++;
    if (n != 24 ||
        mbedtls_base64_decode(raw, sizeof raw, &raw_len, (const unsigned char *)v, n) != 0 ||
        raw_len != 16) {
      hs->bad = 1;
    } else {
      memcpy(hs->key, v, 24);
      hs->key[24] = 0;
    }
    break;
  }
  case H_VERSION:
    hs->version_count++;
    hs->version_13 = (n == 2 && v[0] == '1' && v[1] == '3');
    break;
  }
  hs->current = H_OTHER;
  hs->value_len = 0;
  return 0;
}

/* Returning 2 makes llhttp stop after the header block with HPE_PAUSED_UPGRADE, for
 * every request: a WebSocket upgrade has no body, and what follows is not HTTP. */
static int on_headers_complete(llhttp_t *p) {
  (void)p;
  return 2;
}

static const llhttp_settings_t settings = {
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_field_complete = on_header_field_complete,
    .on_header_value = on_header_value,
    .on_header_value_complete = on_header_value_complete,
    .on_headers_complete = on_headers_complete,
};

wsev_hs *wsev__hs_new(size_t max_header) {
  wsev_hs *hs = wsev__calloc(1, sizeof *hs);
  if (!hs) return NULL;
  llhttp_init(&hs->parser, HTTP_REQUEST, &settings);
  hs->parser.data = hs;
  hs->max_header = max_header;
  hs->result = WSEV_HS_MORE;
  return hs;
}

void wsev__hs_free(wsev_hs *hs) {
  if (!hs) return;
  wsev__free(hs->path);
  wsev__free(hs->value);
  wsev__free(hs);
}

/* The verdict on a complete header block. */
static int judge(const wsev_hs *hs) {
  const llhttp_t *p = &hs->parser;
  if (hs->bad || p->method != HTTP_GET || p->http_major != 1 || p->http_minor < 1 ||
      hs->host_count != 1 || !hs->upgrade_websocket || !hs->connection_upgrade ||
      hs->key_count != 1 || !hs->path || hs->path_len == 0)
    return 400;
  if (hs->version_count != 1 || !hs->version_13) return 426;
  return WSEV_HS_DONE;
}

int wsev__hs_feed(wsev_hs *hs, const char *data, size_t len, size_t *consumed) {
  *consumed = 0;
  if (hs->result != WSEV_HS_MORE) return hs->result;
  llhttp_errno_t err = llhttp_execute(&hs->parser, data, len);
  if (err == HPE_PAUSED_UPGRADE) {
    size_t used = (size_t)(llhttp_get_error_pos(&hs->parser) - data);
    hs->seen += used;
    *consumed = used;
    hs->result = hs->seen > hs->max_header ? 431 : judge(hs);
  } else if (err != HPE_OK) {
    hs->result = 400;
  } else {
    hs->seen += len;
    *consumed = len;
    if (hs->seen > hs->max_header) hs->result = 431;
  }
  return hs->result;
}

int wsev__hs_accept_key(const char *key, size_t key_len, char out[29]) {
  unsigned char digest[20];
  mbedtls_sha1_context sha;
  size_t olen = 0;
  int rc;
  mbedtls_sha1_init(&sha);
#if defined(MBEDTLS_VERSION_NUMBER) && MBEDTLS_VERSION_NUMBER >= 0x03000000
  rc = mbedtls_sha1_starts(&sha) ||
       mbedtls_sha1_update(&sha, (const unsigned char *)key, key_len) ||
       mbedtls_sha1_update(&sha, (const unsigned char *)WS_GUID, sizeof WS_GUID - 1) ||
       mbedtls_sha1_finish(&sha, digest);
#else
  rc = mbedtls_sha1_starts_ret(&sha) ||
       mbedtls_sha1_update_ret(&sha, (const unsigned char *)key, key_len) ||
       mbedtls_sha1_update_ret(&sha, (const unsigned char *)WS_GUID, sizeof WS_GUID - 1) ||
       mbedtls_sha1_finish_ret(&sha, digest);
#endif
  mbedtls_sha1_free(&sha);
  if (rc) return -1;
  if (mbedtls_base64_encode((unsigned char *)out, 29, &olen, digest, sizeof digest) != 0 ||
      olen != 28)
    return -1;
  out[28] = 0;
  return 0;
}

size_t wsev__hs_response_101(const wsev_hs *hs, char *buf, size_t cap) {
  char accept[29];
  if (hs->result != WSEV_HS_DONE || wsev__hs_accept_key(hs->key, 24, accept) != 0) return 0;
  int n = snprintf(buf, cap,
                   "HTTP/1.1 101 Switching Protocols\r\n"
                   "Upgrade: websocket\r\n"
                   "Connection: Upgrade\r\n"
                   "Sec-WebSocket-Accept: %s\r\n\r\n",
                   accept);
  return (n > 0 && (size_t)n < cap) ? (size_t)n : 0;
}

static const char *status_text(int status) {
  switch (status) {
  case 400: return "Bad Request";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 426: return "Upgrade Required";
  case 431: return "Request Header Fields Too Large";
  case 500: return "Internal Server Error";
  case 503: return "Service Unavailable";
  default: return "Error";
  }
}

size_t wsev__hs_response_error(int status, char *buf, size_t cap) {
  int n = snprintf(buf, cap,
                   "HTTP/1.1 %d %s\r\n"
                   "%s"
                   "Connection: close\r\n"
                   "Content-Length: 0\r\n\r\n",
                   status, status_text(status),
                   status == 426 ? "Sec-WebSocket-Version: 13\r\nUpgrade: websocket\r\n" : "");
  return (n > 0 && (size_t)n < cap) ? (size_t)n : 0;
}

const char *wsev__hs_path(const wsev_hs *hs) { return hs->path ? hs->path : ""; }
