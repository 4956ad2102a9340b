/* Several certificates on one TLS server configuration, chosen by the client's SNI
 * (wsev__tls_server_config_certs), on whichever backend the build has.
 *
 * A wsev client session and a wsev server session talk in memory (wsev__tls_take of
 * one fed to wsev__tls_input of the other, no sockets). The client trusts the test CA
 * and checks the name it sends as SNI, so a handshake succeeds only when the server
 * presented a certificate for that name; where the client cannot check (a name no
 * certificate has), the certificate it got is compared with the files' SHA-256
 * fingerprints as `openssl x509` computes them. Cases: the name matching rules on
 * their own; SNI for each certificate (exact, wildcard, a second subjectAltName, the
 * CN of a certificate without dNSName, letter case, a trailing dot); what falls back to
 * certs[0] (no SNI, an unknown name, "wild.test" and "a.b.wild.test" against
 * "*.wild.test", the CN of a certificate that has dNSNames); the first certificate that
 * matches wins; every load error, at index 0 and further on, and the bound on names;
 * a failed allocation at every point of building a configuration; and a session
 * ticket issued under one configuration resuming under another made with the same
 * ticket keys (a certificate reload), but not under one with other keys.
 *
 * argv[1]: scripts/make-cert.sh, which makes the certificates in a temporary
 * directory. Ends with test.h's summary of checks. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "alloc.h"
#include "test.h"
#include "tls.h"
#include "tls_shared.h"
#include "wsev.h"

static char dir_[] = "/tmp/wsev-sni-XXXXXX";
static const char *make_cert_;

/* DIR/name.ext, kept until the end (each path is made once). */
static char paths_[64][128];
static int path_count_;
static const char *path(const char *name, const char *ext) {
  char p[sizeof paths_[0]];
  snprintf(p, sizeof p, "%s/%s.%s", dir_, name, ext);
  for (int i = 0; i < path_count_; i++)
    if (strcmp(paths_[i], p) == 0) return paths_[i];
  if (path_count_ == 64) abort(); /* more files than this test has */
  return strcpy(paths_[path_count_++], p);
}

static int sh(const char *cmd) {
  int rc = system(cmd);
  if (rc != 0) fprintf(stderr, "failed (%d): %s\n", rc, cmd);
  return rc;
}

/* make-cert.sh DIR --leaf NAME DNS [extra...] */
static int leaf(const char *name, const char *dns, const char *extra) {
  char cmd[24000];
  snprintf(cmd, sizeof cmd, "'%s' '%s' --leaf '%s' '%s' %s", make_cert_, dir_, name, dns, extra);
  return sh(cmd);
}

/* The SHA-256 fingerprint of DIR/name.crt, computed by the openssl command. */
static int fingerprint(const char *name, uint8_t digest[32]) {
  char cmd[512], line[256];
  snprintf(cmd, sizeof cmd, "openssl x509 -in '%s' -noout -fingerprint -sha256", path(name, "crt"));
  FILE *f = popen(cmd, "r");
  if (!f) return -1;
  int n = 0;
  const char *p = fgets(line, sizeof line, f) ? strchr(line, '=') : NULL;
  for (; p && n < 32; n++) {
    unsigned byte;
    if (sscanf(p + 1, "%2x", &byte) != 1) break;
    digest[n] = (uint8_t)byte;
    p += 3; /* "=AB" then ":CD" ... */
  }
  return pclose(f) == 0 && n == 32 ? 0 : -1;
}

/* ---- the name rules on their own ------------------------------------------------- */

