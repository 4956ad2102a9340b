/* What the TLS backends share (see tls_shared.h). */
#include "tls_shared.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

#include "alloc.h"

/* Clients: how many servers' sessions a session cache remembers. */
#define CLIENT_SESSIONS 8

void wsev__tls_zeroize(void *p, size_t len) {
  volatile uint8_t *v = p;
  while (len--)
    *v++ = 0;
}

int wsev__rng_pool_bytes(wsev_rng_pool *pool, void *buf, size_t len, wsev_rng_fill fill,
                         void *source) {
  if (len > sizeof pool->bytes / 4) return fill(source, buf, len);
  if (pool->left < len) {
    if (fill(source, pool->bytes, sizeof pool->bytes) != 0) return -1;
    pool->left = sizeof pool->bytes;
  }
  uint8_t *from = pool->bytes + sizeof pool->bytes - pool->left;
  memcpy(buf, from, len);
  wsev__tls_zeroize(from, len); /* handed out once only */
  pool->left -= len;
  return 0;
}

int wsev__tls_out_append(wsev_tls_out *out, const void *data, size_t len) {
  if (len > out->cap - out->len) {
    size_t cap = out->cap ? out->cap : 16 * 1024 + 512; /* a full record and its overhead */
    while (cap - out->len < len)
      cap *= 2;
    uint8_t *grown = wsev__realloc(out->data, cap);
    if (!grown) return -1;
    out->data = grown;
    out->cap = cap;
  }
  memcpy(out->data + out->len, data, len);
  out->len += len;
  return 0;
}

uint8_t *wsev__tls_out_take(wsev_tls_out *out, size_t *len, size_t *cap) {
  uint8_t *data = out->data;
  *len = out->len;
  *cap = out->cap;
  out->data = NULL;
  out->len = out->cap = 0;
  return data;
}

int wsev__tls_trust_init(wsev_tls_trust *trust, const char *ca_file, int insecure) {
  trust->insecure = insecure != 0;
  trust->ca_file = NULL;
  if (insecure || !ca_file) return 0;
  if (!(trust->ca_file = wsev__malloc(strlen(ca_file) + 1))) return UV_ENOMEM;
  strcpy(trust->ca_file, ca_file);
  return 0;
}

void wsev__tls_trust_free(wsev_tls_trust *trust) {
  wsev__free(trust->ca_file);
  trust->ca_file = NULL;
}

int wsev__tls_trust_matches(const wsev_tls_trust *trust, const char *ca_file, int insecure) {
  if (trust->insecure != (insecure != 0)) return 0;
  if (trust->insecure) return 1;
  if (!trust->ca_file || !ca_file) return !trust->ca_file && !ca_file;
  return strcmp(trust->ca_file, ca_file) == 0;
}

char *wsev__tls_peer_key(const char *server_name, unsigned port, const wsev_tls_trust *trust) {
  const char *how = trust->insecure ? "*" : trust->ca_file ? trust->ca_file : "-";
  size_t size = strlen(server_name) + strlen(how) + 8;
  char *key = wsev__malloc(size);
  if (key) snprintf(key, size, "%s %u %s", server_name, port & 0xffff, how);
  return key;
}

/* ---- the client session cache ------------------------------------------------------ */

typedef struct {
  char *peer; /* NULL: a free slot */
  void *session;
} session_slot;

struct wsev_tls_sessions {
  uv_mutex_t lock;
  _Atomic size_t refs;
  session_slot slots[CLIENT_SESSIONS];
  unsigned next; /* the slot a new server replaces */
};

wsev_tls_sessions *wsev__tls_sessions_new(void) {
  wsev_tls_sessions *cache = wsev__calloc(1, sizeof *cache);
  if (!cache) return NULL;
  if (uv_mutex_init(&cache->lock) != 0) {
    wsev__free(cache);
    return NULL;
  }
  cache->refs = 1;
  return cache;
}

static void slot_clear(session_slot *slot) {
  if (slot->session) wsev__tls_session_free(slot->session);
  slot->session = NULL;
  wsev__free(slot->peer);
  slot->peer = NULL;
}

void wsev__tls_sessions_ref(wsev_tls_sessions *cache) { atomic_fetch_add(&cache->refs, 1); }

void wsev__tls_sessions_unref(wsev_tls_sessions *cache) {
  if (!cache || atomic_fetch_sub(&cache->refs, 1) != 1) return;
  for (int i = 0; i < CLIENT_SESSIONS; i++)
    slot_clear(&cache->slots[i]);
  uv_mutex_destroy(&cache->lock);
  wsev__free(cache);
}

void wsev__tls_sessions_lock(wsev_tls_sessions *cache) { uv_mutex_lock(&cache->lock); }

