/* The client address in Forwarded (RFC 7239) and X-Forwarded-For. Forwarded is read
 * left to right in one pass, element by element, keeping only what the last element
 * said of for=; the value is unescaped into a small buffer, since no usable node is
 * longer than a bracketed IPv6 literal with a port. */
#include "forwarded.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <strings.h>

#include "http_tokens.h"

/* "[" + the longest IPv6 text (45) + "]:" + 5 digits, with room to spare. */
#define NODE_MAX 64
/* from_forwarded: the header holds no element, so X-Forwarded-For decides. */
#define NO_ELEMENT 1

static int is_ows(char c) { return c == ' ' || c == '\t'; }
static int is_digit(char c) { return c >= '0' && c <= '9'; }

/* RFC 7239 section 6.3: obfport / obfnode's characters after the '_'. */
static int obfuscated(const char *s, size_t n) {
  if (n < 2 || s[0] != '_') return 0;
  for (size_t i = 1; i < n; i++) {
    char c = s[i];
    if (!(is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '.' || c == '_' ||
          c == '-'))
      return 0;
  }
  return 1;
}

/* A node: IPv4, IPv4:port, [IPv6], [IPv6]:port, or a bare IPv6 literal. */
static int parse_node(const char *s, size_t n, struct sockaddr_storage *out) {
  const char *host = s, *port = NULL;
  size_t host_len = n, port_len = 0;
  int v6;
  if (n > 0 && s[0] == '[') {
    const char *close = memchr(s, ']', n);
    if (!close) return -1;
    host = s + 1;
    host_len = (size_t)(close - host);
    size_t rest = n - (size_t)(close + 1 - s);
    if (rest > 0) {
      if (close[1] != ':') return -1;
      port = close + 2;
      port_len = rest - 1;
    }
    v6 = 1;
  } else {
    const char *colon = memchr(s, ':', n);
    /* Two colons or more: a bare IPv6 literal, which cannot carry a port. */
    v6 = colon && memchr(colon + 1, ':', n - (size_t)(colon + 1 - s)) != NULL;
    if (colon && !v6) {
      host_len = (size_t)(colon - s);
      port = colon + 1;
      port_len = n - host_len - 1;
    }
  }

  char text[INET6_ADDRSTRLEN];
  if (host_len >= sizeof text) return -1;
  memcpy(text, host, host_len);
  text[host_len] = 0;
  uint8_t addr[16];
  if (inet_pton(v6 ? AF_INET6 : AF_INET, text, addr) != 1) return -1;

  unsigned port_value = 0;
  if (port && !obfuscated(port, port_len)) {
    if (port_len == 0 || port_len > 5) return -1;
    for (size_t i = 0; i < port_len; i++) {
      if (!is_digit(port[i])) return -1;
      port_value = port_value * 10 + (unsigned)(port[i] - '0');
    }
    if (port_value > 65535) return -1;
  }

  memset(out, 0, sizeof *out);
  if (v6) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)out;
    a->sin6_family = AF_INET6;
    memcpy(&a->sin6_addr, addr, 16);
    a->sin6_port = htons((uint16_t)port_value);
  } else {
    struct sockaddr_in *a = (struct sockaddr_in *)out;
    a->sin_family = AF_INET;
    memcpy(&a->sin_addr, addr, 4);
    a->sin_port = htons((uint16_t)port_value);
  }
  return 0;
}

/* A pair's value at s[*i]: a quoted-string (unescaped) or a token, which may also hold
 * ':', '[' and ']' (see forwarded.h). Up to cap bytes go to dst (NULL: none); *len
 * gets the full unescaped length. 0, or -1 when it is not a value. */
static int parse_value(const char *s, size_t *i, char *dst, size_t cap, size_t *len) {
  size_t j = *i, n = 0;
  if (s[j] == '"') {
    for (j++;; j++) {
      unsigned char c = (unsigned char)s[j];
      if (c == '"') break;
      if (c == '\\') c = (unsigned char)s[++j];
      /* qdtext and quoted-pair's bytes alike: HTAB, SP, VCHAR, obs-text (the '"' and
       * '\' that qdtext leaves out were handled above). */
      if (c != '\t' && (c < 0x20 || c == 0x7F)) return -1; /* includes the end: open quote */
      if (dst && n < cap) dst[n] = (char)c;
      n++;
    }
    j++;
  } else {
    for (; wsev__http_is_tchar((unsigned char)s[j]) || s[j] == ':' || s[j] == '[' || s[j] == ']';
         j++) {
      if (dst && n < cap) dst[n] = s[j];
      n++;
    }
    if (n == 0) return -1;
  }
  *i = j;
  *len = n;
  return 0;
}

/* The last element's for=, or NO_ELEMENT, or -1 (see forwarded.h). */
static int from_forwarded(const char *s, struct sockaddr_storage *out) {
  char node[NODE_MAX], last[NODE_MAX];
  size_t node_len = 0, last_len = 0;
  int last_for = -1; /* how many for= the last element had; -1: no element yet */
  size_t i = 0;
  for (;;) {
    int pairs = 0, fors = 0;
    for (;;) {
      while (is_ows(s[i]))
        i++;
      if (s[i] == ';') {
        i++;
        continue;
      }
      if (s[i] == ',' || s[i] == 0) break;
      size_t name = i;
      while (wsev__http_is_tchar((unsigned char)s[i]))
        i++;
      size_t name_len = i - name;
      if (name_len == 0 || s[i] != '=') return -1;
      i++;
      int is_for = name_len == 3 && strncasecmp(s + name, "for", 3) == 0;
      size_t len;
      if (parse_value(s, &i, is_for ? node : NULL, sizeof node, &len) != 0) return -1;
      if (is_for) {
        fors++;
        node_len = len;
      }
      pairs++;
      while (is_ows(s[i]))
        i++;
      if (s[i] == ';')
        i++;
      else if (s[i] != ',' && s[i] != 0)
        return -1;
    }
    if (pairs > 0) {
      last_for = fors;
      last_len = fors == 1 ? node_len : 0;
      memcpy(last, node, last_len < sizeof last ? last_len : sizeof last);
    }
    if (s[i] == 0) break;
    i++;
  }
  if (last_for < 0) return NO_ELEMENT;
  /* No for=, or twice (RFC 7239 section 4: at most once), or too long to be a node. */
  if (last_for != 1 || last_len > sizeof last) return -1;
  return parse_node(last, last_len, out);
}

static int from_xff(const char *s, struct sockaddr_storage *out) {
  size_t pos = 0, n = strlen(s), len, last_len = 0;
  const char *item, *last = NULL;
  while (wsev__http_list_next(s, n, &pos, &item, &len)) {
    last = item;
    last_len = len;
  }
  return last ? parse_node(last, last_len, out) : -1;
}

int wsev__forwarded_client(const char *forwarded, const char *xff, struct sockaddr_storage *out) {
  if (forwarded) {
    int r = from_forwarded(forwarded, out);
    if (r != NO_ELEMENT) return r;
  }
  return xff ? from_xff(xff, out) : -1;
}
