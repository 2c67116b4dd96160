import { execa } from 'execa';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { hyper, hyperOk, qemuProcessesUnder } from '../../support/cli.js';
import { snapshotEnv } from '../../support/env.js';
import { psql, until } from '../../support/postgres.js';
import { serviceImageLayouts } from '../../support/fixtures.js';
import { pushLayout } from '../../support/registry/push-layout.js';
import { startRegistry, type TestRegistry } from '../../support/registry/registry.js';
import { mountTmpfs } from '../../support/images/tmpfs.js';

// Volumes, snapshots and checkpoints through the CLI, on real VMs booted from
// the Debian-built postgres and redis images served by a real registry. The
// host reaches the services with psql and redis-cli on published ports.
let registry: TestRegistry;
let stateDir: string;
let work: string;
let postgres: string;
let redis: string;
const restoreEnv = snapshotEnv();

beforeAll(async () => {
  process.env.HYPER_ACCEL = 'tcg';
  const layouts = await serviceImageLayouts();
  registry = await startRegistry({ auth: 'anonymous' });
  postgres = await pushLayout(registry, layouts.postgres, 'test/postgres', '15');
  redis = await pushLayout(registry, layouts.redis, 'test/redis', '7');
  stateDir = await mkdtemp('/tmp/hyper-st-');
  work = await mkdtemp('/tmp/hyper-st-work-');
  process.env.HYPER_STATE_DIR = stateDir;
});

afterAll(async () => {
  for (const name of await readdir(path.join(stateDir, 'vms')).catch(() => [])) await hyper('rm', '-f', name);
  expect(await qemuProcessesUnder(stateDir)).toEqual([]);
  await registry?.stop();
  await rm(stateDir, { recursive: true, force: true });
  await rm(work, { recursive: true, force: true });
  restoreEnv();
});

async function hostPort(name: string): Promise<string> {
  const ps = JSON.parse((await hyperOk('ps', '--json')).stdout) as {
    name: string;
    ports: { hostPort: number }[];
  }[];
  return String(ps.find((p) => p.name === name)?.ports[0]?.hostPort);
}

/** Boots postgres with the given extra run flags and waits until it answers; returns its host port. */
async function startPostgres(name: string, ...flags: string[]): Promise<string> {
  await hyperOk('run', '--name', name, '-m', '256', '-p', '5432', ...flags, postgres);
  const port = await hostPort(name);
  await until(`${name} answering`, () => psql(port, 'select 1'));
  return port;
}

const count = (port: string) => psql(port, 'select count(*) from t');

