/* The rules stated once at the top of wsev.h, checked for every function: a NULL
 * context, request or required pointer is never a crash (int functions return
 * UV_EINVAL, getters 0 or NULL, void functions do nothing); every setter has a getter
 * and 0 turns a limit or timer off; the names of 0.1 still compile. */
#include <wsev.h>

#include "../unit/test.h"

static void test_null_context(void) {
  TEST_CASE("NULL context");
  uint64_t id = 1, u64a, u64b;
  size_t sa, sb;
  wsev_close_info close_info;
  wsev_conn_info conn_info;
  wsev_handler handler = {0};
  CHECK_EQ_INT(wsev_ctx_new(NULL, NULL, &handler, NULL), UV_EINVAL);
  wsev_ctx *made = (wsev_ctx *)&id;
  CHECK_EQ_INT(wsev_ctx_new(&made, NULL, NULL, NULL), UV_EINVAL);
  CHECK(made == NULL);
  wsev_ctx_free(NULL);
  wsev_stop(NULL);
  CHECK(wsev_get_ctx_data(NULL) == NULL);
  CHECK_EQ_INT(wsev_set_ctx_data(NULL, &id), UV_EINVAL);
  CHECK(wsev_get_loop(NULL) == NULL);
  CHECK_EQ_INT(wsev_event_loop_iteration(NULL), UV_EINVAL);
  CHECK_EQ_INT(wsev_event_loop(NULL), UV_EINVAL);
  CHECK_EQ_UINT(wsev_get_timeout(NULL), 0);
  CHECK_EQ_INT(wsev_set_timeout(NULL, 5), UV_EINVAL);
  CHECK_EQ_INT(wsev_listen_and_serve(NULL, "0"), UV_EINVAL);
  CHECK_EQ_INT(wsev_listen_and_serve_addr(NULL, "127.0.0.1", "0"), UV_EINVAL);
  CHECK_EQ_INT(wsev_listen_and_serve_tls(NULL, "0", "c", "k"), UV_EINVAL);
  CHECK_EQ_INT(wsev_listen_and_serve_tls_addr(NULL, "127.0.0.1", "0", "c", "k"), UV_EINVAL);
  CHECK_EQ_INT(wsev_add_conn(NULL, "ws://127.0.0.1/", NULL, &id), UV_EINVAL);
  CHECK_EQ_INT(wsev_adopt_socket(NULL, 0, NULL, NULL, &id), UV_EINVAL);
  CHECK_EQ_INT(wsev_write(NULL, 1, "x", 1), UV_EINVAL);
  CHECK_EQ_INT(wsev_write_text(NULL, 1, "x", 1), UV_EINVAL);
  CHECK_EQ_INT(wsev_broadcast(NULL, &id, 1, "x", 1, WSEV_TEXT), UV_EINVAL);
  CHECK_EQ_UINT(wsev_get_buffered_amount(NULL, 1), 0);
  CHECK_EQ_INT(wsev_close(NULL, 1), UV_EINVAL);
  CHECK_EQ_INT(wsev_close_with(NULL, 1, 1000, "bye"), UV_EINVAL);
  CHECK_EQ_INT(wsev_get_close_info(NULL, 1, &close_info), UV_EINVAL);
  CHECK_EQ_INT(wsev_shutdown(NULL, 0), UV_EINVAL);
  CHECK_EQ_INT(wsev_set_max_message_size(NULL, 1), UV_EINVAL);
  CHECK_EQ_UINT(wsev_get_max_message_size(NULL), 0);
  CHECK_EQ_INT(wsev_set_max_header_size(NULL, 1), UV_EINVAL);
  CHECK_EQ_UINT(wsev_get_max_header_size(NULL), 0);
  CHECK_EQ_INT(wsev_set_handshake_timeout(NULL, 1), UV_EINVAL);
  CHECK_EQ_UINT(wsev_get_handshake_timeout(NULL), 0);
  CHECK_EQ_INT(wsev_set_close_timeout(NULL, 1), UV_EINVAL);
  CHECK_EQ_UINT(wsev_get_close_timeout(NULL), 0);
  CHECK_EQ_INT(wsev_set_send_limits(NULL, 1, 1), UV_EINVAL);
  CHECK_EQ_INT(wsev_get_send_limits(NULL, &sa, &sb), UV_EINVAL);
  CHECK_EQ_INT(wsev_set_keepalive(NULL, 1, 1), UV_EINVAL);
  CHECK_EQ_INT(wsev_get_keepalive(NULL, &u64a, &u64b), UV_EINVAL);
  CHECK_EQ_INT(wsev_set_max_connections(NULL, 1), UV_EINVAL);
  CHECK_EQ_UINT(wsev_get_max_connections(NULL), 0);
  CHECK_EQ_INT(wsev_set_defer_timeout(NULL, 1), UV_EINVAL);
  CHECK_EQ_UINT(wsev_get_defer_timeout(NULL), 0);
  CHECK_EQ_INT(wsev_accept(NULL, 1, NULL), UV_EINVAL);
  CHECK_EQ_INT(wsev_reject(NULL, 1, 400), UV_EINVAL);
  CHECK_EQ_INT(wsev_allow_origin(NULL, "https://a.example"), UV_EINVAL);
  CHECK_EQ_INT(wsev_allow_same_host_origin(NULL, 1), UV_EINVAL);
  CHECK_EQ_INT(wsev_set_conn_data(NULL, 1, &id), UV_EINVAL);
  CHECK(wsev_get_conn_data(NULL, 1) == NULL);
  CHECK_EQ_INT(wsev_get_conn_info(NULL, 1, &conn_info), UV_EINVAL);
  CHECK_EQ_INT(wsev_replace_allocator(NULL, NULL, NULL, NULL), UV_EINVAL);
  CHECK(wsev_strerror(0) != NULL && wsev_err_name(WSEV_ENOCONN) != NULL);
}