void wsev__tls_sessions_unlock(wsev_tls_sessions *cache) { uv_mutex_unlock(&cache->lock); }

static session_slot *find_slot(wsev_tls_sessions *cache, const char *peer) {
  for (int i = 0; i < CLIENT_SESSIONS; i++)
    if (cache->slots[i].peer && strcmp(cache->slots[i].peer, peer) == 0) return &cache->slots[i];
  return NULL;
}

void *wsev__tls_sessions_find(wsev_tls_sessions *cache, const char *peer) {
  session_slot *slot = find_slot(cache, peer);
  return slot ? slot->session : NULL;
}

void wsev__tls_sessions_forget(wsev_tls_sessions *cache, const char *peer) {
  session_slot *slot = find_slot(cache, peer);
  if (slot) slot_clear(slot);
}

void wsev__tls_sessions_keep(wsev_tls_sessions *cache, const char *peer, void *session) {
  session_slot *slot = find_slot(cache, peer);
  if (!slot) {
    slot = &cache->slots[cache->next];
    cache->next = (cache->next + 1) % CLIENT_SESSIONS;
    slot_clear(slot);
    if (!(slot->peer = wsev__malloc(strlen(peer) + 1))) {
      wsev__tls_session_free(session);
      return;
    }
    strcpy(slot->peer, peer);
  } else if (slot->session) {
    wsev__tls_session_free(slot->session);
  }
  slot->session = session;
}

/* ---- certificates chosen by SNI ------------------------------------------------------ */

int wsev__tls_server_config(wsev_rng *rng, const char *cert_file, const char *key_file,
                            wsev_tls_tickets *tickets, wsev_tls_config **out) {
  const wsev_tls_cert pair = {cert_file, key_file};
  return wsev__tls_server_config_certs(rng, &pair, 1, tickets, out);
}

int wsev__tls_certs_check(const wsev_tls_cert *certs, size_t count) {
  return certs && count > 0 && count <= WSEV_TLS_MAX_CERTS ? 0 : UV_EINVAL;
}

int wsev__tls_names_add(wsev_tls_names *names, const void *name, size_t len) {
  const uint8_t *bytes = name;
  if (len == 0 || len > WSEV_TLS_MAX_NAME) return 0;
  for (size_t i = 0; i < len; i++)
    if (bytes[i] < 0x21 || bytes[i] > 0x7e) return 0;
  if (names->count >= WSEV_TLS_MAX_CERT_NAMES) return WSEV_ETLSCERT;
  /* Bounded above: at most WSEV_TLS_MAX_CERT_NAMES * (WSEV_TLS_MAX_NAME + 1) bytes. */
  char *grown = wsev__realloc(names->text, names->len + len + 1);
  if (!grown) return UV_ENOMEM;
  memcpy(grown + names->len, bytes, len);
  grown[names->len + len] = 0;
  names->text = grown;
  names->len += len + 1;
  names->count++;
  return 0;
}

void wsev__tls_names_free(wsev_tls_names *names) {
  wsev__free(names->text);
  names->text = NULL;
  names->len = names->count = 0;
}

static int same_text(const char *a, const char *b, size_t n) {
  for (size_t i = 0; i < n; i++) {
    unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];
    if (x >= 'A' && x <= 'Z') x += 'a' - 'A';
    if (y >= 'A' && y <= 'Z') y += 'a' - 'A';
    if (x != y) return 0;
  }
  return 1;
}

int wsev__tls_name_matches(const char *pattern, const char *host, size_t len) {
  if (len && host[len - 1] == '.') len--; /* "a.test." is the same host as "a.test" */
  if (len == 0) return 0;
  size_t plen = strlen(pattern);
  if (plen < 2 || pattern[0] != '*' || pattern[1] != '.')
    return plen == len && same_text(pattern, host, len);
  /* A wildcard stands for the whole leftmost label and nothing more (RFC 6125 6.4.3):
   * host is "label" + suffix, suffix = ".rest". */
  const char *suffix = pattern + 1;
  size_t slen = plen - 1;
  if (!memchr(suffix + 1, '.', slen - 1)) return 0; /* "*.com": a whole top-level domain */
  const char *dot = memchr(host, '.', len);
  return dot && dot != host && (size_t)(host + len - dot) == slen && same_text(dot, suffix, slen);
}

size_t wsev__tls_pick_cert(const wsev_tls_names *names, size_t count, const char *host,
                           size_t len) {
  if (!host) return 0;
  for (size_t i = 0; i < count; i++) {
    const char *name = names[i].text, *end = name + names[i].len;
    for (; name < end; name += strlen(name) + 1)
      if (wsev__tls_name_matches(name, host, len)) return i;
  }
  return 0;
}
