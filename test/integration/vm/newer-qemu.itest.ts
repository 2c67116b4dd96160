import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, readlink, rm } from 'node:fs/promises';
import path from 'node:path';
import { busyboxLayout, newerQemu } from '../../support/fixtures.js';
import { bootTemplates } from '../../support/templates.js';
import { httpGet, hyper, hyperOk, psRow, qemuProcessesUnder } from '../../support/cli.js';
import { DEFAULT_QEMU } from '../../../src/vm/qemu/machine.js';
import { qemuAtLeast, qemuVersion } from '../../../src/tools/qemu/version.js';

// QEMU 10.0 from Debian bookworm-backports, unpacked beside the host's QEMU
// (test/fixtures/fetch-newer-qemu.sh), running real VMs under TCG: what only
// QEMU 8.2 and later can do (a clone's RAM file opened read-only), and the
// option forms newer QEMUs take (-run-with), measured on the running QEMU.
let stateDir: string;
let cacheDir: string;
let image: string;
let newer: string;

const serve = ['-p', '80', '--entrypoint', '/bin/sh', 'IMAGE', '-c', 'httpd -f -p 80 -h /www'];
function runArgs(name: string): string[] {
  return ['run', '--name', name, ...serve.map((arg) => (arg === 'IMAGE' ? image : arg))];
}

/** How QEMU `pid` holds `file` open: the access mode of each descriptor it has on it (its fdinfo's flags). */
async function openMode(pid: number, file: string): Promise<string[]> {
  const modes: string[] = [];
  for (const fd of await readdir(`/proc/${pid}/fd`)) {
    if ((await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '')) !== file) continue;
    const flags = /^flags:\s+([0-7]+)$/m.exec(await readFile(`/proc/${pid}/fdinfo/${fd}`, 'utf8'))?.[1];
    modes.push(['read-only', 'write-only', 'read-write'][Number.parseInt(flags ?? '3', 8) & 3] ?? '?');
  }
  return modes;
}

/** How QEMU `pid` maps `file`: the permissions of each mapping (rw-p: writable, private). */
async function mappings(pid: number, file: string): Promise<string[]> {
  const maps = await readFile(`/proc/${pid}/maps`, 'utf8');
  return maps
    .split('\n')
    .filter((line) => line.endsWith(` ${file}`))
    .map((line) => line.split(/\s+/)[1] ?? '');
}

/** The RAM file of the one boot template in this file's cache dir. */
async function templateRam(): Promise<string> {
  const dirs = await bootTemplates(cacheDir);
  if (dirs.length !== 1) throw new Error(`expected one boot template, found ${dirs.join(', ')}`);
  return path.join(cacheDir, 'templates', 'boot', dirs[0] as string, 'ram');
}

beforeAll(async () => {
  newer = await newerQemu();
  stateDir = await mkdtemp('/tmp/hyper-newer-qemu-');
  cacheDir = await mkdtemp('/tmp/hyper-newer-qemu-cache-');
  process.env.HYPER_STATE_DIR = stateDir;
  process.env.HYPER_CACHE_DIR = cacheDir;
  process.env.HYPER_ACCEL = 'tcg';
  process.env.HYPER_NETWORK = 'user';
  process.env.HYPER_QEMU = newer;
  image = `oci:${await busyboxLayout()}`;
});

afterEach(async () => {
  process.env.HYPER_QEMU = newer;
  for (const name of await readdir(path.join(stateDir, 'vms')).catch(() => [])) await hyper('rm', '-f', name);
});

afterAll(async () => {
  expect(await qemuProcessesUnder(stateDir)).toEqual([]);
  await rm(stateDir, { recursive: true, force: true });
  await rm(cacheDir, { recursive: true, force: true });
  for (const name of ['HYPER_STATE_DIR', 'HYPER_CACHE_DIR', 'HYPER_ACCEL', 'HYPER_NETWORK', 'HYPER_QEMU'])
    delete process.env[name];
});

