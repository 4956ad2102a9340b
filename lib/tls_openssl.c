/* TLS with OpenSSL 3 over memory buffers (see tls.h): the backend for servers that
 * live on wss (-Dtls=openssl). The same policy as tls_mbedtls.c: TLS 1.2 minimum
 * (1.3 where the peer has it), ECDHE with AEAD suites only, X25519/P-256/P-384,
 * ALPN "http/1.1", stateless session tickets whose keys rotate, and a client cache
 * of the last session with each of a few servers.
 *
 * The SSL object reads and writes through a BIO of ours that never blocks: reads take
 * the ciphertext being fed (wsev__tls_input), writes append to the connection's
 * ciphertext buffer, which the connection layer takes and writes (wsev__tls_take).
 * Record buffers are released while a connection is idle (SSL_MODE_RELEASE_BUFFERS). */
#include "tls.h"

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/opensslv.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "alloc.h"
#include "tls_shared.h"

/* Forward secrecy and AEAD only. AES-GCM first: with AES-NI OpenSSL runs it faster
 * than ChaCha20-Poly1305, and the server's order decides. */
#define TLS12_SUITES                                                                               \
  "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                                     \
  "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"                                     \
  "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384"
#define TLS13_SUITES "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384"
#define GROUPS "X25519:P-256:P-384"
static const unsigned char alpn_http11[] = "\x08http/1.1";

const char *wsev__tls_backend(void) { return "OpenSSL " OPENSSL_FULL_VERSION_STR; }

int wsev__sha1(const void *data, size_t len, uint8_t digest[20]) {
  unsigned int n = 0;
  return EVP_Digest(data, len, digest, &n, EVP_sha1(), NULL) == 1 && n == 20 ? 0 : -1;
}

/* ---- random bytes ------------------------------------------------------------ */

/* OpenSSL's DRBG is thread-safe and seeds itself; the pool only makes small requests
 * cheap. */
struct wsev_rng {
  wsev_rng_pool pool;
};

wsev_rng *wsev__rng_new(void) { return wsev__calloc(1, sizeof(wsev_rng)); }

void wsev__rng_free(wsev_rng *rng) {
  if (!rng) return;
  wsev__tls_zeroize(rng->pool.bytes, sizeof rng->pool.bytes);
  wsev__free(rng);
}

static int rand_fill(void *unused, void *buf, size_t len) {
  (void)unused;
  return RAND_bytes(buf, (int)len) == 1 ? 0 : -1;
}

int wsev__rng_bytes(wsev_rng *rng, void *buf, size_t len) {
  return wsev__rng_pool_bytes(&rng->pool, buf, len, rand_fill, NULL);
}

/* ---- session tickets ------------------------------------------------------------ */

typedef struct {
  uint8_t name[16]; /* tells which key sealed a ticket */
  uint8_t aes[32];
  uint8_t hmac[32];
} ticket_key;

/* Shared by a listener's configurations on every I/O thread, so the lock. */
struct wsev_tls_tickets {
  uv_mutex_t lock;
  _Atomic size_t refs;
  ticket_key current;  /* seals new tickets */
  ticket_key previous; /* still opens tickets (which are then renewed) */
  int have_previous;
  time_t rotate_at;
};

wsev_tls_tickets *wsev__tls_tickets_new(void) {
  wsev_tls_tickets *t = wsev__calloc(1, sizeof *t);
  if (!t) return NULL;
  if (uv_mutex_init(&t->lock) != 0) {
    wsev__free(t);
    return NULL;
  }
  t->refs = 1;
  t->rotate_at = time(NULL) + WSEV_TLS_TICKET_LIFETIME_S;
  if (RAND_bytes((unsigned char *)&t->current, sizeof t->current) != 1) {
    wsev__tls_tickets_unref(t);
    return NULL;
  }
  return t;
}

void wsev__tls_tickets_unref(wsev_tls_tickets *t) {
  if (!t || atomic_fetch_sub(&t->refs, 1) != 1) return;
  uv_mutex_destroy(&t->lock);
  OPENSSL_cleanse(t, sizeof *t);
  wsev__free(t);
}

