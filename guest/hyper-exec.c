/*
 * hyper-exec: runs a command inside the container root of a hyper-services
 * guest, the way a container runtime does: chroot, working directory, user and
 * groups resolved in the image's own /etc/passwd and /etc/group, Docker's
 * open-file limit and umask, and an environment given in full. The guest init
 * starts the service with it, and the host's `hyper exec` runs it through the
 * QEMU guest agent.
 *
 * Usage: hyper-exec --root DIR [--user USER[:GROUP]] [--workdir DIR]
 *                   [--env-file FILE]... [--env K=V]... [--limits-file FILE]
 *                   [--caps-file FILE] [--groups-file FILE] [--cgroup DIR]
 *                   (--argv-file FILE | -- CMD [ARG...])
 * Env and argv files hold NUL-separated strings. Later --env entries override
 * earlier ones. A limits file holds "NAME SOFT HARD" lines (compose ulimits,
 * -1 unlimited), set after Docker's defaults; a missing one sets none. A caps
 * file holds the comma-separated numbers of the capabilities to keep: every
 * other one leaves the bounding set, so the command (root or not) can never
 * hold it; a missing one keeps them all. A groups file holds one group per
 * line (compose group_add), a name in the image's /etc/group or a number:
 * supplementary groups beyond the user's own; a missing one adds none. A
 * cgroup (the service's, with its pids limit) is joined before anything else
 * runs, so every process the command starts counts; a missing one is none.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_LIST 4096
#define MAX_GROUPS 256

/* Docker's open-file limit (containerd's, soft and hard): fs.nr_open's default, so it always fits. */
#define OPEN_FILES 1048576

/* Exit codes follow the container runtimes: 126 cannot run, 127 not found. */
#define EXIT_SETUP 125

static void die(const char *what, const char *detail) {
  fprintf(stderr, "hyper-exec: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
  exit(EXIT_SETUP);
}

static char *read_file(const char *path, size_t *len) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return NULL;
  size_t cap = 4096, n = 0;
  char *buf = malloc(cap + 1);
  for (;;) {
    if (n == cap) buf = realloc(buf, (cap *= 2) + 1);
    ssize_t r = read(fd, buf + n, cap - n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    n += (size_t)r;
  }
  close(fd);
  buf[n] = '\0';
  *len = n;
  return buf;
}

/* Appends the NUL-separated strings of a file to list. */
static int load_list(const char *path, char **list, int count) {
  size_t len;
  char *buf = read_file(path, &len);
  if (!buf) die("cannot read", path);
  for (size_t i = 0; i < len; i += strlen(buf + i) + 1) {
    if (buf[i] == '\0') continue;
    if (count >= MAX_LIST - 1) die("too many entries in", path);
    list[count++] = buf + i;
  }
  return count;
}

/* Sets K=V in env, replacing an earlier K. */
static int env_set(char **env, int count, char *entry) {
  char *eq = strchr(entry, '=');
  size_t keylen = eq ? (size_t)(eq - entry) : strlen(entry);
  for (int i = 0; i < count; i++) {
    if (strncmp(env[i], entry, keylen) == 0 && env[i][keylen] == '=') {
      env[i] = entry;
      return count;
    }
  }
  if (count >= MAX_LIST - 1) die("too many environment entries", NULL);
  env[count++] = entry;
  return count;
}

static int env_has(char **env, int count, const char *key) {
  size_t keylen = strlen(key);
  for (int i = 0; i < count; i++)
    if (strncmp(env[i], key, keylen) == 0 && env[i][keylen] == '=') return 1;
  return 0;
}

static int is_number(const char *s) {
  if (!*s) return 0;
  for (; *s; s++)
    if (!isdigit((unsigned char)*s)) return 0;
  return 1;
}

/* Splits a colon-separated line of /etc/passwd or /etc/group into fields. */
static int split_fields(char *line, char **fields, int max) {
  int n = 0;
  fields[n++] = line;
  for (char *p = line; *p && n < max; p++) {
    if (*p == ':') {
      *p = '\0';
      fields[n++] = p + 1;
    }
  }
  return n;
}

struct user {
  uid_t uid;
  gid_t gid;
  char name[256];
  char home[1024];
  int found;
};

/* Looks a user up by name or uid in the image's /etc/passwd (after chroot). */
static void lookup_passwd(const char *spec, struct user *u) {
  size_t len;
  char *buf = read_file("/etc/passwd", &len);
  if (!buf) return;
  for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
    char *f[7];
    if (split_fields(line, f, 7) < 7) continue;
    if (strcmp(f[0], spec) == 0 || (is_number(spec) && strcmp(f[2], spec) == 0)) {
      u->uid = (uid_t)strtoul(f[2], NULL, 10);
      u->gid = (gid_t)strtoul(f[3], NULL, 10);
      snprintf(u->name, sizeof u->name, "%s", f[0]);
      snprintf(u->home, sizeof u->home, "%s", f[5]);
      u->found = 1;
      break;
    }
  }
  free(buf);
}

