/* What the two TLS backends (tls_mbedtls.c, tls_openssl.c) share: the client session
 * cache, the trust a client configuration stands for, the ciphertext output buffer,
 * the pool of random bytes and the choice of a server certificate by SNI. Only the
 * backends include this (and test-tls-sni.c, for wsev__tls_peer_cert_sha256). */
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

/* ---- certificates chosen by SNI ------------------------------------------------------ */

/* How many DNS names of one certificate are kept to match SNI against: public CAs put
 * at most a few hundred in one certificate. One with more is refused (WSEV_ETLSCERT)
 * rather than served for some of its names only. */
#define WSEV_TLS_MAX_CERT_NAMES 1000
/* The longest DNS name in text form (RFC 1035). */
#define WSEV_TLS_MAX_NAME 253

/* The names one certificate serves, each NUL-terminated, one after the other. */
typedef struct {
  char *text;
  size_t len;   /* bytes of text used */
  size_t count; /* names in it */
} wsev_tls_names;

/* Add a name read from a certificate (len bytes, not terminated, as the certificate
 * has them). A name no host name can equal (empty, longer than WSEV_TLS_MAX_NAME, or
 * with a byte outside printable ASCII) is skipped. 0, UV_ENOMEM, or WSEV_ETLSCERT past
 * WSEV_TLS_MAX_CERT_NAMES. */
int wsev__tls_names_add(wsev_tls_names *names, const void *name, size_t len);
void wsev__tls_names_free(wsev_tls_names *names);
/* 1 if a certificate name covers host (len bytes; one trailing dot is ignored): equal
 * but for ASCII case, or "*.rest" where host is one non-empty label, a dot and rest
 * (rest being two labels or more: "*.com" covers nothing). */
int wsev__tls_name_matches(const char *pattern, const char *host, size_t len);
/* The certificate that serves host (SNI; NULL: none): the first of count whose names
 * match, else 0, the default. */
size_t wsev__tls_pick_cert(const wsev_tls_names *names, size_t count, const char *host, size_t len);
/* 0 if certs/count may make a server configuration, else UV_EINVAL. */
int wsev__tls_certs_check(const wsev_tls_cert *certs, size_t count);

/* For tests: the SHA-256 of the certificate the peer presented (or the one of the
 * session resumed), once the handshake is done. 0, or -1 (none, or not done). */
int wsev__tls_peer_cert_sha256(const wsev_tls *tls, uint8_t digest[32]);

#endif
