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
 * The channels are wsev's topics (wsev_subscribe, wsev_publish): the library keeps
 * who is subscribed to what, frames each publish once, and drops a closed
 * connection's subscriptions by itself. With --redis URL several instances share
 * their channels through Redis (wsev_federate): a publish on one reaches the
 * subscribers on all of them.
 *
 * A plain `GET /` (no WebSocket upgrade) answers a small page that connects back to
 * this server and lets a browser subscribe, publish and watch messages arrive.
 *
 * Usage: wsev-pubsub [--port N] [--tls-port N] [--cert F] [--key F] [--no-tls]
 *                    [--quiet] [--max-buffered BYTES] [--io-threads N] [--redis URL]
 *                    [--deflate=shared|dedicated|off] [--deflate-level N] ...
 * Serves ws on --port (9000) and, like the original, wss on --tls-port (9001) with
 * localhost.crt / localhost.key from the current directory (or --cert / --key); if
 * those files are absent it says how to make them and serves ws only. Messages are
 * compressed (permessage-deflate, shared mode: no memory per connection) for every
 * client that offers it, as browsers do; --deflate=off turns that off.
 */
#include <wsev.h>

#include "deflate_options.h"
#include "deploy_options.h"

#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

typedef struct {
  bool quiet;
  /* With --redis or --measure-lag: the longest the loop went without running a 1 ms timer, beyond its
   * period (GET /stats), to show that Redis never stalls the loop. */
  uv_timer_t lag_timer;
  uint64_t lag_last_ns, lag_max_ns;
} pubsub;

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
  return len > 0 && len <= WSEV_TOPIC_MAX_LEN && memchr(name, ':', len) == NULL;
}

static void handle_command(wsev_ctx *ctx, pubsub *ps, uint64_t id, const char *msg, size_t len,
                           wsev_msg_type type) {
  static const char unsubscribe_all_cmd[] = "unsubscribe-all";
  const char *arg, *colon;
  size_t arg_len;

  (void)ps;
  if (strip_prefix(msg, len, "subscribe:", &arg, &arg_len) && valid_channel_name(arg, arg_len)) {
    int rc = wsev_subscribe(ctx, id, arg, arg_len); /* 1: it already was */
    reply(ctx, id, rc >= 0 ? "OK" : rc == UV_ENOMEM ? "Out of memory" : "Invalid message");
  } else if (strip_prefix(msg, len, "unsubscribe:", &arg, &arg_len) &&
             valid_channel_name(arg, arg_len)) {
    wsev_unsubscribe(ctx, id, arg, arg_len);
    reply(ctx, id, "OK");
  } else if (len == sizeof unsubscribe_all_cmd - 1 && memcmp(msg, unsubscribe_all_cmd, len) == 0) {
    wsev_unsubscribe_all(ctx, id);
    reply(ctx, id, "OK");
  } else if (strip_prefix(msg, len, "publish:", &arg, &arg_len) &&
             (colon = memchr(arg, ':', arg_len)) != NULL && colon > arg &&
             (size_t)(colon - arg) <= WSEV_TOPIC_MAX_LEN) {
    /* publish:CH:BODY -- CH ends at the first colon, BODY is everything after it. */
    size_t name_len = (size_t)(colon - arg);
    reply(ctx, id, "OK");
    /* Framed once (and, for large bodies, shared by all the queues); the publisher
     * gets it too if it is subscribed (except 0). With --redis, the other instances'
     * subscribers get it as well. */
    wsev_publish(ctx, arg, name_len, colon + 1, arg_len - name_len - 1, type, 0);
  } else {
    reply(ctx, id, "Invalid message");
  }
}

/* ---------------------------------------------------------------------------------
 * wsev callbacks
 */

static void on_conn_accepted(wsev_ctx *ctx, uint64_t id) {
  pubsub *ps = wsev_get_ctx_data(ctx);
  wsev_conn_info info;
  char client[128];
  if (!ps->quiet) {
    /* The client's address is what a trusted proxy said, when one did. */
    if (wsev_get_conn_info(ctx, id, &info) == 0)
      printf("Accepted connection %" PRIu64 " from %s\n", id,
             deploy_address(&info.client_addr, client, sizeof client));
    else
      printf("Accepted connection %" PRIu64 "\n", id);
    fflush(stdout);
  }
}