describe('postgres with a named volume', () => {
  let port: string;
  beforeAll(async () => {
    port = await startPostgres('pg', '-v', 'pgdata:/var/lib/postgresql/data');
    await psql(port, 'create table t (id int primary key); insert into t select generate_series(1, 1000)');
  });

  test("the volume took the image's owner and mode for the data dir, as Docker's copy-up does", async () => {
    const result = await hyperOk('exec', 'pg', '--', 'stat', '-c', '%U %a', '/var/lib/postgresql/data');
    expect(result.stdout.trim()).toBe('postgres 700');
    const mounts = await hyperOk('exec', 'pg', '--', 'cat', '/proc/mounts');
    expect(mounts.stdout).toMatch(/^\/dev\/vd\w+ \/var\/lib\/postgresql\/data ext4 rw/m);
  });

  test('volume snapshot round trip: 1000 rows, snapshot, delete, restore, 1000 rows', async () => {
    const taken = await hyperOk('snapshot', 'pg', 'seeded');
    expect(taken.stdout).toBe('seeded\n');
    expect(taken.stderr).toMatch(/pg: volume snapshot seeded in \d+ ms/);
    await psql(port, 'delete from t');
    expect(await count(port)).toBe('0');
    const restored = await hyperOk('restore', 'pg', 'seeded');
    expect(restored.stderr).toMatch(/pg: restored seeded in \d+ ms/);
    // Same published port after the reboot.
    expect(await hostPort('pg')).toBe(port);
    expect(await until('pg after restore', () => count(port))).toBe('1000');
  });

  test('checkpoint round trip: the rows come back without a reboot', async () => {
    await hyperOk('snapshot', '--checkpoint', 'pg', 'warm');
    await psql(port, 'delete from t where id > 10');
    expect(await count(port)).toBe('10');
    const pid = JSON.parse((await hyperOk('ps', '--json')).stdout)[0].pid;
    await hyperOk('restore', 'pg', 'warm');
    expect(await until('pg after checkpoint restore', () => count(port))).toBe('1000');
    // Restored in place on the same port, by a new QEMU that maps the checkpoint's RAM file copy-on-write.
    const after = JSON.parse((await hyperOk('ps', '--json')).stdout)[0];
    expect(after.pid).not.toBe(pid);
    expect(after.origin).toBe('checkpoint');
    const ram = path.join(stateDir, 'vms', 'pg', 'checkpoints', 'warm', 'ram');
    // "rw-p": a private mapping, so the guest's writes never reach the file.
    expect(await readFile(`/proc/${after.pid}/maps`, 'utf8')).toMatch(new RegExp(` rw-p .* ${ram}$`, 'm'));
  });

  test('snapshots lists both; snapshot rm removes one', async () => {
    const list = JSON.parse((await hyperOk('snapshots', '--json', 'pg')).stdout) as {
      name: string;
      kind: string;
    }[];
    expect(list.map((s) => [s.name, s.kind])).toEqual([
      ['seeded', 'volumes'],
      ['warm', 'checkpoint'],
    ]);
    await hyperOk('snapshot', 'rm', 'pg', 'warm');
    const after = JSON.parse((await hyperOk('snapshots', '--json')).stdout) as { name: string }[];
    expect(after.map((s) => s.name)).toEqual(['seeded']);
  });

  test('a snapshot under load holds an unbroken prefix of committed rows, and postgres starts cleanly from it', async () => {
    await psql(port, 'create table load (id int primary key)');
    const writer = execa(
      'sh',
      [
        '-c',
        `i=1; while psql -h 127.0.0.1 -p ${port} -U postgres -qtAc "insert into load values ($i)"; do i=$((i+1)); done`,
      ],
      { reject: false },
    );
    await until('rows arriving', async () => {
      if (Number(await psql(port, 'select count(*) from load')) < 20) throw new Error('not yet');
    });
    await hyperOk('snapshot', 'pg', 'busy');
    await until('more rows after the snapshot', async () => {
      if (Number(await psql(port, 'select count(*) from load')) < 40) throw new Error('not yet');
    });
    await hyperOk('restore', 'pg', 'busy');
    writer.kill();
    await writer;
    const [rows, max, min] = (
      await until('pg after restore', () => psql(port, 'select count(*), max(id), min(id) from load'))
    ).split('|');
    expect(Number(rows)).toBeGreaterThanOrEqual(20);
    expect(max).toBe(rows);
    expect(min).toBe('1');
    const log = await serviceLog('pg');
    expect(log).toMatch(/database system is ready to accept connections[\s\S]*database system is ready/);
  });

  test('bad input: each case has a clear message and changes nothing', async () => {
    expect((await hyper('snapshot', 'nope')).stderr).toBe('hyper snapshot: no such VM: nope\n');
    const twice = await hyper('snapshot', 'pg', 'seeded');
    expect(twice.code).toBe(125);
    expect(twice.stderr).toBe(
      'hyper snapshot: pg already has a snapshot named "seeded"; remove it with "hyper snapshot rm pg seeded" or choose another name\n',
    );
    const unknown = await hyper('restore', 'pg', 'never');
    expect(unknown.stderr).toBe(
      'hyper restore: pg has no snapshot named "never" (snapshots: seeded, busy)\n',
    );
    expect(await psql(port, 'select count(*) from t')).toBe('1000');
  });

  test('a guest agent that does not answer: the snapshot fails at once and the volume is not left frozen', async () => {
    // Stop qemu-ga for 20 s from inside the guest (as root), detached from the exec.
    await hyperOk(
      'exec',
      '-u',
      'root',
      'pg',
      '--',
      'sh',
      '-c',
      'for p in /proc/[0-9]*; do [ "$(cat $p/comm 2>/dev/null)" = qemu-ga ] && q=${p#/proc/}; done; ' +
        '(sleep 1; kill -STOP $q; sleep 20; kill -CONT $q) >/dev/null 2>&1 &',
    );
    await new Promise((resolve) => setTimeout(resolve, 2000));
    const failed = await hyper('snapshot', '--timeout', '2', 'pg', 'stuck');
    expect(failed.code).toBe(125);
    expect(failed.stderr).toMatch(
      /^hyper snapshot: snapshot "stuck" of pg failed: cannot freeze the guest's filesystems: the guest agent did not answer within 2000 ms .*; no snapshot was taken and nothing was frozen; nothing was kept\n$/,
    );
    // Postgres can still commit (fsync) to the volume: it is not frozen.
    await psql(port, 'insert into t values (1001)');
    expect(await count(port)).toBe('1001');
    const list = JSON.parse((await hyperOk('snapshots', '--json', 'pg')).stdout) as { name: string }[];
    expect(list.map((s) => s.name)).not.toContain('stuck');
    // Let the agent come back before the next test uses it.
    await until('agent back', () => hyperOk('exec', 'pg', '--', 'true'), 60_000);
  });

  test('after stop and start the named volume still holds the data', async () => {
    await hyperOk('stop', 'pg');
    const started = await hyperOk('start', 'pg');
    expect(started.stderr).toMatch(/pg: running after \d+ ms/);
    expect(await until('pg after start', () => count(port))).toBe('1001');
  });

  test('the volume outlives the VM: a new VM with it sees the data; two running VMs cannot share it', async () => {
    const shared = await hyper('run', '--name', 'pg2', '-v', 'pgdata:/var/lib/postgresql/data', postgres);
    expect(shared.stderr).toContain(
      'volume pgdata is in use by pg; a volume can be attached to one running VM at a time',
    );
    await hyperOk('rm', '-f', 'pg');
    const again = await startPostgres('pg3', '-v', 'pgdata:/var/lib/postgresql/data');
    expect(await count(again)).toBe('1001');
    await hyperOk('rm', '-f', 'pg3');
  });
});

