/**
 * Debian-based test images made from real packages (`apt-get download` + `dpkg-deb -x`), layer 1
 * written by GNU tar, later layers by hand where they need entries GNU tar does not write. The
 * gzip layers are built once per version of this builder and kept under
 * `<HYPER_CACHE_DIR>/fixtures/`, so later runs only read them.
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';

import { cacheDir } from '../dirs.js';
import { run } from '../../../src/process/run.js';
import { projectRoot } from '../../../src/project-root.js';
import { MediaType } from '../../../src/types/oci/index.js';
import type { TestImage } from '../registry/image.js';
import { blobOf } from '../registry/image.js';
import { imageOfLayers, type GzipLayer, type LayeredImageOptions } from './oci-image.js';
import { tarBuffer, type RawEntry } from '../tar-builder.js';

/** What the layers are built by: a change to any of them builds them anew. */
const BUILDER_SOURCES = ['test/support/images/debian-fixture.ts', 'test/support/tar-builder.ts'];

const LAYERED_PACKAGES = ['busybox-static', 'netbase', 'tzdata'];
/** About 100 MB unpacked: a few big files (ICU), many small ones (Perl, Python, Vim runtime). */
const BULK_PACKAGES = [
  'busybox-static',
  'tzdata',
  'libicu72',
  'perl-modules-5.36',
  'vim-runtime',
  'libpython3.11-stdlib',
];

const PARIS_TZ = 'TZif2 hyper-services test zone: Paris, replaced\n';
const HYPERBOREA_TZ = 'TZif2 hyper-services test zone: Hyperborea, new\n';
const PROFILE = 'export PS1="ci$ "\n';

/**
 * What layer 2 of `debianLayeredImage` does to layer 1, for tests to check the root filesystem
 * against. Paths are relative to the root.
 */
export const LAYERED_IMAGE = {
  /** Two files and a directory of layer 1 that layer 2 whites out. */
  whitedOut: ['etc/ethertypes', 'etc/rpc', 'usr/share/doc/netbase'],
  /** Replaced by an opaque directory: only these files, with this content, are left in it. */
  opaque: {
    dir: 'usr/share/zoneinfo/Europe',
    files: { Hyperborea: HYPERBOREA_TZ, Paris: PARIS_TZ } as Record<string, string>,
  },
  /** A hardlink in layer 2 to a file of layer 1. */
  hardlink: { path: 'bin/ash', target: 'bin/busybox' },
  symlinks: [
    { path: 'bin/sh', target: 'busybox' },
    { path: 'etc/localtime', target: '/usr/share/zoneinfo/Europe/Paris' },
  ],
  /** A copy of busybox, setuid root. */
  setuid: { path: 'bin/su', mode: 0o4755 },
  /** A home directory and a file in it owned by 1000:1000. */
  userOwned: { dir: 'home/ci', file: 'home/ci/.profile', uid: 1000, gid: 1000, content: PROFILE },
} as const;

export interface FixtureImage {
  image: TestImage;
  layers: GzipLayer[];
  /** Bytes of the uncompressed layer tars, added up. */
  tarBytes: number;
}

/** busybox-static, netbase and tzdata in layer 1; layer 2 does what LAYERED_IMAGE says. */
export async function debianLayeredImage(options: LayeredImageOptions = {}): Promise<FixtureImage> {
  const layers = await cachedLayers('debian-layered', async (work) => {
    const debs = await downloadPackages(LAYERED_PACKAGES, path.join(work, 'debs'));
    const base = path.join(work, 'base');
    for (const deb of debs) await run({ program: 'dpkg-deb', args: ['-x', deb, base] });
    await writeFile(
      path.join(base, 'etc/passwd'),
      'root:x:0:0:root:/root:/bin/sh\nci:x:1000:1000::/home/ci:/bin/sh\n',
    );
    await writeFile(path.join(base, 'etc/group'), 'root:x:0:\nci:x:1000:\n');
    const layer1 = path.join(work, 'layer-1.tar');
    await gnuTar(base, layer1);
    const layer2 = path.join(work, 'layer-2.tar');
    await writeFile(layer2, tarBuffer(layer2Entries(await readFile(path.join(base, 'bin/busybox')))));
    return [layer1, layer2];
  });
  return fixtureImage(layers, options);
}

/** About 100 MB of Debian packages, one gzip layer each. */
export async function debianBulkImage(options: LayeredImageOptions = {}): Promise<FixtureImage> {
  const layers = await cachedLayers('debian-bulk', async (work) => {
    const debs = await downloadPackages(BULK_PACKAGES, path.join(work, 'debs'));
    const tars: string[] = [];
    for (const [index, deb] of debs.entries()) {
      const tree = path.join(work, `tree-${index}`);
      await run({ program: 'dpkg-deb', args: ['-x', deb, tree] });
      const tar = path.join(work, `layer-${index + 1}.tar`);
      await gnuTar(tree, tar);
      await rm(tree, { recursive: true, force: true });
      tars.push(tar);
    }
    return tars;
  });
  return fixtureImage(layers, options);
}