/* Under the lock. A key that cannot be made keeps the current one a while longer. */
static void rotate_ticket_keys(wsev_tls_tickets *t) {
  time_t now = time(NULL);
  ticket_key fresh;
  if (now < t->rotate_at || RAND_bytes((unsigned char *)&fresh, sizeof fresh) != 1) return;
  t->previous = t->current;
  t->current = fresh;
  t->have_previous = 1;
  t->rotate_at = now + WSEV_TLS_TICKET_LIFETIME_S;
  OPENSSL_cleanse(&fresh, sizeof fresh);
}

struct wsev_tls {
  SSL *ssl;
  wsev_tls_config *conf;
  const uint8_t *in; /* ciphertext being fed, not yet taken by OpenSSL */
  size_t in_len;
  wsev_tls_out out; /* ciphertext to write */
  char *server_name;
  char *peer;                  /* clients: "host port trust", the key in conf->sessions */
  int error;                   /* WSEV_ETLS, WSEV_ETLSVERIFY, or 0 */
  unsigned long openssl_error; /* the first error of the failure */
  long verify_result;
  const char *refused; /* a failure of our own making: why */
  /* Servers, until the handshake is done: where the records of the input are. */
  size_t record_left; /* bytes of the current record's body still to come */
  uint8_t header[5];  /* the next record's header, as far as it came */
  uint8_t header_len;
  uint8_t fed;         /* some ciphertext came */
  uint8_t done;        /* handshake complete */
  uint8_t resumed;     /* the handshake resumed an earlier session */
  uint8_t notify_sent; /* close_notify queued */
  uint8_t out_of_memory;
};

struct wsev_tls_config {
  SSL_CTX *ctx; /* clients: theirs; servers: the one of certs[0], the default */
  /* Servers: a context per certificate (ctxs[0] is ctx), set up alike; SNI moves a
   * connection to the one of its certificate (on_sni). Every one has this
   * configuration as its app data, which the ticket keys are found through. */
  SSL_CTX **ctxs;
  wsev_tls_names *names; /* the names each certificate serves */
  size_t cert_count;
  wsev_tls_tickets *tickets; /* servers */
  size_t refs;
  int server;
  wsev_tls_trust trust;        /* clients */
  wsev_tls_sessions *sessions; /* clients */
};

/* OpenSSL seals a ticket with AES-256-CBC and HMAC-SHA256 under the keys we give it.
 * enc: 1 to seal (name and IV are ours to fill), 0 to open. Returns 1 (sealed), 2
 * (opened: issue a new ticket), 0 for "unknown key" (a full handshake) or "issue no
 * ticket", -1 on failure. TLS 1.3 clients use a ticket once, so a resumed TLS 1.3
 * connection always leaves them a new one; a TLS 1.2 ticket is renewed only when an
 * old key opened it. */
static int ticket_key_cb(SSL *ssl, unsigned char name[16], unsigned char *iv,
                         EVP_CIPHER_CTX *cipher, EVP_MAC_CTX *mac, int enc) {
  wsev_tls_config *c = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
  wsev_tls_tickets *t = c->tickets;
  ticket_key key;
  int rc = 1;
  uv_mutex_lock(&t->lock);
  rotate_ticket_keys(t);
  if (enc) {
    key = t->current;
  } else if (memcmp(name, t->current.name, sizeof t->current.name) == 0) {
    key = t->current;
    rc = SSL_version(ssl) >= TLS1_3_VERSION ? 2 : 1;
  } else if (t->have_previous && memcmp(name, t->previous.name, sizeof t->previous.name) == 0) {
    key = t->previous;
    rc = 2;
  } else {
    rc = 0;
  }
  uv_mutex_unlock(&t->lock);
  if (rc == 0) return 0;
  if (enc) {
    memcpy(name, key.name, sizeof key.name);
    if (RAND_bytes(iv, 16) != 1) rc = -1;
  }
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, key.hmac, sizeof key.hmac),
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
      OSSL_PARAM_construct_end(),
  };
  if (rc > 0 && (EVP_MAC_CTX_set_params(mac, params) != 1 ||
                 (enc ? EVP_EncryptInit_ex(cipher, EVP_aes_256_cbc(), NULL, key.aes, iv)
                      : EVP_DecryptInit_ex(cipher, EVP_aes_256_cbc(), NULL, key.aes, iv)) != 1))
    rc = -1;
  OPENSSL_cleanse(&key, sizeof key);
  return enc && rc < 0 ? 0 : rc;
}

