/* A connection, and what its layers offer each other. conn.c owns its life (states,
 * reading, closing); the other connection files are its sides and directions:
 *   server.c    the server side: accept, the upgrade request, origins, plain HTTP
 *   client.c    the client side: dial, the upgrade request we send, the 101
 *   conn_tls.c  TLS glue: records in, plaintext to the state machine, records out
 *   send.c      messages out: wsev_write, wsev_broadcast, backpressure
 *   flush.c     corked output to the socket, once per loop iteration
 * Below them are the pure layers (reader.c, writer.c, handshake.c, tls.c, ...) and
 * the context's services (dispatch.c, deadline.c, bufpool.c), which call back into a
 * connection only through the hooks at the end of this file. */
#ifndef WSEV_CONN_H
#define WSEV_CONN_H

#include <stdint.h>
#include <uv.h>

#include "bufpool.h"
#include "client_handshake.h"
#include "deflate.h"
#include "handshake.h"
#include "idmap.h"
#include "reader.h"
#include "tls.h"
#include "writer.h"
#include "wsev.h"

typedef struct wsev_conn wsev_conn;
struct wsev_dial;

typedef enum {
  WSEV_CONN_CONNECTING, /* ours: resolving the name and connecting */
  WSEV_CONN_HANDSHAKE,  /* reading the upgrade request (ours: TLS, then the 101) */
  WSEV_CONN_OPEN,       /* WebSocket frames both ways */
  WSEV_CONN_CLOSING,    /* we sent a close frame and wait for the peer's */
  WSEV_CONN_LINGERING,  /* the WebSocket is over: flush, send FIN, wait for EOF */
  WSEV_CONN_DEAD,       /* uv_close called; freed in its callback */
} wsev_conn_state;

/* The kinds of deadline a connection may wait on, one at a time. */
enum {
  WSEV_DEADLINE_HANDSHAKE, /* the upgrade (ours: connect, TLS and the 101) */
  WSEV_DEADLINE_CLOSE,     /* the peer's close frame, or its EOF */
  WSEV_DEADLINE_PONG,      /* any bytes after a keepalive ping */
  WSEV_DEADLINE_DEFER,     /* the application's answer to a deferred upgrade */
  WSEV_DEADLINE_KINDS
};

/* On the context's deadline lists (deadline.c). */
typedef struct {
  wsev_conn *prev, *next;
  uint64_t at;      /* loop time it expires; UINT64_MAX: never */
  uint64_t last_rx; /* loop time of the last bytes received, for keepalive */
  uint8_t armed;    /* on a list */
  uint8_t kind;
} wsev_conn_deadline;

/* The opening handshake, until the connection opens (server.c, client.c). */
typedef struct {
  wsev_hs *request;         /* server: the HTTP request being read or answered */
  wsev_client_hs *response; /* ours: the 101 we wait for */
  struct wsev_dial *dial;   /* ours: resolving and connecting, until the request is sent */
  const char *selected;     /* server: the subprotocol upgrade_requested chose */
  wsev_buf held;            /* server: bytes behind a deferred request; ours: frames
                               written before the connection opened */
  uint8_t deferred;         /* upgrade_requested said WSEV_DEFER: reading paused */
  uint8_t http_waiting;     /* a plain request waits for its answer from another thread */
  uint8_t in_http;          /* inside http_request */
  uint8_t responded;        /* wsev_respond was called for the current request */
} wsev_conn_handshake;

/* A request copied on an I/O thread for the application's thread (io.c). Strings
 * live in the same allocation. */
typedef struct {
  uint64_t id;
  const char *path, *method, *server_name;
  const char *headers; /* "name\0value\0" pairs, names lowercase */
  size_t headers_len;
  const char **protocols;
  size_t protocol_count;
  int keep_alive;
} wsev_request_copy;

/* What the application's callbacks get as a wsev_request: the connection itself
 * (inline), or a copy (threaded), with the answer collected here. */
struct wsev_request {
  wsev_conn *conn;
  const wsev_request_copy *copy;
  const char *selected; /* copy: the subprotocol chosen */
  uint8_t *response;    /* copy: wsev_respond's bytes (malloc'd) */
  size_t response_len;
  int in_http;   /* copy: wsev_respond may answer */
  int responded; /* copy */
};

