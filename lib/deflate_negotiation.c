/* permessage-deflate negotiation: the extension-list grammar of RFC 6455 section 9.1,
 * then RFC 7692 section 7.1's rules for the four parameters. */
#include "deflate_negotiation.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "http_tokens.h"

/* More parameters than permessage-deflate has: such an offer is declined anyway. */
#define MAX_PARAMS 8

typedef struct {
  const char *name;
  size_t name_len;
  char value[4]; /* a window size needs 2; longer values are invalid anyway */
  size_t value_len;
  uint8_t has_value;
} ext_param;

typedef struct {
  const char *name;
  size_t name_len;
  ext_param params[MAX_PARAMS];
  int count;
  int too_many;
} ext_element;

static void skip_ows(const char *s, size_t *i) {
  while (s[*i] == ' ' || s[*i] == '\t')
    (*i)++;
}

static size_t token_len(const char *s, size_t i) {
  size_t j = i;
  while (s[j] && wsev__http_is_tchar((unsigned char)s[j]))
    j++;
  return j - i;
}

/* A parameter's value: a token or a quoted-string whose unescaped content is a token
 * (RFC 6455 section 9.1). 0, or -1 when malformed. */
static int read_value(const char *s, size_t *i, ext_param *p) {
  char unescaped[sizeof p->value];
  size_t n = 0, total = 0;
  int tokenish = 1;
  if (s[*i] == '"') {
    for ((*i)++;; (*i)++) {
      char c = s[*i];
      if (!c) return -1;
      if (c == '"') break;
      if (c == '\\' && !(c = s[++*i])) return -1;
      tokenish &= wsev__http_is_tchar((unsigned char)c);
      if (n < sizeof unescaped) unescaped[n++] = c;
      total++;
    }
    (*i)++;
    if (!total || !tokenish) return -1;
  } else {
    total = token_len(s, *i);
    if (!total) return -1;
    n = total < sizeof unescaped ? total : sizeof unescaped;
    memcpy(unescaped, s + *i, n);
    *i += total;
  }
  if (p) {
    p->has_value = 1;
    p->value_len = total; /* past the copied bytes: too long for any valid value */
    memcpy(p->value, unescaped, n < sizeof p->value ? n : sizeof p->value);
  }
  return 0;
}

/* The next element of the list from s[*i]; empty elements are skipped (RFC 7230's
 * list rule). 1 with *e set, 0 at the end, -1 when the grammar is broken. */
static int next_element(const char *s, size_t *i, ext_element *e) {
  for (;; (*i)++) {
    skip_ows(s, i);
    if (s[*i] != ',') break;
  }
  if (!s[*i]) return 0;
  memset(e, 0, sizeof *e);
  size_t n = token_len(s, *i);
  if (!n) return -1;
  e->name = s + *i;
  e->name_len = n;
  *i += n;
  for (;;) {
    skip_ows(s, i);
    if (!s[*i]) return 1;
    if (s[*i] == ',') {
      (*i)++;
      return 1;
    }
    if (s[*i] != ';') return -1;
    (*i)++;
    skip_ows(s, i);
    if (!(n = token_len(s, *i))) return -1;
    ext_param *p = NULL;
    if (e->count < MAX_PARAMS)
      p = &e->params[e->count++];
    else
      e->too_many = 1;
    if (p) {
      p->name = s + *i;
      p->name_len = n;
    }
    *i += n;
    skip_ows(s, i);
    if (s[*i] == '=') {
      (*i)++;
      skip_ows(s, i);
      if (read_value(s, i, p) != 0) return -1;
    }
  }
}

static int named(const char *name, size_t len, const char *want) {
  return len == strlen(want) && strncasecmp(name, want, len) == 0;
}

/* A window size, "8" to "15" exactly as RFC 7692 section 7.1.2 spells it; -1 if not. */
static int window_bits(const ext_param *p) {
  const char *v = p->value;
  if (p->value_len == 1 && (v[0] == '8' || v[0] == '9')) return v[0] - '0';
  if (p->value_len == 2 && v[0] == '1' && v[1] >= '0' && v[1] <= '5') return 10 + v[1] - '0';
  return -1;
}

/* The four parameters of one permessage-deflate element; 0 for absent. */
typedef struct {
  int server_no_takeover, client_no_takeover;
  int server_bits; /* server_max_window_bits' value */
  int client_bits; /* client_max_window_bits': its value, or 16 when it has none */
} pmd_params;

/* Read the parameters; -1 for one that is unknown, repeated, or has a bad value.
 * `answer`: this is a server's response, where client_max_window_bits needs a value. */
static int read_params(const ext_element *e, pmd_params *pp, int answer, const char **bad) {
  memset(pp, 0, sizeof *pp);
  if (e->too_many) {
    *bad = "too many parameters";
    return -1;
  }
  for (int k = 0; k < e->count; k++) {
    const ext_param *p = &e->params[k];
    int *slot;
    int value;
    if (named(p->name, p->name_len, "server_no_context_takeover")) {
      slot = &pp->server_no_takeover;
      value = p->has_value ? -1 : 1;
    } else if (named(p->name, p->name_len, "client_no_context_takeover")) {
      slot = &pp->client_no_takeover;
      value = p->has_value ? -1 : 1;
    } else if (named(p->name, p->name_len, "server_max_window_bits")) {
      slot = &pp->server_bits;
      value = p->has_value ? window_bits(p) : -1;
    } else if (named(p->name, p->name_len, "client_max_window_bits")) {
      slot = &pp->client_bits;
      value = p->has_value ? window_bits(p) : answer ? -1 : 16;
    } else {
      *bad = "unknown parameter";
      return -1;
    }
    if (*slot) {
      *bad = "repeated parameter";
      return -1;
    }
    if (value < 0) {
      *bad = "invalid parameter value";
      return -1;
    }
    *slot = value;
  }
  return 0;
}

