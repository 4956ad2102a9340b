/*
 * wsev-pubsub: a publish/subscribe relay over WebSocket, the port of gowsev's
 * subscribe_publish example.
 *
 * Every WebSocket message (text or binary) is one command:
 *
 *   subscribe:CH      reply "OK"; from now on the connection receives what is
 *                     published on channel CH
 *   unsubscribe:CH    reply "OK"; stop receiving CH
 *   unsubscribe-all   reply "OK"; stop receiving every channel
 *   publish:CH:BODY   reply "OK" to the publisher, then send BODY to every connection
 *                     subscribed to CH (the publisher too, if it is subscribed)
 *   anything else     reply "Invalid message"
 *
 * CH is a non-empty channel name without ':'. BODY is the rest of the message, colons
 * and all, and may be empty; it is forwarded as text if the publish command was text
 * and as binary if it was binary. Replies are text. A connection that closes loses
 * all its subscriptions.
 *
 * wsev delivers accept, message and close events through one strictly serialized
 * stream of callbacks, and wsev_write may be called on any connection from any
 * callback. So the whole state of the relay is two plain hash maps, with no locks:
 *
 *   channels: channel name -> channel { subscribers: connection id -> conn }
 *   conns:    connection id -> conn    { channels:    channel -> channel }
 *
 * subscribe, unsubscribe and lookups are O(1); publish is O(subscribers); closing a
 * connection is O(its channels).
 *
 * Usage: wsev-pubsub [--port N] [--tls-port N] [--cert F] [--key F] [--no-tls]
 *                    [--quiet] [--max-buffered BYTES]
 * Serves ws on --port (9000) and, like the original, wss on --tls-port (9001) with
 * localhost.crt / localhost.key from the current directory (or --cert / --key); if
 * those files are absent it says how to make them and serves ws only.
 */
#include <wsev.h>

#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>
#include <uv.h>

/* ---------------------------------------------------------------------------------
 * Hash maps
 *
 * Both maps use open addressing with linear probing in a power-of-two table that is
 * kept at most 3/4 full. Deletion shifts the following entries of the probe run back
 * into the hole instead of leaving tombstones, so lookups stay short no matter how
 * many subscribe/unsubscribe cycles have run.
 */

#define MAP_MIN_CAP 8

/* splitmix64's finalizer: spreads sequential ids and pointers over the table. */
static uint64_t hash_u64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

/* 64-bit FNV-1a. (Not flooding-resistant; a server exposed to hostile clients that
 * choose channel names would want a keyed hash such as SipHash.) */
static uint64_t hash_bytes(const char *p, size_t n) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (size_t i = 0; i < n; i++) {
    h ^= (unsigned char)p[i];
    h *= 0x100000001b3ULL;
  }
  return h;
}

static bool map_needs_growth(size_t len, size_t cap) { return (len + 1) * 4 > cap * 3; }

/* During deletion: may the entry at slot j, whose home slot is `home`, move back into
 * the hole at slot `hole`? Yes unless its home lies cyclically after the hole. */
static bool can_fill_hole(size_t hole, size_t j, size_t home, size_t mask) {
  return ((j - home) & mask) >= ((j - hole) & mask);
}

/* --- u64map: non-zero uint64_t keys -> non-NULL pointers. Key 0 marks a free slot. */

typedef struct {
  uint64_t *keys;
  void **vals;
  size_t cap; /* 0 or a power of two */
  size_t len;
} u64map;

/* The slot holding `key`, or the free slot where it would go. Requires cap > 0. */
static size_t u64map_slot(const u64map *m, uint64_t key) {
  size_t mask = m->cap - 1;
  size_t i = hash_u64(key) & mask;
  while (m->keys[i] != 0 && m->keys[i] != key)
    i = (i + 1) & mask;
  return i;
}

static void *u64map_get(const u64map *m, uint64_t key) {
  if (m->len == 0) return NULL;
  size_t i = u64map_slot(m, key);
  return m->keys[i] == key ? m->vals[i] : NULL;
}

static bool u64map_grow(u64map *m) {
  size_t cap = m->cap ? m->cap * 2 : MAP_MIN_CAP;
  uint64_t *keys = calloc(cap, sizeof *keys);
  void **vals = malloc(cap * sizeof *vals);
  if (!keys || !vals) {
    free(keys);
    free(vals);
    return false;
  }
  u64map old = *m;
  m->keys = keys;
  m->vals = vals;
  m->cap = cap;
  for (size_t i = 0; i < old.cap; i++) {
    if (old.keys[i] != 0) {
      size_t j = u64map_slot(m, old.keys[i]);
      m->keys[j] = old.keys[i];
      m->vals[j] = old.vals[i];
    }
  }
  free(old.keys);
  free(old.vals);
  return true;
}

