import { execa } from 'execa';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { readCacheArchive, writeCacheArchive } from '../../../src/images/cache-archive.js';
import { rootfsPath } from '../../../src/images/rootfs.js';
import { BlobStore, digestOf } from '../../../src/images/store.js';

// The archive the action's `cache` input carries between runs, written from
// one cache dir and read into another, with real qemu-img conversions.
let work: string;
beforeEach(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'hyper-cache-archive-'));
});
afterEach(async () => {
  await rm(work, { recursive: true, force: true });
});

const MiB = 1024 * 1024;

/** A cache dir holding one blob and one sparse 64 MiB "base" with data at 1 MiB. */
async function sourceCache() {
  const dir = path.join(work, 'source');
  const blob = Buffer.from('layer bytes');
  const digest = digestOf(blob);
  await new BlobStore(path.join(dir, 'store')).ingest(
    digest,
    blob.length,
    (async function* () {
      yield blob;
    })(),
  );
  const configDigest = digestOf(Buffer.from('config'));
  const base = rootfsPath(dir, configDigest);
  await execa('mkdir', ['-p', path.dirname(base)]);
  await execa('truncate', ['-s', '64M', base]);
  await execa('dd', [
    'if=/dev/urandom',
    `of=${base}`,
    'bs=1M',
    'count=1',
    'seek=1',
    'conv=notrunc',
    'status=none',
  ]);
  return { dir, digest, configDigest, base, images: [{ configDigest, blobs: [digest] }] };
}

async function partials(dir: string): Promise<string[]> {
  return (await readdir(dir, { recursive: true })).map(String).filter((f) => f.endsWith('.partial'));
}

test('a round trip gives back the same blob and base, and the base stays sparse', async () => {
  const source = await sourceCache();
  const archive = path.join(work, 'archive');
  const written = await writeCacheArchive(source.dir, source.images, archive);
  expect(written).toEqual({ blobs: 1, rootfs: 1, skipped: [] });
  // The qcow2 in the archive holds the data, not the 64 MiB of holes.
  const archived = (await readdir(path.join(archive, 'rootfs')))[0] as string;
  expect((await stat(path.join(archive, 'rootfs', archived))).size).toBeLessThan(4 * MiB);

  const target = path.join(work, 'target');
  expect(await readCacheArchive(archive, target)).toEqual({
    blobs: 1,
    rootfs: 1,
    imported: [source.configDigest],
    skipped: [],
  });
  const store = new BlobStore(path.join(target, 'store'));
  expect(await readFile(store.path(source.digest), 'utf8')).toBe('layer bytes');
  const restored = rootfsPath(target, source.configDigest);
  expect((await readFile(restored)).equals(await readFile(source.base))).toBe(true);
  const { blocks } = await stat(restored);
  expect(blocks * 512).toBeLessThan(8 * MiB);
  // Read again into a cache that has it all: nothing to do.
  expect(await readCacheArchive(archive, target)).toEqual({ blobs: 0, rootfs: 0, imported: [], skipped: [] });
});

test('a blob whose content does not match its digest is left out, and nothing half-written stays', async () => {
  const source = await sourceCache();
  const archive = path.join(work, 'archive');
  await writeCacheArchive(source.dir, source.images, archive);
  const [, hex] = source.digest.split(':');
  const archivedBlob = path.join(archive, 'blobs', 'sha256', hex as string);
  await rm(archivedBlob);
  await writeFile(archivedBlob, 'tampered');

  const target = path.join(work, 'target');
  const report = await readCacheArchive(archive, target);
  expect(report.blobs).toBe(0);
  expect(report.skipped).toEqual([
    `blob ${source.digest} failed verification: its content has digest ${digestOf(Buffer.from('tampered'))}`,
  ]);
  expect(await new BlobStore(path.join(target, 'store')).has(source.digest)).toBe(false);
  expect(report.rootfs).toBe(1);
  expect(await partials(target)).toEqual([]);
});

test('a base that refers to a file outside the archive is refused', async () => {
  const source = await sourceCache();
  const archive = path.join(work, 'archive');
  await writeCacheArchive(source.dir, source.images, archive);
  const archived = path.join(archive, 'rootfs', `${source.configDigest.replace(':', '-')}.qcow2`);
  await rm(archived);
  const secret = path.join(work, 'host-file');
  await writeFile(secret, 'host secret');
  await execa('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'raw', '-b', secret, archived]);

  const target = path.join(work, 'target');
  const report = await readCacheArchive(archive, target);
  expect(report.skipped).toEqual([
    `root filesystem for ${source.configDigest}: the qcow2 refers to another file`,
  ]);
  expect(await stat(rootfsPath(target, source.configDigest)).catch(() => undefined)).toBeUndefined();
  expect(await partials(target)).toEqual([]);
});

test('a manifest of another format is left out whole', async () => {
  const archive = path.join(work, 'archive');
  await execa('mkdir', ['-p', archive]);
  await writeFile(path.join(archive, 'manifest.json'), JSON.stringify({ format: 99 }));
  const report = await readCacheArchive(archive, path.join(work, 'target'));
  expect(report).toEqual({
    blobs: 0,
    rootfs: 0,
    imported: [],
    skipped: ['the whole archive: not a cache archive of format 1'],
  });
});

test('entries whose digests are not digests are left out without touching any path', async () => {
  const archive = path.join(work, 'archive');
  await execa('mkdir', ['-p', archive]);
  const manifest = { format: 1, rootfsFormat: 'v1', blobs: ['sha256:../../etc'], rootfs: ['../x'] };
  await writeFile(path.join(archive, 'manifest.json'), JSON.stringify(manifest));
  const target = path.join(work, 'target');
  const report = await readCacheArchive(archive, target);
  expect(report.blobs + report.rootfs).toBe(0);
  expect(report.skipped).toHaveLength(2);
  expect(report.skipped[0]).toMatch(/^blob sha256:\.\.\/\.\.\/etc: "sha256:\.\.\/\.\.\/etc" is not a digest/);
  expect(await stat(target).catch(() => undefined)).toBeUndefined();
});
