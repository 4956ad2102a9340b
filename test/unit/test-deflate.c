/* permessage-deflate without sockets: the negotiation (lib/deflate_negotiation.h) on
 * a matrix of offers and answers, checked against a model of RFC 7692 section 7 and
 * wsev's policy written here; and the data path (lib/deflate.h): round trips in both
 * memory modes and every window, the maximum size bound, bad data, and a bomb inflated
 * under a counting allocator. */
#include <stdlib.h>

#include "alloc.h"
#include "deflate.h"
#include "deflate_negotiation.h"
#include "test.h"
#include "wsev.h"

#include <zlib.h>

#define CHECK_EQ_UINTF(a, b, ...) CHECK_EQ_INTF((long long)(a), (long long)(b), __VA_ARGS__)

/* ---------------------------------------------------------- counting allocator ---- */

/* Every wsev allocation carries its size in a header, so live and peak bytes are
 * known (zlib's streams allocate through wsev's allocator too). */
#define HDR 16
static size_t live_bytes, peak_bytes;

static void note(size_t add, size_t sub) {
  live_bytes = live_bytes + add - sub;
  if (live_bytes > peak_bytes) peak_bytes = live_bytes;
}

static void *count_malloc(size_t n) {
  uint8_t *p = malloc(n + HDR);
  if (!p) return NULL;
  memcpy(p, &n, sizeof n);
  note(n, 0);
  return p + HDR;
}

static void *count_calloc(size_t count, size_t size) {
  if (size && count > (SIZE_MAX - HDR) / size) return NULL;
  void *p = count_malloc(count * size);
  if (p) memset(p, 0, count * size);
  return p;
}

static void count_free(void *ptr) {
  if (!ptr) return;
  uint8_t *p = (uint8_t *)ptr - HDR;
  size_t n;
  memcpy(&n, p, sizeof n);
  note(0, n);
  free(p);
}

static void *count_realloc(void *ptr, size_t n) {
  if (!ptr) return count_malloc(n);
  uint8_t *p = (uint8_t *)ptr - HDR;
  size_t old;
  memcpy(&old, p, sizeof old);
  uint8_t *q = realloc(p, n + HDR);
  if (!q) return NULL;
  memcpy(q, &n, sizeof n);
  note(n, old);
  return q + HDR;
}

/* ------------------------------------------------------------- negotiation ---- */

static const char *mode_name(int mode) {
  return mode == WSEV_PMD_SHARED ? "shared" : mode == WSEV_PMD_DEDICATED ? "dedicated" : "off";
}

/* An offer's parameters: 0 absent; bits 8..15; client_bits 16: present without value. */
typedef struct {
  int server_no_takeover, client_no_takeover, server_bits, client_bits;
} offer_params;

/* What a server with `config` must answer to one offer (the model): 0 declined, or 1
 * with the response and the agreement. RFC 7692 section 7.1 and wsev's policy:
 * shared mode answers no context takeover both ways; dedicated keeps each context
 * unless its side asked for none. server_max_window_bits: the smaller of the offer and
 * our window, said whenever offered or below 15 (8 is declined: zlib cannot).
 * client_max_window_bits: asked for (our window, or the client's smaller value) only
 * in dedicated mode below 15 and when the client offered the parameter. */
static int model_accept(const offer_params *o, const wsev_pmd_config *config,
                        wsev_pmd_agreed *a, char *resp) {
  int shared = config->mode == WSEV_PMD_SHARED, w = config->window_bits;
  memset(a, 0, sizeof *a);
  resp[0] = 0;
  if (o->server_bits == 8) return 0;
  a->on = 1;
  a->out_takeover = !shared && !o->server_no_takeover;
  a->in_takeover = !shared && !o->client_no_takeover;
  a->out_bits = (uint8_t)(o->server_bits && o->server_bits < w ? o->server_bits : w);
  int ask = !shared && w < 15 && o->client_bits;
  if (ask)
    a->in_bits = (uint8_t)(o->client_bits < w ? o->client_bits : w);
  else
    a->in_bits = (uint8_t)(o->client_bits && o->client_bits <= 15 ? o->client_bits : 15);
  strcpy(resp, "permessage-deflate");
  if (!a->out_takeover) strcat(resp, "; server_no_context_takeover");
  if (!a->in_takeover) strcat(resp, "; client_no_context_takeover");
  char num[48];
  if (o->server_bits || a->out_bits < 15) {
    snprintf(num, sizeof num, "; server_max_window_bits=%d", a->out_bits);
    strcat(resp, num);
  }
  if (ask) {
    snprintf(num, sizeof num, "; client_max_window_bits=%d", a->in_bits);
    strcat(resp, num);
  }
  return 1;
}

/* Random case for a name: the grammar's names are case-insensitive. */
static void mixed_case(char *s) {
  for (; *s; s++)
    if (*s >= 'a' && *s <= 'z' && test_rand_below(3) == 0) *s = (char)(*s - 'a' + 'A');
}

/* Write an offer for o, parameters in a random order and spelling: random case, OWS
 * around ';' and '=', values bare or quoted, after offers that must be passed over. */
