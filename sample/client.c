/* wsev-client: a tiny command-line WebSocket client (in the spirit of websocat), and
 * an example of a connection we open ourselves (wsev_add_conn) living in the same
 * event loop as anything else the application does -- here, reading stdin.
 *
 *   wsev-client URL [options]
 *     --origin O              send "Origin: O"
 *     --protocol P            offer subprotocol P (repeatable, in order of preference)
 *     --header 'Name: value'  an extra request header (repeatable)
 *     --ca FILE               wss: trust the CAs in this PEM file (default: the system's)
 *     --insecure              wss: do not verify the server's certificate or name
 *     --connect-timeout MS    limit for lookup, connect, TLS and upgrade (default 10 s)
 *     --max-message-size N    fail incoming messages over N bytes with 1009
 *     --binary                send binary messages instead of text
 *     --deflate[=shared|dedicated] and --deflate-level/-window/-mem-level/-threshold N
 *                             offer permessage-deflate (sample/deflate_options.h;
 *                             default: $WSEV_DEFLATE, else not)
 *     --proxy URL             tunnel through this HTTP proxy with CONNECT
 *                             ("http://[user:password@]host[:port]")
 *     --no-proxy              ignore the proxy environment below
 *     --happy-eyeballs-delay MS|off
 *                             a name with several addresses: start the next attempt
 *                             after MS (default 250) without waiting; off: only
 *                             after the last one failed
 *
 * Without --proxy (or --no-proxy), the proxy comes from the environment as curl reads
 * it: https_proxy or HTTPS_PROXY for wss URLs, http_proxy or HTTP_PROXY for ws URLs
 * ("http://" is assumed when the value has no scheme), unless no_proxy or NO_PROXY
 * names the host: a comma-separated list of host names (each matching itself and
 * its subdomains; a leading "." or "*." is ignored), IP literals ("::1" or
 * "[::1]"), each optionally with ":port", or "*" for every host. ws+unix URLs never
 * use a proxy.
 *
 * Every line read from stdin (without its newline) is sent as one message; lines
 * typed before the connection is open are queued by the library. Every message
 * received is written to stdout followed by a newline. At the end of stdin the
 * connection is closed with 1000 and the program exits once the close completes.
 * Status lines go to stderr:
 *   wsev-client: connected[ (protocol P)]
 *   wsev-client: deflate our_window=N peer_window=N our_takeover=0|1 peer_takeover=0|1
 *                                                when permessage-deflate was agreed
 *   wsev-client: closed CODE[ REASON]            the WebSocket closed
 *   wsev-client: failed: ERRNAME: REASON         it could not be opened
 * Exit status: 0 after a close with code 1000 (by either side), 1 otherwise, 2 for
 * usage errors (bad options, or a URL or option the library refuses). SIGINT or
 * SIGTERM close the connection (1000); a second one exits at once. */
#include <ctype.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <wsev.h>

#include "deflate_options.h"

/* Reading stdin pauses while more than this waits to be sent, and resumes on
 * conn_drained, so that a large input does not run into the send limit. */
#define PAUSE_ABOVE (4u << 20)

typedef struct {
  wsev_ctx *ctx;
  uint64_t id;
  int binary;
  int open;            /* conn_accepted seen */
  int closed;          /* conn_closed seen */
  int close_requested; /* stdin ended (or a signal came): close once open */
  int close_sent;
  int exit_status;
  size_t queued_before_open; /* bytes written before conn_accepted */

  /* stdin: a stream (pipe, socket, terminal), or a file read with uv_fs_read. */
  union {
    uv_pipe_t pipe;
    uv_tty_t tty;
    uv_tcp_t tcp;
  } in;
  uv_stream_t *stream; /* &in, or NULL in file mode */
  int stream_reading;
  int in_done; /* stdin reached its end, failed, or is no longer wanted */
  int paused;
  uv_fs_t fs_req;
  int fs_pending;
  char fs_buf[64 * 1024];

  char *line; /* the incomplete line read so far */
  size_t line_len, line_cap;

  uv_signal_t sigint, sigterm;
  int signals;
} client;