/* How the connection ends: the first of our close, the peer's close or a failure. */
typedef struct {
  char *reason; /* may be NULL */
  int error;    /* ours: why it could not be opened, or 0 */
  uint16_t code;
  uint8_t set;
  uint8_t by_peer;
} wsev_conn_ending;

/* The client a trusted proxy named (wsev_conn_info.client_addr), kept only when one did. */
typedef struct {
  struct sockaddr_storage client;
} wsev_conn_origin;

struct wsev_conn {
  union {
    uv_stream_t stream; /* what reading and writing use; stream.data points back here */
    uv_tcp_t tcp;
    uv_pipe_t pipe; /* over a Unix socket (`unix_socket`) */
  } sock;
  wsev_ctx *ctx;
  uint64_t id; /* 0 until the upgrade request passed the checks (ours: at once) */
  wsev_conn *all_prev, *all_next; /* every connection of the context */
  wsev_conn *dirty_next;          /* on the flush list, while `dirty` */
  void *user_data;
  char *path;     /* after the upgrade: the request target */
  char *protocol; /* after the upgrade: the subprotocol, or NULL */
  wsev_tls *tls;  /* over TLS: the session */
  wsev_reader reader;
  wsev_writer writer;
  wsev_conn_deadline deadline;
  wsev_conn_handshake handshake;
  wsev_conn_ending ending;
  wsev_deflate *deflate; /* permessage-deflate offered (ours) or agreed, else NULL */
  wsev_conn_origin *origin; /* NULL: the client is the socket's peer */
  uint8_t state;
  uint8_t client;        /* a connection we opened: frames masked, 101 expected */
  uint8_t announced;     /* the application knows the id: conn_closed is owed */
  uint8_t counted;       /* in the context's count of connections */
  uint8_t dirty;         /* on the flush list */
  uint8_t read_eof;      /* the peer sent its FIN */
  uint8_t shutdown_sent; /* our FIN is requested */
  uint8_t shutdown_done; /* and sent */
  /* Cold facts in one byte, so that the flags still fit beside `handed`. */
  uint8_t unix_socket : 1;   /* sock is a uv_pipe_t: a Unix domain socket */
  uint8_t proxy_pending : 1; /* its PROXY protocol header is still being read
                                (handshake.held keeps a partial one) */
  uint8_t trust : 3;         /* accepted: the listener's WSEV_TRUST_* */
  /* I/O thread (ctx->app_busy): while messages are with the application, a reaction
   * to later input waits, with the input behind it (in handshake.held) and the peer's
   * EOF. `handed` counts the messages handed over (when they are emitted: the
   * dispatcher may still queue them). */
  uint8_t paused;
  uint8_t eof_waiting;
  uint32_t handed;
  struct wsev_reaction *reaction;
};

/* ---- conn.c: life ------------------------------------------------------------------ */
/* A new connection in the CONNECTING state with its handle initialized (a TCP one, or a
 * Unix socket's with unix_socket), or NULL. */
wsev_conn *wsev__conn_new(wsev_ctx *ctx, int unix_socket);
/* Give the handle a connected socket: 0 or a libuv error (the socket stays the
 * caller's). */
int wsev__conn_open_socket(wsev_conn *c, uv_os_sock_t sock);
/* The client a trusted proxy named: 0 or UV_ENOMEM. */
int wsev__conn_set_client(wsev_conn *c, const struct sockaddr_storage *client);
/* Bytes read from the socket: through TLS (if any) to the state machine. */
void wsev__conn_received(wsev_conn *c, uint8_t *p, size_t n);
/* Read the socket into the context's read buffer with another reader than the state
 * machine's (a PROXY header, a proxy's answer to CONNECT). 0 or a libuv error. */
int wsev__conn_read_start_with(wsev_conn *c, uv_read_cb read_cb);
/* Start reading the socket. 0 or a libuv error. */
int wsev__conn_read_start(wsev_conn *c);
/* Open WebSocket: deliver `rest` (frames that came behind the handshake). The caller
 * has announced it (conn_accepted is emitted here). */
void wsev__conn_open(wsev_conn *c, uint8_t *rest, size_t n);
/* Remember how the connection ends (the first call wins; reason copied). */
void wsev__conn_set_ending(wsev_conn *c, unsigned code, int by_peer, const char *reason,
                           size_t len);
