/* Threaded mode (wsev_set_io_threads): N I/O threads, each running a context of its own
 * (an "inner" context) on its own loop. An inner context does everything a context
 * does for its connections — accept, dial, TLS, the upgrade, frames, deadlines,
 * keepalive, corked writes — with the same code as inline mode. Its callbacks, on the
 * I/O thread, forward each event to the application's context through one inbox (a
 * mutex-guarded list, filled once per iteration of the thread's loop with one wakeup),
 * where the events are dispatched to the application exactly as inline ones, one at a
 * time. The other way, the application's writes, closes and broadcasts go to the
 * owning thread as posts to the inner context, gathered while a batch of events is
 * dispatched and handed over at its end, so everything written to a connection during
 * one batch arrives together and leaves in one writev.
 *
 * Ids: inner context k (of N) hands out k+1, k+1+N, k+1+2N, ...: ids stay unique
 * across threads, and an id names its thread. Listening: every inner context binds
 * the same address with SO_REUSEPORT, so the kernel spreads accepts over the threads
 * without a hand-off (uWebSockets does the same).
 *
 * Each connection the application knows has a link (conn_link) shared by both sides:
 * its conn_closed, allocated up front so it cannot be lost; the send accounting behind
 * wsev_get_buffered_amount, the send limit and conn_drained; the message counts that
 * make a reaction to later input (a pong, a close, the peer's EOF) wait until the
 * application's replies to earlier messages are queued on the thread; and a way to
 * close it that needs no allocation. A message the reader reassembled changes owner
 * without a copy (the reader's buffer), and large buffers that cross threads come back
 * through a shared cache. */
#include <stdio.h>
#include <stddef.h>
#include <string.h>

#include "alloc.h"
#include "context.h"
#include "dispatch.h"
#include "frame.h"

typedef struct conn_link conn_link;
typedef struct write_args write_args;

struct wsev_io_thread {
  wsev_io *io;
  wsev_ctx *inner; /* created and freed on the thread */
  uv_thread_t thread;
  uv_async_t stop;
  uv_sem_t ready;
  int index;
  int start_rc;
  int running;              /* created and not joined yet */
  conn_link *busy_head;     /* the thread's: connections whose reaction waits for the application */
  struct inbox_item *items; /* the thread's: small message items to reuse (see spare_items) */
  /* The thread's: events of this loop iteration, handed over together (flush_outbox),
   * and the small writes it ran, handed back with them (see spare_writes). */
  struct inbox_item *out_head, *out_tail;
  write_args *spent_writes, *spent_last;
  size_t n_spent_writes;
  uv_prepare_t before_poll;
  uv_check_t after_poll;
  /* The application's: calls to this thread made while it dispatches a batch of
   * events, handed over together at its end (post_to). */
  wsev_post_batch outgoing;
  /* Connections the application closes without memory to post the close: it puts them
   * here (an allocation-free way, through their links) and the thread closes them. */
  uv_mutex_t doom_lock;
  conn_link *doom_head;
  _Atomic int doomed; /* doom_head is not empty: the thread looks after its posted calls */
  int exited;         /* its loop ended: `stop` is closing (under io->lock) */
};

/* The application's view of a connection that lives on an I/O thread. */
typedef struct {
  void *user_data;
  conn_link *link;     /* shared with the thread until conn_closed */
  wsev_conn_info info; /* strings point into `strings` */
  char *strings;
  uint8_t open;    /* conn_accepted was dispatched */
  uint8_t closing; /* the application called wsev_close */
  uint8_t gone;    /* ours, abandoned before it opened: unknown to the API from now on */
  uint8_t ours;    /* a connection we opened: its frames are masked */
  uint8_t above;   /* what it was sent went above low_water: conn_drained is due */
} remote;

/* What an inbox item carries besides an event of the application's. */
enum { ITEM_EVENT, ITEM_UPGRADE, ITEM_HTTP, ITEM_DROPPED, ITEM_DONE };

/* An event from an I/O thread, waiting in the inbox. */
typedef struct inbox_item {
  struct inbox_item *next;
  int what;
  wsev_event ev;              /* data: the message's bytes or the close reason, owned */
  char *strings;              /* accepted: info's strings */
  wsev_request_copy *request; /* upgrade, http: owned */
  size_t data_cap;            /* ev.data came from the hand-off cache */
  int small;                  /* a small message's item: reused (spare_items) */
  conn_link *link;            /* accepted, message: the connection's shared part */
  /* Last: a message's item is allocated without it (352 bytes), its bytes follow the
   * fields above instead (message_bytes), so that the items in circulation between
   * the threads take fewer cache lines. */
  wsev_conn_info info; /* accepted: the connection's details */
} inbox_item;

#define MESSAGE_ITEM offsetof(inbox_item, info)

static uint8_t *message_bytes(inbox_item *item) { return (uint8_t *)item + MESSAGE_ITEM; }

/* What a connection's thread and the application's thread share while the application
 * knows the connection, allocated when it is told of it (the inner connection's data):
 * its conn_closed, which can then never be lost, and the send accounting behind
 * wsev_get_buffered_amount and conn_drained. The thread stops touching it when it
 * pushes the closed event (the inner connection's id is 0 from then on); the
 * application frees it with that event. */
struct conn_link {
  inbox_item closed;         /* first: freed as the closed event */
  _Atomic size_t in_transit; /* framed bytes the application sent, not yet queued on the thread */
  _Atomic size_t queued;     /* the thread's send queue after its last write or flush */
  _Atomic int want_drained;  /* the application waits for the total to drain to low_water */
  /* Messages: the thread counts those it hands over (the connection's `handed`), the
   * application those it is done with (after the callback's writes were posted). A
   * reaction to later input waits until they are equal; the application wakes the
   * thread only when it says it waits. Both count modulo 2^32. */
  _Atomic uint32_t acked;
  _Atomic int busy;
  conn_link *busy_next, *busy_prev; /* the thread's list of waiting connections */
  conn_link *doom_next;             /* under doom_lock: on the thread's doom list */
  uint16_t doom_code;
  uint8_t doomed;
};

/* A write on its way to the connection's thread: a post of its own. Lists of spare
 * ones are linked through post.next. */
struct write_args {
  wsev_post_item post; /* first */
  wsev_io *io;
  uint64_t id;
  uint8_t *data;
  size_t payload, cap;
  size_t len; /* framed: as counted on its way */
  int text;
  unsigned flags; /* wsev_send's */
};

static write_args *next_write(const write_args *w) { return (write_args *)w->post.next; }

static void free_writes(write_args *w) {
  while (w) {
    write_args *next = next_write(w);
    wsev__free(w);
    w = next;
  }
}

/* Large buffers that cross between threads (messages in, writes out) come from this
 * cache and go back to it: freeing them to malloc on one thread and allocating anew on
 * the other made the kernel fault in fresh pages for every 64 KiB message. */
#define HANDOFF_MIN (16 * 1024)
#define HANDOFF_KEEP 64
typedef struct {
  uv_mutex_t lock;
  int count;
  struct {
    uint8_t *data;
    size_t cap;
  } bufs[HANDOFF_KEEP];
} handoff_cache;

struct wsev_io {
  wsev_ctx *ctx;
  int count;
  int doom_locks;     /* threads whose doom_lock was made */
  int finished;       /* threads whose inner context is gone */
  unsigned next_dial; /* connections we open go to the threads in turn */
  wsev_io_thread *threads;
  wsev_idmap remotes;
  wsev_idmap deferred; /* id -> wsev_request_copy of an upgrade the application deferred */
  handoff_cache handoff;
  wsev_tls_sessions *client_sessions; /* wss connections we open resume on any thread */
  _Atomic size_t active_total;        /* accepted connections on all threads (max_connections) */
  uv_mutex_t lock;
  inbox_item *head, *tail;
  wsev_wakeup inbox;
  /* Small message items go back to the threads for reuse instead of to malloc, which
   * cost page faults and arena locking when freed on the other thread: the
   * application collects them per batch (returned) and hands them over under `lock`
   * when it takes the next batch; a thread takes them all when it pushes with none
   * left of its own. */
  inbox_item *spare_items, *returned, *returned_last;
  size_t n_spare_items, n_returned;
  int corked; /* a batch is dispatched: calls to the threads wait (post_to; nests) */
  /* Small writes go back to the application for reuse, as small message items go to
   * the threads: allocated on one thread and freed on the other, each cost malloc's
   * slow path. The threads hand them back under `lock` (returned_writes) when they
   * hand over their events, the application takes them when it takes the events. */
  write_args *spare_writes, *returned_writes, *returned_writes_last;
  size_t n_spare_writes, n_returned_writes;
};

