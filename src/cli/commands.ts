import { readFileSync } from 'node:fs';
import path from 'node:path';
import { ImageCatalog } from '../images/catalog.js';
import { pruneImages } from '../images/prune.js';
import { resolveImage } from '../images/resolve.js';
import { ensureRootfs } from '../images/rootfs.js';
import { parseAccelChoice } from '../install/accel.js';
import { cacheDir, stateDir, vmDir } from '../engine/dirs.js';
import { listVmNames } from '../engine/record.js';
import { ServiceStartError, upServices } from '../engine/up.js';
import { parseComposeProject } from '../spec/compose.js';
import { validatePlan } from '../spec/plan.js';
import { parseServicesInput } from '../spec/services-input.js';
import { SpecError } from '../spec/container.js';
import { parseVolumeSize } from '../spec/units.js';
import { defaultVolumeSize } from '../storage/volumes.js';
import { prepareHost, type HostContext, type Reporter } from '../engine/host.js';
import {
  execInService,
  listServices,
  listServicesForTeardown,
  removeService,
  runService,
  type RegistrySettings,
  serviceLogs,
  stopService,
  stateText,
} from '../engine/service.js';
import { preflightNetwork, removeNetwork } from '../network/job.js';
import { formatPort, parsePortSpec } from '../network/ports.js';
import { QemuHypervisor } from '../vm/qemu/machine.js';
import { intOption, listOption, parseArgs, stringOption, UsageError, type ParsedArgs } from './args.js';
import {
  exportCommand,
  importCommand,
  restore,
  snapshot,
  snapshots,
  start,
  volume,
} from './snapshot-commands.js';
import { DamagedStateError, exists } from '../files.js';
import { kvmProbeOptions } from './host-options.js';
import { NETWORK_OPTIONS, networkOption } from './network-options.js';
import { formatTable } from './table.js';
import type { Io } from './io.js';

export const USAGE = `Usage: hyper COMMAND

Run service containers as microVMs, each with its own kernel.

Commands:
  setup [--accel auto|kvm|tcg]   install QEMU and the guest bundle, probe KVM
  up -f FILE [--wait-timeout S] [--volume-size SIZE] [NETWORK OPTIONS]
                                 boot a services YAML or compose file, healthy, in dependency order
  down [-f FILE] [--time S]      stop and remove every VM (with -f, those up -f FILE made), and the job network
  pull [--registry-mirror URL] [--insecure-registry HOST]... IMAGE
  images [--json]
  image prune [-a]
  run [--name N] [-p SPEC]... [-e K=V]... [--memory MIB] [--cpus N] [--entrypoint X] [-u USER[:GROUP]] [-w DIR]
      [-v NAME:/PATH[:ro] | -v ./HOST:/PATH[:ro] | -v /PATH]... [--volume-size SIZE] [--tmpfs /PATH[:OPTS]]...
      [--network-alias NAME]... [--expose PORT]... [NETWORK OPTIONS] [--accel auto|kvm|tcg] IMAGE [ARG...]
  ps [--json]
  logs NAME
  exec [-e K=V]... [-u USER[:GROUP]] NAME -- CMD [ARG...]
  stop [--time S] NAME...
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
Registry credentials: HYPER_REGISTRY_USERNAME and HYPER_REGISTRY_PASSWORD.`;

const DEFAULT_MEMORY_MIB = 512;
const DEFAULT_BOOT_TIMEOUT_MS = 120_000;

function reporter(io: Io): Reporter {
  return { info: (line) => io.err(`${line}\n`), warn: (line) => io.err(`warning: ${line}\n`) };
}

/** Commands that only read state need no tools, bundle or probe. */
const stateOnly = (): Pick<HostContext, 'hypervisor'> => ({ hypervisor: new QemuHypervisor() });

const REGISTRY_OPTIONS = [
  { name: 'registry-mirror', value: true },
  { name: 'insecure-registry', value: true, multiple: true },
];

