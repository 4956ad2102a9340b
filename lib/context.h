/* The context: settings, the loop, and the services its connections share (the
 * master event queue, deadlines, the flush phase, buffers, randomness). */
#ifndef WSEV_CONTEXT_H
#define WSEV_CONTEXT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <uv.h>

#include "bufpool.h"
#include "conn.h"
#include "deflate.h"
#include "idmap.h"
#include "tls.h"
#include "wakeup.h"
#include "wsev.h"

/* Larger than a 64 KiB message and its header, so such a message usually arrives in
 * one read and is delivered without a copy. */
#define WSEV_READ_BUFFER_SIZE (256 * 1024)
/* Client TLS configurations (trusted CAs parsed once) kept for reuse. */
#define WSEV_CLIENT_TLS_CACHE 8

typedef struct wsev_listener wsev_listener;
typedef struct wsev_post_item wsev_post_item;
typedef struct wsev_io wsev_io;
typedef struct wsev_io_thread wsev_io_thread;

typedef enum {
  WSEV_EV_ACCEPTED,
  WSEV_EV_MESSAGE,
  WSEV_EV_CLOSED,
  WSEV_EV_TIMEOUT,
  WSEV_EV_DRAINED,
} wsev_event_kind;

/* One entry of the master queue. Only events raised while a callback runs (or inside
 * an API call) wait here; the rest are dispatched as soon as they happen. */
typedef struct {
  uint8_t kind;
  uint8_t msg_type;
  uint8_t by_peer;     /* closed: who started the close */
  int32_t error;       /* closed: why a connection of ours failed, or 0 */
  uint16_t close_code; /* closed */
  uint64_t id;
  uint8_t *data; /* owned copy of a message, or of a close reason */
  size_t len;
  void *user_data; /* closed: the connection's, still readable in conn_closed */
} wsev_event;

/* The settings, as the setters left them (0: off, see wsev.h). */
typedef struct {
  uint64_t timeout_ms;
  size_t max_message_size;
  size_t max_header_size;
  uint64_t handshake_timeout_ms;
  uint64_t close_timeout_ms;
  size_t max_buffered;
  size_t low_water;
  uint64_t ping_interval_ms;
  uint64_t ping_timeout_ms;
  size_t max_connections;
  uint64_t defer_timeout_ms;
  wsev_deflate_options deflate; /* normalized: every default filled in; mode 0 is off */
} wsev_settings;

struct wsev_ctx {
  uv_loop_t *loop;
  uv_loop_t own_loop;
  int owns_loop;
  wsev_handler handler;
  void *data;
  wsev_settings set;
  char **origins; /* allowed origins (wsev_allow_origin) */
  size_t n_origins;
  int same_host_origin;

  /* The master event queue (a ring) and its dispatcher (dispatch.c). */
  wsev_event *queue;
  size_t queue_head, queue_len, queue_cap;
  int dispatching;
  const wsev_event *closing; /* the closed event being dispatched */
  /* Not beside `dispatching`: must_wait's two tests would become one 8-byte load,
   * which cannot be forwarded from the 4-byte store to either just before it and
   * stalled the reader of every message in threaded mode. */
  int in_api; /* events raised inside an API call wait for the flush */
  uint64_t last_dispatch;
  uv_timer_t timeout_timer;

  /* Corked output (flush.c): connections written to during this iteration, flushed in
   * the check phase; the idle handle keeps poll from blocking while work waits. */
  wsev_conn *dirty_head;
  uv_check_t flush_check;
  uv_idle_t flush_idle;

  /* Deadlines and keepalive (deadline.c). */
  wsev_conn *dl_head[WSEV_DEADLINE_KINDS], *dl_tail[WSEV_DEADLINE_KINDS];
  uv_timer_t deadline_timer;
  uv_timer_t keepalive_timer;
  int shutting_down; /* 1: wsev_shutdown waits for connections; 2: its time is up */
  uint64_t shutdown_deadline;

