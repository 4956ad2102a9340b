/* Topics: a connection subscribes to named topics; a publish frames the message once
 * and hands the topic's subscriber array to wsev_broadcast as it is (inline, or the
 * I/O threads' shared-frame path), so a publish costs no allocation of its own.
 *
 * The state lives on the application's thread, like the callbacks: no locks. Each
 * topic keeps its subscribers as a dense array of ids with a parallel array of
 * back-pointers to their subscriptions; a subscription knows its index, so leaving is
 * a swap with the last entry (O(1)). A table keyed by (topic, id) finds a
 * subscription in O(1) (unsubscribe, and the sender to leave out of a publish), and
 * each connection's subscriptions form a list, found through an id map, so a closed
 * connection leaves all its topics in O(its topics).
 * The state hangs off the context (ctx->topics), made with the first subscription. */
#include "topic.h"

#include <string.h>

#include "alloc.h"
#include "context.h"
#include "federation.h"
#include "idmap.h"

typedef struct sub sub;

typedef struct topic {
  struct topic *next; /* chain in the topic table */
  uint64_t hash;
  uint64_t *ids; /* subscribers, dense: what wsev_broadcast gets */
  sub **subs;    /* subs[i] is the subscription of ids[i] */
  uint32_t n, cap;
  uint32_t len;
  char name[]; /* len bytes, then a NUL */
} topic;

struct sub {
  topic *t;
  sub *next;          /* chain in the subscription table, keyed by (t, id) */
  sub *cnext, *cprev; /* the connection's subscriptions */
  uint32_t pos;       /* index in t->ids and t->subs */
};

/* A connection's subscriptions. */
typedef struct {
  sub *head;
  size_t n;
} conn_subs;

typedef struct {
  void **b; /* buckets: chains of topic or sub */
  size_t mask, count;
} table;

struct wsev_topics {
  table topics, subs;
  wsev_idmap conns; /* id -> conn_subs */
  wsev_fed *fed;
};

wsev_topics *wsev__topics_get(wsev_ctx *ctx, int create) {
  if (ctx->topics || !create) return ctx->topics;
  wsev_topics *ts = wsev__calloc(1, sizeof *ts);
  if (ts) {
    wsev__idmap_init(&ts->conns);
    ctx->topics = ts;
  }
  return ts;
}

wsev_fed *wsev__topics_fed(const wsev_topics *ts) { return ts ? ts->fed : NULL; }
void wsev__topics_set_fed(wsev_topics *ts, wsev_fed *fed) { ts->fed = fed; }

/* ---- tables --------------------------------------------------------------------- */

static uint64_t hash_name(const char *s, size_t len) {
  uint64_t h = UINT64_C(0xcbf29ce484222325); /* FNV-1a */
  for (size_t i = 0; i < len; i++)
    h = (h ^ (uint8_t)s[i]) * UINT64_C(0x100000001b3);
  return h ^ (h >> 29);
}

static size_t sub_hash(const topic *t, uint64_t id) {
  return (size_t)((t->hash ^ (id * UINT64_C(0x9E3779B97F4A7C15))) >> 17);
}

static uint64_t sub_id(const sub *s) { return s->t->ids[s->pos]; }

/* Make room for one more entry (load at most 1). Only the bucket array changes, so a
 * failure leaves the table as it was. */
static int table_reserve(table *tb, int subs) {
  if (tb->b && tb->count + 1 <= tb->mask + 1) return 0;
  size_t cap = tb->b ? (tb->mask + 1) * 2 : 16;
  void **nb = wsev__calloc(cap, sizeof *nb);
  if (!nb) return UV_ENOMEM;
  for (size_t i = 0; tb->b && i <= tb->mask; i++) {
    void *e = tb->b[i];
    while (e) {
      void *next;
      size_t h;
      if (subs) {
        sub *s = e;
        next = s->next;
        h = sub_hash(s->t, sub_id(s)) & (cap - 1);
        s->next = nb[h];
      } else {
        topic *t = e;
        next = t->next;
        h = (size_t)t->hash & (cap - 1);
        t->next = nb[h];
      }
      nb[h] = e;
      e = next;
    }
  }
  wsev__free(tb->b);
  tb->b = nb;
  tb->mask = cap - 1;
  return 0;
}

