/*
 * hyper-relay PORT ROOT PATH...: serves Unix sockets at each PATH inside the
 * container root ROOT, and carries every connection made to them to the host
 * over the virtio-serial port PORT, where `hyper serve` joins it to its own
 * Docker API socket. This is how a container given the Docker socket
 * (-v /var/run/docker.sock:/var/run/docker.sock) reaches the daemon that
 * made it, in every network mode and with nothing opened on the network.
 *
 * One port carries many connections, so each write is a frame (the host side
 * is src/vm/stream-relay.ts, which must agree with this):
 *   4 bytes stream id (big-endian), 1 byte type, 4 bytes payload length, payload
 * Types: OPEN (guest -> host, a new connection), DATA, EOF (the sender will
 * send no more on this stream: a half-close), CLOSE (the stream is gone).
 * A stream ends when both sides sent EOF, or either sent CLOSE.
 *
 * A frame is never longer than 32 KiB: the guest's virtio-serial driver
 * hands the host at most that much per write, so each frame is one write and
 * a host that reconnects starts at a frame's beginning. When the host side
 * goes away (the daemon stopped), every stream is closed: the host forgot
 * them.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

enum { OPEN = 1, DATA = 2, END = 3, CLOSE = 4 };
#define HEADER 9
#define FRAME_MAX (32 * 1024)
#define PAYLOAD_MAX (FRAME_MAX - HEADER)
#define MAX_LISTENERS 8
#define MAX_STREAMS 256
/* While the host side is away, how often to look again (ms). */
#define HOST_POLL_MS 100

struct stream {
  uint32_t id;
  int fd;        /* -1: slot free */
  int reading;   /* the client may still send (no EOF sent to the host yet) */
  int writing;   /* the host may still send (no EOF from the host yet) */
};

static int port = -1;
static struct stream streams[MAX_STREAMS];
static uint32_t next_id = 1;

static void die(const char *what) {
  fprintf(stderr, "hyper-relay: %s: %s\n", what, strerror(errno));
  exit(1);
}

static int write_all(int fd, const unsigned char *data, size_t size) {
  while (size > 0) {
    ssize_t put = write(fd, data, size);
    if (put < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    data += put;
    size -= (size_t)put;
  }
  return 0;
}

/* One frame to the host, in one write. 0, or -1 when the host side is gone. */
static int send_frame(uint32_t id, int type, const unsigned char *payload, uint32_t size) {
  unsigned char frame[FRAME_MAX];
  frame[0] = id >> 24;
  frame[1] = id >> 16;
  frame[2] = id >> 8;
  frame[3] = id;
  frame[4] = (unsigned char)type;
  frame[5] = size >> 24;
  frame[6] = size >> 16;
  frame[7] = size >> 8;
  frame[8] = size;
  if (size) memcpy(frame + HEADER, payload, size);
  return write_all(port, frame, HEADER + size);
}

static struct stream *find(uint32_t id) {
  for (int i = 0; i < MAX_STREAMS; i++)
    if (streams[i].fd >= 0 && streams[i].id == id) return &streams[i];
  return NULL;
}

static void drop(struct stream *s) {
  close(s->fd);
  s->fd = -1;
}

/* The stream is over once neither side can send. */
static void settle(struct stream *s) {
  if (!s->reading && !s->writing) drop(s);
}

static void drop_all(void) {
  for (int i = 0; i < MAX_STREAMS; i++)
    if (streams[i].fd >= 0) drop(&streams[i]);
}

static void accept_one(int listener) {
  int fd = accept(listener, NULL, NULL);
  if (fd < 0) return;
  struct stream *slot = NULL;
  for (int i = 0; i < MAX_STREAMS && !slot; i++)
    if (streams[i].fd < 0) slot = &streams[i];
  if (!slot) {
    close(fd);
    return;
  }
  *slot = (struct stream){.id = next_id++, .fd = fd, .reading = 1, .writing = 1};
  if (next_id == 0) next_id = 1;
  if (send_frame(slot->id, OPEN, NULL, 0) < 0) drop_all();
}

/* What the client sent, to the host. */
static void from_client(struct stream *s) {
  unsigned char buffer[PAYLOAD_MAX];
  ssize_t got = read(s->fd, buffer, sizeof buffer);
  if (got < 0 && (errno == EINTR || errno == EAGAIN)) return;
  int failed;
  if (got > 0) {
    failed = send_frame(s->id, DATA, buffer, (uint32_t)got);
  } else if (got == 0) {
    s->reading = 0;
    failed = send_frame(s->id, END, NULL, 0);
    settle(s);
  } else {
    failed = send_frame(s->id, CLOSE, NULL, 0);
    drop(s);
  }
  if (failed) drop_all();
}

/* One frame from the host. */
static void from_host(uint32_t id, int type, const unsigned char *payload, uint32_t size) {
  struct stream *s = find(id);
  if (!s) {
    /* A stream this side has already closed: tell the host, unless it is closing it too. */
    if (type != CLOSE && send_frame(id, CLOSE, NULL, 0) < 0) drop_all();
    return;
  }
  if (type == DATA && s->writing) {
    if (write_all(s->fd, payload, size) < 0) {
      drop(s);
      if (send_frame(id, CLOSE, NULL, 0) < 0) drop_all();
    }
  } else if (type == END) {
    s->writing = 0;
    shutdown(s->fd, SHUT_WR);
    settle(s);
  } else if (type == CLOSE) {
    drop(s);
  }
}

static void mkdirs(char *path) {
  for (char *slash = strchr(path + 1, '/'); slash; slash = strchr(slash + 1, '/')) {
    *slash = '\0';
    mkdir(path, 0755);
    *slash = '/';
  }
}

static int listen_at(const char *path) {
  struct sockaddr_un address = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof address.sun_path) {
    fprintf(stderr, "hyper-relay: socket path too long: %s\n", path);
    exit(1);
  }
  strcpy(address.sun_path, path);
  char parents[sizeof address.sun_path];
  strcpy(parents, path);
  mkdirs(parents);
  unlink(path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) die("socket");
  if (bind(fd, (struct sockaddr *)&address, sizeof address) < 0) die(path);
  /* As the Docker socket is to the root of a container: anyone inside may use it. */
  chmod(path, 0666);
  if (listen(fd, 64) < 0) die("listen");
  return fd;
}

