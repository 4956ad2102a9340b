/* Unit tests for lib/proxy_protocol.h: PROXY protocol headers, versions 1 and 2. Every
 * valid form with the addresses it yields and the exact length consumed (with the
 * client's bytes after it), every prefix of it asking for more, and every malformed
 * kind rejected at the very byte that breaks it (no sooner, no later). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>

#include "proxy_protocol.h"
#include "test.h"

static const uint8_t SIG[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
static const char TAIL[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";

static uint8_t buf[WSEV_PROXY_HEADER_MAX + 64];

/* The size of a v2 TCP4 address block. */
enum { A4 = 12 };

/* A header whose bytes p[0..len) must be accepted whole: every shorter prefix asks
 * for more without touching *out, the whole and the whole plus the client's first
 * bytes both return len. *out gets the result. */
static void valid(const char *name, const uint8_t *p, size_t len, wsev_proxy_header *out) {
  TEST_CASE(name);
  uint8_t *copy = malloc(len + sizeof TAIL);
  if (!copy) abort();
  memcpy(copy, p, len);
  memcpy(copy + len, TAIL, sizeof TAIL);
  wsev_proxy_header h, untouched;
  memset(&untouched, 0xAA, sizeof untouched);
  for (size_t k = 0; k < len; k++) {
    h = untouched;
    int r = wsev__proxy_header_parse(copy, k, &h);
    CHECK_EQ_INTF(r, 0, "prefix of %zu bytes", k);
    CHECKF(memcmp(&h, &untouched, sizeof h) == 0, "out written for a prefix of %zu", k);
  }
  CHECK_EQ_INT(wsev__proxy_header_parse(copy, len, out), (int)len);
  memset(&h, 0, sizeof h);
  CHECK_EQ_INT(wsev__proxy_header_parse(copy, len + sizeof TAIL - 1, &h), (int)len);
  CHECK(memcmp(&h, out, sizeof h) == 0);
  free(copy);
}

static void valid_str(const char *name, const char *line, wsev_proxy_header *out) {
  valid(name, (const uint8_t *)line, strlen(line), out);
}

/* Bytes p[0..len) that become invalid at byte `at`: every prefix up to `at` bytes
 * asks for more, every longer one (up to len) is invalid. */
static void invalid(const char *name, const uint8_t *p, size_t len, size_t at) {
  TEST_CASE(name);
  for (size_t k = 0; k <= len; k++) {
    wsev_proxy_header h;
    int r = wsev__proxy_header_parse(p, k, &h);
    CHECK_EQ_INTF(r, k <= at ? 0 : WSEV_PROXY_INVALID, "prefix of %zu bytes, bad byte %zu", k, at);
  }
}

/* invalid() for a text line. */
static void invalid_str(const char *name, const char *line, size_t at) {
  invalid(name, (const uint8_t *)line, strlen(line), at);
}

static void check_addr(const struct sockaddr_storage *ss, const char *ip, unsigned port) {
  uint8_t want[16];
  if (strchr(ip, ':')) {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
    CHECK_EQ_INT(ss->ss_family, AF_INET6);
    CHECK(inet_pton(AF_INET6, ip, want) == 1);
    CHECK_EQ_MEM(&a->sin6_addr, want, 16);
    CHECK_EQ_UINT(ntohs(a->sin6_port), port);
  } else {
    const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
    CHECK_EQ_INT(ss->ss_family, AF_INET);
    CHECK(inet_pton(AF_INET, ip, want) == 1);
    CHECK_EQ_MEM(&a->sin_addr, want, 4);
    CHECK_EQ_UINT(ntohs(a->sin_port), port);
  }
}

static void check_local(const wsev_proxy_header *h) {
  CHECK_EQ_INT(h->local, 1);
  CHECK_EQ_INT(h->source.ss_family, AF_UNSPEC);
  CHECK_EQ_INT(h->destination.ss_family, AF_UNSPEC);
}

/* ---- version 2 builders ---- */

static size_t v2(uint8_t *b, uint8_t ver_cmd, uint8_t fam, size_t len_field, const uint8_t *body,
                 size_t body_len) {
  memcpy(b, SIG, 12);
  b[12] = ver_cmd;
  b[13] = fam;
  b[14] = (uint8_t)(len_field >> 8);
  b[15] = (uint8_t)len_field;
  if (body_len) memcpy(b + 16, body, body_len);
  return 16 + body_len;
}

