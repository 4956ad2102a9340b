/*
 * wsev: WebSocket servers and clients inside a libuv event loop.
 *
 * All network work (accept, dial, TLS, the HTTP upgrade, RFC 6455 framing, pings,
 * closes) happens per connection inside the loop. The application sees one strictly
 * serialized stream of events through the callbacks of a wsev_handler: a connection
 * opened, a message arrived, a connection closed, the loop timed out. Every callback
 * runs on the loop's thread, one after another, and never inside another one.
 *
 * Rules that hold for the whole API:
 * - Errors. Functions returning int return 0 (or a documented non-negative value) on
 *   success and a negative error code on failure: a libuv code (UV_E*) where one
 *   fits, or a WSEV_E* code (see "Errors" at the end). wsev_strerror() and
 *   wsev_err_name() describe either kind.
 * - Ids. Connection ids are uint64_t, never 0, unique for the context's lifetime and
 *   never reused. For every id handed to the application (by conn_accepted,
 *   wsev_add_conn or wsev_adopt_socket), conn_closed is called exactly once, after
 *   every message_received of that id; afterwards the id is unknown (WSEV_ENOCONN).
 * - Callbacks never nest. Any function here may be called from any callback except
 *   wsev_ctx_free and wsev_event_loop; events it causes are dispatched after the
 *   callback returns. A call made outside any callback never runs a callback before it
 *   returns either.
 * - NULL. A NULL context, request or required pointer is never a crash: a function
 *   returning int returns UV_EINVAL, a getter returns 0 or NULL, a function returning
 *   void does nothing. Pointers documented as optional may be NULL.
 * - Zero. For every setter, 0 turns that limit or timer off (no limit, no timeout);
 *   "off" is never a default. In option structs, a zero field means the default.
 * - Ownership. Strings and buffers passed in are only read during the call (copied if
 *   kept), unless documented otherwise. Strings returned are owned by wsev and valid
 *   for the time documented with the function.
 * - The library never prints, and never exits or aborts on bad input.
 * - Threads: a context belongs to the thread that created it, which runs its loop (or,
 *   embedded, the caller's loop). Only the functions of "other threads" below
 *   (wsev_post, wsev_post_write, wsev_post_broadcast), wsev_strerror and
 *   wsev_err_name may be called from any other thread; any other function called
 *   there is refused without effect: WSEV_EWRONGTHREAD from a function returning int,
 *   0 or NULL from a getter, nothing from a void function.
 *
 * Sections: the context; listening; compression; connections we open; messages; topics (and their
 * federation through Redis); closing; limits;
 * application control (upgrade requests, plain HTTP, origins, per-connection data);
 * other threads; errors; names of earlier versions.
 */
#ifndef WSEV_H
#define WSEV_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(WSEV_BUILDING) && defined(__GNUC__)
#define WSEV_EXPORT __attribute__((visibility("default")))
#else
#define WSEV_EXPORT
#endif

#define WSEV_VERSION_MAJOR 0
#define WSEV_VERSION_MINOR 2
#define WSEV_VERSION_PATCH 0

typedef struct wsev_ctx wsev_ctx;
/* An HTTP request being answered: an upgrade request in upgrade_requested, or a plain
 * request in http_request. Valid only during that callback. */
typedef struct wsev_request wsev_request;

/* The kind of a message. */
typedef enum { WSEV_BINARY = 0, WSEV_TEXT = 1 } wsev_msg_type;

/* ==== the context ====================================================================== */

/* upgrade_requested returns WSEV_ACCEPT, an HTTP status of 400..599 to refuse, or
 * WSEV_DEFER to decide later with wsev_accept / wsev_reject. */
#define WSEV_ACCEPT 0
#define WSEV_DEFER 1

/*
 * The application's callbacks. Any of them may be NULL (that event is then ignored).
 * Each runs on the loop's thread, never concurrently with, and never inside, another.
 */
typedef struct wsev_handler {
  /* A WebSocket connection is open: a client completed the upgrade (`id` is new), or a
   * connection of ours got the server's 101 (`id` is the one wsev_add_conn returned;
   * wsev_get_conn_info tells them apart by `client`). */
  void (*conn_accepted)(wsev_ctx *ctx, uint64_t id);
  /* The connection is gone: closed by either side, failed, or dropped. `id` is never
   * used again; wsev_get_close_info tells how it ended (inside this callback only). */
  void (*conn_closed)(wsev_ctx *ctx, uint64_t id);
  /* No event was dispatched for the context's timeout (wsev_set_timeout). Fires again
   * after each further timeout without events. */
  void (*event_loop_timeout)(wsev_ctx *ctx);
  /* A complete message arrived. `data` (not NUL-terminated; NULL or any pointer when
   * len is 0) is valid only until the callback returns. A WSEV_TEXT message has been
   * validated as UTF-8. Messages arriving after the application called wsev_close on
   * the connection are not delivered. */
  void (*message_received)(wsev_ctx *ctx, uint64_t id, const void *data, size_t len,
                           wsev_msg_type type);
  /* Optional. A client asks to upgrade (it passed the protocol checks and the origin
   * policy). See "application control". Without this callback every valid upgrade is
   * accepted. */
  int (*upgrade_requested)(wsev_ctx *ctx, wsev_request *req);
  /* Optional. A request without an Upgrade header (a health check, a page). See
   * "application control". Without this callback, GET gets 426 Upgrade Required and
   * other methods 400. */
  void (*http_request)(wsev_ctx *ctx, wsev_request *req);
  /* Optional. The bytes waiting to be sent to `id` fell to the low-water mark
   * (wsev_set_send_limits) after having been above it: a good time to write more. */
  void (*conn_drained)(wsev_ctx *ctx, uint64_t id);
} wsev_handler;

/*
 * Create a context in *ctxp.
 * - loop NULL: the context makes and owns a private loop; run it with
 *   wsev_event_loop() or wsev_event_loop_iteration().
 * - loop given: the context lives on the caller's loop (embedding); the caller runs
 *   that loop as it pleases and wsev's callbacks fire from it. The loop must outlive
 *   the context.
 * `handler` is copied. `data` is the application's (wsev_get_ctx_data). If SIGPIPE
 * still has its default disposition it is set to ignored, so that a peer resetting a
 * connection cannot kill the process.
 * Returns 0, UV_EINVAL (NULL ctxp or handler), UV_ENOMEM, or a libuv error.
 */
WSEV_EXPORT int wsev_ctx_new(wsev_ctx **ctxp, uv_loop_t *loop, const wsev_handler *handler,
                             void *data);

/*
 * Release the context: listeners stop, every connection is dropped at once (no
 * callbacks fire, not even conn_closed), and all memory is freed. With a private loop
 * everything is released before this returns. On a caller's loop the libuv handles
 * finish closing, and the last memory is freed, the next time the caller's loop runs;
 * the loop itself stays valid. Must not be called from inside a wsev callback. For a
 * graceful end, call wsev_shutdown first and run the loop until it returns.
 */
WSEV_EXPORT void wsev_ctx_free(wsev_ctx *ctx);

