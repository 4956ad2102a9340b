/* The client address that a reverse proxy reports in the upgrade request: the
 * Forwarded header (RFC 7239) or X-Forwarded-For. Pure code over the header values,
 * no I/O, no allocation. */
#ifndef WSEV_FORWARDED_H
#define WSEV_FORWARDED_H

#include <sys/socket.h>

/* forwarded: the Forwarded header's value, all its lines joined with "," or ", "
 * (NULL if absent); xff: the X-Forwarded-For value likewise (NULL if absent).
 *
 * The nearest proxy appended the LAST element, so only that one is believed:
 * - Forwarded, when it has any element: the last element's for= parameter (parameter
 *   names in any case). The whole value must parse as RFC 7239's list of elements of
 *   ';'-separated name=value pairs (empty elements and pairs skipped, spaces and tabs
 *   allowed around ',' and ';', not around '='; a value is a token or a quoted-string
 *   with \-escapes), or it gives nothing: a quote a client left open would otherwise
 *   swallow the proxy's element. The last element may hold for= at most once. Lenient
 *   where the meaning stays plain: an unquoted value may also hold ':', '[' and ']'
 *   (for=1.2.3.4:80 and for=[::1], which some proxies send), and a for= node may be a
 *   bare IPv6 literal without a port.
 *   If that element gives no usable address, X-Forwarded-For is NOT consulted: a
 *   proxy that writes Forwarded leaves X-Forwarded-For as the client sent it.
 * - Otherwise X-Forwarded-For's last non-empty comma-separated entry, spaces trimmed.
 * A node (a for= value, or an X-Forwarded-For entry): an IPv4 literal (dotted quad, no
 * leading zeros), "IPv4:port", "[IPv6]", "[IPv6]:port" or a bare IPv6 literal (as
 * inet_pton reads them; no zone id); a port is 1 to 5 digits up to 65535, or an
 * obfuscated one ("_abc", RFC 7239 section 6.3), which gives port 0.
 *
 * Returns 0 with *out set to an AF_INET or AF_INET6 address (port in network byte
 * order, 0 when none was given), or -1 when there is nothing usable ("unknown",
 * obfuscated "_hidden" identifiers, garbage, empty): the caller then keeps the
 * socket's peer. *out is written only on success. */
int wsev__forwarded_client(const char *forwarded, const char *xff, struct sockaddr_storage *out);

#endif
