/* Unit tests for lib/frame.h: RFC 6455 section 5.2 frame headers, masking (5.3),
 * protocol checks (5.4, 5.5), close codes and close payloads (5.5.1, 7.4).
 *
 * Expected values come from hand-written byte arrays and from naive reference
 * implementations written here from the RFC, never from the code under test. */
#include <stdlib.h>

#include "frame.h"
#include "test.h"

/* ------------------------------------------------------------- references ---- */

/* Header size and fields decoded by hand from RFC 6455 section 5.2. Returns the size,
 * 0 when incomplete, -1 when the 64-bit length has its MSB set. */
#include "../common/frame-reference.h"

/* ------------------------------------------------------------------ parse ---- */

/* Parse p[0..n) and compare with expectations; also: every proper prefix returns 0
 * (each given as an exact-size heap copy so that an overread shows under ASan), and
 * extra bytes after the header change nothing. */
static void expect_header(const char *name, const uint8_t *p, size_t n, int size, int fin, int rsv,
                          int op, int masked, const uint8_t *mask, uint64_t len) {
  TEST_CASE(name);
  uint8_t *copy = malloc(n);
  memcpy(copy, p, n);
  wsev_frame_header h;
  memset(&h, 0xA5, sizeof h);
  int r = wsev__frame_parse_header(copy, n, &h);
  CHECK_EQ_INTF(r, size, "%s [%s]", name, test_hex_(p, n));
  if (r == size && size > 0) {
    CHECK_EQ_INTF(h.fin, fin, "%s fin", name);
    CHECK_EQ_INTF(h.rsv, rsv, "%s rsv", name);
    CHECK_EQ_INTF(h.opcode, op, "%s opcode", name);
    CHECK_EQ_INTF(h.masked, masked, "%s masked", name);
    if (masked) CHECK_EQ_MEM(h.mask, mask, 4);
    CHECK_EQ_UINT(h.payload_len, len);
  }
  free(copy);
  if (size > 0) {
    for (size_t k = 0; k < (size_t)size; k++) {
      uint8_t *pre = malloc(k ? k : 1);
      memcpy(pre, p, k);
      CHECK_EQ_INTF(wsev__frame_parse_header(pre, k, &h), 0, "%s prefix of %zu bytes", name, k);
      free(pre);
    }
    uint8_t more[64];
    memcpy(more, p, (size_t)size);
    memset(more + size, 0xFF, sizeof more - (size_t)size);
    CHECK_EQ_INTF(wsev__frame_parse_header(more, sizeof more, &h), size, "%s with trailing bytes",
                  name);
  }
}

