/* Base64 (RFC 4648, standard alphabet, padded) for the WebSocket keys: ours to keep
 * the handshake independent of the TLS backend. */
#ifndef WSEV_BASE64_H
#define WSEV_BASE64_H

#include <stddef.h>
#include <stdint.h>

/* Encode len bytes into out (4 * ceil(len / 3) characters and a NUL): the number of
 * characters, or 0 if cap is too small for them and the NUL. */
size_t wsev__base64_encode(const uint8_t *in, size_t len, char *out, size_t cap);
/* Decode exactly `len` characters (a multiple of 4, padding only at the end, no
 * whitespace; bits left over by the padding are ignored, as mbedTLS did) into out: the number of
 * bytes, or -1 for anything else or when they do not fit in cap. */
long wsev__base64_decode(const char *in, size_t len, uint8_t *out, size_t cap);

#endif
