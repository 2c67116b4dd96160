import { execa } from 'execa';
import { mkdir, mkdtemp, open, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import * as tar from 'tar';
import { hyper, hyperOk, qemuProcessesUnder } from '../../support/cli.js';
import { snapshotEnv } from '../../support/env.js';
import { psql, until } from '../../support/postgres.js';
import { serviceImageLayouts } from '../../support/fixtures.js';
import { mountTmpfs } from '../../support/images/tmpfs.js';
import { pushLayout } from '../../support/registry/push-layout.js';
import { startRegistry, type TestRegistry } from '../../support/registry/registry.js';

// hyper export / import: a snapshot carried to another state dir (another
// machine, or a later run), on real VMs booted from the Debian-built postgres
// image served by a real registry. The host reaches postgres with psql.
let registry: TestRegistry;
let here: string;
let there: string;
let work: string;
let postgres: string;
const restoreEnv = snapshotEnv();

beforeAll(async () => {
  process.env.HYPER_ACCEL = 'tcg';
  const layouts = await serviceImageLayouts();
  registry = await startRegistry({ auth: 'anonymous' });
  postgres = await pushLayout(registry, layouts.postgres, 'test/postgres', '15');
  here = await mkdtemp('/tmp/hyper-xf-here-');
  there = await mkdtemp('/tmp/hyper-xf-there-');
  work = await mkdtemp('/tmp/hyper-xf-work-');
  process.env.HYPER_STATE_DIR = here;
});

afterAll(async () => {
  for (const dir of [here, there]) {
    process.env.HYPER_STATE_DIR = dir;
    for (const name of await readdir(path.join(dir, 'vms')).catch(() => [])) await hyper('rm', '-f', name);
    expect(await qemuProcessesUnder(dir)).toEqual([]);
  }
  await registry?.stop();
  for (const dir of [here, there, work]) await rm(dir, { recursive: true, force: true });
  restoreEnv();
});

/** Runs `hyper` against one state dir (one "machine"). */
async function on(dir: string, ...argv: string[]) {
  process.env.HYPER_STATE_DIR = dir;
  return hyperOk(...argv);
}

async function hostPort(dir: string, name: string): Promise<string> {
  const ps = JSON.parse((await on(dir, 'ps', '--json')).stdout) as {
    name: string;
    ports: { hostPort: number }[];
  }[];
  return String(ps.find((p) => p.name === name)?.ports[0]?.hostPort);
}

const count = (port: string) => psql(port, 'select count(*) from t');

/** What a failed import must not leave: a VM, a volume, or scratch files in the state dir. */
async function leftovers(dir: string): Promise<string[]> {
  const found: string[] = [];
  for (const sub of ['vms', 'volumes', 'tmp']) {
    for (const entry of await readdir(path.join(dir, sub)).catch(() => [])) found.push(`${sub}/${entry}`);
  }
  return found;
}

/** Rewrites an export: `change` edits its unpacked files in place. */
async function rewriteExport(
  from: string,
  to: string,
  change: (dir: string) => Promise<void>,
): Promise<void> {
  const dir = await mkdtemp(path.join(work, 'unpacked-'));
  await tar.x({ file: from, cwd: dir });
  await change(dir);
  await tar.c({ file: to, cwd: dir }, await readdir(dir));
  await rm(dir, { recursive: true, force: true });
}

let checkpointFile: string;
let volumesFile: string;

describe('postgres with a named volume, exported from one state dir', () => {
  let port: string;
  beforeAll(async () => {
    await on(
      here,
      'run',
      '--name',
      'pg',
      '-m',
      '256',
      '-p',
      '5432',
      '-v',
      'pgdata:/var/lib/postgresql/data',
      postgres,
    );
    port = await hostPort(here, 'pg');
    await until('pg answering', () => psql(port, 'select 1'));
    await psql(port, 'create table t (id int primary key); insert into t select generate_series(1, 1000)');
    await on(here, 'snapshot', 'pg', 'rows');
    await on(here, 'snapshot', '--checkpoint', 'pg', 'warm');
    await psql(port, 'delete from t where id > 10');
  });

  test('export writes one tar with the manifest, the base, the disks and the guest files', async () => {
    checkpointFile = path.join(work, 'pg-warm.tar');
    const done = await on(here, 'export', 'pg', 'warm', checkpointFile);
    expect(done.stdout).toBe(`${checkpointFile}\n`);
    expect(done.stderr).toMatch(/^pg: exported warm to .*pg-warm\.tar \(\d+\.\d MiB\)\n$/);
    const entries: string[] = [];
    await tar.t({ file: checkpointFile, onReadEntry: (entry) => entries.push(entry.path) });
    expect(entries).toEqual(
      expect.arrayContaining([
        'hyper-export.json',
        'base.qcow2',
        'rootfs.qcow2',
        'vol0.qcow2',
        'checkpoint-ram.qcow2',
        'checkpoint-state',
      ]),
    );
    expect(entries.some((e) => e.startsWith('guest-'))).toBe(true);
    // The service kept running through the pause, with its current rows.
    expect(await count(port)).toBe('10');
    volumesFile = path.join(work, 'pg-rows.tar.gz');
    await on(here, 'export', 'pg', 'rows', volumesFile);
    // gzip by name: the magic bytes.
    const head = Buffer.alloc(2);
    const handle = await open(volumesFile);
    await handle.read(head, 0, 2, 0);
    await handle.close();
    expect(head.toString('hex')).toBe('1f8b');
    expect(await leftovers(here)).toEqual(['vms/pg', 'volumes/pgdata.qcow2']);
  });

  test('an export to an unwritable path fails before anything happens, and the service is untouched', async () => {
    const readOnly = path.join(work, 'ro');
    await mkdir(readOnly);
    const fs = await mountTmpfs(readOnly, 1);
    try {
      await execa('mount', ['-o', 'remount,ro', readOnly]);
      const failed = await hyper('export', 'pg', 'warm', path.join(readOnly, 'x.tar'));
      expect(failed.code).toBe(125);
      expect(failed.stderr).toMatch(
        new RegExp(
          `^hyper export: cannot write ${readOnly}/x\\.tar: EROFS: read-only file system, open '.*x\\.tar\\.\\d+\\.partial'\\n$`,
        ),
      );
    } finally {
      await fs.unmount();
    }
    const again = await hyper('export', 'pg', 'warm', checkpointFile);
    expect(again.stderr).toBe(
      `hyper export: ${checkpointFile} already exists; remove it or choose another file\n`,
    );
    expect((await hyper('export', 'pg', 'never', path.join(work, 'n.tar'))).stderr).toBe(
      'hyper export: pg has no snapshot named "never" (snapshots: rows, warm)\n',
    );
    expect(await count(port)).toBe('10');
    expect(await leftovers(here)).toEqual(['vms/pg', 'volumes/pgdata.qcow2']);
    expect((await readdir(work)).sort()).toEqual(['pg-rows.tar.gz', 'pg-warm.tar', 'ro']);
  });
});

describe('imported into another state dir', () => {
  test('a checkpoint resumes with its rows, on a new host port; the named volume came along', async () => {
    const imported = await on(there, 'import', checkpointFile);
    expect(imported.stdout).toBe('pg\n');
    expect(imported.stderr).toContain(
      'pg: imported checkpoint warm; start it with "hyper restore pg warm"\n',
    );
    const volumes = JSON.parse((await on(there, 'volume', 'ls', '--json')).stdout) as {
      name: string;
      usedBy: string[];
    }[];
    expect(volumes.map((v) => [v.name, v.usedBy])).toEqual([['pgdata', ['pg']]]);
    // The RAM came back as a sparse raw file: only the pages the guest had touched take space.
    const ram = await stat(path.join(there, 'vms', 'pg', 'checkpoints', 'warm', 'ram'));
    expect(ram.size).toBe(256 * 1024 * 1024);
    expect(ram.blocks * 512).toBeLessThan(ram.size);
    await on(there, 'restore', 'pg', 'warm');
    const port = await hostPort(there, 'pg');
    expect(port).not.toBe(await hostPort(here, 'pg'));
    expect(await until('imported pg', () => count(port))).toBe('1000');
    // It is a working service: it takes writes.
    await psql(port, 'insert into t values (1001)');
    expect(await count(port)).toBe('1001');
    await on(there, 'rm', '-f', 'pg');
    // rm keeps a named volume, as Docker does; volume rm removes it.
    await on(there, 'volume', 'rm', 'pgdata');
    expect(await leftovers(there)).toEqual([]);
  });

  test('a volume snapshot boots fresh on its volume, under another name', async () => {
    const imported = await on(there, 'import', '--name', 'pgcopy', volumesFile);
    expect(imported.stdout).toBe('pgcopy\n');
    await on(there, 'restore', 'pgcopy', 'rows');
    const port = await hostPort(there, 'pgcopy');
    expect(await until('pgcopy answering', () => count(port))).toBe('1000');
  });

  test('an import that would clash: the volume or the name already exists here', async () => {
    const clash = await hyper('import', '--name', 'other', checkpointFile);
    expect(clash.code).toBe(125);
    expect(clash.stderr).toBe(
      `hyper import: cannot import ${checkpointFile}: volume pgdata already exists here; remove it first ("hyper volume rm pgdata")\n`,
    );
    const inUse = await hyper('volume', 'rm', 'pgdata');
    expect(inUse.stderr).toBe(
      'hyper volume: volume pgdata is in use by pgcopy; remove it first with "hyper rm"\n',
    );
    expect(await leftovers(there)).toEqual(['vms/pgcopy', 'volumes/pgdata.qcow2']);
  });

  test('corrupt and foreign files are refused with what is wrong, and leave nothing', async () => {
    await on(there, 'rm', '-f', 'pgcopy');
    await on(there, 'volume', 'rm', 'pgdata');
    const cases: [string, () => Promise<string>, string][] = [
      [
        'not a tar at all',
        async () => {
          const file = path.join(work, 'noise.tar');
          await writeFile(file, Buffer.alloc(4096, 0x5a));
          return file;
        },
        'is not a hyper export: it is not a whole tar archive (TAR_ENTRY_INVALID: checksum failure)\n',
      ],
      [
        'a tar of something else',
        async () => {
          const file = path.join(work, 'other.tar');
          await writeFile(path.join(work, 'notes.txt'), 'hello');
          await tar.c({ file, cwd: work }, ['notes.txt']);
          return file;
        },
        'is not a hyper export: it has no hyper-export.json',
      ],
      [
        'a tar with a path in it',
        async () => {
          const file = path.join(work, 'nested.tar');
          await mkdir(path.join(work, 'etc'), { recursive: true });
          await writeFile(path.join(work, 'etc', 'passwd'), 'x');
          await tar.c({ file, cwd: work }, ['etc/passwd']);
          return file;
        },
        'is not a hyper export: it holds etc/passwd\n',
      ],
      [
        'a tar with a path that leaves the directory',
        async () => {
          const file = path.join(work, 'escape.tar');
          await tar.c({ file, cwd: path.join(work, 'etc'), preservePaths: true }, ['../notes.txt']);
          return file;
        },
        'is not a hyper export: it holds ../notes.txt\n',
      ],
      [
        'a truncated export',
        async () => {
          const file = path.join(work, 'truncated.tar');
          const whole = await readFile(volumesFile);
          await writeFile(file, whole.subarray(0, Math.floor(whole.length / 2)));
          return file;
        },
        'is not a hyper export: it is not a whole tar archive (',
      ],
      [
        'a disk changed after export',
        async () => {
          const file = path.join(work, 'flipped.tar');
          await rewriteExport(checkpointFile, file, async (dir) => {
            const disk = await open(path.join(dir, 'vol0.qcow2'), 'r+');
            const size = (await disk.stat()).size;
            await disk.write(Buffer.from('corrupt'), 0, 7, Math.floor(size / 2));
            await disk.close();
          });
          return file;
        },
        'is damaged: vol0.qcow2 does not match its checksum',
      ],
      [
        'a checkpoint from another guest bundle',
        async () => {
          const file = path.join(work, 'foreign.tar');
          await rewriteExport(checkpointFile, file, async (dir) => {
            const manifestFile = path.join(dir, 'hyper-export.json');
            const manifest = JSON.parse(await readFile(manifestFile, 'utf8'));
            manifest.snapshot.bundle = '0123456789ab';
            await writeFile(manifestFile, JSON.stringify(manifest));
          });
          return file;
        },
        ': checkpoint "warm" was made with guest bundle 0123456789ab, and this host uses ',
      ],
      [
        'a checkpoint from another QEMU',
        async () => {
          const file = path.join(work, 'other-qemu.tar');
          await rewriteExport(checkpointFile, file, async (dir) => {
            const manifestFile = path.join(dir, 'hyper-export.json');
            const manifest = JSON.parse(await readFile(manifestFile, 'utf8'));
            manifest.snapshot.qemu = 'QEMU emulator version 9.9.9';
            await writeFile(manifestFile, JSON.stringify(manifest));
          });
          return file;
        },
        ': checkpoint "warm" was made by "QEMU emulator version 9.9.9", this host has "QEMU emulator version ',
      ],
      [
        'a checkpoint exported by an earlier hyper-services (version 1: its RAM inside the root disk)',
        async () => {
          const file = path.join(work, 'version-1.tar');
          await rewriteExport(checkpointFile, file, async (dir) => {
            const manifestFile = path.join(dir, 'hyper-export.json');
            const manifest = JSON.parse(await readFile(manifestFile, 'utf8'));
            manifest.version = 1;
            delete manifest.snapshot.memory;
            delete manifest.memory;
            await writeFile(manifestFile, JSON.stringify(manifest));
          });
          return file;
        },
        ': checkpoint "warm" was taken by an earlier hyper-services, which kept the RAM inside the root disk; this one loads only checkpoints with the RAM in a file of its own: take the checkpoint again\n',
      ],
      [
        'a snapshot name that would be a path out of the VM dir',
        async () => {
          const file = path.join(work, 'escape-name.tar');
          await rewriteExport(checkpointFile, file, async (dir) => {
            const manifestFile = path.join(dir, 'hyper-export.json');
            const manifest = JSON.parse(await readFile(manifestFile, 'utf8'));
            manifest.snapshot.name = '../../../../tmp/escaped';
            await writeFile(manifestFile, JSON.stringify(manifest));
          });
          return file;
        },
        'is damaged: its snapshot has a bad name\n',
      ],
      [
        'a checkpoint whose RAM is not in the export',
        async () => {
          const file = path.join(work, 'no-ram.tar');
          await rewriteExport(checkpointFile, file, async (dir) => {
            const manifestFile = path.join(dir, 'hyper-export.json');
            const manifest = JSON.parse(await readFile(manifestFile, 'utf8'));
            delete manifest.memory;
            await writeFile(manifestFile, JSON.stringify(manifest));
          });
          return file;
        },
        "is damaged: its checkpoint's RAM and device state are not listed\n",
      ],
    ];
    for (const [what, make, message] of cases) {
      const file = await make();
      const before = (await stat(file)).mtimeMs;
      const failed = await hyper('import', file);
      expect([what, failed.code]).toEqual([what, 125]);
      expect([what, failed.stderr]).toEqual([what, expect.stringContaining(message)]);
      expect([what, failed.stderr.startsWith(`hyper import: `)]).toEqual([what, true]);
      expect([what, await leftovers(there)]).toEqual([what, []]);
      // The file itself is only read.
      expect((await stat(file)).mtimeMs).toBe(before);
    }
    expect((await hyper('import', path.join(work, 'missing.tar'))).stderr).toBe(
      `hyper import: ${path.join(work, 'missing.tar')} does not exist\n`,
    );
  });
});
