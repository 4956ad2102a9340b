/* Unit tests for lib/forwarded.h: the client address in Forwarded (RFC 7239) and
 * X-Forwarded-For. RFC 7239's own examples, several elements and joined lines,
 * quoting and escapes, IPv4 and IPv6 with and without ports, obfuscated and unknown
 * nodes, X-Forwarded-For lists, which header wins, and garbage of every kind. */
#include <arpa/inet.h>
#include <netinet/in.h>

#include "forwarded.h"
#include "test.h"

typedef struct {
  const char *forwarded, *xff;
  const char *ip; /* NULL: -1 expected */
  unsigned port;
} fwd_case;

static const fwd_case cases[] = {
    /* RFC 7239 section 4's examples. */
    {"for=\"_gazonk\"", NULL, NULL, 0},
    {"For=\"[2001:db8:cafe::17]:4711\"", NULL, "2001:db8:cafe::17", 4711},
    {"for=192.0.2.60;proto=http;by=203.0.113.43", NULL, "192.0.2.60", 0},
    {"for=192.0.2.43, for=198.51.100.17", NULL, "198.51.100.17", 0},
    /* Section 6's node forms. */
    {"for=192.0.2.43", NULL, "192.0.2.43", 0},
    {"for=\"192.0.2.43:47011\"", NULL, "192.0.2.43", 47011},
    {"for=\"[2001:db8:cafe::17]\"", NULL, "2001:db8:cafe::17", 0},
    {"for=\"_hidden\", for=\"_SEVKISEK\"", NULL, NULL, 0},
    {"for=unknown", NULL, NULL, 0},
    {"for=UNKNOWN", NULL, NULL, 0},
    {"for=\"unknown:4711\"", NULL, NULL, 0},
    {"for=\"_Jaj9kKwmJ2:_47011\"", NULL, NULL, 0},
    /* An obfuscated port with a real address: the address, port 0. */
    {"for=\"192.0.2.43:_abc-1.x\"", NULL, "192.0.2.43", 0},
    {"for=\"[2001:db8::1]:_p\"", NULL, "2001:db8::1", 0},
    {"for=\"192.0.2.43:_\"", NULL, NULL, 0},
    {"for=\"192.0.2.43:_a b\"", NULL, NULL, 0},
    /* Section 7.1: a chain ending in "unknown" tells nothing. */
    {"for=192.0.2.43,for=\"[2001:db8:cafe::17]\",for=unknown", NULL, NULL, 0},
    {"for=192.0.2.43,for=\"[2001:db8:cafe::17]\"", NULL, "2001:db8:cafe::17", 0},
    /* Only the last element counts, whatever came before. */
    {"for=unknown, for=10.0.0.1", NULL, "10.0.0.1", 0},
    {"for=\"_x\", for=203.0.113.1;proto=https", NULL, "203.0.113.1", 0},
    {"for=10.0.0.1;for=10.0.0.2, for=10.0.0.3", NULL, "10.0.0.3", 0},
    /* Lines joined by the caller with "," or ", ". */
    {"for=1.1.1.1, for=2.2.2.2, for=3.3.3.3;proto=https", NULL, "3.3.3.3", 0},
    {"for=1.1.1.1,for=2.2.2.2;by=\"[::1]:80\",proto=http;for=\"4.4.4.4:44\"", NULL, "4.4.4.4", 44},
    /* Parameter names in any case; the order of pairs does not matter. */
    {"FOR=1.2.3.4", NULL, "1.2.3.4", 0},
    {"proto=https;fOr=1.2.3.4;HOST=example.com", NULL, "1.2.3.4", 0},
    {"by=_proxy;for=\"[::ffff:1.2.3.4]:1\"", NULL, "::ffff:1.2.3.4", 1},
    /* Quoted-strings: escapes, and ';' ',' '=' inside quotes are not separators. */
    {"for=\"1.2.3.\\4\"", NULL, "1.2.3.4", 0},
    {"for=\"\\[2001:db8::\\1\\]:\\8\\0\"", NULL, "2001:db8::1", 80},
    {"for=1.1.1.1, host=\"a,b;c=d\";for=2.2.2.2", NULL, "2.2.2.2", 0},
    {"host=\"x\\\"y, for=9.9.9.9\";for=2.2.2.2", NULL, "2.2.2.2", 0},
    {"for=2.2.2.2;host=\"x\\\", for=9.9.9.9\"", NULL, "2.2.2.2", 0},
    {"for=2.2.2.2;ext=\"\t\x80\xff\"", NULL, "2.2.2.2", 0},
    /* Spaces and tabs around ',' and ';', empty elements and pairs. */
    {"  for=1.2.3.4 ; proto=http  ,\tfor=5.6.7.8\t", NULL, "5.6.7.8", 0},
    {"for=1.2.3.4,,", NULL, "1.2.3.4", 0},
    {",for=1.2.3.4", NULL, "1.2.3.4", 0},
    {";;for=1.2.3.4;;", NULL, "1.2.3.4", 0},
    {"for=1.2.3.4, ;, ", NULL, "1.2.3.4", 0},
    /* Lenient: unquoted ':' and brackets, a bare IPv6 literal. */
    {"for=1.2.3.4:80", NULL, "1.2.3.4", 80},
    {"for=[::1]", NULL, "::1", 0},
    {"for=[::1]:8080;proto=http", NULL, "::1", 8080},
    {"for=\"2001:db8::1\"", NULL, "2001:db8::1", 0},
    {"for=1.2.3.4:00080", NULL, "1.2.3.4", 80},
    {"for=1.2.3.4:0", NULL, "1.2.3.4", 0},
    {"for=1.2.3.4:65535", NULL, "1.2.3.4", 65535},
    /* The last element without a usable for=: nothing, and X-Forwarded-For is not
     * asked (a proxy that writes Forwarded passes X-Forwarded-For through). */
    {"for=1.2.3.4, proto=https", "5.6.7.8", NULL, 0},
    {"for=1.2.3.4;for=5.6.7.8", "5.6.7.8", NULL, 0},
    {"for=unknown", "5.6.7.8", NULL, 0},
    {"for=\"_hidden\"", "5.6.7.8", NULL, 0},
    {"for=\"1.2.3.4, for=5.6.7.8", "9.9.9.9", NULL, 0},
    {"for=1.2.3.4 junk", "9.9.9.9", NULL, 0},
    /* Forwarded with no element at all: X-Forwarded-For decides. */
    {"", "5.6.7.8", "5.6.7.8", 0},
    {" , ,\t", "5.6.7.8", "5.6.7.8", 0},
    {";", "5.6.7.8", "5.6.7.8", 0},
    {"", NULL, NULL, 0},
    /* Forwarded is preferred when it has an element. */
    {"for=1.2.3.4", "5.6.7.8", "1.2.3.4", 0},
    /* Garbage in Forwarded. */
    {"for=1.2.3", NULL, NULL, 0},
    {"for=01.2.3.4", NULL, NULL, 0},
    {"for=1.2.3.4:", NULL, NULL, 0},
    {"for=1.2.3.4:65536", NULL, NULL, 0},
    {"for=1.2.3.4:123456", NULL, NULL, 0},
    {"for=1.2.3.4:8o", NULL, NULL, 0},
    {"for=1.2.3.4:-1", NULL, NULL, 0},
    {"for=\"[1.2.3.4]\"", NULL, NULL, 0},
    {"for=\"[::1]x\"", NULL, NULL, 0},
    {"for=\"[::1]:\"", NULL, NULL, 0},
    {"for=\"[::1\"", NULL, NULL, 0},
    {"for=\"::1]\"", NULL, NULL, 0},
    {"for=\"[fe80::1%eth0]\"", NULL, NULL, 0},
    {"for=\"2001:db8::1:80:1:2:3:4\"", NULL, NULL, 0},
    {"for=example.com", NULL, NULL, 0},
    {"for=\"1.2.3.4 \"", NULL, NULL, 0},
    {"for=\"\"", NULL, NULL, 0},
    {"for=", NULL, NULL, 0},
    {"for", NULL, NULL, 0},
    {"=1.2.3.4", NULL, NULL, 0},
    {"for = 1.2.3.4", NULL, NULL, 0},
    {"for =1.2.3.4", NULL, NULL, 0},
    {"for= 1.2.3.4", NULL, NULL, 0},
    {"for=1.2.3.4 5.6.7.8", NULL, NULL, 0},
    {"for=1.2.3.4=5", NULL, NULL, 0},
    {"for=1.2.3.4\"x\"", NULL, NULL, 0},
    {"for=\"1.2.3.4\"x", NULL, NULL, 0},
    {"f(r)=1, for=1.2.3.4", NULL, NULL, 0},
    {"for=1.2.3.4\x01", NULL, NULL, 0},
    {"for=\"1.2.3.4\x01\"", NULL, NULL, 0},
    {"for=\"1.2.3.4\\", NULL, NULL, 0},
    {"for=\"1.2.3.4", NULL, NULL, 0},
    {"for=\"[2001:db8:cafe:0000:0000:0000:0000:0017]:04711\" ", NULL, "2001:db8:cafe::17", 4711},
    {"for=\"[0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0001]\"", NULL, NULL, 0},
    /* X-Forwarded-For: the last entry. */
    {NULL, "203.0.113.195", "203.0.113.195", 0},
    {NULL, "203.0.113.195, 70.41.3.18, 150.172.238.178", "150.172.238.178", 0},
    {NULL, "2001:db8:85a3:8d3:1319:8a2e:370:7348", "2001:db8:85a3:8d3:1319:8a2e:370:7348", 0},
    {NULL, "1.2.3.4,2001:db8::1", "2001:db8::1", 0},
    {NULL, "  1.2.3.4  ,\t5.6.7.8\t", "5.6.7.8", 0},
    {NULL, "unknown, 1.2.3.4", "1.2.3.4", 0},
    {NULL, "garbage, 1.2.3.4", "1.2.3.4", 0},
    {NULL, "1.2.3.4, 5.6.7.8,, ", "5.6.7.8", 0},
    /* ...with the ports some proxies add. */
    {NULL, "1.2.3.4:8080", "1.2.3.4", 8080},
    {NULL, "[2001:db8::1]:4711", "2001:db8::1", 4711},
    {NULL, "9.9.9.9, [::1]", "::1", 0},
    /* ...and nothing usable. */
    {NULL, "1.2.3.4, unknown", NULL, 0},
    {NULL, "1.2.3.4, garbage", NULL, 0},
    {NULL, "1.2.3.4, _hidden", NULL, 0},
    {NULL, "1.2.3.4, \"5.6.7.8\"", NULL, 0},
    {NULL, "1.2.3.4, 5.6.7.8 9.9.9.9", NULL, 0},
    {NULL, "1.2.3.4, 5.6.7.8:", NULL, 0},
    {NULL, "1.2.3.4, 5.6.7.8:99999", NULL, 0},
    {NULL, "1.2.3.4, [5.6.7.8]", NULL, 0},
    {NULL, "1.2.3.4, 1.2.3.4.5", NULL, 0},
    {NULL, "", NULL, 0},
    {NULL, " , ,", NULL, 0},
    {NULL, NULL, NULL, 0},
};

