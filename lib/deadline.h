/* Deadlines of connections (handshake, close, pong, deferred upgrade) on one timer per
 * context, the keepalive sweep, and the bounded wait of wsev_shutdown. */
#ifndef WSEV_DEADLINE_H
#define WSEV_DEADLINE_H

#include "context.h"

/* Wait on a deadline of `kind` in `ms` (0: no deadline, but the kind is noted);
 * replaces any earlier one. */
void wsev__deadline_set(wsev_conn *c, int kind, uint64_t ms);
void wsev__deadline_clear(wsev_conn *c);
/* Recompute when the timer must fire (after shutdown started). */
void wsev__deadline_schedule(wsev_ctx *ctx);
/* Start (or stop, for interval 0) the keepalive sweep with the current settings. */
void wsev__keepalive_restart(wsev_ctx *ctx);

#endif
