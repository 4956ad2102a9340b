/* A context as the tests make one: with WSEV_IO_THREADS=N in the environment (the
 * 'threads' suite runs the C tests with 2) its connections live on N I/O threads, and
 * every check of the test must hold just the same. */
#ifndef WSEV_TEST_CTX_H
#define WSEV_TEST_CTX_H

#include <stdlib.h>
#include <wsev.h>

static inline int test_ctx_new(wsev_ctx **ctx, uv_loop_t *loop, const wsev_handler *h, void *data) {
  const char *threads = getenv("WSEV_IO_THREADS");
  int rc = wsev_ctx_new(ctx, loop, h, data);
  if (rc == 0 && threads && (rc = wsev_set_io_threads(*ctx, (unsigned)atoi(threads))) != 0) {
    wsev_ctx_free(*ctx);
    *ctx = NULL;
  }
  return rc;
}

#endif
