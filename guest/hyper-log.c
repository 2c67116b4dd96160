/*
 * hyper-log: runs a command with its stdout and stderr on two pipes and
 * writes what comes out of them to its own stdout as records, so the host
 * can tell the streams apart and knows when each piece was written (docker
 * logs, attach, --timestamps, --since). The guest init starts the service
 * with it, writing to the hyper.log port.
 *
 * Usage: hyper-log CMD [ARG...]
 *
 * A record: 0x1e, the stream (1 stdout, 2 stderr), the length (4 bytes,
 * big-endian), the guest's wall-clock time in nanoseconds (8 bytes,
 * big-endian), then that many bytes. Signals sent to hyper-log go on to the
 * command; hyper-log exits as the command did (128 + N for signal N).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define RECORD_MARK 0x1e
#define CHUNK 65536
/* After the command ends, what its children still write is read for this long. */
#define DRAIN_MS 200

static volatile pid_t child = -1;

static void forward(int sig) {
  if (child > 0) kill(child, sig);
}

static int write_all(int fd, const unsigned char *buf, size_t len) {
  while (len > 0) {
    ssize_t n = write(fd, buf, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    buf += n;
    len -= (size_t)n;
  }
  return 0;
}

static void put32(unsigned char *p, uint32_t v) {
  for (int i = 3; i >= 0; i--, v >>= 8) p[i] = (unsigned char)(v & 0xff);
}

static void put64(unsigned char *p, uint64_t v) {
  for (int i = 7; i >= 0; i--, v >>= 8) p[i] = (unsigned char)(v & 0xff);
}

/* Reads what the pipe holds and writes it as one record; returns 0 at end of file. */
static int relay(int fd, int stream) {
  static unsigned char buf[14 + CHUNK];
  ssize_t n = read(fd, buf + 14, CHUNK);
  if (n < 0) return errno == EINTR || errno == EAGAIN ? 1 : 0;
  if (n == 0) return 0;
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  buf[0] = RECORD_MARK;
  buf[1] = (unsigned char)stream;
  put32(buf + 2, (uint32_t)n);
  put64(buf + 6, (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec);
  /* The host may be gone for a moment (a full port): the record is then lost, the command goes on. */
  write_all(STDOUT_FILENO, buf, 14 + (size_t)n);
  return 1;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: hyper-log CMD [ARG...]\n");
    return 125;
  }
  int out[2], err[2];
  if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) {
    perror("hyper-log: pipe");
    return 125;
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = forward;
  sa.sa_flags = SA_RESTART;
  for (int sig = 1; sig < NSIG; sig++)
    if (sig != SIGKILL && sig != SIGSTOP && sig != SIGCHLD && sig != SIGPIPE) sigaction(sig, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);

  child = fork();
  if (child < 0) {
    perror("hyper-log: fork");
    return 125;
  }
  if (child == 0) {
    for (int sig = 1; sig < NSIG; sig++)
      if (sig != SIGKILL && sig != SIGSTOP) signal(sig, SIG_DFL);
    dup2(out[1], STDOUT_FILENO);
    dup2(err[1], STDERR_FILENO);
    execvp(argv[1], argv + 1);
    fprintf(stderr, "hyper-log: %s: %s\n", argv[1], strerror(errno));
    _exit(errno == ENOENT ? 127 : 126);
  }
  close(out[1]);
  close(err[1]);

  struct pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  int open_fds = 2, status = 0, exited = 0;
  long drain_left = DRAIN_MS;
  while (open_fds > 0) {
    int ready = poll(fds, 2, exited ? 20 : 100);
    if (ready < 0 && errno != EINTR) break;
    for (int i = 0; i < 2; i++) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      if (!relay(fds[i].fd, i + 1)) {
        close(fds[i].fd);
        fds[i].fd = -1;
        open_fds--;
      }
    }
    if (!exited && waitpid(child, &status, WNOHANG) == child) exited = 1;
    /* A daemon the command left behind may hold the pipes open: stop reading a little after the command ends. */
    if (exited && ready == 0 && (drain_left -= 20) <= 0) break;
  }
  if (!exited) waitpid(child, &status, 0);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return WEXITSTATUS(status);
}
