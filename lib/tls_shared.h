/* What the two TLS backends (tls_mbedtls.c, tls_openssl.c) share: the client session
 * cache, the trust a client configuration stands for, the ciphertext output buffer and
 * the pool of random bytes. Only the backends include this. */
#ifndef WSEV_TLS_SHARED_H
#define WSEV_TLS_SHARED_H

#include <stddef.h>
#include <stdint.h>

#include "tls.h"

#define WSEV_TLS_SYSTEM_CA_BUNDLE "/etc/ssl/certs/ca-certificates.crt"
/* How long a session ticket we issue may resume a session. */
#define WSEV_TLS_TICKET_LIFETIME_S 3600

/* Overwrite secrets in a way the compiler keeps. */
void wsev__tls_zeroize(void *p, size_t len);

/* ---- random bytes: a pool, so that the 4-byte mask key of every client frame is cheap */

typedef struct {
  size_t left;
  uint8_t bytes[256];
} wsev_rng_pool;
/* The backend's generator: fill buf, 0 or -1. */
typedef int (*wsev_rng_fill)(void *source, void *buf, size_t len);
/* len random bytes, from the pool when small (each handed out once), else straight from
 * fill. 0 or -1. */
int wsev__rng_pool_bytes(wsev_rng_pool *pool, void *buf, size_t len, wsev_rng_fill fill,
                         void *source);

/* ---- the ciphertext waiting to be written --------------------------------------- */

typedef struct {
  uint8_t *data;
  size_t len, cap;
} wsev_tls_out;
/* Append records: 0, or -1 without memory. */
int wsev__tls_out_append(wsev_tls_out *out, const void *data, size_t len);
/* What wsev__tls_take hands over (the caller then owns it). */
uint8_t *wsev__tls_out_take(wsev_tls_out *out, size_t *len, size_t *cap);

/* ---- what a client configuration trusts ---------------------------------------------- */

typedef struct {
  int insecure;  /* no verification */
  char *ca_file; /* NULL: the system's bundle */
} wsev_tls_trust;
/* 0 or UV_ENOMEM. */
int wsev__tls_trust_init(wsev_tls_trust *trust, const char *ca_file, int insecure);
void wsev__tls_trust_free(wsev_tls_trust *trust);
int wsev__tls_trust_matches(const wsev_tls_trust *trust, const char *ca_file, int insecure);
/* The key of a server's session under a trust, "host port trust" (the trust is the CA
 * file, "-" for the system's, "*" for none): a session verified under one set of CAs is
 * never resumed under another. Allocated; NULL on ENOMEM. */
char *wsev__tls_peer_key(const char *server_name, unsigned port, const wsev_tls_trust *trust);

/* ---- the client session cache (declared in tls.h) ------------------------------------
 * The last session with each of a few servers, shared by the I/O threads. Every call
 * below is made with the cache locked. */

/* Frees a session the cache holds: each backend defines it. */
void wsev__tls_session_free(void *session);

void wsev__tls_sessions_lock(wsev_tls_sessions *cache);
void wsev__tls_sessions_unlock(wsev_tls_sessions *cache);
void wsev__tls_sessions_ref(wsev_tls_sessions *cache);
/* The session kept for peer, or NULL. */
void *wsev__tls_sessions_find(wsev_tls_sessions *cache, const char *peer);
void wsev__tls_sessions_forget(wsev_tls_sessions *cache, const char *peer);
/* Keep session for peer in place of any earlier one, replacing the oldest server if
 * the cache is full. The cache owns session from now on (freed at once without memory
 * for the key). */
void wsev__tls_sessions_keep(wsev_tls_sessions *cache, const char *peer, void *session);

#endif