int main(int argc, char **argv) {
  if (argc < 4 || argc - 3 > MAX_LISTENERS) {
    fprintf(stderr, "usage: hyper-relay PORT ROOT PATH...\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  port = open(argv[1], O_RDWR | O_CLOEXEC);
  if (port < 0) die(argv[1]);
  /* Paths are the container's: its symlinks (/var/run -> /run) resolve inside it. */
  if (chroot(argv[2]) < 0 || chdir("/") < 0) die("chroot");
  int listeners[MAX_LISTENERS];
  int count = argc - 3;
  for (int i = 0; i < count; i++) listeners[i] = listen_at(argv[3 + i]);
  for (int i = 0; i < MAX_STREAMS; i++) streams[i].fd = -1;
  /* Every socket listens: the caller (the init) goes on while the relay serves in the background. */
  pid_t child = fork();
  if (child < 0) die("fork");
  if (child > 0) return 0;
  setsid();

  static unsigned char input[4 * FRAME_MAX];
  size_t held = 0;
  int host_away = 0;
  for (;;) {
    struct pollfd fds[1 + MAX_LISTENERS + MAX_STREAMS];
    int n = 0;
    fds[n++] = (struct pollfd){.fd = host_away ? -1 : port, .events = POLLIN};
    for (int i = 0; i < count; i++) fds[n++] = (struct pollfd){.fd = listeners[i], .events = POLLIN};
    int first_stream = n;
    for (int i = 0; i < MAX_STREAMS; i++)
      fds[n++] = (struct pollfd){.fd = streams[i].fd >= 0 && streams[i].reading ? streams[i].fd : -1,
                                 .events = POLLIN};
    if (poll(fds, (nfds_t)n, host_away ? HOST_POLL_MS : -1) < 0) {
      if (errno == EINTR) continue;
      die("poll");
    }
    host_away = 0;
    if (fds[0].revents & POLLIN) {
      ssize_t got = read(port, input + held, sizeof input - held);
      if (got > 0) {
        held += (size_t)got;
        size_t at = 0;
        while (held - at >= HEADER) {
          const unsigned char *h = input + at;
          uint32_t id = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
          uint32_t size = (uint32_t)h[5] << 24 | (uint32_t)h[6] << 16 | (uint32_t)h[7] << 8 | h[8];
          if (size > PAYLOAD_MAX || h[4] < OPEN || h[4] > CLOSE) {
            /* Not a frame: nothing after it can be trusted. */
            drop_all();
            at = held;
            break;
          }
          if (held - at < HEADER + size) break;
          from_host(id, h[4], h + HEADER, size);
          at += HEADER + size;
        }
        memmove(input, input + at, held - at);
        held -= at;
      } else if (got == 0 || errno != EINTR) {
        host_away = 1;
      }
    } else if (fds[0].revents & (POLLHUP | POLLERR)) {
      host_away = 1;
    }
    if (host_away) {
      /* The host side went away and forgot its streams. */
      drop_all();
      held = 0;
    }
    for (int i = 0; i < count; i++)
      if (fds[1 + i].revents & POLLIN) accept_one(listeners[i]);
    for (int i = 0; i < MAX_STREAMS; i++) {
      struct pollfd *p = &fds[first_stream + i];
      if (p->fd >= 0 && streams[i].fd == p->fd && (p->revents & (POLLIN | POLLHUP | POLLERR)))
        from_client(&streams[i]);
    }
  }
}
