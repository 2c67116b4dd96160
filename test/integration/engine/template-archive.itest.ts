import { execa } from 'execa';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import {
  findServiceTemplate,
  SERVICE_TEMPLATE_FORMAT,
  serviceTemplateName,
  serviceTemplateRoot,
  type ServiceTemplateKey,
} from '../../../src/engine/service-templates.js';
import { readTemplateArchive, writeTemplateArchive } from '../../../src/engine/template-archive.js';
import { rootfsPath } from '../../../src/images/rootfs.js';
import { digestOf } from '../../../src/images/store.js';

// Service templates as the action's cache archive carries them between
// machines: written from one cache dir and read into another with real
// qemu-img conversions and rebases. The templates are laid out on disk as
// `up` keeps them (meta, state, sparse RAM, root overlay, a volume copy);
// a real one, from a real VM, travels in test/integration/action/cache.itest.ts.
let work: string;
beforeEach(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'hyper-template-archive-'));
});
afterEach(async () => {
  await rm(work, { recursive: true, force: true });
});

const MiB = 1024 * 1024;
const configDigest = digestOf(Buffer.from('config'));

function keyFor(name: string): ServiceTemplateKey {
  return {
    format: SERVICE_TEMPLATE_FORMAT,
    name,
    imageDigest: digestOf(Buffer.from('manifest')),
    argv: ['postgres'],
    env: [],
    user: '',
    workdir: '/',
    stopSignal: 'SIGINT',
    mounts: [],
    extraHosts: [],
    apiSockets: [],
    volumeBytes: 0,
    volumeSizes: {},
    memoryMiB: 512,
    cpus: 1,
    bundle: 'test',
    qemu: '7.2',
    accel: 'tcg',
    cpu: 'max',
    network: 'user',
  };
}

async function sh(program: string, ...args: string[]): Promise<void> {
  await execa(program, args);
}

/** A cache dir with a base and one template on it, as `up` keeps one. */
async function sourceCache(name = 'db', meta: Record<string, unknown> = {}) {
  const dir = path.join(work, 'source');
  const base = rootfsPath(dir, configDigest);
  await mkdir(path.dirname(base), { recursive: true });
  await sh('truncate', '-s', '64M', base);
  const key = keyFor(name);
  const template = path.join(serviceTemplateRoot(dir), serviceTemplateName(key));
  await mkdir(template, { recursive: true });
  await sh('truncate', '-s', '256M', path.join(template, 'ram'));
  await sh(
    'dd',
    'if=/dev/urandom',
    `of=${path.join(template, 'ram')}`,
    'bs=1M',
    'count=2',
    'seek=8',
    'conv=notrunc',
    'status=none',
  );
  await writeFile(path.join(template, 'state'), 'device state');
  await sh(
    'qemu-img',
    'create',
    '-q',
    '-f',
    'qcow2',
    '-F',
    'raw',
    '-b',
    base,
    path.join(template, 'rootfs.qcow2'),
  );
  await sh('qemu-img', 'create', '-q', '-f', 'qcow2', path.join(template, 'vol-data.qcow2'), '16M');
  const stateSha256 = digestOf(Buffer.from('device state')).slice('sha256:'.length);
  await writeFile(
    path.join(template, 'meta.json'),
    JSON.stringify({
      key,
      base: 'the source machine',
      configDigest,
      disks: [{ serial: 'vol-data', path: '', target: '/data', readOnly: false, file: 'vol-data.qcow2' }],
      status: '{}',
      ramBytes: 256 * MiB,
      stateBytes: 'device state'.length,
      stateSha256,
      madeMs: 0,
      tookMs: 0,
      ...meta,
    }),
  );
  return { dir, key, name: serviceTemplateName(key), template };
}

async function leftovers(cacheDir: string): Promise<string[]> {
  return (await readdir(serviceTemplateRoot(cacheDir)).catch(() => [] as string[])).filter((name) =>
    name.includes('.making-'),
  );
}

/** The target cache as the image archive leaves it: the base restored beside where the template goes. */
async function targetCache(): Promise<{ dir: string; base: string }> {
  const dir = path.join(work, 'target');
  const base = rootfsPath(dir, configDigest);
  await mkdir(path.dirname(base), { recursive: true });
  await sh('truncate', '-s', '64M', base);
  return { dir, base };
}

