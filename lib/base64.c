/* Base64 (see base64.h). */
#include "base64.h"

static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t wsev__base64_encode(const uint8_t *in, size_t len, char *out, size_t cap) {
  size_t need = (len + 2) / 3 * 4;
  if (cap < need + 1) return 0;
  char *o = out;
  for (; len >= 3; in += 3, len -= 3) {
    uint32_t v = (uint32_t)in[0] << 16 | (uint32_t)in[1] << 8 | in[2];
    *o++ = alphabet[v >> 18];
    *o++ = alphabet[v >> 12 & 63];
    *o++ = alphabet[v >> 6 & 63];
    *o++ = alphabet[v & 63];
  }
  if (len) {
    uint32_t v = (uint32_t)in[0] << 16 | (len == 2 ? (uint32_t)in[1] << 8 : 0);
    *o++ = alphabet[v >> 18];
    *o++ = alphabet[v >> 12 & 63];
    *o++ = len == 2 ? alphabet[v >> 6 & 63] : '=';
    *o++ = '=';
  }
  *o = 0;
  return need;
}

/* 0-63, or -1 for a character outside the alphabet. */
static int value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

long wsev__base64_decode(const char *in, size_t len, uint8_t *out, size_t cap) {
  if (len % 4) return -1;
  size_t pad = len && in[len - 1] == '=' ? (in[len - 2] == '=' ? 2 : 1) : 0;
  size_t n = len / 4 * 3 - pad;
  if (n > cap) return -1;
  size_t at = 0;
  for (size_t i = 0; i < len; i += 4) {
    int last = i + 4 == len;
    uint32_t v = 0;
    for (int k = 0; k < 4; k++) {
      int d = last && k >= 4 - (int)pad ? 0 : value(in[i + k]);
      if (d < 0) return -1;
      v = v << 6 | (uint32_t)d;
    }
    out[at++] = (uint8_t)(v >> 16);
    if (at < n) out[at++] = (uint8_t)(v >> 8);
    if (at < n) out[at++] = (uint8_t)v;
  }
  return (long)n;
}
