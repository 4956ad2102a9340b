/* The TLS backend boundary: the same interface over mbedTLS (tls_mbedtls.c, the
 * default) and OpenSSL (tls_openssl.c), chosen at build time (meson -Dtls=); what the
 * two share is in tls_shared.c.
 *
 * TLS driven from memory: the session never touches a socket. Ciphertext read from
 * the socket is handed to wsev__tls_input, which decrypts into a buffer and passes
 * plaintext on; plaintext output is encrypted into a ciphertext buffer that the
 * connection layer writes. So no call ever blocks, and "want read" simply means
 * "wait for the next read". The backend also gives the rest of the library its
 * random bytes and the handshake's SHA-1. */
#ifndef WSEV_TLS_H
#define WSEV_TLS_H

#include <stddef.h>
#include <stdint.h>

#include "wsev.h"

/* The backend's name and version, e.g. "mbedTLS 2.28.3" or "OpenSSL 3.0.19". */
const char *wsev__tls_backend(void);

/* SHA-1 of len bytes (the Sec-WebSocket-Accept key): 0, or -1 if the backend failed. */
int wsev__sha1(const void *data, size_t len, uint8_t digest[20]);

typedef struct wsev_rng wsev_rng;
typedef struct wsev_tls_config wsev_tls_config;
typedef struct wsev_tls wsev_tls;
typedef struct wsev_tls_tickets wsev_tls_tickets;
typedef struct wsev_tls_sessions wsev_tls_sessions;

/* The context's random source: an entropy pool and a CTR-DRBG seeded once (on
 * first use), shared by every TLS connection and by client masking keys. */
wsev_rng *wsev__rng_new(void);
void wsev__rng_free(wsev_rng *rng);
/* Fill buf with random bytes: 0, or -1 if the DRBG failed. Small requests are
 * served from a refilled pool (a mask key per frame must be cheap). */
int wsev__rng_bytes(wsev_rng *rng, void *buf, size_t len);

/* Server configuration of one TLS listener: certificate chain and key loaded and
 * checked at once. Returns 0 or WSEV_ETLSCERT / WSEV_ETLSKEY / WSEV_ETLSKEYMISMATCH
 * / UV_ENOMEM. Counted references: every connection holds one, so it outlives its
 * listener as long as needed. */
int wsev__tls_server_config(wsev_rng *rng, const char *cert_file, const char *key_file,
                            wsev_tls_tickets *tickets, wsev_tls_config **out);
/* Server configuration with several certificates: certs[0] is the default; a client's
 * SNI picks the first certificate whose names match it (subjectAltName dNSName entries;
 * the subject CN only when the certificate has no dNSName; case-insensitive; a
 * "*.example.com" name matches exactly one leftmost label, never "example.com" or
 * "a.b.example.com"); no SNI or no match: certs[0]. Every pair is loaded and checked
 * now, with the errors wsev__tls_server_config gives (the first pair that fails
 * decides the error; nothing is kept); UV_EINVAL for no certificates or more than
 * WSEV_TLS_MAX_CERTS. A reload builds a new configuration with the same `tickets`, so
 * that tickets issued under the old one still resume. 0 or the error. */
int wsev__tls_server_config_certs(wsev_rng *rng, const wsev_tls_cert *certs, size_t count,
                                  wsev_tls_tickets *tickets, wsev_tls_config **out);
#define WSEV_TLS_MAX_CERTS 1024
/* The keys that seal a server's session tickets. Listeners on several I/O threads share
 * one set, so that a ticket resumes on whichever thread the client lands (locked
 * inside; the keys rotate by themselves).
 * Passing NULL to wsev__tls_server_config gives the configuration a set of its own.
 * NULL on ENOMEM or when the random source cannot be seeded. */
wsev_tls_tickets *wsev__tls_tickets_new(void);
void wsev__tls_tickets_unref(wsev_tls_tickets *tickets);
/* Client configuration: trusted CAs from ca_file (NULL: the system bundle), or no
 * verification at all (insecure). Sessions are remembered in `sessions` (NULL: a cache
 * of the configuration's own). 0, WSEV_ETLSCA or UV_ENOMEM. */
