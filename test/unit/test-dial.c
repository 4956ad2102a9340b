/* Unit tests for lib/dial.h's ordering (RFC 8305 section 4): families interleaved
 * starting with the resolver's first, each family in the resolver's order, duplicates
 * dropped, other families skipped, the count bounded. The racing itself runs against
 * real sockets in test/deploy (test-dial.c, test_happy_eyeballs.py). */
#include <arpa/inet.h>
#include <netdb.h>
#include <stdlib.h>

#include "dial.h"
#include "test.h"

/* A resolver answer from a spec like "6:1 4:1 6:2": family and last address byte. */
typedef struct {
  struct addrinfo ai[64];
  struct sockaddr_in6 v6[64];
  struct sockaddr_in v4[64];
  struct sockaddr_un_like {
    sa_family_t family;
    char path[14];
  } other[64];
} answer;

static struct addrinfo *build(answer *a, const char *spec) {
  memset(a, 0, sizeof *a);
  size_t n = 0;
  for (const char *p = spec; *p && n < 64;) {
    int fam = *p == '6' ? 6 : *p == '4' ? 4 : 0;
    int last = atoi(p + 2);
    struct addrinfo *ai = &a->ai[n];
    if (fam == 6) {
      a->v6[n].sin6_family = AF_INET6;
      a->v6[n].sin6_port = htons(80);
      a->v6[n].sin6_addr.s6_addr[0] = 0x20;
      a->v6[n].sin6_addr.s6_addr[15] = (uint8_t)last;
      ai->ai_family = AF_INET6;
      ai->ai_addr = (struct sockaddr *)&a->v6[n];
      ai->ai_addrlen = sizeof a->v6[n];
    } else if (fam == 4) {
      a->v4[n].sin_family = AF_INET;
      a->v4[n].sin_port = htons(80);
      a->v4[n].sin_addr.s_addr = htonl(0x0a000000u | (unsigned)last);
      ai->ai_family = AF_INET;
      ai->ai_addr = (struct sockaddr *)&a->v4[n];
      ai->ai_addrlen = sizeof a->v4[n];
    } else {
      a->other[n].family = AF_UNIX;
      ai->ai_family = AF_UNIX;
      ai->ai_addr = (struct sockaddr *)&a->other[n];
      ai->ai_addrlen = sizeof a->other[n];
    }
    ai->ai_socktype = SOCK_STREAM;
    if (n) a->ai[n - 1].ai_next = ai;
    n++;
    while (*p && *p != ' ')
      p++;
    while (*p == ' ')
      p++;
  }
  return n ? &a->ai[0] : NULL;
}

/* The order as a spec string. */
static void describe(const struct addrinfo **out, size_t n, char *buf, size_t cap) {
  size_t o = 0;
  buf[0] = 0;
  for (size_t i = 0; i < n && o < cap; i++) {
    const struct addrinfo *ai = out[i];
    int last =
        ai->ai_family == AF_INET6
            ? ((const struct sockaddr_in6 *)ai->ai_addr)->sin6_addr.s6_addr[15]
            : (int)(ntohl(((const struct sockaddr_in *)ai->ai_addr)->sin_addr.s_addr) & 0xff);
    o += (size_t)snprintf(buf + o, cap - o, "%s%c:%d", i ? " " : "",
                          ai->ai_family == AF_INET6 ? '6' : '4', last);
  }
}

typedef struct {
  const char *in;
  size_t max;
  const char *want;
} order_case;

static const order_case cases[] = {
    {"6:1", 8, "6:1"},
    {"4:1", 8, "4:1"},
    {"6:1 6:2 4:1 4:2", 8, "6:1 4:1 6:2 4:2"},
    {"4:1 4:2 6:1 6:2", 8, "4:1 6:1 4:2 6:2"},
    {"6:1 6:2 6:3 4:1", 8, "6:1 4:1 6:2 6:3"},
    {"4:1 6:1 6:2 6:3", 8, "4:1 6:1 6:2 6:3"},
    {"6:1 4:1 6:2 4:2", 8, "6:1 4:1 6:2 4:2"},
    {"4:3 4:1 4:2", 8, "4:3 4:1 4:2"}, /* one family: the resolver's order kept */
    /* Duplicates (the same address under two socket types, or twice in /etc/hosts). */
    {"6:1 6:1 4:1 4:1 6:2", 8, "6:1 4:1 6:2"},
    {"4:1 4:1", 8, "4:1"},
    /* Other families are skipped. */
    {"x:0 6:1 x:0 4:1", 8, "6:1 4:1"},
    {"x:0", 8, ""},
    {"", 8, ""},
    /* Bounded. */
    {"6:1 6:2 4:1 4:2", 3, "6:1 4:1 6:2"},
    {"6:1 6:2 4:1 4:2", 1, "6:1"},
    {"6:1 6:2 4:1 4:2", 0, ""},
};

static void test_order(void) {
  TEST_CASE("order");
  static answer a;
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    const struct addrinfo *out[WSEV_RACE_MAX];
    struct addrinfo *list = build(&a, cases[i].in);
    size_t n = wsev__race_order(list, out, cases[i].max);
    char got[256];
    describe(out, n, got, sizeof got);
    CHECKF(strcmp(got, cases[i].want) == 0, "\"%s\" max %zu: got \"%s\", expected \"%s\"",
           cases[i].in, cases[i].max, got, cases[i].want);
  }

  TEST_CASE("at most WSEV_RACE_MAX");
  char spec[64 * 6] = "";
  size_t o = 0;
  for (int i = 0; i < 60; i++)
    o += (size_t)snprintf(spec + o, sizeof spec - o, "%s%c:%d", i ? " " : "", i % 3 ? '6' : '4', i);
  const struct addrinfo *out[64];
  size_t n = wsev__race_order(build(&a, spec), out, 64);
  CHECK(n <= 2 * WSEV_RACE_MAX && n >= WSEV_RACE_MAX);
  n = wsev__race_order(build(&a, spec), out, WSEV_RACE_MAX);
  CHECK_EQ_UINT(n, WSEV_RACE_MAX);
  /* Still interleaved from the first family (IPv4 here). */
  CHECK_EQ_INT(out[0]->ai_family, AF_INET);
  CHECK_EQ_INT(out[1]->ai_family, AF_INET6);
  CHECK_EQ_INT(out[2]->ai_family, AF_INET);
}

int main(void) {
  test_order();
  return TEST_REPORT();
}
