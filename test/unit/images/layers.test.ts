import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  chmod,
  chown,
  link,
  lstat,
  lutimes,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  readlink,
  rm,
  stat,
  symlink,
  utimes,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ownsAllIds } from '../../../src/host/user.js';
import { mknodCommand, setfattrCommand } from '../../../src/images/layer-attributes.js';
import { zstdDecompressCommand } from '../../../src/images/layer-blob.js';
import { paxXattrs } from '../../../src/images/layer-tar.js';
import {
  applyLayers,
  layerCompression,
  LayerError,
  whiteoutTarget,
  type LayerSource,
} from '../../../src/images/layers.js';
import {
  LAYER_MEDIA_TYPES,
  tarBuffer,
  writeBlob,
  type BlobCompression,
  type RawEntry,
} from '../../support/tar-builder.js';

// Root of the host's user namespace: root in a smaller uid map can neither chown to 1000 nor mknod.
const asRoot = await ownsAllIds();
const itAsRoot = asRoot ? it : it.skip;
const hasSetfattr = (() => {
  try {
    execFileSync('sh', ['-c', 'command -v setfattr']);
    return true;
  } catch {
    return false;
  }
})();

let work: string; // holds root/ and sentinel/, and nothing else
let root: string;
let sentinel: string;
let blobs: string;
let blobCount = 0;

beforeEach(async () => {
  work = await mkdtemp(join(tmpdir(), 'layers-'));
  blobs = await mkdtemp(join(tmpdir(), 'layer-blobs-'));
  root = join(work, 'root');
  sentinel = join(work, 'sentinel');
  await mkdir(root);
  await mkdir(sentinel, { mode: 0o755 });
  await writeFile(join(sentinel, 'secret'), 'secret\n', { mode: 0o600 });
});

afterEach(async () => {
  await rm(work, { recursive: true, force: true });
  await rm(blobs, { recursive: true, force: true });
});

async function layer(
  entries: readonly RawEntry[] | Buffer,
  compression: BlobCompression = 'gzip',
  mediaType = LAYER_MEDIA_TYPES[compression],
): Promise<LayerSource> {
  const path = join(blobs, `layer-${(blobCount += 1)}`);
  const digest = await writeBlob(path, Buffer.isBuffer(entries) ? entries : tarBuffer(entries), compression);
  return { digest, path, mediaType };
}

async function layerOfDirectory(dir: string): Promise<LayerSource> {
  const file = join(blobs, `source-${(blobCount += 1)}.tar`);
  // Packed in a child process: inside jest's VM context node-tar's `instanceof Date` fails for
  // fs.Stats dates, so its PAX headers would carry "mtime=Thu Jan 02 2020 ...". Sync, because
  // async packing of hardlinked files can stall for good (isaacs/node-tar#460, open in 7.5.23).
  const script =
    "import { c } from 'tar'; c({ cwd: process.argv[1], file: process.argv[2], sync: true }, ['.']);";
  execFileSync(process.execPath, ['--input-type=module', '-e', script, dir, file], { cwd: process.cwd() });
  return layer(await readFile(file));
}

/** One line per path under `dir`: type, mode, owner, times, and content or link target. */
async function snapshot(dir: string, prefix = ''): Promise<string[]> {
  const lines: string[] = [];
  for (const name of (await readdir(dir)).sort()) {
    const path = join(dir, name);
    const info = await lstat(path);
    const what = info.isSymbolicLink()
      ? `-> ${await readlink(path)}`
      : info.isFile()
        ? createHash('sha256')
            .update(await readFile(path))
            .digest('hex')
            .slice(0, 16)
        : '';
    const owner = `${info.uid}:${info.gid}`;
    lines.push(
      `${prefix}${name} ${info.mode.toString(8)} ${owner} ${info.nlink} ${Math.floor(info.mtimeMs / 1000)} ${what}`,
    );
    if (info.isDirectory()) lines.push(...(await snapshot(path, `${prefix}${name}/`)));
  }
  return lines;
}

/** Gives `dir` and everything under it one time, children first, as creating them changes their directory's mtime. */
async function touchTree(dir: string, when: Date): Promise<void> {
  for (const name of await readdir(dir)) {
    const path = join(dir, name);
    if ((await lstat(path)).isDirectory()) await touchTree(path, when);
    else await lutimes(path, when, when);
  }
  await utimes(dir, when, when);
}

