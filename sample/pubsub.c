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
 * callback. So the whole state of the relay is one plain data structure with no
 * locks: channels.h (channel name -> subscriber ids, and id -> channels), keyed by
 * wsev's connection ids. Subscribe, unsubscribe and lookups are O(1); publish is one
 * wsev_broadcast, O(subscribers); closing a connection is O(its channels).
 *
 * Usage: wsev-pubsub [--port N] [--tls-port N] [--cert F] [--key F] [--no-tls]
 *                    [--quiet] [--max-buffered BYTES]
 * Serves ws on --port (9000) and, like the original, wss on --tls-port (9001) with
 * localhost.crt / localhost.key from the current directory (or --cert / --key); if
 * those files are absent it says how to make them and serves ws only.
 */
#include <wsev.h>

#include "channels.h"

#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

typedef struct {
  channels *channels; /* who is subscribed to what (channels.h) */
  bool quiet;
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
  return len > 0 && memchr(name, ':', len) == NULL;
}

static void handle_command(wsev_ctx *ctx, pubsub *ps, uint64_t id, const char *msg, size_t len,
                           wsev_msg_type type) {
  static const char unsubscribe_all_cmd[] = "unsubscribe-all";
  const char *arg, *colon;
  size_t arg_len;

  if (strip_prefix(msg, len, "subscribe:", &arg, &arg_len) && valid_channel_name(arg, arg_len)) {
    bool ok = channels_subscribe(ps->channels, id, arg, arg_len);
    reply(ctx, id, ok ? "OK" : "Out of memory");
  } else if (strip_prefix(msg, len, "unsubscribe:", &arg, &arg_len) &&
             valid_channel_name(arg, arg_len)) {
    channels_unsubscribe(ps->channels, id, arg, arg_len);
    reply(ctx, id, "OK");
  } else if (len == sizeof unsubscribe_all_cmd - 1 && memcmp(msg, unsubscribe_all_cmd, len) == 0) {
    channels_unsubscribe_all(ps->channels, id);
    reply(ctx, id, "OK");
  } else if (strip_prefix(msg, len, "publish:", &arg, &arg_len) &&
             (colon = memchr(arg, ':', arg_len)) != NULL && colon > arg) {
    /* publish:CH:BODY -- CH ends at the first colon, BODY is everything after it. */
    size_t name_len = (size_t)(colon - arg);
    reply(ctx, id, "OK");
    /* One wsev_broadcast: the frame is built once (and, for large bodies, shared by
     * all the queues). The subscriber table goes in as it is; its free slots hold 0,
     * which wsev_broadcast skips like any id it does not know. A subscriber that is
     * already closing is skipped too; its conn_closed will follow. */
    size_t count;
    const uint64_t *ids = channels_subscribers(ps->channels, arg, name_len, &count);
    if (count > 0) wsev_broadcast(ctx, ids, count, colon + 1, arg_len - name_len - 1, type);
  } else {
    reply(ctx, id, "Invalid message");
  }
}

/* ---------------------------------------------------------------------------------
 * wsev callbacks
 */

static void on_conn_accepted(wsev_ctx *ctx, uint64_t id) {
  pubsub *ps = wsev_get_ctx_data(ctx);
  if (!ps->quiet) {
    printf("Accepted connection %" PRIu64 "\n", id);
    fflush(stdout);
  }
}

static void on_conn_closed(wsev_ctx *ctx, uint64_t id) {
  pubsub *ps = wsev_get_ctx_data(ctx);
  channels_unsubscribe_all(ps->channels, id); /* a closed connection loses its subscriptions */
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
               "  --port N   port to listen on (default 9000; 0 picks a free port)\n"
               "  --tls-port N  port to serve wss on (default 9001), with --cert and --key\n"
               "             (default localhost.crt and localhost.key); --no-tls: ws only\n"
               "  --quiet    do not log connections and messages\n"
               "  --max-buffered BYTES  close (1008) a subscriber with more than this\n"
               "             waiting to be sent (default: wsev's, 16 MiB)\n"
               "  --io-threads N  network work on N threads (default: $WSEV_IO_THREADS, else 0)\n");
}

int main(int argc, char **argv) {
  const char *port = "9000", *tls_port = "9001";
  const char *cert = "localhost.crt", *key = "localhost.key";
  bool quiet = false, tls_asked = false;
  size_t max_buffered = 0;
  /* The tests run every suite with WSEV_IO_THREADS=2 as well; --io-threads wins. */
  const char *env_threads = getenv("WSEV_IO_THREADS");
  unsigned io_threads = env_threads ? (unsigned)strtoul(env_threads, NULL, 10) : 0;

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
    } else if (strcmp(argv[i], "--io-threads") == 0 && i + 1 < argc) {
      io_threads = (unsigned)strtoul(argv[++i], NULL, 10);
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

  pubsub ps = {.channels = channels_new(), .quiet = quiet};
  if (!ps.channels) {
    fprintf(stderr, "wsev-pubsub: out of memory\n");
    return 1;
  }
  wsev_handler handler = {
      .conn_accepted = on_conn_accepted,
      .conn_closed = on_conn_closed,
      .message_received = on_message_received,
  };
  wsev_ctx *ctx;
  int err = wsev_ctx_new(&ctx, NULL, &handler, &ps);
  if (err < 0) {
    fprintf(stderr, "wsev-pubsub: cannot create context: %s\n", wsev_strerror(err));
    channels_free(ps.channels);
    return 1;
  }

  if ((err = wsev_set_io_threads(ctx, io_threads)) != 0) {
    fprintf(stderr, "wsev-pubsub: cannot start %u I/O threads: %s\n", io_threads,
            wsev_strerror(err));
    wsev_ctx_free(ctx);
    channels_free(ps.channels);
    return 1;
  }
  if (max_buffered) {
    size_t limit, low_water;
    wsev_get_send_limits(ctx, &limit, &low_water);
    wsev_set_send_limits(ctx, max_buffered, low_water);
  }
  int bound_port = wsev_listen_and_serve(ctx, port);
  if (bound_port < 0) {
    fprintf(stderr, "wsev-pubsub: cannot listen on port %s: %s\n", port, wsev_strerror(bound_port));
    wsev_ctx_free(ctx);
    channels_free(ps.channels);
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
      channels_free(ps.channels);
      return 1;
    }
  }

  /* SIGINT and SIGTERM end the loop so that everything is freed on the way out. The
   * signal handles do not keep the loop alive by themselves. */
  uv_loop_t *loop = wsev_get_loop(ctx);
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
  channels_free(ps.channels);
  return 0;
}