static void test_name_rules(void) {
  TEST_CASE("name rules");
  static const struct {
    const char *pattern, *host;
    int match;
  } cases[] = {
      {"a.test", "a.test", 1},
      {"a.test", "A.TeSt", 1},
      {"A.Test", "a.test", 1},
      {"a.test", "a.test.", 1}, /* an absolute name */
      {"a.test", "a.test..", 0},
      {"a.test", "b.test", 0},
      {"a.test", "a.tes", 0},
      {"a.test", "aa.test", 0},
      {"a.test", "", 0},
      {"a.test", ".", 0},
      {"*.wild.test", "x.wild.test", 1},
      {"*.wild.test", "X.WILD.test", 1},
      {"*.Wild.Test", "xyz-1.wild.test", 1},
      {"*.wild.test", "x.wild.test.", 1},
      {"*.wild.test", "wild.test", 0},
      {"*.wild.test", ".wild.test", 0},
      {"*.wild.test", "a.b.wild.test", 0},
      {"*.wild.test", "xwild.test", 0},
      {"*.wild.test", "x.wild.test.evil", 0},
      {"*.wild.test", "x.mild.test", 0},
      {"*.test", "a.test", 0}, /* a whole top-level domain */
      {"*.", "a.", 0},
      {"*", "a", 0},
      {"*.wild.test", "*.wild.test", 1},   /* a literal "*" label is a label */
      {"a*.wild.test", "ab.wild.test", 0}, /* partial wildcards are not wildcards */
      {"x.*.test", "x.y.test", 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    CHECK_EQ_INTF(wsev__tls_name_matches(cases[i].pattern, cases[i].host, strlen(cases[i].host)),
                  cases[i].match, "\"%s\" against \"%s\"", cases[i].pattern, cases[i].host);

  /* What a certificate may hold but no host name can equal is not kept. */
  wsev_tls_names names = {0};
  CHECK_EQ_INT(wsev__tls_names_add(&names, "", 0), 0);
  CHECK_EQ_INT(wsev__tls_names_add(&names, "a\0b.test", 8), 0);
  CHECK_EQ_INT(wsev__tls_names_add(&names, "a b.test", 8), 0);
  CHECK_EQ_INT(wsev__tls_names_add(&names, "\xc3\xa9.test", 7), 0);
  char longest[WSEV_TLS_MAX_NAME + 1];
  memset(longest, 'a', sizeof longest);
  CHECK_EQ_INT(wsev__tls_names_add(&names, longest, sizeof longest), 0);
  CHECK_EQ_UINT(names.count, 0);
  CHECK_EQ_INT(wsev__tls_names_add(&names, longest, WSEV_TLS_MAX_NAME), 0);
  CHECK_EQ_INT(wsev__tls_names_add(&names, "b.test", 6), 0);
  CHECK_EQ_UINT(names.count, 2);
  CHECK_EQ_UINT(names.len, WSEV_TLS_MAX_NAME + 1 + 7);
  /* The pick: the first set with a match, else 0. */
  wsev_tls_names sets[3] = {{0}, {0}, {0}};
  CHECK_EQ_INT(wsev__tls_names_add(&sets[0], "d.test", 6), 0);
  CHECK_EQ_INT(wsev__tls_names_add(&sets[1], "*.x.test", 8), 0);
  CHECK_EQ_INT(wsev__tls_names_add(&sets[2], "a.x.test", 8), 0);
  CHECK_EQ_INT(wsev__tls_names_add(&sets[2], "c.test", 6), 0);
  CHECK_EQ_UINT(wsev__tls_pick_cert(sets, 3, "a.x.test", 8), 1);
  CHECK_EQ_UINT(wsev__tls_pick_cert(sets, 3, "c.test", 6), 2);
  CHECK_EQ_UINT(wsev__tls_pick_cert(sets, 3, "d.test", 6), 0);
  CHECK_EQ_UINT(wsev__tls_pick_cert(sets, 3, "e.test", 6), 0);
  CHECK_EQ_UINT(wsev__tls_pick_cert(sets, 3, NULL, 0), 0);
  CHECK_EQ_UINT(wsev__tls_pick_cert(sets, 2, "c.test", 6), 0);
  for (int i = 0; i < 3; i++)
    wsev__tls_names_free(&sets[i]);
  wsev__tls_names_free(&names);
  CHECK(names.text == NULL && names.count == 0);
}

/* ---- two sessions in memory ---------------------------------------------------------- */

typedef struct {
  int done;
  char got[64];
  size_t got_len;
} side;

static int on_done(void *p) {
  ((side *)p)->done = 1;
  return 0;
}

static int on_plain(void *p, uint8_t *data, size_t len) {
  side *s = p;
  if (len > sizeof s->got - s->got_len) len = sizeof s->got - s->got_len;
  memcpy(s->got + s->got_len, data, len);
  s->got_len += len;
  return 0;
}

static const wsev_tls_sink sink_ = {on_done, on_plain};

/* Move what `from` has written to `to`: its wsev__tls_input result. */
static int deliver(wsev_tls *from, wsev_tls *to, side *to_side) {
  static uint8_t plain[16384];
  size_t len, cap;
  uint8_t *data = wsev__tls_take(from, &len, &cap);
  int rc = len ? wsev__tls_input(to, data, len, plain, sizeof plain, &sink_, to_side) : WSEV_TLS_OK;
  wsev__free(data);
  return rc;
}

/* What one connection saw. */
typedef struct {
  int ok;           /* both ends done, and a message went each way */
  int client_error; /* WSEV_ETLS... from the client, or 0 */
  char reason[160]; /* its description */
  int client_resumed, server_resumed;
  uint8_t cert[32]; /* the certificate the client got */
  int have_cert;
  char sni[64]; /* the name the server saw, "" for none */
} outcome;

/* One connection from a client configuration to a server configuration. */
static outcome connect_in_memory(wsev_tls_config *client_conf, wsev_tls_config *server_conf,
                                 const char *server_name) {
  outcome o;
  memset(&o, 0, sizeof o);
  side cs = {0}, ss = {0};
  wsev_tls *client = wsev__tls_new(client_conf, server_name, 443);
  wsev_tls *server = wsev__tls_new(server_conf, NULL, 0);
  if (!client || !server) {
    snprintf(o.reason, sizeof o.reason, "wsev__tls_new failed");
    goto out;
  }
  int crc = wsev__tls_start(client), src = wsev__tls_start(server);
  int sent = 0;
  /* Each round moves one flight each way; a handshake takes a few, the rest carry
   * the messages (and TLS 1.3's session tickets, which come after the handshake). */
  for (int round = 0; round < 16 && crc == WSEV_TLS_OK && src == WSEV_TLS_OK; round++) {
    if (cs.done && ss.done && !sent) {
      sent = 1;
      if (wsev__tls_encrypt(client, (const uint8_t *)"ping", 4) != 0 ||
          wsev__tls_encrypt(server, (const uint8_t *)"pong", 4) != 0)
        break;
    }
    if (!wsev__tls_pending(client) && !wsev__tls_pending(server)) break;
    src = deliver(client, server, &ss);
    if (src == WSEV_TLS_OK) crc = deliver(server, client, &cs);
  }
  if (crc == WSEV_TLS_FAILED) o.client_error = wsev__tls_error(client, o.reason, sizeof o.reason);
  if (src == WSEV_TLS_FAILED && !o.reason[0]) {
    char why[128];
    int err = wsev__tls_error(server, why, sizeof why);
    snprintf(o.reason, sizeof o.reason, "server: %s: %s", wsev_err_name(err), why);
  }
  o.ok = cs.done && ss.done && sent && cs.got_len == 4 && memcmp(cs.got, "pong", 4) == 0 &&
         ss.got_len == 4 && memcmp(ss.got, "ping", 4) == 0;
  /* Closed properly: OpenSSL does not resume the session of a connection freed
   * without its close_notify. */
  wsev__tls_close_notify(client);
  wsev__tls_close_notify(server);
  if (o.ok) {
    int closed_s = deliver(client, server, &ss), closed_c = deliver(server, client, &cs);
    o.ok = closed_s == WSEV_TLS_CLOSED && closed_c == WSEV_TLS_CLOSED;
    if (!o.ok) snprintf(o.reason, sizeof o.reason, "close: %d %d", closed_s, closed_c);
  }
  o.client_resumed = wsev__tls_resumed(client);
  o.server_resumed = wsev__tls_resumed(server);
  o.have_cert = wsev__tls_peer_cert_sha256(client, o.cert) == 0;
  const char *sni = wsev__tls_server_name(server);
  snprintf(o.sni, sizeof o.sni, "%s", sni ? sni : "");
out:
  wsev__tls_free(client);
  wsev__tls_free(server);
  return o;
}

/* ---- the certificates -------------------------------------------------------------------- */

enum { C_LOCALHOST, C_A, C_WILD, C_B, C_CN, C_CNSAN, C_A2, C_ANEW, C_COUNT };
static const char *cert_names_[C_COUNT] = {"localhost", "a",     "wild", "b",
                                           "cn",        "cnsan", "a2",   "anew"};
static uint8_t fp_[C_COUNT][32];

static wsev_tls_cert pair(const char *name) {
  return (wsev_tls_cert){path(name, "crt"), path(name, "key")};
}

static wsev_rng *rng_;
static wsev_tls_config *verified_; /* clients trusting the test CA */
static wsev_tls_config *insecure_; /* clients that take any certificate */

static int make_certs(void) {
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "'%s' '%s'", make_cert_, dir_);
  if (sh(cmd) != 0 || leaf("a", "a.test", "") != 0 || leaf("wild", "*.wild.test", "") != 0 ||
      leaf("b", "b.test,Other-B.Test", "--rsa") != 0 || leaf("cn", "-", "--cn cnonly.test") != 0 ||
      leaf("cnsan", "san-only.test", "--cn ignored.test") != 0 ||
      leaf("a2", "a.test,a2.test", "") != 0 || leaf("anew", "a.test", "") != 0)
    return -1;
  for (int i = 0; i < C_COUNT; i++)
    if (fingerprint(cert_names_[i], fp_[i]) != 0) return -1;
  /* A key that is not PEM, and the bound on names: 1000 loads, 1001 does not. */
  snprintf(cmd, sizeof cmd, "echo 'not a key' > '%s'", path("garbage", "key"));
  if (sh(cmd) != 0) return -1;
  static char names[2][20000];
  for (int n = 0; n < WSEV_TLS_MAX_CERT_NAMES + 1; n++) {
    char one[32];
    snprintf(one, sizeof one, "%sn%d.many.test", n ? "," : "", n);
    if (n < WSEV_TLS_MAX_CERT_NAMES) strcat(names[0], one);
    strcat(names[1], one);
  }
  if (leaf("many", names[0], "") != 0 || leaf("toomany", names[1], "") != 0) return -1;
  return 0;
}

/* ---- choosing by SNI --------------------------------------------------------------------- */

/* A verified connection (the client checks server_name) must succeed, presenting
 * certificate `want`. */
static void expect_verified(wsev_tls_config *server, const char *server_name, int want) {
  TEST_CASE(server_name);
  outcome o = connect_in_memory(verified_, server, server_name);
  CHECKF(o.ok, "%s: %s %s", server_name, wsev_err_name(o.client_error), o.reason);
  CHECKF(o.have_cert && memcmp(o.cert, fp_[want], 32) == 0, "%s: expected %s's certificate",
         server_name, cert_names_[want]);
}

/* An insecure connection (nothing checked): the certificate presented must be `want`. */
static void expect_insecure(wsev_tls_config *server, const char *server_name, int want) {
  TEST_CASE(server_name);
  outcome o = connect_in_memory(insecure_, server, server_name);
  CHECKF(o.ok, "%s: %s %s", server_name, wsev_err_name(o.client_error), o.reason);
  CHECKF(o.have_cert && memcmp(o.cert, fp_[want], 32) == 0, "%s: expected %s's certificate",
         server_name, cert_names_[want]);
  CHECK_EQ_STR(o.sni, server_name); /* what the server reports is what was sent */
}

static void test_choice(void) {
  wsev_tls_cert certs[] = {pair("localhost"), pair("a"),     pair("wild"), pair("b"),
                           pair("cn"),        pair("cnsan"), pair("a2")};
  wsev_tls_config *server = NULL;
  TEST_CASE("load");
  CHECK_EQ_INT(wsev__tls_server_config_certs(rng_, certs, 7, NULL, &server), 0);
  if (!server) return;

  expect_verified(server, "localhost", C_LOCALHOST);
  expect_verified(server, "a.test", C_A); /* not a2, which also names a.test */
  expect_verified(server, "a2.test", C_A2);
  expect_verified(server, "x.wild.test", C_WILD);
  expect_verified(server, "b.test", C_B);
  expect_verified(server, "other-b.test", C_B); /* the second name, in other letter case */
  expect_verified(server, "A.TEST", C_A);
  expect_verified(server, "X.Wild.Test", C_WILD);
  expect_verified(server, "cnonly.test", C_CN); /* no dNSName: the CN */
  expect_verified(server, "san-only.test", C_CNSAN);
  expect_insecure(server, "a.test.", C_A); /* an absolute name */

  /* Whatever matches nothing gets certs[0]. */
  expect_insecure(server, "unknown.test", C_LOCALHOST);
  expect_insecure(server, "wild.test", C_LOCALHOST);
  expect_insecure(server, "a.b.wild.test", C_LOCALHOST);
  expect_insecure(server, "ignored.test", C_LOCALHOST); /* a CN beside dNSNames */
  /* No SNI for an address: certs[0], whose iPAddress the client checks. */
  TEST_CASE("no SNI");
  outcome o = connect_in_memory(verified_, server, "127.0.0.1");
  CHECKF(o.ok, "%s %s", wsev_err_name(o.client_error), o.reason);
  CHECK(o.have_cert && memcmp(o.cert, fp_[C_LOCALHOST], 32) == 0);
  CHECK_EQ_STR(o.sni, "");
  /* The client does check: an unknown name with the verified client fails. */
  TEST_CASE("verification is real");
  o = connect_in_memory(verified_, server, "unknown.test");
  CHECK(!o.ok);
  CHECK_EQ_INT(o.client_error, WSEV_ETLSVERIFY);
  wsev__tls_config_unref(server);

  /* The default need not be the one with the most names: certs[0] = b. */
  wsev_tls_cert b_first[] = {pair("b"), pair("a")};
  TEST_CASE("b first");
  CHECK_EQ_INT(wsev__tls_server_config_certs(rng_, b_first, 2, NULL, &server), 0);
  if (server) {
    expect_verified(server, "a.test", C_A);
    expect_verified(server, "b.test", C_B);
    expect_insecure(server, "x.wild.test", C_B);
    wsev__tls_config_unref(server);
  }
  /* The one-pair form still serves every name with its certificate. */
  TEST_CASE("one pair");
  server = NULL;
  CHECK_EQ_INT(wsev__tls_server_config(rng_, path("a", "crt"), path("a", "key"), NULL, &server), 0);
  if (server) {
    expect_verified(server, "a.test", C_A);
    expect_insecure(server, "b.test", C_A);
    wsev__tls_config_unref(server);
  }
  /* A thousand names: the last one is matched too. */
  wsev_tls_cert many[] = {pair("localhost"), pair("many")};
  TEST_CASE("many names");
  server = NULL;
  CHECK_EQ_INT(wsev__tls_server_config_certs(rng_, many, 2, NULL, &server), 0);
  if (server) {
    char last[32];
    snprintf(last, sizeof last, "n%d.many.test", WSEV_TLS_MAX_CERT_NAMES - 1);
    outcome m = connect_in_memory(verified_, server, last);
    CHECKF(m.ok, "%s %s", wsev_err_name(m.client_error), m.reason);
    wsev__tls_config_unref(server);
  }
}

/* ---- load errors --------------------------------------------------------------------------- */

static void expect_error(const char *what, const wsev_tls_cert *certs, size_t count, int error) {
  TEST_CASE(what);
  wsev_tls_config *server = NULL;
  CHECK_EQ_INTF(wsev__tls_server_config_certs(rng_, certs, count, NULL, &server), error, "%s",
                what);
  CHECK(server == NULL);
  if (server) wsev__tls_config_unref(server);
}

static void test_errors(void) {
  const char *missing = path("missing", "crt");
  wsev_tls_cert good = pair("a"), good2 = pair("b");
  wsev_tls_cert no_cert = {missing, path("a", "key")};
  wsev_tls_cert no_key = {path("a", "crt"), path("missing", "key")};
  wsev_tls_cert bad_key = {path("a", "crt"), path("garbage", "key")};
  wsev_tls_cert bad_cert = {path("garbage", "key"), path("a", "key")};
  wsev_tls_cert mismatched = {path("a", "crt"), path("b", "key")};
  wsev_tls_cert null_cert = {NULL, path("a", "key")};
  wsev_tls_cert null_key = {path("a", "crt"), NULL};
  wsev_tls_cert too_many = pair("toomany");

  expect_error("missing cert at 0", (wsev_tls_cert[]){no_cert, good}, 2, WSEV_ETLSCERT);
  expect_error("missing cert at 2", (wsev_tls_cert[]){good, good2, no_cert}, 3, WSEV_ETLSCERT);
  expect_error("missing key at 0", (wsev_tls_cert[]){no_key}, 1, WSEV_ETLSKEY);
  expect_error("missing key at 1", (wsev_tls_cert[]){good, no_key, good2}, 3, WSEV_ETLSKEY);
  expect_error("bad key at 0", (wsev_tls_cert[]){bad_key, good}, 2, WSEV_ETLSKEY);
  expect_error("bad key at 2", (wsev_tls_cert[]){good, good2, bad_key}, 3, WSEV_ETLSKEY);
  expect_error("bad cert at 1", (wsev_tls_cert[]){good, bad_cert}, 2, WSEV_ETLSCERT);
  expect_error("mismatched at 0", (wsev_tls_cert[]){mismatched, good, good2}, 3,
               WSEV_ETLSKEYMISMATCH);
  expect_error("mismatched at 2", (wsev_tls_cert[]){good, good2, mismatched}, 3,
               WSEV_ETLSKEYMISMATCH);
  expect_error("null cert at 1", (wsev_tls_cert[]){good, null_cert}, 2, WSEV_ETLSCERT);
  expect_error("null key at 1", (wsev_tls_cert[]){good, null_key}, 2, WSEV_ETLSKEY);
  /* The first pair that fails decides. */
  expect_error("key at 1 before mismatch at 2", (wsev_tls_cert[]){good, bad_key, mismatched}, 3,
               WSEV_ETLSKEY);
  expect_error("mismatch at 1 before cert at 2", (wsev_tls_cert[]){good, mismatched, no_cert}, 3,
               WSEV_ETLSKEYMISMATCH);
  expect_error("too many names", (wsev_tls_cert[]){good, too_many}, 2, WSEV_ETLSCERT);
  expect_error("no certificates", &good, 0, UV_EINVAL);
  expect_error("NULL certificates", NULL, 1, UV_EINVAL);
  expect_error("over the bound", &good, (size_t)WSEV_TLS_MAX_CERTS + 1, UV_EINVAL);
  /* The one-pair form gives the same errors. */
  TEST_CASE("one pair errors");
  wsev_tls_config *server = NULL;
  CHECK_EQ_INT(wsev__tls_server_config(rng_, missing, path("a", "key"), NULL, &server),
               WSEV_ETLSCERT);
  CHECK_EQ_INT(wsev__tls_server_config(rng_, path("a", "crt"), path("b", "key"), NULL, &server),
               WSEV_ETLSKEYMISMATCH);
  CHECK(server == NULL);
}

/* ---- allocation failures --------------------------------------------------------------------- */

static long alloc_countdown_ = -1; /* fail when it reaches 0; -1: never */

static int alloc_fails(void) { return alloc_countdown_ >= 0 && alloc_countdown_-- == 0; }
static void *test_malloc(size_t n) { return alloc_fails() ? NULL : malloc(n); }
static void *test_realloc(void *p, size_t n) { return alloc_fails() ? NULL : realloc(p, n); }
static void *test_calloc(size_t c, size_t n) { return alloc_fails() ? NULL : calloc(c, n); }

/* Fail the first, second, ... allocation of wsev's own while building a configuration
 * of four certificates: UV_ENOMEM and nothing kept (valgrind and ASan see to the
 * "nothing"), until one that needs no more succeeds. The backends' own allocations
 * do not go through wsev's allocator. */
static void test_alloc_failures(void) {
  TEST_CASE("allocation failures");
  wsev_tls_cert certs[] = {pair("localhost"), pair("a"), pair("wild"), pair("b")};
  wsev_tls_tickets *tickets = wsev__tls_tickets_new();
  CHECK(tickets != NULL);
  int succeeded = 0;
  long n = 0;
  for (; n < 200 && !succeeded; n++) {
    wsev_tls_config *server = NULL;
    alloc_countdown_ = n;
    int rc = wsev__tls_server_config_certs(rng_, certs, 4, tickets, &server);
    alloc_countdown_ = -1;
    if (rc == 0) {
      succeeded = 1;
      CHECK(server != NULL);
      /* The configuration works, with SNI. */
      outcome o = connect_in_memory(verified_, server, "x.wild.test");
      CHECKF(o.ok, "after %ld failures: %s", n, o.reason);
      wsev__tls_config_unref(server);
    } else {
      CHECK_EQ_INTF(rc, UV_ENOMEM, "allocation %ld failed", n);
      CHECK(server == NULL);
    }
  }
  CHECK(succeeded);
  /* The configuration, its two arrays and a name list per certificate at least. */
  CHECKF(n > 7, "only %ld allocations", n);
  wsev__tls_tickets_unref(tickets);
}

/* ---- resumption across a reload -----------------------------------------------------------------
 */

static void expect_resumed(wsev_tls_config *client, wsev_tls_config *server, const char *name,
                           int resumed, int want_cert, const char *what) {
  TEST_CASE(what);
  outcome o = connect_in_memory(client, server, name);
  CHECKF(o.ok, "%s: %s %s", what, wsev_err_name(o.client_error), o.reason);
  CHECK_EQ_INTF(o.client_resumed, resumed, "%s: client", what);
  CHECK_EQ_INTF(o.server_resumed, resumed, "%s: server", what);
  CHECKF(o.have_cert && memcmp(o.cert, fp_[want_cert], 32) == 0, "%s: expected %s's certificate",
         what, cert_names_[want_cert]);
}

static void test_resumption(void) {
  /* A client of its own, so that no session of the cases above is offered. */
  wsev_tls_config *client = NULL;
  TEST_CASE("resumption setup");
  CHECK_EQ_INT(wsev__tls_client_config(rng_, path("ca", "crt"), 0, NULL, &client), 0);
  wsev_tls_tickets *tickets = wsev__tls_tickets_new();
  wsev_tls_cert before[] = {pair("localhost"), pair("a"), pair("wild")};
  wsev_tls_cert after[] = {pair("localhost"), pair("anew"), pair("wild"), pair("b")};
  wsev_tls_config *one = NULL, *two = NULL, *other = NULL;
  CHECK(tickets != NULL);
  CHECK_EQ_INT(wsev__tls_server_config_certs(rng_, before, 3, tickets, &one), 0);
  /* The reload: a new configuration with a renewed certificate and the same keys. */
  CHECK_EQ_INT(wsev__tls_server_config_certs(rng_, after, 4, tickets, &two), 0);
  /* Another listener: its own keys. */
  CHECK_EQ_INT(wsev__tls_server_config_certs(rng_, after, 4, NULL, &other), 0);
  if (client && one && two && other) {
    expect_resumed(client, one, "a.test", 0, C_A, "first, before the reload");
    expect_resumed(client, one, "a.test", 1, C_A, "again, before the reload");
    expect_resumed(client, two, "a.test", 1, C_A, "a ticket from before, after the reload");
    expect_resumed(client, two, "a.test", 1, C_A, "the ticket renewed after the reload");
    expect_resumed(client, other, "a.test", 0, C_ANEW, "other keys: a full handshake");
    expect_resumed(client, two, "a.test", 0, C_ANEW, "other's ticket is not the listener's");
    expect_resumed(client, two, "a.test", 1, C_ANEW, "and now resumes");
    expect_resumed(client, one, "x.wild.test", 0, C_WILD, "a wildcard name");
    expect_resumed(client, two, "x.wild.test", 1, C_WILD, "its ticket after the reload");
    expect_resumed(client, one, "127.0.0.1", 0, C_LOCALHOST, "no SNI");
    expect_resumed(client, two, "127.0.0.1", 1, C_LOCALHOST, "no SNI after the reload");
  }
  wsev__tls_config_unref(one);
  wsev__tls_config_unref(two);
  wsev__tls_config_unref(other);
  wsev__tls_config_unref(client);
  wsev__tls_tickets_unref(tickets);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s PATH/TO/make-cert.sh\n", argv[0]);
    return 2;
  }
  make_cert_ = argv[1];
  if (!mkdtemp(dir_)) return 2;
  printf("TLS backend: %s\n", wsev__tls_backend());
  int rc = 2;
  if (wsev_replace_allocator(test_malloc, test_realloc, test_calloc, free) != 0 ||
      make_certs() != 0 || !(rng_ = wsev__rng_new()) ||
      wsev__tls_client_config(rng_, path("ca", "crt"), 0, NULL, &verified_) != 0 ||
      wsev__tls_client_config(rng_, NULL, 1, NULL, &insecure_) != 0) {
    fprintf(stderr, "setup failed\n");
  } else {
    test_name_rules();
    test_choice();
    test_errors();
    test_alloc_failures();
    test_resumption();
    rc = TEST_REPORT();
  }
  wsev__tls_config_unref(verified_);
  wsev__tls_config_unref(insecure_);
  wsev__rng_free(rng_);
  char cmd[256];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir_);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir_);
  return rc;
}