/* ---- configurations ------------------------------------------------------------ */

static void config_free(wsev_tls_config *c) {
  for (size_t i = 0; i < c->cert_count; i++) {
    if (i > 0) SSL_CTX_free(c->ctxs[i]);
    wsev__tls_names_free(&c->names[i]);
  }
  wsev__free(c->ctxs);
  wsev__free(c->names);
  SSL_CTX_free(c->ctx);
  wsev__tls_tickets_unref(c->tickets);
  wsev__tls_sessions_unref(c->sessions);
  wsev__tls_trust_free(&c->trust);
  wsev__free(c);
}

void wsev__tls_config_ref(wsev_tls_config *c) { c->refs++; }

void wsev__tls_config_unref(wsev_tls_config *c) {
  if (c && --c->refs == 0) config_free(c);
}

/* What every context shares: TLS 1.2 and later, our suites and groups, buffers
 * released while idle, no renegotiation. NULL on failure. */
static SSL_CTX *ctx_new(wsev_tls_config *c) {
  SSL_CTX *ctx = SSL_CTX_new(c->server ? TLS_server_method() : TLS_client_method());
  if (!ctx || SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
      SSL_CTX_set_cipher_list(ctx, TLS12_SUITES) != 1 ||
      SSL_CTX_set_ciphersuites(ctx, TLS13_SUITES) != 1 ||
      SSL_CTX_set1_groups_list(ctx, GROUPS) != 1) {
    SSL_CTX_free(ctx);
    ERR_clear_error();
    return NULL;
  }
  SSL_CTX_set_app_data(ctx, c);
  /* Release: an idle connection keeps no record buffers. Read ahead: a read takes
   * whole records, not a header and then a body, so a feed is a few copies. */
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_read_ahead(ctx, 1);
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                               SSL_OP_CIPHER_SERVER_PREFERENCE);
  return ctx;
}

static wsev_tls_config *config_new(int server) {
  wsev_tls_config *c = wsev__calloc(1, sizeof *c);
  if (!c) return NULL;
  c->refs = 1;
  c->server = server;
  if (!(c->ctx = ctx_new(c))) {
    config_free(c);
    return NULL;
  }
  return c;
}

/* The server name a client asked for: kept for wsev_request_server_name, and it picks
 * the certificate (the configuration's own, certs[0], unless another one names it).
 * Moving the connection to another context of the configuration keeps what it
 * began with: its options, and session tickets sealed and opened with the keys
 * of the configuration (OpenSSL looks for the ticket callback in the first
 * context, which finds them through its app data). */
static int on_sni(SSL *ssl, int *alert, void *unused) {
  wsev_tls *t = SSL_get_app_data(ssl);
  const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  (void)unused;
  if (!t || !name) return SSL_TLSEXT_ERR_OK;
  size_t len = strlen(name);
  wsev__free(t->server_name);
  if ((t->server_name = wsev__malloc(len + 1))) memcpy(t->server_name, name, len + 1);
  const wsev_tls_config *c = t->conf;
  SSL_CTX *ctx = c->ctxs[wsev__tls_pick_cert(c->names, c->cert_count, name, len)];
  /* Copies the context's certificate and key into the connection: fails without
   * memory. */
  if (SSL_set_SSL_CTX(ssl, ctx) != ctx) {
    *alert = SSL_AD_INTERNAL_ERROR;
    return SSL_TLSEXT_ERR_ALERT_FATAL;
  }
  return SSL_TLSEXT_ERR_OK;
}

/* ALPN: http/1.1 when the client offers it; a client that offers only other
 * protocols is refused with no_application_protocol (as mbedTLS does). */
