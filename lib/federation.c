/* Federation through Redis pub/sub. */
#include "federation.h"

#include "context.h"

#ifndef WSEV_HAVE_HIREDIS
void wsev__fed_topic_added(wsev_fed *fed, const char *name, size_t len) {
  (void)fed, (void)name, (void)len;
}
void wsev__fed_topic_removed(wsev_fed *fed, const char *name, size_t len) {
  (void)fed, (void)name, (void)len;
}
void wsev__fed_publish(wsev_fed *fed, const char *name, size_t len, const void *data,
                       size_t data_len, wsev_msg_type type) {
  (void)fed, (void)name, (void)len, (void)data, (void)data_len, (void)type;
}
void wsev__fed_free(wsev_fed *fed) { (void)fed; }
#endif