/* Resolves a group name or gid in the image's /etc/group; -1 when unknown. */
static long lookup_group(const char *spec) {
  if (is_number(spec)) return strtol(spec, NULL, 10);
  size_t len;
  char *buf = read_file("/etc/group", &len);
  long gid = -1;
  if (!buf) return -1;
  for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
    char *f[4];
    if (split_fields(line, f, 4) < 3) continue;
    if (strcmp(f[0], spec) == 0) {
      gid = strtol(f[2], NULL, 10);
      break;
    }
  }
  free(buf);
  return gid;
}

/* Supplementary groups: every group in /etc/group that lists the user as a member. */
static int member_groups(const char *name, gid_t *groups, int count) {
  size_t len;
  char *buf = read_file("/etc/group", &len);
  if (!buf || !*name) return count;
  char *save_line;
  for (char *line = strtok_r(buf, "\n", &save_line); line; line = strtok_r(NULL, "\n", &save_line)) {
    char *f[4];
    if (split_fields(line, f, 4) < 4) continue;
    char *save_member;
    for (char *m = strtok_r(f[3], ",", &save_member); m; m = strtok_r(NULL, ",", &save_member)) {
      if (strcmp(m, name) == 0 && count < MAX_GROUPS) {
        groups[count++] = (gid_t)strtoul(f[2], NULL, 10);
        break;
      }
    }
  }
  free(buf);
  return count;
}

static const struct {
  const char *name;
  int resource;
} LIMITS[] = {
    {"core", RLIMIT_CORE},         {"cpu", RLIMIT_CPU},         {"data", RLIMIT_DATA},
    {"fsize", RLIMIT_FSIZE},       {"locks", RLIMIT_LOCKS},     {"memlock", RLIMIT_MEMLOCK},
    {"msgqueue", RLIMIT_MSGQUEUE}, {"nice", RLIMIT_NICE},       {"nofile", RLIMIT_NOFILE},
    {"nproc", RLIMIT_NPROC},       {"rss", RLIMIT_RSS},         {"rtprio", RLIMIT_RTPRIO},
    {"rttime", RLIMIT_RTTIME},     {"sigpending", RLIMIT_SIGPENDING}, {"stack", RLIMIT_STACK},
    {"as", RLIMIT_AS},
};

static rlim_t limit_value(const char *text) {
  return strcmp(text, "-1") == 0 ? RLIM_INFINITY : (rlim_t)strtoull(text, NULL, 10);
}

#define MAX_LIMITS 32
static struct {
  int resource;
  struct rlimit value;
} limits[MAX_LIMITS];
static int nlimits;