/* Its subscriptions go by themselves once this returns. */
static void on_conn_closed(wsev_ctx *ctx, uint64_t id) {
  pubsub *ps = wsev_get_ctx_data(ctx);
  if (!ps->quiet) {
    printf("Closed connection %" PRIu64 "\n", id);
    fflush(stdout);
  }
}

static void on_message_received(wsev_ctx *ctx, uint64_t id, const void *data, size_t len,
                                wsev_msg_type type) {
  pubsub *ps = wsev_get_ctx_data(ctx);
  const char *msg = len > 0 ? data : ""; /* data may be NULL when len is 0 */

  if (!ps->quiet) {
    if (type == WSEV_TEXT)
      printf("Message from %" PRIu64 ": %.*s\n", id, (int)(len > 100 ? 100 : len), msg);
    else
      printf("Message from %" PRIu64 ": [binary, %zu bytes]\n", id, len);
    fflush(stdout);
  }
  handle_command(ctx, ps, id, msg, len, type);
}

/* ---------------------------------------------------------------------------------
 * The page: GET / answers a self-contained page (no external assets) that connects
 * back to the same server (ws or wss, as it was loaded), subscribes, publishes and
 * lists what arrives.
 */

static const char page[] =
    "<!doctype html>\n"
    "<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
    "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\n"
    "<title>wsev pubsub</title>\n"
    "<style>\n"
    "body{font:15px system-ui,sans-serif;max-width:44em;margin:2em auto;padding:0 1em;color:#222}\n"
    "h1{font-size:1.3em}form{display:flex;gap:.5em;margin:.5em 0}input{flex:1;padding:.3em}\n"
    "#status{font-weight:bold}#status.up{color:#080}#status.down{color:#b00}\n"
    "#log{list-style:none;padding:0;font-family:monospace;border-top:1px solid #ccc}\n"
    "#log li{padding:.2em 0;border-bottom:1px solid #eee}#log .out{color:#888}\n"
    "</style></head><body>\n"
    "<h1>wsev pubsub</h1>\n"
    "<p>Connection: <span id=\"status\">connecting</span> <span id=\"url\"></span></p>\n"
    "<form id=\"subform\"><input id=\"channel\" value=\"news\" aria-label=\"channel\">\n"
    "<button id=\"subscribe\">Subscribe</button>"
    "<button id=\"unsubscribe\" type=\"button\">Unsubscribe</button></form>\n"
    "<form id=\"pubform\"><input id=\"message\" placeholder=\"message\" aria-label=\"message\">\n"
    "<button id=\"publish\">Publish</button></form>\n"
    "<ul id=\"log\"></ul>\n"
    "<script>\n"
    "'use strict';\n"
    "const $ = id => document.getElementById(id);\n"
    "const url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/';\n"
    "$('url').textContent = url;\n"
    "function log(text, cls) {\n"
    "  const li = document.createElement('li');\n"
    "  li.textContent = text;\n"
    "  if (cls) li.className = cls;\n"
    "  $('log').prepend(li);\n"
    "}\n"
    "const ws = new WebSocket(url);\n"
    "ws.onopen = () => { $('status').textContent = 'open'; $('status').className = 'up'; };\n"
    "ws.onclose = e => { $('status').textContent = 'closed (' + e.code + ')';\n"
    "  $('status').className = 'down'; };\n"
    "ws.onmessage = e => { if (e.data !== 'OK') log(typeof e.data === 'string' ? e.data\n"
    "  : '[binary]', 'in'); };\n"
    "function send(text) { if (ws.readyState === 1) { ws.send(text); log('> ' + text, 'out'); } }\n"
    "$('subform').onsubmit = e => { e.preventDefault(); send('subscribe:' + $('channel').value); };\n"
    "$('unsubscribe').onclick = () => send('unsubscribe:' + $('channel').value);\n"
    "$('pubform').onsubmit = e => { e.preventDefault();\n"
    "  send('publish:' + $('channel').value + ':' + $('message').value); $('message').value = ''; };\n"
    "</script></body></html>\n";