test('a template travels: RAM sparse again, root overlay on this machine base, and found for its key', async () => {
  const source = await sourceCache();
  const archive = path.join(work, 'archive');
  expect(await writeTemplateArchive(source.dir, [source.name], archive)).toEqual({
    templates: 1,
    skipped: [],
  });
  // The RAM travels as a qcow2 of its data, not 256 MiB of zeros.
  expect((await stat(path.join(archive, 'templates', source.name, 'ram.qcow2'))).size).toBeLessThan(4 * MiB);

  const target = await targetCache();
  expect(await readTemplateArchive(archive, target.dir, [configDigest])).toEqual({
    templates: 1,
    skipped: [],
  });
  const adopted = path.join(serviceTemplateRoot(target.dir), source.name);
  const ram = await stat(path.join(adopted, 'ram'));
  expect(ram.size).toBe(256 * MiB);
  expect(ram.blocks * 512).toBeLessThan(8 * MiB);
  expect(
    (await readFile(path.join(adopted, 'ram'))).equals(await readFile(path.join(source.template, 'ram'))),
  ).toBe(true);
  const { stdout } = await execa('qemu-img', ['info', '--output=json', path.join(adopted, 'rootfs.qcow2')]);
  expect((JSON.parse(stdout) as { 'backing-filename': string })['backing-filename']).toBe(target.base);
  const found = await findServiceTemplate(target.dir, source.key, target.base);
  expect(found?.dir).toBe(adopted);
  expect(found?.disks.map((d) => d.file)).toEqual(['vol-data.qcow2']);
  // Read again into a cache that has it: kept as it is.
  expect(await readTemplateArchive(archive, target.dir, [configDigest])).toEqual({
    templates: 0,
    skipped: [],
  });
  expect(await leftovers(target.dir)).toEqual([]);
});

test('a template whose base was not restored with it is left out, with the reason', async () => {
  const source = await sourceCache();
  const archive = path.join(work, 'archive');
  await writeTemplateArchive(source.dir, [source.name], archive);
  const target = await targetCache();
  const report = await readTemplateArchive(archive, target.dir, []);
  expect(report).toEqual({
    templates: 0,
    skipped: [
      `service template ${source.name}: its root filesystem was not restored with it, so its root disk cannot be trusted here`,
    ],
  });
  expect(await readdir(serviceTemplateRoot(target.dir)).catch(() => [])).toEqual([]);
});

test('a template that is not there, or made before templates recorded their base, is left out when writing', async () => {
  const source = await sourceCache('db', { configDigest: undefined });
  const archive = path.join(work, 'archive');
  const report = await writeTemplateArchive(source.dir, [source.name, 'cache-0123456789abcdef'], archive);
  expect(report).toEqual({
    templates: 0,
    skipped: [
      `service template ${source.name}: made before templates recorded their root filesystem`,
      'service template cache-0123456789abcdef: not in the cache dir',
    ],
  });
  expect(await readdir(path.join(archive, 'templates'))).toEqual(['manifest.json']);
});

test('a RAM file that refers to a host file is refused, and nothing half-made stays', async () => {
  const source = await sourceCache();
  const archive = path.join(work, 'archive');
  await writeTemplateArchive(source.dir, [source.name], archive);
  const ram = path.join(archive, 'templates', source.name, 'ram.qcow2');
  await rm(ram);
  const secret = path.join(work, 'host-file');
  await writeFile(secret, 'host secret');
  await sh('qemu-img', 'create', '-q', '-f', 'qcow2', '-F', 'raw', '-b', secret, ram);
  const target = await targetCache();
  const report = await readTemplateArchive(archive, target.dir, [configDigest]);
  expect(report.skipped).toEqual([`service template ${source.name}: the qcow2 refers to another file`]);
  expect(await readdir(serviceTemplateRoot(target.dir))).toEqual([]);
});

test('names and disk files that are not plain names are refused without touching any path', async () => {
  const source = await sourceCache();
  const archive = path.join(work, 'archive');
  await writeTemplateArchive(source.dir, [source.name], archive);
  const templates = path.join(archive, 'templates');
  const metaFile = path.join(templates, source.name, 'meta.json');
  const meta = JSON.parse(await readFile(metaFile, 'utf8')) as Record<string, unknown>;
  await mkdir(path.join(templates, 'db-0123456789abcdef'));
  await writeFile(path.join(templates, 'db-0123456789abcdef', 'meta.json'), JSON.stringify(meta));
  const escape = { serial: 'x', path: '', target: '/x', readOnly: false, file: '../../escape.qcow2' };
  await writeFile(metaFile, JSON.stringify({ ...meta, disks: [escape] }));
  await writeFile(
    path.join(templates, 'manifest.json'),
    JSON.stringify({ format: 1, templates: [source.name, '../../etc', 'db-0123456789abcdef'] }),
  );
  const target = await targetCache();
  const report = await readTemplateArchive(archive, target.dir, [configDigest]);
  expect(report).toEqual({
    templates: 0,
    skipped: [
      `service template ${source.name}: its meta.json lists a disk that is not a plain file name`,
      'service template ../../etc: not a template name',
      'service template db-0123456789abcdef: its name does not match its key',
    ],
  });
  expect(await readdir(serviceTemplateRoot(target.dir)).catch(() => [])).toEqual([]);
});

test('an archive saved before templates travelled has none, and one of another format is left out whole', async () => {
  const archive = path.join(work, 'archive');
  await mkdir(archive);
  expect(await readTemplateArchive(archive, path.join(work, 'target'), [])).toEqual({
    templates: 0,
    skipped: [],
  });
  await mkdir(path.join(archive, 'templates'));
  await writeFile(path.join(archive, 'templates', 'manifest.json'), JSON.stringify({ format: 9 }));
  expect(await readTemplateArchive(archive, path.join(work, 'target'), [])).toEqual({
    templates: 0,
    skipped: ['the service templates: not a template archive of format 1'],
  });
});
