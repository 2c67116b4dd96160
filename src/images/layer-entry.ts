import {
  closeSync,
  constants,
  fchmodSync,
  fchownSync,
  futimesSync,
  lchownSync,
  lstatSync,
  lutimesSync,
  mkdirSync,
  chmodSync,
  openSync,
  symlinkSync,
  writeSync,
  type Stats,
} from 'node:fs';
import { chmod, link, lchown, open, readdir, readlink, rm, unlink, utimes } from 'node:fs/promises';
import { posix } from 'node:path';
import { CommandError, run } from '../process/run.js';
import { InodeAttributes, mknodCommand, validDate } from './layer-attributes.js';
import {
  isAufsMetadata,
  isWithin,
  messageOf,
  parentPaths,
  rootRelativePath,
  whiteoutTarget,
  OPAQUE_MARKER,
} from './layer-paths.js';
import type { TarEntry } from './layer-tar.js';

export interface ApplyReport {
  /** Entries written: regular files, directories, symlinks, hardlinks, device nodes and fifos. */
  files: number;
  /** Bytes of regular-file content written. */
  bytes: number;
  /** Entries, or attributes of entries, that were left out, and why. */
  skipped: { path: string; reason: string }[];
  /**
   * Without root the tree's files belong to the builder: the owners the layers
   * give, by root-relative path, for a fix-up pass on the finished filesystem.
   */
  owners: Map<string, { uid: number; gid: number }>;
  /** Without root devices cannot be made in the tree: these are made in the filesystem later. */
  devices: DeviceNode[];
}

export interface DeviceNode {
  path: string;
  node: 'c' | 'b';
  major: number;
  minor: number;
  mode: number;
  uid: number;
  gid: number;
}

export interface RootTreeOptions {
  preserveOwnership: boolean;
  /** Character and block devices need CAP_MKNOD; without it they are skipped and reported. */
  canMakeDevices: boolean;
}

interface DeferredDirectory {
  mode: number;
  atime?: Date;
  mtime?: Date;
}

const NEW_FILE_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
const OPEN_DIRECTORY_FLAGS = constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW;

/**
 * The directory tree layers are applied to. Every path comes from `rootRelativePath`, and
 * every directory above it is checked with lstat (or known from an earlier check) before
 * anything is written: a symlink there is refused, never followed. The final component is
 * always created afresh (O_EXCL, mkdir, symlink, link, mknod), so it is never followed either.
 * This holds while nothing else writes under the root, which the caller owns.
 */
export class RootTree {
  readonly report: ApplyReport = { files: 0, bytes: 0, skipped: [], owners: new Map(), devices: [] };
  /** Paths checked or made to be real directories; forgotten when something under them is removed. */
  private readonly knownDirs = new Set<string>(['']);
  /** What the current layer wrote, and the directories above it: whiteouts only hide lower layers. */
  private readonly layerPaths = new Set<string>();
  private readonly layerParents = new Set<string>();
  /** Directory modes and times, applied when the layer is done so that writing their contents leaves them be. */
  private readonly deferred = new Map<string, DeferredDirectory>();
  private readonly attributes: InodeAttributes;

  constructor(
    private readonly root: string,
    private readonly options: RootTreeOptions,
  ) {
    this.attributes = new InodeAttributes(
      options.preserveOwnership,
      (path, reason) => this.skip(path, reason),
      (path, uid, gid) => this.report.owners.set(posix.relative(this.root, path), { uid, gid }),
    );
  }

  async apply(item: TarEntry): Promise<void> {
    const { entry } = item;
    if (entry.ignore) {
      throw new Error(
        entry.meta
          ? `its ${entry.size}-byte extended header is larger than the tar reader accepts`
          : `entry type ${entry.type} ("${entry.header.typeKey}") is not supported`,
      );
    }
    const rel = rootRelativePath(entry.path);
    if (isAufsMetadata(rel)) return this.skip(entry.path, 'AUFS metadata, not part of the image');
    const whiteout = whiteoutTarget(rel);
    if (whiteout.kind !== 'none') {
      // Nothing to hide when a parent is missing; a symlinked parent is refused like for any write.
      if (!(await this.checkParents(rel, false))) return;
      const target = rootRelativePath(whiteout.target);
      return whiteout.kind === 'opaque' ? this.hideLowerChildren(target) : this.hideLower(target);
    }
    switch (entry.type) {
      case 'File':
      case 'OldFile':
      case 'ContiguousFile':
        return this.add(rel, item, (path) => this.writeFile(path, item));
      case 'Directory':
      case 'GNUDumpDir':
        return this.add(rel, item, (path, existing) => this.makeDirectory(rel, path, existing, item));
      case 'SymbolicLink':
        return this.add(rel, item, (path) => this.makeSymlink(path, item));
      case 'Link':
        return this.addHardlink(rel, item);
      case 'FIFO':
        return this.add(rel, item, (path) => this.makeNode(path, item, 'p'));
      case 'CharacterDevice':
      case 'BlockDevice': {
        const node = entry.type === 'CharacterDevice' ? 'c' : 'b';
        if (!this.options.canMakeDevices) {
          this.report.devices.push({
            path: rel,
            node,
            major: entry.header.devmaj ?? 0,
            minor: entry.header.devmin ?? 0,
            mode: entry.mode ?? 0o644,
            uid: entry.uid ?? 0,
            gid: entry.gid ?? 0,
          });
          return;
        }
        return this.add(rel, item, (path) => this.makeNode(path, item, node));
      }
      default:
        throw new Error(`entry type ${entry.type} is not supported`);
    }
  }

