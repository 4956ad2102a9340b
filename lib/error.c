#include "wsev.h"

const char *wsev_strerror(int err) {
  switch (err) {
#define WSEV_STRERROR_CASE(name, value, text)                                                      \
  case WSEV_##name: return text;
    WSEV_ERRNO_MAP(WSEV_STRERROR_CASE)
#undef WSEV_STRERROR_CASE
  }
  return uv_strerror(err);
}

const char *wsev_err_name(int err) {
  switch (err) {
#define WSEV_ERR_NAME_CASE(name, value, text)                                                      \
  case WSEV_##name: return "WSEV_" #name;
    WSEV_ERRNO_MAP(WSEV_ERR_NAME_CASE)
#undef WSEV_ERR_NAME_CASE
  }
  return uv_err_name(err);
}
