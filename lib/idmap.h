/* Map from connection id to connection: open addressing with linear probing and
 * backward-shift deletion (no tombstones), so lookups stay O(1) under churn. */
#ifndef WSEV_IDMAP_H
#define WSEV_IDMAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
  uint64_t id; /* 0 marks an empty slot: ids start at 1 */
  void *value;
} wsev_idmap_slot;

typedef struct {
  wsev_idmap_slot *slots;
  size_t mask; /* capacity - 1; capacity is a power of two */
  size_t count;
} wsev_idmap;

void wsev__idmap_init(wsev_idmap *m);
void wsev__idmap_free(wsev_idmap *m);
/* 0, or UV_ENOMEM. The id must not be present yet. */
int wsev__idmap_put(wsev_idmap *m, uint64_t id, void *value);
void *wsev__idmap_get(const wsev_idmap *m, uint64_t id);
/* Removes id if present. */
void wsev__idmap_del(wsev_idmap *m, uint64_t id);

#endif
