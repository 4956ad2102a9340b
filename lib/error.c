#include <string.h>

#include "wsev.h"

/* libuv allocates (and never frees) a string for codes it does not know: ours are
 * written into a buffer instead, valid until the next such call. */
static char unknown[64];

static int is_unknown(const char *text) { return strncmp(text, "Unknown system error", 20) == 0; }

const char *wsev_strerror(int err) {
  switch (err) {
#define WSEV_STRERROR_CASE(name, value, text)                                                      \
  case WSEV_##name: return text;
    WSEV_ERRNO_MAP(WSEV_STRERROR_CASE)
#undef WSEV_STRERROR_CASE
  case 0: return "success";
  }
  return is_unknown(uv_strerror_r(err, unknown, sizeof unknown)) ? unknown : uv_strerror(err);
}

const char *wsev_err_name(int err) {
  switch (err) {
#define WSEV_ERR_NAME_CASE(name, value, text)                                                      \
  case WSEV_##name: return "WSEV_" #name;
    WSEV_ERRNO_MAP(WSEV_ERR_NAME_CASE)
#undef WSEV_ERR_NAME_CASE
  case 0: return "OK";
  }
  return is_unknown(uv_err_name_r(err, unknown, sizeof unknown)) ? unknown : uv_err_name(err);
}
