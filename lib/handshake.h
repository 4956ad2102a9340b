/* The server side of the WebSocket opening handshake (RFC 6455 section 4.2): parse
 * the HTTP upgrade request with llhttp, validate it, build the response. Pure code
 * over bytes, no I/O; fed as bytes arrive, in any split. */
#ifndef WSEV_HANDSHAKE_H
#define WSEV_HANDSHAKE_H

#include <stddef.h>
#include <stdint.h>

typedef struct wsev_hs wsev_hs;

/* wsev__hs_feed results other than an HTTP status code. */
#define WSEV_HS_MORE 0 /* the request is not complete yet */
#define WSEV_HS_DONE 1 /* a valid upgrade request; see wsev__hs_response_101 */

/* A new parser for one request whose header block may be at most max_header bytes.
 * NULL when out of memory. */
wsev_hs *wsev__hs_new(size_t max_header);
void wsev__hs_free(wsev_hs *hs);

/* Feed the next bytes of the request. Returns WSEV_HS_MORE (all of them consumed),
 * WSEV_HS_DONE (the request ended after *consumed bytes of this call: what follows
 * are the first WebSocket frames), or the HTTP status to reject it with: 400 (bad
 * request), 426 (Sec-WebSocket-Version other than 13), 431 (header block too
 * large). After DONE or a status, further calls return the same result. */
int wsev__hs_feed(wsev_hs *hs, const char *data, size_t len, size_t *consumed);

/* Sec-WebSocket-Accept for a client key: base64(SHA-1(key ++ GUID)). out receives
 * 28 characters and a NUL. Returns 0, or -1 on a crypto failure. */
int wsev__hs_accept_key(const char *key, size_t key_len, char out[29]);

/* The 101 Switching Protocols response for a request that returned WSEV_HS_DONE,
 * written into buf (cap >= 256). Returns its length, or 0 if it did not fit. */
size_t wsev__hs_response_101(const wsev_hs *hs, char *buf, size_t cap);

/* An error response (400, 426 with Sec-WebSocket-Version: 13, 431, 503, ...)
 * that also closes the connection. Returns its length, or 0 if it did not fit. */
size_t wsev__hs_response_error(int status, char *buf, size_t cap);

/* The request target (path and query) of a parsed request, NUL-terminated. */
const char *wsev__hs_path(const wsev_hs *hs);

#endif
