/* The memory of a connection, part by part (printed for the README and the bench
 * notes), and a bound on the whole: every open connection carries it, busy or idle. */
#include "context.h"
#include "test.h"

int main(void) {
  printf("struct wsev_conn: %zu bytes\n", sizeof(wsev_conn));
  printf("  the socket (uv_pipe_t or tcp):  %zu\n", sizeof(uv_pipe_t));
  printf("  wsev_reader reader:            %zu\n", sizeof(wsev_reader));
  printf("  wsev_writer writer:            %zu\n", sizeof(wsev_writer));
  printf("  wsev_conn_deadline deadline:   %zu\n", sizeof(wsev_conn_deadline));
  printf("  wsev_conn_handshake handshake: %zu\n", sizeof(wsev_conn_handshake));
  printf("  wsev_conn_ending ending:       %zu\n", sizeof(wsev_conn_ending));
  size_t parts = sizeof(uv_pipe_t) + sizeof(wsev_reader) + sizeof(wsev_writer) +
                 sizeof(wsev_conn_deadline) + sizeof(wsev_conn_handshake) +
                 sizeof(wsev_conn_ending);
  printf("  links, ids, flags:             %zu\n", sizeof(wsev_conn) - parts);
  printf("and with permessage-deflate agreed, wsev_deflate: %zu\n", sizeof(wsev_deflate));
  CHECK(sizeof(wsev_conn) <= 656); /* 656 on x86_64 with libuv 1.44 */
  return TEST_REPORT();
}
