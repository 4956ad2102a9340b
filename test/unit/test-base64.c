/* base64.c: the RFC 4648 test vectors both ways, every length round trip, and the
 * inputs a Sec-WebSocket-Key check must refuse. */
#include <stdint.h>
#include <string.h>

#include "base64.h"
#include "test.h"

static const struct {
  const char *plain, *encoded;
} vectors[] = {
    {"", ""},
    {"f", "Zg=="},
    {"fo", "Zm8="},
    {"foo", "Zm9v"},
    {"foob", "Zm9vYg=="},
    {"fooba", "Zm9vYmE="},
    {"foobar", "Zm9vYmFy"},
};

int main(void) {
  char text[64];
  uint8_t bytes[64];

  TEST_CASE("RFC 4648 section 10 vectors");
  for (size_t i = 0; i < sizeof vectors / sizeof vectors[0]; i++) {
    size_t n = strlen(vectors[i].plain);
    CHECK(wsev__base64_encode((const uint8_t *)vectors[i].plain, n, text, sizeof text) ==
          strlen(vectors[i].encoded));
    CHECK(strcmp(text, vectors[i].encoded) == 0);
    long got =
        wsev__base64_decode(vectors[i].encoded, strlen(vectors[i].encoded), bytes, sizeof bytes);
    CHECK(got == (long)n);
    CHECK(got >= 0 && memcmp(bytes, vectors[i].plain, n) == 0);
  }

  TEST_CASE("every byte value, lengths 0 to 40, round trip");
  uint8_t all[40];
  for (size_t i = 0; i < sizeof all; i++)
    all[i] = (uint8_t)(i * 37 + 200);
  for (size_t n = 0; n <= sizeof all; n++) {
    size_t len = wsev__base64_encode(all, n, text, sizeof text);
    CHECK(len == (n + 2) / 3 * 4 && strlen(text) == len);
    CHECK(wsev__base64_decode(text, len, bytes, sizeof bytes) == (long)n);
    CHECK(memcmp(bytes, all, n) == 0);
  }
  /* The WebSocket key of RFC 6455 section 1.3. */
  CHECK(wsev__base64_decode("dGhlIHNhbXBsZSBub25jZQ==", 24, bytes, 16) == 16);
  CHECK(memcmp(bytes, "the sample nonce", 16) == 0);

  TEST_CASE("too small buffers");
  CHECK(wsev__base64_encode((const uint8_t *)"foo", 3, text, 4) == 0); /* no room for NUL */
  CHECK(wsev__base64_encode((const uint8_t *)"foo", 3, text, 5) == 4);
  CHECK(wsev__base64_decode("Zm9vYmFy", 8, bytes, 5) == -1);

  TEST_CASE("malformed input is refused");
  static const char *bad[] = {
      "Zm9",      /* not a multiple of 4 */
      "Zm9v\n",   /* whitespace */
      "Zm=v",     /* padding inside */
      "=Zm9",     /* padding first */
      "Zm9v====", /* a group of padding */
      "Zm9*",     /* outside the alphabet */
      "Zm9-",     /* the URL-safe alphabet */
      "Z===",     /* three padding characters */
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    CHECK(wsev__base64_decode(bad[i], strlen(bad[i]), bytes, sizeof bytes) == -1);
  return TEST_REPORT();
}