static void on_lag_timer(uv_timer_t *t) {
  pubsub *ps = t->data;
  uint64_t now = uv_hrtime();
  if (ps->lag_last_ns && now - ps->lag_last_ns > 1000000 &&
      now - ps->lag_last_ns - 1000000 > ps->lag_max_ns)
    ps->lag_max_ns = now - ps->lag_last_ns - 1000000;
  ps->lag_last_ns = now;
}

/* GET /stats: the Redis link and the loop's longest stall, as JSON. "?reset" starts
 * the stall measurement again after answering. */
static void answer_stats(wsev_ctx *ctx, wsev_request *req, bool reset) {
  pubsub *ps = wsev_get_ctx_data(ctx);
  static const char *names[] = {"off", "connecting", "up", "down"};
  wsev_fed_stats st;
  wsev_get_fed_stats(ctx, &st);
  const char *why = wsev_get_fed_error(ctx);
  char reason[300] = "";
  for (size_t i = 0, o = 0; why && why[i] && o + 2 < sizeof reason; i++)
    if (why[i] != '"' && why[i] != '\\' && (unsigned char)why[i] >= 32) reason[o++] = why[i];
  char body[768];
  int n = snprintf(body, sizeof body,
                   "{\"redis\":\"%s\",\"reason\":\"%s\",\"published\":%llu,"
                   "\"received\":%llu,\"dropped\":%llu,\"reconnects\":%llu,"
                   "\"max_lag_ms\":%.3f}\n",
                   names[wsev_get_fed_state(ctx)], reason, (unsigned long long)st.published,
                   (unsigned long long)st.received, (unsigned long long)st.dropped,
                   (unsigned long long)st.reconnects, ps->lag_max_ns / 1e6);
  wsev_respond(req, 200, "Content-Type: application/json\r\nCache-Control: no-store\r\n", body,
               (size_t)n);
  if (reset) ps->lag_max_ns = 0;
}

static void on_http_request(wsev_ctx *ctx, wsev_request *req) {
  const char *path = wsev_request_path(req);
  if (strcmp(wsev_request_method(req), "GET") != 0) {
    wsev_respond(req, 405, "Allow: GET\r\n", NULL, 0);
  } else if (strcmp(path, "/") == 0 || strncmp(path, "/?", 2) == 0) {
    wsev_respond(req, 200,
                 "Content-Type: text/html; charset=utf-8\r\nCache-Control: no-store\r\n"
                 "Content-Security-Policy: default-src 'none'; script-src 'unsafe-inline'; "
                 "style-src 'unsafe-inline'; connect-src 'self' ws: wss:\r\n",
                 page, sizeof page - 1);
  } else if (strcmp(path, "/stats") == 0 || strcmp(path, "/stats?reset") == 0) {
    answer_stats(ctx, req, path[6] == '?');
  } else {
    wsev_respond(req, 404, "Content-Type: text/plain\r\n", "not found\n", 10);
  }
}

