/* permessage-deflate negotiation (RFC 7692 section 7) over the Sec-WebSocket-Extensions
 * grammar (RFC 6455 section 9.1): a server reads a client's offers and answers the first
 * it can honour; a client writes its offer and checks the server's answer. Pure code
 * over strings, no zlib: what is agreed is four numbers, used by deflate.c. */
#ifndef WSEV_DEFLATE_NEGOTIATION_H
#define WSEV_DEFLATE_NEGOTIATION_H

#include <stddef.h>
#include <stdint.h>

/* Our side's wish: the memory mode and the largest window we compress (and ask the
 * peer to compress) with. */
enum { WSEV_PMD_OFF = 0, WSEV_PMD_SHARED = 1, WSEV_PMD_DEDICATED = 2 };
typedef struct {
  int mode;        /* WSEV_PMD_* */
  int window_bits; /* 9..15 */
} wsev_pmd_config;

/* What both sides agreed for one connection. */
typedef struct {
  uint8_t on;           /* permessage-deflate is in use */
  uint8_t out_takeover; /* our compressor keeps its context from message to message */
  uint8_t in_takeover;  /* the peer's does, so our inflater must keep it too */
  uint8_t out_bits;     /* the window we may compress with (8: we never compress, since
                           zlib's raw deflate cannot use a 256-byte window) */
  uint8_t in_bits;      /* the window the peer compresses with (8..15) */
} wsev_pmd_agreed;

/* Room for any response or offer we write. */
#define WSEV_PMD_HEADER_MAX 160

/* Server: `offers` is the request's Sec-WebSocket-Extensions (every header line joined
 * with ","; NULL: none). Returns 1 when an offer was accepted (*agreed set, and
 * `response` gets the header value to answer with), 0 when permessage-deflate was not
 * offered or no offer could be honoured (an offer with an unknown, duplicate or
 * invalid parameter is declined, as RFC 7692 section 7 says), or -1 when the header
 * does not follow the grammar at all (the request is answered 400). */
int wsev__pmd_accept(const char *offers, const wsev_pmd_config *config, wsev_pmd_agreed *agreed,
                     char response[WSEV_PMD_HEADER_MAX]);

/* Client: the offer to send for `config` into `offer`. */
void wsev__pmd_offer(const wsev_pmd_config *config, char offer[WSEV_PMD_HEADER_MAX]);

/* Client: check the server's Sec-WebSocket-Extensions (`response`, every line joined
 * with ","; NULL: none) against what we offered for `config` (mode OFF: nothing).
 * Returns 0 with *agreed set (on = 0 when the server declined), or -1 with a reason in
 * `why` (an extension we did not offer, a parameter that is unknown, repeated, invalid
 * or not allowed in an answer to our offer, an offer of ours the server ignored). */
int wsev__pmd_check_response(const char *response, const wsev_pmd_config *config,
                             wsev_pmd_agreed *agreed, char *why, size_t why_cap);

#endif
