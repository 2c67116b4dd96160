import { chmod, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import {
  keyMounts,
  SERVICE_TEMPLATE_FORMAT,
  serviceTemplateName,
  treeDigest,
  type ServiceTemplateKey,
} from '../../../src/engine/service-templates.js';
import { captureFailure } from '../../../src/vm/qemu/checkpoint.js';

const key: ServiceTemplateKey = {
  format: SERVICE_TEMPLATE_FORMAT,
  name: 'db',
  imageDigest: 'sha256:0123',
  argv: ['/usr/local/bin/pg-entrypoint'],
  env: ['PGDATA=/var/lib/postgresql/data'],
  user: 'postgres',
  workdir: '/',
  stopSignal: 'SIGINT',
  mounts: [{ kind: 'volume', name: 'pgdata', target: '/var/lib/postgresql/data', readOnly: false }],
  extraHosts: [],
  apiSockets: [],
  volumeBytes: 0,
  volumeSizes: {},
  memoryMiB: 256,
  cpus: 1,
  bundle: '9a15d50c6ef94b25',
  qemu: 'QEMU emulator version 7.2.22',
  accel: 'tcg',
  cpu: 'max',
  network: 'user',
};

describe('service template key', () => {
  test('names the service and hashes the rest: any field changed is another template', () => {
    expect(serviceTemplateName(key)).toMatch(/^db-[0-9a-f]{16}$/);
    expect(serviceTemplateName({ ...key })).toBe(serviceTemplateName(key));
    for (const change of [
      { env: [...key.env, 'POSTGRES_DB=app'] },
      { imageDigest: 'sha256:4567' },
      { memoryMiB: 512 },
      { network: 'bridge' },
      { cpu: 'host Intel(R) Xeon(R)' },
      { bundle: 'ffffffffffffffff' },
    ])
      expect(serviceTemplateName({ ...key, ...change })).not.toBe(serviceTemplateName(key));
  });
});

describe('a copied host directory is keyed by its content', () => {
  let work: string;
  beforeEach(async () => {
    work = await mkdtemp(path.join(os.tmpdir(), 'hyper-tree-'));
    await mkdir(path.join(work, 'init', 'sub'), { recursive: true });
    await writeFile(path.join(work, 'init', '01.sql'), 'create table t (id int);\n');
    await writeFile(path.join(work, 'init', 'sub', 'x'), 'x');
    await symlink('01.sql', path.join(work, 'init', 'latest.sql'));
  });
  afterEach(() => rm(work, { recursive: true, force: true }));

  test('the same content under another path has the same digest; a change in content, mode or a link does not', async () => {
    const first = await treeDigest(path.join(work, 'init'));
    await mkdir(path.join(work, 'copy'));
    await writeFile(path.join(work, 'copy', '01.sql'), 'create table t (id int);\n');
    await mkdir(path.join(work, 'copy', 'sub'));
    await writeFile(path.join(work, 'copy', 'sub', 'x'), 'x');
    await symlink('01.sql', path.join(work, 'copy', 'latest.sql'));
    expect(await treeDigest(path.join(work, 'copy'))).toBe(first);

    await writeFile(path.join(work, 'copy', '01.sql'), 'create table t (id bigint);\n');
    const content = await treeDigest(path.join(work, 'copy'));
    expect(content).not.toBe(first);
    await chmod(path.join(work, 'copy', '01.sql'), 0o600);
    expect(await treeDigest(path.join(work, 'copy'))).not.toBe(content);
  });

  test('bind mounts enter the key by content, other mounts as they are', async () => {
    const mounts = await keyMounts([
      {
        kind: 'bind',
        source: path.join(work, 'init'),
        target: '/docker-entrypoint-initdb.d',
        readOnly: true,
      },
      { kind: 'tmpfs', target: '/run', options: 'size=64m' },
    ]);
    expect(mounts).toEqual([
      {
        kind: 'bind',
        content: await treeDigest(path.join(work, 'init')),
        target: '/docker-entrypoint-initdb.d',
        readOnly: true,
      },
      { kind: 'tmpfs', target: '/run', options: 'size=64m' },
    ]);
  });
});

describe('a failed checkpoint capture', () => {
  test('SIGBUS is a RAM file that could not be written (its filesystem is full)', () => {
    expect(
      captureFailure(
        'ended by SIGBUS',
        'migration failed: Broken pipe',
        '/s/vms/db/checkpoints/c.partial-9/ram',
      ),
    ).toBe(
      'the RAM could not be written to /s/vms/db/checkpoints/c.partial-9/ram (migration failed: Broken pipe)',
    );
    expect(captureFailure('exited with code 1', 'migration failed: x', '/r')).toBe(
      'the capture machine exited with code 1: migration failed: x',
    );
    expect(captureFailure(undefined, 'timed out', '/r')).toBe('timed out');
    expect(captureFailure('exited with code 0', 'timed out', '/r')).toBe('timed out');
  });
});