test('redis without persistence: a key set before a checkpoint and deleted after it is back after the restore', async () => {
  await hyperOk('run', '--name', 'cache', '-m', '256', '-p', '6379', redis);
  const port = await hostPort('cache');
  const cli = async (...args: string[]) =>
    (await execa('redis-cli', ['-h', '127.0.0.1', '-p', port, ...args], { timeout: 30_000 })).stdout;
  await until('redis answering', async () => {
    if ((await cli('PING')) !== 'PONG') throw new Error('no PONG');
  });
  expect(await cli('CONFIG', 'GET', 'save')).toMatch(/^save\n?$/);
  await cli('SET', 'greeting', 'from-memory');
  // No volumes: a plain snapshot has nothing to take.
  expect((await hyper('snapshot', 'cache', 'x')).stderr).toBe(
    'hyper snapshot: cache has no writable volumes to snapshot; use "hyper snapshot --checkpoint cache" for the whole VM\n',
  );
  await hyperOk('snapshot', '--checkpoint', 'cache', 'mem');
  await cli('DEL', 'greeting');
  expect(await cli('GET', 'greeting')).toBe('');
  await hyperOk('restore', 'cache', 'mem');
  expect(await cli('GET', 'greeting')).toBe('from-memory');
  // Each restore reseeds the guest's RNG: two restores of one checkpoint draw different bytes.
  const urandom = async () =>
    (await hyperOk('exec', 'cache', '--', 'od', '-An', '-tx1', '-N32', '/dev/urandom')).stdout;
  const first = await urandom();
  await hyperOk('restore', 'cache', 'mem');
  const second = await urandom();
  expect(second).not.toBe(first);

  // A VM recorded by an earlier hyper-services (no controlReader: its init kept no reader on the
  // control port) resumes through the guest agent, reseeded all the same.
  const recordFile = path.join(stateDir, 'vms', 'cache', 'vm.json');
  const record = JSON.parse(await readFile(recordFile, 'utf8'));
  expect(record.machine.controlReader).toBe(true);
  delete record.machine.controlReader;
  await writeFile(recordFile, JSON.stringify(record));
  await hyperOk('restore', 'cache', 'mem');
  expect(await cli('GET', 'greeting')).toBe('from-memory');
  expect(await urandom()).not.toBe(second);

  // A stopped VM resumes from the checkpoint instead of booting.
  await hyperOk('stop', 'cache');
  await hyperOk('restore', 'cache', 'mem');
  expect(await until('redis resumed', () => cli('GET', 'greeting'))).toBe('from-memory');

  // Removing a checkpoint of a stopped VM deletes it from the disk files themselves, and its RAM.
  await hyperOk('stop', 'cache');
  await hyperOk('snapshot', 'rm', 'cache', 'mem');
  const root = path.join(stateDir, 'vms', 'cache', 'rootfs.qcow2');
  const info = JSON.parse((await execa('qemu-img', ['info', '-U', '--output=json', root])).stdout);
  expect(info.snapshots ?? []).toEqual([]);
  expect(await readdir(path.join(stateDir, 'vms', 'cache', 'checkpoints'))).toEqual([]);

  // A checkpoint listed as taken by an earlier hyper-services (its RAM inside the root disk) is refused.
  const list = path.join(stateDir, 'vms', 'cache', 'snapshots.json');
  await writeFile(
    list,
    JSON.stringify([
      { name: 'old', kind: 'checkpoint', createdAt: '', disks: ['rootfs'], bundle: '', qemu: '', tookMs: 1 },
    ]),
  );
  expect((await hyper('restore', 'cache', 'old')).stderr).toBe(
    'hyper restore: cannot restore: checkpoint "old" was taken by an earlier hyper-services, which kept the RAM inside the root disk; this one loads only checkpoints with the RAM in a file of its own: take the checkpoint again\n',
  );
  await hyperOk('rm', '-f', 'cache');
});

