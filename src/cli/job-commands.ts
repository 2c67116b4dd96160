import { readFileSync } from 'node:fs';
import path from 'node:path';
import { exists } from '../files.js';
import { ServiceStartError } from '../engine/up.js';
import { formatPort } from '../network/ports.js';
import { scaleServices, validatePlan } from '../spec/plan.js';
import { isComposeFile, loadProject, type Project } from '../spec/project.js';
import { splitList } from '../network/settings.js';
import { stringify } from 'yaml';
import { SpecError } from '../spec/container.js';
import { parseVolumeSize } from '../spec/units.js';
import { defaultVolumeSize } from '../storage/volumes.js';
import { intOption, listOption, parseArgs, stringOption, UsageError, type ParsedArgs } from './args.js';
import {
  accelOption,
  templateOption,
  NETWORK_OPTIONS,
  networkOption,
  openJob,
  REGISTRY_OPTIONS,
  registryOption,
  type CliEnvironment,
} from './environment.js';
import { reporter, type Io } from './io.js';
import { formatTable } from './table.js';
import type { JobSettings } from '../engine/settings.js';
import { describeOrigin } from '../engine/record.js';

/** --volume-size, else HYPER_VOLUME_SIZE, checked before anything starts; undefined leaves the job's. */
export function volumeSizeOption(parsed: ParsedArgs, env: CliEnvironment): number | undefined {
  const text = stringOption(parsed, 'volume-size');
  if (text === undefined)
    return env.vars.HYPER_VOLUME_SIZE ? defaultVolumeSize(env.vars.HYPER_VOLUME_SIZE) : undefined;
  try {
    return parseVolumeSize(text);
  } catch (error: unknown) {
    if (error instanceof SpecError) throw new UsageError(`--volume-size: ${error.message}`);
    throw error;
  }
}

/**
 * The job settings every command that boots VMs takes (run, up, serve): the
 * flags, else the HYPER_* variables; undefined ones leave the job's. Each is
 * checked before anything starts.
 */
export function jobOptions(parsed: ParsedArgs, env: CliEnvironment, subnet?: string): Partial<JobSettings> {
  const volumeSize = volumeSizeOption(parsed, env);
  return {
    network: networkOption(parsed, env, subnet),
    accel: accelOption(parsed, env),
    volumeSize,
    templates: templateOption(parsed, env),
    registry: registryOption(parsed, env),
  };
}

/** Installs the host tools, gets the guest bundle and probes the accelerator, ahead of the first run. */
export async function setup(argv: string[], io: Io, env: CliEnvironment): Promise<number> {
  const parsed = parseArgs(argv, [{ name: 'accel', value: true }]);
  const job = await openJob(env, { accel: accelOption(parsed, env) });
  const host = await job.prepare(reporter(io));
  io.out(
    `accel ${host.accel}\nguest bundle ${host.bundle.version}\nkernel ${host.bundle.kernel}\ninitrd ${host.bundle.initrd}\n`,
  );
  if (host.vmIds)
    io.out(
      `vm ids ${host.vmIds.start}-${host.vmIds.start + host.vmIds.count - 1} (user hyper-vm, one uid and gid per VM)\n`,
    );
  return 0;
}

/**
 * The project `-f FILE` names, or several compose files merged in order (`-f
 * a.yml -f b.yml`, as docker compose takes them), with the profiles --profile
 * (else COMPOSE_PROFILES) enables; its warnings go to stderr. `file` is the
 * first file: the one that names the project for `hyper down -f FILE`.
 */
function readProject(
  parsed: ParsedArgs,
  io: Io,
  env: CliEnvironment,
  command: string,
): { file: string; project: Project } {
  const [file, ...others] = listOption(parsed, 'file');
  if (!file) throw new UsageError(`hyper ${command} needs -f FILE (a services YAML or a compose file)`);
  const inputs = [file, ...others].map((name) => {
    let text: string;
    try {
      text = readFileSync(name, 'utf8');
    } catch (error: unknown) {
      throw new UsageError(`cannot read ${name}: ${(error as Error).message}`);
    }
    if (others.length > 0 && !isComposeFile(text))
      throw new UsageError(
        `-f ${name}: a services YAML cannot be merged with other files; give it alone, or give only compose files`,
      );
    return { text, file: path.resolve(name) };
  });
  const profiles = listOption(parsed, 'profile');
  const project = loadProject(inputs, (p) => readFileSync(p), env.vars, {
    source: file,
    ...(profiles.length > 0 ? { profiles: profiles.flatMap((profile) => splitList(profile)) } : {}),
  });
  for (const warning of project.warnings) io.err(`warning: ${warning}\n`);
  const scales = listOption(parsed, 'scale');
  return {
    file,
    project: scales.length > 0 ? { ...project, services: scaleServices(project.services, scales) } : project,
  };
}

const PROJECT_OPTIONS = [
  { name: 'file', short: 'f', value: true, multiple: true },
  { name: 'profile', value: true, multiple: true },
  { name: 'scale', value: true, multiple: true },
];

