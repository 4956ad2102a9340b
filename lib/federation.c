/* Federation: the context's topics shared with other instances through Redis pub/sub.
 *
 * Two hiredis connections on the context's loop (event hooks like hiredis's libuv
 * adapter, below): one in subscribe
 * mode holding a SUBSCRIBE for every topic with local subscribers (channel "wsev:" +
 * name, plus a control channel that keeps the connection in subscribe mode when no
 * topic is left), one for PUBLISH. A published message carries the publishing
 * instance's random id and the message type ahead of the body; an instance skips its
 * own messages (it delivered them locally already), so each instance delivers each
 * publish once.
 *
 * Nothing here blocks: the host name is resolved with uv_getaddrinfo and hiredis
 * connects without blocking. A link that fails, is refused (a wrong password) or does
 * not come up in time is dropped and tried again after a backoff; when both are up
 * again every local topic is subscribed again. While a link is down, publishes are not
 * sent to Redis (at most once across instances); publishes waiting for a slow Redis are
 * capped in bytes. */
#include "federation.h"

#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "context.h"
#include "dispatch.h"
#include "utf8.h"

#ifndef WSEV_HAVE_HIREDIS

void wsev__fed_topic_added(wsev_fed *fed, const char *name, size_t len) {
  (void)fed, (void)name, (void)len;
}
void wsev__fed_topic_removed(wsev_fed *fed, const char *name, size_t len) {
  (void)fed, (void)name, (void)len;
}
void wsev__fed_publish(wsev_fed *fed, const char *name, size_t len, const void *data,
                       size_t data_len, wsev_msg_type type) {
  (void)fed, (void)name, (void)len, (void)data, (void)data_len, (void)type;
}
void wsev__fed_free(wsev_fed *fed) { (void)fed; }

int wsev_federate(wsev_ctx *ctx, const char *url, wsev_fed_cb on_state) {
  WSEV_CHECK_CTX(ctx, WSEV_EWRONGTHREAD);
  (void)on_state;
  return url ? UV_ENOTSUP : UV_EINVAL;
}
wsev_fed_state wsev_get_fed_state(const wsev_ctx *ctx) {
  (void)ctx;
  return WSEV_FED_OFF;
}
const char *wsev_get_fed_error(const wsev_ctx *ctx) {
  (void)ctx;
  return NULL;
}
int wsev_get_fed_stats(const wsev_ctx *ctx, wsev_fed_stats *stats) {
  WSEV_CHECK_CTX(ctx, WSEV_EWRONGTHREAD);
  if (!stats) return UV_EINVAL;
  memset(stats, 0, sizeof *stats);
  return 0;
}

#else

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#define PREFIX "wsev:"
#define PREFIX_LEN 5
#define CONTROL_CHANNEL "wsev-control"
#define HEADER_LEN 9 /* instance id (8 bytes) and message type (1) */
#define BACKOFF_MIN_MS 50
#define BACKOFF_MAX_MS 1000
#define CONNECT_TIMEOUT_MS 2000
#define MAX_PENDING_BYTES (8u * 1024 * 1024)
#define HEARTBEAT_MS 1000
#define SILENCE_MS 3000 /* a PING unanswered this long: Redis stopped answering */

typedef struct fed_link fed_link;
struct fed_link {
  wsev_fed *fed;
  redisAsyncContext *ac; /* NULL once hiredis freed it (or is about to) */
  int subscriber;        /* the subscribe-mode connection */
  int ready;             /* answered our first command (AUTH or PING) */
  int dead;              /* dropped: its late callbacks are ignored */
  fed_link *next_dead;   /* freed outside hiredis's callbacks */
};

