#include "idmap.h"
#include "alloc.h"

#include <stdlib.h>
#include <uv.h>

/* Ids are sequential, so a multiplicative hash spreads neighbours apart. */
static size_t slot_of(const wsev_idmap *m, uint64_t id) {
  return (size_t)((id * UINT64_C(0x9E3779B97F4A7C15)) >> 32) & m->mask;
}

void wsev__idmap_init(wsev_idmap *m) {
  m->slots = NULL;
  m->mask = 0;
  m->count = 0;
}

void wsev__idmap_free(wsev_idmap *m) {
  wsev__free(m->slots);
  wsev__idmap_init(m);
}

static void insert(wsev_idmap *m, uint64_t id, void *value) {
  size_t i = slot_of(m, id);
  while (m->slots[i].id)
    i = (i + 1) & m->mask;
  m->slots[i].id = id;
  m->slots[i].value = value;
  m->count++;
}

static int grow(wsev_idmap *m) {
  size_t old_cap = m->slots ? m->mask + 1 : 0;
  size_t cap = old_cap ? old_cap * 2 : 64;
  wsev_idmap_slot *old = m->slots;
  m->slots = wsev__calloc(cap, sizeof *m->slots);
  if (!m->slots) {
    m->slots = old;
    return UV_ENOMEM;
  }
  m->mask = cap - 1;
  m->count = 0;
  for (size_t i = 0; i < old_cap; i++)
    if (old[i].id) insert(m, old[i].id, old[i].value);
  wsev__free(old);
  return 0;
}

int wsev__idmap_put(wsev_idmap *m, uint64_t id, void *value) {
  /* Keep the load under 1/2 so probe sequences stay short. */
  if (!m->slots || (m->count + 1) * 2 > m->mask + 1) {
    int rc = grow(m);
    if (rc) return rc;
  }
  insert(m, id, value);
  return 0;
}

void *wsev__idmap_get(const wsev_idmap *m, uint64_t id) {
  if (!m->slots || id == 0) return NULL;
  for (size_t i = slot_of(m, id);; i = (i + 1) & m->mask) {
    if (m->slots[i].id == id) return m->slots[i].value;
    if (m->slots[i].id == 0) return NULL;
  }
}

void wsev__idmap_del(wsev_idmap *m, uint64_t id) {
  if (!m->slots || id == 0) return;
  size_t i = slot_of(m, id);
  while (m->slots[i].id != id) {
    if (m->slots[i].id == 0) return;
    i = (i + 1) & m->mask;
  }
  /* Shift later members of the probe run back so no lookup stops early. */
  size_t hole = i;
  for (size_t j = (i + 1) & m->mask; m->slots[j].id; j = (j + 1) & m->mask) {
    size_t home = slot_of(m, m->slots[j].id);
    /* Move j into the hole unless its home lies cyclically in (hole, j]. */
    int home_between = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
    if (!home_between) {
      m->slots[hole] = m->slots[j];
      hole = j;
    }
  }
  m->slots[hole].id = 0;
  m->slots[hole].value = NULL;
  m->count--;
}