static void read_more(client *c);

static void send_line(client *c, const char *data, size_t len) {
  if (c->closed || c->close_sent) return;
  int rc =
      c->binary ? wsev_write(c->ctx, c->id, data, len) : wsev_write_text(c->ctx, c->id, data, len);
  if (rc == 0 && !c->open) c->queued_before_open += len;
  if (rc < 0) fprintf(stderr, "wsev-client: cannot send: %s\n", wsev_strerror(rc));
}

static void start_close(client *c) {
  c->close_requested = 1;
  if (!c->open || c->closed || c->close_sent) return;
  c->close_sent = 1;
  wsev_close(c->ctx, c->id);
}

/* Split what was read into lines and send each. */
static void consume(client *c, const char *data, size_t len) {
  while (len > 0) {
    const char *nl = memchr(data, '\n', len);
    size_t take = nl ? (size_t)(nl - data) : len;
    if (nl && c->line_len == 0) {
      send_line(c, data, take); /* a whole line: no copy */
    } else {
      if (c->line_len + take > c->line_cap) {
        size_t cap = c->line_cap ? c->line_cap : 4096;
        while (cap < c->line_len + take)
          cap *= 2;
        char *p = realloc(c->line, cap);
        if (!p) {
          fprintf(stderr, "wsev-client: out of memory\n");
          c->line_len = 0;
          return;
        }
        c->line = p;
        c->line_cap = cap;
      }
      memcpy(c->line + c->line_len, data, take);
      c->line_len += take;
      if (nl) {
        send_line(c, c->line, c->line_len);
        c->line_len = 0;
      }
    }
    if (!nl) break;
    data += take + 1;
    len -= take + 1;
  }
}

static int should_pause(client *c) {
  if (c->closed) return 0;
  if (!c->open) return c->queued_before_open > PAUSE_ABOVE;
  return wsev_get_buffered_amount(c->ctx, c->id) > PAUSE_ABOVE;
}

/* Stop reading stdin for good. */
static void stop_input(client *c) {
  c->in_done = 1;
  if (c->stream && !uv_is_closing((uv_handle_t *)c->stream)) {
    uv_read_stop(c->stream);
    c->stream_reading = 0;
    uv_close((uv_handle_t *)c->stream, NULL);
  }
}

static void on_input_end(client *c) {
  if (c->line_len > 0) { /* a last line without a newline */
    send_line(c, c->line, c->line_len);
    c->line_len = 0;
  }
  stop_input(c);
  start_close(c);
}

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf) {
  client *c = handle->data;
  (void)suggested;
  buf->base = c->fs_buf;
  buf->len = sizeof c->fs_buf;
}

static void on_stream_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
  client *c = stream->data;
  if (nread > 0) {
    consume(c, buf->base, (size_t)nread);
    if (should_pause(c)) {
      c->paused = 1;
      uv_read_stop(stream);
      c->stream_reading = 0;
    }
  } else if (nread < 0) {
    if (nread != UV_EOF) fprintf(stderr, "wsev-client: stdin: %s\n", uv_strerror((int)nread));
    on_input_end(c);
  }
}

static void on_fs_read(uv_fs_t *req) {
  client *c = req->data;
  ssize_t n = req->result;
  uv_fs_req_cleanup(req);
  c->fs_pending = 0;
  if (c->in_done) return;
  if (n > 0) {
    consume(c, c->fs_buf, (size_t)n);
    if (should_pause(c))
      c->paused = 1;
    else
      read_more(c);
  } else {
    if (n < 0) fprintf(stderr, "wsev-client: stdin: %s\n", uv_strerror((int)n));
    on_input_end(c);
  }
}