/* The application data given to wsev_ctx_new, or set later. */
WSEV_EXPORT void *wsev_get_ctx_data(const wsev_ctx *ctx);
WSEV_EXPORT int wsev_set_ctx_data(wsev_ctx *ctx, void *data);
/* The loop the context runs on (its private loop or the caller's). */
WSEV_EXPORT uv_loop_t *wsev_get_loop(const wsev_ctx *ctx);

/* Run the loop once: wait for events (blocking until at least one arrives) and
 * dispatch them. Returns 0, or non-zero if the loop still has active handles
 * (uv_run's UV_RUN_ONCE result). */
WSEV_EXPORT int wsev_event_loop_iteration(wsev_ctx *ctx);
/* Run the loop until wsev_stop() is called (or nothing is left to do). Returns 0, or
 * WSEV_EINCALLBACK when called from inside a wsev callback. */
WSEV_EXPORT int wsev_event_loop(wsev_ctx *ctx);
/* Make wsev_event_loop() return after the current iteration. */
WSEV_EXPORT void wsev_stop(wsev_ctx *ctx);

/* The event-loop timeout in milliseconds (default 60000): event_loop_timeout fires when
 * no event was dispatched for that long. Setting it restarts the count from now; 0
 * turns it off. */
WSEV_EXPORT uint64_t wsev_get_timeout(const wsev_ctx *ctx);
WSEV_EXPORT int wsev_set_timeout(wsev_ctx *ctx, uint64_t timeout_ms);

/* ==== listening ========================================================================= */

/*
 * Listen for WebSocket clients on every interface (IPv6 and IPv4 where available) at
 * `port`, a decimal string ("9000"; "0" picks a free port). May be called many times
 * for several ports. Returns the bound port (> 0), or WSEV_EBADPORT for a malformed
 * port string, UV_EINVAL (the context is shutting down), or a libuv error such as
 * UV_EADDRINUSE or UV_EACCES. Nothing is logged.
 */
WSEV_EXPORT int wsev_listen_and_serve(wsev_ctx *ctx, const char *port);
/* The same, bound to one address (an IPv4 or IPv6 literal, e.g. "127.0.0.1"). */
WSEV_EXPORT int wsev_listen_and_serve_addr(wsev_ctx *ctx, const char *host, const char *port);

/*
 * Listen for wss:// clients (WebSocket over TLS) at `port`, as wsev_listen_and_serve
 * does for ws://. cert_file is a PEM certificate chain (the server's certificate
 * first, then any intermediates); key_file its PEM private key (RSA or ECDSA, not
 * encrypted). Both are read and checked now, once for this listener (the files are
 * not read again): returns the bound port, or WSEV_ETLSCERT, WSEV_ETLSKEY,
 * WSEV_ETLSKEYMISMATCH (a key that is not the certificate's), WSEV_EBADPORT or a libuv
 * error. TLS 1.2 or later, forward-secret AEAD cipher suites only, ALPN "http/1.1".
 * Session tickets are issued (keys per listener, rotated hourly) so returning clients
 * resume without a key exchange. A TLS connection is the same to the application as a
 * plain one (same callbacks and ordering; a close sends close_notify). A failed or
 * stalled TLS handshake (handshake timeout) costs that connection only and is never
 * reported.
 */
WSEV_EXPORT int wsev_listen_and_serve_tls(wsev_ctx *ctx, const char *port, const char *cert_file,
                                          const char *key_file);
/* The same, bound to one address. */
WSEV_EXPORT int wsev_listen_and_serve_tls_addr(wsev_ctx *ctx, const char *host, const char *port,
                                               const char *cert_file, const char *key_file);

/*
 * The general form, for everything above and for deployments: a Unix domain socket,
 * several certificates chosen by SNI, and the client address a reverse proxy reports.
 */
typedef struct {
  const char *cert_file; /* PEM chain: the certificate first, then any intermediates */
  const char *key_file;  /* its PEM private key */
} wsev_tls_cert;

/* What a listener believes of the peer that connects to it (a reverse proxy). Trust
 * nothing (0) unless only that proxy can reach the listener: anyone else could claim
 * any address. What is believed goes into wsev_conn_info.client_addr. */
/* Every connection starts with a PROXY protocol header, version 1 or 2 (HAProxy's
 * send-proxy / send-proxy-v2), before TLS or HTTP. A connection without a valid one
 * is closed without an answer (one that stops in the middle, at the handshake
 * timeout); a LOCAL header (the proxy's own health check) or an UNKNOWN one keeps the
 * socket's peer as the client. */
#define WSEV_TRUST_PROXY_PROTOCOL 1u
/* The upgrade request's Forwarded header (RFC 7239) names the client: the `for` of its
 * last element, the one the proxy in front of us appended (earlier ones come from
 * further away and are not believed). A missing, "unknown" or obfuscated value keeps
 * the socket's peer (or the PROXY header's address). */
#define WSEV_TRUST_FORWARDED 2u
/* The same with X-Forwarded-For's last entry (nginx's $proxy_add_x_forwarded_for,
 * HAProxy's option forwardfor). Trust only the header your proxy sets: a client may
 * send the other one itself. With both trusted, a Forwarded header wins. */
#define WSEV_TRUST_X_FORWARDED_FOR 4u

typedef struct {
  const char *host;            /* an IPv4 or IPv6 literal to bind; NULL: every interface */
  const char *port;            /* "9000"; "0" picks a free port (TCP only) */
  const char *unix_path;       /* listen on this Unix domain socket instead (host and port
                                  unused): at most 107 bytes. A socket file left there
                                  by a process that is gone is replaced; a live one gives
                                  UV_EADDRINUSE, any other file UV_EEXIST. The file is
                                  removed when the listener closes (wsev_shutdown,
                                  wsev_ctx_free) if it is still ours. */
  unsigned unix_mode;          /* permission bits for the socket file (e.g. 0660 for a
                                  proxy in the same group); 0: as the umask leaves them */
  const wsev_tls_cert *certs;  /* wss: the certificates; certs[0] is the default, the
                                  others are chosen by the client's SNI against their
                                  names (subjectAltName DNS names, or the CN without
                                  them; "*.example.com" matches one label) */
  size_t cert_count;           /* 0: plain ws */
  unsigned trust;              /* WSEV_TRUST_* flags; 0 (the default) trusts nothing */
} wsev_listen_options;

/*
 * Listen as `options` say. Returns a listener id (> 0) for wsev_set_listener_certs and
 * puts the bound TCP port (0 for a Unix socket) in *bound_port (optional); or the
 * errors of the functions above (WSEV_ETLSCERT, WSEV_ETLSKEY, WSEV_ETLSKEYMISMATCH
 * name the first pair that failed to load), UV_EINVAL (no port and no path, a path too
 * long, unknown trust bits), UV_EADDRINUSE, UV_EEXIST. With I/O threads each thread
 * accepts on the same Unix socket (the kernel wakes one).
 */
WSEV_EXPORT int wsev_listen(wsev_ctx *ctx, const wsev_listen_options *options, int *bound_port);

/*
 * Replace a TLS listener's certificates (renewed ones, names added) without a restart:
 * every file is read and checked now; new handshakes use the new set, open
 * connections go on with theirs, and session tickets issued before still resume. A
 * set that does not load is refused with the same errors as wsev_listen, and the old
 * one stays. Returns 0, UV_ENOENT (no such listener, or not a TLS one), UV_EINVAL.
 */
