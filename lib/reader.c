#include "reader.h"

#include <string.h>

#include "alloc.h"
#include "frame.h"
#include "utf8.h"

void wsev__reader_init(wsev_reader *r, int from_server) {
  memset(r, 0, sizeof *r);
  r->from_server = (uint8_t)from_server;
}

static void release_lent(wsev_reader *r, wsev_pool *pool) {
  r->lent = 0;
  if (r->msg.data && !r->msg_opcode) wsev__buf_release(pool, &r->msg);
  if (r->ctrl && !r->in_frame) {
    wsev__free(r->ctrl);
    r->ctrl = NULL;
  }
}

int wsev__reader_take_message(wsev_reader *r, wsev_buf *out) {
  if (!r->lent || !r->msg.data || r->msg_opcode) return 0;
  *out = r->msg;
  memset(&r->msg, 0, sizeof r->msg);
  return 1;
}

void wsev__reader_free(wsev_reader *r, wsev_pool *pool) {
  wsev__buf_release(pool, &r->msg);
  wsev__free(r->ctrl);
  r->ctrl = NULL;
}

/* A complete control frame's payload. */
static wsev_read_kind control_frame(wsev_reader *r, const uint8_t *p, size_t len,
                                    wsev_read_event *ev) {
  ev->data = p;
  ev->len = len;
  switch (r->frame_opcode) {
  case WSEV_OP_PING: return WSEV_READ_PING;
  case WSEV_OP_PONG: return WSEV_READ_PONG;
  default: /* close */
    ev->code = 0;
    ev->fail = (unsigned)wsev__close_payload_check(p, len, &ev->code);
    ev->data = len >= 2 ? p + 2 : NULL;
    ev->len = len >= 2 ? len - 2 : 0;
    return WSEV_READ_CLOSE;
  }
}

/* The next n bytes of a control frame's payload. */
static wsev_read_kind control_bytes(wsev_reader *r, const uint8_t *p, size_t n,
                                    wsev_read_event *ev) {
  if (r->payload_left == 0 && !r->ctrl) {
    r->in_frame = 0;
    return control_frame(r, p, n, ev); /* the whole payload is here */
  }
  if (!r->ctrl) {
    r->ctrl = wsev__malloc(WSEV_FRAME_MAX_CONTROL);
    r->ctrl_len = 0;
    if (!r->ctrl) return WSEV_READ_NOMEM;
  }
  memcpy(r->ctrl + r->ctrl_len, p, n);
  r->ctrl_len += (uint8_t)n;
  if (r->payload_left) return WSEV_READ_MORE;
  r->in_frame = 0;
  r->lent = 1;
  return control_frame(r, r->ctrl, r->ctrl_len, ev);
}

static wsev_read_kind message_done(wsev_reader *r, const uint8_t *data, size_t len,
                                   wsev_read_event *ev) {
  int text = r->msg_opcode == WSEV_OP_TEXT;
  r->msg_opcode = 0;
  if (text && r->utf8_state != WSEV_UTF8_ACCEPT) {
    ev->fail = WSEV_CLOSE_INVALID_DATA; /* ended inside a code point */
    return WSEV_READ_FAIL;
  }
  ev->data = data;
  ev->len = len;
  ev->text = text;
  return WSEV_READ_MESSAGE;
}

/* A compressed message is complete in data[0..len) (lent, or in r->msg): inflated
 * into a buffer that takes r->msg's place, then checked as UTF-8 if text. Out of
 * line: the plain path pays one test for it. */
static __attribute__((noinline)) wsev_read_kind
compressed_message_done(wsev_reader *r, wsev_pool *pool, uint64_t max, const uint8_t *data,
                        size_t len, wsev_read_event *ev) {
  int text = r->msg_opcode == WSEV_OP_TEXT;
  wsev_buf out;
  r->msg_opcode = 0;
  r->compressed = 0;
  unsigned code = wsev__inflate_message(r->deflate, pool, data, len, max, &out);
  wsev__buf_release(pool, &r->msg); /* the compressed bytes, if they were reassembled */
  if (code) {
    ev->fail = code;
    return WSEV_READ_FAIL;
  }
  r->msg = out;
  r->lent = 1;
  if (text && !wsev__utf8_is_valid(out.data, out.len)) {
    ev->fail = WSEV_CLOSE_INVALID_DATA;
    return WSEV_READ_FAIL;
  }
  ev->data = out.data;
  ev->len = out.len;
  ev->text = text;
  return WSEV_READ_MESSAGE;
}