  /* Connections and listeners. */
  wsev_idmap ids;
  _Atomic uint64_t next_id; /* taken by other threads too in threaded mode (io.c) */
  uint64_t id_stride;       /* 1; an I/O thread's context of N takes every Nth id */
  wsev_conn *all_head;
  size_t n_active;              /* accepted connections in the handshake, open or closing */
  _Atomic size_t *active_total; /* an I/O thread's context: n_active of all threads */
  wsev_listener *listeners;
  int listener_ids; /* the last id wsev_listen gave */

  /* One read buffer shared by every connection: libuv reads one stream at a time and
   * we consume the bytes before returning from the read callback. */
  uint8_t *read_buf;
  uint8_t *tls_plain; /* the same for decrypted bytes (with the first TLS connection) */
  wsev_rng *rng;      /* TLS and client masking keys (seeded on first use) */
  wsev_tls_config *client_tls[WSEV_CLIENT_TLS_CACHE]; /* by CA file (client.c) */
  int n_client_tls;
  wsev_tls_sessions *client_sessions; /* I/O thread: the cache all threads share (else NULL) */
  wsev_pool pool;
  wsev_deflate_streams *deflate_streams; /* permessage-deflate without context (first use) */

  /* Posts from other threads (post.c). */
  uv_mutex_t post_lock;
  wsev_post_item *post_head, *post_tail;
  wsev_wakeup post_wakeup;
  pthread_t owner;            /* the context's thread: the one that created it */
  wsev_io *io;                /* threaded mode: the I/O threads (io.c); NULL: inline */
  struct wsev_topics *topics; /* topic.c: subscriptions and federation, from the first one */
  /* An I/O thread's context: an id handed out for a request (an upgrade, or a plain
   * request that waited) ended without ever being announced. */
  void (*id_dropped)(wsev_ctx *ctx, uint64_t id);
  /* An I/O thread's context: a connection's reaction to input (a pong, a close, a
   * failure, the peer's EOF) waits while the application has messages before it
   * (app_busy returns 1 and wsev__conn_acked follows once it is done), so that its
   * replies go out first, as they do inline. */
  int (*app_busy)(wsev_conn *c);
  /* An I/O thread's context: a message reassembled in the reader's buffer goes to the
   * application in that buffer (1: taken; 0: emit it as usual). */
  int (*take_message)(wsev_conn *c, const wsev_read_event *ev);
  /* Run after each batch of posted calls (io.c: connections the application caught up
   * with), inside the serialized stream. */
  void (*posts_done)(wsev_ctx *ctx);
  /* An I/O thread's context: a connection's send queue shrank (io.c passes its size on
   * to the application's thread, and conn_drained with it). */
  void (*send_report)(wsev_conn *c);

  unsigned open_handles; /* ours still to be closed; the context dies at 0 */
  int freeing;
};

/* context.c */
/* A handle of the context was opened, or its close callback ran. */
void wsev__handle_opened(wsev_ctx *ctx);
void wsev__handle_closed(wsev_ctx *ctx);
/* Make the loop's next poll not block, so the check phase (dispatch of queued
 * events, flush) comes soon. */
void wsev__wake(wsev_ctx *ctx);
/* The random source, created on first use (NULL without memory). */
wsev_rng *wsev__ctx_rng(wsev_ctx *ctx);
/* The streams for permessage-deflate without context, made on first use (NULL
 * without memory). */
wsev_deflate_streams *wsev__ctx_deflate_streams(wsev_ctx *ctx);
/* The plaintext buffer for TLS connections, allocated on first use. */
uint8_t *wsev__ctx_tls_plain(wsev_ctx *ctx);
/* A context that takes new listeners and connections (not freed or shutting down). */
static inline int wsev__ctx_usable(const wsev_ctx *ctx) {
  return ctx && !ctx->freeing && !ctx->shutting_down;
}
/* 1 once as many accepted connections as allowed are in place. */
static inline int wsev__ctx_full(const wsev_ctx *ctx) {
  size_t n = ctx->active_total ? atomic_load_explicit(ctx->active_total, memory_order_relaxed)
                               : ctx->n_active;
  return ctx->set.max_connections && n >= ctx->set.max_connections;
}