/* The inline room of a small message's item, and of a small write. */
#define SMALL_ITEM 128
#define SMALL_WRITE 128
#define SPARE_ITEMS_MAX 4096

static wsev_io_thread *thread_of(wsev_io *io, uint64_t id) {
  return &io->threads[(id - 1) % (uint64_t)io->count];
}

/* On an I/O thread, per message: the public accessors would check the thread first. */
static wsev_io_thread *thread_here(const wsev_ctx *inner) { return inner->data; }

/* The link of an inner connection (its data), also while its conn_closed runs. */
static conn_link *link_of(wsev_ctx *inner, uint64_t id) {
  if (inner->closing && inner->closing->id == id) return inner->closing->user_data;
  wsev_conn *c = wsev__conn_find(inner, id);
  return c ? c->user_data : NULL;
}

/* ---- on the I/O threads --------------------------------------------------------------- */

/* Events leave a thread in batches: they wait in its outbox until the I/O callbacks of
 * the loop iteration are done (check) or the loop is about to wait (prepare), then go
 * into the inbox under one lock with at most one wakeup. Handed over one by one, the
 * first of each burst woke the application's thread, which on a shared core then ran
 * after nearly every message. */
static void push(wsev_io_thread *t, inbox_item *item) {
  item->next = NULL;
  if (t->out_tail)
    t->out_tail->next = item;
  else
    t->out_head = item;
  t->out_tail = item;
}

/* Into the inbox; the spare small items come back while the lock is held anyway. */
static void flush_outbox(wsev_io_thread *t) {
  if (!t->out_head && !t->spent_writes) return;
  wsev_io *io = t->io;
  uv_mutex_lock(&io->lock);
  int was_empty = io->head == NULL;
  if (t->out_head) {
    if (io->tail)
      io->tail->next = t->out_head;
    else
      io->head = t->out_head;
    io->tail = t->out_tail;
  }
  if (t->spent_writes) {
    t->spent_last->post.next = (wsev_post_item *)io->returned_writes;
    if (!io->returned_writes) io->returned_writes_last = t->spent_last;
    io->returned_writes = t->spent_writes;
    io->n_returned_writes += t->n_spent_writes;
    t->spent_writes = t->spent_last = NULL;
    t->n_spent_writes = 0;
  }
  if (!t->items && io->spare_items) {
    t->items = io->spare_items;
    io->spare_items = NULL;
    io->n_spare_items = 0;
  }
  uv_mutex_unlock(&io->lock);
  if (t->out_head && was_empty) wsev__wakeup_send(&io->inbox);
  t->out_head = t->out_tail = NULL;
}

static void on_before_poll(uv_prepare_t *p) { flush_outbox(p->data); }
static void on_after_poll(uv_check_t *c) { flush_outbox(c->data); }

static inbox_item *new_item(wsev_event_kind kind, uint64_t id) {
  inbox_item *item = wsev__calloc(1, sizeof *item);
  if (item) {
    item->ev.kind = (uint8_t)kind;
    item->ev.id = id;
  }
  return item;
}

static char *keep(char **at, const char *s) {
  if (!s) return NULL;
  size_t len = strlen(s) + 1;
  memcpy(*at, s, len);
  char *kept = *at;
  *at += len;
  return kept;
}

/* The link of a connection the application is told of (see conn_link). */
static conn_link *keep_link(wsev_ctx *inner, uint64_t id) {
  conn_link *link = link_of(inner, id);
  if (link) return link;
  if (!(link = wsev__calloc(1, sizeof *link))) return NULL;
  link->closed.ev.kind = WSEV_EV_CLOSED;
  link->closed.ev.id = id;
  wsev_set_conn_data(inner, id, link);
  return link;
}

/* The thread's side of the send accounting, after a connection's queue changed (by
 * `arrived` bytes the application sent, or by a flush): the application reads the
 * queue's size, and is told when everything (on the way or queued) drained to
 * low_water while it waits for that; it decides whether that is conn_drained. */
static void link_report(wsev_conn *c, size_t arrived) {
  conn_link *link = c->id ? c->user_data : NULL;
  if (!link) return;
  size_t queued = wsev__send_buffered(c);
  atomic_store_explicit(&link->queued, queued, memory_order_release);
  /* After the queue grew (the subtraction publishes it), so that the application may
   * count a write twice for a moment, but never not at all. */
  size_t on_way = arrived ? atomic_fetch_sub(&link->in_transit, arrived) - arrived
                          : atomic_load(&link->in_transit);
  if (queued + on_way <= c->ctx->set.low_water && c->state == WSEV_CONN_OPEN &&
      atomic_load(&link->want_drained) && atomic_exchange(&link->want_drained, 0)) {
    wsev_io_thread *t = thread_here(c->ctx);
    inbox_item *item = new_item(WSEV_EV_DRAINED, c->id);
    if (item) push(t, item);
  }
}

static void report_flushed(wsev_conn *c) { link_report(c, 0); }

static void busy_unlist(wsev_io_thread *t, conn_link *link) {
  if (!atomic_load_explicit(&link->busy, memory_order_relaxed)) return;
  atomic_store(&link->busy, 0);
  if (link->busy_prev)
    link->busy_prev->busy_next = link->busy_next;
  else
    t->busy_head = link->busy_next;
  if (link->busy_next) link->busy_next->busy_prev = link->busy_prev;
  link->busy_next = link->busy_prev = NULL;
}

/* The connection's messages not all done with: its reaction waits. Raising `busy`
 * before looking at `acked` (and the application doing the opposite) means that
 * either we see the last acknowledgement or the application sees `busy` and wakes us.
 * All acknowledged is not enough: the replies were posted before, but may still wait
 * in our queue; then the reaction waits for the queue to run (release_caught_up). */
static int caught_up(wsev_conn *c, conn_link *link) {
  return atomic_load(&link->acked) == c->handed && !wsev__post_waiting(c->ctx);
}

static int app_busy(wsev_conn *c) {
  if (!c->id || !c->announced) return 0;
  /* Its conn_accepted may still be queued behind this input: the link is made here
   * then (without memory the reaction goes now, out of order). */
  conn_link *link = c->user_data ? c->user_data : keep_link(c->ctx, c->id);
  if (!link || !c->handed || caught_up(c, link)) return 0;
  if (!atomic_load_explicit(&link->busy, memory_order_relaxed)) {
    wsev_io_thread *t = thread_here(c->ctx);
    atomic_store(&link->busy, 1);
    link->busy_prev = NULL;
    link->busy_next = t->busy_head;
    if (t->busy_head) t->busy_head->busy_prev = link;
    t->busy_head = link;
  }
  return !caught_up(c, link);
}

static void doom_unlist(wsev_io_thread *t, conn_link *link) {
  uv_mutex_lock(&t->doom_lock);
  if (link->doomed) {
    conn_link **pp = &t->doom_head;
    while (*pp != link)
      pp = &(*pp)->doom_next;
    *pp = link->doom_next;
    link->doomed = 0;
  }
  uv_mutex_unlock(&t->doom_lock);
}

/* After the posted calls: connections the application closed without memory close, and
 * connections the application caught up with go ahead. */
static void release_caught_up(wsev_ctx *inner) {
  wsev_io_thread *t = thread_here(inner);
  if (atomic_load(&t->doomed)) {  /* rare: no lock after every batch of posts */
    uv_mutex_lock(&t->doom_lock); /* their closed events are told after this */
    for (conn_link *d = t->doom_head; d; d = d->doom_next) {
      d->doomed = 0;
      wsev_close_with(inner, d->closed.ev.id, d->doom_code, NULL);
    }
    t->doom_head = NULL;
    atomic_store(&t->doomed, 0);
    uv_mutex_unlock(&t->doom_lock);
  }
  conn_link *link = t->busy_head;
  while (link) {
    conn_link *next = link->busy_next; /* closes are told after this: the list holds */
    wsev_conn *c = wsev__conn_find(inner, link->closed.ev.id);
    if (!c || caught_up(c, link)) { /* else posted meanwhile: we run again */
      busy_unlist(t, link);
      if (c) wsev__conn_acked(c);
    }
    link = next;
  }
}