WSEV_EXPORT int wsev_set_listener_certs(wsev_ctx *ctx, int listener, const wsev_tls_cert *certs,
                                        size_t count);

/* ==== compression (permessage-deflate, RFC 7692) ===========================================
 *
 * Off by default. With wsev_set_deflate, a listener accepts the first permessage-deflate
 * offer of a client it can honour (every browser offers it), and messages of at least
 * `threshold` bytes are then compressed both ways; connections we open offer it when
 * their wsev_client_options.deflate says so. Nothing changes for the application:
 * messages arrive inflated (and checked as UTF-8 if text), writes are compressed on
 * the way out. wsev_get_conn_info says what each peer agreed to.
 *
 * Memory modes (x86_64, zlib 1.2.13, libdeflate 1.14; per connection measured by
 * scripts/bench-deflate.sh --memory-only):
 * - WSEV_DEFLATE_SHARED: no context takeover either way (our answer says
 *   server_no_context_takeover and client_no_context_takeover), so every message
 *   is compressed and inflated on its own with the loop's streams (one set per I/O
 *   thread), reset after each: nothing per connection but a 56-byte record. Once
 *   per loop: the compressor (where the build has libdeflate, its one-call
 *   compressor, about 660 KiB at level 6 and 200 KiB at level 1, allocated by
 *   libdeflate with malloc; with zlib alone, or for a message larger than a window
 *   a peer limited, a zlib compressor per window size, about 256 KiB at window 15 /
 *   mem_level 8), and the inflater (about 40 KiB). A broadcast is compressed once
 *   per window size, not once per recipient.
 * - WSEV_DEFLATE_DEDICATED: each connection keeps its context where the peer allows
 *   (better compression of similar messages), in a compressor and an inflater of
 *   its own, made at its first compressed message in each direction: about
 *   2^(window_bits+2) + 2^(mem_level+9) bytes for the compressor (256 KiB at 15 and
 *   8, 3 KiB at 9 and 1), and 7 KiB + 2^window_bits for the inflater (when the peer
 *   allowed a smaller window: the client_max_window_bits a client offered, or the
 *   server_max_window_bits a server answered; else 32 KiB). A peer that asks for
 *   no context in one direction gets the shared streams in that direction.
 *
 * Safety: a compressed message is inflated only up to the maximum message size; a
 * byte more fails the connection with 1009 at once (a "zip bomb" costs no more than
 * a message of the maximum size would: its buffer, grown as it fills, at most about
 * 2.5 times the maximum while it is copied, for that moment). Data that does not
 * inflate, or a frame with RSV1 where it may not be (a continuation, a control frame,
 * no extension agreed), fails the connection: 1007 and 1002. zlib allocates through
 * wsev's allocator (libdeflate's compressor, one per loop, uses malloc); without
 * memory, only the connection that needed it fails (1011). Safari 15.0 to 15.3,
 * whose permessage-deflate is broken, is never offered it (by its User-Agent).
 */
typedef enum {
  WSEV_DEFLATE_OFF = 0,       /* never compress; decline every offer (the default) */
  WSEV_DEFLATE_SHARED = 1,    /* no context takeover: no memory per connection */
  WSEV_DEFLATE_DEDICATED = 2, /* context takeover where the peer allows it */
} wsev_deflate_mode;

typedef struct {
  wsev_deflate_mode mode;
  int level;        /* zlib's level, 1 (fastest) to 9 (smallest); 0: 6 */
  int window_bits;  /* our compressor's window, 9..15 (512 B..32 KiB); dedicated mode
                       also asks the peer for it where the peer allows; 0: 15 */
  int mem_level;    /* zlib's memLevel for our compressors, 1..9; 0: 8 */
  size_t threshold; /* messages shorter than this go uncompressed; 0: 128 */
} wsev_deflate_options;

/* Compression for the connections accepted from now on (NULL: off). The options are
 * copied. Returns 0, UV_EINVAL (a value out of range), or UV_ENOTSUP (built without
 * zlib, and options not off). */
WSEV_EXPORT int wsev_set_deflate(wsev_ctx *ctx, const wsev_deflate_options *options);
/* The options in effect (every default filled in), into *options (required). */
WSEV_EXPORT int wsev_get_deflate(const wsev_ctx *ctx, wsev_deflate_options *options);

/* ==== connections we open ================================================================
 *
 * wsev_add_conn dials a WebSocket server and puts the connection into the same
 * serialized stream as accepted ones. The id is returned at once; conn_accepted follows
 * when the server's 101 response has been verified, and conn_closed follows in every
 * case, exactly once: after a normal close, or when the connection could not be opened.
 * Inside that conn_closed, wsev_get_close_info tells why (its `error`: a DNS error such
 * as UV_EAI_NONAME, a connect error such as UV_ECONNREFUSED, UV_ETIMEDOUT, WSEV_ETLS,
 * WSEV_ETLSVERIFY, WSEV_EHANDSHAKE, WSEV_EPROXY or WSEV_EPROXYAUTH (below), or
 * UV_ECANCELED for wsev_close or wsev_shutdown before it opened; details in `reason`).
 * Messages written before the connection is
 * open are queued and sent once it opens (wsev_broadcast too); beyond the send limit
 * the write returns WSEV_EBACKPRESSURE and the connection is abandoned (conn_closed
 * with that error). Frames we send are masked with fresh random keys; the server's
 * frames are checked as strictly as a client's (masked ones fail the connection with
 * 1002). For an IP literal the certificate must name that address (iPAddress
 * subjectAltName), and no SNI is sent.
 *
 * Names with several addresses (Happy Eyeballs, RFC 8305 sections 4 and 5): the
 * addresses are tried in the resolver's order (RFC 6724's, IPv6 first where it is
 * routable) with the two families interleaved; while an attempt has not connected
 * after happy_eyeballs_delay_ms the next one starts alongside it, and a failed attempt
 * starts the next at once. The first to connect is used and the others are closed;
 * when every one fails, the reason names the last error. A name with one address is
 * dialled directly.
 *
 * Unix domain sockets: "ws+unix:/path/to.sock:/request?query" (Node ws's form; also
 * "ws+unix:///path/to.sock"), or "wss+unix:..." over TLS, dials that socket. The
 * socket path runs to the first ':' (so it cannot contain one; at most 107 bytes, no
 * '?' or '#', taken as it is without percent-decoding, relative to the working
 * directory unless it starts with '/'); the request path after the ':' defaults to
 * "/". The Host header is "localhost". For wss+unix the server is taken to be named
 * "localhost": that is the SNI sent and the name its certificate must have (unless
 * `insecure`). wsev_get_conn_info's `peer` is AF_UNIX with the socket's path.
 *
 * HTTP proxies (`proxy`): the proxy's name is resolved and dialled as above, a
 * "CONNECT host:port HTTP/1.1" for the URL's host and port is sent (with
 * "Proxy-Authorization: Basic" when the proxy URL has credentials: they cross the
 * network to the proxy in clear text), and a 2xx answer opens the tunnel; TLS (SNI
 * and verification against the URL's host, as without a proxy) and the upgrade go
 * through it, and bytes the proxy sent behind its answer are the server's. The
 * answer's head is bounded by the maximum header size (wsev_set_max_header_size).
 * connect_timeout_ms covers the tunnel too. Failures, in the close info:
 * - WSEV_EPROXYAUTH: the proxy answered 407 (no credentials, or wrong ones), or 401
 *   (tinyproxy's answer to wrong ones);
 * - WSEV_EPROXY: any other status ("proxy refused the tunnel: 403 Forbidden"), the
 *   proxy closed the connection or failed it before answering, or its answer was not
 *   HTTP/1.x or was too long (the reason says which);
 * - the proxy could not be resolved or reached: the error as without a proxy
 *   (UV_ECONNREFUSED, ...), with a reason naming the proxy ("cannot connect to proxy
 *   HOST port N: ...").
 * A ws+unix or wss+unix URL never goes through the proxy.
 */
