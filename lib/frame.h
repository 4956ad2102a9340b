/* RFC 6455 frame codec: header parsing and encoding, masking, close-payload rules.
 * Pure code over bytes, no I/O. */
#ifndef WSEV_FRAME_H
#define WSEV_FRAME_H

#include <stddef.h>
#include <stdint.h>

enum {
  WSEV_OP_CONT = 0x0,
  WSEV_OP_TEXT = 0x1,
  WSEV_OP_BINARY = 0x2,
  WSEV_OP_CLOSE = 0x8,
  WSEV_OP_PING = 0x9,
  WSEV_OP_PONG = 0xA,
};

/* Close codes we send or check (RFC 6455 section 7.4.1). */
enum {
  WSEV_CLOSE_NORMAL = 1000,
  WSEV_CLOSE_GOING_AWAY = 1001,
  WSEV_CLOSE_PROTOCOL_ERROR = 1002,
  WSEV_CLOSE_UNSUPPORTED = 1003,
  WSEV_CLOSE_NO_STATUS = 1005,
  WSEV_CLOSE_ABNORMAL = 1006,
  WSEV_CLOSE_INVALID_DATA = 1007,
  WSEV_CLOSE_POLICY = 1008,
  WSEV_CLOSE_TOO_BIG = 1009,
  WSEV_CLOSE_INTERNAL_ERROR = 1011,
};

/* Or'ed into the opcode given to wsev__frame_encode_header: RSV1 is set (the first
 * frame of a compressed message, RFC 7692 section 6). */
#define WSEV_FRAME_RSV1 0x40

/* Largest header: 2 bytes + 8-byte extended length + 4-byte mask. */
#define WSEV_FRAME_MAX_HEADER 14
/* Control frames carry at most 125 payload bytes. */
#define WSEV_FRAME_MAX_CONTROL 125

typedef struct {
  uint64_t payload_len;
  uint8_t fin;    /* 1 on the last frame of a message */
  uint8_t rsv;    /* RSV1..RSV3 as bits 2..0; 0, or RSV1 (4) with permessage-deflate */
  uint8_t opcode; /* WSEV_OP_* or an unknown value */
  uint8_t masked;
  uint8_t mask[4]; /* valid when masked */
} wsev_frame_header;

/* Parse a frame header from p[0..n). Returns the header's size (2..14) when it is
 * complete, 0 when more bytes are needed, -1 when the 64-bit length has its most
 * significant bit set (forbidden by RFC 6455 section 5.2). Non-minimal length
 * encodings are accepted. */
int wsev__frame_parse_header(const uint8_t *p, size_t n, wsev_frame_header *h);

/* Check a parsed header against the protocol, given whether a fragmented message is
 * in progress and whether frames must be masked (server side) or must not be
 * (client side). Returns 0 when acceptable, else the close code to fail with (1002).
 * Size limits are not checked here. */
int wsev__frame_check(const wsev_frame_header *h, int in_fragmented_message, int must_be_masked);

/* The size of a frame header for this payload length, masked (4 more) or not. */
static inline size_t wsev__frame_header_size(uint64_t payload_len, int masked) {
  return 2 + (payload_len > 0xFFFF ? 8 : payload_len > 125 ? 2 : 0) + (masked ? 4 : 0);
}

/* Write a header for a frame with the shortest length encoding into out (room for
 * WSEV_FRAME_MAX_HEADER bytes); mask NULL means unmasked. Returns its size. */
size_t wsev__frame_encode_header(uint8_t *out, int fin, int opcode, uint64_t payload_len,
                                 const uint8_t mask[4]);

/* XOR p[0..n) with the mask, starting at mask byte `offset` (0..3). Returns the
 * offset to continue with for the next bytes of the same payload. */
size_t wsev__frame_unmask(uint8_t *p, size_t n, const uint8_t mask[4], size_t offset);

/* 1 if `code` may appear in a close frame received from a peer (1000-1003,
 * 1007-1014, 3000-4999), else 0. */
int wsev__close_code_is_valid(unsigned code);

/* Validate a received close payload. Returns 0 when valid (len 0, or len >= 2 with a
 * valid code and a UTF-8 reason) and stores the code in *code (1005 when len is 0);
 * otherwise returns the close code to fail with: 1002 (len 1, bad code) or 1007
 * (reason not UTF-8). */
int wsev__close_payload_check(const uint8_t *p, size_t len, unsigned *code);

#endif
