import { createWriteStream } from 'node:fs';
import { mkdir, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import { HyperError } from '../errors.js';
import { CONTAINER_ROOT } from '../guest/config.js';
import type { ExecStream } from '../vm/hypervisor.js';
import { requireRecord, vmState } from './container.js';
import type { JobContext } from './context.js';
import { writeRecord, type VmRecord } from './record.js';

/** What Docker's archive endpoints say about a path (X-Docker-Container-Path-Stat). */
export interface PathStat {
  name: string;
  size: number;
  /** Unix st_mode (type and permission bits). */
  mode: number;
  /** Modification time, seconds since the epoch. */
  mtime: number;
  linkTarget: string;
}

const TAR_TIMEOUT_MS = 60 * 60 * 1000;
/** virtio-blk sizes a disk in 512-byte sectors; a tar is written in such blocks already. */
const SECTOR = 512;

/** An absolute, normalized path inside the container; refuses what would leave it. Pure. */
export function containerPath(text: string): string {
  if (!text.startsWith('/'))
    throw new HyperError(`path "${text}" must be absolute in the container`, { kind: 'Invalid' });
  return path.posix.normalize(text).replace(/(.)\/+$/, '$1');
}

/** `stat -c` output "SIZE|MODE_HEX|MTIME|NAME" and readlink's target, as a PathStat. Pure. */
export function parseStat(output: string, linkTarget: string): PathStat {
  const [size = '', mode = '', mtime = '', ...name] = output.trim().split('|');
  return {
    name: path.posix.basename(name.join('|')),
    size: Number(size),
    mode: Number.parseInt(mode, 16),
    mtime: Number(mtime),
    linkTarget,
  };
}

async function running(name: string, job: JobContext): Promise<VmRecord> {
  const record = await requireRecord(job, name);
  const state = await vmState(record, job);
  if (!state.running)
    throw new HyperError(`${name} is not running; files can be copied out of a running VM only`, {
      kind: 'Conflict',
    });
  return record;
}

async function collect(stream: ExecStream): Promise<{ stdout: string; stderr: string; code: number }> {
  const read = async (source: AsyncIterable<Buffer>): Promise<string> => {
    const chunks: Buffer[] = [];
    for await (const chunk of source) chunks.push(chunk);
    return Buffer.concat(chunks).toString('utf8');
  };
  const [stdout, stderr] = await Promise.all([read(stream.stdout), read(stream.stderr)]);
  return { stdout, stderr, code: await stream.exitCode };
}

/** The path's stat in the running container; NotFound when it is not there. */
export async function statPath(name: string, target: string, job: JobContext): Promise<PathStat> {
  const record = await running(name, job);
  const inGuest = `${CONTAINER_ROOT}${containerPath(target)}`;
  const result = await collect(
    await job.hypervisor.execStream(
      record.machine,
      ['/bin/sh', '-c', 'stat -c "%s|%f|%Y|%n" "$1" && { readlink "$1" || :; }', 'sh', inGuest],
      { timeoutMs: 30_000 },
    ),
  );
  if (result.code !== 0)
    throw new HyperError(`Could not find the file ${target} in container ${name}`, { kind: 'NotFound' });
  const [statLine = '', link = ''] = result.stdout.split('\n');
  const stat = parseStat(statLine, link);
  // The container's root is / to its clients, not the guest's /container.
  return containerPath(target) === '/' ? { ...stat, name: '/' } : stat;
}

/** A tar of the path (its last component at the top), streamed out of the running container. */
export async function readArchive(
  name: string,
  target: string,
  job: JobContext,
  signal?: AbortSignal,
): Promise<{ stat: PathStat; tar: ExecStream }> {
  const record = await running(name, job);
  const stat = await statPath(name, target, job);
  const clean = containerPath(target);
  const tar = await job.hypervisor.execStream(
    record.machine,
    [
      '/bin/tar',
      '-c',
      '-f',
      '-',
      '-C',
      `${CONTAINER_ROOT}${path.posix.dirname(clean)}`,
      path.posix.basename(clean),
    ],
    { timeoutMs: TAR_TIMEOUT_MS, signal },
  );
  return { stat, tar };
}

/**
 * Unpacks a tar into a directory of the container: into the running VM
 * through the agent; into a created one that has not started, at its first
 * boot (the tar is kept as a disk the guest reads).
 */
export async function writeArchive(
  name: string,
  target: string,
  tar: AsyncIterable<Buffer>,
  job: JobContext,
): Promise<void> {
  const record = await requireRecord(job, name);
  const dir = containerPath(target);
  const state = await vmState(record, job);
  if (state.running) {
    const result = await collect(
      await job.hypervisor.execStream(
        record.machine,
        [
          '/bin/sh',
          '-c',
          'test -d "$1" || { echo "no such directory" >&2; exit 2; }; tar -x -f - -C "$1"',
          'sh',
          `${CONTAINER_ROOT}${dir}`,
        ],
        { stdin: tar, timeoutMs: TAR_TIMEOUT_MS },
      ),
    );
    if (result.code === 2 && result.stderr.includes('no such directory'))
      throw new HyperError(`Could not find the file ${dir} in container ${name}`, { kind: 'NotFound' });
    if (result.code !== 0)
      throw new HyperError(`cannot unpack the archive into ${dir}: ${result.stderr.trim()}`);
    return;
  }
  if (!(state.created ?? false))
    throw new HyperError(`${name} has stopped; copy into it while it runs, or before its first start`, {
      kind: 'Conflict',
    });
  const copies = record.copyIn ?? [];
  const serial = `copy${copies.length}`;
  const file = path.join(record.machine.dir, 'copy-in', `${serial}.tar`);
  await mkdir(path.dirname(file), { recursive: true });
  try {
    await pipeline(Readable.from(tar), createWriteStream(file));
    const { size } = await stat(file);
    if (size === 0 || size % SECTOR !== 0)
      throw new HyperError(`the archive for ${dir} is not a tar (${size} bytes, not whole 512-byte blocks)`, {
        kind: 'Invalid',
      });
  } catch (error: unknown) {
    await rm(file, { force: true });
    throw error;
  }
  record.copyIn = [...copies, { serial, file, target: dir }];
  await writeRecord(record);
}
