import { stateText } from '../engine/container.js';
import type { Job } from '../engine/job.js';
import { formatPort } from '../network/ports.js';
import { validateContainer } from '../spec/plan.js';
import { containerFromRunFlags } from '../spec/run-flags.js';
import { SpecError } from '../spec/container.js';
import { intOption, listOption, parseArgs, stringOption, UsageError } from './args.js';
import { NETWORK_OPTIONS, openJob, REGISTRY_OPTIONS, type CliEnvironment } from './environment.js';
import { reporter, type Io } from './io.js';
import { jobOptions } from './job-commands.js';
import { formatTable } from './table.js';
import { describeOrigin } from '../engine/record.js';
import { readUsage } from '../engine/usage.js';
import type { LogRecord } from '../vm/log-records.js';

/** How long an interrupted attached run gives its command to stop, as `docker stop`'s default. */
const STOP_GRACE_MS = 10_000;

const RUN_OPTIONS = [
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
  { name: 'template', value: true },
  { name: 'label', short: 'l', value: true, multiple: true },
  { name: 'rm' },
  { name: 'detach', short: 'd' },
  { name: 'attach', short: 'a' },
];

/**
 * Boots a container VM. Detached by default (it prints the name); attached
 * with --attach or --rm, as `docker run` is: its output follows until its
 * command ends, and `hyper run` exits with the command's exit code.
 */
export async function run(argv: string[], io: Io, env: CliEnvironment): Promise<number> {
  const parsed = parseArgs(argv, RUN_OPTIONS, 1);
  const [image, ...command] = parsed.positionals;
  if (!image) throw new UsageError('hyper run needs an IMAGE');
  const autoRemove = parsed.options.rm === true;
  if (parsed.options.detach === true && (autoRemove || parsed.options.attach === true))
    throw new UsageError(
      '--detach runs the VM in the background; it cannot be combined with --rm or --attach',
    );
  const spec = usage(() =>
    containerFromRunFlags(
      {
        image,
        command,
        name: stringOption(parsed, 'name'),
        publish: listOption(parsed, 'publish'),
        env: listOption(parsed, 'env'),
        memoryMiB: parsed.options.memory === undefined ? undefined : intOption(parsed, 'memory', 0, 64),
        cpus: parsed.options.cpus === undefined ? undefined : intOption(parsed, 'cpus', 0, 1),
        entrypoint: stringOption(parsed, 'entrypoint'),
        user: stringOption(parsed, 'user'),
        workdir: stringOption(parsed, 'workdir'),
        volumes: listOption(parsed, 'volume'),
        tmpfs: listOption(parsed, 'tmpfs'),
        aliases: listOption(parsed, 'network-alias'),
        expose: listOption(parsed, 'expose'),
        labels: Object.fromEntries(
          listOption(parsed, 'label').map((entry) => {
            const at = entry.indexOf('=');
            return at === -1 ? [entry, ''] : [entry.slice(0, at), entry.slice(at + 1)];
          }),
        ),
        baseDir: process.cwd(),
      },
      env.vars,
    ),
  );
  validateContainer(spec);
  const job = await openJob(env, jobOptions(parsed, env));
  await job.begin();
  await job.prepare(reporter(io));
  const record = await job.run(spec, { log: (line) => io.err(`${line}\n`) });
  for (const port of record.ports) io.err(`${record.name}: published ${formatPort(port)}\n`);
  if (!autoRemove && parsed.options.attach !== true) {
    io.out(`${record.name}\n`);
    return 0;
  }
  // As docker run's signal proxy: an interrupt stops the container (its stop signal), and the run ends as it does.
  const stopOnSignal = (): void => void job.stop(record.name, STOP_GRACE_MS).catch(() => undefined);
  const signals = ['SIGINT', 'SIGTERM'] as const;
  for (const signal of signals) process.on(signal, stopOnSignal);
  let ended;
  try {
    await followLog(job, record.name, io);
    ended = await job.wait(record.name);
  } finally {
    for (const signal of signals) process.off(signal, stopOnSignal);
  }
  if (autoRemove) await job.remove(record.name, true);
  if (ended.exitCode !== undefined) return ended.exitCode;
  io.err(`hyper run: ${record.name} ended without an exit code (${ended.crash ?? 'its guest stopped'})\n`);
  return 125;
}