typedef struct {
  const char *origin;           /* the Origin header to send, or NULL for none */
  const char *const *protocols; /* subprotocols to offer, NULL-terminated, or NULL */
  const char *headers;          /* extra request header lines, each "Name: value\r\n" */
  const char *ca_file;          /* wss: PEM file of trusted CAs; NULL: the system's */
  int insecure;                 /* wss: 1 skips certificate and host name checks */
  uint64_t connect_timeout_ms;  /* name lookup, connect, TLS and upgrade; 0: the
                                   handshake timeout (10 s by default) */
  void *data;                   /* the connection's data (wsev_get_conn_data) */
  const wsev_deflate_options *deflate; /* offer permessage-deflate with these options
                                          (NULL or mode off: do not) */
  const char *proxy;            /* an HTTP proxy to tunnel through with CONNECT, for ws and
                                   wss alike, or NULL: "http://[user[:password]@]host
                                   [:port][/]" (host as in the URL; port default 80, the
                                   http scheme's, so give the proxy's own, e.g. 3128;
                                   user and password percent-decoded, "%40" for '@';
                                   no https:// proxies). The library reads no
                                   environment: http_proxy, https_proxy and no_proxy
                                   are the application's to honour (wsev-client does) */
  uint64_t happy_eyeballs_delay_ms; /* a name with several addresses: start the next
                                       attempt after this long without waiting for the
                                       last to fail (RFC 8305); 0: 250 ms; UINT64_MAX:
                                       no racing, each address only after the last
                                       failed */
} wsev_client_options;

/*
 * Open a connection to `url`: "ws://" or "wss://", then a host name, an IPv4 literal
 * or a bracketed IPv6 literal ("[::1]"), an optional ":port" (default 80 / 443), and
 * an optional path and query ("/chat?room=1"; no fragment); or a Unix socket's
 * "ws+unix:" / "wss+unix:" URL (above). Names are resolved without blocking the loop
 * and their addresses raced as above. options is optional; it and
 * every string it points to are only read during this call (the strings are copied or
 * used at once), and `data` is stored as the connection's data. For wss, the server's
 * certificate is verified against options->ca_file or the system's CA bundle and must
 * be for the URL's host (sent as SNI), unless options->insecure. The context remembers
 * the last TLS session with each of the last 8 servers (per ca_file/insecure setting)
 * and offers it to resume, which skips the key exchange (wsev_conn_info.tls_resumed).
 * Returns 0 and the new connection's id in *id, or WSEV_EBADURL (the URL, or the
 * proxy's URL, does not parse), WSEV_ETLSCA (ca_file cannot be loaded), UV_EINVAL (a
 * subprotocol that is not a token, malformed extra headers, a context shutting down),
 * UV_ENOMEM.
 */
WSEV_EXPORT int wsev_add_conn(wsev_ctx *ctx, const char *url, const wsev_client_options *options,
                              uint64_t *id);

/*
 * Hand over a connected TCP socket on which nothing was read or written yet; from now
 * on the library owns it (and closes it), unless an error is returned.
 * - url NULL: a server-side connection, exactly like one accepted by a plain listener
 *   (its upgrade request is read next; conn_accepted follows). *id (optional) is set
 *   to 0: the id comes with conn_accepted.
 * - url given: a client-side connection, like wsev_add_conn but without the name
 *   lookup and the connect: the URL's host, port and path go into the request (and
 *   SNI and the certificate check for wss). *id (optional) is set as by wsev_add_conn.
 *   With options->proxy the socket is taken to be connected to that proxy: the
 *   CONNECT is sent on it first. A Unix socket may be handed over too.
 * Returns 0, WSEV_EBADURL, WSEV_ETLSCA, UV_EINVAL, UV_ENOMEM or a libuv error from
 * opening the socket. (A libuv handle is handed over by duplicating its fd and
 * closing the handle.)
 */
WSEV_EXPORT int wsev_adopt_socket(wsev_ctx *ctx, uv_os_sock_t sock, const char *url,
                                  const wsev_client_options *options, uint64_t *id);

/* ==== messages ========================================================================== */

/*
 * Send a binary (wsev_write) or text (wsev_write_text) message. The bytes are copied
 * and queued; all messages queued for a connection during one loop iteration go out
 * together at the end of it, in order, in one system call where the kernel takes
 * them; with permessage-deflate agreed, compressed first (see "compression"). Text
 * must be valid UTF-8 (not checked: it is the application's). Returns 0,
 * WSEV_ENOCONN (unknown or closed id), WSEV_ECLOSING (a close was started),
 * WSEV_EBACKPRESSURE (see wsev_set_send_limits: the connection is now closing, or for
 * one of ours not open yet, abandoned), WSEV_EMSGSIZE (len too large to frame), or
 * UV_ENOMEM (this message only; the connection goes on). A failed write queues nothing.
 */
WSEV_EXPORT int wsev_write(wsev_ctx *ctx, uint64_t id, const void *data, size_t len);
WSEV_EXPORT int wsev_write_text(wsev_ctx *ctx, uint64_t id, const char *text, size_t len);
/* The same by `type`, with flags: WSEV_SEND_UNCOMPRESSED sends this message
 * uncompressed whatever was agreed (data that is compressed already). */
#define WSEV_SEND_UNCOMPRESSED 1u
WSEV_EXPORT int wsev_send(wsev_ctx *ctx, uint64_t id, const void *data, size_t len,
                          wsev_msg_type type, unsigned flags);

/*
 * Send one message to many connections (a publish to subscribers): framed once, and
 * above 1 KiB the framed bytes are shared by every recipient's queue (counted
 * references) instead of copied. Unknown or closing ids are skipped; a recipient over
 * its send limit is closed with 1008 as with wsev_write. With permessage-deflate, the
 * message is compressed once per window size for the recipients that compress without
 * context (shared too), and for each of the others on its own. Returns how many
 * recipients the message was queued for, or UV_EINVAL / UV_ENOMEM (then nobody got it).
 */
WSEV_EXPORT int wsev_broadcast(wsev_ctx *ctx, const uint64_t *ids, size_t count, const void *data,
                               size_t len, wsev_msg_type type);

/* Bytes queued for `id` that the kernel has not accepted yet (0 for unknown ids). */
WSEV_EXPORT size_t wsev_get_buffered_amount(const wsev_ctx *ctx, uint64_t id);