static void inner_accepted(wsev_ctx *inner, uint64_t id) {
  wsev_io_thread *t = thread_here(inner);
  inbox_item *item = new_item(WSEV_EV_ACCEPTED, id);
  if (!item || !(item->link = keep_link(inner, id))) {
    wsev__free(item); /* never told the application: it gets nothing of this one */
    wsev_close_with(inner, id, 1011, "out of memory");
    return;
  }
  if (wsev_get_conn_info(inner, id, &item->info) == 0) {
    const wsev_conn_info *i = &item->info;
    const char *s[] = {i->path, i->protocol, i->server_name, i->tls_version, i->tls_cipher};
    size_t size = 0;
    for (int k = 0; k < 5; k++)
      size += s[k] ? strlen(s[k]) + 1 : 0;
    char *at = item->strings = wsev__malloc(size ? size : 1);
    if (at) {
      item->info.path = keep(&at, s[0]);
      item->info.protocol = keep(&at, s[1]);
      item->info.server_name = keep(&at, s[2]);
      item->info.tls_version = keep(&at, s[3]);
      item->info.tls_cipher = keep(&at, s[4]);
    } else { /* without memory for the strings: the addresses and flags still hold */
      item->info.path = "";
      item->info.protocol = item->info.server_name = NULL;
      item->info.tls_version = item->info.tls_cipher = NULL;
    }
  }
  push(t, item);
}

/* A buffer of at least `len` (>= HANDOFF_MIN) bytes; *cap is its capacity for
 * handoff_put. */
static uint8_t *handoff_get(wsev_io *io, size_t len, size_t *cap) {
  handoff_cache *h = &io->handoff;
  uint8_t *buf = NULL;
  uv_mutex_lock(&h->lock);
  int best = -1;
  for (int i = 0; i < h->count; i++)
    if (h->bufs[i].cap >= len && (best < 0 || h->bufs[i].cap < h->bufs[best].cap)) best = i;
  if (best >= 0) {
    buf = h->bufs[best].data;
    *cap = h->bufs[best].cap;
    h->bufs[best] = h->bufs[--h->count];
  }
  uv_mutex_unlock(&h->lock);
  if (!buf) {
    *cap = (len + 4095) & ~(size_t)4095;
    buf = wsev__malloc(*cap);
  }
  return buf;
}

static void handoff_put(wsev_io *io, uint8_t *buf, size_t cap) {
  if (!cap) {
    wsev__free(buf);
    return;
  }
  handoff_cache *h = &io->handoff;
  uv_mutex_lock(&h->lock);
  if (h->count < HANDOFF_KEEP) {
    h->bufs[h->count].data = buf;
    h->bufs[h->count++].cap = cap;
    buf = NULL;
  }
  uv_mutex_unlock(&h->lock);
  wsev__free(buf);
}

/* Items go back to malloc, small message items to the threads (on_inbox). */
static void item_free(wsev_io *io, inbox_item *item) {
  if (item->small && io->n_returned < SPARE_ITEMS_MAX) {
    item->next = io->returned;
    if (!io->returned) io->returned_last = item;
    io->returned = item;
    io->n_returned++;
    return;
  }
  if (item->ev.data != message_bytes(item)) handoff_put(io, item->ev.data, item->data_cap);
  wsev__free(item->strings);
  wsev__free(item->request);
  wsev__free(item);
}

/* A message that cannot be handed over for want of memory: it is never skipped, the
 * connection fails (and the application will not acknowledge it: we do). */
static void message_lost(wsev_ctx *inner, uint64_t id) {
  conn_link *link = link_of(inner, id);
  if (link) atomic_fetch_add(&link->acked, 1);
  wsev_close_with(inner, id, 1011, "out of memory");
}

/* A large message reassembled by the reader changes owner without a copy: the
 * reader's buffer goes to the application (which puts it into the hand-off cache when
 * done), and the thread's pool gets one from the cache in its place. */
static int take_message(wsev_conn *c, const wsev_read_event *ev) {
  if (ev->len < HANDOFF_MIN || !c->user_data) return 0;
  wsev_io_thread *t = thread_here(c->ctx);
  wsev_buf buf;
  inbox_item *item = new_item(WSEV_EV_MESSAGE, c->id);
  if (!item) return 0; /* emitted as usual: the copy then fails it too, cleanly */
  if (!wsev__reader_take_message(&c->reader, &buf)) {
    wsev__free(item);
    return 0;
  }
  item->ev.data = buf.data;
  item->ev.len = buf.len;
  item->data_cap = buf.cap;
  item->ev.msg_type = (uint8_t)(ev->text ? WSEV_TEXT : WSEV_BINARY);
  item->link = c->user_data;
  push(t, item);
  size_t cap;
  uint8_t *spare = handoff_get(t->io, buf.cap, &cap);
  wsev__buf_put(&c->ctx->pool, spare, cap); /* NULL is fine */
  return 1;
}

static void inner_message(wsev_ctx *inner, uint64_t id, const void *data, size_t len,
                          wsev_msg_type type) {
  wsev_io_thread *t = thread_here(inner);
  /* A small message travels inside its item, a large one in a hand-off buffer. */
  int inside = len < HANDOFF_MIN, small = len <= SMALL_ITEM;
  inbox_item *item = small ? t->items : NULL;
  if (item) {
    /* The spare items were last touched on the other thread, one cache miss each:
     * the next one is fetched while this message is handed over. */
    if ((t->items = item->next)) __builtin_prefetch(t->items, 1);
  } else {
    item = wsev__malloc(MESSAGE_ITEM + (small ? SMALL_ITEM : inside ? len : 0));
  }
  if (item) { /* what a message's item has (not info) */
    item->what = ITEM_EVENT;
    item->ev = (wsev_event){.kind = WSEV_EV_MESSAGE, .id = id};
    item->strings = NULL;
    item->request = NULL;
    item->data_cap = 0;
    item->small = small;
    item->ev.data = inside ? message_bytes(item) : handoff_get(t->io, len, &item->data_cap);
  }
  if (!item || !item->ev.data) {
    wsev__free(item);
    message_lost(inner, id);
    return;
  }
  if (len) memcpy(item->ev.data, data, len);
  item->ev.len = len;
  item->ev.msg_type = (uint8_t)type;
  item->link = link_of(inner, id);
  push(t, item);
}

static void inner_closed(wsev_ctx *inner, uint64_t id) {
  wsev_io_thread *t = thread_here(inner);
  wsev_close_info info;
  conn_link *link = link_of(inner, id); /* kept since it was told */
  if (!link) return;                    /* never told to the application */
  busy_unlist(t, link);                 /* from now on the link is the application's */
  doom_unlist(t, link);
  inbox_item *item = &link->closed;
  if (wsev_get_close_info(inner, id, &info) == 0) {
    item->ev.close_code = (uint16_t)info.code;
    item->ev.by_peer = (uint8_t)info.by_peer;
    item->ev.error = info.error;
    size_t len = strlen(info.reason);
    if (len && (item->ev.data = wsev__malloc(len + 1))) {
      memcpy(item->ev.data, info.reason, len + 1);
      item->ev.len = len;
    }
  }
  push(t, item);
}

/* Copy a request for the application's thread: one allocation. */
static wsev_request_copy *copy_request(const wsev_request *req) {
  const wsev_hs *hs = req->conn->handshake.request;
  size_t size = sizeof(wsev_request_copy), count = wsev_request_protocol_count(req), pos = 0;
  const char *name, *value;
  const char *strings[] = {wsev_request_path(req), wsev_request_method(req),
                           wsev_request_server_name(req)};
  for (int i = 0; i < 3; i++)
    size += strings[i] ? strlen(strings[i]) + 1 : 0;
  while ((name = wsev__hs_header_at(hs, &pos, &value)))
    size += strlen(name) + strlen(value) + 2;
  size += count * sizeof(char *);
  for (size_t i = 0; i < count; i++)
    size += strlen(wsev_request_protocol(req, i)) + 1;
  wsev_request_copy *copy = wsev__malloc(size);
  if (!copy) return NULL;
  memset(copy, 0, sizeof *copy);
  copy->protocols = (const char **)(copy + 1);
  char *at = (char *)(copy->protocols + count);
  copy->id = wsev_request_id(req);
  copy->path = keep(&at, strings[0]);
  copy->method = keep(&at, strings[1]);
  copy->server_name = keep(&at, strings[2]);
  copy->headers = at;
  for (pos = 0; (name = wsev__hs_header_at(hs, &pos, &value));) {
    keep(&at, name);
    keep(&at, value);
  }
  copy->headers_len = (size_t)(at - copy->headers);
  for (size_t i = 0; i < count; i++)
    copy->protocols[i] = keep(&at, wsev_request_protocol(req, i));
  copy->protocol_count = count;
  copy->keep_alive = wsev__hs_keep_alive(hs);
  return copy;
}

