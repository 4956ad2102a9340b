/* Shared helpers of the fuzz targets: a failure macro that says what broke, a
 * reference UTF-8 validator written from RFC 3629 (independent of lib/utf8.c), and
 * split positions derived deterministically from the input. */
#ifndef WSEV_FUZZ_COMMON_H
#define WSEV_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* An invariant of the library was broken: say which, then abort() so libFuzzer (or
 * the replay driver) reports the input. */
#define FUZZ_CHECK(cond)                                                                           \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond);                 \
      abort();                                                                                     \
    }                                                                                              \
  } while (0)

/* Reference UTF-8 classification of a byte string, code point by code point:
 * returns 1 when p[0..n) is valid, 0 when it is a valid string followed by the
 * start of a code point that some continuation could still complete (a viable
 * prefix), -1 when no continuation can make it valid. */
static inline int ref_utf8_class(const uint8_t *p, size_t n) {
  size_t i = 0;
  while (i < n) {
    uint8_t b = p[i];
    size_t len;
    uint32_t cp, min;
    if (b < 0x80) {
      i++;
      continue;
    } else if ((b & 0xE0) == 0xC0) {
      len = 2, cp = b & 0x1F, min = 0x80;
    } else if ((b & 0xF0) == 0xE0) {
      len = 3, cp = b & 0x0F, min = 0x800;
    } else if ((b & 0xF8) == 0xF0) {
      len = 4, cp = b & 0x07, min = 0x10000;
    } else {
      return -1; /* a continuation byte where a code point starts, or F8..FF */
    }
    size_t have = 1;
    while (have < len && i + have < n) {
      if ((p[i + have] & 0xC0) != 0x80) return -1;
      cp = (cp << 6) | (p[i + have] & 0x3F);
      have++;
    }
    /* The code points this sequence can still become: [lo, hi]. */
    uint32_t lo = cp, hi = cp;
    for (size_t k = have; k < len; k++) {
      lo = lo << 6;
      hi = (hi << 6) | 0x3F;
    }
    /* Valid targets: [min, max], minus the surrogates D800..DFFF. */
    uint32_t max = len == 2 ? 0x7FF : len == 3 ? 0xFFFF : 0x10FFFF;
    if (lo < min) lo = min;
    if (hi > max) hi = max;
    int viable = lo <= hi && !(lo >= 0xD800 && hi <= 0xDFFF);
    if (!viable) return -1;
    if (have < len) return 0; /* ran out of bytes inside a viable code point */
    i += len;
  }
  return 1;
}

static inline int ref_utf8_valid(const uint8_t *p, size_t n) { return ref_utf8_class(p, n) == 1; }

/* A small deterministic generator (splitmix64) for split positions. */
typedef struct {
  uint64_t s;
} fuzz_rng;

static inline uint64_t fuzz_next(fuzz_rng *r) {
  uint64_t z = (r->s += UINT64_C(0x9E3779B97F4A7C15));
  z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
  return z ^ (z >> 31);
}

/* A seed from the bytes themselves (FNV-1a), for targets whose whole input is data. */
static inline uint64_t fuzz_hash(const uint8_t *p, size_t n) {
  uint64_t h = UINT64_C(0xcbf29ce484222325);
  for (size_t i = 0; i < n; i++)
    h = (h ^ p[i]) * UINT64_C(0x100000001b3);
  return h;
}

/* The next chunk size, 0 < size <= left: mostly small pieces (1..16 bytes), sometimes
 * larger ones, so that both byte-by-byte and bulk paths are taken. */
static inline size_t fuzz_chunk(fuzz_rng *r, size_t left) {
  uint64_t v = fuzz_next(r);
  size_t size;
  switch (v & 3) {
  case 0: size = 1; break;
  case 1: size = 1 + (size_t)((v >> 8) % 16); break;
  case 2: size = 1 + (size_t)((v >> 8) % 256); break;
  default: size = left; break;
  }
  return size < left ? size : left;
}

#endif
