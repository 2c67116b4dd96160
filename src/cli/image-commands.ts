import path from 'node:path';
import { parseArgs, UsageError } from './args.js';
import { openJob, REGISTRY_OPTIONS, registryOption, type CliEnvironment } from './environment.js';
import type { Io } from './io.js';
import { formatTable } from './table.js';

export async function pull(argv: string[], io: Io, env: CliEnvironment): Promise<number> {
  const parsed = parseArgs(argv, REGISTRY_OPTIONS);
  const [name] = parsed.positionals;
  if (!name) throw new UsageError('hyper pull needs an IMAGE');
  const log = (line: string): void => io.err(`${line}\n`);
  const job = await openJob(env, { registry: registryOption(parsed, env) });
  const pulled = await job.pull(name, log);
  log(`${pulled.cached ? 'Root filesystem up to date' : 'Built root filesystem'}: ${pulled.rootfs}`);
  io.out(`${name}@${pulled.digest}\n`);
  return 0;
}

function formatBytes(bytes: number): string {
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} kB`;
  return bytes < 1024 ** 3 ? `${(bytes / 1024 ** 2).toFixed(1)} MB` : `${(bytes / 1024 ** 3).toFixed(2)} GB`;
}

export async function images(argv: string[], io: Io, env: CliEnvironment): Promise<number> {
  const parsed = parseArgs(argv, [{ name: 'json' }]);
  const rows = await (await openJob(env)).images();
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

/** `hyper template ls|prune`: the boot templates VMs start from. */
export async function template(argv: string[], io: Io, env: CliEnvironment): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === 'prune') {
    parseArgs(rest, []);
    for (const dir of await (await openJob(env)).pruneTemplates()) io.out(`removed ${dir}\n`);
    return 0;
  }
  if (sub !== 'ls') throw new UsageError('hyper template supports: ls [--json], prune');
  const parsed = parseArgs(rest, [{ name: 'json' }]);
  const { boot, service } = await (await openJob(env)).templates();
  if (parsed.options.json) {
    const rows = [
      ...boot.map((t) => ({ kind: 'boot', ...t })),
      ...service.map((t) => ({ kind: 'service', ...t })),
    ];
    io.out(`${JSON.stringify(rows, null, 2)}\n`);
    return 0;
  }
  const mapped = (pids: number[]): string => (pids.length ? pids.join(',') : '-');
  const table = [
    ...boot.map((t) => [
      'boot',
      path.basename(t.dir),
      `${t.identity.memoryMiB} MiB, ${t.identity.cpus} CPU, bundle ${t.identity.bundle}`,
      formatBytes(t.diskBytes),
      mapped(t.usedBy),
      new Date(t.madeMs).toISOString(),
    ]),
    ...service.map((t) => [
      'service',
      path.basename(t.dir),
      `service ${t.service}, image ${t.image.slice(0, 19)}`,
      formatBytes(t.diskBytes),
      mapped(t.usedBy),
      new Date(t.madeMs).toISOString(),
    ]),
  ];
  io.out(`${formatTable(['KIND', 'TEMPLATE', 'FOR', 'DISK', 'MAPPED BY', 'MADE'], table)}\n`);
  return 0;
}

export async function image(argv: string[], io: Io, env: CliEnvironment): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub !== 'prune') throw new UsageError('hyper image supports: prune [-a]');
  const parsed = parseArgs(rest, [{ name: 'all', short: 'a' }]);
  const result = await (await openJob(env)).pruneImages(parsed.options.all === true);
  for (const name of result.removedImages) io.out(`untagged: ${name}\n`);
  io.out(`removed ${result.removedFiles} cached files, reclaimed ${formatBytes(result.reclaimedBytes)}\n`);
  return 0;
}