/** A flag's value the translation refuses is a usage error, as docker run's are (exit 2). */
function usage<T>(translate: () => T): T {
  try {
    return translate();
  } catch (error: unknown) {
    if (error instanceof SpecError) throw new UsageError(error.message);
    throw error;
  }
}

/** Writes the service's output as it comes (stderr's to stderr), until the VM stops. */
async function followLog(job: Job, name: string, io: Io): Promise<void> {
  await writeLog(job.logs(name, { follow: true }), io);
}

async function writeLog(records: AsyncIterable<LogRecord>, io: Io): Promise<void> {
  const decoders = { stdout: new TextDecoder(), stderr: new TextDecoder() };
  for await (const record of records) {
    const to = record.stream === 'stderr' ? io.err : io.out;
    to(decoders[record.stream].decode(record.data, { stream: true }));
  }
  io.out(decoders.stdout.decode());
  io.err(decoders.stderr.decode());
}

export async function logs(argv: string[], io: Io, env: CliEnvironment): Promise<number> {
  const parsed = parseArgs(argv, [{ name: 'follow', short: 'f' }]);
  const [name] = parsed.positionals;
  if (!name) throw new UsageError('hyper logs needs a NAME');
  const job = await openJob(env);
  await writeLog(job.logs(name, { follow: parsed.options.follow === true }), io);
  return 0;
}

export async function ps(argv: string[], io: Io, env: CliEnvironment): Promise<number> {
  const parsed = parseArgs(argv, [
    { name: 'json' },
    { name: 'filter', short: 'f', value: true, multiple: true },
  ]);
  const services = await (await openJob(env)).list({ labels: labelFilters(listOption(parsed, 'filter')) });
  if (parsed.options.json) {
    const usage = await Promise.all(
      services.map(({ record, state }) => (state.running ? readUsage(record) : Promise.resolve(undefined))),
    );
    const rows = services.map(({ record, state, pid, replica }, index) => ({
      id: record.id ?? null,
      name: record.name,
      replicaOf: replica?.of ?? null,
      outOfRotation: replica?.outOfRotation ?? null,
      image: record.image,
      imageDigest: record.imageDigest,
      state: state.running ? 'running' : state.created ? 'created' : 'exited',
      exitCode: state.running ? null : (state.exitCode ?? null),
      restarts: state.restarts ?? 0,
      crash: (!state.running && state.crash) || null,
      consoleTail: (!state.running && state.consoleTail) || null,
      ports: record.ports,
      pid: pid ?? null,
      accel: record.machine.accel,
      memoryMiB: record.machine.memoryMiB,
      cpus: record.machine.cpus,
      bootMs: record.bootMs ?? null,
      origin: record.origin ?? null,
      memory: usage[index]?.memory ?? null,
      createdAt: record.createdAt,
    }));
    io.out(`${JSON.stringify(rows, null, 2)}\n`);
    return 0;
  }
  const rows = services.map(({ record, state, pid, replica }) => [
    record.name,
    record.image,
    replica?.outOfRotation
      ? `${stateText(state)}, out of rotation (${replica.outOfRotation})`
      : stateText(state),
    record.ports.map(formatPort).join(', '),
    pid === undefined ? '-' : String(pid),
    record.machine.accel,
    record.bootMs === undefined ? '-' : `${(record.bootMs / 1000).toFixed(2)}s`,
    record.origin === undefined ? '-' : describeOrigin(record.origin),
  ]);
  io.out(`${formatTable(['NAME', 'IMAGE', 'STATE', 'PORTS', 'PID', 'ACCEL', 'BOOT', 'FROM'], rows)}\n`);
  for (const { record, state } of services) {
    if (state.running || !state.crash) continue;
    const tail = (state.consoleTail ?? '').replace(/^/gm, '  ');
    io.out(`\n${record.name}: ${state.crash}; the end of its console:\n${tail}\n`);
  }
  return 0;
}