/* ==== topics ==============================================================================
 *
 * Named groups of connections to publish to. A connection subscribes to any number of
 * topics; wsev_publish sends one message to every subscriber of a topic, framed once
 * and shared as wsev_broadcast does (it is one wsev_broadcast over the topic's
 * subscriber array, so with I/O threads it takes their shared-frame path unchanged).
 * A connection leaves all its topics by itself right after its conn_closed returns.
 * Subscribe, unsubscribe, and the cost per subscriber of a publish are O(1); a closing
 * connection leaves in O(its topics). Memory (x86_64, glibc, measured by
 * test-topic --memory): 73 bytes per subscription, plus about 215 bytes per topic
 * and a few dozen per subscribed connection; the tables go with the last one.
 *
 * Topics are the application's state: like the callbacks, they live on the context's
 * thread, so these functions may be called from any callback, with or without I/O
 * threads, and from another thread they are refused (WSEV_EWRONGTHREAD, or 0 from a
 * getter). To publish from another thread, wsev_post a function that calls
 * wsev_publish. A topic name is any 1..WSEV_TOPIC_MAX_LEN bytes (not NUL-terminated;
 * compared byte for byte) and is copied. A topic exists while it has subscribers.
 * Every function that allocates either succeeds or, failing with UV_ENOMEM, leaves
 * every subscription as it was.
 */
#define WSEV_TOPIC_MAX_LEN 4096

/* Subscribe connection `id` (open, or one of ours not open yet) to a topic. Returns 0
 * (subscribed), 1 (it already was), WSEV_ENOCONN (unknown or closed id), UV_EINVAL
 * (bad name) or UV_ENOMEM. */
WSEV_EXPORT int wsev_subscribe(wsev_ctx *ctx, uint64_t id, const char *topic, size_t topic_len);
/* Unsubscribe `id` from a topic. Returns 1 (it was subscribed), 0 (it was not, or the id
 * is unknown) or UV_EINVAL. Never allocates. */
WSEV_EXPORT int wsev_unsubscribe(wsev_ctx *ctx, uint64_t id, const char *topic, size_t topic_len);
/* Unsubscribe `id` from every topic. Returns how many it left. Never allocates. */
WSEV_EXPORT int wsev_unsubscribe_all(wsev_ctx *ctx, uint64_t id);

/*
 * Send a message to every subscriber of a topic except `except` (0: nobody is left
 * out; usually the sender's id), as wsev_broadcast would: framed once, shared above
 * 1 KiB, recipients over their send limit closed with 1008, closing ones skipped. With
 * federation (below) the message also goes to the other instances. Subscribers see
 * the messages of one publisher in the order they were published. Returns how many
 * local subscribers it was queued for (0 for a topic without any), UV_EINVAL, or
 * UV_ENOMEM (then no local subscriber got it; with I/O threads, as with
 * wsev_broadcast, those on threads it reached before memory ran out may). The bytes
 * are copied.
 */
WSEV_EXPORT int wsev_publish(wsev_ctx *ctx, const char *topic, size_t topic_len, const void *data,
                             size_t len, wsev_msg_type type, uint64_t except);

/* How many connections are subscribed to a topic (0 if none, or bad arguments). */
WSEV_EXPORT size_t wsev_get_topic_subscriber_count(const wsev_ctx *ctx, const char *topic,
                                                   size_t topic_len);
/* Copy up to `cap` of a topic's subscriber ids into `ids` (in no particular order; the
 * order changes as connections come and go). Returns the number of subscribers, which
 * may be more than cap: call with cap 0 to size the array. */
WSEV_EXPORT size_t wsev_get_topic_subscribers(const wsev_ctx *ctx, const char *topic,
                                              size_t topic_len, uint64_t *ids, size_t cap);
/* How many topics `id` is subscribed to. */
WSEV_EXPORT size_t wsev_get_subscription_count(const wsev_ctx *ctx, uint64_t id);

/* ---- federation through Redis ----------------------------------------------------------
 *
 * Several processes (instances) share their topics through a Redis server's pub/sub:
 * a wsev_publish on any instance reaches the subscribers of that topic on every
 * instance. Available when wsev was built with hiredis (meson option `redis`);
 * otherwise wsev_federate returns UV_ENOTSUP.
 *
 * - Each instance holds a Redis SUBSCRIBE only for the topics it has local subscribers
 *   for (channel "wsev:" + the topic name), on one connection; publishes go out on a
 *   second one, tagged with the instance's random id, so an instance never delivers
 *   its own publish twice (it delivered it locally at once).
 * - Both connections run on the context's loop (hiredis, non-blocking, on uv_poll
 *   handles; the name resolved with uv_getaddrinfo): Redis being slow or gone never
 *   blocks the loop. A connection that does not come up within 2 s is given up and
 *   tried again; a Redis that keeps the connection but stops answering is noticed by
 *   a PING unanswered for 3 s (sent every second), and the links are dropped and
 *   tried again. hiredis allocates with its own allocator, not wsev_replace_allocator's.
 *   Local delivery goes on meanwhile; the links reconnect with a backoff (50 ms
 *   doubling to 1 s) and, once up, SUBSCRIBE every topic that has local subscribers.
 *   At most 8 MiB of publishes wait for a slow Redis; beyond that they are dropped
 *   for the other instances (counted in wsev_fed_stats.dropped).
 * - The guarantee: while the links are up, each publish reaches each other instance
 *   exactly once, and the subscribers see one publisher's messages in order. While
 *   Redis is unreachable (and for publishes on a link that breaks before Redis took
 *   them), delivery to the other instances is at most once: those messages are lost
 *   for them, never repeated. A subscription made on one instance takes effect for the
 *   others' publishes once Redis confirmed it (a round trip), not at once.
 * - The links do not keep the loop running by themselves: after wsev_shutdown the
 *   loop ends as it would without them.
 * - on_state (optional) runs on the context's thread, serialized with the other
 *   callbacks, whenever the state changes; `reason` says why (for WSEV_FED_DOWN: the
 *   connection error, or Redis's answer such as a refused password) and is valid
 *   during the callback.
 */
typedef enum {
  WSEV_FED_OFF = 0,    /* no federation */
  WSEV_FED_CONNECTING, /* connecting (the first time, or again after a backoff) */
  WSEV_FED_UP,         /* both links up, every local topic subscribed */
  WSEV_FED_DOWN,       /* lost or refused; local delivery only, retrying */
} wsev_fed_state;
typedef void (*wsev_fed_cb)(wsev_ctx *ctx, wsev_fed_state state, const char *reason);

/* Connect the context's topics to redis://[:password@]host[:port][/db] (port 6379,
 * db 0 by default; host a name, an IPv4 literal or [IPv6]). Returns 0 (connecting
 * now; on_state tells how it goes), WSEV_EBADURL, UV_EALREADY (already federated),
 * UV_ENOTSUP (built without hiredis), UV_ENOMEM. Once per context; the links close
 * with wsev_ctx_free. */
WSEV_EXPORT int wsev_federate(wsev_ctx *ctx, const char *redis_url, wsev_fed_cb on_state);
/* The links' state, and the last reason it changed (NULL if none; valid until the next
 * change). */