async function names(dir: string): Promise<string[]> {
  return (await readdir(dir)).sort();
}

describe('whiteoutTarget', () => {
  it.each([
    ['etc/.wh.passwd', 'whiteout', 'etc/passwd'],
    ['.wh.file', 'whiteout', 'file'],
    ['a/b/.wh..hidden', 'whiteout', 'a/b/.hidden'],
    ['a/.wh.dir/', 'whiteout', 'a/dir'],
    ['a/.wh..wh..opq', 'opaque', 'a'],
    ['.wh..wh..opq', 'opaque', '.'],
    ['a/b/.wh..wh..opq', 'opaque', 'a/b'],
    ['etc/passwd', 'none', 'etc/passwd'],
    ['etc/wh.passwd', 'none', 'etc/wh.passwd'],
    ['etc/.whx', 'none', 'etc/.whx'],
    ['etc/', 'none', 'etc/'],
  ])('%s is %s of %s', (entryPath, kind, target) => {
    expect(whiteoutTarget(entryPath)).toEqual({ kind, target });
  });

  it.each(['a/.wh.', 'a/.wh..', 'a/.wh...'])('refuses %s, which names no file', (entryPath) => {
    expect(() => whiteoutTarget(entryPath)).toThrow('is not a valid whiteout');
  });
});

describe('layerCompression', () => {
  it.each([
    ['application/vnd.oci.image.layer.v1.tar', 'none'],
    ['application/vnd.oci.image.layer.v1.tar+gzip', 'gzip'],
    ['application/vnd.oci.image.layer.v1.tar+zstd', 'zstd'],
    ['application/vnd.oci.image.layer.nondistributable.v1.tar+gzip', 'gzip'],
    ['application/vnd.docker.image.rootfs.diff.tar.gzip', 'gzip'],
    ['application/vnd.docker.image.rootfs.foreign.diff.tar.gzip', 'gzip'],
  ])('%s is %s', (mediaType, compression) => {
    expect(layerCompression(mediaType)).toBe(compression);
  });

  it('names an unknown media type', () => {
    expect(() => layerCompression('application/vnd.oci.image.layer.v1.tar+bzip2')).toThrow(
      '"application/vnd.oci.image.layer.v1.tar+bzip2" is not a supported layer media type',
    );
  });
});

describe('command builders', () => {
  it('builds mknod, setfattr and zstd command lines', () => {
    expect(mknodCommand('/r/dev/null', 'c', 1, 3)).toEqual({
      program: 'mknod',
      args: ['-m', '600', '--', '/r/dev/null', 'c', '1', '3'],
    });
    expect(mknodCommand('/r/fifo', 'p')).toEqual({
      program: 'mknod',
      args: ['-m', '600', '--', '/r/fifo', 'p'],
    });
    expect(setfattrCommand('/r/f', { name: 'user.a', value: Buffer.from('hi') })).toEqual({
      program: 'setfattr',
      args: ['-h', '-n', 'user.a', '-v', '0saGk=', '--', '/r/f'],
    });
    expect(setfattrCommand('/r/f', { name: 'user.empty', value: Buffer.alloc(0) }).args).toEqual([
      '-h',
      '-n',
      'user.empty',
      '--',
      '/r/f',
    ]);
    expect(zstdDecompressCommand('/blobs/x')).toEqual({
      program: 'zstd',
      args: ['-d', '-c', '-q', '--', '/blobs/x'],
    });
  });
});

describe('paxXattrs', () => {
  it('reads SCHILY.xattr records, including values with "=" and newlines, and ignores other keys', () => {
    const header = '29 SCHILY.xattr.user.a=x=y\nz\n' + '13 path=abcd\n' + '24 SCHILY.xattr.user.b=\n';
    expect(paxXattrs([header])).toEqual({
      xattrs: [
        { name: 'user.a', value: Buffer.from('x=y\nz') },
        { name: 'user.b', value: Buffer.alloc(0) },
      ],
      unreadableXattrs: [],
    });
  });

  it('names values that node-tar could not decode', () => {
    const header = Buffer.concat([
      Buffer.from('25 SCHILY.xattr.user.c='),
      Buffer.from([0xff]),
      Buffer.from('\n'),
    ]);
    const after = '24 SCHILY.xattr.user.d=\n';
    expect(paxXattrs([header.toString('utf8') + after]).unreadableXattrs).toEqual(['user.c', 'user.d']);
    expect(paxXattrs(['14 path=a/b/c\n', 'plain/long/name'])).toEqual({ xattrs: [], unreadableXattrs: [] });
  });
});