struct wsev_fed {
  wsev_ctx *ctx;
  wsev_topics *ts;
  char host[256];
  char port[8];
  char password[256];
  int has_password;
  int db;
  uint8_t instance[8];
  wsev_fed_cb on_state;
  wsev_fed_state state;
  char reason[512];
  wsev_fed_stats stats;
  fed_link *pub, *sub, *dead;
  uv_timer_t retry;     /* the backoff, and the connect deadline */
  uv_timer_t heartbeat; /* a PING on the publishing link while it is up */
  uint64_t ping_sent;   /* when the PING still unanswered went out, or 0 */
  uv_getaddrinfo_t gai;
  int resolving;
  int stale;   /* the resolution in flight belongs to an attempt given up */
  int pending; /* handles and requests still to finish before the struct is freed */
  int freeing;
  int was_up;
  uint64_t backoff_ms;
  size_t pending_bytes; /* publishes Redis has not answered yet */
};

static void schedule_retry(wsev_fed *fed);

static void maybe_release(wsev_fed *fed) {
  if (fed->freeing && fed->pending == 0) wsev__free(fed);
}

static void set_state(wsev_fed *fed, wsev_fed_state state, const char *reason) {
  if (fed->state == state && !reason) return;
  fed->state = state;
  snprintf(fed->reason, sizeof fed->reason, "%s", reason ? reason : "");
  if (!fed->on_state || fed->freeing) return;
  /* A callback of the application: serialized like the others. */
  wsev__dispatch_begin(fed->ctx);
  if (!fed->ctx->freeing) fed->on_state(fed->ctx, state, reason);
  wsev__dispatch_end(fed->ctx);
}

/* Drop a link: hiredis frees its context (now, or after the callback it is in), and
 * its pending callbacks get NULL replies, which are ignored. */
static void drop_link(wsev_fed *fed, fed_link *l) {
  if (!l) return;
  l->dead = 1;
  if (l->ac) {
    redisAsyncContext *ac = l->ac;
    l->ac = NULL;
    redisAsyncFree(ac);
  }
  l->next_dead = fed->dead;
  fed->dead = l;
}

static void free_dead(wsev_fed *fed) {
  while (fed->dead) {
    fed_link *next = fed->dead->next_dead;
    wsev__free(fed->dead);
    fed->dead = next;
  }
}

/* Both links go; local delivery goes on; try again after the backoff. */
static void fail(wsev_fed *fed, const char *reason) {
  if (fed->freeing) return;
  fed_link *pub = fed->pub, *sub = fed->sub;
  fed->pub = fed->sub = NULL;
  fed->pending_bytes = 0;
  fed->ping_sent = 0;
  drop_link(fed, pub);
  drop_link(fed, sub);
  set_state(fed, WSEV_FED_DOWN, reason);
  schedule_retry(fed);
}

static int link_usable(const fed_link *l) { return l && l->ready && !l->dead && l->ac; }

static void subscribe_one(void *arg, const char *name, size_t len);

static void on_sub_reply(redisAsyncContext *ac, void *r, void *privdata);

/* ---- hiredis on the loop ---------------------------------------------------------
 * The five event hooks hiredis asks for, on a uv_poll_t, as hiredis's own
 * adapters/libuv.h does, with one difference: libuv reports a socket error (POLLERR,
 * as a refused connect gives) as a negative status, which Debian's adapter (hiredis
 * 0.14) drops, so a refused connection would never be noticed. Here an error lets
 * hiredis look at the socket (it reads SO_ERROR, or fails the read) and tell us. */

typedef struct {
  redisAsyncContext *ac;
  uv_poll_t poll;
  int events;
} uv_events;

static void on_poll(uv_poll_t *h, int status, int events) {
  uv_events *e = h->data;
  if (!e->ac) return;
  if (status < 0) {
    if (!(e->ac->c.flags & REDIS_CONNECTED))
      redisAsyncHandleWrite(e->ac); /* the connect's outcome */
    else
      redisAsyncHandleRead(e->ac);
    return;
  }
  if (events & UV_READABLE) redisAsyncHandleRead(e->ac);
  if (e->ac && (events & UV_WRITABLE)) redisAsyncHandleWrite(e->ac);
}

