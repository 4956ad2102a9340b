/* RFC 7230 tokens and comma-separated header lists, for both sides of the opening
 * handshake. Pure code. */
#ifndef WSEV_HTTP_TOKENS_H
#define WSEV_HTTP_TOKENS_H

#include <stddef.h>

/* A character allowed in a token (header names, subprotocol names). */
int wsev__http_is_tchar(unsigned char c);
/* 1 if t[0..len) is a non-empty token. */
int wsev__http_is_token(const char *t, size_t len);
/* The next element of the list v[0..n) from *pos: trimmed, empty ones skipped. Returns
 * 1 with *item and *len set, or 0 at the end. Start with *pos = 0. */
int wsev__http_list_next(const char *v, size_t n, size_t *pos, const char **item, size_t *len);
/* 1 if the list v[0..n) holds `token` (case-insensitive). */
int wsev__http_list_has(const char *v, size_t n, const char *token);
/* Append a header line's value v[0..n) to *list (NULL: none yet), joined with ","
 * as RFC 7230 joins repeated lines of a list header. 0, or -1 without memory (*list
 * is then unchanged). */
int wsev__http_list_append(char **list, const char *v, size_t n);

#endif
