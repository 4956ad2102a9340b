/* Incremental UTF-8 validation (RFC 3629: no overlongs, no surrogates, nothing
 * above U+10FFFF). Pure code, no I/O. */
#ifndef WSEV_UTF8_H
#define WSEV_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* Validator states. ACCEPT: at a code point boundary, all valid so far. REJECT:
 * invalid, and it stays so. Every other value means "inside a code point". */
#define WSEV_UTF8_ACCEPT 0
#define WSEV_UTF8_REJECT 1

/* Validate n more bytes continuing from `state`; returns the new state. A message is
 * valid when the state after its last byte is WSEV_UTF8_ACCEPT. REJECT is returned
 * as soon as the first invalid byte is seen, even in the middle of a code point
 * split across calls (so a stream fails fast). */
uint32_t wsev__utf8_validate(uint32_t state, const uint8_t *p, size_t n);

/* Whole-buffer convenience: 1 if p[0..n) is valid UTF-8, else 0. */
int wsev__utf8_is_valid(const uint8_t *p, size_t n);

#endif