static void read_more(client *c) {
  if (c->in_done) return;
  if (c->stream) {
    if (!c->stream_reading) {
      int rc = uv_read_start(c->stream, on_alloc, on_stream_read);
      if (rc < 0) {
        fprintf(stderr, "wsev-client: stdin: %s\n", uv_strerror(rc));
        on_input_end(c);
        return;
      }
      c->stream_reading = 1;
    }
  } else if (!c->fs_pending) {
    uv_buf_t iov = uv_buf_init(c->fs_buf, sizeof c->fs_buf);
    c->fs_req.data = c;
    int rc = uv_fs_read(wsev_get_loop(c->ctx), &c->fs_req, 0, &iov, 1, -1, on_fs_read);
    if (rc < 0) {
      fprintf(stderr, "wsev-client: stdin: %s\n", uv_strerror(rc));
      on_input_end(c);
      return;
    }
    c->fs_pending = 1;
  }
}

static int open_input(client *c) {
  uv_loop_t *loop = wsev_get_loop(c->ctx);
  int rc = 0;
  c->stream = (uv_stream_t *)&c->in;
  switch (uv_guess_handle(0)) {
  case UV_TTY: rc = uv_tty_init(loop, &c->in.tty, 0, 1); break;
  case UV_NAMED_PIPE:
    rc = uv_pipe_init(loop, &c->in.pipe, 0);
    if (rc == 0 && (rc = uv_pipe_open(&c->in.pipe, 0)) < 0)
      uv_close((uv_handle_t *)&c->in.pipe, NULL);
    break;
  case UV_TCP:
    rc = uv_tcp_init(loop, &c->in.tcp);
    if (rc == 0 && (rc = uv_tcp_open(&c->in.tcp, 0)) < 0) uv_close((uv_handle_t *)&c->in.tcp, NULL);
    break;
  default: /* a file, /dev/null, ...: read it on the thread pool */ c->stream = NULL; break;
  }
  if (rc < 0) {
    fprintf(stderr, "wsev-client: stdin: %s\n", uv_strerror(rc));
    c->stream = NULL;
    return rc;
  }
  if (c->stream) c->stream->data = c;
  read_more(c);
  return 0;
}

/* ---- wsev callbacks ------------------------------------------------------------- */

static void on_accepted(wsev_ctx *ctx, uint64_t id) {
  client *c = wsev_get_ctx_data(ctx);
  if (id != c->id) return;
  c->open = 1;
  wsev_conn_info info;
  if (wsev_get_conn_info(ctx, id, &info) == 0 && info.protocol)
    fprintf(stderr, "wsev-client: connected (protocol %s)\n", info.protocol);
  else
    fprintf(stderr, "wsev-client: connected\n");
  if (wsev_get_conn_info(ctx, id, &info) == 0 && info.deflate.on)
    fprintf(stderr,
            "wsev-client: deflate our_window=%d peer_window=%d our_takeover=%d "
            "peer_takeover=%d\n",
            info.deflate.our_window, info.deflate.peer_window, info.deflate.our_takeover,
            info.deflate.peer_takeover);
  if (c->close_requested) start_close(c);
  /* Reading paused while the queue filled before the 101; conn_drained resumes it
   * once the queue has drained, unless it is already below the mark. */
  if (c->paused && !should_pause(c)) {
    c->paused = 0;
    read_more(c);
  }
}

static void on_message(wsev_ctx *ctx, uint64_t id, const void *data, size_t len,
                       wsev_msg_type type) {
  (void)ctx;
  (void)id;
  (void)type;
  if (len) fwrite(data, 1, len, stdout);
  fputc('\n', stdout);
  fflush(stdout);
}

