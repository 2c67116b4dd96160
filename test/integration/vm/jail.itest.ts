import { execa } from 'execa';
import { mkdtemp, readdir, readFile, readlink, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { busyboxLayout, variantLayout } from '../../support/fixtures.js';
import { httpGet, hyper, hyperOk, psRow, qemuProcessesUnder } from '../../support/cli.js';
import { QmpClient } from '../../../src/vm/qemu/qmp.js';
import { LEASES } from '../../../src/vm/qemu/jail.js';
import { cgroupName } from '../../../src/vm/qemu/spawn.js';

// The jail, measured on real QEMUs under TCG with hyper as root (as CI runs
// it): what each QEMU is left with once it runs, read from /proc while it
// runs; what QMP can still open; and what a guest can make its QEMU take.

let stateDir: string;
let image: string;
let shell: string;
const cleanups: (() => Promise<void>)[] = [];

/** What /proc says of a process: the fields the jail sets. */
interface Confinement {
  cmdline: string;
  uid: string;
  gid: string;
  capEff: string;
  noNewPrivs: string;
  seccomp: string;
  root: string;
  cgroups: string;
}

async function confinement(pid: number): Promise<Confinement | undefined> {
  try {
    // Read before the status that shows it alive: an exited process (a
    // zombie) is in the root cgroup and has no root or command line.
    const cgroups = await readFile(`/proc/${pid}/cgroup`, 'utf8');
    const root = await readlink(`/proc/${pid}/root`);
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    const cmdline = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0').join(' ');
    const field = (name: string): string => new RegExp(`^${name}:\\s*(.*)$`, 'm').exec(status)?.[1] ?? '';
    if (!cmdline.trim() || /^[ZX]/.test(field('State'))) return undefined;
    return {
      cmdline,
      uid: field('Uid'),
      gid: field('Gid'),
      capEff: field('CapEff'),
      noNewPrivs: field('NoNewPrivs'),
      seccomp: field('Seccomp'),
      root,
      cgroups,
    };
  } catch {
    return undefined;
  }
}

/**
 * Watches every QEMU whose command line mentions `marker`, every 10 ms, and
 * keeps what it last saw of each: a QEMU opens its files as root and drops
 * after, so the last look (within 10 ms of its end) is the one that counts.
 */
function watchQemus(marker: string): { stop: () => Promise<Map<number, Confinement>> } {
  const seen = new Map<number, Confinement>();
  let running = true;
  const loop = (async () => {
    while (running) {
      for (const entry of await readdir('/proc')) {
        if (!/^\d+$/.test(entry)) continue;
        const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
        if (!cmdline.startsWith('qemu-system') || !cmdline.includes(marker)) continue;
        const now = await confinement(Number(entry));
        // Before the drop QEMU is root; a look then is replaced by a later one.
        // A look that is no longer QEMU's is dropped: slirp forks QEMU to start
        // the user-mode helper, and the child can exec between the two reads.
        if (now?.cmdline.startsWith('qemu-system')) seen.set(Number(entry), now);
      }
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      return seen;
    },
  };
}

/** The v1 or v2 cgroup line of a controller in /proc/PID/cgroup text. */
function cgroupOf(text: string, controller: string): string | undefined {
  const line = text.split('\n').find((l) => l.split(':')[1]?.split(',').includes(controller));
  return line?.split(':')[2];
}

/**
 * The files of a process's memory and pids cgroups, v1 (a hybrid host like
 * the ones here) or v2: the memory limit and the pids.
 */
async function cgroupFiles(pid: number): Promise<{ limit: string; pidsMax: string; pidsNow: string }> {
  const text = await readFile(`/proc/${pid}/cgroup`, 'utf8');
  const memory = cgroupOf(text, 'memory');
  const pids = cgroupOf(text, 'pids');
  if (memory && pids)
    return {
      limit: `/sys/fs/cgroup/memory${memory}/memory.limit_in_bytes`,
      pidsMax: `/sys/fs/cgroup/pids${pids}/pids.max`,
      pidsNow: `/sys/fs/cgroup/pids${pids}/pids.current`,
    };
  const dir = `/sys/fs/cgroup${cgroupOf(text, '') ?? ''}`;
  return {
    limit: `${dir}/memory.max`,
    pidsMax: `${dir}/pids.max`,
    pidsNow: `${dir}/pids.current`,
  };
}

/** The CPU time a process has had, user and system, in seconds (USER_HZ is 100). */
async function cpuSeconds(pid: number): Promise<number> {
  const fields = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]?.split(' ') ?? [];
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

async function readNumber(file: string): Promise<number> {
  return Number((await readFile(file, 'utf8')).trim());
}

async function subuidRange(): Promise<{ start: number; count: number }> {
  const line = (await readFile('/etc/subuid', 'utf8')).split('\n').find((l) => l.startsWith('hyper-vm:'));
  const [, start, count] = (line ?? '').split(':');
  return { start: Number(start), count: Number(count) };
}

beforeAll(async () => {
  stateDir = await mkdtemp('/tmp/hyper-jail-');
  process.env.HYPER_STATE_DIR = stateDir;
  process.env.HYPER_ACCEL = 'tcg';
  image = `oci:${await busyboxLayout()}`;
  const variant = await variantLayout(await busyboxLayout(), (config) => {
    delete config.Entrypoint;
    config.Cmd = ['sh', '-c', 'sleep 100000'];
  });
  cleanups.push(variant.cleanup);
  shell = `oci:${variant.dir}`;
});

afterEach(async () => {
  await hyper('down', '--time', '0');
  for (const name of await readdir(path.join(stateDir, 'vms')).catch(() => [])) await hyper('rm', '-f', name);
});

afterAll(async () => {
  expect(await qemuProcessesUnder(stateDir)).toEqual([]);
  // No cgroup of this file's VMs is left, in either layout.
  for (const name of ['web', 'db', 'app', 'hog']) {
    const cgroup = cgroupName('vm', path.join(stateDir, 'vms', name));
    for (const mount of ['/sys/fs/cgroup/memory/hyper', '/sys/fs/cgroup/pids/hyper', '/sys/fs/cgroup/hyper'])
      await expect(readdir(path.join(mount, cgroup))).rejects.toThrow(/ENOENT/);
  }
  // Every uid this file's VMs held is given back.
  for (const lease of await readdir(LEASES).catch(() => [] as string[]))
    expect(await readFile(path.join(LEASES, lease), 'utf8').catch(() => '')).not.toContain(stateDir);
  await rm(stateDir, { recursive: true, force: true });
  for (const cleanup of cleanups) await cleanup();
  for (const name of ['HYPER_STATE_DIR', 'HYPER_ACCEL', 'HYPER_NETWORK']) delete process.env[name];
});

const serve = (name: string, ...extra: string[]) => [
  'run',
  '--name',
  name,
  ...extra,
  '-p',
  '80',
  '--entrypoint',
  '/bin/sh',
  image,
  '-c',
  'httpd -f -p 80 -h /www',
];

test('every QEMU hyper starts (template, clone, user-mode VM and its helper, capture) runs as a VM uid of its own, with no capability, under its filter, chrooted, in its cgroup', async () => {
  const range = await subuidRange();
  expect(range.count).toBeGreaterThan(0);
  const watch = watchQemus(stateDir);
  const helpers = new Set<string>();
  // A template machine's command line names its work dir in the cache, not the state dir.
  const templates = watchQemus('.making-');
  // Bridge network: a boot template made anew, then a clone of it.
  await hyperOk(...serve('web', '--template', 'refresh'));
  const web = await psRow('web', { running: true });
  expect(web.origin).toBe('boot-template');
  expect(await httpGet(`http://127.0.0.1:${web.ports[0]?.hostPort}/`)).toContain('hello from');
  // A checkpoint goes through a capture machine, jailed with the VM.
  await hyperOk('snapshot', '--checkpoint', 'web', 'cp');
  // User networking: app reaches db by name through the helper QEMU spawns, inside the jail.
  process.env.HYPER_NETWORK = 'user';
  const compose = path.join(stateDir, 'compose.yml');
  await writeFile(
    compose,
    `services:\n  db:\n    image: ${image}\n    entrypoint: ["/bin/sh", "-c", "httpd -f -p 80 -h /www"]\n` +
      `  app:\n    image: ${shell}\n    depends_on: [db]\n`,
  );
  try {
    await hyperOk('up', '-f', compose);
    expect(
      (await hyperOk('exec', 'app', '--', 'timeout', '10', 'wget', '-q', '-O', '-', 'http://db/')).stdout,
    ).toContain('hello from');
    // A connection held open for 6 s: its helper runs meanwhile (slirp starts
    // it through a double fork, so its parent is not QEMU; its chroot tells whose it is).
    const held = hyper('exec', 'app', '--', 'sh', '-c', 'sleep 6 | nc db 80');
    const deadline = Date.now() + 6000;
    while (Date.now() < deadline && helpers.size === 0) {
      for (const entry of await readdir('/proc')) {
        const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
        if (!cmdline.startsWith('/hyper-connect')) continue;
        const seen = await confinement(Number(entry));
        if (seen?.root.startsWith(stateDir)) helpers.add(JSON.stringify(seen));
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await held;
  } finally {
    delete process.env.HYPER_NETWORK;
  }
  const seen = [...(await watch.stop()), ...(await templates.stop())];
  const qemus = seen.map(([, qemu]) => qemu);
  const kinds = qemus.map((q) =>
    q.cmdline.includes('.making-') ? 'template' : q.cmdline.includes(' -S ') ? 'capture' : 'vm',
  );
  expect(new Set(kinds)).toEqual(new Set(['template', 'capture', 'vm']));
  expect(qemus.length).toBeGreaterThanOrEqual(5);
  const uids = new Map<string, Set<string>>();
  for (const [pid, qemu] of seen) {
    const [uid] = qemu.uid.split('\t');
    expect(qemu.uid).toBe([uid, uid, uid, uid].join('\t'));
    expect(qemu.gid).toBe(qemu.uid);
    expect(Number(uid)).toBeGreaterThanOrEqual(range.start);
    expect(Number(uid)).toBeLessThan(range.start + range.count);
    expect(qemu.capEff).toBe('0000000000000000');
    expect(qemu.noNewPrivs).toBe('1');
    expect(qemu.seccomp).toBe('2');
    // Chrooted into its jail: the VM's own, or the template machine's.
    const chroot = /-chroot (\S+)/.exec(qemu.cmdline)?.[1];
    expect(chroot).toMatch(/\/jail$/);
    expect(qemu.root).toBe(chroot);
    // A template machine's jail is its own while it runs; the next one made
    // by this process (the job keeps --template refresh) has the same path.
    const jail = qemu.cmdline.includes('.making-') ? `${chroot} (pid ${pid})` : (chroot ?? '');
    uids.set(jail, (uids.get(jail) ?? new Set()).add(uid ?? ''));
    // In a cgroup of hyper's, with a memory limit.
    expect(cgroupOf(qemu.cgroups, 'memory') ?? cgroupOf(qemu.cgroups, '')).toMatch(
      /^\/hyper\/(vm|template|capture)-/,
    );
  }
  // One uid per jail, and no two jails share one. The capture machine is in
  // web's jail: it ran as web's uid.
  expect(
    [...uids].filter(([, held]) => held.size !== 1).map(([jail, held]) => `${jail}: ${[...held].join(' ')}`),
  ).toEqual([]);
  const each = [...uids.values()].map((held) => [...held][0]);
  expect(new Set(each).size).toBe(uids.size);
  expect(uids.size).toBeGreaterThanOrEqual(4);
  const webJail = path.join(stateDir, 'vms', 'web', 'jail');
  expect(qemus.filter((q) => q.root === webJail && q.cmdline.includes(' -S ')).length).toBeGreaterThan(0);
  // The helper runs as app's uid, chrooted with it, under the same filter.
  expect(helpers.size).toBeGreaterThan(0);
  for (const text of helpers) {
    const helper = JSON.parse(text) as Confinement;
    expect(helper.root).toMatch(/\/vms\/app\/jail$/);
    expect(uids.get(helper.root)).toEqual(new Set([helper.uid.split('\t')[0]]));
    expect(helper.capEff).toBe('0000000000000000');
    expect(helper.seccomp).toBe('2');
    expect(cgroupOf(helper.cgroups, 'memory') ?? cgroupOf(helper.cgroups, '')).toMatch(/^\/hyper\/vm-/);
  }
});

test("QMP cannot open a host file: not /etc/shadow, not even the VM's own disk by its path", async () => {
  await hyperOk(...serve('web'));
  const qmp = await QmpClient.connect(path.join(stateDir, 'vms', 'web', 'qmp.sock'), 5000);
  try {
    for (const file of ['/etc/shadow', path.join(stateDir, 'vms', 'web', 'rootfs.qcow2')]) {
      await expect(
        qmp.execute('blockdev-add', {
          driver: 'file',
          'node-name': 'probe',
          filename: file,
          'read-only': true,
        }),
      ).rejects.toThrow(`Could not open '${file}': No such file or directory`);
    }
  } finally {
    qmp.close();
  }
  const web = await psRow('web', { running: true });
  expect(await httpGet(`http://127.0.0.1:${web.ports[0]?.hostPort}/`)).toContain('hello from');
});

test('a guest that allocates past its RAM, and a fork bomb in a guest, stay inside its cgroup; the other service answers', async () => {
  await hyperOk(...serve('web'));
  await hyperOk('run', '-d', '--name', 'hog', '--memory', '256', shell);
  const web = await psRow('web', { running: true });
  const hog = await psRow('hog', { running: true });
  const files = await cgroupFiles(hog.pid ?? 0);
  expect(files.limit).toMatch(/\/hyper\/vm-[0-9a-f]{16}\//);
  const limit = await readNumber(files.limit);
  // 256 MiB of guest RAM, QEMU's own 192 MiB and TCG's cache bound, 256 MiB.
  expect(limit).toBe((256 + 192 + 256) * 1024 * 1024);
  expect(await readNumber(files.pidsMax)).toBe(512);

  // awk doubles a string until the guest's kernel kills it.
  const hogged = await hyper('exec', 'hog', '--', 'awk', 'BEGIN { s = "x"; while (1) s = s s }');
  // The guest's kernel killed it (137), or awk found no more memory to have.
  expect(hogged.code === 137 || /memory/i.test(hogged.stderr)).toBe(true);
  expect(await httpGet(`http://127.0.0.1:${web.ports[0]?.hostPort}/`)).toContain('hello from');
  // QEMU was not killed on the host: the guest ran out, not the host.
  expect((await psRow('hog', { running: true })).pid).toBe(hog.pid);

  // A fork bomb, left to run for 8 s while the other service is asked.
  const bomb = execa(
    process.execPath,
    [path.resolve('dist/cli/index.js'), 'exec', 'hog', '--', 'sh', '-c', 'b() { b | b & }; b'],
    { reject: false, env: { HYPER_STATE_DIR: stateDir, HYPER_ACCEL: 'tcg' } },
  );
  const cpuBefore = await cpuSeconds(hog.pid ?? 0);
  const threads: number[] = [];
  const until = Date.now() + 8000;
  while (Date.now() < until) {
    threads.push(await readNumber(files.pidsNow));
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  expect(await httpGet(`http://127.0.0.1:${web.ports[0]?.hostPort}/`)).toContain('hello from');
  // The guest's thousands of processes are the guest's: on the host, hog's
  // cgroup holds QEMU's threads, a handful (its I/O pool has 64 at most).
  expect(Math.max(...threads)).toBeLessThan(128);
  // The bomb kept hog's vCPU busy all along (an idle TCG guest takes a few
  // percent of a core): it ran while the other service answered.
  expect((await cpuSeconds(hog.pid ?? 0)) - cpuBefore).toBeGreaterThan(1);
  expect((await psRow('hog', { running: true })).pid).toBe(hog.pid);
  await hyperOk('rm', '-f', 'hog');
  bomb.kill('SIGKILL');
  await bomb;
  // Its cgroup went with it.
  await expect(readFile(files.limit, 'utf8')).rejects.toThrow(/ENOENT/);
  expect(await httpGet(`http://127.0.0.1:${web.ports[0]?.hostPort}/`)).toContain('hello from');
});

/**
 * The directory of a process's cgroup for `controller` in /proc/PID/cgroup
 * text: its v1 hierarchy's, or the v2 one where the host has no v1 one.
 */
function cgroupDir(text: string, controller: 'memory' | 'pids' | 'cpu'): string {
  const v1 = cgroupOf(text, controller);
  if (v1 !== undefined) return path.join('/sys/fs/cgroup', controller, v1);
  return path.join('/sys/fs/cgroup', cgroupOf(text, '') ?? '/');
}

test("HYPER_CGROUP_PARENT relative, as the shipped unit sets it: the VM's cgroup is inside hyper's own, and goes with the VM", async () => {
  // hyper runs in a cgroup made for it here, below this test's own in each
  // hierarchy, as systemd gives a service with Delegate=yes one of its own.
  const mine = await readFile('/proc/self/cgroup', 'utf8');
  const controllers = ['memory', 'pids', 'cpu'] as const;
  const owns = [
    ...new Set(controllers.map((c) => path.join(cgroupDir(mine, c), `hyper-itest-${process.pid}`))),
  ];
  const delegated = (...args: string[]) =>
    execa(
      'sh',
      [
        '-c',
        // On v2, once the first hyper has made its cgroup hand controllers down, a later one joins it in supervisor/.
        'for dir in $OWN_CGROUPS; do mkdir -p "$dir" && { echo $$ > "$dir/cgroup.procs" || echo $$ > "$dir/supervisor/cgroup.procs"; } || exit 1; done; exec "$@"',
        'sh',
        process.execPath,
        path.resolve('dist/cli/index.js'),
        ...args,
      ],
      { env: { OWN_CGROUPS: owns.join(' '), HYPER_CGROUP_PARENT: 'vms' }, reject: false },
    );
  try {
    const started = await delegated('run', '--name', 'deleg', '-m', '128', shell);
    expect(started.stderr).not.toMatch(/not bounded/);
    expect(started.exitCode).toBe(0);
    const { pid } = await psRow('deleg', { running: true });
    const qemu = await readFile(`/proc/${pid}/cgroup`, 'utf8');
    const vm = cgroupName('vm', path.join(stateDir, 'vms', 'deleg'));
    for (const controller of controllers) {
      const own = path.join(cgroupDir(mine, controller), `hyper-itest-${process.pid}`);
      expect(cgroupDir(qemu, controller)).toBe(path.join(own, 'vms', vm));
    }
    const { limit } = await cgroupFiles(pid!);
    expect(await readNumber(limit)).toBeLessThan(1024 * 1024 * 1024);

    const removed = await delegated('rm', '-f', 'deleg');
    expect(removed.exitCode).toBe(0);
    for (const own of owns) await expect(readdir(path.join(own, 'vms', vm))).rejects.toThrow(/ENOENT/);

    // A parent that is not a plain path is refused, and nothing boots.
    process.env.HYPER_CGROUP_PARENT = '../vms';
    const refused = await hyper('run', '--name', 'bad', shell);
    expect(refused.stderr).toBe(
      'hyper run: HYPER_CGROUP_PARENT "../vms": give cgroup names between slashes, with no "." or ".." and no empty name\n',
    );
    expect(refused.code).toBe(125);
    expect(await readdir(path.join(stateDir, 'vms'))).not.toContain('bad');
  } finally {
    delete process.env.HYPER_CGROUP_PARENT;
    await delegated('rm', '-f', 'deleg');
    // Deepest first: a v2 host has supervisor/ too, where hyper moved itself.
    for (const own of owns)
      for (const dir of [path.join(own, 'vms'), path.join(own, 'supervisor'), own])
        await execa('rmdir', [dir], { reject: false });
  }
});