static void test_parse_examples(void) {
  static const uint8_t m[4] = {0x37, 0xFA, 0x21, 0x3D};
  /* RFC 6455 section 5.7 examples */
  {
    const uint8_t b[] = {0x81, 0x05, 'H', 'e', 'l', 'l', 'o'};
    expect_header("5.7 unmasked Hello", b, sizeof b, 2, 1, 0, 1, 0, NULL, 5);
  }
  {
    const uint8_t b[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
    expect_header("5.7 masked Hello", b, sizeof b, 6, 1, 0, 1, 1, m, 5);
  }
  {
    const uint8_t b[] = {0x01, 0x03, 'H', 'e', 'l'};
    expect_header("5.7 first fragment", b, sizeof b, 2, 0, 0, 1, 0, NULL, 3);
  }
  {
    const uint8_t b[] = {0x80, 0x02, 'l', 'o'};
    expect_header("5.7 last fragment", b, sizeof b, 2, 1, 0, 0, 0, NULL, 2);
  }
  {
    const uint8_t b[] = {0x89, 0x05, 'H', 'e', 'l', 'l', 'o'};
    expect_header("5.7 ping", b, sizeof b, 2, 1, 0, 9, 0, NULL, 5);
  }
  {
    const uint8_t b[] = {0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
    expect_header("5.7 masked pong", b, sizeof b, 6, 1, 0, 0xA, 1, m, 5);
  }
  {
    const uint8_t b[] = {0x82, 0x7E, 0x01, 0x00};
    expect_header("5.7 256 bytes binary", b, sizeof b, 4, 1, 0, 2, 0, NULL, 256);
  }
  {
    const uint8_t b[] = {0x82, 0x7F, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00};
    expect_header("5.7 64KiB binary", b, sizeof b, 10, 1, 0, 2, 0, NULL, 65536);
  }
  /* 7-bit boundaries */
  {
    const uint8_t b[] = {0x82, 0x00};
    expect_header("len 0", b, sizeof b, 2, 1, 0, 2, 0, NULL, 0);
  }
  {
    const uint8_t b[] = {0x82, 0x7D};
    expect_header("len 125", b, sizeof b, 2, 1, 0, 2, 0, NULL, 125);
  }
  {
    const uint8_t b[] = {0x82, 0xFD, 1, 2, 3, 4};
    const uint8_t k[] = {1, 2, 3, 4};
    expect_header("masked len 125", b, sizeof b, 6, 1, 0, 2, 1, k, 125);
  }
  /* 16-bit form */
  {
    const uint8_t b[] = {0x82, 0x7E, 0x00, 0x7E};
    expect_header("len 126", b, sizeof b, 4, 1, 0, 2, 0, NULL, 126);
  }
  {
    const uint8_t b[] = {0x82, 0x7E, 0xFF, 0xFF};
    expect_header("len 65535", b, sizeof b, 4, 1, 0, 2, 0, NULL, 65535);
  }
  {
    const uint8_t b[] = {0x82, 0x7E, 0x12, 0x34};
    expect_header("len 0x1234 (byte order)", b, sizeof b, 4, 1, 0, 2, 0, NULL, 0x1234);
  }
  {
    const uint8_t b[] = {0x82, 0xFE, 0xFF, 0xFF, 0xDE, 0xAD, 0xBE, 0xEF};
    const uint8_t k[] = {0xDE, 0xAD, 0xBE, 0xEF};
    expect_header("masked len 65535", b, sizeof b, 8, 1, 0, 2, 1, k, 65535);
  }
  /* 64-bit form */
  {
    const uint8_t b[] = {0x82, 0x7F, 0, 0, 0, 1, 0, 0, 0, 0};
    expect_header("len 2^32", b, sizeof b, 10, 1, 0, 2, 0, NULL, 1ull << 32);
  }
  {
    const uint8_t b[] = {0x82, 0x7F, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08};
    expect_header("len byte order 64", b, sizeof b, 10, 1, 0, 2, 0, NULL, 0x0102030405060708ull);
  }
  {
    const uint8_t b[] = {0x82, 0x7F, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF};
    expect_header("len 2^63-1", b, sizeof b, 10, 1, 0, 2, 0, NULL, 0x7FFFFFFFFFFFFFFFull);
  }
  {
    const uint8_t b[] = {0x82, 0xFF, 0, 0, 0, 0, 0, 1, 0, 0, 0xA1, 0xB2, 0xC3, 0xD4};
    const uint8_t k[] = {0xA1, 0xB2, 0xC3, 0xD4};
    expect_header("masked len 65536 (14-byte header)", b, sizeof b, 14, 1, 0, 2, 1, k, 65536);
  }
  /* non-minimal encodings are accepted */
  {
    const uint8_t b[] = {0x81, 0x7E, 0x00, 0x05};
    expect_header("non-minimal 16-bit 5", b, sizeof b, 4, 1, 0, 1, 0, NULL, 5);
  }
  {
    const uint8_t b[] = {0x81, 0x7E, 0x00, 0x00};
    expect_header("non-minimal 16-bit 0", b, sizeof b, 4, 1, 0, 1, 0, NULL, 0);
  }
  {
    const uint8_t b[] = {0x81, 0x7F, 0, 0, 0, 0, 0, 0, 0, 5};
    expect_header("non-minimal 64-bit 5", b, sizeof b, 10, 1, 0, 1, 0, NULL, 5);
  }
  {
    const uint8_t b[] = {0x81, 0x7F, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};
    expect_header("non-minimal 64-bit 65535", b, sizeof b, 10, 1, 0, 1, 0, NULL, 65535);
  }
  {
    const uint8_t b[] = {0x81, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0, 9, 8, 7, 6};
    const uint8_t k[] = {9, 8, 7, 6};
    expect_header("non-minimal 64-bit 0 masked", b, sizeof b, 14, 1, 0, 1, 1, k, 0);
  }
  /* fin / rsv / opcode bits */
  {
    const uint8_t b[] = {0x70, 0x00};
    expect_header("rsv 7 fin 0 cont", b, sizeof b, 2, 0, 7, 0, 0, NULL, 0);
  }
  {
    const uint8_t b[] = {0xC1, 0x00};
    expect_header("rsv1", b, sizeof b, 2, 1, 4, 1, 0, NULL, 0);
  }
  {
    const uint8_t b[] = {0xA1, 0x00};
    expect_header("rsv2", b, sizeof b, 2, 1, 2, 1, 0, NULL, 0);
  }
  {
    const uint8_t b[] = {0x91, 0x00};
    expect_header("rsv3", b, sizeof b, 2, 1, 1, 1, 0, NULL, 0);
  }
  {
    const uint8_t b[] = {0x8F, 0x00};
    expect_header("opcode F", b, sizeof b, 2, 1, 0, 0xF, 0, NULL, 0);
  }
  {
    const uint8_t b[] = {0x83, 0x00};
    expect_header("opcode 3", b, sizeof b, 2, 1, 0, 3, 0, NULL, 0);
  }
}

static void test_parse_msb(void) {
  TEST_CASE("64-bit length MSB");
  wsev_frame_header h;
  for (unsigned top = 0; top < 256; top++) {
    uint8_t b[14] = {0x82, 0x7F, (uint8_t)top, 0, 0, 0, 0, 0, 0, 0};
    int r = wsev__frame_parse_header(b, 10, &h);
    if (top & 0x80) {
      CHECK_EQ_INTF(r, -1, "first length byte %02X", top);
    } else {
      CHECK_EQ_INTF(r, 10, "first length byte %02X", top);
      if (r == 10) CHECK_EQ_UINT(h.payload_len, (uint64_t)top << 56);
    }
    /* masked: with the whole header -1; a header still missing mask bytes may
     * report either "more" or the error, but never success */
    b[1] = 0xFF;
    r = wsev__frame_parse_header(b, 14, &h);
    CHECK_EQ_INTF(r, (top & 0x80) ? -1 : 14, "masked, first length byte %02X", top);
    for (size_t k = 10; k < 14; k++) {
      r = wsev__frame_parse_header(b, k, &h);
      if (top & 0x80)
        CHECKF(r == 0 || r == -1, "masked MSB set, %zu bytes: %d", k, r);
      else
        CHECK_EQ_INTF(r, 0, "masked, %zu bytes", k);
    }
  }
  {
    const uint8_t b[] = {0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0};
    CHECK_EQ_INT(wsev__frame_parse_header(b, sizeof b, &h), -1);
    const uint8_t c[] = {0x82, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF};
    CHECK_EQ_INT(wsev__frame_parse_header(c, sizeof c, &h), -1);
  }
}

/* Every first byte x every second byte, against the reference decoder. */
static void test_parse_sweep(void) {
  TEST_CASE("parse sweep");
  long bad = 0;
  for (unsigned b0 = 0; b0 < 256; b0++)
    for (unsigned b1 = 0; b1 < 256; b1++) {
      uint8_t b[14];
      b[0] = (uint8_t)b0, b[1] = (uint8_t)b1;
      for (int i = 2; i < 14; i++)
        b[i] = (uint8_t)(0x11 * i + b0 + b1) & 0x7F;
      wsev_frame_header want, got;
      memset(&want, 0, sizeof want);
      memset(&got, 0, sizeof got);
      int rw = ref_parse(b, 14, &want);
      int rg = wsev__frame_parse_header(b, 14, &got);
      int ok = rw == rg;
      if (ok && rw > 0)
        ok = got.fin == want.fin && got.rsv == want.rsv && got.opcode == want.opcode &&
             got.masked == want.masked && got.payload_len == want.payload_len &&
             (!want.masked || memcmp(got.mask, want.mask, 4) == 0);
      if (!ok && bad++ < 5)
        CHECKF(0,
               "[%s]: got %d fin %u rsv %u op %u masked %u len %llu; expected %d fin "
               "%u rsv %u op %u masked %u len %llu",
               test_hex_(b, 14), rg, got.fin, got.rsv, got.opcode, got.masked,
               (unsigned long long)got.payload_len, rw, want.fin, want.rsv, want.opcode,
               want.masked, (unsigned long long)want.payload_len);
      /* every shorter prefix is incomplete */
      for (size_t k = 0; rw > 0 && k < (size_t)rw; k++) {
        int r = wsev__frame_parse_header(b, k, &got);
        if (r != 0 && bad++ < 5) CHECKF(0, "[%s] prefix %zu returned %d", test_hex_(b, 14), k, r);
      }
    }
  CHECKF(bad == 0, "%ld mismatches", bad);
}

/* ----------------------------------------------------------------- encode ---- */

static void expect_encode(const char *name, int fin, int op, uint64_t len, const uint8_t *mask,
                          const uint8_t *want, size_t wn) {
  TEST_CASE(name);
  uint8_t out[WSEV_FRAME_MAX_HEADER + 8];
  memset(out, 0xEE, sizeof out);
  size_t n = wsev__frame_encode_header(out, fin, op, len, mask);
  CHECK_EQ_UINT(n, wn);
  if (n == wn) CHECK_EQ_MEM(out, want, wn);
}

static void test_encode(void) {
  static const uint8_t k[4] = {0x37, 0xFA, 0x21, 0x3D};
  {
    const uint8_t w[] = {0x81, 0x05};
    expect_encode("text 5", 1, WSEV_OP_TEXT, 5, NULL, w, sizeof w);
  }
  {
    const uint8_t w[] = {0x81, 0x85, 0x37, 0xFA, 0x21, 0x3D};
    expect_encode("masked text 5", 1, WSEV_OP_TEXT, 5, k, w, sizeof w);
  }
  {
    const uint8_t w[] = {0x82, 0x00};
    expect_encode("binary 0", 1, WSEV_OP_BINARY, 0, NULL, w, sizeof w);
  }
  {
    const uint8_t w[] = {0x02, 0x7D};
    expect_encode("fin=0 binary 125", 0, WSEV_OP_BINARY, 125, NULL, w, sizeof w);
  }
  {
    const uint8_t w[] = {0x00, 0x7E, 0x00, 0x7E};
    expect_encode("cont 126", 0, WSEV_OP_CONT, 126, NULL, w, sizeof w);
  }
  {
    const uint8_t w[] = {0x82, 0x7E, 0xFF, 0xFF};
    expect_encode("binary 65535", 1, WSEV_OP_BINARY, 65535, NULL, w, sizeof w);
  }
  {
    const uint8_t w[] = {0x82, 0x7E, 0x01, 0x00};
    expect_encode("binary 256", 1, WSEV_OP_BINARY, 256, NULL, w, sizeof w);
  }
  {
    const uint8_t w[] = {0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0};
    expect_encode("binary 65536", 1, WSEV_OP_BINARY, 65536, NULL, w, sizeof w);
  }
  {
    const uint8_t w[] = {0x82, 0x7F, 0, 0, 0, 1, 0, 0, 0, 0};
    expect_encode("binary 2^32", 1, WSEV_OP_BINARY, 1ull << 32, NULL, w, sizeof w);
  }
  {
    const uint8_t w[] = {0x82, 0xFF, 0, 0, 0, 1, 0, 0, 0, 0, 0x37, 0xFA, 0x21, 0x3D};
    expect_encode("masked binary 2^32", 1, WSEV_OP_BINARY, 1ull << 32, k, w, sizeof w);
  }
  {
    const uint8_t w[] = {0x82, 0x7F, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08};
    expect_encode("64-bit byte order", 1, WSEV_OP_BINARY, 0x0102030405060708ull, NULL, w, sizeof w);
  }
  {
    const uint8_t w[] = {0x82, 0x7F, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF};
    expect_encode("2^63-1", 1, WSEV_OP_BINARY, 0x7FFFFFFFFFFFFFFFull, NULL, w, sizeof w);
  }
  {
    const uint8_t w[] = {0x88, 0x02};
    expect_encode("close 2", 1, WSEV_OP_CLOSE, 2, NULL, w, sizeof w);
  }
  {
    const uint8_t w[] = {0x89, 0x80, 0x37, 0xFA, 0x21, 0x3D};
    expect_encode("masked ping 0", 1, WSEV_OP_PING, 0, k, w, sizeof w);
  }
  {
    const uint8_t w[] = {0x8A, 0x7D};
    expect_encode("pong 125", 1, WSEV_OP_PONG, 125, NULL, w, sizeof w);
  }
  {
    const uint8_t w[] = {0x81, 0xFE, 0x00, 0x7E, 0x37, 0xFA, 0x21, 0x3D};
    expect_encode("masked text 126", 1, WSEV_OP_TEXT, 126, k, w, sizeof w);
  }
}

static size_t minimal_size(uint64_t len, int masked) {
  size_t s = len < 126 ? 2 : len < 65536 ? 4 : 10;
  return s + (masked ? 4 : 0);
}

static void test_encode_roundtrip(void) {
  TEST_CASE("encode/parse round trip");
  uint64_t lens[64];
  size_t nl = 0;
  static const uint64_t fixed[] = {0,
                                   1,
                                   2,
                                   124,
                                   125,
                                   126,
                                   127,
                                   128,
                                   255,
                                   256,
                                   1000,
                                   65534,
                                   65535,
                                   65536,
                                   65537,
                                   1u << 20,
                                   0xFFFFFFFFull,
                                   1ull << 32,
                                   (1ull << 32) + 1,
                                   1ull << 53,
                                   0x7FFFFFFFFFFFFFFEull,
                                   0x7FFFFFFFFFFFFFFFull};
  for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
    lens[nl++] = fixed[i];
  while (nl < 64)
    lens[nl++] = test_rand64() >> (1 + test_rand_below(63));
  static const int ops[] = {0, 1, 2, 8, 9, 10};
  for (size_t li = 0; li < nl; li++)
    for (size_t oi = 0; oi < 6; oi++)
      for (int fin = 0; fin <= 1; fin++)
        for (int masked = 0; masked <= 1; masked++) {
          uint8_t mask[4] = {(uint8_t)test_rand64(), (uint8_t)test_rand64(), (uint8_t)test_rand64(),
                             (uint8_t)test_rand64()};
          uint8_t out[WSEV_FRAME_MAX_HEADER];
          size_t n = wsev__frame_encode_header(out, fin, ops[oi], lens[li], masked ? mask : NULL);
          CHECKF(n == minimal_size(lens[li], masked), "len %llu masked %d: size %zu",
                 (unsigned long long)lens[li], masked, n);
          if (n > WSEV_FRAME_MAX_HEADER) continue;
          wsev_frame_header h, r;
          memset(&h, 0, sizeof h);
          int pr = wsev__frame_parse_header(out, n, &h);
          int rr = ref_parse(out, n, &r);
          CHECKF(pr == (int)n && rr == (int)n, "len %llu: parse %d ref %d size %zu",
                 (unsigned long long)lens[li], pr, rr, n);
          if (pr != (int)n || rr != (int)n) continue;
          CHECKF(h.fin == fin && h.rsv == 0 && h.opcode == ops[oi] && h.masked == masked &&
                     h.payload_len == lens[li] && r.fin == fin && r.rsv == 0 &&
                     r.opcode == ops[oi] && r.masked == masked && r.payload_len == lens[li],
                 "len %llu op %d fin %d masked %d: [%s]", (unsigned long long)lens[li], ops[oi],
                 fin, masked, test_hex_(out, n));
          if (masked)
            CHECKF(memcmp(h.mask, mask, 4) == 0 && memcmp(r.mask, mask, 4) == 0,
                   "mask round trip [%s]", test_hex_(out, n));
        }
}

/* ----------------------------------------------------------------- unmask ---- */

static void naive_xor(uint8_t *p, size_t n, const uint8_t mask[4], size_t off) {
  for (size_t i = 0; i < n; i++)
    p[i] ^= mask[(off + i) % 4];
}

static void test_unmask(void) {
  TEST_CASE("unmask vs naive");
  static const uint8_t masks[][4] = {
      {0x37, 0xFA, 0x21, 0x3D}, {0, 0, 0, 0}, {0xFF, 0xFF, 0xFF, 0xFF}, {1, 2, 4, 8}};
  enum { GUARD = 16, MAXN = 300 };
  static uint8_t area[GUARD + 16 + MAXN + GUARD], want[GUARD + 16 + MAXN + GUARD];
  long bad = 0;
  for (size_t mi = 0; mi < 4; mi++)
    for (size_t align = 0; align < 16; align++)
      for (size_t n = 0; n <= MAXN; n = n < 80 ? n + 1 : n + 37)
        for (size_t off = 0; off < 4; off++) {
          for (size_t i = 0; i < sizeof area; i++)
            area[i] = (uint8_t)test_rand64();
          memcpy(want, area, sizeof area);
          uint8_t *p = area + GUARD + align;
          naive_xor(want + GUARD + align, n, masks[mi], off);
          size_t r = wsev__frame_unmask(p, n, masks[mi], off);
          if (r != (off + n) % 4 && bad++ < 5)
            CHECKF(0, "mask %zu align %zu n %zu off %zu: returned %zu, expected %zu", mi, align, n,
                   off, r, (off + n) % 4);
          if (memcmp(area, want, sizeof area) != 0 && bad++ < 5) {
            size_t i = 0;
            while (area[i] == want[i])
              i++;
            CHECKF(0,
                   "mask %zu align %zu n %zu off %zu: first wrong byte at %ld "
                   "(relative to p), got %02X expected %02X",
                   mi, align, n, off, (long)i - (long)(GUARD + align), area[i], want[i]);
          }
        }
  CHECKF(bad == 0, "%ld unmask mismatches", bad);

  TEST_CASE("unmask chained");
  bad = 0;
  static const uint8_t mask[4] = {0xA5, 0x5A, 0x0F, 0xF0};
  for (size_t n = 0; n <= 70; n++)
    for (size_t off = 0; off < 4; off++)
      for (size_t k = 0; k <= n; k++) {
        uint8_t a[80], b[80];
        for (size_t i = 0; i < n; i++)
          a[i] = b[i] = (uint8_t)(i * 7 + n + k);
        naive_xor(a, n, mask, off);
        size_t o = wsev__frame_unmask(b, k, mask, off);
        o = wsev__frame_unmask(b + k, n - k, mask, o);
        if ((memcmp(a, b, n) != 0 || o != (off + n) % 4) && bad++ < 5)
          CHECKF(0, "n %zu off %zu split %zu: [%s] vs [%s], offset %zu", n, off, k, test_hex_(b, n),
                 test_hex_(a, n), o);
      }
  CHECKF(bad == 0, "%ld chained mismatches", bad);

  TEST_CASE("unmask many pieces");
  {
    enum { N = 5000 };
    static uint8_t a[N], b[N];
    for (size_t i = 0; i < N; i++)
      a[i] = b[i] = (uint8_t)test_rand64();
    naive_xor(a, N, mask, 0);
    size_t pos = 0, o = 0;
    while (pos < N) {
      size_t k = test_rand_below(23);
      if (k > N - pos) k = N - pos;
      o = wsev__frame_unmask(b + pos, k, mask, o);
      pos += k;
    }
    CHECK(memcmp(a, b, N) == 0);
    CHECK_EQ_UINT(o, N % 4);
    /* unmasking twice restores the data */
    wsev__frame_unmask(b, N, mask, 0);
    naive_xor(a, N, mask, 0);
    CHECK(memcmp(a, b, N) == 0);
  }
  {
    /* the RFC 5.7 example */
    uint8_t p[] = {0x7f, 0x9f, 0x4d, 0x51, 0x58};
    const uint8_t k[] = {0x37, 0xfa, 0x21, 0x3d};
    CHECK_EQ_UINT(wsev__frame_unmask(p, 5, k, 0), 1);
    CHECK_EQ_MEM(p, "Hello", 5);
  }
}

/* ------------------------------------------------------------------ check ---- */

static wsev_frame_header hdr(int fin, int rsv, int op, int masked, uint64_t len) {
  wsev_frame_header h;
  memset(&h, 0, sizeof h);
  h.fin = (uint8_t)fin, h.rsv = (uint8_t)rsv, h.opcode = (uint8_t)op;
  h.masked = (uint8_t)masked, h.payload_len = len;
  if (masked) h.mask[0] = 1, h.mask[1] = 2, h.mask[2] = 3, h.mask[3] = 4;
  return h;
}

#define EXPECT_CHECK(want, fin, rsv, op, masked, len, in_frag, must_mask)                          \
  do {                                                                                             \
    wsev_frame_header h_ = hdr(fin, rsv, op, masked, len);                                         \
    CHECK_EQ_INTF(wsev__frame_check(&h_, in_frag, must_mask), want,                                \
                  "fin %d rsv %d op %d masked %d len %llu in_frag %d must_mask %d", fin, rsv, op,  \
                  masked, (unsigned long long)(len), in_frag, must_mask);                          \
  } while (0)

static void test_check(void) {
  TEST_CASE("frame_check cases");
  /* valid server-side frames */
  EXPECT_CHECK(0, 1, 0, WSEV_OP_TEXT, 1, 5, 0, 1);
  EXPECT_CHECK(0, 1, 0, WSEV_OP_BINARY, 1, 0, 0, 1);
  EXPECT_CHECK(0, 0, 0, WSEV_OP_TEXT, 1, 5, 0, 1);   /* first fragment */
  EXPECT_CHECK(0, 0, 0, WSEV_OP_CONT, 1, 5, 1, 1);   /* middle fragment */
  EXPECT_CHECK(0, 1, 0, WSEV_OP_CONT, 1, 5, 1, 1);   /* last fragment */
  EXPECT_CHECK(0, 1, 0, WSEV_OP_PING, 1, 125, 1, 1); /* control between fragments */
  EXPECT_CHECK(0, 1, 0, WSEV_OP_PONG, 1, 0, 1, 1);
  EXPECT_CHECK(0, 1, 0, WSEV_OP_CLOSE, 1, 2, 1, 1);
  EXPECT_CHECK(0, 1, 0, WSEV_OP_CLOSE, 1, 0, 0, 1);
  EXPECT_CHECK(0, 1, 0, WSEV_OP_BINARY, 1, 1ull << 40, 0, 1); /* sizes not checked here */
  EXPECT_CHECK(0, 1, 0, WSEV_OP_BINARY, 1, 0x7FFFFFFFFFFFFFFFull, 0, 1);
  /* valid client-side frames */
  EXPECT_CHECK(0, 1, 0, WSEV_OP_TEXT, 0, 5, 0, 0);
  EXPECT_CHECK(0, 1, 0, WSEV_OP_PING, 0, 125, 0, 0);
  /* rsv bits */
  for (int rsv = 1; rsv < 8; rsv++) {
    EXPECT_CHECK(1002, 1, rsv, WSEV_OP_TEXT, 1, 5, 0, 1);
    EXPECT_CHECK(1002, 1, rsv, WSEV_OP_PING, 1, 5, 0, 1);
    EXPECT_CHECK(1002, 1, rsv, WSEV_OP_CONT, 1, 5, 1, 1);
  }
  /* unknown opcodes */
  for (int op = 3; op <= 7; op++)
    EXPECT_CHECK(1002, 1, 0, op, 1, 0, 0, 1);
  for (int op = 0xB; op <= 0xF; op++)
    EXPECT_CHECK(1002, 1, 0, op, 1, 0, 0, 1);
  for (int op = 3; op <= 7; op++)
    EXPECT_CHECK(1002, 1, 0, op, 0, 0, 0, 0);
  /* control frames: payload > 125, fragmented */
  EXPECT_CHECK(1002, 1, 0, WSEV_OP_PING, 1, 126, 0, 1);
  EXPECT_CHECK(1002, 1, 0, WSEV_OP_PONG, 1, 126, 0, 1);
  EXPECT_CHECK(1002, 1, 0, WSEV_OP_CLOSE, 1, 126, 0, 1);
  EXPECT_CHECK(1002, 1, 0, WSEV_OP_PING, 1, 65536, 0, 1);
  EXPECT_CHECK(1002, 1, 0, WSEV_OP_PING, 1, 1ull << 32, 0, 1);
  EXPECT_CHECK(1002, 0, 0, WSEV_OP_PING, 1, 5, 0, 1);
  EXPECT_CHECK(1002, 0, 0, WSEV_OP_PONG, 1, 0, 0, 1);
  EXPECT_CHECK(1002, 0, 0, WSEV_OP_CLOSE, 1, 2, 0, 1);
  EXPECT_CHECK(1002, 0, 0, WSEV_OP_PING, 1, 5, 1, 1);
  /* continuation without a message */
  EXPECT_CHECK(1002, 1, 0, WSEV_OP_CONT, 1, 5, 0, 1);
  EXPECT_CHECK(1002, 0, 0, WSEV_OP_CONT, 1, 5, 0, 1);
  /* new data message while one is in progress */
  EXPECT_CHECK(1002, 1, 0, WSEV_OP_TEXT, 1, 5, 1, 1);
  EXPECT_CHECK(1002, 0, 0, WSEV_OP_TEXT, 1, 5, 1, 1);
  EXPECT_CHECK(1002, 1, 0, WSEV_OP_BINARY, 1, 5, 1, 1);
  EXPECT_CHECK(1002, 0, 0, WSEV_OP_BINARY, 1, 5, 1, 1);
  /* masking */
  EXPECT_CHECK(1002, 1, 0, WSEV_OP_TEXT, 0, 5, 0, 1);
  EXPECT_CHECK(1002, 1, 0, WSEV_OP_PING, 0, 5, 0, 1);
  EXPECT_CHECK(1002, 1, 0, WSEV_OP_CLOSE, 0, 0, 0, 1);
  EXPECT_CHECK(1002, 1, 0, WSEV_OP_TEXT, 1, 5, 0, 0);
  EXPECT_CHECK(1002, 1, 0, WSEV_OP_PONG, 1, 5, 0, 0);

  TEST_CASE("frame_check sweep");
  static const uint64_t lens[] = {0, 1, 125, 126, 65535, 65536, 1ull << 40};
  long bad = 0, n = 0;
  for (int op = 0; op < 16; op++)
    for (int rsv = 0; rsv < 8; rsv++)
      for (int fin = 0; fin <= 1; fin++)
        for (int masked = 0; masked <= 1; masked++)
          for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++)
            for (int in_frag = 0; in_frag <= 1; in_frag++)
              for (int must = 0; must <= 1; must++) {
                wsev_frame_header h = hdr(fin, rsv, op, masked, lens[li]);
                int want = ref_check(&h, in_frag, must);
                int got = wsev__frame_check(&h, in_frag, must);
                n++;
                if (got != want && bad++ < 10)
                  CHECKF(0,
                         "fin %d rsv %d op %d masked %d len %llu in_frag %d must %d: "
                         "got %d expected %d",
                         fin, rsv, op, masked, (unsigned long long)lens[li], in_frag, must, got,
                         want);
              }
  CHECKF(bad == 0, "%ld of %ld frame_check cases wrong", bad, n);
}

/* ------------------------------------------------------------ close codes ---- */

static void test_close_codes(void) {
  TEST_CASE("close code table");
  static const unsigned valid[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010,
                                   1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999};
  static const unsigned invalid[] = {0,    1,    999,  1004, 1005,  1006,  1015,  1016,
                                     1100, 2000, 2999, 5000, 65535, 65536, 69000, 0xFFFFFFFFu};
  for (size_t i = 0; i < sizeof valid / sizeof valid[0]; i++)
    CHECKF(wsev__close_code_is_valid(valid[i]) == 1, "code %u", valid[i]);
  for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++)
    CHECKF(wsev__close_code_is_valid(invalid[i]) == 0, "code %u", invalid[i]);

  TEST_CASE("close code sweep");
  long bad = 0;
  for (unsigned c = 0; c <= 65535; c++)
    if (wsev__close_code_is_valid(c) != ref_close_code_valid(c) && bad++ < 10)
      CHECKF(0, "code %u: got %d expected %d", c, wsev__close_code_is_valid(c),
             ref_close_code_valid(c));
  CHECKF(bad == 0, "%ld close codes wrong", bad);
}