/* Insert or replace. Returns false, leaving the map unchanged, when out of memory. */
static bool u64map_put(u64map *m, uint64_t key, void *val) {
  if (m->len > 0) {
    size_t i = u64map_slot(m, key);
    if (m->keys[i] == key) {
      m->vals[i] = val;
      return true;
    }
  }
  if (map_needs_growth(m->len, m->cap) && !u64map_grow(m)) return false;
  size_t i = u64map_slot(m, key);
  m->keys[i] = key;
  m->vals[i] = val;
  m->len++;
  return true;
}

/* Remove `key`; returns its value, or NULL if it was not there. */
static void *u64map_del(u64map *m, uint64_t key) {
  if (m->len == 0) return NULL;
  size_t mask = m->cap - 1;
  size_t hole = u64map_slot(m, key);
  if (m->keys[hole] != key) return NULL;
  void *val = m->vals[hole];
  for (size_t j = (hole + 1) & mask; m->keys[j] != 0; j = (j + 1) & mask) {
    if (can_fill_hole(hole, j, hash_u64(m->keys[j]) & mask, mask)) {
      m->keys[hole] = m->keys[j];
      m->vals[hole] = m->vals[j];
      hole = j;
    }
  }
  m->keys[hole] = 0;
  m->len--;
  return val;
}

static void u64map_free(u64map *m) {
  free(m->keys);
  free(m->vals);
  *m = (u64map){0};
}

/* Visit every value: for (size_t i = 0; i < m.cap; i++) if (m.keys[i]) use m.vals[i]. */

/* --- The relay's records. */

typedef struct channel {
  uint64_t hash;      /* hash_bytes(name) */
  u64map subscribers; /* connection id -> conn */
  size_t name_len;
  char name[]; /* name_len bytes, not NUL-terminated */
} channel;

typedef struct conn {
  uint64_t id;
  u64map channels; /* (uintptr_t)channel -> channel */
} conn;

/* --- chanmap: channel name -> channel. A NULL slot is free. */

typedef struct {
  channel **slots;
  size_t cap; /* 0 or a power of two */
  size_t len;
} chanmap;

static bool channel_has_name(const channel *ch, uint64_t hash, const char *name, size_t len) {
  return ch->hash == hash && ch->name_len == len && memcmp(ch->name, name, len) == 0;
}

/* The slot holding the channel `name`, or the free slot where it would go. */
static size_t chanmap_slot(const chanmap *m, uint64_t hash, const char *name, size_t len) {
  size_t mask = m->cap - 1;
  size_t i = hash & mask;
  while (m->slots[i] && !channel_has_name(m->slots[i], hash, name, len))
    i = (i + 1) & mask;
  return i;
}

static channel *chanmap_get(const chanmap *m, const char *name, size_t len) {
  if (m->len == 0) return NULL;
  return m->slots[chanmap_slot(m, hash_bytes(name, len), name, len)];
}

static bool chanmap_grow(chanmap *m) {
  size_t cap = m->cap ? m->cap * 2 : MAP_MIN_CAP;
  channel **slots = calloc(cap, sizeof *slots);
  if (!slots) return false;
  for (size_t i = 0; i < m->cap; i++) {
    channel *ch = m->slots[i];
    if (ch) {
      size_t j = ch->hash & (cap - 1);
      while (slots[j])
        j = (j + 1) & (cap - 1);
      slots[j] = ch;
    }
  }
  free(m->slots);
  m->slots = slots;
  m->cap = cap;
  return true;
}

/* Add a channel whose name is not in the map yet. Returns false when out of memory. */
static bool chanmap_add(chanmap *m, channel *ch) {
  if (map_needs_growth(m->len, m->cap) && !chanmap_grow(m)) return false;
  m->slots[chanmap_slot(m, ch->hash, ch->name, ch->name_len)] = ch;
  m->len++;
  return true;
}

/* Remove a channel that is in the map. */
static void chanmap_del(chanmap *m, const channel *ch) {
  size_t mask = m->cap - 1;
  size_t hole = chanmap_slot(m, ch->hash, ch->name, ch->name_len);
  for (size_t j = (hole + 1) & mask; m->slots[j]; j = (j + 1) & mask) {
    if (can_fill_hole(hole, j, m->slots[j]->hash & mask, mask)) {
      m->slots[hole] = m->slots[j];
      hole = j;
    }
  }
  m->slots[hole] = NULL;
  m->len--;
}