static int min_int(int a, int b) { return a < b ? a : b; }

/* The answer to one offer, or -1 to decline it. */
static int answer_offer(const pmd_params *o, const wsev_pmd_config *config, wsev_pmd_agreed *a,
                        char *out) {
  int shared = config->mode == WSEV_PMD_SHARED, w = config->window_bits;
  /* zlib's raw deflate cannot keep to a 256-byte window: decline that request. */
  if (o->server_bits && o->server_bits < 9) return -1;
  a->on = 1;
  a->out_bits = (uint8_t)(o->server_bits ? min_int(o->server_bits, w) : w);
  a->out_takeover = !(o->server_no_takeover || shared);
  a->in_takeover = !(o->client_no_takeover || shared);
  /* We may ask for a smaller client window only if the client said it can use one. */
  int ask_client = o->client_bits && !shared && w < 15;
  a->in_bits = (uint8_t)(ask_client                              ? min_int(w, o->client_bits)
                         : o->client_bits && o->client_bits < 16 ? o->client_bits
                                                                 : 15);
  int n = snprintf(out, WSEV_PMD_HEADER_MAX, "permessage-deflate%s%s",
                   a->out_takeover ? "" : "; server_no_context_takeover",
                   a->in_takeover ? "" : "; client_no_context_takeover");
  if (o->server_bits || a->out_bits < 15)
    n += snprintf(out + n, (size_t)(WSEV_PMD_HEADER_MAX - n), "; server_max_window_bits=%d",
                  a->out_bits);
  if (ask_client)
    snprintf(out + n, (size_t)(WSEV_PMD_HEADER_MAX - n), "; client_max_window_bits=%d", a->in_bits);
  return 0;
}

int wsev__pmd_accept(const char *offers, const wsev_pmd_config *config, wsev_pmd_agreed *agreed,
                     char response[WSEV_PMD_HEADER_MAX]) {
  memset(agreed, 0, sizeof *agreed);
  response[0] = 0;
  if (!offers) return 0;
  ext_element e;
  size_t i = 0;
  int rc, chosen = 0;
  /* The whole header is read even after an offer was chosen: a broken one is a 400. */
  while ((rc = next_element(offers, &i, &e)) == 1) {
    pmd_params o;
    const char *bad;
    if (chosen || config->mode == WSEV_PMD_OFF ||
        !named(e.name, e.name_len, "permessage-deflate") || read_params(&e, &o, 0, &bad) != 0)
      continue;
    chosen = answer_offer(&o, config, agreed, response) == 0;
  }
  if (rc < 0) {
    memset(agreed, 0, sizeof *agreed);
    response[0] = 0;
    return -1;
  }
  return chosen;
}

void wsev__pmd_offer(const wsev_pmd_config *config, char offer[WSEV_PMD_HEADER_MAX]) {
  if (config->mode == WSEV_PMD_SHARED) {
    /* No context either way: the context's shared compressor and inflater serve us. */
    snprintf(offer, WSEV_PMD_HEADER_MAX,
             "permessage-deflate; client_no_context_takeover; server_no_context_takeover; "
             "client_max_window_bits");
  } else {
    int n = snprintf(offer, WSEV_PMD_HEADER_MAX, "permessage-deflate; client_max_window_bits");
    if (config->window_bits < 15)
      snprintf(offer + n, (size_t)(WSEV_PMD_HEADER_MAX - n), "; server_max_window_bits=%d",
               config->window_bits);
  }
}

int wsev__pmd_check_response(const char *response, const wsev_pmd_config *config,
                             wsev_pmd_agreed *agreed, char *why, size_t why_cap) {
  memset(agreed, 0, sizeof *agreed);
  if (!response) return 0;
  ext_element e;
  size_t i = 0;
  int rc = 0, elements = 0;
  /* The header at all, even empty, answers an offer we did not make. */
  const char *bad = config->mode == WSEV_PMD_OFF ? "unrequested extension" : NULL;
  while (!bad && (rc = next_element(response, &i, &e)) == 1) {
    elements++;
    pmd_params o;
    if (!named(e.name, e.name_len, "permessage-deflate"))
      bad = "unrequested extension";
    else if (agreed->on)
      bad = "permessage-deflate accepted twice";
    else if (read_params(&e, &o, 1, &bad) == 0) {
      int shared = config->mode == WSEV_PMD_SHARED, w = config->window_bits;
      if (shared && !o.server_no_takeover)
        bad = "server_no_context_takeover not accepted";
      else if (!shared && w < 15 && (!o.server_bits || o.server_bits > w))
        bad = "server_max_window_bits not accepted";
      agreed->on = 1;
      agreed->in_takeover = !o.server_no_takeover;
      agreed->in_bits = (uint8_t)(o.server_bits ? o.server_bits : 15);
      agreed->out_takeover = !(o.client_no_takeover || shared);
      agreed->out_bits = (uint8_t)(o.client_bits ? min_int(o.client_bits, w) : w);
    }
  }
  if (!bad && (rc < 0 || !elements)) bad = "malformed Sec-WebSocket-Extensions";
  if (!bad) return 0;
  snprintf(why, why_cap, "%s%s", bad,
           strstr(bad, "parameter") ? " in the permessage-deflate response" : "");
  memset(agreed, 0, sizeof *agreed);
  return -1;
}
