/*
 * hyper-reseed FILE: mixes FILE's bytes (fresh randomness from the host) into
 * the kernel's entropy pool, credited, and makes the kernel reseed its CRNG
 * from the pool at once.
 *
 * A clone resumes with its template's RNG state, which every other clone of
 * that template shares. Writing to /dev/urandom only mixes bytes in: the CRNG
 * would go on producing the template's stream until its next timed reseed.
 * RNDADDENTROPY credits the bytes, and RNDRESEEDCRNG rekeys the CRNG (and so
 * every per-CPU one) from the pool now, before the service runs.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/random.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define MAX_SEED 512

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: hyper-reseed FILE\n");
    return 2;
  }
  int in = open(argv[1], O_RDONLY);
  if (in < 0) {
    fprintf(stderr, "hyper-reseed: %s: %s\n", argv[1], strerror(errno));
    return 1;
  }
  struct {
    struct rand_pool_info info;
    unsigned char bytes[MAX_SEED];
  } seed;
  ssize_t got = read(in, seed.bytes, sizeof(seed.bytes));
  close(in);
  if (got < 32) {
    fprintf(stderr, "hyper-reseed: %s holds %zd bytes; at least 32 are needed\n", argv[1], got);
    return 1;
  }
  seed.info.entropy_count = (int)got * 8;
  seed.info.buf_size = (int)got;
  int random = open("/dev/urandom", O_WRONLY);
  if (random < 0) {
    fprintf(stderr, "hyper-reseed: /dev/urandom: %s\n", strerror(errno));
    return 1;
  }
  if (ioctl(random, RNDADDENTROPY, &seed.info) < 0) {
    fprintf(stderr, "hyper-reseed: RNDADDENTROPY: %s\n", strerror(errno));
    return 1;
  }
  if (ioctl(random, RNDRESEEDCRNG) < 0) {
    fprintf(stderr, "hyper-reseed: RNDRESEEDCRNG: %s\n", strerror(errno));
    return 1;
  }
  close(random);
  return 0;
}
