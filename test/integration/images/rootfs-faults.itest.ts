import { randomBytes } from 'node:crypto';
import { lstat, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';

import { resolveImage } from '../../../src/images/resolve.js';
import { ensureRootfs, rootfsPath } from '../../../src/images/rootfs.js';
import { gzipLayer, imageOfLayers } from '../../support/images/oci-image.js';
import { mountTmpfs, type MountedTmpfs } from '../../support/images/tmpfs.js';
import { sha256Digest, tarBuffer, type RawEntry } from '../../support/tar-builder.js';
import type { TestImage } from '../../support/registry/image.js';
import { pushImage } from '../../support/registry/push.js';
import { startRegistry, type TestRegistry } from '../../support/registry/registry.js';

// Bad input end to end, registry -> blob store -> ext4 base: the user gets a message that names
// what is wrong, and the cache keeps nothing half-written (no .build-* dir, no .partial blob, no
// base for the image).

const MiB = 1024 * 1024;
let registry: TestRegistry;
let workDir: string;

beforeAll(async () => {
  registry = await startRegistry();
  workDir = await mkdtemp(join(tmpdir(), 'hyper-rootfs-faults-'));
});

afterAll(async () => {
  await registry?.stop();
  if (workDir) await rm(workDir, { recursive: true, force: true });
});

/** Pushes an image of `layers` (each a list of tar entries) as `repository:1`. */
async function pushLayers(repository: string, layers: RawEntry[][]): Promise<TestImage> {
  const image = imageOfLayers(layers.map((entries) => gzipLayer(tarBuffer(entries))));
  await pushImage(registry, repository, '1', image);
  return image;
}

/** Pulls `repository:1` into `cacheDir` and builds its base; returns what that threw. */
async function buildFails(repository: string, cacheDir: string, scratchDir?: string): Promise<Error> {
  const image = await resolveImage(`${registry.host}/${repository}:1`, { cacheDir, log: () => {} });
  return ensureRootfs(image, cacheDir, { scratchDir }).then(
    () => new Error('ensureRootfs built a base'),
    (error: unknown) => error as Error,
  );
}

/** Every file under `dir` (relative paths), for "nothing half-written" checks. */
async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((entry) => !entry.isDirectory())
    .map((entry) => relative(dir, join(entry.parentPath, entry.name)))
    .sort();
}

/**
 * Nothing half-written in the cache: every blob in the store is whole (its content has its
 * digest), `image`'s among them; catalog records are whole JSON; no temp file (.partial, .tmp),
 * no .build-* dir and no base for the image.
 */
async function expectNothingHalfWritten(cacheDir: string, image: TestImage): Promise<void> {
  const files = await filesUnder(cacheDir);
  for (const file of files) {
    const blob = /^store\/blobs\/sha256\/([0-9a-f]{64})$/.exec(file);
    if (blob) {
      expect(sha256Digest(await readFile(join(cacheDir, file)))).toBe(`sha256:${blob[1]}`);
    } else {
      expect(file).toMatch(/^images\/[0-9a-f]{32}\.json$/);
      // A catalog record of a completed pull: whole, or JSON.parse throws.
      expect(JSON.parse(await readFile(join(cacheDir, file), 'utf8'))).toMatchObject({
        configDigest: expect.any(String),
      });
    }
  }
  for (const blob of [image.config, ...image.layers]) {
    expect(files).toContain(`store/blobs/sha256/${blob.digest.slice('sha256:'.length)}`);
  }
  expect(await readdir(join(cacheDir, 'rootfs', 'v1'))).toEqual([]);
  await expect(lstat(rootfsPath(cacheDir, image.config.digest))).rejects.toThrow('ENOENT');
}

describe('a layer that writes outside the root filesystem', () => {
  let cacheDir: string;
  let sentinel: string;
  /** From the tree being built (<cache>/rootfs/v1/.build-*\/tree) up to the dir holding cache and sentinel. */
  const up = '../../../../../';
  let sentinelBefore: string;

  beforeAll(async () => {
    cacheDir = join(workDir, 'cache');
    sentinel = join(workDir, 'sentinel');
    await mkdir(join(sentinel, 'inner'), { recursive: true });
    await writeFile(join(sentinel, 'secret'), 'do not touch\n');
    sentinelBefore = await describeTree(sentinel);
  });

  afterEach(async () => {
    // Nothing reached the sentinel beside the cache: no new file, no link to its file, no change.
    expect(await describeTree(sentinel)).toBe(sentinelBefore);
  });

  afterAll(async () => {
    if (cacheDir) await rm(cacheDir, { recursive: true, force: true });
  });

  it.each([
    {
      how: 'a relative path climbing out with ../',
      layers: (): RawEntry[][] => [[{ path: `${up}sentinel/pwned`, data: 'x' }]],
      entry: () => `${up}sentinel/pwned`,
      why: () => `the path "${up}sentinel/pwned" leads outside the root directory`,
    },
    {
      how: 'an absolute path climbing out',
      layers: (): RawEntry[][] => [[{ path: `/${up}sentinel/pwned`, data: 'x' }]],
      entry: () => `/${up}sentinel/pwned`,
      why: () => `the path "/${up}sentinel/pwned" leads outside the root directory`,
    },
    {
      how: 'a hardlink to a file outside',
      layers: (): RawEntry[][] => [
        [{ path: 'etc/secret', kind: 'hardlink', linkpath: `${up}sentinel/secret` }],
      ],
      entry: () => 'etc/secret',
      why: () => `hardlink target "${up}sentinel/secret" leads outside the root directory`,
    },
    {
      how: 'a write through a symlink an earlier layer planted',
      layers: (): RawEntry[][] => [
        [{ path: 'escape', kind: 'symlink', linkpath: sentinel }],
        [{ path: 'escape/pwned', data: 'x' }],
      ],
      entry: () => 'escape/pwned',
      why: () => `"escape" is a symbolic link (to "${sentinel}"); refusing to go through it`,
    },
  ])('is refused, naming the layer and the entry: $how', async ({ how, layers, entry, why }) => {
    const repository = `evil/${how.replace(/[^a-z]+/g, '-').replace(/^-|-$/g, '')}`;
    const image = await pushLayers(repository, layers());
    const guilty = image.layers.at(-1)?.digest;

    const failure = await buildFails(repository, cacheDir);
    expect(failure.name).toBe('RootfsError');
    expect(failure.message).toBe(
      `cannot build the root filesystem of ${registry.host}/${repository}:1: layer ${guilty}, entry ${JSON.stringify(entry())}: ${why()}`,
    );
    await expectNothingHalfWritten(cacheDir, image);
  });
});