/* Both answer later: the application's thread decides, then posts the answer here. */
static int inner_upgrade(wsev_ctx *inner, wsev_request *req) {
  wsev_io_thread *t = thread_here(inner);
  inbox_item *item = new_item(WSEV_EV_ACCEPTED, wsev_request_id(req));
  if (!item || !(item->request = copy_request(req))) {
    wsev__free(item);
    return 503;
  }
  item->what = ITEM_UPGRADE;
  push(t, item);
  return WSEV_DEFER;
}

static void inner_http(wsev_ctx *inner, wsev_request *req) {
  wsev_io_thread *t = thread_here(inner);
  inbox_item *item = NULL;
  if (wsev__conn_take_id(req->conn) != 0 || !(item = new_item(0, req->conn->id)) ||
      !(item->request = copy_request(req))) {
    wsev__free(item);
    wsev_respond(req, 503, NULL, NULL, 0);
    return;
  }
  item->what = ITEM_HTTP;
  wsev__server_http_wait(req->conn);
  push(t, item);
}

static void inner_id_dropped(wsev_ctx *inner, uint64_t id) {
  wsev_io_thread *t = thread_here(inner);
  inbox_item *item = new_item(0, id);
  if (!item) return; /* the application's copy of a deferred upgrade stays until the end */
  item->what = ITEM_DROPPED;
  push(t, item);
}

static void on_stop(uv_async_t *a) { uv_stop(a->loop); }

static void thread_main(void *arg) {
  wsev_io_thread *t = arg;
  wsev_ctx *ctx = t->io->ctx;
  wsev_handler h = {.conn_accepted = inner_accepted,
                    .message_received = inner_message,
                    .conn_closed = inner_closed,
                    .upgrade_requested = ctx->handler.upgrade_requested ? inner_upgrade : NULL,
                    .http_request = ctx->handler.http_request ? inner_http : NULL};
  t->start_rc = wsev_ctx_new(&t->inner, NULL, &h, t);
  if (!t->start_rc) {
    wsev_ctx *inner = t->inner;
    inner->set = ctx->set;
    inner->set.timeout_ms = 0; /* the application's context keeps the loop timeout */
    wsev_set_timeout(inner, 0);
    wsev_set_keepalive(inner, ctx->set.ping_interval_ms, ctx->set.ping_timeout_ms);
    inner->id_dropped = inner_id_dropped;
    inner->send_report = report_flushed; /* conn_drained comes from there */
    inner->app_busy = app_busy;
    inner->take_message = take_message;
    inner->posts_done = release_caught_up;
    inner->active_total = &t->io->active_total;
    inner->client_sessions = t->io->client_sessions; /* NULL: each thread its own */
    inner->same_host_origin = ctx->same_host_origin;
    for (size_t i = 0; i < ctx->n_origins; i++)
      wsev_allow_origin(inner, ctx->origins[i]);
    inner->next_id = (uint64_t)t->index + 1;
    inner->id_stride = (uint64_t)t->io->count;
    uv_loop_t *loop = wsev_get_loop(inner);
    t->start_rc = uv_async_init(loop, &t->stop, on_stop);
    if (t->start_rc) {
      wsev_ctx_free(inner);
    } else { /* neither keeps the loop running; libuv's init cannot fail */
      uv_prepare_init(loop, &t->before_poll);
      uv_check_init(loop, &t->after_poll);
      t->before_poll.data = t->after_poll.data = t;
      uv_prepare_start(&t->before_poll, on_before_poll);
      uv_check_start(&t->after_poll, on_after_poll);
      uv_unref((uv_handle_t *)&t->before_poll);
      uv_unref((uv_handle_t *)&t->after_poll);
    }
    /* `stop` keeps the loop running until wsev_shutdown (which unrefs it: the loop then
     * ends with the last connection) or wsev_ctx_free (which sends it). */
  }
  uv_sem_post(&t->ready);
  if (t->start_rc) return;
  /* Until stopped; after wsev_shutdown, until the last connection is gone. */
  uv_run(wsev_get_loop(t->inner), UV_RUN_DEFAULT);
  uv_mutex_lock(&t->io->lock);
  t->exited = 1; /* no stop request comes after this */
  uv_mutex_unlock(&t->io->lock);
  uv_close((uv_handle_t *)&t->stop, NULL);
  uv_close((uv_handle_t *)&t->before_poll, NULL);
  uv_close((uv_handle_t *)&t->after_poll, NULL);
  /* Connections still here are dropped without callbacks: their closed events too
   * (those whose conn_closed was emitted, id 0, sent theirs on: they only linger). */
  for (wsev_conn *c = t->inner->all_head; c; c = c->all_next) {
    if (c->id) wsev__free(c->user_data);
    c->user_data = NULL;
  }
  wsev_ctx_free(t->inner);
  inbox_item *done = wsev__calloc(1, sizeof *done);
  if (done) { /* without memory the application's loop is not told, only freed */
    done->what = ITEM_DONE;
    push(t, done);
  }
  flush_outbox(t);
}

/* ---- calls into a thread -------------------------------------------------------------- */

/* The application's calls to thread t's context (fn runs there; fn(NULL, arg) if it is
 * dropped). While a batch of events or of posted work is dispatched (corked) they wait
 * and go together at its end: one lock and wakeup per thread and batch, where a wakeup per reply let the
 * thread preempt the application after each one on a shared core. The order of the
 * calls to one thread is kept whichever way they go: everything else that reaches a
 * thread sends what waits first (send_waiting). */
static int post_to(wsev_io_thread *t, wsev_post_fn fn, void *arg) {
  if (t->io->corked) return wsev__post_batch_add(&t->outgoing, fn, arg);
  return wsev__post_internal(t->inner, fn, arg);
}

static void send_waiting(wsev_io_thread *t) { wsev__post_batch_send(t->inner, &t->outgoing); }

void wsev__io_cork(wsev_ctx *ctx) { ctx->io->corked++; }

void wsev__io_uncork(wsev_ctx *ctx) {
  wsev_io *io = ctx->io;
  if (--io->corked || ctx->freeing) return; /* (freeing: wsev_ctx_free dropped them) */
  for (int i = 0; i < io->count; i++)
    send_waiting(&io->threads[i]);
}

/* Run fn on thread t's context and wait for it (setup calls that return a result:
 * listen, dial, adopt). */
typedef struct {
  uv_sem_t done;
  int (*fn)(wsev_ctx *inner, void *arg);
  void *arg;
  int rc;
} sync_call;

static void run_sync(wsev_ctx *inner, void *arg) {
  sync_call *call = arg;
  call->rc = inner ? call->fn(inner, call->arg) : UV_ECANCELED;
  uv_sem_post(&call->done);
}

static int call_sync(wsev_io_thread *t, int (*fn)(wsev_ctx *, void *), void *arg) {
  sync_call call = {.fn = fn, .arg = arg};
  if (uv_sem_init(&call.done, 0) != 0) return UV_ENOMEM;
  send_waiting(t);
  int rc = wsev__post_internal(t->inner, run_sync, &call);
  if (rc == 0) {
    uv_sem_wait(&call.done);
    rc = call.rc;
  }
  uv_sem_destroy(&call.done);
  return rc;
}

/* ---- the application's side ----------------------------------------------------------- */

static void remote_free(remote *r) {
  if (!r) return;
  wsev__free(r->strings);
  wsev__free(r);
}

static void finish_thread(wsev_io *io) {
  if (++io->finished == io->count) uv_unref((uv_handle_t *)&io->inbox); /* the loop may end */
}

