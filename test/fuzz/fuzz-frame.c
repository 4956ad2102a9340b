/* fuzz-frame: the RFC 6455 frame codec (lib/frame.h). The input starts with a frame
 * header; what follows it is used as a payload.
 *
 * Invariants (abort() when broken):
 * - wsev__frame_parse_header agrees with a reference decoder written here from
 *   RFC 6455 section 5.2 (size, fields, -1 for a 64-bit length with the MSB set);
 * - every prefix of the input parses to 0 (need more) or to exactly the same result;
 * - wsev__frame_check agrees with a reference for all four (fragmented, masked)
 *   combinations;
 * - encoding the parsed header and parsing it back gives the same fields, with the
 *   shortest length encoding (and the same bytes as the input when it was minimal);
 * - wsev__frame_unmask: chained over pieces == one shot == a byte-wise reference,
 *   from every start offset; the returned offset is (start + n) mod 4; unmasking
 *   twice restores the bytes;
 * - wsev__close_payload_check and wsev__close_code_is_valid agree with a reference. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"
#include "fuzz-common.h"

/* ------------------------------------------------------------- references ---- */

#include "../common/frame-reference.h"

static int ref_close_payload(const uint8_t *p, size_t len, unsigned *code) {
  if (len == 0) {
    *code = 1005;
    return 0;
  }
  if (len == 1) return 1002;
  unsigned c = (unsigned)p[0] << 8 | p[1];
  if (!ref_close_code_valid(c)) return 1002;
  if (!ref_utf8_valid(p + 2, len - 2)) return 1007;
  *code = c;
  return 0;
}

static int same_header(const wsev_frame_header *a, const wsev_frame_header *b) {
  return a->fin == b->fin && a->rsv == b->rsv && a->opcode == b->opcode && a->masked == b->masked &&
         a->payload_len == b->payload_len && (!a->masked || memcmp(a->mask, b->mask, 4) == 0);
}

static size_t min_header_size(uint64_t len, int masked) {
  return 2 + (len < 126 ? 0 : len <= 0xFFFF ? 2 : 8) + (masked ? 4 : 0);
}

/* --------------------------------------------------------------- checks ---- */

static void check_unmask(const uint8_t *payload, size_t n, const uint8_t mask[4], uint64_t seed) {
  uint8_t *ref = malloc(n ? n : 1), *one = malloc(n ? n : 1), *chained = malloc(n ? n : 1);
  if (!ref || !one || !chained) abort();
  for (size_t start = 0; start < 4; start++) {
    for (size_t i = 0; i < n; i++)
      ref[i] = payload[i] ^ mask[(start + i) & 3];

    memcpy(one, payload, n);
    size_t end = wsev__frame_unmask(one, n, mask, start);
    FUZZ_CHECK(end == ((start + n) & 3));
    FUZZ_CHECK(n == 0 || memcmp(one, ref, n) == 0);
    /* XOR twice is the identity. */
    FUZZ_CHECK(wsev__frame_unmask(one, n, mask, start) == end);
    FUZZ_CHECK(n == 0 || memcmp(one, payload, n) == 0);

    /* Chained over pieces, each in an exact-size buffer. */
    fuzz_rng rng = {seed + start};
    size_t off = 0, offset = start;
    while (off < n) {
      size_t k = fuzz_chunk(&rng, n - off);
      uint8_t *piece = malloc(k);
      if (!piece) abort();
      memcpy(piece, payload + off, k);
      offset = wsev__frame_unmask(piece, k, mask, offset);
      memcpy(chained + off, piece, k);
      free(piece);
      off += k;
      FUZZ_CHECK(offset == ((start + off) & 3));
    }
    FUZZ_CHECK(offset == end);
    FUZZ_CHECK(n == 0 || memcmp(chained, ref, n) == 0);
  }
  /* An offset of 4 or more is taken modulo 4. */
  for (size_t i = 0; i < n; i++)
    ref[i] = payload[i] ^ mask[(1 + i) & 3];
  memcpy(one, payload, n);
  FUZZ_CHECK(wsev__frame_unmask(one, n, mask, 5) == ((5 + n) & 3));
  FUZZ_CHECK(n == 0 || memcmp(one, ref, n) == 0);
  free(ref);
  free(one);
  free(chained);
}

