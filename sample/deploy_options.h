/* The samples' deployment options (wsev_listen_options), parsed the same way by each:
 *   --unix PATH         also listen on a Unix socket (plain ws), e.g. behind nginx
 *   --unix-mode OCTAL   the socket file's permissions (default: as the umask leaves them)
 *   --proxy-protocol    every listener expects a PROXY protocol header (HAProxy's
 *                       send-proxy / send-proxy-v2) before TLS or HTTP
 *   --trust-forwarded   every listener believes the Forwarded header, and
 *   --trust-x-forwarded-for  X-Forwarded-For (only the one the proxy in front sets:
 *                       a client could send the other itself)
 *   --sni-cert FILE --sni-key FILE
 *                       another certificate for the TLS listener, chosen by SNI (the
 *                       sample's --cert/--key pair stays the default); repeatable
 * and, on SIGHUP, the TLS listener's certificate files are read again and replace the
 * ones in use (renewed certificates), without a restart. */
#ifndef WSEV_SAMPLE_DEPLOY_OPTIONS_H
#define WSEV_SAMPLE_DEPLOY_OPTIONS_H

#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <wsev.h>

#define DEPLOY_USAGE                                                                               \
  "  [--unix PATH [--unix-mode OCTAL]] [--proxy-protocol] [--trust-forwarded]\n"                   \
  "  [--trust-x-forwarded-for]\n"                                                                  \
  "  [--sni-cert FILE --sni-key FILE]...\n"

#define DEPLOY_MAX_CERTS 16

typedef struct {
  const char *unix_path;
  unsigned unix_mode;
  unsigned trust;
  /* certs[0] is the sample's --cert/--key (filled in by the sample), then the SNI ones. */
  wsev_tls_cert certs[DEPLOY_MAX_CERTS];
  size_t cert_count;
  const char *sni_key_missing; /* a --sni-cert still waiting for its --sni-key */
} deploy_options;

static void deploy_init(deploy_options *o) {
  memset(o, 0, sizeof *o);
  o->cert_count = 1;
}

/* argv[*i] as a deployment option: 1 (used, with its value: *i moves past it), 0 (not
 * one of ours), -1 (malformed). */
static int deploy_option(int argc, char **argv, int *i, deploy_options *o) {
  const char *a = argv[*i], *value = *i + 1 < argc ? argv[*i + 1] : NULL;
  if (!strcmp(a, "--proxy-protocol")) {
    o->trust |= WSEV_TRUST_PROXY_PROTOCOL;
    return 1;
  }
  if (!strcmp(a, "--trust-forwarded")) {
    o->trust |= WSEV_TRUST_FORWARDED;
    return 1;
  }
  if (!strcmp(a, "--trust-x-forwarded-for")) {
    o->trust |= WSEV_TRUST_X_FORWARDED_FOR;
    return 1;
  }
  if (strcmp(a, "--unix") && strcmp(a, "--unix-mode") && strcmp(a, "--sni-cert") &&
      strcmp(a, "--sni-key"))
    return 0;
  if (!value) return -1;
  ++*i;
  if (!strcmp(a, "--unix")) {
    o->unix_path = value;
  } else if (!strcmp(a, "--unix-mode")) {
    char *end;
    o->unix_mode = (unsigned)strtoul(value, &end, 8);
    if (*end || o->unix_mode == 0 || o->unix_mode > 07777) return -1;
  } else if (!strcmp(a, "--sni-cert")) {
    if (o->sni_key_missing || o->cert_count == DEPLOY_MAX_CERTS) return -1;
    o->certs[o->cert_count].cert_file = value;
    o->sni_key_missing = value;
  } else { /* --sni-key, after its --sni-cert */
    if (!o->sni_key_missing) return -1;
    o->certs[o->cert_count++].key_file = value;
    o->sni_key_missing = NULL;
  }
  return 1;
}

/* An address for a log line: "1.2.3.4:5678", "[::1]:5678" or "unix:PATH". */
static const char *deploy_address(const struct sockaddr_storage *a, char *out, size_t cap) {
  char ip[INET6_ADDRSTRLEN] = "?";
  if (a->ss_family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)a;
    inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip);
    snprintf(out, cap, "%s:%u", ip, ntohs(in->sin_port));
  } else if (a->ss_family == AF_INET6) {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)a;
    if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) { /* an IPv4 client of a dual-stack socket */
      inet_ntop(AF_INET, &in6->sin6_addr.s6_addr[12], ip, sizeof ip);
      snprintf(out, cap, "%s:%u", ip, ntohs(in6->sin6_port));
    } else {
      inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof ip);
      snprintf(out, cap, "[%s]:%u", ip, ntohs(in6->sin6_port));
    }
  } else if (a->ss_family == AF_UNIX) {
    snprintf(out, cap, "unix:%s", ((const struct sockaddr_un *)a)->sun_path);
  } else {
    snprintf(out, cap, "unknown");
  }
  return out;
}

/* The --unix listener, if asked for: 0, or 1 after saying why it failed. */
static int deploy_listen_unix(wsev_ctx *ctx, const deploy_options *o, const char *name) {
  if (!o->unix_path) return 0;
  wsev_listen_options local = {.unix_path = o->unix_path, .unix_mode = o->unix_mode,
                               .trust = o->trust};
  int rc = wsev_listen(ctx, &local, NULL);
  if (rc >= 0) return 0;
  fprintf(stderr, "%s: cannot listen on %s: %s\n", name, o->unix_path, wsev_strerror(rc));
  return 1;
}

/* SIGHUP: read the TLS listener's certificate files again and use them from now on. */
typedef struct {
  wsev_ctx *ctx;
  int listener; /* the TLS listener's id, or 0 */
  const deploy_options *options;
  const char *name; /* the sample's, for messages */
} deploy_reload;

static void deploy_on_sighup(uv_signal_t *sig, int signum) {
  const deploy_reload *r = sig->data;
  (void)signum;
  if (!r->listener) return;
  int rc = wsev_set_listener_certs(r->ctx, r->listener, r->options->certs, r->options->cert_count);
  if (rc)
    fprintf(stderr, "%s: reload failed: %s (the certificates in use stay)\n", r->name,
            wsev_strerror(rc));
  else
    fprintf(stderr, "%s: certificates reloaded\n", r->name);
}

/* Reload on SIGHUP from now on (the handle does not keep the loop alive). */
static void deploy_watch_sighup(uv_signal_t *sig, deploy_reload *r) {
  uv_signal_init(wsev_get_loop(r->ctx), sig);
  sig->data = r;
  uv_signal_start(sig, deploy_on_sighup, SIGHUP);
  uv_unref((uv_handle_t *)sig);
}

#endif