static int on_alpn(SSL *ssl, const unsigned char **out, unsigned char *out_len,
                   const unsigned char *in, unsigned int in_len, void *unused) {
  (void)ssl;
  (void)unused;
  for (unsigned int at = 0; at < in_len; at += 1u + in[at]) {
    unsigned int n = in[at];
    if (at + 1 + n > in_len) break;
    if (n == 8 && memcmp(in + at + 1, "http/1.1", 8) == 0) {
      *out = in + at + 1;
      *out_len = 8;
      return SSL_TLSEXT_ERR_OK;
    }
  }
  return SSL_TLSEXT_ERR_ALERT_FATAL;
}

/* An encrypted key is refused, never prompted for. */
static int no_password(char *buf, int size, int rwflag, void *unused) {
  (void)buf;
  (void)size;
  (void)rwflag;
  (void)unused;
  return -1;
}

static EVP_PKEY *load_key(const char *key_file) {
  BIO *file = BIO_new_file(key_file, "r");
  EVP_PKEY *key = file ? PEM_read_bio_PrivateKey(file, NULL, no_password, NULL) : NULL;
  BIO_free(file);
  /* The same key types as with mbedTLS: RSA and elliptic curves. */
  if (key && !EVP_PKEY_is_a(key, "RSA") && !EVP_PKEY_is_a(key, "EC")) {
    EVP_PKEY_free(key);
    key = NULL;
  }
  return key;
}

/* The names SNI is matched against: the leaf's dNSName entries, or its subject CNs
 * when it has no dNSName at all. 0, UV_ENOMEM or WSEV_ETLSCERT (too many). */
static int read_names(X509 *leaf, wsev_tls_names *names) {
  int rc = 0, dns = 0;
  GENERAL_NAMES *sans = X509_get_ext_d2i(leaf, NID_subject_alt_name, NULL, NULL);
  for (int i = 0; i < sk_GENERAL_NAME_num(sans) && !rc; i++) {
    const GENERAL_NAME *san = sk_GENERAL_NAME_value(sans, i);
    if (san->type != GEN_DNS) continue;
    dns = 1;
    rc = wsev__tls_names_add(names, ASN1_STRING_get0_data(san->d.dNSName),
                             (size_t)ASN1_STRING_length(san->d.dNSName));
  }
  GENERAL_NAMES_free(sans);
  const X509_NAME *subject = X509_get_subject_name(leaf);
  for (int at = -1;
       !rc && !dns && (at = X509_NAME_get_index_by_NID(subject, NID_commonName, at)) >= 0;) {
    const ASN1_STRING *cn = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, at));
    rc = wsev__tls_names_add(names, ASN1_STRING_get0_data(cn), (size_t)ASN1_STRING_length(cn));
  }
  return rc;
}

/* Load one pair into its context, with the names it serves: 0 or the error of this
 * pair. */
static int load_cert(SSL_CTX *ctx, wsev_tls_names *names, const wsev_tls_cert *pair) {
  if (!pair->cert_file) return WSEV_ETLSCERT;
  if (!pair->key_file) return WSEV_ETLSKEY;
  EVP_PKEY *key = NULL;
  int rc = 0;
  if (SSL_CTX_use_certificate_chain_file(ctx, pair->cert_file) != 1)
    rc = WSEV_ETLSCERT;
  else if (!(key = load_key(pair->key_file)))
    rc = WSEV_ETLSKEY;
  else if (X509_check_private_key(SSL_CTX_get0_certificate(ctx), key) != 1)
    rc = WSEV_ETLSKEYMISMATCH;
  else if (SSL_CTX_use_PrivateKey(ctx, key) != 1)
    rc = UV_ENOMEM;
  else
    rc = read_names(SSL_CTX_get0_certificate(ctx), names);
  EVP_PKEY_free(key);
  ERR_clear_error();
  if (rc) return rc;
  SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL); /* no client certificates */
  /* Send the chain as the file has it (as mbedTLS does), without looking for missing
   * links in the trust store at every handshake. */
  SSL_CTX_set_mode(ctx, SSL_MODE_NO_AUTO_CHAIN);
  SSL_CTX_set_tlsext_servername_callback(ctx, on_sni);
  SSL_CTX_set_alpn_select_cb(ctx, on_alpn, NULL);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF); /* tickets only */
  /* Session tickets (RFC 5077, and TLS 1.3's): a returning client resumes without a
   * new key exchange or signature, and the server keeps no state for it. */
  SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_key_cb);
  SSL_CTX_set_timeout(ctx, WSEV_TLS_TICKET_LIFETIME_S);
  SSL_CTX_set_num_tickets(ctx, 1); /* TLS 1.3 sends two by default */
  return 0;
}