static void check_close_payload(const uint8_t *p, size_t n) {
  unsigned code = 0xDEAD, ref_code = 0xBEEF;
  int rc = wsev__close_payload_check(p, n, &code);
  int ref = ref_close_payload(p, n, &ref_code);
  FUZZ_CHECK(rc == ref);
  if (rc == 0) FUZZ_CHECK(code == ref_code);
  if (n >= 2) {
    unsigned c = (unsigned)p[0] << 8 | p[1];
    FUZZ_CHECK(wsev__close_code_is_valid(c) == ref_close_code_valid(c));
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  wsev_frame_header h, r;
  memset(&h, 0x5A, sizeof h);
  int hl = wsev__frame_parse_header(data, size, &h);
  int rl = ref_parse(data, size, &r);
  /* -1 may be reported as soon as the 8 length bytes are in, before the mask. */
  if (rl < 0 || (rl == 0 && hl < 0)) {
    FUZZ_CHECK(hl == -1);
    FUZZ_CHECK(size >= 10 && (data[1] & 0x7F) == 127 && (data[2] & 0x80));
  } else {
    FUZZ_CHECK(hl == rl);
    if (hl > 0) FUZZ_CHECK(same_header(&h, &r));
  }

  /* Every prefix: 0, or the same result. Each prefix in an exact-size buffer. */
  size_t limit = size < WSEV_FRAME_MAX_HEADER + 2 ? size : WSEV_FRAME_MAX_HEADER + 2;
  int seen_result = 0;
  for (size_t k = 0; k <= limit; k++) {
    uint8_t *prefix = malloc(k ? k : 1);
    if (!prefix) abort();
    memcpy(prefix, data, k);
    wsev_frame_header hk;
    int rk = wsev__frame_parse_header(prefix, k, &hk);
    free(prefix);
    if (rk == 0) {
      FUZZ_CHECK(!seen_result); /* once complete, longer prefixes stay complete */
      continue;
    }
    seen_result = 1;
    FUZZ_CHECK(rk == hl || (rk == -1 && hl == -1));
    if (rk > 0) {
      FUZZ_CHECK((size_t)rk <= k);
      FUZZ_CHECK(same_header(&hk, &h));
    }
  }
  FUZZ_CHECK(hl <= WSEV_FRAME_MAX_HEADER);

  const uint8_t *payload = data;
  size_t payload_len = size;
  uint8_t mask[4] = {0xA5, 0x3C, 0x0F, 0xF0};
  if (hl > 0) {
    FUZZ_CHECK(hl >= 2);
    payload = data + hl;
    payload_len = size - (size_t)hl;
    if (h.masked) memcpy(mask, h.mask, 4);

    for (int frag = 0; frag < 2; frag++)
      for (int masked = 0; masked < 2; masked++) {
        int rc = wsev__frame_check(&h, frag, masked);
        FUZZ_CHECK(rc == ref_check(&h, frag, masked));
        FUZZ_CHECK(rc == 0 || rc == WSEV_CLOSE_PROTOCOL_ERROR);
      }

    /* Round trip through the encoder (which writes no RSV bits). */
    uint8_t out[WSEV_FRAME_MAX_HEADER + 8];
    memset(out, 0xEE, sizeof out);
    size_t el =
        wsev__frame_encode_header(out, h.fin, h.opcode, h.payload_len, h.masked ? h.mask : NULL);
    FUZZ_CHECK(el == min_header_size(h.payload_len, h.masked));
    FUZZ_CHECK(out[el] == 0xEE); /* nothing written past the header */
    wsev_frame_header back;
    FUZZ_CHECK(wsev__frame_parse_header(out, el, &back) == (int)el);
    FUZZ_CHECK(back.rsv == 0);
    back.rsv = h.rsv;
    FUZZ_CHECK(same_header(&back, &h));
    if (h.rsv == 0 && (size_t)hl == el) FUZZ_CHECK(memcmp(out, data, el) == 0);
    /* Flipping fin and the mask presence round-trips as well. */
    el = wsev__frame_encode_header(out, !h.fin, h.opcode, h.payload_len, h.masked ? NULL : mask);
    FUZZ_CHECK(wsev__frame_parse_header(out, el, &back) == (int)el);
    FUZZ_CHECK(back.fin == !h.fin && back.masked == !h.masked && back.opcode == h.opcode &&
               back.payload_len == h.payload_len);
  }

  check_unmask(payload, payload_len, mask, fuzz_hash(data, size));
  check_close_payload(payload, payload_len);
  /* Control payloads are at most 125 bytes: also check that cut. */
  if (payload_len > WSEV_FRAME_MAX_CONTROL) check_close_payload(payload, WSEV_FRAME_MAX_CONTROL);
  return 0;
}