/* The Redis link's state (--redis), one line per change. */
static void on_fed_state(wsev_ctx *ctx, wsev_fed_state state, const char *reason) {
  (void)ctx;
  static const char *names[] = {"off", "connecting", "up", "down"};
  fprintf(stderr, "wsev-pubsub: redis %s%s%s\n", names[state], reason ? ": " : "",
          reason ? reason : "");
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
               "                   [--no-tls] [--quiet] [--max-buffered BYTES] [--io-threads N]\n"
               "                   [--redis URL]\n"
               "  --port N   port to listen on (default 9000; 0 picks a free port)\n"
               "  --tls-port N  port to serve wss on (default 9001), with --cert and --key\n"
               "             (default localhost.crt and localhost.key); --no-tls: ws only\n"
               "  --quiet    do not log connections and messages\n"
               "  --max-buffered BYTES  close (1008) a subscriber with more than this\n"
               "             waiting to be sent (default: wsev's, 16 MiB)\n"
               "  --io-threads N  network work on N threads (default: $WSEV_IO_THREADS, else 0)\n"
               "  --redis URL  share channels with other instances through Redis:\n"
               "             redis://[:password@]host[:port][/db]\n"
               "  --measure-lag  measure the loop's longest stall (GET /stats; on with --redis)\n"
               "  --deflate=MODE permessage-deflate: shared (default), dedicated or off;\n"
               "                 --deflate-level/-window/-mem-level/-threshold N tune it\n"
               "  --unix PATH [--unix-mode OCTAL]  also serve ws on a Unix socket\n"
               "  --proxy-protocol  expect a PROXY protocol header (behind HAProxy)\n"
               "  --trust-forwarded, --trust-x-forwarded-for  believe that header (set it\n"
               "             in the proxy in front, e.g. nginx)\n"
               "  --sni-cert FILE --sni-key FILE  another certificate, chosen by SNI\n"
               "GET / answers a page to try it from a browser. SIGHUP reloads the\n"
               "certificate files.\n");
}

