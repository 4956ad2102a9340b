/* Unit tests for lib/utf8.h: incremental UTF-8 validation per RFC 3629 and
 * Unicode table 3-7 (well-formed byte sequences).
 *
 * Expected results come from a naive reference validator written here directly from
 * table 3-7, from a reference encoder, and from hand-written vectors (the Autobahn
 * testsuite's case 6.x strings); never from the code under test. */
#include <stdlib.h>

#include "test.h"
#include "utf8.h"

/* ---------------------------------------------------------------- reference ---- */

enum { REF_VALID, REF_INCOMPLETE, REF_INVALID };

/* Classify p[0..n) by table 3-7: VALID (complete, well formed), INCOMPLETE (a proper
 * prefix of well-formed text), or INVALID, with *bad = index of the first byte after
 * which no well-formed continuation exists. */
static int ref_utf8(const uint8_t *p, size_t n, size_t *bad) {
  size_t i = 0;
  while (i < n) {
    uint8_t b = p[i];
    unsigned need;
    uint8_t lo = 0x80, hi = 0xBF;
    if (b <= 0x7F) {
      i++;
      continue;
    } else if (b >= 0xC2 && b <= 0xDF) {
      need = 1;
    } else if (b == 0xE0) {
      need = 2, lo = 0xA0;
    } else if ((b >= 0xE1 && b <= 0xEC) || b == 0xEE || b == 0xEF) {
      need = 2;
    } else if (b == 0xED) {
      need = 2, hi = 0x9F;
    } else if (b == 0xF0) {
      need = 3, lo = 0x90;
    } else if (b >= 0xF1 && b <= 0xF3) {
      need = 3;
    } else if (b == 0xF4) {
      need = 3, hi = 0x8F;
    } else {
      if (bad) *bad = i;
      return REF_INVALID;
    }
    for (unsigned j = 1; j <= need; j++) {
      if (i + j >= n) return REF_INCOMPLETE;
      uint8_t c = p[i + j];
      uint8_t l = j == 1 ? lo : 0x80, h = j == 1 ? hi : 0xBF;
      if (c < l || c > h) {
        if (bad) *bad = i + j;
        return REF_INVALID;
      }
    }
    i += need + 1;
  }
  return REF_VALID;
}

/* Generic encoder: the shortest form for cp (no range checks, so it also produces
 * surrogates and code points above U+10FFFF up to U+1FFFFF). */
