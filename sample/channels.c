/*
 * channels: channel name -> subscriber ids, and subscriber id -> channels.
 * See channels.h for the interface.
 *
 * Both kinds of map use open addressing with linear probing in a power-of-two table
 * kept at most 3/4 full. Deletion shifts the following entries of the probe run back
 * into the hole instead of leaving tombstones, so lookups stay short no matter how
 * many subscribe/unsubscribe cycles have run.
 */
#include "channels.h"

#include <stdlib.h>
#include <string.h>

#define MAP_MIN_CAP 8

/* splitmix64's finalizer: spreads sequential ids and pointers over the table. */
static uint64_t hash_u64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

/* 64-bit FNV-1a. (Not flooding-resistant; a server exposed to hostile clients that
 * choose channel names would want a keyed hash such as SipHash.) */
static uint64_t hash_bytes(const char *p, size_t n) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (size_t i = 0; i < n; i++) {
    h ^= (unsigned char)p[i];
    h *= 0x100000001b3ULL;
  }
  return h;
}

static bool map_needs_growth(size_t len, size_t cap) { return (len + 1) * 4 > cap * 3; }

/* During deletion: may the entry at slot j, whose home slot is `home`, move back into
 * the hole at slot `hole`? Yes unless its home lies cyclically after the hole. */
static bool can_fill_hole(size_t hole, size_t j, size_t home, size_t mask) {
  return ((j - home) & mask) >= ((j - hole) & mask);
}

/* ---------------------------------------------------------------------------------
 * u64map: non-zero uint64_t keys -> non-NULL pointers. Key 0 marks a free slot, which
 * is what lets channels_subscribers hand out the key array as it is.
 */

typedef struct {
  uint64_t *keys;
  void **vals;
  size_t cap; /* 0 or a power of two */
  size_t len;
} u64map;

/* The slot holding `key`, or the free slot where it would go. Requires cap > 0. */
static size_t u64map_slot(const u64map *m, uint64_t key) {
  size_t mask = m->cap - 1;
  size_t i = hash_u64(key) & mask;
  while (m->keys[i] != 0 && m->keys[i] != key)
    i = (i + 1) & mask;
  return i;
}

static void *u64map_get(const u64map *m, uint64_t key) {
  if (m->len == 0) return NULL;
  size_t i = u64map_slot(m, key);
  return m->keys[i] == key ? m->vals[i] : NULL;
}

static bool u64map_grow(u64map *m) {
  size_t cap = m->cap ? m->cap * 2 : MAP_MIN_CAP;
  uint64_t *keys = calloc(cap, sizeof *keys);
  void **vals = malloc(cap * sizeof *vals);
  if (!keys || !vals) {
    free(keys);
    free(vals);
    return false;
  }
  u64map old = *m;
  m->keys = keys;
  m->vals = vals;
  m->cap = cap;
  for (size_t i = 0; i < old.cap; i++) {
    if (old.keys[i] != 0) {
      size_t j = u64map_slot(m, old.keys[i]);
      m->keys[j] = old.keys[i];
      m->vals[j] = old.vals[i];
    }
  }
  free(old.keys);
  free(old.vals);
  return true;
}

/* Insert or replace. Returns false, leaving the map unchanged, when out of memory. */
static bool u64map_put(u64map *m, uint64_t key, void *val) {
  if (m->len > 0) {
    size_t i = u64map_slot(m, key);
    if (m->keys[i] == key) {
      m->vals[i] = val;
      return true;
    }
  }
  if (map_needs_growth(m->len, m->cap) && !u64map_grow(m)) return false;
  size_t i = u64map_slot(m, key);
  m->keys[i] = key;
  m->vals[i] = val;
  m->len++;
  return true;
}