static void poll_update(uv_events *e, int add, int remove) {
  e->events = (e->events | add) & ~remove;
  if (e->events)
    uv_poll_start(&e->poll, e->events, on_poll);
  else
    uv_poll_stop(&e->poll);
}
static void add_read(void *p) { poll_update(p, UV_READABLE, 0); }
static void del_read(void *p) { poll_update(p, 0, UV_READABLE); }
static void add_write(void *p) { poll_update(p, UV_WRITABLE, 0); }
static void del_write(void *p) { poll_update(p, 0, UV_WRITABLE); }
static void on_poll_closed(uv_handle_t *h) { wsev__free(h->data); }
static void cleanup(void *p) {
  uv_events *e = p;
  e->ac = NULL; /* hiredis is freeing it */
  uv_close((uv_handle_t *)&e->poll, on_poll_closed);
}

static int attach(redisAsyncContext *ac, uv_loop_t *loop) {
  uv_events *e = wsev__calloc(1, sizeof *e);
  if (!e) return REDIS_ERR;
  if (uv_poll_init(loop, &e->poll, ac->c.fd) != 0) {
    wsev__free(e);
    return REDIS_ERR;
  }
  /* The links never keep the loop running by themselves (wsev_shutdown ends it). */
  uv_unref((uv_handle_t *)&e->poll);
  e->ac = ac;
  e->poll.data = e;
  ac->ev.data = e;
  ac->ev.addRead = add_read;
  ac->ev.delRead = del_read;
  ac->ev.addWrite = add_write;
  ac->ev.delWrite = del_write;
  ac->ev.cleanup = cleanup;
  return REDIS_OK;
}

/* A Redis that keeps the connection but stops answering (stopped, swapping, a dead
 * peer behind a silent network) is noticed by a PING unanswered for SILENCE_MS. */
static void on_pong(redisAsyncContext *ac, void *r, void *privdata) {
  (void)ac;
  fed_link *l = privdata;
  if (r && !l->dead) l->fed->ping_sent = 0;
}

static void on_heartbeat(uv_timer_t *t) {
  wsev_fed *fed = t->data;
  if (!link_usable(fed->pub)) return;
  uint64_t now = uv_now(t->loop);
  if (fed->ping_sent && now - fed->ping_sent >= SILENCE_MS) {
    fail(fed, "redis stopped answering (a PING unanswered for 3 s)");
    return;
  }
  if (!fed->ping_sent && redisAsyncCommand(fed->pub->ac, on_pong, fed->pub, "PING") == REDIS_OK)
    fed->ping_sent = now ? now : 1;
}

/* ---- the two links ------------------------------------------------------------- */

static void on_hello(redisAsyncContext *ac, void *r, void *privdata) {
  (void)ac;
  fed_link *l = privdata;
  redisReply *reply = r;
  if (!reply || l->dead) return;
  wsev_fed *fed = l->fed;
  if (reply->type == REDIS_REPLY_ERROR) {
    char reason[512];
    snprintf(reason, sizeof reason, "redis refused us: %.200s", reply->str);
    fail(fed, reason);
    return;
  }
  l->ready = 1;
  if (l->subscriber) {
    /* The control channel keeps the connection in subscribe mode with no topic. */
    redisAsyncCommand(l->ac, on_sub_reply, l, "SUBSCRIBE %s", CONTROL_CHANNEL);
    wsev__topics_each(fed->ctx, subscribe_one, fed);
  }
  if (link_usable(fed->pub) && link_usable(fed->sub)) {
    uv_timer_stop(&fed->retry);
    fed->backoff_ms = 0;
    if (fed->was_up) fed->stats.reconnects++;
    fed->was_up = 1;
    set_state(fed, WSEV_FED_UP, NULL);
  }
}

static void on_connected(const redisAsyncContext *ac, int status) {
  fed_link *l = ac->data;
  if (status == REDIS_OK || l->dead) return;
  /* hiredis frees the context after this callback. */
  l->ac = NULL;
  char reason[512];
  snprintf(reason, sizeof reason, "cannot connect to redis %.200s:%s: %.180s", l->fed->host,
           l->fed->port, ac->errstr ? ac->errstr : "error");
  fail(l->fed, reason);
}

