/*
 * hyper-resume PORT DIR STATUS: where a boot template waits, and what each
 * clone of it does first.
 *
 * It opens the virtio-serial port PORT (hyper.control), writes "template" to
 * STATUS (the host saves the VM from then on), and blocks reading PORT: the
 * template is saved in that read, so every clone resumes in it, with nothing
 * to fork or exec before it has its settings.
 *
 * The host then writes one frame to the port: "HYP1", the payload's length
 * (4 bytes, little-endian), and the payload, a ustar of regular files (the
 * host's src/guest/ustar.ts). Two names are taken, not written:
 *   clock    the host's time in nanoseconds since the epoch, as text: the
 *            wall clock is set to it (a resumed clock stands where it was
 *            saved);
 *   entropy  fresh random bytes from the host: the kernel's RNG is reseeded
 *            from them (hyper-reseed.c), so that no two clones share RNG state.
 * Every other file is written into DIR with its mode: the settings a booted
 * VM reads from fw_cfg. Then it answers "ok" on the port, or "error ..." and
 * exits 1; the host waits for that line.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* hyper-reseed.c */
int hyper_set_clock(const char *text);
int hyper_reseed_bytes(const unsigned char *bytes, size_t size);
ssize_t hyper_read_all(int fd, unsigned char *buffer, size_t size);

#define MAGIC "HYP1"
#define MAX_PAYLOAD (64u << 20)
#define BLOCK 512

static int port = -1;

static int fail(const char *format, ...) {
  char message[512];
  va_list args;
  va_start(args, format);
  vsnprintf(message, sizeof message, format, args);
  va_end(args);
  fprintf(stderr, "hyper-resume: %s\n", message);
  if (port >= 0) dprintf(port, "error %s\n", message);
  return 1;
}

/* Reads exactly `size` bytes: a port delivers what the host wrote in pieces. */
static int read_exactly(int fd, unsigned char *buffer, size_t size) {
  ssize_t got = hyper_read_all(fd, buffer, size);
  if (got >= 0 && (size_t)got < size) errno = EPIPE;
  return got >= 0 && (size_t)got == size ? 0 : -1;
}

static int write_all(int fd, const unsigned char *bytes, size_t size) {
  while (size > 0) {
    ssize_t n = write(fd, bytes, size);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -1;
    bytes += n;
    size -= (size_t)n;
  }
  return 0;
}

static unsigned long octal(const unsigned char *field, size_t width) {
  unsigned long value = 0;
  for (size_t i = 0; i < width && field[i] >= '0' && field[i] <= '7'; i++) value = value * 8 + (field[i] - '0');
  return value;
}

static int take_file(const char *dir, const char *name, unsigned mode, const unsigned char *bytes, size_t size) {
  if (strcmp(name, "clock") == 0) {
    char text[32];
    if (size == 0 || size >= sizeof text) return fail("the clock entry holds %zu bytes", size);
    memcpy(text, bytes, size);
    text[size] = '\0';
    return hyper_set_clock(text) == 0 ? 0 : fail("cannot set the clock to %s", text);
  }
  if (strcmp(name, "entropy") == 0)
    return hyper_reseed_bytes(bytes, size) == 0 ? 0 : fail("cannot reseed the RNG");
  if (name[0] == '\0' || name[0] == '.' || strchr(name, '/')) return fail("refused entry name \"%s\"", name);
  char file[4096];
  snprintf(file, sizeof file, "%s/%s", dir, name);
  int out = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode & 07777);
  if (out < 0) return fail("%s: %s", file, strerror(errno));
  int written = write_all(out, bytes, size);
  if (close(out) < 0 || written < 0) return fail("%s: %s", file, strerror(errno));
  return 0;
}

static int take_payload(const char *dir, const unsigned char *tar, size_t size) {
  size_t at = 0;
  while (at + BLOCK <= size) {
    const unsigned char *header = tar + at;
    if (header[0] == '\0') return 0; /* the end blocks */
    char name[101];
    memcpy(name, header, 100);
    name[100] = '\0';
    unsigned long length = octal(header + 124, 12);
    if (header[156] != '0' && header[156] != '\0') return fail("entry \"%s\" is not a regular file", name);
    at += BLOCK;
    if (length > size - at) return fail("entry \"%s\" runs past the payload", name);
    if (take_file(dir, name, (unsigned)octal(header + 100, 8), tar + at, length) != 0) return 1;
    at += (length + BLOCK - 1) / BLOCK * BLOCK;
  }
  return fail("the payload ends without its end blocks");
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: hyper-resume PORT DIR STATUS\n");
    return 2;
  }
  port = open(argv[1], O_RDWR | O_CLOEXEC);
  if (port < 0) {
    fprintf(stderr, "hyper-resume: %s: %s\n", argv[1], strerror(errno));
    return 1;
  }
  int status = open(argv[3], O_WRONLY | O_CLOEXEC);
  if (status < 0 || write_all(status, (const unsigned char *)"template\n", 9) < 0) {
    fprintf(stderr, "hyper-resume: %s: %s\n", argv[3], strerror(errno));
    return 1;
  }
  close(status);

  unsigned char header[8];
  if (read_exactly(port, header, sizeof header) < 0) return fail("reading the frame: %s", strerror(errno));
  if (memcmp(header, MAGIC, 4) != 0) return fail("the frame does not start with " MAGIC);
  uint32_t size = (uint32_t)header[4] | (uint32_t)header[5] << 8 | (uint32_t)header[6] << 16 |
                  (uint32_t)header[7] << 24;
  if (size > MAX_PAYLOAD) return fail("a payload of %u bytes is over the limit", size);
  unsigned char *payload = malloc(size ? size : 1);
  if (!payload) return fail("no memory for %u bytes", size);
  if (read_exactly(port, payload, size) < 0) return fail("reading the payload: %s", strerror(errno));
  if (take_payload(argv[2], payload, size) != 0) return 1;
  free(payload);
  if (write_all(port, (const unsigned char *)"ok\n", 3) < 0) {
    fprintf(stderr, "hyper-resume: answering: %s\n", strerror(errno));
    return 1;
  }
  close(port);
  return 0;
}
