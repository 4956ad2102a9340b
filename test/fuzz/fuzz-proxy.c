/* Fuzz target for the client-address parsers: wsev__proxy_header_parse (PROXY protocol
 * v1/v2) and wsev__forwarded_client (Forwarded / X-Forwarded-For).
 *
 * Input: the bytes a connection starts with, for the PROXY parser; the same bytes,
 * NUL-terminated and split at the first NUL, as the Forwarded value and the
 * X-Forwarded-For value (NULL when there is no NUL), for the other.
 *
 * PROXY invariants: the verdict is the same one shot and fed in growing prefixes (every
 * prefix gives 0 until the first one with a verdict, and every longer one gives that
 * same verdict and header); an accepted header ends exactly where its verdict first
 * appears, is at most WSEV_PROXY_HEADER_MAX and the input's length, and holds either
 * local with AF_UNSPEC or two addresses of one family (AF_INET/AF_INET6); written out
 * again in the form it came in (the v1 line from inet_ntop, or the v2 address block),
 * it reads back the same.
 * Forwarded invariants: 0 with an AF_INET/AF_INET6 address, or -1 with the output
 * untouched; an address Forwarded gives alone stays the same whatever X-Forwarded-For
 * says and with an element put in front (an X-Forwarded-For entry in front, likewise,
 * for X-Forwarded-For alone); an empty Forwarded is the same as none. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "forwarded.h"
#include "fuzz-common.h"
#include "proxy_protocol.h"

static int same_header(const wsev_proxy_header *a, const wsev_proxy_header *b) {
  return memcmp(a, b, sizeof *a) == 0;
}

static void check_header(const wsev_proxy_header *h) {
  FUZZ_CHECK(h->local == 0 || h->local == 1);
  if (h->local) {
    FUZZ_CHECK(h->source.ss_family == AF_UNSPEC && h->destination.ss_family == AF_UNSPEC);
  } else {
    FUZZ_CHECK(h->source.ss_family == AF_INET || h->source.ss_family == AF_INET6);
    FUZZ_CHECK(h->destination.ss_family == h->source.ss_family);
  }
}

static const uint8_t *addr_bytes(const struct sockaddr_storage *ss, uint16_t *port) {
  if (ss->ss_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
    *port = ntohs(a->sin6_port);
    return (const uint8_t *)&a->sin6_addr;
  }
  const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
  *port = ntohs(a->sin_port);
  return (const uint8_t *)&a->sin_addr;
}

/* An accepted, non-local header written out again reads back the same. For v1 TCP4
 * the line is canonical, so it must be the input's bytes exactly. */
static void check_rewritten(const uint8_t *data, int len, const wsev_proxy_header *h) {
  int v6 = h->source.ss_family == AF_INET6;
  uint16_t sport, dport;
  const uint8_t *src = addr_bytes(&h->source, &sport), *dst = addr_bytes(&h->destination, &dport);
  uint8_t line[256];
  int n;
  if (data[0] == 'P') {
    char s[INET6_ADDRSTRLEN], d[INET6_ADDRSTRLEN];
    FUZZ_CHECK(inet_ntop(v6 ? AF_INET6 : AF_INET, src, s, sizeof s) != NULL);
    FUZZ_CHECK(inet_ntop(v6 ? AF_INET6 : AF_INET, dst, d, sizeof d) != NULL);
    n = snprintf((char *)line, sizeof line, "PROXY TCP%c %s %s %u %u\r\n", v6 ? '6' : '4', s, d,
                 sport, dport);
    if (!v6) FUZZ_CHECK(n == len && memcmp(line, data, (size_t)len) == 0);
  } else {
    /* The signature, version and family bytes as they came, the address block from h. */
    size_t alen = v6 ? 16 : 4;
    memcpy(line, data, 14);
    line[14] = 0;
    line[15] = (uint8_t)(2 * alen + 4);
    memcpy(line + 16, src, alen);
    memcpy(line + 16 + alen, dst, alen);
    line[16 + 2 * alen] = (uint8_t)(sport >> 8);
    line[17 + 2 * alen] = (uint8_t)sport;
    line[18 + 2 * alen] = (uint8_t)(dport >> 8);
    line[19 + 2 * alen] = (uint8_t)dport;
    n = (int)(20 + 2 * alen);
    FUZZ_CHECK(memcmp(line + 16, data + 16, 2 * alen + 4) == 0);
  }
  wsev_proxy_header again;
  FUZZ_CHECK(wsev__proxy_header_parse(line, (size_t)n, &again) == n);
  FUZZ_CHECK(same_header(&again, h));
}

