import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, posix } from 'node:path';

import type { LocalImage } from '../../../src/images/image.js';
import { resolveImage } from '../../../src/images/resolve.js';
import { ensureRootfs, rootfsPath } from '../../../src/images/rootfs.js';
import { listDirectory, readExt4File, statPath } from '../../support/images/debugfs.js';
import { debianLayeredImage, LAYERED_IMAGE, type FixtureImage } from '../../support/images/debian-fixture.js';
import { buildTestImage, type TestImage } from '../../support/registry/image.js';
import { pushImage, pushIndex } from '../../support/registry/push.js';
import { startRegistry, type TestRegistry } from '../../support/registry/registry.js';

// A two-layer image made from Debian packages goes registry -> blob store -> ext4 base, and the
// base is read back with debugfs (no mount): what layer 2 whited out, replaced, linked and owned.
const { hardlink, opaque, setuid, symlinks, userOwned, whitedOut } = LAYERED_IMAGE;

let registry: TestRegistry;
let debian: FixtureImage;
let arm64: TestImage;

beforeAll(async () => {
  debian = await debianLayeredImage();
  arm64 = await buildTestImage({ platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } });
  registry = await startRegistry();
  await pushImage(registry, 'debian/single', '12', debian.image);
  await pushIndex(registry, 'debian/multi', '12', [debian.image, arm64]);
});

afterAll(async () => {
  await registry?.stop();
});

describe.each([
  { shape: 'a single manifest', repository: 'debian/single' },
  { shape: 'a multi-platform OCI index (amd64, arm64, attestation)', repository: 'debian/multi' },
])('the root filesystem of a layered Debian image pushed as $shape', ({ repository }) => {
  let cacheDir: string;
  let image: LocalImage;
  let base: { path: string; cached: boolean };
  const log: string[] = [];

  beforeAll(async () => {
    cacheDir = await mkdtemp(join(tmpdir(), 'hyper-rootfs-'));
    image = await resolveImage(`${registry.host}/${repository}:12`, {
      cacheDir,
      log: (line) => log.push(line),
    });
    base = await ensureRootfs(image, cacheDir);
  });

  afterAll(async () => {
    if (cacheDir) await rm(cacheDir, { recursive: true, force: true });
  });

  it('is built from the linux/amd64 image, under its config digest', () => {
    expect(image.manifestDigest).toBe(debian.image.manifest.digest);
    expect(image.configDigest).toBe(debian.image.config.digest);
    expect(image.layers.map((layer) => layer.digest)).toEqual(
      debian.image.layers.map((layer) => layer.digest),
    );
    expect(base).toEqual({ path: rootfsPath(cacheDir, debian.image.config.digest), cached: false });
    expect(log).toContain(`Pulling ${registry.host}/${repository}:12`);
  });

  it('has no whited-out file or directory, and keeps what was beside them', async () => {
    for (const gone of whitedOut)
      expect(await names(`/${posix.dirname(gone)}`)).not.toContain(posix.basename(gone));
    expect(await names('/')).toEqual(['bin', 'etc', 'home', 'lost+found', 'usr']);
    expect(await names('/etc')).toEqual(['group', 'localtime', 'passwd', 'protocols', 'services']);
    expect(await names('/usr/share/doc')).toEqual(['busybox-static', 'tzdata']);
    expect(await names('/usr/share/doc/tzdata')).toEqual([
      'README.Debian',
      'changelog.Debian.gz',
      'changelog.gz',
      'copyright',
    ]);
  });

  it('has only the new content in the opaque directory, and leaves its siblings be', async () => {
    expect(await names(`/${opaque.dir}`)).toEqual(Object.keys(opaque.files).sort());
    for (const [name, content] of Object.entries(opaque.files)) {
      expect(await readExt4File(base.path, `/${opaque.dir}/${name}`)).toBe(content);
    }
    expect(await names('/usr/share/zoneinfo/America')).toContain('New_York');
  });

  it('gives the hardlink of layer 2 the inode of its layer-1 target', async () => {
    const link = await statPath(base.path, `/${hardlink.path}`);
    const target = await statPath(base.path, `/${hardlink.target}`);
    expect(link.inode).toBe(target.inode);
    expect(target).toMatchObject({ type: 'regular', links: 2, mode: 0o755, uid: 0, gid: 0 });
    expect(target.size).toBeGreaterThan(1_000_000);
    const bin = await listDirectory(base.path, '/bin');
    const byName = bin.sort((a, b) => a.name.localeCompare(b.name));
    expect(byName.map((entry) => [entry.name, entry.inode])).toEqual([
      ['ash', target.inode],
      ['busybox', target.inode],
      ['sh', expect.any(Number)],
      ['su', expect.any(Number)],
    ]);
  });

  it('keeps symlinks pointing where the layer says', async () => {
    for (const { path, target } of symlinks) {
      expect(await statPath(base.path, `/${path}`)).toMatchObject({
        type: 'symlink',
        mode: 0o777,
        fastLinkTarget: target,
        size: target.length,
      });
    }
  });

  it('keeps the setuid bit', async () => {
    const busybox = await statPath(base.path, `/${hardlink.target}`);
    expect(await statPath(base.path, `/${setuid.path}`)).toMatchObject({
      type: 'regular',
      mode: 0o4755,
      uid: 0,
      gid: 0,
      links: 1,
      size: busybox.size,
    });
  });

  it('keeps the uid and gid 1000 owner', async () => {
    expect(await statPath(base.path, `/${userOwned.dir}`)).toMatchObject({
      type: 'directory',
      mode: 0o750,
      uid: userOwned.uid,
      gid: userOwned.gid,
    });
    expect(await statPath(base.path, `/${userOwned.file}`)).toMatchObject({
      type: 'regular',
      mode: 0o644,
      uid: userOwned.uid,
      gid: userOwned.gid,
      size: userOwned.content.length,
    });
    expect(await readExt4File(base.path, `/${userOwned.file}`)).toBe(userOwned.content);
  });

  it('is a cache hit the second time: same file, untouched, nothing left beside it', async () => {
    const before = await stat(base.path);
    const again = await ensureRootfs(image, cacheDir);
    expect(again).toEqual({ path: base.path, cached: true });
    const after = await stat(base.path);
    expect(after.mtimeMs).toBe(before.mtimeMs);
    expect(after.ino).toBe(before.ino);
    expect(await readdir(join(cacheDir, 'rootfs', 'v1'))).toEqual([
      `${debian.image.config.digest.replace(':', '-')}.ext4`,
    ]);
  });

  async function names(dir: string): Promise<string[]> {
    return (await listDirectory(base.path, dir)).map((entry) => entry.name).sort();
  }
});
