/* Reference implementations of the frame rules, written plainly from RFC 6455 and
 * independently of lib/frame.c, for the unit tests and the fuzz target to compare
 * against. */
#ifndef WSEV_TEST_FRAME_REFERENCE_H
#define WSEV_TEST_FRAME_REFERENCE_H

#include <stdint.h>
#include <string.h>

#include "frame.h"

static int ref_parse(const uint8_t *p, size_t n, wsev_frame_header *h) {
  if (n < 2) return 0;
  size_t need = 2;
  unsigned l7 = p[1] & 0x7F;
  if (l7 == 126) need += 2;
  if (l7 == 127) need += 8;
  if (p[1] & 0x80) need += 4;
  if (n < need) return 0;
  memset(h, 0, sizeof *h);
  h->fin = p[0] >> 7;
  h->rsv = (p[0] >> 4) & 7;
  h->opcode = p[0] & 0x0F;
  h->masked = p[1] >> 7;
  size_t o = 2;
  if (l7 < 126) {
    h->payload_len = l7;
  } else if (l7 == 126) {
    h->payload_len = (uint64_t)p[2] << 8 | p[3];
    o = 4;
  } else {
    if (p[2] & 0x80) return -1;
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
      v = v << 8 | p[2 + i];
    h->payload_len = v;
    o = 10;
  }
  if (h->masked) memcpy(h->mask, p + o, 4);
  return (int)need;
}

static int ref_close_code_valid(unsigned c) {
  /* RFC 6455 section 7.4 plus the codes IANA registered since (1012-1014). */
  return (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) || (c >= 3000 && c <= 4999);
}

static int ref_check(const wsev_frame_header *h, int in_frag, int must_be_masked) {
  if (h->rsv) return 1002;
  int op = h->opcode;
  int known = op == 0 || op == 1 || op == 2 || op == 8 || op == 9 || op == 10;
  if (!known) return 1002;
  if (!!h->masked != !!must_be_masked) return 1002;
  if (op >= 8) {
    if (!h->fin) return 1002;
    if (h->payload_len > 125) return 1002;
    return 0;
  }
  if (op == 0 && !in_frag) return 1002;
  if (op != 0 && in_frag) return 1002;
  return 0;
}

#endif