static void on_closed(wsev_ctx *ctx, uint64_t id) {
  client *c = wsev_get_ctx_data(ctx);
  if (id != c->id) return;
  c->closed = 1;
  wsev_close_info info;
  if (wsev_get_close_info(ctx, id, &info) < 0) {
    fprintf(stderr, "wsev-client: closed (no close information)\n");
    c->exit_status = 1;
  } else if (info.error) {
    fprintf(stderr, "wsev-client: failed: %s: %s\n", wsev_err_name(info.error),
            info.reason[0] ? info.reason : wsev_strerror(info.error));
    c->exit_status = 1;
  } else {
    fprintf(stderr, "wsev-client: closed %u%s%s\n", info.code, info.reason[0] ? " " : "",
            info.reason);
    c->exit_status = info.code == 1000 ? 0 : 1;
  }
  stop_input(c);
  wsev_stop(ctx);
}

static void on_drained(wsev_ctx *ctx, uint64_t id) {
  client *c = wsev_get_ctx_data(ctx);
  if (id != c->id || !c->paused || should_pause(c)) return;
  c->paused = 0;
  read_more(c);
}

static void on_signal(uv_signal_t *sig, int signum) {
  client *c = sig->data;
  (void)signum;
  if (c->signals++ == 0 && !c->closed) {
    stop_input(c);
    if (!c->open) {
      /* Not open yet: give up on it (conn_closed reports UV_ECANCELED). */
      c->close_sent = 1;
      wsev_close(c->ctx, c->id);
    } else {
      start_close(c);
    }
  } else {
    wsev_stop(c->ctx);
  }
}

/* ---- the proxy environment -------------------------------------------------------- */

/* The host (lowercased, IPv6 without brackets) and port of a ws:// or wss:// URL, as
 * far as no_proxy needs them; 0 for anything else (ws+unix). */
static int url_host_port(const char *url, char *host, size_t cap, unsigned *port) {
  const char *p;
  if (strncasecmp(url, "wss://", 6) == 0) {
    p = url + 6;
    *port = 443;
  } else if (strncasecmp(url, "ws://", 5) == 0) {
    p = url + 5;
    *port = 80;
  } else {
    return 0;
  }
  const char *end;
  if (*p == '[') {
    end = strchr(++p, ']');
    if (!end) return 0;
  } else {
    end = p + strcspn(p, ":/?#");
  }
  size_t n = (size_t)(end - p);
  if (n == 0 || n >= cap) return 0;
  for (size_t i = 0; i < n; i++)
    host[i] = (char)tolower((unsigned char)p[i]);
  host[n] = 0;
  if (*end == ']') end++;
  if (*end == ':' && end[1] >= '0' && end[1] <= '9') *port = (unsigned)strtoul(end + 1, NULL, 10);
  return 1;
}

/* One no_proxy entry (trimmed, n bytes) against host and port. */
static int no_proxy_entry_matches(const char *e, size_t n, const char *host, unsigned port) {
  if (n == 1 && e[0] == '*') return 1;
  char name[256];
  unsigned want_port = 0;
  if (e[0] == '[') { /* "[v6]" or "[v6]:port" */
    const char *close = memchr(e, ']', n);
    if (!close) return 0;
    if ((size_t)(close - e) + 1 < n) {
      if (close[1] != ':') return 0;
      want_port = (unsigned)strtoul(close + 2, NULL, 10);
    }
    n = (size_t)(close - e) - 1;
    e++;
  } else {
    const char *colon = memchr(e, ':', n);
    /* One colon: "name:port"; more: a bare IPv6 literal. */
    if (colon && !memchr(colon + 1, ':', n - (size_t)(colon - e) - 1)) {
      want_port = (unsigned)strtoul(colon + 1, NULL, 10);
      n = (size_t)(colon - e);
    }
  }
  if (n >= 2 && e[0] == '*' && e[1] == '.') {
    e += 2;
    n -= 2;
  } else if (n >= 1 && e[0] == '.') {
    e++;
    n--;
  }
  if (n == 0 || n >= sizeof name || (want_port && want_port != port)) return 0;
  for (size_t i = 0; i < n; i++)
    name[i] = (char)tolower((unsigned char)e[i]);
  name[n] = 0;
  size_t h = strlen(host);
  if (h == n) return strcmp(host, name) == 0;
  return h > n && host[h - n - 1] == '.' && strcmp(host + h - n, name) == 0;
}

