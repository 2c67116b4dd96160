/*
 * hyper-resume PORT DIR [STATUS]: the guest's reader of the host's frames on
 * the virtio-serial port PORT (hyper.control). It stays in the guest for the
 * VM's life, so that a VM resumed from saved state (a checkpoint, a service
 * template) takes its clock, entropy and network from the host with no fork
 * or exec, as a clone of a boot template takes its settings.
 *
 * With STATUS (a boot template): it writes "template" to STATUS (the host
 * saves the VM from then on) and blocks reading PORT. The template is saved
 * in that read, so every clone resumes in it. It returns once the clone's
 * first frame is taken (its settings), and a child it forked before the save
 * goes on reading. Without STATUS (a VM booted in full that has the port):
 * it returns at once, and the child reads.
 *
 * Each frame is "HYP1", the payload's length (4 bytes, little-endian), and
 * the payload, a ustar of regular files (the host's src/guest/ustar.ts).
 * Three names are taken, not written:
 *   clock    the host's time in nanoseconds since the epoch, as text: the
 *            wall clock is set to it (a resumed clock stands where it was
 *            saved);
 *   entropy  fresh random bytes from the host: the kernel's RNG is reseeded
 *            from them (hyper-reseed.c), so that no two VMs resumed from one
 *            state share RNG state;
 *   network  "mac=", "address=IP/PREFIX" and "gateway=" lines: eth0 takes
 *            that MAC, its IPv4 addresses give way to that one, and the
 *            default route goes through that gateway (a VM resumed in
 *            another job's network, or with another VM's saved MAC).
 * Every other file is written into DIR with its mode (a clone's settings,
 * or a resumed VM's hosts and resolv.conf). Then it answers "ok" on the
 * port, or "error ..." (and for the first frame of a template, the parent
 * exits 1); the host waits for that line.
 *
 * While no host is connected (the hyper that wrote the last frame has
 * exited, or a booted VM's port has no backend), a read of the port returns
 * at once with nothing. The reader then sleeps until the port's SIGIO, which
 * the kernel sends when a host connects (a VM resumed from saved state gets
 * its port's connection anew) or data comes.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

/* hyper-reseed.c */
int hyper_set_clock(const char *text);
int hyper_reseed_bytes(const unsigned char *bytes, size_t size);

#define MAGIC "HYP1"
#define MAX_PAYLOAD (64u << 20)
#define BLOCK 512
#define INTERFACE "eth0"

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

static void on_sigio(int signal) { (void)signal; }

/* Sleeps until the port's next SIGIO (blocked otherwise, so none is missed between a read and this). */
static void wait_for_host(void) {
  sigset_t unblocked;
  sigprocmask(SIG_SETMASK, NULL, &unblocked);
  sigdelset(&unblocked, SIGIO);
  sigsuspend(&unblocked);
}

/*
 * Reads exactly `size` bytes of a frame: 0, or -1 on an error. A read that
 * finds no host waits for one, in a frame too: a resumed guest can take the
 * first of a frame's buffers before it has heard that its port's host is
 * connected again (that news comes through the driver's work queue, the
 * data straight from its interrupt).
 */