static void write_offer(const offer_params *o, char *out, size_t cap) {
  char params[4][96];
  int n = 0;
  if (o->server_no_takeover) strcpy(params[n++], "server_no_context_takeover");
  if (o->client_no_takeover) strcpy(params[n++], "client_no_context_takeover");
  static const char *ows[] = {"", " ", "\t", "  "};
  for (int k = 0; k < 2; k++) {
    int v = k ? o->client_bits : o->server_bits;
    const char *name = k ? "client_max_window_bits" : "server_max_window_bits";
    const char *quote = test_rand_below(2) ? "\"" : "";
    if (v == 16)
      strcpy(params[n++], name);
    else if (v)
      snprintf(params[n++], sizeof params[0], "%s%s=%s%s%d%s", name, ows[test_rand_below(2)],
               ows[test_rand_below(2)], quote, v, quote);
  }
  for (int i = n - 1; i > 0; i--) { /* shuffle */
    int j = (int)test_rand_below((uint32_t)i + 1);
    if (j == i) continue;
    char t[96];
    strcpy(t, params[i]);
    strcpy(params[i], params[j]);
    strcpy(params[j], t);
  }
  /* Before it, sometimes: offers that are declined or skipped, so the answer is the
   * same. */
  static const char *before[] = {"", "", "x-webkit-deflate-frame, ", " , ,",
                                 "permessage-deflate; server_max_window_bits=16, ",
                                 "permessage-deflate; unknown, ",
                                 "permessage-deflate; client_no_context_takeover=1,"};
  snprintf(out, cap, "%spermessage-deflate", before[test_rand_below(7)]);
  for (int i = 0; i < n; i++) { /* (at most about 200 bytes in all) */
    strcat(out, ows[test_rand_below(4)]);
    strcat(out, ";");
    strcat(out, ows[test_rand_below(4)]);
    strcat(out, params[i]);
  }
  mixed_case(out);
}

static void check_agreed(const wsev_pmd_agreed *got, const wsev_pmd_agreed *want,
                         const char *what) {
  CHECK_EQ_INTF(got->on, want->on, "%s", what);
  CHECK_EQ_INTF(got->out_takeover, want->out_takeover, "%s", what);
  CHECK_EQ_INTF(got->in_takeover, want->in_takeover, "%s", what);
  CHECK_EQ_INTF(got->out_bits, want->out_bits, "%s", what);
  CHECK_EQ_INTF(got->in_bits, want->in_bits, "%s", what);
}

/* Every combination of the four parameters, both modes, windows 9..15. */
static void test_accept_matrix(void) {
  TEST_CASE("accept: every parameter combination, mode and window");
  static const int bits_values[] = {0, 8, 9, 10, 11, 12, 13, 14, 15};
  static const int client_values[] = {0, 16, 8, 9, 10, 11, 12, 13, 14, 15};
  size_t cases = 0;
  for (int mode = WSEV_PMD_SHARED; mode <= WSEV_PMD_DEDICATED; mode++)
    for (int w = 9; w <= 15; w++)
      for (int snt = 0; snt < 2; snt++)
        for (int cnt = 0; cnt < 2; cnt++)
          for (size_t sb = 0; sb < sizeof bits_values / sizeof bits_values[0]; sb++)
            for (size_t cb = 0; cb < sizeof client_values / sizeof client_values[0]; cb++) {
              offer_params o = {snt, cnt, bits_values[sb], client_values[cb]};
              wsev_pmd_config config = {mode, w};
              char offer[256], resp[WSEV_PMD_HEADER_MAX], want_resp[256], what[400];
              wsev_pmd_agreed got, want;
              write_offer(&o, offer, sizeof offer);
              snprintf(what, sizeof what, "%s window %d, offer \"%s\"", mode_name(mode), w, offer);
              int want_rc = model_accept(&o, &config, &want, want_resp);
              CHECK_EQ_INTF(wsev__pmd_accept(offer, &config, &got, resp), want_rc, "%s", what);
              if (strcmp(resp, want_resp) != 0)
                fprintf(stderr, "%s:\n  got      \"%s\"\n  expected \"%s\"\n", what, resp,
                        want_resp);
              CHECKF(strcmp(resp, want_resp) == 0, "%s", what);
              check_agreed(&got, &want, what);
              cases++;
            }
  CHECK_EQ_UINT(cases, 2 * 7 * 2 * 2 * 9 * 10);
}

typedef struct {
  const char *offers;
  int mode, window;
  int rc;
  const char *response;
  wsev_pmd_agreed agreed; /* on, out_takeover, in_takeover, out_bits, in_bits */
} accept_case;

