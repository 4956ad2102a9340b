/*
 * lws-bench-server: the libwebsockets peer of the wsev benchmark.
 *
 *   lws-bench-server PORT echo     echo every message with its type
 *   lws-bench-server PORT pubsub   the wsev-pubsub protocol: subscribe:CH -> "OK";
 *                                  publish:CH:BODY -> "OK" + BODY to every subscriber
 *
 * Written the way libwebsockets wants servers written: messages are queued per
 * connection and sent from LWS_CALLBACK_SERVER_WRITEABLE (as many as the socket takes
 * before lws_send_pipe_choked(), not just one, to give lws its best figure). A published
 * message is stored once and shared (refcounted) by all subscribers' queues.
 * Listens on 127.0.0.1 until SIGINT/SIGTERM.
 */
#include <libwebsockets.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct msg {
  int refs;
  size_t len;
  int binary;
  unsigned char buf[]; /* LWS_PRE bytes of headroom, then the payload */
} msg;

struct channel;

typedef struct pss {
  struct lws *wsi;
  msg **q; /* ring of queued messages */
  size_t q_cap, q_head, q_len;
  unsigned char *rx; /* a message arriving in fragments */
  size_t rx_len, rx_cap;
  struct channel **chans;
  size_t n_chans, cap_chans;
} pss;

typedef struct channel {
  char *name;
  struct channel *next;
  pss **subs;
  size_t n_subs, cap_subs;
} channel;

#define NBUCKETS 4096
static channel *buckets[NBUCKETS];
static int pubsub_mode;
static volatile int interrupted;

static msg *msg_new(const void *p, size_t len, int binary) {
  msg *m = malloc(sizeof *m + LWS_PRE + len);
  if (!m) return NULL;
  m->refs = 0;
  m->len = len;
  m->binary = binary;
  if (len) memcpy(m->buf + LWS_PRE, p, len);
  return m;
}

static void msg_unref(msg *m) {
  if (--m->refs <= 0) free(m);
}

static int enqueue(pss *s, msg *m) {
  if (s->q_len == s->q_cap) {
    size_t nc = s->q_cap ? s->q_cap * 2 : 16;
    msg **nq = malloc(nc * sizeof *nq);
    if (!nq) return -1;
    for (size_t i = 0; i < s->q_len; i++)
      nq[i] = s->q[(s->q_head + i) % s->q_cap];
    free(s->q);
    s->q = nq;
    s->q_cap = nc;
    s->q_head = 0;
  }
  s->q[(s->q_head + s->q_len) % s->q_cap] = m;
  s->q_len++;
  m->refs++;
  lws_callback_on_writable(s->wsi);
  return 0;
}

static uint64_t hash(const char *p, size_t n) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (size_t i = 0; i < n; i++) {
    h ^= (unsigned char)p[i];
    h *= 0x100000001b3ULL;
  }
  return h;
}

static channel *chan_get(const char *name, size_t n, int create) {
  size_t b = hash(name, n) % NBUCKETS;
  for (channel *c = buckets[b]; c; c = c->next)
    if (strlen(c->name) == n && memcmp(c->name, name, n) == 0) return c;
  if (!create) return NULL;
  channel *c = calloc(1, sizeof *c);
  c->name = malloc(n + 1);
  memcpy(c->name, name, n);
  c->name[n] = 0;
  c->next = buckets[b];
  buckets[b] = c;
  return c;
}

static void subscribe(pss *s, const char *name, size_t n) {
  channel *c = chan_get(name, n, 1);
  for (size_t i = 0; i < s->n_chans; i++)
    if (s->chans[i] == c) return;
  if (c->n_subs == c->cap_subs) {
    c->cap_subs = c->cap_subs ? c->cap_subs * 2 : 8;
    c->subs = realloc(c->subs, c->cap_subs * sizeof *c->subs);
  }
  c->subs[c->n_subs++] = s;
  if (s->n_chans == s->cap_chans) {
    s->cap_chans = s->cap_chans ? s->cap_chans * 2 : 4;
    s->chans = realloc(s->chans, s->cap_chans * sizeof *s->chans);
  }
  s->chans[s->n_chans++] = c;
}

static void unsubscribe_all(pss *s) {
  for (size_t i = 0; i < s->n_chans; i++) {
    channel *c = s->chans[i];
    for (size_t j = 0; j < c->n_subs; j++)
      if (c->subs[j] == s) {
        c->subs[j] = c->subs[--c->n_subs];
        break;
      }
  }
  free(s->chans);
  s->chans = NULL;
  s->n_chans = s->cap_chans = 0;
}

static void reply(pss *s, const char *text) {
  msg *m = msg_new(text, strlen(text), 0);
  if (m) enqueue(s, m);
}

