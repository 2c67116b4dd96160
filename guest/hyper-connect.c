/*
 * hyper-connect HOST PORT: joins its stdin/stdout to a TCP connection.
 *
 * QEMU user networking runs it once for each connection a guest opens to
 * another service of its job (guestfwd=...-cmd:hyper-connect 127.0.0.1 PORT):
 * stdin and stdout are one socket to the guest's connection, and PORT is the
 * loopback port that forwards to the other service. Runs on the host; it
 * ships in the guest bundle because that is where our static binaries are
 * built. Nothing is written to stderr, which is the guest's connection too.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Copies what is ready from `from` to `to`; 0 at end of input, -1 on error. */
static int pump(int from, int to) {
  char buffer[65536];
  ssize_t got = read(from, buffer, sizeof buffer);
  if (got <= 0) return (int)got;
  for (ssize_t done = 0; done < got;) {
    ssize_t put = write(to, buffer + done, (size_t)(got - done));
    if (put < 0) return -1;
    done += put;
  }
  return 1;
}

int main(int argc, char **argv) {
  if (argc != 3) return 2;
  struct sockaddr_in address;
  memset(&address, 0, sizeof address);
  address.sin_family = AF_INET;
  address.sin_port = htons((unsigned short)atoi(argv[2]));
  if (inet_pton(AF_INET, argv[1], &address.sin_addr) != 1) return 2;
  int peer = socket(AF_INET, SOCK_STREAM, 0);
  if (peer < 0 || connect(peer, (struct sockaddr *)&address, sizeof address) < 0) return 1;
  int one = 1;
  setsockopt(peer, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);

  /* Each direction ends on its own, as a TCP half-close does. */
  int guest_open = 1, peer_open = 1;
  while (guest_open || peer_open) {
    struct pollfd fds[2] = {{.fd = guest_open ? 0 : -1, .events = POLLIN},
                            {.fd = peer_open ? peer : -1, .events = POLLIN}};
    if (poll(fds, 2, -1) < 0) return 1;
    if (fds[0].revents) {
      int r = pump(0, peer);
      if (r < 0) return 1;
      if (r == 0) {
        guest_open = 0;
        shutdown(peer, SHUT_WR);
      }
    }
    if (fds[1].revents) {
      int r = pump(peer, 1);
      if (r < 0) return 1;
      if (r == 0) {
        peer_open = 0;
        shutdown(1, SHUT_WR);
      }
    }
  }
  return 0;
}