static void test_accept_cases(void) {
  static const accept_case cases[] = {
      /* What browsers send. */
      {"permessage-deflate; client_max_window_bits", WSEV_PMD_SHARED, 15, 1,
       "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
       {1, 0, 0, 15, 15}},
      {"permessage-deflate; client_max_window_bits", WSEV_PMD_DEDICATED, 15, 1,
       "permessage-deflate", {1, 1, 1, 15, 15}},
      {"permessage-deflate; client_max_window_bits", WSEV_PMD_DEDICATED, 10, 1,
       "permessage-deflate; server_max_window_bits=10; client_max_window_bits=10",
       {1, 1, 1, 10, 10}},
      {"permessage-deflate", WSEV_PMD_DEDICATED, 10, 1,
       "permessage-deflate; server_max_window_bits=10", {1, 1, 1, 10, 15}},
      {"permessage-deflate", WSEV_PMD_SHARED, 12, 1,
       "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
       "server_max_window_bits=12",
       {1, 0, 0, 12, 15}},
      /* Quoted values are tokens once unescaped (RFC 6455 section 9.1). */
      {"permessage-deflate; server_max_window_bits=\"10\"", WSEV_PMD_DEDICATED, 15, 1,
       "permessage-deflate; server_max_window_bits=10", {1, 1, 1, 10, 15}},
      {"permessage-deflate; server_max_window_bits=\"1\\0\"", WSEV_PMD_DEDICATED, 15, 1,
       "permessage-deflate; server_max_window_bits=10", {1, 1, 1, 10, 15}},
      {"permessage-deflate; client_max_window_bits = \"9\"", WSEV_PMD_DEDICATED, 12, 1,
       "permessage-deflate; server_max_window_bits=12; client_max_window_bits=9",
       {1, 1, 1, 12, 9}},
      /* Case-insensitive names; OWS; empty list elements. */
      {"PerMessage-Deflate; SERVER_NO_CONTEXT_TAKEOVER", WSEV_PMD_DEDICATED, 15, 1,
       "permessage-deflate; server_no_context_takeover", {1, 0, 1, 15, 15}},
      {" , ,permessage-deflate\t;\tclient_no_context_takeover ,, ", WSEV_PMD_DEDICATED, 15, 1,
       "permessage-deflate; client_no_context_takeover", {1, 1, 0, 15, 15}},
      {",", WSEV_PMD_SHARED, 15, 0, "", {0}},
      {"", WSEV_PMD_SHARED, 15, 0, "", {0}},
      /* Declined offers: the next one is tried. */
      {"permessage-deflate; server_max_window_bits=8, permessage-deflate", WSEV_PMD_SHARED, 15,
       1, "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
       {1, 0, 0, 15, 15}},
      {"permessage-deflate; server_max_window_bits=08", WSEV_PMD_DEDICATED, 15, 0, "", {0}},
      {"permessage-deflate; server_max_window_bits=16", WSEV_PMD_DEDICATED, 15, 0, "", {0}},
      {"permessage-deflate; server_max_window_bits=7", WSEV_PMD_DEDICATED, 15, 0, "", {0}},
      {"permessage-deflate; server_max_window_bits=015", WSEV_PMD_DEDICATED, 15, 0, "", {0}},
      {"permessage-deflate; server_max_window_bits=+9", WSEV_PMD_DEDICATED, 15, 0, "", {0}},
      {"permessage-deflate; server_max_window_bits=1a", WSEV_PMD_DEDICATED, 15, 0, "", {0}},
      {"permessage-deflate; client_max_window_bits=16", WSEV_PMD_DEDICATED, 15, 0, "", {0}},
      {"permessage-deflate; client_max_window_bits=\"\"", WSEV_PMD_DEDICATED, 15, -1, "", {0}},
      {"permessage-deflate; server_max_window_bits", WSEV_PMD_DEDICATED, 15, 0, "", {0}},
      {"permessage-deflate; server_no_context_takeover=1", WSEV_PMD_DEDICATED, 15, 0, "", {0}},
      {"permessage-deflate; client_no_context_takeover=\"x\"", WSEV_PMD_DEDICATED, 15, 0, "",
       {0}},
      {"permessage-deflate; server_no_context_takeover; Server_No_Context_Takeover",
       WSEV_PMD_DEDICATED, 15, 0, "", {0}},
      {"permessage-deflate; client_max_window_bits; client_max_window_bits=10",
       WSEV_PMD_DEDICATED, 15, 0, "", {0}},
      {"permessage-deflate; server_max_window_bits=10; server_max_window_bits=10",
       WSEV_PMD_DEDICATED, 15, 0, "", {0}},
      {"permessage-deflate; foo", WSEV_PMD_DEDICATED, 15, 0, "", {0}},
      {"permessage-deflate; foo=bar, permessage-deflate; client_no_context_takeover",
       WSEV_PMD_DEDICATED, 15, 1, "permessage-deflate; client_no_context_takeover",
       {1, 1, 0, 15, 15}},
      {"x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=9", WSEV_PMD_SHARED,
       15, 1,
       "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
       "server_max_window_bits=9",
       {1, 0, 0, 9, 15}},
      {"permessage-deflate; server_max_window_bits=12, permessage-deflate", WSEV_PMD_DEDICATED, 10,
       1, "permessage-deflate; server_max_window_bits=10", {1, 1, 1, 10, 15}},
      {"permessage-deflate; a; b; c; d; e; f; g; h; i", WSEV_PMD_DEDICATED, 15, 0, "", {0}},
      {"deflate-stream", WSEV_PMD_SHARED, 15, 0, "", {0}},
      {"permessage-deflate", WSEV_PMD_OFF, 15, 0, "", {0}},
      /* Grammar errors: the whole header, even after a good offer (400). */
      {"permessage-deflate;", WSEV_PMD_SHARED, 15, -1, "", {0}},
      {"permessage-deflate; ;", WSEV_PMD_SHARED, 15, -1, "", {0}},
      {"permessage-deflate server_no_context_takeover", WSEV_PMD_SHARED, 15, -1, "", {0}},
      {"permessage-deflate; =10", WSEV_PMD_SHARED, 15, -1, "", {0}},
      {"permessage-deflate; server_max_window_bits=", WSEV_PMD_SHARED, 15, -1, "", {0}},
      {"permessage-deflate; server_max_window_bits=\"10", WSEV_PMD_SHARED, 15, -1, "", {0}},
      {"permessage-deflate; server_max_window_bits=\"1 0\"", WSEV_PMD_SHARED, 15, -1, "", {0}},
      {"permessage-deflate; server_max_window_bits=\"10\"x", WSEV_PMD_SHARED, 15, -1, "", {0}},
      {"permessage-deflate; client_max_window_bits=1\\0", WSEV_PMD_SHARED, 15, -1, "", {0}},
      {"; permessage-deflate", WSEV_PMD_SHARED, 15, -1, "", {0}},
      {"permessage-deflate, ;x", WSEV_PMD_SHARED, 15, -1, "", {0}},
      {"permessage@deflate", WSEV_PMD_SHARED, 15, -1, "", {0}},
      {"permessage-deflate, \"quoted\"", WSEV_PMD_SHARED, 15, -1, "", {0}},
      {"permessage-deflate; server_max_window_bits=10 11", WSEV_PMD_SHARED, 15, -1, "", {0}},
      {"permessage-deflate", WSEV_PMD_SHARED, 15, 1,
       "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
       {1, 0, 0, 15, 15}},
      {"permessage-deflate; a=\"\\", WSEV_PMD_OFF, 15, -1, "", {0}},
      {"permessage-deflate;;", WSEV_PMD_OFF, 15, -1, "", {0}},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const accept_case *t = &cases[i];
    char name[300];
    snprintf(name, sizeof name, "accept \"%s\" (%s, %d)", t->offers, mode_name(t->mode),
             t->window);
    TEST_CASE(name);
    wsev_pmd_config config = {t->mode, t->window};
    wsev_pmd_agreed got;
    char resp[WSEV_PMD_HEADER_MAX];
    memset(resp, 'x', sizeof resp);
    CHECK_EQ_INT(wsev__pmd_accept(t->offers, &config, &got, resp), t->rc);
    CHECK_EQ_STR(resp, t->response);
    check_agreed(&got, &t->agreed, name);
  }

  TEST_CASE("accept: no header");
  wsev_pmd_config config = {WSEV_PMD_SHARED, 15};
  wsev_pmd_agreed got;
  char resp[WSEV_PMD_HEADER_MAX] = "junk";
  CHECK_EQ_INT(wsev__pmd_accept(NULL, &config, &got, resp), 0);
  CHECK_EQ_STR(resp, "");
  CHECK_EQ_INT(got.on, 0);

  TEST_CASE("accept: a grammar error after an accepted offer clears it");
  CHECK_EQ_INT(wsev__pmd_accept("permessage-deflate, x;", &config, &got, resp), -1);
  CHECK_EQ_STR(resp, "");
  CHECK_EQ_INT(got.on, 0);

  TEST_CASE("accept: the longest answer fits");
  wsev_pmd_config dedicated = {WSEV_PMD_DEDICATED, 9};
  CHECK_EQ_INT(wsev__pmd_accept("permessage-deflate; server_no_context_takeover; "
                                "client_no_context_takeover; server_max_window_bits=15; "
                                "client_max_window_bits=15",
                                &dedicated, &got, resp),
               1);
  CHECK_EQ_STR(resp, "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
                     "server_max_window_bits=9; client_max_window_bits=9");
  CHECK(strlen(resp) < WSEV_PMD_HEADER_MAX);
}