test('a host directory mounted read-only: the init SQL in it is applied by the entrypoint', async () => {
  const initdb = path.join(work, 'db', 'init');
  await mkdir(initdb, { recursive: true });
  await writeFile(
    path.join(initdb, '01-schema.sql'),
    "create table seeded (note text);\ninsert into seeded values ('from the repository');\n",
  );
  const cwd = process.cwd();
  process.chdir(work);
  try {
    const port = await startPostgres('pginit', '-v', './db/init:/docker-entrypoint-initdb.d:ro');
    expect(await psql(port, 'select note from seeded')).toBe('from the repository');
    const write = await hyper('exec', '-u', 'root', 'pginit', '--', 'touch', '/docker-entrypoint-initdb.d/x');
    expect(write.code).not.toBe(0);
    expect(write.stderr).toContain('Read-only file system');
    expect(await serviceLog('pginit')).toContain('applying /docker-entrypoint-initdb.d/01-schema.sql');
    // A live share keeps it from ever being a template or checkpoint, so it hands its free pages back:
    // the guest's balloon driver negotiated VIRTIO_BALLOON_F_REPORTING (feature bit 5).
    const features = await hyper(
      'exec',
      'pginit',
      '--',
      'sh',
      '-c',
      'cat /sys/bus/virtio/drivers/virtio_balloon/virtio*/features',
    );
    expect(features.stderr).toBe('');
    expect(features.stdout.trim()[5]).toBe('1');
  } finally {
    process.chdir(cwd);
    await hyper('rm', '-f', 'pginit');
  }
});

test('bad mounts are refused before anything boots, naming the problem', async () => {
  const missing = await hyper('run', '--name', 'bad', '-v', '/no/such/dir:/data', redis);
  expect(missing.stderr).toBe('hyper run: host path /no/such/dir (for /data) does not exist\n');
  const relative = await hyper('run', '--name', 'bad', '-v', 'data:relative', redis);
  expect(relative.stderr).toBe(
    'hyper run: volume "data:relative": the path in the container must be absolute, not "relative"\n',
  );
  const mode = await hyper('run', '--name', 'bad', '-v', 'data:/data:rx', redis);
  expect(mode.stderr).toBe('hyper run: volume "data:/data:rx": unknown mode "rx"; use ro or rw\n');
  const twice = await hyper('run', '--name', 'bad', '-v', 'a1:/data', '-v', 'b1:/data', redis);
  expect(twice.stderr).toBe('hyper run: two mounts on /data; give each path once\n');
  expect(await readdir(path.join(stateDir, 'vms'))).not.toContain('bad');
  expect(await readdir(path.join(stateDir, 'volumes')).catch(() => [])).not.toContain('a1.qcow2');
});