  /** Applies the modes and times of the directories the layer named, deepest first; then starts afresh. */
  async finishLayer(): Promise<void> {
    const byDepth = [...this.deferred].sort(([a], [b]) => depth(b) - depth(a));
    for (const [rel, directory] of byDepth) {
      try {
        const handle = await open(this.path(rel), OPEN_DIRECTORY_FLAGS);
        try {
          await handle.chmod(directory.mode);
          if (directory.mtime) await handle.utimes(directory.atime ?? directory.mtime, directory.mtime);
        } finally {
          await handle.close();
        }
      } catch (error: unknown) {
        throw new Error(`directory "${rel || '/'}": ${messageOf(error)}`, { cause: error });
      }
    }
    this.deferred.clear();
    this.layerPaths.clear();
    this.layerParents.clear();
  }

  /** Replaces whatever the path holds (a directory over a directory merges), then creates the entry. */
  private async add(
    rel: string,
    item: TarEntry,
    /** Resolves to false when the entry was skipped (and reported) after all. */
    create: (path: string, existing: Stats | undefined) => Promise<boolean | void>,
  ): Promise<void> {
    const isDirectory = item.entry.type === 'Directory' || item.entry.type === 'GNUDumpDir';
    if (rel === '' && !isDirectory) throw new Error(`a ${item.entry.type} cannot replace the root directory`);
    await this.checkParents(rel, true);
    const path = this.path(rel);
    let existing = await lstatIfExists(path);
    if (existing && !(existing.isDirectory() && isDirectory)) {
      await this.remove(rel, existing);
      existing = undefined;
    }
    if ((await create(path, existing)) === false) return;
    this.layerPaths.add(rel);
    for (const parent of parentPaths(rel)) this.layerParents.add(parent);
    this.report.files += 1;
  }

  private async addHardlink(rel: string, item: TarEntry): Promise<void> {
    const linkpath = item.entry.linkpath ?? '';
    let target: string;
    try {
      target = rootRelativePath(linkpath);
    } catch (error: unknown) {
      throw new Error(`hardlink target ${messageOf(error).replace(/^the path /, '')}`, { cause: error });
    }
    if (target === rel) throw new Error('the hardlink points to itself');
    const found = (await this.checkParents(target, false))
      ? await lstatIfExists(this.path(target))
      : undefined;
    if (!found) throw new Error(`hardlink target "${linkpath}" does not exist`);
    if (found.isDirectory()) throw new Error(`hardlink target "${linkpath}" is a directory`);
    // link(2) does not follow a symlink target: the link shares the symlink's inode, as tar means it to.
    // The inode's owner and mode are those of its first entry; they are not changed here.
    await this.add(rel, item, (path) => link(this.path(target), path));
  }

  // The hot path (every file, directory and symlink) uses synchronous fs
  // calls: each promise-based one is a thread-pool round trip, and with
  // several per entry those, not the disk, bounded the unpack.
  private async writeFile(path: string, item: TarEntry): Promise<void> {
    const { entry } = item;
    const fd = openSync(path, NEW_FILE_FLAGS, 0o600);
    try {
      // node-tar hands over ~2 KB chunks: write them in batches.
      let written = 0;
      let pending: Buffer[] = [];
      let pendingBytes = 0;
      for await (const chunk of entry) {
        pending.push(chunk as Buffer);
        pendingBytes += (chunk as Buffer).length;
        written += (chunk as Buffer).length;
        if (pendingBytes >= WRITE_BATCH_BYTES) {
          writeAll(fd, Buffer.concat(pending, pendingBytes));
          pending = [];
          pendingBytes = 0;
        }
      }
      if (pendingBytes > 0) writeAll(fd, Buffer.concat(pending, pendingBytes));
      if (written !== entry.size)
        throw new Error(`the archive ends ${entry.size - written} bytes into this file`);
      this.report.bytes += written;
      await this.attributes.set(path, item, 0o644, {
        chown: async (uid, gid) => fchownSync(fd, uid, gid),
        chmod: async (mode) => fchmodSync(fd, mode),
        utimes: async (atime, mtime) => futimesSync(fd, atime, mtime),
      });
    } finally {
      closeSync(fd);
    }
  }