/* RFC 6455 section 7.1.7, "fail the WebSocket connection" with `code`. */
void wsev__conn_fail(wsev_conn *c, unsigned code);
/* The WebSocket (or HTTP exchange) is over: flush what is queued, send a FIN, wait
 * for the peer's EOF or the close timeout. */
void wsev__conn_linger(wsev_conn *c);
/* Drop the connection now; its memory goes when the handle has closed. */
void wsev__conn_abort(wsev_conn *c);
/* Free a connection whose handle has closed. */
void wsev__conn_release(wsev_conn *c);
/* Bytes of the HTTP or WebSocket stream (decrypted, over TLS), routed by state. */
void wsev__conn_input(wsev_conn *c, uint8_t *p, size_t n);
/* The peer ended its stream (EOF, or TLS close_notify). */
void wsev__conn_peer_eof(wsev_conn *c);
/* I/O thread: the application is done with the connection's messages (its replies are
 * queued here): a reaction that waited goes ahead, then the input behind it. */
void wsev__conn_acked(wsev_conn *c);
/* Still reading: in the handshake, open or closing. */
static inline int wsev__conn_reading(const wsev_conn *c) {
  return c->state == WSEV_CONN_HANDSHAKE || c->state == WSEV_CONN_OPEN ||
         c->state == WSEV_CONN_CLOSING;
}
/* Ours, before the 101 (frames written meanwhile wait in handshake.held). */
static inline int wsev__conn_opening(const wsev_conn *c) {
  return c->client && (c->state == WSEV_CONN_CONNECTING || c->state == WSEV_CONN_HANDSHAKE);
}
/* Register the connection under the context's next id (or a given one, taken from the
 * context earlier), with room reserved for its closed event. 0 or UV_ENOMEM. */
int wsev__conn_take_id(wsev_conn *c);
int wsev__conn_set_id(wsev_conn *c, uint64_t id);

/* ---- send.c ------------------------------------------------------------------------ */
/* Queue a message (masked for ours; held until the 101 while ours is opening;
 * compressed if permessage-deflate was agreed, unless flags has
 * WSEV_SEND_UNCOMPRESSED). 0, WSEV_ECLOSING, WSEV_EBACKPRESSURE (the connection is
 * failing now), WSEV_EMSGSIZE or UV_ENOMEM. */
int wsev__send(wsev_conn *c, int opcode, const void *data, size_t len, unsigned flags);
/* Queue a control frame (ping, pong, close), beyond any limit. */
void wsev__send_control(wsev_conn *c, int opcode, const void *data, size_t len);
/* Below this size copying a broadcast's frame into each queue is cheaper than sharing
 * it (wsev_broadcast, and the I/O threads' broadcasts). */
#define WSEV_SHARE_MIN 1024
/* A broadcast's message: its payload, its frame (frame_len bytes, unmasked; `shared`
 * holds it when given, else it is copied into each queue), and its frames compressed
 * once per window size for the recipients that compress without context. */
typedef struct {
  int opcode;
  const uint8_t *data;
  size_t len;
  wsev_shared *shared;
  const uint8_t *frame;
  size_t frame_len;
  wsev_shared *deflated[16]; /* by window bits, made for the first recipient needing it */
  uint16_t tried;            /* by window bits: compressed (or found not to pay) */
} wsev_bcast;
void wsev__bcast_init(wsev_bcast *b, int opcode, const uint8_t *data, size_t len,
                      wsev_shared *shared, const uint8_t *frame, size_t frame_len);
/* Drop the compressed frames (the queues hold their own references). */
void wsev__bcast_done(wsev_bcast *b);
/* One recipient of a broadcast; ours are framed from the payload each with its own
 * mask, and so are those compressing with context. Same returns as wsev__send. */
int wsev__send_framed(wsev_conn *c, wsev_bcast *b);
/* Queue raw bytes (an HTTP response). 0 or UV_ENOMEM. */
int wsev__send_bytes(wsev_conn *c, const void *data, size_t len);
/* Queue a close frame with `code` and a reason (NULL: none); 1005 sends an empty one. */
void wsev__send_close(wsev_conn *c, unsigned code, const char *reason);
/* Bytes waiting to be sent (wsev_get_buffered_amount). */
size_t wsev__send_buffered(const wsev_conn *c);
/* The peer does not keep up (a write over the send limit): unsent frames are dropped
 * and the connection fails with 1008. */