/* An answer to a request, posted back to its thread. */
typedef struct {
  uint64_t id;
  int status;        /* upgrade: 0 accept, else the status to refuse with */
  char *protocol;    /* upgrade: in this allocation */
  uint8_t *response; /* http: malloc'd, or NULL for 404 */
  size_t len;
} answer;

static void upgrade_answer_on_thread(wsev_ctx *inner, void *arg) {
  answer *a = arg;
  if (!inner)
    ; /* dropped: the context is going */
  else if (a->status)
    wsev_reject(inner, a->id, a->status);
  else
    wsev_accept(inner, a->id, a->protocol);
  wsev__free(a);
}

static void http_answer_on_thread(wsev_ctx *inner, void *arg) {
  answer *a = arg;
  wsev_conn *c = inner ? wsev__idmap_get(&inner->ids, a->id) : NULL;
  if (c) wsev__server_http_answer(c, a->response, a->len);
  wsev__free(a->response);
  wsev__free(a);
}

static int post_upgrade_answer(wsev_io *io, uint64_t id, int status, const char *protocol) {
  size_t len = protocol ? strlen(protocol) + 1 : 0;
  answer *a = wsev__calloc(1, sizeof *a + len);
  if (!a) return UV_ENOMEM;
  a->id = id;
  a->status = status;
  if (protocol) a->protocol = memcpy(a + 1, protocol, len);
  int rc = post_to(thread_of(io, id), upgrade_answer_on_thread, a);
  if (rc) wsev__free(a);
  return rc;
}

/* The application's upgrade_requested or http_request, on a copy of the request. */
static void ask_application(wsev_io *io, inbox_item *item) {
  wsev_ctx *ctx = io->ctx;
  wsev_request req = {.copy = item->request};
  uint64_t id = item->request->id;
  wsev__dispatch_pending(ctx); /* what was queued before goes first */
  if (item->what == ITEM_HTTP) {
    req.in_http = 1;
    ctx->handler.http_request(ctx, &req);
    answer *a = wsev__calloc(1, sizeof *a);
    if (!a) { /* the request gets 503 at its deadline */
      wsev__free(req.response);
      return;
    }
    a->id = id;
    a->response = req.response;
    a->len = req.response_len;
    if (post_to(thread_of(io, id), http_answer_on_thread, a) != 0) {
      wsev__free(a->response);
      wsev__free(a);
    }
    return;
  }
  int verdict = ctx->handler.upgrade_requested(ctx, &req);
  if (verdict == WSEV_DEFER) {
    if (wsev__idmap_put(&io->deferred, id, item->request) == 0) item->request = NULL;
    return;
  }
  int status = verdict == WSEV_ACCEPT ? 0 : verdict >= 400 && verdict <= 599 ? verdict : 500;
  post_upgrade_answer(io, id, status, req.selected);
}

int wsev__io_decide(wsev_ctx *ctx, uint64_t id, int status, const char *protocol) {
  wsev_io *io = ctx->io;
  wsev_request_copy *copy = wsev__idmap_get(&io->deferred, id);
  if (!copy) return WSEV_ENOCONN;
  const char *offered = NULL;
  for (size_t i = 0; protocol && i < copy->protocol_count && !offered; i++)
    if (strcmp(copy->protocols[i], protocol) == 0) offered = copy->protocols[i];
  if (protocol && !offered) return UV_EINVAL;
  int rc = post_upgrade_answer(io, id, status, offered);
  if (rc) return rc;
  wsev__idmap_del(&io->deferred, id);
  wsev__free(copy);
  return 0;
}

/* Close a connection without allocating (after an allocation failed): its thread
 * closes it with `code` after what was posted before. */
static void doom(wsev_io *io, uint64_t id, conn_link *link, unsigned code) {
  wsev_io_thread *t = thread_of(io, id);
  send_waiting(t); /* the close comes after them */
  uv_mutex_lock(&t->doom_lock);
  if (!link->doomed) {
    link->doomed = 1;
    link->doom_code = (uint16_t)code;
    link->doom_next = t->doom_head;
    t->doom_head = link;
    atomic_store(&t->doomed, 1);
  }
  uv_mutex_unlock(&t->doom_lock);
  wsev__wakeup_send(&t->inner->post_wakeup);
}

/* ---- the application's side of the send accounting ----------------------------------- */

static size_t estimate(const conn_link *link) {
  return atomic_load(&link->in_transit) + atomic_load(&link->queued);
}

/* A message as it will be queued: its frame header (masked for ours) counts too. */
static size_t framed(const remote *r, size_t len) {
  return len + wsev__frame_header_size(len, r->ours);
}

/* Before bytes go to the thread (it takes them off again when they arrive). */
static void count_sent(wsev_io *io, remote *r, size_t bytes) {
  conn_link *link = r->link;
  if (!link) return;
  size_t total = atomic_fetch_add(&link->in_transit, bytes) + bytes + atomic_load(&link->queued);
  if (total > io->ctx->set.low_water) {
    r->above = 1;
    if (!atomic_load_explicit(&link->want_drained, memory_order_relaxed))
      atomic_store(&link->want_drained, 1);
  }
}

/* The thread saw the total drain: conn_drained if it still holds now, else wait again.
 * (Raising want_drained before looking again: a drain after that tells us again.) */
static int drained_now(wsev_io *io, remote *r) {
  if (!r->above || !r->link) return 0;
  size_t low = io->ctx->set.low_water;
  if (estimate(r->link) > low) {
    atomic_store(&r->link->want_drained, 1);
    if (estimate(r->link) > low) return 0;
  }
  r->above = 0;
  return 1;
}

static void deliver(wsev_io *io, inbox_item *item) {
  wsev_ctx *ctx = io->ctx;
  switch (item->what) {
  case ITEM_DONE: finish_thread(io); return;
  case ITEM_UPGRADE:
  case ITEM_HTTP: ask_application(io, item); return;
  case ITEM_DROPPED: {
    wsev_request_copy *copy = wsev__idmap_get(&io->deferred, item->ev.id);
    if (copy) {
      wsev__idmap_del(&io->deferred, item->ev.id);
      wsev__free(copy);
    }
    return;
  }
  default: break;
  }
  remote *r = wsev__idmap_get(&io->remotes, item->ev.id);
  switch (item->ev.kind) {
  case WSEV_EV_ACCEPTED:
    if (r && r->gone) break; /* opened while the application abandoned it */
    if (!r &&
        (!(r = wsev__calloc(1, sizeof *r)) || wsev__idmap_put(&io->remotes, item->ev.id, r))) {
      remote_free(r); /* the application never sees it; its close is dropped too */
      doom(io, item->ev.id, item->link, 1011);
      break;
    }
    r->info = item->info;
    r->link = item->link;
    r->strings = item->strings;
    item->strings = NULL;
    r->open = 1;
    wsev__deliver(ctx, &item->ev);
    break;
  case WSEV_EV_CLOSED:
    doom_unlist(thread_of(io, item->ev.id), (conn_link *)item); /* the item is the link */
    if (!r) break; /* never told (refused upgrades do not get here) */
    item->ev.user_data = r->user_data;
    wsev__idmap_del(&io->remotes, item->ev.id);
    remote_free(r);
    wsev__deliver(ctx, &item->ev);
    break;
  case WSEV_EV_DRAINED:
    if (r && r->open && drained_now(io, r)) wsev__deliver(ctx, &item->ev);
    break;
  default:
    if (r && r->open) wsev__deliver(ctx, &item->ev);
  }
}

/* A message the application is done with, its replies on their way to the thread (see
 * conn_link): the thread may go on with a reaction that waits for it. */
static void acknowledge(wsev_io *io, inbox_item *item) {
  if (item->what != ITEM_EVENT || item->ev.kind != WSEV_EV_MESSAGE || !item->link) return;
  atomic_fetch_add(&item->link->acked, 1);
  if (atomic_load(&item->link->busy))
    wsev__wakeup_send(&thread_of(io, item->ev.id)->inner->post_wakeup);
}

