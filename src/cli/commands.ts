import { errorKind } from '../errors.js';
import { UsageError } from './args.js';
import { exec, kill, logs, ps, rm, run, start, stop, wait } from './container-commands.js';
import { cliEnvironment, type CliEnvironment, type Environment } from './environment.js';
import { image, images, pull, template } from './image-commands.js';
import type { Io } from './io.js';
import { balance, config, down, setup, up } from './job-commands.js';
import { exportCommand, importCommand, restore, snapshot, snapshots, volume } from './snapshot-commands.js';
import { serve } from './serve-command.js';

export const USAGE = `Usage: hyper COMMAND

Run service containers as microVMs, each with its own kernel.

Commands:
  setup [--accel auto|kvm|tcg]   install QEMU and the guest bundle, probe KVM
  up -f FILE [-f FILE]... [--profile P]... [--scale SERVICE=N]... [--wait-timeout S] [--volume-size SIZE] [--template MODE] [NETWORK OPTIONS]
                                 boot a services YAML or compose file, healthy, in dependency order;
                                 several -f merge compose files in order, as docker compose does
  config -f FILE [-f FILE]... [--profile P]... [--scale SERVICE=N]... [--format yaml|json]
                                 check the file(s) as up would and print the plan; boots nothing
  down [-f FILE]... [--time S]   stop and remove every VM (with -f, those up -f FILE made: the first -f), and the job network
  pull [--registry-mirror URL] [--insecure-registry HOST]... IMAGE
  images [--json]
  image prune [-a]
  run [-d | -a] [--rm] [--name N] [-l KEY=VALUE]... [-p SPEC]... [-e K=V]... [--memory MIB] [--cpus N] [--entrypoint X] [-u USER[:GROUP]] [-w DIR]
      [-v NAME:/PATH[:ro] | -v ./HOST:/PATH[:ro] | -v /PATH]... [--volume-size SIZE] [--tmpfs /PATH[:OPTS]]...
      [--network-alias NAME]... [--expose PORT]... [NETWORK OPTIONS] [--accel auto|kvm|tcg] [--template MODE] IMAGE [ARG...]
                                 detached (prints the name) unless -a or --rm: then its output follows and
                                 hyper exits with its command's exit code; --rm removes it when it ends
  ps [--json] [--filter label=KEY[=VALUE]]...
  logs [-f] NAME                 the service's output; -f follows it until the VM stops
  exec [-i] [-e K=V]... [-u USER[:GROUP]] NAME -- CMD [ARG...]
                                 output streams as it comes; -i feeds it this stdin
  stop [--time S] NAME...
  kill NAME...                   stop at once (exit code 137)
  wait NAME...                   wait until each has stopped; print its exit code
  start NAME...                  boot a stopped VM again (its volumes and disks kept)
  rm [-f] NAME...
  snapshot [--checkpoint] [--timeout S] SERVICE [NAME]
                                 volumes (filesystems frozen) or, with --checkpoint, the whole VM
  snapshot rm SERVICE NAME
  snapshots [--json] [SERVICE]
  restore [--time S] SERVICE NAME
  export SERVICE NAME FILE       write a snapshot, its disks and base to a tar (.tar.gz: gzipped)
  import [--name N] [-p SPEC]... [NETWORK OPTIONS] FILE
                                 make a stopped service from an export; "hyper restore" starts it
  volume ls [--json]
  volume rm NAME...
  template ls [--json]           the boot and service templates VMs start from, and which are in use
  template prune                 remove the templates no running VM maps
  serve [--socket PATH] [--group GROUP] [--tcp [127.0.0.1:]PORT] [--allow-bind DIR]... [--stop-containers] [--debug]
        [NETWORK OPTIONS] [--accel auto|kvm|tcg] [--volume-size SIZE] [--template MODE] [--registry-mirror URL] [--insecure-registry HOST]...
                                 serve the Docker Engine API over this job's microVMs (DOCKER_HOST=unix://PATH);
                                 default socket /run/hyper/docker.sock as root, else $XDG_RUNTIME_DIR/hyper/docker.sock

NETWORK OPTIONS (for the job network, which the first VM makes and the last one removes):
  --network auto|bridge|user     bridge (root or sudo: a Linux bridge, TAPs, nftables) or user
                                 (rootless QEMU user networking); auto picks bridge when it can
  --egress allow|deny            whether guests reach anything beyond the job's own services
  --egress-allow HOST|CIDR,...   with --egress deny, what guests may still reach (bridge only)
  --subnet CIDR                  the bridge's subnet (default: a free /24 of 10.213.0.0/16)
Services reach each other by service name (and --network-alias) on their container ports.
A guest never reaches this host's own services, nor 169.254.169.254 (bridge mode).

IMAGE is a registry reference (redis:7) or oci:DIR[:TAG] for an OCI image layout.
State lives in HYPER_STATE_DIR (default ~/.local/state/hyper); images and root
filesystems are cached in HYPER_CACHE_DIR (default ~/.cache/hyper).
New volumes get --volume-size (512M, 2G), else HYPER_VOLUME_SIZE, else 10G; a volume keeps its size.
Registry credentials: HYPER_REGISTRY_USERNAME and HYPER_REGISTRY_PASSWORD.
--template MODE (else HYPER_TEMPLATES): auto starts each VM as a copy-on-write clone of a boot
template (a guest booted once per machine shape, kept in HYPER_CACHE_DIR, made when missing),
and with up, each service from its service template (its whole state when it was first healthy
in an earlier up with the same image, command, env, mounts and machine; kept when missing);
off boots every VM in full; refresh makes new templates first.
Replicas: deploy.replicas or scale in the file, or --scale SERVICE=N, boot SERVICE.1 to SERVICE.N;
the service's name resolves to all of them, and its published ports spread connections over
the healthy ones (a balancer process per service, stopped by down).
Compose profiles: --profile P (repeatable, or P,Q), else COMPOSE_PROFILES; "*" enables all.
docs/compose.md says what each key of the Compose Specification does here.`;