int wsev__tls_server_config_certs(wsev_rng *rng, const wsev_tls_cert *certs, size_t count,
                                  wsev_tls_tickets *tickets, wsev_tls_config **out) {
  (void)rng; /* OpenSSL draws from its own DRBG */
  int rc = wsev__tls_certs_check(certs, count);
  if (rc) return rc;
  wsev_tls_config *c = config_new(1);
  if (!c) return UV_ENOMEM;
  c->ctxs = wsev__calloc(count, sizeof *c->ctxs);
  c->names = wsev__calloc(count, sizeof *c->names);
  if (!c->ctxs || !c->names) rc = UV_ENOMEM;
  /* Each pair is counted whether it loads or not, so that config_free frees it. */
  for (; !rc && c->cert_count < count; c->cert_count++) {
    SSL_CTX *ctx = c->cert_count == 0 ? c->ctx : ctx_new(c);
    if (!(c->ctxs[c->cert_count] = ctx))
      rc = UV_ENOMEM;
    else
      rc = load_cert(ctx, &c->names[c->cert_count], &certs[c->cert_count]);
  }
  if (!rc && tickets)
    atomic_fetch_add(&(c->tickets = tickets)->refs, 1);
  else if (!rc && !(c->tickets = wsev__tls_tickets_new()))
    rc = UV_ENOMEM;
  if (rc) {
    config_free(c);
    return rc;
  }
  *out = c;
  return 0;
}

static int on_new_session(SSL *ssl, SSL_SESSION *session);

int wsev__tls_client_config(wsev_rng *rng, const char *ca_file, int insecure,
                            wsev_tls_sessions *sessions, wsev_tls_config **out) {
  (void)rng;
  wsev_tls_config *c = config_new(0);
  if (!c) return UV_ENOMEM;
  SSL_CTX *ctx = c->ctx;
  int rc = SSL_CTX_set_alpn_protos(ctx, alpn_http11, sizeof alpn_http11 - 1) == 0 ? 0 : UV_ENOMEM;
  if (!rc && sessions)
    wsev__tls_sessions_ref(c->sessions = sessions);
  else if (!rc && !(c->sessions = wsev__tls_sessions_new()))
    rc = UV_ENOMEM;
  if (!rc) rc = wsev__tls_trust_init(&c->trust, ca_file, insecure);
  if (!rc && !insecure &&
      SSL_CTX_load_verify_locations(ctx, ca_file ? ca_file : WSEV_TLS_SYSTEM_CA_BUNDLE, NULL) != 1)
    rc = WSEV_ETLSCA;
  ERR_clear_error();
  if (rc) {
    config_free(c);
    return rc;
  }
  /* Every certificate of the CA file is a trust anchor, as with mbedTLS, even one
   * that is not self-signed. */
  X509_VERIFY_PARAM_set_flags(SSL_CTX_get0_param(ctx), X509_V_FLAG_PARTIAL_CHAIN);
  SSL_CTX_set_verify(ctx, insecure ? SSL_VERIFY_NONE : SSL_VERIFY_PEER, NULL);
  /* Sessions go to our cache (per server), not OpenSSL's (per context). */
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
  SSL_CTX_sess_set_new_cb(ctx, on_new_session);
  *out = c;
  return 0;
}

int wsev__tls_config_matches(const wsev_tls_config *c, const char *ca_file, int insecure) {
  return !c->server && wsev__tls_trust_matches(&c->trust, ca_file, insecure);
}

/* ---- the client session cache ------------------------------------------------------ */

