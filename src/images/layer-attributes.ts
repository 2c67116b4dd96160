import { CommandError, onPath, run, type Command } from '../process/run.js';
import { messageOf } from './layer-paths.js';
import type { TarEntry, Xattr } from './layer-tar.js';

/** What can be done to an entry's inode once it exists; each kind reaches it without following a final symlink. */
export interface Inode {
  chown(uid: number, gid: number): Promise<void>;
  chmod?(mode: number): Promise<void>;
  utimes?(atime: Date, mtime: Date): Promise<void>;
}

/** security.* and trusted.* need privileges or filesystem support that a build host may lack; Docker skips them too. */
const BEST_EFFORT_XATTR = /^(security|trusted)\./;

export function mknodCommand(path: string, node: 'c' | 'b' | 'p', major = 0, minor = 0): Command {
  const numbers = node === 'p' ? [] : [String(major), String(minor)];
  return { program: 'mknod', args: ['-m', '600', '--', path, node, ...numbers] };
}

export function setfattrCommand(path: string, xattr: Xattr): Command {
  const value = xattr.value.length > 0 ? ['-v', `0s${xattr.value.toString('base64')}`] : [];
  return { program: 'setfattr', args: ['-h', '-n', xattr.name, ...value, '--', path] };
}

/** Sets what an entry records about its inode, once the inode exists. */
export class InodeAttributes {
  private setfattrFound: Promise<boolean> | undefined;

  constructor(
    private readonly preserveOwnership: boolean,
    /** Told about each attribute that could not be set, and why. */
    private readonly report: (path: string, reason: string) => void,
    /** Told the owner an entry should have, when it cannot be set here. */
    private readonly recordOwner: (path: string, uid: number, gid: number) => void = () => {},
  ) {}

  /** Owner, then xattrs, then mode (chown clears setuid and file capabilities), then times. */
  async set(path: string, item: TarEntry, defaultMode: number, inode: Inode): Promise<void> {
    const { entry } = item;
    if (this.preserveOwnership) await inode.chown(entry.uid ?? 0, entry.gid ?? 0);
    else this.recordOwner(path, entry.uid ?? 0, entry.gid ?? 0);
    await this.setXattrs(path, item);
    await inode.chmod?.(entry.mode ?? defaultMode);
    const mtime = validDate(entry.mtime);
    if (mtime) await inode.utimes?.(validDate(entry.atime) ?? mtime, mtime);
  }

  private async setXattrs(path: string, { entry, xattrs, unreadableXattrs }: TarEntry): Promise<void> {
    for (const name of unreadableXattrs) {
      this.report(
        entry.path,
        `xattr ${name}: unreadable, as node-tar decodes PAX headers as UTF-8 and this one is not`,
      );
    }
    if (xattrs.length === 0) return;
    this.setfattrFound ??= onPath('setfattr');
    if (!(await this.setfattrFound)) {
      for (const { name } of xattrs) {
        this.report(entry.path, `xattr ${name}: setfattr (Debian package attr) is missing`);
      }
      return;
    }
    for (const xattr of xattrs) {
      try {
        await run(setfattrCommand(path, xattr));
      } catch (error: unknown) {
        if (BEST_EFFORT_XATTR.test(xattr.name)) continue;
        const why = error instanceof CommandError ? error.stderr.trim() : messageOf(error);
        this.report(entry.path, `xattr ${xattr.name}: ${why}`);
      }
    }
  }
}

/** A PAX time that is not a number ("mtime=soon") reaches node-tar as an Invalid Date: treat it as absent. */
export function validDate(date: Date | undefined): Date | undefined {
  return date && Number.isFinite(date.getTime()) ? date : undefined;
}
