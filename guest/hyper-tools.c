// One static binary for the guest's own programs, run as the one it is
// called as (argv[0], as busybox does): statically linked glibc costs about
// 700 KB per binary, and the initramfs stays in every guest's memory.
#include <stdio.h>
#include <string.h>

int hyper_exec_main(int argc, char **argv);
int hyper_log_main(int argc, char **argv);
int hyper_relay_main(int argc, char **argv);
int hyper_reseed_main(int argc, char **argv);
int hyper_resume_main(int argc, char **argv);

static const struct {
  const char *name;
  int (*main)(int, char **);
} tools[] = {
    {"hyper-exec", hyper_exec_main},
    {"hyper-log", hyper_log_main},
    {"hyper-relay", hyper_relay_main},
    {"hyper-reseed", hyper_reseed_main},
    {"hyper-resume", hyper_resume_main},
};

int main(int argc, char **argv) {
  const char *slash = strrchr(argv[0], '/');
  const char *name = slash ? slash + 1 : argv[0];
  for (size_t i = 0; i < sizeof tools / sizeof tools[0]; i++)
    if (strcmp(name, tools[i].name) == 0) return tools[i].main(argc, argv);
  fprintf(stderr, "hyper-tools: run as hyper-exec, hyper-log, hyper-relay, hyper-reseed or hyper-resume, not %s\n", name);
  return 127;
}