void wsev__tls_session_free(void *session) { SSL_SESSION_free(session); }

/* A client received a session it may resume (TLS 1.2: at the end of the handshake;
 * TLS 1.3: a ticket after it): keep it for the next connection to the same server.
 * Returns 1: the cache takes OpenSSL's reference. */
static int on_new_session(SSL *ssl, SSL_SESSION *session) {
  wsev_tls *t = SSL_get_app_data(ssl);
  if (!t || !t->peer) return 0;
  wsev__tls_sessions_lock(t->conf->sessions);
  wsev__tls_sessions_keep(t->conf->sessions, t->peer, session);
  wsev__tls_sessions_unlock(t->conf->sessions);
  return 1;
}

/* ---- the BIO between OpenSSL and our buffers -------------------------------------- */

static int bio_write(BIO *bio, const char *data, size_t len, size_t *written) {
  wsev_tls *t = BIO_get_data(bio);
  BIO_clear_retry_flags(bio);
  if (wsev__tls_out_append(&t->out, data, len) != 0) {
    t->out_of_memory = 1;
    return 0;
  }
  *written = len;
  return 1;
}

static int bio_read(BIO *bio, char *buf, size_t len, size_t *read) {
  wsev_tls *t = BIO_get_data(bio);
  BIO_clear_retry_flags(bio);
  if (t->in_len == 0) {
    BIO_set_retry_read(bio); /* "wait for the next read", never end of stream */
    return 0;
  }
  if (len > t->in_len) len = t->in_len;
  memcpy(buf, t->in, len);
  t->in += len;
  t->in_len -= len;
  *read = len;
  return 1;
}

static long bio_ctrl(BIO *bio, int cmd, long num, void *ptr) {
  (void)bio;
  (void)num;
  (void)ptr;
  return cmd == BIO_CTRL_FLUSH; /* writes land in memory: nothing to flush */
}

static BIO_METHOD *memory_bio;
static uv_once_t memory_bio_once = UV_ONCE_INIT;

/* Made once per process and kept (OpenSSL keeps its own methods the same way). */
static void make_memory_bio(void) {
  BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "wsev");
  if (m && (BIO_meth_set_write_ex(m, bio_write) != 1 || BIO_meth_set_read_ex(m, bio_read) != 1 ||
            BIO_meth_set_ctrl(m, bio_ctrl) != 1)) {
    BIO_meth_free(m);
    m = NULL;
  }
  memory_bio = m;
}

/* ---- one connection ------------------------------------------------------------- */

wsev_tls *wsev__tls_new(wsev_tls_config *conf, const char *server_name, unsigned port) {
  uv_once(&memory_bio_once, make_memory_bio);
  if (!memory_bio) return NULL;
  wsev_tls *t = wsev__calloc(1, sizeof *t);
  if (!t) return NULL;
  BIO *bio = NULL;
  if (!(t->ssl = SSL_new(conf->ctx)) || !(bio = BIO_new(memory_bio))) goto fail;
  BIO_set_data(bio, t);
  BIO_set_init(bio, 1);
  SSL_set_bio(t->ssl, bio, bio);
  SSL_set_app_data(t->ssl, t);
  if (conf->server) {
    SSL_set_accept_state(t->ssl);
  } else {
    SSL_set_connect_state(t->ssl);
  }
  if (server_name) {
    uint8_t ip[16];
    if (uv_inet_pton(AF_INET, server_name, ip) == 0 ||
        uv_inet_pton(AF_INET6, server_name, ip) == 0) {
      /* An IP literal: the certificate must name that address; no SNI (RFC 6066
       * section 3). */
      if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), server_name) != 1) goto fail;
    } else if (SSL_set_tlsext_host_name(t->ssl, server_name) != 1 ||
               SSL_set1_host(t->ssl, server_name) != 1) {
      goto fail;
    }
    size_t n = strlen(server_name);
    if (!(t->server_name = wsev__malloc(n + 1))) goto fail;
    memcpy(t->server_name, server_name, n + 1);
    if (!(t->peer = wsev__tls_peer_key(server_name, port, &conf->trust))) goto fail;
    wsev__tls_sessions_lock(conf->sessions);
    SSL_SESSION *session = wsev__tls_sessions_find(conf->sessions, t->peer);
    /* Resuming skips the certificate check: the session was verified when it was
     * made, for this server, under the same trusted CAs. */
    if (session && (!SSL_SESSION_is_resumable(session) || SSL_set_session(t->ssl, session) != 1))
      wsev__tls_sessions_forget(conf->sessions, t->peer);
    wsev__tls_sessions_unlock(conf->sessions);
  }
  t->conf = conf;
  wsev__tls_config_ref(conf);
  ERR_clear_error();
  return t;
