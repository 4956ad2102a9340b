#include "http_tokens.h"

#include <string.h>
#include <strings.h>

#include "alloc.h"

int wsev__http_is_tchar(unsigned char c) {
  return c > 0x20 && c < 0x7F && !strchr("\"(),/:;<=>?@[\\]{}", c);
}

int wsev__http_is_token(const char *t, size_t len) {
  for (size_t i = 0; i < len; i++)
    if (!wsev__http_is_tchar((unsigned char)t[i])) return 0;
  return len > 0;
}

int wsev__http_list_next(const char *v, size_t n, size_t *pos, const char **item, size_t *len) {
  size_t i = *pos;
  while (i < n) {
    while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
      i++;
    size_t start = i;
    while (i < n && v[i] != ',')
      i++;
    size_t end = i;
    while (end > start && (v[end - 1] == ' ' || v[end - 1] == '\t'))
      end--;
    if (end > start) {
      *pos = i;
      *item = v + start;
      *len = end - start;
      return 1;
    }
  }
  *pos = i;
  return 0;
}

int wsev__http_list_has(const char *v, size_t n, const char *token) {
  size_t pos = 0, len, want = strlen(token);
  const char *item;
  while (wsev__http_list_next(v, n, &pos, &item, &len))
    if (len == want && strncasecmp(item, token, len) == 0) return 1;
  return 0;
}

int wsev__http_list_append(char **list, const char *v, size_t n) {
  size_t had = *list ? strlen(*list) : 0;
  char *grown = wsev__realloc(*list, had + n + 2);
  if (!grown) return -1;
  if (had) grown[had++] = ',';
  memcpy(grown + had, v, n);
  grown[had + n] = 0;
  *list = grown;
  return 0;
}