int wsev__tls_client_config(wsev_rng *rng, const char *ca_file, int insecure,
                            wsev_tls_sessions *sessions, wsev_tls_config **out);
/* The last sessions with a few servers, to resume the next connection there; one cache
 * is shared by the I/O threads (locked inside), so a connection resumes on any of them.
 * NULL on ENOMEM. */
wsev_tls_sessions *wsev__tls_sessions_new(void);
void wsev__tls_sessions_unref(wsev_tls_sessions *sessions);
void wsev__tls_config_ref(wsev_tls_config *conf);
void wsev__tls_config_unref(wsev_tls_config *conf);
/* The same settings (for sharing client configurations between connections). */
int wsev__tls_config_matches(const wsev_tls_config *conf, const char *ca_file, int insecure);

/* Where a connection's TLS layer sends its results. Each returns 0 to go on, or
 * non-zero to stop reading (the connection is over). */
typedef struct {
  /* The handshake completed (clients send their upgrade request now). */
  int (*handshake_done)(void *conn);
  /* Decrypted application bytes, in order; the buffer is only lent. */
  int (*plaintext)(void *conn, uint8_t *data, size_t len);
} wsev_tls_sink;

/* A TLS session for one connection. server_name: for clients, the host to send as
 * SNI and to check the certificate against, and with `port` the server whose last
 * session is resumed if the configuration remembers one (NULL and 0 for servers).
 * NULL on ENOMEM. */
wsev_tls *wsev__tls_new(wsev_tls_config *conf, const char *server_name, unsigned port);
void wsev__tls_free(wsev_tls *tls);

/* wsev__tls_input results. */
#define WSEV_TLS_OK 0         /* all input used; wait for more */
#define WSEV_TLS_CLOSED 1     /* the peer sent close_notify: treat as end of stream */
#define WSEV_TLS_FAILED (-1)  /* fatal: see wsev__tls_error; any alert is queued */
#define WSEV_TLS_STOPPED (-2) /* the sink asked to stop */

/* Feed ciphertext: drives the handshake, then decrypts into `plain` (plain_cap
 * bytes lent by the caller) and calls the sink. */
int wsev__tls_input(wsev_tls *tls, const uint8_t *in, size_t len, uint8_t *plain, size_t plain_cap,
                    const wsev_tls_sink *sink, void *conn);
/* Start the handshake (clients: queues the ClientHello). Same results. */
int wsev__tls_start(wsev_tls *tls);
int wsev__tls_handshake_done(const wsev_tls *tls);
/* Encrypt plaintext into the ciphertext buffer. 0, or UV_ENOMEM / WSEV_ETLS. */
int wsev__tls_encrypt(wsev_tls *tls, const uint8_t *data, size_t len);
/* Queue a close_notify alert (once; nothing if the handshake did not finish). */
void wsev__tls_close_notify(wsev_tls *tls);
/* The ciphertext waiting to be written. Take it (the caller then owns the buffer,
 * allocated with wsev__malloc) or look at its length. */
size_t wsev__tls_pending(const wsev_tls *tls);
uint8_t *wsev__tls_take(wsev_tls *tls, size_t *len, size_t *cap);

/* After a failure: WSEV_ETLS or WSEV_ETLSVERIFY and a description. */
int wsev__tls_error(const wsev_tls *tls, char *reason, size_t cap);
/* Negotiated parameters, once the handshake is done (NULL before), and the SNI
 * name (the client's on a server, ours on a client; NULL if none). */
const char *wsev__tls_version(const wsev_tls *tls);
const char *wsev__tls_cipher(const wsev_tls *tls);
const char *wsev__tls_server_name(const wsev_tls *tls);
/* 1 if the handshake resumed an earlier session (a ticket we issued, or a session
 * of ours the server took back). */
int wsev__tls_resumed(const wsev_tls *tls);

#endif