describe('applyLayers', () => {
  it('rebuilds a tree packed by node-tar: files, directories, links, long and non-ASCII names, modes, mtimes', async () => {
    const source = join(work, 'source');
    const deep = join(source, 'deep', 'd'.repeat(60), 'e'.repeat(60));
    const unicode = join(source, 'usr', 'share', 'ünïcødé');
    for (const dir of [join(source, 'etc'), join(source, 'bin'), join(source, 'empty'), deep, unicode]) {
      await mkdir(dir, { recursive: true });
    }
    await writeFile(join(source, 'etc', 'hostname'), 'box\n', { mode: 0o644 });
    await writeFile(join(source, 'bin', 'busybox'), randomBytes(70_000), { mode: 0o755 });
    await link(join(source, 'bin', 'busybox'), join(source, 'bin', 'sh'));
    await symlink('busybox', join(source, 'bin', 'ls'));
    await writeFile(join(deep, 'file.txt'), 'deep\n');
    await writeFile(join(unicode, '名前.txt'), 'こんにちは\n');
    await chmod(join(source, 'empty'), 0o700);
    await chmod(join(source, 'etc'), 0o750);
    await touchTree(source, new Date('2020-01-02T03:04:05Z'));

    const report = await applyLayers([await layerOfDirectory(source)], root);

    expect(await snapshot(root)).toEqual(await snapshot(source));
    expect((await stat(join(root, 'bin', 'sh'))).ino).toBe((await stat(join(root, 'bin', 'busybox'))).ino);
    expect(report.skipped).toEqual([]);
    expect(report.bytes).toBe(70_000 + 'box\n'.length + 'deep\n'.length + Buffer.byteLength('こんにちは\n'));
  });

  it.each<[BlobCompression, string | undefined]>([
    ['none', undefined],
    ['gzip', undefined],
    ['zstd', undefined],
    ['gzip', 'application/vnd.oci.image.layer.v1.tar'], // gzip found by its magic bytes, as Docker does
    ['zstd', 'application/vnd.docker.image.rootfs.diff.tar.gzip'],
  ])('reads a %s layer (media type %s)', async (compression, mediaType) => {
    const entries: RawEntry[] = [
      { path: 'etc/', kind: 'dir' },
      { path: 'etc/os-release', data: 'ID=test\n' },
    ];
    await applyLayers([await layer(entries, compression, mediaType)], root);
    expect(await readFile(join(root, 'etc', 'os-release'), 'utf8')).toBe('ID=test\n');
  });

  it.each<[string, Buffer, BlobCompression]>([
    ["end blocks only, gzipped (Docker's empty layer)", Buffer.alloc(1024), 'gzip'],
    ['no bytes at all', Buffer.alloc(0), 'none'],
  ])('applies an empty layer: %s', async (_, bytes, compression) => {
    const report = await applyLayers([await layer(bytes, compression)], root);
    expect(report).toEqual({ files: 0, bytes: 0, skipped: [], owners: new Map(), devices: [] });
    expect(await names(root)).toEqual([]);
  });

  it.each(['posix', 'gnu'])('reads what GNU tar writes in its %s format', async (format) => {
    const source = join(work, 'source');
    await mkdir(join(source, 'usr', 'bin'), { recursive: true });
    await writeFile(join(source, 'usr', 'bin', 'tool'), 'tool', { mode: 0o4755 });
    await link(join(source, 'usr', 'bin', 'tool'), join(source, 'usr', 'bin', 'alias'));
    await symlink('usr/bin', join(source, 'bin'));
    const long = join(source, 'l'.repeat(90), 'ö'.repeat(40));
    await mkdir(long, { recursive: true });
    await writeFile(join(long, 'é'.repeat(30)), 'long');
    execFileSync('mknod', [join(source, 'fifo'), 'p']);
    if (hasSetfattr)
      execFileSync('setfattr', ['-n', 'user.origin', '-v', 'gnu', join(source, 'usr', 'bin', 'tool')]);
    await touchTree(source, new Date('2021-03-04T05:06:07Z'));
    const file = join(blobs, 'gnu.tar');
    execFileSync('tar', [
      `--format=${format}`,
      '--xattrs',
      '--xattrs-include=user.*',
      '-C',
      source,
      '-cf',
      file,
      '.',
    ]);

    const report = await applyLayers([await layer(await readFile(file), 'gzip')], root);

    expect(await snapshot(root)).toEqual(await snapshot(source));
    expect(report.skipped).toEqual([]);
    if (hasSetfattr && format === 'posix') {
      const origin = execFileSync('getfattr', [
        '--absolute-names',
        '--only-values',
        '-n',
        'user.origin',
        join(root, 'usr', 'bin', 'tool'),
      ]);
      expect(origin.toString()).toBe('gnu');
    }
  });

  it('streams a large file among many small ones', async () => {
    const big = randomBytes(6 * 1024 * 1024 + 123);
    const entries: RawEntry[] = [
      { path: 'data/', kind: 'dir' },
      { path: 'data/big', data: big },
    ];
    for (let index = 0; index < 300; index += 1)
      entries.push({ path: `data/small-${index}`, data: `${index}\n` });
    for (const compression of ['gzip', 'zstd'] as const) {
      const target = join(work, `root-${compression}`);
      await mkdir(target);
      const report = await applyLayers([await layer(entries, compression)], target);
      expect((await readFile(join(target, 'data', 'big'))).equals(big)).toBe(true);
      expect(await readFile(join(target, 'data', 'small-299'), 'utf8')).toBe('299\n');
      expect(report.files).toBe(302);
      await rm(target, { recursive: true });
    }
  });

  it('reads a long non-ASCII path from a PAX header', async () => {
    const path = `${'ü'.repeat(80)}/${'名'.repeat(60)}/file`;
    await applyLayers([await layer([{ path, data: 'x' }])], root);
    expect(await readFile(join(root, path), 'utf8')).toBe('x');
  });

  it('ignores a PAX time that is not a number', async () => {
    await applyLayers(
      [await layer([{ path: 'file', data: 'x', pax: { mtime: 'soon', atime: 'later' } }])],
      root,
    );
    expect(await readFile(join(root, 'file'), 'utf8')).toBe('x');
  });

  it('treats a leading "/" as relative to the root', async () => {
    await applyLayers([await layer([{ path: '/etc/absolute', data: 'inside\n' }])], root);
    expect(await readFile(join(root, 'etc', 'absolute'), 'utf8')).toBe('inside\n');
    expect(await names(work)).toEqual(['root', 'sentinel']);
  });

  it('removes whited-out files and directories of lower layers', async () => {
    const lower = await layer([
      { path: 'etc/', kind: 'dir' },
      { path: 'etc/passwd', data: 'root:x:0:0\n' },
      { path: 'etc/gone/', kind: 'dir' },
      { path: 'etc/gone/deep/', kind: 'dir' },
      { path: 'etc/gone/deep/file', data: 'x' },
      { path: 'etc/keep', data: 'keep' },
    ]);
    const upper = await layer([
      { path: 'etc/.wh.passwd' },
      { path: 'etc/.wh.gone' },
      { path: 'etc/.wh.never-was' },
      { path: 'missing/.wh.file' },
    ]);
    await applyLayers([lower, upper], root);
    expect(await names(join(root, 'etc'))).toEqual(['keep']);
    expect(await names(root)).toEqual(['etc']);
  });

  it('lets a whiteout hide only lower layers, not its own layer', async () => {
    const lower = await layer([{ path: 'a', data: 'lower' }]);
    const upper = await layer([{ path: 'a', data: 'upper' }, { path: '.wh.a' }]);
    await applyLayers([lower, upper], root);
    expect(await readFile(join(root, 'a'), 'utf8')).toBe('upper');
  });

  it('clears an opaque directory of lower content, keeping its own layer entries before and after the marker', async () => {
    const lower = await layer([
      { path: 'app/', kind: 'dir' },
      { path: 'app/old', data: 'old' },
      { path: 'app/sub/', kind: 'dir' },
      { path: 'app/sub/old', data: 'old' },
      { path: 'other', data: 'other' },
    ]);
    const upper = await layer([
      { path: 'app/', kind: 'dir' },
      { path: 'app/before', data: 'before' },
      { path: 'app/sub/', kind: 'dir' },
      { path: 'app/sub/new', data: 'new' },
      { path: 'app/.wh..wh..opq' },
      { path: 'app/after', data: 'after' },
    ]);
    await applyLayers([lower, upper], root);
    expect(await names(join(root, 'app'))).toEqual(['after', 'before', 'sub']);
    expect(await names(join(root, 'app', 'sub'))).toEqual(['new']);
    expect(await names(root)).toEqual(['app', 'other']);
  });

  it('skips AUFS metadata and reports it', async () => {
    const report = await applyLayers(
      [
        await layer([
          { path: '.wh..wh.plnk/', kind: 'dir' },
          { path: '.wh..wh.plnk/1234.5', data: 'x' },
        ]),
      ],
      root,
    );
    expect(await names(root)).toEqual([]);
    expect(report.skipped.map((skip) => skip.path)).toEqual(['.wh..wh.plnk/', '.wh..wh.plnk/1234.5']);
  });

  it('makes a hardlink to a file of an earlier layer', async () => {
    const lower = await layer([
      { path: 'bin/', kind: 'dir' },
      { path: 'bin/busybox', data: 'ELF', mode: 0o755 },
    ]);
    const upper = await layer([{ path: 'bin/sh', kind: 'hardlink', linkpath: 'bin/busybox' }]);
    await applyLayers([lower, upper], root);
    const original = await stat(join(root, 'bin', 'busybox'));
    const linked = await stat(join(root, 'bin', 'sh'));
    expect(linked.ino).toBe(original.ino);
    expect(linked.nlink).toBe(2);
  });

  it('stores symlinks as written, and hardlinks to a symlink', async () => {
    await applyLayers(
      [
        await layer([
          { path: 'lib', kind: 'symlink', linkpath: 'usr/lib' },
          { path: 'outside', kind: 'symlink', linkpath: '../../../etc/shadow' },
          { path: 'alias', kind: 'hardlink', linkpath: 'lib' },
        ]),
      ],
      root,
    );
    expect(await readlink(join(root, 'lib'))).toBe('usr/lib');
    expect(await readlink(join(root, 'outside'))).toBe('../../../etc/shadow');
    const alias = await lstat(join(root, 'alias'));
    expect(alias.isSymbolicLink()).toBe(true);
    expect(alias.ino).toBe((await lstat(join(root, 'lib'))).ino);
  });

  it('replaces a directory with a file, a file with a directory, and merges a directory over a directory', async () => {
    const lower = await layer([
      { path: 'x/', kind: 'dir' },
      { path: 'x/child', data: 'child' },
      { path: 'y', data: 'file' },
      { path: 'm/', kind: 'dir', mode: 0o755 },
      { path: 'm/a', data: 'a' },
    ]);
    const upper = await layer([
      { path: 'x', data: 'now a file' },
      { path: 'y/', kind: 'dir' },
      { path: 'y/z', data: 'z' },
      { path: 'm/', kind: 'dir', mode: 0o700 },
      { path: 'm/b', data: 'b' },
    ]);
    await applyLayers([lower, upper], root);
    expect(await readFile(join(root, 'x'), 'utf8')).toBe('now a file');
    expect(await names(join(root, 'y'))).toEqual(['z']);
    expect(await names(join(root, 'm'))).toEqual(['a', 'b']);
    expect((await stat(join(root, 'm'))).mode & 0o7777).toBe(0o700);
  });

  it('replaces a symlink with a file or a directory without touching what it pointed to', async () => {
    const before = await snapshot(sentinel);
    const lower = await layer([
      { path: 'to-file', kind: 'symlink', linkpath: '../sentinel/secret' },
      { path: 'to-dir', kind: 'symlink', linkpath: sentinel },
    ]);
    const upper = await layer([
      { path: 'to-file', data: 'replaced', mode: 0o666 },
      { path: 'to-dir/', kind: 'dir', mode: 0o777, mtime: 1_000_000 },
    ]);
    await applyLayers([lower, upper], root);
    expect(await readFile(join(root, 'to-file'), 'utf8')).toBe('replaced');
    expect((await lstat(join(root, 'to-dir'))).isDirectory()).toBe(true);
    expect(await snapshot(sentinel)).toEqual(before);
  });

  it('sets directory mtimes after writing their contents', async () => {
    await applyLayers(
      [
        await layer([
          { path: 'd/', kind: 'dir', mtime: 1_000_000_000 },
          { path: 'd/sub/', kind: 'dir', mtime: 1_100_000_000 },
          { path: 'd/sub/file', data: 'x', mtime: 1_200_000_000 },
        ]),
      ],
      root,
    );
    expect((await stat(join(root, 'd'))).mtimeMs).toBe(1_000_000_000_000);
    expect((await stat(join(root, 'd', 'sub'))).mtimeMs).toBe(1_100_000_000_000);
    expect((await stat(join(root, 'd', 'sub', 'file'))).mtimeMs).toBe(1_200_000_000_000);
  });

  itAsRoot('keeps uid 1000 and the setuid bit of a file packed from disk', async () => {
    const source = join(work, 'source');
    await mkdir(join(source, 'bin'), { recursive: true });
    await writeFile(join(source, 'bin', 'su'), 'su');
    await chown(join(source, 'bin', 'su'), 1000, 1000);
    await chmod(join(source, 'bin', 'su'), 0o4755);
    await applyLayers([await layerOfDirectory(source)], root);
    const su = await stat(join(root, 'bin', 'su'));
    expect([su.uid, su.gid, su.mode & 0o7777]).toEqual([1000, 1000, 0o4755]);
  });

  itAsRoot('keeps setgid and sticky directories, and drops owners when asked', async () => {
    const entries: RawEntry[] = [
      { path: 'shared/', kind: 'dir', mode: 0o2775, uid: 1000, gid: 1001 },
      { path: 'tmp/', kind: 'dir', mode: 0o1777 },
      { path: 'shared/file', data: 'x', mode: 0o6755, uid: 1000, gid: 1001 },
    ];
    await applyLayers([await layer(entries)], root);
    const shared = await stat(join(root, 'shared'));
    expect([shared.uid, shared.gid, shared.mode & 0o7777]).toEqual([1000, 1001, 0o2775]);
    expect((await stat(join(root, 'tmp'))).mode & 0o7777).toBe(0o1777);
    expect((await stat(join(root, 'shared', 'file'))).mode & 0o7777).toBe(0o6755);

    const unowned = join(work, 'unowned');
    await mkdir(unowned);
    await applyLayers([await layer(entries)], unowned, { preserveOwnership: false });
    const file = await stat(join(unowned, 'shared', 'file'));
    expect([file.uid, file.mode & 0o7777]).toEqual([process.getuid?.(), 0o6755]);
  });

  it('makes fifos', async () => {
    await applyLayers([await layer([{ path: 'run/initctl', kind: 'fifo', mode: 0o640 }])], root);
    const fifo = await lstat(join(root, 'run', 'initctl'));
    expect(fifo.isFIFO()).toBe(true);
    expect(fifo.mode & 0o7777).toBe(0o640);
  });

  itAsRoot('makes character and block devices', async () => {
    const report = await applyLayers(
      [
        await layer([
          { path: 'dev/null', kind: 'char', devmajor: 1, devminor: 3, mode: 0o666 },
          { path: 'dev/loop0', kind: 'block', devmajor: 7, devminor: 0, mode: 0o660 },
        ]),
      ],
      root,
    );
    if (report.skipped.length > 0) return; // a root without CAP_MKNOD reports them instead
    const devNull = await lstat(join(root, 'dev', 'null'));
    expect(devNull.isCharacterDevice()).toBe(true);
    expect([devNull.rdev, devNull.mode & 0o7777]).toEqual([(1 << 8) | 3, 0o666]);
    expect((await lstat(join(root, 'dev', 'loop0'))).isBlockDevice()).toBe(true);
  });

  it('sets xattrs from PAX headers and reports those it cannot', async () => {
    const binary = Buffer.from([0x01, 0x00, 0x00, 0x02, 0x00, 0x20]);
    const report = await applyLayers(
      [
        await layer([
          {
            path: 'bin/ping',
            data: 'ping',
            pax: {
              'SCHILY.xattr.user.greeting': 'hello',
              'SCHILY.xattr.user.binary': binary,
              'SCHILY.xattr.user.latin1': Buffer.from([0xe9, 0xff]),
            },
          },
        ]),
      ],
      root,
    );
    const path = join(root, 'bin', 'ping');
    expect(await readFile(path, 'utf8')).toBe('ping');
    if (!hasSetfattr) {
      expect(report.skipped.map((skip) => skip.reason)).toContainEqual(expect.stringContaining('setfattr'));
      return;
    }
    const value = (name: string): Buffer =>
      execFileSync('getfattr', ['--absolute-names', '--only-values', '-n', name, path]);
    expect(value('user.greeting').toString()).toBe('hello');
    expect(value('user.binary').equals(binary)).toBe(true);
    expect(report.skipped).toEqual([
      {
        path: 'bin/ping',
        reason: 'xattr user.latin1: unreadable, as node-tar decodes PAX headers as UTF-8 and this one is not',
      },
    ]);
  });

  describe('refuses entries that would write outside the root', () => {
    const escapes: [string, (sentinelPath: string) => RawEntry[][], string][] = [
      [
        'a relative path climbing out',
        () => [[{ path: '../sentinel/pwned', data: 'x' }]],
        '../sentinel/pwned',
      ],
      [
        'an absolute path climbing out',
        () => [[{ path: '/../sentinel/pwned', data: 'x' }]],
        '/../sentinel/pwned',
      ],
      [
        'a path climbing out through a subdirectory',
        () => [
          [
            { path: 'a/', kind: 'dir' },
            { path: 'a/../../sentinel/pwned', data: 'x' },
          ],
        ],
        'a/../../sentinel/pwned',
      ],
      [
        'a long PAX path climbing out',
        () => [[{ path: `${'a/'.repeat(60)}${'../'.repeat(61)}sentinel/pwned`, data: 'x' }]],
        `${'a/'.repeat(60)}${'../'.repeat(61)}sentinel/pwned`,
      ],
      [
        'a hardlink whose target climbs out',
        () => [[{ path: 'stolen', kind: 'hardlink', linkpath: '../sentinel/secret' }]],
        'stolen',
      ],
      [
        'a write through a relative symlink of the same layer',
        () => [
          [
            { path: 'evil', kind: 'symlink', linkpath: '../sentinel' },
            { path: 'evil/pwned', data: 'x' },
          ],
        ],
        'evil/pwned',
      ],
      [
        'a write through an absolute symlink of the same layer',
        (sentinelPath) => [
          [
            { path: 'evil', kind: 'symlink', linkpath: sentinelPath },
            { path: 'evil/pwned', data: 'x' },
          ],
        ],
        'evil/pwned',
      ],
      [
        'a write through a symlink of an earlier layer',
        () => [
          [{ path: 'evil', kind: 'symlink', linkpath: '../sentinel' }],
          [{ path: 'evil/pwned', data: 'x' }],
        ],
        'evil/pwned',
      ],
      [
        'a directory through a symlink of an earlier layer',
        () => [
          [{ path: 'evil', kind: 'symlink', linkpath: '../sentinel' }],
          [{ path: 'evil/sub/', kind: 'dir' }],
        ],
        'evil/sub/',
      ],
      [
        'a symlink through a symlinked parent',
        () => [
          [{ path: 'evil', kind: 'symlink', linkpath: '../sentinel' }],
          [{ path: 'evil/l', kind: 'symlink', linkpath: '/' }],
        ],
        'evil/l',
      ],
      [
        'a fifo through a symlinked parent',
        () => [
          [{ path: 'evil', kind: 'symlink', linkpath: '../sentinel' }],
          [{ path: 'evil/fifo', kind: 'fifo' }],
        ],
        'evil/fifo',
      ],
      [
        'a hardlink whose target lies through a symlink',
        () => [
          [{ path: 'evil', kind: 'symlink', linkpath: '../sentinel' }],
          [{ path: 'stolen', kind: 'hardlink', linkpath: 'evil/secret' }],
        ],
        'stolen',
      ],
      [
        'a whiteout through a symlink',
        () => [[{ path: 'evil', kind: 'symlink', linkpath: '../sentinel' }], [{ path: 'evil/.wh.secret' }]],
        'evil/.wh.secret',
      ],
      [
        'an opaque marker through a symlink',
        () => [[{ path: 'evil', kind: 'symlink', linkpath: '../sentinel' }], [{ path: 'evil/.wh..wh..opq' }]],
        'evil/.wh..wh..opq',
      ],
      [
        'a write through a directory the same layer turned into a symlink',
        () => [
          [
            { path: 'd/', kind: 'dir' },
            { path: 'd/ok', data: 'ok' },
            { path: 'd', kind: 'symlink', linkpath: '../sentinel' },
            { path: 'd/pwned', data: 'x' },
          ],
        ],
        'd/pwned',
      ],
      [
        'a write through a directory a later layer turned into a symlink',
        () => [
          [
            { path: 'd/', kind: 'dir' },
            { path: 'd/ok', data: 'ok' },
          ],
          [{ path: 'd', kind: 'symlink', linkpath: '../sentinel' }],
          [{ path: 'd/pwned', data: 'x' }],
        ],
        'd/pwned',
      ],
    ];

    it.each(escapes)('%s', async (_, build, entry) => {
      const before = await snapshot(sentinel);
      const layers: LayerSource[] = [];
      for (const entries of build(sentinel)) layers.push(await layer(entries));
      const failing = layers.at(-1)?.digest ?? '';

      const error: unknown = await applyLayers(layers, root).catch((caught: unknown) => caught);

      expect(error).toBeInstanceOf(LayerError);
      expect(error).toMatchObject({ layer: failing, entry });
      expect((error as Error).message).toContain(failing);
      expect((error as Error).message).toContain(JSON.stringify(entry));
      expect(await snapshot(sentinel)).toEqual(before);
      expect(await names(work)).toEqual(['root', 'sentinel']);
    });
  });

  describe('fails clearly on a bad layer', () => {
    async function failure(layers: LayerSource[]): Promise<LayerError> {
      const error: unknown = await applyLayers(layers, root).catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(LayerError);
      return error as LayerError;
    }

    const content: RawEntry[] = [
      { path: 'data/', kind: 'dir' },
      { path: 'data/random', data: randomBytes(200_000) },
    ];

    it('truncated gzip', async () => {
      const good = await layer(content, 'gzip');
      const bytes = await readFile(good.path);
      await writeFile(good.path, bytes.subarray(0, bytes.length / 2));
      const error = await failure([good]);
      expect(error.message).toContain(good.digest);
      expect(error.message).toMatch(/gzip data is corrupt: unexpected end of file/);
    });

    it('gzip with a broken header', async () => {
      const bad = await layer(content, 'gzip');
      const bytes = await readFile(bad.path);
      bytes[2] = 0x07; // compression method: only 8 (deflate) exists
      await writeFile(bad.path, bytes);
      const error = await failure([bad]);
      expect(error.message).toMatch(new RegExp(`^layer ${bad.digest}: gzip data is corrupt: `));
    });

    it('corrupt zstd', async () => {
      const bad = await layer(content, 'zstd');
      const bytes = await readFile(bad.path);
      bytes.fill(0x55, 100, 4000);
      await writeFile(bad.path, bytes);
      const error = await failure([bad]);
      expect(error.message).toMatch(
        new RegExp(`^layer ${bad.digest}: zstd data could not be decompressed: zstd `),
      );
    });

    it('data that is no archive, under a gzip media type', async () => {
      const bad = await layer(randomBytes(4096).fill(0x41, 0, 2), 'none', LAYER_MEDIA_TYPES.gzip);
      const error = await failure([bad]);
      expect(error.message).toContain(
        'not a valid tar archive (the media type says gzip, but the blob does not start with gzip magic bytes)',
      );
    });

    it('an unsupported entry type', async () => {
      const bad = await layer([{ path: 'sparse', typeflag: 'S', data: 'x' }]);
      const error = await failure([bad]);
      expect(error).toMatchObject({ layer: bad.digest, entry: 'sparse' });
      expect(error.message).toContain('is not supported');
    });

    it('a hardlink to nothing', async () => {
      const bad = await layer([{ path: 'link', kind: 'hardlink', linkpath: 'missing' }]);
      expect((await failure([bad])).message).toContain('hardlink target "missing" does not exist');
    });

    it('an unknown media type, before writing anything', async () => {
      const good = await layer([{ path: 'file', data: 'x' }]);
      const odd = { ...(await layer([{ path: 'other', data: 'x' }])), mediaType: 'application/x-bzip2' };
      const error = await failure([good, odd]);
      expect(error).toMatchObject({ layer: odd.digest, entry: '' });
      expect(error.message).toContain('"application/x-bzip2" is not a supported layer media type');
      expect(await names(root)).toEqual([]);
    });

    it('a root directory that is not empty', async () => {
      await writeFile(join(root, 'leftover'), 'x');
      await expect(applyLayers([await layer([{ path: 'file', data: 'x' }])], root)).rejects.toThrow(
        'it is not empty',
      );
    });
  });
});