static topic *find_topic(const wsev_topics *ts, uint64_t h, const char *name, size_t len) {
  if (!ts || !ts->topics.b) return NULL;
  for (topic *t = ts->topics.b[h & ts->topics.mask]; t; t = t->next)
    if (t->hash == h && t->len == len && memcmp(t->name, name, len) == 0) return t;
  return NULL;
}

static sub **find_sub_link(const wsev_topics *ts, const topic *t, uint64_t id) {
  if (!ts->subs.b) return NULL;
  sub **link = (sub **)&ts->subs.b[sub_hash(t, id) & ts->subs.mask];
  for (; *link; link = &(*link)->next)
    if ((*link)->t == t && sub_id(*link) == id) return link;
  return NULL;
}

static sub *find_sub(const wsev_topics *ts, const topic *t, uint64_t id) {
  sub **link = find_sub_link(ts, t, id);
  return link ? *link : NULL;
}

static void topic_free(topic *t) {
  wsev__free(t->ids);
  wsev__free(t->subs);
  wsev__free(t);
}

static void remove_topic(wsev_topics *ts, topic *t) {
  topic **link = (topic **)&ts->topics.b[t->hash & ts->topics.mask];
  while (*link != t)
    link = &(*link)->next;
  *link = t->next;
  ts->topics.count--;
  if (ts->fed) wsev__fed_topic_removed(ts->fed, t->name, t->len);
  topic_free(t);
}

/* Take s out of everything: its topic's array (the last entry moves into its place),
 * the table, its connection's list; a topic left empty goes. */
static void remove_sub(wsev_topics *ts, sub *s) {
  topic *t = s->t;
  uint64_t id = sub_id(s);
  *find_sub_link(ts, t, id) = s->next;
  ts->subs.count--;
  uint32_t last = t->n - 1;
  t->ids[s->pos] = t->ids[last];
  t->subs[s->pos] = t->subs[last];
  t->subs[s->pos]->pos = s->pos;
  t->n = last;
  conn_subs *cs = wsev__idmap_get(&ts->conns, id);
  if (s->cprev)
    s->cprev->cnext = s->cnext;
  else
    cs->head = s->cnext;
  if (s->cnext) s->cnext->cprev = s->cprev;
  if (--cs->n == 0) {
    wsev__idmap_del(&ts->conns, id);
    wsev__free(cs);
  }
  wsev__free(s);
  if (t->n == 0) remove_topic(ts, t);
  /* With the last subscription gone, so are the tables (a context that stopped using
   * topics keeps no memory for them). */
  if (ts->subs.count == 0) {
    wsev__free(ts->subs.b);
    wsev__free(ts->topics.b);
    wsev__idmap_free(&ts->conns);
    memset(&ts->subs, 0, sizeof ts->subs);
    memset(&ts->topics, 0, sizeof ts->topics);
  }
}

/* ---- the API -------------------------------------------------------------------- */

static int bad_name(const char *name, size_t len) {
  return !name || len == 0 || len > WSEV_TOPIC_MAX_LEN;
}

static int id_known(const wsev_ctx *ctx, uint64_t id) {
  return ctx->io ? wsev__io_known(ctx, id) : wsev__conn_find(ctx, id) != NULL;
}