test('a disk too full for a checkpoint: the snapshot fails with the reason, nothing is kept, the service and its volume are intact', async () => {
  const full = await mkdtemp('/tmp/hyper-st-full-');
  const tmpfs = await mountTmpfs(full, 512);
  const previous = process.env.HYPER_STATE_DIR;
  process.env.HYPER_STATE_DIR = full;
  try {
    await hyperOk(
      'run',
      '--name',
      'tight',
      '-m',
      '256',
      '-p',
      '6379',
      '-u',
      'root',
      '-w',
      '/data',
      '-v',
      'rdata:/data',
      redis,
    );
    const port = await hostPort('tight');
    const cli = async (...args: string[]) =>
      (await execa('redis-cli', ['-h', '127.0.0.1', '-p', port, ...args], { timeout: 30_000 })).stdout;
    await until('redis answering', async () => {
      if ((await cli('PING')) !== 'PONG') throw new Error('no PONG');
    });
    await cli('SET', 'kept', 'yes');
    await cli('SAVE');
    // Nothing left dirty in the guest: a writeback that lands while the host
    // disk is full would pause the VM (QEMU stops a guest on ENOSPC), and
    // what is tested here is the checkpoint's own failure.
    await hyperOk('exec', 'tight', '--', 'sync');
    // Leave 4 MiB free: far less than the guest's RAM a checkpoint writes.
    const used = Number((await execa('du', ['-s', '-m', full])).stdout.split('\t')[0]);
    await execa('mount', ['-o', `remount,size=${used + 4}m`, full]);
    const failed = await hyper('snapshot', '--checkpoint', 'tight', 'big');
    expect(failed.code).toBe(125);
    expect(failed.stderr).toMatch(
      /^hyper snapshot: snapshot "big" of tight failed: the RAM could not be written to \S+\/vms\/tight\/checkpoints\/big\.partial-\d+\/ram \(migration failed: .*\) \(the disk holding \S+ has \d MiB free; a checkpoint writes up to the VM's 256 MiB of RAM\); nothing was kept\n$/,
    );
    expect(JSON.parse((await hyperOk('snapshots', '--json', 'tight')).stdout)).toEqual([]);
    expect(await cli('GET', 'kept')).toBe('yes');
    await execa('mount', ['-o', 'remount,size=512m', full]);
    const vms = path.join(full, 'vms', 'tight');
    for (const disk of [path.join(vms, 'rootfs.qcow2'), path.join(full, 'volumes', 'rdata.qcow2')]) {
      const listing = await execa('qemu-img', ['snapshot', '-l', '-U', disk]);
      expect(listing.stdout).toBe('');
    }
    const data = await hyperOk('exec', 'tight', '--', 'ls', '/data');
    expect(data.stdout).toContain('dump.rdb');
    // No half-written RAM file, and no capture machine's sockets.
    expect(await readdir(path.join(vms, 'checkpoints')).catch(() => [])).toEqual([]);
    expect((await readdir(tmpdir())).filter((n) => n.startsWith('hyper-capture-'))).toEqual([]);
  } finally {
    await hyper('rm', '-f', 'tight');
    process.env.HYPER_STATE_DIR = previous;
    const left = await qemuProcessesUnder(full);
    // The mount goes whatever the checks say: a failed test leaves no tmpfs behind.
    await tmpfs.unmount();
    await rm(full, { recursive: true, force: true });
    expect(left).toEqual([]);
  }
});

/** The service's log, both streams (postgres writes its log to stderr), as `hyper logs` prints them. */
async function serviceLog(name: string): Promise<string> {
  const result = await hyperOk('logs', name);
  return result.stdout + result.stderr;
}