WSEV_EXPORT wsev_fed_state wsev_get_fed_state(const wsev_ctx *ctx);
WSEV_EXPORT const char *wsev_get_fed_error(const wsev_ctx *ctx);
typedef struct {
  uint64_t published;  /* local publishes handed to Redis */
  uint64_t received;   /* publishes of other instances delivered here */
  uint64_t dropped;    /* publishes not sent to Redis: link down, or over the 8 MiB */
  uint64_t reconnects; /* times the links came up again after being lost */
} wsev_fed_stats;
/* Fill *stats. Returns 0, or UV_EINVAL. */
WSEV_EXPORT int wsev_get_fed_stats(const wsev_ctx *ctx, wsev_fed_stats *stats);

/* ==== closing =========================================================================== */

/*
 * Start the closing handshake: send a close frame (1000, normal closure) and stop
 * delivering that connection's messages. conn_closed fires once the peer answers with
 * its close frame (or after the close timeout). For a connection of ours that is not
 * open yet, the attempt is abandoned (conn_closed with UV_ECANCELED). Returns 0,
 * WSEV_ENOCONN, or WSEV_ECLOSING (already closing).
 */
WSEV_EXPORT int wsev_close(wsev_ctx *ctx, uint64_t id);
/* The same with a code (1000..1003, 1007..1014, 3000..4999) and a UTF-8 reason of at
 * most 123 bytes (optional: NULL or "" for none). Returns 0, WSEV_ENOCONN,
 * WSEV_ECLOSING, or UV_EINVAL (bad code or reason). */
WSEV_EXPORT int wsev_close_with(wsev_ctx *ctx, uint64_t id, unsigned code, const char *reason);

/* How a connection ended, readable inside conn_closed for that id. */
typedef struct {
  int error;        /* 0 for a WebSocket that closed or dropped; for a connection of ours
                       that never opened, why (see "connections we open") */
  unsigned code;    /* the close code: the peer's if it closed first (1005 when its close
                       frame had none), ours if we did (1000 for wsev_close, 1001
                       shutdown, 1002/1007/1009 protocol errors, 1008 backpressure), 1006
                       if the connection dropped without one */
  int by_peer;      /* 1 if the peer started the close or went away, 0 if we did */
  char reason[124]; /* the close reason, NUL-terminated UTF-8 (may be empty); with
                       `error`, a description of the failure ("HTTP 404 Not Found", the
                       certificate problem, ...) */
} wsev_close_info;
/* Fill *info. Returns 0, or WSEV_ENOCONN outside conn_closed for that id. */
WSEV_EXPORT int wsev_get_close_info(const wsev_ctx *ctx, uint64_t id, wsev_close_info *info);

/*
 * Graceful shutdown: stop listening, answer clients still upgrading with 503, abandon
 * connections of ours still opening (UV_ECANCELED), start the closing handshake
 * (1001, going away) on every open connection, and stop the loop timeout and
 * keepalive. conn_closed fires for each connection as its handshake completes;
 * whatever is still open after `timeout_ms` is dropped (its conn_closed fires then).
 * Once the last connection is gone the context holds no active handle, so
 * wsev_event_loop() (or the caller's uv_run) returns; then call wsev_ctx_free().
 * Returns 0, or UV_EINVAL if already freed. Listening and dialing fail afterwards.
 */
WSEV_EXPORT int wsev_shutdown(wsev_ctx *ctx, uint64_t timeout_ms);

/* ==== limits ==============================================================================
 * Each setter returns 0, or UV_EINVAL for a NULL context; 0 turns a limit or timer off.
 * New values apply to what happens afterwards (a handshake already waiting keeps its
 * deadline). */

/* The largest message (all fragments together): a larger one fails the connection with
 * close code 1009. Default 16 MiB. */
WSEV_EXPORT int wsev_set_max_message_size(wsev_ctx *ctx, size_t bytes);
WSEV_EXPORT size_t wsev_get_max_message_size(const wsev_ctx *ctx);
/* The largest HTTP header block (request, or the 101 for ours): a larger request gets
 * 431. Default 8 KiB. */
WSEV_EXPORT int wsev_set_max_header_size(wsev_ctx *ctx, size_t bytes);
WSEV_EXPORT size_t wsev_get_max_header_size(const wsev_ctx *ctx);
/* A client that has not completed the upgrade (ours: connect, TLS and the 101) in this
 * time is dropped. Default 10000 ms. */
WSEV_EXPORT int wsev_set_handshake_timeout(wsev_ctx *ctx, uint64_t ms);
WSEV_EXPORT uint64_t wsev_get_handshake_timeout(const wsev_ctx *ctx);
/* A peer that does not answer our close frame (or send its EOF after the close) in this
 * time is dropped. Default 5000 ms. */
WSEV_EXPORT int wsev_set_close_timeout(wsev_ctx *ctx, uint64_t ms);
WSEV_EXPORT uint64_t wsev_get_close_timeout(const wsev_ctx *ctx);

/*
 * Backpressure. wsev_write never blocks: bytes the kernel does not take wait in the
 * connection's send buffer (wsev_get_buffered_amount). If a write would take the buffer
 * over `max_buffered` bytes while bytes are already waiting, the peer is not keeping
 * up: the message is refused with WSEV_EBACKPRESSURE, the connection is closed with
 * 1008 (policy violation) and conn_closed follows, so memory stays bounded (a single
 * message larger than the limit is still accepted into an empty buffer).
 * conn_drained fires when a buffer that went above `low_water` drains to it (0: drains
 * completely). Defaults: 16 MiB and 64 KiB. max_buffered 0: no limit.
 */
WSEV_EXPORT int wsev_set_send_limits(wsev_ctx *ctx, size_t max_buffered, size_t low_water);
/* Both values, into the pointers (required). */
WSEV_EXPORT int wsev_get_send_limits(const wsev_ctx *ctx, size_t *max_buffered, size_t *low_water);

/*
 * Keepalive. An open connection from which nothing arrived for `interval_ms` is sent a
 * ping; if still nothing arrives within `timeout_ms`, the connection is dropped and
 * conn_closed fires. Traffic of the peer's making counts, so busy connections are never
 * pinged. Defaults: 30000 and 30000. interval 0: no pings; timeout 0: pings, but a
 * silent peer is never dropped.
 */
WSEV_EXPORT int wsev_set_keepalive(wsev_ctx *ctx, uint64_t interval_ms, uint64_t timeout_ms);
/* Both values, into the pointers (required). */
WSEV_EXPORT int wsev_get_keepalive(const wsev_ctx *ctx, uint64_t *interval_ms,
                                   uint64_t *timeout_ms);

/* At most `max` accepted connections at once (upgrading, open or closing); a client
 * over it gets 503 and is disconnected (over TLS it is disconnected at once, before any
 * handshake). Connections we open are not counted. Default 0: no limit. */
WSEV_EXPORT int wsev_set_max_connections(wsev_ctx *ctx, size_t max);
WSEV_EXPORT size_t wsev_get_max_connections(const wsev_ctx *ctx);

/* How long a deferred upgrade (WSEV_DEFER) may wait for its answer; then the client
 * gets 503. Default 10000 ms. */
WSEV_EXPORT int wsev_set_defer_timeout(wsev_ctx *ctx, uint64_t ms);
WSEV_EXPORT uint64_t wsev_get_defer_timeout(const wsev_ctx *ctx);

