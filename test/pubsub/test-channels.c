/* sample/channels.c against a naive model: a matrix of (subscriber, channel) flags.
 * After every random subscribe / unsubscribe / unsubscribe-all, each channel's
 * subscribers as channels_subscribers reports them must be exactly the model's, and
 * channels_count the number of channels with a subscriber. Also: names are byte
 * strings (prefixes, embedded NULs), tables grow and shrink back to nothing, and
 * freeing a populated set leaks nothing (checked under valgrind: suite 'vgwrap'). */
#include "../unit/test.h"
#include "channels.h"

#include <stdbool.h>
#include <stdlib.h>

#define NIDS 300
#define NCHANS 64

static char names[NCHANS][16];
static size_t name_lens[NCHANS];
static bool model[NIDS][NCHANS];

static uint64_t id_of(size_t i) { return 1000 + i * 7919; } /* non-zero, spread out */

/* The subscribers of channel c must be exactly those of the model. */
static void check_channel(const channels *cs, size_t c, const char *when) {
  size_t count;
  const uint64_t *ids = channels_subscribers(cs, names[c], name_lens[c], &count);
  bool seen[NIDS] = {0};
  size_t got = 0, want = 0;
  for (size_t i = 0; i < NIDS; i++)
    want += model[i][c];
  CHECKF((ids == NULL) == (count == 0), "%s: channel %zu: NULL iff empty", when, c);
  for (size_t k = 0; k < count; k++) {
    if (ids[k] == 0) continue; /* a free slot */
    size_t i = (size_t)((ids[k] - 1000) / 7919);
    CHECKF(i < NIDS && id_of(i) == ids[k], "%s: channel %zu: unknown id %" PRIu64, when, c, ids[k]);
    if (i >= NIDS) continue;
    CHECKF(!seen[i], "%s: channel %zu: id %" PRIu64 " twice", when, c, ids[k]);
    CHECKF(model[i][c], "%s: channel %zu: id %" PRIu64 " is not subscribed", when, c, ids[k]);
    seen[i] = true;
    got++;
  }
  CHECK_EQ_INTF(got, want, "%s: channel %zu: subscriber count", when, c);
  if (want == 0) CHECK_EQ_INTF(count, 0, "%s: channel %zu: an empty channel is released", when, c);
}

static void check_all(const channels *cs, const char *when) {
  size_t nonempty = 0;
  for (size_t c = 0; c < NCHANS; c++) {
    bool any = false;
    for (size_t i = 0; i < NIDS && !any; i++)
      any = model[i][c];
    nonempty += any;
    check_channel(cs, c, when);
  }
  CHECK_EQ_INTF(channels_count(cs), nonempty, "%s: channels_count", when);
}

int main(void) {
  /* Names: "c0".."c63", with "c1" a prefix of "c10".., "" one of them and one with an
   * embedded NUL, so comparisons must use the lengths. */
  for (size_t c = 0; c < NCHANS; c++)
    name_lens[c] = (size_t)snprintf(names[c], sizeof names[c], "c%zu", c);
  name_lens[0] = 0;
  memcpy(names[1], "c\0x", 3);
  name_lens[1] = 3;

  TEST_CASE("empty");
  channels *cs = channels_new();
  CHECK(cs != NULL);
  if (!cs) return TEST_REPORT();
  check_all(cs, "new");
  channels_unsubscribe(cs, id_of(1), "c5", 2); /* nothing to do */
  channels_unsubscribe_all(cs, id_of(1));
  check_all(cs, "no-ops on an empty set");

  TEST_CASE("subscribe twice");
  CHECK(channels_subscribe(cs, id_of(3), names[5], name_lens[5]));
  CHECK(channels_subscribe(cs, id_of(3), names[5], name_lens[5]));
  model[3][5] = true;
  check_all(cs, "subscribed twice");
  channels_unsubscribe(cs, id_of(3), names[5], name_lens[5]);
  model[3][5] = false;
  check_all(cs, "one unsubscribe undoes both");

  TEST_CASE("random operations");
  for (int step = 0; step < 60000; step++) {
    size_t i = test_rand_below(NIDS), c = test_rand_below(NCHANS);
    uint32_t op = test_rand_below(100);
    if (op < 60) {
      CHECK(channels_subscribe(cs, id_of(i), names[c], name_lens[c]));
      model[i][c] = true;
    } else if (op < 97) {
      channels_unsubscribe(cs, id_of(i), names[c], name_lens[c]);
      model[i][c] = false;
    } else {
      channels_unsubscribe_all(cs, id_of(i));
      memset(model[i], 0, sizeof model[i]);
    }
    if (step % 97 == 0) {
      char when[32];
      snprintf(when, sizeof when, "step %d", step);
      check_channel(cs, c, when);
    }
    if (step % 5000 == 0) check_all(cs, "random");
  }
  check_all(cs, "after random operations");

  TEST_CASE("everyone everywhere, then everyone leaves");
  for (size_t i = 0; i < NIDS; i++)
    for (size_t c = 0; c < NCHANS; c++) {
      CHECK(channels_subscribe(cs, id_of(i), names[c], name_lens[c]));
      model[i][c] = true;
    }
  check_all(cs, "full");
  for (size_t i = 0; i < NIDS; i++) {
    channels_unsubscribe_all(cs, id_of(i));
    memset(model[i], 0, sizeof model[i]);
  }
  check_all(cs, "all left");
  CHECK_EQ_INT(channels_count(cs), 0);

  TEST_CASE("free while populated");
  for (size_t i = 0; i < NIDS; i += 3)
    CHECK(channels_subscribe(cs, id_of(i), names[i % NCHANS], name_lens[i % NCHANS]));
  channels_free(cs);
  channels_free(NULL);
  return TEST_REPORT();
}
