/* The frame reader: turns a connection's inbound WebSocket byte stream (after the
 * upgrade, decrypted) into events — a complete message, a ping, a pong, a close, or
 * a protocol failure — checking every RFC 6455 rule on the way: masking by role,
 * reserved bits, opcodes, control frame rules, continuation order, the size limit,
 * and UTF-8 (incrementally, failing at the first bad byte). No I/O and no callbacks:
 * the connection pulls events one at a time, so the reader can be fed scripted
 * bytes in any split. A message that arrives whole in one read is returned without a
 * copy; otherwise it is reassembled in a buffer from the pool. With permessage-deflate
 * agreed, a message whose first frame has RSV1 is inflated whole once complete (into
 * a buffer from the pool), and then checked. */
#ifndef WSEV_READER_H
#define WSEV_READER_H

#include <stddef.h>
#include <stdint.h>

#include "bufpool.h"
#include "deflate.h"

typedef enum {
  WSEV_READ_MORE,    /* all input used: wait for more bytes */
  WSEV_READ_MESSAGE, /* a complete message: data, len, text */
  WSEV_READ_PING,    /* data, len: the payload to answer with */
  WSEV_READ_PONG,
  WSEV_READ_CLOSE, /* code (1005 when none), data/len the reason; `fail` is non-zero
                      (1002 or 1007) when the close payload itself is invalid */
  WSEV_READ_FAIL,  /* fail the connection with close code `fail` */
  WSEV_READ_NOMEM, /* no memory for a control frame split across reads */
} wsev_read_kind;

typedef struct {
  const uint8_t *data; /* lent until the next call of wsev__reader_next */
  size_t len;
  unsigned code; /* CLOSE: the peer's code */
  unsigned fail; /* FAIL, CLOSE: the close code to fail with */
  int text;      /* MESSAGE: 1 for text (valid UTF-8), 0 for binary */
} wsev_read_event;

typedef struct {
  uint64_t payload_left; /* of the current frame */
  uint64_t msg_size;     /* bytes of the current message so far */
  wsev_buf msg;          /* reassembly, only when a message spans reads or frames */
  uint8_t *ctrl;         /* a control payload split across reads */
  uint32_t utf8_state;
  uint8_t ctrl_len;
  uint8_t hdr[14]; /* a frame header split across reads */
  uint8_t hdr_len;
  uint8_t mask[4];
  uint8_t mask_offset;
  uint8_t in_frame;     /* the header was read; payload_left bytes follow */
  uint8_t frame_opcode; /* of the current frame */
  uint8_t frame_fin;
  uint8_t msg_opcode;    /* WSEV_OP_TEXT/BINARY while a message is in progress, else 0 */
  uint8_t from_server;   /* frames come unmasked (we are the client) */
  uint8_t discard;       /* data frames are checked for structure only, not delivered */
  uint8_t lent;          /* msg or ctrl was lent with the last event: release it next */
  uint8_t compressed;    /* the message in progress is compressed (RSV1) */
  wsev_deflate *deflate; /* permessage-deflate was agreed (else NULL: RSV1 fails) */
} wsev_reader;

/* A reader for frames from a client (masked) or, with from_server, from a server
 * (unmasked). */
void wsev__reader_init(wsev_reader *r, int from_server);
/* permessage-deflate was agreed: RSV1 marks compressed messages from now on. */
static inline void wsev__reader_inflate(wsev_reader *r, wsev_deflate *d) { r->deflate = d; }
/* Give back the buffers it holds. */
void wsev__reader_free(wsev_reader *r, wsev_pool *pool);

/* Stop delivering messages (after we sent a close): data frames are still parsed and
 * dropped, control frames still come out. */
static inline void wsev__reader_discard(wsev_reader *r) { r->discard = 1; }

/* After a MESSAGE whose bytes were reassembled in the reader's buffer (it spanned
 * reads or frames): hand that buffer over, *out gets it and the reader forgets it. 0
 * (nothing taken) when the message was lent from the input instead. */
int wsev__reader_take_message(wsev_reader *r, wsev_buf *out);

/* Read from *p (*n bytes, unmasked in place) until the next event or the end of the
 * input; *p and *n advance past what was used. `max_message` bounds a message (all
 * fragments together, and what a compressed one inflates to): over it, the result is a
 * FAIL with 1009. A compressed message that does not inflate is a FAIL with 1007,
 * and one that cannot for want of memory, 1011. After a FAIL the
 * connection is over: do not call again. */
wsev_read_kind wsev__reader_next(wsev_reader *r, wsev_pool *pool, uint64_t max_message, uint8_t **p,
                                 size_t *n, wsev_read_event *ev);

#endif