static void test_offer(void) {
  for (int mode = WSEV_PMD_SHARED; mode <= WSEV_PMD_DEDICATED; mode++)
    for (int w = 9; w <= 15; w++) {
      char name[64], want[WSEV_PMD_HEADER_MAX], offer[WSEV_PMD_HEADER_MAX];
      snprintf(name, sizeof name, "offer (%s, window %d)", mode_name(mode), w);
      TEST_CASE(name);
      wsev_pmd_config config = {mode, w};
      wsev__pmd_offer(&config, offer);
      if (mode == WSEV_PMD_SHARED)
        strcpy(want, "permessage-deflate; client_no_context_takeover; "
                     "server_no_context_takeover; client_max_window_bits");
      else if (w == 15)
        strcpy(want, "permessage-deflate; client_max_window_bits");
      else
        snprintf(want, sizeof want,
                 "permessage-deflate; client_max_window_bits; server_max_window_bits=%d", w);
      CHECK_EQ_STR(offer, want);
    }
}

/* Our offer, answered by our server, checked by our client, for every pair of
 * configurations: both ends agree on each direction. */
static void test_offer_accept_check(void) {
  TEST_CASE("our offer, our answer, our check: both ends agree");
  for (int cm = WSEV_PMD_SHARED; cm <= WSEV_PMD_DEDICATED; cm++)
    for (int cw = 9; cw <= 15; cw++)
      for (int sm = WSEV_PMD_SHARED; sm <= WSEV_PMD_DEDICATED; sm++)
        for (int sw = 9; sw <= 15; sw++) {
          wsev_pmd_config client = {cm, cw}, server = {sm, sw};
          char offer[WSEV_PMD_HEADER_MAX], resp[WSEV_PMD_HEADER_MAX], why[128] = "", what[400];
          wsev_pmd_agreed s, c;
          wsev__pmd_offer(&client, offer);
          int rc = wsev__pmd_accept(offer, &server, &s, resp);
          snprintf(what, sizeof what, "client %s %d, server %s %d: \"%s\" -> \"%s\"",
                   mode_name(cm), cw, mode_name(sm), sw, offer, resp);
          CHECK_EQ_INTF(rc, 1, "%s", what);
          CHECK_EQ_INTF(wsev__pmd_check_response(resp, &client, &c, why, sizeof why), 0, "%s: %.100s",
                        what, why);
          CHECK_EQ_INTF(c.on, 1, "%s", what);
          /* Client to server: the server inflates what the client compresses. */
          CHECK_EQ_INTF(c.out_takeover, s.in_takeover, "%s", what);
          CHECKF(c.out_bits <= s.in_bits, "%s: client compresses with %d, server reads %d", what,
                 c.out_bits, s.in_bits);
          /* Server to client. */
          CHECK_EQ_INTF(c.in_takeover, s.out_takeover, "%s", what);
          CHECK_EQ_INTF(c.in_bits, s.out_bits, "%s", what);
          /* Each side's wish holds: shared keeps no context, windows within ours. */
          if (cm == WSEV_PMD_SHARED) CHECKF(!c.in_takeover && !c.out_takeover, "%s", what);
          if (sm == WSEV_PMD_SHARED) CHECKF(!s.in_takeover && !s.out_takeover, "%s", what);
          CHECKF(c.out_bits <= cw && s.out_bits <= sw, "%s", what);
          if (cm == WSEV_PMD_DEDICATED) CHECKF(c.in_bits <= cw, "%s", what);
          if (sm == WSEV_PMD_DEDICATED && sw < 15) CHECKF(s.in_bits <= sw, "%s", what);
        }
}

typedef struct {
  const char *response;
  int mode, window;
  const char *why; /* NULL: accepted */
  wsev_pmd_agreed agreed;
} check_case;

