import { mkdtemp, readdir, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { hyper, hyperOk, qemuProcessesUnder } from '../../support/cli.js';
import { snapshotEnv } from '../../support/env.js';
import { busyboxLayout } from '../../support/fixtures.js';

// State files that are damaged (truncated, or not JSON) are reported by name
// with what to do, never silently replaced; teardown still removes every VM.
let stateDir: string;
let image: string;
const restoreEnv = snapshotEnv();

beforeAll(async () => {
  image = `oci:${await busyboxLayout()}`;
});

beforeEach(async () => {
  stateDir = await mkdtemp('/tmp/hyper-it-');
  process.env.HYPER_STATE_DIR = stateDir;
  process.env.HYPER_ACCEL = 'tcg';
});

afterEach(async () => {
  await hyper('down', '--time', '0');
  for (const name of await readdir(path.join(stateDir, 'vms')).catch(() => [])) await hyper('rm', '-f', name);
  expect(await qemuProcessesUnder(stateDir)).toEqual([]);
  await rm(stateDir, { recursive: true, force: true });
  restoreEnv();
});

const vmFile = (name: string, file: string): string => path.join(stateDir, 'vms', name, file);

test('a truncated network.json stops the next VM (no second network), and down still stops every VM', async () => {
  await hyperOk('run', '--name', 'first', image);
  const file = path.join(stateDir, 'network.json');
  const size = (await readFile(file)).length;
  await truncate(file, Math.floor(size / 2));
  const damaged = await readFile(file, 'utf8');

  const second = await hyper('run', '--name', 'second', image);
  expect(second.code).toBe(125);
  expect(second.stderr).toContain(`hyper run: ${file} is damaged (not valid JSON: `);
  expect(second.stderr).toContain(
    '"hyper down" still stops the VMs; then remove the bridge hy<id> and the firewall table or chains hyper-<id> it made, if any, by hand, and delete the file',
  );
  expect(await readdir(path.join(stateDir, 'vms'))).toEqual(['first']);
  expect(await readFile(file, 'utf8')).toBe(damaged);

  const down = await hyper('down', '--time', '0');
  expect(down.code).toBe(125);
  expect(down.stderr).toMatch(/^first: stopped \(exit code \d+\) and removed$/m);
  expect(down.stderr).toContain(`hyper down: ${file} is damaged (not valid JSON: `);
  expect(await readdir(path.join(stateDir, 'vms'))).toEqual([]);
  expect(await qemuProcessesUnder(stateDir)).toEqual([]);
  expect(await readFile(file, 'utf8')).toBe(damaged);
  await rm(file);
});

test('a VM record that is not JSON is named by every command; rm -f removes the VM', async () => {
  await hyperOk('run', '--name', 'broken', image);
  await hyperOk('run', '--name', 'fine', image);
  const file = vmFile('broken', 'vm.json');
  await writeFile(file, '{"name": "broken", "ima');
  const expected = `${file} is damaged (not valid JSON: `;
  const remedy =
    'remove that VM with "hyper rm -f broken" (its QEMU is stopped and its directory removed; named volumes stay)';

  for (const argv of [['ps'], ['exec', 'broken', '--', 'true'], ['logs', 'broken'], ['stop', 'broken']]) {
    const result = await hyper(...argv);
    expect(result.code).toBe(125);
    expect(result.stderr).toContain(`hyper ${argv[0]}: ${expected}`);
    expect(result.stderr).toContain(remedy);
  }
  // Not removed by anything but rm -f: the record is still there, as damaged as it was.
  expect(await readFile(file, 'utf8')).toBe('{"name": "broken", "ima');
  const rm = await hyper('rm', 'broken');
  expect(rm.code).toBe(125);
  expect(rm.stderr).toContain(expected);

  await hyperOk('rm', '-f', 'broken');
  expect(await readdir(path.join(stateDir, 'vms'))).toEqual(['fine']);
  expect((await qemuProcessesUnder(stateDir)).length).toBe(1);
  expect((await hyperOk('ps')).stdout).toMatch(/^fine\s+\S+\s+running/m);
});

test('down removes a VM whose record is damaged, with a warning naming the file', async () => {
  await hyperOk('run', '--name', 'broken', image);
  const file = vmFile('broken', 'vm.json');
  await writeFile(file, '');
  const down = await hyperOk('down', '--time', '0');
  expect(down.stderr).toContain(`warning: ${file} is damaged (it is empty); remove that VM with`);
  expect(down.stderr).toMatch(/^broken: killed and removed$/m);
  expect(await readdir(path.join(stateDir, 'vms'))).toEqual([]);
  expect(await qemuProcessesUnder(stateDir)).toEqual([]);
});

test('a corrupt snapshots.json is reported, and a new snapshot does not overwrite it', async () => {
  await hyperOk('run', '--name', 'svc', '-v', 'data:/data', image);
  const file = vmFile('svc', 'snapshots.json');
  await writeFile(file, '[{"name": "s1", "kind": "vol');
  const expected = `${file} is damaged (not valid JSON: `;
  const remedy =
    'it lists the snapshots of svc, which are kept inside its disks ("qemu-img snapshot -l" shows them); restore the file or delete it to start a new list';

  const list = await hyper('snapshots', 'svc');
  expect(list.code).toBe(125);
  expect(list.stderr).toContain(expected);
  expect(list.stderr).toContain(remedy);
  const take = await hyper('snapshot', 'svc', 's2');
  expect(take.code).toBe(125);
  expect(take.stderr).toContain(expected);
  expect(await readFile(file, 'utf8')).toBe('[{"name": "s1", "kind": "vol');

  // A list that is JSON but not a list is damaged too.
  await writeFile(file, '{"name": "s1"}');
  expect((await hyper('snapshots', 'svc')).stderr).toContain(`${file} is damaged (not a JSON array)`);
  await hyperOk('rm', '-f', 'svc');
  await hyperOk('volume', 'rm', 'data');
});

test('a damaged job.json is named with a warning; the defaults stand in, and inspection and teardown still work', async () => {
  await hyperOk('run', '--name', 'kept', image);
  const file = path.join(stateDir, 'job.json');
  await writeFile(file, '{"network": ');
  const ps = await hyperOk('ps');
  expect(ps.stdout).toMatch(/^kept\s+\S+\s+running/m);
  expect(ps.stderr).toContain(`warning: ${file} is damaged (not valid JSON: `);
  expect(ps.stderr).toContain('; using the default settings');
  const down = await hyperOk('down', '--time', '0');
  expect(down.stderr).toMatch(/^kept: stopped \(exit code \d+\) and removed$/m);
  expect(await readdir(path.join(stateDir, 'vms'))).toEqual([]);
  // The job is gone, and its settings with it.
  expect(await readdir(stateDir)).not.toContain('job.json');
});
