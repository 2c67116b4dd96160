import { execa } from 'execa';
import { cp, mkdtemp, open, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { busyboxLayout } from '../../support/fixtures.js';
import { bootTemplates } from '../../support/templates.js';
import { httpGet, hyper, hyperOk, psRow, qemuProcessesUnder } from '../../support/cli.js';

// Real QEMU under TCG, real boot templates saved with x-ignore-shared and
// real clones of them, in a cache dir of this file's own (the images are
// built into it again from the busybox layout).
let stateDir: string;
let cacheDir: string;
let image: string;

async function sh(name: string, script: string): Promise<string> {
  return (await hyperOk('exec', name, '--', 'sh', '-c', script)).stdout.trim();
}

function templateRoot(): string {
  return path.join(cacheDir, 'templates', 'boot');
}

function templates(): Promise<string[]> {
  return bootTemplates(cacheDir);
}

const serve = ['-p', '80', '--entrypoint', '/bin/sh', 'IMAGE', '-c', 'httpd -f -p 80 -h /www'];
function runArgs(name: string, ...extra: string[]): string[] {
  return ['run', '--name', name, ...extra, ...serve.map((arg) => (arg === 'IMAGE' ? image : arg))];
}

beforeAll(async () => {
  stateDir = await mkdtemp('/tmp/hyper-tpl-');
  cacheDir = await mkdtemp('/tmp/hyper-tpl-cache-');
  process.env.HYPER_STATE_DIR = stateDir;
  process.env.HYPER_CACHE_DIR = cacheDir;
  process.env.HYPER_ACCEL = 'tcg';
  process.env.HYPER_NETWORK = 'user';
  image = `oci:${await busyboxLayout()}`;
});

afterEach(async () => {
  for (const name of await readdir(path.join(stateDir, 'vms')).catch(() => [])) await hyper('rm', '-f', name);
});

afterAll(async () => {
  expect(await qemuProcessesUnder(stateDir)).toEqual([]);
  // Nothing half-made is left: only whole templates (a dir with its meta.json).
  for (const name of await readdir(templateRoot()).catch(() => [] as string[]))
    expect((await readdir(path.join(templateRoot(), name))).sort()).toEqual([
      'console.log',
      'meta.json',
      'qemu.log',
      'ram',
      'state',
    ]);
  await rm(stateDir, { recursive: true, force: true });
  await rm(cacheDir, { recursive: true, force: true });
  for (const name of ['HYPER_STATE_DIR', 'HYPER_CACHE_DIR', 'HYPER_ACCEL', 'HYPER_NETWORK'])
    delete process.env[name];
});

test('two clones of one template serve at once, each with its own identity, clock and RNG; stopping one leaves the other', async () => {
  const first = await hyperOk(...runArgs('one'));
  expect(first.stderr).toMatch(/made a boot template for 512 MiB, 1 CPU, TCG in \d+ ms/);
  const second = await hyperOk(...runArgs('two'));
  expect(second.stderr).not.toContain('made a boot template');
  expect(await templates()).toHaveLength(1);

  for (const name of ['one', 'two']) {
    const vm = await psRow(name);
    expect(vm).toMatchObject({ state: 'running', origin: 'boot-template' });
    expect(await httpGet(`http://127.0.0.1:${vm.ports[0]?.hostPort}/`)).toContain(
      'hello from a hyper-services microVM',
    );
  }
  // Both map the one template's RAM file, privately.
  const ram = path.join(templateRoot(), (await templates())[0] ?? '', 'ram');
  for (const name of ['one', 'two']) {
    const maps = await readFile(`/proc/${(await psRow(name)).pid}/maps`, 'utf8');
    expect(
      maps
        .split('\n')
        .filter((line) => line.endsWith(ram))
        .map((line) => line.split(/\s+/)[1]),
    ).toEqual(['rw-p']);
  }

  // The template's pages are shared: resident pages of its RAM file that the other clone maps too.
  for (const name of ['one', 'two']) {
    const smaps = await readFile(`/proc/${(await psRow(name)).pid}/smaps`, 'utf8');
    const block = smaps.slice(smaps.indexOf(ram)).split(/\n(?=[0-9a-f]+-[0-9a-f]+ )/)[0] ?? '';
    // Dirty while the new file's pages are not yet written back, clean after.
    const shared = ['Shared_Clean', 'Shared_Dirty'].map((field) =>
      Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(block)?.[1]),
    );
    expect(shared.every(Number.isInteger)).toBe(true);
    expect((shared[0] ?? 0) + (shared[1] ?? 0)).toBeGreaterThan(1024);
    const memory = (await psRow(name)).memory;
    expect(memory?.ownMiB).toBeGreaterThan(0);
    expect(memory?.pssMiB).toBeLessThan(memory?.rssMiB ?? 0);
    expect(memory?.ownMiB).toBeLessThan(memory?.rssMiB ?? 0);
  }

  const identity =
    'hostname; cat /proc/sys/kernel/random/boot_id; head -c 32 /dev/urandom | od -An -tx1 | tr -d " \\n"; echo; date +%s';
  const [one, two] = [(await sh('one', identity)).split('\n'), (await sh('two', identity)).split('\n')];
  expect(one[0]).toBe('one');
  expect(two[0]).toBe('two');
  expect(one[1]).toMatch(/^[0-9a-f-]{36}$/);
  expect(one[1]).not.toBe(two[1]);
  expect(one[2]).toMatch(/^[0-9a-f]{64}$/);
  expect(one[2]).not.toBe(two[2]);
  // The template was saved minutes or seconds ago; each clone's clock is the host's now.
  for (const seconds of [one[3], two[3]])
    expect(Math.abs(Number(seconds) - Date.now() / 1000)).toBeLessThan(30);
  expect(await sh('one', 'cat /etc/hosts')).toContain('one');

  await hyperOk('stop', 'one');
  expect(await httpGet(`http://127.0.0.1:${(await psRow('two')).ports[0]?.hostPort}/`)).toContain('hello');
  expect(await sh('two', 'echo still here')).toBe('still here');
});