int wsev_subscribe(wsev_ctx *ctx, uint64_t id, const char *name, size_t len) {
  WSEV_CHECK_CTX(ctx, WSEV_EWRONGTHREAD);
  if (bad_name(name, len)) return UV_EINVAL;
  if (!id_known(ctx, id)) return WSEV_ENOCONN;
  wsev_topics *ts = wsev__topics_get(ctx, 1);
  if (!ts) return UV_ENOMEM;
  uint64_t h = hash_name(name, len);
  topic *t = find_topic(ts, h, name, len), *fresh = NULL;
  if (t && find_sub(ts, t, id)) return 1;
  /* Everything that can fail comes first; what it leaves behind (larger tables or
   * arrays) changes no state the application can see. */
  if ((!t && table_reserve(&ts->topics, 0)) || table_reserve(&ts->subs, 1)) return UV_ENOMEM;
  if (!t) {
    if (!(fresh = wsev__calloc(1, sizeof *fresh + len + 1))) return UV_ENOMEM;
    fresh->hash = h;
    fresh->len = (uint32_t)len;
    memcpy(fresh->name, name, len);
    t = fresh;
  }
  sub *s = NULL;
  conn_subs *cs = wsev__idmap_get(&ts->conns, id), *fresh_cs = NULL;
  if (t->n == t->cap) {
    uint32_t cap = t->cap ? t->cap * 2 : 4;
    uint64_t *ids = wsev__realloc(t->ids, cap * sizeof *ids);
    if (!ids) goto nomem;
    t->ids = ids;
    sub **subs = wsev__realloc(t->subs, cap * sizeof *subs);
    if (!subs) goto nomem;
    t->subs = subs;
    t->cap = cap;
  }
  if (!(s = wsev__malloc(sizeof *s))) goto nomem;
  if (!cs) {
    if (!(fresh_cs = cs = wsev__calloc(1, sizeof *cs))) goto nomem;
    if (wsev__idmap_put(&ts->conns, id, cs)) goto nomem;
  }
  /* Commit. */
  if (fresh) {
    size_t b = h & ts->topics.mask;
    t->next = ts->topics.b[b];
    ts->topics.b[b] = t;
    ts->topics.count++;
  }
  s->t = t;
  s->pos = t->n;
  t->ids[t->n] = id;
  t->subs[t->n] = s;
  t->n++;
  size_t b = sub_hash(t, id) & ts->subs.mask;
  s->next = ts->subs.b[b];
  ts->subs.b[b] = s;
  ts->subs.count++;
  s->cprev = NULL;
  s->cnext = cs->head;
  if (cs->head) cs->head->cprev = s;
  cs->head = s;
  cs->n++;
  if (fresh && ts->fed) wsev__fed_topic_added(ts->fed, t->name, t->len);
  return 0;
nomem:
  wsev__free(s);
  wsev__free(fresh_cs);
  if (fresh) topic_free(fresh);
  return UV_ENOMEM;
}

int wsev_unsubscribe(wsev_ctx *ctx, uint64_t id, const char *name, size_t len) {
  WSEV_CHECK_CTX(ctx, WSEV_EWRONGTHREAD);
  if (bad_name(name, len)) return UV_EINVAL;
  wsev_topics *ts = wsev__topics_get(ctx, 0);
  topic *t = find_topic(ts, hash_name(name, len), name, len);
  sub *s = t ? find_sub(ts, t, id) : NULL;
  if (!s) return 0;
  remove_sub(ts, s);
  return 1;
}

static int leave_all(wsev_ctx *ctx, uint64_t id) {
  wsev_topics *ts = wsev__topics_get(ctx, 0);
  if (!ts) return 0;
  int n = 0;
  conn_subs *cs;
  while ((cs = wsev__idmap_get(&ts->conns, id)) != NULL) {
    remove_sub(ts, cs->head); /* frees cs with the last one */
    n++;
  }
  return n;
}

int wsev_unsubscribe_all(wsev_ctx *ctx, uint64_t id) {
  WSEV_CHECK_CTX(ctx, WSEV_EWRONGTHREAD);
  return leave_all(ctx, id);
}

void wsev__topics_conn_closed(wsev_ctx *ctx, uint64_t id) { leave_all(ctx, id); }

/* To the local subscribers, except one: it is swapped to the end of the array and the
 * broadcast takes one id fewer (the order of a topic's ids means nothing). */