static void test_check_response(void) {
  static const check_case cases[] = {
      /* Legal answers. */
      {NULL, WSEV_PMD_SHARED, 15, NULL, {0}},
      {NULL, WSEV_PMD_OFF, 15, NULL, {0}},
      {"permessage-deflate; server_no_context_takeover; client_no_context_takeover",
       WSEV_PMD_SHARED, 15, NULL, {1, 0, 0, 15, 15}},
      {"permessage-deflate; server_no_context_takeover", WSEV_PMD_SHARED, 12, NULL,
       {1, 0, 0, 12, 15}},
      {"PERMESSAGE-DEFLATE ;Server_No_Context_Takeover ; client_max_window_bits=\"10\"",
       WSEV_PMD_SHARED, 12, NULL, {1, 0, 0, 10, 15}},
      {"permessage-deflate; server_no_context_takeover; server_max_window_bits=9",
       WSEV_PMD_SHARED, 15, NULL, {1, 0, 0, 15, 9}},
      {"permessage-deflate", WSEV_PMD_DEDICATED, 15, NULL, {1, 1, 1, 15, 15}},
      {"permessage-deflate; client_no_context_takeover", WSEV_PMD_DEDICATED, 15, NULL,
       {1, 0, 1, 15, 15}},
      {"permessage-deflate; server_no_context_takeover", WSEV_PMD_DEDICATED, 15, NULL,
       {1, 1, 0, 15, 15}},
      {"permessage-deflate; client_max_window_bits=9", WSEV_PMD_DEDICATED, 15, NULL,
       {1, 1, 1, 9, 15}},
      {"permessage-deflate; client_max_window_bits=15; server_max_window_bits=11",
       WSEV_PMD_DEDICATED, 11, NULL, {1, 1, 1, 11, 11}},
      {"permessage-deflate; server_max_window_bits=11", WSEV_PMD_DEDICATED, 11, NULL,
       {1, 1, 1, 11, 11}},
      {"permessage-deflate; server_max_window_bits=8", WSEV_PMD_DEDICATED, 9, NULL,
       {1, 1, 1, 9, 8}},
      {"permessage-deflate; server_max_window_bits=10", WSEV_PMD_DEDICATED, 15, NULL,
       {1, 1, 1, 15, 10}},
      {" ,permessage-deflate, ", WSEV_PMD_DEDICATED, 15, NULL, {1, 1, 1, 15, 15}},
      /* Illegal ones, with their reasons. */
      {"", WSEV_PMD_OFF, 15, "unrequested extension", {0}},
      {"permessage-deflate", WSEV_PMD_OFF, 15, "unrequested extension", {0}},
      {"x-webkit-deflate-frame", WSEV_PMD_SHARED, 15, "unrequested extension", {0}},
      {"permessage-deflate; server_no_context_takeover, foo", WSEV_PMD_SHARED, 15,
       "unrequested extension", {0}},
      {"permessage-deflate, permessage-deflate", WSEV_PMD_DEDICATED, 15,
       "permessage-deflate accepted twice", {0}},
      {"permessage-deflate", WSEV_PMD_SHARED, 15, "server_no_context_takeover not accepted", {0}},
      {"permessage-deflate; client_no_context_takeover", WSEV_PMD_SHARED, 15,
       "server_no_context_takeover not accepted", {0}},
      {"permessage-deflate", WSEV_PMD_DEDICATED, 12, "server_max_window_bits not accepted", {0}},
      {"permessage-deflate; server_max_window_bits=13", WSEV_PMD_DEDICATED, 12,
       "server_max_window_bits not accepted", {0}},
      {"permessage-deflate; foo", WSEV_PMD_DEDICATED, 15,
       "unknown parameter in the permessage-deflate response", {0}},
      {"permessage-deflate; server_no_context_takeover; SERVER_NO_CONTEXT_TAKEOVER",
       WSEV_PMD_SHARED, 15, "repeated parameter in the permessage-deflate response", {0}},
      {"permessage-deflate; client_max_window_bits", WSEV_PMD_DEDICATED, 15,
       "invalid parameter value in the permessage-deflate response", {0}},
      {"permessage-deflate; server_max_window_bits=16", WSEV_PMD_DEDICATED, 15,
       "invalid parameter value in the permessage-deflate response", {0}},
      {"permessage-deflate; server_max_window_bits=09", WSEV_PMD_DEDICATED, 15,
       "invalid parameter value in the permessage-deflate response", {0}},
      {"permessage-deflate; server_no_context_takeover=yes", WSEV_PMD_SHARED, 15,
       "invalid parameter value in the permessage-deflate response", {0}},
      {"", WSEV_PMD_SHARED, 15, "malformed Sec-WebSocket-Extensions", {0}},
      {" , ", WSEV_PMD_DEDICATED, 15, "malformed Sec-WebSocket-Extensions", {0}},
      {"permessage-deflate;", WSEV_PMD_DEDICATED, 15, "malformed Sec-WebSocket-Extensions", {0}},
      {"permessage-deflate; server_max_window_bits=\"9", WSEV_PMD_DEDICATED, 15,
       "malformed Sec-WebSocket-Extensions", {0}},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const check_case *t = &cases[i];
    char name[300];
    snprintf(name, sizeof name, "check \"%s\" (%s, %d)", t->response ? t->response : "(none)",
             mode_name(t->mode), t->window);
    TEST_CASE(name);
    wsev_pmd_config config = {t->mode, t->window};
    wsev_pmd_agreed got;
    char why[128] = "";
    int rc = wsev__pmd_check_response(t->response, &config, &got, why, sizeof why);
    CHECK_EQ_INT(rc, t->why ? -1 : 0);
    if (t->why) CHECK_EQ_STR(why, t->why);
    check_agreed(&got, &t->agreed, name);
  }

  TEST_CASE("check: a short reason buffer is cut, not overrun");
  wsev_pmd_config config = {WSEV_PMD_DEDICATED, 15};
  wsev_pmd_agreed got;
  char why[12];
  memset(why, 'z', sizeof why);
  CHECK_EQ_INT(wsev__pmd_check_response("permessage-deflate; foo", &config, &got, why, 8), -1);
  CHECK_EQ_STR(why, "unknown");
  CHECK_EQ_INT(why[8], 'z');
}

/* --------------------------------------------------------------- data path ---- */

static wsev_pool pool;

/* Two ends of one direction: `tx` compresses with window `bits`, `rx` inflates with
 * the same agreement. */
typedef struct {
  wsev_deflate_streams *tx_streams, *rx_streams;
  wsev_deflate *tx, *rx;
} link_;