/**
 * Validates a services YAML or compose file as `up` would and prints the
 * plan, as `docker compose config` does: nothing boots. Secret and config
 * contents are shown by size only.
 */
export async function config(argv: string[], io: Io, env: CliEnvironment): Promise<number> {
  const parsed = parseArgs(argv, [...PROJECT_OPTIONS, { name: 'format', value: true }]);
  const format = stringOption(parsed, 'format') ?? 'yaml';
  if (format !== 'yaml' && format !== 'json')
    throw new UsageError(`--format: "${format}" is not yaml or json`);
  const { project } = readProject(parsed, io, env, 'config');
  const waves = validatePlan(project.services);
  const shown = {
    services: Object.fromEntries(
      project.services.map(({ name, files, ...service }) => [
        name,
        {
          ...service,
          ...(files
            ? {
                files: files.map(({ content, ...file }) => ({
                  ...file,
                  mode: `0${file.mode.toString(8)}`,
                  bytes: content.length,
                })),
              }
            : {}),
        },
      ]),
    ),
    ...(project.subnet ? { subnet: project.subnet } : {}),
    order: waves.map((wave) => wave.map((service) => service.name)),
  };
  io.out(format === 'json' ? `${JSON.stringify(shown, null, 2)}\n` : stringify(shown));
  return 0;
}

export async function up(argv: string[], io: Io, env: CliEnvironment): Promise<number> {
  const parsed = parseArgs(argv, [
    ...REGISTRY_OPTIONS,
    ...NETWORK_OPTIONS,
    ...PROJECT_OPTIONS,
    { name: 'wait-timeout', value: true },
    { name: 'volume-size', value: true },
    { name: 'accel', value: true },
    { name: 'template', value: true },
  ]);
  const { file, project } = readProject(parsed, io, env, 'up');
  const plan = validatePlan(project.services);
  const settings = jobOptions(parsed, env, project.subnet);
  const waitTimeoutMs = intOption(parsed, 'wait-timeout', 300, 1) * 1000;
  const job = await openJob(env, settings);
  await job.begin();
  await job.prepare(reporter(io));
  let statuses;
  try {
    statuses = await job.up(
      plan,
      { waitTimeoutMs, baseDir: process.cwd(), labels: { compose: path.resolve(file) } },
      reporter(io),
    );
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
    s.restoredFrom ? `checkpoint ${s.restoredFrom}` : describeOrigin(s.origin),
  ]);
  io.out(`${formatTable(['SERVICE', 'IMAGE', 'PORTS', 'BOOT', 'HEALTHY', 'FROM'], rows)}\n`);
  return 0;
}

/**
 * The balancer of a service with replicas, in the foreground: what `hyper
 * up` starts detached for each such service. It ends on SIGTERM or SIGINT,
 * or once no replica of the service is left.
 */
export async function balance(argv: string[], io: Io, env: CliEnvironment): Promise<number> {
  const parsed = parseArgs(argv, [{ name: 'state-dir', value: true }]);
  const [service] = parsed.positionals;
  if (!service || parsed.positionals.length > 1) throw new UsageError('hyper balance needs one SERVICE');
  const stateDir = stringOption(parsed, 'state-dir');
  const job = await openJob(
    stateDir ? { ...env, host: { ...env.host, stateDir: path.resolve(stateDir) } } : env,
  );
  const stop = new AbortController();
  for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => stop.abort());
  await job.balance(service, stop.signal, (line) => io.out(`${new Date().toISOString()} ${line}\n`));
  return 0;
}

/**
 * Stops and removes the VMs; with -f FILE, as `docker compose -f FILE down`,
 * only those `hyper up -f FILE` made (of several -f, the first names them, as
 * for up). The job network goes with the last VM.
 */
export async function down(argv: string[], io: Io, env: CliEnvironment): Promise<number> {
  const parsed = parseArgs(argv, [
    { name: 'time', short: 't', value: true },
    { name: 'file', short: 'f', value: true, multiple: true },
  ]);
  const graceMs =
    stringOption(parsed, 'time') === undefined ? undefined : intOption(parsed, 'time', 10, 0) * 1000;
  const [file] = listOption(parsed, 'file');
  const compose = file === undefined ? undefined : path.resolve(file);
  if (compose !== undefined && !(await exists(compose)))
    throw new UsageError(`-f: ${compose} does not exist; give the file "hyper up -f" was given`);
  const job = await openJob(env);
  await job.down(
    {
      graceMs,
      select: compose === undefined ? undefined : (record) => record.labels.compose === compose,
      keepGoing: false,
    },
    {
      damaged: (_name, error, removing) =>
        io.err(`warning: ${error.message}${removing ? '; removing it' : ''}\n`),
      removedDamaged: (name) => io.err(`${name}: killed and removed\n`),
      stopped: (name, code) => io.err(`${name}: stopped (exit code ${code ?? 'unknown'}) and removed\n`),
      failed: (what, error) => io.err(`warning: ${what}: ${(error as Error).message}\n`),
    },
  );
  return 0;
}
