/* Federation: the context's topics linked to other instances through Redis pub/sub
 * (hiredis on the application's loop). topic.c calls these; they exist (and do
 * nothing) in a build without hiredis, where no federation is ever made. */
#ifndef WSEV_FEDERATION_H
#define WSEV_FEDERATION_H

#include <stddef.h>

#include "topic.h"

/* The first local subscriber of a topic came, or the last one left. */
void wsev__fed_topic_added(wsev_fed *fed, const char *name, size_t len);
void wsev__fed_topic_removed(wsev_fed *fed, const char *name, size_t len);
/* A local publish, for the other instances. */
void wsev__fed_publish(wsev_fed *fed, const char *name, size_t len, const void *data,
                       size_t data_len, wsev_msg_type type);
/* The context is being freed: close the links at once, say nothing. */
void wsev__fed_free(wsev_fed *fed);

#endif
