import path from 'node:path';
import type { SnapshotRecord } from '../engine/snapshots.js';
import { TransferError } from '../engine/export-format.js';
import { exists } from '../files.js';
import { formatPort, parsePortSpec } from '../network/ports.js';
import { intOption, listOption, parseArgs, stringOption, UsageError } from './args.js';
import { accelOption, NETWORK_OPTIONS, networkOption, openJob, type CliEnvironment } from './environment.js';
import { reporter, type Io } from './io.js';
import { formatTable } from './table.js';

/**
 * The commands of `hyper` that keep state between runs: start, snapshot,
 * restore, export, import and volume (src/engine/{snapshots,transfer,volumes}.ts).
 */

export async function snapshot(argv: string[], io: Io, env: CliEnvironment): Promise<number> {
  if (argv[0] === 'rm') {
    const [service, name] = parseArgs(argv.slice(1), []).positionals;
    if (!service || !name) throw new UsageError('hyper snapshot rm needs a SERVICE and a NAME');
    await (await openJob(env)).removeSnapshot(service, name);
    io.out(`${name}\n`);
    return 0;
  }
  const parsed = parseArgs(argv, [{ name: 'checkpoint' }, { name: 'timeout', value: true }]);
  const [service, name, extra] = parsed.positionals;
  if (!service || extra)
    throw new UsageError('usage: hyper snapshot [--checkpoint] [--timeout S] SERVICE [NAME]');
  const taken = await (
    await openJob(env)
  ).snapshot(service, name, {
    checkpoint: parsed.options.checkpoint === true,
    freezeTimeoutMs: intOption(parsed, 'timeout', 10, 1) * 1000,
  });
  io.err(
    `${service}: ${taken.kind === 'checkpoint' ? 'checkpoint' : 'volume snapshot'} ${taken.name} in ${taken.tookMs} ms\n`,
  );
  io.out(`${taken.name}\n`);
  return 0;
}

export async function restore(argv: string[], io: Io, env: CliEnvironment): Promise<number> {
  const parsed = parseArgs(argv, [{ name: 'time', short: 't', value: true }]);
  const [service, name] = parsed.positionals;
  if (!service || !name) throw new UsageError('hyper restore needs a SERVICE and a snapshot NAME');
  const tookMs = await (await openJob(env)).restore(service, name, intOption(parsed, 'time', 10, 0) * 1000);
  io.err(`${service}: restored ${name} in ${tookMs} ms\n`);
  io.out(`${name}\n`);
  return 0;
}

function row(service: string, s: SnapshotRecord): string[] {
  return [service, s.name, s.kind, s.disks.join(','), s.createdAt, `${s.tookMs} ms`];
}

export async function snapshots(argv: string[], io: Io, env: CliEnvironment): Promise<number> {
  const parsed = parseArgs(argv, [{ name: 'json' }]);
  const rows = await (await openJob(env)).snapshots(parsed.positionals[0]);
  if (parsed.options.json) {
    io.out(
      `${JSON.stringify(
        rows.map((r) => ({ service: r.service, ...r.snapshot, status: undefined })),
        null,
        2,
      )}\n`,
    );
    return 0;
  }
  io.out(
    `${formatTable(
      ['SERVICE', 'NAME', 'KIND', 'DISKS', 'CREATED', 'TOOK'],
      rows.map((r) => row(r.service, r.snapshot)),
    )}\n`,
  );
  return 0;
}

export async function exportCommand(argv: string[], io: Io, env: CliEnvironment): Promise<number> {
  const [service, name, file, extra] = parseArgs(argv, []).positionals;
  if (!service || !name || !file || extra) throw new UsageError('usage: hyper export SERVICE NAME FILE');
  const bytes = await (await openJob(env)).export(service, name, file);
  io.err(`${service}: exported ${name} to ${file} (${(bytes / 1024 / 1024).toFixed(1)} MiB)\n`);
  io.out(`${file}\n`);
  return 0;
}

export async function importCommand(argv: string[], io: Io, env: CliEnvironment): Promise<number> {
  const parsed = parseArgs(argv, [
    { name: 'name', value: true },
    { name: 'publish', short: 'p', value: true, multiple: true },
    { name: 'accel', value: true },
    ...NETWORK_OPTIONS,
  ]);
  const [file, extra] = parsed.positionals;
  const network = networkOption(parsed, env);
  const accel = accelOption(parsed, env);
  if (!file || extra) throw new UsageError('usage: hyper import [--name N] [-p SPEC]... FILE');
  const ports = listOption(parsed, 'publish').map(parsePortSpec);
  // Before the host is prepared (which may probe KVM): a missing file is a quick answer.
  if (!(await exists(path.resolve(file))))
    throw new TransferError(`${path.resolve(file)} does not exist`, { kind: 'NotFound' });
  const job = await openJob(env, { network, accel });
  await job.begin();
  await job.prepare(reporter(io));
  const { record, snapshot: imported } = await job.import(file, {
    name: stringOption(parsed, 'name'),
    ports: ports.length > 0 ? ports : undefined,
  });
  for (const port of record.ports) io.err(`${record.name}: will publish ${formatPort(port)}\n`);
  io.err(
    `${record.name}: imported ${imported.kind} ${imported.name}; start it with "hyper restore ${record.name} ${imported.name}"\n`,
  );
  io.out(`${record.name}\n`);
  return 0;
}

export async function volume(argv: string[], io: Io, env: CliEnvironment): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === 'ls') {
    const parsed = parseArgs(rest, [{ name: 'json' }]);
    const volumes = await (await openJob(env)).volumes();
    if (parsed.options.json) {
      io.out(`${JSON.stringify(volumes, null, 2)}\n`);
      return 0;
    }
    const rows = volumes.map((v) => [
      v.name,
      `${(v.bytes / 1024 / 1024).toFixed(1)} MiB`,
      v.usedBy.join(',') || '-',
    ]);
    io.out(`${formatTable(['VOLUME', 'ON DISK', 'USED BY'], rows)}\n`);
    return 0;
  }
  if (sub === 'rm') {
    const names = parseArgs(rest, []).positionals;
    if (names.length === 0) throw new UsageError('hyper volume rm needs a NAME');
    const job = await openJob(env);
    for (const name of names) {
      await job.removeVolume(name);
      io.out(`${name}\n`);
    }
    return 0;
  }
  throw new UsageError('usage: hyper volume ls [--json] | hyper volume rm NAME...');
}