int main(int argc, char **argv) {
  const char *port = "9000", *tls_port = "9001";
  const char *cert = "localhost.crt", *key = "localhost.key", *redis = NULL;
  bool quiet = false, tls_asked = false, measure_lag = false;
  size_t max_buffered = 0;
  /* The tests run every suite with WSEV_IO_THREADS=2 as well; --io-threads wins. */
  const char *env_threads = getenv("WSEV_IO_THREADS");
  unsigned io_threads = env_threads ? (unsigned)strtoul(env_threads, NULL, 10) : 0;
  wsev_deflate_options deflate = {.mode = WSEV_DEFLATE_SHARED};
  int deflate_given = 0, used;
  deploy_options deploy;
  deploy_init(&deploy);

  for (int i = 1; i < argc; i++) {
    if ((used = deflate_option(argc, argv, &i, &deflate, &deflate_given)) != 0 ||
        (used = deploy_option(argc, argv, &i, &deploy)) != 0) {
      if (used < 0) {
        usage(stderr);
        return 2;
      }
    } else if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
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
    } else if (strcmp(argv[i], "--io-threads") == 0 && i + 1 < argc) {
      io_threads = (unsigned)strtoul(argv[++i], NULL, 10);
    } else if (strcmp(argv[i], "--redis") == 0 && i + 1 < argc) {
      redis = argv[++i];
      measure_lag = true;
    } else if (strcmp(argv[i], "--measure-lag") == 0) {
      measure_lag = true;
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

  if (deploy.sni_key_missing) {
    usage(stderr);
    return 2;
  }
  deploy.certs[0] = (wsev_tls_cert){cert, key};

  pubsub ps = {.quiet = quiet};
  wsev_handler handler = {
      .conn_accepted = on_conn_accepted,
      .conn_closed = on_conn_closed,
      .message_received = on_message_received,
      .http_request = on_http_request,
  };
  wsev_ctx *ctx;
  int err = wsev_ctx_new(&ctx, NULL, &handler, &ps);
  if (err < 0) {
    fprintf(stderr, "wsev-pubsub: cannot create context: %s\n", wsev_strerror(err));
    return 1;
  }

  err = deflate_from_env(&deflate, deflate_given);
  if (!err) err = wsev_set_deflate(ctx, &deflate);
  if (err == UV_ENOTSUP && !deflate_given && !getenv("WSEV_DEFLATE"))
    err = 0; /* built without zlib: compression by default only where there is one */
  if (err) {
    fprintf(stderr, "wsev-pubsub: bad deflate options\n");
    wsev_ctx_free(ctx);
    return 2;
  }
  if ((err = wsev_set_io_threads(ctx, io_threads)) != 0) {
    fprintf(stderr, "wsev-pubsub: cannot start %u I/O threads: %s\n", io_threads,
            wsev_strerror(err));
    wsev_ctx_free(ctx);
    return 1;
  }
  if (max_buffered) {
    size_t limit, low_water;
    wsev_get_send_limits(ctx, &limit, &low_water);
    wsev_set_send_limits(ctx, max_buffered, low_water);
  }
  if (redis && (err = wsev_federate(ctx, redis, on_fed_state)) != 0) {
    fprintf(stderr, "wsev-pubsub: cannot use redis %s: %s\n", redis, wsev_strerror(err));
    wsev_ctx_free(ctx);
    return 1;
  }
  int bound_port = 0;
  wsev_listen_options plain = {.port = port, .trust = deploy.trust};
  if ((err = wsev_listen(ctx, &plain, &bound_port)) < 0) {
    fprintf(stderr, "wsev-pubsub: cannot listen on port %s: %s\n", port, wsev_strerror(err));
    wsev_ctx_free(ctx);
    return 1;
  }
  if (deploy_listen_unix(ctx, &deploy, "wsev-pubsub")) {
    wsev_ctx_free(ctx);
    return 1;
  }

  int bound_tls_port = 0;
  deploy_reload reload = {ctx, 0, &deploy, "wsev-pubsub"};
  if (tls_port && !tls_asked && (access(cert, R_OK) != 0 || access(key, R_OK) != 0)) {
    fprintf(stderr,
            "wsev-pubsub: no %s / %s here, serving ws only. For wss on port %s make a\n"
            "  self-signed pair: scripts/make-cert.sh --self-signed . (or: openssl req -x509\n"
            "  -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 -subj /CN=localhost\n"
            "  -keyout localhost.key -out localhost.crt)\n",
            cert, key, tls_port);
  } else if (tls_port) {
    wsev_listen_options tls = {.port = tls_port, .trust = deploy.trust, .certs = deploy.certs,
                               .cert_count = deploy.cert_count};
    if ((reload.listener = wsev_listen(ctx, &tls, &bound_tls_port)) < 0) {
      fprintf(stderr, "wsev-pubsub: cannot listen for TLS on port %s: %s\n", tls_port,
              wsev_strerror(reload.listener));
      wsev_ctx_free(ctx);
      return 1;
    }
  }

  uv_loop_t *loop = wsev_get_loop(ctx);
  if (measure_lag) {
    uv_timer_init(loop, &ps.lag_timer);
    ps.lag_timer.data = &ps;
    uv_timer_start(&ps.lag_timer, on_lag_timer, 1, 1);
    uv_unref((uv_handle_t *)&ps.lag_timer);
  }

  /* SIGINT and SIGTERM end the loop so that everything is freed on the way out. The
   * signal handles do not keep the loop alive by themselves. */
  uv_signal_t sigint, sigterm, sighup;
  deploy_watch_sighup(&sighup, &reload); /* renewed certificates, without a restart */
  uv_signal_init(loop, &sigint);
  uv_signal_init(loop, &sigterm);
  sigint.data = sigterm.data = ctx;
  uv_signal_start(&sigint, on_signal, SIGINT);
  uv_signal_start(&sigterm, on_signal, SIGTERM);
  uv_unref((uv_handle_t *)&sigint);
  uv_unref((uv_handle_t *)&sigterm);

  printf("wsev-pubsub listening on port %d\n", bound_port);
  if (bound_tls_port) printf("wsev-pubsub listening for TLS on port %d\n", bound_tls_port);
  if (deploy.unix_path) printf("wsev-pubsub listening on unix %s\n", deploy.unix_path);
  fflush(stdout);

  wsev_event_loop(ctx);

  /* Our signal handles live on wsev's loop: close them, and let one more loop pass
   * finish the closing, before the context frees the loop. */
  uv_close((uv_handle_t *)&sigint, NULL);
  uv_close((uv_handle_t *)&sigterm, NULL);
  uv_close((uv_handle_t *)&sighup, NULL);
  if (measure_lag) uv_close((uv_handle_t *)&ps.lag_timer, NULL);
  uv_run(loop, UV_RUN_NOWAIT);

  wsev_ctx_free(ctx);
  return 0;
}
