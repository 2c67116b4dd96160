import { listRecords } from '../lifecycle/record.js';
import { startService } from '../lifecycle/service.js';
import {
  listSnapshots,
  removeSnapshot,
  restoreService,
  snapshotService,
  type SnapshotRecord,
} from '../lifecycle/snapshots.js';
import { QemuHypervisor } from '../vm/qemu/machine.js';
import { intOption, parseArgs, UsageError } from './args.js';
import type { Io } from './commands.js';
import { formatTable } from './table.js';

/** The snapshot, restore and start commands of `hyper`: src/lifecycle/snapshots.ts in a terminal. */

const host = () => ({ hypervisor: new QemuHypervisor() });

export async function start(argv: string[], io: Io): Promise<number> {
  const parsed = parseArgs(argv, []);
  if (parsed.positionals.length === 0) throw new UsageError('hyper start needs a NAME');
  for (const name of parsed.positionals) {
    const record = await startService(name, host());
    io.err(`${name}: running after ${record.bootMs} ms\n`);
    io.out(`${name}\n`);
  }
  return 0;
}

export async function snapshot(argv: string[], io: Io): Promise<number> {
  if (argv[0] === 'rm') {
    const [service, name] = parseArgs(argv.slice(1), []).positionals;
    if (!service || !name) throw new UsageError('hyper snapshot rm needs a SERVICE and a NAME');
    await removeSnapshot(service, name, host());
    io.out(`${name}\n`);
    return 0;
  }
  const parsed = parseArgs(argv, [{ name: 'checkpoint' }, { name: 'timeout', value: true }]);
  const [service, name, extra] = parsed.positionals;
  if (!service || extra)
    throw new UsageError('usage: hyper snapshot [--checkpoint] [--timeout S] SERVICE [NAME]');
  const taken = await snapshotService(
    service,
    name,
    {
      checkpoint: parsed.options.checkpoint === true,
      freezeTimeoutMs: intOption(parsed, 'timeout', 10, 1) * 1000,
    },
    host(),
  );
  io.err(
    `${service}: ${taken.kind === 'checkpoint' ? 'checkpoint' : 'volume snapshot'} ${taken.name} in ${taken.tookMs} ms\n`,
  );
  io.out(`${taken.name}\n`);
  return 0;
}

export async function restore(argv: string[], io: Io): Promise<number> {
  const parsed = parseArgs(argv, [{ name: 'time', short: 't', value: true }]);
  const [service, name] = parsed.positionals;
  if (!service || !name) throw new UsageError('hyper restore needs a SERVICE and a snapshot NAME');
  const tookMs = await restoreService(service, name, host(), {
    stopGraceMs: intOption(parsed, 'time', 10, 0) * 1000,
  });
  io.err(`${service}: restored ${name} in ${tookMs} ms\n`);
  io.out(`${name}\n`);
  return 0;
}

function row(service: string, s: SnapshotRecord): string[] {
  return [service, s.name, s.kind, s.disks.join(','), s.createdAt, `${s.tookMs} ms`];
}

export async function snapshots(argv: string[], io: Io): Promise<number> {
  const parsed = parseArgs(argv, [{ name: 'json' }]);
  const rows = await listSnapshots(parsed.positionals[0], listRecords);
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