static void on_inbox(wsev_wakeup *w) {
  wsev_io *io = w->poll.data;
  for (;;) {
    uv_mutex_lock(&io->lock);
    inbox_item *batch = io->head;
    io->head = io->tail = NULL;
    if (io->returned && io->n_spare_items < SPARE_ITEMS_MAX) { /* the last batch's */
      io->returned_last->next = io->spare_items;
      io->spare_items = io->returned;
      io->n_spare_items += io->n_returned;
      io->returned = NULL;
      io->n_returned = 0;
    }
    write_args *writes = io->returned_writes, *writes_last = io->returned_writes_last;
    size_t n_writes = io->n_returned_writes;
    io->returned_writes = NULL;
    io->n_returned_writes = 0;
    uv_mutex_unlock(&io->lock);
    if (writes && io->n_spare_writes + n_writes <= SPARE_ITEMS_MAX) {
      writes_last->post.next = (wsev_post_item *)io->spare_writes;
      io->spare_writes = writes;
      io->n_spare_writes += n_writes;
    } else {
      free_writes(writes); /* enough spare */
    }
    if (!batch) return;
    wsev__dispatch_begin(io->ctx); /* the batch's callbacks run one after another */
    wsev__io_cork(io->ctx);
    for (inbox_item *item = batch; item && !io->ctx->freeing; item = item->next) {
      if (item->next) __builtin_prefetch(item->next); /* written on the other thread */
      deliver(io, item);
    }
    wsev__io_uncork(io->ctx);
    /* Only now are the replies to the batch's messages on their way. */
    while (batch) {
      inbox_item *next = batch->next;
      if (!io->ctx->freeing) acknowledge(io, batch); /* (else the threads are gone) */
      item_free(io, batch);
      batch = next;
    }
    wsev__dispatch_end(io->ctx);
  }
}

static void stop_threads(wsev_io *io) {
  for (int i = 0; i < io->count; i++) {
    wsev_io_thread *t = &io->threads[i];
    if (!t->running) continue;
    uv_mutex_lock(&io->lock);
    if (!t->exited) uv_async_send(&t->stop);
    uv_mutex_unlock(&io->lock);
    uv_thread_join(&t->thread);
    t->running = 0;
  }
}

static void io_free(wsev_io *io) {
  for (size_t i = 0; i <= io->remotes.mask && io->remotes.slots; i++)
    if (io->remotes.slots[i].id) remote_free(io->remotes.slots[i].value);
  wsev__idmap_free(&io->remotes);
  for (size_t i = 0; i <= io->deferred.mask && io->deferred.slots; i++)
    if (io->deferred.slots[i].id) wsev__free(io->deferred.slots[i].value);
  wsev__idmap_free(&io->deferred);
  inbox_item *item = io->head;
  while (item) {
    inbox_item *next = item->next;
    item_free(io, item);
    item = next;
  }
  uv_mutex_destroy(&io->lock);
  inbox_item *lists[] = {io->returned, io->spare_items};
  for (int k = 0; k < 2; k++)
    for (item = lists[k]; item;) {
      inbox_item *next = item->next;
      wsev__free(item);
      item = next;
    }
  for (int i = 0; i < io->count; i++) { /* the threads are gone */
    for (item = io->threads[i].items; item;) {
      inbox_item *next = item->next;
      wsev__free(item);
      item = next;
    }
    free_writes(io->threads[i].spent_writes);
  }
  free_writes(io->spare_writes);
  free_writes(io->returned_writes);
  while (io->handoff.count)
    wsev__free(io->handoff.bufs[--io->handoff.count].data);
  uv_mutex_destroy(&io->handoff.lock);
  wsev__tls_sessions_unref(io->client_sessions);
  for (int i = 0; i < io->doom_locks; i++)
    uv_mutex_destroy(&io->threads[i].doom_lock);
  wsev__free(io->threads);
  wsev__free(io);
}

static void on_inbox_closed(uv_handle_t *h) {
  wsev_io *io = h->data;
  wsev_ctx *ctx = io->ctx;
  io_free(io);
  wsev__handle_closed(ctx);
}

int wsev_set_io_threads(wsev_ctx *ctx, unsigned count) {
  WSEV_CHECK_CTX(ctx, WSEV_EWRONGTHREAD);
  if (ctx->io || ctx->listeners || ctx->all_head || ctx->freeing || ctx->shutting_down ||
      count > 1024)
    return UV_EINVAL;
  if (count == 0) return 0;
  wsev_io *io = wsev__calloc(1, sizeof *io);
  if (!io) return UV_ENOMEM;
  io->ctx = ctx;
  io->count = (int)count;
  wsev__idmap_init(&io->remotes);
  wsev__idmap_init(&io->deferred);
  if (!(io->threads = wsev__calloc(count, sizeof *io->threads)) || uv_mutex_init(&io->lock)) {
    wsev__free(io->threads);
    wsev__free(io);
    return UV_ENOMEM;
  }
  if (uv_mutex_init(&io->handoff.lock)) {
    uv_mutex_destroy(&io->lock);
    wsev__free(io->threads);
    wsev__free(io);
    return UV_ENOMEM;
  }
  int rc = wsev__wakeup_init(ctx->loop, &io->inbox, on_inbox);
  if (rc) {
    uv_mutex_destroy(&io->handoff.lock);
    uv_mutex_destroy(&io->lock);
    wsev__free(io->threads);
    wsev__free(io);
    return rc;
  }
  io->inbox.poll.data = io;
  io->client_sessions = wsev__tls_sessions_new(); /* without it, sessions per thread */
  wsev__handle_opened(ctx);
  ctx->io = io;
  for (unsigned i = 0; i < count && !rc; i++) {
    wsev_io_thread *t = &io->threads[i];
    t->io = io;
    t->index = (int)i;
    if ((rc = uv_mutex_init(&t->doom_lock)) != 0) break;
    io->doom_locks++;
    if ((rc = uv_sem_init(&t->ready, 0)) != 0) break;
    if ((rc = uv_thread_create(&t->thread, thread_main, t)) == 0) {
      uv_sem_wait(&t->ready);
      rc = t->start_rc;
      if (rc)
        uv_thread_join(&t->thread);
      else
        t->running = 1;
    }
    uv_sem_destroy(&t->ready);
  }
  if (rc) {
    stop_threads(io);
    ctx->io = NULL;
    wsev__wakeup_close(&io->inbox, on_inbox_closed);
  }
  return rc;
}

unsigned wsev_get_io_threads(const wsev_ctx *ctx) {
  WSEV_CHECK_CTX_OR(ctx, 0);
  return ctx->io ? (unsigned)ctx->io->count : 0;
}

void wsev__io_free(wsev_ctx *ctx) {
  wsev_io *io = ctx->io;
  stop_threads(io); /* no thread touches the inbox after this */
  for (int i = 0; i < io->count; i++) /* freed during a batch: its calls never leave */
    wsev__post_batch_drop(&io->threads[i].outgoing);
  wsev__wakeup_close(&io->inbox, on_inbox_closed);
}

/* ---- listening and dialing: setup calls, run on the threads and waited for -------------- */

static int listen_on_thread(wsev_ctx *inner, void *arg) { return wsev__listen(inner, arg); }

int wsev__io_listen(wsev_ctx *ctx, wsev_listen_how *how) {
  wsev_io *io = ctx->io;
  wsev_listen_options o = *how->options;
  char port[12];
  int rc = 0;
  if (!o.unix_path) {
    /* Every thread binds the port the probe got (SO_REUSEPORT: the kernel spreads
     * clients over them); a Unix socket is bound once and the others listen on it too. */
    if ((rc = wsev__listen_probe(o.host, o.port)) < 0) return rc;
    snprintf(port, sizeof port, "%d", rc);
    o.port = port;
    how->reuseport = 1;
  }
  how->options = &o;
  /* One set of ticket keys for all threads: a ticket resumes on any of them. */
  if (o.cert_count && !(how->tickets = wsev__tls_tickets_new())) return UV_ENOMEM;
  for (int i = 0; i < io->count && rc >= 0; i++)
    rc = call_sync(&io->threads[i], listen_on_thread, how);
  wsev__tls_tickets_unref(how->tickets); /* each listener's configuration holds its own reference */
  how->tickets = NULL;
  return rc; /* a failure on a later thread leaves the earlier ones listening */
}

typedef struct {
  int id;
  const wsev_tls_cert *certs;
  size_t count;
  int commit;
} set_certs_args;

static int prepare_certs_on_thread(wsev_ctx *inner, void *arg) {
  set_certs_args *a = arg;
  return wsev__listeners_prepare_certs(inner, a->id, a->certs, a->count);
}