static void link_open(link_ *l, int takeover, int bits, int level) {
  wsev_deflate_options options = {.mode = takeover ? WSEV_DEFLATE_DEDICATED : WSEV_DEFLATE_SHARED,
                                  .level = level, .window_bits = bits, .mem_level = 8,
                                  .threshold = 1};
  l->tx_streams = wsev__deflate_streams_new();
  l->rx_streams = wsev__deflate_streams_new();
  l->tx = wsev__deflate_new(&options, l->tx_streams);
  l->rx = wsev__deflate_new(&options, l->rx_streams);
  if (!l->tx || !l->rx) abort();
  l->tx->agreed = (wsev_pmd_agreed){1, (uint8_t)takeover, 0, (uint8_t)bits, 15};
  l->rx->agreed = (wsev_pmd_agreed){1, 0, (uint8_t)takeover, 15, (uint8_t)bits};
}

static void link_close(link_ *l) {
  wsev__deflate_free(l->tx);
  wsev__deflate_free(l->rx);
  wsev__deflate_streams_free(l->tx_streams);
  wsev__deflate_streams_free(l->rx_streams);
}

/* Message content of a kind: 0 text-like (compresses well), 1 random (does not),
 * 2 a long run, 3 runs of random lengths. */
static void fill(uint8_t *p, size_t n, int kind) {
  static const char words[] = "the quick brown fox jumps over the lazy dog; wsev deflates ";
  for (size_t i = 0; i < n;) {
    switch (kind) {
    case 0: p[i] = (uint8_t)words[(i * 7 + i / 61) % (sizeof words - 1)], i++; break;
    case 1: p[i++] = (uint8_t)test_rand64(); break;
    case 2: p[i++] = 'z'; break;
    default: {
      size_t run = 1 + test_rand_below(300);
      uint8_t v = (uint8_t)test_rand64();
      while (run-- && i < n)
        p[i++] = v;
    }
    }
  }
}

/* Send one message across the link and check it arrives the same. Returns 1 when it
 * went compressed. */
static int round_trip(link_ *l, const uint8_t *msg, size_t len, const char *what) {
  const uint8_t *out = NULL;
  size_t out_len = 0;
  int rc = wsev__deflate_message(l->tx, msg, len, &out, &out_len);
  CHECKF(rc == 0 || rc == 1, "%s: wsev__deflate_message returned %d", what, rc);
  if (rc != 1) {
    /* Plain is allowed without context (it would not shrink); with context only for
     * an empty message (which leaves the context as it is either way). */
    CHECKF(!l->tx->agreed.out_takeover || rc != 0 || len == 0, "%s: uncompressed with context",
           what);
    return 0;
  }
  CHECKF(l->tx->agreed.out_takeover || out_len < len, "%s: %zu -> %zu without gain", what, len,
         out_len);
  wsev_buf got;
  unsigned code = wsev__inflate_message(l->rx, &pool, out, out_len, len, &got);
  CHECK_EQ_INTF(code, 0, "%s: %zu bytes compressed to %zu", what, len, out_len);
  if (!code) {
    CHECK_EQ_UINTF(got.len, len, "%s", what);
    CHECKF(got.len == len && (len == 0 || memcmp(got.data, msg, len) == 0), "%s: bytes differ",
           what);
  }
  wsev__buf_release(&pool, &got);
  return 1;
}

static void test_round_trips(void) {
  static const size_t sizes[] = {0,    1,    2,    3,     10,    100,   127,   128,
                                 255,  256,  257,  1000,  4095,  4096,  4097,  16384,
                                 32767, 32768, 32769, 65535, 65536, 65537};
  size_t big = 1 << 20;
  uint8_t *msg = malloc(big);
  if (!msg) abort();
  for (int takeover = 0; takeover < 2; takeover++)
    for (int bits = 9; bits <= 15; bits++) {
      char name[96];
      snprintf(name, sizeof name, "round trips, %s, window %d",
               takeover ? "context takeover" : "no context", bits);
      TEST_CASE(name);
      link_ l;
      link_open(&l, takeover, bits, 1 + (bits % 9));
      int compressed = 0;
      /* Text-like content at every size, the other kinds at some (all at every third). */
      for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
        for (int kind = 0; kind < 4; kind += 1 + (int)(s % 3)) {
          char what[160];
          snprintf(what, sizeof what, "%s, %zu bytes of kind %d", name, sizes[s], kind);
          fill(msg, sizes[s], kind);
          compressed += round_trip(&l, msg, sizes[s], what);
          /* Twice: with context the second one refers to the first. */
          compressed += round_trip(&l, msg, sizes[s], what);
        }
      /* Text-like messages of 10 bytes and more compress even without context. */
      CHECKF(compressed >= (int)(sizeof sizes / sizeof sizes[0] - 4) * 2, "%s: %d compressed",
             name, compressed);
      link_close(&l);
    }

  /* 1 MiB messages at the ends of the window range, both modes. */
  for (int takeover = 0; takeover < 2; takeover++)
    for (int bits = 9; bits <= 15; bits += 6)
      for (int kind = 0; kind < 4; kind += 3) {
        char name[96];
        snprintf(name, sizeof name, "1 MiB of kind %d, %s, window %d", kind,
                 takeover ? "context takeover" : "no context", bits);
        TEST_CASE(name);
        link_ l;
        link_open(&l, takeover, bits, 6);
        fill(msg, big, kind);
        CHECK_EQ_INT(round_trip(&l, msg, big, name), 1);
        link_close(&l);
      }
  free(msg);
}

/* An empty message after another, with context: zlib has nothing new to flush. It
 * must go compressed (inflating to nothing) or plain, not fail, and the context must
 * stay in step for the next message. */
static void test_empty_after_message(void) {
  for (int takeover = 0; takeover < 2; takeover++) {
    TEST_CASE(takeover ? "an empty message after another, with context"
                       : "an empty message after another, without context");
    link_ l;
    link_open(&l, takeover, 15, 6);
    static const uint8_t text[] = "hello hello hello hello, permessage-deflate";
    round_trip(&l, text, sizeof text - 1, "first");
    const uint8_t *out;
    size_t out_len;
    int rc = wsev__deflate_message(l.tx, (const uint8_t *)"", 0, &out, &out_len);
    CHECKF(rc == 0 || rc == 1, "an empty message: wsev__deflate_message returned %d", rc);
    if (rc == 1) {
      wsev_buf got;
      CHECK_EQ_INT(wsev__inflate_message(l.rx, &pool, out, out_len, 100, &got), 0);
      CHECK_EQ_UINT(got.len, 0);
      wsev__buf_release(&pool, &got);
    }
    round_trip(&l, text, sizeof text - 1, "after the empty one");
    round_trip(&l, (const uint8_t *)"", 0, "a second empty one");
    round_trip(&l, text, sizeof text - 1, "after the second empty one");
    link_close(&l);
  }
}