static void test_null_request(void) {
  TEST_CASE("NULL request");
  CHECK(wsev_request_path(NULL) == NULL);
  CHECK(wsev_request_method(NULL) == NULL);
  CHECK(wsev_request_header(NULL, "host") == NULL);
  CHECK_EQ_UINT(wsev_request_protocol_count(NULL), 0);
  CHECK(wsev_request_protocol(NULL, 0) == NULL);
  CHECK_EQ_INT(wsev_request_select_protocol(NULL, "chat"), UV_EINVAL);
  CHECK(wsev_request_server_name(NULL) == NULL);
  CHECK_EQ_UINT(wsev_request_id(NULL), 0);
  CHECK_EQ_INT(wsev_respond(NULL, 200, NULL, "ok", 2), UV_EINVAL);
}

static void test_null_arguments(wsev_ctx *ctx) {
  TEST_CASE("NULL required pointers with a context");
  uint64_t id;
  size_t sa;
  uint64_t u64a;
  CHECK_EQ_INT(wsev_listen_and_serve(ctx, NULL), UV_EINVAL);
  CHECK_EQ_INT(wsev_listen_and_serve_tls(ctx, "0", NULL, "key.pem"), UV_EINVAL);
  CHECK_EQ_INT(wsev_listen_and_serve_tls(ctx, "0", "cert.pem", NULL), UV_EINVAL);
  CHECK_EQ_INT(wsev_listen_and_serve_addr(ctx, NULL, "0"), UV_EINVAL);
  CHECK_EQ_INT(wsev_add_conn(ctx, NULL, NULL, &id), UV_EINVAL);
  CHECK_EQ_INT(wsev_add_conn(ctx, "ws://127.0.0.1/", NULL, NULL), UV_EINVAL);
  CHECK_EQ_INT(wsev_write(ctx, 1, NULL, 1), UV_EINVAL);
  CHECK_EQ_INT(wsev_write_text(ctx, 1, NULL, 1), UV_EINVAL);
  CHECK_EQ_INT(wsev_write(ctx, 1, NULL, 0), WSEV_ENOCONN); /* NULL with len 0 is fine */
  CHECK_EQ_INT(wsev_broadcast(ctx, NULL, 1, "x", 1, WSEV_TEXT), UV_EINVAL);
  CHECK_EQ_INT(wsev_broadcast(ctx, NULL, 0, "x", 1, WSEV_TEXT), 0);
  CHECK_EQ_INT(wsev_get_close_info(ctx, 1, NULL), UV_EINVAL);
  CHECK_EQ_INT(wsev_get_conn_info(ctx, 1, NULL), UV_EINVAL);
  CHECK_EQ_INT(wsev_get_send_limits(ctx, &sa, NULL), UV_EINVAL);
  CHECK_EQ_INT(wsev_get_keepalive(ctx, NULL, &u64a), UV_EINVAL);
  CHECK_EQ_INT(wsev_allow_origin(ctx, NULL), UV_EINVAL);
  CHECK_EQ_INT(wsev_close_with(ctx, 1, 1000, NULL), WSEV_ENOCONN); /* the reason is optional */
}

