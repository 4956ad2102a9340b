/* Topics: named sets of connection ids on the application's thread (the serialized
 * state), published to through wsev_broadcast. The public functions are in wsev.h
 * ("topics"); these are the hooks the rest of the library calls. */
#ifndef WSEV_TOPIC_H
#define WSEV_TOPIC_H

#include <stddef.h>
#include <stdint.h>

#include "wsev.h"

typedef struct wsev_topics wsev_topics;
typedef struct wsev_fed wsev_fed;

/* dispatch.c: conn_closed for `id` has returned; the id leaves all its topics. */
void wsev__topics_conn_closed(wsev_ctx *ctx, uint64_t id);
/* context.c: the context is being freed (federation links closed, memory freed). */
void wsev__topics_free(wsev_ctx *ctx);

/* For federation.c. The context's topic state (created on first use when `create`;
 * NULL without memory or, with create 0, when there is none). */
wsev_topics *wsev__topics_get(wsev_ctx *ctx, int create);
wsev_fed *wsev__topics_fed(const wsev_topics *ts);
void wsev__topics_set_fed(wsev_topics *ts, wsev_fed *fed);
/* Deliver to the local subscribers only (a message that came from another instance). */
int wsev__topics_deliver(wsev_ctx *ctx, const char *topic, size_t topic_len, const void *data,
                         size_t len, wsev_msg_type type, uint64_t except);
/* Call fn for every topic that has local subscribers (to subscribe them again). */
void wsev__topics_each(wsev_ctx *ctx, void (*fn)(void *arg, const char *name, size_t len),
                       void *arg);

#endif