/* The connection the application may use under `id`: announced, not yet closed. */
static inline wsev_conn *wsev__conn_find(const wsev_ctx *ctx, uint64_t id) {
  wsev_conn *c = wsev__idmap_get(&ctx->ids, id);
  return c && c->announced ? c : NULL;
}

/* 1 on the context's thread; everything but post.c's functions is refused elsewhere. */
static inline int wsev__on_ctx_thread(const wsev_ctx *ctx) {
  return pthread_equal(pthread_self(), ctx->owner);
}
/* The entry check of an API function: a NULL context is UV_EINVAL, a call from
 * another thread returns `foreign` (WSEV_EWRONGTHREAD, or 0 for a getter). */
#define WSEV_CHECK_CTX(ctx, foreign)                                                               \
  do {                                                                                             \
    if (!(ctx)) return UV_EINVAL;                                                                  \
    if (!wsev__on_ctx_thread(ctx)) return (foreign);                                               \
  } while (0)
/* The same for getters and void functions: `none` for both cases. */
#define WSEV_CHECK_CTX_OR(ctx, none)                                                               \
  do {                                                                                             \
    if (!(ctx) || !wsev__on_ctx_thread(ctx)) return none;                                          \
  } while (0)

/* post.c */
int wsev__post_init(wsev_ctx *ctx);
/* 1 if posted work waits to run (on the context's thread: it runs in a later callback). */
int wsev__post_waiting(wsev_ctx *ctx);
/* Drop what was posted and not run yet. */
void wsev__post_free(wsev_ctx *ctx);
/* wsev_post for the library's own work (io.c): if it is dropped unrun (the context is
 * freed first), fn is called with a NULL context to release arg. */
int wsev__post_internal(wsev_ctx *ctx, wsev_post_fn fn, void *arg);
/* A posted call (post.c's queue), public here so that an internal post can be
 * allocated with its arguments: see wsev__post_owned. */
typedef enum { POST_CALL, POST_WRITE, POST_BROADCAST, POST_OWNED } wsev_post_kind;

struct wsev_post_item {
  struct wsev_post_item *next;
  wsev_post_kind kind;
  wsev_msg_type type;
  wsev_post_fn fn;
  void *arg;
  int internal;  /* dropped unrun: fn(NULL, arg) releases arg */
  uint64_t id;   /* write */
  uint64_t *ids; /* broadcast: `count` ids, in this allocation */
  size_t count;
  uint8_t *data; /* write, broadcast: `len` bytes, in this allocation */
  size_t len;
};
/* An internal post that heads its caller's own allocation: fn(ctx, item) runs it, or
 * fn(NULL, item) when it is dropped unrun; either way fn frees it. One allocation per
 * post instead of two, and the caller may reuse it. */
void wsev__post_owned_init(wsev_post_item *item, wsev_post_fn fn);
void wsev__post_owned(wsev_ctx *ctx, wsev_post_item *item);
/* Internal posts gathered on one thread and handed to a context together: one lock
 * and at most one wakeup for the lot, in the order they were added. */
typedef struct {
  wsev_post_item *head, *tail;
} wsev_post_batch;
int wsev__post_batch_add(wsev_post_batch *batch, wsev_post_fn fn, void *arg);
void wsev__post_batch_add_owned(wsev_post_batch *batch, wsev_post_item *item);
void wsev__post_batch_send(wsev_ctx *ctx, wsev_post_batch *batch);
/* Release a batch that will never be sent: fn(NULL, arg) for each. */
void wsev__post_batch_drop(wsev_post_batch *batch);

