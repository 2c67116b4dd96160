import { execa } from 'execa';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { busyboxLayout } from '../../support/fixtures.js';
import { hyper, hyperOk, qemuProcessesUnder } from '../../support/cli.js';

// A state dir is one job: the settings a command gives are kept for the
// commands after it, and go with the job's last VM. Real VMs, real disks.
let stateDir: string;
let image: string;
const MiB = 1024 * 1024;

beforeAll(async () => {
  stateDir = await mkdtemp('/tmp/hyper-settings-');
  process.env.HYPER_STATE_DIR = stateDir;
  process.env.HYPER_ACCEL = 'tcg';
  image = `oci:${await busyboxLayout()}`;
});

afterAll(async () => {
  for (const name of await readdir(path.join(stateDir, 'vms')).catch(() => [])) await hyper('rm', '-f', name);
  expect(await qemuProcessesUnder(stateDir)).toEqual([]);
  await rm(stateDir, { recursive: true, force: true });
  delete process.env.HYPER_STATE_DIR;
  delete process.env.HYPER_ACCEL;
});

async function anonymousVolumeSize(name: string): Promise<number> {
  const file = path.join(stateDir, 'vms', name, 'disks', 'vol0.qcow2');
  const { stdout } = await execa('qemu-img', ['info', '--output=json', '-U', file]);
  return (JSON.parse(stdout) as { 'virtual-size': number })['virtual-size'];
}

test('a later command uses the volume size an earlier one gave; the settings go with the last VM', async () => {
  // Registry credentials given to this command must not be kept (the image is a local layout: they go unused).
  process.env.HYPER_REGISTRY_USERNAME = 'settings-user';
  process.env.HYPER_REGISTRY_PASSWORD = 'settings-secret';
  try {
    await hyperOk('run', '-d', '--name', 'first', '--volume-size', '48M', '-v', '/scratch', image);
  } finally {
    delete process.env.HYPER_REGISTRY_USERNAME;
    delete process.env.HYPER_REGISTRY_PASSWORD;
  }
  const text = await readFile(path.join(stateDir, 'job.json'), 'utf8');
  expect((JSON.parse(text) as { volumeSize: number }).volumeSize).toBe(48 * MiB);
  expect(text).not.toContain('settings-user');
  expect(text).not.toContain('settings-secret');

  await hyperOk('run', '-d', '--name', 'second', '-v', '/scratch', image);
  expect(await anonymousVolumeSize('second')).toBe(48 * MiB);

  await hyperOk('rm', '-f', 'first');
  expect(await readdir(stateDir)).toContain('job.json');
  await hyperOk('rm', '-f', 'second');
  expect(await readdir(stateDir)).not.toContain('job.json');

  // A new job starts from the defaults: 10 GiB.
  await hyperOk('run', '-d', '--name', 'third', '-v', '/scratch', image);
  expect(await anonymousVolumeSize('third')).toBe(10 * 1024 * MiB);
  await hyperOk('rm', '-f', 'third');
});

test('a command that is refused keeps no settings', async () => {
  const result = await hyper('run', '--name', 'bad name', '--volume-size', '64M', image);
  expect(result.code).toBe(125);
  expect(result.stderr).toContain('"bad name" is not a valid name');
  expect(await readdir(stateDir)).not.toContain('job.json');
});