/* Replace the allocator used for all of wsev's own memory (libuv has its own:
 * uv_replace_allocator). Call it before creating any context; the functions must
 * behave like their standard counterparts, and free must accept what the others
 * return. Returns 0, or UV_EINVAL if any function is NULL. When an allocation fails,
 * only the call or the connection that needed the memory fails. */
typedef void *(*wsev_malloc_func)(size_t size);
typedef void *(*wsev_realloc_func)(void *ptr, size_t size);
typedef void *(*wsev_calloc_func)(size_t count, size_t size);
typedef void (*wsev_free_func)(void *ptr);
WSEV_EXPORT int wsev_replace_allocator(wsev_malloc_func malloc_func, wsev_realloc_func realloc_func,
                                       wsev_calloc_func calloc_func, wsev_free_func free_func);

/* ==== application control ===================================================================
 *
 * upgrade_requested: read the request with wsev_request_*, choose a subprotocol with
 * wsev_request_select_protocol, and return WSEV_ACCEPT (conn_accepted follows), a
 * status of 400..599 (the client gets it and nothing else happens), or WSEV_DEFER:
 * answer later, from any callback, with wsev_accept / wsev_reject and the id of
 * wsev_request_id; without an answer in time (wsev_set_defer_timeout) the client gets
 * 503.
 *
 * http_request: answer with wsev_respond; without an answer the client gets 404. The
 * connection is then kept alive as HTTP/1.1 says (more requests come here), or closed.
 * Requests with a body get 413 and are never passed on.
 *
 * Strings returned by wsev_request_* are valid during the callback that received `req`.
 */

/* The request target, path and query ("/chat?room=1"). */
WSEV_EXPORT const char *wsev_request_path(const wsev_request *req);
/* The method ("GET"). */
WSEV_EXPORT const char *wsev_request_method(const wsev_request *req);
/* The first value of a header, by case-insensitive name; NULL if absent. */
WSEV_EXPORT const char *wsev_request_header(const wsev_request *req, const char *name);
/* The subprotocols the client offered, in its order of preference (NULL past the end). */
WSEV_EXPORT size_t wsev_request_protocol_count(const wsev_request *req);
WSEV_EXPORT const char *wsev_request_protocol(const wsev_request *req, size_t index);
/* Select one of the offered subprotocols for the 101 response (NULL: none). Returns 0,
 * or UV_EINVAL if the client did not offer it. */
WSEV_EXPORT int wsev_request_select_protocol(wsev_request *req, const char *protocol);
/* The server name the client asked for with TLS SNI, or NULL (plain, or none). */
WSEV_EXPORT const char *wsev_request_server_name(const wsev_request *req);
/* The id the connection has if it is accepted (for WSEV_DEFER); never 0 for an upgrade
 * request. */
WSEV_EXPORT uint64_t wsev_request_id(const wsev_request *req);

/* Answer a deferred upgrade: accept with one of the offered subprotocols (NULL: none),
 * or refuse with a status of 400..599. Returns 0, WSEV_ENOCONN (unknown id, the client
 * left, or the deadline passed), or UV_EINVAL (protocol not offered, bad status). */
WSEV_EXPORT int wsev_accept(wsev_ctx *ctx, uint64_t id, const char *protocol);
WSEV_EXPORT int wsev_reject(wsev_ctx *ctx, uint64_t id, int status);

/* Answer a plain HTTP request from http_request: status, extra header lines (optional;
 * each ending in "\r\n", e.g. "Content-Type: text/plain\r\n"), and a body (copied;
 * optional when len is 0). Content-Length is added. Returns 0, UV_ENOMEM, or UV_EINVAL
 * (already answered, not an http_request, status out of 100..599). */
WSEV_EXPORT int wsev_respond(wsev_request *req, int status, const char *headers, const void *body,
                             size_t len);

/* The origin policy. Browsers send an Origin header; other clients usually do not, and
 * are not affected. A refused upgrade gets 403 and never reaches upgrade_requested.
 * wsev_allow_origin allows an origin ("https://example.com:8443": scheme, host and
 * port, compared case-insensitively; copied); once any origin is allowed, requests from
 * any other origin are refused. Returns 0 or UV_ENOMEM. With same-host enabled,
 * origins whose host[:port] equals the request's Host header pass too. */
WSEV_EXPORT int wsev_allow_origin(wsev_ctx *ctx, const char *origin);
WSEV_EXPORT int wsev_allow_same_host_origin(wsev_ctx *ctx, int enabled);

/* The application's pointer for an open connection (NULL until set; for ours, the
 * options' `data`). Readable until conn_closed for that id returns; wsev never
 * dereferences or frees it. set returns 0 or WSEV_ENOCONN. */
WSEV_EXPORT int wsev_set_conn_data(wsev_ctx *ctx, uint64_t id, void *data);
WSEV_EXPORT void *wsev_get_conn_data(const wsev_ctx *ctx, uint64_t id);

/* About an open connection. Strings are valid until its conn_closed returns. */
typedef struct {
  struct sockaddr_storage peer; /* the peer's address; over a Unix socket AF_UNIX with
                                   the socket's path (the listener's, or the one we
                                   dialled) */
  struct sockaddr_storage client_addr; /* who the client is: the address a trusted proxy
                                          reported (wsev_listen_options.trust), else
                                          `peer` */
  int forwarded;                /* 1 if client_addr came from a proxy's report */
  int peer_pid, peer_uid, peer_gid; /* Unix sockets: the peer process's credentials
                                       when it connected (SO_PEERCRED); else -1 */
  int local_port;               /* the port it connected to (0 over a Unix socket) */
  int tls;                      /* 1 over TLS */
  int client;                   /* 1 for a connection we opened, 0 for an accepted one */
  const char *path;             /* the request target of the upgrade */
  const char *protocol;         /* the selected subprotocol, or NULL */
  const char *server_name;      /* TLS: the SNI the client sent (or the host we dialled);
                                   else NULL */
  const char *tls_version;      /* TLS: "TLSv1.2" ...; else NULL */
  const char *tls_cipher;       /* TLS: the cipher suite's name; else NULL */
  int tls_resumed;              /* TLS: 1 if the handshake resumed an earlier session (a
                                   session ticket: listeners issue them, and a context
                                   offers a server its last session) */
  struct {
    int on;            /* 1 if permessage-deflate was agreed */
    int our_window;    /* window bits we compress with (8: we never compress) */
    int peer_window;   /* window bits the peer compresses with (8..15) */
    int our_takeover;  /* 1: our compressor keeps its context between messages */
    int peer_takeover; /* 1: the peer's does (then we keep an inflater per connection) */
  } deflate;
} wsev_conn_info;
/* Fill *info. Returns 0, WSEV_ENOCONN, or a libuv error reading the addresses. */
WSEV_EXPORT int wsev_get_conn_info(const wsev_ctx *ctx, uint64_t id, wsev_conn_info *info);