static void test_settings(wsev_ctx *ctx) {
  TEST_CASE("defaults, as wsev.h documents them");
  size_t max_buffered, low_water;
  uint64_t interval, timeout;
  CHECK_EQ_UINT(wsev_get_timeout(ctx), 60000);
  CHECK_EQ_UINT(wsev_get_max_message_size(ctx), 16u << 20);
  CHECK_EQ_UINT(wsev_get_max_header_size(ctx), 8192);
  CHECK_EQ_UINT(wsev_get_handshake_timeout(ctx), 10000);
  CHECK_EQ_UINT(wsev_get_close_timeout(ctx), 5000);
  CHECK_EQ_INT(wsev_get_send_limits(ctx, &max_buffered, &low_water), 0);
  CHECK_EQ_UINT(max_buffered, 16u << 20);
  CHECK_EQ_UINT(low_water, 64u << 10);
  CHECK_EQ_INT(wsev_get_keepalive(ctx, &interval, &timeout), 0);
  CHECK_EQ_UINT(interval, 30000);
  CHECK_EQ_UINT(timeout, 30000);
  CHECK_EQ_UINT(wsev_get_max_connections(ctx), 0);
  CHECK_EQ_UINT(wsev_get_defer_timeout(ctx), 10000);

  TEST_CASE("every setter takes 0 (off) and its getter reads it back");
  CHECK_EQ_INT(wsev_set_timeout(ctx, 0), 0);
  CHECK_EQ_UINT(wsev_get_timeout(ctx), 0);
  CHECK_EQ_INT(wsev_set_max_message_size(ctx, 0), 0);
  CHECK_EQ_UINT(wsev_get_max_message_size(ctx), 0);
  CHECK_EQ_INT(wsev_set_max_header_size(ctx, 0), 0);
  CHECK_EQ_UINT(wsev_get_max_header_size(ctx), 0);
  CHECK_EQ_INT(wsev_set_handshake_timeout(ctx, 0), 0);
  CHECK_EQ_UINT(wsev_get_handshake_timeout(ctx), 0);
  CHECK_EQ_INT(wsev_set_close_timeout(ctx, 0), 0);
  CHECK_EQ_UINT(wsev_get_close_timeout(ctx), 0);
  CHECK_EQ_INT(wsev_set_send_limits(ctx, 0, 0), 0);
  wsev_get_send_limits(ctx, &max_buffered, &low_water);
  CHECK(max_buffered == 0 && low_water == 0);
  CHECK_EQ_INT(wsev_set_keepalive(ctx, 0, 0), 0);
  wsev_get_keepalive(ctx, &interval, &timeout);
  CHECK(interval == 0 && timeout == 0);
  CHECK_EQ_INT(wsev_set_defer_timeout(ctx, 0), 0);
  CHECK_EQ_UINT(wsev_get_defer_timeout(ctx), 0);

  TEST_CASE("and other values");
  CHECK_EQ_INT(wsev_set_max_message_size(ctx, 1234), 0);
  CHECK_EQ_UINT(wsev_get_max_message_size(ctx), 1234);
  CHECK_EQ_INT(wsev_set_max_connections(ctx, 7), 0);
  CHECK_EQ_UINT(wsev_get_max_connections(ctx), 7);
  CHECK_EQ_INT(wsev_set_send_limits(ctx, 1000, 10), 0);
  wsev_get_send_limits(ctx, &max_buffered, &low_water);
  CHECK(max_buffered == 1000 && low_water == 10);
  CHECK_EQ_INT(wsev_set_keepalive(ctx, 500, 200), 0);
  wsev_get_keepalive(ctx, &interval, &timeout);
  CHECK(interval == 500 && timeout == 200);
  int data;
  CHECK_EQ_INT(wsev_set_ctx_data(ctx, &data), 0);
  CHECK(wsev_get_ctx_data(ctx) == &data);
}

static void test_compat_names(wsev_ctx *ctx) {
  TEST_CASE("the names of 0.1");
  CHECK(wsev_ctx_data(ctx) == wsev_get_ctx_data(ctx));
  CHECK(wsev_ctx_loop(ctx) == wsev_get_loop(ctx));
  CHECK_EQ_INT(wsev_ctx_set_data(ctx, NULL), 0);
  CHECK(wsev_conn_data(ctx, 42) == NULL);
  CHECK_EQ_UINT(wsev_buffered_amount(ctx, 42), 0);
}

int main(void) {
  test_null_context();
  test_null_request();
  wsev_handler handler = {0};
  wsev_ctx *ctx;
  CHECK_EQ_INT(wsev_ctx_new(&ctx, NULL, &handler, NULL), 0);
  test_null_arguments(ctx);
  test_settings(ctx);
  test_compat_names(ctx);
  wsev_ctx_free(ctx);
  return TEST_REPORT();
}