/* Remove `key`; returns its value, or NULL if it was not there. */
static void *u64map_del(u64map *m, uint64_t key) {
  if (m->len == 0) return NULL;
  size_t mask = m->cap - 1;
  size_t hole = u64map_slot(m, key);
  if (m->keys[hole] != key) return NULL;
  void *val = m->vals[hole];
  for (size_t j = (hole + 1) & mask; m->keys[j] != 0; j = (j + 1) & mask) {
    if (can_fill_hole(hole, j, hash_u64(m->keys[j]) & mask, mask)) {
      m->keys[hole] = m->keys[j];
      m->vals[hole] = m->vals[j];
      hole = j;
    }
  }
  m->keys[hole] = 0;
  m->len--;
  return val;
}

static void u64map_free(u64map *m) {
  free(m->keys);
  free(m->vals);
  *m = (u64map){0};
}

/* ---------------------------------------------------------------------------------
 * The records
 */

typedef struct channel {
  uint64_t hash;      /* hash_bytes(name) */
  u64map subscribers; /* subscriber id -> subscriber */
  size_t name_len;
  char name[]; /* name_len bytes, not NUL-terminated */
} channel;

typedef struct subscriber {
  uint64_t id;
  u64map channels; /* (uintptr_t)channel -> channel */
} subscriber;

/* ---------------------------------------------------------------------------------
 * chanmap: channel name -> channel. A NULL slot is free.
 */

typedef struct {
  channel **slots;
  size_t cap; /* 0 or a power of two */
  size_t len;
} chanmap;

static bool channel_has_name(const channel *ch, uint64_t hash, const char *name, size_t len) {
  return ch->hash == hash && ch->name_len == len && memcmp(ch->name, name, len) == 0;
}

/* The slot holding the channel `name`, or the free slot where it would go. */
static size_t chanmap_slot(const chanmap *m, uint64_t hash, const char *name, size_t len) {
  size_t mask = m->cap - 1;
  size_t i = hash & mask;
  while (m->slots[i] && !channel_has_name(m->slots[i], hash, name, len))
    i = (i + 1) & mask;
  return i;
}

static channel *chanmap_get(const chanmap *m, const char *name, size_t len) {
  if (m->len == 0) return NULL;
  return m->slots[chanmap_slot(m, hash_bytes(name, len), name, len)];
}

static bool chanmap_grow(chanmap *m) {
  size_t cap = m->cap ? m->cap * 2 : MAP_MIN_CAP;
  channel **slots = calloc(cap, sizeof *slots);
  if (!slots) return false;
  for (size_t i = 0; i < m->cap; i++) {
    channel *ch = m->slots[i];
    if (ch) {
      size_t j = ch->hash & (cap - 1);
      while (slots[j])
        j = (j + 1) & (cap - 1);
      slots[j] = ch;
    }
  }
  free(m->slots);
  m->slots = slots;
  m->cap = cap;
  return true;
}

/* Add a channel whose name is not in the map yet. Returns false when out of memory. */
static bool chanmap_add(chanmap *m, channel *ch) {
  if (map_needs_growth(m->len, m->cap) && !chanmap_grow(m)) return false;
  m->slots[chanmap_slot(m, ch->hash, ch->name, ch->name_len)] = ch;
  m->len++;
  return true;
}

/* Remove a channel that is in the map. */
static void chanmap_del(chanmap *m, const channel *ch) {
  size_t mask = m->cap - 1;
  size_t hole = chanmap_slot(m, ch->hash, ch->name, ch->name_len);
  for (size_t j = (hole + 1) & mask; m->slots[j]; j = (j + 1) & mask) {
    if (can_fill_hole(hole, j, m->slots[j]->hash & mask, mask)) {
      m->slots[hole] = m->slots[j];
      hole = j;
    }
  }
  m->slots[hole] = NULL;
  m->len--;
}

/* ---------------------------------------------------------------------------------
 * channels
 */

struct channels {
  chanmap by_name; /* channel name -> channel; only channels with subscribers */
  u64map by_id;    /* subscriber id -> subscriber; only ids with channels */
};

channels *channels_new(void) { return calloc(1, sizeof(channels)); }