test('a clone on QEMU 10 opens its template RAM read-only, writes its own copy, and runs jailed by -run-with', async () => {
  expect((await qemuVersion(newer)).version).toMatch(/^10\./);
  const made = await hyperOk(...runArgs('one'));
  expect(made.stderr).toMatch(/made a boot template for 512 MiB, 1 CPU, TCG in \d+ ms/);
  const vm = await psRow('one', { running: true });
  expect(vm.origin).toBe('boot-template');
  expect(await httpGet(`http://127.0.0.1:${vm.ports[0]?.hostPort}/`)).toContain(
    'hello from a hyper-services microVM',
  );
  const pid = vm.pid as number;
  const ram = await templateRam();
  // Opened read-only (a QEMU taken over cannot write what later clones start
  // from), and mapped writable and private: the guest's writes are its own.
  expect(await openMode(pid, ram)).toEqual(['read-only']);
  expect(await mappings(pid, ram)).toEqual(['rw-p']);
  const written = await hyperOk('exec', 'one', '--', 'sh', '-c', 'head -c 67108864 /dev/zero | md5sum');
  expect(written.stdout.split(/\s/)[0]).toBe(
    createHash('md5')
      .update(Buffer.alloc(64 * 1024 * 1024))
      .digest('hex'),
  );

  // The drop and the chroot in the form 9.1 and later take, and what they leave QEMU with.
  const cmdline = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0');
  const jail = path.join(stateDir, 'vms', 'one', 'jail');
  expect(cmdline).not.toContain('-runas');
  expect(cmdline).not.toContain('-chroot');
  if (process.getuid?.() === 0) {
    const runWith = cmdline[cmdline.indexOf('-run-with') + 1] ?? '';
    expect(runWith).toMatch(new RegExp(`^chroot=${jail},user=(\\d+):\\1$`));
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    const field = (name: string): string => new RegExp(`^${name}:\\s*(\\S+)`, 'm').exec(status)?.[1] ?? '';
    expect(field('Uid')).toBe(/user=(\d+):/.exec(runWith)?.[1]);
    expect(field('CapEff')).toBe('0000000000000000');
    expect(field('NoNewPrivs')).toBe('1');
    expect(field('Seccomp')).toBe('2');
    expect(await readlink(`/proc/${pid}/root`)).toBe(jail);
  }
});

test("a checkpoint restored on QEMU 10 opens the checkpoint's RAM read-only and comes back as it was", async () => {
  await hyperOk(...runArgs('cp'));
  const sh = async (script: string): Promise<string> =>
    (await hyperOk('exec', 'cp', '--', 'sh', '-c', script)).stdout.trim();
  await sh('echo before > /www/mark; sync');
  await hyperOk('snapshot', '--checkpoint', 'cp', 'warm');
  await sh('echo after > /www/mark; sync');
  await hyperOk('restore', 'cp', 'warm');
  const vm = await psRow('cp', { running: true });
  expect(vm.origin).toBe('checkpoint');
  expect(await sh('cat /www/mark')).toBe('before');
  expect(await httpGet(`http://127.0.0.1:${vm.ports[0]?.hostPort}/mark`)).toBe('before\n');
  const ram = path.join(stateDir, 'vms', 'cp', 'checkpoints', 'warm', 'ram');
  expect(await openMode(vm.pid as number, ram)).toEqual(['read-only']);
  expect(await mappings(vm.pid as number, ram)).toEqual(['rw-p']);
});

test("the host's QEMU opens a clone's template RAM read-only only from 8.2 on (the check above tells the two apart)", async () => {
  process.env.HYPER_QEMU = DEFAULT_QEMU;
  const { version } = await qemuVersion(DEFAULT_QEMU);
  await rm(path.join(cacheDir, 'templates'), { recursive: true, force: true });
  await hyperOk(...runArgs('host'));
  const vm = await psRow('host', { running: true });
  expect(vm.origin).toBe('boot-template');
  expect(await openMode(vm.pid as number, await templateRam())).toEqual([
    qemuAtLeast(version, 8, 2) ? 'read-only' : 'read-write',
  ]);
});
