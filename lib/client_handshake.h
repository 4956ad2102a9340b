/* The client side of the WebSocket opening handshake (RFC 6455 sections 4.1 and
 * 4.2.2): build the upgrade request, then parse and verify the server's response
 * with llhttp. Pure code over bytes, no I/O; the response may be fed in any split. */
#ifndef WSEV_CLIENT_HANDSHAKE_H
#define WSEV_CLIENT_HANDSHAKE_H

#include <stddef.h>
#include <stdint.h>

#include "deflate_negotiation.h"
#include "url.h"

/* Check the options of a connection before doing anything with them: protocols
 * (NULL or a NULL-terminated list) must be distinct RFC 7230 tokens; extra_headers
 * (NULL or lines, each "Name: value\r\n") must have token names, values without
 * control characters other than tab, and no name we set ourselves (Host, Upgrade,
 * Connection, Sec-WebSocket-Key/-Version/-Protocol/-Extensions) or that would
 * announce a body (Content-Length, Transfer-Encoding). Returns 0 or UV_EINVAL. */
int wsev__client_options_check(const char *const *protocols, const char *extra_headers);

/* Check an Origin value (NULL: none): no control characters other than tab.
 * Returns 0 or UV_EINVAL. */
int wsev__client_origin_check(const char *origin);

/* Build the upgrade request for url. key16: 16 random bytes (the caller draws them
 * from its DRBG); their base64 is the Sec-WebSocket-Key. origin, protocols and
 * extra_headers may be NULL and are checked as above; extensions (NULL: none) is our
 * Sec-WebSocket-Extensions offer, written as it is. On success *out is the
 * allocated request (free with wsev__free), *len its length (it is also
 * NUL-terminated), and expected_accept receives the 28-character
 * Sec-WebSocket-Accept the server must answer with, plus a NUL. Returns 0,
 * UV_EINVAL (bad options) or UV_ENOMEM; on error nothing is allocated. */
int wsev__client_request(const wsev_url *url, const uint8_t key16[16], const char *origin,
                         const char *const *protocols, const char *extra_headers,
                         const char *extensions, char **out, size_t *len,
                         char expected_accept[29]);

typedef struct wsev_client_hs wsev_client_hs;

/* A parser for the response to one request. expected_accept: from
 * wsev__client_request (copied). protocols: what the request offered (NULL or a
 * NULL-terminated list; copied). deflate: the permessage-deflate offer made (NULL:
 * none; then any Sec-WebSocket-Extensions fails the handshake). max_header: the most
 * bytes the response's header block may have. NULL when out of memory. */
wsev_client_hs *wsev__client_hs_new(const char *expected_accept, const char *const *protocols,
                                    const wsev_pmd_config *deflate, size_t max_header);
void wsev__client_hs_free(wsev_client_hs *hs); /* accepts NULL */

#define WSEV_CHS_MORE 0 /* the response head is not complete yet */
#define WSEV_CHS_DONE 1 /* a valid 101: the connection is a WebSocket now */

/* Feed the next bytes of the response, in any split. Returns:
 * - WSEV_CHS_MORE: all len bytes consumed (*used = len); more are needed;
 * - WSEV_CHS_DONE: a valid 101 response ended after *used bytes of this call;
 *   the rest are WebSocket frames and were not looked at;
 * - WSEV_EHANDSHAKE: the server refused or answered wrongly (why: see
 *   wsev__client_hs_error); a non-101 response is judged as soon as its head is
 *   complete, its body is never read; *used is 0;
 * - UV_ENOMEM (*used is 0).
 * After a verdict, further calls return it again with *used = 0. */
int wsev__client_hs_feed(wsev_client_hs *hs, const char *data, size_t len, size_t *used);

/* Why the handshake failed: "HTTP 404 Not Found" (the status and the server's
 * reason phrase, shortened, with unprintable bytes replaced by '?'), "no Upgrade:
 * websocket", "no Connection: Upgrade", "bad Sec-WebSocket-Accept", "unrequested
 * subprotocol", "unrequested extension" (or another permessage-deflate complaint,
 * see wsev__pmd_check_response), "response header too large", "malformed
 * HTTP response", ...: at most WSEV_CHS_ERROR_MAX bytes with the NUL. "" before a
 * failure. Valid while hs lives. */
#define WSEV_CHS_ERROR_MAX 128
const char *wsev__client_hs_error(const wsev_client_hs *hs);

/* After WSEV_CHS_DONE: the subprotocol the server selected (one of those offered),
 * or NULL for none. Valid while hs lives. */
const char *wsev__client_hs_protocol(const wsev_client_hs *hs);

/* The response's HTTP status once its status line has been read, else 0. */
int wsev__client_hs_status(const wsev_client_hs *hs);

/* After WSEV_CHS_DONE: what the server agreed to (on = 0: no permessage-deflate). */
const wsev_pmd_agreed *wsev__client_hs_deflate(const wsev_client_hs *hs);

#endif