/* ---------------------------------------------------------------------------------
 * The relay
 */

typedef struct {
  u64map conns;     /* connection id -> conn */
  chanmap channels; /* channel name -> channel; only channels with subscribers */
  bool quiet;
} pubsub;

static channel *channel_get_or_create(pubsub *ps, const char *name, size_t len) {
  channel *ch = chanmap_get(&ps->channels, name, len);
  if (ch) return ch;
  ch = calloc(1, sizeof *ch + len);
  if (!ch) return NULL;
  ch->hash = hash_bytes(name, len);
  ch->name_len = len;
  memcpy(ch->name, name, len);
  if (!chanmap_add(&ps->channels, ch)) {
    free(ch);
    return NULL;
  }
  return ch;
}

/* Channels exist only while somebody listens: drop one whose last subscriber left. */
static void channel_release_if_empty(pubsub *ps, channel *ch) {
  if (ch->subscribers.len > 0) return;
  chanmap_del(&ps->channels, ch);
  u64map_free(&ch->subscribers);
  free(ch);
}

/* Returns false when out of memory (nothing changed then). */
static bool subscribe(pubsub *ps, conn *c, const char *name, size_t len) {
  channel *ch = channel_get_or_create(ps, name, len);
  if (!ch) return false;
  if (u64map_get(&c->channels, (uintptr_t)ch)) return true; /* already subscribed */
  if (!u64map_put(&ch->subscribers, c->id, c)) {
    channel_release_if_empty(ps, ch);
    return false;
  }
  if (!u64map_put(&c->channels, (uintptr_t)ch, ch)) {
    u64map_del(&ch->subscribers, c->id);
    channel_release_if_empty(ps, ch);
    return false;
  }
  return true;
}

static void unsubscribe(pubsub *ps, conn *c, const char *name, size_t len) {
  channel *ch = chanmap_get(&ps->channels, name, len);
  if (!ch || !u64map_del(&c->channels, (uintptr_t)ch)) return; /* not subscribed: nothing to do */
  u64map_del(&ch->subscribers, c->id);
  channel_release_if_empty(ps, ch);
}

static void unsubscribe_all(pubsub *ps, conn *c) {
  for (size_t i = 0; i < c->channels.cap; i++) {
    if (c->channels.keys[i]) {
      channel *ch = c->channels.vals[i];
      u64map_del(&ch->subscribers, c->id);
      channel_release_if_empty(ps, ch);
    }
  }
  u64map_free(&c->channels);
}

/* Send `body` to every subscriber of `name` with one wsev_broadcast: the frame is
 * built once (and, for large bodies, shared by all the queues). The subscriber map's
 * key array goes in as it is: its free slots hold 0, never a connection id, and
 * wsev_broadcast skips ids it does not know. A subscriber whose connection is
 * already closing is skipped too; its conn_closed will follow. */
static void publish(wsev_ctx *ctx, pubsub *ps, const char *name, size_t name_len, const char *body,
                    size_t body_len, wsev_msg_type type) {
  channel *ch = chanmap_get(&ps->channels, name, name_len);
  if (!ch) return;
  wsev_broadcast(ctx, ch->subscribers.keys, ch->subscribers.cap, body, body_len, type);
}

static void pubsub_free(pubsub *ps) {
  for (size_t i = 0; i < ps->conns.cap; i++) {
    if (ps->conns.keys[i]) {
      conn *c = ps->conns.vals[i];
      u64map_free(&c->channels);
      free(c);
    }
  }
  u64map_free(&ps->conns);
  for (size_t i = 0; i < ps->channels.cap; i++) {
    channel *ch = ps->channels.slots[i];
    if (ch) {
      u64map_free(&ch->subscribers);
      free(ch);
    }
  }
  free(ps->channels.slots);
  ps->channels = (chanmap){0};
}

/* ---------------------------------------------------------------------------------
 * Commands
 */

static void reply(wsev_ctx *ctx, uint64_t id, const char *text) {
  wsev_write_text(ctx, id, text, strlen(text));
}

/* If msg[0..len) starts with `prefix`, point *rest and *rest_len at what follows it. */
static bool strip_prefix(const char *msg, size_t len, const char *prefix, const char **rest,
                         size_t *rest_len) {
  size_t n = strlen(prefix);
  if (len < n || memcmp(msg, prefix, n) != 0) return false;
  *rest = msg + n;
  *rest_len = len - n;
  return true;
}

