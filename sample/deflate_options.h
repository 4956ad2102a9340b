/* The samples' permessage-deflate options, parsed the same way by each:
 *   --deflate[=shared|dedicated]   compress (shared: no memory per connection;
 *                                  the default mode)
 *   --deflate-level N  --deflate-window N  --deflate-mem-level N  --deflate-threshold N
 *                                  wsev_deflate_options' fields (0: the default)
 * and $WSEV_DEFLATE (shared or dedicated), which the tests set to run whole suites
 * with compression on; a --deflate option wins. */
#ifndef WSEV_SAMPLE_DEFLATE_OPTIONS_H
#define WSEV_SAMPLE_DEFLATE_OPTIONS_H

#include <stdlib.h>
#include <string.h>
#include <wsev.h>

#define DEFLATE_USAGE                                                                              \
  "  [--deflate[=shared|dedicated]] [--deflate-level N] [--deflate-window N]\n"                    \
  "  [--deflate-mem-level N] [--deflate-threshold N]\n"

static int deflate_mode(const char *name, wsev_deflate_mode *mode) {
  if (!strcmp(name, "shared"))
    *mode = WSEV_DEFLATE_SHARED;
  else if (!strcmp(name, "dedicated"))
    *mode = WSEV_DEFLATE_DEDICATED;
  else if (!strcmp(name, "off"))
    *mode = WSEV_DEFLATE_OFF;
  else
    return -1;
  return 0;
}

/* argv[*i] as a deflate option: 1 (used, with its value: *i moves past it), 0 (not
 * one of ours), -1 (malformed). *given is set once --deflate is seen. */
static int deflate_option(int argc, char **argv, int *i, wsev_deflate_options *o, int *given) {
  const char *a = argv[*i];
  if (!strcmp(a, "--deflate")) {
    o->mode = WSEV_DEFLATE_SHARED;
    *given = 1;
    return 1;
  }
  if (!strncmp(a, "--deflate=", 10)) {
    *given = 1;
    return deflate_mode(a + 10, &o->mode) == 0 ? 1 : -1;
  }
  static const char *const names[] = {"--deflate-level", "--deflate-window", "--deflate-mem-level",
                                      "--deflate-threshold"};
  for (int k = 0; k < 4; k++) {
    if (strcmp(a, names[k])) continue;
    if (*i + 1 >= argc) return -1;
    unsigned long v = strtoul(argv[++*i], NULL, 10);
    if (k == 0) o->level = (int)v;
    if (k == 1) o->window_bits = (int)v;
    if (k == 2) o->mem_level = (int)v;
    if (k == 3) o->threshold = v;
    return 1;
  }
  return 0;
}

/* $WSEV_DEFLATE, when no --deflate was given. -1 for a value that is not a mode. */
static int deflate_from_env(wsev_deflate_options *o, int given) {
  const char *env = getenv("WSEV_DEFLATE");
  if (given || !env || !*env) return 0;
  return deflate_mode(env, &o->mode);
}

#endif
