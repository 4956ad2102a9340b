/*
 * channels: the subscription state of a publish/subscribe relay, as two hash maps
 *
 *   channel name  -> the set of its subscribers' ids
 *   subscriber id -> the set of its channels (so that a closing connection leaves
 *                    all of them at once)
 *
 * Subscribe, unsubscribe and looking up a channel's subscribers are O(1) on average;
 * removing a subscriber is O(its channels). A channel exists only while it has
 * subscribers, so memory follows what is subscribed, not what was ever named.
 * Memory is allocated only when subscribing (a new channel, a new subscriber, a
 * table growing); looking up subscribers to publish allocates nothing.
 *
 * Channel names are byte strings given with their length (no NUL needed, any bytes
 * allowed). Subscriber ids are non-zero uint64_t values, such as wsev connection ids.
 *
 * Not thread-safe, and it does not need to be in a wsev application: every wsev
 * callback runs on the loop's thread, one after another.
 *
 * Uses only the C standard library; sample/pubsub.c shows it in use.
 */
#ifndef WSEV_SAMPLE_CHANNELS_H
#define WSEV_SAMPLE_CHANNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct channels channels;

/* A new, empty set of channels, or NULL when out of memory. */
channels *channels_new(void);

/* Free everything (cs may be NULL). */
void channels_free(channels *cs);

/* Subscribe `id` (non-zero) to the channel `name`, creating the channel if needed.
 * Subscribing again is not an error. Returns false, changing nothing, when out of
 * memory. */
bool channels_subscribe(channels *cs, uint64_t id, const char *name, size_t len);

/* Unsubscribe `id` from `name`; nothing happens if it was not subscribed. */
void channels_unsubscribe(channels *cs, uint64_t id, const char *name, size_t len);

/* Unsubscribe `id` from every channel (a connection closed, or asked to). */
void channels_unsubscribe_all(channels *cs, uint64_t id);

/*
 * The subscribers of `name`, to publish to: an array of *count ids, or NULL with
 * *count 0 when nobody is subscribed. The array is the subscriber set's own hash
 * table, handed out as it is so that publishing costs no copy: its free slots hold
 * 0, never an id. Pass it straight to wsev_broadcast (which skips ids it does not
 * know, 0 included), or skip the zeros when iterating. Valid until the next
 * subscribe, unsubscribe or free on `cs`.
 */
const uint64_t *channels_subscribers(const channels *cs, const char *name, size_t len,
                                     size_t *count);

/* How many channels have at least one subscriber. */
size_t channels_count(const channels *cs);

#endif
