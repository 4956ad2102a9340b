/* Server side of the opening handshake (RFC 6455 section 4.2.1): llhttp parses the
 * request; its callbacks copy the few headers we need into bounded buffers (field
 * names and values may arrive in pieces), and the request is judged once the header
 * block is complete. */
#include "handshake.h"
#include "alloc.h"
#include "base64.h"
#include "http_tokens.h"
#include "tls.h"

#include <ctype.h>
#include <llhttp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
struct wsev_hs {
  llhttp_t parser;
  size_t max_header;
  size_t seen; /* bytes of the header block consumed so far */
  int result;  /* sticky once not WSEV_HS_MORE */
  /* Every header as "name\0value\0", the name lowercased, the value trimmed. Names
   * and values arrive in pieces and are appended as they come. */
  char *headers;
  size_t headers_len, headers_cap;
  size_t piece_start; /* where the name or value being received starts */
  char *path;
  size_t path_len;
  char *protocols; /* the offered subprotocols, each NUL-terminated */
  size_t protocols_len;
  size_t protocol_count;
  int bad_protocol;
  char *extensions; /* every Sec-WebSocket-Extensions line, joined with "," */
  char key[25];     /* base64 of 16 bytes: 24 characters */
};

/* 1 if the comma-separated list `v` holds `token` (case-insensitive). */
static int has_token(const char *v, const char *token) {
  return wsev__http_list_has(v, strlen(v), token);
}

static int append(wsev_hs *hs, const char *at, size_t len) {
  /* Bounded by the header limit (plus room for the separators). */
  if (hs->headers_len + len + 1 > hs->max_header + 1024) return -1;
  if (hs->headers_len + len + 1 > hs->headers_cap) {
    size_t cap = hs->headers_cap ? hs->headers_cap * 2 : 512;
    while (cap < hs->headers_len + len + 1)
      cap *= 2;
    char *grown = wsev__realloc(hs->headers, cap);
    if (!grown) return -1;
    hs->headers = grown;
    hs->headers_cap = cap;
  }
  memcpy(hs->headers + hs->headers_len, at, len);
  hs->headers_len += len;
  return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t len) {
  wsev_hs *hs = p->data;
  if (hs->path_len + len > hs->max_header) return -1;
  char *grown = wsev__realloc(hs->path, hs->path_len + len + 1);
  if (!grown) return -1;
  memcpy(grown + hs->path_len, at, len);
  hs->path = grown;
  hs->path_len += len;
  hs->path[hs->path_len] = 0;
  return 0;
}

static int on_piece(llhttp_t *p, const char *at, size_t len) { return append(p->data, at, len); }

static int on_header_field_complete(llhttp_t *p) {
  wsev_hs *hs = p->data;
  for (size_t i = hs->piece_start; i < hs->headers_len; i++)
    hs->headers[i] = (char)tolower((unsigned char)hs->headers[i]);
  if (append(hs, "", 1)) return -1; /* the NUL */
  hs->piece_start = hs->headers_len;
  return 0;
}

static int on_header_value_complete(llhttp_t *p) {
  wsev_hs *hs = p->data;
  /* llhttp drops leading blanks; drop trailing ones. */
  while (hs->headers_len > hs->piece_start &&
         (hs->headers[hs->headers_len - 1] == ' ' || hs->headers[hs->headers_len - 1] == '\t'))
    hs->headers_len--;
  if (append(hs, "", 1)) return -1;
  hs->piece_start = hs->headers_len;
  return 0;
}

/* Returning 2 makes llhttp stop after the header block with HPE_PAUSED_UPGRADE, for
 * every request: what follows is frames (or the next request), never parsed here. */
static int on_headers_complete(llhttp_t *p) {
  (void)p;
  return 2;
}

static const llhttp_settings_t settings = {
    .on_url = on_url,
    .on_header_field = on_piece,
    .on_header_field_complete = on_header_field_complete,
    .on_header_value = on_piece,
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
  wsev__free(hs->headers);
  wsev__free(hs->protocols);
  wsev__free(hs->extensions);
  wsev__free(hs);
}

const char *wsev__hs_header_at(const wsev_hs *hs, size_t *pos, const char **value) {
  if (*pos >= hs->headers_len) return NULL;
  const char *name = hs->headers + *pos;
  *value = name + strlen(name) + 1;
  *pos = (size_t)(*value - hs->headers) + strlen(*value) + 1;
  return name;
}

const char *wsev__hs_header(const wsev_hs *hs, const char *name) {
  size_t pos = 0;
  const char *n, *v;
  while ((n = wsev__hs_header_at(hs, &pos, &v)))
    if (strcasecmp(n, name) == 0) return v;
  return NULL;
}

/* Returns 1 to stop: out of memory, or not a token (hs->bad_protocol). */
static int add_protocol(wsev_hs *hs, const char *t, size_t len) {
  if (!wsev__http_is_token(t, len)) {
    hs->bad_protocol = 1;
    return 1;
  }
  char *grown = wsev__realloc(hs->protocols, hs->protocols_len + len + 1);
  if (!grown) return 1;
  memcpy(grown + hs->protocols_len, t, len);
  grown[hs->protocols_len + len] = 0;
  hs->protocols = grown;
  hs->protocols_len += len + 1;
  hs->protocol_count++;
  return 0;
}

