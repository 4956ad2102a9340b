/* Private structures shared by the context, listener and connection layers. Never
 * installed. */
#ifndef WSEV_INTERNAL_H
#define WSEV_INTERNAL_H

#include <stdint.h>
#include <uv.h>

#include "client_handshake.h"
#include "handshake.h"
#include "idmap.h"
#include "tls.h"
#include "wsev.h"

/* Larger than a 64 KiB message and its header, so such a message usually arrives in
 * one read and is delivered without a copy. */
#define WSEV_READ_BUFFER_SIZE (256 * 1024)
/* Output buffers of this capacity are recycled through the context's pool, so a
 * connection holds no output buffer while idle and steady traffic allocates none.
 * The pool keeps as many as were in use at once (up to the maximum): with many
 * connections written per iteration, freeing them would make malloc trim and grow
 * the heap every iteration. */
#define WSEV_POOL_BUFFER_SIZE (4 * 1024)
#define WSEV_POOL_MAX 4096
/* Larger buffers kept for reuse: at most this many, and this many bytes in all. */
#define WSEV_SPARES 64
#define WSEV_SPARE_BYTES (16u * 1024 * 1024)

typedef struct wsev_conn wsev_conn;

/* A broadcast frame, framed once and shared by its recipients' output queues. */
typedef struct {
  size_t refs;
  size_t len;
  uint8_t data[];
} wsev_shared;

/* A piece of output waiting to be written, ahead of a connection's `out` buffer: a
 * buffer of its own (from the pool) or a reference to a shared frame. */
typedef struct wsev_seg {
  struct wsev_seg *next;
  wsev_shared *shared; /* NULL: data/cap is a buffer of this segment's own */
  uint8_t *data;
  size_t len;
  size_t cap;
  size_t off; /* bytes already written */
} wsev_seg;
typedef struct wsev_listener wsev_listener;

typedef enum {
  WSEV_EV_ACCEPTED,
  WSEV_EV_MESSAGE,
  WSEV_EV_CLOSED,
  WSEV_EV_TIMEOUT,
  WSEV_EV_DRAINED,
} wsev_event_kind;

/* One entry of the master queue. Only events raised while a callback runs wait
 * here; the rest are dispatched as soon as they happen. */
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

/* Lists of connections waiting on a deadline, sorted: the handshake (or opening a
 * connection of ours), the end of closing, the answer to a keepalive ping, a
 * deferred upgrade. Mostly of one duration each, so an entry goes at the tail. */
enum {
  WSEV_DEADLINE_HANDSHAKE,
  WSEV_DEADLINE_CLOSE,
  WSEV_DEADLINE_PONG,
  WSEV_DEADLINE_DEFER,
  WSEV_DEADLINE_KINDS
};

typedef struct {
  uint8_t *data;
  size_t len;
  size_t cap;
} wsev_buf;

typedef enum {
  WSEV_CONN_CONNECTING, /* ours: resolving the name and connecting */
  WSEV_CONN_HANDSHAKE, /* reading the upgrade request (ours: TLS, then the response) */
  WSEV_CONN_OPEN,      /* WebSocket frames both ways */
  WSEV_CONN_CLOSING,   /* we sent a close frame and wait for the peer's */
  WSEV_CONN_DRAINING,  /* the WebSocket is over: flush, send FIN, wait for EOF */
  WSEV_CONN_DEAD,      /* uv_close called; freed in its callback */
} wsev_conn_state;

struct wsev_conn {
  uv_tcp_t tcp; /* tcp.data points back here */
  wsev_ctx *ctx;
  uint64_t id; /* 0 until the upgrade succeeds */
  wsev_conn *all_prev, *all_next;
  wsev_conn *dl_prev, *dl_next; /* deadline list, when in_deadline */
  wsev_conn *dirty_next;
  uint64_t deadline;
  uint64_t last_rx; /* loop time of the last bytes received, for keepalive */
  wsev_hs *hs;      /* only during the handshake */
  wsev_tls *tls;    /* over TLS: the session (records in, records out) */
  struct wsev_dial *dial;  /* ours, until the upgrade request is sent */
  wsev_client_hs *chs;     /* ours, while waiting for the 101 */
  void *user_data;
  char *info;           /* after the upgrade: "path\0protocol\0" for wsev_get_conn_info */
  char *close_reason;   /* ours or the peer's, once the close started (may be NULL) */
  wsev_buf pending;     /* bytes that came behind a deferred upgrade request; ours:
                           frames written before the connection opened */
  const char *selected; /* the subprotocol chosen during upgrade_requested */
  wsev_seg *segs;       /* output to write before `out`, oldest first (broadcasts) */
  wsev_seg *segs_tail;
  size_t seg_bytes; /* unwritten bytes in segs */
  wsev_buf out;     /* framed bytes not yet handed to the kernel */
  size_t inflight;  /* bytes in uv_write requests not completed yet */

