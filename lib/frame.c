/* RFC 6455 section 5 framing, as pure functions over bytes. */
#include "frame.h"

#include <string.h>

#include "utf8.h"

int wsev__frame_parse_header(const uint8_t *p, size_t n, wsev_frame_header *h) {
  if (n < 2) return 0;
  h->fin = p[0] >> 7;
  h->rsv = (p[0] >> 4) & 0x7;
  h->opcode = p[0] & 0x0F;
  h->masked = p[1] >> 7;
  uint64_t len = p[1] & 0x7F;
  size_t size = 2;
  if (len == 126) {
    if (n < 4) return 0;
    len = ((uint64_t)p[2] << 8) | p[3];
    size = 4;
  } else if (len == 127) {
    if (n < 10) return 0;
    len = 0;
    for (int i = 0; i < 8; i++)
      len = (len << 8) | p[2 + i];
    if (len >> 63) return -1;
    size = 10;
  }
  if (h->masked) {
    if (n < size + 4) return 0;
    memcpy(h->mask, p + size, 4);
    size += 4;
  }
  h->payload_len = len;
  return (int)size;
}

int wsev__frame_check(const wsev_frame_header *h, int in_fragmented_message, int must_be_masked) {
  if (h->rsv) return WSEV_CLOSE_PROTOCOL_ERROR; /* the reader clears RSV1 where it is allowed */
  if (h->masked != (must_be_masked ? 1 : 0)) return WSEV_CLOSE_PROTOCOL_ERROR;
  switch (h->opcode) {
  case WSEV_OP_CONT: return in_fragmented_message ? 0 : WSEV_CLOSE_PROTOCOL_ERROR;
  case WSEV_OP_TEXT:
  case WSEV_OP_BINARY: return in_fragmented_message ? WSEV_CLOSE_PROTOCOL_ERROR : 0;
  case WSEV_OP_CLOSE:
  case WSEV_OP_PING:
  case WSEV_OP_PONG:
    if (!h->fin || h->payload_len > WSEV_FRAME_MAX_CONTROL) return WSEV_CLOSE_PROTOCOL_ERROR;
    return 0;
  default: return WSEV_CLOSE_PROTOCOL_ERROR;
  }
}

size_t wsev__frame_encode_header(uint8_t *out, int fin, int opcode, uint64_t payload_len,
                                 const uint8_t mask[4]) {
  size_t size = 2;
  out[0] = (uint8_t)((fin ? 0x80 : 0) | (opcode & (WSEV_FRAME_RSV1 | 0x0F)));
  uint8_t mask_bit = mask ? 0x80 : 0;
  if (payload_len < 126) {
    out[1] = (uint8_t)(mask_bit | payload_len);
  } else if (payload_len <= 0xFFFF) {
    out[1] = mask_bit | 126;
    out[2] = (uint8_t)(payload_len >> 8);
    out[3] = (uint8_t)payload_len;
    size = 4;
  } else {
    out[1] = mask_bit | 127;
    for (int i = 0; i < 8; i++)
      out[2 + i] = (uint8_t)(payload_len >> (56 - 8 * i));
    size = 10;
  }
  if (mask) {
    memcpy(out + size, mask, 4);
    size += 4;
  }
  return size;
}

size_t wsev__frame_unmask(uint8_t *p, size_t n, const uint8_t mask[4], size_t offset) {
  size_t i = 0;
  offset &= 3;
  /* Align to the mask so that the word loop XORs with a fixed rotated key. */
  while (i < n && offset != 0) {
    p[i++] ^= mask[offset];
    offset = (offset + 1) & 3;
  }
  if (n - i >= 8) {
    uint8_t key8[8] = {mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3]};
    uint64_t key;
    memcpy(&key, key8, 8);
    for (; n - i >= 8; i += 8) {
      uint64_t w;
      memcpy(&w, p + i, 8);
      w ^= key;
      memcpy(p + i, &w, 8);
    }
  }
  for (; i < n; i++) {
    p[i] ^= mask[offset];
    offset = (offset + 1) & 3;
  }
  return offset;
}

int wsev__close_code_is_valid(unsigned code) {
  /* 1012-1014 were registered with IANA after RFC 6455. */
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
         (code >= 3000 && code <= 4999);
}

int wsev__close_payload_check(const uint8_t *p, size_t len, unsigned *code) {
  if (len == 0) {
    *code = WSEV_CLOSE_NO_STATUS;
    return 0;
  }
  if (len == 1) return WSEV_CLOSE_PROTOCOL_ERROR;
  unsigned c = ((unsigned)p[0] << 8) | p[1];
  if (!wsev__close_code_is_valid(c)) return WSEV_CLOSE_PROTOCOL_ERROR;
  if (!wsev__utf8_is_valid(p + 2, len - 2)) return WSEV_CLOSE_INVALID_DATA;
  *code = c;
  return 0;
}