/* listener.c */
void wsev__listeners_close(wsev_ctx *ctx);
/* Bind a plain socket to the address (no SO_REUSEPORT) and close it: the port it got
 * (a free one for "0"), or UV_EADDRINUSE when another socket has it. Threaded mode
 * checks this first, since sockets with SO_REUSEPORT of the same user would share the
 * port silently. */
int wsev__listen_probe(const char *host, const char *port);
/* How wsev_listen's options are put into effect on one loop. */
typedef struct {
  const wsev_listen_options *options; /* checked by wsev_listen */
  int id;                             /* the listener's id */
  wsev_tls_tickets *tickets; /* ticket keys shared by the I/O threads' listeners, or NULL:
                                the listener's own */
  int reuseport;             /* other sockets bind the same port (one per I/O thread) */
  int unix_fd; /* a Unix socket: -1 binds the path; else a descriptor of the first
                  thread's socket to listen on too (set by the first) */
} wsev_listen_how;
/* Listen on this context's loop. Returns the bound TCP port (0 for a Unix socket) or an
 * error. */
int wsev__listen(wsev_ctx *ctx, wsev_listen_how *how);
/* wsev_set_listener_certs on this context's loop, in two steps so that the I/O threads
 * switch together or not at all: load the set for the TLS listener `id` (0, UV_ENOENT
 * or a loading error), then take it (commit) or drop it. */
int wsev__listeners_prepare_certs(wsev_ctx *ctx, int id, const wsev_tls_cert *certs,
                                  size_t count);
void wsev__listeners_commit_certs(wsev_ctx *ctx, int id, int commit);

/* client.c: wsev_add_conn (sock NULL) or wsev_adopt_socket on this context's loop; a
 * non-zero *id is the id to use (taken from this context earlier). */
int wsev__client_open(wsev_ctx *ctx, const char *url, const wsev_client_options *options,
                      uint64_t *id, uv_os_sock_t *sock);

/* io.c: threaded mode. The API functions hand their work to these when ctx->io is set. */
void wsev__io_free(wsev_ctx *ctx);
int wsev__io_listen(wsev_ctx *ctx, wsev_listen_how *how);
int wsev__io_set_certs(wsev_ctx *ctx, int id, const wsev_tls_cert *certs, size_t count);
int wsev__io_open(wsev_ctx *ctx, const char *url, const wsev_client_options *options, uint64_t *id,
                  uv_os_sock_t *sock);
int wsev__io_known(const wsev_ctx *ctx, uint64_t id);
/* The origin policy changed: every thread gets a copy. */
void wsev__io_origins(wsev_ctx *ctx);
int wsev__io_write(wsev_ctx *ctx, uint64_t id, const void *data, size_t len, int text,
                   unsigned flags);
/* What the thread last reported queued for id, plus the writes on their way to it. */
size_t wsev__io_buffered(const wsev_ctx *ctx, uint64_t id);
int wsev__io_broadcast(wsev_ctx *ctx, const uint64_t *ids, size_t count, const void *data,
                       size_t len, wsev_msg_type type);
int wsev__io_close(wsev_ctx *ctx, uint64_t id, unsigned code, const char *reason);
int wsev__io_set_conn_data(wsev_ctx *ctx, uint64_t id, void *data);
void *wsev__io_get_conn_data(const wsev_ctx *ctx, uint64_t id);
int wsev__io_conn_info(const wsev_ctx *ctx, uint64_t id, wsev_conn_info *info);
void wsev__io_shutdown(wsev_ctx *ctx, uint64_t timeout_ms);
/* wsev_accept / wsev_reject of an upgrade waiting on an I/O thread. */
int wsev__io_decide(wsev_ctx *ctx, uint64_t id, int status, const char *protocol);
/* The settings changed: every thread gets a copy. */
void wsev__io_settings(wsev_ctx *ctx);
/* Around a batch of callbacks (events, posted work): the calls to the threads they make
 * wait and go together, one hand-over per thread, at the outermost uncork. */
void wsev__io_cork(wsev_ctx *ctx);
void wsev__io_uncork(wsev_ctx *ctx);

#endif