/* Reads the limits a limits file names (before the chroot hides it); the host checked the names and numbers. */
static void load_limits(const char *path) {
  size_t len;
  char *buf = read_file(path, &len);
  if (!buf) return;
  for (char *line = strtok(buf, "\n"); line && nlimits < MAX_LIMITS; line = strtok(NULL, "\n")) {
    char name[32], soft[32], hard[32];
    if (sscanf(line, "%31s %31s %31s", name, soft, hard) != 3) die("bad limits line", line);
    size_t k;
    for (k = 0; k < sizeof LIMITS / sizeof LIMITS[0]; k++)
      if (strcmp(LIMITS[k].name, name) == 0) break;
    if (k == sizeof LIMITS / sizeof LIMITS[0]) die("unknown limit", name);
    limits[nlimits].resource = LIMITS[k].resource;
    limits[nlimits].value.rlim_cur = limit_value(soft);
    limits[nlimits].value.rlim_max = limit_value(hard);
    nlimits++;
  }
  free(buf);
}

#define MAX_CAP 64
static int keep_cap[MAX_CAP];
static int caps_given;
static int last_cap = -1;

/* Reads the capabilities to keep, and the kernel's highest, before the chroot hides them. */
/* Moves this process into the cgroup DIR (its children follow); nothing when DIR has none. */
static void join_cgroup(const char *dir) {
  char path[4096];
  snprintf(path, sizeof path, "%s/cgroup.procs", dir);
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return;
    die("cannot open the service's cgroup", strerror(errno));
  }
  if (write(fd, "0\n", 2) != 2) die("cannot join the service's cgroup", strerror(errno));
  close(fd);
}

static void load_caps(const char *path) {
  size_t len;
  char *buf = read_file(path, &len);
  if (!buf) return;
  caps_given = 1;
  for (char *item = strtok(buf, ",\n"); item; item = strtok(NULL, ",\n")) {
    long cap = strtol(item, NULL, 10);
    if (cap >= 0 && cap < MAX_CAP) keep_cap[cap] = 1;
  }
  free(buf);
  char *last = read_file("/proc/sys/kernel/cap_last_cap", &len);
  if (!last) die("cannot read /proc/sys/kernel/cap_last_cap", strerror(errno));
  last_cap = atoi(last);
  free(last);
}

static void drop_caps(void) {
  if (!caps_given) return;
  for (int cap = 0; cap <= last_cap && cap < MAX_CAP; cap++)
    if (!keep_cap[cap] && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0)
      die("cannot drop a capability from the bounding set", strerror(errno));
}