static void on_disconnected(const redisAsyncContext *ac, int status) {
  (void)status;
  fed_link *l = ac->data;
  if (l->dead) return;
  l->ac = NULL; /* hiredis is freeing it */
  char reason[512];
  snprintf(reason, sizeof reason, "lost redis %.200s:%s: %.180s", l->fed->host, l->fed->port,
           ac->err && ac->errstr ? ac->errstr : "connection closed");
  fail(l->fed, reason);
}

static fed_link *open_link(wsev_fed *fed, const char *ip, int port, int subscriber) {
  fed_link *l = wsev__calloc(1, sizeof *l);
  if (!l) return NULL;
  l->fed = fed;
  l->subscriber = subscriber;
  redisAsyncContext *ac = redisAsyncConnect(ip, port);
  if (!ac || ac->err) {
    if (ac) redisAsyncFree(ac);
    wsev__free(l);
    return NULL;
  }
  ac->data = l;
  if (attach(ac, wsev_get_loop(fed->ctx)) != REDIS_OK) {
    redisAsyncFree(ac);
    wsev__free(l);
    return NULL;
  }
  l->ac = ac;
  redisAsyncSetConnectCallback(ac, on_connected);
  redisAsyncSetDisconnectCallback(ac, on_disconnected);
  /* The first command tells whether we are in: AUTH, or PING without a password. */
  if (fed->has_password)
    redisAsyncCommand(ac, on_hello, l, "AUTH %s", fed->password);
  else
    redisAsyncCommand(ac, on_hello, l, "PING");
  if (!subscriber && fed->db) redisAsyncCommand(ac, NULL, NULL, "SELECT %d", fed->db);
  return l;
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  wsev_fed *fed = req->data;
  fed->resolving = 0;
  fed->pending--;
  if (fed->freeing || fed->stale) {
    fed->stale = 0;
    uv_freeaddrinfo(res);
    maybe_release(fed);
    return;
  }
  char ip[64] = "";
  if (status == 0 && res) {
    if (res->ai_family == AF_INET6)
      uv_ip6_name((struct sockaddr_in6 *)res->ai_addr, ip, sizeof ip);
    else
      uv_ip4_name((struct sockaddr_in *)res->ai_addr, ip, sizeof ip);
  }
  uv_freeaddrinfo(res);
  if (!ip[0]) {
    char reason[512];
    snprintf(reason, sizeof reason, "cannot resolve redis host %.200s: %s", fed->host,
             status ? uv_strerror(status) : "no address");
    fail(fed, reason);
    return;
  }
  int port = atoi(fed->port);
  fed->pub = open_link(fed, ip, port, 0);
  fed->sub = fed->pub ? open_link(fed, ip, port, 1) : NULL;
  if (!fed->pub || !fed->sub) {
    fail(fed, "cannot open a connection to redis (out of memory or sockets)");
    return;
  }
}

static void on_timer(uv_timer_t *t);

/* Connect (again): resolve, then open both links; a deadline covers it all. */
static void start(wsev_fed *fed) {
  free_dead(fed);
  if (fed->resolving) { /* a lookup given up on has not ended yet */
    schedule_retry(fed);
    return;
  }
  set_state(fed, WSEV_FED_CONNECTING, NULL);
  fed->gai.data = fed;
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
  int rc = uv_getaddrinfo(wsev_get_loop(fed->ctx), &fed->gai, on_resolved, fed->host, NULL, &hints);
  if (rc) {
    char reason[512];
    snprintf(reason, sizeof reason, "cannot resolve redis host %.200s: %s", fed->host,
             uv_strerror(rc));
    fail(fed, reason);
    return;
  }
  fed->resolving = 1;
  fed->pending++;
  uv_timer_start(&fed->retry, on_timer, CONNECT_TIMEOUT_MS, 0);
}