static int commit_certs_on_thread(wsev_ctx *inner, void *arg) {
  set_certs_args *a = arg;
  wsev__listeners_commit_certs(inner, a->id, a->commit);
  return 0;
}

int wsev__io_set_certs(wsev_ctx *ctx, int id, const wsev_tls_cert *certs, size_t count) {
  wsev_io *io = ctx->io;
  /* Every thread loads the set (with its own random source) before any takes it: a
   * set that fails anywhere changes nothing. */
  set_certs_args a = {id, certs, count, 0};
  int rc = 0;
  for (int i = 0; i < io->count && rc == 0; i++)
    rc = call_sync(&io->threads[i], prepare_certs_on_thread, &a);
  a.commit = rc == 0;
  for (int i = 0; i < io->count; i++)
    call_sync(&io->threads[i], commit_certs_on_thread, &a);
  return rc;
}

typedef struct {
  const char *url;
  const wsev_client_options *options;
  uint64_t id;
  uv_os_sock_t *sock;
  conn_link *link; /* ours: told at once */
} open_args;

static int open_on_thread(wsev_ctx *inner, void *arg) {
  open_args *a = arg;
  /* The application's data stays in its view; the inner connection's data is its
   * closed event, allocated now since ours are told at once. */
  wsev_client_options options = {0};
  if (a->options) options = *a->options;
  options.data = NULL;
  int rc = wsev__client_open(inner, a->url, &options, &a->id, a->sock);
  if (rc == 0 && a->url && !(a->link = keep_link(inner, a->id))) {
    wsev_close(inner, a->id); /* abandoned before it was told: no event */
    return UV_ENOMEM;
  }
  return rc;
}

int wsev__io_open(wsev_ctx *ctx, const char *url, const wsev_client_options *options, uint64_t *id,
                  uv_os_sock_t *sock) {
  wsev_io *io = ctx->io;
  wsev_io_thread *t = &io->threads[io->next_dial++ % (unsigned)io->count];
  remote *r = NULL;
  open_args a = {url, options, 0, sock, NULL};
  if (url) {
    /* Ours are told to the application at once: reserve the id now. */
    a.id = atomic_fetch_add(&t->inner->next_id, t->inner->id_stride);
    if (!(r = wsev__calloc(1, sizeof *r)) || wsev__idmap_put(&io->remotes, a.id, r) != 0) {
      wsev__free(r);
      return UV_ENOMEM;
    }
    r->user_data = options ? options->data : NULL;
    r->ours = 1;
  }
  int rc = call_sync(t, open_on_thread, &a);
  if (rc) {
    if (r) {
      wsev__idmap_del(&io->remotes, a.id);
      remote_free(r);
    }
    return rc;
  }
  if (r) r->link = a.link;
  if (id) *id = a.id;
  return 0;
}

/* ---- the application's calls, routed to the owning thread ------------------------------- */

static remote *find(wsev_io *io, uint64_t id) {
  remote *r = wsev__idmap_get(&io->remotes, id);
  return r && !r->gone ? r : NULL;
}

int wsev__io_known(const wsev_ctx *ctx, uint64_t id) { return find(ctx->io, id) != NULL; }

static void refuse_on_thread(wsev_ctx *inner, void *arg) {
  wsev_conn *c = inner ? wsev__conn_find(inner, *(uint64_t *)arg) : NULL;
  if (c && wsev__conn_opening(c))
    wsev__client_fail(c, WSEV_EBACKPRESSURE, "send limit reached before it opened");
  else if (c)
    wsev__send_refuse(c);
  wsev__free(arg);
}

static void write_on_thread(wsev_ctx *inner, void *arg) {
  write_args *w = arg;
  /* Events of this batch (a close) are told after it: the link stays ours meanwhile. */
  wsev_conn *c = inner ? wsev__conn_find(inner, w->id) : NULL;
  if (c) {
    int rc = wsev__send(c, w->text ? WSEV_OP_TEXT : WSEV_OP_BINARY, w->data, w->payload, w->flags);
    link_report(c, w->len);
    /* The application was told it went: one it cannot queue (no memory to frame or
     * compress it) fails the connection, as a write lost on its way does. */
    if (rc == UV_ENOMEM) wsev_close_with(inner, w->id, 1011, "out of memory");
  }
  if (w->payload <= SMALL_WRITE && inner) { /* room for SMALL_WRITE: back for reuse */
    wsev_io_thread *t = thread_here(inner);
    w->post.next = (wsev_post_item *)t->spent_writes;
    if (!t->spent_writes) t->spent_last = w;
    t->spent_writes = w;
    t->n_spent_writes++;
    return;
  }
  if (w->data != (uint8_t *)(w + 1)) handoff_put(w->io, w->data, w->cap);
  wsev__free(w);
}

/* A write that cannot reach its thread for want of memory: the connection fails
 * (1011), since its peer would otherwise get the later messages without this one. */
static int lost_write(wsev_io *io, remote *r, uint64_t id) {
  if (r->link) {
    doom(io, id, r->link, 1011);
    r->closing = 1;
  }
  return UV_ENOMEM;
}

/* A write over the send limit is refused here, as inline, from what the thread last
 * reported plus what is on its way. */
static int refused_for_backpressure(wsev_io *io, remote *r, uint64_t id, size_t len) {
  conn_link *link = r->link;
  size_t max = io->ctx->set.max_buffered;
  if (!link) return 0;
  size_t waiting = estimate(link);
  /* Before ours opens, as inline, even a first message over the limit is refused. */
  if (max && (waiting || !r->open) && (len > max || waiting > max - len)) {
    uint64_t *arg = wsev__malloc(sizeof *arg);
    if (arg) *arg = id;
    if (!arg || post_to(thread_of(io, id), refuse_on_thread, arg) != 0) {
      wsev__free(arg);
      doom(io, id, link, 1008);
    }
    r->closing = 1;
    r->gone = !r->open; /* abandoned: as inline, the id is unknown from now on */
    return 1;
  }
  return 0;
}

/* A broadcast on its way to one thread: the frame, shared by every thread's recipients. */
typedef struct {
  wsev_shared *frame; /* one reference of this item's */
  int opcode;
  size_t header; /* the payload starts here in frame->data */
  size_t count;
  uint64_t ids[];
} broadcast_args;

static void broadcast_on_thread(wsev_ctx *inner, void *arg) {
  broadcast_args *b = arg;
  if (inner) {
    const uint8_t *payload = b->frame->data + b->header;
    size_t len = b->frame->len - b->header;
    /* Compressed, where recipients agreed to it, once per window on this thread. */
    wsev_bcast bc;
    wsev__bcast_init(&bc, b->opcode, payload, len, len > WSEV_SHARE_MIN ? b->frame : NULL,
                     b->frame->data, b->frame->len);
    inner->in_api++; /* a recipient over its limit closes: its event waits for us */
    for (size_t i = 0; i < b->count; i++) {
      wsev_conn *c = wsev__conn_find(inner, b->ids[i]);
      if (c) {
        int rc = wsev__send_framed(c, &bc);
        link_report(c, len + wsev__frame_header_size(len, c->client)); /* as counted */
        if (rc == UV_ENOMEM) wsev_close_with(inner, b->ids[i], 1011, "out of memory");
      }
    }
    inner->in_api--;
    wsev__bcast_done(&bc);
  }
  wsev__shared_unref(b->frame);
  wsev__free(b);
}