  private async makeDirectory(
    rel: string,
    path: string,
    existing: Stats | undefined,
    item: TarEntry,
  ): Promise<void> {
    // Made private first: its mode comes at the end of the layer, once its contents are in.
    if (!existing) mkdirSync(path, 0o700);
    this.knownDirs.add(rel);
    await this.attributes.set(path, item, 0o755, { chown: async (uid, gid) => lchownSync(path, uid, gid) });
    const { mode, atime, mtime } = item.entry;
    this.deferred.set(rel, { mode: mode ?? 0o755, atime: validDate(atime), mtime: validDate(mtime) });
  }

  private async makeSymlink(path: string, item: TarEntry): Promise<void> {
    // Stored as written, pointing anywhere: nothing here ever follows it.
    symlinkSync(item.entry.linkpath ?? '', path);
    await this.attributes.set(path, item, 0o777, {
      chown: async (uid, gid) => lchownSync(path, uid, gid),
      utimes: async (atime, mtime) => lutimesSync(path, atime, mtime),
    });
  }

  private async makeNode(path: string, item: TarEntry, node: 'c' | 'b' | 'p'): Promise<boolean> {
    try {
      await run(mknodCommand(path, node, item.entry.header.devmaj, item.entry.header.devmin));
    } catch (error: unknown) {
      // Root without CAP_MKNOD (an unprivileged container) cannot make devices: report, as Docker does in a user namespace.
      if (node === 'p' || !(error instanceof CommandError)) throw error;
      this.skip(item.entry.path, `mknod failed: ${error.stderr.trim()}`);
      return false;
    }
    // The path is the node just made, not a symlink, so chmod and utimes reach it.
    await this.attributes.set(path, item, 0o644, {
      chown: (uid, gid) => lchown(path, uid, gid),
      chmod: (mode) => chmod(path, mode),
      utimes: (atime, mtime) => utimes(path, atime, mtime),
    });
    return true;
  }

  /**
   * Checks the directories above `rel`, outermost first. A symlink is refused. A missing one
   * is made (mode 0755, like Docker) when `create`; otherwise the answer is false, as it is
   * for a non-directory, which `create` refuses.
   */
  private async checkParents(rel: string, create: boolean): Promise<boolean> {
    for (const dir of parentPaths(rel)) {
      if (this.knownDirs.has(dir)) continue;
      const path = this.path(dir);
      const found = await lstatIfExists(path);
      if (found?.isSymbolicLink()) {
        const target = await readlink(path).catch(() => '?');
        throw new Error(`"${dir}" is a symbolic link (to "${target}"); refusing to go through it`);
      }
      if (!found?.isDirectory()) {
        if (!create) return false;
        if (found) throw new Error(`"${dir}" is not a directory`);
        mkdirSync(path);
        chmodSync(path, 0o755);
      }
      this.knownDirs.add(dir);
    }
    return true;
  }

  /** Removes `rel` as far as lower layers made it: what this layer wrote there stays. */
  private async hideLower(rel: string): Promise<void> {
    const found = await lstatIfExists(this.path(rel));
    if (!found) return;
    if (this.layerPaths.has(rel) || this.layerParents.has(rel)) {
      if (found.isDirectory()) await this.hideLowerChildren(rel);
    } else {
      await this.remove(rel, found);
    }
  }

  private async hideLowerChildren(dir: string): Promise<void> {
    const found = dir === '' ? undefined : await lstatIfExists(this.path(dir));
    if (dir !== '' && !found?.isDirectory()) return;
    for (const name of await readdir(this.path(dir))) {
      if (name !== OPAQUE_MARKER) await this.hideLower(dir === '' ? name : `${dir}/${name}`);
    }
  }

  private async remove(rel: string, found: Stats): Promise<void> {
    if (!found.isDirectory()) return unlink(this.path(rel));
    await rm(this.path(rel), { recursive: true, force: true });
    for (const dir of this.knownDirs) if (dir !== '' && isWithin(dir, rel)) this.knownDirs.delete(dir);
    for (const dir of this.deferred.keys()) if (isWithin(dir, rel)) this.deferred.delete(dir);
  }

  private skip(path: string, reason: string): void {
    this.report.skipped.push({ path, reason });
  }

  private path(rel: string): string {
    return rel === '' ? this.root : posix.join(this.root, rel);
  }
}

const WRITE_BATCH_BYTES = 1024 * 1024;

function writeAll(fd: number, chunk: Buffer): void {
  let offset = 0;
  while (offset < chunk.length) offset += writeSync(fd, chunk, offset, chunk.length - offset);
}

async function lstatIfExists(path: string): Promise<Stats | undefined> {
  try {
    return lstatSync(path);
  } catch (error: unknown) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw error;
  }
}

function depth(rel: string): number {
  return rel === '' ? 0 : rel.split('/').length;
}