static int no_proxy_matches(const char *list, const char *host, unsigned port) {
  while (list && *list) {
    size_t n = strcspn(list, ",");
    const char *e = list;
    size_t len = n;
    while (len && isspace((unsigned char)*e)) {
      e++;
      len--;
    }
    while (len && isspace((unsigned char)e[len - 1]))
      len--;
    if (len && no_proxy_entry_matches(e, len, host, port)) return 1;
    list += n;
    if (*list == ',') list++;
  }
  return 0;
}

static const char *getenv_either(const char *lower, const char *upper) {
  const char *v = getenv(lower);
  if (!v || !*v) v = getenv(upper);
  return v && *v ? v : NULL;
}

/* The proxy the environment gives for url, or NULL; *owned is set when the result was
 * allocated (a value without a scheme gets "http://"). */
static const char *proxy_from_env(const char *url, char **owned) {
  char host[256];
  unsigned port;
  *owned = NULL;
  if (!url_host_port(url, host, sizeof host, &port)) return NULL;
  int tls = strncasecmp(url, "wss:", 4) == 0;
  const char *proxy =
      tls ? getenv_either("https_proxy", "HTTPS_PROXY") : getenv_either("http_proxy", "HTTP_PROXY");
  if (!proxy || no_proxy_matches(getenv_either("no_proxy", "NO_PROXY"), host, port)) return NULL;
  if (strstr(proxy, "://")) return proxy;
  size_t n = strlen(proxy);
  if (!(*owned = malloc(n + 8))) return NULL;
  memcpy(*owned, "http://", 7);
  memcpy(*owned + 7, proxy, n + 1);
  return *owned;
}

/* ---- command line --------------------------------------------------------------- */

static int usage(const char *argv0) {
  fprintf(stderr,
          "usage: %s URL [--origin O] [--protocol P]... [--header 'Name: value']...\n"
          "  [--ca FILE] [--insecure] [--connect-timeout MS] [--max-message-size BYTES]\n"
          "  [--binary] [--proxy URL | --no-proxy] [--happy-eyeballs-delay MS|off]\n",
          argv0);
  return 2;
}

static int parse_u64(const char *s, uint64_t *out) {
  char *end;
  if (!s || !*s || *s == '-') return -1;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || *end) return -1;
  *out = v;
  return 0;
}

