import { execa } from 'execa';
import { mkdtemp, rm } from 'node:fs/promises';
import path from 'node:path';
import type { MountSpec } from '../../../src/storage/mounts.js';
import {
  defaultVolumeSize,
  ensureVolume,
  prepareMountDisks,
  volumePath,
} from '../../../src/storage/volumes.js';

// Volume disks made for real (truncate, mkfs.ext4, debugfs, qemu-img), no VM:
// each gets the size it was asked for, and an existing volume keeps its own.
const MiB = 1024 * 1024;
let stateDir: string;

beforeAll(async () => {
  stateDir = await mkdtemp('/tmp/hyper-volume-size-');
});

afterAll(async () => {
  await rm(stateDir, { recursive: true, force: true });
});

async function virtualSize(file: string): Promise<number> {
  const { stdout } = await execa('qemu-img', ['info', '--output=json', file]);
  return (JSON.parse(stdout) as { 'virtual-size': number })['virtual-size'];
}

test('ensureVolume makes a new volume the size asked; an existing one keeps its size', async () => {
  const made = await ensureVolume(stateDir, 'sized', 48 * MiB);
  expect(made).toEqual({ path: volumePath(stateDir, 'sized'), created: true });
  expect(await virtualSize(made.path)).toBe(48 * MiB);

  const again = await ensureVolume(stateDir, 'sized', 96 * MiB);
  expect(again).toEqual({ path: made.path, created: false });
  expect(await virtualSize(made.path)).toBe(48 * MiB);
});

test('prepareMountDisks: a named volume its own size, other new volumes the default', async () => {
  const mounts: MountSpec[] = [
    { kind: 'volume', name: 'pgdata', target: '/var/lib/postgresql/data', readOnly: false },
    { kind: 'volume', name: 'plain', target: '/plain', readOnly: false },
    { kind: 'anonymous', target: '/cache', readOnly: false },
  ];
  const disks = await prepareMountDisks(stateDir, mounts, path.join(stateDir, 'vms', 'sizes'), {
    defaultBytes: 32 * MiB,
    named: { pgdata: 64 * MiB },
  });
  const sizes = await Promise.all(disks.map(async (disk) => [disk.target, await virtualSize(disk.path)]));
  expect(sizes).toEqual([
    ['/var/lib/postgresql/data', 64 * MiB],
    ['/plain', 32 * MiB],
    ['/cache', 32 * MiB],
  ]);
});

test('prepareMountDisks: HYPER_VOLUME_SIZE is the default when none is given', async () => {
  const mounts: MountSpec[] = [{ kind: 'anonymous', target: '/scratch', readOnly: false }];
  const [disk] = await prepareMountDisks(stateDir, mounts, path.join(stateDir, 'vms', 'from-env'), {
    defaultBytes: defaultVolumeSize('20M'),
  });
  expect(disk && (await virtualSize(disk.path))).toBe(20 * MiB);
});