static void check_case(const fwd_case *c) {
  char name[300];
  snprintf(name, sizeof name, "Forwarded [%s] X-Forwarded-For [%s]",
           c->forwarded ? c->forwarded : "(none)", c->xff ? c->xff : "(none)");
  TEST_CASE(name);
  struct sockaddr_storage out, untouched;
  memset(&untouched, 0xAA, sizeof untouched);
  out = untouched;
  int r = wsev__forwarded_client(c->forwarded, c->xff, &out);
  if (!c->ip) {
    CHECK_EQ_INT(r, -1);
    CHECK(memcmp(&out, &untouched, sizeof out) == 0);
    return;
  }
  CHECK_EQ_INT(r, 0);
  uint8_t want[16];
  if (strchr(c->ip, ':')) {
    struct sockaddr_in6 a;
    memcpy(&a, &out, sizeof a);
    CHECK_EQ_INT(out.ss_family, AF_INET6);
    CHECK(inet_pton(AF_INET6, c->ip, want) == 1);
    CHECK_EQ_MEM(&a.sin6_addr, want, 16);
    CHECK_EQ_UINT(ntohs(a.sin6_port), c->port);
    CHECK_EQ_UINT(a.sin6_flowinfo, 0);
    CHECK_EQ_UINT(a.sin6_scope_id, 0);
  } else {
    struct sockaddr_in a;
    memcpy(&a, &out, sizeof a);
    CHECK_EQ_INT(out.ss_family, AF_INET);
    CHECK(inet_pton(AF_INET, c->ip, want) == 1);
    CHECK_EQ_MEM(&a.sin_addr, want, 4);
    CHECK_EQ_UINT(ntohs(a.sin_port), c->port);
  }
}

