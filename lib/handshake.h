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
#define WSEV_HS_HTTP 2 /* a complete request with no Upgrade header: plain HTTP */

/* A new parser for one request whose header block may be at most max_header bytes.
 * NULL when out of memory. */
wsev_hs *wsev__hs_new(size_t max_header);
void wsev__hs_free(wsev_hs *hs);

/* Feed the next bytes of the request. Returns WSEV_HS_MORE (all of them consumed),
 * WSEV_HS_DONE (a valid upgrade request ended after *consumed bytes of this call:
 * what follows are the first WebSocket frames), WSEV_HS_HTTP (a request without an
 * Upgrade header ended after *consumed bytes; any body is not consumed), or the
 * HTTP status to reject it with: 400 (bad request), 426 (Sec-WebSocket-Version
 * other than 13), 431 (header block too large), 500 (out of memory). After a
 * verdict, further calls return the same result. */
int wsev__hs_feed(wsev_hs *hs, const char *data, size_t len, size_t *consumed);

/* Sec-WebSocket-Accept for a client key: base64(SHA-1(key ++ GUID)). out receives
 * 28 characters and a NUL. Returns 0, or -1 on a crypto failure. */
int wsev__hs_accept_key(const char *key, size_t key_len, char out[29]);

/* The 101 Switching Protocols response for a request that returned WSEV_HS_DONE,
 * selecting `protocol` and answering `extensions` (each NULL: none), written into buf.
 * Returns its length, or 0 if it did not fit. */
size_t wsev__hs_response_101(const wsev_hs *hs, const char *protocol, const char *extensions,
                             char *buf, size_t cap);
/* Every Sec-WebSocket-Extensions line of the request joined with ",", or NULL. */
const char *wsev__hs_extensions(const wsev_hs *hs);

/* An error response (400, 426 with Sec-WebSocket-Version: 13, 431, 503, ...)
 * that also closes the connection. Returns its length, or 0 if it did not fit. */
size_t wsev__hs_response_error(int status, char *buf, size_t cap);

/* The reason phrase for an HTTP status ("Error" for unknown ones). */
const char *wsev__hs_status_text(int status);

/* About a request with a verdict. The request target (path and query), the method,
 * a header's first value by case-insensitive name (NULL if absent), every header in
 * turn (start with *pos = 0; NULL at the end; names are lowercase), whether the
 * connection may be kept alive after a response, whether a body follows, and the
 * offered subprotocols in order. Strings live as long as the parser. */
const char *wsev__hs_path(const wsev_hs *hs);
const char *wsev__hs_method(const wsev_hs *hs);
const char *wsev__hs_header(const wsev_hs *hs, const char *name);
const char *wsev__hs_header_at(const wsev_hs *hs, size_t *pos, const char **value);
int wsev__hs_keep_alive(const wsev_hs *hs);
int wsev__hs_has_body(const wsev_hs *hs);
size_t wsev__hs_protocol_count(const wsev_hs *hs);
const char *wsev__hs_protocol(const wsev_hs *hs, size_t i);

#endif