static channel *channel_get_or_create(channels *cs, const char *name, size_t len) {
  channel *ch = chanmap_get(&cs->by_name, name, len);
  if (ch) return ch;
  ch = calloc(1, sizeof *ch + len);
  if (!ch) return NULL;
  ch->hash = hash_bytes(name, len);
  ch->name_len = len;
  memcpy(ch->name, name, len);
  if (!chanmap_add(&cs->by_name, ch)) {
    free(ch);
    return NULL;
  }
  return ch;
}

static subscriber *subscriber_get_or_create(channels *cs, uint64_t id) {
  subscriber *s = u64map_get(&cs->by_id, id);
  if (s) return s;
  s = calloc(1, sizeof *s);
  if (!s) return NULL;
  s->id = id;
  if (!u64map_put(&cs->by_id, id, s)) {
    free(s);
    return NULL;
  }
  return s;
}

/* Records exist only while they are in use: drop a channel whose last subscriber
 * left, and a subscriber that left its last channel. */
static void channel_release_if_empty(channels *cs, channel *ch) {
  if (ch->subscribers.len > 0) return;
  chanmap_del(&cs->by_name, ch);
  u64map_free(&ch->subscribers);
  free(ch);
}

static void subscriber_release_if_empty(channels *cs, subscriber *s) {
  if (s->channels.len > 0) return;
  u64map_del(&cs->by_id, s->id);
  u64map_free(&s->channels);
  free(s);
}

bool channels_subscribe(channels *cs, uint64_t id, const char *name, size_t len) {
  channel *ch = channel_get_or_create(cs, name, len);
  if (!ch) return false;
  subscriber *s = subscriber_get_or_create(cs, id);
  if (!s) {
    channel_release_if_empty(cs, ch);
    return false;
  }
  if (u64map_get(&s->channels, (uintptr_t)ch)) return true; /* already subscribed */
  if (!u64map_put(&ch->subscribers, id, s)) {
    channel_release_if_empty(cs, ch);
    subscriber_release_if_empty(cs, s);
    return false;
  }
  if (!u64map_put(&s->channels, (uintptr_t)ch, ch)) {
    u64map_del(&ch->subscribers, id);
    channel_release_if_empty(cs, ch);
    subscriber_release_if_empty(cs, s);
    return false;
  }
  return true;
}

void channels_unsubscribe(channels *cs, uint64_t id, const char *name, size_t len) {
  channel *ch = chanmap_get(&cs->by_name, name, len);
  subscriber *s = ch ? u64map_get(&ch->subscribers, id) : NULL;
  if (!s) return; /* not subscribed: nothing to do */
  u64map_del(&ch->subscribers, id);
  u64map_del(&s->channels, (uintptr_t)ch);
  channel_release_if_empty(cs, ch);
  subscriber_release_if_empty(cs, s);
}

void channels_unsubscribe_all(channels *cs, uint64_t id) {
  subscriber *s = u64map_del(&cs->by_id, id);
  if (!s) return;
  for (size_t i = 0; i < s->channels.cap; i++) {
    if (s->channels.keys[i]) {
      channel *ch = s->channels.vals[i];
      u64map_del(&ch->subscribers, id);
      channel_release_if_empty(cs, ch);
    }
  }
  u64map_free(&s->channels);
  free(s);
}

const uint64_t *channels_subscribers(const channels *cs, const char *name, size_t len,
                                     size_t *count) {
  const channel *ch = chanmap_get(&cs->by_name, name, len);
  *count = ch ? ch->subscribers.cap : 0;
  return ch ? ch->subscribers.keys : NULL;
}

size_t channels_count(const channels *cs) { return cs->by_name.len; }

void channels_free(channels *cs) {
  if (!cs) return;
  for (size_t i = 0; i < cs->by_id.cap; i++) {
    if (cs->by_id.keys[i]) {
      subscriber *s = cs->by_id.vals[i];
      u64map_free(&s->channels);
      free(s);
    }
  }
  u64map_free(&cs->by_id);
  for (size_t i = 0; i < cs->by_name.cap; i++) {
    channel *ch = cs->by_name.slots[i];
    if (ch) {
      u64map_free(&ch->subscribers);
      free(ch);
    }
  }
  free(cs->by_name.slots);
  free(cs);
}
