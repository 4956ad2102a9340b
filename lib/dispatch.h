/* The master event queue and its dispatcher: every callback of the application runs
 * from here, one at a time, never nested; and the loop timeout. */
#ifndef WSEV_DISPATCH_H
#define WSEV_DISPATCH_H

#include "context.h"

/* Raise an event: dispatched at once, or queued while a callback (or an API call)
 * runs. */
void wsev__emit(wsev_ctx *ctx, wsev_event_kind kind, uint64_t id);
/* Raise conn_closed with how the connection ended (reason copied). */
void wsev__emit_closed(wsev_ctx *ctx, uint64_t id, const wsev_conn_ending *ending, void *user_data);
/* Deliver a message; `data` is only borrowed (copied if it must wait). */
void wsev__emit_message(wsev_ctx *ctx, uint64_t id, const uint8_t *data, size_t len, int text);
/* Around a callback that answers something (upgrade_requested, http_request): events
 * queued before it run first, those it raises run after it. */
/* 1 if an event raised now would be dispatched at once (nothing queued before it). */
int wsev__dispatch_now(const wsev_ctx *ctx);
void wsev__dispatch_begin(wsev_ctx *ctx);
void wsev__dispatch_end(wsev_ctx *ctx);
/* Inside dispatch_begin/end: run what waits in the queue; then dispatch an event
 * prepared elsewhere (io.c), after what was queued before it. Its data stays the
 * caller's. */
void wsev__dispatch_pending(wsev_ctx *ctx);
void wsev__deliver(wsev_ctx *ctx, const wsev_event *ev);
/* Run what is queued (the check phase), unless a callback is running. */
void wsev__dispatch_queued(wsev_ctx *ctx);
/* Make room in the queue for n more events: 0 or UV_ENOMEM. */
int wsev__reserve_events(wsev_ctx *ctx, size_t n);
/* Free queued events (the context is being released). */
void wsev__queue_free(wsev_ctx *ctx);

#endif