test('--template off boots in full; refresh makes a new template first', async () => {
  const off = await hyperOk(...runArgs('full', '--template', 'off'));
  expect(off.stderr).not.toContain('boot template');
  expect((await psRow('full')).origin).toBe('boot');
  const before = await templates();
  const refresh = await hyperOk(...runArgs('fresh', '--template', 'refresh'));
  expect(refresh.stderr).toContain('(refresh asked for)');
  expect((await psRow('fresh')).origin).toBe('boot-template');
  expect(await templates()).toEqual(before);
});

test('a template made for another guest bundle or QEMU is never used: a new one is made, and the log says why', async () => {
  const [current] = await templates();
  if (!current) throw new Error('no template from the tests before');
  // The same shape, made (so its meta says) by another bundle and another QEMU.
  const foreign = path.join(templateRoot(), current.replace(/[0-9a-f]{16}$/, '0'.repeat(16)));
  await cp(path.join(templateRoot(), current), foreign, { recursive: true });
  const meta = JSON.parse(await readFile(path.join(foreign, 'meta.json'), 'utf8')) as {
    identity: { bundle: string; qemu: string };
  };
  const bundle = meta.identity.bundle;
  meta.identity.bundle = 'ffffffffffffffff';
  meta.identity.qemu = 'QEMU emulator version 6.2.0';
  await writeFile(path.join(foreign, 'meta.json'), JSON.stringify(meta));
  await rm(path.join(templateRoot(), current), { recursive: true });

  const run = await hyperOk(...runArgs('rebuilt'));
  expect(run.stderr).toContain(
    `the boot template ${foreign} was made for another machine (bundle ffffffffffffffff -> ${bundle}; qemu QEMU emulator version 6.2.0 -> `,
  );
  expect(run.stderr).toMatch(/made a boot template for 512 MiB, 1 CPU, TCG/);
  expect((await psRow('rebuilt')).origin).toBe('boot-template');
  // The foreign one, which no VM maps, went when its replacement was made.
  expect(await templates()).toEqual([current]);
});

test('a damaged template is refused and removed, the VM boots in full, and the log says so', async () => {
  const [current] = await templates();
  if (!current) throw new Error('no template from the tests before');
  const state = path.join(templateRoot(), current, 'state');
  const handle = await open(state, 'r+');
  await handle.write(Buffer.from('damaged'), 0, 7, 4096);
  await handle.close();

  const run = await hyperOk(...runArgs('after-damage'));
  expect(run.stderr).toContain(
    `warning: after-damage: no boot template, booting in full: the boot template ${path.join(templateRoot(), current)} was refused and removed: its device state is not what was saved (digest differs)`,
  );
  expect((await psRow('after-damage')).origin).toBe('boot');
  expect(await httpGet(`http://127.0.0.1:${(await psRow('after-damage')).ports[0]?.hostPort}/`)).toContain(
    'hello',
  );
  expect(await templates()).toEqual([]);
});

test('two processes that need the same missing template make it once, under a lock', async () => {
  const cli = path.resolve('dist/cli/index.js');
  const [a, b] = await Promise.all(
    ['racer-a', 'racer-b'].map((name) => execa(process.execPath, [cli, ...runArgs(name)], { reject: false })),
  );
  expect([a?.exitCode, b?.exitCode]).toEqual([0, 0]);
  const made = `${a?.stderr}\n${b?.stderr}`.match(/made a boot template/g) ?? [];
  expect(made).toHaveLength(1);
  expect((await psRow('racer-a')).origin).toBe('boot-template');
  expect((await psRow('racer-b')).origin).toBe('boot-template');
  expect(await templates()).toHaveLength(1);
});
