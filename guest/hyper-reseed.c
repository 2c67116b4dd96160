/*
 * hyper-reseed [--clock NANOSECONDS] [FILE | -]: what a guest resumed from
 * saved state must not keep from it.
 *
 * --clock sets the wall clock to NANOSECONDS since the epoch (the host's time
 * when it sent them): a resumed guest's clock stands where it was saved. This
 * rides in the one agent exec a resume makes anyway, where qemu-ga's
 * guest-set-time costs a round trip and a fork of hwclock.
 *
 * FILE (or stdin, for "-") holds fresh randomness from the host. It is mixed
 * into the kernel's entropy pool, credited, and the kernel reseeds its CRNG
 * from the pool at once. A clone resumes with its template's RNG state, which
 * every other clone of that template shares. Writing to /dev/urandom only
 * mixes bytes in: the CRNG would go on producing the template's stream until
 * its next timed reseed. RNDADDENTROPY credits the bytes, and RNDRESEEDCRNG
 * rekeys the CRNG (and so every per-CPU one) from the pool now, before the
 * service runs.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/random.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#define MAX_SEED 512

int hyper_reseed_bytes(const unsigned char *bytes, size_t size);

static int usage(void) {
  fprintf(stderr, "usage: hyper-reseed [--clock NANOSECONDS] [FILE | -]\n");
  return 2;
}

/* Also hyper-resume's. */
int hyper_set_clock(const char *text) {
  char *end;
  errno = 0;
  long long ns = strtoll(text, &end, 10);
  if (errno != 0 || *end != '\0' || ns <= 0) {
    fprintf(stderr, "hyper-reseed: --clock %s is not a count of nanoseconds\n", text);
    return 2;
  }
  struct timespec now = {.tv_sec = ns / 1000000000LL, .tv_nsec = ns % 1000000000LL};
  if (clock_settime(CLOCK_REALTIME, &now) < 0) {
    fprintf(stderr, "hyper-reseed: clock_settime: %s\n", strerror(errno));
    return 1;
  }
  return 0;
}

/* Reads until `size` bytes or the end: a pipe may deliver them in pieces. */
static ssize_t read_all(int fd, unsigned char *buffer, size_t size) {
  size_t got = 0;
  while (got < size) {
    ssize_t n = read(fd, buffer + got, size - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -1;
    if (n == 0) break;
    got += (size_t)n;
  }
  return (ssize_t)got;
}

static int reseed(const char *source) {
  int stdin_source = strcmp(source, "-") == 0;
  int in = stdin_source ? STDIN_FILENO : open(source, O_RDONLY);
  if (in < 0) {
    fprintf(stderr, "hyper-reseed: %s: %s\n", source, strerror(errno));
    return 1;
  }
  unsigned char bytes[MAX_SEED];
  ssize_t got = read_all(in, bytes, sizeof bytes);
  if (!stdin_source) close(in);
  if (got < 32) {
    fprintf(stderr, "hyper-reseed: %s holds %zd bytes; at least 32 are needed\n",
            stdin_source ? "stdin" : source, got);
    return 1;
  }
  return hyper_reseed_bytes(bytes, (size_t)got);
}

/* Credits `size` bytes (32 to MAX_SEED) to the pool and rekeys the CRNG from it. Also hyper-resume's. */
int hyper_reseed_bytes(const unsigned char *bytes, size_t size) {
  struct {
    struct rand_pool_info info;
    unsigned char bytes[MAX_SEED];
  } seed;
  if (size < 32 || size > MAX_SEED) {
    fprintf(stderr, "hyper-reseed: %zu bytes of randomness; 32 to %d are taken\n", size, MAX_SEED);
    return 1;
  }
  memcpy(seed.bytes, bytes, size);
  seed.info.entropy_count = (int)size * 8;
  seed.info.buf_size = (int)size;
  int random = open("/dev/urandom", O_WRONLY);
  if (random < 0) {
    fprintf(stderr, "hyper-reseed: /dev/urandom: %s\n", strerror(errno));
    return 1;
  }
  int status = 0;
  if (ioctl(random, RNDADDENTROPY, &seed.info) < 0) {
    fprintf(stderr, "hyper-reseed: RNDADDENTROPY: %s\n", strerror(errno));
    status = 1;
  } else if (ioctl(random, RNDRESEEDCRNG) < 0) {
    fprintf(stderr, "hyper-reseed: RNDRESEEDCRNG: %s\n", strerror(errno));
    status = 1;
  }
  close(random);
  return status;
}

int main(int argc, char **argv) {
  int next = 1;
  const char *clock = NULL;
  if (next < argc && strcmp(argv[next], "--clock") == 0) {
    if (next + 1 >= argc) return usage();
    clock = argv[next + 1];
    next += 2;
  }
  if (argc - next > 1 || (clock == NULL && next == argc)) return usage();
  if (clock != NULL) {
    int status = hyper_set_clock(clock);
    if (status != 0) return status;
  }
  return next < argc ? reseed(argv[next]) : 0;
}