/* Long values: a for= longer than any node, and long chains. */
static void long_values(void) {
  static char f[20000];
  TEST_CASE("for= value of 100 characters");
  struct sockaddr_storage out;
  snprintf(f, sizeof f, "for=\"[2001:db8::1]:%s\"",
           "0000000000000000000000000000000000000000000000000000000000000000000000000080");
  CHECK_EQ_INT(wsev__forwarded_client(f, NULL, &out), -1);
  TEST_CASE("1000 elements");
  size_t n = 0;
  for (int i = 0; i < 1000; i++)
    n += (size_t)snprintf(f + n, sizeof f - n, "for=10.0.%d.%d, ", i / 256, i % 256);
  snprintf(f + n, sizeof f - n, "for=\"[::2]:2\"");
  CHECK_EQ_INT(wsev__forwarded_client(f, NULL, &out), 0);
  CHECK_EQ_INT(out.ss_family, AF_INET6);
  CHECK_EQ_UINT(ntohs(((struct sockaddr_in6 *)&out)->sin6_port), 2);
  TEST_CASE("1000 X-Forwarded-For entries");
  n = 0;
  for (int i = 0; i < 1000; i++)
    n += (size_t)snprintf(f + n, sizeof f - n, "10.0.%d.%d, ", i / 256, i % 256);
  snprintf(f + n, sizeof f - n, "192.0.2.1");
  CHECK_EQ_INT(wsev__forwarded_client(NULL, f, &out), 0);
  CHECK_EQ_INT(out.ss_family, AF_INET);
  CHECK_EQ_UINT(ntohl(((struct sockaddr_in *)&out)->sin_addr.s_addr), 0xC0000201u);
}

int main(void) {
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    check_case(&cases[i]);
  long_values();
  return TEST_REPORT();
}