static bool valid_channel_name(const char *name, size_t len) {
  return len > 0 && memchr(name, ':', len) == NULL;
}

static void handle_command(wsev_ctx *ctx, pubsub *ps, conn *c, const char *msg, size_t len,
                           wsev_msg_type type) {
  static const char unsubscribe_all_cmd[] = "unsubscribe-all";
  const char *arg, *colon;
  size_t arg_len;

  if (strip_prefix(msg, len, "subscribe:", &arg, &arg_len) && valid_channel_name(arg, arg_len)) {
    reply(ctx, c->id, subscribe(ps, c, arg, arg_len) ? "OK" : "Out of memory");
  } else if (strip_prefix(msg, len, "unsubscribe:", &arg, &arg_len) &&
             valid_channel_name(arg, arg_len)) {
    unsubscribe(ps, c, arg, arg_len);
    reply(ctx, c->id, "OK");
  } else if (len == sizeof unsubscribe_all_cmd - 1 && memcmp(msg, unsubscribe_all_cmd, len) == 0) {
    unsubscribe_all(ps, c);
    reply(ctx, c->id, "OK");
  } else if (strip_prefix(msg, len, "publish:", &arg, &arg_len) &&
             (colon = memchr(arg, ':', arg_len)) != NULL && colon > arg) {
    /* publish:CH:BODY -- CH ends at the first colon, BODY is everything after it. */
    size_t name_len = (size_t)(colon - arg);
    reply(ctx, c->id, "OK");
    publish(ctx, ps, arg, name_len, colon + 1, arg_len - name_len - 1, type);
  } else {
    reply(ctx, c->id, "Invalid message");
  }
}

/* ---------------------------------------------------------------------------------
 * wsev callbacks
 */

static void on_conn_accepted(wsev_ctx *ctx, uint64_t id) {
  pubsub *ps = wsev_ctx_data(ctx);
  conn *c = calloc(1, sizeof *c);
  if (!c || !u64map_put(&ps->conns, id, c)) {
    free(c);
    fprintf(stderr, "wsev-pubsub: out of memory, refusing connection %" PRIu64 "\n", id);
    wsev_close(ctx, id);
    return;
  }
  c->id = id;
  if (!ps->quiet) {
    printf("Accepted connection %" PRIu64 "\n", id);
    fflush(stdout);
  }
}

static void on_conn_closed(wsev_ctx *ctx, uint64_t id) {
  pubsub *ps = wsev_ctx_data(ctx);
  conn *c = u64map_del(&ps->conns, id);
  if (c) {
    unsubscribe_all(ps, c);
    free(c);
  }
  if (!ps->quiet) {
    printf("Closed connection %" PRIu64 "\n", id);
    fflush(stdout);
  }
}

static void on_message_received(wsev_ctx *ctx, uint64_t id, const void *data, size_t len,
                                wsev_msg_type type) {
  pubsub *ps = wsev_ctx_data(ctx);
  const char *msg = len > 0 ? data : ""; /* data may be NULL when len is 0 */

  if (!ps->quiet) {
    if (type == WSEV_TEXT)
      printf("Message from %" PRIu64 ": %.*s\n", id, (int)(len > 100 ? 100 : len), msg);
    else
      printf("Message from %" PRIu64 ": [binary, %zu bytes]\n", id, len);
    fflush(stdout);
  }

  conn *c = u64map_get(&ps->conns, id);
  if (c) /* always: a connection's messages come between accepted and closed */
    handle_command(ctx, ps, c, msg, len, type);
}

/* ---------------------------------------------------------------------------------
 * main
 */

/* The first signal shuts down gracefully: every client gets a close frame (1001)
 * and conn_closed runs for each, bounded to 2 s; a second signal stops at once. */
static void on_signal(uv_signal_t *handle, int signum) {
  static int signals;
  (void)signum;
  if (signals++ == 0)
    wsev_shutdown(handle->data, 2000);
  else
    wsev_stop(handle->data);
}

static void usage(FILE *out) {
  fprintf(out, "usage: wsev-pubsub [--port N] [--tls-port N] [--cert FILE] [--key FILE]\n"
               "                   [--no-tls] [--quiet] [--max-buffered BYTES]\n"
               "  --port N   port to listen on (default 9000; 0 picks a free port)\n"
               "  --tls-port N  port to serve wss on (default 9001), with --cert and --key\n"
               "             (default localhost.crt and localhost.key); --no-tls: ws only\n"
               "  --quiet    do not log connections and messages\n"
               "  --max-buffered BYTES  close (1008) a subscriber with more than this\n"
               "             waiting to be sent (default: wsev's, 16 MiB)\n");
}