static int read_frame_part(unsigned char *buffer, size_t size) {
  size_t got = 0;
  while (got < size) {
    ssize_t n = read(port, buffer + got, size - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -1;
    if (n == 0) {
      wait_for_host();
      continue;
    }
    got += (size_t)n;
  }
  return 0;
}

/*
 * After a refused header: what the host wrote after it is not a frame's
 * start. It is read and dropped until the host, having read the refusal,
 * closes its end, so that its next frame is read from its start.
 */
static void drain(void) {
  unsigned char buffer[4096];
  for (;;) {
    ssize_t n = read(port, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
  }
}

static unsigned long octal(const unsigned char *field, size_t width) {
  unsigned long value = 0;
  for (size_t i = 0; i < width && field[i] >= '0' && field[i] <= '7'; i++) value = value * 8 + (field[i] - '0');
  return value;
}

/* One rtnetlink request, answered by its acknowledgement: 0, or -errno. */
static int netlink_ask(int sock, struct nlmsghdr *request) {
  static uint32_t seq;
  request->nlmsg_seq = ++seq;
  request->nlmsg_flags |= NLM_F_REQUEST | NLM_F_ACK;
  if (send(sock, request, request->nlmsg_len, 0) < 0) return -errno;
  char answer[4096] __attribute__((aligned(NLMSG_ALIGNTO)));
  for (;;) {
    ssize_t n = recv(sock, answer, sizeof answer, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -errno;
    for (struct nlmsghdr *h = (struct nlmsghdr *)answer; NLMSG_OK(h, n); h = NLMSG_NEXT(h, n)) {
      if (h->nlmsg_seq != request->nlmsg_seq || h->nlmsg_type != NLMSG_ERROR) continue;
      return ((struct nlmsgerr *)NLMSG_DATA(h))->error;
    }
  }
}

static void netlink_attr(struct nlmsghdr *h, unsigned short type, const void *data, size_t size) {
  struct rtattr *attr = (struct rtattr *)((char *)h + NLMSG_ALIGN(h->nlmsg_len));
  attr->rta_type = type;
  attr->rta_len = (unsigned short)RTA_LENGTH(size);
  memcpy(RTA_DATA(attr), data, size);
  h->nlmsg_len = NLMSG_ALIGN(h->nlmsg_len) + RTA_ALIGN(attr->rta_len);
}

struct address_request {
  struct nlmsghdr header;
  struct ifaddrmsg address;
  char attrs[64];
};

/*
 * Removes every address of interface `index`, of every family, as `ip addr
 * flush dev eth0` did: an IPv6 link-local address derived from the saved
 * MAC would otherwise be shared by every VM resumed from one saved state.
 */
static int flush_addresses(int sock, int index) {
  struct {
    struct nlmsghdr header;
    struct ifaddrmsg address;
  } dump = {.header = {.nlmsg_len = sizeof dump, .nlmsg_type = RTM_GETADDR, .nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP},
            .address = {.ifa_family = AF_UNSPEC}};
  if (send(sock, &dump, sizeof dump, 0) < 0) return fail("netlink: %s", strerror(errno));
  struct address_request found[16];
  size_t count = 0;
  char answer[8192] __attribute__((aligned(NLMSG_ALIGNTO)));
  for (int done = 0; !done;) {
    ssize_t n = recv(sock, answer, sizeof answer, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail("netlink: %s", strerror(errno));
    for (struct nlmsghdr *h = (struct nlmsghdr *)answer; NLMSG_OK(h, n); h = NLMSG_NEXT(h, n)) {
      if (h->nlmsg_type == NLMSG_ERROR)
        return fail("listing the addresses of " INTERFACE ": %s", strerror(-((struct nlmsgerr *)NLMSG_DATA(h))->error));
      if (h->nlmsg_type == NLMSG_DONE) {
        done = 1;
        break;
      }
      struct ifaddrmsg *address = NLMSG_DATA(h);
      if (h->nlmsg_type != RTM_NEWADDR || (int)address->ifa_index != index) continue;
      if (count == sizeof found / sizeof found[0]) return fail(INTERFACE " has more addresses than %zu", count);
      struct address_request *remove = &found[count++];
      memset(remove, 0, sizeof *remove);
      remove->header.nlmsg_len = NLMSG_LENGTH(sizeof remove->address);
      remove->header.nlmsg_type = RTM_DELADDR;
      remove->address = *address;
      int size = (int)IFA_PAYLOAD(h);
      for (struct rtattr *attr = IFA_RTA(address); RTA_OK(attr, size); attr = RTA_NEXT(attr, size))
        if ((attr->rta_type == IFA_LOCAL || attr->rta_type == IFA_ADDRESS) && RTA_PAYLOAD(attr) <= 16)
          netlink_attr(&remove->header, attr->rta_type, RTA_DATA(attr), RTA_PAYLOAD(attr));
    }
  }
  for (size_t i = 0; i < count; i++) {
    int error = netlink_ask(sock, &found[i].header);
    if (error < 0 && error != -EADDRNOTAVAIL) return fail("removing an address of " INTERFACE ": %s", strerror(-error));
  }
  return 0;
}

static int hex_digit(char c) {
  return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* Sets eth0's MAC to `text`, six two-digit hex bytes joined by colons. */
static int set_mac(int sock, const char *text) {
  struct ifreq request = {0};
  strcpy(request.ifr_name, INTERFACE);
  request.ifr_hwaddr.sa_family = ARPHRD_ETHER;
  if (strlen(text) != 17) return fail("\"%s\" is not a MAC address", text);
  for (int i = 0; i < 6; i++) {
    int high = hex_digit(text[3 * i]), low = hex_digit(text[3 * i + 1]);
    if (high < 0 || low < 0 || (i < 5 && text[3 * i + 2] != ':')) return fail("\"%s\" is not a MAC address", text);
    request.ifr_hwaddr.sa_data[i] = (char)(high << 4 | low);
  }
  if (ioctl(sock, SIOCSIFHWADDR, &request) < 0) return fail("setting the MAC of " INTERFACE ": %s", strerror(errno));
  return 0;
}

/* As `ip addr flush dev eth0; ip addr add ADDRESS dev eth0; ip route replace default via GATEWAY`. */
static int set_network(const char *mac, const char *address, const char *gateway) {
  char ip[INET_ADDRSTRLEN];
  unsigned prefix;
  struct in_addr local, via;
  char end;
  if (sscanf(address, "%15[0-9.]/%u%c", ip, &prefix, &end) != 2 || prefix > 32 || inet_pton(AF_INET, ip, &local) != 1)
    return fail("\"%s\" is not an IPv4 address with a prefix", address);
  if (inet_pton(AF_INET, gateway, &via) != 1) return fail("\"%s\" is not an IPv4 gateway", gateway);
  int index = (int)if_nametoindex(INTERFACE);
  if (index == 0) return fail(INTERFACE ": %s", strerror(errno));
  if (*mac) {
    int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (sock < 0) return fail("socket: %s", strerror(errno));
    int failed = set_mac(sock, mac);
    close(sock);
    if (failed) return 1;
  }
  int sock = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (sock < 0) return fail("netlink: %s", strerror(errno));
  int failed = flush_addresses(sock, index);
  if (!failed) {
    struct address_request add = {
        .header = {.nlmsg_len = NLMSG_LENGTH(sizeof(struct ifaddrmsg)), .nlmsg_type = RTM_NEWADDR,
                   .nlmsg_flags = NLM_F_CREATE | NLM_F_EXCL},
        .address = {.ifa_family = AF_INET, .ifa_prefixlen = (unsigned char)prefix, .ifa_index = (unsigned)index}};
    netlink_attr(&add.header, IFA_LOCAL, &local, 4);
    netlink_attr(&add.header, IFA_ADDRESS, &local, 4);
    int error = netlink_ask(sock, &add.header);
    if (error < 0) failed = fail("adding %s to " INTERFACE ": %s", address, strerror(-error));
  }
  if (!failed) {
    struct {
      struct nlmsghdr header;
      struct rtmsg route;
      char attrs[32];
    } route = {.header = {.nlmsg_len = NLMSG_LENGTH(sizeof(struct rtmsg)), .nlmsg_type = RTM_NEWROUTE,
                          .nlmsg_flags = NLM_F_CREATE | NLM_F_REPLACE},
               .route = {.rtm_family = AF_INET, .rtm_table = RT_TABLE_MAIN, .rtm_protocol = RTPROT_BOOT,
                         .rtm_scope = RT_SCOPE_UNIVERSE, .rtm_type = RTN_UNICAST}};
    netlink_attr(&route.header, RTA_GATEWAY, &via, 4);
    int error = netlink_ask(sock, &route.header);
    if (error < 0) failed = fail("the default route via %s: %s", gateway, strerror(-error));
  }
  close(sock);
  return failed;
}

/* The "network" entry's lines: each of mac=, address= and gateway= once, the first two required. */
static int take_network(const unsigned char *bytes, size_t size) {
  char text[256], mac[32] = "", address[32] = "", gateway[32] = "";
  if (size >= sizeof text) return fail("the network entry holds %zu bytes", size);
  memcpy(text, bytes, size);
  text[size] = '\0';
  for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
    char *value = strchr(line, '=');
    if (!value || strlen(value + 1) >= sizeof mac) return fail("the network entry's line \"%s\" is not taken", line);
    *value++ = '\0';
    char *field = strcmp(line, "mac") == 0 ? mac : strcmp(line, "address") == 0 ? address : strcmp(line, "gateway") == 0 ? gateway : NULL;
    if (!field) return fail("the network entry has no \"%s\"", line);
    strcpy(field, value);
  }
  if (!*address || !*gateway) return fail("the network entry needs an address and a gateway");
  return set_network(mac, address, gateway);
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
  if (strcmp(name, "network") == 0) return take_network(bytes, size);
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

/*
 * Reads and takes one frame, and answers it: 0 taken, 1 refused (answered),
 * 2 its header refused (answered; what follows is not a frame's start), -2
 * the port cannot be read (the reader ends).
 */
static int take_frame(const char *dir) {
  unsigned char header[8];
  if (read_frame_part(header, sizeof header) != 0) return fail("reading the frame: %s", strerror(errno)), -2;
  if (memcmp(header, MAGIC, 4) != 0) return fail("the frame does not start with " MAGIC), 2;
  uint32_t size = (uint32_t)header[4] | (uint32_t)header[5] << 8 | (uint32_t)header[6] << 16 |
                  (uint32_t)header[7] << 24;
  if (size > MAX_PAYLOAD) return fail("a payload of %u bytes is over the limit", size), 2;
  unsigned char *payload = malloc(size ? size : 1);
  if (!payload) return fail("no memory for %u bytes", size);
  int status = read_frame_part(payload, size) != 0 ? (fail("reading the payload: %s", strerror(errno)), -2)
                                                   : take_payload(dir, payload, size);
  free(payload);
  if (status != 0) return status;
  if (write_all(port, (const unsigned char *)"ok\n", 3) < 0) {
    fprintf(stderr, "hyper-resume: answering: %s\n", strerror(errno));
    return 1;
  }
  return 0;
}

/*
 * The resident reader. `first`: the parent's end of a pipe that gets "0"
 * once the first frame is taken, or "1" if it was refused (then the reader
 * ends), and is closed; -1 when the parent waits for none.
 */
static int serve(const char *dir, const char *status, int first) {
  if (status) {
    int out = open(status, O_WRONLY | O_CLOEXEC);
    if (out < 0 || write_all(out, (const unsigned char *)"template\n", 9) < 0) {
      fprintf(stderr, "hyper-resume: %s: %s\n", status, strerror(errno));
      return 1;
    }
    close(out);
  }
  for (;;) {
    int taken = take_frame(dir);
    if (first >= 0) {
      write_all(first, (const unsigned char *)(taken == 0 ? "0" : "1"), 1);
      close(first);
      first = -1;
      if (taken != 0) return 1;
    }
    if (taken == -2) return 1;
    if (taken == 2) drain();
  }
}

int main(int argc, char **argv) {
  if (argc != 3 && argc != 4) {
    fprintf(stderr, "usage: hyper-resume PORT DIR [STATUS]\n");
    return 2;
  }
  const char *status = argc == 4 ? argv[3] : NULL;
  port = open(argv[1], O_RDWR | O_CLOEXEC);
  if (port < 0) {
    fprintf(stderr, "hyper-resume: %s: %s\n", argv[1], strerror(errno));
    return 1;
  }
  /* SIGIO is taken only in wait_for_host's sigsuspend. Set up here, so that a failure reaches the init. */
  sigset_t blocked;
  sigemptyset(&blocked);
  sigaddset(&blocked, SIGIO);
  sigprocmask(SIG_BLOCK, &blocked, NULL);
  struct sigaction action = {.sa_handler = on_sigio};
  sigaction(SIGIO, &action, NULL);
  if (fcntl(port, F_SETFL, fcntl(port, F_GETFL) | O_ASYNC) < 0) {
    fprintf(stderr, "hyper-resume: %s: O_ASYNC: %s\n", argv[1], strerror(errno));
    return 1;
  }
  int ready[2] = {-1, -1};
  if (status && pipe2(ready, O_CLOEXEC) < 0) {
    fprintf(stderr, "hyper-resume: pipe: %s\n", strerror(errno));
    return 1;
  }
  pid_t child = fork();
  if (child < 0) {
    fprintf(stderr, "hyper-resume: fork: %s\n", strerror(errno));
    return 1;
  }
  if (child == 0) {
    if (status) close(ready[0]);
    /* The reader's own session: it is not the init's job. */
    setsid();
    /* The signal goes to the reader. Any SIGIO before this is no loss: each wait follows a read. */
    if (fcntl(port, F_SETOWN, getpid()) < 0) {
      fprintf(stderr, "hyper-resume: %s: F_SETOWN: %s\n", argv[1], strerror(errno));
      _exit(1);
    }
    /* Every later resume needs it: the OOM killer takes the service first. */
    int oom = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
    if (oom >= 0) {
      write_all(oom, (const unsigned char *)"-1000", 5);
      close(oom);
    }
    _exit(serve(argv[2], status, ready[1]));
  }
  close(port);
  port = -1;
  if (!status) return 0;
  close(ready[1]);
  char taken = '1';
  while (read(ready[0], &taken, 1) < 0 && errno == EINTR) {
  }
  return taken == '0' ? 0 : 1;
}
