/* TLS with mbedTLS 2.28 over memory buffers (see tls.h): the default backend. */
#include "tls.h"

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/oid.h>
#include <mbedtls/pk.h>
#include <mbedtls/sha1.h>
#include <mbedtls/sha256.h>
#include <mbedtls/ssl.h>
#include <mbedtls/ssl_ticket.h>
#include <mbedtls/version.h>
#include <mbedtls/x509_crt.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

#include "alloc.h"
#include "tls_shared.h"

struct wsev_rng {
  mbedtls_entropy_context entropy;
  mbedtls_ctr_drbg_context drbg;
  int seeded;
  wsev_rng_pool pool;
};

struct wsev_tls_tickets {
  mbedtls_ssl_ticket_context keys;
  wsev_rng *rng; /* used only under the ticket context's lock */
  _Atomic size_t refs;
};

/* A server's certificate chain and its key. */
typedef struct {
  mbedtls_x509_crt chain;
  mbedtls_pk_context key;
} server_cert;

struct wsev_tls_config {
  mbedtls_ssl_config conf;
  mbedtls_x509_crt chain; /* clients: the trusted CAs */
  server_cert *certs;     /* servers: certs[0] the default, the others chosen by SNI */
  wsev_tls_names *names;  /* servers: the names each of certs serves */
  size_t cert_count;
  wsev_tls_tickets *tickets; /* servers: keys that seal session tickets */
  wsev_tls *stepping;        /* servers: the connection whose handshake is being driven */
  size_t refs;
  int server;
  wsev_tls_trust trust;        /* clients */
  wsev_tls_sessions *sessions; /* clients */
};

struct wsev_tls {
  mbedtls_ssl_context ssl; /* first: the SNI callback gets only this pointer */
  wsev_tls_config *conf;
  const uint8_t *in; /* ciphertext being fed, not yet taken by mbedTLS */
  size_t in_len;
  wsev_tls_out out; /* ciphertext to write */
  char *server_name;
  char *peer;                 /* clients: "host port", the key of its session in conf->sessions */
  uint8_t offered_master[48]; /* clients: the secret of the session offered, to tell
                                 whether the server took it */
  uint8_t ip[16]; /* clients dialling an IP literal: the address the certificate must name */
  size_t ip_len;
  int error; /* WSEV_ETLS, WSEV_ETLSVERIFY, or 0 */
  int mbedtls_error;
  uint8_t done;        /* handshake complete */
  uint8_t offered;     /* clients: an earlier session was offered */
  uint8_t resumed;     /* the handshake resumed an earlier session */
  uint8_t notify_sent; /* close_notify queued */
  uint8_t out_of_memory;
};

/* Forward secrecy and AEAD only, in our order of preference (mbedTLS servers pick
 * by their own order): ChaCha20-Poly1305 first, because mbedTLS 2.28 encrypts with
 * it at about 1.5 times the speed of its AES-GCM (191 against 126 MB/s here). */
static const int cipher_suites[] = {
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    MBEDTLS_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    0,
};
static const char *alpn_protocols[] = {"http/1.1", NULL};
/* Key exchange curves, fastest first: mbedTLS's default list starts with P-521,
 * which made every handshake several times slower (and servers pick by this order). */
static const mbedtls_ecp_group_id curves[] = {
    MBEDTLS_ECP_DP_CURVE25519,
    MBEDTLS_ECP_DP_SECP256R1,
    MBEDTLS_ECP_DP_SECP384R1,
    MBEDTLS_ECP_DP_NONE,
};

const char *wsev__tls_backend(void) { return "mbedTLS " MBEDTLS_VERSION_STRING; }

int wsev__sha1(const void *data, size_t len, uint8_t digest[20]) {
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
  return mbedtls_sha1(data, len, digest) == 0 ? 0 : -1;
#else
  return mbedtls_sha1_ret(data, len, digest) == 0 ? 0 : -1;
#endif
}