void wsev__send_refuse(wsev_conn *c);

/* ---- flush.c ----------------------------------------------------------------------- */
/* Put the connection on the flush list (once per iteration). */
void wsev__flush_mark(wsev_conn *c);
/* Take it off (it is being freed). */
void wsev__flush_forget(wsev_conn *c);
/* Hand `head` (`bytes` unwritten in all) to one uv_write whose request owns them. 0,
 * or an error (then they are still the caller's). */
int wsev__flush_write_segs(wsev_conn *c, wsev_seg *head, size_t bytes);
/* conn_drained is due if the queue went above the low-water mark and is back. */
void wsev__flush_check_drained(wsev_conn *c);
/* Write every connection on the flush list (the context's check phase). */
void wsev__flush_all(wsev_ctx *ctx);

/* ---- conn_tls.c -------------------------------------------------------------------- */
/* Ciphertext from the socket. */
void wsev__tls_conn_input(wsev_conn *c, uint8_t *p, size_t n);
/* Encrypt what is queued and write the records. Returns 1 when everything is out. */
int wsev__tls_conn_flush(wsev_conn *c);
/* Ours: start the handshake (the ClientHello). */
void wsev__tls_conn_start(wsev_conn *c);

/* ---- server.c ---------------------------------------------------------------------- */
/* What a listener tells about the clients it accepts. */
typedef struct {
  wsev_tls_config *tls;  /* its TLS configuration, or NULL */
  unsigned trust;        /* WSEV_TRUST_* */
  int unix_socket;       /* a Unix socket's listener */
} wsev_accept_from;
/* Accept a pending client of `server`. UV_ENOMEM if there was no memory to accept it
 * with (it is then still pending). */
int wsev__server_accept(wsev_ctx *ctx, uv_stream_t *server, const wsev_accept_from *from);
/* Reading a connection whose listener expects a PROXY protocol header first. */
void wsev__server_proxy_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
/* Serve a connected socket (accepted or adopted): read its upgrade request. */
void wsev__server_serve(wsev_conn *c);
/* Bytes of the HTTP request stream. */
void wsev__server_input(wsev_conn *c, uint8_t *p, size_t n);
/* Answer the HTTP client with an error status and close. */
void wsev__server_reject(wsev_conn *c, int status);
/* Threaded mode, from inside http_request: the answer comes later, from
 * wsev__server_http_answer (the connection pauses reading meanwhile). */
void wsev__server_http_wait(wsev_conn *c);
/* The answer to a plain request that waited: the response's bytes (NULL: 404). */
void wsev__server_http_answer(wsev_conn *c, const uint8_t *response, size_t len);

/* ---- client.c ---------------------------------------------------------------------- */
/* Ours: the socket is connected; start TLS or send the upgrade request. */
void wsev__client_connected(wsev_conn *c);
/* Ours: TLS is up; send the upgrade request. */
void wsev__client_send_request(wsev_conn *c);
/* Bytes of the server's response stream. */
void wsev__client_input(wsev_conn *c, uint8_t *p, size_t n);
/* Ours: it could not be opened (error and a reason for wsev_get_close_info). */
void wsev__client_fail(wsev_conn *c, int error, const char *reason);
/* Ours: the server went away before the 101 (UV_EOF or a read error). */
void wsev__client_lost(wsev_conn *c, int error);
/* Ours: the handshake deadline passed. */
void wsev__client_timed_out(wsev_conn *c);
/* Forget the dialing state (the connection is dropped, or the request is sent). */
void wsev__client_dial_end(wsev_conn *c);

/* ---- hooks: the context's timers and flush call these ------------------------------- */
/* A deadline of the connection passed. */
void wsev__conn_on_deadline(wsev_conn *c);
/* Keepalive sweep: ping an open connection silent since the interval. */
void wsev__conn_on_keepalive(wsev_conn *c, uint64_t now);
/* wsev_shutdown: 503 during the handshake, 1001 when open. */
void wsev__conn_on_shutdown(wsev_conn *c);

#endif