type Command = (argv: string[], io: Io, env: CliEnvironment) => Promise<number>;

const COMMANDS: Record<string, Command> = {
  setup,
  up,
  config,
  down,
  pull,
  images,
  image,
  run,
  ps,
  logs,
  exec,
  stop,
  kill,
  wait,
  rm,
  start,
  snapshot,
  snapshots,
  restore,
  export: exportCommand,
  import: importCommand,
  volume,
  template,
  serve,
  balance,
};

/** Like docker run/exec: 125 is the tool's own failure, so a command's exit codes pass through; 2 is bad usage. */
function exitCodeFor(error: unknown): number {
  return error instanceof UsageError ? 2 : 125;
}

/** Runs one `hyper` command line with `vars` as its environment; returns the process exit code. */
export async function runCli(argv: string[], io: Io, vars: Environment = process.env): Promise<number> {
  const [command, ...rest] = argv;
  if (!command || command === '--help' || command === '-h' || command === 'help') {
    io.out(`${USAGE}\n`);
    return command ? 0 : 2;
  }
  const handler = COMMANDS[command];
  if (!handler) {
    io.err(`hyper: unknown command "${command}"\n\n${USAGE}\n`);
    return 2;
  }
  try {
    const warn = (line: string): void => io.err(`warning: ${line}\n`);
    return await handler(rest, io, cliEnvironment(vars, warn));
  } catch (error: unknown) {
    const kind = errorKind(error);
    io.err(`hyper ${command}: ${error instanceof Error ? error.message : String(error)}\n`);
    if (kind === 'Internal' && vars.HYPER_DEBUG && error instanceof Error) io.err(`${error.stack}\n`);
    return exitCodeFor(error);
  }
}