static void on_timer(uv_timer_t *t) {
  wsev_fed *fed = t->data;
  if (fed->state == WSEV_FED_CONNECTING && (fed->pub || fed->sub || fed->resolving)) {
    /* The connect deadline passed. */
    if (fed->resolving) {
      fed->stale = 1;
      uv_cancel((uv_req_t *)&fed->gai);
    }
    fail(fed, "redis did not answer in time");
    return;
  }
  start(fed);
}

static void schedule_retry(wsev_fed *fed) {
  fed->backoff_ms = fed->backoff_ms ? fed->backoff_ms * 2 : BACKOFF_MIN_MS;
  if (fed->backoff_ms > BACKOFF_MAX_MS) fed->backoff_ms = BACKOFF_MAX_MS;
  uv_timer_start(&fed->retry, on_timer, fed->backoff_ms, 0);
}

/* ---- subscriptions and messages -------------------------------------------------- */

static void channel_command(fed_link *l, const char *verb, const char *name, size_t len) {
  char chan[PREFIX_LEN + WSEV_TOPIC_MAX_LEN];
  memcpy(chan, PREFIX, PREFIX_LEN);
  memcpy(chan + PREFIX_LEN, name, len);
  if (strcmp(verb, "SUBSCRIBE") == 0)
    redisAsyncCommand(l->ac, on_sub_reply, l, "SUBSCRIBE %b", chan, PREFIX_LEN + len);
  else
    redisAsyncCommand(l->ac, on_sub_reply, l, "UNSUBSCRIBE %b", chan, PREFIX_LEN + len);
}

static void subscribe_one(void *arg, const char *name, size_t len) {
  wsev_fed *fed = arg;
  if (link_usable(fed->sub)) channel_command(fed->sub, "SUBSCRIBE", name, len);
}

void wsev__fed_topic_added(wsev_fed *fed, const char *name, size_t len) {
  subscribe_one(fed, name, len);
}

void wsev__fed_topic_removed(wsev_fed *fed, const char *name, size_t len) {
  if (link_usable(fed->sub) && !fed->freeing) channel_command(fed->sub, "UNSUBSCRIBE", name, len);
}

static void on_sub_reply(redisAsyncContext *ac, void *r, void *privdata) {
  (void)ac;
  fed_link *l = privdata;
  redisReply *reply = r;
  if (!reply || l->dead || reply->type != REDIS_REPLY_ARRAY || reply->elements < 3) return;
  wsev_fed *fed = l->fed;
  redisReply *kind = reply->element[0], *chan = reply->element[1], *body = reply->element[2];
  if (kind->type != REDIS_REPLY_STRING || chan->type != REDIS_REPLY_STRING) return;
  if (chan->len <= PREFIX_LEN || memcmp(chan->str, PREFIX, PREFIX_LEN) != 0) return;
  const char *name = chan->str + PREFIX_LEN;
  size_t name_len = chan->len - PREFIX_LEN;
  if (strcmp(kind->str, "message") == 0 && body->type == REDIS_REPLY_STRING) {
    if (body->len < HEADER_LEN || memcmp(body->str, fed->instance, 8) == 0) return;
    /* Anyone may PUBLISH on a wsev: channel: what is not ours to forward (an unknown
     * type, or text that is not UTF-8, which would make browsers fail the connection)
     * is dropped. */
    uint8_t kind_byte = (uint8_t)body->str[8];
    if (kind_byte != WSEV_TEXT && kind_byte != WSEV_BINARY) return;
    wsev_msg_type type = kind_byte == WSEV_TEXT ? WSEV_TEXT : WSEV_BINARY;
    if (type == WSEV_TEXT &&
        !wsev__utf8_is_valid((const uint8_t *)body->str + HEADER_LEN, body->len - HEADER_LEN))
      return;
    fed->stats.received++;
    wsev__topics_deliver(fed->ctx, name, name_len, body->str + HEADER_LEN, body->len - HEADER_LEN,
                         type, 0);
  } else if (strcmp(kind->str, "unsubscribe") == 0 && name_len <= WSEV_TOPIC_MAX_LEN &&
             wsev_get_topic_subscriber_count(fed->ctx, name, name_len) > 0) {
    /* The topic came back while its UNSUBSCRIBE was on its way: hiredis has just
     * forgotten the channel, so subscribe it once more (Redis keeps one). */
    channel_command(l, "SUBSCRIBE", name, name_len);
  }
}