/** `--filter label=KEY` or `label=KEY=VALUE`, as docker ps takes them. */
function labelFilters(filters: readonly string[]): Record<string, string | undefined> {
  const labels: Record<string, string | undefined> = {};
  for (const filter of filters) {
    const match = /^label=([^=]+)(?:=(.*))?$/.exec(filter);
    if (!match?.[1]) throw new UsageError(`--filter ${filter}: give label=KEY or label=KEY=VALUE`);
    labels[match[1]] = match[2];
  }
  return labels;
}

/** Runs a command in a running VM; its output streams as it comes, and its exit code is hyper's. */
export async function exec(argv: string[], io: Io, env: CliEnvironment): Promise<number> {
  const parsed = parseArgs(
    argv,
    [
      { name: 'env', short: 'e', value: true, multiple: true },
      { name: 'user', short: 'u', value: true },
      { name: 'interactive', short: 'i' },
    ],
    1,
  );
  const [name, ...rest] = parsed.positionals;
  if (!name) throw new UsageError('hyper exec needs a NAME and a command');
  const command = rest[0] === '--' ? rest.slice(1) : rest;
  const running = await (
    await openJob(env)
  ).execStream(name, command, {
    env: listOption(parsed, 'env'),
    user: stringOption(parsed, 'user'),
    stdin: parsed.options.interactive === true ? (io.input ?? noInput()) : undefined,
  });
  // A failure ends both streams; exitCode says what it was.
  await Promise.all([write(running.stdout, io.out), write(running.stderr, io.err)]).catch(() => undefined);
  return running.exitCode;
}

/** An stdin that ends at once, where the caller has none to give. */
async function* noInput(): AsyncGenerator<Buffer> {}

async function write(chunks: AsyncIterable<Buffer>, to: (text: string) => void): Promise<void> {
  const decoder = new TextDecoder();
  for await (const chunk of chunks) to(decoder.decode(chunk, { stream: true }));
  to(decoder.decode());
}

/** Runs `each` for every NAME given, in order; the first failure ends it. */
async function forEachName(
  argv: string[],
  env: CliEnvironment,
  options: Parameters<typeof parseArgs>[1],
  usage: string,
  each: (job: Job, name: string, parsed: ReturnType<typeof parseArgs>) => Promise<void>,
): Promise<number> {
  const parsed = parseArgs(argv, options);
  if (parsed.positionals.length === 0) throw new UsageError(usage);
  const job = await openJob(env);
  for (const name of parsed.positionals) await each(job, name, parsed);
  return 0;
}

export const stop = (argv: string[], io: Io, env: CliEnvironment): Promise<number> =>
  forEachName(
    argv,
    env,
    [{ name: 'time', short: 't', value: true }],
    'hyper stop needs a NAME',
    async (job, name, parsed) => {
      const code = await job.stop(
        name,
        stringOption(parsed, 'time') === undefined ? undefined : intOption(parsed, 'time', 10, 0) * 1000,
      );
      io.err(`${name}: exited with code ${code ?? 'unknown'}\n`);
      io.out(`${name}\n`);
    },
  );

export const kill = (argv: string[], io: Io, env: CliEnvironment): Promise<number> =>
  forEachName(argv, env, [], 'hyper kill needs a NAME', async (job, name) => {
    const code = await job.kill(name);
    io.err(`${name}: exited with code ${code ?? 'unknown'}\n`);
    io.out(`${name}\n`);
  });

export const wait = (argv: string[], io: Io, env: CliEnvironment): Promise<number> =>
  forEachName(argv, env, [], 'hyper wait needs a NAME', async (job, name) => {
    const ended = await job.wait(name);
    io.out(`${ended.exitCode ?? ended.crash ?? 'unknown'}\n`);
  });

export const start = (argv: string[], io: Io, env: CliEnvironment): Promise<number> =>
  forEachName(argv, env, [], 'hyper start needs a NAME', async (job, name) => {
    const record = await job.start(name);
    io.err(`${name}: running after ${record.bootMs} ms\n`);
    io.out(`${name}\n`);
  });

export const rm = (argv: string[], io: Io, env: CliEnvironment): Promise<number> =>
  forEachName(
    argv,
    env,
    [{ name: 'force', short: 'f' }],
    'hyper rm needs a NAME',
    async (job, name, parsed) => {
      await job.remove(name, parsed.options.force === true);
      io.out(`${name}\n`);
    },
  );