int main(int argc, char **argv) {
  const char *port = "9000", *tls_port = "9001";
  const char *cert = "localhost.crt", *key = "localhost.key";
  bool quiet = false, tls_asked = false;
  size_t max_buffered = 0;

  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
      port = argv[++i];
    } else if (strncmp(argv[i], "--port=", 7) == 0) {
      port = argv[i] + 7;
    } else if (strcmp(argv[i], "--tls-port") == 0 && i + 1 < argc) {
      tls_port = argv[++i];
      tls_asked = true;
    } else if (strcmp(argv[i], "--cert") == 0 && i + 1 < argc) {
      cert = argv[++i];
      tls_asked = true;
    } else if (strcmp(argv[i], "--key") == 0 && i + 1 < argc) {
      key = argv[++i];
      tls_asked = true;
    } else if (strcmp(argv[i], "--no-tls") == 0) {
      tls_port = NULL;
    } else if (strcmp(argv[i], "--max-buffered") == 0 && i + 1 < argc) {
      max_buffered = strtoull(argv[++i], NULL, 10);
    } else if (strcmp(argv[i], "--quiet") == 0) {
      quiet = true;
    } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      usage(stdout);
      return 0;
    } else {
      usage(stderr);
      return 2;
    }
  }

  pubsub ps = {.quiet = quiet};
  wsev_handler handler = {
      .conn_accepted = on_conn_accepted,
      .conn_closed = on_conn_closed,
      .message_received = on_message_received,
  };
  wsev_ctx *ctx;
  int err = wsev_ctx_new(&ctx, NULL, &handler, &ps);
  if (err < 0) {
    fprintf(stderr, "wsev-pubsub: cannot create context: %s\n", wsev_strerror(err));
    return 1;
  }

  wsev_set_send_limits(ctx, max_buffered, 0);
  int bound_port = wsev_listen_and_serve(ctx, port);
  if (bound_port < 0) {
    fprintf(stderr, "wsev-pubsub: cannot listen on port %s: %s\n", port, wsev_strerror(bound_port));
    wsev_ctx_free(ctx);
    return 1;
  }

  int bound_tls_port = 0;
  if (tls_port && !tls_asked && (access(cert, R_OK) != 0 || access(key, R_OK) != 0)) {
    fprintf(stderr,
            "wsev-pubsub: no %s / %s here, serving ws only. For wss on port %s make a\n"
            "  self-signed pair: scripts/make-cert.sh --self-signed . (or: openssl req -x509\n"
            "  -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 -subj /CN=localhost\n"
            "  -keyout localhost.key -out localhost.crt)\n",
            cert, key, tls_port);
  } else if (tls_port) {
    bound_tls_port = wsev_listen_and_serve_tls(ctx, tls_port, cert, key);
    if (bound_tls_port < 0) {
      fprintf(stderr, "wsev-pubsub: cannot listen for TLS on port %s: %s\n", tls_port,
              wsev_strerror(bound_tls_port));
      wsev_ctx_free(ctx);
      return 1;
    }
  }

  /* SIGINT and SIGTERM end the loop so that everything is freed on the way out. The
   * signal handles do not keep the loop alive by themselves. */
  uv_loop_t *loop = wsev_ctx_loop(ctx);
  uv_signal_t sigint, sigterm;
  uv_signal_init(loop, &sigint);
  uv_signal_init(loop, &sigterm);
  sigint.data = sigterm.data = ctx;
  uv_signal_start(&sigint, on_signal, SIGINT);
  uv_signal_start(&sigterm, on_signal, SIGTERM);
  uv_unref((uv_handle_t *)&sigint);
  uv_unref((uv_handle_t *)&sigterm);

  printf("wsev-pubsub listening on port %d\n", bound_port);
  if (bound_tls_port) printf("wsev-pubsub listening for TLS on port %d\n", bound_tls_port);
  fflush(stdout);

  wsev_event_loop(ctx);

  /* Our signal handles live on wsev's loop: close them, and let one more loop pass
   * finish the closing, before the context frees the loop. */
  uv_close((uv_handle_t *)&sigint, NULL);
  uv_close((uv_handle_t *)&sigterm, NULL);
  uv_run(loop, UV_RUN_NOWAIT);

  wsev_ctx_free(ctx);
  pubsub_free(&ps);
  return 0;
}