/* The next n bytes of a data frame's payload. */
static wsev_read_kind data_bytes(wsev_reader *r, wsev_pool *pool, uint64_t max, uint8_t *p,
                                 size_t n, wsev_read_event *ev) {
  int last = r->payload_left == 0 && r->frame_fin;
  if (r->payload_left == 0) r->in_frame = 0;
  if (r->discard) {
    if (last) r->msg_opcode = 0;
    return WSEV_READ_MORE;
  }
  if (r->msg_opcode == WSEV_OP_TEXT && n && !r->compressed) {
    r->utf8_state = wsev__utf8_validate(r->utf8_state, p, n);
    if (r->utf8_state == WSEV_UTF8_REJECT) {
      ev->fail = WSEV_CLOSE_INVALID_DATA;
      return WSEV_READ_FAIL;
    }
  }
  if (last && r->msg.len == 0 && r->msg_size == n) { /* the whole message is in this read */
    if (__builtin_expect(r->compressed, 0)) return compressed_message_done(r, pool, max, p, n, ev);
    return message_done(r, p, n, ev); /* no copy */
  }
  if (n) {
    wsev_buf *m = &r->msg;
    /* msg_size already counts the whole current frame: one buffer per frame at most,
     * and geometric growth across many fragments. */
    if (m->len + n > m->cap && wsev__buf_grow(pool, m, (size_t)r->msg_size) != 0) {
      ev->fail = WSEV_CLOSE_INTERNAL_ERROR;
      return WSEV_READ_FAIL;
    }
    memcpy(m->data + m->len, p, n);
    m->len += n;
  }
  if (!last) return WSEV_READ_MORE;
  r->lent = 1;
  if (__builtin_expect(r->compressed, 0))
    return compressed_message_done(r, pool, max, r->msg.data, r->msg.len, ev);
  return message_done(r, r->msg.data, r->msg.len, ev);
}

/* A frame header was read: check it against the protocol and the size limit. 0 to go
 * on, or the close code to fail with. */
static unsigned start_frame(wsev_reader *r, wsev_frame_header *h, uint64_t max_message) {
  /* RSV1 marks a compressed message, on its first frame only (RFC 7692 section 6.1);
   * any other reserved bit is left for wsev__frame_check to refuse. */
  int compressed = 0;
  if (__builtin_expect(h->rsv != 0, 0)) {
    compressed =
        h->rsv == 4 && r->deflate && (h->opcode == WSEV_OP_TEXT || h->opcode == WSEV_OP_BINARY);
    if (compressed) h->rsv = 0;
  }
  int code = wsev__frame_check(h, r->msg_opcode != 0, !r->from_server);
  if (code) return (unsigned)code;
  if (!(h->opcode & 0x8)) {
    if (h->opcode != WSEV_OP_CONT) {
      r->compressed = (uint8_t)compressed;
      r->msg_opcode = h->opcode;
      r->msg_size = 0;
      r->utf8_state = WSEV_UTF8_ACCEPT;
    }
    if (h->payload_len > max_message - r->msg_size) return WSEV_CLOSE_TOO_BIG;
    r->msg_size += h->payload_len;
  }
  r->frame_opcode = h->opcode;
  r->frame_fin = h->fin;
  memcpy(r->mask, h->mask, 4);
  r->mask_offset = 0;
  r->payload_left = h->payload_len;
  r->in_frame = 1;
  return 0;
}

/* Read a frame header from p[0..n), after the part that came in earlier reads.
 * Returns the bytes of p it used, 0 when it is still incomplete (what came is kept),
 * or -1 when it is malformed. */
static long read_header(wsev_reader *r, const uint8_t *p, size_t n, wsev_frame_header *h) {
  if (!r->hdr_len) {
    int hl = wsev__frame_parse_header(p, n, h);
    if (hl == 0) {
      memcpy(r->hdr, p, n); /* n < 14 here */
      r->hdr_len = (uint8_t)n;
    }
    return hl;
  }
  size_t take = sizeof r->hdr - r->hdr_len;
  if (take > n) take = n;
  memcpy(r->hdr + r->hdr_len, p, take);
  int hl = wsev__frame_parse_header(r->hdr, r->hdr_len + take, h);
  if (hl == 0) {
    r->hdr_len += (uint8_t)take;
    return 0;
  }
  if (hl < 0) return -1;
  long used = hl - r->hdr_len;
  r->hdr_len = 0;
  return used;
}

wsev_read_kind wsev__reader_next(wsev_reader *r, wsev_pool *pool, uint64_t max_message,
                                 uint8_t **pp, size_t *pn, wsev_read_event *ev) {
  uint8_t *p = *pp;
  size_t n = *pn;
  wsev_read_kind kind = WSEV_READ_MORE;
  if (r->lent) release_lent(r, pool);
  while (kind == WSEV_READ_MORE) {
    if (!r->in_frame) {
      if (!n) break;
      wsev_frame_header h;
      long used = read_header(r, p, n, &h);
      if (used == 0) {
        p += n; /* kept in hdr */
        n = 0;
        break;
      }
      if (used < 0) {
        ev->fail = WSEV_CLOSE_PROTOCOL_ERROR;
        kind = WSEV_READ_FAIL;
        break;
      }
      p += used;
      n -= (size_t)used;
      if ((ev->fail = start_frame(r, &h, max_message)) != 0) {
        kind = WSEV_READ_FAIL;
        break;
      }
      if (r->payload_left && !n) break;
    } else if (!n) {
      break;
    }
    size_t take = n < r->payload_left ? n : (size_t)r->payload_left;
    if (!r->from_server)
      r->mask_offset = (uint8_t)wsev__frame_unmask(p, take, r->mask, r->mask_offset);
    r->payload_left -= take;
    uint8_t *chunk = p;
    p += take;
    n -= take;
    if (r->frame_opcode & 0x8)
      kind = control_bytes(r, chunk, take, ev);
    else
      kind = data_bytes(r, pool, max_message, chunk, take, ev);
  }
  *pp = p;
  *pn = n;
  return kind;
}