static void fuzz_proxy_header(const uint8_t *data, size_t size) {
  wsev_proxy_header whole, h;
  int r = wsev__proxy_header_parse(data, size, &whole);
  FUZZ_CHECK(r == WSEV_PROXY_INVALID || (r >= 0 && (size_t)r <= size));
  FUZZ_CHECK(r <= WSEV_PROXY_HEADER_MAX);
  if (r > 0) check_header(&whole);

  /* Growing prefixes: every one up to 300 bytes, then in random steps. */
  fuzz_rng rng = {fuzz_hash(data, size)};
  int first = 0; /* the first prefix's verdict that was not 0 */
  size_t first_at = 0;
  for (size_t k = 0; k <= size;) {
    int rk = wsev__proxy_header_parse(data, k, &h);
    if (first == 0 && rk != 0) {
      first = rk;
      first_at = k;
    }
    if (first == 0) {
      FUZZ_CHECK(rk == 0);
    } else {
      FUZZ_CHECK(rk == first);
      if (rk > 0) FUZZ_CHECK(same_header(&h, &whole));
    }
    if (k == size) break;
    k += k < 300 ? 1 : fuzz_chunk(&rng, size - k);
  }
  FUZZ_CHECK(first == r);
  if (r > 0) {
    /* Complete exactly at its own length (first_at can only be later when the
     * prefix steps skipped past it). */
    FUZZ_CHECK(first_at >= (size_t)r);
    FUZZ_CHECK(wsev__proxy_header_parse(data, (size_t)r - 1, &h) == 0);
    FUZZ_CHECK(wsev__proxy_header_parse(data, (size_t)r, &h) == r);
    FUZZ_CHECK(same_header(&h, &whole));
    if (!whole.local) check_rewritten(data, r, &whole);
  }
}

static int forwarded(const char *f, const char *x, struct sockaddr_storage *out) {
  struct sockaddr_storage untouched;
  memset(out, 0xA5, sizeof *out);
  untouched = *out;
  int r = wsev__forwarded_client(f, x, out);
  FUZZ_CHECK(r == 0 || r == -1);
  if (r == 0)
    FUZZ_CHECK(out->ss_family == AF_INET || out->ss_family == AF_INET6);
  else
    FUZZ_CHECK(memcmp(out, &untouched, sizeof *out) == 0);
  return r;
}

static int same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b) {
  size_t n = a->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
  return a->ss_family == b->ss_family && memcmp(a, b, n) == 0;
}

static void fuzz_forwarded(const uint8_t *data, size_t size) {
  char *buf = malloc(size + 1), *longer = malloc(size + 32);
  if (!buf || !longer) abort();
  memcpy(buf, data, size);
  buf[size] = 0;
  const char *f = buf;
  const char *x = strlen(buf) < size ? buf + strlen(buf) + 1 : NULL;

  struct sockaddr_storage a, b;
  forwarded(f, x, &a);
  /* An empty Forwarded is none. */
  int r1 = forwarded("", x, &a), r2 = forwarded(NULL, x, &b);
  FUZZ_CHECK(r1 == r2 && (r1 != 0 || same_addr(&a, &b)));

  /* An address from Forwarded alone: X-Forwarded-For does not change it, nor does an
   * element put in front. */
  if (forwarded(f, NULL, &a) == 0) {
    FUZZ_CHECK(forwarded(f, x, &b) == 0 && same_addr(&a, &b));
    snprintf(longer, size + 32, "for=192.0.2.1, %s", f);
    FUZZ_CHECK(forwarded(longer, NULL, &b) == 0 && same_addr(&a, &b));
  }
  /* Each string as X-Forwarded-For alone, and with an entry in front. */
  const char *xs[2] = {f, x};
  for (int i = 0; i < 2; i++) {
    if (!xs[i]) continue;
    if (forwarded(NULL, xs[i], &a) == 0) {
      snprintf(longer, size + 32, "192.0.2.1, %s", xs[i]);
      FUZZ_CHECK(forwarded(NULL, longer, &b) == 0 && same_addr(&a, &b));
    }
  }
  free(buf);
  free(longer);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_proxy_header(data, size);
  fuzz_forwarded(data, size);
  return 0;
}