fail:
  if (t->ssl)
    SSL_free(t->ssl); /* and the BIO, once set */
  else
    BIO_free(bio);
  ERR_clear_error();
  wsev__free(t->server_name);
  wsev__free(t->peer);
  wsev__free(t);
  return NULL;
}

void wsev__tls_free(wsev_tls *t) {
  if (!t) return;
  SSL_free(t->ssl);
  wsev__tls_config_unref(t->conf);
  wsev__free(t->out.data);
  wsev__free(t->server_name);
  wsev__free(t->peer);
  wsev__free(t);
}

/* OpenSSL's errors wait in a queue of the calling thread: the first one says why,
 * and none may be left behind for the next connection served on this thread. */
static int failed(wsev_tls *t) {
  if (t->peer && !t->done) { /* a handshake that failed starts afresh next time */
    wsev__tls_sessions_lock(t->conf->sessions);
    wsev__tls_sessions_forget(t->conf->sessions, t->peer);
    wsev__tls_sessions_unlock(t->conf->sessions);
  }
  if (!t->openssl_error) t->openssl_error = ERR_peek_error();
  ERR_clear_error();
  t->verify_result = SSL_get_verify_result(t->ssl);
  if (!t->error) t->error = t->verify_result != X509_V_OK ? WSEV_ETLSVERIFY : WSEV_ETLS;
  return WSEV_TLS_FAILED;
}

static int handshake(wsev_tls *t, const wsev_tls_sink *sink, void *conn) {
  ERR_clear_error();
  int rc = SSL_do_handshake(t->ssl);
  if (rc == 1) {
    t->done = 1;
    t->resumed = SSL_session_reused(t->ssl) == 1;
    return sink && sink->handshake_done(conn) != 0 ? WSEV_TLS_STOPPED : WSEV_TLS_OK;
  }
  int err = SSL_get_error(t->ssl, rc);
  if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return WSEV_TLS_OK;
  return failed(t);
}

int wsev__tls_start(wsev_tls *t) { return t->done ? WSEV_TLS_OK : handshake(t, NULL, NULL); }

/* Before the handshake, OpenSSL reads two kinds of input that our policy (and mbedTLS)
 * refuses, and waits for more of them instead of failing: an SSLv2-format ClientHello
 * (the first byte's high bit set; no client with TLS 1.2 sends one) and zero-length
 * handshake records (RFC 8446 section 5.1 forbids them; OpenSSL skips up to 32). So the
 * record headers are followed until the handshake is done. Why the input is refused,
 * or NULL. */
static const char *refused_before_handshake(wsev_tls *t, const uint8_t *in, size_t len) {
  if (!t->fed && len) {
    t->fed = 1;
    if (in[0] & 0x80) return "an SSLv2-style ClientHello";
  }
  while (len) {
    if (t->record_left) {
      size_t n = len < t->record_left ? len : t->record_left;
      t->record_left -= n;
      in += n;
      len -= n;
      continue;
    }
    t->header[t->header_len++] = *in++;
    len--;
    if (t->header_len < sizeof t->header) continue;
    t->header_len = 0;
    t->record_left = (size_t)t->header[3] << 8 | t->header[4];
    if (t->header[0] == 22 && t->record_left == 0) return "a zero-length handshake record";
  }
  return NULL;
}

