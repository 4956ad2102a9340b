/* Incremental UTF-8 validator. The state says what the next byte must be, so a
 * code point split across frames is checked byte by byte and an invalid byte is
 * reported at once (RFC 6455 section 8.1 asks to fail fast). */
#include "utf8.h"

#include <string.h>

/* States besides ACCEPT (0) and REJECT (1): how many continuation bytes are still
 * expected, and for the second byte of some lead bytes, a narrower range that rules
 * out overlongs (E0, F0), surrogates (ED) and code points above U+10FFFF (F4). */
enum {
  NEED1 = 2,    /* one more 80..BF */
  NEED2 = 3,    /* two more 80..BF */
  NEED3 = 4,    /* three more 80..BF */
  AFTER_E0 = 5, /* A0..BF, then one more */
  AFTER_ED = 6, /* 80..9F, then one more */
  AFTER_F0 = 7, /* 90..BF, then two more */
  AFTER_F4 = 8, /* 80..8F, then two more */
};

static uint32_t lead_byte(uint8_t b) {
  if (b < 0x80) return WSEV_UTF8_ACCEPT;
  if (b < 0xC2) return WSEV_UTF8_REJECT; /* continuation, or overlong C0/C1 */
  if (b < 0xE0) return NEED1;
  if (b == 0xE0) return AFTER_E0;
  if (b == 0xED) return AFTER_ED;
  if (b < 0xF0) return NEED2;
  if (b == 0xF0) return AFTER_F0;
  if (b < 0xF4) return NEED3;
  if (b == 0xF4) return AFTER_F4;
  return WSEV_UTF8_REJECT; /* F5..FF */
}

static uint32_t continuation(uint32_t state, uint8_t b) {
  uint8_t lo = 0x80, hi = 0xBF;
  uint32_t next;
  switch (state) {
  case NEED1: next = WSEV_UTF8_ACCEPT; break;
  case NEED2: next = NEED1; break;
  case NEED3: next = NEED2; break;
  case AFTER_E0:
    lo = 0xA0;
    next = NEED1;
    break;
  case AFTER_ED:
    hi = 0x9F;
    next = NEED1;
    break;
  case AFTER_F0:
    lo = 0x90;
    next = NEED2;
    break;
  case AFTER_F4:
    hi = 0x8F;
    next = NEED2;
    break;
  default: return WSEV_UTF8_REJECT;
  }
  return (b >= lo && b <= hi) ? next : WSEV_UTF8_REJECT;
}

uint32_t wsev__utf8_validate(uint32_t state, const uint8_t *p, size_t n) {
  size_t i = 0;
  while (i < n) {
    if (state == WSEV_UTF8_REJECT) return state;
    if (state == WSEV_UTF8_ACCEPT) {
      /* Skip ASCII eight bytes at a time: most text is ASCII. */
      while (i + 8 <= n) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        if (w & UINT64_C(0x8080808080808080)) break;
        i += 8;
      }
      while (i < n && p[i] < 0x80)
        i++;
      if (i == n) break;
      state = lead_byte(p[i++]);
    } else {
      state = continuation(state, p[i++]);
    }
  }
  return state;
}

int wsev__utf8_is_valid(const uint8_t *p, size_t n) {
  return wsev__utf8_validate(WSEV_UTF8_ACCEPT, p, n) == WSEV_UTF8_ACCEPT;
}