int main(int argc, char **argv) {
  static client c;
  const char *url = NULL;
  wsev_client_options opts = {0};
  const char **protocols = calloc((size_t)argc + 1, sizeof *protocols);
  size_t n_protocols = 0;
  char *headers = NULL;
  size_t headers_len = 0;
  uint64_t max_message_size = 0;
  int status = 2, deflate_given = 0, used;
  wsev_deflate_options deflate = {0};
  int no_proxy = 0;
  char *env_proxy = NULL;
  if (!protocols) return 1;

  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if ((used = deflate_option(argc, argv, &i, &deflate, &deflate_given)) != 0) {
      if (used < 0) goto bad_usage;
    } else if (strcmp(a, "--insecure") == 0) {
      opts.insecure = 1;
    } else if (strcmp(a, "--binary") == 0) {
      c.binary = 1;
    } else if (strcmp(a, "--no-proxy") == 0) {
      no_proxy = 1;
    } else if (a[0] == '-' && a[1] == '-' && !v) {
      goto bad_usage;
    } else if (strcmp(a, "--origin") == 0) {
      opts.origin = argv[++i];
    } else if (strcmp(a, "--protocol") == 0) {
      protocols[n_protocols++] = argv[++i];
    } else if (strcmp(a, "--header") == 0) {
      size_t n = strlen(v);
      char *h = realloc(headers, headers_len + n + 3);
      if (!h) goto done;
      headers = h;
      memcpy(headers + headers_len, v, n);
      memcpy(headers + headers_len + n, "\r\n", 3);
      headers_len += n + 2;
      i++;
    } else if (strcmp(a, "--ca") == 0) {
      opts.ca_file = argv[++i];
    } else if (strcmp(a, "--connect-timeout") == 0) {
      if (parse_u64(argv[++i], &opts.connect_timeout_ms) < 0) goto bad_usage;
    } else if (strcmp(a, "--proxy") == 0) {
      opts.proxy = argv[++i];
    } else if (strcmp(a, "--happy-eyeballs-delay") == 0) {
      if (strcmp(argv[++i], "off") == 0)
        opts.happy_eyeballs_delay_ms = UINT64_MAX;
      else if (parse_u64(argv[i], &opts.happy_eyeballs_delay_ms) < 0 ||
               opts.happy_eyeballs_delay_ms == 0)
        goto bad_usage;
    } else if (strcmp(a, "--max-message-size") == 0) {
      if (parse_u64(argv[++i], &max_message_size) < 0 || max_message_size == 0) goto bad_usage;
    } else if (a[0] == '-' || url) {
      goto bad_usage;
    } else {
      url = a;
    }
  }
  if (!url || deflate_from_env(&deflate, deflate_given) != 0) goto bad_usage;
  if (deflate.mode != WSEV_DEFLATE_OFF) opts.deflate = &deflate;
  if (n_protocols) opts.protocols = protocols;
  opts.headers = headers;
  if (!opts.proxy && !no_proxy) opts.proxy = proxy_from_env(url, &env_proxy);

  wsev_handler handler = {.conn_accepted = on_accepted,
                          .conn_closed = on_closed,
                          .message_received = on_message,
                          .conn_drained = on_drained};
  int rc = wsev_ctx_new(&c.ctx, NULL, &handler, &c);
  if (rc < 0) {
    fprintf(stderr, "wsev-client: %s\n", wsev_strerror(rc));
    status = 1;
    goto done;
  }
  wsev_set_timeout(c.ctx, 0);
  if (max_message_size) wsev_set_max_message_size(c.ctx, (size_t)max_message_size);
  /* The tests also run this client with its connection on an I/O thread. */
  const char *io_threads = getenv("WSEV_IO_THREADS");
  if (io_threads && (rc = wsev_set_io_threads(c.ctx, (unsigned)atoi(io_threads))) != 0) {
    fprintf(stderr, "wsev-client: cannot start I/O threads: %s\n", wsev_strerror(rc));
    wsev_ctx_free(c.ctx);
    status = 1;
    goto done;
  }

  rc = wsev_add_conn(c.ctx, url, &opts, &c.id);
  if (rc < 0) {
    fprintf(stderr, "wsev-client: %s: %s\n", url, wsev_strerror(rc));
    wsev_ctx_free(c.ctx);
    goto done;
  }

  uv_loop_t *loop = wsev_get_loop(c.ctx);
  uv_signal_init(loop, &c.sigint);
  uv_signal_init(loop, &c.sigterm);
  c.sigint.data = c.sigterm.data = &c;
  uv_signal_start(&c.sigint, on_signal, SIGINT);
  uv_signal_start(&c.sigterm, on_signal, SIGTERM);
  uv_unref((uv_handle_t *)&c.sigint);
  uv_unref((uv_handle_t *)&c.sigterm);

  if (open_input(&c) < 0) on_input_end(&c);

  c.exit_status = 1;
  wsev_event_loop(c.ctx);

  stop_input(&c);
  uv_close((uv_handle_t *)&c.sigint, NULL);
  uv_close((uv_handle_t *)&c.sigterm, NULL);
  /* Frees everything, after letting our handles (and a file read in progress)
   * finish on the loop. */
  wsev_ctx_free(c.ctx);
  status = c.closed ? c.exit_status : 1;
  goto done;

bad_usage:
  usage(argv[0]);
done:
  free(protocols);
  free(headers);
  free(env_proxy);
  free(c.line);
  return status;
}