/* ---- random bytes ------------------------------------------------------------ */

wsev_rng *wsev__rng_new(void) {
  wsev_rng *rng = wsev__calloc(1, sizeof *rng);
  if (!rng) return NULL;
  mbedtls_entropy_init(&rng->entropy);
  mbedtls_ctr_drbg_init(&rng->drbg);
  return rng;
}

void wsev__rng_free(wsev_rng *rng) {
  if (!rng) return;
  mbedtls_ctr_drbg_free(&rng->drbg);
  mbedtls_entropy_free(&rng->entropy);
  mbedtls_platform_zeroize(rng->pool.bytes, sizeof rng->pool.bytes);
  wsev__free(rng);
}

/* Seeding reads the OS entropy source once; a context that never needs random
 * bytes (plain servers) never pays for it. */
static int rng_seed(wsev_rng *rng) {
  static const char personal[] = "wsev";
  if (rng->seeded) return 0;
  if (mbedtls_ctr_drbg_seed(&rng->drbg, mbedtls_entropy_func, &rng->entropy,
                            (const unsigned char *)personal, sizeof personal - 1) != 0)
    return -1;
  rng->seeded = 1;
  return 0;
}

static int drbg_fill(void *p, void *buf, size_t len) {
  return mbedtls_ctr_drbg_random(&((wsev_rng *)p)->drbg, buf, len) == 0 ? 0 : -1;
}

int wsev__rng_bytes(wsev_rng *rng, void *buf, size_t len) {
  if (rng_seed(rng) != 0) return -1;
  return wsev__rng_pool_bytes(&rng->pool, buf, len, drbg_fill, rng);
}

static int rng_for_tls(void *p, unsigned char *out, size_t len) {
  wsev_rng *rng = p;
  if (rng_seed(rng) != 0) return MBEDTLS_ERR_CTR_DRBG_ENTROPY_SOURCE_FAILED;
  return mbedtls_ctr_drbg_random(&rng->drbg, out, len);
}

/* ---- configurations ------------------------------------------------------------ */

static wsev_tls_config *config_new(void) {
  wsev_tls_config *c = wsev__calloc(1, sizeof *c);
  if (!c) return NULL;
  mbedtls_ssl_config_init(&c->conf);
  mbedtls_x509_crt_init(&c->chain);
  c->refs = 1;
  return c;
}

static void config_free(wsev_tls_config *c) {
  mbedtls_ssl_config_free(&c->conf);
  mbedtls_x509_crt_free(&c->chain);
  for (size_t i = 0; i < c->cert_count; i++) {
    mbedtls_x509_crt_free(&c->certs[i].chain);
    mbedtls_pk_free(&c->certs[i].key);
    wsev__tls_names_free(&c->names[i]);
  }
  wsev__free(c->certs);
  wsev__free(c->names);
  wsev__tls_tickets_unref(c->tickets);
  wsev__tls_sessions_unref(c->sessions);
  wsev__tls_trust_free(&c->trust);
  wsev__free(c);
}

void wsev__tls_config_ref(wsev_tls_config *c) { c->refs++; }

void wsev__tls_config_unref(wsev_tls_config *c) {
  if (c && --c->refs == 0) config_free(c);
}