static void test_close_payload(void) {
  TEST_CASE("close payload");
  unsigned code;
  uint8_t buf[128] = {0};

  /* empty: fine, no status */
  code = 0;
  CHECK_EQ_INT(wsev__close_payload_check(buf, 0, &code), 0);
  CHECK_EQ_UINT(code, 1005);

  /* one byte is never valid */
  for (unsigned b = 0; b < 256; b++) {
    buf[0] = (uint8_t)b;
    CHECK_EQ_INTF(wsev__close_payload_check(buf, 1, &code), 1002, "byte %02X", b);
  }

  /* every code, no reason; the code is big-endian */
  long bad = 0;
  for (unsigned c = 0; c <= 65535; c++) {
    buf[0] = (uint8_t)(c >> 8), buf[1] = (uint8_t)c;
    code = 12345;
    int r = wsev__close_payload_check(buf, 2, &code);
    int want = ref_close_code_valid(c) ? 0 : 1002;
    if ((r != want || (want == 0 && code != c)) && bad++ < 10)
      CHECKF(0, "code %u: returned %d (code %u), expected %d", c, r, code, want);
  }
  CHECKF(bad == 0, "%ld close payloads (code only) wrong", bad);

  /* byte order: 03 E8 is 1000; E8 03 is 59395, invalid */
  memcpy(buf, "\x03\xE8", 2);
  CHECK_EQ_INT(wsev__close_payload_check(buf, 2, &code), 0);
  CHECK_EQ_UINT(code, 1000);
  memcpy(buf, "\xE8\x03", 2);
  CHECK_EQ_INT(wsev__close_payload_check(buf, 2, &code), 1002);
  memcpy(buf, "\x0F\xA0", 2); /* 4000 */
  CHECK_EQ_INT(wsev__close_payload_check(buf, 2, &code), 0);
  CHECK_EQ_UINT(code, 4000);

  /* valid reasons */
  static const char *const good[] = {
      "normal",
      "a",
      "Hello-\xC2\xB5@\xC3\x9F\xC3\xB6\xC3\xA4\xC3\xBC\xC3\xA0\xC3\xA1-UTF-8!!",
      "\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5",
      "\xF0\x9F\x98\x80",
      "\xF4\x8F\xBF\xBF",
      "\xEF\xBF\xBF"};
  static const unsigned codes[] = {1000, 1001, 1003, 1007, 1011, 3000, 4999};
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
    for (size_t j = 0; j < sizeof codes / sizeof codes[0]; j++) {
      size_t l = strlen(good[i]);
      buf[0] = (uint8_t)(codes[j] >> 8), buf[1] = (uint8_t)codes[j];
      memcpy(buf + 2, good[i], l);
      code = 0;
      CHECK_EQ_INTF(wsev__close_payload_check(buf, 2 + l, &code), 0, "code %u reason %zu", codes[j],
                    i);
      CHECK_EQ_INTF(code, codes[j], "stored code");
    }
  /* a reason of 123 bytes (the most a control frame can carry) */
  buf[0] = 0x03, buf[1] = 0xE8;
  memset(buf + 2, 'x', 123);
  CHECK_EQ_INT(wsev__close_payload_check(buf, 125, &code), 0);
  CHECK_EQ_UINT(code, 1000);
  /* a reason ending in a complete multi-byte character at the 125-byte limit */
  memcpy(buf + 121, "\xF0\x9F\x98\x80", 4);
  CHECK_EQ_INT(wsev__close_payload_check(buf, 125, &code), 0);

  /* invalid UTF-8 reasons: 1007 */
  static const char *const badr[] = {"\xFF",
                                     "\x80",
                                     "\xC3",
                                     "abc\xC3",
                                     "\xE2\x82",
                                     "\xF0\x9F\x98",
                                     "\xC0\x80",
                                     "\xED\xA0\x80",
                                     "\xF4\x90\x80\x80",
                                     ("\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5"
                                      "\xED\xA0\x80\x65\x64\x69\x74\x65\x64"),
                                     "ok\xC3\x28"};
  for (size_t i = 0; i < sizeof badr / sizeof badr[0]; i++) {
    size_t l = strlen(badr[i]);
    buf[0] = 0x03, buf[1] = 0xE8;
    memcpy(buf + 2, badr[i], l);
    CHECK_EQ_INTF(wsev__close_payload_check(buf, 2 + l, &code), 1007, "reason [%s]",
                  test_hex_(badr[i], l));
  }
  /* a truncated character cut by the end of a 125-byte payload */
  memset(buf + 2, 'x', 123);
  memcpy(buf + 122, "\xF0\x9F\x98", 3);
  CHECK_EQ_INT(wsev__close_payload_check(buf, 125, &code), 1007);
}

int main(void) {
  test_parse_examples();
  test_parse_msb();
  test_parse_sweep();
  test_encode();
  test_encode_roundtrip();
  test_unmask();
  test_check();
  test_close_codes();
  test_close_payload();
  return TEST_REPORT();
}