// Mounting the small disk needs root (CI and the development machines run as root).
const asRoot = process.getuid?.() === 0 ? describe : describe.skip;

asRoot('a root filesystem bigger than the disk holding the cache (a 3 MiB tmpfs)', () => {
  let disk: MountedTmpfs | undefined;
  let cacheDir: string;

  beforeAll(async () => {
    const mountPoint = join(workDir, 'small-disk');
    await mkdir(mountPoint);
    disk = await mountTmpfs(mountPoint, 3);
  });

  afterAll(async () => {
    // Unmounted even when a test failed: nothing is left mounted under the temp dir.
    await disk?.unmount();
  });

  beforeEach(async () => {
    cacheDir = await mkdtemp(join(disk?.dir ?? '', 'cache-'));
  });

  afterEach(async () => {
    await rm(cacheDir, { recursive: true, force: true });
  });

  it('fails while unpacking: names the layer, the entry and the full disk; leaves nothing half-written', async () => {
    // 8 MiB of zeros: a blob of a few KiB, more content than the 3 MiB disk holds.
    const image = await pushLayers('big/unpack', [
      [
        { path: 'data/', kind: 'dir' },
        { path: 'data/zeros.bin', data: Buffer.alloc(8 * MiB) },
      ],
    ]);

    // The unpacked tree goes to RAM-backed /dev/shm when it has room; here it must land on the small disk
    // (HYPER_BUILD_TMPDIR names it to the CLI).
    const failure = await buildFails('big/unpack', cacheDir, cacheDir);
    expect(failure.name).toBe('RootfsError');
    expect(failure.message).toMatch(
      new RegExp(
        `^cannot build the root filesystem of ${registry.host}/big/unpack:1: layer ${image.layers[0]?.digest}, ` +
          `entry "data/zeros\\.bin": ENOSPC: no space left on device, write \\(${cacheDir}/hyper-rootfs-\\w+ is full\\)$`,
      ),
    );
    await expectNothingHalfWritten(cacheDir, image);
  });

  it('fails while making the ext4 file: names the image and the full disk; leaves nothing half-written', async () => {
    // The tree goes to /dev/shm; 4 MiB of non-zero bytes (a tiny blob) cannot fit in the 3 MiB ext4 file's disk.
    const image = await pushLayers('big/mkfs', [[{ path: 'data.bin', data: Buffer.alloc(4 * MiB, 7) }]]);

    const failure = await buildFails('big/mkfs', cacheDir);
    expect(failure.name).toBe('RootfsError');
    expect(failure.message).toMatch(
      new RegExp(
        `^cannot build the root filesystem of ${registry.host}/big/mkfs:1: mkfs\\.ext4 -q -F -d /dev/shm/hyper-rootfs-\\w+/tree .* exited with code 1: [^]*` +
          'mkfs\\.ext4: No space left on device while populating file system$',
      ),
    );
    // The scratch tree in /dev/shm went with the failure too.
    expect((await readdir('/dev/shm')).filter((name) => name.startsWith('hyper-rootfs-'))).toEqual([]);
    await expectNothingHalfWritten(cacheDir, image);
  });

  it('fails while pulling a layer blob bigger than the disk; keeps no partial blob', async () => {
    // Random bytes do not compress: the blob itself does not fit.
    const image = await pushLayers('big/blob', [[{ path: 'random.bin', data: randomBytes(4 * MiB) }]]);

    const failure = await resolveImage(`${registry.host}/big/blob:1`, { cacheDir, log: () => {} }).then(
      () => new Error('resolveImage pulled it'),
      (error: unknown) => error as Error,
    );
    expect(failure.message).toBe(
      `cannot store blob ${image.layers[0]?.digest} in ${cacheDir}/store: ENOSPC: no space left on device, write`,
    );
    // The config blob came first and is whole; the layer left no partial file.
    expect(await filesUnder(cacheDir)).toEqual([
      `store/blobs/sha256/${image.config.digest.slice('sha256:'.length)}`,
    ]);
  });
});

/** Names, types, sizes, modes, link counts and mtimes of everything under `dir`, as one string. */
async function describeTree(dir: string): Promise<string> {
  const entries = ['.', ...(await readdir(dir, { recursive: true })).sort()];
  const lines = await Promise.all(
    entries.map(async (name) => {
      const info = await lstat(join(dir, name));
      return `${name} ${info.mode.toString(8)} ${info.size} ${info.nlink} ${info.mtimeMs}`;
    }),
  );
  return lines.join('\n');
}