/* ==== I/O threads ===========================================================================
 *
 * By default (0 I/O threads) all network work runs on the context's loop. With N >= 1,
 * N threads each run a loop of their own and own a share of the connections for their
 * whole life: accept (every thread listens on the same port with SO_REUSEPORT, so the
 * kernel spreads new connections over them without a hand-off), dial, TLS, the
 * upgrade, framing, UTF-8, pings, closes, deadlines, keepalive and corked writes. The
 * application's callbacks still run on the context's thread, one at a time, with every
 * guarantee at the top of this file; a message is copied once, from its thread to the
 * application. Writes, closes and broadcasts made from the callbacks of one batch of
 * events reach the owning thread together at the batch's end, and leave in one writev
 * there. A connection's
 * reaction to later input (a pong, the close handshake, a protocol failure, the peer's
 * EOF) waits until the application has finished the messages before it, so that its
 * replies to them go out first, as inline; max_connections counts the connections of
 * all threads. What differs:
 * - wsev_get_buffered_amount is approximate: what the connection's thread last
 *   reported queued (after each write it received and each flush) plus the writes on
 *   their way to it; a write may be counted twice for a moment, never not at all. The
 *   send limit and conn_drained work from that sum: wsev_write returns
 *   WSEV_EBACKPRESSURE (and the connection closes with 1008, or one of ours that is not
 *   open yet is abandoned) when it would take the sum over max_buffered, and the thread
 *   also enforces the limit on its own queue;
 * - a write that cannot be handed to its thread for want of memory returns UV_ENOMEM
 *   and fails the connection with 1011 (its peer would get the later messages without
 *   this one), and so does a write or a broadcast's frame that its thread has no
 *   memory to queue (or to compress) after wsev_write returned 0; wsev_close without memory for the hand-off still closes, without the
 *   reason;
 * - the context's loop keeps running until wsev_shutdown has closed every connection
 *   on every thread (or until wsev_stop), even without listeners;
 * - upgrade_requested and http_request get a copy of the request made on its thread,
 *   and the thread waits for the answer (the deferred-upgrade deadline applies to both).
 * The threads of a TLS listener share its session-ticket keys, so a returning client
 * resumes on whichever thread the kernel gives it, and the threads share the sessions
 * of wss connections we open, so the next one to that server resumes on any thread.
 */
/* Start `count` I/O threads. Only before the first listen, dial or adopted socket, and
 * once. Returns 0, UV_EINVAL (too late, count over 1024), UV_ENOMEM, or an error from
 * creating the threads. */
WSEV_EXPORT int wsev_set_io_threads(wsev_ctx *ctx, unsigned count);
WSEV_EXPORT unsigned wsev_get_io_threads(const wsev_ctx *ctx);

/* ==== other threads =======================================================================
 *
 * These three may be called from any thread, at any time until wsev_ctx_free is
 * called (no call may race with wsev_ctx_free itself). Each queues its work and wakes
 * the context's loop without blocking on it; there the work runs inside the serialized
 * stream, like a callback, in the order each thread posted it, and a burst costs one
 * wakeup. Work still queued when the context is freed is dropped (fn is not called).
 * If other threads post, an allocator given to wsev_replace_allocator must be
 * thread-safe.
 */
typedef void (*wsev_post_fn)(wsev_ctx *ctx, void *arg);
/* Run fn(ctx, arg) on the context's thread, as a callback: it may call anything a
 * callback may. Returns 0 (queued), UV_EINVAL (NULL ctx or fn) or UV_ENOMEM. */
WSEV_EXPORT int wsev_post(wsev_ctx *ctx, wsev_post_fn fn, void *arg);
/* Copy the message and send it to `id` as wsev_write / wsev_write_text would (by
 * `type`). An id that is unknown or closed by then is skipped: the copy is freed and
 * nothing is sent. Returns 0 (queued), UV_EINVAL or UV_ENOMEM. */
WSEV_EXPORT int wsev_post_write(wsev_ctx *ctx, uint64_t id, const void *data, size_t len,
                                wsev_msg_type type);
/* Copy the ids and the message and send it as wsev_broadcast would. Returns 0
 * (queued), UV_EINVAL or UV_ENOMEM. */
WSEV_EXPORT int wsev_post_broadcast(wsev_ctx *ctx, const uint64_t *ids, size_t count,
                                    const void *data, size_t len, wsev_msg_type type);

/* ==== errors ============================================================================= */

/* wsev's own error codes, in a range far from libuv's (which are negated errnos and
 * small negative numbers above -4096). */
#define WSEV_ERRNO_MAP(XX)                                                                         \
  XX(ENOCONN, -30001, "no such connection (it closed, or never existed)")                          \
  XX(ECLOSING, -30002, "connection is closing")                                                    \
  XX(EMSGSIZE, -30003, "message larger than the configured maximum")                               \
  XX(EBADPORT, -30004, "invalid port string")                                                      \
  XX(EINCALLBACK, -30005, "not allowed from inside a wsev callback")                               \
  XX(EBACKPRESSURE, -30006, "send buffer limit reached: the connection is closing (1008)")         \
  XX(ETLSCERT, -30007, "cannot load the TLS certificate chain (missing, unreadable or not PEM)")   \
  XX(ETLSKEY, -30008, "cannot load the TLS private key (missing, unreadable, encrypted or bad)")   \
  XX(ETLSKEYMISMATCH, -30009, "the TLS private key does not match the certificate")                \
  XX(ETLSCA, -30010, "cannot load the CA certificates to verify servers with")                     \
  XX(EBADURL, -30011, "invalid WebSocket URL (ws://host[:port][/path] or wss://...)")              \
  XX(ETLS, -30012, "TLS handshake failed")                                                         \
  XX(ETLSVERIFY, -30013, "the server's certificate was not trusted or not for that host")          \
  XX(EHANDSHAKE, -30014, "the server did not accept the WebSocket upgrade")                        \
  XX(EWRONGTHREAD, -30015, "called from a thread other than the context's")                    \
  XX(EPROXY, -30016, "the HTTP proxy did not open a tunnel to the server")                         \
  XX(EPROXYAUTH, -30017, "the HTTP proxy wants (other) credentials (407, or 401)")

typedef enum {
#define WSEV_ERRNO_ENUM(name, value, text) WSEV_##name = value,
  WSEV_ERRNO_MAP(WSEV_ERRNO_ENUM)
#undef WSEV_ERRNO_ENUM
} wsev_errno;

/* A human-readable description of any error code returned by this API (wsev's own or
 * libuv's). Never NULL; the string is static (for a code neither knows, it is valid
 * until the next call of these two functions). */
WSEV_EXPORT const char *wsev_strerror(int err);
/* The symbolic name of an error code ("WSEV_ENOCONN", "EADDRINUSE", ...). */
WSEV_EXPORT const char *wsev_err_name(int err);

/* ==== names of earlier versions ===========================================================
 * Kept so that code written against 0.1 compiles unchanged; new code uses the names
 * above. (One difference: in 0.1 some setters treated 0 as "unchanged".) */
#ifndef WSEV_NO_COMPAT_NAMES
#define wsev_ctx_data wsev_get_ctx_data
#define wsev_ctx_set_data wsev_set_ctx_data
#define wsev_ctx_loop wsev_get_loop
#define wsev_conn_data wsev_get_conn_data
#define wsev_buffered_amount wsev_get_buffered_amount
#endif

#ifdef __cplusplus
}
#endif
#endif /* WSEV_H */