static size_t enc(uint32_t cp, uint8_t *out) {
  if (cp < 0x80) {
    out[0] = (uint8_t)cp;
    return 1;
  } else if (cp < 0x800) {
    out[0] = (uint8_t)(0xC0 | (cp >> 6));
    out[1] = (uint8_t)(0x80 | (cp & 0x3F));
    return 2;
  } else if (cp < 0x10000) {
    out[0] = (uint8_t)(0xE0 | (cp >> 12));
    out[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    out[2] = (uint8_t)(0x80 | (cp & 0x3F));
    return 3;
  } else {
    out[0] = (uint8_t)(0xF0 | (cp >> 18));
    out[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
  }
}

/* Encode cp in exactly len bytes (overlong when len is more than needed). */
static void enc_len(uint32_t cp, size_t len, uint8_t *out) {
  if (len == 2) {
    out[0] = (uint8_t)(0xC0 | ((cp >> 6) & 0x1F));
    out[1] = (uint8_t)(0x80 | (cp & 0x3F));
  } else if (len == 3) {
    out[0] = (uint8_t)(0xE0 | ((cp >> 12) & 0x0F));
    out[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    out[2] = (uint8_t)(0x80 | (cp & 0x3F));
  } else {
    out[0] = (uint8_t)(0xF0 | ((cp >> 18) & 0x07));
    out[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (uint8_t)(0x80 | (cp & 0x3F));
  }
}

static size_t unhex(const char *s, uint8_t *out) {
  size_t n = 0;
  while (*s) {
    if (*s == ' ') {
      s++;
      continue;
    }
    unsigned v;
    sscanf(s, "%2x", &v);
    out[n++] = (uint8_t)v;
    s += 2;
  }
  return n;
}

static int is_mid(uint32_t s) { return s != WSEV_UTF8_ACCEPT && s != WSEV_UTF8_REJECT; }

static uint32_t expected_class_ok(int cls, uint32_t s) {
  if (cls == REF_VALID) return s == WSEV_UTF8_ACCEPT;
  if (cls == REF_INVALID) return s == WSEV_UTF8_REJECT;
  return is_mid(s);
}

static const char *cls_name(int cls) {
  return cls == REF_VALID ? "valid" : cls == REF_INVALID ? "invalid" : "incomplete";
}

static const char *state_name(uint32_t s) {
  return s == WSEV_UTF8_ACCEPT ? "ACCEPT" : s == WSEV_UTF8_REJECT ? "REJECT" : "mid";
}

/* Full check of one byte string against the reference: one call, is_valid, every
 * two-way split, and one byte at a time (the state class after every byte must match
 * the reference's class of that prefix: fail fast, and mid-code-point states are
 * neither ACCEPT nor REJECT). */
static void check_bytes(const char *name, const uint8_t *p, size_t n) {
  size_t bad = 0;
  int cls = ref_utf8(p, n, &bad);
  uint8_t *copy = malloc(n ? n : 1); /* exact-size heap copy so ASan sees overreads */
  memcpy(copy, p, n);

  uint32_t s = wsev__utf8_validate(WSEV_UTF8_ACCEPT, copy, n);
  CHECKF(expected_class_ok(cls, s), "%s [%s]: one call gave %s, expected %s", name, test_hex_(p, n),
         state_name(s), cls_name(cls));
  CHECK_EQ_INTF(wsev__utf8_is_valid(copy, n), cls == REF_VALID, "%s [%s]", name, test_hex_(p, n));

  int split_bad = 0;
  for (size_t k = 0; k <= n; k++) {
    uint32_t a = wsev__utf8_validate(WSEV_UTF8_ACCEPT, copy, k);
    uint32_t b = wsev__utf8_validate(a, copy + k, n - k);
    if (!expected_class_ok(cls, b) && split_bad++ == 0)
      CHECKF(0, "%s [%s]: split at %zu gave %s, expected %s", name, test_hex_(p, n), k,
             state_name(b), cls_name(cls));
  }
  CHECKF(split_bad == 0, "%s: %d bad two-way splits", name, split_bad);

  uint32_t st = WSEV_UTF8_ACCEPT;
  int bat_bad = 0;
  for (size_t i = 0; i < n; i++) {
    st = wsev__utf8_validate(st, copy + i, 1);
    int pc = ref_utf8(p, i + 1, NULL);
    if (!expected_class_ok(pc, st) && bat_bad++ == 0)
      CHECKF(0, "%s [%s]: byte-at-a-time after byte %zu state %s, expected %s", name,
             test_hex_(p, n), i, state_name(st), cls_name(pc));
  }
  CHECKF(bat_bad == 0, "%s: %d byte-at-a-time mismatches", name, bat_bad);
  free(copy);
}

/* A hand-written vector: first confirm the reference agrees with the expectation
 * (a test bug otherwise), then run the full check. */
static void vec(const char *name, const char *hex, int valid) {
  uint8_t buf[1024];
  size_t n = unhex(hex, buf);
  CHECKF((ref_utf8(buf, n, NULL) == REF_VALID) == valid, "reference disagrees on %s", name);
  TEST_CASE(name);
  check_bytes(name, buf, n);
  CHECK_EQ_INTF(wsev__utf8_is_valid(buf, n), valid, "%s [%s]", name, test_hex_(buf, n));
}

/* Feeding hex one byte at a time, the state must become REJECT exactly at byte
 * index `at` (not before), stay REJECT for any further input, and a single call on the
 * prefix ending at `at` must return REJECT. */
static void reject_at(const char *hex, size_t at) {
  uint8_t buf[256];
  size_t n = unhex(hex, buf);
  TEST_CASE("fail-fast");
  uint32_t st = WSEV_UTF8_ACCEPT;
  for (size_t i = 0; i < n; i++) {
    st = wsev__utf8_validate(st, buf + i, 1);
    if (i < at)
      CHECKF(st != WSEV_UTF8_REJECT, "[%s] rejected early at byte %zu (expected %zu)", hex, i, at);
    else
      CHECKF(st == WSEV_UTF8_REJECT, "[%s] state %s after byte %zu, expected REJECT", hex,
             state_name(st), i);
  }
  CHECKF(at < n, "test bug: [%s] has no byte %zu", hex, at);
  CHECKF(wsev__utf8_validate(WSEV_UTF8_ACCEPT, buf, at + 1) == WSEV_UTF8_REJECT,
         "[%s] one call on %zu bytes", hex, at + 1);
  /* sticky */
  static const uint8_t good[] = "abc\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80xyz";
  CHECKF(wsev__utf8_validate(st, good, sizeof good - 1) == WSEV_UTF8_REJECT, "[%s] sticky", hex);
  CHECKF(wsev__utf8_validate(st, good, 1) == WSEV_UTF8_REJECT, "[%s] sticky 1", hex);
}

/* ------------------------------------------------------------------ tests ---- */

static void test_table_3_7_boundaries(void) {
  TEST_CASE("boundaries");
  static const struct {
    uint32_t cp;
    const char *hex;
  } ok[] = {
      {0x0000, "00"},
      {0x007F, "7F"},
      {0x0080, "C2 80"},
      {0x07FF, "DF BF"},
      {0x0800, "E0 A0 80"},
      {0x0FFF, "E0 BF BF"},
      {0x1000, "E1 80 80"},
      {0xCFFF, "EC BF BF"},
      {0xD000, "ED 80 80"},
      {0xD7FF, "ED 9F BF"},
      {0xE000, "EE 80 80"},
      {0xFFFD, "EF BF BD"},
      {0xFFFF, "EF BF BF"},
      {0x10000, "F0 90 80 80"},
      {0x3FFFF, "F0 BF BF BF"},
      {0x40000, "F1 80 80 80"},
      {0xFFFFF, "F3 BF BF BF"},
      {0x100000, "F4 80 80 80"},
      {0x10FFFF, "F4 8F BF BF"},
  };
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    uint8_t a[4], b[4];
    size_t n = enc(ok[i].cp, a);
    size_t m = unhex(ok[i].hex, b);
    CHECKF(n == m && memcmp(a, b, n) == 0, "test bug: encoder for U+%04X", ok[i].cp);
    char name[64];
    snprintf(name, sizeof name, "U+%04X", ok[i].cp);
    vec(name, ok[i].hex, 1);
  }
  /* surrogates */
  vec("U+D800", "ED A0 80", 0);
  vec("U+DBFF", "ED AF BF", 0);
  vec("U+DC00", "ED B0 80", 0);
  vec("U+DFFF", "ED BF BF", 0);
  /* above U+10FFFF */
  vec("U+110000", "F4 90 80 80", 0);
  vec("U+13FFFF", "F4 BF BF BF", 0);
  vec("U+140000", "F5 80 80 80", 0);
  vec("U+1FFFFF", "F7 BF BF BF", 0);
  /* overlongs */
  vec("C0 80", "C0 80", 0);
  vec("C1 BF", "C1 BF", 0);
  vec("E0 80 80", "E0 80 80", 0);
  vec("E0 9F BF", "E0 9F BF", 0);
  vec("F0 80 80 80", "F0 80 80 80", 0);
  vec("F0 8F BF BF", "F0 8F BF BF", 0);
  /* stray continuation bytes */
  vec("80", "80", 0);
  vec("BF", "BF", 0);
  vec("41 80 41", "41 80 41", 0);
  vec("C3 A9 A9", "C3 A9 A9", 0);
  vec("E2 82 AC 80", "E2 82 AC 80", 0);
  vec("F0 9F 98 80 80", "F0 9F 98 80 80", 0);
  /* a continuation where a lead is expected after a complete sequence */
  vec("too many continuations", "E2 82 AC AC", 0);
  /* lead where a continuation is expected */
  vec("C3 C3 A9", "C3 C3 A9", 0);
  vec("E2 E2 82 AC", "E2 E2 82 AC", 0);
  vec("E2 82 E2 82 AC", "E2 82 E2 82 AC", 0);
  vec("F0 9F 41", "F0 9F 41", 0);
  /* truncated sequences at the end */
  vec("C3", "C3", 0);
  vec("E2", "E2", 0);
  vec("E2 82", "E2 82", 0);
  vec("F0", "F0", 0);
  vec("F0 9F", "F0 9F", 0);
  vec("F0 9F 98", "F0 9F 98", 0);
  vec("F4 8F BF", "F4 8F BF", 0);
  vec("41 C3", "41 C3", 0);
  vec("empty", "", 1);
}

static void test_every_byte_value(void) {
  TEST_CASE("single bytes");
  for (unsigned b = 0; b < 256; b++) {
    uint8_t c = (uint8_t)b;
    uint32_t s = wsev__utf8_validate(WSEV_UTF8_ACCEPT, &c, 1);
    if (b < 0x80)
      CHECKF(s == WSEV_UTF8_ACCEPT, "byte %02X gave %s", b, state_name(s));
    else if (b < 0xC2 || b > 0xF4)
      CHECKF(s == WSEV_UTF8_REJECT, "byte %02X gave %s (can never start a sequence)", b,
             state_name(s));
    else
      CHECKF(is_mid(s), "byte %02X gave %s (a lead byte)", b, state_name(s));
    CHECK_EQ_INTF(wsev__utf8_is_valid(&c, 1), b < 0x80, "byte %02X", b);
  }
}

static void test_fail_fast(void) {
  reject_at("ED A0", 1);
  reject_at("ED A0 80", 1);
  reject_at("ED BF BF", 1);
  reject_at("F4 90", 1);
  reject_at("F4 90 80 80", 1);
  reject_at("C0", 0);
  reject_at("C0 80", 0);
  reject_at("C1", 0);
  reject_at("C1 BF", 0);
  reject_at("F5", 0);
  reject_at("F5 80 80 80", 0);
  reject_at("F8 88 80 80 80", 0);
  reject_at("FE", 0);
  reject_at("FF", 0);
  reject_at("80", 0);
  reject_at("E0 80", 1);
  reject_at("E0 80 80", 1);
  reject_at("E0 9F BF", 1);
  reject_at("F0 80", 1);
  reject_at("F0 8F BF BF", 1);
  reject_at("C3 41", 1);
  reject_at("E2 82 41", 2);
  reject_at("F0 9F 98 41", 3);
  reject_at("C3 C3", 1);
  reject_at("E2 E2", 1);
  reject_at("F1 80 80 F1", 3);
  reject_at("41 42 43 80 44", 3);
  /* Autobahn 6.4.x: κόσμε then U+110000: fails at the 0x90, not at the end */
  reject_at("ce ba e1 bd b9 cf 83 ce bc ce b5 f4 90 80 80 65 64 69 74 65 64", 12);
  reject_at("ce ba e1 bd b9 cf 83 ce bc ce b5 ed a0 80 65 64 69 74 65 64", 12);
}

/* The Autobahn testsuite's case 6 strings (from Markus Kuhn's UTF-8 decoder test). */
static void test_autobahn_6(void) {
  vec("6.1.1", "", 1);
  vec("6.2.1 Hello-µ@ßöäüàá-UTF-8!!", "48656c6c6f2dc2b540c39fc3b6c3a4c3bcc3a0c3a12d5554462d382121",
      1);
  vec("6.3.1", "cebae1bdb9cf83cebcceb5eda080656469746564", 0);
  vec("6.4.1", "cebae1bdb9cf83cebcceb5f4908080656469746564", 0);
  vec("6.5.1 κόσμε", "cebae1bdb9cf83cebcceb5", 1);
  vec("κόσμε (U+03CC)", "cebacf8ccf83cebcceb5", 1);
  {
    /* 6.6.x: every prefix of κόσμε; valid only at code point boundaries */
    static const char k[] = "cebae1bdb9cf83cebcceb5";
    for (size_t len = 1; len <= 11; len++) {
      char hex[32], name[32];
      memcpy(hex, k, 2 * len);
      hex[2 * len] = 0;
      snprintf(name, sizeof name, "6.6.%zu", len);
      vec(name, hex, len == 2 || len == 5 || len == 7 || len == 9 || len == 11);
    }
  }
  vec("6.7.1", "00", 1);
  vec("6.7.2", "c280", 1);
  vec("6.7.3", "e0a080", 1);
  vec("6.7.4", "f0908080", 1);
  vec("6.8.1", "f888808080", 0);
  vec("6.8.2", "fc8480808080", 0);
  vec("6.9.1", "7f", 1);
  vec("6.9.2", "dfbf", 1);
  vec("6.9.3", "efbfbf", 1);
  vec("6.9.4", "f48fbfbf", 1);
  vec("6.10.1", "f7bfbfbf", 0);
  vec("6.10.2", "fbbfbfbfbf", 0);
  vec("6.10.3", "fdbfbfbfbfbf", 0);
  vec("6.11.1", "ed9fbf", 1);
  vec("6.11.2", "ee8080", 1);
  vec("6.11.3", "efbfbd", 1);
  vec("6.11.4", "f48fbfbf", 1);
  vec("6.11.5", "f4908080", 0);
  vec("6.12.1", "80", 0);
  vec("6.12.2", "bf", 0);
  vec("6.12.3", "80bf", 0);
  vec("6.12.4", "80bf80", 0);
  vec("6.12.5", "80bf80bf", 0);
  vec("6.12.6", "80bf80bf80", 0);
  vec("6.12.7", "80bf80bf80bf", 0);
  {
    char hex[200];
    size_t o = 0;
    for (unsigned b = 0x80; b <= 0xBE; b++)
      o += (size_t)sprintf(hex + o, "%02x", b);
    vec("6.12.8", hex, 0);
  }
  {
    /* 6.13.x: lonely start characters, each followed by a space */
    static const unsigned ranges[5][2] = {
        {0xC0, 0xDF}, {0xE0, 0xEF}, {0xF0, 0xF7}, {0xF8, 0xFB}, {0xFC, 0xFD}};
    for (int r = 0; r < 5; r++) {
      char hex[200], name[16];
      size_t o = 0;
      for (unsigned b = ranges[r][0]; b <= ranges[r][1]; b++)
        o += (size_t)sprintf(hex + o, "%02x20", b);
      snprintf(name, sizeof name, "6.13.%d", r + 1);
      vec(name, hex, 0);
    }
  }
  static const char *const last_missing[] = {"c0", "e080", "f08080", "f8808080", "fc80808080",
                                             "df", "efbf", "f7bfbf", "fbbfbfbf", "fdbfbfbfbf"};
  char all[256] = "";
  for (int i = 0; i < 10; i++) {
    char name[16];
    snprintf(name, sizeof name, "6.14.%d", i + 1);
    vec(name, last_missing[i], 0);
    strcat(all, last_missing[i]);
  }
  vec("6.15.1", all, 0);
  vec("6.16.1", "fe", 0);
  vec("6.16.2", "ff", 0);
  vec("6.16.3", "fefeffff", 0);
  vec("6.17.1", "c0af", 0);
  vec("6.17.2", "e080af", 0);
  vec("6.17.3", "f08080af", 0);
  vec("6.17.4", "f8808080af", 0);
  vec("6.17.5", "fc80808080af", 0);
  vec("6.18.1", "c1bf", 0);
  vec("6.18.2", "e09fbf", 0);
  vec("6.18.3", "f08fbfbf", 0);
  vec("6.18.4", "f887bfbfbf", 0);
  vec("6.18.5", "fc83bfbfbfbf", 0);
  vec("6.19.1", "c080", 0);
  vec("6.19.2", "e08080", 0);
  vec("6.19.3", "f0808080", 0);
  vec("6.19.4", "f880808080", 0);
  vec("6.19.5", "fc8080808080", 0);
  vec("6.20.1", "eda080", 0);
  vec("6.20.2", "edadbf", 0);
  vec("6.20.3", "edae80", 0);
  vec("6.20.4", "edafbf", 0);
  vec("6.20.5", "edb080", 0);
  vec("6.20.6", "edbe80", 0);
  vec("6.20.7", "edbfbf", 0);
  vec("6.21.1", "eda080edb080", 0);
  vec("6.21.2", "eda080edbfbf", 0);
  vec("6.21.3", "edadbfedb080", 0);
  vec("6.21.4", "edadbfedbfbf", 0);
  vec("6.21.5", "edae80edb080", 0);
  vec("6.21.6", "edae80edbfbf", 0);
  vec("6.21.7", "edafbfedb080", 0);
  vec("6.21.8", "edafbfedbfbf", 0);
  {
    /* 6.22.x: noncharacters are valid UTF-8 */
    for (uint32_t plane = 0; plane <= 0x10; plane++) {
      for (uint32_t low = 0xFFFE; low <= 0xFFFF; low++) {
        uint8_t b[4];
        size_t n = enc(plane << 16 | low, b);
        char hex[16], name[32];
        for (size_t i = 0; i < n; i++)
          sprintf(hex + 2 * i, "%02x", b[i]);
        snprintf(name, sizeof name, "6.22 U+%04X", plane << 16 | low);
        vec(name, hex, 1);
      }
    }
    for (uint32_t cp = 0xFDD0; cp <= 0xFDEF; cp++) {
      uint8_t b[4];
      size_t n = enc(cp, b);
      TEST_CASE("6.22 FDD0..FDEF");
      CHECKF(wsev__utf8_is_valid(b, n) == 1, "U+%04X", cp);
    }
  }
  vec("6.23.1", "efbfbd", 1);
}

#define SWEEP_MISMATCH(cnt, ...)                                                                   \
  do {                                                                                             \
    if ((cnt)++ < 5) {                                                                             \
      fprintf(stderr, "%s:%d: [%s] mismatch: ", __FILE__, __LINE__, test_case_);                   \
      fprintf(stderr, __VA_ARGS__);                                                                \
      fputc('\n', stderr);                                                                         \
    }                                                                                              \
  } while (0)

/* Every Unicode scalar value in its shortest form is valid; surrogates and
 * U+110000..U+1FFFFF are not; and every overlong form of every code point is not. */
static void test_all_code_points(void) {
  TEST_CASE("all code points");
  long bad = 0, bad_bat = 0, bad_over = 0;
  for (uint32_t cp = 0; cp <= 0x1FFFFF; cp++) {
    uint8_t b[4];
    size_t n = enc(cp, b);
    int valid = !(cp >= 0xD800 && cp <= 0xDFFF) && cp <= 0x10FFFF;
    uint32_t s = wsev__utf8_validate(WSEV_UTF8_ACCEPT, b, n);
    if (s != (valid ? WSEV_UTF8_ACCEPT : WSEV_UTF8_REJECT))
      SWEEP_MISMATCH(bad, "U+%04X [%s] gave %s", cp, test_hex_(b, n), state_name(s));
    if (wsev__utf8_is_valid(b, n) != valid) SWEEP_MISMATCH(bad, "is_valid(U+%04X)", cp);
    /* byte at a time: mid states until the last byte for valid ones; for invalid
     * ones REJECT right after the second byte (ED A0.., F4 90.., F5..) or the first */
    uint32_t st = WSEV_UTF8_ACCEPT;
    size_t reject_idx = cp >= 0x140000 ? 0 : 1;
    for (size_t i = 0; i < n; i++) {
      st = wsev__utf8_validate(st, b + i, 1);
      int ok;
      if (valid)
        ok = i + 1 < n ? is_mid(st) : st == WSEV_UTF8_ACCEPT;
      else
        ok = i < reject_idx ? is_mid(st) : st == WSEV_UTF8_REJECT;
      if (!ok)
        SWEEP_MISMATCH(bad_bat, "U+%04X [%s] byte %zu: %s", cp, test_hex_(b, n), i, state_name(st));
    }
    /* every overlong encoding */
    if (cp <= 0x10FFFF) {
      for (size_t len = n + 1; len <= 4; len++) {
        if (len < 2) continue;
        uint8_t o[4];
        enc_len(cp, len, o);
        if (wsev__utf8_validate(WSEV_UTF8_ACCEPT, o, len) != WSEV_UTF8_REJECT)
          SWEEP_MISMATCH(bad_over, "overlong U+%04X [%s] accepted", cp, test_hex_(o, len));
      }
    }
  }
  CHECKF(bad == 0, "%ld whole-sequence mismatches", bad);
  CHECKF(bad_bat == 0, "%ld byte-at-a-time mismatches", bad_bat);
  CHECKF(bad_over == 0, "%ld overlong mismatches", bad_over);
}

/* Compare against the reference for an input given as bytes: one call, and one byte
 * at a time; return number of mismatches (first few printed). */
static long sweep_one(const uint8_t *p, size_t n, long *cnt) {
  size_t bad_at = 0;
  int cls = ref_utf8(p, n, &bad_at);
  uint32_t s = wsev__utf8_validate(WSEV_UTF8_ACCEPT, p, n);
  if (!expected_class_ok(cls, s))
    SWEEP_MISMATCH(*cnt, "[%s] one call gave %s, expected %s", test_hex_(p, n), state_name(s),
                   cls_name(cls));
  uint32_t st = WSEV_UTF8_ACCEPT;
  for (size_t i = 0; i < n; i++) {
    st = wsev__utf8_validate(st, p + i, 1);
    int pc = ref_utf8(p, i + 1, NULL);
    if (!expected_class_ok(pc, st)) {
      SWEEP_MISMATCH(*cnt, "[%s] after byte %zu state %s, expected %s", test_hex_(p, n), i,
                     state_name(st), cls_name(pc));
      break;
    }
  }
  if (n >= 2) {
    size_t k = n / 2;
    uint32_t a = wsev__utf8_validate(WSEV_UTF8_ACCEPT, p, k);
    a = wsev__utf8_validate(a, p + k, n - k);
    if (!expected_class_ok(cls, a))
      SWEEP_MISMATCH(*cnt, "[%s] split at %zu gave %s, expected %s", test_hex_(p, n), k,
                     state_name(a), cls_name(cls));
  }
  return *cnt;
}

static void test_exhaustive_short(void) {
  long bad = 0;
  uint8_t b[4];
  TEST_CASE("all 1-byte strings");
  for (unsigned x = 0; x < 256; x++) {
    b[0] = (uint8_t)x;
    sweep_one(b, 1, &bad);
  }
  CHECKF(bad == 0, "%ld mismatches", bad);
  TEST_CASE("all 2-byte strings");
  bad = 0;
  for (unsigned x = 0; x < 65536; x++) {
    b[0] = (uint8_t)(x >> 8), b[1] = (uint8_t)x;
    sweep_one(b, 2, &bad);
  }
  CHECKF(bad == 0, "%ld mismatches", bad);
  TEST_CASE("all 3-byte strings");
  bad = 0;
  for (unsigned x = 0; x < (1u << 24); x++) {
    b[0] = (uint8_t)(x >> 16), b[1] = (uint8_t)(x >> 8), b[2] = (uint8_t)x;
    sweep_one(b, 3, &bad);
  }
  CHECKF(bad == 0, "%ld mismatches", bad);
  TEST_CASE("4-byte strings (all first two bytes x interesting last two)");
  bad = 0;
  static const uint8_t interesting[] = {0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF,
                                        0xC0, 0xC2, 0xE0, 0xED, 0xF0, 0xF4, 0xF5, 0xFF};
  const size_t ni = sizeof interesting;
  for (unsigned x = 0; x < 65536; x++) {
    b[0] = (uint8_t)(x >> 8), b[1] = (uint8_t)x;
    for (size_t i = 0; i < ni; i++)
      for (size_t j = 0; j < ni; j++) {
        b[2] = interesting[i], b[3] = interesting[j];
        sweep_one(b, 4, &bad);
      }
  }
  CHECKF(bad == 0, "%ld mismatches", bad);
}

/* Random strings built from valid code points, invalid fragments and random bytes,
 * checked in one call, byte at a time, and split into random pieces. */
static void test_random(void) {
  TEST_CASE("random");
  long bad = 0;
  uint8_t buf[128];
  for (int iter = 0; iter < 300000; iter++) {
    size_t n = 0;
    size_t target = test_rand_below(40);
    while (n < target) {
      uint32_t kind = test_rand_below(10);
      uint8_t tmp[4];
      size_t m;
      if (kind < 3) {
        tmp[0] = (uint8_t)test_rand_below(0x80);
        m = 1;
      } else if (kind < 8) {
        uint32_t cp;
        do {
          static const uint32_t lim[] = {0x80, 0x800, 0x10000, 0x110000};
          cp = test_rand_below(lim[test_rand_below(4)]);
        } while (cp >= 0xD800 && cp <= 0xDFFF);
        m = enc(cp, tmp);
        if (test_rand_below(20) == 0 && m > 1) m--; /* truncate */
      } else if (kind == 8) {
        tmp[0] = (uint8_t)test_rand64();
        m = 1;
      } else {
        tmp[0] = (uint8_t)(0x80 | test_rand_below(0x40));
        m = 1;
      }
      for (size_t i = 0; i < m && n < sizeof buf; i++)
        buf[n++] = tmp[i];
    }
    sweep_one(buf, n, &bad);
    /* random multi-way split */
    size_t bad_at = 0;
    int cls = ref_utf8(buf, n, &bad_at);
    uint32_t st = WSEV_UTF8_ACCEPT;
    size_t pos = 0;
    while (pos < n) {
      size_t k = 1 + test_rand_below((uint32_t)(n - pos));
      st = wsev__utf8_validate(st, buf + pos, k);
      pos += k;
    }
    if (!expected_class_ok(cls, st))
      SWEEP_MISMATCH(bad, "[%s] random split gave %s, expected %s", test_hex_(buf, n),
                     state_name(st), cls_name(cls));
    if (wsev__utf8_is_valid(buf, n) != (cls == REF_VALID))
      SWEEP_MISMATCH(bad, "is_valid [%s]", test_hex_(buf, n));
  }
  CHECKF(bad == 0, "%ld mismatches", bad);
}

/* Long buffers, to exercise any word-at-a-time ASCII fast path at every alignment. */
static void test_long_buffers(void) {
  TEST_CASE("long ascii");
  static uint8_t big[4096 + 64];
  for (size_t i = 0; i < sizeof big; i++)
    big[i] = (uint8_t)(i % 128);
  for (size_t align = 0; align < 16; align++)
    for (size_t len = 0; len <= 300; len++) {
      CHECKF(wsev__utf8_validate(WSEV_UTF8_ACCEPT, big + align, len) == WSEV_UTF8_ACCEPT,
             "ascii align %zu len %zu", align, len);
    }
  CHECK(wsev__utf8_validate(WSEV_UTF8_ACCEPT, big, 4096) == WSEV_UTF8_ACCEPT);
  CHECK(wsev__utf8_is_valid(big, 4096) == 1);

  /* a single bad byte at every offset of a 64-byte ASCII buffer, at every alignment */
  TEST_CASE("bad byte in ascii");
  static const uint8_t bad_bytes[] = {0x80, 0xBF, 0xC0, 0xC1, 0xC2, 0xDF,
                                      0xE0, 0xED, 0xF0, 0xF4, 0xF5, 0xFF};
  uint8_t area[64 + 16];
  for (size_t align = 0; align < 8; align++)
    for (size_t off = 0; off < 64; off++)
      for (size_t j = 0; j < sizeof bad_bytes; j++) {
        uint8_t *p = area + align;
        memset(p, 'a', 64);
        p[off] = bad_bytes[j];
        /* a lone lead byte followed by ASCII is invalid; at the very end it is
         * incomplete */
        uint32_t s = wsev__utf8_validate(WSEV_UTF8_ACCEPT, p, 64);
        int lead = bad_bytes[j] >= 0xC2 && bad_bytes[j] <= 0xF4;
        if (lead && off == 63)
          CHECKF(is_mid(s), "lead %02X at the end, align %zu: %s", bad_bytes[j], align,
                 state_name(s));
        else
          CHECKF(s == WSEV_UTF8_REJECT, "%02X at offset %zu align %zu: %s", bad_bytes[j], off,
                 align, state_name(s));
        CHECKF(wsev__utf8_is_valid(p, 64) == 0, "%02X at %zu align %zu", bad_bytes[j], off, align);
        /* and in the middle of a long buffer, so a fast path is in full swing */
        uint8_t *q = big + align;
        uint8_t save = q[1000 + off];
        q[1000 + off] = bad_bytes[j];
        CHECKF(wsev__utf8_validate(WSEV_UTF8_ACCEPT, q, 2048) == WSEV_UTF8_REJECT,
               "%02X at %zu in 2048 bytes, align %zu", bad_bytes[j], 1000 + off, align);
        q[1000 + off] = save;
      }

  /* valid and invalid multi-byte sequences at every offset */
  TEST_CASE("sequences in ascii");
  static const struct {
    const char *bytes;
    int valid;
  } seqs[] = {
      {"\xC3\xA9", 1},         {"\xDF\xBF", 1},         {"\xE2\x82\xAC", 1},
      {"\xEF\xBF\xBF", 1},     {"\xED\x9F\xBF", 1},     {"\xF0\x9F\x98\x80", 1},
      {"\xF4\x8F\xBF\xBF", 1}, {"\xC2\x80\xC2\x80", 1}, {"\xED\xA0\x80", 0},
      {"\xE0\x80\x80", 0},     {"\xF4\x90\x80\x80", 0}, {"\xC0\x80", 0},
      {"\xC1\xBF", 0},         {"\xF0\x8F\xBF\xBF", 0}, {"\xE2\x82", 0},
      {"\xF0\x9F\x98", 0},
  };
  for (size_t si = 0; si < sizeof seqs / sizeof seqs[0]; si++) {
    size_t sl = strlen(seqs[si].bytes);
    for (size_t align = 0; align < 8; align++)
      for (size_t off = 0; off + sl <= 64; off++) {
        uint8_t *p = area + align;
        memset(p, 'z', 64);
        memcpy(p + off, seqs[si].bytes, sl);
        int ref = ref_utf8(p, 64, NULL);
        CHECKF((ref == REF_VALID) == seqs[si].valid, "test bug seq %zu off %zu", si, off);
        uint32_t s = wsev__utf8_validate(WSEV_UTF8_ACCEPT, p, 64);
        CHECKF(expected_class_ok(ref, s), "seq [%s] at offset %zu align %zu: %s",
               test_hex_(seqs[si].bytes, sl), off, align, state_name(s));
        CHECKF(wsev__utf8_is_valid(p, 64) == seqs[si].valid, "seq [%s] at %zu align %zu",
               test_hex_(seqs[si].bytes, sl), off, align);
      }
  }

  /* a valid multi-byte character cut by the end of a long buffer, finished by the
   * next call */
  TEST_CASE("cut at the end of a long buffer");
  static const char *const chars[] = {"\xC3\xA9", "\xE2\x82\xAC", "\xF0\x9F\x98\x80"};
  for (size_t c = 0; c < 3; c++) {
    size_t cl = strlen(chars[c]);
    for (size_t cut = 1; cut < cl; cut++) {
      uint8_t buf[200];
      memset(buf, 'q', 100);
      memcpy(buf + 100, chars[c], cl);
      memset(buf + 100 + cl, 'r', 50);
      uint32_t s = wsev__utf8_validate(WSEV_UTF8_ACCEPT, buf, 100 + cut);
      CHECKF(is_mid(s), "char %zu cut %zu: %s", c, cut, state_name(s));
      s = wsev__utf8_validate(s, buf + 100 + cut, cl - cut + 50);
      CHECKF(s == WSEV_UTF8_ACCEPT, "char %zu cut %zu: %s", c, cut, state_name(s));
      /* an incomplete code point followed by a long ASCII run must be rejected */
      uint32_t m = wsev__utf8_validate(WSEV_UTF8_ACCEPT, buf, 100 + cut);
      m = wsev__utf8_validate(m, big, 200);
      CHECKF(m == WSEV_UTF8_REJECT, "char %zu cut %zu then ascii: %s", c, cut, state_name(m));
    }
  }
}

static void test_incremental_and_sticky(void) {
  TEST_CASE("incremental");
  static const char *const strs[] = {
      "Hello-\xC2\xB5@\xC3\x9F\xC3\xB6\xC3\xA4\xC3\xBC\xC3\xA0\xC3\xA1-UTF-8!!",
      "\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5",
      /* one string: split so that "\xA9a" is not read as one hex escape */
      ("\xF0\x9F\x98\x80\xF0\x9F\x98\x81\xE2\x82\xAC\xC3\xA9"
       "a\xF4\x8F\xBF\xBF"),
      "\xE0\xA0\x80\xED\x9F\xBF\xEE\x80\x80\xEF\xBF\xBD\xF0\x90\x80\x80",
  };
  for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) {
    const uint8_t *p = (const uint8_t *)strs[i];
    size_t n = strlen(strs[i]);
    CHECK(wsev__utf8_is_valid(p, n) == 1);
    /* every two-way and three-way split */
    for (size_t a = 0; a <= n; a++)
      for (size_t b = a; b <= n; b++) {
        uint32_t s = wsev__utf8_validate(WSEV_UTF8_ACCEPT, p, a);
        s = wsev__utf8_validate(s, p + a, b - a);
        s = wsev__utf8_validate(s, p + b, n - b);
        CHECKF(s == WSEV_UTF8_ACCEPT, "string %zu split %zu/%zu: %s", i, a, b, state_name(s));
      }
  }

  TEST_CASE("zero-length input");
  uint8_t dummy = 'x';
  CHECK(wsev__utf8_validate(WSEV_UTF8_ACCEPT, &dummy, 0) == WSEV_UTF8_ACCEPT);
  CHECK(wsev__utf8_validate(WSEV_UTF8_REJECT, &dummy, 0) == WSEV_UTF8_REJECT);
  CHECK(wsev__utf8_is_valid(&dummy, 0) == 1);
  {
    uint32_t mid = wsev__utf8_validate(WSEV_UTF8_ACCEPT, (const uint8_t *)"\xE2", 1);
    CHECK(is_mid(mid));
    CHECK(wsev__utf8_validate(mid, &dummy, 0) == mid);
    uint32_t mid2 = wsev__utf8_validate(mid, (const uint8_t *)"\x82", 1);
    CHECK(is_mid(mid2));
    CHECK(wsev__utf8_validate(mid2, (const uint8_t *)"\xAC", 1) == WSEV_UTF8_ACCEPT);
  }

  TEST_CASE("sticky REJECT");
  static const char *const inputs[] = {"a",        "abcdefghijklmnopqrstuvwxyz0123456789",
                                       "\xC3\xA9", "\xE2\x82\xAC",
                                       "\x80",     "\xF0\x9F\x98\x80"};
  for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++)
    CHECKF(wsev__utf8_validate(WSEV_UTF8_REJECT, (const uint8_t *)inputs[i], strlen(inputs[i])) ==
               WSEV_UTF8_REJECT,
           "input %zu", i);
  {
    uint32_t s = wsev__utf8_validate(WSEV_UTF8_ACCEPT, (const uint8_t *)"ab\xFF", 3);
    CHECK(s == WSEV_UTF8_REJECT);
    for (int k = 0; k < 100; k++) {
      s = wsev__utf8_validate(s, (const uint8_t *)"\xC3\xA9 plain text ", 15);
      if (s != WSEV_UTF8_REJECT) break;
    }
    CHECK(s == WSEV_UTF8_REJECT);
    /* an invalid byte in the middle of a long valid buffer also sticks */
    uint8_t buf[300];
    memset(buf, 'k', sizeof buf);
    buf[7] = 0xC0;
    CHECK(wsev__utf8_validate(WSEV_UTF8_ACCEPT, buf, sizeof buf) == WSEV_UTF8_REJECT);
    CHECK(wsev__utf8_is_valid(buf, sizeof buf) == 0);
  }
}

int main(void) {
  test_every_byte_value();
  test_table_3_7_boundaries();
  test_fail_fast();
  test_autobahn_6();
  test_incremental_and_sticky();
  test_long_buffers();
  test_all_code_points();
  test_exhaustive_short();
  test_random();
  return TEST_REPORT();
}