static void on_published(redisAsyncContext *ac, void *r, void *privdata) {
  fed_link *l = ac->data;
  if (!r || l->dead) return;
  size_t n = (size_t)(uintptr_t)privdata;
  l->fed->pending_bytes -= n <= l->fed->pending_bytes ? n : l->fed->pending_bytes;
}

void wsev__fed_publish(wsev_fed *fed, const char *name, size_t len, const void *data,
                       size_t data_len, wsev_msg_type type) {
  size_t total = HEADER_LEN + data_len;
  if (!link_usable(fed->pub) || fed->pending_bytes + total > MAX_PENDING_BYTES) {
    fed->stats.dropped++;
    return;
  }
  uint8_t *payload = wsev__malloc(total);
  if (!payload) {
    fed->stats.dropped++;
    return;
  }
  memcpy(payload, fed->instance, 8);
  payload[8] = (uint8_t)type;
  if (data_len) memcpy(payload + HEADER_LEN, data, data_len);
  char chan[PREFIX_LEN + WSEV_TOPIC_MAX_LEN];
  memcpy(chan, PREFIX, PREFIX_LEN);
  memcpy(chan + PREFIX_LEN, name, len);
  if (redisAsyncCommand(fed->pub->ac, on_published, (void *)(uintptr_t)total, "PUBLISH %b %b", chan,
                        PREFIX_LEN + len, payload, total) == REDIS_OK) {
    fed->pending_bytes += total;
    fed->stats.published++;
  } else {
    fed->stats.dropped++;
  }
  wsev__free(payload);
}

/* ---- life -------------------------------------------------------------------------- */

static void on_timer_closed(uv_handle_t *h) {
  wsev_fed *fed = h->data;
  fed->pending--;
  maybe_release(fed);
}

void wsev__fed_free(wsev_fed *fed) {
  fed->freeing = 1;
  drop_link(fed, fed->pub);
  drop_link(fed, fed->sub);
  fed->pub = fed->sub = NULL;
  free_dead(fed);
  if (fed->resolving) uv_cancel((uv_req_t *)&fed->gai);
  uv_close((uv_handle_t *)&fed->retry, on_timer_closed);
  uv_close((uv_handle_t *)&fed->heartbeat, on_timer_closed);
}

/* redis://[:password@]host[:port][/db] */
static int parse_url(wsev_fed *fed, const char *url) {
  const char *p = url;
  if (strncmp(p, "redis://", 8) != 0) return WSEV_EBADURL;
  p += 8;
  const char *at = strrchr(p, '@');
  if (at) {
    const char *colon = memchr(p, ':', (size_t)(at - p));
    if (!colon) return WSEV_EBADURL; /* only [:password@] (or user:password@) */
    size_t n = (size_t)(at - colon - 1);
    if (n >= sizeof fed->password) return WSEV_EBADURL;
    memcpy(fed->password, colon + 1, n);
    fed->password[n] = 0;
    fed->has_password = n > 0;
    p = at + 1;
  }
  const char *host = p, *host_end;
  int bracketed = *p == '[';
  if (bracketed) {
    host = p + 1;
    if (!(host_end = strchr(host, ']'))) return WSEV_EBADURL;
    p = host_end + 1;
  } else {
    host_end = p + strcspn(p, ":/");
    p = host_end;
  }
  size_t hl = (size_t)(host_end - host);
  if (hl == 0 || hl >= sizeof fed->host) return WSEV_EBADURL;
  for (size_t i = 0; i < hl; i++) {
    char ch = host[i];
    int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
             ch == '.' || ch == '-' || ch == '_' || (bracketed && ch == ':');
    if (!ok) return WSEV_EBADURL;
  }
  memcpy(fed->host, host, hl);
  fed->host[hl] = 0;
  snprintf(fed->port, sizeof fed->port, "6379");
  if (*p == ':') {
    char *end;
    long port = strtol(p + 1, &end, 10);
    if (end == p + 1 || port < 1 || port > 65535) return WSEV_EBADURL;
    snprintf(fed->port, sizeof fed->port, "%ld", port);
    p = end;
  }
  if (*p == '/') {
    if (p[1]) {
      char *end;
      long db = strtol(p + 1, &end, 10);
      if (end == p + 1 || *end || db < 0 || db > 100000) return WSEV_EBADURL;
      fed->db = (int)db;
    }
  } else if (*p) {
    return WSEV_EBADURL;
  }
  return 0;
}

