/* The PROXY protocol (HAProxy's proxy-protocol.txt, versions 1 and 2) as its receiver:
 * a listener behind a proxy that prepends the client's address to every connection
 * reads it here before TLS or HTTP. Pure code over bytes, no I/O, no allocation; fed
 * the connection's first bytes again as more arrive. */
#ifndef WSEV_PROXY_PROTOCOL_H
#define WSEV_PROXY_PROTOCOL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* The longest header accepted, in bytes: the most the caller keeps of a connection's
 * first bytes before the verdict. Version 1 lines are at most 107 bytes; a version 2
 * header may state up to 16 + 65535, but one longer than this is refused as soon as
 * its length field arrives. 8 KiB is the default limit on the upgrade request's header
 * block (the other thing held before anything is known of the client), and far more
 * than the registered TLVs (ALPN, authority, CRC32c, unique id of at most 128 bytes,
 * SSL details) and the cloud load balancers' own ones take. */
#define WSEV_PROXY_HEADER_MAX 8192

/* wsev__proxy_header_parse's verdict for bytes that are not a valid header. */
#define WSEV_PROXY_INVALID (-1)

typedef struct {
  int local; /* 1: no client address to use (v2 LOCAL command, v2 AF_UNSPEC or AF_UNIX
              * family or UNSPEC transport, v1 "PROXY UNKNOWN"): the connection's real
              * peer stands; source and destination are then AF_UNSPEC */
  struct sockaddr_storage source;      /* the client (when !local): AF_INET or AF_INET6 */
  struct sockaddr_storage destination; /* the address the client connected to */
} wsev_proxy_header;

/* Parse a PROXY header at the start of a connection's first bytes p[0..n).
 * > 0: the header is complete and took that many bytes (what follows is the client's
 *      stream: TLS or HTTP); *out is filled.
 * 0: not complete yet, but every byte so far fits a valid header: call again with the
 *    same bytes and more (never for n >= WSEV_PROXY_HEADER_MAX: a verdict comes by
 *    then; how long to wait for the rest is the caller's timeout).
 * WSEV_PROXY_INVALID: not a valid header, decided at the first byte that cannot fit
 *    (a first byte other than 'P' or 0x0D, so HTTP or TLS is refused at once): close
 *    the connection.
 * *out is written only for a result > 0. The result for a prefix is always 0 or the
 * one for the whole input.
 *
 * Version 1, strictly by the spec's grammar: "PROXY TCP4 " or "PROXY TCP6 ", source
 * and destination address, source and destination port, single spaces, CRLF (a bare
 * CR or LF is invalid). IPv4: a dotted quad of 0..255 without leading zeros. IPv6:
 * what inet_pton reads (including a dotted IPv4 tail), at most 39 characters (the
 * spec's longest form). Ports: 0..65535 in decimal without leading zeros ("0" alone
 * is fine). "PROXY UNKNOWN" then CRLF, or a space and anything but CR and LF up to
 * the CRLF, is local. The whole line is at most 107 bytes with its CRLF.
 *
 * Version 2: the 12-byte signature, version 2, command LOCAL (0) or PROXY (1); other
 * versions, commands, families (> 3) and transports (> 2) are invalid. LOCAL, and
 * PROXY with an AF_UNSPEC family or UNSPEC transport (the spec's UNSPEC mode), are
 * local, and what follows their first 16 bytes is skipped unread. PROXY over AF_INET
 * or AF_INET6 reports the addresses, for STREAM and also DGRAM (an HTTP/3 front end
 * reports its QUIC client so; the addresses mean the same); over AF_UNIX it is local
 * (no IP address to report). For these three families the length must cover the
 * addresses (12, 36, 216 bytes), and the TLVs after them must nest exactly within the
 * stated length (each a type, a 2-byte length and that many bytes); their contents
 * are not read (a CRC32c TLV is not verified, which the spec leaves to receivers that
 * support it). */
int wsev__proxy_header_parse(const uint8_t *p, size_t n, wsev_proxy_header *out);

#endif
