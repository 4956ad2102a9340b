/* A blocking WebSocket client of the simplest kind for the threaded API tests: connect
 * to 127.0.0.1:port (or use a connected socket), send an upgrade request for `path`,
 * read the response up to its blank line byte by byte (so no frame byte is consumed).
 * Returns the socket, or -1. */
#ifndef WSEV_TEST_RAW_CLIENT_H
#define WSEV_TEST_RAW_CLIENT_H

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Send an upgrade request for `path` on a connected socket and read the response up to
 * its blank line. The socket, or -1 (closed). */
static inline int raw_upgrade(int fd, const char *path) {
  char req[256];
  int n =
      snprintf(req, sizeof req,
               "GET %s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
               path);
  if (write(fd, req, (size_t)n) != n) {
    close(fd);
    return -1;
  }
  char resp[512];
  size_t got = 0;
  while (got < sizeof resp && read(fd, resp + got, 1) == 1)
    if (++got >= 4 && memcmp(resp + got - 4, "\r\n\r\n", 4) == 0) return fd;
  close(fd);
  return -1;
}

static inline int raw_connect_upgraded(int port, const char *path) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    close(fd);
    return -1;
  }
  return raw_upgrade(fd, path);
}

#endif
