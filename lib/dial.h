/* Happy Eyeballs (RFC 8305 sections 4 and 5): connecting to a name with several
 * addresses by racing attempts, for connections we open (client.c). Each attempt
 * has a TCP handle of its own; the first to connect wins, its socket is handed over
 * (a duplicate the caller owns) and every other attempt is closed. */
#ifndef WSEV_DIAL_H
#define WSEV_DIAL_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct wsev_ctx wsev_ctx;
typedef struct wsev_race wsev_race;

/* At most this many addresses of a name are tried. */
#define WSEV_RACE_MAX 32
/* The delay between attempts when the options say 0 (RFC 8305 section 8). */
#define WSEV_RACE_DEFAULT_DELAY_MS 250

/* The order to try addresses in (RFC 8305 section 4): the resolver's order (which
 * RFC 6724 sorted), its families interleaved starting with the first's, duplicates
 * dropped, at most `max`. Returns how many were put into out. */
size_t wsev__race_order(const struct addrinfo *addrs, const struct addrinfo **out, size_t max);

/* The race is over: status 0 and a connected socket (the caller's to close), or the
 * last attempt's error when every one failed. Called once, never from inside
 * wsev__race_start; the race frees itself afterwards. */
typedef void (*wsev_race_done)(void *arg, int status, uv_os_sock_t sock);

/* Start racing over `addrs` (read now, not kept): the first attempt at once, then the
 * next one each `delay_ms` (UINT64_MAX: only when the last has failed) or as soon as
 * one fails. Returns 0, or the error of the last attempt when all failed at once,
 * UV_ENOMEM, or UV_EINVAL without addresses (nothing is left to free then). */
int wsev__race_start(wsev_ctx *ctx, const struct addrinfo *addrs, uint64_t delay_ms,
                     wsev_race_done done, void *arg, wsev_race **out);
/* Give up: every attempt is closed, `done` is not called, and the memory goes when
 * the handles have closed. */
void wsev__race_cancel(wsev_race *r);

#endif