int wsev__io_write(wsev_ctx *ctx, uint64_t id, const void *data, size_t len, int text,
                   unsigned flags) {
  wsev_io *io = ctx->io;
  remote *r = find(io, id);
  if (!r) return WSEV_ENOCONN;
  if (r->closing) return WSEV_ECLOSING;
  if (refused_for_backpressure(io, r, id, len)) return WSEV_EBACKPRESSURE;
  /* A small message travels inside its write_args, a large one in a hand-off buffer.
   * (Framing a large one here into a shared frame that joins the thread's queue as it
   * is saves the thread a copy, but the frames then come from malloc on one thread and
   * go back to it on another: measured 57 against 36 us per 64 KiB echo.) */
  int inside = len < HANDOFF_MIN, small = len <= SMALL_WRITE;
  write_args *w = small ? io->spare_writes : NULL;
  if (w) {
    if ((io->spare_writes = next_write(w))) __builtin_prefetch(io->spare_writes, 1); /* as items */
    io->n_spare_writes--;
  } else {
    w = wsev__malloc(sizeof *w + (small ? SMALL_WRITE : inside ? len : 0));
  }
  if (w && inside) {
    w->data = (uint8_t *)(w + 1);
    w->cap = 0;
  } else if (w && !(w->data = handoff_get(io, len, &w->cap))) {
    wsev__free(w);
    w = NULL;
  }
  if (!w) return lost_write(io, r, id);
  if (len) memcpy(w->data, data, len);
  w->io = io;
  w->id = id;
  w->payload = len;
  w->len = framed(r, len);
  w->text = text;
  w->flags = flags;
  count_sent(io, r, w->len);
  wsev__post_owned_init(&w->post, write_on_thread);
  wsev_io_thread *t = thread_of(io, id);
  if (io->corked)
    wsev__post_batch_add_owned(&t->outgoing, &w->post);
  else
    wsev__post_owned(t->inner, &w->post);
  return 0;
}

size_t wsev__io_buffered(const wsev_ctx *ctx, uint64_t id) {
  remote *r = find(ctx->io, id);
  return r && r->link ? estimate(r->link) : 0;
}

int wsev__io_broadcast(wsev_ctx *ctx, const uint64_t *ids, size_t count, const void *data,
                       size_t len, wsev_msg_type type) {
  wsev_io *io = ctx->io;
  int opcode = type == WSEV_TEXT ? WSEV_OP_TEXT : WSEV_OP_BINARY;
  /* Framed once here; every thread's recipients share the bytes (counted atomically). */
  wsev_shared *frame = wsev__shared_new(len + WSEV_FRAME_MAX_HEADER);
  if (!frame) return UV_ENOMEM;
  size_t header = wsev__frame_encode_header(frame->data, 1, opcode, len, NULL);
  if (len) memcpy(frame->data + header, data, len);
  frame->len = header + len;
  int queued = 0, rc = 0;
  for (int k = 0; k < io->count && !rc; k++) {
    broadcast_args *b = wsev__malloc(sizeof *b + count * sizeof(uint64_t));
    if (!b) {
      rc = UV_ENOMEM;
      break;
    }
    b->count = 0;
    for (size_t i = 0; i < count; i++) {
      remote *r = ids[i] ? find(io, ids[i]) : NULL;
      if (r && !r->closing && thread_of(io, ids[i]) == &io->threads[k]) {
        b->ids[b->count++] = ids[i];
        count_sent(io, r, framed(r, len));
      }
    }
    if (!b->count) {
      wsev__free(b);
      continue;
    }
    b->frame = frame;
    b->opcode = opcode;
    b->header = header;
    size_t n = b->count; /* once posted, b is the thread's */
    atomic_fetch_add_explicit(&frame->refs, 1, memory_order_relaxed);
    if ((rc = post_to(&io->threads[k], broadcast_on_thread, b)) != 0) {
      for (size_t i = 0; i < b->count; i++) { /* not on its way after all */
        remote *r = find(io, b->ids[i]);
        if (r && r->link) atomic_fetch_sub(&r->link->in_transit, framed(r, len));
      }
      wsev__shared_unref(frame);
      wsev__free(b);
    } else {
      queued += (int)n;
    }
  }
  wsev__shared_unref(frame); /* ours */
  return rc ? rc : queued;
}

typedef struct {
  uint64_t id;
  unsigned code;
  char reason[124];
} close_args;

static void close_on_thread(wsev_ctx *inner, void *arg) {
  close_args *a = arg;
  if (inner) wsev_close_with(inner, a->id, a->code, a->reason[0] ? a->reason : NULL);
  wsev__free(a);
}

int wsev__io_close(wsev_ctx *ctx, uint64_t id, unsigned code, const char *reason) {
  remote *r = find(ctx->io, id);
  if (!r) return WSEV_ENOCONN;
  if (r->closing) return WSEV_ECLOSING;
  close_args *a = wsev__calloc(1, sizeof *a);
  if (a) {
    a->id = id;
    a->code = code;
    if (reason) snprintf(a->reason, sizeof a->reason, "%s", reason);
  }
  if (!a || post_to(thread_of(ctx->io, id), close_on_thread, a) != 0) {
    wsev__free(a);
    if (!r->link) return UV_ENOMEM;
    doom(ctx->io, id, r->link, code); /* without the reason */
  }
  r->closing = 1;
  return 0;
}

int wsev__io_set_conn_data(wsev_ctx *ctx, uint64_t id, void *data) {
  remote *r = find(ctx->io, id);
  if (!r) return WSEV_ENOCONN;
  r->user_data = data;
  return 0;
}

void *wsev__io_get_conn_data(const wsev_ctx *ctx, uint64_t id) {
  remote *r = find(ctx->io, id);
  return r ? r->user_data : NULL;
}

int wsev__io_conn_info(const wsev_ctx *ctx, uint64_t id, wsev_conn_info *info) {
  remote *r = find(ctx->io, id);
  if (!r || !r->open) return WSEV_ENOCONN;
  *info = r->info;
  return 0;
}

static void shutdown_on_thread(wsev_ctx *inner, void *arg) {
  if (inner) {
    wsev_io_thread *t = thread_here(inner);
    wsev_shutdown(inner, *(uint64_t *)arg);
    uv_unref((uv_handle_t *)&t->stop);
  }
  wsev__free(arg);
}

void wsev__io_shutdown(wsev_ctx *ctx, uint64_t timeout_ms) {
  wsev_io *io = ctx->io;
  for (int i = 0; i < io->count; i++) {
    uint64_t *arg = wsev__malloc(sizeof *arg);
    if (!arg) continue; /* that thread keeps serving until wsev_ctx_free */
    *arg = timeout_ms;
    if (post_to(&io->threads[i], shutdown_on_thread, arg) != 0) wsev__free(arg);
  }
}

/* The origin policy, copied in one allocation: the strings follow the array. */
typedef struct {
  int same_host;
  size_t count;
  char *origins[];
} origins_copy;

static void origins_on_thread(wsev_ctx *inner, void *arg) {
  origins_copy *copy = arg;
  if (!inner) {
    wsev__free(copy);
    return;
  }
  for (size_t i = 0; i < inner->n_origins; i++)
    wsev__free(inner->origins[i]);
  wsev__free(inner->origins);
  inner->origins = NULL;
  inner->n_origins = 0;
  wsev_allow_same_host_origin(inner, copy->same_host);
  for (size_t i = 0; i < copy->count; i++)
    wsev_allow_origin(inner, copy->origins[i]);
  wsev__free(copy);
}

void wsev__io_origins(wsev_ctx *ctx) {
  wsev_io *io = ctx->io;
  size_t size = sizeof(origins_copy) + ctx->n_origins * sizeof(char *);
  for (size_t i = 0; i < ctx->n_origins; i++)
    size += strlen(ctx->origins[i]) + 1;
  for (int k = 0; k < io->count; k++) {
    origins_copy *copy = wsev__malloc(size);
    if (!copy) continue; /* that thread keeps the policy it had */
    copy->same_host = ctx->same_host_origin;
    copy->count = ctx->n_origins;
    char *at = (char *)(copy->origins + copy->count);
    for (size_t i = 0; i < copy->count; i++)
      copy->origins[i] = keep(&at, ctx->origins[i]);
    if (post_to(&io->threads[k], origins_on_thread, copy) != 0) wsev__free(copy);
  }
}

static void settings_on_thread(wsev_ctx *inner, void *arg) {
  wsev_settings *set = arg;
  if (!inner) {
    wsev__free(set);
    return;
  }
  set->timeout_ms = 0;
  inner->set = *set;
  wsev_set_keepalive(inner, set->ping_interval_ms, set->ping_timeout_ms);
  wsev__free(set);
}

void wsev__io_settings(wsev_ctx *ctx) {
  wsev_io *io = ctx->io;
  for (int i = 0; i < io->count; i++) {
    wsev_settings *copy = wsev__malloc(sizeof *copy);
    if (!copy) continue;
    *copy = ctx->set;
    if (post_to(&io->threads[i], settings_on_thread, copy) != 0) wsev__free(copy);
  }
}
