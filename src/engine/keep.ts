import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { logRecordsText } from '../vm/log-records.js';
import path from 'node:path';
import { exists } from '../files.js';
import { qemuImg } from '../tools/qemu/img.js';
import { vmPaths } from '../vm/paths.js';
import { requireRecord, stopContainer } from './container.js';
import type { JobContext } from './context.js';
import { snapshotService } from './snapshots.js';
import { exportSnapshot } from './export.js';

/** Copies what one service leaves for debugging into `dir`; returns what was kept. */
/** What a failed job keeps of each VM: its logs, with its volumes, or with a checkpoint of the whole VM. */
export type KeepMode = 'logs' | 'volumes' | 'checkpoint';

export async function keepForDebugging(
  name: string,
  mode: KeepMode,
  dir: string,
  job: JobContext,
): Promise<string[]> {
  const record = await requireRecord(job, name);
  const kept: string[] = [];
  const paths = vmPaths(record.machine.dir);
  const own = path.join(dir, record.name);
  await mkdir(own, { recursive: true });
  for (const file of [paths.serviceLog, paths.console, paths.record]) {
    if (await exists(file)) {
      const target = path.join(own, path.basename(file));
      // The service log as text, both streams in order, not the guest's records.
      if (file === paths.serviceLog) await writeFile(target, logRecordsText(await readFile(file)));
      else await copyFile(file, target);
      kept.push(`${record.name}/${path.basename(file)}`);
    }
  }
  if (mode === 'checkpoint' && (await job.hypervisor.isRunning(record.machine))) {
    const tag = `debug-${Date.now().toString(36)}`;
    await snapshotService(record.name, tag, { checkpoint: true, freezeTimeoutMs: 10_000 }, job);
    const file = path.join(own, `${record.name}-${tag}.tar`);
    await exportSnapshot(record.name, tag, file, job);
    return [...kept, `${record.name}/${path.basename(file)}`];
  }
  // The volumes alone: stopped first, so their filesystems are clean.
  const volumes = (record.disks ?? []).filter((d) => !d.readOnly);
  if (volumes.length > 0 && (await job.hypervisor.isRunning(record.machine))) {
    await stopContainer(record.name, 10_000, job);
  }
  for (const disk of volumes) {
    const name = `${disk.serial}${disk.volume ? `-${disk.volume}` : ''}.qcow2`;
    await qemuImg.convert(disk.path, path.join(own, name), { to: 'qcow2' });
    kept.push(`${record.name}/${name}`);
  }
  return kept;
}
