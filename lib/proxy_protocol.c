/* PROXY protocol headers, versions 1 and 2, read from a connection's first bytes. Each
 * call walks the bytes it is given from the start, checking each one as soon as it is
 * there: a header is at most a few hundred bytes in practice, and rescanning keeps no
 * state between calls, so the caller only keeps the bytes. */
#include "proxy_protocol.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#define V1_MAX 107 /* the spec's longest line with its CRLF */
#define V6_TEXT_MAX 39

/* Three-way result of the steps below: a step's bytes are all there and valid
 * (DONE), fit so far but stop short (MORE), or cannot be valid (BAD). */
enum { BAD = -1, MORE = 0, DONE = 1 };

static const uint8_t v2_signature[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                         0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

static int is_digit(uint8_t c) { return c >= '0' && c <= '9'; }
static int is_hex(uint8_t c) {
  return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* p[0..n) against the literal lit: DONE when it is all there, MORE when p is a shorter
 * prefix of it. */
static int literal(const uint8_t *p, size_t n, const char *lit) {
  size_t len = strlen(lit);
  for (size_t i = 0; i < len; i++) {
    if (i == n) return MORE;
    if (p[i] != (uint8_t)lit[i]) return BAD;
  }
  return DONE;
}

/* ---- version 1 ---- */

typedef enum { FIELD_V4, FIELD_V6, FIELD_PORT } field_kind;

/* Whether f[0..len) can begin (or be, when complete) a field of that kind; for
 * addresses, bin gets the address when complete. IPv4 is checked octet by octet so
 * that "01." or "256" fails at that byte; IPv6 only by its characters and length
 * until it is whole, then by inet_pton. */
static int field_ok(field_kind kind, const uint8_t *f, size_t len, int complete, uint8_t *bin,
                    uint16_t *port) {
  if (kind == FIELD_V4) {
    unsigned value = 0, digits = 0, dots = 0;
    for (size_t i = 0; i < len; i++) {
      if (is_digit(f[i])) {
        if (digits == 1 && value == 0) return 0; /* a leading zero: octal to some */
        value = value * 10 + (unsigned)(f[i] - '0');
        if (value > 255) return 0;
        digits++;
      } else if (f[i] == '.' && digits > 0 && dots < 3) {
        bin[dots++] = (uint8_t)value;
        value = digits = 0;
      } else {
        return 0;
      }
    }
    if (!complete) return 1;
    if (dots != 3 || digits == 0) return 0;
    bin[3] = (uint8_t)value;
    return 1;
  }
  if (kind == FIELD_V6) {
    if (len > V6_TEXT_MAX) return 0;
    for (size_t i = 0; i < len; i++)
      if (!is_hex(f[i]) && f[i] != ':' && f[i] != '.') return 0;
    if (!complete) return 1;
    char text[V6_TEXT_MAX + 1];
    memcpy(text, f, len);
    text[len] = 0;
    return inet_pton(AF_INET6, text, bin) == 1;
  }
  unsigned value = 0;
  for (size_t i = 0; i < len; i++) {
    if (!is_digit(f[i]) || (i == 1 && f[0] == '0')) return 0;
    value = value * 10 + (unsigned)(f[i] - '0');
    if (value > 65535) return 0;
  }
  if (complete && len == 0) return 0;
  *port = (uint16_t)value;
  return 1;
}

/* The field starting at *pos and ending with the byte `end`, which must follow it
 * at once (an empty field means two separators in a row). On DONE *pos is past the
 * separator. */
static int v1_field(const uint8_t *p, size_t n, size_t *pos, field_kind kind, uint8_t end,
                    uint8_t *bin, uint16_t *port) {
  size_t start = *pos, i = start;
  while (i < n && p[i] != end)
    i++;
  if (!field_ok(kind, p + start, i - start, i < n, bin, port)) return BAD;
  if (i == n) return MORE;
  *pos = i + 1;
  return DONE;
}

static void set_addr(struct sockaddr_storage *ss, int v6, const uint8_t *bin, uint16_t port) {
  memset(ss, 0, sizeof *ss);
  if (v6) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
    a->sin6_family = AF_INET6;
    memcpy(&a->sin6_addr, bin, 16);
    a->sin6_port = htons(port);
  } else {
    struct sockaddr_in *a = (struct sockaddr_in *)ss;
    a->sin_family = AF_INET;
    memcpy(&a->sin_addr, bin, 4);
    a->sin_port = htons(port);
  }
}

static void set_local(wsev_proxy_header *out) {
  memset(out, 0, sizeof *out);
  out->local = 1;
  out->source.ss_family = AF_UNSPEC;
  out->destination.ss_family = AF_UNSPEC;
}

/* "PROXY UNKNOWN": then CRLF, or a space and bytes to ignore up to the CRLF. */
static int v1_unknown(const uint8_t *p, size_t n, wsev_proxy_header *out) {
  size_t i = 13;
  if (i == n) return MORE;
  if (p[i] != '\r' && p[i] != ' ') return BAD;
  for (; i < n && i < V1_MAX; i++) {
    if (p[i] == '\n') return BAD; /* a bare LF */
    if (p[i] != '\r') continue;
    if (i + 1 == V1_MAX) return BAD; /* no room for the LF */
    if (i + 1 == n) return MORE;
    if (p[i + 1] != '\n') return BAD; /* a bare CR */
    set_local(out);
    return (int)(i + 2);
  }
  return i == V1_MAX ? BAD : MORE;
}

static int parse_v1(const uint8_t *p, size_t n, wsev_proxy_header *out) {
  int r = literal(p, n, "PROXY ");
  if (r != DONE) return r;
  /* The protocol: which of the three the bytes so far can still be. */
  int v4 = literal(p + 6, n - 6, "TCP4 ");
  int v6 = literal(p + 6, n - 6, "TCP6 ");
  int unknown = literal(p + 6, n - 6, "UNKNOWN");
  if (unknown == DONE) return v1_unknown(p, n, out);
  if (v4 != DONE && v6 != DONE) return v4 == BAD && v6 == BAD && unknown == BAD ? BAD : MORE;

  field_kind kind = v4 == DONE ? FIELD_V4 : FIELD_V6;
  uint8_t src[16], dst[16];
  uint16_t src_port = 0, dst_port = 0;
  size_t pos = 11;
  if ((r = v1_field(p, n, &pos, kind, ' ', src, NULL)) != DONE ||
      (r = v1_field(p, n, &pos, kind, ' ', dst, NULL)) != DONE ||
      (r = v1_field(p, n, &pos, FIELD_PORT, ' ', NULL, &src_port)) != DONE ||
      (r = v1_field(p, n, &pos, FIELD_PORT, '\r', NULL, &dst_port)) != DONE)
    return r;
  if (pos == n) return MORE;
  if (p[pos] != '\n') return BAD;
  pos++;
  /* The fields' own limits keep the line within V1_MAX (104 bytes for TCP6). */
  memset(out, 0, sizeof *out);
  set_addr(&out->source, kind == FIELD_V6, src, src_port);
  set_addr(&out->destination, kind == FIELD_V6, dst, dst_port);
  return (int)pos;
}

/* ---- version 2 ---- */

#define V2_FIXED 16
#define CMD_LOCAL 0x0
#define CMD_PROXY 0x1
#define FAM_UNSPEC 0x0
#define FAM_INET 0x1
#define FAM_INET6 0x2
#define FAM_UNIX 0x3
#define TRANSPORT_UNSPEC 0x0
#define TRANSPORT_DGRAM 0x2

static int parse_v2(const uint8_t *p, size_t n, wsev_proxy_header *out) {
  for (size_t i = 0; i < sizeof v2_signature; i++) {
    if (i == n) return MORE;
    if (p[i] != v2_signature[i]) return BAD;
  }
  if (n == 12) return MORE;
  unsigned version = p[12] >> 4, command = p[12] & 0xF;
  if (version != 2 || (command != CMD_LOCAL && command != CMD_PROXY)) return BAD;
  if (n == 13) return MORE;
  unsigned family = p[13] >> 4, transport = p[13] & 0xF;
  if (family > FAM_UNIX || transport > TRANSPORT_DGRAM) return BAD;
  if (n < V2_FIXED) return MORE;
  size_t total = V2_FIXED + ((size_t)p[14] << 8 | p[15]);
  if (total > WSEV_PROXY_HEADER_MAX) return BAD;

  int local = command == CMD_LOCAL || family == FAM_UNSPEC || transport == TRANSPORT_UNSPEC ||
              family == FAM_UNIX;
  /* LOCAL and UNSPEC blocks have no layout to check: they are skipped whole. */
  if (command == CMD_PROXY && family != FAM_UNSPEC && transport != TRANSPORT_UNSPEC) {
    size_t addr_len = family == FAM_INET ? 12 : family == FAM_INET6 ? 36 : 216;
    if (total < V2_FIXED + addr_len) return BAD;
    /* The TLVs, as far as their headers have arrived: each must end within the
     * header, and the last exactly at its end. */
    size_t pos = V2_FIXED + addr_len;
    while (pos < total) {
      if (total - pos < 3) return BAD;
      if (n < pos + 3) return MORE;
      size_t value_len = (size_t)p[pos + 1] << 8 | p[pos + 2];
      if (value_len > total - pos - 3) return BAD;
      pos += 3 + value_len;
    }
  }
  if (n < total) return MORE;

  if (local) {
    set_local(out);
  } else {
    memset(out, 0, sizeof *out);
    const uint8_t *a = p + V2_FIXED;
    int v6 = family == FAM_INET6;
    size_t alen = v6 ? 16 : 4;
    uint16_t src_port = (uint16_t)(a[2 * alen] << 8 | a[2 * alen + 1]);
    uint16_t dst_port = (uint16_t)(a[2 * alen + 2] << 8 | a[2 * alen + 3]);
    set_addr(&out->source, v6, a, src_port);
    set_addr(&out->destination, v6, a + alen, dst_port);
  }
  return (int)total;
}

int wsev__proxy_header_parse(const uint8_t *p, size_t n, wsev_proxy_header *out) {
  if (n == 0) return MORE;
  if (p[0] == 'P') return parse_v1(p, n, out);
  if (p[0] == v2_signature[0]) return parse_v2(p, n, out);
  return WSEV_PROXY_INVALID;
}