int wsev_federate(wsev_ctx *ctx, const char *url, wsev_fed_cb on_state) {
  WSEV_CHECK_CTX(ctx, WSEV_EWRONGTHREAD);
  if (!url) return UV_EINVAL;
  wsev_topics *ts = wsev__topics_get(ctx, 1);
  if (!ts) return UV_ENOMEM;
  if (wsev__topics_fed(ts)) return UV_EALREADY;
  wsev_fed *fed = wsev__calloc(1, sizeof *fed);
  if (!fed) return UV_ENOMEM;
  int rc = parse_url(fed, url);
  wsev_rng *rng = wsev__ctx_rng(ctx);
  if (!rc && (!rng || wsev__rng_bytes(rng, fed->instance, sizeof fed->instance) != 0))
    rc = UV_ENOMEM;
  if (rc) {
    wsev__free(fed);
    return rc;
  }
  fed->ctx = ctx;
  fed->ts = ts;
  fed->on_state = on_state;
  uv_timer_init(wsev_get_loop(ctx), &fed->retry);
  uv_unref((uv_handle_t *)&fed->retry);
  fed->retry.data = fed;
  uv_timer_init(wsev_get_loop(ctx), &fed->heartbeat);
  uv_unref((uv_handle_t *)&fed->heartbeat);
  fed->heartbeat.data = fed;
  uv_timer_start(&fed->heartbeat, on_heartbeat, HEARTBEAT_MS, HEARTBEAT_MS);
  fed->pending = 2; /* the timers */
  wsev__topics_set_fed(ts, fed);
  /* The first attempt starts from the loop, so on_state never runs inside this call. */
  uv_timer_start(&fed->retry, on_timer, 0, 0);
  return 0;
}

static wsev_fed *fed_of(const wsev_ctx *ctx) {
  return wsev__topics_fed(wsev__topics_get((wsev_ctx *)ctx, 0));
}

wsev_fed_state wsev_get_fed_state(const wsev_ctx *ctx) {
  WSEV_CHECK_CTX_OR(ctx, WSEV_FED_OFF);
  wsev_fed *fed = fed_of(ctx);
  return fed ? fed->state : WSEV_FED_OFF;
}

const char *wsev_get_fed_error(const wsev_ctx *ctx) {
  WSEV_CHECK_CTX_OR(ctx, NULL);
  wsev_fed *fed = fed_of(ctx);
  return fed && fed->reason[0] ? fed->reason : NULL;
}

int wsev_get_fed_stats(const wsev_ctx *ctx, wsev_fed_stats *stats) {
  WSEV_CHECK_CTX(ctx, WSEV_EWRONGTHREAD);
  if (!stats) return UV_EINVAL;
  wsev_fed *fed = fed_of(ctx);
  if (fed)
    *stats = fed->stats;
  else
    memset(stats, 0, sizeof *stats);
  return 0;
}

#endif