static int publish_local(wsev_ctx *ctx, wsev_topics *ts, const char *name, size_t len,
                         const void *data, size_t data_len, wsev_msg_type type, uint64_t except) {
  topic *t = find_topic(ts, hash_name(name, len), name, len);
  if (!t) return 0;
  uint32_t count = t->n;
  sub *s = except ? find_sub(ts, t, except) : NULL;
  if (s) {
    uint32_t last = t->n - 1;
    sub *other = t->subs[last];
    t->ids[s->pos] = t->ids[last];
    t->subs[s->pos] = other;
    other->pos = s->pos;
    t->ids[last] = except;
    t->subs[last] = s;
    s->pos = last;
    count--;
  }
  return count ? wsev_broadcast(ctx, t->ids, count, data, data_len, type) : 0;
}

int wsev_publish(wsev_ctx *ctx, const char *name, size_t len, const void *data, size_t data_len,
                 wsev_msg_type type, uint64_t except) {
  WSEV_CHECK_CTX(ctx, WSEV_EWRONGTHREAD);
  if (bad_name(name, len) || (!data && data_len) || (type != WSEV_TEXT && type != WSEV_BINARY))
    return UV_EINVAL;
  wsev_topics *ts = wsev__topics_get(ctx, 0);
  int rc = publish_local(ctx, ts, name, len, data, data_len, type, except);
  if (rc >= 0 && ts && ts->fed) wsev__fed_publish(ts->fed, name, len, data, data_len, type);
  return rc;
}

int wsev__topics_deliver(wsev_ctx *ctx, const char *name, size_t len, const void *data,
                         size_t data_len, wsev_msg_type type, uint64_t except) {
  return publish_local(ctx, wsev__topics_get(ctx, 0), name, len, data, data_len, type, except);
}

size_t wsev_get_topic_subscriber_count(const wsev_ctx *ctx, const char *name, size_t len) {
  WSEV_CHECK_CTX_OR(ctx, 0);
  if (bad_name(name, len)) return 0;
  topic *t = find_topic(wsev__topics_get((wsev_ctx *)ctx, 0), hash_name(name, len), name, len);
  return t ? t->n : 0;
}

size_t wsev_get_topic_subscribers(const wsev_ctx *ctx, const char *name, size_t len, uint64_t *ids,
                                  size_t cap) {
  WSEV_CHECK_CTX_OR(ctx, 0);
  if (bad_name(name, len) || (!ids && cap)) return 0;
  topic *t = find_topic(wsev__topics_get((wsev_ctx *)ctx, 0), hash_name(name, len), name, len);
  if (!t) return 0;
  if (cap) memcpy(ids, t->ids, (t->n < cap ? t->n : cap) * sizeof *ids);
  return t->n;
}

size_t wsev_get_subscription_count(const wsev_ctx *ctx, uint64_t id) {
  WSEV_CHECK_CTX_OR(ctx, 0);
  wsev_topics *ts = wsev__topics_get((wsev_ctx *)ctx, 0);
  conn_subs *cs = ts ? wsev__idmap_get(&ts->conns, id) : NULL;
  return cs ? cs->n : 0;
}

void wsev__topics_each(wsev_ctx *ctx, void (*fn)(void *arg, const char *name, size_t len),
                       void *arg) {
  wsev_topics *ts = wsev__topics_get(ctx, 0);
  for (size_t i = 0; ts && ts->topics.b && i <= ts->topics.mask; i++)
    for (topic *t = ts->topics.b[i]; t; t = t->next)
      fn(arg, t->name, t->len);
}

void wsev__topics_free(wsev_ctx *ctx) {
  wsev_topics *ts = ctx->topics;
  if (!ts) return;
  if (ts->fed) wsev__fed_free(ts->fed);
  ctx->topics = NULL;
  for (size_t i = 0; ts->topics.b && i <= ts->topics.mask; i++) {
    topic *t = ts->topics.b[i];
    while (t) {
      topic *next = t->next;
      for (uint32_t k = 0; k < t->n; k++)
        wsev__free(t->subs[k]);
      topic_free(t);
      t = next;
    }
  }
  for (size_t i = 0; ts->conns.slots && i <= ts->conns.mask; i++)
    wsev__free(ts->conns.slots[i].value);
  wsev__idmap_free(&ts->conns);
  wsev__free(ts->topics.b);
  wsev__free(ts->subs.b);
  wsev__free(ts);
}
