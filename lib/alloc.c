#include "alloc.h"

#include <stdlib.h>

#include "wsev.h"

static wsev_malloc_func malloc_fn = malloc;
static wsev_realloc_func realloc_fn = realloc;
static wsev_calloc_func calloc_fn = calloc;
static wsev_free_func free_fn = free;

int wsev_replace_allocator(wsev_malloc_func m, wsev_realloc_func r, wsev_calloc_func c,
                           wsev_free_func f) {
  if (!m || !r || !c || !f) return UV_EINVAL;
  malloc_fn = m;
  realloc_fn = r;
  calloc_fn = c;
  free_fn = f;
  return 0;
}

void *wsev__malloc(size_t size) { return malloc_fn(size); }
void *wsev__calloc(size_t count, size_t size) { return calloc_fn(count, size); }
void *wsev__realloc(void *ptr, size_t size) { return realloc_fn(ptr, size); }
void wsev__free(void *ptr) {
  if (ptr) free_fn(ptr);
}