int main(int argc, char **argv) {
  const char *root = NULL, *user_spec = "", *workdir = NULL, *argv_file = NULL, *limits_file = NULL,
             *caps_file = NULL, *groups_file = NULL, *cgroup = NULL;
  static char *env[MAX_LIST];
  static char *cmd[MAX_LIST];
  int envc = 0, cmdc = 0, i;

  for (i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--") == 0) {
      i++;
      break;
    }
    if (i + 1 >= argc) die("missing value for", a);
    if (strcmp(a, "--root") == 0) root = argv[++i];
    else if (strcmp(a, "--user") == 0) user_spec = argv[++i];
    else if (strcmp(a, "--workdir") == 0) workdir = argv[++i];
    else if (strcmp(a, "--argv-file") == 0) argv_file = argv[++i];
    else if (strcmp(a, "--limits-file") == 0) limits_file = argv[++i];
    else if (strcmp(a, "--caps-file") == 0) caps_file = argv[++i];
    else if (strcmp(a, "--groups-file") == 0) groups_file = argv[++i];
    else if (strcmp(a, "--cgroup") == 0) cgroup = argv[++i];
    else if (strcmp(a, "--env-file") == 0) {
      static char *loaded[MAX_LIST];
      int n = load_list(argv[++i], loaded, 0);
      for (int k = 0; k < n; k++) envc = env_set(env, envc, loaded[k]);
    } else if (strcmp(a, "--env") == 0) envc = env_set(env, envc, argv[++i]);
    else die("unknown option", a);
  }
  if (cgroup) join_cgroup(cgroup);
  if (argv_file) cmdc = load_list(argv_file, cmd, 0);
  if (limits_file) load_limits(limits_file);
  if (caps_file) load_caps(caps_file);
  /* Read before the chroot (the file is the guest's); resolved after it, in the image's /etc/group. */
  size_t added_len = 0;
  char *added = groups_file ? read_file(groups_file, &added_len) : NULL;
  for (; i < argc && cmdc < MAX_LIST - 1; i++) cmd[cmdc++] = argv[i];
  if (cmdc == 0) die("no command to run", NULL);
  if (!root) die("--root is required", NULL);

  if (chroot(root) != 0) die("chroot failed", strerror(errno));
  if (chdir("/") != 0) die("chdir / failed", strerror(errno));

  /* USER[:GROUP], each a name or a number, as in a Dockerfile's USER. */
  char spec_user[512], *spec_group = NULL;
  snprintf(spec_user, sizeof spec_user, "%s", user_spec);
  char *colon = strchr(spec_user, ':');
  if (colon) {
    *colon = '\0';
    spec_group = colon + 1;
  }
  struct user u = {0, 0, "", "/", 0};
  if (*spec_user) {
    lookup_passwd(spec_user, &u);
    if (!u.found) {
      if (!is_number(spec_user)) die("unable to find user in the image's /etc/passwd", spec_user);
      u.uid = (uid_t)strtoul(spec_user, NULL, 10);
      u.gid = 0;
    }
  } else {
    lookup_passwd("0", &u);
    u.uid = 0;
    u.gid = 0;
  }
  gid_t groups[MAX_GROUPS];
  int ngroups = 0;
  if (spec_group && *spec_group) {
    long gid = lookup_group(spec_group);
    if (gid < 0) die("unable to find group in the image's /etc/group", spec_group);
    u.gid = (gid_t)gid;
  }
  groups[ngroups++] = u.gid;
  ngroups = member_groups(u.name, groups, ngroups);
  char *save_added = NULL;
  for (char *line = added ? strtok_r(added, "\n", &save_added) : NULL; line;
       line = strtok_r(NULL, "\n", &save_added)) {
    long gid = lookup_group(line);
    if (gid < 0) die("unable to find group in the image's /etc/group", line);
    if (ngroups < MAX_GROUPS) groups[ngroups++] = (gid_t)gid;
  }

  if (!env_has(env, envc, "HOME")) {
    static char home[1100];
    snprintf(home, sizeof home, "HOME=%s", u.home[0] ? u.home : "/");
    envc = env_set(env, envc, home);
  }
  env[envc] = NULL;
  cmd[cmdc] = NULL;

  /* As a container runtime sets them, before the user change drops the right to raise a limit. */
  struct rlimit open_files = {OPEN_FILES, OPEN_FILES};
  if (setrlimit(RLIMIT_NOFILE, &open_files) != 0) die("cannot set the open-file limit", strerror(errno));
  for (int k = 0; k < nlimits; k++)
    if (setrlimit(limits[k].resource, &limits[k].value) != 0) die("cannot set a limit", strerror(errno));
  umask(022);
  drop_caps();

  if (setgroups((size_t)ngroups, groups) != 0) die("setgroups failed", strerror(errno));
  if (setgid(u.gid) != 0) die("setgid failed", strerror(errno));
  if (setuid(u.uid) != 0) die("setuid failed", strerror(errno));
  if (workdir && *workdir && chdir(workdir) != 0) {
    /* Docker creates a missing WorkingDir; as root we may, as another user we report it. */
    if (errno == ENOENT && u.uid == 0) {
      char path[4096];
      snprintf(path, sizeof path, "%s", workdir);
      for (char *p = path + 1; *p; p++)
        if (*p == '/') {
          *p = '\0';
          mkdir(path, 0755);
          *p = '/';
        }
      mkdir(path, 0755);
    }
    if (chdir(workdir) != 0) die("cannot enter working directory", workdir);
  }

  /* execvp searches the PATH of the environment it is given, so install it first. */
  environ = env;
  execvp(cmd[0], cmd);
  int code = errno == ENOENT ? 127 : 126;
  fprintf(stderr, "hyper-exec: %s: %s\n", cmd[0], strerror(errno));
  return code;
}