  /* Frame parser. */
  uint64_t payload_left; /* of the current frame */
  uint64_t msg_size;     /* bytes of the current message so far */
  wsev_buf msg;          /* reassembly, only when a message spans reads or frames */
  uint8_t *ctrl;         /* control payload split across reads */
  uint32_t utf8_state;
  uint8_t ctrl_len;
  uint8_t hdr[14]; /* a frame header split across reads */
  uint8_t hdr_len;
  uint8_t mask[4];
  uint8_t mask_offset;
  uint8_t in_frame;
  uint8_t frame_opcode;
  uint8_t frame_fin;
  uint8_t msg_opcode; /* WSEV_OP_TEXT/BINARY while a message is in progress, else 0 */

  uint8_t state;
  uint8_t dirty;
  uint8_t in_deadline;
  uint8_t deadline_kind;
  uint8_t shutdown_sent;
  uint8_t shutdown_done;
  uint8_t read_eof;
  uint16_t close_code; /* once close_set */
  uint16_t response_left;  /* bytes of the 101 response not yet written */
  uint8_t close_set;   /* the first of: our close, the peer's close, a failure */
  uint8_t close_by_peer;
  uint8_t announced;       /* the application knows the id: conn_closed is owed */
  uint8_t client;          /* a connection we opened: frames masked, 101 expected */
  uint8_t tcp_closing;     /* ours: the socket of a failed attempt is closing */
  int error;               /* ours: why it failed (close info), or 0 */
  uint8_t deferred;        /* upgrade_requested said WSEV_DEFER; reading paused */
  uint8_t has_protocol;    /* info holds a subprotocol */
  uint8_t in_http;         /* inside http_request */
  uint8_t responded;       /* wsev_respond was called for the current request */
  uint8_t counted;         /* in ctx->n_active */
  uint8_t above_low_water; /* conn_drained is due when the buffer drains */
};

struct wsev_listener {
  uv_tcp_t tcp;
  /* Accepts and closes a client when there is no memory for a connection: libuv
   * stops polling a listener whose pending client was not accepted. */
  uv_tcp_t reject;
  wsev_ctx *ctx;
  wsev_tls_config *tls; /* a wss listener's certificate and settings */
  wsev_listener *next;
  uint8_t handles;        /* of tcp and reject still open; freed at 0 */
  uint8_t reject_busy;    /* reject is closing */
  uint8_t accept_waiting; /* a client is pending while reject was busy */
  uint8_t closing;
};

struct wsev_ctx {
  uv_loop_t *loop;
  uv_loop_t own_loop;
  int owns_loop;
  wsev_handler handler;
  void *data;

  /* Settings. */
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
  char **origins; /* allowed origins (wsev_allow_origin) */
  size_t n_origins;
  int same_host_origin;

  /* The master event queue (a ring) and its dispatcher. */
  wsev_event *queue;
  size_t queue_head, queue_len, queue_cap;
  int dispatching;
  int in_api;                /* events raised inside an API call wait for the next flush */
  const wsev_event *closing; /* the closed event being dispatched */
  uint64_t last_dispatch;
  uv_timer_t timeout_timer;

  /* Corked output: connections written to during this iteration, flushed in the
   * check phase; the idle handle keeps poll from blocking while any are dirty. */
  wsev_conn *dirty_head;
  uv_check_t flush_check;
  uv_idle_t flush_idle;

  /* Deadlines. */
  wsev_conn *dl_head[WSEV_DEADLINE_KINDS], *dl_tail[WSEV_DEADLINE_KINDS];
  uv_timer_t deadline_timer;
  uv_timer_t keepalive_timer;
  int shutting_down;
  uint64_t shutdown_deadline;

  /* Connections and listeners. */
  wsev_idmap ids;
  uint64_t next_id;
  wsev_conn *all_head;
  size_t n_active; /* connections in the handshake, open or closing */
  wsev_listener *listeners;

  /* One read buffer shared by every connection: libuv reads one stream at a time
   * and we consume the bytes before returning from the read callback. */
  uint8_t *read_buf;
  /* The same for decrypted bytes (allocated with the first TLS connection). */
  uint8_t *tls_plain;
  wsev_rng *rng; /* random bytes: TLS and client masking keys (seeded on first use) */
  wsev_tls_config *client_tls[8]; /* for our wss connections, by CA file (client.c) */
  int n_client_tls;
  /* Recycled buffers: small ones in a stack linked through their first bytes, a
   * few large ones in slots. */
  void *pool;
  size_t pool_count;
  struct {
    uint8_t *data;
    size_t cap;
  } spares[WSEV_SPARES];
  int n_spares;
  size_t spare_bytes;
  wsev_seg *free_segs; /* recycled segment nodes */

  unsigned open_handles; /* ours still to be closed; the context dies at 0 */
  int freeing;
};