/** The size of new volumes: --volume-size, else HYPER_VOLUME_SIZE, else 10 GiB; checked before anything starts. */
function volumeSizeOption(parsed: ParsedArgs): number {
  const text = stringOption(parsed, 'volume-size');
  if (text === undefined) return defaultVolumeSize();
  try {
    return parseVolumeSize(text);
  } catch (error: unknown) {
    if (error instanceof SpecError) throw new UsageError(`--volume-size: ${error.message}`);
    throw error;
  }
}

/** Registry settings from flags, else HYPER_REGISTRY_* environment variables. */
function registrySettings(parsed: ParsedArgs): RegistrySettings {
  const username = process.env.HYPER_REGISTRY_USERNAME;
  const insecure = listOption(parsed, 'insecure-registry');
  const envInsecure = (process.env.HYPER_INSECURE_REGISTRIES ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  return {
    registryMirror:
      stringOption(parsed, 'registry-mirror') ?? (process.env.HYPER_REGISTRY_MIRROR || undefined),
    insecureRegistries: [...insecure, ...envInsecure],
    credentials: username ? { username, password: process.env.HYPER_REGISTRY_PASSWORD ?? '' } : undefined,
  };
}

async function pull(argv: string[], io: Io): Promise<number> {
  const parsed = parseArgs(argv, REGISTRY_OPTIONS);
  const [name] = parsed.positionals;
  if (!name) throw new UsageError('hyper pull needs an IMAGE');
  const log = (line: string): void => io.err(`${line}\n`);
  const image = await resolveImage(name, { ...registrySettings(parsed), cacheDir: cacheDir(), log });
  const base = await ensureRootfs(image, cacheDir());
  log(`${base.cached ? 'Root filesystem up to date' : 'Built root filesystem'}: ${base.path}`);
  io.out(`${name}@${image.manifestDigest}\n`);
  return 0;
}

function formatBytes(bytes: number): string {
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} kB`;
  return bytes < 1024 ** 3 ? `${(bytes / 1024 ** 2).toFixed(1)} MB` : `${(bytes / 1024 ** 3).toFixed(2)} GB`;
}

async function images(argv: string[], io: Io): Promise<number> {
  const parsed = parseArgs(argv, [{ name: 'json' }]);
  const catalog = new ImageCatalog(cacheDir());
  const entries = await catalog.list();
  const rows = [];
  for (const entry of entries) rows.push({ ...entry, rootfs: await catalog.hasRootfs(entry) });
  if (parsed.options.json) {
    io.out(`${JSON.stringify(rows, null, 2)}\n`);
    return 0;
  }
  const table = rows.map((r) => [
    r.name,
    r.manifestDigest.slice(0, 19),
    formatBytes(r.size),
    r.rootfs ? 'yes' : 'no',
    r.pulledAt,
  ]);
  io.out(`${formatTable(['IMAGE', 'DIGEST', 'SIZE', 'ROOTFS', 'PULLED'], table)}\n`);
  return 0;
}

async function image(argv: string[], io: Io): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub !== 'prune') throw new UsageError('hyper image supports: prune [-a]');
  const parsed = parseArgs(rest, [{ name: 'all', short: 'a' }]);
  const inUse = new Set((await listServices(stateOnly())).map((s) => s.record.image));
  const result = await pruneImages(cacheDir(), { all: parsed.options.all === true, inUse });
  for (const name of result.removedImages) io.out(`untagged: ${name}\n`);
  io.out(`removed ${result.removedFiles} cached files, reclaimed ${formatBytes(result.reclaimedBytes)}\n`);
  return 0;
}

/** A compose file has a top-level `services:` map; a services input has the services at the top. Pure. */
export function isComposeFile(text: string): boolean {
  return /^services\s*:/m.test(text);
}

async function up(argv: string[], io: Io): Promise<number> {
  const parsed = parseArgs(argv, [
    ...REGISTRY_OPTIONS,
    ...NETWORK_OPTIONS,
    { name: 'file', short: 'f', value: true },
    { name: 'wait-timeout', value: true },
    { name: 'volume-size', value: true },
    { name: 'accel', value: true },
  ]);
  const file = stringOption(parsed, 'file');
  if (!file) throw new UsageError('hyper up needs -f FILE (a services YAML or a compose file)');
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error: unknown) {
    throw new UsageError(`cannot read ${file}: ${(error as Error).message}`);
  }
  const project = isComposeFile(text)
    ? parseComposeProject(
        text,
        path.resolve(file),
        (p) => readFileSync(p, 'utf8'),
        process.env as Record<string, string>,
      )
    : { services: parseServicesInput(text, file), subnet: undefined };
  const specs = project.services;
  const plan = validatePlan(specs);
  const volumeSize = volumeSizeOption(parsed);
  const network = networkOption(parsed, project.subnet);
  await preflightNetwork(stateDir(), network);
  const accel = parseAccelChoice(stringOption(parsed, 'accel') ?? process.env.HYPER_ACCEL, '--accel');
  const host = await prepareHost(accel, reporter(io), {}, kvmProbeOptions());
  const options = {
    waitTimeoutMs: intOption(parsed, 'wait-timeout', 300, 1) * 1000,
    registry: registrySettings(parsed),
    labels: { compose: path.resolve(file) },
    volumeSize,
    network,
  };
  let statuses;
  try {
    statuses = await upServices(plan, host, options, reporter(io));
  } catch (error: unknown) {
    if (error instanceof ServiceStartError) {
      io.err(`--- log of ${error.service} ---\n${error.log || '(the service wrote nothing)\n'}---\n`);
    }
    throw error;
  }
  const rows = statuses.map((s) => [
    s.name,
    s.image,
    s.ports.map(formatPort).join(', '),
    `${s.bootMs} ms`,
    `${s.healthyMs} ms`,
  ]);
  io.out(`${formatTable(['SERVICE', 'IMAGE', 'PORTS', 'BOOT', 'HEALTHY'], rows)}\n`);
  return 0;
}

/**
 * Stops and removes the VMs; with -f FILE, as `docker compose -f FILE down`,
 * only those `hyper up -f FILE` made. The job network goes with the last VM.
 */
async function down(argv: string[], io: Io): Promise<number> {
  const parsed = parseArgs(argv, [
    { name: 'time', short: 't', value: true },
    { name: 'file', short: 'f', value: true },
  ]);
  const graceMs = intOption(parsed, 'time', 10, 0) * 1000;
  const file = stringOption(parsed, 'file');
  const compose = file === undefined ? undefined : path.resolve(file);
  if (compose !== undefined && !(await exists(compose)))
    throw new UsageError(`-f: ${compose} does not exist; give the file "hyper up -f" was given`);
  const host = stateOnly();
  const { services, damaged } = await listServicesForTeardown(host);
  // The network's record may be damaged too: every VM still goes, and that is reported at the end.
  let networkDamage: unknown;
  const leaving = async (name: string, remove: () => Promise<void>): Promise<void> => {
    try {
      await remove();
    } catch (error: unknown) {
      if (!(error instanceof DamagedStateError) || (await exists(vmDir(name)))) throw error;
      networkDamage ??= error;
    }
  };
  for (const { name, error } of damaged) {
    // With -f, a VM whose record cannot be read cannot be told to be the file's: it is only reported.
    io.err(`warning: ${error.message}${compose === undefined ? '; removing it' : ''}\n`);
    if (compose !== undefined) continue;
    await leaving(name, () => removeService(name, true, host));
    io.err(`${name}: killed and removed\n`);
  }
  for (const { record } of services) {
    if (compose !== undefined && record.labels.compose !== compose) continue;
    let code: number | undefined;
    await leaving(record.name, async () => {
      code = await stopService(record.name, graceMs, host);
      await removeService(record.name, true, host);
    });
    io.err(`${record.name}: stopped (exit code ${code ?? 'unknown'}) and removed\n`);
  }
  if (networkDamage) throw networkDamage;
  // Whatever is left of the job network (a service that never booted) goes too, once no VM is left.
  if ((await listVmNames()).length === 0) await removeNetwork(stateDir());
  return 0;
}

async function run(argv: string[], io: Io): Promise<number> {
  const parsed = parseArgs(
    argv,
    [
      ...REGISTRY_OPTIONS,
      ...NETWORK_OPTIONS,
      { name: 'network-alias', value: true, multiple: true },
      { name: 'expose', value: true, multiple: true },
      { name: 'name', value: true },
      { name: 'publish', short: 'p', value: true, multiple: true },
      { name: 'env', short: 'e', value: true, multiple: true },
      { name: 'memory', short: 'm', value: true },
      { name: 'cpus', value: true },
      { name: 'entrypoint', value: true },
      { name: 'user', short: 'u', value: true },
      { name: 'workdir', short: 'w', value: true },
      { name: 'volume', short: 'v', value: true, multiple: true },
      { name: 'volume-size', value: true },
      { name: 'tmpfs', value: true, multiple: true },
      { name: 'accel', value: true },
    ],
    1,
  );
  const [image, ...command] = parsed.positionals;
  if (!image) throw new UsageError('hyper run needs an IMAGE');
  const env = listOption(parsed, 'env').map((entry) =>
    entry.includes('=') ? entry : `${entry}=${process.env[entry] ?? ''}`,
  );
  const ports = listOption(parsed, 'publish').map(parsePortSpec);
  const entrypoint = stringOption(parsed, 'entrypoint');
  const network = networkOption(parsed);
  await preflightNetwork(stateDir(), network);
  const request = {
    name: stringOption(parsed, 'name'),
    image,
    ports,
    env,
    memoryMiB: intOption(parsed, 'memory', DEFAULT_MEMORY_MIB, 64),
    cpus: intOption(parsed, 'cpus', 1, 1),
    entrypoint: entrypoint === undefined ? undefined : [entrypoint],
    user: stringOption(parsed, 'user'),
    workdir: stringOption(parsed, 'workdir'),
    volumes: listOption(parsed, 'volume'),
    volumeSize: volumeSizeOption(parsed),
    tmpfs: listOption(parsed, 'tmpfs'),
    command,
    bootTimeoutMs: DEFAULT_BOOT_TIMEOUT_MS,
    registry: registrySettings(parsed),
    network,
    aliases: listOption(parsed, 'network-alias'),
    expose: listOption(parsed, 'expose').map(exposedPort),
  };
  const accel = parseAccelChoice(stringOption(parsed, 'accel') ?? process.env.HYPER_ACCEL, '--accel');
  const host = await prepareHost(accel, reporter(io), {}, kvmProbeOptions());
  const record = await runService(request, host, (line) => io.err(`${line}\n`));
  for (const port of record.ports) io.err(`${record.name}: published ${formatPort(port)}\n`);
  io.out(`${record.name}\n`);
  return 0;
}

/** `--expose 5432` or `5432/tcp`: a container port the job's other services may reach. */
function exposedPort(text: string): number {
  const match = /^(\d{1,5})(\/tcp)?$/.exec(text.trim());
  const port = Number(match?.[1]);
  if (!match || port < 1 || port > 65535)
    throw new UsageError(`--expose ${text}: give a TCP port number from 1 to 65535 (PORT or PORT/tcp)`);
  return port;
}

/** Installs the host tools, gets the guest bundle and probes the accelerator, ahead of the first run. */
async function setup(argv: string[], io: Io): Promise<number> {
  const parsed = parseArgs(argv, [{ name: 'accel', value: true }]);
  const accel = parseAccelChoice(stringOption(parsed, 'accel') ?? process.env.HYPER_ACCEL, '--accel');
  const host = await prepareHost(accel, reporter(io), {}, kvmProbeOptions());
  io.out(
    `accel ${host.accel}\nguest bundle ${host.bundle.version}\nkernel ${host.bundle.kernel}\ninitrd ${host.bundle.initrd}\n`,
  );
  return 0;
}

async function ps(argv: string[], io: Io): Promise<number> {
  const parsed = parseArgs(argv, [{ name: 'json' }]);
  const services = await listServices(stateOnly());
  if (parsed.options.json) {
    const rows = services.map(({ record, state, pid }) => ({
      name: record.name,
      image: record.image,
      imageDigest: record.imageDigest,
      state: state.running ? 'running' : 'exited',
      exitCode: state.running ? null : (state.exitCode ?? null),
      crash: (!state.running && state.crash) || null,
      consoleTail: (!state.running && state.consoleTail) || null,
      ports: record.ports,
      pid: pid ?? null,
      accel: record.machine.accel,
      memoryMiB: record.machine.memoryMiB,
      cpus: record.machine.cpus,
      bootMs: record.bootMs ?? null,
      createdAt: record.createdAt,
    }));
    io.out(`${JSON.stringify(rows, null, 2)}\n`);
    return 0;
  }
  const rows = services.map(({ record, state, pid }) => [
    record.name,
    record.image,
    stateText(state),
    record.ports.map(formatPort).join(', '),
    pid === undefined ? '-' : String(pid),
    record.machine.accel,
    record.bootMs === undefined ? '-' : `${(record.bootMs / 1000).toFixed(2)}s`,
  ]);
  io.out(`${formatTable(['NAME', 'IMAGE', 'STATE', 'PORTS', 'PID', 'ACCEL', 'BOOT'], rows)}\n`);
  for (const { record, state } of services) {
    if (state.running || !state.crash) continue;
    const tail = (state.consoleTail ?? '').replace(/^/gm, '  ');
    io.out(`\n${record.name}: ${state.crash}; the end of its console:\n${tail}\n`);
  }
  return 0;
}

async function logs(argv: string[], io: Io): Promise<number> {
  const [name] = parseArgs(argv, []).positionals;
  if (!name) throw new UsageError('hyper logs needs a NAME');
  io.out(await serviceLogs(name));
  return 0;
}

async function exec(argv: string[], io: Io): Promise<number> {
  const parsed = parseArgs(
    argv,
    [
      { name: 'env', short: 'e', value: true, multiple: true },
      { name: 'user', short: 'u', value: true },
    ],
    1,
  );
  const [name, ...rest] = parsed.positionals;
  if (!name) throw new UsageError('hyper exec needs a NAME and a command');
  const command = rest[0] === '--' ? rest.slice(1) : rest;
  const result = await execInService(name, command, stateOnly(), {
    env: listOption(parsed, 'env'),
    user: stringOption(parsed, 'user'),
  });
  io.out(result.stdout.toString());
  io.err(result.stderr.toString());
  return result.exitCode;
}

async function stop(argv: string[], io: Io): Promise<number> {
  const parsed = parseArgs(argv, [{ name: 'time', short: 't', value: true }]);
  if (parsed.positionals.length === 0) throw new UsageError('hyper stop needs a NAME');
  const graceMs = intOption(parsed, 'time', 10, 0) * 1000;
  for (const name of parsed.positionals) {
    const code = await stopService(name, graceMs, stateOnly());
    io.err(`${name}: exited with code ${code ?? 'unknown'}\n`);
    io.out(`${name}\n`);
  }
  return 0;
}

async function rm(argv: string[], io: Io): Promise<number> {
  const parsed = parseArgs(argv, [{ name: 'force', short: 'f' }]);
  if (parsed.positionals.length === 0) throw new UsageError('hyper rm needs a NAME');
  for (const name of parsed.positionals) {
    await removeService(name, parsed.options.force === true, stateOnly());
    io.out(`${name}\n`);
  }
  return 0;
}

const COMMANDS: Record<string, (argv: string[], io: Io) => Promise<number>> = {
  setup,
  up,
  down,
  pull,
  images,
  image,
  run,
  ps,
  logs,
  exec,
  stop,
  rm,
  start,
  snapshot,
  snapshots,
  restore,
  export: exportCommand,
  import: importCommand,
  volume,
};

/** Runs one `hyper` command line; returns the process exit code. */
export async function runCli(argv: string[], io: Io): Promise<number> {
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
    return await handler(rest, io);
  } catch (error: unknown) {
    io.err(`hyper ${command}: ${error instanceof Error ? error.message : String(error)}\n`);
    // Like docker run/exec: 125 is the tool's own failure, so a command's exit codes pass through.
    return error instanceof UsageError ? 2 : 125;
  }
}