/* Raw deflate of msg with zlib directly, as a peer would send it (sync flush, tail
 * removed). */
static size_t zlib_message(z_stream *z, const uint8_t *msg, size_t len, uint8_t *out,
                           size_t cap) {
  z->next_in = (Bytef *)msg;
  z->avail_in = (uInt)len;
  z->next_out = out;
  z->avail_out = (uInt)cap;
  int rc = deflate(z, Z_SYNC_FLUSH);
  CHECK(rc == Z_OK || rc == Z_BUF_ERROR);
  CHECK_EQ_UINT(z->avail_in, 0);
  size_t n = cap - z->avail_out;
  if (n >= 4 && memcmp(out + n - 4, "\x00\x00\xff\xff", 4) == 0) return n - 4;
  return n;
}

static void test_max_size(void) {
  static const size_t maxes[] = {0, 1, 100, 255, 256, 4095, 4096, 4097, 65536, 300000};
  uint8_t *msg = malloc(300001), *comp = malloc(400000);
  if (!msg || !comp) abort();
  for (int takeover = 0; takeover < 2; takeover++)
    for (size_t i = 0; i < sizeof maxes / sizeof maxes[0]; i++)
      for (int kind = 0; kind < 3; kind += 2) {
        size_t max = maxes[i];
        char name[128];
        snprintf(name, sizeof name, "the maximum %zu, %s, kind %d", max,
                 takeover ? "context takeover" : "no context", kind);
        TEST_CASE(name);
        /* Exactly the maximum passes; one byte more is 1009, with nothing given out. */
        for (size_t extra = 0; extra < 2; extra++) {
          link_ l;
          link_open(&l, takeover, 15, 6);
          fill(msg, max + extra, kind);
          z_stream z;
          memset(&z, 0, sizeof z);
          CHECK_EQ_INT(deflateInit2(&z, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
          size_t n = zlib_message(&z, msg, max + extra, comp, 400000);
          deflateEnd(&z);
          wsev_buf got;
          unsigned code = wsev__inflate_message(l.rx, &pool, comp, n, max, &got);
          if (extra == 0) {
            CHECK_EQ_INT(code, 0);
            CHECK_EQ_UINT(got.len, max);
            CHECK(max == 0 || memcmp(got.data, msg, max) == 0);
            wsev__buf_release(&pool, &got);
          } else {
            CHECK_EQ_INT(code, 1009);
            CHECK(got.data == NULL && got.len == 0 && got.cap == 0);
          }
          link_close(&l);
        }
      }
  free(msg);
  free(comp);
}

static void test_bad_data(void) {
  static const struct {
    const char *name;
    uint8_t bytes[12];
    size_t len;
  } cases[] = {
      {"reserved block type 11", {0x07}, 1},
      {"reserved block type, final", {0xff, 0xff}, 2},
      {"stored block lengths that do not match", {0x00, 0x05, 0x00, 0x00, 0x00, 'a'}, 6},
      {"dynamic block with too many length codes", {0x04, 0xff, 0xff, 0xff}, 4},
      /* A fixed block whose first code is a match: a distance before any output. */
      {"distance too far back in a new stream", {0x02, 0x02, 0x00}, 3},
  };
  for (int takeover = 0; takeover < 2; takeover++)
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
      char name[128];
      snprintf(name, sizeof name, "bad data: %s (%s)", cases[i].name,
               takeover ? "context takeover" : "no context");
      TEST_CASE(name);
      link_ l;
      link_open(&l, takeover, 15, 6);
      wsev_buf got;
      CHECK_EQ_INT(wsev__inflate_message(l.rx, &pool, cases[i].bytes, cases[i].len, 1000, &got),
                   1007);
      CHECK(got.data == NULL && got.len == 0);
      link_close(&l);
    }

  TEST_CASE("bad data: a message that refers to one the inflater never saw");
  {
    link_ a, b;
    link_open(&a, 1, 15, 6);
    link_open(&b, 1, 15, 6);
    static const uint8_t text[] = "a sentence long enough to be referred to later on, twice";
    round_trip(&a, text, sizeof text - 1, "first");
    const uint8_t *out;
    size_t out_len;
    CHECK_EQ_INT(wsev__deflate_message(a.tx, text, sizeof text - 1, &out, &out_len), 1);
    wsev_buf got;
    CHECK_EQ_INT(wsev__inflate_message(b.rx, &pool, out, out_len, 1000, &got), 1007);
    link_close(&a);
    link_close(&b);
  }

  TEST_CASE("bad data: a window larger than agreed, across messages");
  {
    /* The peer said 9 (512 bytes) but compresses with 15: its second message refers
     * 1000 bytes back, past what our inflater keeps. */
    link_ l;
    link_open(&l, 1, 9, 6);
    uint8_t msg[1000];
    fill(msg, sizeof msg, 1);
    z_stream z;
    memset(&z, 0, sizeof z);
    CHECK_EQ_INT(deflateInit2(&z, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
    uint8_t comp[2000];
    wsev_buf got;
    size_t n = zlib_message(&z, msg, sizeof msg, comp, sizeof comp);
    CHECK_EQ_INT(wsev__inflate_message(l.rx, &pool, comp, n, 2000, &got), 0);
    wsev__buf_release(&pool, &got);
    n = zlib_message(&z, msg, sizeof msg, comp, sizeof comp);
    CHECK(n < 100); /* it did refer back */
    CHECK_EQ_INT(wsev__inflate_message(l.rx, &pool, comp, n, 2000, &got), 1007);
    deflateEnd(&z);
    link_close(&l);
  }

  TEST_CASE("bad data: random bytes give 0, 1007 or 1009, never anything else");
  for (int takeover = 0; takeover < 2; takeover++) {
    link_ l;
    link_open(&l, takeover, 10, 6);
    int failed = 0;
    for (int i = 0; i < 2000 && !failed; i++) {
      uint8_t junk[64];
      size_t n = test_rand_below(sizeof junk + 1);
      fill(junk, n, 1);
      wsev_buf got;
      unsigned code = wsev__inflate_message(l.rx, &pool, junk, n, 4096, &got);
      CHECKF(code == 0 || code == 1007 || code == 1009, "got %u", code);
      if (code == 0) {
        CHECK(got.len <= 4096);
        wsev__buf_release(&pool, &got);
      }
      /* With context a failure ends the connection: start a new one. */
      if (code && takeover) {
        link_close(&l);
        link_open(&l, takeover, 10, 6);
      }
    }
    link_close(&l);
  }
}

/* 100 MiB of zeros, compressed (about 100 KB), inflated with a 1 MiB maximum: 1009,
 * and no more memory than about twice the maximum. */
static void test_bomb(void) {
  /* 1 MiB of zeros from a new stream, fully flushed, refers to nothing before it and
   * ends on a byte: 100 copies in a row are 100 MiB of zeros. */
  const size_t chunk = 1 << 20, copies = 100;
  uint8_t *zeros = calloc(1, chunk), *one = malloc(chunk);
  if (!zeros || !one) abort();
  z_stream z;
  memset(&z, 0, sizeof z);
  CHECK_EQ_INT(deflateInit2(&z, 9, Z_DEFLATED, -15, 8, Z_RLE), Z_OK);
  z.next_in = zeros;
  z.avail_in = (uInt)chunk;
  z.next_out = one;
  z.avail_out = (uInt)chunk;
  CHECK_EQ_INT(deflate(&z, Z_FULL_FLUSH), Z_OK);
  CHECK(z.avail_in == 0 && z.avail_out > 0);
  size_t len = chunk - z.avail_out;
  deflateEnd(&z);
  free(zeros);
  CHECK(len > 4 && memcmp(one + len - 4, "\x00\x00\xff\xff", 4) == 0);
  size_t n = len * copies - 4; /* without the last 00 00 ff ff */
  uint8_t *comp = malloc(len * copies);
  if (!comp) abort();
  for (size_t i = 0; i < copies; i++)
    memcpy(comp + i * len, one, len);
  free(one);

  for (int takeover = 0; takeover < 2; takeover++) {
    TEST_CASE(takeover ? "a 100 MiB bomb, context takeover" : "a 100 MiB bomb, no context");
    CHECKF(n < 200000, "the bomb is %zu bytes", n);
    size_t base = live_bytes;
    wsev_pool p;
    wsev__pool_init(&p);
    link_ l;
    link_open(&l, takeover, 15, 6);
    size_t before = live_bytes;
    peak_bytes = live_bytes;
    wsev_buf got;
    unsigned code = wsev__inflate_message(l.rx, &p, comp, n, 1 << 20, &got);
    size_t peak = peak_bytes - before;
    CHECK_EQ_INT(code, 1009);
    CHECKF(peak <= (size_t)5 << 19, "peak %zu bytes while inflating", peak);
    printf("bomb (%s): %zu compressed bytes, 1009, peak %zu bytes (%.2f MiB) allocated\n",
           takeover ? "takeover" : "shared", n, peak, peak / 1048576.0);
    link_close(&l);
    wsev__pool_free(&p);
    CHECK_EQ_UINT(live_bytes, base); /* everything given back */
  }
  free(comp);
}

static void test_options(void) {
  TEST_CASE("options: defaults and ranges");
  wsev_deflate_options in = {WSEV_DEFLATE_SHARED, 0, 0, 0, 0}, out;
  CHECK_EQ_INT(wsev__deflate_options_normalize(&in, &out), 0);
  CHECK_EQ_INT(out.level, 6);
  CHECK_EQ_INT(out.window_bits, 15);
  CHECK_EQ_INT(out.mem_level, 8);
  CHECK_EQ_UINT(out.threshold, 128);
  CHECK_EQ_INT(wsev__deflate_options_normalize(NULL, &out), 0);
  CHECK_EQ_INT(out.mode, WSEV_DEFLATE_OFF);
  wsev_deflate_options bad[] = {
      {WSEV_DEFLATE_SHARED, 10, 0, 0, 0}, {WSEV_DEFLATE_SHARED, -1, 0, 0, 0},
      {WSEV_DEFLATE_SHARED, 0, 8, 0, 0},  {WSEV_DEFLATE_SHARED, 0, 16, 0, 0},
      {WSEV_DEFLATE_SHARED, 0, 0, 10, 0}, {(wsev_deflate_mode)3, 0, 0, 0, 0},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    CHECK_EQ_INT(wsev__deflate_options_normalize(&bad[i], &out), UV_EINVAL);
  in = (wsev_deflate_options){WSEV_DEFLATE_DEDICATED, 9, 11, 1, 0};
  CHECK_EQ_INT(wsev__deflate_options_normalize(&in, &out), 0);
  wsev_pmd_config config = wsev__deflate_config(&out);
  CHECK_EQ_INT(config.mode, WSEV_PMD_DEDICATED);
  CHECK_EQ_INT(config.window_bits, 11);
}

int main(void) {
  /* Before any allocation: the bomb test counts what the library holds. */
  if (wsev_replace_allocator(count_malloc, count_realloc, count_calloc, count_free) != 0) return 1;
  wsev__pool_init(&pool);
  test_accept_matrix();
  test_accept_cases();
  test_offer();
  test_offer_accept_check();
  test_check_response();
  test_options();
  test_round_trips();
  test_empty_after_message();
  test_max_size();
  test_bad_data();
  test_bomb();
  wsev__pool_free(&pool);
  CHECK_EQ_UINT(live_bytes, 0);
  return TEST_REPORT();
}