static size_t addrs(uint8_t *b, const char *src, const char *dst, unsigned sport, unsigned dport) {
  int af = strchr(src, ':') ? AF_INET6 : AF_INET;
  size_t alen = af == AF_INET6 ? 16 : 4;
  if (inet_pton(af, src, b) != 1 || inet_pton(af, dst, b + alen) != 1) abort();
  b[2 * alen] = (uint8_t)(sport >> 8);
  b[2 * alen + 1] = (uint8_t)sport;
  b[2 * alen + 2] = (uint8_t)(dport >> 8);
  b[2 * alen + 3] = (uint8_t)dport;
  return 2 * alen + 4;
}

static size_t tlv(uint8_t *b, uint8_t type, const void *value, size_t len) {
  b[0] = type;
  b[1] = (uint8_t)(len >> 8);
  b[2] = (uint8_t)len;
  if (len) memcpy(b + 3, value, len);
  return 3 + len;
}

/* ---- version 1 ---- */

static void v1_valid(void) {
  wsev_proxy_header h;
  valid_str("v1 spec example", "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n", &h);
  CHECK_EQ_INT(h.local, 0);
  check_addr(&h.source, "192.168.0.1", 56324);
  check_addr(&h.destination, "192.168.0.11", 443);

  valid_str("v1 longest TCP4", "PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n", &h);
  check_addr(&h.source, "255.255.255.255", 65535);
  check_addr(&h.destination, "255.255.255.255", 65535);

  valid_str("v1 zeros", "PROXY TCP4 0.0.0.0 10.0.0.1 0 0\r\n", &h);
  check_addr(&h.source, "0.0.0.0", 0);
  check_addr(&h.destination, "10.0.0.1", 0);

  valid_str("v1 TCP6", "PROXY TCP6 2001:db8::1 ::1 4711 443\r\n", &h);
  CHECK_EQ_INT(h.local, 0);
  check_addr(&h.source, "2001:db8::1", 4711);
  check_addr(&h.destination, "::1", 443);

  const char *longest = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                        "FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFE 65535 65535\r\n";
  CHECK_EQ_INT(strlen(longest), 104);
  valid_str("v1 longest TCP6", longest, &h);
  check_addr(&h.source, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535);
  check_addr(&h.destination, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", 65535);

  valid_str("v1 TCP6 v4-mapped", "PROXY TCP6 ::ffff:1.2.3.4 2001:db8:0:0:0:0:0:2 1 2\r\n", &h);
  check_addr(&h.source, "::ffff:1.2.3.4", 1);
  check_addr(&h.destination, "2001:db8::2", 2);

  valid_str("v1 UNKNOWN short", "PROXY UNKNOWN\r\n", &h);
  check_local(&h);
  valid_str("v1 UNKNOWN with addresses", "PROXY UNKNOWN 1.2.3.4 5.6.7.8 1 2\r\n", &h);
  check_local(&h);
  valid_str("v1 UNKNOWN anything", "PROXY UNKNOWN \x01 whatever \xff\r\n", &h);
  check_local(&h);
  const char *worst = "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                      "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
  CHECK_EQ_INT(strlen(worst), 107);
  valid_str("v1 UNKNOWN 107 bytes", worst, &h);
  check_local(&h);
}

static void v1_invalid(void) {
  /* Where each goes wrong is given by the byte's index in the line. */
  invalid_str("v1 double space", "PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n", 6);
  invalid_str("v1 lower case", "PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", 6);
  invalid_str("v1 TCP5", "PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", 9);
  /* 'U' could still begin UNKNOWN. */
  invalid_str("v1 UDP4", "PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", 7);
  invalid_str("v1 tab", "PROXY\tTCP4 1.2.3.4 5.6.7.8 1 2\r\n", 5);
  invalid_str("v1 PROXZ", "PROXZ TCP4", 4);
  invalid_str("v1 no space after TCP4", "PROXY TCP41.2.3.4", 10);
  invalid_str("v1 empty source", "PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n", 11);
  invalid_str("v1 double space before port", "PROXY TCP4 1.2.3.4 5.6.7.8  1 2\r\n", 27);
  invalid_str("v1 leading zero octet", "PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", 12);
  invalid_str("v1 leading zero inner octet", "PROXY TCP4 1.2.3.4 5.06.7.8 1 2\r\n", 22);
  invalid_str("v1 octet 256", "PROXY TCP4 256.2.3.4 5.6.7.8 1 2\r\n", 13);
  invalid_str("v1 octet 1000", "PROXY TCP4 100.2.3.1000 5.6.7.8 1 2\r\n", 22);
  invalid_str("v1 three octets", "PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", 16);
  invalid_str("v1 five octets", "PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n", 18);
  invalid_str("v1 empty octet", "PROXY TCP4 1..3.4 5.6.7.8 1 2\r\n", 13);
  invalid_str("v1 trailing dot", "PROXY TCP4 1.2.3. 5.6.7.8 1 2\r\n", 17);
  invalid_str("v1 IPv6 in TCP4", "PROXY TCP4 ::1 ::1 1 2\r\n", 11);
  invalid_str("v1 IPv4 in TCP6", "PROXY TCP6 1.2.3.4 ::1 1 2\r\n", 18);
  invalid_str("v1 IPv4 destination in TCP6", "PROXY TCP6 ::1 1.2.3.4 1 2\r\n", 22);
  invalid_str("v1 IPv6 two ::", "PROXY TCP6 1::2::3 ::1 1 2\r\n", 18);
  invalid_str("v1 IPv6 not hex", "PROXY TCP6 2001:db8::g ::1 1 2\r\n", 21);
  invalid_str("v1 IPv6 zone id", "PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", 18);
  invalid_str("v1 IPv6 40 chars", "PROXY TCP6 0000:0000:0000:0000:0000:0000:0000:00001 ::1 1 2\r\n",
              11 + 39);
  invalid_str("v1 port leading zero", "PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", 28);
  invalid_str("v1 port 00", "PROXY TCP4 1.2.3.4 5.6.7.8 1 00\r\n", 30);
  invalid_str("v1 port 65536", "PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", 31);
  invalid_str("v1 port 6 digits", "PROXY TCP4 1.2.3.4 5.6.7.8 1 100000\r\n", 34);
  invalid_str("v1 port sign", "PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n", 27);
  invalid_str("v1 port hex", "PROXY TCP4 1.2.3.4 5.6.7.8 1 0x50\r\n", 30);
  invalid_str("v1 missing port", "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", 28);
  invalid_str("v1 extra field", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", 30);
  invalid_str("v1 space before CRLF", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", 30);
  invalid_str("v1 LF only", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\nGET", 30);
  invalid_str("v1 CR only", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rGET", 31);
  invalid_str("v1 CR CR LF", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n", 31);
  invalid_str("v1 UNKNOWNX", "PROXY UNKNOWNX\r\n", 13);
  invalid_str("v1 UNKNOWN LF", "PROXY UNKNOWN\n", 13);
  invalid_str("v1 UNKNOWN bare LF inside", "PROXY UNKNOWN foo\nbar\r\n", 17);
  invalid_str("v1 UNKNOWN bare CR", "PROXY UNKNOWN\rX", 14);
  invalid_str("v1 UNKNOWN bare CR inside", "PROXY UNKNOWN a\rb\r\n", 16);

  /* 107 bytes at most with the CRLF: 108 is refused at its last CR... */
  char line[160];
  memcpy(line, "PROXY UNKNOWN ", 14);
  memset(line + 14, 'x', 92);
  memcpy(line + 106, "\r\n", 3);
  invalid("v1 UNKNOWN 108 bytes", (const uint8_t *)line, 108, 106);
  /* ...and 107 bytes without a CR at byte 107 (index 106). */
  memset(line + 14, 'x', 120);
  invalid("v1 UNKNOWN no CRLF", (const uint8_t *)line, 130, 106);
  /* A CR as the 107th byte has no room left for its LF. */
  memset(line + 14, 'x', 92);
  line[106] = '\r';
  invalid("v1 UNKNOWN CR at 107", (const uint8_t *)line, 107, 106);
  /* The 107-byte one just fits. */
  memcpy(line + 105, "\r\n", 2);
  wsev_proxy_header h;
  valid("v1 UNKNOWN 107 x", (const uint8_t *)line, 107, &h);
  check_local(&h);
}

/* The connection does not start with a PROXY header at all: refused at its first
 * byte that cannot begin one. */
static void not_a_header(void) {
  wsev_proxy_header h;
  invalid_str("HTTP GET", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 0);
  invalid_str("HTTP POST", "POST / HTTP/1.1\r\n", 1);
  invalid_str("HTTP PUT", "PUT / HTTP/1.1\r\n", 1);
  invalid_str("HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 2);
  const uint8_t hello[] = {0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03};
  invalid("TLS ClientHello", hello, sizeof hello, 0);
  invalid("NUL", (const uint8_t *)"\0", 1, 0);
  invalid_str("CRLF then HTTP", "\r\nGET / HTTP/1.1\r\n", 2);
  invalid_str("v2 signature as text", "\r\n\r\nGET", 4);
  CHECK_EQ_INT(wsev__proxy_header_parse((const uint8_t *)"", 0, &h), 0);
}

/* ---- version 2 ---- */

static void v2_valid(void) {
  wsev_proxy_header h;
  uint8_t body[512];
  size_t n, len;

  n = addrs(body, "1.2.3.4", "10.0.0.1", 5678, 443);
  len = v2(buf, 0x21, 0x11, n, body, n);
  CHECK_EQ_INT(len, 28);
  valid("v2 TCP4", buf, len, &h);
  CHECK_EQ_INT(h.local, 0);
  check_addr(&h.source, "1.2.3.4", 5678);
  check_addr(&h.destination, "10.0.0.1", 443);

  n = addrs(body, "2001:db8::1", "2001:db8::ffff", 65535, 0);
  len = v2(buf, 0x21, 0x21, n, body, n);
  CHECK_EQ_INT(len, 52);
  valid("v2 TCP6", buf, len, &h);
  CHECK_EQ_INT(h.local, 0);
  check_addr(&h.source, "2001:db8::1", 65535);
  check_addr(&h.destination, "2001:db8::ffff", 0);

  /* DGRAM: the client reached the proxy over UDP (QUIC); its address is as good. */
  n = addrs(body, "192.0.2.7", "192.0.2.8", 4433, 443);
  len = v2(buf, 0x21, 0x12, n, body, n);
  valid("v2 UDP4", buf, len, &h);
  CHECK_EQ_INT(h.local, 0);
  check_addr(&h.source, "192.0.2.7", 4433);
  n = addrs(body, "2001:db8::7", "2001:db8::8", 4433, 443);
  len = v2(buf, 0x21, 0x22, n, body, n);
  valid("v2 UDP6", buf, len, &h);
  check_addr(&h.source, "2001:db8::7", 4433);
  check_addr(&h.destination, "2001:db8::8", 443);

  /* LOCAL: the proxy's own connection (a health check), whatever block follows. */
  len = v2(buf, 0x20, 0x00, 0, NULL, 0);
  valid("v2 LOCAL", buf, len, &h);
  check_local(&h);
  n = addrs(body, "1.2.3.4", "10.0.0.1", 5678, 443);
  len = v2(buf, 0x20, 0x11, n, body, n);
  valid("v2 LOCAL with TCP4 addresses", buf, len, &h);
  check_local(&h);
  memset(body, 0xFF, 7);
  len = v2(buf, 0x20, 0x21, 7, body, 7);
  valid("v2 LOCAL with a short block", buf, len, &h);
  check_local(&h);

  /* PROXY with UNSPEC: use the real peer; the block is skipped unread. */
  len = v2(buf, 0x21, 0x00, 0, NULL, 0);
  valid("v2 PROXY UNSPEC", buf, len, &h);
  check_local(&h);
  len = v2(buf, 0x21, 0x00, 5, body, 5);
  valid("v2 PROXY UNSPEC with 5 bytes", buf, len, &h);
  check_local(&h);
  len = v2(buf, 0x21, 0x10, 0, NULL, 0);
  valid("v2 PROXY INET UNSPEC transport", buf, len, &h);
  check_local(&h);
  len = v2(buf, 0x21, 0x02, 0, NULL, 0);
  valid("v2 PROXY UNSPEC family DGRAM", buf, len, &h);
  check_local(&h);

  /* AF_UNIX: no IP address to report. */
  memset(body, 0, 216);
  memcpy(body, "/run/client.sock", 16);
  len = v2(buf, 0x21, 0x31, 216, body, 216);
  valid("v2 UNIX stream", buf, len, &h);
  check_local(&h);
  len = v2(buf, 0x21, 0x32, 216, body, 216);
  valid("v2 UNIX dgram", buf, len, &h);
  check_local(&h);
  n = 216 + tlv(body + 216, 0x04, NULL, 0);
  len = v2(buf, 0x21, 0x31, n, body, n);
  valid("v2 UNIX with a TLV", buf, len, &h);
  check_local(&h);

  /* TLVs after the addresses are skipped. */
  uint8_t unique[128], crc[4] = {1, 2, 3, 4},
                       ssl[] = {0x01, 0, 0, 0, 0, 0x21, 0, 7, 'T', 'L', 'S', 'v', '1', '.', '3'};
  memset(unique, 0x5A, sizeof unique);
  n = addrs(body, "198.51.100.1", "203.0.113.9", 1234, 8443);
  n += tlv(body + n, 0x01, "h2", 2);
  n += tlv(body + n, 0x02, "example.com", 11);
  n += tlv(body + n, 0x03, crc, 4); /* not verified */
  n += tlv(body + n, 0x04, NULL, 0);
  n += tlv(body + n, 0x05, unique, sizeof unique);
  n += tlv(body + n, 0x20, ssl, sizeof ssl);
  n += tlv(body + n, 0xEA, "vpce-0123456789abcdef", 21);
  len = v2(buf, 0x21, 0x11, n, body, n);
  valid("v2 TCP4 with TLVs", buf, len, &h);
  CHECK_EQ_INT(h.local, 0);
  check_addr(&h.source, "198.51.100.1", 1234);
  check_addr(&h.destination, "203.0.113.9", 8443);

  n = addrs(body, "2001:db8::1", "::1", 1, 2);
  n += tlv(body + n, 0xE0, "\x00\x01\x02\x03\x04\x05\x06\x07", 8);
  len = v2(buf, 0x21, 0x21, n, body, n);
  valid("v2 TCP6 with a TLV", buf, len, &h);
  check_addr(&h.source, "2001:db8::1", 1);

  /* The longest accepted: one TLV fills the header to WSEV_PROXY_HEADER_MAX. */
  static uint8_t big[WSEV_PROXY_HEADER_MAX];
  n = addrs(big, "1.2.3.4", "5.6.7.8", 9, 10);
  size_t value = WSEV_PROXY_HEADER_MAX - 16 - n - 3;
  memset(big + n + 3, 0x42, value);
  big[n] = 0xE1;
  big[n + 1] = (uint8_t)(value >> 8);
  big[n + 2] = (uint8_t)value;
  n += 3 + value;
  len = v2(buf, 0x21, 0x11, n, big, n);
  CHECK_EQ_INT(len, WSEV_PROXY_HEADER_MAX);
  valid("v2 longest", buf, len, &h);
  check_addr(&h.source, "1.2.3.4", 9);

  /* Just over: refused when the length field is complete (byte 16). */
  buf[14] = (uint8_t)((WSEV_PROXY_HEADER_MAX - 15) >> 8);
  buf[15] = (uint8_t)(WSEV_PROXY_HEADER_MAX - 15);
  invalid("v2 one byte too long", buf, 64, 15);
  len = v2(buf, 0x21, 0x11, 0xFFFF, big, 12);
  invalid("v2 length 65535", buf, len, 15);
  len = v2(buf, 0x20, 0x00, 0xFFFF, NULL, 0);
  invalid("v2 LOCAL length 65535", buf, len, 15);
}

static void v2_invalid(void) {
  uint8_t body[256];
  size_t n = addrs(body, "1.2.3.4", "10.0.0.1", 5678, 443), len;
  char name[64];

  /* Each byte of the signature. */
  for (size_t i = 0; i < 12; i++) {
    len = v2(buf, 0x21, 0x11, n, body, n);
    buf[i] ^= 0x80;
    snprintf(name, sizeof name, "v2 signature byte %zu", i);
    invalid(name, buf, len, i);
  }
  /* Version and command. */
  static const uint8_t bad_ver_cmd[] = {0x11, 0x01, 0x31, 0xF1, 0x22, 0x2F, 0x12, 0x10};
  for (size_t i = 0; i < sizeof bad_ver_cmd; i++) {
    len = v2(buf, bad_ver_cmd[i], 0x11, n, body, n);
    snprintf(name, sizeof name, "v2 version/command 0x%02X", bad_ver_cmd[i]);
    invalid(name, buf, len, 12);
  }
  /* Family and transport values the spec leaves unassigned, for both commands. */
  static const uint8_t bad_fam[] = {0x41, 0x13, 0x03, 0xF1, 0x1F, 0x33};
  for (size_t i = 0; i < sizeof bad_fam; i++) {
    for (uint8_t cmd = 0x20; cmd <= 0x21; cmd++) {
      len = v2(buf, cmd, bad_fam[i], n, body, n);
      snprintf(name, sizeof name, "v2 family/transport 0x%02X cmd 0x%02X", bad_fam[i], cmd);
      invalid(name, buf, len, 13);
    }
  }
  /* A length that does not cover the addresses: known at the length's second byte. */
  len = v2(buf, 0x21, 0x11, 11, body, 11);
  invalid("v2 TCP4 length 11", buf, len, 15);
  len = v2(buf, 0x21, 0x12, 0, NULL, 0);
  invalid("v2 UDP4 length 0", buf, len, 15);
  n = addrs(body, "::1", "::2", 1, 2);
  len = v2(buf, 0x21, 0x21, 35, body, 35);
  invalid("v2 TCP6 length 35", buf, len, 15);
  len = v2(buf, 0x21, 0x21, 12, body, 12);
  invalid("v2 TCP6 with a TCP4 length", buf, len, 15);
  memset(body, 0, sizeof body);
  len = v2(buf, 0x21, 0x31, 215, body, 215);
  invalid("v2 UNIX length 215", buf, len, 15);

  /* TLVs that do not nest within the stated length. */
  /* (A constant length, so that gcc can follow the offsets.) */
  CHECK_EQ_INT(addrs(body, "1.2.3.4", "10.0.0.1", 5678, 443), A4);
  len = v2(buf, 0x21, 0x11, A4 + 1, body, A4 + 1);
  invalid("v2 1 byte after the addresses", buf, len, 15);
  len = v2(buf, 0x21, 0x11, A4 + 2, body, A4 + 2);
  invalid("v2 2 bytes after the addresses", buf, len, 15);
  size_t m = A4 + tlv(body + A4, 0x01, "h2", 2);
  body[m - 3] = 3; /* the value length says 3 where 2 remain */
  len = v2(buf, 0x21, 0x11, m, body, m);
  invalid("v2 TLV overruns the header", buf, len, 16 + A4 + 2);
  m = A4 + tlv(body + A4, 0x01, "h2", 2);
  m += tlv(body + m, 0x04, "abcd", 4);
  body[m - 5] = 5;
  len = v2(buf, 0x21, 0x11, m, body, m);
  invalid("v2 second TLV overruns", buf, len, 16 + A4 + 5 + 2);
  m = A4 + tlv(body + A4, 0x01, "h2", 2);
  body[A4 + 2] = 0; /* a TLV of length 0, then 2 bytes that cannot be a TLV */
  len = v2(buf, 0x21, 0x11, m, body, m);
  invalid("v2 TLV leaves 2 bytes", buf, len, 16 + A4 + 2);
  m = A4 + tlv(body + A4, 0x01, NULL, 0);
  body[A4 + 1] = 0xFF; /* 65280 + 0 */
  len = v2(buf, 0x21, 0x11, m, body, m);
  invalid("v2 TLV length far beyond", buf, len, 16 + A4 + 2);
}

/* Every value of the version/command byte and of the family/transport byte, in a
 * header with a TCP4-sized address block: the verdict and locality the rules give. */
static void v2_every_byte(void) {
  uint8_t body[64];
  size_t n = addrs(body, "1.2.3.4", "10.0.0.1", 1, 2);
  size_t len = v2(buf, 0x21, 0x11, n, body, n);
  TEST_CASE("v2 every version/command byte");
  for (unsigned b = 0; b < 256; b++) {
    wsev_proxy_header h;
    buf[12] = (uint8_t)b;
    int want = b == 0x21 ? (int)len : b == 0x20 ? (int)len : WSEV_PROXY_INVALID;
    CHECK_EQ_INTF(wsev__proxy_header_parse(buf, len, &h), want, "byte 0x%02X", b);
    if (b == 0x20) CHECK_EQ_INT(h.local, 1);
  }
  buf[12] = 0x21;
  TEST_CASE("v2 every family/transport byte");
  for (unsigned b = 0; b < 256; b++) {
    wsev_proxy_header h;
    buf[13] = (uint8_t)b;
    unsigned fam = b >> 4, tr = b & 0xF;
    int want;
    if (fam > 3 || tr > 2)
      want = WSEV_PROXY_INVALID;
    else if (fam == 2 && tr != 0)
      want = WSEV_PROXY_INVALID; /* 12 bytes < 36 */
    else if (fam == 3 && tr != 0)
      want = WSEV_PROXY_INVALID; /* 12 bytes < 216 */
    else
      want = (int)len;
    CHECK_EQ_INTF(wsev__proxy_header_parse(buf, len, &h), want, "byte 0x%02X", b);
    if (want > 0) CHECK_EQ_INTF(h.local, !(fam == 1 && tr != 0), "byte 0x%02X", b);
  }
}

int main(void) {
  v1_valid();
  v1_invalid();
  not_a_header();
  v2_valid();
  v2_invalid();
  v2_every_byte();
  return TEST_REPORT();
}
