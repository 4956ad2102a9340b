/* fuzz-utf8: the incremental UTF-8 validator (lib/utf8.h) against a reference
 * written from RFC 3629 (fuzz-common.h). The whole input is the text.
 *
 * Invariants (abort() when broken):
 * - wsev__utf8_is_valid and wsev__utf8_validate from ACCEPT agree with the reference;
 * - fed byte by byte, the state after every prefix is ACCEPT exactly when the prefix
 *   is valid, REJECT exactly when no continuation could make it valid (fail fast),
 *   and "inside a code point" otherwise; REJECT is sticky;
 * - fed in pieces at split points derived from the input, the verdict is the same,
 *   and so is the state after each piece;
 * - an empty piece leaves the state unchanged. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz-common.h"
#include "utf8.h"

static void check_state(uint32_t state, int cls) {
  if (cls == 1)
    FUZZ_CHECK(state == WSEV_UTF8_ACCEPT);
  else if (cls < 0)
    FUZZ_CHECK(state == WSEV_UTF8_REJECT);
  else
    FUZZ_CHECK(state != WSEV_UTF8_ACCEPT && state != WSEV_UTF8_REJECT);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  int valid = ref_utf8_valid(data, size);

  /* The reference class of every prefix: cls[k] for data[0..k). A valid prefix
   * followed by a tail has the class of the tail, and a non-viable prefix stays
   * non-viable, so this is linear. */
  signed char *cls = malloc(size + 1);
  if (!cls) abort();
  cls[0] = 1;
  size_t last_valid = 0;
  for (size_t k = 1; k <= size; k++) {
    cls[k] = (signed char)(cls[k - 1] < 0 ? -1 : ref_utf8_class(data + last_valid, k - last_valid));
    if (cls[k] == 1) last_valid = k;
  }
  FUZZ_CHECK(cls[size] == ref_utf8_class(data, size));

  /* One shot. */
  FUZZ_CHECK(wsev__utf8_is_valid(data, size) == valid);
  uint32_t whole = wsev__utf8_validate(WSEV_UTF8_ACCEPT, data, size);
  FUZZ_CHECK((whole == WSEV_UTF8_ACCEPT) == valid);
  check_state(whole, cls[size]);

  /* Byte by byte, with the state checked after every prefix. Each byte is copied to
   * a 1-byte allocation so that any read beyond the given length is caught. */
  uint8_t *one = malloc(1);
  if (!one) abort();
  uint32_t state = WSEV_UTF8_ACCEPT;
  for (size_t i = 0; i < size; i++) {
    one[0] = data[i];
    uint32_t before = state;
    state = wsev__utf8_validate(state, one, 1);
    if (before == WSEV_UTF8_REJECT) FUZZ_CHECK(state == WSEV_UTF8_REJECT);
    FUZZ_CHECK(wsev__utf8_validate(state, data, 0) == state);
    check_state(state, cls[i + 1]);
  }
  FUZZ_CHECK(state == whole);
  free(one);

  /* Random splits (two different ones), each piece in an exact-size buffer. */
  for (int round = 0; round < 2; round++) {
    fuzz_rng rng = {fuzz_hash(data, size) + (uint64_t)round};
    size_t off = 0;
    state = WSEV_UTF8_ACCEPT;
    while (off < size) {
      size_t n = fuzz_chunk(&rng, size - off);
      uint8_t *piece = malloc(n);
      if (!piece) abort();
      memcpy(piece, data + off, n);
      state = wsev__utf8_validate(state, piece, n);
      free(piece);
      off += n;
      check_state(state, cls[off]);
    }
    FUZZ_CHECK(state == whole);
  }

  /* The same text at every alignment of the 8-byte ASCII fast path. */
  if (size <= 64) {
    uint8_t buf[64 + 8];
    for (size_t shift = 1; shift < 8; shift++) {
      memcpy(buf + shift, data, size);
      FUZZ_CHECK(wsev__utf8_validate(WSEV_UTF8_ACCEPT, buf + shift, size) == whole);
    }
  }
  free(cls);
  return 0;
}