function layer2Entries(busybox: Buffer): RawEntry[] {
  const { whitedOut, symlinks, opaque, hardlink, setuid, userOwned } = LAYERED_IMAGE;
  return [
    { path: 'bin/', kind: 'dir' },
    { path: 'etc/', kind: 'dir' },
    ...whitedOut.map((gone): RawEntry => ({
      path: `${path.posix.dirname(gone)}/.wh.${path.posix.basename(gone)}`,
    })),
    { path: hardlink.path, kind: 'hardlink', linkpath: hardlink.target },
    ...symlinks.map((link): RawEntry => ({ path: link.path, kind: 'symlink', linkpath: link.target })),
    { path: setuid.path, data: busybox, mode: setuid.mode },
    { path: 'home/', kind: 'dir' },
    { path: `${userOwned.dir}/`, kind: 'dir', mode: 0o750, uid: userOwned.uid, gid: userOwned.gid },
    { path: userOwned.file, data: userOwned.content, uid: userOwned.uid, gid: userOwned.gid },
    { path: `${opaque.dir}/`, kind: 'dir' },
    { path: `${opaque.dir}/.wh..wh..opq` },
    ...Object.entries(opaque.files).map(([name, data]): RawEntry => ({
      path: `${opaque.dir}/${name}`,
      data,
    })),
  ];
}

/** Downloads the packages' current versions into `dir`; returns the .deb paths, in the order asked. */
async function downloadPackages(names: readonly string[], dir: string): Promise<string[]> {
  await mkdir(dir, { recursive: true });
  try {
    // As root, apt's sandbox user cannot write to a temp dir of ours: download as root.
    await run({
      program: 'apt-get',
      args: ['download', '-q', '-o', 'APT::Sandbox::User=root', ...names],
      cwd: dir,
    });
  } catch (error: unknown) {
    throw new Error(
      `cannot download the Debian packages of a test image (${names.join(', ')}); ` +
        `"apt-get update" may be needed first: ${(error as Error).message}`,
      { cause: error },
    );
  }
  const files = await readdir(dir);
  return names.map((name) => {
    const file = files.find((candidate) => candidate.startsWith(`${name}_`) && candidate.endsWith('.deb'));
    if (!file) throw new Error(`apt-get download ${name} left no ${name}_*.deb in ${dir}`);
    return path.join(dir, file);
  });
}

/** A reproducible tar of `tree`: sorted names, mtime 0, owned by root. */
async function gnuTar(tree: string, tarPath: string): Promise<void> {
  await run({
    program: 'tar',
    args: [
      '--create',
      '--file',
      tarPath,
      '--directory',
      tree,
      '--format=gnu',
      '--sort=name',
      '--mtime=@0',
      '--owner=0',
      '--group=0',
      '--numeric-owner',
      '.',
    ],
  });
}

interface LayerRecord {
  file: string;
  diffId: string;
  tarBytes: number;
}

/**
 * The gzip layers `build` makes (it writes tars into the work dir it is given), kept under
 * `fixtures/NAME-HASH/` where HASH is that of this builder's source. Built in a temp dir
 * beside it and renamed into place, so a failed or concurrent build never leaves half of it.
 */
async function cachedLayers(name: string, build: (work: string) => Promise<string[]>): Promise<GzipLayer[]> {
  const target = path.join(cacheDir(), 'fixtures', `${name}-${await builderHash()}`);
  const index = path.join(target, 'layers.json');
  if (await stat(index).catch(() => undefined)) return readLayers(target);
  await mkdir(path.dirname(target), { recursive: true });
  const work = await mkdtemp(`${target}.tmp-`);
  try {
    const scratch = path.join(work, 'scratch');
    const tars = await build(scratch);
    const records: LayerRecord[] = [];
    for (const [position, tar] of tars.entries()) {
      const file = `layer-${position + 1}.tar.gz`;
      await pipeline(createReadStream(tar), createGzip(), createWriteStream(path.join(work, file)));
      records.push({ file, diffId: await fileDigest(tar), tarBytes: (await stat(tar)).size });
    }
    await rm(scratch, { recursive: true, force: true });
    await writeFile(path.join(work, 'layers.json'), `${JSON.stringify(records, null, 2)}\n`);
    await rename(work, target).catch(async (error: unknown) => {
      // Another test file built it first; theirs is as good as ours.
      if (!(await stat(index).catch(() => undefined))) throw error;
    });
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  return readLayers(target);
}

function fixtureImage(layers: GzipLayer[], options: LayeredImageOptions): FixtureImage {
  return {
    image: imageOfLayers(layers, options),
    layers,
    tarBytes: layers.reduce((sum, layer) => sum + layer.tarBytes, 0),
  };
}

async function readLayers(dir: string): Promise<GzipLayer[]> {
  const records = JSON.parse(await readFile(path.join(dir, 'layers.json'), 'utf8')) as LayerRecord[];
  return Promise.all(
    records.map(async (record) => ({
      blob: blobOf(await readFile(path.join(dir, record.file)), MediaType.OciLayerGzip),
      diffId: record.diffId,
      tarBytes: record.tarBytes,
    })),
  );
}

async function builderHash(): Promise<string> {
  const hash = createHash('sha256');
  for (const source of BUILDER_SOURCES) hash.update(await readFile(path.join(projectRoot(), source)));
  return hash.digest('hex').slice(0, 12);
}

async function fileDigest(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return `sha256:${hash.digest('hex')}`;
}