/* The verdict on a complete header block. */
static int judge(wsev_hs *hs) {
  const llhttp_t *p = &hs->parser;
  unsigned hosts = 0, keys = 0, versions = 0;
  int upgrade = 0, websocket = 0, connection_upgrade = 0, version_13 = 0, bad_key = 0;
  size_t pos = 0;
  const char *n, *v;
  while ((n = wsev__hs_header_at(hs, &pos, &v))) {
    if (strcmp(n, "host") == 0) {
      hosts++;
    } else if (strcmp(n, "upgrade") == 0) {
      upgrade = 1;
      websocket |= has_token(v, "websocket");
    } else if (strcmp(n, "connection") == 0) {
      connection_upgrade |= has_token(v, "upgrade");
    } else if (strcmp(n, "sec-websocket-key") == 0) {
      uint8_t raw[16];
      keys++;
      if (strlen(v) != 24 || wsev__base64_decode(v, 24, raw, sizeof raw) != 16)
        bad_key = 1;
      else
        memcpy(hs->key, v, 25);
    } else if (strcmp(n, "sec-websocket-version") == 0) {
      versions++;
      version_13 = strcmp(v, "13") == 0;
    } else if (strcmp(n, "sec-websocket-protocol") == 0) {
      size_t at = 0, len;
      const char *t;
      while (wsev__http_list_next(v, strlen(v), &at, &t, &len))
        if (add_protocol(hs, t, len)) return hs->bad_protocol ? 400 : 500;
    } else if (strcmp(n, "sec-websocket-extensions") == 0) {
      if (wsev__http_list_append(&hs->extensions, v, strlen(v))) return 500;
    }
  }
  /* Not a WebSocket request at all: plain HTTP, answered by the caller. */
  if (!upgrade) return WSEV_HS_HTTP;
  if (!websocket || p->method != HTTP_GET || p->http_major != 1 || p->http_minor < 1 ||
      hosts != 1 || !connection_upgrade || keys != 1 || bad_key || !hs->path)
    return 400;
  if (versions != 1 || !version_13) return 426;
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
    /* Over the limit before the byte where parsing failed: 431, whatever the
     * split of the request into calls; otherwise malformed HTTP. */
    const char *pos = llhttp_get_error_pos(&hs->parser);
    size_t upto = pos && pos >= data && pos <= data + len ? (size_t)(pos - data) : len;
    hs->result = hs->seen + upto > hs->max_header ? 431 : 400;
  } else {
    hs->seen += len;
    *consumed = len;
    if (hs->seen > hs->max_header) hs->result = 431;
  }
  return hs->result;
}

const char *wsev__hs_method(const wsev_hs *hs) {
  return llhttp_method_name((llhttp_method_t)hs->parser.method);
}

int wsev__hs_keep_alive(const wsev_hs *hs) { return llhttp_should_keep_alive(&hs->parser); }

int wsev__hs_has_body(const wsev_hs *hs) {
  return (hs->parser.flags & F_CHUNKED) ||
         ((hs->parser.flags & F_CONTENT_LENGTH) && hs->parser.content_length > 0);
}

size_t wsev__hs_protocol_count(const wsev_hs *hs) { return hs->protocol_count; }

const char *wsev__hs_protocol(const wsev_hs *hs, size_t i) {
  const char *p = hs->protocols;
  if (i >= hs->protocol_count) return NULL;
  while (i--)
    p += strlen(p) + 1;
  return p;
}

int wsev__hs_accept_key(const char *key, size_t key_len, char out[29]) {
  uint8_t keyed[64 + sizeof WS_GUID], digest[20];
  if (key_len > 64) return -1;
  memcpy(keyed, key, key_len);
  memcpy(keyed + key_len, WS_GUID, sizeof WS_GUID - 1);
  if (wsev__sha1(keyed, key_len + sizeof WS_GUID - 1, digest) != 0 ||
      wsev__base64_encode(digest, sizeof digest, out, 29) != 28)
    return -1;
  return 0;
}

const char *wsev__hs_extensions(const wsev_hs *hs) { return hs->extensions; }

size_t wsev__hs_response_101(const wsev_hs *hs, const char *protocol, const char *extensions,
                             char *buf, size_t cap) {
  char accept[29];
  if (hs->result != WSEV_HS_DONE || wsev__hs_accept_key(hs->key, 24, accept) != 0) return 0;
  int n = snprintf(buf, cap,
                   "HTTP/1.1 101 Switching Protocols\r\n"
                   "Upgrade: websocket\r\n"
                   "Connection: Upgrade\r\n"
                   "Sec-WebSocket-Accept: %s\r\n"
                   "%s%s%s%s%s%s\r\n",
                   accept, protocol ? "Sec-WebSocket-Protocol: " : "", protocol ? protocol : "",
                   protocol ? "\r\n" : "", extensions ? "Sec-WebSocket-Extensions: " : "",
                   extensions ? extensions : "", extensions ? "\r\n" : "");
  return (n > 0 && (size_t)n < cap) ? (size_t)n : 0;
}

const char *wsev__hs_status_text(int status) {
  switch (status) {
  case 200: return "OK";
  case 201: return "Created";
  case 204: return "No Content";
  case 301: return "Moved Permanently";
  case 302: return "Found";
  case 304: return "Not Modified";
  case 400: return "Bad Request";
  case 401: return "Unauthorized";
  case 405: return "Method Not Allowed";
  case 408: return "Request Timeout";
  case 413: return "Content Too Large";
  case 429: return "Too Many Requests";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 426: return "Upgrade Required";
  case 431: return "Request Header Fields Too Large";
  case 500: return "Internal Server Error";
  case 501: return "Not Implemented";
  case 502: return "Bad Gateway";
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
                   status, wsev__hs_status_text(status),
                   status == 426 ? "Sec-WebSocket-Version: 13\r\nUpgrade: websocket\r\n" : "");
  return (n > 0 && (size_t)n < cap) ? (size_t)n : 0;
}

const char *wsev__hs_path(const wsev_hs *hs) { return hs->path ? hs->path : ""; }