/* context.c */
void wsev__handle_opened(wsev_ctx *ctx);
void wsev__handle_closed(wsev_ctx *ctx);
/* Raise an event: dispatched at once, or queued if a callback is running. */
void wsev__emit(wsev_ctx *ctx, wsev_event_kind kind, uint64_t id);
/* Raise conn_closed with how the connection ended (reason copied). */
void wsev__emit_closed(wsev_ctx *ctx, uint64_t id, unsigned code, int by_peer, int error,
                       const char *reason, void *user_data);
/* Run a callback that answers something (upgrade_requested, http_request) in the
 * serialized stream: queued events first. Returns the callback's verdict. */
int wsev__call_upgrade(wsev_ctx *ctx, wsev_conn *c);
void wsev__call_http(wsev_ctx *ctx, wsev_conn *c);
/* Deliver a message; `data` is only borrowed (copied if it must wait). */
void wsev__emit_message(wsev_ctx *ctx, uint64_t id, const uint8_t *data, size_t len,
                        wsev_msg_type type);
void wsev__mark_dirty(wsev_conn *c);
void wsev__deadline_set(wsev_conn *c, int kind, uint64_t ms);
void wsev__deadline_clear(wsev_conn *c);
/* Make room in the event queue for n more events (0 or UV_ENOMEM). */
int wsev__reserve_events(wsev_ctx *ctx, size_t n);
/* A buffer of at least `need` bytes (*cap gets its size), recycled when possible. */
uint8_t *wsev__buf_get(wsev_ctx *ctx, size_t need, size_t *cap);
/* Give a buffer back (NULL is fine): kept for reuse within limits, else freed. */
void wsev__buf_put(wsev_ctx *ctx, uint8_t *buf, size_t cap);
/* Segment nodes, recycled. */
wsev_seg *wsev__seg_get(wsev_ctx *ctx);
/* Release a segment's bytes (drop the shared reference, or give back the buffer)
 * and the node. */
void wsev__seg_release(wsev_ctx *ctx, wsev_seg *seg);
/* Grow b to hold `need` bytes, keeping its content: 0 or UV_ENOMEM. */
int wsev__buf_grow(wsev_ctx *ctx, wsev_buf *b, size_t need);

/* conn.c */
/* Accept a pending connection of `server`. UV_ENOMEM if there was no memory to
 * accept it with (it is then still pending). */
int wsev__conn_start(wsev_ctx *ctx, uv_stream_t *server, wsev_tls_config *tls);
/* A new connection in the CONNECTING state with its handle initialized, or NULL. */
wsev_conn *wsev__conn_new(wsev_ctx *ctx);
/* Serve an adopted socket (c->tcp is open) like an accepted one. */
void wsev__conn_serve(wsev_conn *c);
/* Ours: the socket is connected; start TLS or send the upgrade request. */
void wsev__conn_connected(wsev_conn *c);
/* Ours: it could not be opened (error and a reason for wsev_close_info). */
void wsev__conn_fail_open(wsev_conn *c, int error, const char *reason);
/* Free a connection whose handle has closed (the uv_close callback's work). */
void wsev__conn_release(wsev_conn *c);
/* Graceful shutdown of one connection: 503 during the handshake, 1001 when open. */
void wsev__conn_shutdown(wsev_conn *c);
/* Keepalive: ping an open connection that was silent for the interval. */
void wsev__conn_keepalive(wsev_conn *c, uint64_t now);
void wsev__conn_flush(wsev_conn *c);
/* Bytes waiting to be sent (wsev_buffered_amount). */
size_t wsev__conn_buffered(const wsev_conn *c);
/* Drop the connection now (deadline passed, or the context is freed). */
void wsev__conn_abort(wsev_conn *c);
int wsev__conn_send(wsev_conn *c, int opcode, const void *data, size_t len);
/* Queue an already framed message: copied (`frame`), or shared (`shared`). Same
 * returns as wsev__conn_send. */
int wsev__conn_send_framed(wsev_conn *c, const uint8_t *frame, size_t len);
int wsev__conn_send_shared(wsev_conn *c, wsev_shared *shared);
/* Queue raw bytes (an HTTP response). 0 or UV_ENOMEM. */
int wsev__conn_queue(wsev_conn *c, const void *data, size_t len);
int wsev__conn_close(wsev_conn *c, unsigned code, const char *reason);
/* Answer a deferred upgrade (status 0: accept with `protocol`). */
int wsev__conn_decide(wsev_conn *c, int status, const char *protocol);
/* The deadline of a connection passed. */
void wsev__conn_deadline(wsev_conn *c);

/* The context's random source, created on first use (NULL without memory). */
wsev_rng *wsev__ctx_rng(wsev_ctx *ctx);
/* The plaintext buffer for TLS connections, allocated on first use. */
uint8_t *wsev__ctx_tls_plain(wsev_ctx *ctx);

/* client.c */
/* Forget the dialing state (the connection is dropped, or the request is sent). */
void wsev__dial_abort(wsev_conn *c);
/* The upgrade request to send. */
const char *wsev__dial_request(wsev_conn *c, size_t *len);

/* listener.c */
void wsev__listeners_close(wsev_ctx *ctx);

#endif