int wsev__tls_input(wsev_tls *t, const uint8_t *in, size_t len, uint8_t *plain, size_t plain_cap,
                    const wsev_tls_sink *sink, void *conn) {
  int result = WSEV_TLS_OK;
  if (t->conf->server && !t->done && (t->refused = refused_before_handshake(t, in, len)))
    return failed(t);
  t->in = in;
  t->in_len = len;
  if (!t->done) {
    result = handshake(t, sink, conn);
    if (result != WSEV_TLS_OK || !t->done) goto out;
  }
  /* Decrypt as many records as fit, then hand them on together: a message that
   * spans records still reaches the frame parser in one piece. */
  for (;;) {
    size_t got = 0, n;
    int rc = 1, err = SSL_ERROR_NONE;
    ERR_clear_error();
    while (got < plain_cap) {
      rc = SSL_read_ex(t->ssl, plain + got, plain_cap - got, &n);
      if (rc != 1) {
        err = SSL_get_error(t->ssl, rc);
        break;
      }
      got += n;
    }
    if (got && sink->plaintext(conn, plain, got) != 0) {
      result = WSEV_TLS_STOPPED;
      break;
    }
    if (rc == 1) continue; /* the buffer was full */
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) break;
    if (err == SSL_ERROR_ZERO_RETURN) {
      result = WSEV_TLS_CLOSED;
      break;
    }
    result = failed(t);
    break;
  }
out:
  t->in = NULL;
  t->in_len = 0;
  return result;
}

int wsev__tls_handshake_done(const wsev_tls *t) { return t->done; }

int wsev__tls_encrypt(wsev_tls *t, const uint8_t *data, size_t len) {
  ERR_clear_error();
  while (len) {
    size_t n = 0;
    if (SSL_write_ex(t->ssl, data, len, &n) != 1) {
      if (t->out_of_memory) {
        ERR_clear_error();
        return UV_ENOMEM;
      }
      failed(t);
      return WSEV_ETLS;
    }
    data += n;
    len -= n;
  }
  return 0;
}

void wsev__tls_close_notify(wsev_tls *t) {
  if (!t->done || t->notify_sent || t->error) return;
  t->notify_sent = 1;
  SSL_shutdown(t->ssl);
  ERR_clear_error();
}

size_t wsev__tls_pending(const wsev_tls *t) { return t->out.len; }

uint8_t *wsev__tls_take(wsev_tls *t, size_t *len, size_t *cap) {
  return wsev__tls_out_take(&t->out, len, cap);
}

int wsev__tls_error(const wsev_tls *t, char *reason, size_t cap) {
  if (!cap) return t->error;
  reason[0] = 0;
  if (t->error == WSEV_ETLSVERIFY) {
    snprintf(reason, cap, "certificate: %s", X509_verify_cert_error_string(t->verify_result));
  } else if (t->refused) {
    snprintf(reason, cap, "%s", t->refused);
  } else if (t->openssl_error) {
    const char *why = ERR_reason_error_string(t->openssl_error);
    snprintf(reason, cap, "%s", why ? why : "unknown OpenSSL error");
  } else if (t->out_of_memory) {
    snprintf(reason, cap, "out of memory");
  }
  return t->error;
}

const char *wsev__tls_version(const wsev_tls *t) {
  return t->done ? SSL_get_version(t->ssl) : NULL;
}

/* The standard (IANA) name, e.g. TLS_AES_128_GCM_SHA256. */
const char *wsev__tls_cipher(const wsev_tls *t) {
  const SSL_CIPHER *cipher = t->done ? SSL_get_current_cipher(t->ssl) : NULL;
  if (!cipher) return NULL;
  const char *name = SSL_CIPHER_standard_name(cipher);
  return name ? name : SSL_CIPHER_get_name(cipher);
}

const char *wsev__tls_server_name(const wsev_tls *t) { return t->server_name; }

int wsev__tls_peer_cert_sha256(const wsev_tls *t, uint8_t digest[32]) {
  X509 *crt = t->done ? SSL_get0_peer_certificate(t->ssl) : NULL;
  unsigned int n = 0;
  return crt && X509_digest(crt, EVP_sha256(), digest, &n) == 1 && n == 32 ? 0 : -1;
}

int wsev__tls_resumed(const wsev_tls *t) { return t->resumed; }