/* What every configuration shares: TLS 1.2 and later, our suites, our DRBG. */
static int config_defaults(wsev_tls_config *c, wsev_rng *rng, int endpoint) {
  if (mbedtls_ssl_config_defaults(&c->conf, endpoint, MBEDTLS_SSL_TRANSPORT_STREAM,
                                  MBEDTLS_SSL_PRESET_DEFAULT) != 0)
    return UV_ENOMEM;
  mbedtls_ssl_conf_min_version(&c->conf, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
  mbedtls_ssl_conf_ciphersuites(&c->conf, cipher_suites);
  mbedtls_ssl_conf_curves(&c->conf, curves);
  mbedtls_ssl_conf_rng(&c->conf, rng_for_tls, rng);
  if (mbedtls_ssl_conf_alpn_protocols(&c->conf, alpn_protocols) != 0) return UV_ENOMEM;
  return 0;
}

/* The server name a client asked for: kept for wsev_request_server_name, and it picks
 * the certificate (the configuration's own, certs[0], unless another one names it). */
static int on_sni(void *p, mbedtls_ssl_context *ssl, const unsigned char *name, size_t len) {
  wsev_tls_config *c = p;
  wsev_tls *t = (wsev_tls *)ssl; /* ssl is the first member */
  wsev__free(t->server_name);
  t->server_name = wsev__malloc(len + 1);
  if (t->server_name) {
    memcpy(t->server_name, name, len);
    t->server_name[len] = 0;
  }
  size_t i = wsev__tls_pick_cert(c->names, c->cert_count, (const char *)name, len);
  /* Allocates (for this handshake only): fails the handshake without memory. */
  return i == 0 ? 0 : mbedtls_ssl_set_hs_own_cert(ssl, &c->certs[i].chain, &c->certs[i].key);
}

/* Tickets are sealed and opened by mbedTLS; opening one successfully means the
 * handshake being driven resumes that session, which the connection records. */
static int ticket_write(void *p, const mbedtls_ssl_session *session, unsigned char *start,
                        const unsigned char *end, size_t *len, uint32_t *lifetime) {
  return mbedtls_ssl_ticket_write(&((wsev_tls_config *)p)->tickets->keys, session, start, end, len,
                                  lifetime);
}

static int ticket_parse(void *p, mbedtls_ssl_session *session, unsigned char *buf, size_t len) {
  wsev_tls_config *c = p;
  int rc = mbedtls_ssl_ticket_parse(&c->tickets->keys, session, buf, len);
  if (rc == 0 && c->stepping) c->stepping->resumed = 1;
  return rc;
}

wsev_tls_tickets *wsev__tls_tickets_new(void) {
  wsev_tls_tickets *t = wsev__calloc(1, sizeof *t);
  if (!t) return NULL;
  mbedtls_ssl_ticket_init(&t->keys);
  t->refs = 1;
  if (!(t->rng = wsev__rng_new()) ||
      mbedtls_ssl_ticket_setup(&t->keys, rng_for_tls, t->rng, MBEDTLS_CIPHER_AES_256_GCM,
                               WSEV_TLS_TICKET_LIFETIME_S) != 0) {
    wsev__tls_tickets_unref(t);
    return NULL;
  }
  return t;
}

void wsev__tls_tickets_unref(wsev_tls_tickets *t) {
  if (!t || atomic_fetch_sub(&t->refs, 1) != 1) return;
  mbedtls_ssl_ticket_free(&t->keys);
  wsev__rng_free(t->rng);
  wsev__free(t);
}

/* The names SNI is matched against: the leaf's dNSName entries, or its subject CNs
 * when it has no dNSName at all. 0, UV_ENOMEM or WSEV_ETLSCERT (too many). */
static int read_names(const mbedtls_x509_crt *leaf, wsev_tls_names *names) {
  int rc = 0, dns = 0;
  for (const mbedtls_x509_sequence *san = &leaf->subject_alt_names; san && !rc; san = san->next) {
    if (san->buf.tag != (MBEDTLS_ASN1_CONTEXT_SPECIFIC | MBEDTLS_X509_SAN_DNS_NAME)) continue;
    dns = 1;
    rc = wsev__tls_names_add(names, san->buf.p, san->buf.len);
  }
  for (const mbedtls_x509_name *n = &leaf->subject; n && !rc && !dns; n = n->next)
    if (n->oid.p && MBEDTLS_OID_CMP(MBEDTLS_OID_AT_CN, &n->oid) == 0)
      rc = wsev__tls_names_add(names, n->val.p, n->val.len);
  return rc;
}

/* Load one pair and the names it serves: 0 or the error of this pair. */
static int load_cert(server_cert *sc, wsev_tls_names *names, const wsev_tls_cert *pair) {
  if (!pair->cert_file) return WSEV_ETLSCERT;
  if (!pair->key_file) return WSEV_ETLSKEY;
  /* parse_file returns > 0 when some certificates of the file did not parse: a
   * chain with a broken link is refused too. */
  if (mbedtls_x509_crt_parse_file(&sc->chain, pair->cert_file) != 0) return WSEV_ETLSCERT;
  if (mbedtls_pk_parse_keyfile(&sc->key, pair->key_file, NULL) != 0 ||
      !(mbedtls_pk_can_do(&sc->key, MBEDTLS_PK_RSA) ||
        mbedtls_pk_can_do(&sc->key, MBEDTLS_PK_ECKEY)))
    return WSEV_ETLSKEY;
  if (mbedtls_pk_check_pair(&sc->chain.pk, &sc->key) != 0) return WSEV_ETLSKEYMISMATCH;
  return read_names(&sc->chain, names);
}

int wsev__tls_server_config_certs(wsev_rng *rng, const wsev_tls_cert *certs, size_t count,
                                  wsev_tls_tickets *tickets, wsev_tls_config **out) {
  int rc = wsev__tls_certs_check(certs, count);
  if (rc) return rc;
  wsev_tls_config *c = config_new();
  if (!c) return UV_ENOMEM;
  c->server = 1;
  c->certs = wsev__calloc(count, sizeof *c->certs);
  c->names = wsev__calloc(count, sizeof *c->names);
  if (!c->certs || !c->names) {
    config_free(c);
    return UV_ENOMEM;
  }
  /* Each pair is counted whether it loads or not, so that config_free frees it. */
  for (; c->cert_count < count && !rc; c->cert_count++) {
    server_cert *sc = &c->certs[c->cert_count];
    mbedtls_x509_crt_init(&sc->chain);
    mbedtls_pk_init(&sc->key);
    rc = load_cert(sc, &c->names[c->cert_count], &certs[c->cert_count]);
  }
  /* The default; SNI puts another one in its place for one handshake (on_sni). */
  if (!rc) rc = config_defaults(c, rng, MBEDTLS_SSL_IS_SERVER);
  if (!rc && mbedtls_ssl_conf_own_cert(&c->conf, &c->certs[0].chain, &c->certs[0].key) != 0)
    rc = UV_ENOMEM;
  /* Session tickets (RFC 5077): a returning client resumes without a new key
   * exchange or signature, and the server keeps no state for it. */
  if (!rc && tickets)
    atomic_fetch_add(&(c->tickets = tickets)->refs, 1);
  else if (!rc && !(c->tickets = wsev__tls_tickets_new()))
    rc = UV_ENOMEM;
  if (rc) {
    config_free(c);
    return rc;
  }
  mbedtls_ssl_conf_authmode(&c->conf, MBEDTLS_SSL_VERIFY_NONE); /* no client certificates */
  mbedtls_ssl_conf_sni(&c->conf, on_sni, c);
  mbedtls_ssl_conf_session_tickets_cb(&c->conf, ticket_write, ticket_parse, c);
  *out = c;
  return 0;
}

int wsev__tls_client_config(wsev_rng *rng, const char *ca_file, int insecure,
                            wsev_tls_sessions *sessions, wsev_tls_config **out) {
  wsev_tls_config *c = config_new();
  if (!c) return UV_ENOMEM;
  int rc = config_defaults(c, rng, MBEDTLS_SSL_IS_CLIENT);
  if (!rc && sessions)
    wsev__tls_sessions_ref(c->sessions = sessions);
  else if (!rc && !(c->sessions = wsev__tls_sessions_new()))
    rc = UV_ENOMEM;
  if (!rc) rc = wsev__tls_trust_init(&c->trust, ca_file, insecure);
  /* A bundle with a few certificates mbedTLS cannot parse is still usable (> 0); none
   * at all is not. */
  if (!rc && !insecure &&
      (mbedtls_x509_crt_parse_file(&c->chain, ca_file ? ca_file : WSEV_TLS_SYSTEM_CA_BUNDLE) < 0 ||
       c->chain.version == 0))
    rc = WSEV_ETLSCA;
  if (rc) {
    config_free(c);
    return rc;
  }
  if (insecure) {
    mbedtls_ssl_conf_authmode(&c->conf, MBEDTLS_SSL_VERIFY_NONE);
  } else {
    mbedtls_ssl_conf_authmode(&c->conf, MBEDTLS_SSL_VERIFY_REQUIRED);
    mbedtls_ssl_conf_ca_chain(&c->conf, &c->chain, NULL);
  }
  *out = c;
  return 0;
}

int wsev__tls_config_matches(const wsev_tls_config *c, const char *ca_file, int insecure) {
  return !c->server && wsev__tls_trust_matches(&c->trust, ca_file, insecure);
}

/* ---- one connection ------------------------------------------------------------- */

static int bio_send(void *p, const unsigned char *data, size_t len) {
  wsev_tls *t = p;
  if (wsev__tls_out_append(&t->out, data, len) != 0) {
    t->out_of_memory = 1;
    return MBEDTLS_ERR_SSL_ALLOC_FAILED;
  }
  return (int)len;
}

static int bio_recv(void *p, unsigned char *buf, size_t len) {
  wsev_tls *t = p;
  if (t->in_len == 0) return MBEDTLS_ERR_SSL_WANT_READ;
  if (len > t->in_len) len = t->in_len;
  memcpy(buf, t->in, len);
  t->in += len;
  t->in_len -= len;
  return (int)len;
}

/* mbedTLS 2.28 checks only DNS names: for an IP literal the certificate must carry
 * that address as an iPAddress subjectAltName (RFC 6125), checked here. */
static int verify_ip(void *p, mbedtls_x509_crt *crt, int depth, uint32_t *flags) {
  const wsev_tls *t = p;
  if (depth != 0) return 0;
  for (const mbedtls_x509_sequence *san = &crt->subject_alt_names; san; san = san->next) {
    if (san->buf.tag == (MBEDTLS_ASN1_CONTEXT_SPECIFIC | 7) && san->buf.len == t->ip_len &&
        memcmp(san->buf.p, t->ip, t->ip_len) == 0)
      return 0;
  }
  *flags |= MBEDTLS_X509_BADCERT_CN_MISMATCH;
  return 0;
}

void wsev__tls_session_free(void *session) {
  mbedtls_ssl_session_free(session);
  wsev__free(session);
}

/* A client's handshake completed: keep the session (or the renewed ticket) for the
 * next connection to the same server. Without memory we just do not remember. */
static void remember_session(wsev_tls *t) {
  mbedtls_ssl_session *session = wsev__malloc(sizeof *session);
  if (!session) return;
  mbedtls_ssl_session_init(session);
  if (mbedtls_ssl_get_session(&t->ssl, session) != 0) {
    wsev__tls_session_free(session);
    return;
  }
  wsev__tls_sessions_lock(t->conf->sessions);
  wsev__tls_sessions_keep(t->conf->sessions, t->peer, session);
  wsev__tls_sessions_unlock(t->conf->sessions);
}

wsev_tls *wsev__tls_new(wsev_tls_config *conf, const char *server_name, unsigned port) {
  wsev_tls *t = wsev__calloc(1, sizeof *t);
  if (!t) return NULL;
  mbedtls_ssl_init(&t->ssl);
  if (mbedtls_ssl_setup(&t->ssl, &conf->conf) != 0) goto fail;
  if (server_name && uv_inet_pton(AF_INET, server_name, t->ip) == 0) {
    t->ip_len = 4;
  } else if (server_name && uv_inet_pton(AF_INET6, server_name, t->ip) == 0) {
    t->ip_len = 16;
  }
  if (t->ip_len) {
    /* No SNI for addresses (RFC 6066 section 3). */
    mbedtls_ssl_set_verify(&t->ssl, verify_ip, t);
  } else if (server_name) {
    /* Sets SNI and the name the certificate must carry. */
    if (mbedtls_ssl_set_hostname(&t->ssl, server_name) != 0) goto fail;
  }
  if (server_name) {
    size_t n = strlen(server_name);
    if (!(t->server_name = wsev__malloc(n + 1))) goto fail;
    memcpy(t->server_name, server_name, n + 1);
    if (!(t->peer = wsev__tls_peer_key(server_name, port, &conf->trust))) goto fail;
    wsev__tls_sessions_lock(conf->sessions);
    mbedtls_ssl_session *session = wsev__tls_sessions_find(conf->sessions, t->peer);
    /* Resuming skips the certificate check: the session was verified when it was
     * made, for this server, under the same trusted CAs. */
    if (session && mbedtls_ssl_set_session(&t->ssl, session) != 0) {
      wsev__tls_sessions_forget(conf->sessions, t->peer);
    } else if (session) {
      memcpy(t->offered_master, session->master, sizeof t->offered_master);
      t->offered = 1;
    }
    wsev__tls_sessions_unlock(conf->sessions);
  }
  mbedtls_ssl_set_bio(&t->ssl, t, bio_send, bio_recv, NULL);
  t->conf = conf;
  wsev__tls_config_ref(conf);
  return t;
fail:
  mbedtls_ssl_free(&t->ssl);
  wsev__free(t->server_name);
  wsev__free(t->peer);
  wsev__free(t);
  return NULL;
}

void wsev__tls_free(wsev_tls *t) {
  if (!t) return;
  mbedtls_ssl_free(&t->ssl);
  mbedtls_platform_zeroize(t->offered_master, sizeof t->offered_master);
  wsev__tls_config_unref(t->conf);
  wsev__free(t->out.data);
  wsev__free(t->server_name);
  wsev__free(t->peer);
  wsev__free(t);
}

static int failed(wsev_tls *t, int rc) {
  if (t->peer && !t->done) { /* a handshake that failed starts afresh next time */
    wsev__tls_sessions_lock(t->conf->sessions);
    wsev__tls_sessions_forget(t->conf->sessions, t->peer);
    wsev__tls_sessions_unlock(t->conf->sessions);
  }
  t->mbedtls_error = rc;
  if (!t->error) t->error = rc == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED ? WSEV_ETLSVERIFY : WSEV_ETLS;
  return WSEV_TLS_FAILED;
}

static int handshake(wsev_tls *t, const wsev_tls_sink *sink, void *conn) {
  t->conf->stepping = t;
  int rc = mbedtls_ssl_handshake(&t->ssl);
  t->conf->stepping = NULL;
  if (rc == 0) {
    t->done = 1;
    if (t->offered) {
      /* The server took our session if the secret is still the one we offered. */
      t->resumed = memcmp(t->offered_master, t->ssl.session->master, sizeof t->offered_master) == 0;
      mbedtls_platform_zeroize(t->offered_master, sizeof t->offered_master);
    }
    if (t->peer) remember_session(t);
    return sink && sink->handshake_done(conn) != 0 ? WSEV_TLS_STOPPED : WSEV_TLS_OK;
  }
  if (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE) return WSEV_TLS_OK;
  return failed(t, rc);
}

int wsev__tls_start(wsev_tls *t) { return t->done ? WSEV_TLS_OK : handshake(t, NULL, NULL); }

int wsev__tls_input(wsev_tls *t, const uint8_t *in, size_t len, uint8_t *plain, size_t plain_cap,
                    const wsev_tls_sink *sink, void *conn) {
  int result = WSEV_TLS_OK;
  t->in = in;
  t->in_len = len;
  if (!t->done) {
    result = handshake(t, sink, conn);
    if (result != WSEV_TLS_OK || !t->done) goto out;
  }
  /* Decrypt as many records as fit, then hand them on together: a message that
   * spans records still reaches the frame parser in one piece. */
  for (;;) {
    size_t got = 0;
    int rc = 0;
    while (got < plain_cap) {
      rc = mbedtls_ssl_read(&t->ssl, plain + got, plain_cap - got);
      if (rc <= 0) break;
      got += (size_t)rc;
    }
    if (got && sink->plaintext(conn, plain, got) != 0) {
      result = WSEV_TLS_STOPPED;
      break;
    }
    if (rc > 0) continue; /* the buffer was full */
    if (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE) break;
    if (rc == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY || rc == 0) {
      result = WSEV_TLS_CLOSED;
      break;
    }
    result = failed(t, rc);
    break;
  }
out:
  t->in = NULL;
  t->in_len = 0;
  return result;
}

int wsev__tls_handshake_done(const wsev_tls *t) { return t->done; }

int wsev__tls_encrypt(wsev_tls *t, const uint8_t *data, size_t len) {
  while (len) {
    int rc = mbedtls_ssl_write(&t->ssl, data, len);
    if (rc <= 0) {
      if (t->out_of_memory) return UV_ENOMEM;
      failed(t, rc);
      return WSEV_ETLS;
    }
    data += rc;
    len -= (size_t)rc;
  }
  return 0;
}

void wsev__tls_close_notify(wsev_tls *t) {
  if (!t->done || t->notify_sent || t->error) return;
  t->notify_sent = 1;
  mbedtls_ssl_close_notify(&t->ssl);
}

size_t wsev__tls_pending(const wsev_tls *t) { return t->out.len; }

uint8_t *wsev__tls_take(wsev_tls *t, size_t *len, size_t *cap) {
  return wsev__tls_out_take(&t->out, len, cap);
}

int wsev__tls_error(const wsev_tls *t, char *reason, size_t cap) {
  if (!cap) return t->error;
  reason[0] = 0;
  if (t->error == WSEV_ETLSVERIFY) {
    uint32_t flags = mbedtls_ssl_get_verify_result(&t->ssl);
    char info[512];
    /* One line per problem, each starting with a prefix we do not need. */
    if (flags != (uint32_t)-1 && mbedtls_x509_crt_verify_info(info, sizeof info, "", flags) > 0) {
      char *nl = strchr(info, '\n');
      if (nl) *nl = 0;
      snprintf(reason, cap, "certificate: %s", info);
      return t->error;
    }
  }
  if (t->mbedtls_error) {
    char text[200];
    mbedtls_strerror(t->mbedtls_error, text, sizeof text);
    snprintf(reason, cap, "%s", text);
  }
  return t->error;
}

const char *wsev__tls_version(const wsev_tls *t) {
  return t->done ? mbedtls_ssl_get_version(&t->ssl) : NULL;
}

int wsev__tls_resumed(const wsev_tls *t) { return t->resumed; }

const char *wsev__tls_cipher(const wsev_tls *t) {
  return t->done ? mbedtls_ssl_get_ciphersuite(&t->ssl) : NULL;
}

const char *wsev__tls_server_name(const wsev_tls *t) { return t->server_name; }

int wsev__tls_peer_cert_sha256(const wsev_tls *t, uint8_t digest[32]) {
  const mbedtls_x509_crt *crt = t->done ? mbedtls_ssl_get_peer_cert(&t->ssl) : NULL;
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
  return crt && mbedtls_sha256(crt->raw.p, crt->raw.len, digest, 0) == 0 ? 0 : -1;
#else
  return crt && mbedtls_sha256_ret(crt->raw.p, crt->raw.len, digest, 0) == 0 ? 0 : -1;
#endif
}
