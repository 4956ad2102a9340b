/* Every allocation of the library goes through these, so an application (or a test
 * that fails the n-th allocation) can replace the allocator. */
#ifndef WSEV_ALLOC_H
#define WSEV_ALLOC_H

#include <stddef.h>

void *wsev__malloc(size_t size);
void *wsev__calloc(size_t count, size_t size);
void *wsev__realloc(void *ptr, size_t size);
void wsev__free(void *ptr);

#endif