static void handle(pss *s, const unsigned char *p, size_t len, int binary) {
  if (!pubsub_mode) {
    msg *m = msg_new(p, len, binary);
    if (m) enqueue(s, m);
    return;
  }
  const char *t = (const char *)p;
  if (len > 10 && memcmp(t, "subscribe:", 10) == 0 && !memchr(t + 10, ':', len - 10)) {
    subscribe(s, t + 10, len - 10);
    reply(s, "OK");
  } else if (len > 8 && memcmp(t, "publish:", 8) == 0) {
    const char *colon = memchr(t + 8, ':', len - 8);
    if (!colon || colon == t + 8) {
      reply(s, "Invalid message");
      return;
    }
    reply(s, "OK");
    channel *c = chan_get(t + 8, (size_t)(colon - (t + 8)), 0);
    if (!c || !c->n_subs) return;
    size_t blen = len - (size_t)(colon + 1 - t);
    msg *m = msg_new(colon + 1, blen, binary);
    if (!m) return;
    m->refs = 1; /* held while enqueuing */
    for (size_t i = 0; i < c->n_subs; i++)
      enqueue(c->subs[i], m);
    msg_unref(m);
  } else {
    reply(s, "Invalid message");
  }
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len) {
  pss *s = user;
  switch (reason) {
  case LWS_CALLBACK_ESTABLISHED:
    memset(s, 0, sizeof *s);
    s->wsi = wsi;
    break;
  case LWS_CALLBACK_RECEIVE: {
    int first = lws_is_first_fragment(wsi), final = lws_is_final_fragment(wsi);
    size_t remaining = lws_remaining_packet_payload(wsi);
    int binary = lws_frame_is_binary(wsi);
    if (first && final && remaining == 0 && s->rx_len == 0) {
      handle(s, in, len, binary);
      break;
    }
    if (s->rx_len + len > s->rx_cap) {
      size_t nc = (s->rx_len + len) * 2;
      unsigned char *nb = realloc(s->rx, nc);
      if (!nb) return -1;
      s->rx = nb;
      s->rx_cap = nc;
    }
    memcpy(s->rx + s->rx_len, in, len);
    s->rx_len += len;
    if (final && remaining == 0) {
      handle(s, s->rx, s->rx_len, binary);
      s->rx_len = 0;
    }
    break;
  }
  case LWS_CALLBACK_SERVER_WRITEABLE:
    /* Send what is queued until the kernel pushes back (lws keeps a partial write
     * itself and reports the pipe choked), then ask for the next WRITEABLE. */
    while (s->q_len && !lws_send_pipe_choked(wsi)) {
      msg *m = s->q[s->q_head];
      s->q_head = (s->q_head + 1) % s->q_cap;
      s->q_len--;
      int n =
          lws_write(wsi, m->buf + LWS_PRE, m->len, m->binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT);
      msg_unref(m);
      if (n < 0) return -1;
    }
    if (s->q_len) lws_callback_on_writable(wsi);
    break;
  case LWS_CALLBACK_CLOSED:
    unsubscribe_all(s);
    while (s->q_len) {
      msg_unref(s->q[s->q_head]);
      s->q_head = (s->q_head + 1) % s->q_cap;
      s->q_len--;
    }
    free(s->q);
    free(s->rx);
    s->q = NULL;
    s->rx = NULL;
    break;
  default: break;
  }
  return 0;
}

static struct lws_protocols protocols[] = {
    {"bench", callback, sizeof(pss), 65536 + 16, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static void on_sig(int sig) {
  (void)sig;
  interrupted = 1;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s PORT echo|pubsub\n", argv[0]);
    return 2;
  }
  pubsub_mode = strcmp(argv[2], "pubsub") == 0;
  signal(SIGINT, on_sig);
  signal(SIGTERM, on_sig);
  lws_set_log_level(LLL_ERR, NULL);

  struct lws_context_creation_info info;
  memset(&info, 0, sizeof info);
  info.port = atoi(argv[1]);
  info.iface = "127.0.0.1";
  info.protocols = protocols;
  info.options = LWS_SERVER_OPTION_DISABLE_IPV6;
  info.fd_limit_per_thread = 0;
  struct lws_context *ctx = lws_create_context(&info);
  if (!ctx) {
    fprintf(stderr, "lws-bench-server: lws_create_context failed\n");
    return 1;
  }
  printf("lws-bench-server (%s) listening on port %s\n", argv[2], argv[1]);
  fflush(stdout);
  while (!interrupted && lws_service(ctx, 0) >= 0) {
  }
  lws_context_destroy(ctx);
  return 0;
}
